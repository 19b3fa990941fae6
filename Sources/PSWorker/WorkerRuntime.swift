import Dispatch
import Foundation
import Logging
import PSCore
import PSData
import PSLifecycle
import PSMath
import PSMetrics
import PSTrain
import PSTransport
import PSWire

/// A worker process's service: connects (retrying with backoff), and runs `WorkerStateMachine`'s
/// decisions. Two serial queues: `control` feeds the machine its events and performs its actions
/// (sends, reconnects, the heartbeat timer, logs, metrics); `compute` runs `WorkerCompute` (data
/// loading and every BLAS call), so no event-loop thread ever computes.
public final class WorkerRuntime: @unchecked Sendable {
    public struct Options: Sendable {
        public var serverAddress: String
        public var name: String
        public var threads: Int
        /// The cluster's shared secret: the worker and the server prove to each other they hold it.
        public var authToken: AuthToken?
        /// The only folders job data may come from (`--data-root`); always: regular files only.
        public var dataRoots: DataRoots
        /// TLS to the server (nil: plaintext).
        public var tls: ClientTLS?

        public init(serverAddress: String, name: String, threads: Int = 1, authToken: AuthToken? = nil,
                    dataRoots: DataRoots = try! DataRoots([]), tls: ClientTLS? = nil) {
            self.serverAddress = serverAddress
            self.name = name
            self.threads = threads
            self.authToken = authToken
            self.dataRoots = dataRoots
            self.tls = tls
        }
    }

    /// How long loading a job's data may take on a worker: as the server's default `--load-timeout` (the
    /// largest allowed data set loads in well under a minute; ten means the files are stuck, not big).
    public static let loadSecondsMax = 600.0

    let options: Options
    let logger: Logger
    /// Owns `machine`, the connection calls and the heartbeat timer.
    let control = DispatchQueue(label: "ps-worker.control")
    /// Runs data loading and every BLAS call (`computer`), so no event-loop thread ever computes.
    let compute = DispatchQueue(label: "ps-worker.compute")
    private var machine: WorkerStateMachine
    private let computer: WorkerCompute
    var connection: ReconnectingConnection!
    var heartbeat: DispatchSourceTimer?
    /// Where the worker's series go; nil when the process serves no metrics.
    let metrics: WorkerMetrics?
    /// Ready while registered with the server; not ready while (re)connecting: what `/readyz` and
    /// systemd are told.
    public let status = ServiceStatus()
    private let startedAt = ContinuousClock.now

    public init(options: Options, logger: Logger, metrics: WorkerMetrics? = nil) {
        self.options = options
        self.logger = logger
        self.metrics = metrics
        machine = WorkerStateMachine(name: options.name, threads: options.threads)
        // Checked before a byte of the data is read: a path outside the roots is never opened.
        computer = WorkerCompute(loadData: { [roots = options.dataRoots] spec in
            if let refusal = roots.refusal(spec) { throw DataRootsError(refusal) }
            // A load too slow to finish fails (and is reported, as any load failure) instead of holding the
            // worker's chunks; one stuck in a read shows as this worker's in the job's stall reason.
            return try DataLoader.load(spec, cancellation: LoadCancellation(seconds: WorkerRuntime.loadSecondsMax))
        })
    }

    public func start() {
        status.enter(.unavailable(reason: "connecting to \(options.serverAddress)"))
        BLAS.setThreads(options.threads)
        connection = ReconnectingConnection(address: options.serverAddress,
                                            hello: Hello(role: .worker, name: options.name,
                                                         computeSignature: ComputeEnvironment.signature.description),
                                            authToken: options.authToken, tls: options.tls, logger: logger) { [weak self] event in
            guard let self else { return }
            self.control.async {
                switch event {
                case let .connected(hello): self.feed(.connected(serverName: hello.serverName))
                case let .disconnected(reason): self.feed(.disconnected(reason: "\(reason)"))
                case let .received(envelope): self.feed(.received(envelope.message))
                }
            }
        }
        connection.start()
    }

    /// Stops the heartbeat and closes the connection (no reconnecting after it). Blocks until closed.
    public func stop() {
        status.enter(.stopping)
        control.sync {
            heartbeat?.cancel()
            heartbeat = nil
        }
        connection.stop()
    }

    /// Returns once the control queue has run everything queued before this call: a queue that is
    /// stuck never returns, which is what systemd's watchdog is there to notice.
    public func controlTurn() async {
        await withCheckedContinuation { (turned: CheckedContinuation<Void, Never>) in control.async { turned.resume() } }
    }

    /// Seconds since start, the machine's clock.
    private var now: Double {
        let d = ContinuousClock.now - startedAt
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    // MARK: Control queue

    /// Feeds one event to the machine and performs its actions (control queue only).
    private func feed(_ event: WorkerStateMachine.Event) {
        for action in machine.receive(event, now: now) { perform(action) }
    }

    private func perform(_ action: WorkerStateMachine.Action) {
        switch action {
        case let .send(message):
            // Encoded straight into its network buffer here (one copy of a gradient).
            connection.send(message)
        case .reconnect:
            connection.reconnect()
        case let .load(jobId, spec):
            compute.async { [self] in
                let result = computer.load(jobId: jobId, spec: spec)
                control.async { self.feed(.loaded(jobId: jobId, result)) }
            }
        case let .compute(order):
            compute.async { [self] in
                let report = computer.run(order, beforeReusingBuffers: { control.sync {} }) { push in
                    control.async { self.feed(.pushReady(generation: order.generation, push)) }
                }
                control.async { self.feed(.computed(generation: order.generation, report)) }
            }
        case let .startHeartbeat(seconds):
            heartbeat?.cancel()
            let t = DispatchSource.makeTimerSource(queue: control)
            t.schedule(deadline: .now() + seconds, repeating: seconds)
            t.setEventHandler { [weak self] in self?.feed(.heartbeatDue) }
            t.resume()
            heartbeat = t
        case .stopHeartbeat:
            heartbeat?.cancel()
            heartbeat = nil
        case let .log(level, message, fields):
            logger.log(level, message, fields)
        case let .observe(.registered(registered)):
            status.enter(registered ? .ready : .unavailable(reason: "reconnecting to \(options.serverAddress)"))
        case let .observe(observation):
            guard let metrics else { return }
            switch observation {
            case .registered: break
            case let .connected(up): metrics.setConnected(up)
            case let .weightsReceived(bytes): metrics.weightsReceived(bytes: bytes)
            case let .computed(kind, seconds): metrics.computed(WorkerMetrics.Kind(kind), duration: .seconds(seconds))
            case let .pushed(samples, bytes): metrics.pushed(samples: samples, bytes: bytes)
            case let .pushAcknowledged(seconds): metrics.pushAcknowledged(after: .seconds(seconds))
            }
        }
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

