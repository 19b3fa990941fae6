import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PSWire

/// A long-lived client connection for workers: connects (exponential backoff from 100 ms to 5 s with
/// ±20% jitter while the server is not up; over TLS with `tls`), sends the hello, reports events, and
/// reconnects after a loss until stopped. A failed TLS handshake is retried too (the server may get new
/// certificates), and logged as an error whenever its reason changes.
///
/// Events come on the connection's own event-loop thread, in order. `.disconnected` follows every
/// `.connected`, and is also reported when the server refuses the hello (its reason says why); a
/// server that is simply not up yet is retried quietly. After `stop()` returns no event comes.
/// Call `stop()` when done: until then the connection keeps its thread (and itself) alive.
public final class ReconnectingConnection: @unchecked Sendable {
    public enum Event: Sendable {
        case connected(HelloOk)
        case received(Envelope)
        case disconnected(reason: String)
    }

    private let address: String
    private let hello: Hello
    /// The cluster's token: each connection authenticates both sides with it (`ClientHandshake`).
    private let authToken: AuthToken?
    private let logger: Logger
    private let onEvent: @Sendable (Event) -> Void
    private let backoff: Backoff
    private let tls: ClientTLS?
    private let group: MultiThreadedEventLoopGroup
    private let eventLoop: EventLoop

    // Touched only on `eventLoop`.
    private var isStopped = false
    private var isStarted = false
    private var failedAttempts = 0
    /// The TLS failure last logged, so a streak of the same one is logged once.
    private var tlsFailureLogged: String?
    private var retry: Scheduled<Void>?
    /// The connection being set up or in use.
    private var channel: Channel?

    /// The connection once the server has answered the hello; read by `send` on any thread.
    private let ready = NIOLockedValueBox<Channel?>(nil)
    private let stopCalled = NIOLockedValueBox(false)

    public convenience init(address: String, hello: Hello, authToken: AuthToken? = nil, tls: ClientTLS? = nil,
                            logger: Logger, onEvent: @escaping @Sendable (Event) -> Void) {
        self.init(address: address, hello: hello, authToken: authToken, backoff: Backoff(), tls: tls, logger: logger,
                  onEvent: onEvent)
    }

    init(address: String, hello: Hello, authToken: AuthToken? = nil, backoff: Backoff, tls: ClientTLS? = nil, logger: Logger,
         onEvent: @escaping @Sendable (Event) -> Void) {
        self.address = address
        self.hello = hello
        self.authToken = authToken
        self.backoff = backoff
        self.tls = tls
        var logger = logger
        logger[metadataKey: "peer"] = "\(address)"
        self.logger = logger
        self.onEvent = onEvent
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        eventLoop = group.next()
    }

    /// Starts connecting. Calls after the first, or after `stop()`, do nothing.
    public func start() {
        // Under the lock, so that a concurrent `stop()` cannot shut the loop down in between.
        stopCalled.withLockedValue { stopped in
            guard !stopped else { return }
            eventLoop.execute {
                guard !self.isStarted, !self.isStopped else { return }
                self.isStarted = true
                self.connect()
            }
        }
    }

    /// Thread-safe; returns false (and drops the message) when not connected.
    @discardableResult public func send(_ message: Message, requestId: UInt64 = 0) -> Bool {
        guard let channel = ready.withLockedValue({ $0 }) else { return false }
        do {
            let buffer = try frameBuffer(Envelope(requestId: requestId, message: message), allocator: channel.allocator)
            channel.writeAndFlush(buffer, promise: nil)
            return true
        } catch {
            logger.error("cannot encode message, not sent",
                         metadata: ["message": "\(message.caseName)", "problem": "\(error)"])
            return false
        }
    }

    /// Thread-safe: writes bytes already framed by `encodeFrame`; false when not connected.
    @discardableResult public func send(frame: [UInt8]) -> Bool {
        guard let channel = ready.withLockedValue({ $0 }) else { return false }
        channel.writeAndFlush(channel.allocator.buffer(bytes: frame), promise: nil)
        return true
    }

