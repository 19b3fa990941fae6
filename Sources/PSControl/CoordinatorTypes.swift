import PSCore
import PSMath
import PSTrain
import PSShard
import PSTransport
import PSWire

/// Limits the coordinator enforces, each with its reason.
public enum CoordinatorLimits {
    /// Workers in one cluster: chunk assignment and status stay cheap to compute and to show.
    public static let workersMax = 256
    /// Jobs waiting behind the running one: a queue longer than this is a mistake, not a plan.
    public static let queuedJobsMax = 64
    /// Finished jobs whose models stay in memory for `model pull` (older ones are read from disk).
    public static let retainedModelsMax = 16
    /// Waiters on one job (`psctl wait` connections).
    public static let waitersPerJobMax = 64
    /// Pushes the coordinator will hold for one step: one per outstanding assigned node, so at most the
    /// chunk count. A push that matches no outstanding node is refused and its connection closed, which
    /// is what keeps a flooding peer from piling up megabyte tensors.
    public static let inFlightPushesMax = Limits.chunksMax
    /// How long loading a job's data may take before the job fails ("loading data took longer than N s"):
    /// the largest allowed data set loads in well under a minute here, so ten minutes means the files are
    /// stuck (a hung network filesystem), not big. `ps-server --load-timeout` sets it.
    public static let loadSecondsDefault = 600.0
    /// How long a job's step may stay where it is, with workers connected, before status and the log say
    /// why (waiting for which worker's chunks, no worker of its signature, still loading): a step of the
    /// largest model takes a few seconds here. `ps-server --stall-seconds` sets it.
    public static let stallSecondsDefault = 30.0
}

public struct CoordinatorConfig: Sendable {
    public var serverName: String
    public var address: String
    public var heartbeatIntervalSeconds: Double
    public var heartbeatTimeoutSeconds: Double
    /// Key ranges the parameters are split into (each with its own optimizer); any count gives the same bits.
    public var shardCount: Int
    /// Threads that apply each step's update while the workers wait; any count gives the same bits.
    public var updateThreads: Int
    /// The server's own compute signature, for status (it applies the updates).
    public var computeSignature: String
    /// A job whose data has not loaded after this long fails, and its load is cancelled.
    public var loadTimeoutSeconds: Double
    /// A job whose step has not moved for this long (with workers connected) is reported as stalled, with why.
    public var stallSeconds: Double

    public init(serverName: String = "ps-server", address: String, heartbeatIntervalSeconds: Double = 1,
                heartbeatTimeoutSeconds: Double = 10, shardCount: Int = 1, updateThreads: Int = 1,
                computeSignature: String = "", loadTimeoutSeconds: Double = CoordinatorLimits.loadSecondsDefault,
                stallSeconds: Double = CoordinatorLimits.stallSecondsDefault) {
        self.computeSignature = computeSignature
        self.loadTimeoutSeconds = loadTimeoutSeconds
        self.stallSeconds = stallSeconds
        self.serverName = serverName
        self.address = address
        self.heartbeatIntervalSeconds = heartbeatIntervalSeconds
        self.heartbeatTimeoutSeconds = heartbeatTimeoutSeconds
        self.shardCount = shardCount
        self.updateThreads = updateThreads
    }
}

/// What the coordinator learns about a job's data before it can plan steps (the driver reads it with
/// `DataLoader.shape`).
public typealias PreparedData = DataShape

public enum CoordinatorEvent: Sendable {
    case connected(ConnectionID, peer: String)
    case received(ConnectionID, Envelope)
    /// The transport rejected a frame from this connection and is closing it.
    case rejected(ConnectionID, reason: String)
    case disconnected(ConnectionID)
    /// The driver finished loading a job's data (or failed to; the message names field and file), and
    /// found the newest usable checkpoint of it (nil: none, the job starts at its first step).
    case prepared(jobId: String, Result<PreparedData, PreparationError>, checkpoint: Checkpoint? = nil)
    /// A checkpoint the shard handed over was written (`steps`: training steps it holds).
    case checkpointWritten(jobId: String, steps: Int)
    /// A checkpoint could not be written; the previous one is intact and training goes on.
    case checkpointFailed(jobId: String, steps: Int, message: String)
    /// A submitted job could not be recorded in the job journal: it must not run (its client was told).
    case journalFailed(jobId: String, message: String)
    /// Periodic: heartbeat deadlines are checked here.
    case tick
    /// SIGTERM/SIGINT: close connections; unfinished jobs stay unfinished in the journal, so a restarted
    /// server resumes them (the running one from its last checkpoint).
    case shutdown
    /// The parameter shard's answer to `.finish`: the trained job's final parameters.
    case shardFinished(jobId: String, parameters: [Float], sha256: String)
    /// The parameter shard's answer to a training step's last part or whole step: applied (`version`
    /// the new one), or not applied because its gradient or update was not finite (`version` the last good).
    case shardStepApplied(jobId: String, step: Int, version: Int, problem: NonFiniteStep.Value?)
}

