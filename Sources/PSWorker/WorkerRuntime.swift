import Dispatch
import Foundation
import Logging
import PSCore
import PSData
import PSMath
import PSMetrics
import PSTrain
import PSTransport
import PSWire

/// A worker: connects (retrying with backoff), registers, and computes what it is assigned.
///
/// Two serial queues: `control` owns the state (registration, jobs, weights) and handles messages;
/// `compute` runs data loading and every BLAS call, so no event-loop thread ever computes. Work is
/// tagged with the connection generation it was assigned on; results of work assigned on an older
/// connection are dropped, because the coordinator has already reassigned those chunks.
public final class WorkerRuntime: @unchecked Sendable {
    public struct Options: Sendable {
        public var serverAddress: String
        public var name: String
        public var threads: Int

        public init(serverAddress: String, name: String, threads: Int = 1) {
            self.serverAddress = serverAddress
            self.name = name
            self.threads = threads
        }
    }

    /// What this worker knows of one job.
    final class JobContext: @unchecked Sendable {
        let jobId: String
        let spec: JobSpec
        let network: Network
        /// Set on the compute queue by the load that precedes every computation of this job.
        var data: LoadedData?
        var loadError: String?
        var engine: StepEngine?
        var evaluation: Workspace?
        /// The permutation of the epoch last used (recomputing it per step would cost more than the step).
        var order: (epoch: Int, indices: [Int32])?
        /// The weights being computed with and one gradient buffer per pushed node, reused every step
        /// (compute queue only). Pushes are views of the gradient buffers, encoded on the control queue
        /// as soon as each push range is done; a step waits for the control queue to have sent the previous
        /// step's pushes before it writes the buffers again (`run`).
        var parameters: [Float] = []
        var gradients: [GradientBuffer] = []

        init(jobId: String, spec: JobSpec) {
            self.jobId = jobId
            self.spec = spec
            network = spec.network
        }
    }

    let options: Options
    let logger: Logger
    let control = DispatchQueue(label: "ps-worker.control")
    let compute = DispatchQueue(label: "ps-worker.compute")
    var connection: ReconnectingConnection!
    var workerId: UInt64?
    var generation = 0
    var job: JobContext?
    /// Weights held, whole or as the push ranges the server sent as it applied each one: the two
    /// versions received last, newest last. Two, because the next version's ranges start arriving while the
    /// current one may still be needed (chunks of a lost worker reassigned within the step).
    var weights: [(jobId: String, version: Int, parts: [TensorSlice])] = []
    var heartbeat: DispatchSourceTimer?
    var stepsDone = 0
    var recentSamples = 0
    var recentSeconds = 0.0
    private let stopped = DispatchSemaphore(value: 0)
    /// Where the worker's series go; nil when the process serves no metrics.
    let metrics: WorkerMetrics?
    /// When each gradient push still awaiting its acknowledgement was sent (only kept with `metrics`).
    /// At most one assignment's pushes are in flight (steps are synchronous); cleared on disconnect.
    var pushesInFlight: [PushKey: ContinuousClock.Instant] = [:]

    public init(options: Options, logger: Logger, metrics: WorkerMetrics? = nil) {
        self.options = options
        self.logger = logger
        self.metrics = metrics
    }

    public func start() {
        BLAS.setThreads(options.threads)
        connection = ReconnectingConnection(address: options.serverAddress,
                                            hello: Hello(role: .worker, name: options.name), logger: logger) { [weak self] event in
            guard let self else { return }
            self.control.async { self.handle(event) }
        }
        connection.start()
    }

    public func stop() {
        control.sync {
            heartbeat?.cancel()
            heartbeat = nil
        }
        connection.stop()
        stopped.signal()
    }

    public func wait() {
        stopped.wait()
        stopped.signal()
    }

    // MARK: Control queue

