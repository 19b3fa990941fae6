// JobSpec ⇄ ps.v1.JobSpec. Encoding trusts the value (it was validated when parsed); decoding trusts
// nothing and checks presence and ranges of every field.
import PSWireC

extension JobSpec {
    /// The spec as a serialized `ps.v1.JobSpec`.
    public func wireBytes() -> [UInt8] {
        let arena = CArena()
        return withExtendedLifetime(arena) { packUnlimited(cMessage(arena)) }
    }

    /// Decodes and checks a serialized `ps.v1.JobSpec`; errors name the field (`JobSpec.model.inputs`).
    public init(wireBytes: some Collection<UInt8>) throws(WireError) {
        guard let message = unpack(wireBytes, { ps__v1__job_spec__unpack(nil, $0, $1) }) else {
            throw WireError(field: "JobSpec", "not a valid protobuf message")
        }
        defer { ps__v1__job_spec__free_unpacked(message, nil) }
        try self.init(c: message.pointee, "JobSpec")
    }

    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__JobSpec> {
        let m: UnsafeMutablePointer<Ps__V1__JobSpec> = arena.message(ps__v1__job_spec__init)
        m.pointee.name = arena.string(name)
        m.pointee.seed = seed
        m.pointee.data = data.cMessage(arena)
        m.pointee.model = model.cMessage(arena)
        m.pointee.loss = lossTable.c(loss)
        m.pointee.optimizer = optimizer.cMessage(arena)
        m.pointee.training = training.cMessage(arena)
        if let earlyStopping {
            let e: UnsafeMutablePointer<Ps__V1__EarlyStoppingSpec> = arena.message(ps__v1__early_stopping_spec__init)
            e.pointee.monitor = monitorTable.c(earlyStopping.monitor)
            e.pointee.patience = uint64(earlyStopping.patience, "earlyStopping.patience")
            e.pointee.min_delta = earlyStopping.minDelta
            e.pointee.restore_best = earlyStopping.restoreBest ? 1 : 0
            m.pointee.early_stopping = e
        }
        if checkpoint != CheckpointSpec() {
            let k: UnsafeMutablePointer<Ps__V1__CheckpointSpec> = arena.message(ps__v1__checkpoint_spec__init)
            k.pointee.every_steps = uint64(checkpoint.everySteps, "checkpoint.everySteps")
            k.pointee.every_seconds = checkpoint.everySeconds
            k.pointee.at_epoch_end = checkpoint.atEpochEnd ? 1 : 0
            k.pointee.keep = uint64(checkpoint.keep, "checkpoint.keep")
            m.pointee.checkpoint = k
        }
        return m
    }

    init(c: Ps__V1__JobSpec, _ path: String) throws(WireError) {
        var earlyStopping: EarlyStoppingSpec?
        if let e = c.early_stopping?.pointee {
            let p = "\(path).early_stopping"
            earlyStopping = EarlyStoppingSpec(
                monitor: try monitorTable.swift(e.monitor, "\(p).monitor"),
                patience: try int(e.patience, "\(p).patience"),
                minDelta: e.min_delta,
                restoreBest: e.restore_best != 0)
        }
        var checkpoint = CheckpointSpec()
        if let k = c.checkpoint?.pointee {
            let p = "\(path).checkpoint"
            checkpoint = CheckpointSpec(everySteps: try int(k.every_steps, "\(p).every_steps"), everySeconds: k.every_seconds,
                                        atEpochEnd: k.at_epoch_end != 0, keep: try int(k.keep, "\(p).keep"))
            guard checkpoint.everySeconds.isFinite, (0...Limits.checkpointSecondsMax).contains(checkpoint.everySeconds) else {
                throw WireError(field: "\(p).every_seconds", "\(checkpoint.everySeconds) is out of range (0 to \(Limits.checkpointSecondsMax))")
            }
            guard (1...Limits.checkpointsKeptMax).contains(checkpoint.keep) else {
                throw WireError(field: "\(p).keep", "\(checkpoint.keep) is out of range (1 to \(Limits.checkpointsKeptMax))")
            }
        }
        self.init(
            name: string(c.name),
            seed: c.seed,
            data: try DataSpec(c: try required(c.data, "\(path).data"), "\(path).data"),
            model: try ModelSpec(c: try required(c.model, "\(path).model"), "\(path).model"),
            loss: try lossTable.swift(c.loss, "\(path).loss"),
            optimizer: try OptimizerSpec(c: try required(c.optimizer, "\(path).optimizer"), "\(path).optimizer"),
            training: try TrainingSpec(c: try required(c.training, "\(path).training"), "\(path).training"),
            earlyStopping: earlyStopping,
            checkpoint: checkpoint)
    }
}

