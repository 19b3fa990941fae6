import PSCore
import PSMath
import PSSpec
import PSTrain
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

    public init(serverName: String = "ps-server", address: String, heartbeatIntervalSeconds: Double = 1,
                heartbeatTimeoutSeconds: Double = 10, shardCount: Int = 1, updateThreads: Int = 1) {
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
}

/// The coordinator as a pure state machine: `receive(event, now:)` returns the actions to perform.
/// It owns the job registry, membership, the step schedule, chunk assignment, the parameters and the
/// optimizer. It reads no clock and does no I/O: `now` (seconds) comes with each event, so every
/// state × event pair is testable without sockets.
public struct Coordinator {
    public let config: CoordinatorConfig
    let startedAt: Double

    struct Connection {
        var peer: String
        var role: PeerRole?
        var workerId: UInt64?
    }

    struct Worker {
        let id: UInt64
        let connection: ConnectionID
        let name: String
        let address: String
        let threads: Int
        var lastHeartbeat: Double
        var stepsDone = 0
        var samplesPerSecond = 0.0
        /// Jobs whose spec this worker has been sent.
        var startedJobs: Set<String> = []
        /// Weights version the worker holds for the running job.
        var version: Int?
        /// Push ranges (parts) of the coming version already sent as each was applied (see `applyParts`).
        var streamed: (version: Int, parts: Set<Int>)?
    }

    struct Job {
        let id: String
        let spec: JobSpec
        /// Changed only through `transition`, which the lifecycle's table guards.
        var lifecycle = JobLifecycle()
        var state: JobState { lifecycle.state }
        var message = ""
        var result: JobResult?
        var model: TrainedModel?
        var waiters: [(ConnectionID, UInt64)] = []
        /// Status figures.
        var epoch = 0
        var step = 0
        var stepsPerEpoch = 0
        var trainLoss: Double?
        var validationLoss: Double?
        var validationAccuracy: Double?
        var bestEpoch = 0
        var samplesPerSecond = 0.0
        var etaSeconds: Double?
    }

    /// One unit of distributed work: a training step's chunks or an evaluation pass's chunks.
    struct Work {
        let kind: WorkKind
        let step: Int
        let epoch: Int
        let version: Int
        let batchStart: Int
        let batchSize: Int
        /// Samples in each leaf, to check pushes.
        let leafSamples: [Int]
        var gradients: StepGradients
        var evaluations: NodeCollector<Void>
        /// Nodes handed out and not yet received, and to whom.
        var assigned: [Range<Int>: UInt64] = [:]
        /// Workers handed any node of this work: those the next step's weights go to as each part is
        /// applied (dispatch picks the same workers step after step unless membership changes).
        var participants: Set<UInt64> = []

        var total: Int { leafSamples.count }
        var isComplete: Bool { kind == .train ? gradients.isComplete : evaluations.isComplete }
        var receivedRanges: [Range<Int>] {
            kind == .train ? gradients.receivedNodes : Array(evaluations.nodes.keys)
        }
    }

    struct Run {
        let jobId: String
        let spec: JobSpec
        let network: Network
        let data: PreparedData
        var store: ParameterStore
        var ledger: TrainingLedger
        let stepsPerEpoch: Int
        var epoch = 0
        var stepInEpoch = 0
        var epochStats = ChunkStats()
        var epochStartedAt: Double
        var trainingSeconds = 0.0
        var trainedSamples = 0
        /// Training time of the epoch that just ended (evaluation excluded).
        var epochSeconds = 0.0
        var kept: (epoch: Int, version: Int)?
        var work: Work?
        /// Where each part's pushes of a step are summed (one buffer per internal tree node), reused every step.
        var sumBuffers: [[[Float]]] = []
        /// A clipped step's whole gradient sum, put together from its parts' sums.
        var clipBuffer: [Float] = []
        /// The values a part had before this step's update, kept when it is applied while other parts
        /// are still outstanding: a worker handed reassigned chunks mid-step needs the whole of the
        /// step's version, and the store already holds the next one in the applied parts.
        var previous: [[Float]] = []
    }

    var connections: [ConnectionID: Connection] = [:]
    var workers: [UInt64: Worker] = [:]
    var nextWorkerId: UInt64 = 1
    var jobs: [String: Job] = [:]
    var jobOrder: [String] = []
    var nextJobNumber = 1
    var run: Run?
    var shuttingDown = false

    /// `firstJobNumber`: job ids continue from here (after those already in the data directory).
    public init(config: CoordinatorConfig, now: Double, firstJobNumber: Int = 1) {
        self.config = config
        startedAt = now
        nextJobNumber = firstJobNumber
    }

    // MARK: Events

    public mutating func receive(_ event: CoordinatorEvent, now: Double) -> [CoordinatorAction] {
        var out: [CoordinatorAction] = []
        switch event {
        case let .connected(id, peer):
            connections[id] = Connection(peer: peer)
        case let .received(id, envelope):
            handle(envelope, from: id, now: now, &out)
        case let .rejected(id, reason):
            out.append(.log(.warning, "rejected frame", ["peer": connections[id]?.peer ?? "?", "problem": reason]))
            out.append(.observe(.frameRejected(reason: reason)))
        case let .disconnected(id):
            if let workerId = connections[id]?.workerId {
                removeWorker(workerId, reason: "disconnected", now: now, &out)
            }
            connections[id] = nil
            for jobId in jobs.keys { jobs[jobId]!.waiters.removeAll { $0.0 == id } }
        case let .prepared(jobId, result):
            prepared(jobId, result, now: now, &out)
        case .tick:
            for w in workers.values.sorted(by: { $0.id < $1.id })
            where now - w.lastHeartbeat > config.heartbeatTimeoutSeconds {
                out.append(.close(w.connection, after: Envelope(requestId: 0, message: .error(ErrorReply(
                    code: .unknownWorker, message: "no heartbeat for \(format(now - w.lastHeartbeat))s; removed from the cluster")))))
                out.append(.observe(.heartbeatMissed(workerId: w.id)))
                removeWorker(w.id, reason: "missed its heartbeat deadline", now: now, &out)
            }
            updateStatus(now: now)
        case .shutdown:
            shuttingDown = true
            if let run {
                finish(run.jobId, .interrupted, message: "the server was stopped", &out)
            }
            for id in connections.keys.sorted() { out.append(.close(id, after: nil)) }
        }
        return out
    }

