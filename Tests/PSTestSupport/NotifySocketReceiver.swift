#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A unix datagram socket bound where systemd would listen, so a test can read what a daemon sends
/// through `$NOTIFY_SOCKET`: a socket file (`/path`) or a name in Linux's abstract namespace (`@name`).
public final class NotifySocketReceiver: @unchecked Sendable {
    /// The value to put in the daemon's `$NOTIFY_SOCKET`.
    public let notifySocket: String
    private let descriptor: Int32

    /// A fresh abstract name (nothing to clean up afterwards).
    public static func abstractName() -> String { "@ps-notify-test-\(UUID().uuidString)" }

    /// A fresh socket path, short enough for a unix socket address.
    public static func temporaryPath() -> String { "/tmp/ps-notify-\(UUID().uuidString.prefix(8)).sock" }

    public init(_ notifySocket: String = abstractName()) throws {
        self.notifySocket = notifySocket
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(.EIO) }
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        // An abstract name begins with a NUL and has none after it; a path ends with one.
        let name = notifySocket.hasPrefix("@") ? [0] + Array(notifySocket.utf8.dropFirst()) : Array(notifySocket.utf8) + [0]
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: name) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + name.count)
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0 else {
            let code = errno
            close(descriptor)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
    }

    deinit {
        close(descriptor)
        if notifySocket.hasPrefix("/") { unlink(notifySocket) }
    }

    /// The next datagram, or nil after `timeoutSeconds` without one.
    public func next(timeoutSeconds: Double = 5) -> String? {
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(timeoutSeconds * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// `next` on a Dispatch thread, so waiting never holds one of Swift's cooperative threads.
    public func nextAsync(timeoutSeconds: Double = 5) async -> String? {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: self.next(timeoutSeconds: timeoutSeconds)) }
        }
    }

    /// Datagrams until one equals `wanted` (returned with those before it), or nil after
    /// `timeoutSeconds` without any.
    public func messages(until wanted: String, timeoutSeconds: Double = 20) -> [String]? {
        var seen: [String] = []
        while let message = next(timeoutSeconds: timeoutSeconds) {
            seen.append(message)
            if message == wanted { return seen }
        }
        return nil
    }
}
