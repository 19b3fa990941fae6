import PSCore

// The optimizer, training and early-stopping sections of the schema; the root, data and model
// sections are in SpecValidator.swift.
extension SpecValidator {
    // MARK: optimizer

    func optimizerSpec(_ field: SpecField) throws(SpecError) -> OptimizerSpec {
        let fields = try SpecFields(field, allowed: SpecSchema.optimizer)
        let kind = try fields.required("name").choice("optimizer", OptimizerKind.self)
        let used = SpecSchema.optimizerFields(kind)
        for key in fields.presentKeys(in: SpecSchema.optimizer) where key != "name" && !used.contains(key) {
            throw fields.optional(key)!.error("not used by \(kind.rawValue) (its fields: \(used.joined(separator: ", ")))")
        }

        /// Reads an optional float with a default and a range rule phrased for the message.
        func value(_ key: String, default fallback: Float, rule: String, _ ok: (Float) -> Bool) throws(SpecError) -> Float {
            guard let f = fields.optional(key) else { return fallback }
            let v = try f.float()
            guard ok(v) else { throw f.error("must be \(rule), got \(f.node.text)") }
            return v
        }
        let unit = "in [0, 1)"
        let learningRateDefault: Float = switch kind {
        case .adam, .adamw: 0.001
        case .adadelta: 1.0
        default: 0.01
        }
        // Unused hyper-parameters keep `OptimizerSpec`'s init defaults, so each spec has one canonical value.
        var spec = OptimizerSpec(kind: kind, learningRate: 0)
        spec.learningRate = try value("learning_rate", default: learningRateDefault, rule: "greater than 0") { $0 > 0 }
        spec.weightDecay = try value("weight_decay", default: kind == .adamw ? 0.01 : 0, rule: "at least 0") { $0 >= 0 }
        if let clip = fields.optional("clip_norm") {
            let v = try clip.float()
            guard v > 0 else { throw clip.error("must be greater than 0, got \(clip.node.text)") }
            spec.clipNorm = v
        }
        switch kind {
        case .sgd:
            break
        case .momentum, .nesterov:
            spec.momentum = try value("momentum", default: 0.9, rule: unit) { $0 >= 0 && $0 < 1 }
            if kind == .nesterov && spec.momentum == 0 {
                throw (fields.optional("momentum") ?? field).error("nesterov needs momentum greater than 0")
            }
        case .adagrad:
            spec.epsilon = try value("epsilon", default: 1e-10, rule: "greater than 0") { $0 > 0 }
        case .adadelta:
            spec.rho = try value("rho", default: 0.9, rule: "in (0, 1)") { $0 > 0 && $0 < 1 }
            spec.epsilon = try value("epsilon", default: 1e-6, rule: "greater than 0") { $0 > 0 }
        case .rmsprop:
            spec.alpha = try value("alpha", default: 0.99, rule: "in (0, 1)") { $0 > 0 && $0 < 1 }
            spec.epsilon = try value("epsilon", default: 1e-8, rule: "greater than 0") { $0 > 0 }
            spec.momentum = try value("momentum", default: 0, rule: unit) { $0 >= 0 && $0 < 1 }
        case .adam, .adamw:
            spec.beta1 = try value("beta1", default: 0.9, rule: unit) { $0 >= 0 && $0 < 1 }
            spec.beta2 = try value("beta2", default: 0.999, rule: unit) { $0 >= 0 && $0 < 1 }
            spec.epsilon = try value("epsilon", default: 1e-8, rule: "greater than 0") { $0 > 0 }
        }
        return spec
    }

    // MARK: training and early stopping

    func trainingSpec(_ field: SpecField) throws(SpecError) -> TrainingSpec {
        let fields = try SpecFields(field, allowed: SpecSchema.training)
        let batchSize = try fields.required("batch_size").int(in: 1...Limits.batchSizeMax, limit: "Limits.batchSizeMax")
        var chunks = 1
        if let chunksField = fields.optional("chunks") {
            chunks = try chunksField.int()
            let most = min(batchSize, Limits.chunksMax)
            guard (1...most).contains(chunks) else {
                let why = most == batchSize ? "batch_size, as every chunk needs a sample" : "Limits.chunksMax"
                throw chunksField.error("must be between 1 and \(most) (\(why)), got \(chunks)")
            }
        }
        let epochs = try fields.required("epochs").int(in: 1...Limits.epochsMax, limit: "Limits.epochsMax")
        let consistency = try fields.optional("consistency").map { f throws(SpecError) in try consistencySpec(f) } ?? .sync
        let backupChunks = try backupChunksSpec(fields.optional("backup_chunks"), mode: consistency.mode)
        var signature: String?
        if let signatureField = fields.optional("compute_signature") {
            let text = try signatureField.string()
            if case let .failure(error) = ComputeSignature.parse(text) { throw signatureField.error(error.message) }
            signature = text
        }
        let allowMixed = try fields.optional("allow_mixed_signatures")?.bool() ?? false
        if allowMixed, let signatureField = fields.optional("compute_signature") {
            throw signatureField.error("names the one signature to compute on, while allow_mixed_signatures: true accepts any; set one of them")
        }
        let onNonFinite = try fields.optional("on_non_finite")?.choice("non-finite policy", NonFinitePolicy.self) ?? .fail
        return TrainingSpec(batchSize: batchSize, chunks: chunks, epochs: epochs, consistency: consistency,
                            computeSignature: signature, allowMixedSignatures: allowMixed, onNonFinite: onNonFinite,
                            backupChunks: backupChunks)
    }

