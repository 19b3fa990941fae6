/// The fixed shape in which chunk results are added (DESIGN.md §3). Over `n` leaves the root splits
/// at the largest power of two below `n`, and so on recursively: for 6 leaves
/// `((c0+c1)+(c2+c3)) + (c4+c5)`. Every node therefore covers an aligned range, the shape depends on
/// nothing but `n`, and floating-point sums come out bitwise the same wherever the leaves were computed.
public enum ReductionTree {
    /// Leaves in the left child of a node covering `count` leaves (`count ≥ 2`).
    public static func leftCount(_ count: Int) -> Int {
        precondition(count >= 2, "a node with \(count) leaves has no children")
        var p = 1
        while p * 2 < count { p *= 2 }
        return p
    }

    /// Adds `leaves` in tree order with `combine(left, right)`.
    public static func reduce<T>(_ leaves: [T], _ combine: (T, T) -> T) -> T {
        precondition(!leaves.isEmpty, "nothing to reduce")
        return reduce(leaves, first: 0, count: leaves.count, combine)
    }

    private static func reduce<T>(_ leaves: [T], first: Int, count: Int, _ combine: (T, T) -> T) -> T {
        if count == 1 { return leaves[first] }
        let left = leftCount(count)
        return combine(reduce(leaves, first: first, count: left, combine),
                       reduce(leaves, first: first + left, count: count - left, combine))
    }

    /// Whether the leaves `first ..< first + count` form one node of the tree over `total` leaves.
    public static func isNode(first: Int, count: Int, total: Int) -> Bool {
        guard count >= 1, first >= 0, first + count <= total else { return false }
        var lo = 0
        var n = total
        while true {
            if lo == first && n == count { return true }
            if n == 1 { return false }
            let left = leftCount(n)
            if first + count <= lo + left {
                n = left
            } else if first >= lo + left {
                lo += left
                n -= left
            } else {
                return false
            }
        }
    }

    /// The largest nodes that exactly cover `first ..< first + count` (an assignment of consecutive
    /// chunks), in leaf order. A worker reduces each locally and pushes one tensor per node.
    public static func cover(first: Int, count: Int, total: Int) -> [Range<Int>] {
        precondition(first >= 0 && count >= 0 && first + count <= total, "range outside the tree")
        var out: [Range<Int>] = []
        func visit(_ lo: Int, _ n: Int) {
            let hi = lo + n
            if hi <= first || lo >= first + count { return }
            if lo >= first && hi <= first + count {
                out.append(lo..<hi)
                return
            }
            let left = leftCount(n)
            visit(lo, left)
            visit(lo + left, n - left)
        }
        if count > 0 { visit(0, total) }
        return out
    }
}

/// How a batch is cut into chunks, and how an evaluation set is cut into evaluation chunks.
public enum ChunkPlan {
    /// `chunks` consecutive ranges of `batchSize` positions; the first `batchSize % chunks` get one more.
    /// Chunks are empty only when the batch is smaller than the chunk count (the last batch of an epoch).
    public static func ranges(batchSize: Int, chunks: Int) -> [Range<Int>] {
        precondition(batchSize >= 0 && chunks >= 1, "bad chunk plan")
        let base = batchSize / chunks
        let extra = batchSize % chunks
        var out: [Range<Int>] = []
        var start = 0
        for c in 0..<chunks {
            let size = base + (c < extra ? 1 : 0)
            out.append(start..<(start + size))
            start += size
        }
        return out
    }

    /// Samples per evaluation chunk: large enough that GEMMs run efficiently, small enough that a
    /// worker's buffers stay a few MiB for the example model.
    public static let evaluationChunkSamples = 1_000

    /// Evaluation chunks over `count` samples, in order.
    public static func evaluationRanges(count: Int) -> [Range<Int>] {
        stride(from: 0, to: count, by: evaluationChunkSamples).map { $0..<min($0 + evaluationChunkSamples, count) }
    }

    /// Steps in an epoch of `count` samples (the last batch may be smaller).
    public static func stepsPerEpoch(count: Int, batchSize: Int) -> Int {
        (count + batchSize - 1) / batchSize
    }
}
