import Metrics
import Prometheus

// Prometheus metrics for the cluster's processes.
//
// Our own series are made on a `PrometheusCollectorRegistry` directly (not through swift-metrics'
// facades): only the registry's API takes a HELP text, which `promtool check metrics` requires, and
// histogram buckets per series. `bootstrap()` also puts swift-metrics behind the same registry, so a
// library that reports through the facades shows up on the same /metrics page.

/// Sets up the process's metrics. Call once, in `main`.
public enum MetricsBootstrap {
    /// Returns the registry every series of this process goes to and that `MetricsEndpoint` serves;
    /// bootstraps swift-metrics' `MetricsSystem` onto it (which may happen once per process).
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = DurationBuckets.standard
        MetricsSystem.bootstrap(factory)
        return registry
    }
}

/// Histogram buckets for durations.
public enum DurationBuckets {
    /// 10 µs to 10 s, ×2 to ×2.5 apart: a step's optimizer update on a small model takes tens of
    /// microseconds, a chunk's gradient milliseconds, a large model's step seconds.
    public static let standard: [Duration] = [
        .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
}

extension MetricNameDescriptor {
    /// A descriptor for the whole name `name` (written out in full, so the code can be searched for
    /// the names Prometheus shows) with its HELP text.
    static func named(_ name: String, help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
