import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PSWire

/// Identifies one accepted connection for the life of a server.
public typealias ConnectionID = UInt64

/// What happens on a server's connections, in order per connection:
/// `connected`, any number of `received`, at most one `rejected`, `tlsRejected` or `unauthenticated`, then
/// `disconnected`.
public enum ServerEvent: Sendable {
    case connected(ConnectionID, peer: String)
    case received(ConnectionID, Envelope)
    /// The peer sent bytes that are not a valid frame (oversized length prefix, undecodable envelope).
    /// The transport has already replied with an `.error` (tooLarge / badRequest) where possible,
    /// logged `peer=… problem`, and is closing this connection only.
    case rejected(ConnectionID, peer: String, error: WireError)
    /// The peer failed the TLS handshake (its certificate, or no TLS at all): nothing it sent was read.
    /// The transport has logged `peer=… reason problem` and is closing this connection only.
    case tlsRejected(ConnectionID, peer: String, failure: TLSHandshakeFailure)
    /// The peer failed the authentication handshake (the server has the cluster's token): the transport
    /// has replied with `unauthenticated`, logged `peer=… reason=…`, and is closing this connection only.
    case unauthenticated(ConnectionID, peer: String, failure: AuthFailure, message: String)
    case disconnected(ConnectionID)
}

/// A listening socket that could not be opened.
public struct ListenError: Error, CustomStringConvertible {
    public var address: String
    public var reason: String
    public var description: String { "cannot listen on \(address): \(reason)" }
}

