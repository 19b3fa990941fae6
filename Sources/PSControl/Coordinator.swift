import PSCore
import PSMath
import PSShard
import PSTrain
import PSTransport
import PSWire

/// The coordinator as a pure state machine: `receive(event, now:)` returns the actions to perform.
/// It composes the job registry, membership and the step schedule with chunk assignment (`Scheduler`);
/// the parameters and optimizer are the parameter shard's, reached only through `.shard` actions.
/// It holds no tensors, reads no clock and does no I/O: `now` (seconds) comes with each event, so every
/// state × event pair is testable without sockets.
public struct Coordinator {
    public let config: CoordinatorConfig
    let startedAt: Double

    var membership = Membership()
    var registry: JobRegistry
    /// The running job's schedule (nil when none runs). Its values live in the parameter shard.
    var run: Run?
    var shuttingDown = false

    /// `firstJobNumber`: job ids continue from here (after those already in the data directory).
    /// `recovered`: the jobs the journal holds, in id order: ended ones are listed with their results,
    /// the others are queued again (the first tick starts the oldest, from its newest checkpoint).
    public init(config: CoordinatorConfig, now: Double, firstJobNumber: Int = 1, recovered: [RecoveredJob] = []) {
        self.config = config
        startedAt = now
        registry = JobRegistry(firstJobNumber: firstJobNumber)
        for job in recovered { registry.addRecovered(job) }
    }

    // MARK: Events

    public mutating func receive(_ event: CoordinatorEvent, now: Double) -> [CoordinatorAction] {
        var out: [CoordinatorAction] = []
        switch event {
        case let .connected(id, peer):
            membership.connections[id] = Membership.Connection(peer: peer)
        case let .received(id, envelope):
            handle(envelope, from: id, now: now, &out)
        case let .rejected(id, reason):
            out.append(.log(.warning, "rejected frame", ["peer": membership.connections[id]?.peer ?? "?", "problem": reason]))
            out.append(.observe(.frameRejected(reason: reason)))
        case let .disconnected(id):
            if let workerId = membership.connections[id]?.workerId {
                removeWorker(workerId, reason: "disconnected", now: now, &out)
            }
            membership.connections[id] = nil
            registry.dropWaiters(on: id)
        case let .prepared(jobId, result, checkpoint):
            prepared(jobId, result, checkpoint: checkpoint, now: now, &out)
        case let .checkpointWritten(jobId, steps):
            checkpointEnded(jobId, steps: steps, error: nil, now: now)
        case let .checkpointFailed(jobId, steps, message):
            checkpointEnded(jobId, steps: steps, error: message, now: now)
        case let .journalFailed(jobId, message):
            finish(jobId, .failed, message: "the job could not be recorded in the data directory: \(message)", &out)
            startNextJob(now: now, &out)
        case .tick:
            for w in membership.expired(now: now, timeout: config.heartbeatTimeoutSeconds) {
                out.append(.close(w.connection, after: Envelope(requestId: 0, message: .error(ErrorReply(
                    code: .unknownWorker, message: "no heartbeat for \(format(now - w.lastHeartbeat))s; removed from the cluster")))))
                out.append(.observe(.heartbeatMissed(workerId: w.id)))
                removeWorker(w.id, reason: "missed its heartbeat deadline", now: now, &out)
            }
            checkLoadDeadline(now: now, &out)
            // Jobs recovered from the journal start here (nothing else starts the first of them).
            startNextJob(now: now, &out)
            checkStall(now: now, &out)
            issueBackups(now: now, &out)  // Backup chunks (Coordinator+Backups.swift)
            updateStatus(now: now)
        case .shutdown:
            shuttingDown = true
            // A load in progress is abandoned: the job stays queued in the journal and loads again next start.
            for jobId in registry.order where registry.jobs[jobId]!.lifecycle.phase == .preparing {
                out.append(.cancelPrepare(jobId: jobId, reason: "the server is stopping"))
            }
            if let r = run {
                // Not ended: the journal still says it runs, so a restarted server resumes it from its
                // newest checkpoint. Its waiters reconnect (`psctl wait` does) and wait on.
                let at = registry.jobs[r.jobId]!.checkpointSteps.map { "its checkpoint at step \($0)" } ?? "its first step"
                out.append(.log(.info, "server stopping: the job resumes from \(at) when the server restarts on this data directory",
                                ["job": r.jobId]))
                out.append(.observe(.jobSuspended(jobId: r.jobId)))
                if r.finishing == nil { out.append(.shard(.close)) }
                run = nil
            }
            for id in membership.connections.keys.sorted() { out.append(.close(id, after: nil)) }
        case let .shardFinished(jobId, parameters, sha256):
            trained(jobId, parameters: parameters, sha: sha256, now: now, &out)
        case let .shardStepApplied(jobId, step, version, problem):
            stepApplied(jobId, step: step, version: version, problem: problem, now: now, &out)
        }
        return out
    }