    private func handle(_ event: ReconnectingConnection.Event) {
        switch event {
        case let .connected(hello):
            generation += 1
            metrics?.setConnected(true)
            logger.info("connected", metadata: ["server": "\(hello.serverName)"])
            connection.send(.registerWorker(RegisterWorker(name: options.name, threads: options.threads)), requestId: 1)
        case let .disconnected(reason):
            generation += 1
            workerId = nil
            weights = []
            heartbeat?.cancel()
            heartbeat = nil
            metrics?.setConnected(false)
            pushesInFlight = [:]
            logger.warning("disconnected; will reconnect", metadata: ["reason": "\(reason)"])
        case let .received(envelope):
            handle(envelope.message)
        }
    }

    private func handle(_ message: Message) {
        switch message {
        case let .registered(r):
            workerId = r.workerId
            logger.info("registered", metadata: ["worker": "\(r.workerId)"])
            startHeartbeat(every: Double(r.heartbeatIntervalMilliseconds) / 1000)
        case let .startJob(s):
            if job?.jobId == s.jobId { return }
            let context = JobContext(jobId: s.jobId, spec: s.spec)
            job = context
            logger.info("job assigned", metadata: ["job": "\(s.jobId)", "name": "\(s.spec.name)"])
            compute.async { [logger] in
                do {
                    let data = try DataLoader.load(s.spec)
                    context.data = data
                    let chunks = s.spec.training.chunks
                    context.engine = StepEngine(network: context.network,
                                                chunkCapacity: (s.spec.training.batchSize + chunks - 1) / chunks)
                    context.evaluation = Workspace(network: context.network, capacity: ChunkPlan.evaluationChunkSamples)
                    logger.info("data loaded", metadata: ["job": "\(s.jobId)", "train": "\(data.train.count)"])
                } catch {
                    context.loadError = "\(error)"
                    logger.error("cannot load the job's data", metadata: ["job": "\(s.jobId)", "error": "\(error)"])
                }
            }
        case let .weights(w):
            if let i = weights.firstIndex(where: { $0.jobId == w.jobId && $0.version == w.version }) {
                // Another range of a version held: it replaces whatever it overlaps.
                weights[i].parts.removeAll { $0.indices.overlaps(w.tensor.indices) }
                weights[i].parts.append(w.tensor)
            } else {
                weights.append((w.jobId, w.version, [w.tensor]))
                if weights.count > 2 { weights.removeFirst() }
            }
            metrics?.weightsReceived(bytes: w.tensor.count * MemoryLayout<Float>.size)
        case let .assignment(a):
            guard let context = job, context.jobId == a.jobId else {
                return logger.error("assignment for a job this worker was not started on", metadata: ["job": "\(a.jobId)"])
            }
            // Without the weights the assignment cannot be computed, and the step would wait on it:
            // reconnect, so that the server reassigns the chunks and sends whole weights again.
            guard let w = weights.last(where: { $0.jobId == a.jobId && $0.version == a.version }) else {
                logger.error("assignment without its weights; reconnecting", metadata: ["job": "\(a.jobId)", "version": "\(a.version)"])
                return connection.reconnect()
            }
            let parts = w.parts.sorted { $0.offset < $1.offset }
            let count = context.network.parameterCount
            guard zip(parts, parts.dropFirst()).allSatisfy({ $0.indices.upperBound == $1.offset }),
                  parts.first?.offset == 0, parts.last?.indices.upperBound == count else {
                let have = parts.map { "[\($0.offset), \($0.indices.upperBound))" }.joined(separator: " ")
                logger.error("assignment with incomplete weights; reconnecting", metadata: [
                    "job": "\(a.jobId)", "version": "\(a.version)", "parameters": "\(count)", "received": "\(have)"])
                return connection.reconnect()
            }
            let generation = self.generation
            // The weights are still views of the frames they came in; the one copy, into the job's
            // weights buffer, happens on the compute queue.
            compute.async { [weak self] in
                if parts.count == 1 {
                    parts[0].data.copy(into: &context.parameters)
                } else {
                    if context.parameters.count != count { context.parameters = [Float](repeating: 0, count: count) }
                    context.parameters.withUnsafeMutableBytes { out in
                        for part in parts {
                            part.data.withUnsafeBytes { b in
                                if b.count > 0 {
                                    out.baseAddress!.advanced(by: part.offset * MemoryLayout<Float>.size)
                                        .copyMemory(from: b.baseAddress!, byteCount: b.count)
                                }
                            }
                        }
                    }
                }
                self?.run(a, context: context, generation: generation)
            }
        case let .error(e):
            logger.warning("server reported an error", metadata: ["code": "\(e.code)", "message": "\(e.message)"])
        case let .pushAck(ack):
            let key = PushKey(jobId: ack.jobId, step: ack.step, firstChunk: ack.subtree.firstChunk,
                              chunkCount: ack.subtree.chunkCount, offset: ack.offset)
            if let sent = pushesInFlight.removeValue(forKey: key) {
                metrics?.pushAcknowledged(after: ContinuousClock.now - sent)
            }
        case .helloOk, .ack:
            break
        default:
            logger.warning("unexpected message from the server", metadata: ["message": "\(message.caseName)"])
        }
    }

