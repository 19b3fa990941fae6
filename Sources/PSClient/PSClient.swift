import Foundation
import PSCore
import PSTransport
import PSWire

/// The control-plane client of a ps-server: what `psctl` and the tests ask a coordinator. One
/// connection (a `BlockingClient` with role `client`); each method sends one request, waits for its
/// answer and returns it typed. Every failure is a `PSClientError` naming the server, the request and
/// what went wrong: a refusal by the server (its `ErrorReply`), a transport problem (unreachable,
/// timeout, closed) or a reply of the wrong kind.
///
/// One request at a time; calls block only the caller's thread (never call it on an event loop).
public final class PSClient {
    /// The server's address, HOST:PORT, as given.
    public let server: String
    /// The name this client says hello with, how long a connect may take, its token and its TLS: kept to
    /// reconnect.
    private let name: String
    private let connectTimeoutSeconds: Double
    private let tls: ClientTLS?
    private let authToken: AuthToken?
    /// Replaced only by `wait(for:reconnectSeconds:onEvent:)`, when it reconnects.
    private var connection: BlockingClient

    /// How long `wait(for:)` waits by default: training can take days, and the server answers when the job ends.
    public static let waitTimeoutSeconds: Double = 30 * 24 * 3600
    /// How long `fetchModel` waits by default: a model of up to a frame (64 MiB) has to cross the network.
    public static let fetchModelTimeoutSeconds: Double = 60
    /// How long every other request waits by default.
    public static let requestTimeoutSeconds: Double = 10
    /// How long a wait goes on reconnecting to a server that went away, by default: a restart (a new
    /// process reading its journal) takes seconds and a host's reboot minutes; a server gone for longer
    /// needs a person, who should hear of it.
    public static let reconnectSecondsDefault: Double = 600
    /// Reconnection attempts: from 0.2 s, doubling to at most 5 s apart (jittered, so the waiters of a
    /// restarted server do not all knock at once).
    public static let reconnectBackoff = Backoff(initialSeconds: 0.2, maxSeconds: 5)

    /// Connects to `server` (HOST:PORT), over TLS with `tls`, and says hello as a client called `name`; with
    /// `authToken`, the client and the server authenticate each other with the cluster's token first.
    public init(server: String, name: String, authToken: AuthToken? = nil, connectTimeoutSeconds: Double = 5,
                tls: ClientTLS? = nil) throws(PSClientError) {
        self.server = server
        self.name = name
        self.authToken = authToken
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.tls = tls
        connection = try Self.connect(server, name: name, authToken: authToken, timeoutSeconds: connectTimeoutSeconds, tls: tls)
    }

    private static func connect(_ server: String, name: String, authToken: AuthToken?,
                                timeoutSeconds: Double, tls: ClientTLS?) throws(PSClientError) -> BlockingClient {
        do throws(ClientError) {
            return try BlockingClient.connecting(address: server, name: name, role: .client, authToken: authToken,
                                                 timeoutSeconds: timeoutSeconds, tls: tls)
        } catch {
            throw PSClientError(server: server, request: .connect, error)
        }
    }

    /// The name the server gave in its hello reply, e.g. "ps-server@127.0.0.1:7070".
    public var serverName: String { connection.serverHello.serverName }

    /// Closes the connection. Safe to call more than once; requests after it fail as `.closed`.
    public func close() {
        connection.close()
    }

    /// Queues a job; returns its id (e.g. "job-3"). The server validates the spec again and refuses
    /// an invalid one (`.invalidSpec`, naming the field).
    public func submit(_ spec: JobSpec, timeoutSeconds: Double = requestTimeoutSeconds) throws(PSClientError) -> String {
        let request = PSClientError.Request.submit(jobName: spec.name)
        let reply = try send(.submitJob(spec), request, timeoutSeconds)
        guard case let .submitted(jobId) = reply else { throw unexpected(reply, to: request) }
        return jobId
    }

    /// The cluster (server, uptime, workers) and every job, oldest first; with `job`, only that job.
    public func status(job: String? = nil, timeoutSeconds: Double = requestTimeoutSeconds) throws(PSClientError) -> StatusReply {
        let request = PSClientError.Request.status(jobId: job)
        let reply = try send(.statusRequest(jobId: job ?? ""), request, timeoutSeconds)
        guard case let .statusReply(status) = reply else { throw unexpected(reply, to: request) }
        return status
    }

    /// One job's progress.
    public func jobStatus(_ jobId: String, timeoutSeconds: Double = requestTimeoutSeconds) throws(PSClientError) -> JobStatus {
        let reply = try status(job: jobId, timeoutSeconds: timeoutSeconds)
        guard let job = reply.jobs.first(where: { $0.jobId == jobId }) else {
            throw PSClientError(server: server, request: .status(jobId: jobId),
                                reason: .unexpectedReply("statusReply without \(jobId)"))
        }
        return job
    }

