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
    /// The batch-mean gradient of the step being applied (owned here, so it is written in place).
    private var mean: [Float]
    /// Parameters updated so far by the parts of a step not yet ended (`applyPart`).
    private var partApplied = 0
    /// The parameters a checked step overwrote (`undoRanges`: the parts applied so far this step), to
    /// put back if it turns out non-finite. Kept between steps so a step costs a copy, not an allocation.
    private var undoParameters: [Float] = []
    private var undoRanges: [Range<Int>] = []
    /// Set once a checked step was not finite: its optimizer state is not put back (training ends
    /// there, under `on_non_finite` fail or stop, so nothing reads it), and no step may follow.
    public private(set) var rejectedStep = false

    /// Threads that apply an update (the mean and each shard's optimizer, in blocks); any count gives
    /// bitwise the same parameters.
    public var updateThreads: Int

    /// Splits `parameters` into `shardCount` near-equal key ranges.
    public init(parameters: [Float], optimizer: OptimizerSpec, shardCount: Int = 1, updateThreads: Int = 1) {
        precondition(updateThreads >= 1, "bad update thread count \(updateThreads)")
        self.updateThreads = updateThreads
        precondition(shardCount >= 1 && shardCount <= max(parameters.count, 1), "bad shard count \(shardCount)")
        self.parameters = parameters
        mean = [Float](repeating: 0, count: parameters.count)
        clipNorm = optimizer.clipNorm
        let n = parameters.count
        shards = (0..<shardCount).map { s in
            let range = (n * s / shardCount)..<(n * (s + 1) / shardCount)
            return Shard(range: range, optimizer: Optimizer(config: optimizer.config, count: range.count))
        }
    }

    /// Applies one step from a gradient **sum** over `batchCount` samples (read, never modified):
    /// mean over the batch, optional clipping to the whole vector's norm, then each shard's optimizer.
    public mutating func apply(gradientSum: [Float], batchCount: Int) {
        apply(gradientSum: FloatData(gradientSum), batchCount: batchCount)
    }

    /// The same, from a gradient sum that may be a view of a received frame (a single worker's push).
    /// Without clipping, each optimizer divides the sum by the batch size as it reads it (one pass over
    /// memory instead of two, the same division); clipping needs the whole mean's norm first.
    public mutating func apply(gradientSum: FloatData, batchCount: Int) {
        precondition(gradientSum.count == parameters.count, "gradient length \(gradientSum.count) != \(parameters.count)")
        let n = gradientSum.count
        if let clipNorm {
            mean.withUnsafeMutableBufferPointer { g in
                gradientSum.withUnsafeBytes {
                    GradientMath.mean($0.baseAddress!, into: g.baseAddress!, count: n, batchSize: batchCount,
                                      threads: updateThreads)
                }
                GradientMath.clip(g.baseAddress!, count: n, maxNorm: clipNorm)
            }
            let clipped = mean
            clipped.withUnsafeBytes { step(gradient: $0.baseAddress!, divisor: 1) }
        } else {
            gradientSum.withUnsafeBytes { step(gradient: $0.baseAddress!, divisor: Float(batchCount)) }
        }
        version += 1
    }

    /// `apply`, checked: when the new parameters are not all finite the step is not kept: the
    /// parameters and version are put back, and the answer says why: `.gradient` when the gradient sum
    /// held a NaN or ±inf, `.update` when a finite gradient's update overflowed. nil: applied, bitwise
    /// as `apply`. A non-finite gradient always makes some parameter non-finite (NaN and ±inf survive
    /// every rule and clipping), so the hot path reads the new parameters once and copies the old ones
    /// once; the gradient is read only to name the cause.
    public mutating func applyChecked(gradientSum: FloatData, batchCount: Int) -> NonFiniteStep.Value? {
        let whole = 0..<parameters.count
        saveUndo(whole)
        let steps = shards.map(\.optimizer.stepCount)
        apply(gradientSum: gradientSum, batchCount: batchCount)
        if parametersFinite(whole) {
            undoRanges = []
            return nil
        }
        restoreUndo()
        for s in shards.indices { shards[s].optimizer.stepCount = steps[s] }
        version -= 1
        rejectedStep = true
        let finite = gradientSum.withUnsafeBytes { VectorMath.allFinite($0.baseAddress!, count: gradientSum.count) }
        return finite ? .update : .gradient
    }

    /// `applyPart`, checked as `applyChecked` checks a whole step. On an answer (the part's new values
    /// are not all finite) the caller calls `abandonStep()`, which puts back every part applied this step.
    public mutating func applyPartChecked(_ range: Range<Int>, gradientSum: UnsafeRawPointer, batchCount: Int) -> NonFiniteStep.Value? {
        saveUndo(range)
        applyPart(range, gradientSum: gradientSum, batchCount: batchCount)
        if parametersFinite(range) { return nil }
        return VectorMath.allFinite(gradientSum, count: range.count) ? .update : .gradient
    }

    /// Puts back the parameters of the parts of the current step applied so far (by
    /// `applyPartChecked`): they are the last step's again, and the step is not counted.
    public mutating func abandonStep() {
        restoreUndo()
        partApplied = 0
        rejectedStep = true
    }

    private func parametersFinite(_ range: Range<Int>) -> Bool {
        parameters.withUnsafeBytes { VectorMath.allFinite($0.baseAddress! + range.lowerBound * 4, count: range.count) }
    }

    private mutating func saveUndo(_ range: Range<Int>) {
        precondition(!rejectedStep, "a step after one that was not finite")
        if undoParameters.count != parameters.count { undoParameters = [Float](repeating: 0, count: parameters.count) }
        VectorMath.copy(range, from: parameters, to: &undoParameters)
        undoRanges.append(range)
    }

    private mutating func restoreUndo() {
        for range in undoRanges { VectorMath.copy(range, from: undoParameters, to: &parameters) }
        undoRanges = []
    }

    /// Each shard's optimizer over its key range of `gradient` (float32, any alignment) ÷ `divisor`.
    private mutating func step(gradient: UnsafeRawPointer, divisor: Float) {
        precondition(partApplied == 0, "a whole step while a step applied in parts is unfinished")
        let threads = updateThreads
        parameters.withUnsafeMutableBufferPointer { p in
            for s in shards.indices {
                let r = shards[s].range
                shards[s].optimizer.step(parameters: p.baseAddress! + r.lowerBound,
                                         gradient: gradient + r.lowerBound * MemoryLayout<Float>.stride,
                                         gradientDivisor: divisor, threads: threads)
            }
        }
    }

    /// Whether a step can be applied a key range at a time, as its gradient arrives: only without
    /// clipping, whose norm needs the whole gradient first.
    public var appliesInParts: Bool { clipNorm == nil }

    /// Applies the coming step to the key range `range` from its gradient **sum** over `batchCount`
    /// samples (`gradientSum` points at the range's first value, float32 of any alignment). Call it for
    /// ranges that together cover the vector once, in any order, then `endStep()`. The parameters are
    /// bitwise those of one `apply` with the whole sum: every rule is element-wise.
    public mutating func applyPart(_ range: Range<Int>, gradientSum: UnsafeRawPointer, batchCount: Int) {
        precondition(appliesInParts, "a clipped step needs the whole gradient (apply(gradientSum:batchCount:))")
        precondition(range.lowerBound >= 0 && range.upperBound <= parameters.count, "part \(range) outside the parameters")
        let threads = updateThreads
        let divisor = Float(batchCount)
        parameters.withUnsafeMutableBufferPointer { p in
            for s in shards.indices {
                let r = shards[s].range.clamped(to: range)
                if r.isEmpty { continue }
                let local = (r.lowerBound - shards[s].range.lowerBound)..<(r.upperBound - shards[s].range.lowerBound)
                shards[s].optimizer.stepPart(local, parameters: p.baseAddress! + r.lowerBound,
                                             gradient: gradientSum + (r.lowerBound - range.lowerBound) * MemoryLayout<Float>.stride,
                                             gradientDivisor: divisor, threads: threads)
            }
        }
        partApplied += range.count
    }

    /// Ends a step applied in parts; the parts must have covered every parameter exactly once.
    public mutating func endStep() {
        precondition(partApplied == parameters.count, "parts covered \(partApplied) of \(parameters.count) parameters")
        for s in shards.indices { shards[s].optimizer.endStep() }
        partApplied = 0
        undoRanges = []
        version += 1
    }

    /// The optimizer's state over the whole vector: its step count and each slot (`OptimizerRule.slotNames`)
    /// with the shards' ranges put together, so a checkpoint does not depend on the shard count.
    public var optimizerState: (steps: Int, slots: [[Float]]) {
        let slotCount = shards.first?.optimizer.slots.count ?? 0
        let slots = (0..<slotCount).map { k in shards.flatMap { $0.optimizer.slots[k] } }
        return (shards.first?.optimizer.stepCount ?? 0, slots)
    }

    /// Puts back what a checkpoint saved: parameters, version and the optimizer's state for the whole
    /// vector (split over this store's shards, whatever their count was when it was saved).
    public mutating func restore(parameters saved: [Float], version: Int, optimizerSteps: Int, slots: [[Float]]) {
        precondition(saved.count == parameters.count, "restored vector has the wrong length")
        precondition(partApplied == 0, "restoring in the middle of a step applied in parts")
        parameters = saved
        self.version = version
        for s in shards.indices {
            let r = shards[s].range
            shards[s].optimizer.slots = slots.map { Array($0[r]) }
            shards[s].optimizer.stepCount = optimizerSteps
        }
    }

    /// Replaces the parameters (restoring the best epoch's weights); the optimizer state is kept.
    public mutating func restore(_ saved: [Float], version: Int) {
        precondition(saved.count == parameters.count, "restored vector has the wrong length")
        precondition(partApplied == 0, "restoring in the middle of a step applied in parts")
        parameters = saved
        self.version = version
    }
}
