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
    /// One gradient buffer per tree depth (a node's left result waits there while its right is computed).
    private var buffers: [UnsafeMutablePointer<Float>] = []

    /// `chunkCapacity`: the largest chunk in samples (`ceil(batchSize / chunks)`).
    public init(network: Network, chunkCapacity: Int) {
        self.network = network
        workspace = Workspace(network: network, capacity: max(chunkCapacity, 1))
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
    public func reduceNode(first: Int, count: Int, totalChunks: Int, parameters: UnsafePointer<Float>,
                           dataset: Dataset, step: Int, dropoutSeed: UInt64,
                           chunkIndices: (Int) -> UnsafeBufferPointer<Int32>,
                           into out: UnsafeMutablePointer<Float>) -> ChunkStats {
        precondition(ReductionTree.isNode(first: first, count: count, total: totalChunks),
                     "chunks \(first)..<\(first + count) are not a node of the tree over \(totalChunks)")
        return dataset.features.withUnsafeBufferPointer { features in
            reduce(first: first, count: count, depth: 0, into: out) { c, gradient in
                network.gradientSum(parameters: parameters,
                                    chunk: ChunkInput(features: features.baseAddress!, width: dataset.width,
                                                      targets: dataset.targets, indices: chunkIndices(c)),
                                    dropoutSeed: dropoutSeed, step: step, gradient: gradient, workspace: workspace)
            }
        }
    }

    /// Post-order walk of the node: left child into `out`, right child into a buffer one level
    /// deeper, then `out += right`. Statistics combine in the same order.
    private func reduce(first: Int, count: Int, depth: Int, into out: UnsafeMutablePointer<Float>,
                        leaf: (Int, UnsafeMutablePointer<Float>) -> ChunkStats) -> ChunkStats {
        if count == 1 {
            return leaf(first, out)
        }
        let left = ReductionTree.leftCount(count)
        let leftStats = reduce(first: first, count: left, depth: depth + 1, into: out, leaf: leaf)
        let right = buffer(depth: depth)
        let rightStats = reduce(first: first + left, count: count - left, depth: depth + 1, into: right, leaf: leaf)
        VectorMath.add(out, right, count: network.parameterCount)
        return leftStats + rightStats
    }

    /// Forward-only statistics of a whole dataset (no dropout), in evaluation chunks combined in tree
    /// order, so the local trainer and the cluster's workers report the same bits.
    public static func evaluate(network: Network, parameters: [Float], dataset: Dataset,
                                workspace: Workspace) -> ChunkStats {
        let ranges = ChunkPlan.evaluationRanges(count: dataset.count)
        if ranges.isEmpty { return ChunkStats() }
        let all = (0..<Int32(dataset.count)).map { $0 }
        let leaves: [ChunkStats] = parameters.withUnsafeBufferPointer { p in
            dataset.features.withUnsafeBufferPointer { f in
                all.withUnsafeBufferPointer { indices in
                    ranges.map { r in
                        network.evaluate(parameters: p.baseAddress!,
                                         chunk: ChunkInput(features: f.baseAddress!, width: dataset.width,
                                                           targets: dataset.targets,
                                                           indices: UnsafeBufferPointer(rebasing: indices[r])),
                                         workspace: workspace)
                    }
                }
            }
        }
        return ReductionTree.reduce(leaves, +)
    }
}
