import PSCore
import PSWire

/// A worker's rules, with no threads, clock, socket or BLAS: which job it is on, the weights it
/// holds, whether an assignment can be computed, what goes out and when to reconnect.
/// `receive(event, now:)` returns the actions for the service (`WorkerRuntime`) to perform; the
/// cluster simulation in the tests drives this same machine, with `WorkerCompute` computing.
///
/// Work is tagged with the connection generation it was assigned on: results of work assigned on an
/// older connection are dropped, because the coordinator has already reassigned those chunks.
public struct WorkerStateMachine: Sendable {
    public enum Event: Sendable {
        /// The connection is up and the server answered hello.
        case connected(serverName: String)
        case disconnected(reason: String)
        case received(Message)
        /// One push range of a node computed for `generation` is final (training; sent at once so it
        /// travels while earlier layers still compute).
        case pushReady(generation: Int, PushGradient)
        /// An assignment computed for `generation` is done.
        case computed(generation: Int, ComputeReport)
        /// A job's data finished loading: its training samples, or why it failed.
        case loaded(jobId: String, Result<Int, LoadFailure>)
        case heartbeatDue
    }

    public enum Action: Sendable {
        case send(Message)
        /// Drop the connection and connect again (the server then reassigns and resends everything).
        case reconnect
        /// Load a job's data and set up its computation (before any compute order for it).
        case load(jobId: String, spec: JobSpec)
        case compute(ComputeOrder)
        case startHeartbeat(seconds: Double)
        case stopHeartbeat
        case log(LogLevel, String, [String: String])
        case observe(WorkerObservation)
    }

    /// Figures for the worker's metrics, and its readiness.
    public enum WorkerObservation: Equatable, Sendable {
        case connected(Bool)
        /// The server accepted this worker (true), or the connection it was accepted on is gone (false):
        /// what the worker's `/readyz` and systemd are told.
        case registered(Bool)
        case weightsReceived(bytes: Int)
        case computed(WorkKind, seconds: Double)
        /// A training assignment's results went out.
        case pushed(samples: Int, bytes: Int)
        case pushAcknowledged(seconds: Double)
    }

    /// Why a job's data did not load, as the worker's log says it.
    public struct LoadFailure: Error, Equatable, Sendable {
        public var message: String
        public init(_ message: String) { self.message = message }
    }

    public let name: String
    public let threads: Int
    public private(set) var workerId: UInt64?
    /// Bumped by every connect and disconnect; compute orders carry the one they were made under.
    public private(set) var generation = 0
    /// The job this worker was last started on, and its model's parameter count.
    public private(set) var job: (jobId: String, spec: JobSpec, parameterCount: Int)?
    /// Weights held, whole or as the push ranges the server sent as it applied each one: the versions
    /// received last, newest last (`versionsHeld`; a version sent again for chunks reassigned counts as new). In sync two, because the next version's ranges start
    /// arriving while the current one may still be needed (chunks of a lost worker reassigned within
    /// the step); delayed mode d computes on versions t − d … t while t + 1 arrives; ssp/async hold a
    /// version per batch held.
    public private(set) var weights: [(jobId: String, version: Int, parts: [TensorSlice])] = []
    public private(set) var stepsDone = 0
    private var recentSamples = 0
    private var recentSeconds = 0.0
    /// When each gradient push still awaiting its acknowledgement was sent. At most a few
    /// assignments' pushes are in flight (steps are synchronous); cleared on disconnect.
    private var pushesInFlight: [PushKey: Double] = [:]

    public init(name: String, threads: Int) {
        self.name = name
        self.threads = threads
    }