    private mutating func handle(_ envelope: Envelope, from id: ConnectionID, now: Double, _ out: inout [CoordinatorAction]) {
        guard let connection = connections[id] else { return }
        let request = Request(connection: id, id: envelope.requestId)
        guard let role = connection.role else { return greet(envelope.message, request, &out) }
        if shuttingDown {
            return reject(request, .shuttingDown, "the server is shutting down", "", true, &out)
        }
        if case .hello = envelope.message {
            return reject(request, .badRequest, "hello was already received on this connection", "", true, &out)
        }
        if workerMessage(envelope.message, request, now: now, &out) || clientRequest(envelope.message, request, now: now, &out) {
            return
        }
        reject(request, .badRequest, "unexpected message \(envelope.message.caseName) from a \(role) connection", "", true, &out)
    }

    /// The first message on a connection: hello with our protocol version, or the connection is closed.
    private mutating func greet(_ message: Message, _ request: Request, _ out: inout [CoordinatorAction]) {
        let id = request.connection
        let rid = request.id
        guard case let .hello(hello) = message else {
            return reject(request, .badRequest, "the first message on a connection must be hello", "", true, &out)
        }
        guard hello.protocolVersion == WireLimits.protocolVersion else {
            return reject(request, .versionMismatch, "protocol version \(hello.protocolVersion) is not supported (this server speaks \(WireLimits.protocolVersion))", "", true, &out)
        }
        connections[id]!.role = hello.role
        out.append(.send(id, Envelope(requestId: rid, message: .helloOk(HelloOk(serverName: config.serverName)))))
    }

    /// A message only workers send: handled (true), or not one of those (false).
    private mutating func workerMessage(_ message: Message, _ request: Request, now: Double,
                                        _ out: inout [CoordinatorAction]) -> Bool {
        let (id, rid) = (request.connection, request.id)
        var connection = connections[id]!
        switch message {
        case let .registerWorker(r):
            guard connection.role == .worker, connection.workerId == nil else {
                reject(request, .badRequest, "only a worker connection may register, once", "", true, &out)
                return true
            }
            guard workers.count < CoordinatorLimits.workersMax else {
                reject(request, .busy, "the cluster already has \(CoordinatorLimits.workersMax) workers", "", true, &out)
                return true
            }
            let wid = nextWorkerId
            nextWorkerId += 1
            workers[wid] = Worker(id: wid, connection: id, name: r.name, address: connection.peer,
                                  threads: r.threads, lastHeartbeat: now)
            connection.workerId = wid
            connections[id] = connection
            out.append(.send(id, Envelope(requestId: rid, message: .registered(Registered(
                workerId: wid, heartbeatIntervalMilliseconds: Int(config.heartbeatIntervalSeconds * 1000),
                heartbeatTimeoutMilliseconds: Int(config.heartbeatTimeoutSeconds * 1000))))))
            out.append(.log(.info, "worker joined", ["worker": "\(wid)", "name": r.name, "peer": connection.peer]))
            out.append(.observe(.workerJoined(workerId: wid)))
            dispatch(now: now, &out)

        case let .heartbeat(h):
            guard let wid = connection.workerId, h.workerId == wid else {
                reject(request, .unknownWorker, "heartbeat for worker \(h.workerId) on a connection registered as \(connection.workerId.map(String.init) ?? "nothing")", "", true, &out)
                return true
            }
            workers[wid]?.lastHeartbeat = now
            workers[wid]?.stepsDone = h.stepsDone
            workers[wid]?.samplesPerSecond = h.samplesPerSecond

        case let .pushGradient(p):
            guard let wid = connection.workerId else {
                reject(request, .unknownWorker, "push from a connection that has not registered as a worker", "", true, &out)
                return true
            }
            workers[wid]?.lastHeartbeat = now
            push(p, from: wid, requestId: rid, connection: id, now: now, &out)

        case let .evalResult(e):
            guard let wid = connection.workerId else {
                reject(request, .unknownWorker, "evaluation result from a connection that has not registered as a worker", "", true, &out)
                return true
            }
            workers[wid]?.lastHeartbeat = now
            evaluation(e, from: wid, requestId: rid, connection: id, now: now, &out)
        default:
            return false
        }
        return true
    }

