import PSLifecycle
import ServiceLifecycle

/// A started `/metrics` endpoint as a service of the process's `ServiceGroup`: it serves until the
/// group shuts down, then closes. The endpoint is bound before the group runs (a port that is taken
/// stops the process before anything else starts); put the service before the part it reports on, so
/// that part stops first and a last scrape still sees its final figures.
public struct MetricsEndpointService: Service {
    public let endpoint: MetricsEndpoint

    public init(_ endpoint: MetricsEndpoint) {
        self.endpoint = endpoint
    }

    public func run() async throws {
        try await runUntilShutdown(start: {}, stop: { [endpoint] in endpoint.shutdown() })
    }
}
