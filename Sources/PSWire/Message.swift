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
    /// Server to client, answering a hello when the cluster has a token (see `AuthProof`).
    case authChallenge(AuthChallenge)
    /// Client to server: its proof, answering the challenge.
    case authResponse(clientProof: [UInt8])
    /// Worker to server: it cannot run this job (data outside its roots, not a regular file, unreadable).
    case cannotRun(jobId: String, reason: String)
    case error(ErrorReply)
    /// A request succeeded and has nothing else to say.
    case ack
    case registerWorker(RegisterWorker)
    case registered(Registered)
    case heartbeat(Heartbeat)
    /// Client to coordinator: validate and queue a job.
    case submitJob(JobSpec)
    case submitted(jobId: String)
    /// Client to coordinator: cluster status and one job, or every job when `jobId` is "".
    case statusRequest(jobId: String)
    case statusReply(StatusReply)
    /// Client to coordinator: every job, without the cluster part; answered by `jobList`.
    case listJobs
    case jobList([JobStatus])
    case cancelJob(jobId: String)
    /// Client to coordinator: answer with `jobResult` once the job has ended.
    case waitJob(jobId: String)
    case jobResult(JobResult)
    /// Client to coordinator: send the job's trained model.
    case fetchModel(jobId: String)
    case modelData(TrainedModel)
    /// Coordinator to worker: the job's spec, once per worker per job before its first assignment.
    case startJob(StartJob)
    /// Coordinator to worker: compute these chunks (sent with request id 0).
    case assignment(Assignment)
    case pullWeights(PullWeights)
    case weights(Weights)
    case pushGradient(PushGradient)
    case pushAck(PushAck)
    case evalResult(EvalResult)
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
    /// The client's fresh nonce for the authentication handshake (32 random bytes; empty from a client
    /// that has no token).
    public var nonce: [UInt8]
    /// Workers: their `ComputeSignature` as text (required); clients: empty.
    public var computeSignature: String

    public init(protocolVersion: UInt32 = WireLimits.protocolVersion, role: PeerRole, name: String,
                nonce: [UInt8] = [], computeSignature: String = "") {
        self.protocolVersion = protocolVersion
        self.role = role
        self.name = name
        self.nonce = nonce
        self.computeSignature = computeSignature
    }
}

/// A server's answer to a hello when the cluster has a token: its nonce and its proof.
public struct AuthChallenge: Equatable, Sendable {
    public var serverNonce: [UInt8]
    public var serverProof: [UInt8]

