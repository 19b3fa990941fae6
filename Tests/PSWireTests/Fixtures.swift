import XCTest
import PSTestSupport
import PSWireC
@testable import PSWire

/// Specs that between them use every data, preprocessing, loss, optimizer and early-stopping variant.
enum Fixtures {
    static func spec(optimizer: OptimizerKind = .adam, loss: LossKind = .softmaxCrossEntropy,
                     variant: Int = 0) -> JobSpec {
        let data: DataSpec
        switch variant % 3 {
        case 0:
            data = DataSpec(format: .idx,
                            train: .idx(images: "data/train-images.gz", labels: "data/train-labels.gz"),
                            validation: .idx(images: "data/val-images", labels: "data/val-labels"),
                            test: .idx(images: "data/t10k-images", labels: "data/t10k-labels"),
                            preprocessing: .scale(255))
        case 1:
            data = DataSpec(format: .csv, train: .csv(path: "iris.csv"), validationSplit: 0.2,
                            preprocessing: .standardize, header: true, labelColumn: .name("species ✓"))
        default:
            data = DataSpec(format: .csv, train: .csv(path: "housing.csv"), validation: .csv(path: "v.csv"),
                            test: .csv(path: "test.csv"), preprocessing: .none, labelColumn: .index(13))
        }
        let optimizerSpec = OptimizerSpec(kind: optimizer, learningRate: 0.001, momentum: 0.9, beta1: 0.8,
                                          beta2: 0.995, epsilon: 1e-7, rho: 0.95, alpha: 0.98,
                                          weightDecay: 0.01, clipNorm: variant % 2 == 0 ? 5 : nil)
        let early: EarlyStoppingSpec? = switch variant % 3 {
        case 0: EarlyStoppingSpec(monitor: .valAccuracy, patience: 3, minDelta: 0.001, restoreBest: true)
        case 1: EarlyStoppingSpec(monitor: .valLoss, patience: 0, minDelta: 0, restoreBest: false)
        default: nil
        }
        return JobSpec(
            name: "job-\(optimizer)-\(loss)-\(variant)", seed: UInt64.max - UInt64(variant), data: data,
            model: ModelSpec(inputs: 4, layers: [
                LayerSpec(units: 8, activation: .relu, dropout: 0.25),
                LayerSpec(units: 5, activation: .tanh),
                LayerSpec(units: 3, activation: loss == .softmaxCrossEntropy ? .softmax : .sigmoid),
            ]),
            loss: loss, optimizer: optimizerSpec,
            training: TrainingSpec(batchSize: 128, chunks: 8, epochs: 10,
                                   computeSignature: variant % 3 == 1 ? "openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-1" : nil,
                                   allowMixedSignatures: variant % 3 == 2,
                                   onNonFinite: NonFinitePolicy.allCases[variant / 2 % 3]),
            earlyStopping: early)
    }

    /// 4·8+8 + 8·5+5 + 5·3+3 parameters, the layout of `spec()`.
    static let parameterCount = 103

    static func model(summary: TrainingSummary = summaryAll, preprocessing: FittedPreprocessing? = nil) -> TrainedModel {
        TrainedModel(
            spec: spec(),
            preprocessing: preprocessing ?? .standardize(mean: [0.5, -1, 2e-3, 7], std: [1, 0.25, 3, 1]),
            parameters: (0..<parameterCount).map { Float($0) * 0.01 - 0.5 },
            summary: summary)
    }

    static let summaryAll: TrainingSummary = {
        var s = TrainingSummary(
            epochsRun: 7, bestEpoch: 5, stoppedEarly: true, trainLoss: 0.125, validationLoss: 0.25,
            validationAccuracy: 0.97, testLoss: 0.3, testAccuracy: 0.96, testMSE: 0.01, samplesPerSecond: 12345.5)
        s.computeSignatures = ["openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-1", "openblas-0.3.21/SkylakeX/avx2/glibc-2.36/threads-1"]
        return s
    }()

    static let summaryNone = TrainingSummary(epochsRun: 1, bestEpoch: 1, stoppedEarly: false, trainLoss: 2.5,
                                             samplesPerSecond: 10)

    static let digest = Digest.hex(Digest.sha256("weights"))

    static func assignment(kind: WorkKind = .train, subtrees: [ChunkRange]? = nil) -> Assignment {
        Assignment(jobId: "job-1", kind: kind, step: 17, epoch: 2, version: 17, batchStart: 2176, batchSize: 128,
                   subtrees: subtrees ?? [ChunkRange(firstChunk: 0, chunkCount: 4), ChunkRange(firstChunk: 4, chunkCount: 2),
                                          ChunkRange(firstChunk: 6, chunkCount: 1)])
    }

