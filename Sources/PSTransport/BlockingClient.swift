#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PSWire

/// Why a client request did not get its answer. Each case names the server's address.
public enum ClientError: Error, CustomStringConvertible, Equatable {
    /// "cannot connect to 127.0.0.1:7070: connection refused"
    case unreachable(address: String, reason: String)
    case timeout(address: String, waitingFor: String)
    /// The server answered `.error`.
    case remote(ErrorReply)
    case protocolError(address: String, message: String)
    case closed(address: String)
    /// "TLS handshake with 127.0.0.1:7070 failed: certificate verify failed (unknown CA: ...)"
    case tlsHandshake(address: String, failure: TLSHandshakeFailure)
    /// The authentication handshake failed on this side: the server could not prove it holds the
    /// cluster's token, or wants one this client does not have.
    case unauthenticated(address: String, reason: String)

    public var description: String {
        switch self {
        case let .unreachable(address, reason):
            return "cannot connect to \(address): \(reason)"
        case let .timeout(address, waitingFor):
            return "timed out waiting for \(waitingFor) from \(address)"
        case let .remote(reply):
            return "server refused: \(reply.message)" + (reply.field.isEmpty ? "" : " (\(reply.field))")
                + " [\(reply.code)]"
        case let .protocolError(address, message):
            return "protocol error talking to \(address): \(message)"
        case let .closed(address):
            return "\(address) closed the connection"
        case let .tlsHandshake(address, failure):
            return "TLS handshake with \(address) failed: \(failure)"
        case let .unauthenticated(address, reason):
            return "cannot authenticate with \(address): \(reason)"
        }
    }
}

/// A synchronous request/reply client for command-line tools. Connects (over TLS with `tls`), sends `hello`
/// with `Hello(role:name:)`, expects `helloOk` (an `.error` reply, e.g. protocol version mismatch, is thrown
/// as .remote; a failed TLS handshake as .tlsHandshake).
///
/// One request at a time; calls block only the caller's thread (never call it on an event loop).
public final class BlockingClient {
    private let address: String
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel
    /// The last `.error` the server sent unasked (request id 0), usually just before it closed:
    /// the reason to report when a request then finds the connection closed.
    private let unsolicitedError: NIOLockedValueBox<ErrorReply?>
    /// Why the TLS handshake failed, if it did: the reason to report when the connection then closes.
    private let tlsFailure: NIOLockedValueBox<TLSHandshakeFailure?>
    private var lastRequestId: UInt64 = 0
    private var isClosed = false

    /// The server's hello reply.
    public private(set) var serverHello: HelloOk

