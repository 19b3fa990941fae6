import Foundation
import PSCore
import PSData
import PSMath
@testable import PSControl
@testable import PSShard
import PSTrain
import PSTransport
import PSWire
import PSTestSupport
@testable import PSWorker

/// A small real job on the 1,000-sample MNIST slices: two epochs, dropout, validation, test.
func smallJob(chunks: Int = 6, epochs: Int = 2, batchSize: Int = 50, earlyStopping: EarlyStoppingSpec? = nil,
              optimizer: OptimizerSpec = OptimizerSpec(kind: .adam, learningRate: 0.003),
              layers: [LayerSpec]? = nil) -> JobSpec {
    // Two push ranges (784-64, then 64-4096-10 with more than ParameterLayout.pushRangeMin
    // parameters), so workers push each node in two parts.
    smallMNISTJob(name: "sim", seed: 5, validationSplit: 0.15,
                  layers: layers ?? [LayerSpec(units: 64, activation: .relu, dropout: 0.25),
                                     LayerSpec(units: 4096, activation: .relu),
                                     LayerSpec(units: 10, activation: .softmax)],
                  optimizer: optimizer, batchSize: batchSize, chunks: chunks, epochs: epochs, earlyStopping: earlyStopping)
}

/// A worker in the test process: the product's own `WorkerStateMachine` deciding and its own
/// `WorkerCompute` computing, run synchronously with no sockets or queues. What the machine sends in
/// answer to one message comes back from `respond(to:)`.
final class TestWorker {
    /// How a node's gradient goes out: as the machine sends it (one push per push range, as backward
    /// finishes each, last first), or rearranged as another worker build might send it: whole (the
    /// node's ranges joined into one push), or per range in an order drawn from `seed`.
    enum PushStyle {
        case parts
        case whole
        case shuffledParts(seed: UInt64)
    }

    let connection: ConnectionID
    let style: PushStyle
    private(set) var machine: WorkerStateMachine
    private let computer: WorkerCompute
    /// The log lines the machine asked for.
    private(set) var logs: [(LogLevel, String, [String: String])] = []

    init(connection: ConnectionID, data: LoadedData, style: PushStyle = .parts) {
        self.connection = connection
        self.style = style
        machine = WorkerStateMachine(name: "w\(connection)", threads: 1)
        computer = WorkerCompute(loadData: { _ in data })
    }

    var workerId: UInt64? { machine.workerId }

    /// The weights of `version` put together, or nil when they are not all there.
    func assembledWeights(version: Int, count: Int) -> [Float]? {
        guard let job = machine.job,
              case let .success(parts) = machine.completeWeights(jobId: job.jobId, version: version, parameterCount: count)
        else { return nil }
        var values: [Float] = []
        WorkerCompute.assemble(parts, count: count, into: &values)
        return values
    }

    /// The connection is up: what the machine sends first (its registration).
    func connected() -> [Message] {
        feed(.connected(serverName: "sim"))
    }

    /// The messages this worker sends in response to one from the coordinator.
    func respond(to message: Message) -> [Message] {
        arranged(feed(.received(message)))
    }

    /// Feeds the machine one event and performs its actions at once; returns what it sent.
    private func feed(_ event: WorkerStateMachine.Event) -> [Message] {
        var sent: [Message] = []
        for action in machine.receive(event, now: 0) {
            switch action {
            case let .send(message):
                // Gradient pushes are views of buffers the next computation reuses: copy what is kept.
                if case var .pushGradient(p) = message {
                    p.gradient = TensorSlice(offset: p.gradient.offset, values: p.gradient.values)
                    sent.append(.pushGradient(p))
                } else {
                    sent.append(message)
                }
            case let .load(jobId, spec):
                sent += feed(.loaded(jobId: jobId, computer.load(jobId: jobId, spec: spec)))
            case let .compute(order):
                var pushes: [PushGradient] = []
                let report = computer.run(order) { pushes.append($0) }
                for p in pushes { sent += feed(.pushReady(generation: order.generation, p)) }
                sent += feed(.computed(generation: order.generation, report))
            case .reconnect:
                fatalError("worker \(connection) asked to reconnect: \(logs.last.map { "\($0.1) \($0.2)" } ?? "")")
            case let .log(level, message, fields):
                logs.append((level, message, fields))
            case .startHeartbeat, .stopHeartbeat, .observe:
                break
            }
        }
        return sent
    }