extension DataSpec {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__DataSpec> {
        let m: UnsafeMutablePointer<Ps__V1__DataSpec> = arena.message(ps__v1__data_spec__init)
        m.pointee.format = formatTable.c(format)
        m.pointee.train = train.cMessage(arena)
        switch (validation, validationSplit) {
        case (nil, nil):
            break
        case let (files?, nil):
            m.pointee.validation_case = PS__V1__DATA_SPEC__VALIDATION_VALIDATION_FILES
            m.pointee.validation_files = files.cMessage(arena)
        case let (nil, split?):
            m.pointee.validation_case = PS__V1__DATA_SPEC__VALIDATION_VALIDATION_SPLIT
            m.pointee.validation_split = split
        case (_?, _?):
            preconditionFailure("data.validation and data.validationSplit are exclusive; validate the spec first")
        }
        if let test { m.pointee.test = test.cMessage(arena) }
        switch preprocessing {
        case .none:
            m.pointee.preprocessing_case = PS__V1__DATA_SPEC__PREPROCESSING_NONE
            m.pointee.none = arena.message(ps__v1__no_preprocessing__init)
        case let .scale(divisor):
            m.pointee.preprocessing_case = PS__V1__DATA_SPEC__PREPROCESSING_SCALE
            m.pointee.scale = divisor
        case .standardize:
            m.pointee.preprocessing_case = PS__V1__DATA_SPEC__PREPROCESSING_STANDARDIZE
            m.pointee.standardize = arena.message(ps__v1__standardize__init)
        }
        m.pointee.header = header ? 1 : 0
        let column: UnsafeMutablePointer<Ps__V1__ColumnRef> = arena.message(ps__v1__column_ref__init)
        switch labelColumn {
        case let .index(i):
            column.pointee.kind_case = PS__V1__COLUMN_REF__KIND_INDEX
            column.pointee.index = uint64(i, "data.labelColumn")
        case let .name(n):
            column.pointee.kind_case = PS__V1__COLUMN_REF__KIND_NAME
            column.pointee.name = arena.string(n)
        }
        m.pointee.label_column = column
        return m
    }

    init(c: Ps__V1__DataSpec, _ path: String) throws(WireError) {
        var validation: DataFiles?
        var validationSplit: Double?
        switch c.validation_case {
        case PS__V1__DATA_SPEC__VALIDATION__NOT_SET:
            break
        case PS__V1__DATA_SPEC__VALIDATION_VALIDATION_FILES:
            let p = "\(path).validation_files"
            validation = try DataFiles(c: try required(c.validation_files, p), p)
        case PS__V1__DATA_SPEC__VALIDATION_VALIDATION_SPLIT:
            guard c.validation_split > 0, c.validation_split < 1 else {
                throw WireError(field: "\(path).validation_split", "\(c.validation_split) is out of range (0, 1)")
            }
            validationSplit = c.validation_split
        default:
            throw WireError(field: "\(path).validation", "unknown case \(c.validation_case.rawValue)")
        }
        let preprocessing: Preprocessing
        switch c.preprocessing_case {
        case PS__V1__DATA_SPEC__PREPROCESSING_NONE:
            preprocessing = .none
        case PS__V1__DATA_SPEC__PREPROCESSING_SCALE:
            guard c.scale.isFinite, c.scale > 0 else {
                throw WireError(field: "\(path).scale", "\(c.scale) is out of range (a positive divisor)")
            }
            preprocessing = .scale(c.scale)
        case PS__V1__DATA_SPEC__PREPROCESSING_STANDARDIZE:
            preprocessing = .standardize
        case PS__V1__DATA_SPEC__PREPROCESSING__NOT_SET:
            throw WireError(field: "\(path).preprocessing", "missing")
        default:
            throw WireError(field: "\(path).preprocessing", "unknown case \(c.preprocessing_case.rawValue)")
        }
        let test = try c.test.map { p throws(WireError) in try DataFiles(c: p.pointee, "\(path).test") }
        self.init(
            format: try formatTable.swift(c.format, "\(path).format"),
            train: try DataFiles(c: try required(c.train, "\(path).train"), "\(path).train"),
            validation: validation,
            validationSplit: validationSplit,
            test: test,
            preprocessing: preprocessing,
            header: c.header != 0,
            labelColumn: try ColumnRef(c: try required(c.label_column, "\(path).label_column"), "\(path).label_column"))
    }
}

