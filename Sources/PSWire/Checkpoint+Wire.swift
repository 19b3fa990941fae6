// Checkpoint ⇄ ps.v1.CheckpointFile: a serialized ps.v1.Checkpoint and its SHA-256. Decoding checks
// the format, the checksum, then every field's presence and range; whether the checkpoint fits the job
// it is meant to resume is `Checkpoint.problem(...)`'s question.
import PSCore
import PSWireC

extension Checkpoint {
    /// The `format` string of every checkpoint file this build writes and the only one it reads.
    public static let fileFormat = "ps-checkpoint/1"

    /// The bytes of a checkpoint file.
    public func fileBytes() -> [UInt8] {
        let body: [UInt8] = {
            let arena = CArena()
            return withExtendedLifetime(arena) { packUnlimited(cMessage(arena)) }
        }()
        let arena = CArena()
        return withExtendedLifetime(arena) {
            let file: UnsafeMutablePointer<Ps__V1__CheckpointFile> = arena.message(ps__v1__checkpoint_file__init)
            file.pointee.format = arena.string(Self.fileFormat)
            file.pointee.body = arena.binary(body)
            file.pointee.body_sha256 = arena.binary(Digest.sha256(body))
            return packUnlimited(file)
        }
    }

    /// Decodes a checkpoint file's bytes. A truncated, damaged or foreign file is an error saying which
    /// check failed (never a checkpoint with some fields read).
    public init(fileBytes bytes: [UInt8]) throws(WireError) {
        guard let file = unpack(bytes, { ps__v1__checkpoint_file__unpack(nil, $0, $1) }) else {
            throw WireError(field: "CheckpointFile", "not a valid protobuf message (\(bytes.count) bytes; truncated or not a checkpoint)")
        }
        defer { ps__v1__checkpoint_file__free_unpacked(file, nil) }
        let format = string(file.pointee.format)
        guard format == Self.fileFormat else {
            throw WireError(field: "CheckpointFile.format", "'\(format.prefix(64))' is not \(Self.fileFormat)")
        }
        let body = PSWire.bytes(file.pointee.body)
        guard PSWire.bytes(file.pointee.body_sha256) == Digest.sha256(body) else {
            throw WireError(field: "CheckpointFile.body_sha256", "the checksum does not match the \(body.count) bytes of the checkpoint (damaged)")
        }
        guard let message = unpack(body, { ps__v1__checkpoint__unpack(nil, $0, $1) }) else {
            throw WireError(field: "Checkpoint", "not a valid protobuf message")
        }
        defer { ps__v1__checkpoint__free_unpacked(message, nil) }
        try self.init(c: message.pointee, "Checkpoint")
        epochElapsedSeconds = try nonNegative(message.pointee.epoch_elapsed_seconds, "Checkpoint.epoch_elapsed_seconds")
    }

    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__Checkpoint> {
        let m: UnsafeMutablePointer<Ps__V1__Checkpoint> = arena.message(ps__v1__checkpoint__init)
        m.pointee.job_id = arena.string(jobId)
        m.pointee.spec_sha256 = arena.binary(specSHA256)
        m.pointee.version = uint64(version, "checkpoint.version")
        m.pointee.phase = phaseTable.c(phase)
        m.pointee.epoch = uint64(epoch, "checkpoint.epoch")
        m.pointee.step_in_epoch = uint64(stepInEpoch, "checkpoint.stepInEpoch")
        m.pointee.epoch_loss_sum = epochLossSum
        m.pointee.epoch_correct = uint64(epochCorrect, "checkpoint.epochCorrect")
        m.pointee.epoch_samples = uint64(epochSamples, "checkpoint.epochSamples")
        m.pointee.training_seconds = trainingSeconds
        m.pointee.trained_samples = uint64(trainedSamples, "checkpoint.trainedSamples")
        m.pointee.epoch_seconds = epochSeconds
        m.pointee.epoch_elapsed_seconds = epochElapsedSeconds
        m.pointee.n_history = history.count
        m.pointee.history = repeatedMessages(arena, history.map { $0.cMessage(arena) })
        m.pointee.stopper = stopper?.cMessage(arena)
        m.pointee.tracker = tracker.cMessage(arena)
        m.pointee.has_best = hasBest ? 1 : 0
        m.pointee.best_version = uint64(bestVersion, "checkpoint.bestVersion")
        m.pointee.best_parameters = arena.floatBinary(bestParameters)
        m.pointee.kept_epoch = uint64(keptEpoch, "checkpoint.keptEpoch")
        m.pointee.kept_version = uint64(keptVersion, "checkpoint.keptVersion")
        m.pointee.signature = arena.string(signature)
        m.pointee.n_signatures_used = signaturesUsed.count
        m.pointee.signatures_used = repeatedMessages(arena, signaturesUsed.map { arena.string($0) })
        m.pointee.parameters = arena.floatBinary(parameters)
        m.pointee.optimizer_steps = uint64(optimizerSteps, "checkpoint.optimizerSteps")
        m.pointee.n_optimizer_slots = optimizerSlots.count
        m.pointee.optimizer_slots = arena.array(optimizerSlots.map { arena.floatBinary($0) })
        m.pointee.n_older_versions = olderVersions.count
        m.pointee.older_versions = repeatedMessages(arena, olderVersions.map { older in
            let o: UnsafeMutablePointer<Ps__V1__WeightsVersion> = arena.message(ps__v1__weights_version__init)
            o.pointee.version = uint64(older.version, "checkpoint.olderVersions.version")
            o.pointee.parameters = arena.floatBinary(older.parameters)
            return o
        })
        return m
    }