    public init(serverNonce: [UInt8], serverProof: [UInt8]) {
        self.serverNonce = serverNonce
        self.serverProof = serverProof
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
    /// The running job computes only on workers of another compute signature (the worker stays idle).
    case signatureMismatch
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
///
/// A decoded slice does not copy its values out of the frame: `data` is a view of the receive buffer
/// (see `FloatData`), and `values` makes the one copy for callers that need an array of their own.
public struct TensorSlice: Equatable, Sendable {
    /// Index of the first value in the flat parameter vector.
    public var offset: Int
    public var data: FloatData

    public init(offset: Int, data: FloatData) {
        self.offset = offset
        self.data = data
    }

    public init(offset: Int, values: [Float]) {
        self.init(offset: offset, data: FloatData(values))
    }

    /// The values as an array: free for a slice built from one, one copy for a decoded slice.
    public var values: [Float] { data.array }

    public var count: Int { data.count }

    /// The key range the values cover.
    public var range: KeyRange { KeyRange(offset: offset, count: data.count) }
    /// The same key range as indices of the flat parameter vector.
    public var indices: Range<Int> { offset..<(offset + data.count) }
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
    /// The acknowledged push's `gradient.offset`: which push range, when a subtree is pushed in ranges.
    public var offset: Int

    public init(jobId: String, step: Int, subtree: ChunkRange, duplicate: Bool, offset: Int = 0) {
        self.jobId = jobId
        self.step = step
        self.subtree = subtree
        self.duplicate = duplicate
        self.offset = offset
    }
}

// MARK: - Work: assignments and evaluation

/// What an assignment asks a worker to compute.
public enum WorkKind: String, Equatable, Sendable, CaseIterable {
    /// Gradients of a training step.
    case train
    /// Forward-only totals on the validation split.
    case validate
    /// Forward-only totals on the test split.
    case test
}

/// Coordinator to worker: compute these subtrees of one step (or evaluation batch) with weights `version`.
public struct Assignment: Equatable, Sendable {
    public var jobId: String
    public var kind: WorkKind
    public var step: Int
    public var epoch: Int
    /// Weights version the gradients must be computed with (= step in synchronous mode).
    public var version: Int
    /// First sample of the batch in the epoch's permutation (train) or in the split (validate, test).
    public var batchStart: Int
    public var batchSize: Int
    /// Aligned subtrees of the batch's reduction tree; never empty.
    public var subtrees: [ChunkRange]

    public init(jobId: String, kind: WorkKind, step: Int, epoch: Int, version: Int, batchStart: Int,
                batchSize: Int, subtrees: [ChunkRange]) {
        self.jobId = jobId
        self.kind = kind
        self.step = step
        self.epoch = epoch
        self.version = version
        self.batchStart = batchStart
        self.batchSize = batchSize
        self.subtrees = subtrees
    }
}

/// Worker to coordinator: forward-only totals of one evaluation subtree.
public struct EvalResult: Equatable, Sendable {
    public var jobId: String
    public var kind: WorkKind
    public var epoch: Int
    public var subtree: ChunkRange
    public var lossSum: Double
    public var correct: Int
    public var samples: Int
    /// Regression: sum over samples and outputs of the squared error (0 for classification).
    public var squaredErrorSum: Double

    public init(jobId: String, kind: WorkKind, epoch: Int, subtree: ChunkRange, lossSum: Double, correct: Int,
                samples: Int, squaredErrorSum: Double = 0) {
        self.jobId = jobId
        self.kind = kind
        self.epoch = epoch
        self.subtree = subtree
        self.lossSum = lossSum
        self.correct = correct
        self.samples = samples
        self.squaredErrorSum = squaredErrorSum
    }
}

/// Coordinator to worker: a job's spec, sent once per worker per job before its first assignment.
public struct StartJob: Equatable, Sendable {
    public var jobId: String
    public var spec: JobSpec

    public init(jobId: String, spec: JobSpec) {
        self.jobId = jobId
        self.spec = spec
    }
}

// MARK: - Status and results

/// A worker's state as the coordinator sees it.
public enum WorkerState: String, Equatable, Sendable, CaseIterable {
    case idle
    case working
    /// Missed at least one heartbeat, not yet timed out.
    case suspect
    case lost
}

/// One registered worker, as the coordinator sees it.
public struct WorkerStatus: Equatable, Sendable {
    public var workerId: UInt64
    public var name: String
    /// Peer address, "host:port".
    public var address: String
    public var state: WorkerState
    public var threads: Int
    public var lastHeartbeatAgeSeconds: Double
    public var samplesPerSecond: Double
    /// "" when idle.
    public var jobId: String
    public var stepsDone: Int
    /// Chunks assigned to the worker and not yet pushed.
    public var chunksHeld: Int
    public var computeSignature: String
    /// Why the running job gives this worker no chunks (another signature); "" otherwise.
    public var excludedReason: String

    public init(workerId: UInt64, name: String, address: String, state: WorkerState, threads: Int,
                lastHeartbeatAgeSeconds: Double, samplesPerSecond: Double, jobId: String, stepsDone: Int,
                chunksHeld: Int, computeSignature: String = "", excludedReason: String = "") {
        self.computeSignature = computeSignature
        self.excludedReason = excludedReason
        self.workerId = workerId
        self.name = name
        self.address = address
        self.state = state
        self.threads = threads
        self.lastHeartbeatAgeSeconds = lastHeartbeatAgeSeconds
        self.samplesPerSecond = samplesPerSecond
        self.jobId = jobId
        self.stepsDone = stepsDone
        self.chunksHeld = chunksHeld
    }
}

/// The cluster as the coordinator sees it.
public struct ClusterStatus: Equatable, Sendable {
    public var serverAddress: String
    public var uptimeSeconds: Double
    public var workers: [WorkerStatus]
    /// The server's compute signature (it applies the updates).
    public var serverComputeSignature: String

    public init(serverAddress: String, uptimeSeconds: Double, workers: [WorkerStatus], serverComputeSignature: String = "") {
        self.serverComputeSignature = serverComputeSignature
        self.serverAddress = serverAddress
        self.uptimeSeconds = uptimeSeconds
        self.workers = workers
    }
}

/// One job's progress.
public struct JobStatus: Equatable, Sendable {
    public var jobId: String
    public var name: String
    public var state: JobState
    /// 1-based; 0 before the first epoch starts.
    public var epoch: Int
    public var epochs: Int
    /// Step within the epoch, 0-based.
    public var step: Int
    public var stepsPerEpoch: Int
    public var trainLoss: Double?
    public var validationLoss: Double?
    public var validationAccuracy: Double?
    /// 0 before the first validation.
    public var bestEpoch: Int
    public var samplesPerSecond: Double
    public var etaSeconds: Double?
    /// Why the job failed or stopped; "" otherwise.
    public var message: String
    /// Workers holding chunks of this job.
    public var workers: Int
    /// The signature every worker computing this job has ("" before the job starts, or when mixed are accepted).
    public var computeSignature = ""
    /// Connected workers left idle because their signature differs from the job's.
    public var excludedWorkers = 0
    /// The spec accepts workers of any signature: the result is then not bitwise-reproducible.
    public var allowMixedSignatures = false
    /// The newest checkpoint of a running job: training steps it holds, and its age in seconds.
    public var checkpointStep: Int?
    public var checkpointAgeSeconds: Double?
    /// Why the last checkpoint could not be written ("" when it was).
    public var checkpointError = ""
    /// Why the job has not moved for the server's stall time ("" while it moves, or has ended).
    public var stallReason = ""
    /// `training.consistency` as `Consistency.description` gives it: `sync`, `delayed (d=1)`, `ssp (s=2)`, `async`.
    public var consistency = ""
    /// `ssp` and `async`: pushes applied at each staleness (index = staleness, at most
    /// `ConsistencyLimits.asyncStalenessMax`) in this run so far; empty in the other modes.
    public var stalenessCounts: [Int] = []

    public init(jobId: String, name: String, state: JobState, epoch: Int, epochs: Int, step: Int,
                stepsPerEpoch: Int, trainLoss: Double? = nil, validationLoss: Double? = nil,
                validationAccuracy: Double? = nil, bestEpoch: Int, samplesPerSecond: Double,
                etaSeconds: Double? = nil, message: String = "", workers: Int) {
        self.jobId = jobId
        self.name = name
        self.state = state
        self.epoch = epoch
        self.epochs = epochs
        self.step = step
        self.stepsPerEpoch = stepsPerEpoch
        self.trainLoss = trainLoss
        self.validationLoss = validationLoss
        self.validationAccuracy = validationAccuracy
        self.bestEpoch = bestEpoch
        self.samplesPerSecond = samplesPerSecond
        self.etaSeconds = etaSeconds
        self.message = message
        self.workers = workers
    }
}

/// Answer to `statusRequest`: the cluster and the requested job (or every job).
public struct StatusReply: Equatable, Sendable {
    public var cluster: ClusterStatus
    public var jobs: [JobStatus]

    public init(cluster: ClusterStatus, jobs: [JobStatus]) {
        self.cluster = cluster
        self.jobs = jobs
    }
}

/// Answer to `waitJob`: a job's final state and report.
public struct JobResult: Equatable, Sendable {
    public var jobId: String
    /// Always final (`isFinal`); decoding rejects any other state.
    public var state: JobState
    /// nil when the job ended before finishing an epoch.
    public var summary: TrainingSummary?
    /// Lower-case hex (64 chars) in Swift; 32 raw bytes on the wire; "" when there is no summary.
    public var weightsSHA256: String
    public var message: String

    public init(jobId: String, state: JobState, summary: TrainingSummary? = nil, weightsSHA256: String = "",
                message: String = "") {
        self.jobId = jobId
        self.state = state
        self.summary = summary
        self.weightsSHA256 = weightsSHA256
        self.message = message
    }
}
