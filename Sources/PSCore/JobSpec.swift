/// A training job, as the user wrote it in YAML or JSON, after defaults are applied and every field
/// has been validated (PSSpec reads and checks the text). Every type here is plain data: the same
/// value is sent over the wire, stored in model files and shown by `psctl`.
public struct JobSpec: Equatable, Sendable {
    public var name: String
    /// Seeds initialisation, epoch permutations, the validation split and dropout masks.
    public var seed: UInt64
    public var data: DataSpec
    public var model: ModelSpec
    public var loss: LossKind
    public var optimizer: OptimizerSpec
    public var training: TrainingSpec
    public var earlyStopping: EarlyStoppingSpec?
    /// When the server checkpoints the job (a local run does not); never changes the result.
    public var checkpoint: CheckpointSpec

    public init(name: String, seed: UInt64, data: DataSpec, model: ModelSpec, loss: LossKind,
                optimizer: OptimizerSpec, training: TrainingSpec, earlyStopping: EarlyStoppingSpec?,
                checkpoint: CheckpointSpec = CheckpointSpec()) {
        self.checkpoint = checkpoint
        self.name = name
        self.seed = seed
        self.data = data
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.training = training
        self.earlyStopping = earlyStopping
    }
}

public enum DataFormat: String, Sendable, CaseIterable {
    case idx
    case csv
}

/// The files of one split. IDX splits name an images and a labels file; CSV splits name one file.
public enum DataFiles: Equatable, Sendable {
    case idx(images: String, labels: String)
    case csv(path: String)

    /// Every path this split reads, for messages and readability checks.
    public var paths: [String] {
        switch self {
        case let .idx(images, labels): return [images, labels]
        case let .csv(path): return [path]
        }
    }
}

/// Which CSV column holds the label: by zero-based index or by header name.
public enum ColumnRef: Equatable, Sendable, CustomStringConvertible {
    case index(Int)
    case name(String)

    public var description: String {
        switch self {
        case let .index(i): return "column \(i)"
        case let .name(n): return "column '\(n)'"
        }
    }
}

/// How features are scaled before training. Standardisation uses the training split's statistics
/// (after the validation split is taken out) and applies them to every split.
public enum Preprocessing: Equatable, Sendable {
    case none
    /// Divide every feature by this constant (255 for 8-bit pixels).
    case scale(Float)
    case standardize
}

public struct DataSpec: Equatable, Sendable {
    public var format: DataFormat
    public var train: DataFiles
    /// Separate validation files; exclusive with `validationSplit`.
    public var validation: DataFiles?
    /// Fraction of the training file held out for validation, chosen from the seed; in (0, 1).
    public var validationSplit: Double?
    public var test: DataFiles?
    public var preprocessing: Preprocessing
    /// CSV only: whether the first line is a header.
    public var header: Bool
    /// CSV only: the label column (default: column 0).
    public var labelColumn: ColumnRef

    public init(format: DataFormat, train: DataFiles, validation: DataFiles? = nil,
                validationSplit: Double? = nil, test: DataFiles? = nil,
                preprocessing: Preprocessing = .none, header: Bool = false,
                labelColumn: ColumnRef = .index(0)) {
        self.format = format
        self.train = train
        self.validation = validation
        self.validationSplit = validationSplit
        self.test = test
        self.preprocessing = preprocessing
        self.header = header
        self.labelColumn = labelColumn
    }
}

public enum Activation: String, Sendable, CaseIterable {
    case sigmoid
    case tanh
    case relu
    case linear
    /// Output layer only, and only with `softmax_cross_entropy`.
    case softmax
}

public struct LayerSpec: Equatable, Sendable {
    public var units: Int
    public var activation: Activation
    /// Inverted-dropout rate applied to this layer's output while training; in [0, 1). Hidden layers only.
    public var dropout: Float

    public init(units: Int, activation: Activation, dropout: Float = 0) {
        self.units = units
        self.activation = activation
        self.dropout = dropout
    }
}