    /// `consistency: ssp` (the mode's default staleness) or `consistency: {mode: ssp, staleness: 3}`.
    func consistencySpec(_ field: SpecField) throws(SpecError) -> Consistency {
        guard case .mapping = field.node.value else {
            let mode = try field.choice("consistency mode", ConsistencyMode.self)
            return Consistency(mode: mode, staleness: Consistency.defaultStaleness(mode))
        }
        let fields = try SpecFields(field, allowed: SpecSchema.consistency)
        let mode = try fields.required("mode").choice("consistency mode", ConsistencyMode.self)
        guard let stalenessField = fields.optional("staleness") else {
            return Consistency(mode: mode, staleness: Consistency.defaultStaleness(mode))
        }
        switch mode {
        case .sync:
            throw stalenessField.error("sync takes no staleness: every step computes on the weights it is applied to")
        case .async:
            throw stalenessField.error("async takes no staleness: its only bound is "
                + "\(ConsistencyLimits.asyncStalenessMax) (ConsistencyLimits.asyncStalenessMax); use ssp for a bound of your own")
        case .delayed, .ssp:
            let staleness = try stalenessField.int(in: 1...ConsistencyLimits.stalenessMax,
                                                   limit: "ConsistencyLimits.stalenessMax")
            return Consistency(mode: mode, staleness: staleness)
        }
    }

    /// On by default in sync, where a step waits for its slowest chunk; in the other modes it is off and
    /// `true` is refused rather than silently ignored.
    func backupChunksSpec(_ field: SpecField?, mode: ConsistencyMode) throws(SpecError) -> Bool {
        guard let field else { return mode == .sync }
        let on = try field.bool()
        if on && mode != .sync {
            throw field.error("backup chunks apply to sync only; training.consistency is \(mode.rawValue) "
                + "(remove backup_chunks or set it to false)")
        }
        return on
    }

    func earlyStoppingSpec(_ field: SpecField, loss: LossKind) throws(SpecError) -> EarlyStoppingSpec {
        let fields = try SpecFields(field, allowed: SpecSchema.earlyStopping)
        var monitor = MonitorMetric.valLoss
        if let monitorField = fields.optional("monitor") {
            monitor = try monitorField.choice("metric", MonitorMetric.self)
            if monitor == .valAccuracy && !loss.isClassification {
                throw monitorField.error("val_accuracy requires a classification loss "
                    + "(softmax_cross_entropy or binary_cross_entropy), but loss is \(loss.rawValue)")
            }
        }
        let patience = try fields.required("patience").int(in: 0...Limits.epochsMax, limit: "Limits.epochsMax")
        var minDelta = 0.0
        if let deltaField = fields.optional("min_delta") {
            minDelta = try deltaField.double()
            guard minDelta >= 0 else { throw deltaField.error("must be at least 0, got \(deltaField.node.text)") }
        }
        let restoreBest = try fields.optional("restore_best")?.bool() ?? true
        return EarlyStoppingSpec(monitor: monitor, patience: patience, minDelta: minDelta, restoreBest: restoreBest)
    }

    func checkpointSpec(_ field: SpecField) throws(SpecError) -> CheckpointSpec {
        let fields = try SpecFields(field, allowed: SpecSchema.checkpoint)
        var spec = CheckpointSpec()
        if let stepsField = fields.optional("every_steps") {
            spec.everySteps = try stepsField.int(in: 0...1_000_000_000, limit: "0 turns it off")
        }
        if let secondsField = fields.optional("every_seconds") {
            let seconds = try secondsField.double()
            guard seconds.isFinite, seconds >= 0, seconds <= Limits.checkpointSecondsMax else {
                throw secondsField.error("must be between 0 (off) and \(Int(Limits.checkpointSecondsMax)) (Limits.checkpointSecondsMax), got \(secondsField.node.text)")
            }
            spec.everySeconds = seconds
        }
        if let epochField = fields.optional("at_epoch_end") { spec.atEpochEnd = try epochField.bool() }
        if let keepField = fields.optional("keep") {
            spec.keep = try keepField.int(in: 1...Limits.checkpointsKeptMax, limit: "Limits.checkpointsKeptMax")
        }
        return spec
    }
}
