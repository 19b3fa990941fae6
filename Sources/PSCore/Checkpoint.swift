/// Everything the rest of a job's run depends on, taken between two pieces of work (never mid-step):
/// the parameters and optimizer state, where the run is (phase, epoch, step), the running epoch's
/// sums, the epochs recorded so far with the early-stopping state, the best epoch's weights when they
/// will be restored, and the compute signature the job is bound to. Every step is deterministic (the
/// permutation, the chunks, the dropout masks, the reduction tree depend only on the seed, the epoch and
/// the step), so a run resumed from a checkpoint redoes the steps after it and ends with bitwise the
/// weights an uninterrupted run ends with.
///
/// The coordinator fills in the schedule's part and the parameter shard the values (`parameters`,
/// `optimizerSteps`, `optimizerSlots`, `best`); `ps.v1.Checkpoint` is its file format (PSWire).
public struct Checkpoint: Equatable, Sendable {
    /// What the run does next.
    public enum Phase: String, Equatable, Sendable {
        /// Training step `stepInEpoch` of epoch `epoch` (0-based both).
        case train
        /// Epoch `epoch`'s training is over; its validation comes next.
        case validate
        /// Training is over (`kept` says which weights); the test evaluation comes next.
        case test
    }

    /// Early stopping's state (`EarlyStopper`), also used for the best-epoch tracker without it.
    public struct StopperState: Equatable, Sendable {
        public var best: Double?
        public var bestEpoch: Int
        public var wait: Int

        public init(best: Double?, bestEpoch: Int, wait: Int) {
            self.best = best
            self.bestEpoch = bestEpoch
            self.wait = wait
        }
    }

    public var jobId: String
    /// SHA-256 of the job spec's wire bytes: a checkpoint resumes only the spec it was taken of.
    public var specSHA256: [UInt8]
    /// Updates applied: the weights' version.
    public var version: Int
    public var phase: Phase
    /// 0-based epoch and the steps of it already applied.
    public var epoch: Int
    public var stepInEpoch: Int
    /// The running epoch's sums over the steps applied so far.
    public var epochLossSum: Double
    public var epochCorrect: Int
    public var epochSamples: Int
    /// Training time and samples before this epoch, and the last epoch's time (for the reported rates).
    public var trainingSeconds: Double
    public var trainedSamples: Int
    public var epochSeconds: Double
    /// Training time of the running epoch before the checkpoint.
    public var epochElapsedSeconds = 0.0
    /// Epochs recorded so far, with the early-stopping rule's and the best-epoch tracker's state.
    public var history: [EpochReport]
    public var stopper: StopperState?
    public var tracker: StopperState
    /// Whether the ledger keeps the best epoch's weights (early stopping restores them), their version,
    /// and the weights themselves (the shard's copy).
    public var hasBest: Bool
    public var bestVersion: Int
    public var bestParameters: [Float]
    /// In the test phase: the epoch and version whose weights are kept.
    public var keptEpoch: Int
    public var keptVersion: Int
    /// The compute signature the job computes on ("" until bound) and every signature whose results
    /// it accepted, sorted.
    public var signature: String
    public var signaturesUsed: [String]
    /// The parameters (the whole flat vector) and the optimizer's state for the whole vector: its step
    /// count and one vector per `OptimizerRule.slotNames` entry.
    public var parameters: [Float]
    public var optimizerSteps: Int
    public var optimizerSlots: [[Float]]
    /// Delayed mode (d): the earlier versions the next steps still compute on, versions
    /// `version − d ..< version` (fewer at the start), oldest first; empty in the other modes.
    public var olderVersions: [WeightsVersion] = []

    public init(jobId: String, specSHA256: [UInt8], version: Int, phase: Phase, epoch: Int, stepInEpoch: Int,
                epochLossSum: Double = 0, epochCorrect: Int = 0, epochSamples: Int = 0, trainingSeconds: Double = 0,
                trainedSamples: Int = 0, epochSeconds: Double = 0, history: [EpochReport] = [],
                stopper: StopperState? = nil, tracker: StopperState = StopperState(best: nil, bestEpoch: 0, wait: 0),
                hasBest: Bool = false, bestVersion: Int = 0, bestParameters: [Float] = [], keptEpoch: Int = 0,
                keptVersion: Int = 0, signature: String = "", signaturesUsed: [String] = [], parameters: [Float] = [],
                optimizerSteps: Int = 0, optimizerSlots: [[Float]] = []) {
        self.jobId = jobId
        self.specSHA256 = specSHA256
        self.version = version
        self.phase = phase
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.epochLossSum = epochLossSum
        self.epochCorrect = epochCorrect
        self.epochSamples = epochSamples
        self.trainingSeconds = trainingSeconds
        self.trainedSamples = trainedSamples
        self.epochSeconds = epochSeconds
        self.history = history
        self.stopper = stopper
        self.tracker = tracker
        self.hasBest = hasBest
        self.bestVersion = bestVersion
        self.bestParameters = bestParameters
        self.keptEpoch = keptEpoch
        self.keptVersion = keptVersion
        self.signature = signature
        self.signaturesUsed = signaturesUsed
        self.parameters = parameters
        self.optimizerSteps = optimizerSteps
        self.optimizerSlots = optimizerSlots
    }