    /// Thread-safe: closes the current connection and connects again as after any loss (the server
    /// then reassigns whatever this peer held). For a peer whose state no longer agrees with the server's.
    public func reconnect() {
        eventLoop.execute { self.channel?.close(promise: nil) }
    }

    /// Stops reconnecting and closes; waits until closed. Safe to call more than once. From inside
    /// `onEvent` it cannot wait for its own thread: it stops at once and closes in the background.
    public func stop() {
        let wasStopped = stopCalled.withLockedValue { stopped in
            defer { stopped = true }
            return stopped
        }
        guard !wasStopped else { return }
        if eventLoop.inEventLoop {
            _ = stopOnLoop()
            group.shutdownGracefully { _ in }
            return
        }
        try? eventLoop.flatSubmit { self.stopOnLoop() }.wait()
        try? group.syncShutdownGracefully()
    }

    // MARK: On the event loop

    private func stopOnLoop() -> EventLoopFuture<Void> {
        isStopped = true
        retry?.cancel()
        retry = nil
        ready.withLockedValue { $0 = nil }
        guard let channel else { return eventLoop.makeSucceededVoidFuture() }
        channel.close(promise: nil)
        return channel.closeFuture
    }

    private func connect() {
        eventLoop.preconditionInEventLoop()
        retry = nil
        guard !isStopped else { return }
        let host: String, port: Int
        do {
            (host, port) = try parseAddress(address)
        } catch {
            // Retrying cannot fix a typo: say so once and stay down.
            logger.error("not connecting", metadata: ["problem": "\(error)"])
            onEvent(.disconnected(reason: "\(error)"))
            return
        }
        ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(seconds: TransportLimits.connectSeconds))
            .channelOption(ChannelOptions.noDelay, value: 1)
            .channelOption(ChannelOptions.recvAllocator, value: ReadTuning.allocator)
            .channelOption(ChannelOptions.maxMessagesPerRead, value: ReadTuning.messagesPerRead)
            .channelInitializer { [hello, authToken, tls, address] channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls { try sync.addHandlers(tls.makeHandler(host: host), TLSHandshakeWatch(side: .client)) }
                    // A fresh nonce per connection: the handshake is new every time.
                    try sync.addHandlers(ByteToMessageHandler(EnvelopeDecoder()),
                                         Handshake(handshake: ClientHandshake(hello: hello, token: authToken),
                                                   address: address, owner: self))
                }
            }
            .connect(host: host, port: port)
            .whenComplete { result in
                switch result {
                case let .success(channel):
                    guard !self.isStopped else {
                        channel.close(promise: nil)
                        return
                    }
                    self.channel = channel
                case let .failure(error):
                    self.attemptFailed(reason: socketErrorReason(error))
                }
            }
    }

    private func attemptFailed(reason: String, tls: Bool = false) {
        // The first failure in a row is worth a line; the rest of the streak is noise. A TLS failure is
        // a matter of certificates, not of a server still starting: an error, once per reason.
        if tls {
            if reason != tlsFailureLogged { logger.error("cannot connect, retrying", metadata: ["problem": "\(reason)"]) }
            tlsFailureLogged = reason
        } else if failedAttempts == 0 {
            logger.info("server not reachable, retrying", metadata: ["problem": "\(reason)"])
        } else {
            logger.debug("connect failed", metadata: ["problem": "\(reason)", "attempts": "\(failedAttempts + 1)"])
        }
        scheduleRetry()
    }

    private func scheduleRetry() {
        guard !isStopped else { return }
        let delay = backoff.delaySeconds(failures: failedAttempts, unitRandom: Double.random(in: 0...1))
        failedAttempts += 1
        retry = eventLoop.scheduleTask(in: TimeAmount(seconds: delay)) { self.connect() }
    }

    /// The server answered the hello: the connection is usable.
    fileprivate func handshakeSucceeded(_ channel: Channel, _ ok: HelloOk) {
        guard !isStopped else { return }
        failedAttempts = 0
        tlsFailureLogged = nil
        ready.withLockedValue { $0 = channel }
        logger.info("connected", metadata: ["server": "\(ok.serverName)"])
        onEvent(.connected(ok))
    }

    fileprivate func received(_ envelope: Envelope) {
        guard !isStopped else { return }
        onEvent(.received(envelope))
    }

    /// The connection closed. `report` is false for a connection that never got as far as a hello
    /// answer, which is retried like a failed connect (`tls`: its TLS handshake failed).
    fileprivate func connectionClosed(_ closed: Channel, reason: String, report: Bool, tls: Bool = false) {
        if channel === closed { channel = nil }
        ready.withLockedValue { if $0 === closed { $0 = nil } }
        if isStopped {
            logger.debug("closed: stopped")
            if report { onEvent(.disconnected(reason: "stopped")) }
            return
        }
        guard report else {
            attemptFailed(reason: reason, tls: tls)
            return
        }
        logger.warning("disconnected", metadata: ["problem": "\(reason)"])
        onEvent(.disconnected(reason: reason))
        scheduleRetry()
    }
}

