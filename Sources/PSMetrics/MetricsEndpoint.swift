import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Prometheus
import PSTransport
import PSLifecycle

/// Limits of the /metrics endpoint, each with its reason.
public enum MetricsEndpointLimits {
    /// A scraper that keeps a connection open without asking anything is closed after this long, so
    /// forgotten connections cannot pile up (Prometheus scrapes every 15–60 s and reconnects freely).
    public static let idleSeconds: Int64 = 60
    /// Pending connections: a handful of scrapers, never a crowd.
    public static let backlog: Int32 = 16
}

/// The bound endpoint could not be opened.
public struct MetricsEndpointError: Error, CustomStringConvertible {
    public var address: String
    public var reason: String
    public var description: String { "cannot serve metrics on \(address): \(reason)" }
}

/// Serves `GET /metrics` in the Prometheus text format (0.0.4) from a registry, and the probes
/// `GET /healthz` and `GET /readyz` (see `EndpointRoute`), over HTTP/1.1 on its own event-loop thread,
/// so scrapes and probes are answered whatever the process's other threads are doing.
/// Any other path is 404, any other method 405. With TLS (`--metrics-tls`) it is HTTPS, and with a CA
/// a scraper must present a certificate from it, as the cluster's own peers do.
public final class MetricsEndpoint: Sendable {
    /// The scrape path.
    public static let path = "/metrics"
    /// The liveness probe: 200 while the process serves this endpoint.
    public static let healthPath = "/healthz"
    /// The readiness probe: 200 while the process's `ServiceStatus` is ready, 503 otherwise.
    public static let readyPath = "/readyz"
    /// Prometheus's text exposition format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    private let group: MultiThreadedEventLoopGroup
    private let listener: any Channel

    /// "HOST:PORT" actually bound (the real port when 0 was asked).
    public let localAddress: String
    /// The bound port.
    public let port: Int

    /// Binds HOST:PORT (port 0 = any free port) and starts serving `registry` and the probes of
    /// `status`; logs `url=http://HOST:PORT/metrics` (https with `tls`).
    public static func start(host: String, port: Int, registry: PrometheusCollectorRegistry, status: ServiceStatus,
                             tls: ServerTLS? = nil,
                             logger: Logger) throws -> MetricsEndpoint {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: MetricsEndpointLimits.backlog)
            // A restarted process must get its port back while old scrape connections sit in TIME_WAIT.
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls { try sync.addHandler(tls.makeHandler()) }
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(IdleStateHandler(readTimeout: .seconds(MetricsEndpointLimits.idleSeconds)))
                    try sync.addHandler(MetricsHTTPHandler(registry: registry, status: status))
                }
            }
        let listener: any Channel
        do {
            listener = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw MetricsEndpointError(address: "\(host):\(port)", reason: "\(error)")
        }
        let endpoint = MetricsEndpoint(group: group, listener: listener)
        logger.info("serving metrics", metadata: ["url": "\(tls == nil ? "http" : "https")://\(endpoint.localAddress)\(Self.path)"])
        return endpoint
    }

    private init(group: MultiThreadedEventLoopGroup, listener: any Channel) {
        self.group = group
        self.listener = listener
        let address = listener.localAddress
        port = address?.port ?? 0
        let ip = address?.ipAddress ?? "unknown"
        if case .v6 = address { localAddress = "[\(ip)]:\(port)" } else { localAddress = "\(ip):\(port)" }
    }

    /// Closes the listener and its connections and stops the thread. Call once, from outside the endpoint's
    /// event loop (it waits for that thread).
    public func shutdown() {
        try? listener.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// What the endpoint answers: one response per path and method, decided without a socket.
///
/// - `GET /metrics`: 200 with the registry's text.
/// - `GET /healthz`: 200 `ok` whenever it is asked. It answers from the endpoint's own thread, so it
///   says the process is up and serving; it stays 200 while the process stops, so a supervisor never
///   kills a process that is finishing its last writes.
/// - `GET /readyz`: 200 `ready` while the status is ready, else 503 with the status's line
///   (`starting`, `not ready: reconnecting to …`, `stopping`).
/// - Another method on those paths: 405 with `Allow: GET`; any other path: 404.
public struct EndpointRoute: Equatable, Sendable {
    public var status: HTTPResponseStatus
    public var contentType: String
    public var body: [UInt8]
    /// The `Allow` header of a 405.
    public var allow: String?

    /// The response to `method` on `uri` (a query string is ignored); `metrics` renders the registry
    /// and is called only for a scrape.
    public static func respond(method: HTTPMethod, uri: String, state: ServiceState,
                               metrics: () -> [UInt8]) -> EndpointRoute {
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let paths = [MetricsEndpoint.path, MetricsEndpoint.healthPath, MetricsEndpoint.readyPath]
        guard paths.contains(path) else {
            return .text(.notFound, "not found; served: \(paths.joined(separator: ", "))")
        }
        guard method == .GET else {
            var refused = EndpointRoute.text(.methodNotAllowed, "only GET is allowed")
            refused.allow = "GET"
            return refused
        }
        switch path {
        case MetricsEndpoint.path:
            return EndpointRoute(status: .ok, contentType: MetricsEndpoint.contentType, body: metrics(), allow: nil)
        case MetricsEndpoint.healthPath:
            return .text(.ok, "ok")
        default:
            return .text(state.isReady ? .ok : .serviceUnavailable, state.line)
        }
    }

    private static func text(_ status: HTTPResponseStatus, _ line: String) -> EndpointRoute {
        EndpointRoute(status: status, contentType: "text/plain; charset=utf-8", body: Array((line + "\n").utf8), allow: nil)
    }
}

/// One HTTP connection: answers each request once its head and end have arrived (bodies are ignored).
/// Rendering the registry takes only its locks, never I/O, so it runs on the event loop.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let status: ServiceStatus
    private var request: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, status: ServiceStatus) {
        self.registry = registry
        self.status = status
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let route = EndpointRoute.respond(method: head.method, uri: head.uri, state: status.current) {
            registry.emitToBuffer()
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: route.contentType)
        if let allow = route.allow { headers.add(name: "Allow", value: allow) }
        headers.add(name: "Content-Length", value: "\(route.body.count)")
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: route.status, headers: headers))),
                      promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: route.body)))), promise: nil)
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !head.isKeepAlive {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
