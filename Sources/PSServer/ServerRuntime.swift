import Dispatch
import Foundation
import Logging
import PSData
import PSStorage
import PSTransport
import PSWire

/// Drives the coordinator: transport events and timer ticks go onto one serial queue, where the
/// state machine runs; its actions are performed there too (sends are thread-safe and cheap to
/// start). Loading a job's data and writing models and job records (through `store`) happen on a
/// utility queue, never on an event loop.
public final class ServerRuntime: @unchecked Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var dataDirectory: String
        public var heartbeatIntervalSeconds: Double
        public var heartbeatTimeoutSeconds: Double
        public var shardCount: Int
        public var updateThreads: Int

        public init(host: String = "127.0.0.1", port: Int = 7070, dataDirectory: String,
                    heartbeatIntervalSeconds: Double = 1, heartbeatTimeoutSeconds: Double = 10, shardCount: Int = 1,
                    updateThreads: Int = 1) {
            self.host = host
            self.port = port
            self.dataDirectory = dataDirectory
            self.heartbeatIntervalSeconds = heartbeatIntervalSeconds
            self.heartbeatTimeoutSeconds = heartbeatTimeoutSeconds
            self.shardCount = shardCount
            self.updateThreads = updateThreads
        }
    }

    let options: Options
    let logger: Logger
    /// Where models and job records go: the data directory unless a test gives another store.
    public let store: any RecordStore
    let queue = DispatchQueue(label: "ps-server.coordinator")
    let io = DispatchQueue(label: "ps-server.io", attributes: .concurrent)
    var coordinator: Coordinator!
    var transport: TransportServer!
    var timer: DispatchSourceTimer?
    let clock = ContinuousClock()
    let epoch = ContinuousClock.now
    /// Called on the coordinator's queue for every observation; keep them quick (hop elsewhere for slow I/O).
    private var observers: [@Sendable (Observation) -> Void] = []

    /// Registers an observer (metrics, event files). Call before `start()`.
    public func observe(_ observer: @escaping @Sendable (Observation) -> Void) {
        observers.append(observer)
    }

    /// `store`: where models and job records are kept; by default `FileRecordStore` on `options.dataDirectory`.
    public init(options: Options, logger: Logger, store: (any RecordStore)? = nil) {
        self.options = options
        self.logger = logger
        self.store = store ?? FileRecordStore(directory: options.dataDirectory)
    }

    /// "HOST:PORT" the server listens on (with the real port when 0 was asked).
    public var address: String { transport.localAddress }

    var now: Double {
        let d = clock.now - epoch
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// Binds, starts the coordinator and the tick timer. Returns once listening.
    public func start() throws {
        try store.open()
        let firstJobNumber = try store.nextJobNumber()
        // Connections may arrive as soon as the listener is up, but the coordinator needs the bound
        // address: the queue stays suspended, holding their events, until the coordinator exists.
        queue.suspend()
        defer { queue.resume() }
        transport = try TransportServer.start(host: options.host, port: options.port, logger: logger) { [weak self] event in
            guard let self else { return }
            self.queue.async { self.deliver(event) }
        }
        let config = CoordinatorConfig(serverName: "ps-server@\(transport.localAddress)", address: transport.localAddress,
                                       heartbeatIntervalSeconds: options.heartbeatIntervalSeconds,
                                       heartbeatTimeoutSeconds: options.heartbeatTimeoutSeconds,
                                       shardCount: options.shardCount, updateThreads: options.updateThreads)
        // Safe without the queue: it is suspended, so nothing else touches the coordinator yet.
        coordinator = Coordinator(config: config, now: now, firstJobNumber: firstJobNumber)
        let t = DispatchSource.makeTimerSource(queue: queue)
        t.schedule(deadline: .now() + 0.25, repeating: 0.25)
        t.setEventHandler { [weak self] in
            guard let self else { return }
            self.perform(self.coordinator.receive(.tick, now: self.now))
        }
        t.resume()
        timer = t
        logger.info("listening", metadata: ["address": "\(transport.localAddress)", "data_dir": "\(options.dataDirectory)"])
    }

    /// Stops in order: no new connections; the coordinator marks a running job interrupted, answers its
    /// waiters and closes every connection (observers close that job's event files); the last models and
    /// job records are written; then the transport shuts down. Blocks until done; a second call does nothing new.
    public func stop() {
        transport.stopAccepting()
        queue.sync {
            timer?.cancel()
            perform(coordinator.receive(.shutdown, now: now))
        }
        // Let the last replies leave and the last records reach the store before the sockets close.
        io.sync(flags: .barrier) {}
        transport.shutdown()
    }

    /// Where a job's model file is in a data directory (`FileRecordStore`'s layout).
    public static func modelPath(dataDirectory: String, jobId: String) -> String {
        FileRecordStore(directory: dataDirectory).path(of: .model(jobId))
    }

    private func deliver(_ event: ServerEvent) {
        let e: CoordinatorEvent
        switch event {
        case let .connected(id, peer): e = .connected(id, peer: peer)
        case let .received(id, envelope): e = .received(id, envelope)
        case let .rejected(id, _, error): e = .rejected(id, reason: "\(error)")
        case let .disconnected(id): e = .disconnected(id)
        }
        perform(timedReceive(e))
    }

    private func perform(_ actions: [CoordinatorAction]) {
        // A step's weights go to every worker that needs them: encode them once per batch of actions.
        var weightsFrames: [WeightsKey: EncodedFrame] = [:]
        for action in actions {
            switch action {
            case let .observe(observation):
                if case let .jobState(jobId, _, state) = observation, state.isFinal { saveJobRecord(jobId) }
                for o in observers { o(observation) }
            case let .send(id, envelope):
                if case let .weights(w) = envelope.message {
                    let key = WeightsKey(jobId: w.jobId, version: w.version, offset: w.tensor.offset, count: w.tensor.count)
                    if weightsFrames[key] == nil { weightsFrames[key] = try? transport.encode(envelope) }
                    if let frame = weightsFrames[key] {
                        transport.send(frame, to: id)
                        continue
                    }
                }
                transport.send(envelope, to: id)
            case let .broadcast(ids, envelope):
                // Encoded once; every connection writes the same bytes (a push range's new weights go to every worker of the step).
                guard let frame = try? transport.encode(envelope) else { continue }
                for id in ids { transport.send(frame, to: id) }
            case let .close(id, after):
                transport.close(id, after: after)
            case let .prepare(jobId, spec):
                io.async { [weak self] in
                    let result: Result<PreparedData, PreparationError>
                    do {
                        let data = try DataLoader.load(spec)
                        result = .success(PreparedData(trainCount: data.train.count, validationCount: data.validation?.count ?? 0,
                                                       testCount: data.test?.count ?? 0, preprocessing: data.preprocessing))
                    } catch {
                        result = .failure(PreparationError("\(error)"))
                    }
                    guard let self else { return }
                    self.queue.async { self.perform(self.coordinator.receive(.prepared(jobId: jobId, result), now: self.now)) }
                }
            case let .saveModel(jobId, model):
                let path = store.location(of: .model(jobId))
                io.async(flags: .barrier) { [logger, store] in
                    do {
                        try store.putModel(model, jobId: jobId)
                        logger.info("model written", metadata: ["job": "\(jobId)", "path": "\(path)"])
                    } catch {
                        logger.error("cannot write model", metadata: ["job": "\(jobId)", "path": "\(path)", "error": "\(error)"])
                    }
                }
            case let .log(level, message, fields):
                logger.log(level, message, fields)
            }
        }
    }

    /// Writes a finished job's result to the store, after its model (the writes are barriers on `io`, in order).
    private func saveJobRecord(_ jobId: String) {
        guard let result = coordinator.jobs[jobId]?.result else {
            return logger.error("no result to record for a finished job", metadata: ["job": "\(jobId)"])
        }
        let path = store.location(of: .jobRecord(jobId))
        io.async(flags: .barrier) { [logger, store] in
            do {
                try store.putJobRecord(result)
                logger.debug("job record written", metadata: ["job": "\(jobId)", "path": "\(path)"])
            } catch {
                logger.error("cannot write job record", metadata: ["job": "\(jobId)", "path": "\(path)", "error": "\(error)"])
            }
        }
    }

    // MARK: Timing for observers

    /// How long the coordinator took over the transport event whose actions are being performed: an
    /// observer of `.stepCompleted` reads it (on the coordinator's queue) as the time to aggregate and
    /// apply that step, which keeps clocks out of the coordinator. Steps complete only on a received
    /// push, so only transport events are timed.
    private(set) var lastEventDuration: Duration = .zero

    private func timedReceive(_ event: CoordinatorEvent) -> [CoordinatorAction] {
        let started = clock.now
        let actions = coordinator.receive(event, now: now)
        lastEventDuration = clock.now - started
        return actions
    }
}

/// Which weights a frame holds: a version, whole or one push range.
private struct WeightsKey: Hashable {
    let jobId: String
    let version: Int
    let offset: Int
    let count: Int
}