/// The last handler of a `ReconnectingConnection`'s channel: sends the hello, completes the
/// authentication handshake when there is a token, waits for the hello's answer, then forwards every
/// envelope to the owner.
private final class Handshake: ChannelInboundHandler {
    typealias InboundIn = Envelope
    typealias OutboundOut = ByteBuffer

    private enum State {
        case waitingForHelloAnswer
        case connected
        /// The server refused the hello: the close is reported with this reason.
        case refused(String)
    }

    private var handshake: ClientHandshake
    private let address: String
    private let owner: ReconnectingConnection
    private var state = State.waitingForHelloAnswer
    private var closeReason = "server closed the connection"
    private var tlsFailed = false
    private var helloTimeout: Scheduled<Void>?

    init(handshake: ClientHandshake, address: String, owner: ReconnectingConnection) {
        self.handshake = handshake
        self.address = address
        self.owner = owner
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        do {
            let frame = try frameBuffer(Envelope(requestId: 1, message: .hello(handshake.hello)), allocator: channel.allocator)
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        } catch {
            closeReason = "cannot encode hello: \(error)"
            context.close(promise: nil)
            return
        }
        let seconds = TransportLimits.helloReplySeconds
        helloTimeout = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(seconds: seconds)) {
            self.closeReason = "no answer to hello within \(seconds) s"
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        switch state {
        case .connected:
            owner.received(envelope)
        case .waitingForHelloAnswer:
            switch handshake.receive(envelope.message) {
            case let .send(message):
                // The answer to the challenge; the hello's answer follows (the timeout still runs).
                do {
                    let frame = try frameBuffer(Envelope(requestId: 1, message: message), allocator: context.channel.allocator)
                    context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
                } catch {
                    state = .refused("cannot encode \(message.caseName): \(error)")
                    context.close(promise: nil)
                }
            case let .done(ok):
                helloTimeout?.cancel()
                state = .connected
                owner.handshakeSucceeded(context.channel, ok)
            case let .fail(reason):
                helloTimeout?.cancel()
                state = .refused(reason)
                context.close(promise: nil)
            }
        case .refused:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let failure = error as? TLSHandshakeFailure {
            closeReason = "\(ClientError.tlsHandshake(address: address, failure: failure))"
            tlsFailed = true
        } else if let error = error as? WireError {
            closeReason = "bad frame from server: \(error)"
        } else {
            closeReason = socketErrorReason(error)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        helloTimeout?.cancel()
        switch state {
        case .connected:
            owner.connectionClosed(context.channel, reason: closeReason, report: true)
        case let .refused(reason):
            owner.connectionClosed(context.channel, reason: reason, report: true)
        case .waitingForHelloAnswer:
            owner.connectionClosed(context.channel, reason: closeReason, report: false, tls: tlsFailed)
        }
        context.fireChannelInactive()
    }
}
