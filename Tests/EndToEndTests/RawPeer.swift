import Foundation
import PSWire
#if canImport(Glibc)
import Glibc
#endif

/// A peer that writes whatever bytes a test wants (valid frames or not) to a running server and reads
/// its replies: blocking POSIX sockets with a receive timeout, nothing clever.
final class RawPeer {
    let fd: Int32

    /// `source`: the local IPv4 address to connect from (any 127.x.y.z on loopback), so that a test's
    /// peers can come from another address than its workers.
    init(address: String, source: String? = nil) throws {
        let parts = address.split(separator: ":")
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EMFILE) }
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            inet_pton(AF_INET, source, &local.sin_addr)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw POSIXError(.EADDRNOTAVAIL) }  // deinit closes fd
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(parts[1])!).bigEndian
        inet_pton(AF_INET, String(parts[0]), &addr.sin_addr)
        let result = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    func close() { _ = Glibc.close(fd) }

    func write(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    func send(_ message: Message, requestId: UInt64 = 1) throws {
        write(try encodeFrame(requestId: requestId, message: message))
    }

    private func readExactly(_ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n <= 0 { return nil }
            got += n
        }
        return out
    }

    /// The next envelope, or nil when the server closed the connection (or said nothing for 10 s).
    func read() -> Envelope? {
        guard let header = readExactly(4) else { return nil }
        let length = header.reduce(0) { $0 << 8 | Int($1) }
        guard let body = readExactly(length) else { return nil }
        return try? Envelope(payload: body)
    }

    /// Reads until an envelope matching `predicate` (skipping others); nil if the connection ends first.
    func read(until predicate: (Message) -> Bool) -> Envelope? {
        while let e = read() {
            if predicate(e.message) { return e }
        }
        return nil
    }

    /// Reads until an error reply; nil if none arrives before the connection closes.
    func readError() -> ErrorReply? {
        guard case let .error(e)? = read(until: { if case .error = $0 { return true }; return false })?.message else { return nil }
        return e
    }

    /// Whether the server has closed this connection (reads to the end, up to 10 s).
    func isClosedByServer() -> Bool {
        var byte: UInt8 = 0
        while true {
            let n = recv(fd, &byte, 1, 0)
            if n == 0 { return true }
            if n < 0 { return false }
        }
    }
}
