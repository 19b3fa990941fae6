import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
@testable import PSTransport
import PSWire
import XCTest

let testLogger: Logger = {
    var logger = Logger(label: "PSTransportTests")
    logger.logLevel = .warning
    return logger
}()

/// Polls `condition` every 10 ms until it holds or `seconds` pass; false on timeout.
func eventually(within seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = NIODeadline.now() + TimeAmount(seconds: seconds)
    while NIODeadline.now() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// A thread-safe list that event handlers append to and tests read.
final class Recorder<Item: Sendable>: Sendable {
    private let box = NIOLockedValueBox<[Item]>([])
    func append(_ item: Item) { box.withLockedValue { $0.append(item) } }
    var items: [Item] { box.withLockedValue { $0 } }
}

/// A TransportServer with a tiny protocol for tests: hello → helloOk (or, for the name "refuse-me",
/// a versionMismatch error and close); cancelJob "silence" → no answer; cancelJob "bye" → `submitted`
/// as the last message before close; anything else is echoed with its request id.
final class EchoServer: Sendable {
    let server: TransportServer
    let events = Recorder<ServerEvent>()

    init(port: Int = 0, limits: ConnectionLimits = ConnectionLimits(), tls: ServerTLS? = nil,
         authToken: AuthToken? = nil) throws {
        let events = events
        let serverBox = NIOLockedValueBox<TransportServer?>(nil)
        server = try TransportServer(
            host: "127.0.0.1", port: port, eventLoopThreads: 1, limits: limits, tls: tls, authToken: authToken,
            logger: testLogger
        ) { event in
            events.append(event)
            guard case let .received(id, envelope) = event, let server = serverBox.withLockedValue({ $0 })
            else { return }
            switch envelope.message {
            case let .hello(hello) where hello.name == "refuse-me":
                server.close(id, after: Envelope(requestId: envelope.requestId, message: .error(ErrorReply(
                    code: .versionMismatch, message: "protocol version 9 is not 1"))))
            case .hello:
                server.send(Envelope(requestId: envelope.requestId,
                                     message: .helloOk(HelloOk(serverName: "echo"))), to: id)
            case .cancelJob("silence"):
                break
            case .cancelJob("bye"):
                server.close(id, after: Envelope(requestId: envelope.requestId, message: .submitted(jobId: "bye")))
            default:
                server.send(envelope, to: id)
            }
        }
        serverBox.withLockedValue { $0 = server }
    }

    var address: String { server.localAddress }
    var port: Int { try! parseAddress(address).port }

    var rejections: [WireError] {
        events.items.compactMap { if case let .rejected(_, _, error) = $0 { return error } else { return nil } }
    }

    /// The reasons of the connections that failed the TLS handshake, in order.
    var tlsRejections: [TLSHandshakeFailure.Reason] {
        events.items.compactMap { if case let .tlsRejected(_, _, failure) = $0 { failure.reason } else { nil } }
    }

    var connectionCount: Int {
        events.items.filter { if case .connected = $0 { return true } else { return false } }.count
    }
}

/// A port that was free a moment ago (a server bound it and let it go).
func freePort() throws -> Int {
    let server = try EchoServer()
    defer { server.server.shutdown() }
    return server.port
}

/// A connection that writes raw bytes and records the envelopes it gets back, for peers that break
/// the protocol on purpose.
final class RawPeer {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let channel: Channel
    let received = Recorder<Envelope>()

    /// `source`: the local IP to connect from (any 127.x.y.z works on loopback), so that a test can be
    /// another peer address than its server's other clients.
    init(address: String, source: String? = nil) throws {
        let (host, port) = try parseAddress(address)
        let received = received
        var bootstrap = ClientBootstrap(group: group)
        if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        channel = try bootstrap
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(EnvelopeDecoder()), Collector(received: received))
                }
            }
            .connect(host: host, port: port).wait()
    }

    deinit {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    func write(_ bytes: [UInt8]) throws {
        try channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).wait()
    }

    /// Writes without waiting for the bytes to leave (a server that stopped reading leaves them queued).
    func send(_ bytes: [UInt8]) {
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
    }

    /// Says hello and waits for helloOk: the connection is established.
    func hello(name: String = "raw", within seconds: Double = 5) throws {
        try write(frame(.hello(Hello(role: .client, name: name)), requestId: 1))
        guard eventually(within: seconds, { received.items.contains { if case .helloOk = $0.message { true } else { false } } }) else {
            throw ClientError.timeout(address: "\(channel.remoteAddress!)", waitingFor: "helloOk")
        }
    }

    /// The error replies received so far.
    var errors: [ErrorReply] {
        received.items.compactMap { if case let .error(reply) = $0.message { reply } else { nil } }
    }

    /// Whether the server closed the connection within `seconds`.
    func closedByServer(within seconds: Double = 5) -> Bool {
        eventually(within: seconds) { !channel.isActive }
    }

    final class Collector: ChannelInboundHandler {
        typealias InboundIn = Envelope
        let received: Recorder<Envelope>
        init(received: Recorder<Envelope>) { self.received = received }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { received.append(unwrapInboundIn(data)) }
    }
}

/// The 4-byte big-endian length prefix of a frame.
func lengthPrefix(_ length: Int) -> [UInt8] {
    (0..<4).map { UInt8(truncatingIfNeeded: length >> (8 * (3 - $0))) }
}

func frame(_ message: Message, requestId: UInt64 = 0) -> [UInt8] {
    try! encodeFrame(requestId: requestId, message: message)
}