extension DataFiles {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__DataFiles> {
        let m: UnsafeMutablePointer<Ps__V1__DataFiles> = arena.message(ps__v1__data_files__init)
        switch self {
        case let .idx(images, labels):
            let idx: UnsafeMutablePointer<Ps__V1__IdxFiles> = arena.message(ps__v1__idx_files__init)
            idx.pointee.images = arena.string(images)
            idx.pointee.labels = arena.string(labels)
            m.pointee.kind_case = PS__V1__DATA_FILES__KIND_IDX
            m.pointee.idx = idx
        case let .csv(path):
            m.pointee.kind_case = PS__V1__DATA_FILES__KIND_CSV
            m.pointee.csv = arena.string(path)
        }
        return m
    }

    init(c: Ps__V1__DataFiles, _ path: String) throws(WireError) {
        switch c.kind_case {
        case PS__V1__DATA_FILES__KIND_IDX:
            let idx = try required(c.idx, "\(path).idx")
            self = .idx(images: string(idx.images), labels: string(idx.labels))
        case PS__V1__DATA_FILES__KIND_CSV:
            self = .csv(path: string(c.csv))
        case PS__V1__DATA_FILES__KIND__NOT_SET:
            throw WireError(field: path, "missing (neither idx nor csv)")
        default:
            throw WireError(field: path, "unknown case \(c.kind_case.rawValue)")
        }
    }
}

extension ColumnRef {
    init(c: Ps__V1__ColumnRef, _ path: String) throws(WireError) {
        switch c.kind_case {
        case PS__V1__COLUMN_REF__KIND_INDEX:
            self = .index(try int(c.index, "\(path).index"))
        case PS__V1__COLUMN_REF__KIND_NAME:
            self = .name(string(c.name))
        case PS__V1__COLUMN_REF__KIND__NOT_SET:
            throw WireError(field: path, "missing (neither index nor name)")
        default:
            throw WireError(field: path, "unknown case \(c.kind_case.rawValue)")
        }
    }
}

extension ModelSpec {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__ModelSpec> {
        let m: UnsafeMutablePointer<Ps__V1__ModelSpec> = arena.message(ps__v1__model_spec__init)
        m.pointee.inputs = uint64(inputs, "model.inputs")
        let layerMessages = layers.enumerated().map { i, layer -> UnsafeMutablePointer<Ps__V1__LayerSpec>? in
            let l: UnsafeMutablePointer<Ps__V1__LayerSpec> = arena.message(ps__v1__layer_spec__init)
            l.pointee.units = uint64(layer.units, "model.layers[\(i)].units")
            l.pointee.activation = activationTable.c(layer.activation)
            l.pointee.dropout = layer.dropout
            return l
        }
        m.pointee.n_layers = layerMessages.count
        m.pointee.layers = arena.array(layerMessages)
        return m
    }

    init(c: Ps__V1__ModelSpec, _ path: String) throws(WireError) {
        guard c.n_layers > 0, let layerPointers = c.layers else {
            throw WireError(field: "\(path).layers", "missing (a model needs at least one layer)")
        }
        var layers: [LayerSpec] = []
        layers.reserveCapacity(c.n_layers)
        for i in 0..<c.n_layers {
            let p = "\(path).layers[\(i)]"
            let l = try required(layerPointers[i], p)
            guard l.dropout >= 0, l.dropout < 1 else {
                throw WireError(field: "\(p).dropout", "\(l.dropout) is out of range [0, 1)")
            }
            layers.append(LayerSpec(units: try int(l.units, "\(p).units", min: 1),
                                    activation: try activationTable.swift(l.activation, "\(p).activation"),
                                    dropout: l.dropout))
        }
        self.init(inputs: try int(c.inputs, "\(path).inputs", min: 1), layers: layers)
    }