    /// The server and its workers.
    public func clusterStatus(timeoutSeconds: Double = requestTimeoutSeconds) throws(PSClientError) -> ClusterStatus {
        try status(timeoutSeconds: timeoutSeconds).cluster
    }

    /// Every job the server knows, oldest first.
    public func listJobs(timeoutSeconds: Double = requestTimeoutSeconds) throws(PSClientError) -> [JobStatus] {
        let reply = try send(.listJobs, .list, timeoutSeconds)
        guard case let .jobList(jobs) = reply else { throw unexpected(reply, to: .list) }
        return jobs
    }

    /// Blocks until the job ends and returns its result (whatever its final state: check `state`).
    public func wait(for jobId: String, timeoutSeconds: Double = waitTimeoutSeconds) throws(PSClientError) -> JobResult {
        let reply = try send(.waitJob(jobId: jobId), .wait(jobId: jobId), timeoutSeconds)
        guard case let .jobResult(result) = reply else { throw unexpected(reply, to: .wait(jobId: jobId)) }
        return result
    }

    /// What `wait(for:reconnectSeconds:onEvent:)` reports as it goes.
    public enum ReconnectEvent: Equatable, Sendable {
        /// The connection was lost (the error says how); reconnection attempts follow.
        case lost(PSClientError)
        /// Connected again, and waiting again.
        case reconnected
    }

    /// `wait(for:)` that outlasts a server restart (a restarted server resumes its unfinished jobs under
    /// the same ids). When the connection is lost (`PSClientError.isConnectionLost`) it reconnects on
    /// `reconnectBackoff` and waits again, until `reconnectSeconds` pass without a connection; then it
    /// throws the last failure. With 0 it fails at once, as `wait(for:)`. A refusal (an unknown job) is
    /// thrown at once: asking again would not change the answer.
    public func wait(for jobId: String, reconnectSeconds: Double,
                     onEvent: (ReconnectEvent) -> Void = { _ in }) throws(PSClientError) -> JobResult {
        var schedule = ReconnectSchedule(backoff: Self.reconnectBackoff, giveUpSeconds: reconnectSeconds)
        let clock = ContinuousClock()
        let start = clock.now
        var disconnected = false
        while true {
            do throws(PSClientError) {
                if disconnected {
                    let fresh = try Self.connect(server, name: name, authToken: authToken,
                                                 timeoutSeconds: connectTimeoutSeconds, tls: tls)
                    connection.close()
                    connection = fresh
                    disconnected = false
                    schedule.connected()
                    onEvent(.reconnected)
                }
                return try wait(for: jobId)
            } catch {
                let elapsed = clock.now - start
                let now = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
                guard error.isConnectionLost,
                      let delay = schedule.failed(now: now, unitRandom: .random(in: 0...1)) else { throw error }
                if !disconnected { onEvent(.lost(error)) }
                disconnected = true
                Thread.sleep(forTimeInterval: delay)
            }
        }
    }

    /// Cancels a queued or running job. The server refuses a job that has already ended.
    public func cancel(_ jobId: String, timeoutSeconds: Double = requestTimeoutSeconds) throws(PSClientError) {
        let reply = try send(.cancelJob(jobId: jobId), .cancel(jobId: jobId), timeoutSeconds)
        guard case .ack = reply else { throw unexpected(reply, to: .cancel(jobId: jobId)) }
    }

    /// A completed job's trained model, from the server's memory (it keeps the newest ones).
    public func fetchModel(_ jobId: String, timeoutSeconds: Double = fetchModelTimeoutSeconds) throws(PSClientError) -> TrainedModel {
        let reply = try send(.fetchModel(jobId: jobId), .fetchModel(jobId: jobId), timeoutSeconds)
        guard case let .modelData(model) = reply else { throw unexpected(reply, to: .fetchModel(jobId: jobId)) }
        return model
    }

    // MARK: One exchange

    /// Sends `message` and returns the reply, with every failure named for `request`.
    private func send(_ message: Message, _ request: PSClientError.Request,
                      _ timeoutSeconds: Double) throws(PSClientError) -> Message {
        do throws(ClientError) {
            return try connection.request(message, timeoutSeconds: timeoutSeconds)
        } catch {
            throw PSClientError(server: server, request: request, error)
        }
    }

    private func unexpected(_ reply: Message, to request: PSClientError.Request) -> PSClientError {
        PSClientError(server: server, request: request, reason: .unexpectedReply(reply.caseName))
    }
}
