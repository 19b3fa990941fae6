import PSCore
import PSData
import PSMath

/// The one forward-only loop over a dataset: evaluation chunks of `ChunkPlan.evaluationChunkSamples`
/// rows, no dropout, combined in tree order. The local trainer, the cluster's workers (one subtree of
/// chunks each), `psctl evaluate` and `psctl predict` all run through it, so they report the same bits.
public enum Evaluation {
    /// Runs evaluation chunks `chunks` (indices into `ChunkPlan.evaluationRanges(count:)`) of
    /// `count` rows in order, calling `body` with each chunk's row range and statistics while the
    /// chunk's outputs are still in `workspace` (`Workspace.outputs`).
    public static func forEachChunk(network: Network, parameters: UnsafeBufferPointer<Float>,
                                    features: UnsafeBufferPointer<Float>, width: Int, targets: Targets,
                                    count: Int, chunks: Range<Int>? = nil, workspace: Workspace,
                                    _ body: (Range<Int>, ChunkStats) -> Void) {
        let ranges = ChunkPlan.evaluationRanges(count: count)
        let selected = chunks ?? 0..<ranges.count
        precondition(selected.lowerBound >= 0 && selected.upperBound <= ranges.count,
                     "evaluation chunks \(selected) of \(ranges.count)")
        if selected.isEmpty { return }
        let all = (0..<Int32(count)).map { $0 }
        all.withUnsafeBufferPointer { indices in
            for r in ranges[selected] {
                let chunk = ChunkInput(features: features.baseAddress!, width: width, targets: targets,
                                       indices: UnsafeBufferPointer(rebasing: indices[r]))
                body(r, network.evaluate(parameters: parameters.baseAddress!, chunk: chunk, workspace: workspace))
            }
        }
    }

    /// Statistics of evaluation chunks `chunks` of `dataset` (all of them when nil), combined in
    /// tree order: a worker's subtree, or the whole dataset.
    public static func stats(network: Network, parameters: UnsafeBufferPointer<Float>, dataset: Dataset,
                             chunks: Range<Int>? = nil, workspace: Workspace) -> ChunkStats {
        var leaves = [ChunkStats]()
        dataset.features.withUnsafeBufferPointer { f in
            forEachChunk(network: network, parameters: parameters, features: f, width: dataset.width,
                         targets: dataset.targets, count: dataset.count, chunks: chunks,
                         workspace: workspace) { _, s in leaves.append(s) }
        }
        return leaves.isEmpty ? ChunkStats() : ReductionTree.reduce(leaves, +)
    }

    /// Statistics of the whole of `dataset`.
    public static func stats(network: Network, parameters: [Float], dataset: Dataset,
                             workspace: Workspace) -> ChunkStats {
        parameters.withUnsafeBufferPointer {
            stats(network: network, parameters: $0, dataset: dataset, workspace: workspace)
        }
    }
}