    /// A client's request: handled (true), or not one of those (false).
    private mutating func clientRequest(_ message: Message, _ request: Request, now: Double,
                                        _ out: inout [CoordinatorAction]) -> Bool {
        let (id, rid) = (request.connection, request.id)
        switch message {
        case let .submitJob(spec):
            submit(spec, requestId: rid, connection: id, now: now, &out)

        case let .statusRequest(jobId):
            guard jobId.isEmpty || jobs[jobId] != nil else {
                reject(request, .unknownJob, "no job '\(jobId)'", "job_id", false, &out)
                return true
            }
            updateStatus(now: now)
            let list = jobOrder.filter { jobId.isEmpty || $0 == jobId }.map { status(of: jobs[$0]!) }
            out.append(.send(id, Envelope(requestId: rid, message: .statusReply(StatusReply(cluster: clusterStatus(now: now), jobs: list)))))

        case .listJobs:
            updateStatus(now: now)
            out.append(.send(id, Envelope(requestId: rid, message: .jobList(jobOrder.map { status(of: jobs[$0]!) }))))

        case let .cancelJob(jobId):
            guard let job = jobs[jobId] else {
                reject(request, .unknownJob, "no job '\(jobId)'", "job_id", false, &out)
                return true
            }
            guard !job.state.isFinal else {
                reject(request, .badRequest, "job \(jobId) has already ended (\(job.state.rawValue))", "job_id", false, &out)
                return true
            }
            finish(jobId, .cancelled, message: "cancelled by a client", &out)
            out.append(.send(id, Envelope(requestId: rid, message: .ack)))
            startNextJob(now: now, &out)

        case let .waitJob(jobId):
            guard let job = jobs[jobId] else {
                reject(request, .unknownJob, "no job '\(jobId)'", "job_id", false, &out)
                return true
            }
            if let result = job.result {
                out.append(.send(id, Envelope(requestId: rid, message: .jobResult(result))))
            } else if job.waiters.count >= CoordinatorLimits.waitersPerJobMax {
                reject(request, .busy, "job \(jobId) already has \(CoordinatorLimits.waitersPerJobMax) waiters", "", false, &out)
            } else {
                jobs[jobId]!.waiters.append((id, rid))
            }

        case let .fetchModel(jobId):
            guard let job = jobs[jobId] else {
                reject(request, .unknownJob, "no job '\(jobId)'", "job_id", false, &out)
                return true
            }
            guard let model = job.model else {
                reject(request, .badRequest, "job \(jobId) has no model (\(job.state.rawValue))", "job_id", false, &out)
                return true
            }
            out.append(.send(id, Envelope(requestId: rid, message: .modelData(model))))
        default:
            return false
        }
        return true
    }

    /// Where a message came from and which request it was: where a refusal of it goes.
    struct Request {
        let connection: ConnectionID
        let id: UInt64
    }

    /// Refuses `request` with an error reply naming `field` (and a log line naming the peer); with
    /// `close`, the connection is closed after it.
    private func reject(_ request: Request, _ code: ErrorCode, _ message: String, _ field: String, _ close: Bool,
                        _ out: inout [CoordinatorAction]) {
        out += rejection(request.connection, request.id, code, message, field: field, close: close)
    }

    /// An error reply (and a log line naming the peer); with `close`, the connection is closed after it.
    func rejection(_ id: ConnectionID, _ rid: UInt64, _ code: ErrorCode, _ message: String, field: String = "",
                   close: Bool) -> [CoordinatorAction] {
        let reply = Envelope(requestId: rid, message: .error(ErrorReply(code: code, message: message, field: field)))
        var fields = ["peer": connections[id]?.peer ?? "?", "code": "\(code)"]
        if let wid = connections[id]?.workerId { fields["worker"] = "\(wid)" }
        if !field.isEmpty { fields["field"] = field }
        return [.log(.warning, message, fields), close ? .close(id, after: reply) : .send(id, reply)]
    }

    /// Moves a job on by `event` if its lifecycle allows it, telling observers when its state
    /// changes. A refused event changes nothing and is logged as the bug it would be.
    @discardableResult
    private mutating func transition(_ jobId: String, _ event: JobEvent, _ out: inout [CoordinatorAction]) -> Bool {
        guard let job = jobs[jobId] else { return false }
        guard let before = jobs[jobId]!.lifecycle.apply(event) else {
            out.append(.log(.error, "job transition refused", ["job": jobId, "phase": "\(job.lifecycle.phase)",
                                                                "event": "\(event)"]))
            return false
        }
        let state = jobs[jobId]!.state
        if before.state != state { out.append(.observe(.jobState(jobId: jobId, name: job.spec.name, state: state))) }
        return true
    }

    // MARK: Jobs

    private mutating func submit(_ spec: JobSpec, requestId rid: UInt64, connection id: ConnectionID, now: Double,
                                 _ out: inout [CoordinatorAction]) {
        let request = Request(connection: id, id: rid)
        // The spec passed psctl's validation, but the server trusts no peer: validate it again.
        do {
            _ = try JobSpec.parse(spec.yamlText(), format: .yaml, source: "submitted spec")
        } catch {
            return reject(request, .invalidSpec, error.message, error.field, false, &out)
        }
        for (field, path) in spec.dataPaths where !path.hasPrefix("/") {
            return reject(request, .invalidSpec, "relative path '\(path)' (psctl resolves paths before submitting; other clients must send absolute ones)", field, false, &out)
        }
        let queued = jobs.values.filter { !$0.state.isFinal }.count
        guard queued <= CoordinatorLimits.queuedJobsMax else {
            return reject(request, .busy, "\(queued) jobs are already queued (limit \(CoordinatorLimits.queuedJobsMax))", "", false, &out)
        }
        let jobId = "job-\(nextJobNumber)"
        nextJobNumber += 1
        jobs[jobId] = Job(id: jobId, spec: spec)
        jobOrder.append(jobId)
        out.append(.observe(.jobState(jobId: jobId, name: spec.name, state: .submitted)))
        out.append(.send(id, Envelope(requestId: rid, message: .submitted(jobId: jobId))))
        out.append(.log(.info, "job submitted", ["job": jobId, "name": spec.name]))
        startNextJob(now: now, &out)
    }

