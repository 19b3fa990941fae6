import PSCore
import PSData
import PSMath

/// Computes gradient sums of batch chunks and adds them in the fixed reduction-tree order. The local
/// trainer runs every chunk of a step through one engine; a worker runs only its assigned chunks.
/// Either way each chunk's bits and each node's sum are the same, which is what makes the cluster's
/// result equal the local trainer's.
public final class StepEngine {
    public let network: Network
    let workspace: Workspace
    /// `network.layout.pushRanges`, computed once.
    private let pushRanges: [Range<Int>]
    /// One gradient buffer per tree depth (a node's left result waits there while its right is computed).
    private var buffers: [UnsafeMutablePointer<Float>] = []

    /// `chunkCapacity`: the largest chunk in samples (`ceil(batchSize / chunks)`).
    public init(network: Network, chunkCapacity: Int) {
        self.network = network
        workspace = Workspace(network: network, capacity: max(chunkCapacity, 1))
        pushRanges = network.layout.pushRanges
    }

    deinit {
        for b in buffers { b.deallocate() }
    }

    private func buffer(depth: Int) -> UnsafeMutablePointer<Float> {
        while buffers.count <= depth {
            buffers.append(.allocate(capacity: network.parameterCount))
        }
        return buffers[depth]
    }

    /// Sum of the gradients of chunks `first ..< first + count` of the batch, added in tree order,
    /// written to `out`. The range must be a node of the tree over `totalChunks` (see
    /// `ReductionTree.isNode`). `chunkIndices(c)` gives chunk `c`'s dataset indices.
    ///
    /// `rangeDone(r, stats)`, when given, is called as soon as `out[r]` holds its final sum, once for
    /// each push range (`ParameterLayout.pushRanges`), last first, with the node's statistics: while
    /// the node's last chunk runs backward, a range's tree additions are done as soon as its layers
    /// are, so that a worker sends it while the earlier layers still compute. Every element is added
    /// in the same order either way, so `out` is bitwise the same with or without it.
    public func reduceNode(first: Int, count: Int, totalChunks: Int, parameters: UnsafePointer<Float>,
                           dataset: Dataset, step: Int, dropoutSeed: UInt64,
                           chunkIndices: (Int) -> UnsafeBufferPointer<Int32>,
                           into out: UnsafeMutablePointer<Float>,
                           rangeDone: ((Range<Int>, ChunkStats) -> Void)? = nil) -> ChunkStats {
        precondition(ReductionTree.isNode(first: first, count: count, total: totalChunks),
                     "chunks \(first)..<\(first + count) are not a node of the tree over \(totalChunks)")
        return dataset.features.withUnsafeBufferPointer { features in
            reduce(first: first, count: count, depth: 0, into: out, spine: rangeDone.map { _ in [] }) { c, gradient, layerDone in
                network.gradientSum(parameters: parameters,
                                    chunk: ChunkInput(features: features.baseAddress!, width: dataset.width,
                                                      targets: dataset.targets, indices: chunkIndices(c)),
                                    dropoutSeed: dropoutSeed, step: step, gradient: gradient, workspace: workspace,
                                    layerDone: layerDone)
            } finished: { range, stats in
                rangeDone?(range, stats)
            }
        }
    }

    /// An addition a node on the right spine still owes once its last leaf is done:
    /// `target += source`, and its left subtree's statistics to add in front of the right's.
    private typealias Owed = (target: UnsafeMutablePointer<Float>, source: UnsafeMutablePointer<Float>, left: ChunkStats)

    /// Post-order walk of the node: left child into `out`, right child into a buffer one level
    /// deeper, then `out += right`. Statistics combine in the same order.
    ///
    /// `spine` (non-nil when ranges are reported) holds what the ancestors whose right spine this
    /// subtree is still owe, deepest first. The node's last leaf pays it range by range as its
    /// backward pass finishes each layer, and reports each range.
    private func reduce(first: Int, count: Int, depth: Int, into out: UnsafeMutablePointer<Float>, spine: [Owed]?,
                        leaf: (Int, UnsafeMutablePointer<Float>, ((Int, ChunkStats) -> Void)?) -> ChunkStats,
                        finished: (Range<Int>, ChunkStats) -> Void) -> ChunkStats {
        if count == 1 {
            guard let spine else { return leaf(first, out, nil) }
            let ranges = pushRanges
            var done = [Bool](repeating: false, count: ranges.count)
            func finish(_ g: Int, _ leafStats: ChunkStats) {
                let r = ranges[g]
                var stats = leafStats
                for owed in spine {
                    VectorMath.add(owed.target + r.lowerBound, owed.source + r.lowerBound, count: r.count)
                    stats = owed.left + stats
                }
                done[g] = true
                finished(r, stats)
            }
            let layout = network.layout
            let stats = withoutActuallyEscaping(finish) { finish in
                leaf(first, out) { l, s in
                    // A range is final once its first layer is (backward runs from the last layer down).
                    if let g = ranges.firstIndex(where: { $0.lowerBound == layout.layers[l].weightOffset }) { finish(g, s) }
                }
            }
            // An empty chunk reports no layers: its zeros are final now.
            for g in stride(from: ranges.count - 1, through: 0, by: -1) where !done[g] { finish(g, stats) }
            return stats
        }
        let left = ReductionTree.leftCount(count)
        // The left subtree is whole before the right one starts: it adds whole vectors.
        let leftStats = reduce(first: first, count: left, depth: depth + 1, into: out,
                               spine: nil, leaf: leaf, finished: { _, _ in })
        let right = buffer(depth: depth)
        let rightStats = reduce(first: first + left, count: count - left, depth: depth + 1, into: right,
                                spine: spine.map { [(out, right, leftStats)] + $0 }, leaf: leaf, finished: finished)
        if spine == nil {
            VectorMath.add(out, right, count: network.parameterCount)
        }
        return leftStats + rightStats
    }
}