    init(c: Ps__V1__Checkpoint, _ path: String) throws(WireError) {
        let history = try repeated(c.history, c.n_history, "\(path).history") { (e, p) throws(WireError) in try EpochReport(c: e, p) }
        let slots = try (0..<c.n_optimizer_slots).map { (i) throws(WireError) in
            try floats(c.optimizer_slots[i], "\(path).optimizer_slots[\(i)]")
        }
        self.init(
            jobId: string(c.job_id),
            specSHA256: bytes(c.spec_sha256),
            version: try int(c.version, "\(path).version"),
            phase: try phaseTable.swift(c.phase, "\(path).phase"),
            epoch: try int(c.epoch, "\(path).epoch"),
            stepInEpoch: try int(c.step_in_epoch, "\(path).step_in_epoch"),
            epochLossSum: c.epoch_loss_sum,
            epochCorrect: try int(c.epoch_correct, "\(path).epoch_correct"),
            epochSamples: try int(c.epoch_samples, "\(path).epoch_samples"),
            trainingSeconds: try nonNegative(c.training_seconds, "\(path).training_seconds"),
            trainedSamples: try int(c.trained_samples, "\(path).trained_samples"),
            epochSeconds: try nonNegative(c.epoch_seconds, "\(path).epoch_seconds"),
            history: history,
            stopper: try c.stopper.map { (s) throws(WireError) in try StopperState(c: s.pointee, "\(path).stopper") },
            tracker: try StopperState(c: try required(c.tracker, "\(path).tracker"), "\(path).tracker"),
            hasBest: c.has_best != 0,
            bestVersion: try int(c.best_version, "\(path).best_version"),
            bestParameters: try floats(c.best_parameters, "\(path).best_parameters"),
            keptEpoch: try int(c.kept_epoch, "\(path).kept_epoch"),
            keptVersion: try int(c.kept_version, "\(path).kept_version"),
            signature: string(c.signature),
            signaturesUsed: (0..<c.n_signatures_used).map { string(c.signatures_used[$0]) },
            parameters: try floats(c.parameters, "\(path).parameters"),
            optimizerSteps: try int(c.optimizer_steps, "\(path).optimizer_steps"),
            optimizerSlots: slots)
        olderVersions = try repeated(c.older_versions, c.n_older_versions, "\(path).older_versions") { (o, p) throws(WireError) in
            WeightsVersion(version: try int(o.version, "\(p).version"), parameters: try floats(o.parameters, "\(p).parameters"))
        }
    }
}

