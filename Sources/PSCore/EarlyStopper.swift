/// The early-stopping rule as a pure state machine: feed it each epoch's monitored value, it says
/// whether that epoch is the new best and whether to stop. Keras semantics: an epoch improves when
/// it beats the best by more than `minDelta`; training stops once `patience` epochs in a row did not
/// improve (patience 0 stops at the first epoch that does not).
public struct EarlyStopper: Equatable, Sendable {
    public let spec: EarlyStoppingSpec
    /// Best value seen so far and its 1-based epoch.
    public private(set) var best: Double?
    public private(set) var bestEpoch: Int = 0
    /// Epochs since the last improvement.
    public private(set) var wait = 0

    public init(spec: EarlyStoppingSpec) {
        self.spec = spec
    }

    /// The state a checkpoint saved (`state`), to go on where that run left off.
    public init(spec: EarlyStoppingSpec, restoring saved: Checkpoint.StopperState) {
        self.spec = spec
        best = saved.best
        bestEpoch = saved.bestEpoch
        wait = saved.wait
    }

    /// What a checkpoint saves of this rule.
    public var state: Checkpoint.StopperState { Checkpoint.StopperState(best: best, bestEpoch: bestEpoch, wait: wait) }

    public struct Decision: Equatable, Sendable {
        public var improved: Bool
        public var stop: Bool
    }

    /// Records `value` for 1-based `epoch`. A NaN never improves.
    public mutating func observe(epoch: Int, value: Double) -> Decision {
        let improved: Bool
        if let best {
            improved = spec.monitor.higherIsBetter
                ? value - spec.minDelta > best
                : value + spec.minDelta < best
        } else {
            improved = !value.isNaN
        }
        if improved {
            best = value
            bestEpoch = epoch
            wait = 0
            return Decision(improved: true, stop: false)
        }
        wait += 1
        return Decision(improved: false, stop: wait >= spec.patience)
    }
}