public struct PreparationError: Error, Equatable, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// What the runtime's observers (metrics, TensorBoard) are told. The coordinator stays free of I/O and
/// clocks: observers add the time and do the writing.
public enum Observation: Sendable {
    /// A training step was applied: the batch's mean loss and the epoch's rate so far.
    case stepCompleted(jobId: String, step: Int, epoch: Int, batchLoss: Double, batchSize: Int,
                       learningRate: Float, samplesPerSecond: Double)
    /// An epoch ended (with its validation figures when the job has validation data).
    case epochCompleted(jobId: String, report: EpochReport, learningRate: Float)
    case jobState(jobId: String, name: String, state: JobState)
    case workerJoined(workerId: UInt64)
    case workerLeft(workerId: UInt64, reason: String)
    case heartbeatMissed(workerId: UInt64)
    /// ssp/async: a batch was applied `staleness` versions after the weights it was computed on.
    case pushStaleness(jobId: String, staleness: Int)
    /// A gradient push was accepted (`duplicate`: acknowledged and dropped).
    case pushAccepted(bytes: Int, duplicate: Bool)
    case frameRejected(reason: String)
    /// The runtime, not the coordinator: a connection failed the authentication handshake
    /// (`reason`: an `AuthFailure` raw value: missing, mismatch, protocol).
    case authenticationFailed(reason: String)
    /// The server's runtime, not the coordinator: a step's update is applied. `seconds`: the
    /// coordinator's time over the push that completed it plus the shard's time over the commands
    /// that ended it (aggregation, optimizer) and the sends around them (next assignments).
    case stepApplied(jobId: String, seconds: Double)
    /// A job resumed after a server restart: `step` training steps are done (those after it are redone),
    /// 0 when it starts over. Event files continue from here.
    case jobResumed(jobId: String, step: Int)
    /// The server stopped while the job ran: it resumes when the server restarts (event files flush).
    case jobSuspended(jobId: String)
    /// The runtime, not the coordinator: a checkpoint was written (`step`: training steps it holds).
    case checkpointWritten(jobId: String, step: Int, bytes: Int, seconds: Double)
    /// The runtime: a checkpoint could not be written.
    case checkpointFailed(jobId: String, reason: String)
    /// The runtime, not the coordinator: a peer failed the TLS handshake and its connection was closed.
    case tlsHandshakeFailed(TLSHandshakeFailure)
    /// A backup copy of a straggler's node was settled (Coordinator+Backups.swift): `won`, the copy's
    /// push came first (or its original holder left); otherwise the original's did and the copy was dropped.
    case backupChunks(jobId: String, chunks: Int, won: Bool)
}

/// A job the data directory's journal holds, as a restarted server finds it: ended (with its result) or
/// to be run (again).
public struct RecoveredJob: Sendable {
    public var id: String
    public var spec: JobSpec
    /// The final result; nil when the job had not ended (it is queued again).
    public var result: JobResult?

    public init(id: String, spec: JobSpec, result: JobResult?) {
        self.id = id
        self.spec = spec
        self.result = result
    }
}

public enum CoordinatorAction: Sendable {
    case observe(Observation)
    case send(ConnectionID, Envelope)
    /// The same envelope to several connections (encode once).
    case broadcast([ConnectionID], Envelope)
    case close(ConnectionID, after: Envelope?)
    /// Load the job's data off the coordinator's queue (on a bounded pool of its own, never a queue a
    /// model or record write waits on), then deliver `.prepared`. The coordinator never waits for it: past
    /// `loadTimeoutSeconds` it fails the job and cancels the load.
    case prepare(jobId: String, spec: JobSpec)
    /// Stop a load begun by `.prepare` (the job was cancelled or took too long); a `.prepared` that still
    /// comes for it is ignored.
    case cancelPrepare(jobId: String, reason: String)
    /// Write the model to the data directory (atomically).
    case saveModel(jobId: String, model: TrainedModel)
    /// Record a submitted job in the journal (durably), then answer `requestId` on `connection` with
    /// `.submitted(jobId)`; when it cannot be recorded, answer with the error and deliver `.journalFailed`.
    case recordSubmission(jobId: String, spec: JobSpec, connection: ConnectionID, requestId: UInt64)
    /// Send a job's model from the data directory (it is no longer in memory).
    case sendStoredModel(jobId: String, connection: ConnectionID, requestId: UInt64)
    case log(LogLevel, String, [String: String])
    /// A command for the parameter shard. Shard commands and sends to worker connections are carried
    /// out in the order given (the weights a worker needs go out before its assignment).
    case shard(ShardCommand)
    /// Deliver a `.tick` at `at` (the coordinator's seconds), once: a backup chunk falls due between the
    /// runtime's regular ticks (Coordinator+Backups.swift).
    case wake(at: Double)
}