    /// Parameters in the flat layout (per layer `units × (fanIn + 1)`), nil if it overflows `Int`.
    var parameterCount: Int? {
        var total = 0
        var fanIn = inputs
        for layer in layers {
            let (perUnit, o1) = fanIn.addingReportingOverflow(1)
            let (count, o2) = layer.units.multipliedReportingOverflow(by: perUnit)
            let (sum, o3) = total.addingReportingOverflow(count)
            if o1 || o2 || o3 { return nil }
            total = sum
            fanIn = layer.units
        }
        return total
    }
}

extension OptimizerSpec {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__OptimizerSpec> {
        let m: UnsafeMutablePointer<Ps__V1__OptimizerSpec> = arena.message(ps__v1__optimizer_spec__init)
        m.pointee.kind = optimizerTable.c(kind)
        m.pointee.learning_rate = learningRate
        m.pointee.momentum = momentum
        m.pointee.beta1 = beta1
        m.pointee.beta2 = beta2
        m.pointee.epsilon = epsilon
        m.pointee.rho = rho
        m.pointee.alpha = alpha
        m.pointee.weight_decay = weightDecay
        if let clipNorm {
            m.pointee.has_clip_norm_case = PS__V1__OPTIMIZER_SPEC__HAS_CLIP_NORM_CLIP_NORM
            m.pointee.clip_norm = clipNorm
        }
        return m
    }

    init(c: Ps__V1__OptimizerSpec, _ path: String) throws(WireError) {
        // Hyper-parameter ranges depend on the optimizer; JobSpec validation owns those rules.
        self.init(kind: try optimizerTable.swift(c.kind, "\(path).kind"),
                  learningRate: c.learning_rate, momentum: c.momentum, beta1: c.beta1, beta2: c.beta2,
                  epsilon: c.epsilon, rho: c.rho, alpha: c.alpha, weightDecay: c.weight_decay,
                  clipNorm: c.has_clip_norm_case == PS__V1__OPTIMIZER_SPEC__HAS_CLIP_NORM_CLIP_NORM
                      ? c.clip_norm : nil)
    }
}

extension TrainingSpec {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__TrainingSpec> {
        let m: UnsafeMutablePointer<Ps__V1__TrainingSpec> = arena.message(ps__v1__training_spec__init)
        m.pointee.batch_size = uint64(batchSize, "training.batchSize")
        m.pointee.chunks = uint64(chunks, "training.chunks")
        m.pointee.epochs = uint64(epochs, "training.epochs")
        m.pointee.consistency = consistencyTable.c(consistency.mode)
        m.pointee.staleness = UInt32(consistency.staleness)
        m.pointee.without_backup_chunks = backupChunks ? 0 : 1
        m.pointee.compute_signature = arena.string(computeSignature ?? "")
        m.pointee.allow_mixed_signatures = allowMixedSignatures ? 1 : 0
        m.pointee.on_non_finite = nonFiniteTable.c(onNonFinite)
        return m
    }

    init(c: Ps__V1__TrainingSpec, _ path: String) throws(WireError) {
        self.init(batchSize: try int(c.batch_size, "\(path).batch_size", min: 1),
                  chunks: try int(c.chunks, "\(path).chunks", min: 1),
                  epochs: try int(c.epochs, "\(path).epochs", min: 1),
                  consistency: try Self.consistency(c, path),
                  computeSignature: try Self.signature(string(c.compute_signature), "\(path).compute_signature"),
                  allowMixedSignatures: c.allow_mixed_signatures != 0,
                  onNonFinite: try nonFiniteTable.swift(c.on_non_finite, "\(path).on_non_finite"),
                  backupChunks: c.without_backup_chunks == 0)
    }

