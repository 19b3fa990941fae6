import Prometheus

/// A worker's series. Thread-safe: every metric object takes its own lock, so the worker's queues
/// record into it directly.
public final class WorkerMetrics: Sendable {
    /// What an assignment asked for, as the `kind` label.
    public enum Kind: String, Sendable, CaseIterable {
        case train, validate, test
    }

    /// Every name with its HELP text (computed: the descriptor type is not Sendable).
    enum Name {
        static var steps: MetricNameDescriptor { .named(
            "ps_worker_steps_total", help: "Training steps whose gradients this worker computed and pushed.") }
        static var samples: MetricNameDescriptor { .named(
            "ps_worker_samples_total", help: "Training samples whose gradients this worker computed and pushed.") }
        static var pushBytes: MetricNameDescriptor { .named(
            "ps_worker_push_bytes_total", help: "Gradient bytes pushed (float32 payload, without framing).") }
        static var pullBytes: MetricNameDescriptor { .named(
            "ps_worker_pull_bytes_total", help: "Weight bytes received from the server (float32 payload, without framing).") }
        static var connected: MetricNameDescriptor { .named(
            "ps_worker_connected", help: "1 while connected to the server, 0 while reconnecting.") }
        static var computeSeconds: MetricNameDescriptor { .named(
            "ps_worker_compute_seconds", help: "Time to compute one assignment (all its chunks), by kind.") }
        static var pushSeconds: MetricNameDescriptor { .named(
            "ps_worker_push_seconds", help: "Time from handing a gradient push to the connection until the server acknowledges it.") }
    }

    let steps: Counter
    let samples: Counter
    let pushBytes: Counter
    let pullBytes: Counter
    let connected: Gauge
    let computeSeconds: [Kind: DurationHistogram]
    let pushSeconds: DurationHistogram

    public init(registry: PrometheusCollectorRegistry) {
        steps = registry.makeCounter(descriptor: Name.steps)
        samples = registry.makeCounter(descriptor: Name.samples)
        pushBytes = registry.makeCounter(descriptor: Name.pushBytes)
        pullBytes = registry.makeCounter(descriptor: Name.pullBytes)
        connected = registry.makeGauge(descriptor: Name.connected)
        computeSeconds = Dictionary(uniqueKeysWithValues: Kind.allCases.map { kind in
            (kind, registry.makeDurationHistogram(descriptor: Name.computeSeconds, labels: [("kind", kind.rawValue)],
                                                  buckets: DurationBuckets.standard))
        })
        pushSeconds = registry.makeDurationHistogram(descriptor: Name.pushSeconds, buckets: DurationBuckets.standard)
    }

    /// The connection to the server came up or went down.
    public func setConnected(_ up: Bool) {
        connected.set(to: up ? 1 : 0)
    }

    /// A weights tensor of `bytes` arrived.
    public func weightsReceived(bytes: Int) {
        pullBytes.increment(by: Int64(bytes))
    }

    /// An assignment's computation finished (whether or not its results can still be sent).
    public func computed(_ kind: Kind, duration: Duration) {
        computeSeconds[kind]!.record(duration)
    }

    /// A training assignment's gradients were handed to the connection.
    public func pushed(samples count: Int, bytes: Int) {
        steps.increment()
        samples.increment(by: Int64(count))
        pushBytes.increment(by: Int64(bytes))
    }

    /// The server acknowledged a push `duration` after it was sent.
    public func pushAcknowledged(after duration: Duration) {
        pushSeconds.record(duration)
    }
}