    /// `count` workers cycling through every state, busy ones on job-1.
    static func workers(_ count: Int) -> [WorkerStatus] {
        (0..<count).map { i in
            let state = WorkerState.allCases[i % WorkerState.allCases.count]
            return WorkerStatus(workerId: UInt64(i + 1), name: "worker-\(i)@host", address: "10.0.0.\(i % 250):7\(i % 10)00",
                                state: state, threads: 1 + i % 8, lastHeartbeatAgeSeconds: Double(i) * 0.125,
                                samplesPerSecond: state == .working ? 1000 + Double(i) : 0,
                                jobId: state == .working ? "job-1" : "", stepsDone: i * 3, chunksHeld: state == .working ? i % 5 : 0,
                                computeSignature: "openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-1",
                                excludedReason: i % 3 == 2 ? "job-1 computes bitwise only on workers with another signature" : "")
        }
    }

    /// A job in `state`; even variants carry every optional metric, odd ones none.
    static func job(_ i: Int, state: JobState? = nil) -> JobStatus {
        let full = i % 2 == 0
        var status = JobStatus(jobId: "job-\(i)", name: "mnist ✓ \(i)", state: state ?? JobState.allCases[i % JobState.allCases.count],
                         epoch: i % 11, epochs: 10, step: i * 7, stepsPerEpoch: 469,
                         trainLoss: full ? 0.25 + Double(i) : nil, validationLoss: full ? 0.5 : nil,
                         validationAccuracy: full ? 0.9875 : nil, bestEpoch: i % 4,
                         samplesPerSecond: Double(i) * 100.5, etaSeconds: full ? 12.5 : nil,
                         message: full ? "" : "stopped: val_loss did not improve", workers: i % 9)
        status.computeSignature = full ? "openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-1" : ""
        status.excludedWorkers = i % 3
        status.allowMixedSignatures = !full
        status.consistency = [Consistency.sync, .delayed(2), .ssp(3), .async][i % 4].description
        status.stalenessCounts = i % 4 >= 2 ? [i, 0, 7 * i + 1] : []
        return status
    }

    static func statusReply(workers: Int, jobs: Int) -> StatusReply {
        StatusReply(cluster: ClusterStatus(serverAddress: "127.0.0.1:7070", uptimeSeconds: 3600.25,
                                           workers: Self.workers(workers)),
                    jobs: (0..<jobs).map { job($0) })
    }
}

/// Asserts that `body` throws a WireError whose text names `field`, and returns it.
@discardableResult
func assertWireError<T>(_ body: @autoclosure () throws -> T, names field: String,
                        file: StaticString = #filePath, line: UInt = #line) -> WireError? {
    do {
        let value = try body()
        XCTFail("expected a WireError naming \(field), decoded \(value)", file: file, line: line)
    } catch let error as WireError {
        XCTAssertTrue(error.description.contains(field), "'\(error)' does not name \(field)", file: file, line: line)
        return error
    } catch {
        XCTFail("expected a WireError, got \(error)", file: file, line: line)
    }
    return nil
}

/// Unpacks `bytes` as a generated message, lets `edit` break it, and packs it again. Edits may
/// replace strings with `strdup` copies (freed with the tree); a submessage pointer set to NULL leaks,
/// which is fine in a test.
func edited<T>(_ bytes: [UInt8],
               unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<T>?,
               free: (UnsafeMutablePointer<T>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
               _ edit: (UnsafeMutablePointer<T>) -> Void) -> [UInt8] {
    let message = bytes.withUnsafeBufferPointer { unpack(nil, $0.count, $0.baseAddress) }!
    defer { free(message, nil) }
    edit(message)
    let base = UnsafeRawPointer(message).assumingMemoryBound(to: ProtobufCMessage.self)
    let size = protobuf_c_message_get_packed_size(base)
    return [UInt8](unsafeUninitializedCapacity: max(size, 1)) { buffer, count in
        count = protobuf_c_message_pack(base, buffer.baseAddress!)
    }
}

/// Frame payload (envelope bytes) of a message.
func payload(_ message: Message, requestId: UInt64 = 1) throws -> [UInt8] {
    Array(try encodeFrame(requestId: requestId, message: message).dropFirst(WireLimits.frameHeaderBytes))
}