    /// With `tls`, the connection is TLS (`ClientTLS`: the server's certificate is checked). With
    /// `authToken`, the client and the server prove to each other that they hold the cluster's token
    /// (`ClientHandshake`); a server that cannot is refused.
    public init(address: String, name: String, role: PeerRole = .client, authToken: AuthToken? = nil,
                timeoutSeconds: Double = 5, tls: ClientTLS? = nil) throws(ClientError) {
        let (host, port): (String, Int)
        do {
            (host, port) = try parseAddress(address)
        } catch {
            throw .unreachable(address: address, reason: "\(error)")
        }
        let unsolicitedError = NIOLockedValueBox<ErrorReply?>(nil)
        let tlsFailure = NIOLockedValueBox<TLSHandshakeFailure?>(nil)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(seconds: timeoutSeconds))
            .channelOption(ChannelOptions.noDelay, value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls { try sync.addHandlers(tls.makeHandler(host: host), TLSHandshakeWatch(side: .client)) }
                    try sync.addHandlers(ByteToMessageHandler(EnvelopeDecoder()),
                                         ExchangeHandler(address: address, unsolicitedError: unsolicitedError,
                                                         tlsFailure: tlsFailure))
                }
            }
        do {
            channel = try bootstrap.connect(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw .unreachable(address: address, reason: socketErrorReason(error))
        }
        self.address = address
        self.group = group
        self.unsolicitedError = unsolicitedError
        self.tlsFailure = tlsFailure
        serverHello = HelloOk(serverName: "")
        do throws(ClientError) {
            var handshake = ClientHandshake(hello: Hello(role: role, name: name), token: authToken)
            var reply = try exchange(.hello(handshake.hello), timeoutSeconds: timeoutSeconds, acceptsUnsolicited: true)
            while true {
                switch handshake.receive(reply) {
                case let .send(message):
                    // Under the hello's request id: the server answers the hello (with that id) once the
                    // answer to its challenge checks out.
                    reply = try exchange(message, timeoutSeconds: timeoutSeconds, acceptsUnsolicited: true, sameId: true)
                    continue
                case let .done(ok):
                    serverHello = ok
                case let .fail(reason):
                    throw ClientError.unauthenticated(address: address, reason: reason)
                }
                break
            }
        } catch {
            close()
            throw error
        }
    }

    deinit {
        close()
    }

    /// Connects as `init` does, trying again while the server answers `busy` before the hello is through, for up to `busyRetrySeconds`: a server under a flood of connections
    /// closes the oldest ones that have not said hello to make room for new ones, and a real client's
    /// connection can be among them in the milliseconds before its hello arrives. Other failures are
    /// thrown at once; the last `busy` answer is thrown when the time is spent.
    public static func connecting(address: String, name: String, role: PeerRole = .client, authToken: AuthToken? = nil,
                                  timeoutSeconds: Double = 5, tls: ClientTLS? = nil,
                                  busyRetrySeconds: Double = TransportLimits.busyRetrySeconds) throws(ClientError) -> BlockingClient {
        let deadline = ContinuousClock.now + .milliseconds(Int64(busyRetrySeconds * 1000))
        var failures = 0
        while true {
            do throws(ClientError) {
                return try BlockingClient(address: address, name: name, role: role, authToken: authToken,
                                          timeoutSeconds: timeoutSeconds, tls: tls)
            } catch {
                guard case let .remote(reply) = error, reply.code == .busy, ContinuousClock.now < deadline else { throw error }
                failures += 1
                let pause = TransportLimits.busyRetryBackoff.delaySeconds(failures: failures - 1, unitRandom: Double.random(in: 0...1))
                usleep(useconds_t(pause * 1_000_000))
            }
        }
    }

    /// Sends `message` with a fresh request id and waits for the envelope carrying that id.
    /// An `.error` reply is thrown as `.remote`. Other envelopes (id 0) are ignored.
    public func request(_ message: Message, timeoutSeconds: Double = 10) throws(ClientError) -> Message {
        try exchange(message, timeoutSeconds: timeoutSeconds, acceptsUnsolicited: false)
    }

    /// Closes the connection and stops the client's thread. Safe to call more than once.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        channel.close(promise: nil)
        try? channel.closeFuture.wait()
        try? group.syncShutdownGracefully()
    }

    /// Writes `message` as the next request and waits for its reply. `acceptsUnsolicited` lets an
    /// id-0 `helloOk` or `.error` answer (a server may answer a hello before reading its id).
    private func exchange(_ message: Message, timeoutSeconds: Double,
                          acceptsUnsolicited: Bool, sameId: Bool = false) throws(ClientError) -> Message {
        // After `close()` the event loop is gone: nothing would ever complete the reply.
        guard !isClosed else { throw .closed(address: address) }
        if !sameId { lastRequestId += 1 }
        let frame: ByteBuffer
        do {
            frame = try frameBuffer(Envelope(requestId: lastRequestId, message: message), allocator: channel.allocator)
        } catch {
            throw .protocolError(address: address, message: "cannot encode \(message.caseName): \(error)")
        }
        let reply = channel.eventLoop.makePromise(of: Envelope.self)
        let pending = PendingExchange(requestId: lastRequestId, frame: frame, reply: reply,
                                      timeout: TimeAmount(seconds: timeoutSeconds), acceptsUnsolicited: acceptsUnsolicited,
                                      waitingFor: "the reply to \(message.caseName)")
        channel.writeAndFlush(pending).whenFailure { error in reply.fail(error) }
        let envelope: Envelope
        do {
            envelope = try reply.futureResult.wait()
        } catch let error as ClientError {
            throw error
        } catch {
            // The write failed: the connection was already closed, most likely by a refusal.
            if let failure = tlsFailure.withLockedValue({ $0 }) { throw .tlsHandshake(address: address, failure: failure) }
            if let refusal = unsolicitedError.withLockedValue({ $0 }) { throw .remote(refusal) }
            throw .closed(address: address)
        }
        if case let .error(refusal) = envelope.message { throw .remote(refusal) }
        return envelope.message
    }
}