    /// "" is none; anything else must read as a `ComputeSignature`.
    /// The mode and its staleness, checked as the spec validator checks them (a peer may skip psctl).
    private static func consistency(_ c: Ps__V1__TrainingSpec, _ path: String) throws(WireError) -> Consistency {
        let mode = try consistencyTable.swift(c.consistency, "\(path).consistency")
        let staleness = try int(c.staleness, "\(path).staleness")
        switch mode {
        case .sync, .async:
            guard staleness == 0 else {
                throw WireError(field: "\(path).staleness", "is \(staleness), but mode \(mode.rawValue) takes none (0)")
            }
        case .delayed, .ssp:
            guard (1...ConsistencyLimits.stalenessMax).contains(staleness) else {
                throw WireError(field: "\(path).staleness", "must be between 1 and \(ConsistencyLimits.stalenessMax) (ConsistencyLimits.stalenessMax) for mode \(mode.rawValue), got \(staleness)")
            }
        }
        return Consistency(mode: mode, staleness: staleness)
    }

    private static func signature(_ text: String, _ path: String) throws(WireError) -> String? {
        guard !text.isEmpty else { return nil }
        if case let .failure(error) = ComputeSignature.parse(text) { throw WireError(field: path, error.message) }
        return text
    }
}

// One table per enum; adding a Swift case without a wire value fails the first encode (and the
// every-case round-trip test) instead of silently sending UNSPECIFIED.
let formatTable = EnumTable<DataFormat, Ps__V1__DataFormat>([
    (.idx, PS__V1__DATA_FORMAT__DATA_FORMAT_IDX),
    (.csv, PS__V1__DATA_FORMAT__DATA_FORMAT_CSV),
])

let activationTable = EnumTable<Activation, Ps__V1__Activation>([
    (.sigmoid, PS__V1__ACTIVATION__ACTIVATION_SIGMOID),
    (.tanh, PS__V1__ACTIVATION__ACTIVATION_TANH),
    (.relu, PS__V1__ACTIVATION__ACTIVATION_RELU),
    (.linear, PS__V1__ACTIVATION__ACTIVATION_LINEAR),
    (.softmax, PS__V1__ACTIVATION__ACTIVATION_SOFTMAX),
])

let lossTable = EnumTable<LossKind, Ps__V1__Loss>([
    (.softmaxCrossEntropy, PS__V1__LOSS__LOSS_SOFTMAX_CROSS_ENTROPY),
    (.binaryCrossEntropy, PS__V1__LOSS__LOSS_BINARY_CROSS_ENTROPY),
    (.meanSquaredError, PS__V1__LOSS__LOSS_MEAN_SQUARED_ERROR),
])

let optimizerTable = EnumTable<OptimizerKind, Ps__V1__OptimizerKind>([
    (.sgd, PS__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_SGD),
    (.momentum, PS__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_MOMENTUM),
    (.nesterov, PS__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_NESTEROV),
    (.adagrad, PS__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_ADAGRAD),
    (.adadelta, PS__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_ADADELTA),
    (.rmsprop, PS__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_RMSPROP),
    (.adam, PS__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_ADAM),
    (.adamw, PS__V1__OPTIMIZER_KIND__OPTIMIZER_KIND_ADAMW),
])

let consistencyTable = EnumTable<ConsistencyMode, Ps__V1__Consistency>([
    (.sync, PS__V1__CONSISTENCY__CONSISTENCY_SYNC),
    (.delayed, PS__V1__CONSISTENCY__CONSISTENCY_DELAYED),
    (.ssp, PS__V1__CONSISTENCY__CONSISTENCY_SSP),
    (.async, PS__V1__CONSISTENCY__CONSISTENCY_ASYNC),
])

// FAIL is the wire's zero value: a spec sent before the field existed decodes to the default.
let nonFiniteTable = EnumTable<NonFinitePolicy, Ps__V1__NonFinitePolicy>([
    (.fail, PS__V1__NON_FINITE_POLICY__NON_FINITE_POLICY_FAIL),
    (.stop, PS__V1__NON_FINITE_POLICY__NON_FINITE_POLICY_STOP),
    (.continue, PS__V1__NON_FINITE_POLICY__NON_FINITE_POLICY_CONTINUE),
])

let monitorTable = EnumTable<MonitorMetric, Ps__V1__Monitor>([
    (.valLoss, PS__V1__MONITOR__MONITOR_VAL_LOSS),
    (.valAccuracy, PS__V1__MONITOR__MONITOR_VAL_ACCURACY),
])
