import Foundation
import PSCore
import PSData
import PSMath
@testable import PSServer
import PSTrain
import PSTransport
import PSWire

/// Repository root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path

/// A small real job on the 1,000-sample MNIST slices: two epochs, dropout, validation, test.
func smallJob(chunks: Int = 6, epochs: Int = 2, batchSize: Int = 50, earlyStopping: EarlyStoppingSpec? = nil,
              optimizer: OptimizerSpec = OptimizerSpec(kind: .adam, learningRate: 0.003),
              layers: [LayerSpec]? = nil) -> JobSpec {
    let small = repositoryRoot + "/data/mnist/small/"
    return JobSpec(
        name: "sim", seed: 5,
        data: DataSpec(format: .idx,
                       train: .idx(images: small + "train-images-idx3-ubyte", labels: small + "train-labels-idx1-ubyte"),
                       validationSplit: 0.15,
                       test: .idx(images: small + "t10k-images-idx3-ubyte", labels: small + "t10k-labels-idx1-ubyte"),
                       preprocessing: .scale(255)),
        // Two push ranges (784-64, then 64-4096-10 with more than ParameterLayout.pushRangeMin
        // parameters), so workers push each node in two parts.
        model: ModelSpec(inputs: 784, layers: layers ?? [LayerSpec(units: 64, activation: .relu, dropout: 0.25),
                                                         LayerSpec(units: 4096, activation: .relu),
                                                         LayerSpec(units: 10, activation: .softmax)]),
        loss: .softmaxCrossEntropy, optimizer: optimizer,
        training: TrainingSpec(batchSize: batchSize, chunks: chunks, epochs: epochs),
        earlyStopping: earlyStopping)
}

/// A worker simulated in the test process: it reacts to the coordinator's messages exactly as
/// `WorkerRuntime` does (start job, take weights, compute assigned nodes), but without sockets.
final class SimulatedWorker {
    /// How a node's gradient goes out: as `WorkerRuntime` sends it (one push per push range, as
    /// backward finishes each, last first), whole, or per range in an order drawn from `seed`.
    enum PushStyle {
        case parts
        case whole
        case shuffledParts(seed: UInt64)
    }

    let connection: ConnectionID
    let data: LoadedData
    let style: PushStyle
    var spec: JobSpec?
    var engine: StepEngine?
    var evaluation: Workspace?
    /// The weights as `WorkerRuntime` keeps them: the last two versions, whole or part by part.
    var weights: [(version: Int, parts: [TensorSlice])] = []
    var workerId: UInt64?

    init(connection: ConnectionID, data: LoadedData, style: PushStyle = .parts) {
        self.connection = connection
        self.data = data
        self.style = style
    }

    /// The weights of `version` put together, or nil when they are not all there.
    func assembledWeights(version: Int, count: Int) -> [Float]? {
        guard let held = weights.last(where: { $0.version == version }) else { return nil }
        var values = [Float](repeating: .nan, count: count)
        var covered = 0
        for part in held.parts {
            guard part.indices.upperBound <= count else { return nil }
            values.replaceSubrange(part.indices, with: part.values)
            covered += part.count
        }
        return covered == count ? values : nil
    }

    /// The messages this worker sends in response to one from the coordinator.
    func respond(to message: Message) -> [Message] {
        switch message {
        case let .registered(r):
            workerId = r.workerId
            return []
        case let .startJob(s):
            spec = s.spec
            let chunks = s.spec.training.chunks
            engine = StepEngine(network: s.spec.network, chunkCapacity: (s.spec.training.batchSize + chunks - 1) / chunks)
            evaluation = Workspace(network: s.spec.network, capacity: ChunkPlan.evaluationChunkSamples)
            return []
        case let .weights(w):
            if let i = weights.firstIndex(where: { $0.version == w.version }) {
                weights[i].parts.removeAll { $0.indices.overlaps(w.tensor.indices) }
                weights[i].parts.append(w.tensor)
            } else {
                weights.append((w.version, [w.tensor]))
                if weights.count > 2 { weights.removeFirst() }
            }
            return []
        case let .assignment(a):
            return compute(a)
        default:
            return []
        }
    }

