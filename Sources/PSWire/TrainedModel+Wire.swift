// TrainedModel ⇄ ps.v1.ModelFile, the model file format, and reading and writing model files.
import PSWireC

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension TrainedModel {
    /// The `format` string of every model file this build writes and the only one it reads.
    public static let fileFormat = "ps-model/1"

    /// The model as a serialized `ps.v1.ModelFile`: the exact bytes of a model file. Files have no
    /// size limit; sending one in `ModelData` is subject to `WireLimits.frameBytesMax`.
    public func serialized() -> [UInt8] {
        let arena = CArena()
        return withExtendedLifetime(arena) { withCMessage(arena) { packUnlimited($0) } }
    }

    /// Decodes and checks a serialized `ps.v1.ModelFile`: the format string, every spec field, that
    /// the statistics and parameters match the spec's layout, and the summary.
    public init(serialized bytes: some Collection<UInt8>) throws(WireError) {
        guard let message = unpack(bytes, { ps__v1__model_file__unpack(nil, $0, $1) }) else {
            throw WireError(field: "ModelFile", "not a valid protobuf message")
        }
        defer { ps__v1__model_file__free_unpacked(message, nil) }
        try self.init(c: message.pointee, "ModelFile")
    }

    /// Reads a model file written by `write(to:)`.
    public static func read(path: String) throws(WireError) -> TrainedModel {
        let bytes = try readFile(path)
        do {
            return try TrainedModel(serialized: bytes)
        } catch {
            throw WireError(error.kind, field: error.field, "\(error.message) (in \(path))")
        }
    }

    /// Writes the model file atomically: to a temporary file beside `path`, flushed, then renamed over
    /// it, so a crash or a concurrent reader never sees half a model.
    public func write(to path: String) throws(WireError) {
        try writeFileAtomically(path, serialized())
    }

    /// Builds the ModelFile in `arena` and hands it to `body` while the parameter bytes it points at
    /// (the array's own storage, not a copy) are valid.
    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<Ps__V1__ModelFile>) -> R) -> R {
        let m: UnsafeMutablePointer<Ps__V1__ModelFile> = arena.message(ps__v1__model_file__init)
        m.pointee.format = arena.string(Self.fileFormat)
        m.pointee.spec = spec.cMessage(arena)
        m.pointee.preprocessing = preprocessing.cMessage(arena)
        let sizes = [spec.model.inputs] + spec.model.layers.map(\.units)
        m.pointee.n_layer_sizes = sizes.count
        m.pointee.layer_sizes = arena.array(sizes.map { uint64($0, "layer size") })
        m.pointee.summary = summary.cMessage(arena)
        return withFloatBytes(parameters) { data in
            m.pointee.parameters = data
            return body(m)
        }
    }

    init(c: Ps__V1__ModelFile, _ path: String) throws(WireError) {
        let format = string(c.format)
        guard format == Self.fileFormat else {
            throw WireError(field: "\(path).format", "'\(format.prefix(64))' is not \(Self.fileFormat)")
        }
        let spec = try JobSpec(c: try required(c.spec, "\(path).spec"), "\(path).spec")
        let preprocessing = try FittedPreprocessing(
            c: try required(c.preprocessing, "\(path).preprocessing"), "\(path).preprocessing")
        if case let .standardize(mean, std) = preprocessing, mean.count != spec.model.inputs || std.count != spec.model.inputs {
            throw WireError(field: "\(path).preprocessing.standardize",
                            "\(mean.count) means and \(std.count) deviations for \(spec.model.inputs) inputs")
        }
        // layer_sizes is redundant; when present it must agree with the spec it summarises.
        if c.n_layer_sizes > 0 {
            let stored = Array(UnsafeBufferPointer(start: c.layer_sizes, count: c.n_layer_sizes))
            let expected = ([spec.model.inputs] + spec.model.layers.map(\.units)).map { UInt64($0) }
            guard stored == expected else {
                throw WireError(field: "\(path).layer_sizes", "\(stored) does not match the spec's \(expected)")
            }
        }
        let parameters = try floats(c.parameters, "\(path).parameters")
        guard let expected = spec.model.parameterCount, parameters.count == expected else {
            let layout = spec.model.parameterCount.map(String.init) ?? "more than Int.max"
            throw WireError(field: "\(path).parameters", "\(parameters.count) values, but the spec's layout has \(layout)")
        }
        self.init(spec: spec, preprocessing: preprocessing, parameters: parameters,
                  summary: try TrainingSummary(c: try required(c.summary, "\(path).summary"), "\(path).summary"))
    }
}

extension FittedPreprocessing {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__FittedPreprocessing> {
        let m: UnsafeMutablePointer<Ps__V1__FittedPreprocessing> = arena.message(ps__v1__fitted_preprocessing__init)
        switch self {
        case .none:
            m.pointee.kind_case = PS__V1__FITTED_PREPROCESSING__KIND_NONE
            m.pointee.none = arena.message(ps__v1__no_preprocessing__init)
        case let .scale(divisor):
            m.pointee.kind_case = PS__V1__FITTED_PREPROCESSING__KIND_SCALE_DIVISOR
            m.pointee.scale_divisor = divisor
        case let .standardize(mean, std):
            let s: UnsafeMutablePointer<Ps__V1__Standardization> = arena.message(ps__v1__standardization__init)
            s.pointee.n_mean = mean.count
            s.pointee.mean = arena.array(mean)
            s.pointee.n_std = std.count
            s.pointee.std = arena.array(std)
            m.pointee.kind_case = PS__V1__FITTED_PREPROCESSING__KIND_STANDARDIZE
            m.pointee.standardize = s
        }
        return m
    }