/// Accepts connections, turns their bytes into `ServerEvent`s and writes frames back. Knows nothing
/// of what the messages mean: the coordinator's logic sits behind `onEvent`.
public final class TransportServer: @unchecked Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let listener: Channel
    private let registry: ConnectionRegistry
    private let budget: IncompleteFrameBudget
    private let logger: Logger
    private let isShutDown = NIOLockedValueBox(false)

    /// "127.0.0.1:7070", with the real port when 0 was asked.
    public let localAddress: String

    /// Binds HOST:PORT (port 0 = any free port) and starts accepting. `onEvent` runs on an event-loop
    /// thread; callers hop to their own queue before doing real work. Events of one connection arrive in order.
    /// With `tls`, every connection is TLS (its handler first in the pipeline); nil: plaintext. With
    /// `authToken`, every connection must complete the authentication handshake (`ServerHandshake`)
    /// before anything it sends is reported.
    public static func start(host: String, port: Int, eventLoopThreads: Int = 1, tls: ServerTLS? = nil,
                             authToken: AuthToken? = nil, logger: Logger,
                             onEvent: @escaping @Sendable (ServerEvent) -> Void) throws -> TransportServer {
        try TransportServer(host: host, port: port, eventLoopThreads: eventLoopThreads, limits: ConnectionLimits(),
                            tls: tls, authToken: authToken, logger: logger, onEvent: onEvent)
    }

    /// `limits` is a parameter so that a test can reach them with a few connections.
    init(host: String, port: Int, eventLoopThreads: Int, limits: ConnectionLimits, tls: ServerTLS? = nil,
         authToken: AuthToken? = nil, logger: Logger,
         onEvent: @escaping @Sendable (ServerEvent) -> Void) throws {
        precondition(eventLoopThreads >= 1, "a server needs at least one event-loop thread")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: eventLoopThreads)
        let registry = ConnectionRegistry(limits: limits, logger: logger)
        let budget = IncompleteFrameBudget(bytesMax: limits.incompleteFrameBytesMax)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            // A restarted server must get its port back while old connections sit in TIME_WAIT.
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.noDelay, value: 1)
            .childChannelOption(ChannelOptions.recvAllocator, value: ReadTuning.allocator)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: ReadTuning.messagesPerRead)
            .childChannelInitializer { channel in
                let peer = addressText(channel.remoteAddress)
                // TLS first: everything after it sees plaintext frames (a refusal below too).
                if let tls {
                    do {
                        try channel.pipeline.syncOperations.addHandlers(tls.makeHandler(), TLSHandshakeWatch(side: .server))
                    } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                }
                guard let id = registry.admit(channel, peer: peer) else {
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(RefusingHandler(reply: ErrorReply(
                            code: .busy, message: "server has reached its connection limits (connectionsMax \(limits.connectionsMax), "
                                + "connectionsPerAddressMax \(limits.connectionsPerAddressMax))")))
                    }
                }
                channel.closeFuture.whenComplete { _ in registry.remove(id) }
                var connectionLogger = logger
                connectionLogger[metadataKey: "connection"] = "\(id)"
                connectionLogger[metadataKey: "peer"] = "\(peer)"
                let frames = FrameReader(id: id, budget: budget, limits: limits, logger: connectionLogger,
                                         onStall: { registry.count(.frameStalled) })
                let handler = ServerConnectionHandler(id: id, peer: peer, logger: connectionLogger,
                                                      handshake: ServerHandshake(token: authToken), frames: frames,
                                                      registry: registry, helloSeconds: limits.helloSeconds, onEvent: onEvent)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(frames, handler)
                }
            }
        do {
            listener = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw ListenError(address: "\(host):\(port)", reason: socketErrorReason(error))
        }
        self.group = group
        self.registry = registry
        self.budget = budget
        self.logger = logger
        localAddress = addressText(listener.localAddress)
        logger.info("listening", metadata: ["address": "\(localAddress)"])
    }

    /// Thread-safe. How many connections the transport's limits refused or closed, by reason, since start.
    public var refusals: [ConnectionRefusal: Int] { registry.refusals }

    /// Thread-safe. Bytes held in incomplete large frames across all connections (see
    /// `TransportLimits.incompleteFrameBytesMax`).
    public var incompleteFrameBytes: Int { budget.totalBytes }

    /// Thread-safe. Encodes and writes one frame; silently dropped if the connection is gone.
    public func send(_ envelope: Envelope, to connection: ConnectionID) {
        guard let channel = registry.channel(connection) else { return }
        guard let buffer = encode(envelope, for: connection, channel: channel) else { return }
        channel.writeAndFlush(buffer, promise: nil)
    }

    /// Thread-safe. Writes bytes already framed by `encodeFrame` (so one encoding can go to several peers).
    public func send(frame: [UInt8], to connection: ConnectionID) {
        guard let channel = registry.channel(connection) else { return }
        channel.writeAndFlush(channel.allocator.buffer(bytes: frame), promise: nil)
    }

    /// Encodes once a frame that several connections will receive (a step's weights go to every worker).
    public func encode(_ envelope: Envelope) throws(WireError) -> EncodedFrame {
        EncodedFrame(buffer: try frameBuffer(envelope, allocator: ByteBufferAllocator()))
    }

    /// Thread-safe. Writes a frame from `encode(_:)`; the bytes are shared, not copied, per connection.
    public func send(_ frame: EncodedFrame, to connection: ConnectionID) {
        guard let channel = registry.channel(connection) else { return }
        channel.writeAndFlush(frame.buffer, promise: nil)
    }

    /// Thread-safe. Optionally sends a last envelope, then closes that connection. Messages the peer
    /// sends after this are dropped.
    public func close(_ connection: ConnectionID, after envelope: Envelope? = nil) {
        guard let channel = registry.channel(connection) else { return }
        let last = envelope.flatMap { encode($0, for: connection, channel: channel) }
        channel.triggerUserOutboundEvent(CloseAfter(last: last), promise: nil)
    }

    /// Closes the listener and waits for it: connections already open carry on, new ones are refused
    /// (the first step of an orderly stop). Call it from outside `onEvent`; after `shutdown()` it does nothing.
    public func stopAccepting() {
        guard !isShutDown.withLockedValue({ $0 }) else { return }
        try? listener.close().wait()
    }

    /// Closes the listener and every connection and waits for them. Call it once from outside
    /// `onEvent` (it waits for the event-loop threads, which would deadlock there).
    public func shutdown() {
        let wasShutDown = isShutDown.withLockedValue { done in
            defer { done = true }
            return done
        }
        guard !wasShutDown else { return }
        try? listener.close().wait()
        let closing = registry.all().map { channel in
            channel.close(promise: nil)
            return channel.closeFuture
        }
        for future in closing { try? future.wait() }
        try? group.syncShutdownGracefully()
        logger.info("stopped listening", metadata: ["address": "\(localAddress)"])
    }

    private func encode(_ envelope: Envelope, for connection: ConnectionID, channel: Channel) -> ByteBuffer? {
        do {
            return try frameBuffer(envelope, allocator: channel.allocator)
        } catch {
            logger.error("cannot encode message, not sent",
                         metadata: ["connection": "\(connection)", "message": "\(envelope.message.caseName)",
                                    "problem": "\(error)"])
            return nil
        }
    }
}

/// The live connections of one server, by id (a `ConnectionTable` behind a lock); shared by its event
/// loops and its callers. Closes what the table evicts, logs refusals and evictions (rate-limited) and
/// counts them.
final class ConnectionRegistry: Sendable {
    private struct State: Sendable {
        var table: ConnectionTable<Channel>
        var log: RefusalLogLimiter
        var refusals: [ConnectionRefusal: Int] = [:]
    }

    private let state: NIOLockedValueBox<State>
    private let limits: ConnectionLimits
    private let logger: Logger
    private let started = NIODeadline.now()

