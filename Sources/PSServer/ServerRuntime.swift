import Dispatch
import Foundation
import PSCore
import Logging
import PSControl
import PSData
import PSLifecycle
import PSShard
import PSTrain
import PSStorage
import PSTransport
import PSWire

/// Drives the coordinator: transport events and timer ticks go onto one serial queue, where the
/// state machine runs; its actions are performed there too (sends are thread-safe and cheap to
/// start). Models and job records are written (through `store`) on a utility queue, never on an event
/// loop. A job's data is loaded on `loads`, a small pool of its own that nothing waits on: a load stuck
/// in a read delays no other job, no write and no stop.
public final class ServerRuntime: @unchecked Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var dataDirectory: String
        public var heartbeatIntervalSeconds: Double
        public var heartbeatTimeoutSeconds: Double
        public var shardCount: Int
        public var updateThreads: Int
        /// The cluster's shared secret: with it, every peer must prove it holds the same token.
        public var authToken: AuthToken?
        /// TLS on every connection (nil: plaintext).
        public var tls: ServerTLS?
        /// A job whose data has not loaded after this long fails (`--load-timeout`).
        public var loadTimeoutSeconds: Double
        /// A job that has not moved for this long with workers connected is reported stalled (`--stall-seconds`).
        public var stallSeconds: Double

        public init(host: String = "127.0.0.1", port: Int = 7070, dataDirectory: String,
                    heartbeatIntervalSeconds: Double = 1, heartbeatTimeoutSeconds: Double = 10, shardCount: Int = 1,
                    updateThreads: Int = 1, authToken: AuthToken? = nil, tls: ServerTLS? = nil,
                    loadTimeoutSeconds: Double = CoordinatorLimits.loadSecondsDefault,
                    stallSeconds: Double = CoordinatorLimits.stallSecondsDefault) {
            self.loadTimeoutSeconds = loadTimeoutSeconds
            self.stallSeconds = stallSeconds
            self.authToken = authToken
            self.host = host
            self.port = port
            self.dataDirectory = dataDirectory
            self.heartbeatIntervalSeconds = heartbeatIntervalSeconds
            self.heartbeatTimeoutSeconds = heartbeatTimeoutSeconds
            self.shardCount = shardCount
            self.updateThreads = updateThreads
            self.tls = tls
        }
    }

    let options: Options
    let logger: Logger
    /// Where models and job records go: the data directory unless a test gives another store.
    public let store: any RecordStore
    let queue = DispatchQueue(label: "ps-server.coordinator")
    /// The parameter shard's queue: tree sums and optimizer updates run here, never on the queue that
    /// answers clients. Sends to workers go through it too, in the coordinator's order, so a worker's
    /// weights leave before its assignment.
    let shardQueue = DispatchQueue(label: "ps-server.shard")
    var shard: ParameterShard!
    let io = DispatchQueue(label: "ps-server.io", attributes: .concurrent)
    /// Job data loads: bounded, cancellable, each with the load deadline; never waited for.
    let loads: LoadPool
    /// Checkpoints are encoded and written here, one at a time, off the coordinator's and shard's queues.
    let checkpointQueue = DispatchQueue(label: "ps-server.checkpoint")
    /// The journal entry of every job, as last written (used on the coordinator's queue only).
    var journals: [String: JobJournalEntry] = [:]
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

    /// The data directory's lock while this server runs (file stores only).
    private var dataDirectoryLock: DataDirectoryLock?

    /// Ready from the end of `start()` (listening, coordinator running) until `stop()` begins: what
    /// `/readyz` and systemd are told.
    public let status = ServiceStatus()

    /// `store`: where models and job records are kept; by default `FileRecordStore` on `options.dataDirectory`.
    public init(options: Options, logger: Logger, store: (any RecordStore)? = nil) {
        self.options = options
        self.logger = logger
        self.store = store ?? FileRecordStore(directory: options.dataDirectory)
        loads = LoadPool(deadlineSeconds: options.loadTimeoutSeconds)
    }

    /// "HOST:PORT" the server listens on (with the real port when 0 was asked).
    public var address: String { transport.localAddress }

    var now: Double { Self.seconds(clock.now - epoch) }

    /// Binds, starts the coordinator and the tick timer. Returns once listening.
    public func start() throws {
        // One server per data directory, held until this server stops or the process ends.
        if let files = store as? FileRecordStore {
            dataDirectoryLock = try DataDirectoryLock(directory: files.directory, program: "ps-server")
        }
        try store.open()
        let firstJobNumber = try store.nextJobNumber()
        let recovered = recoverJobs()
        // Connections may arrive as soon as the listener is up, but the coordinator needs the bound
        // address: the queue stays suspended, holding their events, until the coordinator exists.
        queue.suspend()
        defer { queue.resume() }
        transport = try TransportServer.start(host: options.host, port: options.port, tls: options.tls,
                                              authToken: options.authToken, logger: logger) { [weak self] event in
            guard let self else { return }
            self.queue.async { self.deliver(event) }
        }
        let config = CoordinatorConfig(serverName: "ps-server@\(transport.localAddress)", address: transport.localAddress,
                                       heartbeatIntervalSeconds: options.heartbeatIntervalSeconds,
                                       heartbeatTimeoutSeconds: options.heartbeatTimeoutSeconds,
                                       shardCount: options.shardCount, updateThreads: options.updateThreads,
                                       computeSignature: ComputeEnvironment.signature.description,
                                       loadTimeoutSeconds: options.loadTimeoutSeconds, stallSeconds: options.stallSeconds)
        // Safe without the queue: it is suspended, so nothing else touches the coordinator yet.
        coordinator = Coordinator(config: config, now: now, firstJobNumber: firstJobNumber, recovered: recovered)
        shard = ParameterShard(keyRanges: options.shardCount, updateThreads: options.updateThreads)
        let t = DispatchSource.makeTimerSource(queue: queue)
        t.schedule(deadline: .now() + 0.25, repeating: 0.25)
        t.setEventHandler { [weak self] in
            guard let self else { return }
            self.perform(self.coordinator.receive(.tick, now: self.now))
        }
        t.resume()
        timer = t
        logger.info("listening", metadata: ["address": "\(transport.localAddress)", "data_dir": "\(options.dataDirectory)",
                                            "tls": "\(options.tls.map { $0.requiresClientCertificate ? "mutual" : "on" } ?? "off")"])
        status.enter(.ready)
    }

    /// Stops in order: no new connections; the coordinator leaves a running job unfinished (it resumes at
    /// the next start on this data directory) and closes every connection (its waiters reconnect;
    /// observers flush its event files); a checkpoint being written and the last models and job records
    /// are written; then the transport shuts down. A data load is told to stop and not waited for (the
    /// job loads again at the next start). Blocks until done; a second call does nothing new.
    public func stop() {
        status.enter(.stopping)
        transport.stopAccepting()
        queue.sync {
            timer?.cancel()
            perform(coordinator.receive(.shutdown, now: now))
        }
        loads.abandonAll(reason: "the server is stopping")
        // Let the last replies leave and the last records (and a checkpoint being written) reach the
        // store before the sockets close.
        shardQueue.sync {}
        checkpointQueue.sync {}
        io.sync(flags: .barrier) {}
        transport.shutdown()
        dataDirectoryLock?.release()
    }

    /// Returns once the coordinator's queue has run everything queued before this call: a queue that
    /// is stuck never returns, which is what systemd's watchdog is there to notice.
    public func coordinatorTurn() async {
        await withCheckedContinuation { (turned: CheckedContinuation<Void, Never>) in queue.async { turned.resume() } }
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
        case let .tlsRejected(_, _, failure):
            // The transport logged it; the coordinator never heard from this peer (its connect and
            // disconnect events come as for any connection).
            for o in observers { o(.tlsHandshakeFailed(failure)) }
            return
        case let .disconnected(id): e = .disconnected(id)
        case let .unauthenticated(_, _, failure, _):
            // The transport logged it (with the peer) and is closing the connection; the coordinator
            // never saw anything from it but its connection, whose close follows.
            for o in observers { o(.authenticationFailed(reason: failure.rawValue)) }
            return
        }
        perform(timedReceive(e))
    }

    /// Carries out the coordinator's actions. Shard commands and everything bound for a worker go to
    /// the shard's queue as one batch, in order; replies to clients, logs and observations go now.
    private func perform(_ actions: [CoordinatorAction]) {
        var ordered: [CoordinatorAction] = []
        var direct = Outbox(transport: transport)
        var completedStep: String?
        for action in actions {
            switch action {
            case let .observe(observation):
                if case let .stepCompleted(jobId, _, _, _, _, _, _) = observation { completedStep = jobId }
                if case let .jobState(jobId, _, state) = observation {
                    if state.isFinal { saveJobRecord(jobId) }
                    // A submission is journaled by `.recordSubmission`, before its reply.
                    if state != .submitted { journal(jobId, state) }
                }
                for o in observers { o(observation) }
            case .shard:
                ordered.append(action)
            case let .send(id, envelope):
                if coordinator.isWorkerConnection(id) { ordered.append(action) } else { direct.send(envelope, to: id) }
            case let .broadcast(ids, envelope):
                if ids.contains(where: coordinator.isWorkerConnection) { ordered.append(action) } else { direct.broadcast(envelope, to: ids) }
            case let .close(id, after):
                if coordinator.isWorkerConnection(id) { ordered.append(action) } else { transport.close(id, after: after) }
            case let .prepare(jobId, spec):
                prepare(jobId, spec)
            case let .cancelPrepare(jobId, reason):
                loads.abandon(jobId, reason: reason)
            case let .wake(at):
                // A one-shot tick between the regular ones (a backup chunk falls due; see Coordinator+Backups).
                queue.asyncAfter(deadline: .now() + max(0, at - now)) { [weak self] in
                    guard let self else { return }
                    self.perform(self.coordinator.receive(.tick, now: self.now))
                }
            case let .recordSubmission(jobId, spec, connection, requestId):
                recordSubmission(jobId, spec, connection, requestId)
            case let .sendStoredModel(jobId, connection, requestId):
                let path = store.location(of: .model(jobId))
                io.async { [transport, store] in
                    let reply: Message
                    do {
                        if let model = try store.model(jobId: jobId) {
                            reply = .modelData(model)
                        } else {
                            reply = .error(ErrorReply(code: .internal, message: "job \(jobId)'s model is not in the data directory (\(path))", field: "job_id"))
                        }
                    } catch {
                        reply = .error(ErrorReply(code: .internal, message: "cannot read job \(jobId)'s model: \(error)", field: "job_id"))
                    }
                    transport!.send(Envelope(requestId: requestId, message: reply), to: connection)
                }
            case let .saveModel(jobId, model):
                let path = store.location(of: .model(jobId))
                // On disk before the job's end is recorded or anyone is told (the actions after this one).
                io.sync(flags: .barrier) { [logger, store, clock] in
                    do {
                        let started = clock.now
                        try store.putModel(model, jobId: jobId)
                        // On the coordinator's queue (the job's end waits for it): its time is what status waits.
                        logger.info("model written", metadata: ["job": "\(jobId)", "path": "\(path)",
                                                                "seconds": "\(String(format: "%.3f", Self.seconds(clock.now - started)))"])
                    } catch {
                        logger.error("cannot write model", metadata: ["job": "\(jobId)", "path": "\(path)", "error": "\(error)"])
                    }
                }
            case let .log(level, message, fields):
                logger.log(level, message, fields)
            }
        }
        guard !ordered.isEmpty || completedStep != nil else { return }
        let coordinatorTime = lastEventDuration
        let batch = ordered
        let stepJob = completedStep
        shardQueue.async {
            let started = self.clock.now
            self.performOrdered(batch)
            if let jobId = stepJob {
                let seconds = Self.seconds(coordinatorTime + (self.clock.now - started))
                for o in self.observers { o(.stepApplied(jobId: jobId, seconds: seconds)) }
            }
        }
    }

    /// Reads and checks a job's data (`DataLoader.shape`) on the load pool, then finds its newest
    /// checkpoint, and delivers `.prepared`.
    /// Only regular files are read (checked again here: a file may have been replaced since the submit).
    private func prepare(_ jobId: String, _ spec: JobSpec) {
        let refusal = loads.submit(jobId: jobId) { [weak self] cancellation in
            let result: Result<PreparedData, PreparationError>
            var found: Checkpoint?
            do {
                if let refusal = try! DataRoots([]).refusal(spec) { throw PreparationError(refusal) }  // no roots: any folder
                LoadTestHook.hangIfAsked(jobId: jobId, spec: spec, logger: self?.logger)
                // Counts and the transform only, with every check of a load: the workers compute on the samples.
                let data = try DataLoader.shape(spec, cancellation: cancellation)
                result = .success(data)
                if cancellation.stopReason == nil {
                    let steps = ChunkPlan.stepsPerEpoch(count: data.trainCount, batchSize: spec.training.batchSize)
                    found = self?.newestCheckpoint(of: jobId, spec: spec, stepsPerEpoch: steps)
                }
            } catch let error as PreparationError {
                result = .failure(error)
            } catch {
                result = .failure(PreparationError("\(error)"))
            }
            guard let self else { return }
            let checkpoint = found
            self.queue.async {
                self.perform(self.coordinator.receive(.prepared(jobId: jobId, result, checkpoint: checkpoint), now: self.now))
            }
        }
        if let refusal {
            queue.async {
                self.perform(self.coordinator.receive(.prepared(jobId: jobId, .failure(PreparationError(refusal))), now: self.now))
            }
        }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// On the shard's queue: the shard's commands and the sends around them, in order.
    private func performOrdered(_ actions: [CoordinatorAction]) {
        var out = Outbox(transport: transport)
        for action in actions {
            switch action {
            case let .shard(command):
                for answer in shard.receive(command) {
                    switch answer {
                    case let .send(id, envelope): out.send(envelope, to: id)
                    case let .broadcast(ids, envelope): out.broadcast(envelope, to: ids)
                    case let .checkpoint(checkpoint, keep):
                        writeCheckpoint(checkpoint, keep: keep)
                    case let .finished(jobId, parameters, sha256):
                        queue.async {
                            self.perform(self.coordinator.receive(.shardFinished(jobId: jobId, parameters: parameters, sha256: sha256), now: self.now))
                        }
                    case let .stepApplied(jobId, step, version, problem):
                        queue.async {
                            self.perform(self.coordinator.receive(.shardStepApplied(jobId: jobId, step: step, version: version, problem: problem), now: self.now))
                        }
                    case let .log(level, message, fields):
                        logger.log(level, message, fields)
                    }
                }
            case let .send(id, envelope): out.send(envelope, to: id)
            case let .broadcast(ids, envelope): out.broadcast(envelope, to: ids)
            case let .close(id, after): transport.close(id, after: after)
            default: preconditionFailure("only shard commands and sends are ordered")
            }
        }
    }

    /// Writes a finished job's result to the store, after its model (the writes are barriers on `io`, in order).
    /// Synchronously (after the writes queued before it): the job's end is on disk before its waiters,
    /// or the client that cancelled it, are answered (the actions after this one), so nothing a client
    /// was told is lost to a crash. The job's checkpoints are deleted afterwards: it will not resume.
    private func saveJobRecord(_ jobId: String) {
        guard let result = coordinator.result(of: jobId) else {
            return logger.error("no result to record for a finished job", metadata: ["job": "\(jobId)"])
        }
        let path = store.location(of: .jobRecord(jobId))
        // A job that failed on a non-finite step keeps its checkpoints: they hold its last good weights.
        let keepCheckpoints = coordinator.keepsCheckpoints(of: jobId)
        defer {
            if !keepCheckpoints { checkpointQueue.async { [logger, store] in
                do {
                    try store.pruneCheckpoints(of: jobId, keep: 0)
                } catch {
                    logger.warning("cannot remove an ended job's checkpoints", metadata: ["job": "\(jobId)", "error": "\(error)"])
                }
            } }
        }
        io.sync(flags: .barrier) { [logger, store] in
            do {
                try store.putJobRecord(result)
                logger.debug("job record written", metadata: ["job": "\(jobId)", "path": "\(path)"])
            } catch {
                logger.error("cannot write job record", metadata: ["job": "\(jobId)", "path": "\(path)", "error": "\(error)"])
            }
        }
    }

    // MARK: Journal and checkpoints

    /// Reads the job journal back: every job with a readable entry, in job-number order, ended ones with
    /// their results. A job whose model was written but whose end was not recorded (the server died in
    /// between) ended: its result is rebuilt from the model file and recorded now, so it is not run again.
    func recoverJobs() -> [RecoveredJob] {
        let ids: [String]
        do {
            ids = try store.list(.journal).sorted { (Int($0.dropFirst(4)) ?? 0, $0) < (Int($1.dropFirst(4)) ?? 0, $1) }
        } catch {
            logger.error("cannot list the job journal; no earlier job is listed", metadata: ["error": "\(error)"])
            return []
        }
        var jobs: [RecoveredJob] = []
        for id in ids {
            let entry: JobJournalEntry
            do {
                guard let read = try store.journal(jobId: id) else { continue }
                entry = read
            } catch {
                logger.error("cannot read a job's journal entry; the job is not listed", metadata: ["job": "\(id)", "error": "\(error)"])
                continue
            }
            journals[id] = entry
            var result: JobResult?
            do {
                result = try store.jobRecord(jobId: id)
            } catch {
                logger.error("cannot read a job's result", metadata: ["job": "\(id)", "error": "\(error)"])
            }
            if result == nil, let model = try? store.model(jobId: id) {
                let state: JobState = model.summary.stoppedEarly ? .stoppedEarly : .completed
                let ended = JobResult(jobId: id, state: state, summary: model.summary,
                                      weightsSHA256: weightsSHA256(model.parameters), message: "")
                do {
                    try store.putJobRecord(ended)
                    var e = entry
                    e.changes.append(JobJournalEntry.Change(state: state, at: Date().timeIntervalSince1970))
                    try store.putJournal(e)
                    journals[id] = e
                } catch {
                    logger.error("cannot record a job's result", metadata: ["job": "\(id)", "error": "\(error)"])
                }
                logger.info("job had ended before the restart (its model is written); its result is recorded now", metadata: ["job": "\(id)"])
                result = ended
            }
            if result == nil, entry.state.isFinal {
                result = JobResult(jobId: id, state: entry.state, summary: nil, weightsSHA256: "", message: entry.changes.last?.message ?? "")
            }
            jobs.append(RecoveredJob(id: id, spec: entry.spec, result: result))
        }
        // Job folders without a readable journal entry (a damaged or foreign job.json, or one written before
        // the journal existed) are not listed; say so, once each.
        for id in ((try? store.jobIds()) ?? []) where journals[id] == nil {
            logger.warning("a job folder has no readable journal entry; the job is not listed",
                           metadata: ["job": "\(id)", "path": "\(store.location(of: .journal(id)))"])
        }
        let unfinished = jobs.filter { $0.result == nil }.map(\.id)
        if !jobs.isEmpty {
            logger.info("job journal read", metadata: ["jobs": "\(jobs.count)", "ended": "\(jobs.count - unfinished.count)",
                                                       "to_resume": "\(unfinished.joined(separator: ","))"])
        }
        return jobs
    }

    /// Journals a submitted job, then answers its client: `submitted`, or an error when the entry cannot
    /// be written (and the job fails without running: nothing is acknowledged that a crash could lose).
    private func recordSubmission(_ jobId: String, _ spec: JobSpec, _ connection: ConnectionID, _ requestId: UInt64) {
        let entry = JobJournalEntry(jobId: jobId, spec: spec, changes: [.init(state: .submitted, at: Date().timeIntervalSince1970)])
        do {
            try store.putJournal(entry)
            journals[jobId] = entry
            transport.send(Envelope(requestId: requestId, message: .submitted(jobId: jobId)), to: connection)
        } catch {
            logger.error("cannot record a submitted job; it is refused", metadata: ["job": "\(jobId)", "error": "\(error)"])
            transport.send(Envelope(requestId: requestId, message: .error(ErrorReply(
                code: .internal, message: "the job could not be recorded in the server's data directory: \(error)"))), to: connection)
            queue.async { self.perform(self.coordinator.receive(.journalFailed(jobId: jobId, message: "\(error)"), now: self.now)) }
        }
    }

    /// Appends a state change to a job's journal entry (written after the records queued before it).
    private func journal(_ jobId: String, _ state: JobState) {
        guard var entry = journals[jobId] else { return }
        entry.changes.append(.init(state: state, at: Date().timeIntervalSince1970, message: coordinator.result(of: jobId)?.message ?? ""))
        journals[jobId] = entry
        let write: @Sendable () -> Void = { [logger, store, entry] in
            do {
                try store.putJournal(entry)
            } catch {
                logger.error("cannot record a job's state in the journal", metadata: ["job": "\(jobId)", "state": "\(state.rawValue)", "error": "\(error)"])
            }
        }
        // A job's end is on disk before anyone is told of it; other changes need not wait.
        if state.isFinal { io.sync(flags: .barrier, execute: write) } else { io.async(flags: .barrier, execute: write) }
    }

    /// The newest checkpoint of `jobId` that decodes, passes its checksum and fits the job; each one
    /// passed over is logged with its file and why. nil: the job starts at its first step.
    func newestCheckpoint(of jobId: String, spec: JobSpec, stepsPerEpoch: Int) -> Checkpoint? {
        let keys: [RecordKey]
        do {
            try store.discardUnfinished(.checkpoint, of: jobId)
            keys = try store.checkpointKeys(of: jobId)
        } catch {
            logger.error("cannot list the job's checkpoints; it starts at its first step", metadata: ["job": "\(jobId)", "error": "\(error)"])
            return nil
        }
        let specSHA = Digest.sha256(spec.wireBytes())
        for (i, key) in keys.enumerated() {
            let path = store.location(of: key)
            let problem: String
            var damaged = true
            do {
                guard let bytes = try store.get(key) else { continue }
                let checkpoint = try Checkpoint(fileBytes: bytes)
                if let p = checkpoint.problem(jobId: jobId, spec: spec, specSHA256: specSHA, stepsPerEpoch: stepsPerEpoch,
                                              parameterCount: spec.network.parameterCount,
                                              optimizerSlots: spec.optimizer.config.rule.slotNames.count) {
                    problem = p
                } else if key != .checkpoint(jobId, steps: checkpoint.optimizerSteps) {
                    problem = "its name says another step than the \(checkpoint.optimizerSteps) it holds"
                } else {
                    logger.info("checkpoint read", metadata: ["job": "\(jobId)", "path": "\(path)", "step": "\(checkpoint.optimizerSteps)"])
                    return checkpoint
                }
            } catch let error as StoreError {
                problem = "\(error)"
                damaged = error.isDamage
            } catch {
                problem = "\(error)"
            }
            let next = i + 1 < keys.count ? "trying the previous one" : "the job starts at its first step"
            // A damaged one is set aside, so that it is not taken for the newest again (the steps redone
            // now write new checkpoints below it) and pruning never drops a good checkpoint to keep it. One
            // that could not be read (permissions, I/O) stays: it may be readable next time.
            let aside = damaged ? ((try? store.setAside(key)) ?? "(could not be renamed)") : "(kept: not damaged)"
            logger.warning("checkpoint not usable; \(next)", metadata: ["job": "\(jobId)", "path": "\(path)", "problem": "\(problem)",
                                                                      "renamed_to": "\(aside)"])
        }
        return nil
    }

    /// On the shard's queue: hands a snapshot to the checkpoint queue, which encodes and writes it
    /// (atomically), keeps the newest `keep`, and tells the coordinator and the observers.
    private func writeCheckpoint(_ checkpoint: Checkpoint, keep: Int) {
        checkpointQueue.async { [self] in
            let jobId = checkpoint.jobId
            let steps = checkpoint.optimizerSteps
            let path = store.location(of: .checkpoint(jobId, steps: steps))
            let started = clock.now
            let event: CoordinatorEvent
            let observation: Observation
            do {
                let bytes = try store.putCheckpoint(checkpoint, steps: steps)
                let seconds = Self.seconds(clock.now - started)
                logger.info("checkpoint written", metadata: ["job": "\(jobId)", "step": "\(steps)", "path": "\(path)",
                                                             "bytes": "\(bytes)", "seconds": "\(String(format: "%.3f", seconds))"])
                do {
                    try store.pruneCheckpoints(of: jobId, keep: keep)
                } catch {
                    logger.warning("cannot remove an old checkpoint", metadata: ["job": "\(jobId)", "error": "\(error)"])
                }
                event = .checkpointWritten(jobId: jobId, steps: steps)
                observation = .checkpointWritten(jobId: jobId, step: steps, bytes: bytes, seconds: seconds)
            } catch {
                logger.error("cannot write checkpoint; training goes on and the previous checkpoint is kept",
                             metadata: ["job": "\(jobId)", "step": "\(steps)", "error": "\(error)"])
                event = .checkpointFailed(jobId: jobId, steps: steps, message: "\(error)")
                observation = .checkpointFailed(jobId: jobId, reason: "\(error)")
            }
            queue.async {
                for o in self.observers { o(observation) }
                self.perform(self.coordinator.receive(event, now: self.now))
            }
        }
    }

    // MARK: Timing for observers

    /// How long the coordinator took over the transport event whose actions are being performed. A
    /// step's `.stepApplied` time is this plus the shard queue's time over that event's batch (the
    /// coordinator reads no clock). Steps complete only on a received push, so only transport events
    /// are timed.
    private(set) var lastEventDuration: Duration = .zero

    private func timedReceive(_ event: CoordinatorEvent) -> [CoordinatorAction] {
        let started = clock.now
        let actions = coordinator.receive(event, now: now)
        lastEventDuration = clock.now - started
        return actions
    }
}

/// Which weights a frame holds: a version, whole or one push range.
/// Sends one batch of actions. A step's weights go to every worker that needs them: each range of a
/// version is encoded once per batch, and a broadcast once for all its connections.
private struct Outbox {
    let transport: TransportServer
    var weightsFrames: [WeightsKey: EncodedFrame] = [:]

    init(transport: TransportServer) { self.transport = transport }

    mutating func send(_ envelope: Envelope, to id: ConnectionID) {
        if case let .weights(w) = envelope.message {
            let key = WeightsKey(jobId: w.jobId, version: w.version, offset: w.tensor.offset, count: w.tensor.count)
            if weightsFrames[key] == nil { weightsFrames[key] = try? transport.encode(envelope) }
            if let frame = weightsFrames[key] {
                transport.send(frame, to: id)
                return
            }
        }
        transport.send(envelope, to: id)
    }

    func broadcast(_ envelope: Envelope, to ids: [ConnectionID]) {
        guard let frame = try? transport.encode(envelope) else { return }
        for id in ids { transport.send(frame, to: id) }
    }
}

private struct WeightsKey: Hashable {
    let jobId: String
    let version: Int
    let offset: Int
    let count: Int
}