    func compute(_ a: Assignment) -> [Message] {
        guard let spec, let engine, let evaluation,
              let values = assembledWeights(version: a.version, count: spec.network.parameterCount) else {
            fatalError("assignment without job or weights: \(a)")
        }
        let weights = (version: a.version, values: values)
        let network = spec.network
        switch a.kind {
        case .train:
            let order = epochPermutation(seed: spec.seed, epoch: a.epoch, count: data.train.count)
            let ranges = ChunkPlan.ranges(batchSize: a.batchSize, chunks: spec.training.chunks)
            return a.subtrees.flatMap { node -> [Message] in
                var gradient = [Float](repeating: 0, count: network.parameterCount)
                var done: [(Range<Int>, ChunkStats)] = []
                let stats = weights.values.withUnsafeBufferPointer { p in
                    order.withUnsafeBufferPointer { o in
                        gradient.withUnsafeMutableBufferPointer { g in
                            engine.reduceNode(first: node.firstChunk, count: node.chunkCount, totalChunks: spec.training.chunks,
                                              parameters: p.baseAddress!, dataset: data.train, step: a.step, dropoutSeed: spec.seed,
                                              chunkIndices: { UnsafeBufferPointer(rebasing: o[(a.batchStart + ranges[$0].lowerBound)..<(a.batchStart + ranges[$0].upperBound)]) },
                                              into: g.baseAddress!) { done.append(($0, $1)) }
                        }
                    }
                }
                func push(_ range: Range<Int>, _ s: ChunkStats) -> Message {
                    .pushGradient(PushGradient(jobId: a.jobId, step: a.step, subtree: node,
                                               gradient: TensorSlice(offset: range.lowerBound, values: Array(gradient[range])),
                                               lossSum: s.lossSum, correct: s.correct, samples: s.samples))
                }
                switch style {
                case .whole:
                    return [push(0..<network.parameterCount, stats)]
                case .parts:
                    return done.map { push($0.0, $0.1) }
                case let .shuffledParts(seed):
                    // Rotated, and reversed half the time, by a key drawn from the seed, step and node:
                    // every order of two parts, and a spread of orders of more.
                    let key = (seed &+ UInt64(a.step) &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(node.firstChunk) &* 0xBF58_476D_1CE4_E5B9
                    let shift = Int(key % UInt64(max(done.count, 1)))
                    var order = Array(done[shift...] + done[..<shift])
                    if (key >> 32) & 1 == 1 { order.reverse() }
                    return order.map { push($0.0, $0.1) }
                }
            }
        case .validate, .test:
            let dataset = a.kind == .validate ? data.validation! : data.test!
            let leaves = ChunkPlan.evaluationRanges(count: dataset.count)
            let all = (0..<Int32(dataset.count)).map { $0 }
            return a.subtrees.map { node in
                let stats = weights.values.withUnsafeBufferPointer { p in
                    dataset.features.withUnsafeBufferPointer { f in
                        all.withUnsafeBufferPointer { idx in
                            ReductionTree.reduce(leaves[node.firstChunk..<(node.firstChunk + node.chunkCount)].map { r in
                                network.evaluate(parameters: p.baseAddress!,
                                                 chunk: ChunkInput(features: f.baseAddress!, width: dataset.width,
                                                                   targets: dataset.targets, indices: UnsafeBufferPointer(rebasing: idx[r])),
                                                 workspace: evaluation)
                            }, +)
                        }
                    }
                }
                return .evalResult(EvalResult(jobId: a.jobId, kind: a.kind, epoch: a.epoch, subtree: node,
                                              lossSum: stats.lossSum, correct: stats.correct, samples: stats.samples))
            }
        }
    }
}

/// Drives a coordinator and simulated workers from a seed: message delivery order, worker deaths,
/// joins and duplicate pushes are all drawn from the seed, so a failing seed replays exactly.
struct Simulation {
    var coordinator: Coordinator
    var now = 0.0
    var nextConnection: ConnectionID = 1
    var workers: [ConnectionID: SimulatedWorker] = [:]
    /// Messages in flight to workers, in send order per connection.
    var toWorkers: [(ConnectionID, Message)] = []
    /// Messages in flight to the coordinator.
    var toCoordinator: [(ConnectionID, Message)] = []
    var replies: [ConnectionID: [Envelope]] = [:]
    /// Every envelope the coordinator sent, per connection (workers' too).
    var sent: [ConnectionID: [Envelope]] = [:]
    var closed: Set<ConnectionID> = []
    var logs: [(LogLevel, String, [String: String])] = []
    var models: [String: TrainedModel] = [:]
    var observations: [Observation] = []
    let data: LoadedData
    var rng: UInt64

