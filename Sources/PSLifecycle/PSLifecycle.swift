import Dispatch
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
/// `ServiceGroup.run()` returns.
public struct StopOnSignal: Service {
    private let signals: [UnixSignal]
    private let onSignal: @Sendable (UnixSignal) -> Void

    /// `onSignal` runs once, with the first of `signals` to arrive (it logs "stopping").
    public init(_ signals: [UnixSignal] = [.sigterm, .sigint], onSignal: @escaping @Sendable (UnixSignal) -> Void) {
        self.signals = signals
        self.onSignal = onSignal
    }

    /// How the group must hold it: its end (the signal) shuts the whole group down gracefully.
    public var configuration: ServiceGroupConfiguration.ServiceConfiguration {
        .init(service: self, successTerminationBehavior: .gracefullyShutdownGroup)
    }

    /// Returns at the first signal, or when the group shuts down for another reason.
    public func run() async throws {
        for await signal in await UnixSignalsSequence(trapping: signals).cancelOnGracefulShutdown() {
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