    /// Starts the oldest submitted job when none is running: first its data is prepared by the driver.
    private mutating func startNextJob(now: Double, _ out: inout [CoordinatorAction]) {
        // One job at a time: none runs, waits for workers, or is having its data prepared.
        guard run == nil, !shuttingDown,
              !jobs.values.contains(where: { [.preparing, .waitingForWorkers, .running].contains($0.lifecycle.phase) }),
              let next = jobOrder.first(where: { jobs[$0]!.lifecycle.phase == .queued }) else { return }
        transition(next, .prepare, &out)
        out.append(.prepare(jobId: next, spec: jobs[next]!.spec))
    }

    /// What `psctl status` shows for a job whose data is being prepared.
    static let preparingMessage = "loading data"

    private mutating func prepared(_ jobId: String, _ result: Result<PreparedData, PreparationError>, now: Double,
                                   _ out: inout [CoordinatorAction]) {
        guard let job = jobs[jobId], job.lifecycle.phase == .preparing, !shuttingDown else { return }
        switch result {
        case let .failure(error):
            finish(jobId, .failed, message: error.message, &out)
            startNextJob(now: now, &out)
        case let .success(data):
            let spec = job.spec
            let network = spec.network
            let steps = ChunkPlan.stepsPerEpoch(count: data.trainCount, batchSize: spec.training.batchSize)
            run = Run(jobId: jobId, spec: spec, network: network, data: data,
                      store: ParameterStore(parameters: network.initialParameters(seed: spec.seed),
                                            optimizer: spec.optimizer, shardCount: min(config.shardCount, network.parameterCount),
                                            updateThreads: config.updateThreads),
                      ledger: TrainingLedger(spec: spec), stepsPerEpoch: steps, epochStartedAt: now)
            transition(jobId, .prepared(workers: !workers.isEmpty), &out)
            jobs[jobId]!.stepsPerEpoch = steps
            jobs[jobId]!.epoch = 1
            out.append(.log(.info, "job started", ["job": jobId, "train": "\(data.trainCount)",
                                                    "validation": "\(data.validationCount)", "test": "\(data.testCount)",
                                                    "steps_per_epoch": "\(steps)", "parameters": "\(network.parameterCount)"]))
            startTrainStep(now: now)
            dispatch(now: now, &out)
        }
    }

    /// Ends a job by `event` (one its lifecycle allows): records the result, answers waiters, drops
    /// the run if it was this job.
    private mutating func finish(_ jobId: String, _ event: JobEvent, message: String, summary: TrainingSummary? = nil,
                                 sha: String = "", _ out: inout [CoordinatorAction]) {
        guard transition(jobId, event, &out) else { return }
        let state = jobs[jobId]!.state
        let result = JobResult(jobId: jobId, state: state, summary: summary, weightsSHA256: sha, message: message)
        jobs[jobId]!.message = message
        jobs[jobId]!.result = result
        jobs[jobId]!.etaSeconds = nil
        for (connection, rid) in jobs[jobId]!.waiters {
            out.append(.send(connection, Envelope(requestId: rid, message: .jobResult(result))))
        }
        jobs[jobId]!.waiters = []
        if run?.jobId == jobId {
            run = nil
            for w in workers.keys {
                workers[w]!.version = nil
                workers[w]!.streamed = nil
            }
        }
        out.append(.log(state == .failed ? .error : .info, "job ended",
                        ["job": jobId, "state": state.rawValue, "message": message, "weights_sha256": sha]))
        // Keep only the newest models in memory; the files stay in the data directory.
        let withModels = jobOrder.filter { jobs[$0]!.model != nil }
        for old in withModels.dropLast(CoordinatorLimits.retainedModelsMax) { jobs[old]!.model = nil }
    }

    // MARK: Steps

    private mutating func startTrainStep(now: Double) {
        guard var r = run else { return }
        let batchSize = r.spec.training.batchSize
        let batchStart = r.stepInEpoch * batchSize
        let batchCount = min(batchSize, r.data.trainCount - batchStart)
        let leaves = ChunkPlan.ranges(batchSize: batchCount, chunks: r.spec.training.chunks).map(\.count)
        if r.stepInEpoch == 0 { r.epochStartedAt = now }
        r.work = Work(kind: .train, step: r.epoch * r.stepsPerEpoch + r.stepInEpoch, epoch: r.epoch,
                      version: r.store.version, batchStart: batchStart, batchSize: batchCount, leafSamples: leaves,
                      gradients: StepGradients(leaves: leaves.count, ranges: r.network.layout.pushRanges),
                      evaluations: NodeCollector(total: 1))
        run = r
    }

    private mutating func startEvaluation(_ kind: WorkKind, count: Int) {
        guard var r = run else { return }
        let leaves = ChunkPlan.evaluationRanges(count: count).map(\.count)
        r.work = Work(kind: kind, step: r.epoch * r.stepsPerEpoch + r.stepInEpoch, epoch: r.epoch,
                      version: r.store.version, batchStart: 0, batchSize: count, leafSamples: leaves,
                      gradients: StepGradients(leaves: 1, ranges: r.network.layout.pushRanges),
                      evaluations: NodeCollector(total: leaves.count))
        run = r
    }

