import PSTransport
import PSWire

/// Why a `PSClient` request failed: which server, which request, and what went wrong.
public struct PSClientError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The request that failed.
    public enum Request: Equatable, Sendable, CustomStringConvertible {
        case connect
        case submit(jobName: String)
        /// nil: the whole cluster.
        case status(jobId: String?)
        case list
        case wait(jobId: String)
        case cancel(jobId: String)
        case fetchModel(jobId: String)

        public var description: String {
            switch self {
            case .connect: "connect"
            case let .submit(name): "submit job '\(name)'"
            case let .status(jobId?): "status of \(jobId)"
            case .status(nil): "cluster status"
            case .list: "list jobs"
            case let .wait(jobId): "wait for \(jobId)"
            case let .cancel(jobId): "cancel \(jobId)"
            case let .fetchModel(jobId): "fetch the model of \(jobId)"
            }
        }
    }

    public enum Reason: Equatable, Sendable {
        /// The server answered with an error (e.g. `.unknownJob` naming the field `job_id`).
        case refused(ErrorReply)
        /// No answer: the server was unreachable, timed out, closed the connection, or broke the protocol.
        case transport(ClientError)
        /// The server answered with a message of the wrong kind (its case name).
        case unexpectedReply(String)
    }

    /// The server's address, HOST:PORT.
    public var server: String
    public var request: Request
    public var reason: Reason

    public init(server: String, request: Request, reason: Reason) {
        self.server = server
        self.request = request
        self.reason = reason
    }

    /// A transport error, with a refusal the transport reported (`.remote`) as `.refused`.
    init(server: String, request: Request, _ error: ClientError) {
        if case let .remote(reply) = error {
            self.init(server: server, request: request, reason: .refused(reply))
        } else {
            self.init(server: server, request: request, reason: .transport(error))
        }
    }

    /// The server's refusal, when it refused.
    public var refusal: ErrorReply? {
        if case let .refused(reply) = reason { reply } else { nil }
    }

    /// Whether the server went away rather than answered: it could not be reached, closed the
    /// connection, did not answer the hello in time, or refused because it is stopping. A request that
    /// failed so may be sent again once the server is back (a restarted server keeps its jobs); any
    /// other refusal (an unknown job, an invalid spec) would only be refused again.
    public var isConnectionLost: Bool {
        switch reason {
        case .transport(.unreachable), .transport(.closed): true
        // A request's own timeout (a wait's is 30 days) is its answer not coming, not the server going.
        case .transport(.timeout): request == .connect
        case let .refused(reply), let .transport(.remote(reply)): reply.code == .shuttingDown
        // A server stopping mid-handshake, or not yet answering: as unreachable. A certificate refused
        // stays refused.
        case let .transport(.tlsHandshake(_, failure)): failure.reason == .closed || failure.reason == .timeout
        case .transport(.protocolError), .transport(.unauthenticated), .unexpectedReply: false
        }
    }

    /// What went wrong, without the request and server: "the server closed the connection".
    public var reasonText: String {
        switch reason {
        case let .refused(reply):
            "refused: \(reply.message)" + (reply.field.isEmpty ? "" : " (\(reply.field))") + " [\(reply.code)]"
        case let .transport(.unreachable(_, why)): "cannot connect: \(why)"
        case let .transport(.timeout(_, waitingFor)): "timed out waiting for \(waitingFor)"
        case .transport(.closed): "the server closed the connection"
        case let .transport(.protocolError(_, message)): "protocol error: \(message)"
        case let .transport(.unauthenticated(_, why)): "cannot authenticate: \(why)"
        case let .transport(.remote(reply)): "refused: \(reply.message) [\(reply.code)]"
        case let .transport(.tlsHandshake(_, failure)): "TLS handshake failed: \(failure)"
        case let .unexpectedReply(name): "unexpected reply \(name)"
        }
    }

    /// "wait for job-9 on 127.0.0.1:7070: refused: no job 'job-9' (job_id) [unknownJob]".
    public var description: String {
        "\(request) on \(server): \(reasonText)"
    }
}
