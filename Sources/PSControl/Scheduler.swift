import PSCore

/// Chunk assignment: which worker computes which nodes of the reduction tree. Pure: the same inputs
/// give the same plan, and no plan changes a result (every node is summed in tree order wherever it
/// was computed).
enum Scheduler {
    /// Splits the chunks in `free` (sorted) over the workers: evenly, in order of how many nodes each
    /// already holds of this work (then id). Each worker's share is covered by the fewest tree nodes.
    /// `shares`: a worker's relative share (1 when absent; backup chunks give a straggler less, see
    /// `BackupTiming.shares`): the chunks are split in proportion, and a worker may get none.
    static func assign(free: [Int], total: Int, workers: [UInt64], held: [UInt64: Int],
                       shares: [UInt64: Double] = [:]) -> [(worker: UInt64, nodes: [Range<Int>])] {
        guard !free.isEmpty, !workers.isEmpty else { return [] }
        var order = workers.sorted { (held[$0] ?? 0, $0) < (held[$1] ?? 0, $1) }
        // Workers with no share sit the work out, unless nobody else is left to compute it.
        if order.contains(where: { (shares[$0] ?? 1) > 0 }) { order.removeAll { (shares[$0] ?? 1) <= 0 } }
        if order.contains(where: { (shares[$0] ?? 1) != 1 && (shares[$0] ?? 1) > 0 }) {
            // One chunk each while there are enough (a worker that gets none cannot show it is fast
            // again), the rest in proportion to the shares, rounded at the running sum.
            let weights = order.map { max(shares[$0] ?? 1, 0) }
            let sum = weights.reduce(0, +)
            let base = free.count >= order.count ? 1 : 0
            let rest = Double(free.count - base * order.count)
            var cumulative = 0.0
            let bounds = [0] + weights.indices.map { p -> Int in
                cumulative += weights[p]
                return min(free.count, base * (p + 1) + Int((rest * cumulative / sum).rounded()))
            }
            return order.indices.compactMap { p in
                guard bounds[p] < bounds[p + 1] else { return nil }
                return (order[p], nodes(covering: free[bounds[p]..<bounds[p + 1]], total: total))
            }
        }
        let pieces = min(order.count, free.count)
        return (0..<pieces).map { p in
            let slice = free[(free.count * p / pieces)..<(free.count * (p + 1) / pieces)]
            return (order[p], nodes(covering: slice, total: total))
        }
    }

    /// Tree nodes covering `chunks` (sorted), run by run of consecutive chunks.
    static func nodes(covering chunks: ArraySlice<Int>, total: Int) -> [Range<Int>] {
        var nodes: [Range<Int>] = []
        var runStart = chunks.first!
        var previous = runStart
        for c in chunks.dropFirst() {
            if c != previous + 1 {
                nodes += ReductionTree.cover(first: runStart, count: previous - runStart + 1, total: total)
                runStart = c
            }
            previous = c
        }
        nodes += ReductionTree.cover(first: runStart, count: previous - runStart + 1, total: total)
        return nodes
    }
}
