import PSCore

/// The keys of the spec schema, in the order the encoder writes them. The validator, the override
/// path check and the encoder all read these lists, so a new field is added in one place.
enum SpecSchema {
    static let root = ["name", "seed", "data", "model", "loss", "optimizer", "training", "early_stopping", "checkpoint"]
    static let data = ["format", "train", "validation", "validation_split", "test", "scale", "standardize",
                       "header", "label_column"]
    static let idxFiles = ["images", "labels"]
    static let csvFiles = ["path"]
    static let model = ["inputs", "layers"]
    static let layer = ["units", "activation", "dropout"]
    static let training = ["batch_size", "chunks", "epochs", "consistency", "compute_signature", "allow_mixed_signatures",
                           "on_non_finite", "backup_chunks"]
    /// `training.consistency` as a mapping; a plain string there is the shorthand for `mode`.
    static let consistency = ["mode", "staleness"]
    static let earlyStopping = ["monitor", "patience", "min_delta", "restore_best"]
    static let checkpoint = ["every_steps", "every_seconds", "at_epoch_end", "keep"]
    /// Every optimizer key; which of them a given optimizer accepts is `optimizerFields(_:)`.
    static let optimizer = ["name", "learning_rate", "momentum", "beta1", "beta2", "epsilon", "rho", "alpha",
                            "weight_decay", "clip_norm"]

    /// The hyper-parameters each optimizer reads (besides `name`), as in PyTorch's `torch.optim`.
    static func optimizerFields(_ kind: OptimizerKind) -> [String] {
        switch kind {
        case .sgd: return ["learning_rate", "weight_decay", "clip_norm"]
        case .momentum, .nesterov: return ["learning_rate", "momentum", "weight_decay", "clip_norm"]
        case .adagrad: return ["learning_rate", "epsilon", "weight_decay", "clip_norm"]
        case .adadelta: return ["learning_rate", "rho", "epsilon", "weight_decay", "clip_norm"]
        case .rmsprop: return ["learning_rate", "alpha", "epsilon", "momentum", "weight_decay", "clip_norm"]
        case .adam, .adamw: return ["learning_rate", "beta1", "beta2", "epsilon", "weight_decay", "clip_norm"]
        }
    }

    /// Keys of the mapping at a path template (`model.layers[]` stands for every layer), for checking
    /// override paths before the document is validated; nil where the schema has no mapping.
    static func keys(atTemplate template: String) -> [String]? {
        switch template {
        case "": return root
        case "data": return data
        case "data.train", "data.validation", "data.test": return idxFiles + csvFiles
        case "model": return model
        case "model.layers[]": return layer
        case "optimizer": return optimizer
        case "training": return training
        case "training.consistency": return consistency
        case "early_stopping": return earlyStopping
        case "checkpoint": return checkpoint
        default: return nil
        }
    }

    /// Path templates where a scalar is shorthand for a mapping with this one key
    /// (`consistency: ssp` is `consistency: {mode: ssp}`), so an override can set a key inside it.
    static let shorthands: [String: String] = ["training.consistency": "mode"]

    /// Path templates that hold lists.
    static let lists: Set<String> = ["model.layers"]
}
