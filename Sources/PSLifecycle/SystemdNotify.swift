#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import ServiceLifecycle

/// systemd's notification protocol (sd_notify(3)) without libsystemd: one datagram of `KEY=VALUE`
/// lines to the unix socket named by `$NOTIFY_SOCKET`. The rules are pure and tested as values; the
/// socket is `SystemdNotifySocket`, the service that uses both is `SystemdNotifier`.
public enum SystemdNotify {
    /// Where `$NOTIFY_SOCKET` points.
    public enum Address: Equatable, Sendable {
        /// A socket file (`/run/systemd/notify`).
        case path(String)
        /// A name in Linux's abstract socket namespace, written `@name` in the variable.
        case abstract(String)

        /// Bytes of `sun_path` on Linux, the one limit a socket address has: a path needs its NUL too.
        public static let pathBytesMax = 108

        /// Parses the variable; nil for an empty value, a relative path, a kind of socket we do not
        /// speak (systemd also accepts `vsock:`), or a name too long for a unix socket address.
        public init?(_ value: String) {
            if value.hasPrefix("/"), value.utf8.count < Self.pathBytesMax {
                self = .path(value)
            } else if value.hasPrefix("@"), value.utf8.count <= Self.pathBytesMax, value.utf8.count > 1 {
                self = .abstract(String(value.dropFirst()))
            } else {
                return nil
            }
        }
    }

    /// What to send when the daemon enters `state`: READY=1 once it serves, STOPPING=1 when it stops,
    /// and always a STATUS= line that `systemctl status` shows.
    public static func message(for state: ServiceState) -> String {
        switch state {
        case .ready: "READY=1\nSTATUS=\(state.line)"
        case .stopping: "STOPPING=1\nSTATUS=\(state.line)"
        case .starting, .unavailable: "STATUS=\(state.line)"
        }
    }

    /// The watchdog ping.
    public static let watchdogMessage = "WATCHDOG=1"

    /// How often to ping systemd's watchdog: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3)
    /// advises, so one late ping is not fatal. Nil when the watchdog is off, or when `$WATCHDOG_PID`
    /// names another process (the variables were inherited, not meant for us).
    public static func watchdogInterval(environment: [String: String], pid: Int32) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let microseconds = UInt64(text), microseconds > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], Int32(owner) != pid { return nil }
        return .microseconds(Int64(clamping: microseconds / 2))
    }
}

/// A datagram socket that sends notifications to one `SystemdNotify.Address`. Sends never block: a
/// notification the manager cannot take at once is dropped with an error, never waited for.
public final class SystemdNotifySocket: Sendable {
    public let address: SystemdNotify.Address
    private let descriptor: Int32

    /// The socket could not be made or a datagram could not be sent.
    public struct Failure: Error, CustomStringConvertible {
        public var address: SystemdNotify.Address
        public var operation: String
        public var errno: Int32
        public var description: String { "\(operation) on the systemd notify socket \(address): \(String(cString: strerror(errno)))" }
    }

    public init(address: SystemdNotify.Address) throws {
        self.address = address
        #if os(Linux)
        let kind = Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #else
        let kind = SOCK_DGRAM
        #endif
        descriptor = socket(AF_UNIX, kind, 0)
        guard descriptor >= 0 else { throw Failure(address: address, operation: "socket", errno: errno) }
    }

    deinit { close(descriptor) }

    /// Sends `message` as one datagram.
    public func send(_ message: String) throws {
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        let name: [UInt8]
        switch address {
        case let .path(path): name = Array(path.utf8) + [0]
        case let .abstract(abstract): name = [0] + Array(abstract.utf8)  // a leading NUL, no trailing one
        }
        guard name.count <= SystemdNotify.Address.pathBytesMax else {
            throw Failure(address: address, operation: "sendto", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: name) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + name.count)
        #if os(Linux)
        let flags = Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)
        #else
        let flags = MSG_DONTWAIT
        #endif
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &socketAddress) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                sendto(descriptor, bytes, bytes.count, flags, address, length)
            }
        }
        guard sent == bytes.count else { throw Failure(address: address, operation: "sendto", errno: errno) }
    }
}

/// Tells systemd about the daemon when it was started with `Type=notify`: the state changes of
/// `status` (READY=1, STOPPING=1, STATUS=) as they happen, and, when `WatchdogSec=` is set, a
/// WATCHDOG=1 ping every half period, each sent only after `alive` returns. The daemons pass a turn
/// of their main queue as `alive`, so a queue that is stuck stops the pings and systemd restarts the
/// process.
///
/// Put it in the group right after `StopOnSignal`: services stop in reverse order, so the pings go on
/// while the runtime writes its last records.
public struct SystemdNotifier: Service {
    private let socket: SystemdNotifySocket
    private let status: ServiceStatus
    private let watchdogInterval: Duration?
    private let alive: @Sendable () async -> Void
    private let logger: Logger

    /// Nil when the process was not started by systemd with a notify socket (`$NOTIFY_SOCKET` unset);
    /// throws when the variable is there but unusable, which is a unit's mistake worth stopping for.
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment, status: ServiceStatus,
                 logger: Logger, alive: @escaping @Sendable () async -> Void) throws {
        guard let value = environment["NOTIFY_SOCKET"] else { return nil }
        guard let address = SystemdNotify.Address(value) else {
            throw SystemdNotifyError(reason: "NOTIFY_SOCKET=\(value) is not a unix socket path or @name")
        }
        socket = try SystemdNotifySocket(address: address)
        self.status = status
        watchdogInterval = SystemdNotify.watchdogInterval(environment: environment, pid: getpid())
        self.alive = alive
        self.logger = logger
    }

    public func run() async throws {
        status.watch { [socket, logger] state in
            do { try socket.send(SystemdNotify.message(for: state)) } catch {
                logger.warning("cannot notify systemd", metadata: ["error": "\(error)"])
            }
        }
        guard let interval = watchdogInterval else {
            try? await gracefulShutdown()
            return
        }
        logger.debug("pinging systemd's watchdog", metadata: ["interval": "\(interval)"])
        try? await cancelWhenGracefulShutdown { [socket, alive, logger] in
            while true {
                try await Task.sleep(for: interval)
                await alive()
                do { try socket.send(SystemdNotify.watchdogMessage) } catch {
                    logger.warning("cannot ping systemd's watchdog", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}

/// `$NOTIFY_SOCKET` is set but cannot be used.
public struct SystemdNotifyError: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}