    private func startHeartbeat(every seconds: Double) {
        heartbeat?.cancel()
        let t = DispatchSource.makeTimerSource(queue: control)
        t.schedule(deadline: .now() + seconds, repeating: seconds)
        t.setEventHandler { [weak self] in
            guard let self, let id = self.workerId else { return }
            let rate = self.recentSeconds > 0 ? Double(self.recentSamples) / self.recentSeconds : 0
            self.connection.send(.heartbeat(Heartbeat(workerId: id, stepsDone: self.stepsDone, samplesPerSecond: rate)))
        }
        t.resume()
        heartbeat = t
    }

    /// Sends one push of `generation` at once (unless the connection has changed since).
    private func send(_ push: Message, key: PushKey, generation: Int) {
        control.async { [self] in
            guard generation == self.generation else { return }
            if metrics != nil { pushesInFlight[key] = ContinuousClock.now }
            connection.send(push)
        }
    }

    /// Sends results computed for `generation` only if the connection they were assigned on is still the current one.
    /// Each message is encoded straight into its network buffer by `send` (one copy of the gradient).
    private func deliver(_ messages: [Message], generation: Int, samples: Int, seconds: Double, train: Bool,
                         pushBytes: Int) {
        control.async { [self] in
            guard generation == self.generation else { return }
            for m in messages { connection.send(m) }
            if train {
                stepsDone += 1
                metrics?.pushed(samples: samples, bytes: pushBytes)
            }
            // Exponentially weighted rate, so status shows current speed.
            recentSamples = Int(Double(recentSamples) * 0.9) + samples
            recentSeconds = recentSeconds * 0.9 + seconds
        }
    }

    // MARK: Compute queue