public struct ModelSpec: Equatable, Sendable {
    /// Features per sample.
    public var inputs: Int
    public var layers: [LayerSpec]

    public init(inputs: Int, layers: [LayerSpec]) {
        self.inputs = inputs
        self.layers = layers
    }

    /// Units of the output layer.
    public var outputs: Int { layers.last?.units ?? 0 }
}

public enum LossKind: String, Sendable, CaseIterable {
    /// Softmax output, class-index labels; fused with the softmax for stability.
    case softmaxCrossEntropy = "softmax_cross_entropy"
    /// Sigmoid output with one unit, labels 0 or 1.
    case binaryCrossEntropy = "binary_cross_entropy"
    /// Mean over output units of the squared error; regression targets (one unit) or one-hot classes.
    case meanSquaredError = "mean_squared_error"

    /// Whether the loss treats labels as classes (and so reports accuracy).
    public var isClassification: Bool { self != .meanSquaredError }
}

public enum OptimizerKind: String, Sendable, CaseIterable {
    case sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam, adamw
}

/// Optimizer and hyper-parameters, with every default already applied (PyTorch's `torch.optim`
/// defaults unless noted in the README). Fields that the chosen optimizer does not use are rejected
/// at parse time, so the values here are exactly what runs.
public struct OptimizerSpec: Equatable, Sendable {
    public var kind: OptimizerKind
    public var learningRate: Float
    /// momentum, nesterov, rmsprop (0 = plain RMSProp).
    public var momentum: Float
    /// adam, adamw.
    public var beta1: Float
    public var beta2: Float
    /// adagrad, adadelta, rmsprop, adam, adamw.
    public var epsilon: Float
    /// adadelta's decay.
    public var rho: Float
    /// rmsprop's decay.
    public var alpha: Float
    /// L2 penalty added to the gradient (coupled); for adamw, decoupled weight decay.
    public var weightDecay: Float
    /// Clip the whole gradient to this L2 norm before the update (nil: no clipping).
    public var clipNorm: Float?

    public init(kind: OptimizerKind, learningRate: Float, momentum: Float = 0, beta1: Float = 0.9,
                beta2: Float = 0.999, epsilon: Float = 1e-8, rho: Float = 0.9, alpha: Float = 0.99,
                weightDecay: Float = 0, clipNorm: Float? = nil) {
        self.kind = kind
        self.learningRate = learningRate
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.rho = rho
        self.alpha = alpha
        self.weightDecay = weightDecay
        self.clipNorm = clipNorm
    }
}

public enum ConsistencyMode: String, Sendable, CaseIterable {
    /// Bulk-synchronous: every step waits for the whole batch; results are bitwise reproducible.
    case sync
    /// Fixed delay d (`staleness`): step t's gradient is computed on version max(0, t − d) and applied
    /// to version t, so workers compute ahead while the server applies; bitwise reproducible, and
    /// `train --local` computes the same.
    case delayed
    /// Bounded staleness s: each batch goes whole to one worker and is applied on arrival; no push is
    /// applied to weights more than s versions newer than those it was computed on. Not reproducible.
    case ssp
    /// As ssp, with `ConsistencyLimits.asyncStalenessMax` as the only bound. Not reproducible.
    case async
}

/// Limits of the consistency modes, each with its reason.
public enum ConsistencyLimits {
    /// The largest delay (`delayed`) and bound (`ssp`): the server and every worker keep this many
    /// older versions of the weights, and a gradient older than this hurts more than it helps.
    public static let stalenessMax = 8
    /// `async`'s safety limit: a push is never applied to weights more than this many versions newer
    /// than those it was computed on (a worker waits instead), so a stopped worker cannot flood the
    /// server with ever older gradients when it wakes.
    public static let asyncStalenessMax = 32
    /// Batches one worker may hold at once in `ssp` and `async`: the next is there when one is pushed.
    public static let batchesPerWorkerMax = 2
}