    init(c: Ps__V1__FittedPreprocessing, _ path: String) throws(WireError) {
        switch c.kind_case {
        case PS__V1__FITTED_PREPROCESSING__KIND_NONE:
            self = .none
        case PS__V1__FITTED_PREPROCESSING__KIND_SCALE_DIVISOR:
            guard c.scale_divisor.isFinite, c.scale_divisor > 0 else {
                throw WireError(field: "\(path).scale_divisor", "\(c.scale_divisor) is out of range (a positive divisor)")
            }
            self = .scale(divisor: c.scale_divisor)
        case PS__V1__FITTED_PREPROCESSING__KIND_STANDARDIZE:
            let s = try required(c.standardize, "\(path).standardize")
            let mean = Array(UnsafeBufferPointer(start: s.mean, count: s.n_mean))
            let std = Array(UnsafeBufferPointer(start: s.std, count: s.n_std))
            self = .standardize(mean: mean, std: std)
        case PS__V1__FITTED_PREPROCESSING__KIND__NOT_SET:
            throw WireError(field: path, "missing (none, scale_divisor or standardize)")
        default:
            throw WireError(field: path, "unknown case \(c.kind_case.rawValue)")
        }
    }
}

extension TrainingSummary {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__TrainingSummary> {
        let m: UnsafeMutablePointer<Ps__V1__TrainingSummary> = arena.message(ps__v1__training_summary__init)
        m.pointee.epochs_run = uint64(epochsRun, "summary.epochsRun")
        m.pointee.best_epoch = uint64(bestEpoch, "summary.bestEpoch")
        m.pointee.stopped_early = stoppedEarly ? 1 : 0
        m.pointee.train_loss = trainLoss
        m.pointee.samples_per_second = samplesPerSecond
        if let validationLoss {
            m.pointee.has_validation_loss_case = PS__V1__TRAINING_SUMMARY__HAS_VALIDATION_LOSS_VALIDATION_LOSS
            m.pointee.validation_loss = validationLoss
        }
        if let validationAccuracy {
            m.pointee.has_validation_accuracy_case = PS__V1__TRAINING_SUMMARY__HAS_VALIDATION_ACCURACY_VALIDATION_ACCURACY
            m.pointee.validation_accuracy = validationAccuracy
        }
        if let testLoss {
            m.pointee.has_test_loss_case = PS__V1__TRAINING_SUMMARY__HAS_TEST_LOSS_TEST_LOSS
            m.pointee.test_loss = testLoss
        }
        if let testAccuracy {
            m.pointee.has_test_accuracy_case = PS__V1__TRAINING_SUMMARY__HAS_TEST_ACCURACY_TEST_ACCURACY
            m.pointee.test_accuracy = testAccuracy
        }
        if let testMSE {
            m.pointee.has_test_mse_case = PS__V1__TRAINING_SUMMARY__HAS_TEST_MSE_TEST_MSE
            m.pointee.test_mse = testMSE
        }
        m.pointee.n_compute_signatures = computeSignatures.count
        m.pointee.compute_signatures = repeatedMessages(arena, computeSignatures.map { arena.string($0) })
        m.pointee.timing_dependent = timingDependent ? 1 : 0
        return m
    }

    init(c: Ps__V1__TrainingSummary, _ path: String) throws(WireError) {
        self.init(
            epochsRun: try int(c.epochs_run, "\(path).epochs_run"),
            bestEpoch: try int(c.best_epoch, "\(path).best_epoch"),
            stoppedEarly: c.stopped_early != 0,
            trainLoss: c.train_loss,
            validationLoss: c.has_validation_loss_case == PS__V1__TRAINING_SUMMARY__HAS_VALIDATION_LOSS_VALIDATION_LOSS
                ? c.validation_loss : nil,
            validationAccuracy: c.has_validation_accuracy_case == PS__V1__TRAINING_SUMMARY__HAS_VALIDATION_ACCURACY_VALIDATION_ACCURACY
                ? c.validation_accuracy : nil,
            testLoss: c.has_test_loss_case == PS__V1__TRAINING_SUMMARY__HAS_TEST_LOSS_TEST_LOSS ? c.test_loss : nil,
            testAccuracy: c.has_test_accuracy_case == PS__V1__TRAINING_SUMMARY__HAS_TEST_ACCURACY_TEST_ACCURACY
                ? c.test_accuracy : nil,
            testMSE: c.has_test_mse_case == PS__V1__TRAINING_SUMMARY__HAS_TEST_MSE_TEST_MSE ? c.test_mse : nil,
            samplesPerSecond: c.samples_per_second)
        computeSignatures = (0..<c.n_compute_signatures).map { string(c.compute_signatures[$0]) }
        timingDependent = c.timing_dependent != 0
    }
}

// MARK: - Files

private func ioError(_ path: String, _ what: String) -> WireError {
    WireError(.io, field: path, "\(what): \(String(cString: strerror(errno)))")
}

private func readFile(_ path: String) throws(WireError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw ioError(path, "cannot open") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw ioError(path, "cannot stat") }
    var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
            if n == 0 { throw WireError(.io, field: path, "file shrank while being read") }
            throw ioError(path, "cannot read")
        }
        done += n
    }
    return bytes
}

private func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws(WireError) {
    let temporary = "\(path).tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw ioError(temporary, "cannot create") }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
            let error = ioError(temporary, "cannot write")
            close(fd)
            unlink(temporary)
            throw error
        }
        done += n
    }
    // Flush before the rename so the name never points at data still only in the page cache.
    let flushed = fsync(fd) == 0
    guard close(fd) == 0, flushed else {
        let error = ioError(temporary, "cannot flush")
        unlink(temporary)
        throw error
    }
    guard rename(temporary, path) == 0 else {
        let error = ioError(path, "cannot rename \(temporary) to it")
        unlink(temporary)
        throw error
    }
}
