import PSCore
import PSMath

/// Epoch-end bookkeeping shared by the local trainer and the cluster's coordinator: epoch figures,
/// early stopping, the best weights, and the final summary. Both feed it the same reduced sums in the
/// same order, so both take the same decisions and report the same figures.
public struct TrainingLedger: Sendable {
    public let spec: JobSpec
    public private(set) var history: [EpochReport] = []
    private var stopper: EarlyStopper?
    /// Without early stopping the best epoch is still reported, by validation loss.
    private var tracker = EarlyStopper(spec: EarlyStoppingSpec(monitor: .valLoss, patience: Int.max))
    /// The best epoch's parameters, kept only when early stopping restores them.
    public private(set) var bestParameters: [Float]?
    /// Version (updates applied) of `bestParameters`.
    public private(set) var bestVersion = 0

    public init(spec: JobSpec) {
        self.spec = spec
        stopper = spec.earlyStopping.map(EarlyStopper.init)
    }

    /// The ledger a checkpoint saved (`Checkpoint.problem` has checked it fits `spec`). The best weights
    /// themselves stay with their holder (`bestParameters` is `[]` when `hasBest`, as in the cluster).
    public init(spec: JobSpec, restoring c: Checkpoint) {
        self.spec = spec
        history = c.history
        stopper = spec.earlyStopping.map { EarlyStopper(spec: $0, restoring: c.stopper ?? $0.initialState) }
        tracker = EarlyStopper(spec: tracker.spec, restoring: c.tracker)
        bestParameters = c.hasBest ? [] : nil
        bestVersion = c.bestVersion
    }

    /// What a checkpoint saves of the ledger (besides `history`): the early-stopping rule's and the
    /// tracker's state, whether best weights are kept and their version.
    public var saved: (stopper: Checkpoint.StopperState?, tracker: Checkpoint.StopperState, hasBest: Bool, bestVersion: Int) {
        (stopper?.state, tracker.state, bestParameters != nil, bestVersion)
    }

    /// Records epoch `epoch` (1-based). `validation` is nil when the job has no validation data.
    /// `parameters` and `version` are the weights at the end of the epoch. `stop`: training stops after
    /// this epoch whatever early stopping says (a step that was not finite ended it).
    public mutating func endEpoch(_ epoch: Int, train: ChunkStats, validation: ChunkStats?,
                                  seconds: Double, parameters: [Float], version: Int, stop: Bool = false) -> EpochReport {
        let classification = spec.loss.isClassification
        let n = Double(max(train.samples, 1))
        var report = EpochReport(epoch: epoch, trainLoss: train.lossSum / n,
                                 trainAccuracy: classification ? Double(train.correct) / n : nil,
                                 validationLoss: nil, validationAccuracy: nil,
                                 samplesPerSecond: Double(train.samples) / max(seconds, 1e-9), seconds: seconds,
                                 improved: true, bestEpoch: epoch, stopEarly: false)
        if let v = validation {
            let m = Double(max(v.samples, 1))
            report.validationLoss = v.lossSum / m
            report.validationAccuracy = classification ? Double(v.correct) / m : nil
            if var s = stopper {
                let value = s.spec.monitor == .valLoss ? report.validationLoss! : report.validationAccuracy ?? .nan
                let decision = s.observe(epoch: epoch, value: value)
                report.improved = decision.improved
                report.bestEpoch = s.bestEpoch
                report.stopEarly = decision.stop
                stopper = s
            } else {
                report.improved = tracker.observe(epoch: epoch, value: report.validationLoss!).improved
                report.bestEpoch = tracker.bestEpoch
            }
            if keepsWeights(of: report) {
                bestParameters = parameters
                bestVersion = version
            }
        }
        if stop { report.stopEarly = true }
        history.append(report)
        return report
    }

    /// The weights a job that failed on a non-finite step keeps (`NonFinitePolicy.fail`): the best
    /// epoch's when early stopping restores them and an epoch was recorded, else the current (last
    /// good) ones. `epoch` is the kept weights' epoch when they are an epoch's, nil for the current ones.
    public func keptAfterFailure(currentVersion: Int) -> (version: Int, epoch: Int?) {
        if bestParameters != nil, let last = history.last { return (bestVersion, last.bestEpoch) }
        return (currentVersion, nil)
    }

    /// The summary of a job that failed on a non-finite step: the epochs recorded so far, the training
    /// loss of the steps applied since (`partial`; the last epoch's when none was), and the validation
    /// figures of the kept epoch, if the kept weights are an epoch's. No test figures: nothing is evaluated.
    public func failureSummary(partial: ChunkStats, keptEpoch: Int?, samplesPerSecond: Double) -> TrainingSummary {
        let trainLoss = partial.samples > 0 ? partial.lossSum / Double(partial.samples) : history.last?.trainLoss ?? 0
        let kept = keptEpoch.map { history[$0 - 1] }
        return TrainingSummary(epochsRun: history.count, bestEpoch: history.last?.bestEpoch ?? 0, stoppedEarly: false,
                               trainLoss: trainLoss, validationLoss: kept?.validationLoss,
                               validationAccuracy: kept?.validationAccuracy, samplesPerSecond: samplesPerSecond)
    }

    /// Whether training is over after the epochs recorded so far.
    public var finished: Bool {
        guard let last = history.last else { return false }
        return last.stopEarly || last.epoch >= spec.training.epochs
    }

    /// Whether the weights at the end of `report`'s epoch are the best so far and early stopping will
    /// restore the best: the caller that holds the weights elsewhere (the parameter shard) keeps them.
    public func keepsWeights(of report: EpochReport) -> Bool {
        report.validationLoss != nil && report.improved && spec.earlyStopping?.restoreBest == true
    }

    /// The weights to keep once training is over: the best epoch's when early stopping restores them
    /// and the best epoch is not the last, else `current`.
    public func keptParameters(current: [Float], currentVersion: Int) -> (parameters: [Float], version: Int, epoch: Int) {
        let kept = keptVersion(currentVersion: currentVersion)
        if kept.epoch != history[history.count - 1].epoch, let best = bestParameters {
            return (best, kept.version, kept.epoch)
        }
        return (current, currentVersion, kept.epoch)
    }

    /// Which weights `keptParameters` keeps, by version and epoch: the best epoch's when early stopping
    /// restores them and the best epoch is not the last, else the current ones.
    public func keptVersion(currentVersion: Int) -> (version: Int, epoch: Int) {
        let last = history[history.count - 1]
        if bestParameters != nil, last.bestEpoch != last.epoch {
            return (bestVersion, last.bestEpoch)
        }
        return (currentVersion, last.epoch)
    }

    /// The run's summary. Validation figures are those recorded for the kept epoch (the same weights,
    /// so the same numbers a fresh evaluation would give); `test` is the kept weights on the test set.
    public func summary(keptEpoch: Int, test: ChunkStats?, samplesPerSecond: Double) -> TrainingSummary {
        let last = history[history.count - 1]
        let kept = history[keptEpoch - 1]
        var s = TrainingSummary(epochsRun: history.count, bestEpoch: last.bestEpoch, stoppedEarly: last.stopEarly,
                                trainLoss: last.trainLoss, validationLoss: kept.validationLoss,
                                validationAccuracy: kept.validationAccuracy, samplesPerSecond: samplesPerSecond)
        if let t = test {
            let n = Double(max(t.samples, 1))
            s.testLoss = t.lossSum / n
            if spec.loss.isClassification {
                s.testAccuracy = Double(t.correct) / n
            } else {
                s.testMSE = t.lossSum / n
            }
        }
        return s
    }
}