/// How steps relate to one another (`training.consistency`).
public struct Consistency: Equatable, Hashable, Sendable {
    public var mode: ConsistencyMode
    /// `delayed`: the delay d (1...stalenessMax); `ssp`: the bound s (1...stalenessMax); else 0.
    public var staleness: Int

    public init(mode: ConsistencyMode, staleness: Int = 0) {
        self.mode = mode
        self.staleness = staleness
    }

    public static let sync = Consistency(mode: .sync)
    public static func delayed(_ d: Int) -> Consistency { Consistency(mode: .delayed, staleness: d) }
    public static func ssp(_ s: Int) -> Consistency { Consistency(mode: .ssp, staleness: s) }
    public static let async = Consistency(mode: .async)

    /// Steps whose gradient is computed on older weights than the step's own version: d in `delayed`, else 0.
    public var delay: Int { mode == .delayed ? staleness : 0 }
    /// Whether the weights are bitwise reproducible (`train --local` is the oracle).
    public var isExact: Bool { mode == .sync || mode == .delayed }
    /// Whether pushes are applied on arrival (each batch whole on one worker).
    public var appliesOnArrival: Bool { mode == .ssp || mode == .async }
    /// The bound on a push's staleness where pushes are applied on arrival.
    public var stalenessBound: Int {
        switch mode {
        case .sync: return 0
        case .delayed, .ssp: return staleness
        case .async: return ConsistencyLimits.asyncStalenessMax
        }
    }
    /// The staleness a mode takes when the spec gives none: delayed 1, ssp 2, else 0.
    public static func defaultStaleness(_ mode: ConsistencyMode) -> Int {
        switch mode {
        case .delayed: return 1
        case .ssp: return 2
        case .sync, .async: return 0
        }
    }
}

extension Consistency: CustomStringConvertible {
    /// As status shows it: `sync`, `delayed (d=1)`, `ssp (s=2)`, `async`.
    public var description: String {
        switch mode {
        case .sync, .async: return mode.rawValue
        case .delayed: return "delayed (d=\(staleness))"
        case .ssp: return "ssp (s=\(staleness))"
        }
    }
}

public struct TrainingSpec: Equatable, Sendable {
    public var batchSize: Int
    /// Fixed chunks per batch; the unit of work and of the reduction tree. Independent of workers.
    public var chunks: Int
    public var epochs: Int
    public var consistency: Consistency
    /// Compute only on workers with this signature (`ComputeSignature`'s text); nil: the first worker's.
    public var computeSignature: String?
    /// Compute on workers of any signature; the result is then not bitwise-reproducible.
    public var allowMixedSignatures: Bool
    /// What a step with a non-finite loss, gradient or update does (default: the job fails).
    public var onNonFinite: NonFinitePolicy
    /// `sync`: an idle worker also computes a copy of a straggler's outstanding chunks; the first push
    /// wins and the bits never change (`training.backup_chunks`, default true; sync only).
    public var backupChunks: Bool

    public init(batchSize: Int, chunks: Int, epochs: Int, consistency: Consistency = .sync,
                computeSignature: String? = nil, allowMixedSignatures: Bool = false,
                onNonFinite: NonFinitePolicy = .fail, backupChunks: Bool? = nil) {
        // On by default in sync, the only mode that has them; a parsed spec has the same default.
        self.backupChunks = backupChunks ?? (consistency.mode == .sync)
        self.batchSize = batchSize
        self.chunks = chunks
        self.epochs = epochs
        self.consistency = consistency
        self.computeSignature = computeSignature
        self.allowMixedSignatures = allowMixedSignatures
        self.onNonFinite = onNonFinite
    }
}