private let phaseTable = EnumTable<Checkpoint.Phase, Ps__V1__CheckpointPhase>([
    (.train, PS__V1__CHECKPOINT_PHASE__CHECKPOINT_PHASE_TRAIN),
    (.validate, PS__V1__CHECKPOINT_PHASE__CHECKPOINT_PHASE_VALIDATE),
    (.test, PS__V1__CHECKPOINT_PHASE__CHECKPOINT_PHASE_TEST),
])

extension Checkpoint.StopperState {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__StopperState> {
        let m: UnsafeMutablePointer<Ps__V1__StopperState> = arena.message(ps__v1__stopper_state__init)
        if let best {
            m.pointee.has_best_case = PS__V1__STOPPER_STATE__HAS_BEST_BEST
            m.pointee.best = best
        }
        m.pointee.best_epoch = uint64(bestEpoch, "stopper.bestEpoch")
        m.pointee.wait = uint64(wait, "stopper.wait")
        return m
    }

    init(c: Ps__V1__StopperState, _ path: String) throws(WireError) {
        self.init(best: c.has_best_case == PS__V1__STOPPER_STATE__HAS_BEST_BEST ? c.best : nil,
                  bestEpoch: try int(c.best_epoch, "\(path).best_epoch"), wait: try int(c.wait, "\(path).wait"))
    }
}

extension EpochReport {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__EpochRecord> {
        let m: UnsafeMutablePointer<Ps__V1__EpochRecord> = arena.message(ps__v1__epoch_record__init)
        m.pointee.epoch = uint64(epoch, "epoch.epoch")
        m.pointee.train_loss = trainLoss
        if let trainAccuracy {
            m.pointee.has_train_accuracy_case = PS__V1__EPOCH_RECORD__HAS_TRAIN_ACCURACY_TRAIN_ACCURACY
            m.pointee.train_accuracy = trainAccuracy
        }
        if let validationLoss {
            m.pointee.has_validation_loss_case = PS__V1__EPOCH_RECORD__HAS_VALIDATION_LOSS_VALIDATION_LOSS
            m.pointee.validation_loss = validationLoss
        }
        if let validationAccuracy {
            m.pointee.has_validation_accuracy_case = PS__V1__EPOCH_RECORD__HAS_VALIDATION_ACCURACY_VALIDATION_ACCURACY
            m.pointee.validation_accuracy = validationAccuracy
        }
        m.pointee.samples_per_second = samplesPerSecond
        m.pointee.seconds = seconds
        m.pointee.improved = improved ? 1 : 0
        m.pointee.best_epoch = uint64(bestEpoch, "epoch.bestEpoch")
        m.pointee.stop_early = stopEarly ? 1 : 0
        return m
    }

    init(c: Ps__V1__EpochRecord, _ path: String) throws(WireError) {
        self.init(
            epoch: try int(c.epoch, "\(path).epoch", min: 1),
            trainLoss: c.train_loss,
            trainAccuracy: c.has_train_accuracy_case == PS__V1__EPOCH_RECORD__HAS_TRAIN_ACCURACY_TRAIN_ACCURACY ? c.train_accuracy : nil,
            validationLoss: c.has_validation_loss_case == PS__V1__EPOCH_RECORD__HAS_VALIDATION_LOSS_VALIDATION_LOSS ? c.validation_loss : nil,
            validationAccuracy: c.has_validation_accuracy_case == PS__V1__EPOCH_RECORD__HAS_VALIDATION_ACCURACY_VALIDATION_ACCURACY
                ? c.validation_accuracy : nil,
            samplesPerSecond: c.samples_per_second,
            seconds: c.seconds,
            improved: c.improved != 0,
            bestEpoch: try int(c.best_epoch, "\(path).best_epoch"),
            stopEarly: c.stop_early != 0)
    }
}

extension CArena {
    /// A copy of `values` as little-endian float32 binary data.
    func floatBinary(_ values: [Float]) -> ProtobufCBinaryData {
        precondition(UInt32(1).littleEndian == 1, "files hold little-endian float32; big-endian hosts are not supported")
        return values.withUnsafeBytes { binary(Array($0)) }
    }
}
