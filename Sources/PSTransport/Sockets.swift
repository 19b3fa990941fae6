// Small socket helpers shared by the server and the clients: addresses as text, socket errors as
// short reasons, and closing after a last message.
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// A `HOST:PORT` text that is not one.
public struct AddressError: Error, Equatable, CustomStringConvertible {
    public var text: String
    public var description: String { "'\(text)' is not HOST:PORT" }
}

/// "HOST:PORT" → parts; errors name the text ("'abc' is not HOST:PORT"). An IPv6 host is written
/// in brackets ("[::1]:7070"); the port is 0...65535.
public func parseAddress(_ text: String) throws -> (host: String, port: Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
          (0...65535).contains(port) else { throw AddressError(text: text) }
    var host = text[..<colon]
    if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
    guard !host.isEmpty, !host.contains(" ") else { throw AddressError(text: text) }
    return (String(host), port)
}

/// "127.0.0.1:53422", "[::1]:7070", or "unknown" for an address NIO does not know.
func addressText(_ address: SocketAddress?) -> String {
    guard let address, let ip = address.ipAddress, let port = address.port else { return "unknown" }
    if case .v6 = address { return "[\(ip)]:\(port)" }
    return "\(ip):\(port)"
}

/// A short reason why a connect or a read failed: "connection refused", "timed out after 5000 ms".
func socketErrorReason(_ error: Error) -> String {
    switch error {
    case let error as IOError:
        return String(cString: strerror(error.errnoCode)).lowercased()
    case let error as NIOConnectionError:
        if let dns = error.dnsAError ?? error.dnsAAAAError { return "cannot resolve host: \(dns)" }
        if let first = error.connectionErrors.first { return socketErrorReason(first.error) }
        return "no address to connect to"
    case ChannelError.connectTimeout(let amount):
        return "timed out after \(amount.nanoseconds / 1_000_000) ms"
    default:
        return "\(error)"
    }
}

extension TimeAmount {
    init(seconds: Double) {
        self = .nanoseconds(Int64((seconds * 1e9).rounded()))
    }
}

extension ChannelOptions {
    /// Small control messages must not wait behind Nagle's algorithm for an acknowledgement.
    static let noDelay = ChannelOptions.socketOption(.tcp_nodelay)
}

/// How a connection reads: a megabyte of weights or gradients per step per connection, next to small
/// control messages. NIO's default reads at most 64 KiB per read call and 4 reads per event-loop turn,
/// so one frame took dozens of reads and event-loop turns, each read copied again into the frame
/// decoder's cumulation buffer. Reads grow to the frame size instead (and shrink back for small
/// messages), so a frame usually arrives in a few reads and the decoder takes the read buffer as is.
enum ReadTuning {
    static let allocator = AdaptiveRecvByteBufferAllocator(minimum: 1 << 10, initial: 64 << 10, maximum: 8 << 20)
    static let messagesPerRead: UInt = 16
}

/// Writes `last` (if any), then closes `channel`: the output side first, so the peer reads `last` and
/// then end of stream, and the whole channel when the peer closes or `TransportLimits.lingerSeconds`
/// later. Closing at once while the peer is still sending would make the kernel reset the connection,
/// which can destroy `last` before the peer reads it.
func closeAfter(_ last: ByteBuffer?, on channel: Channel) {
    let written = last.map { channel.writeAndFlush($0) } ?? channel.eventLoop.makeSucceededVoidFuture()
    written.whenComplete { _ in
        channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) }
        channel.eventLoop.scheduleTask(in: TimeAmount(seconds: TransportLimits.lingerSeconds)) {
            channel.close(promise: nil)
        }
    }
}

/// Descriptors a server needs beyond one per connection: its listener, data files, the metrics endpoint.
public let serverFileDescriptorsSpare = 64

/// Raises this process's open-file limit (RLIMIT_NOFILE) to its hard limit and returns the limit now in
/// force. A server holds a descriptor per connection (up to `TransportLimits.connectionsMax`), and at the
/// usual soft limit of 1024 it would stop accepting (every client and worker locked out) before its own
/// connection limits, which close idle connections to make room, could act.
@discardableResult
public func raiseOpenFileLimit() -> Int {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return -1 }
    if limit.rlim_cur < limit.rlim_max {
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
    }
    return Int(clamping: limit.rlim_cur)  // RLIM_INFINITY (all ones) clamps to Int.max
}