    /// Hands out every chunk of the current work that is neither received nor held by a live worker.
    /// Fresh work is split evenly over the workers in id order; chunks freed by a lost worker are
    /// split the same way over the workers holding the least. Assignment never changes results.
    private mutating func dispatch(now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run, var work = r.work else { return }
        if workers.isEmpty {
            transition(r.jobId, .workersGone, &out)
            return
        }
        transition(r.jobId, .workersAvailable, &out)
        var taken = [Bool](repeating: false, count: work.total)
        for range in Array(work.assigned.keys) + work.receivedRanges { for c in range { taken[c] = true } }
        let free = (0..<work.total).filter { !taken[$0] }
        guard !free.isEmpty else { return }
        let held = Dictionary(grouping: work.assigned.values, by: { $0 }).mapValues { $0.count }
        let order = workers.keys.sorted { (held[$0] ?? 0, $0) < (held[$1] ?? 0, $1) }
        let pieces = min(order.count, free.count)
        for p in 0..<pieces {
            let slice = free[(free.count * p / pieces)..<(free.count * (p + 1) / pieces)]
            var nodes: [Range<Int>] = []
            var runStart = slice.first!
            var previous = runStart
            for c in slice.dropFirst() {
                if c != previous + 1 {
                    nodes += ReductionTree.cover(first: runStart, count: previous - runStart + 1, total: work.total)
                    runStart = c
                }
                previous = c
            }
            nodes += ReductionTree.cover(first: runStart, count: previous - runStart + 1, total: work.total)
            let wid = order[p]
            for n in nodes { work.assigned[n] = wid }
            work.participants.insert(wid)
            sendAssignment(to: wid, run: r, work: work, nodes: nodes, &out)
        }
        r.work = work
        run = r
    }

    private mutating func sendAssignment(to wid: UInt64, run r: Run, work: Work, nodes: [Range<Int>], _ out: inout [CoordinatorAction]) {
        guard var w = workers[wid] else { return }
        if !w.startedJobs.contains(r.jobId) {
            out.append(.send(w.connection, Envelope(requestId: 0, message: .startJob(StartJob(jobId: r.jobId, spec: r.spec)))))
            w.startedJobs.insert(r.jobId)
        }
        if w.version != work.version {
            let ranges = r.network.layout.pushRanges
            let appliedThisStep = work.kind == .train && work.gradients.applied.contains(true)
            if let streamed = w.streamed, streamed.version == work.version, !appliedThisStep {
                // Some parts went out as they were applied; send the rest (none unless it joined mid-step).
                for (l, range) in ranges.enumerated() where !streamed.parts.contains(l) {
                    out.append(.send(w.connection, Envelope(requestId: 0, message: .weights(Weights(
                        jobId: r.jobId, version: work.version,
                        tensor: TensorSlice(offset: range.lowerBound, data: FloatData(r.store.parameters[range])))))))
                }
            } else if appliedThisStep {
                // Chunks reassigned mid-step: the parts already applied hold the next version in the
                // store, so their values of this version come from what was kept before the update.
                for (l, range) in ranges.enumerated() {
                    let values = work.gradients.applied[l] ? FloatData(r.previous[l]) : FloatData(r.store.parameters[range])
                    out.append(.send(w.connection, Envelope(requestId: 0, message: .weights(Weights(
                        jobId: r.jobId, version: work.version, tensor: TensorSlice(offset: range.lowerBound, data: values))))))
                }
            } else {
                out.append(.send(w.connection, Envelope(requestId: 0, message: .weights(Weights(
                    jobId: r.jobId, version: work.version, tensor: TensorSlice(offset: 0, values: r.store.parameters))))))
            }
            w.version = work.version
            w.streamed = nil
        }
        workers[wid] = w
        let assignment = Assignment(jobId: r.jobId, kind: work.kind, step: work.step, epoch: work.epoch,
                                    version: work.version, batchStart: work.batchStart, batchSize: work.batchSize,
                                    subtrees: nodes.map { ChunkRange(firstChunk: $0.lowerBound, chunkCount: $0.count) })
        out.append(.send(w.connection, Envelope(requestId: 0, message: .assignment(assignment))))
    }

    private mutating func push(_ p: PushGradient, from wid: UInt64, requestId rid: UInt64, connection id: ConnectionID,
                               now: Double, _ out: inout [CoordinatorAction]) {
        // Two calls, so that `accept`'s local copies of the run are gone before the step is applied:
        // otherwise the parameters and optimizer state would be shared, and updating them would copy them.
        let completed = accept(p, from: wid, requestId: rid, connection: id, &out)
        if !completed.isEmpty { applyParts(completed, &out) }
        let stepComplete = run?.work.map { $0.kind == .train && $0.gradients.isComplete } ?? false
        if stepComplete { completeTrainStep(now: now, &out) }
    }

