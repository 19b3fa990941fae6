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
    private let connection: BlockingClient

    /// How long `wait(for:)` waits by default: training can take days, and the server answers when the job ends.
    public static let waitTimeoutSeconds: Double = 30 * 24 * 3600
    /// How long `fetchModel` waits by default: a model of up to a frame (64 MiB) has to cross the network.
    public static let fetchModelTimeoutSeconds: Double = 60
    /// How long every other request waits by default.
    public static let requestTimeoutSeconds: Double = 10

    /// Connects to `server` (HOST:PORT) and says hello as a client called `name`.
    public init(server: String, name: String, connectTimeoutSeconds: Double = 5) throws(PSClientError) {
        self.server = server
        do throws(ClientError) {
            connection = try BlockingClient(address: server, name: name, role: .client, timeoutSeconds: connectTimeoutSeconds)
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
