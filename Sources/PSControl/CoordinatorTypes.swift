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

    public init(serverName: String = "ps-server", address: String, heartbeatIntervalSeconds: Double = 1,
                heartbeatTimeoutSeconds: Double = 10, shardCount: Int = 1, updateThreads: Int = 1,
                computeSignature: String = "") {
        self.computeSignature = computeSignature
        self.serverName = serverName
        self.address = address
        self.heartbeatIntervalSeconds = heartbeatIntervalSeconds
        self.heartbeatTimeoutSeconds = heartbeatTimeoutSeconds
        self.shardCount = shardCount
        self.updateThreads = updateThreads
    }
}

/// What the coordinator learns about a job's data before it can plan steps (the driver loads it).
public struct PreparedData: Equatable, Sendable {
    public var trainCount: Int
    public var validationCount: Int
    public var testCount: Int
    public var preprocessing: FittedPreprocessing

    public init(trainCount: Int, validationCount: Int, testCount: Int, preprocessing: FittedPreprocessing) {
        self.trainCount = trainCount
        self.validationCount = validationCount
        self.testCount = testCount
        self.preprocessing = preprocessing
    }
}

public enum CoordinatorEvent: Sendable {
    case connected(ConnectionID, peer: String)
    case received(ConnectionID, Envelope)
    /// The transport rejected a frame from this connection and is closing it.
    case rejected(ConnectionID, reason: String)
    case disconnected(ConnectionID)
    /// The driver finished loading a job's data (or failed to; the message names field and file).
    case prepared(jobId: String, Result<PreparedData, PreparationError>)
    /// Periodic: heartbeat deadlines are checked here.
    case tick
    /// SIGTERM/SIGINT: mark the running job interrupted, answer waiters, close connections.
    case shutdown
    /// The parameter shard's answer to `.finish`: the trained job's final parameters.
    case shardFinished(jobId: String, parameters: [Float], sha256: String)
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
    /// A gradient push was accepted (`duplicate`: acknowledged and dropped).
    case pushAccepted(bytes: Int, duplicate: Bool)
    case frameRejected(reason: String)
    /// The server's runtime, not the coordinator: a step's update is applied. `seconds`: the
    /// coordinator's time over the push that completed it plus the shard's time over the commands
    /// that ended it (aggregation, optimizer) and the sends around them (next assignments).
    case stepApplied(jobId: String, seconds: Double)
}

public enum CoordinatorAction: Sendable {
    case observe(Observation)
    case send(ConnectionID, Envelope)
    /// The same envelope to several connections (encode once).
    case broadcast([ConnectionID], Envelope)
    case close(ConnectionID, after: Envelope?)
    /// Load the job's data off the coordinator's queue, then deliver `.prepared`.
    case prepare(jobId: String, spec: JobSpec)
    /// Write the model to the data directory (atomically).
    case saveModel(jobId: String, model: TrainedModel)
    case log(LogLevel, String, [String: String])
    /// A command for the parameter shard. Shard commands and sends to worker connections are carried
    /// out in the order given (the weights a worker needs go out before its assignment).
    case shard(ShardCommand)
}