    /// Checks and stores one push; returns the parts it completed (every chunk of the step in).
    private mutating func accept(_ p: PushGradient, from wid: UInt64, requestId rid: UInt64, connection id: ConnectionID,
                                 _ out: inout [CoordinatorAction]) -> [Int] {
        let request = Request(connection: id, id: rid)
        let range = p.subtree.firstChunk..<(p.subtree.firstChunk + p.subtree.chunkCount)
        guard var r = run, r.jobId == p.jobId else {
            // A late push for a job that ended (cancelled, or finished while this one was in flight).
            if jobs[p.jobId] != nil {
                out.append(.send(id, Envelope(requestId: rid, message: .pushAck(PushAck(jobId: p.jobId, step: p.step, subtree: p.subtree, duplicate: true, offset: p.gradient.offset)))))
                return []
            }
            reject(request, .unknownJob, "push for unknown job '\(p.jobId)'", "job_id", true, &out)
            return []
        }
        guard var work = r.work, work.kind == .train, p.step == work.step else {
            let current = r.work.map { $0.step } ?? 0
            if p.step <= current {
                // Already applied: pushes are idempotent by (job, step, subtree).
                out.append(.send(id, Envelope(requestId: rid, message: .pushAck(PushAck(jobId: p.jobId, step: p.step, subtree: p.subtree, duplicate: true, offset: p.gradient.offset)))))
                return []
            }
            reject(request, .unknownStep, "push for step \(p.step) of \(p.jobId), which has not started (current step \(current))", "step", true, &out)
            return []
        }
        let covered = p.gradient.offset..<(p.gradient.offset + p.gradient.count)
        guard let pushed = work.gradients.parts(covering: covered) else {
            let parts = work.gradients.ranges.map { "[\($0.lowerBound), \($0.upperBound))" }.joined(separator: " ")
            reject(request, .badRequest, "gradient covers [\(covered.lowerBound), \(covered.upperBound)) of job \(p.jobId)'s \(r.network.parameterCount) parameters, which is neither the whole vector nor one of its push ranges (\(parts))", "gradient", true, &out)
            return []
        }
        if work.gradients.hasNode(range) || work.gradients.missing(pushed, of: range).isEmpty {
            out.append(.observe(.pushAccepted(bytes: p.gradient.count * MemoryLayout<Float>.size, duplicate: true)))
            out.append(.send(id, Envelope(requestId: rid, message: .pushAck(PushAck(jobId: p.jobId, step: p.step, subtree: p.subtree, duplicate: true, offset: p.gradient.offset)))))
            return []
        }
        guard work.assigned[range] == wid else {
            reject(request, .notAssigned, "push for chunks \(range.lowerBound)..<\(range.upperBound) of step \(p.step), which worker \(wid) was not assigned", "first_chunk", true, &out)
            return []
        }
        let expected = work.leafSamples[range].reduce(0, +)
        guard p.samples == expected, p.correct >= 0, p.correct <= expected else {
            reject(request, .badRequest, "push reports \(p.samples) samples for chunks \(range.lowerBound)..<\(range.upperBound), which hold \(expected)", "samples", true, &out)
            return []
        }
        let stats = ChunkStats(lossSum: p.lossSum, correct: p.correct, samples: p.samples)
        // Bit patterns, not `==`: a diverged job's NaN loss is the same NaN in every push of a node.
        if let earlier = work.gradients.partialStats(of: range),
           earlier.lossSum.bitPattern != stats.lossSum.bitPattern || earlier.correct != stats.correct {
            reject(request, .badRequest, "push for chunks \(range.lowerBound)..<\(range.upperBound) reports loss_sum \(p.lossSum) and correct \(p.correct), but an earlier part of the same chunks reported \(earlier.lossSum) and \(earlier.correct)", "loss_sum", true, &out)
            return []
        }
        precondition(work.gradients.receivedNodes.count < CoordinatorLimits.inFlightPushesMax, "more nodes than chunks")
        let gradient = p.gradient.data
        let ranges = work.gradients.ranges
        let insertion = work.gradients.insert(range, parts: pushed, stats: stats) { l in
            gradient.slice((ranges[l].lowerBound - covered.lowerBound)..<(ranges[l].upperBound - covered.lowerBound))
        }
        guard case let .stored(completed, nodeComplete) = insertion else { preconditionFailure("checked not a duplicate") }
        if nodeComplete { work.assigned[range] = nil }
        out.append(.send(id, Envelope(requestId: rid, message: .pushAck(PushAck(jobId: p.jobId, step: p.step, subtree: p.subtree, duplicate: false, offset: p.gradient.offset)))))
        out.append(.observe(.pushAccepted(bytes: p.gradient.count * MemoryLayout<Float>.size, duplicate: false)))
        r.work = work
        run = r
        return r.store.appliesInParts ? completed : []
    }

    /// Sums and applies parts every chunk of the step has pushed, while the step's other parts are
    /// still on their way, and sends each updated part to the workers computing the step: the next
    /// step's weights travel while the last pushes are still arriving. Part by part is bitwise the
    /// whole update (`ParameterStore.applyPart`); a clipped step waits for all of its parts instead.
    private mutating func applyParts(_ parts: [Int], _ out: inout [CoordinatorAction]) {
        guard var r = run, var work = r.work else { return }
        // Taken out while updated, so the parameters, optimizer state and buffers are referenced once
        // and change in place.
        r.work = nil
        run = nil
        let ranges = work.gradients.ranges
        if r.sumBuffers.count != ranges.count { r.sumBuffers = ranges.map { _ in [] } }
        if r.previous.count != ranges.count { r.previous = ranges.map { _ in [] } }
        // Unless these parts end the step (then nothing can be reassigned before it is over), keep
        // their values of this step's version for workers that join the step late (sendAssignment).
        let endsStep = ranges.indices.allSatisfy { work.gradients.applied[$0] || parts.contains($0) }
        for l in parts {
            if !endsStep {
                if r.previous[l].count != ranges[l].count { r.previous[l] = [Float](repeating: 0, count: ranges[l].count) }
                r.previous[l].withUnsafeMutableBufferPointer { kept in
                    r.store.parameters.withUnsafeBufferPointer { p in
                        kept.baseAddress!.update(from: p.baseAddress! + ranges[l].lowerBound, count: ranges[l].count)
                    }
                }
            }
            var buffers: [[Float]] = []
            swap(&buffers, &r.sumBuffers[l])
            do {
                let sum = work.gradients.combined(part: l, reusing: &buffers)
                sum.withUnsafeBytes { r.store.applyPart(ranges[l], gradientSum: $0.baseAddress!, batchCount: work.batchSize) }
            }
            r.sumBuffers[l] = buffers
            work.gradients.markApplied(l)
        }
        // Only to workers computing this step (idle ones would only queue megabytes they may never use).
        // The frames share the parameters' storage: they are encoded before the next update writes it.
        let receivers = work.participants.filter { workers[$0] != nil }.sorted()
        let version = r.store.version + 1
        for l in parts where !receivers.isEmpty {
            let weights = Envelope(requestId: 0, message: .weights(Weights(
                jobId: r.jobId, version: version,
                tensor: TensorSlice(offset: ranges[l].lowerBound, data: FloatData(r.store.parameters[ranges[l]])))))
            out.append(.broadcast(receivers.map { workers[$0]!.connection }, weights))
            for wid in receivers {
                var streamed = workers[wid]!.streamed.flatMap { $0.version == version ? $0 : nil } ?? (version: version, parts: [])
                streamed.parts.insert(l)
                workers[wid]!.streamed = streamed
            }
        }
        r.work = work
        run = r
    }