    init(limits: ConnectionLimits, logger: Logger) {
        self.limits = limits
        self.logger = logger
        state = NIOLockedValueBox(State(table: ConnectionTable(limits: limits),
                                        log: RefusalLogLimiter(intervalSeconds: TransportLimits.refusalLogSeconds)))
    }

    /// A fresh id for `channel` (from `peer`, "IP:PORT"), or nil when it is refused. Connections evicted to
    /// make room are sent `.busy` and closed.
    func admit(_ channel: Channel, peer: String) -> ConnectionID? {
        let address = channel.remoteAddress?.ipAddress ?? peer
        let (admission, logLines) = state.withLockedValue { state in
            let admission = state.table.admit(channel, address: address)
            var lines: [(ConnectionRefusal, Int)] = []
            func counted(_ refusal: ConnectionRefusal, _ times: Int) {
                guard times > 0 else { return }
                state.refusals[refusal, default: 0] += times
                for _ in 0..<times {
                    if let count = state.log.record(refusal, now: seconds()) { lines.append((refusal, count)) }
                }
            }
            switch admission {
            case let .admitted(_, evicted): counted(.evicted, evicted.count)
            case let .refused(refusal, evicted):
                counted(.evicted, evicted.count)
                counted(refusal, 1)
            }
            return (admission, lines)
        }
        for (refusal, count) in logLines {
            switch refusal {
            case .evicted:
                logger.warning("closing the oldest connections that have not said hello, to make room for new ones",
                               metadata: ["peer": "\(peer)", "closed": "\(count)", "pendingConnectionsMax": "\(limits.pendingConnectionsMax)",
                                          "pendingConnectionsPerAddressMax": "\(limits.pendingConnectionsPerAddressMax)"])
            default:
                logger.warning("refusing connections: limit reached",
                               metadata: ["peer": "\(peer)", "reason": "\(refusal.rawValue)", "refused": "\(count)",
                                          "connectionsMax": "\(limits.connectionsMax)",
                                          "connectionsPerAddressMax": "\(limits.connectionsPerAddressMax)"])
            }
        }
        let evicted: [(ConnectionID, Channel)]
        let id: ConnectionID?
        switch admission {
        case let .admitted(admitted, list): (id, evicted) = (admitted, list)
        case let .refused(_, list): (id, evicted) = (nil, list)
        }
        for (_, channel) in evicted {
            let reply = Envelope(requestId: 0, message: .error(ErrorReply(
                code: .busy, message: "closed to make room for newer connections: this connection did not say hello")))
            channel.triggerUserOutboundEvent(CloseAfter(last: try? frameBuffer(reply, allocator: channel.allocator)), promise: nil)
        }
        return id
    }

    /// `id`'s hello is through: it is no longer pending.
    func establish(_ id: ConnectionID) {
        state.withLockedValue { $0.table.establish(id) }
    }

    /// A connection closed by a limit its handler enforces (hello deadline, stalled frame).
    func count(_ refusal: ConnectionRefusal) {
        state.withLockedValue { $0.refusals[refusal, default: 0] += 1 }
    }

    /// Whether a handler should log this refusal now (rate-limited), and for how many.
    func shouldLog(_ refusal: ConnectionRefusal) -> Int? {
        state.withLockedValue { $0.log.record(refusal, now: seconds()) }
    }

    var refusals: [ConnectionRefusal: Int] { state.withLockedValue { $0.refusals } }

    func remove(_ id: ConnectionID) {
        _ = state.withLockedValue { $0.table.remove(id) }
    }

    func channel(_ id: ConnectionID) -> Channel? {
        state.withLockedValue { $0.table.entries[id]?.value }
    }

    func all() -> [Channel] {
        state.withLockedValue { $0.table.entries.values.map(\.value) }
    }

    private func seconds() -> Double {
        Double((NIODeadline.now() - started).nanoseconds) / 1e9
    }
}

/// Asks a connection's handler to send a last frame and close.
struct CloseAfter: Sendable {
    var last: ByteBuffer?
}

