// The Swift side of the wire: one enum case per envelope body this build speaks, with plain
// Swift payloads. Nothing here knows about protobuf-c; see Message+Wire.swift for the mapping.

/// One decoded frame: the request id it carries and its body.
public struct Envelope: Equatable, Sendable {
    /// Set by the sender of a request (non-zero, unique per connection) and echoed by the reply;
    /// 0 on messages nobody asked for.
    public var requestId: UInt64
    public var message: Message

    public init(requestId: UInt64, message: Message) {
        self.requestId = requestId
        self.message = message
    }
}

/// Every message this build can send or receive.
public enum Message: Equatable, Sendable {
    /// First message on every connection.
    case hello(Hello)
    case helloOk(HelloOk)
    case error(ErrorReply)
    /// A request succeeded and has nothing else to say.
    case ack
    case registerWorker(RegisterWorker)
    case registered(Registered)
    case heartbeat(Heartbeat)
    /// Client to coordinator: validate and queue a job.
    case submitJob(JobSpec)
    case submitted(jobId: String)
    case cancelJob(jobId: String)
    /// Client to coordinator: send the job's trained model.
    case fetchModel(jobId: String)
    case modelData(TrainedModel)
    case pullWeights(PullWeights)
    case weights(Weights)
    case pushGradient(PushGradient)
    case pushAck(PushAck)
}

/// What kind of peer opened a connection.
public enum PeerRole: Equatable, Sendable, CaseIterable {
    case worker, client, server
}

/// First message on every connection, from the side that connected.
public struct Hello: Equatable, Sendable {
    public var protocolVersion: UInt32
    public var role: PeerRole
    /// For logs and status, e.g. "worker-3@host".
    public var name: String
    /// Proof of the cluster's shared secret; empty when the cluster has none.
    public var auth: [UInt8]

    public init(protocolVersion: UInt32 = WireLimits.protocolVersion, role: PeerRole, name: String,
                auth: [UInt8] = []) {
        self.protocolVersion = protocolVersion
        self.role = role
        self.name = name
        self.auth = auth
    }
}

/// The answer to a hello whose protocol version matches.
public struct HelloOk: Equatable, Sendable {
    public var protocolVersion: UInt32
    public var serverName: String

    public init(protocolVersion: UInt32 = WireLimits.protocolVersion, serverName: String) {
        self.protocolVersion = protocolVersion
        self.serverName = serverName
    }
}

/// Why a request failed; the reply's kind of error.
public enum ErrorCode: Equatable, Sendable, CaseIterable {
    case badRequest, unknownJob, unknownStep, notAssigned, versionMismatch, tooLarge, busy, `internal`,
         unauthenticated, invalidSpec, unknownWorker, shuttingDown
}

/// A failed request, sent with the failed request's id.
public struct ErrorReply: Equatable, Sendable {
    public var code: ErrorCode
    public var message: String
    /// Path of the offending field, empty if none.
    public var field: String

    public init(code: ErrorCode, message: String, field: String = "") {
        self.code = code
        self.message = message
        self.field = field
    }
}

/// Worker to coordinator: add me to the membership list.
public struct RegisterWorker: Equatable, Sendable {
    public var name: String
    /// Compute threads the worker uses.
    public var threads: Int

    public init(name: String, threads: Int) {
        self.name = name
        self.threads = threads
    }
}

/// Coordinator to worker: its id and heartbeat timing.
public struct Registered: Equatable, Sendable {
    public var workerId: UInt64
    public var heartbeatIntervalMilliseconds: Int
    /// Silence longer than this and the worker's chunks are reassigned.
    public var heartbeatTimeoutMilliseconds: Int

    public init(workerId: UInt64, heartbeatIntervalMilliseconds: Int, heartbeatTimeoutMilliseconds: Int) {
        self.workerId = workerId
        self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
        self.heartbeatTimeoutMilliseconds = heartbeatTimeoutMilliseconds
    }
}

/// Worker to coordinator, every heartbeat interval.
public struct Heartbeat: Equatable, Sendable {
    public var workerId: UInt64
    public var stepsDone: Int
    public var samplesPerSecond: Double

    public init(workerId: UInt64, stepsDone: Int, samplesPerSecond: Double) {
        self.workerId = workerId
        self.stepsDone = stepsDone
        self.samplesPerSecond = samplesPerSecond
    }
}

/// `count` values of the flat parameter vector starting at `offset`.
public struct KeyRange: Equatable, Sendable {
    public var offset: Int
    public var count: Int

    public init(offset: Int, count: Int) {
        self.offset = offset
        self.count = count
    }
}

/// Values of a contiguous slice of the flat parameter vector (weights or a gradient sum).
public struct TensorSlice: Equatable, Sendable {
    /// Index of `values[0]` in the flat parameter vector.
    public var offset: Int
    public var values: [Float]

    public init(offset: Int, values: [Float]) {
        self.offset = offset
        self.values = values
    }

    /// The key range the values cover.
    public var range: KeyRange { KeyRange(offset: offset, count: values.count) }
}

/// An aligned subtree of the reduction tree over a batch's chunks.
public struct ChunkRange: Equatable, Sendable {
    public var firstChunk: Int
    public var chunkCount: Int

    public init(firstChunk: Int, chunkCount: Int) {
        self.firstChunk = firstChunk
        self.chunkCount = chunkCount
    }
}

/// Worker to server shard: send this key range once weights `version` exist.
public struct PullWeights: Equatable, Sendable {
    public var jobId: String
    public var version: Int
    public var range: KeyRange

    public init(jobId: String, version: Int, range: KeyRange) {
        self.jobId = jobId
        self.version = version
        self.range = range
    }
}

/// Server shard to worker: one key range of weights at one version.
public struct Weights: Equatable, Sendable {
    public var jobId: String
    public var version: Int
    public var tensor: TensorSlice

    public init(jobId: String, version: Int, tensor: TensorSlice) {
        self.jobId = jobId
        self.version = version
        self.tensor = tensor
    }
}

/// Worker to server shard: one subtree's gradient sum over the shard's key range, with its totals.
public struct PushGradient: Equatable, Sendable {
    public var jobId: String
    public var step: Int
    public var subtree: ChunkRange
    /// Sum (not mean) over the subtree's samples.
    public var gradient: TensorSlice
    public var lossSum: Double
    public var correct: Int
    public var samples: Int

    public init(jobId: String, step: Int, subtree: ChunkRange, gradient: TensorSlice, lossSum: Double,
                correct: Int, samples: Int) {
        self.jobId = jobId
        self.step = step
        self.subtree = subtree
        self.gradient = gradient
        self.lossSum = lossSum
        self.correct = correct
        self.samples = samples
    }
}

/// Server shard to worker: a push was stored, or dropped as a duplicate.
public struct PushAck: Equatable, Sendable {
    public var jobId: String
    public var step: Int
    public var subtree: ChunkRange
    public var duplicate: Bool

    public init(jobId: String, step: Int, subtree: ChunkRange, duplicate: Bool) {
        self.jobId = jobId
        self.step = step
        self.subtree = subtree
        self.duplicate = duplicate
    }
}