    /// Training steps applied (the global index of the next one): what status and the logs call the
    /// checkpoint's step.
    /// (In the validation and test phases `stepInEpoch` is the epoch's step count.)
    public func steps(stepsPerEpoch: Int) -> Int {
        epoch * stepsPerEpoch + stepInEpoch
    }

    /// Why this checkpoint cannot resume `jobId` with `spec` over `stepsPerEpoch` steps per epoch, or nil
    /// when it can (`parameterCount` and `slots`: the model's and its optimizer's): every count and shape must agree with the job (the file's checksum only says the
    /// bytes are the ones written).
    public func problem(jobId expected: String, spec: JobSpec, specSHA256 expectedSHA: [UInt8], stepsPerEpoch: Int,
                        parameterCount: Int, optimizerSlots slots: Int) -> String? {
        if jobId != expected { return "it belongs to \(jobId.prefix(64)), not \(expected)" }
        if specSHA256 != expectedSHA { return "it was taken of another spec" }
        let epochs = spec.training.epochs
        if parameters.count != parameterCount {
            return "it holds \(parameters.count) parameters; the model has \(parameterCount)"
        }
        if optimizerSlots.count != slots || optimizerSlots.contains(where: { $0.count != parameterCount }) {
            return "its optimizer state does not have \(slots) vectors of \(parameterCount) values"
        }
        if hasBest != (bestParameters.count == parameterCount) || (!hasBest && !bestParameters.isEmpty) {
            return "its best weights do not match the model"
        }
        if (stopper == nil) != (spec.earlyStopping == nil) { return "its early-stopping state does not match the spec" }
        let delay = spec.training.consistency.delay
        let expectedOlder = phase == .train ? Array(max(0, version - delay)..<version) : olderVersions.map(\.version)
        if olderVersions.map(\.version) != expectedOlder || olderVersions.contains(where: { $0.parameters.count != parameterCount })
            || (delay == 0 && !olderVersions.isEmpty) {
            return "its earlier weight versions (\(olderVersions.map { "\($0.version)" }.joined(separator: ", "))) are not the \(min(delay, version)) before version \(version) that delayed mode (d=\(delay)) computes on"
        }
        // One optimizer step per training step; restoring the best weights sets the version back, never forward.
        if optimizerSteps != epoch * stepsPerEpoch + stepInEpoch || version < 0 || version > optimizerSteps {
            return "version \(version) and optimizer step \(optimizerSteps) do not match epoch \(epoch + 1) step \(stepInEpoch)"
        }
        guard epoch >= 0, epoch < epochs, stepInEpoch >= 0, stepInEpoch <= stepsPerEpoch else {
            return "epoch \(epoch) step \(stepInEpoch) is outside \(epochs) epochs of \(stepsPerEpoch) steps"
        }
        switch phase {
        case .train:
            if history.count != epoch || stepInEpoch >= stepsPerEpoch {
                return "a training cursor at epoch \(epoch + 1) step \(stepInEpoch) with \(history.count) epochs recorded"
            }
        case .validate:
            if history.count != epoch || stepInEpoch != stepsPerEpoch {
                return "a validation cursor at epoch \(epoch + 1) with \(history.count) epochs recorded"
            }
        case .test:
            if history.count != epoch + 1 || stepInEpoch != stepsPerEpoch || keptEpoch < 1 || keptEpoch > history.count {
                return "a test cursor after epoch \(epoch + 1) with \(history.count) epochs recorded and kept epoch \(keptEpoch)"
            }
        }
        if epochSamples < 0 || epochCorrect < 0 || epochCorrect > epochSamples || trainedSamples < 0 {
            return "its sample counts are inconsistent"
        }
        return nil
    }
}

/// One version of the whole parameter vector (delayed mode keeps the ones still computed on).
public struct WeightsVersion: Equatable, Sendable {
    public var version: Int
    public var parameters: [Float]

    public init(version: Int, parameters: [Float]) {
        self.version = version
        self.parameters = parameters
    }
}