    /// `messages` with each node's pushes rearranged as `style` says (evaluation results unchanged).
    private func arranged(_ messages: [Message]) -> [Message] {
        var nodes: [ChunkRange] = []
        var parts: [Int: [PushGradient]] = [:]  // by first chunk: an assignment's nodes are disjoint
        var others: [Message] = []
        for m in messages {
            guard case let .pushGradient(p) = m else { others.append(m); continue }
            if parts[p.subtree.firstChunk] == nil { nodes.append(p.subtree) }
            parts[p.subtree.firstChunk, default: []].append(p)
        }
        let pushes = nodes.flatMap { node -> [PushGradient] in
            let done = parts[node.firstChunk]!
            switch style {
            case .parts:
                return done
            case .whole:
                // Every part carries the node's statistics; the ranges joined cover the whole vector.
                var whole = done[0]
                let sorted = done.sorted { $0.gradient.offset < $1.gradient.offset }
                whole.gradient = TensorSlice(offset: 0, values: sorted.flatMap(\.gradient.values))
                return [whole]
            case let .shuffledParts(seed):
                // Rotated, and reversed half the time, by a key drawn from the seed, step and node:
                // every order of two parts, and a spread of orders of more.
                let key = (seed &+ UInt64(done[0].step) &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(node.firstChunk) &* 0xBF58_476D_1CE4_E5B9
                let shift = Int(key % UInt64(max(done.count, 1)))
                var order = Array(done[shift...] + done[..<shift])
                if (key >> 32) & 1 == 1 { order.reverse() }
                return order
            }
        }
        return pushes.map { .pushGradient($0) } + others
    }
}

/// Drives a coordinator and simulated workers from a seed: message delivery order, worker deaths,
/// joins and duplicate pushes are all drawn from the seed, so a failing seed replays exactly.
struct Simulation {
    var coordinator: Coordinator
    /// The parameter shard, given the coordinator's commands in order as the server's runtime does.
    var shard: ParameterShard
    var clock = ManualClock()
    var now: Double { clock.now }
    var nextConnection: ConnectionID = 1
    var workers: [ConnectionID: TestWorker] = [:]
    /// Messages in flight to workers, and to the coordinator (each connection in order).
    var toWorkersLink = SimulatedNetwork<Message>()
    var toCoordinatorLink = SimulatedNetwork<Message>()
    var replies: [ConnectionID: [Envelope]] = [:]
    /// Every envelope the coordinator sent, per connection (workers' too).
    var sent: [ConnectionID: [Envelope]] = [:]
    var closed: Set<ConnectionID> = []
    var logs: [(LogLevel, String, [String: String])] = []
    var models: [String: TrainedModel] = [:]
    /// What the runtime writes, in order: `model JOB` (its model file) and `ended JOB` (its result and
    /// journal entry, written when the job's final state is observed).
    var writes: [String] = []
    var observations: [Observation] = []
    let data: LoadedData
    var rng: SeededRandom
    /// What the data directory would hold: the journal (specs in submission order), and each job's
    /// checkpoints in the order written.
    var journal: [(id: String, spec: JobSpec)] = []
    var checkpoints: [String: [Checkpoint]] = [:]
    /// Set: checkpoints the shard hands over are "being written" (kept here, not stored, no answer yet).
    var holdCheckpoints = false
    var checkpointsBeingWritten: [Checkpoint] = []
    /// Set: the coordinator's `.prepare` is kept in `loading` (a load in progress) instead of done at once.
    var holdPrepares = false
    var loading: [(jobId: String, spec: JobSpec)] = []
    /// Loads the coordinator cancelled, with the reason.
    var cancelledLoads: [(jobId: String, reason: String)] = []
    /// One-shot ticks the coordinator asked for (`.wake`), in order; tests deliver them as they like.
    var wakes: [Double] = []
    let shards: Int

    init(spec: JobSpec, seed: UInt64, shards: Int = 1, config: CoordinatorConfig? = nil) throws {
        coordinator = Coordinator(config: config ?? CoordinatorConfig(address: "sim", shardCount: shards), now: 0)
        shard = ParameterShard(keyRanges: shards)
        self.shards = shards
        data = try DataLoader.load(spec)
        rng = SeededRandom(seed: seed)
    }