    init(spec: JobSpec, seed: UInt64, shards: Int = 1) throws {
        coordinator = Coordinator(config: CoordinatorConfig(address: "sim", shardCount: shards), now: 0)
        data = try DataLoader.load(spec)
        rng = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    }

    mutating func random(_ n: Int) -> Int {
        rng ^= rng << 13
        rng ^= rng >> 7
        rng ^= rng << 17
        return Int(rng % UInt64(n))
    }

    /// Feeds one event to the coordinator and routes its actions.
    mutating func feed(_ event: CoordinatorEvent) {
        let actions = coordinator.receive(event, now: now)
        for action in actions {
            switch action {
            case let .send(id, envelope):
                route(envelope, to: id)
            case let .broadcast(ids, envelope):
                for id in ids { route(envelope, to: id) }
            case let .close(id, after):
                if let after { route(after, to: id) }
                closed.insert(id)
                if workers.removeValue(forKey: id) != nil {
                    toWorkers.removeAll { $0.0 == id }
                    toCoordinator.removeAll { $0.0 == id }
                }
                feed(.disconnected(id))
            case let .prepare(jobId, spec):
                let d = try! DataLoader.load(spec)
                feed(.prepared(jobId: jobId, .success(PreparedData(trainCount: d.train.count,
                    validationCount: d.validation?.count ?? 0, testCount: d.test?.count ?? 0, preprocessing: d.preprocessing))))
            case let .saveModel(jobId, model):
                models[jobId] = model
            case let .log(level, message, fields):
                logs.append((level, message, fields))
            case let .observe(o):
                observations.append(o)
            }
        }
    }

    mutating func route(_ envelope: Envelope, to id: ConnectionID) {
        sent[id, default: []].append(envelope)
        if workers[id] != nil {
            toWorkers.append((id, envelope.message))
        } else {
            replies[id, default: []].append(envelope)
        }
    }

    /// Opens a connection, says hello with `role`, and returns its id.
    mutating func connect(_ role: PeerRole) -> ConnectionID {
        let id = nextConnection
        nextConnection += 1
        feed(.connected(id, peer: "127.0.0.1:\(40000 + id)"))
        feed(.received(id, Envelope(requestId: 1, message: .hello(Hello(role: role, name: "\(role)-\(id)")))))
        return id
    }

    /// `style` nil: drawn from the seed.
    mutating func addWorker(style: SimulatedWorker.PushStyle? = nil) {
        let id = nextConnection
        let drawn: SimulatedWorker.PushStyle
        switch random(3) {
        case 0: drawn = .whole
        case 1: drawn = .shuffledParts(seed: UInt64(random(1 << 30)))
        default: drawn = .parts
        }
        workers[id] = SimulatedWorker(connection: id, data: data, style: style ?? drawn)
        _ = connect(.worker)
        toWorkers.removeAll { $0.0 == id }  // the helloOk
        feed(.received(id, Envelope(requestId: 2, message: .registerWorker(RegisterWorker(name: "w\(id)", threads: 1)))))
    }

    mutating func kill(_ id: ConnectionID) {
        workers[id] = nil
        toWorkers.removeAll { $0.0 == id }
        toCoordinator.removeAll { $0.0 == id }
        feed(.disconnected(id))
    }

    /// Delivers one pending message (the first for a randomly chosen connection, keeping per-connection order).
    mutating func step(duplicates: Bool) -> Bool {
        let toW = !toWorkers.isEmpty
        let toC = !toCoordinator.isEmpty
        guard toW || toC else { return false }
        if toC && (!toW || random(2) == 0) {
            let pick = toCoordinator[random(toCoordinator.count)].0
            let index = toCoordinator.firstIndex { $0.0 == pick }!
            let (id, message) = toCoordinator.remove(at: index)
            feed(.received(id, Envelope(requestId: 0, message: message)))
            if duplicates, case .pushGradient = message, random(8) == 0, workers[id] != nil {
                feed(.received(id, Envelope(requestId: 0, message: message)))  // a retransmission
            }
        } else {
            let pick = toWorkers[random(toWorkers.count)].0
            let index = toWorkers.firstIndex { $0.0 == pick }!
            let (id, message) = toWorkers.remove(at: index)
            guard let worker = workers[id] else { return true }
            for reply in worker.respond(to: message) { toCoordinator.append((id, reply)) }
        }
        return true
    }
}