    private mutating func handle(_ envelope: Envelope, from id: ConnectionID, now: Double, _ out: inout [CoordinatorAction]) {
        guard let connection = membership.connections[id] else { return }
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
        if hello.role == .worker {
            // A worker says what decides the bits of its gradients; a bitwise job computes only on equal ones.
            switch ComputeSignature.parse(hello.computeSignature) {
            case let .success(signature):
                membership.connections[id]!.signature = signature
            case let .failure(error):
                let problem = hello.computeSignature.isEmpty ? "a worker's hello must carry its compute signature" : error.message
                return reject(request, .badRequest, problem, "compute_signature", true, &out)
            }
        }
        membership.connections[id]!.role = hello.role
        out.append(.send(id, Envelope(requestId: rid, message: .helloOk(HelloOk(serverName: config.serverName)))))
    }

    /// A message only workers send: handled (true), or not one of those (false).
    private mutating func workerMessage(_ message: Message, _ request: Request, now: Double,
                                        _ out: inout [CoordinatorAction]) -> Bool {
        let (id, rid) = (request.connection, request.id)
        let connection = membership.connections[id]!
        switch message {
        case let .registerWorker(r):
            guard connection.role == .worker, connection.workerId == nil else {
                reject(request, .badRequest, "only a worker connection may register, once", "", true, &out)
                return true
            }
            guard let wid = membership.register(r, on: id, now: now) else {
                reject(request, .busy, "the cluster already has \(CoordinatorLimits.workersMax) workers", "", true, &out)
                return true
            }
            out.append(.send(id, Envelope(requestId: rid, message: .registered(Registered(
                workerId: wid, heartbeatIntervalMilliseconds: Int(config.heartbeatIntervalSeconds * 1000),
                heartbeatTimeoutMilliseconds: Int(config.heartbeatTimeoutSeconds * 1000))))))
            out.append(.log(.info, "worker joined", ["worker": "\(wid)", "name": r.name, "peer": connection.peer,
                                                     "compute_signature": "\(membership.workers[wid]!.signature)"]))
            out.append(.observe(.workerJoined(workerId: wid)))
            dispatch(now: now, &out)

        case let .heartbeat(h):
            guard let wid = connection.workerId, h.workerId == wid else {
                reject(request, .unknownWorker, "heartbeat for worker \(h.workerId) on a connection registered as \(connection.workerId.map(String.init) ?? "nothing")", "", true, &out)
                return true
            }
            membership.heartbeat(h, from: wid, now: now)

        case let .pushGradient(p):
            guard let wid = connection.workerId else {
                reject(request, .unknownWorker, "push from a connection that has not registered as a worker", "", true, &out)
                return true
            }
            membership.workers[wid]?.lastHeartbeat = now
            push(p, from: wid, requestId: rid, connection: id, now: now, &out)

        case let .cannotRun(jobId, reason):
            guard let wid = connection.workerId else {
                reject(request, .unknownWorker, "cannotRun from a connection that has not registered as a worker", "", true, &out)
                return true
            }
            workerCannotRun(wid, jobId: jobId, reason: reason, now: now, &out)

        case let .evalResult(e):
            guard let wid = connection.workerId else {
                reject(request, .unknownWorker, "evaluation result from a connection that has not registered as a worker", "", true, &out)
                return true
            }
            membership.workers[wid]?.lastHeartbeat = now
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
            guard jobId.isEmpty || registry.jobs[jobId] != nil else {
                reject(request, .unknownJob, "no job '\(jobId)'", "job_id", false, &out)
                return true
            }
            updateStatus(now: now)
            let list = registry.order.filter { jobId.isEmpty || $0 == jobId }.map { status(of: $0, now: now) }
            out.append(.send(id, Envelope(requestId: rid, message: .statusReply(StatusReply(cluster: clusterStatus(now: now), jobs: list)))))

        case .listJobs:
            updateStatus(now: now)
            out.append(.send(id, Envelope(requestId: rid, message: .jobList(registry.order.map { status(of: $0, now: now) }))))

        case let .cancelJob(jobId):
            guard let job = registry.jobs[jobId] else {
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
            guard let job = registry.jobs[jobId] else {
                reject(request, .unknownJob, "no job '\(jobId)'", "job_id", false, &out)
                return true
            }
            if let result = job.result {
                out.append(.send(id, Envelope(requestId: rid, message: .jobResult(result))))
            } else if job.waiters.count >= CoordinatorLimits.waitersPerJobMax {
                reject(request, .busy, "job \(jobId) already has \(CoordinatorLimits.waitersPerJobMax) waiters", "", false, &out)
            } else {
                registry.jobs[jobId]!.waiters.append((id, rid))
            }

        case let .fetchModel(jobId):
            guard let job = registry.jobs[jobId] else {
                reject(request, .unknownJob, "no job '\(jobId)'", "job_id", false, &out)
                return true
            }
            if let model = job.model {
                out.append(.send(id, Envelope(requestId: rid, message: .modelData(model))))
            } else if [.completed, .stoppedEarly].contains(job.state) {
                // Written when the job ended; no longer (or, after a restart, not yet) in memory.
                out.append(.sendStoredModel(jobId: jobId, connection: id, requestId: rid))
            } else {
                reject(request, .badRequest, "job \(jobId) has no model (\(job.state.rawValue))", "job_id", false, &out)
            }
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
    func reject(_ request: Request, _ code: ErrorCode, _ message: String, _ field: String, _ close: Bool,
                        _ out: inout [CoordinatorAction]) {
        out += rejection(request.connection, request.id, code, message, field: field, close: close)
    }

    /// An error reply (and a log line naming the peer); with `close`, the connection is closed after it.
    func rejection(_ id: ConnectionID, _ rid: UInt64, _ code: ErrorCode, _ message: String, field: String = "",
                   close: Bool) -> [CoordinatorAction] {
        let reply = Envelope(requestId: rid, message: .error(ErrorReply(code: code, message: message, field: field)))
        var fields = ["peer": membership.connections[id]?.peer ?? "?", "code": "\(code)"]
        if let wid = membership.connections[id]?.workerId { fields["worker"] = "\(wid)" }
        if !field.isEmpty { fields["field"] = field }
        return [.log(.warning, message, fields), close ? .close(id, after: reply) : .send(id, reply)]
    }

    /// Whether `id` is a worker's connection: the runtime sends to those in order with the shard's sends.
    public func isWorkerConnection(_ id: ConnectionID) -> Bool { membership.isWorker(id) }

    /// An ended job's result (nil while it runs, or for an unknown job): what the runtime records.
    public func result(of jobId: String) -> JobResult? { registry.jobs[jobId]?.result }
}

func format(_ x: Double) -> String {
    String(format: "%.4g", x)
}

import Foundation