    mutating func random(_ n: Int) -> Int { rng.next(n) }

    /// The server dies (kill -9: nothing more is sent or written) and a new one starts on the same data
    /// directory: a new coordinator and shard from the journal, results and checkpoints; every
    /// connection is gone (clients reconnect themselves; `workers` new ones are added).
    mutating func restartServer(workers count: Int, firstJobNumber: Int? = nil) {
        let recovered = journal.map { RecoveredJob(id: $0.id, spec: $0.spec, result: coordinator.result(of: $0.id)) }
        let next = firstJobNumber ?? (journal.count + 1)
        coordinator = Coordinator(config: coordinator.config, now: now, firstJobNumber: next, recovered: recovered)
        shard = ParameterShard(keyRanges: shards)
        workers = [:]
        toWorkersLink = SimulatedNetwork<Message>()
        toCoordinatorLink = SimulatedNetwork<Message>()
        checkpointsBeingWritten = []
        holdCheckpoints = false
        for _ in 0..<count { addWorker() }
        feed(.tick)
    }

    /// What is in flight to workers, in send order (tests read it, deliver it themselves, clear it).
    var toWorkers: [(ConnectionID, Message)] {
        get { toWorkersLink.inFlight.map { ($0.connection, $0.message) } }
        set { toWorkersLink.inFlight = newValue.map { (connection: $0.0, message: $0.1) } }
    }

    /// The shard's parameters and optimizer state (nil when no job is open).
    var store: ParameterStore? { shard.job?.store }
    /// Set: the shard's answers to `.finish` are kept in `heldShardAnswers` instead of delivered
    /// (checkpoints written are still answered).
    var holdShardAnswers = false
    var heldShardAnswers: [CoordinatorEvent] = []

    /// Feeds one event to the coordinator and routes its actions; the shard's answer to `.finish`
    /// comes back as an event after them, as the runtime queues it.
    mutating func feed(_ event: CoordinatorEvent) {
        let actions = coordinator.receive(event, now: now)
        var later: [CoordinatorEvent] = []
        for action in actions {
            switch action {
            case let .shard(command):
                for answer in shard.receive(command) {
                    switch answer {
                    case let .send(id, envelope):
                        route(envelope, to: id)
                    case let .broadcast(ids, envelope):
                        for id in ids { route(envelope, to: id) }
                    case let .finished(jobId, parameters, sha256):
                        later.append(.shardFinished(jobId: jobId, parameters: parameters, sha256: sha256))
                    case let .stepApplied(jobId, step, version, problem):
                        later.append(.shardStepApplied(jobId: jobId, step: step, version: version, problem: problem))
                    case let .checkpoint(checkpoint, keep):
                        if holdCheckpoints {
                            checkpointsBeingWritten.append(checkpoint)
                        } else {
                            checkpoints[checkpoint.jobId, default: []].append(checkpoint)
                            checkpoints[checkpoint.jobId] = Array(checkpoints[checkpoint.jobId]!.suffix(keep))
                            later.append(.checkpointWritten(jobId: checkpoint.jobId, steps: checkpoint.optimizerSteps))
                        }
                    case let .log(level, message, fields):
                        logs.append((level, message, fields))
                    }
                }
            case let .send(id, envelope):
                route(envelope, to: id)
            case let .broadcast(ids, envelope):
                for id in ids { route(envelope, to: id) }
            case let .close(id, after):
                if let after { route(after, to: id) }
                closed.insert(id)
                if workers.removeValue(forKey: id) != nil {
                    toWorkersLink.drop(connection: id)
                    toCoordinatorLink.drop(connection: id)
                }
                feed(.disconnected(id))
            case let .prepare(jobId, spec) where holdPrepares:
                loading.append((jobId, spec))
            case let .cancelPrepare(jobId, reason):
                loading.removeAll { $0.jobId == jobId }
                cancelledLoads.append((jobId, reason))
            case let .wake(at):
                wakes.append(at)
            case let .prepare(jobId, spec):
                let d = try! DataLoader.load(spec)
                let steps = ChunkPlan.stepsPerEpoch(count: d.train.count, batchSize: spec.training.batchSize)
                // The newest checkpoint that fits, as the runtime picks it.
                let sha = Digest.sha256(spec.wireBytes())
                let usable = checkpoints[jobId, default: []].last {
                    $0.problem(jobId: jobId, spec: spec, specSHA256: sha, stepsPerEpoch: steps,
                               parameterCount: spec.network.parameterCount,
                               optimizerSlots: spec.optimizer.config.rule.slotNames.count) == nil
                }
                feed(.prepared(jobId: jobId, .success(PreparedData(trainCount: d.train.count,
                    validationCount: d.validation?.count ?? 0, testCount: d.test?.count ?? 0, preprocessing: d.preprocessing)),
                    checkpoint: usable))
            case let .recordSubmission(jobId, spec, connection, requestId):
                journal.append((jobId, spec))
                route(Envelope(requestId: requestId, message: .submitted(jobId: jobId)), to: connection)
            case let .sendStoredModel(jobId, connection, requestId):
                route(Envelope(requestId: requestId, message: models[jobId].map { .modelData($0) }
                    ?? .error(ErrorReply(code: .internal, message: "no stored model"))), to: connection)
            case let .saveModel(jobId, model):
                models[jobId] = model
                writes.append("model \(jobId)")
            case let .log(level, message, fields):
                logs.append((level, message, fields))
            case let .observe(o):
                observations.append(o)
                if case let .jobState(jobId, _, state) = o, state.isFinal { writes.append("ended \(jobId)") }
            }
        }
        for event in later {
            if holdShardAnswers, case .shardFinished = event {
                heldShardAnswers.append(event)
            } else {
                feed(event)
            }
        }
    }

