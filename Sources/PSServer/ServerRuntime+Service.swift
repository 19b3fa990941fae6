import PSLifecycle
import ServiceLifecycle

/// The server as a service of ps-server's `ServiceGroup`: `run()` starts it (binding the listener;
/// a failure fails the group), and when the group shuts down gracefully (SIGTERM, SIGINT) or is
/// cancelled it stops in `stop()`'s order: no new connections; the running job marked interrupted,
/// its waiters answered and every connection closed; the last models and job records written; then
/// the transport closed. `run()` returns once all of that is done.
extension ServerRuntime: Service {
    public func run() async throws {
        try await runUntilShutdown(start: { try self.start() }, stop: { self.stop() })
    }
}