    private func run(_ a: Assignment, context: JobContext, generation: Int) {
        let parameters = context.parameters
        guard let data = context.data, let engine = context.engine, let evaluation = context.evaluation else {
            logger.error("cannot compute: the job's data did not load", metadata: ["job": "\(a.jobId)", "error": "\(context.loadError ?? "?")"])
            return
        }
        let started = ContinuousClock.now
        var messages: [Message] = []
        var samples = 0
        var pushBytes = 0
        switch a.kind {
            case .train:
                if context.order?.epoch != a.epoch {
                    context.order = (a.epoch, epochPermutation(seed: context.spec.seed, epoch: a.epoch, count: data.train.count))
                }
                let order = context.order!.indices
                let chunks = context.spec.training.chunks
                let ranges = ChunkPlan.ranges(batchSize: a.batchSize, chunks: chunks)
                let parameterCount = context.network.parameterCount
                while context.gradients.count < a.subtrees.count {
                    context.gradients.append(GradientBuffer(count: parameterCount))
                }
                // The previous step's pushes are views of these buffers: let the control queue send
                // (encode) them before they are overwritten. (They always have been by now: the server
                // starts a step only after the last one's pushes arrived. This makes it certain.)
                control.sync {}
                for (k, node) in a.subtrees.enumerated() {
                    let buffer = context.gradients[k]
                    // reduceNode overwrites every element; each push range leaves as soon as it is final
                    // and travels (and is summed, and applied) while the earlier layers compute.
                    let stats = parameters.withUnsafeBufferPointer { p in
                        order.withUnsafeBufferPointer { o in
                            engine.reduceNode(first: node.firstChunk, count: node.chunkCount, totalChunks: chunks,
                                              parameters: p.baseAddress!, dataset: data.train, step: a.step,
                                              dropoutSeed: context.spec.seed,
                                              chunkIndices: { c in
                                                  UnsafeBufferPointer(rebasing: o[(a.batchStart + ranges[c].lowerBound)..<(a.batchStart + ranges[c].upperBound)])
                                              }, into: buffer.pointer) { range, stats in
                                let key = PushKey(jobId: a.jobId, step: a.step, firstChunk: node.firstChunk,
                                                  chunkCount: node.chunkCount, offset: range.lowerBound)
                                self.send(.pushGradient(PushGradient(
                                    jobId: a.jobId, step: a.step, subtree: node,
                                    gradient: TensorSlice(offset: range.lowerBound, data: buffer.view(range)),
                                    lossSum: stats.lossSum, correct: stats.correct, samples: stats.samples)),
                                          key: key, generation: generation)
                            }
                        }
                    }
                    samples += stats.samples
                    pushBytes += parameterCount * MemoryLayout<Float>.size
                }
            case .validate, .test:
                guard let dataset = a.kind == .validate ? data.validation : data.test else {
                    logger.error("assignment for a split this job does not have", metadata: ["job": "\(a.jobId)", "kind": "\(a.kind)"])
                    return
                }
                let leaves = ChunkPlan.evaluationRanges(count: dataset.count)
                let all = (0..<Int32(dataset.count)).map { $0 }
                for node in a.subtrees {
                    let stats = parameters.withUnsafeBufferPointer { p in
                        dataset.features.withUnsafeBufferPointer { f in
                            all.withUnsafeBufferPointer { indices in
                                ReductionTree.reduce(leaves[node.firstChunk..<(node.firstChunk + node.chunkCount)].map { r in
                                    context.network.evaluate(parameters: p.baseAddress!,
                                                             chunk: ChunkInput(features: f.baseAddress!, width: dataset.width,
                                                                               targets: dataset.targets,
                                                                               indices: UnsafeBufferPointer(rebasing: indices[r])),
                                                             workspace: evaluation)
                                }, +)
                            }
                        }
                    }
                    messages.append(.evalResult(EvalResult(
                        jobId: a.jobId, kind: a.kind, epoch: a.epoch, subtree: node,
                        lossSum: stats.lossSum, correct: stats.correct, samples: stats.samples)))
                }
            }
        let d = ContinuousClock.now - started
        metrics?.computed(WorkerMetrics.Kind(a.kind), duration: d)
        let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        deliver(messages, generation: generation, samples: samples, seconds: seconds, train: a.kind == .train,
                pushBytes: pushBytes)
    }
}

/// A gradient push, as its acknowledgement names it (`offset`: its push range's start).
struct PushKey: Hashable {
    let jobId: String
    let step: Int
    let firstChunk: Int
    let chunkCount: Int
    let offset: Int
}

/// A node's gradient sum, reused step after step. Its pushes are views of it (`view`), which hold it
/// alive until they are encoded; the worker does not write it again before then (see `run`).
final class GradientBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { pointer.deallocate() }

    /// Values `range`, as the bytes of a push.
    func view(_ range: Range<Int>) -> FloatData {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "view \(range) outside 0..<\(count)")
        let bytes = UnsafeRawBufferPointer(start: pointer + range.lowerBound, count: range.count * MemoryLayout<Float>.size)
        return FloatData(viewing: ReceivedBytes(bytes, owner: self))
    }
}

extension WorkerMetrics.Kind {
    init(_ kind: WorkKind) {
        switch kind {
        case .train: self = .train
        case .validate: self = .validate
        case .test: self = .test
        }
    }
}