    private mutating func completeTrainStep(now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run, let work = r.work else { return }
        // The run is taken out while it is updated, so the parameters and optimizer state are only
        // referenced here and change in place.
        r.work = nil
        run = nil
        if r.store.appliesInParts {
            precondition(work.gradients.applied.allSatisfy { $0 }, "step complete with a part not applied")
            r.store.endStep()
        } else if work.gradients.ranges.count == 1 {
            // Clipping needs the whole gradient's norm; one part is the whole gradient already.
            if r.sumBuffers.count != 1 { r.sumBuffers = [[]] }
            var buffers: [[Float]] = []
            swap(&buffers, &r.sumBuffers[0])
            do {
                let sum = work.gradients.combined(part: 0, reusing: &buffers)
                r.store.apply(gradientSum: sum, batchCount: work.batchSize)
            }
            r.sumBuffers[0] = buffers
        } else {
            // Clipping needs the whole gradient's norm: put the parts' sums together, then apply.
            let ranges = work.gradients.ranges
            if r.sumBuffers.count != ranges.count { r.sumBuffers = ranges.map { _ in [] } }
            if r.clipBuffer.count != r.network.parameterCount { r.clipBuffer = [Float](repeating: 0, count: r.network.parameterCount) }
            for (l, range) in ranges.enumerated() {
                var buffers: [[Float]] = []
                swap(&buffers, &r.sumBuffers[l])
                do {
                    let sum = work.gradients.combined(part: l, reusing: &buffers)
                    r.clipBuffer.withUnsafeMutableBytes { whole in
                        sum.withUnsafeBytes { whole.baseAddress!.advanced(by: range.lowerBound * 4).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                    }
                }
                r.sumBuffers[l] = buffers
            }
            r.store.apply(gradientSum: r.clipBuffer, batchCount: work.batchSize)
        }
        let stats = work.gradients.stats
        r.epochStats = r.epochStats + stats
        r.stepInEpoch += 1
        let elapsed = max(now - r.epochStartedAt, 1e-9)
        jobs[r.jobId]!.step = r.stepInEpoch
        jobs[r.jobId]!.trainLoss = r.epochStats.lossSum / Double(max(r.epochStats.samples, 1))
        jobs[r.jobId]!.samplesPerSecond = Double(r.epochStats.samples) / elapsed
        out.append(.observe(.stepCompleted(jobId: r.jobId, step: work.step, epoch: r.epoch,
                                           batchLoss: stats.lossSum / Double(max(stats.samples, 1)), batchSize: work.batchSize,
                                           learningRate: r.spec.optimizer.learningRate,
                                           samplesPerSecond: jobs[r.jobId]!.samplesPerSecond)))
        run = r
        if r.stepInEpoch < r.stepsPerEpoch {
            startTrainStep(now: now)
        } else {
            run!.trainingSeconds += elapsed
            run!.epochSeconds = elapsed
            run!.trainedSamples += r.epochStats.samples
            if r.data.validationCount > 0 {
                startEvaluation(.validate, count: r.data.validationCount)
            } else {
                endEpoch(validation: nil, now: now, &out)
                return
            }
        }
        dispatch(now: now, &out)
    }

    private mutating func evaluation(_ e: EvalResult, from wid: UInt64, requestId rid: UInt64, connection id: ConnectionID,
                                     now: Double, _ out: inout [CoordinatorAction]) {
        let request = Request(connection: id, id: rid)
        let range = e.subtree.firstChunk..<(e.subtree.firstChunk + e.subtree.chunkCount)
        guard var r = run, r.jobId == e.jobId else {
            if jobs[e.jobId] != nil { return }  // late result for an ended job
            return reject(request, .unknownJob, "evaluation result for unknown job '\(e.jobId)'", "job_id", true, &out)
        }
        guard var work = r.work, work.kind == e.kind, e.epoch == work.epoch else { return }  // stale
        if work.evaluations.contains(range) { return }
        guard work.assigned[range] == wid else {
            return reject(request, .notAssigned, "evaluation result for chunks \(range.lowerBound)..<\(range.upperBound), which worker \(wid) was not assigned", "first_chunk", true, &out)
        }
        let expected = work.leafSamples[range].reduce(0, +)
        guard e.samples == expected, e.correct >= 0, e.correct <= expected else {
            return reject(request, .badRequest, "evaluation result reports \(e.samples) samples for chunks holding \(expected)", "samples", true, &out)
        }
        work.assigned[range] = nil
        work.evaluations.insert(range, payload: (), stats: ChunkStats(lossSum: e.lossSum, correct: e.correct, samples: e.samples))
        r.work = work
        run = r
        guard work.evaluations.isComplete else { return }
        let stats = work.evaluations.combine { _, _ in () }.stats
        run!.work = nil
        if work.kind == .validate {
            endEpoch(validation: stats, now: now, &out)
        } else {
            complete(test: stats, &out)
            startNextJob(now: now, &out)
        }
    }

    private mutating func endEpoch(validation: ChunkStats?, now: Double, _ out: inout [CoordinatorAction]) {
        guard var r = run else { return }
        let report = r.ledger.endEpoch(r.epoch + 1, train: r.epochStats, validation: validation, seconds: r.epochSeconds,
                                       parameters: r.store.parameters, version: r.store.version)
        var job = jobs[r.jobId]!
        job.trainLoss = report.trainLoss
        job.validationLoss = report.validationLoss
        job.validationAccuracy = report.validationAccuracy
        job.bestEpoch = validation == nil ? 0 : report.bestEpoch
        jobs[r.jobId] = job
        var fields = ["job": r.jobId, "epoch": "\(report.epoch)", "train_loss": format(report.trainLoss),
                      "samples_per_second": format(report.samplesPerSecond)]
        if let v = report.validationLoss { fields["val_loss"] = format(v) }
        if let a = report.validationAccuracy { fields["val_accuracy"] = format(a) }
        out.append(.log(.info, report.stopEarly ? "epoch done, stopping early" : "epoch done", fields))
        out.append(.observe(.epochCompleted(jobId: r.jobId, report: report, learningRate: r.spec.optimizer.learningRate)))
        if r.ledger.finished {
            let kept = r.ledger.keptParameters(current: r.store.parameters, currentVersion: r.store.version)
            if kept.version != r.store.version { r.store.restore(kept.parameters, version: kept.version) }
            r.kept = (kept.epoch, kept.version)
            run = r
            if r.data.testCount > 0 {
                startEvaluation(.test, count: r.data.testCount)
                dispatch(now: now, &out)
            } else {
                complete(test: nil, &out)
                startNextJob(now: now, &out)
            }
            return
        }
        r.epoch += 1
        r.stepInEpoch = 0
        r.epochStats = ChunkStats()
        run = r
        jobs[r.jobId]!.epoch = r.epoch + 1
        jobs[r.jobId]!.step = 0
        startTrainStep(now: now)
        dispatch(now: now, &out)
    }

    private mutating func complete(test: ChunkStats?, _ out: inout [CoordinatorAction]) {
        guard let r = run, let kept = r.kept else { return }
        let summary = r.ledger.summary(keptEpoch: kept.epoch, test: test,
                                       samplesPerSecond: Double(r.trainedSamples) / max(r.trainingSeconds, 1e-9))
        let model = TrainedModel(spec: r.spec, preprocessing: r.data.preprocessing, parameters: r.store.parameters, summary: summary)
        let sha = weightsSHA256(r.store.parameters)
        jobs[r.jobId]!.model = model
        out.append(.saveModel(jobId: r.jobId, model: model))
        finish(r.jobId, .finished(stoppedEarly: summary.stoppedEarly), message: "", summary: summary, sha: sha, &out)
    }

    // MARK: Membership

    private mutating func removeWorker(_ wid: UInt64, reason: String, now: Double, _ out: inout [CoordinatorAction]) {
        guard let w = workers.removeValue(forKey: wid) else { return }
        if let c = connections[w.connection] { connections[w.connection]!.workerId = c.workerId == wid ? nil : c.workerId }
        var freed = 0
        if var r = run, var work = r.work {
            for (range, owner) in work.assigned where owner == wid {
                work.assigned[range] = nil
                // Parts it pushed of a node it did not finish go too: its chunks may be reassigned as
                // other nodes, which would overlap them. (Parts already applied stay applied.)
                work.gradients.dropPartial(range)
                freed += range.count
            }
            r.work = work
            run = r
        }
        out.append(.log(.warning, "worker left", ["worker": "\(wid)", "name": w.name, "reason": reason,
                                                  "chunks_reassigned": "\(freed)"]))
        out.append(.observe(.workerLeft(workerId: wid, reason: reason)))
        dispatch(now: now, &out)
    }

    // MARK: Status

    private mutating func updateStatus(now: Double) {
        guard let r = run else { return }
        var job = jobs[r.jobId]!
        let stepsLeft = (r.spec.training.epochs - r.epoch) * r.stepsPerEpoch - r.stepInEpoch
        if job.samplesPerSecond > 0 {
            job.etaSeconds = Double(stepsLeft * r.spec.training.batchSize) / job.samplesPerSecond
        }
        jobs[r.jobId] = job
    }

    func status(of job: Job) -> JobStatus {
        JobStatus(jobId: job.id, name: job.spec.name, state: job.state, epoch: job.epoch,
                  epochs: job.spec.training.epochs, step: job.step, stepsPerEpoch: job.stepsPerEpoch,
                  trainLoss: job.trainLoss, validationLoss: job.validationLoss,
                  validationAccuracy: job.validationAccuracy, bestEpoch: job.bestEpoch,
                  samplesPerSecond: job.samplesPerSecond, etaSeconds: job.etaSeconds,
                  message: job.lifecycle.phase == .preparing ? Self.preparingMessage : job.message,
                  workers: run?.jobId == job.id ? workers.count : 0)
    }

    func clusterStatus(now: Double) -> ClusterStatus {
        let held = run?.work.map { w in Dictionary(grouping: w.assigned, by: { $0.value }).mapValues { $0.map(\.key.count).reduce(0, +) } } ?? [:]
        let list = workers.values.sorted { $0.id < $1.id }.map { w -> WorkerStatus in
            let age = now - w.lastHeartbeat
            let state: WorkerState = age > 3 * config.heartbeatIntervalSeconds ? .suspect : ((held[w.id] ?? 0) > 0 ? .working : .idle)
            return WorkerStatus(workerId: w.id, name: w.name, address: w.address, state: state, threads: w.threads,
                                lastHeartbeatAgeSeconds: age, samplesPerSecond: w.samplesPerSecond,
                                jobId: run?.jobId ?? "", stepsDone: w.stepsDone, chunksHeld: held[w.id] ?? 0)
        }
        return ClusterStatus(serverAddress: config.address, uptimeSeconds: now - startedAt, workers: list)
    }
}


func format(_ x: Double) -> String {
    String(format: "%.4g", x)
}

import Foundation
