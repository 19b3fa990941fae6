import PSCore
import PSMath

/// Results for the nodes of one reduction tree as they arrive (from workers, in any order), combined
/// in tree order once they cover every leaf. Because each node's result is itself a tree-ordered sum,
/// the combination is bitwise the sum the local trainer computes over all leaves.
public struct NodeCollector<Payload> {
    /// Leaves of the tree (chunks of a batch, or evaluation chunks).
    public let total: Int
    public private(set) var nodes: [Range<Int>: (payload: Payload, stats: ChunkStats)] = [:]
    /// Leaves covered by received nodes.
    public private(set) var covered = 0

    public init(total: Int) {
        precondition(total >= 1, "a tree needs at least one leaf")
        self.total = total
    }

    public var isComplete: Bool { covered == total }

    /// Whether `range` has already been received.
    public func contains(_ range: Range<Int>) -> Bool { nodes[range] != nil }

    /// Stores a node's result. The caller has checked that `range` is a node of this tree and that it
    /// overlaps nothing received (assignments never overlap), so the node is new.
    public mutating func insert(_ range: Range<Int>, payload: Payload, stats: ChunkStats) {
        precondition(ReductionTree.isNode(first: range.lowerBound, count: range.count, total: total),
                     "\(range) is not a node of the tree over \(total) leaves")
        precondition(nodes[range] == nil, "node \(range) received twice")
        nodes[range] = (payload, stats)
        covered += range.count
    }

    /// Forgets a received node (its sender's other results will not come, and its chunks are
    /// recomputed, perhaps split differently).
    public mutating func remove(_ range: Range<Int>) {
        if nodes.removeValue(forKey: range) != nil { covered -= range.count }
    }

    /// The whole tree's result: `add(left, right)` at every internal node, in post-order. `add`
    /// returns a new value rather than mutating its left argument, because a received tensor may still
    /// be referenced by the message it came in, and mutating it would copy a megabyte on write.
    public func combine(_ add: (Payload, Payload) -> Payload) -> (payload: Payload, stats: ChunkStats) {
        precondition(isComplete, "combining an incomplete tree (\(covered) of \(total) leaves)")
        func walk(_ lo: Int, _ n: Int) -> (Payload, ChunkStats) {
            if let node = nodes[lo..<(lo + n)] { return node }
            let left = ReductionTree.leftCount(n)
            let (a, sa) = walk(lo, left)
            let (b, sb) = walk(lo + left, n - left)
            return (add(a, b), sa + sb)
        }
        return walk(0, total)
    }
}

extension NodeCollector where Payload == FloatData {
    /// The same sums written into `buffers` (one per internal node, in post-order, grown as needed)
    /// instead of fresh arrays, so that a server reuses them step after step. The result refers to
    /// one of them: let it go before the next call, or that call's writes copy the buffer first.
    public func combinedGradient(reusing buffers: inout [[Float]]) -> (payload: FloatData, stats: ChunkStats) {
        var next = 0
        return combine { a, b in
            let n = a.count
            precondition(b.count == n, "gradient lengths \(n) and \(b.count) differ")
            if next == buffers.count { buffers.append([]) }
            if buffers[next].count != n { buffers[next] = [Float](repeating: 0, count: n) }
            buffers[next].withUnsafeMutableBufferPointer { out in
                a.withUnsafeBytes { pa in
                    b.withUnsafeBytes { VectorMath.sum(pa.baseAddress!, $0.baseAddress!, into: out.baseAddress!, count: n) }
                }
            }
            defer { next += 1 }
            return FloatData(buffers[next])
        }
    }

    /// Gradient sums combine by element-wise addition, each internal node into a fresh buffer (the
    /// same additions as adding in place, with no copy of an input). Received gradients are read where
    /// they lie in their frames.
    public func combinedGradient() -> (payload: FloatData, stats: ChunkStats) {
        var buffers: [[Float]] = []
        return combinedGradient(reusing: &buffers)
    }
}