    public mutating func receive(_ event: Event, now: Double) -> [Action] {
        switch event {
        case let .connected(serverName):
            generation += 1
            return [.observe(.connected(true)), .log(.info, "connected", ["server": serverName]),
                    .send(.registerWorker(RegisterWorker(name: name, threads: threads)))]
        case let .disconnected(reason):
            generation += 1
            workerId = nil
            weights = []
            pushesInFlight = [:]
            return [.stopHeartbeat, .observe(.connected(false)), .observe(.registered(false)),
                    .log(.warning, "disconnected; will reconnect", ["reason": reason])]
        case let .received(message):
            return handle(message, now: now)
        case let .pushReady(generation, push):
            guard generation == self.generation else { return [] }
            pushesInFlight = pushesInFlight.filter { $0.key.step >= push.step - 1 }
            pushesInFlight[PushKey(push)] = now
            return [.send(.pushGradient(push))]
        case let .computed(generation, report):
            return computed(report, generation: generation)
        case let .loaded(jobId, .success(samples)):
            return [.log(.info, "data loaded", ["job": jobId, "train": "\(samples)"])]
        case let .loaded(jobId, .failure(failure)):
            // The server gives this worker's chunks to others, and fails the job if no worker can run it.
            return [.log(.error, "cannot run the job", ["job": jobId, "error": failure.message]),
                    .send(.cannotRun(jobId: jobId, reason: failure.message))]
        case .heartbeatDue:
            guard let workerId else { return [] }
            let rate = recentSeconds > 0 ? Double(recentSamples) / recentSeconds : 0
            return [.send(.heartbeat(Heartbeat(workerId: workerId, stepsDone: stepsDone, samplesPerSecond: rate)))]
        }
    }

    private mutating func handle(_ message: Message, now: Double) -> [Action] {
        switch message {
        case let .registered(r):
            workerId = r.workerId
            return [.observe(.registered(true)), .log(.info, "registered", ["worker": "\(r.workerId)"]),
                    .startHeartbeat(seconds: Double(r.heartbeatIntervalMilliseconds) / 1000)]
        case let .startJob(s):
            if job?.jobId == s.jobId { return [] }
            job = (s.jobId, s.spec, s.spec.network.parameterCount)
            return [.log(.info, "job assigned", ["job": s.jobId, "name": s.spec.name]), .load(jobId: s.jobId, spec: s.spec)]
        case let .weights(w):
            hold(w)
            return [.observe(.weightsReceived(bytes: w.tensor.count * MemoryLayout<Float>.size))]
        case let .assignment(a):
            return assign(a)
        case let .error(e):
            return [.log(.warning, "server reported an error", ["code": "\(e.code)", "message": e.message])]
        case let .pushAck(ack):
            let key = PushKey(jobId: ack.jobId, step: ack.step, firstChunk: ack.subtree.firstChunk,
                              chunkCount: ack.subtree.chunkCount, offset: ack.offset)
            guard let sent = pushesInFlight.removeValue(forKey: key) else { return [] }
            return [.observe(.pushAcknowledged(seconds: now - sent))]
        case .helloOk, .ack:
            return []
        default:
            return [.log(.warning, "unexpected message from the server", ["message": message.caseName])]
        }
    }

    /// Keeps a range of a version: it replaces whatever of that version it overlaps.
    private mutating func hold(_ w: Weights) {
        if let i = weights.firstIndex(where: { $0.jobId == w.jobId && $0.version == w.version }) {
            weights[i].parts.removeAll { $0.indices.overlaps(w.tensor.indices) }
            weights[i].parts.append(w.tensor)
        } else {
            weights.append((w.jobId, w.version, [w.tensor]))
            if weights.count > versionsHeld { weights.removeFirst(weights.count - versionsHeld) }
        }
    }

    /// How many versions of the job's weights to hold (see `weights`).
    var versionsHeld: Int {
        guard let consistency = job?.spec.training.consistency else { return 2 }
        switch consistency.mode {
        case .sync: return 2
        case .delayed: return consistency.staleness + 2
        case .ssp, .async: return ConsistencyLimits.batchesPerWorkerMax + 1
        }
    }

