import PSLifecycle
import ServiceLifecycle

/// The worker as a service of ps-worker's `ServiceGroup`: `run()` starts connecting (retrying with
/// backoff), and when the group shuts down (SIGTERM, SIGINT) the heartbeat stops and the connection
/// closes cleanly, so the server reassigns this worker's chunks at once.
extension WorkerRuntime: Service {
    public func run() async throws {
        try await runUntilShutdown(start: { self.start() }, stop: { self.stop() })
    }
}
