import PSCore
import PSMath

/// A job's parameters as key ranges of the flat vector, each with its own optimizer: what a server
/// shard owns. The update rules are element-wise, so splitting the vector into any number of ranges
/// gives bitwise the same result; the mean and the clipping norm are taken over the whole gradient
/// first, exactly as the local trainer does.
public struct ParameterStore: Sendable {
    public struct Shard: Sendable {
        public let range: Range<Int>
        public var optimizer: Optimizer
    }

    public private(set) var parameters: [Float]
    public private(set) var shards: [Shard]
    /// Updates applied so far.
    public private(set) var version = 0
    let clipNorm: Float?

    /// Splits `parameters` into `shardCount` near-equal key ranges.
    public init(parameters: [Float], optimizer: OptimizerSpec, shardCount: Int = 1) {
        precondition(shardCount >= 1 && shardCount <= max(parameters.count, 1), "bad shard count \(shardCount)")
        self.parameters = parameters
        clipNorm = optimizer.clipNorm
        let n = parameters.count
        shards = (0..<shardCount).map { s in
            let range = (n * s / shardCount)..<(n * (s + 1) / shardCount)
            return Shard(range: range, optimizer: Optimizer(config: optimizer.config, count: range.count))
        }
    }

    /// Applies one step from a gradient **sum** over `batchCount` samples (consumed as scratch space):
    /// mean over the batch, optional clipping to the whole vector's norm, then each shard's optimizer.
    public mutating func apply(gradientSum gradient: inout [Float], batchCount: Int) {
        precondition(gradient.count == parameters.count, "gradient length \(gradient.count) != \(parameters.count)")
        let n = gradient.count
        gradient.withUnsafeMutableBufferPointer { g in
            GradientMath.mean(g.baseAddress!, count: n, batchSize: batchCount)
            if let clipNorm {
                GradientMath.clip(g.baseAddress!, count: n, maxNorm: clipNorm)
            }
            parameters.withUnsafeMutableBufferPointer { p in
                for s in shards.indices {
                    let r = shards[s].range
                    shards[s].optimizer.step(parameters: p.baseAddress! + r.lowerBound,
                                             gradient: UnsafePointer(g.baseAddress! + r.lowerBound))
                }
            }
        }
        version += 1
    }

    /// Replaces the parameters (restoring the best epoch's weights); the optimizer state is kept.
    public mutating func restore(_ saved: [Float], version: Int) {
        precondition(saved.count == parameters.count, "restored vector has the wrong length")
        parameters = saved
        self.version = version
    }
}