    /// A compute order for `a`, or a reconnect when it cannot be computed: without its weights the
    /// step would wait on it forever, while a new connection makes the server reassign the chunks
    /// and send whole weights again.
    private func assign(_ a: Assignment) -> [Action] {
        guard let job, job.jobId == a.jobId else {
            return [.log(.error, "assignment for a job this worker was not started on", ["job": a.jobId])]
        }
        switch completeWeights(jobId: a.jobId, version: a.version, parameterCount: job.parameterCount) {
        case let .failure(problem):
            return [.log(.error, "assignment \(problem.message); reconnecting", problem.fields), .reconnect]
        case let .success(parts):
            return [.compute(ComputeOrder(assignment: a, spec: job.spec, weights: parts, generation: generation))]
        }
    }

    /// The held weights of `version` in offset order when they cover every parameter exactly once,
    /// or what is missing.
    public func completeWeights(jobId: String, version: Int, parameterCount count: Int)
        -> Result<[TensorSlice], WeightsProblem> {
        guard let held = weights.last(where: { $0.jobId == jobId && $0.version == version }) else {
            return .failure(WeightsProblem(message: "without its weights", fields: ["job": jobId, "version": "\(version)"]))
        }
        let parts = held.parts.sorted { $0.offset < $1.offset }
        guard zip(parts, parts.dropFirst()).allSatisfy({ $0.indices.upperBound == $1.offset }),
              parts.first?.offset == 0, parts.last?.indices.upperBound == count else {
            let have = parts.map { "[\($0.offset), \($0.indices.upperBound))" }.joined(separator: " ")
            return .failure(WeightsProblem(message: "with incomplete weights", fields: [
                "job": jobId, "version": "\(version)", "parameters": "\(count)", "received": have]))
        }
        return .success(parts)
    }

    /// Why held weights cannot be computed with, for the log.
    public struct WeightsProblem: Error, Sendable {
        public var message: String
        public var fields: [String: String]
    }
    private mutating func computed(_ report: ComputeReport, generation: Int) -> [Action] {
        if let failure = report.failure {
            return [.log(.error, "cannot compute: the job's data did not load", ["job": report.jobId, "error": failure])]
        }
        var out: [Action] = [.observe(.computed(report.kind, seconds: report.seconds))]
        guard generation == self.generation else { return out }
        out += report.results.map { .send($0) }
        if report.kind == .train {
            stepsDone += 1
            out.append(.observe(.pushed(samples: report.samples, bytes: report.pushBytes)))
        }
        // Exponentially weighted rate, so status shows current speed.
        recentSamples = Int(Double(recentSamples) * 0.9) + report.samples
        recentSeconds = recentSeconds * 0.9 + report.seconds
        return out
    }
}

/// An assignment the worker can compute: the weights of its version, in offset order, covering
/// every parameter exactly once (still views of the frames they came in).
public struct ComputeOrder: Sendable {
    public let assignment: Assignment
    public let spec: JobSpec
    public let weights: [TensorSlice]
    public let generation: Int
}

/// What computing an assignment produced, besides the pushes sent while it ran.
public struct ComputeReport: Sendable {
    public var jobId: String
    public var kind: WorkKind
    /// Evaluation results, one per node (none for training: its pushes went out as `pushReady`).
    public var results: [Message] = []
    public var samples = 0
    public var pushBytes = 0
    public var seconds = 0.0
    /// Set when the job's data is not there to compute with.
    public var failure: String?

    public init(jobId: String, kind: WorkKind) {
        self.jobId = jobId
        self.kind = kind
    }
}

/// A gradient push, as its acknowledgement names it (`offset`: its push range's start).
struct PushKey: Hashable, Sendable {
    let jobId: String
    let step: Int
    let firstChunk: Int
    let chunkCount: Int
    let offset: Int

    init(jobId: String, step: Int, firstChunk: Int, chunkCount: Int, offset: Int) {
        self.jobId = jobId
        self.step = step
        self.firstChunk = firstChunk
        self.chunkCount = chunkCount
        self.offset = offset
    }

    init(_ push: PushGradient) {
        self.init(jobId: push.jobId, step: push.step, firstChunk: push.subtree.firstChunk,
                  chunkCount: push.subtree.chunkCount, offset: push.gradient.offset)
    }
}
