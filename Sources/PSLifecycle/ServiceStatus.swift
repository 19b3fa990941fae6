import Foundation

/// Where a daemon is in its life, as its readiness probe (`/readyz`) and its supervisor (systemd's
/// notify socket) are told it.
public enum ServiceState: Equatable, Sendable {
    /// Not serving yet: ps-server before it listens, ps-worker before it first registers.
    case starting
    /// Serving: ps-server listens and its coordinator runs; ps-worker is registered with a server.
    case ready
    /// Running but not serving, for `reason` (ps-worker while it reconnects to its server).
    case unavailable(reason: String)
    /// Stopping (SIGTERM, SIGINT). Final: nothing that arrives while stopping makes the process ready again.
    case stopping

    public var isReady: Bool { self == .ready }

    /// One line for a person: the body of `/readyz` and systemd's STATUS= text.
    public var line: String {
        switch self {
        case .starting: "starting"
        case .ready: "ready"
        case let .unavailable(reason): "not ready: \(reason)"
        case .stopping: "stopping"
        }
    }

    /// The state after `next` is asked for. The only refused transition is out of `stopping`: a worker
    /// whose registration arrives while it stops must not report ready to a probe or to systemd.
    public func moving(to next: ServiceState) -> ServiceState {
        self == .stopping ? .stopping : next
    }
}

/// A daemon's current `ServiceState`, set by its runtime and read by its probes and its systemd
/// notifier, from any thread.
public final class ServiceStatus: @unchecked Sendable {
    private let lock = NSLock()
    private var state = ServiceState.starting
    private var watchers: [@Sendable (ServiceState) -> Void] = []

    public init() {}

    /// The state now.
    public var current: ServiceState {
        lock.withLock { state }
    }

    /// Moves to `next` (see `ServiceState.moving(to:)`) and tells the watchers when the state changed.
    public func enter(_ next: ServiceState) {
        lock.withLock {
            let moved = state.moving(to: next)
            guard moved != state else { return }
            state = moved
            // Under the lock, so every watcher sees the changes in the order they happened.
            for watcher in watchers { watcher(moved) }
        }
    }

    /// Calls `watcher` with the current state now and again after every change, under the status's
    /// lock: keep it quick (a non-blocking send) and never call `enter` from it.
    public func watch(_ watcher: @escaping @Sendable (ServiceState) -> Void) {
        lock.withLock {
            watchers.append(watcher)
            watcher(state)
        }
    }
}