/// What training does when a step's loss, its reduced gradient, or the parameters its update would
/// produce are not finite (NaN or ±inf: a diverging run). In `fail` and `stop` the step is not
/// applied, so the weights stay the last finite version.
public enum NonFinitePolicy: String, Sendable, CaseIterable {
    /// The job fails, naming the step; the last good weights are written for inspection. The default,
    /// and what a spec written before this field existed means.
    case fail
    /// Training stops there, as early stopping would: the epoch ends (its validation runs on the last
    /// good weights) and the job completes, stopped early, with a note naming the step.
    case stop
    /// Apply the step anyway (no checks): the only way a model may end up holding NaN or inf.
    case `continue`
}

/// A step that was not applied because something in it was not finite.
public struct NonFiniteStep: Equatable, Sendable, CustomStringConvertible {
    public enum Value: String, Sendable {
        /// The step's loss (sum over the batch).
        case loss
        /// The step's reduced gradient.
        case gradient
        /// The parameters the optimizer's update would produce, from a finite gradient (an overflow).
        case update
    }

    public var value: Value
    /// 1-based global step (steps of earlier epochs included): the step that was not applied.
    public var step: Int
    /// 1-based epoch of that step.
    public var epoch: Int

    public init(_ value: Value, step: Int, epoch: Int) {
        self.value = value
        self.step = step
        self.epoch = epoch
    }

    /// `non-finite loss at step 2 (epoch 1)`: the job's failure message starts with this.
    public var description: String {
        let what = value == .update ? "parameters after the update" : value.rawValue
        return "non-finite \(what) at step \(step) (epoch \(epoch))"
    }
}

public enum MonitorMetric: String, Sendable, CaseIterable {
    case valLoss = "val_loss"
    case valAccuracy = "val_accuracy"

    /// Whether a larger value is better.
    public var higherIsBetter: Bool { self == .valAccuracy }
}

public struct EarlyStoppingSpec: Equatable, Sendable {
    public var monitor: MonitorMetric
    /// Epochs without an improvement larger than `minDelta` before training stops.
    public var patience: Int
    public var minDelta: Double
    /// Whether the written model holds the best epoch's weights rather than the last.
    public var restoreBest: Bool

    /// A rule's state before its first epoch.
    public var initialState: Checkpoint.StopperState { Checkpoint.StopperState(best: nil, bestEpoch: 0, wait: 0) }

    public init(monitor: MonitorMetric, patience: Int, minDelta: Double = 0, restoreBest: Bool = true) {
        self.monitor = monitor
        self.patience = patience
        self.minDelta = minDelta
        self.restoreBest = restoreBest
    }
}

/// When the server writes a checkpoint of a running job (parameters, optimizer state, the epoch and step
/// cursor, early-stopping state): every `everySteps` steps, every `everySeconds` seconds and at each
/// epoch's end, whichever comes first; 0 turns a trigger off. A restarted server resumes from the newest
/// valid one, and the result is bitwise the same however many steps are redone.
public struct CheckpointSpec: Equatable, Sendable {
    /// Defaults: every 30 s and at each epoch's end, keeping the 2 newest.
    public static let defaultEverySeconds = 30.0
    public static let defaultKeep = 2

    /// Steps between checkpoints (0: not by step count).
    public var everySteps: Int
    /// Seconds between checkpoints (0: not by time).
    public var everySeconds: Double
    /// A checkpoint after each epoch's validation (or after its last step without validation).
    public var atEpochEnd: Bool
    /// Checkpoints kept on disk: older ones are deleted once a newer one is written.
    public var keep: Int

    public init(everySteps: Int = 0, everySeconds: Double = defaultEverySeconds, atEpochEnd: Bool = true,
                keep: Int = defaultKeep) {
        self.everySteps = everySteps
        self.everySeconds = everySeconds
        self.atEpochEnd = atEpochEnd
        self.keep = keep
    }

    /// No trigger at all: the job is never checkpointed (a restarted server starts it over).
    public var isOff: Bool { everySteps == 0 && everySeconds == 0 && !atEpochEnd }
}
