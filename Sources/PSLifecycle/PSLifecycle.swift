import Dispatch
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// What ps-server and ps-worker share to run their parts as services in one `ServiceGroup`: the
/// signal that begins an orderly stop, and the bridge that runs a thread-and-queue part (the server
/// runtime, the worker runtime, the metrics endpoint) as a service.
///
/// The group is built with `StopOnSignal` first and the parts after it. A SIGTERM or SIGINT ends
/// `StopOnSignal`, which shuts the group down gracefully: the parts stop in reverse order (the
/// runtime before the metrics endpoint), each finishing its own stop before the next begins, and
/// `ServiceGroup.run()` returns. Whatever the parts are doing, the process is gone within
/// `exitAfterSeconds` of the signal (`StopWatchdog`).
public struct StopOnSignal: Service {
    private let signals: [UnixSignal]
    private let exitAfterSeconds: Double?
    private let onSignal: @Sendable (UnixSignal) -> Void

    /// `onSignal` runs once, with the first of `signals` to arrive (it logs "stopping"); a watchdog then
    /// ends the process `exitAfterSeconds` later if the orderly stop has not (nil: no watchdog).
    public init(_ signals: [UnixSignal] = [.sigterm, .sigint], exitAfterSeconds: Double? = StopLimits.orderlyStopSeconds,
                onSignal: @escaping @Sendable (UnixSignal) -> Void) {
        self.signals = signals
        self.exitAfterSeconds = exitAfterSeconds
        self.onSignal = onSignal
    }

    /// How the group must hold it: its end (the signal) shuts the whole group down gracefully.
    public var configuration: ServiceGroupConfiguration.ServiceConfiguration {
        .init(service: self, successTerminationBehavior: .gracefullyShutdownGroup)
    }

    /// Returns at the first signal, or when the group shuts down for another reason.
    public func run() async throws {
        for await signal in await UnixSignalsSequence(trapping: signals).cancelOnGracefulShutdown() {
            if let exitAfterSeconds { StopWatchdog.arm(seconds: exitAfterSeconds, after: "\(signal)") }
            onSignal(signal)
            return
        }
    }
}

/// The body of a service whose part is driven by threads and queues rather than tasks: `start` (a
/// thrown error fails the service, and the group with it), then wait until the group shuts down
/// gracefully or is cancelled, then `stop`. Both run on a Dispatch thread, since they block (binding
/// a socket, draining queues, waiting for event loops) and Swift's cooperative threads must not.
public func runUntilShutdown(start: @escaping @Sendable () throws -> Void,
                             stop: @escaping @Sendable () -> Void) async throws {
    try await onDispatchThread(start)
    // Returns on graceful shutdown and throws on cancellation (another part failed): the part stops either way.
    try? await gracefulShutdown()
    try await onDispatchThread(stop)
}

private func onDispatchThread(_ body: @escaping @Sendable () throws -> Void) async throws {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

public enum StopLimits {
    /// How long an orderly stop may take after SIGTERM or SIGINT before the process exits anyway: the
    /// server's last writes (a checkpoint of the largest model, its model file) take about a second here;
    /// systemd's and Kubernetes' own stop timeouts (90 s, 30 s) are well above it.
    public static let orderlyStopSeconds = 10.0
}

/// Ends the process a fixed time after a stop began if the orderly stop has not ended it by then (a part
/// stuck in a read, a peer that never answers): it logs that it did, then `_exit(1)`s without running
/// anything else. It runs on a thread of its own, so it needs no queue or cooperative thread to be free.
public enum StopWatchdog {
    private static let armed = NSLock()
    nonisolated(unsafe) private static var isArmed = false

    /// Starts the countdown (once per process; later calls do nothing). `after` names what began the stop.
    public static func arm(seconds: Double, after: String) {
        let first = armed.withLock {
            defer { isArmed = true }
            return !isArmed
        }
        guard first else { return }
        let thread = Thread {
            Thread.sleep(forTimeInterval: seconds)
            Logger(label: "ps-lifecycle").critical("the orderly stop did not finish in time; exiting now",
                                                   metadata: ["after": "\(after)", "seconds": "\(seconds)"])
            _exit(1)
        }
        thread.name = "stop-watchdog"
        thread.start()
    }
}