/// The last handler of a server connection: runs the authentication handshake, reports its events,
/// answers refused frames, closes on request, and closes a connection whose hello is not through within
/// `helloSeconds`. When it is, the connection is established: its `FrameReader` takes full-size frames and
/// the registry stops counting it as pending.
final class ServerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Envelope
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let id: ConnectionID
    private let peer: String
    private let logger: Logger
    private let onEvent: @Sendable (ServerEvent) -> Void
    /// Set once the connection is closing: nothing it receives afterwards is reported.
    private var closing = false
    /// The authentication handshake (everything passes when the server has no token).
    private var handshake: ServerHandshake
    private let frames: FrameReader
    private let registry: ConnectionRegistry
    private let helloSeconds: Double
    private var established = false
    private var helloDeadline: Scheduled<Void>?

    init(id: ConnectionID, peer: String, logger: Logger, handshake: ServerHandshake, frames: FrameReader,
         registry: ConnectionRegistry, helloSeconds: Double, onEvent: @escaping @Sendable (ServerEvent) -> Void) {
        self.id = id
        self.peer = peer
        self.logger = logger
        self.handshake = handshake
        self.frames = frames
        self.registry = registry
        self.helloSeconds = helloSeconds
        self.onEvent = onEvent
    }

    func channelActive(context: ChannelHandlerContext) {
        logger.debug("connected")
        onEvent(.connected(id, peer: peer))
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let channel = context.channel
        helloDeadline = context.eventLoop.scheduleTask(in: TimeAmount(seconds: helloSeconds)) {
            handler.value.helloDeadlinePassed(channel: channel)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        switch handshake.receive(unwrapInboundIn(data)) {
        case let .forward(envelopes):
            for envelope in envelopes {
                if !established, case .hello = envelope.message { establish() }
                onEvent(.received(id, envelope))
            }
        case let .reply(envelope):
            if let frame = try? frameBuffer(envelope, allocator: context.channel.allocator) {
                context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
            }
        case let .refuse(reply, failure):
            closing = true
            logger.warning("authentication failed, closing connection", metadata: ["reason": "\(failure.rawValue)",
                                                                                    "problem": "\(reply.message)"])
            onEvent(.unauthenticated(id, peer: peer, failure: failure, message: reply.message))
            closeAfter(try? frameBuffer(Envelope(requestId: 0, message: .error(reply)), allocator: context.channel.allocator),
                       on: context.channel)
        }
    }

    /// The hello is through (with a token: its proof checked out).
    private func establish() {
        established = true
        helloDeadline?.cancel()
        helloDeadline = nil
        frames.establish()
        registry.establish(id)
    }

    private func helloDeadlinePassed(channel: Channel) {
        helloDeadline = nil
        guard !established, !closing, channel.isActive else { return }
        closing = true
        registry.count(.helloTimeout)
        if let count = registry.shouldLog(.helloTimeout) {
            logger.warning("closing connection: no hello within \(helloSeconds) s (helloSeconds)",
                           metadata: ["closed_like_this": "\(count)"])
        }
        let reply = ErrorReply(code: .badRequest, message: "no hello within \(helloSeconds) s of connecting")
        closeAfter(try? frameBuffer(Envelope(requestId: 0, message: .error(reply)), allocator: channel.allocator), on: channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        logger.debug("disconnected")
        helloDeadline?.cancel()
        if let (failure, message) = handshake.closed() {
            logger.warning("authentication failed", metadata: ["reason": "\(failure.rawValue)", "problem": "\(message)"])
            onEvent(.unauthenticated(id, peer: peer, failure: failure, message: message))
        }
        onEvent(.disconnected(id))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !closing else { return }
        closing = true
        if let failure = error as? TLSHandshakeFailure {
            logger.warning("TLS handshake failed, closing connection",
                           metadata: ["reason": "\(failure.reason.rawValue)", "problem": "\(failure)"])
            onEvent(.tlsRejected(id, peer: peer, failure: failure))
            return  // TLSHandshakeWatch closes the connection
        }
        guard let error = error as? WireError else {
            // A reset or another socket error: the peer is gone, there is no one to answer.
            logger.debug("connection failed", metadata: ["problem": "\(socketErrorReason(error))"])
            context.close(promise: nil)
            return
        }
        logger.warning("rejected frame, closing connection", metadata: ["problem": "\(error)"])
        onEvent(.rejected(id, peer: peer, error: error))
        let reply = Envelope(requestId: 0, message: .error(ErrorReply(refusing: error)))
        closeAfter(try? frameBuffer(reply, allocator: context.channel.allocator), on: context.channel)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let request = event as? CloseAfter else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        promise?.succeed()
        guard !closing else { return }
        closing = true
        closeAfter(request.last, on: context.channel)
    }
}

/// The only handler of a connection over the limit: answers with an error and closes.
final class RefusingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let reply: ErrorReply

    init(reply: ErrorReply) {
        self.reply = reply
    }

    func channelActive(context: ChannelHandlerContext) {
        let envelope = Envelope(requestId: 0, message: .error(reply))
        closeAfter(try? frameBuffer(envelope, allocator: context.channel.allocator), on: context.channel)
        context.fireChannelActive()
    }

    /// Whatever the peer sends is read and dropped until the close.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// A frame encoded once for several connections (NIO shares the bytes between writes).
public struct EncodedFrame: Sendable {
    let buffer: ByteBuffer
    public var byteCount: Int { buffer.readableBytes }
}