    mutating func route(_ envelope: Envelope, to id: ConnectionID) {
        sent[id, default: []].append(envelope)
        if workers[id] != nil {
            toWorkersLink.send(envelope.message, on: id)
        } else {
            replies[id, default: []].append(envelope)
        }
    }

    /// Opens a connection, says hello with `role` (workers with `signature`), and returns its id.
    mutating func connect(_ role: PeerRole, signature: String = Self.signature) -> ConnectionID {
        let id = nextConnection
        nextConnection += 1
        feed(.connected(id, peer: "127.0.0.1:\(40000 + id)"))
        let hello = Hello(role: role, name: "\(role)-\(id)", computeSignature: role == .worker ? signature : "")
        feed(.received(id, Envelope(requestId: 1, message: .hello(hello))))
        return id
    }

    /// The compute signature simulated workers say they have (they all compute in this process).
    static let signature = "openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-1"

    /// `style` nil: drawn from the seed.
    mutating func addWorker(style: TestWorker.PushStyle? = nil, signature: String = Self.signature) {
        let id = nextConnection
        let drawn: TestWorker.PushStyle
        switch random(3) {
        case 0: drawn = .whole
        case 1: drawn = .shuffledParts(seed: UInt64(random(1 << 30)))
        default: drawn = .parts
        }
        workers[id] = TestWorker(connection: id, data: data, style: style ?? drawn)
        _ = connect(.worker, signature: signature)
        toWorkersLink.drop(connection: id)  // the helloOk
        for message in workers[id]!.connected() { feed(.received(id, Envelope(requestId: 2, message: message))) }
    }

    mutating func kill(_ id: ConnectionID) {
        workers[id] = nil
        toWorkersLink.drop(connection: id)
        toCoordinatorLink.drop(connection: id)
        feed(.disconnected(id))
    }

    /// Delivers one pending message (the first for a randomly chosen connection, keeping per-connection order).
    mutating func step(duplicates: Bool) -> Bool {
        let toW = !toWorkersLink.isEmpty
        let toC = !toCoordinatorLink.isEmpty
        guard toW || toC else { return false }
        if toC && (!toW || random(2) == 0) {
            let (id, message) = toCoordinatorLink.deliverOne(&rng)!
            feed(.received(id, Envelope(requestId: 0, message: message)))
            if duplicates, case .pushGradient = message, random(8) == 0, workers[id] != nil {
                feed(.received(id, Envelope(requestId: 0, message: message)))  // a retransmission
            }
        } else {
            let (id, message) = toWorkersLink.deliverOne(&rng)!
            guard let worker = workers[id] else { return true }
            for reply in worker.respond(to: message) { toCoordinatorLink.send(reply, on: id) }
        }
        return true
    }
}