/// A request on its way out, with the promise its reply completes.
struct PendingExchange: Sendable {
    var requestId: UInt64
    var frame: ByteBuffer
    var reply: EventLoopPromise<Envelope>
    var timeout: TimeAmount
    var acceptsUnsolicited: Bool
    var waitingFor: String
}

/// The last handler of a `BlockingClient` connection: writes a request, then completes its promise
/// with the matching reply, or fails it with a `ClientError` on timeout, close or a bad frame.
final class ExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = Envelope
    typealias OutboundIn = PendingExchange
    typealias OutboundOut = ByteBuffer

    private let unsolicitedError: NIOLockedValueBox<ErrorReply?>
    private let tlsFailure: NIOLockedValueBox<TLSHandshakeFailure?>
    private var waiting: PendingExchange?
    private var timeout: Scheduled<Void>?
    /// The server's address as dialled, for errors.
    private let address: String

    init(address: String, unsolicitedError: NIOLockedValueBox<ErrorReply?>, tlsFailure: NIOLockedValueBox<TLSHandshakeFailure?>) {
        self.address = address
        self.unsolicitedError = unsolicitedError
        self.tlsFailure = tlsFailure
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let pending = unwrapOutboundIn(data)
        // A reply that never came (its wait timed out) is forgotten: only the newest request waits.
        finish(with: .failure(ClientError.closed(address: address)))
        waiting = pending
        let address = address
        timeout = context.eventLoop.scheduleTask(in: pending.timeout) {
            // A reply arriving later completes nothing (see `finish`).
            pending.reply.fail(ClientError.timeout(address: address, waitingFor: pending.waitingFor))
        }
        context.write(wrapOutboundOut(pending.frame), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        if envelope.requestId == 0, case let .error(reply) = envelope.message {
            unsolicitedError.withLockedValue { $0 = reply }
        }
        guard let waiting else { return }
        let matches = envelope.requestId == waiting.requestId
            || (waiting.acceptsUnsolicited && envelope.requestId == 0 && envelope.message.answersHello)
        if matches { finish(with: .success(envelope)) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let refusal = unsolicitedError.withLockedValue({ $0 }) {
            finish(with: .failure(ClientError.remote(refusal)))
        } else {
            finish(with: .failure(ClientError.closed(address: address)))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let failure = error as? TLSHandshakeFailure {
            tlsFailure.withLockedValue { $0 = failure }
            finish(with: .failure(ClientError.tlsHandshake(address: address, failure: failure)))
        } else if let error = error as? WireError {
            finish(with: .failure(ClientError.protocolError(address: address, message: "bad frame: \(error)")))
        } else {
            finish(with: .failure(ClientError.closed(address: address)))
        }
        context.close(promise: nil)
    }

    private func finish(with result: Result<Envelope, Error>) {
        timeout?.cancel()
        timeout = nil
        // Completing an already completed promise (a timed-out wait) does nothing.
        waiting?.reply.completeWith(result)
        waiting = nil
    }
}

extension Message {
    /// Whether a server may send this, unasked, as its answer to a hello.
    fileprivate var answersHello: Bool {
        switch self {
        case .helloOk, .error: return true
        default: return false
        }
    }
}
