import Prometheus
import PSTransport

/// The coordinator's series: names, help texts, labels and buckets in one place. `ServerMetrics`
/// (in PSServer) feeds it from the runtime's observations.
///
/// Not thread-safe: use it from one queue (the coordinator's). The metric objects themselves are
/// thread-safe, so the endpoint may render them at any time.
public final class ServerSeries {
    /// Why a worker left, as the `reason` label (a short, fixed set: free text would make a series per message).
    public enum LeaveReason: String, CaseIterable, Sendable {
        case disconnected
        case heartbeatTimeout = "heartbeat_timeout"
        case other
    }

    /// Every name with its HELP text (computed: the descriptor type is not Sendable).
    enum Name {
        static var steps: MetricNameDescriptor { .named("ps_steps_total", help: "Training steps applied.") }
        static var samples: MetricNameDescriptor { .named(
            "ps_samples_total", help: "Training samples in the applied steps' batches.") }
        static var trainLoss: MetricNameDescriptor { .named(
            "ps_train_loss", help: "Mean training loss of the job's latest applied batch.") }
        static var validationLoss: MetricNameDescriptor { .named(
            "ps_validation_loss", help: "Mean validation loss after the job's latest epoch.") }
        static var validationAccuracy: MetricNameDescriptor { .named(
            "ps_validation_accuracy", help: "Validation accuracy (fraction correct) after the job's latest epoch.") }
        static var stepApply: MetricNameDescriptor { .named(
            "ps_step_apply_seconds",
            help: "Time the server took over the push that completed a step: the coordinator, then the shard's aggregation, optimizer and the next assignments.") }
        static var pushStaleness: MetricNameDescriptor { .named(
            "ps_push_staleness",
            help: "ssp/async: versions applied between the weights a batch was computed on and those it was applied to.") }
        static var pushBytes: MetricNameDescriptor { .named(
            "ps_push_bytes_total", help: "Gradient bytes received in accepted pushes (float32 payload, without framing).") }
        static var pushes: MetricNameDescriptor { .named(
            "ps_pushes_total", help: "Gradient pushes accepted; duplicate=\"true\": received before, acknowledged and dropped.") }
        static var backupChunks: MetricNameDescriptor { .named(
            "ps_backup_chunks_total", help: "Backup copies of a straggler's chunks settled in sync steps; outcome=\"won\": the copy came first (or its original holder left), \"lost\": the original came first and the copy was dropped.") }
        static var heartbeatMisses: MetricNameDescriptor { .named(
            "ps_heartbeat_misses_total", help: "Workers removed for missing their heartbeat deadline.") }
        static var rejectedFrames: MetricNameDescriptor { .named(
            "ps_rejected_frames_total", help: "Frames the transport rejected (oversized or undecodable); each closed its connection.") }
        static var tlsHandshakeFailures: MetricNameDescriptor { .named(
            "ps_tls_handshake_failures_total",
            help: "Connections closed because the peer failed the TLS handshake, by reason (unknown_ca, expired_certificate, no_certificate, not_tls, ...).") }
        static var workersJoined: MetricNameDescriptor { .named("ps_workers_joined_total", help: "Workers that registered.") }
        static var workersLeft: MetricNameDescriptor { .named(
            "ps_workers_left_total", help: "Workers removed from the cluster, by reason.") }
        static var workers: MetricNameDescriptor { .named("ps_workers", help: "Registered workers by state.") }
        static var jobs: MetricNameDescriptor { .named("ps_jobs", help: "Jobs by state, since the server started.") }
        static var authFailures: MetricNameDescriptor { .named(
            "ps_auth_failures_total", help: "Connections that failed the authentication handshake, by reason: missing (no token), mismatch (another token), protocol (out of order), abandoned (closed after the challenge).") }
        static var connectionsRefused: MetricNameDescriptor { .named(
            "ps_connections_refused_total", help: "Connections the transport's limits refused or closed, by reason: connections_max, per_address_max (answered busy), evicted (closed before their hello to make room), hello_timeout, frame_stalled.") }
        static var checkpointSeconds: MetricNameDescriptor { .named(
            "ps_checkpoint_seconds", help: "Time to encode and durably write a checkpoint (off the coordinator's queue).") }
        static var checkpointBytes: MetricNameDescriptor { .named(
            "ps_checkpoint_bytes", help: "Size of the last checkpoint written.") }
        static var checkpointFailures: MetricNameDescriptor { .named(
            "ps_checkpoint_failures_total", help: "Checkpoints that could not be written (training went on; the previous one was kept).") }
    }

    /// The series that carry a `job_id` label.
    struct JobSeries {
        let steps: Counter
        let samples: Counter
        let trainLoss: Gauge
        var validationLoss: Gauge?
        var validationAccuracy: Gauge?
    }

    private let registry: PrometheusCollectorRegistry
    private let pushBytes: Counter
    private let pushes: (fresh: Counter, duplicate: Counter)
    private let backups: (won: Counter, lost: Counter)
    private let stepApply: DurationHistogram
    private let pushStaleness: ValueHistogram
    private let heartbeatMisses: Counter
    private let rejectedFrames: Counter
    private let tlsHandshakeFailures: [TLSHandshakeFailure.Reason: Counter]
    private let workersJoined: Counter
    private let workersLeft: [LeaveReason: Counter]
    private var authFailures: [String: Counter] = [:]
    private let connectionsRefused: [ConnectionRefusal: Counter]
    private let checkpointSeconds: DurationHistogram
    private let checkpointBytes: Gauge
    private let checkpointFailures: Counter
    private var jobs: [String: JobSeries] = [:]

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        pushBytes = registry.makeCounter(descriptor: Name.pushBytes)
        pushes = (registry.makeCounter(descriptor: Name.pushes, labels: [("duplicate", "false")]),
                  registry.makeCounter(descriptor: Name.pushes, labels: [("duplicate", "true")]))
        backups = (registry.makeCounter(descriptor: Name.backupChunks, labels: [("outcome", "won")]),
                   registry.makeCounter(descriptor: Name.backupChunks, labels: [("outcome", "lost")]))
        stepApply = registry.makeDurationHistogram(descriptor: Name.stepApply, buckets: DurationBuckets.standard)
        heartbeatMisses = registry.makeCounter(descriptor: Name.heartbeatMisses)
        // Integers: each bucket is "at most n versions stale", up to the async safety limit.
        pushStaleness = registry.makeValueHistogram(descriptor: Name.pushStaleness, buckets: [0, 1, 2, 3, 4, 6, 8, 16, 32])
        rejectedFrames = registry.makeCounter(descriptor: Name.rejectedFrames)
        tlsHandshakeFailures = Dictionary(uniqueKeysWithValues: TLSHandshakeFailure.Reason.allCases.map { reason in
            (reason, registry.makeCounter(descriptor: Name.tlsHandshakeFailures, labels: [("reason", reason.rawValue)]))
        })
        workersJoined = registry.makeCounter(descriptor: Name.workersJoined)
        workersLeft = Dictionary(uniqueKeysWithValues: LeaveReason.allCases.map { reason in
            (reason, registry.makeCounter(descriptor: Name.workersLeft, labels: [("reason", reason.rawValue)]))
        })
        connectionsRefused = Dictionary(uniqueKeysWithValues: ConnectionRefusal.allCases.map { reason in
            (reason, registry.makeCounter(descriptor: Name.connectionsRefused, labels: [("reason", reason.rawValue)]))
        })
        checkpointSeconds = registry.makeDurationHistogram(descriptor: Name.checkpointSeconds, buckets: DurationBuckets.standard)
        checkpointBytes = registry.makeGauge(descriptor: Name.checkpointBytes)
        checkpointFailures = registry.makeCounter(descriptor: Name.checkpointFailures)
        for reason in Self.authFailureReasons {
            authFailures[reason] = registry.makeCounter(descriptor: Name.authFailures, labels: [("reason", reason)])
        }
    }

    /// Reasons an authentication can fail, each a series from the start (zeros included).
    public static let authFailureReasons = ["missing", "mismatch", "protocol", "abandoned"]

    /// `count` more connections were refused or closed by the transport's limits for `reason`.
    public func connectionsRefused(_ reason: ConnectionRefusal, count: Int) {
        connectionsRefused[reason]!.increment(by: Int64(count))
    }

    /// A connection failed the authentication handshake for `reason`.
    public func authenticationFailed(reason: String) {
        let label = Self.authFailureReasons.contains(reason) ? reason : "protocol"
        authFailures[label]?.increment()
    }

    // MARK: Checkpoints

    /// A checkpoint of `bytes` was written in `duration`.
    public func checkpointWritten(bytes: Int, duration: Duration) {
        checkpointSeconds.record(duration)
        checkpointBytes.set(to: Double(bytes))
    }

    /// A checkpoint could not be written.
    public func checkpointFailed() { checkpointFailures.increment() }

    // MARK: Pushes, peers, frames

    public func pushAccepted(bytes: Int, duplicate: Bool) {
        pushBytes.increment(by: Int64(bytes))
        (duplicate ? pushes.duplicate : pushes.fresh).increment()
    }

    public func pushStaleness(_ staleness: Int) { pushStaleness.record(Double(staleness)) }
    /// A backup copy was settled: `won`, its push came first.
    public func backupChunks(won: Bool) { (won ? backups.won : backups.lost).increment() }

    public func heartbeatMissed() { heartbeatMisses.increment() }
    public func frameRejected() { rejectedFrames.increment() }
    public func tlsHandshakeFailed(_ reason: TLSHandshakeFailure.Reason) { tlsHandshakeFailures[reason]!.increment() }
    public func workerJoined() { workersJoined.increment() }
    public func workerLeft(_ reason: LeaveReason) { workersLeft[reason]!.increment() }

    /// Workers by state (`ps_workers{state}`); pass every state, zeros included, so each series exists.
    public func setWorkers(_ countsByState: [(state: String, count: Int)]) {
        for (state, count) in countsByState {
            registry.makeGauge(descriptor: Name.workers, labels: [("state", state)]).set(to: Double(count))
        }
    }

    /// Jobs by state (`ps_jobs{state}`); pass every state, zeros included.
    public func setJobs(_ countsByState: [(state: String, count: Int)]) {
        for (state, count) in countsByState {
            registry.makeGauge(descriptor: Name.jobs, labels: [("state", state)]).set(to: Double(count))
        }
    }

    // MARK: Per job

    /// Creates `jobId`'s series (at zero), so they exist from submission on.
    public func addJob(_ jobId: String) {
        _ = series(of: jobId)
    }

    /// A training step of `jobId` was applied to a batch of `samples`.
    public func stepCompleted(jobId: String, samples: Int, batchLoss: Double, applyDuration: Duration) {
        stepCounted(jobId: jobId, samples: samples, batchLoss: batchLoss)
        stepApplied(duration: applyDuration)
    }

    /// A step of `jobId` is complete: its batch's size and mean loss.
    public func stepCounted(jobId: String, samples: Int, batchLoss: Double) {
        let job = series(of: jobId)
        job.steps.increment()
        job.samples.increment(by: Int64(samples))
        job.trainLoss.set(to: batchLoss)
    }

    /// The time the server took to apply a step once its last push was in.
    public func stepApplied(duration: Duration) {
        stepApply.record(duration)
    }

    /// An epoch of `jobId` ended; the validation figures are nil when the job has no validation data.
    public func epochCompleted(jobId: String, validationLoss: Double?, validationAccuracy: Double?) {
        var job = series(of: jobId)
        let labels = [("job_id", jobId)]
        if let validationLoss {
            job.validationLoss = job.validationLoss ?? registry.makeGauge(descriptor: Name.validationLoss, labels: labels)
            job.validationLoss!.set(to: validationLoss)
        }
        if let validationAccuracy {
            job.validationAccuracy = job.validationAccuracy
                ?? registry.makeGauge(descriptor: Name.validationAccuracy, labels: labels)
            job.validationAccuracy!.set(to: validationAccuracy)
        }
        jobs[jobId] = job
    }

    /// Removes `jobId`'s series from the registry (they stop being exported).
    public func forgetJob(_ jobId: String) {
        guard let job = jobs.removeValue(forKey: jobId) else { return }
        registry.unregisterCounter(job.steps)
        registry.unregisterCounter(job.samples)
        registry.unregisterGauge(job.trainLoss)
        for gauge in [job.validationLoss, job.validationAccuracy].compactMap({ $0 }) {
            registry.unregisterGauge(gauge)
        }
    }

    private func series(of jobId: String) -> JobSeries {
        if let job = jobs[jobId] { return job }
        let labels = [("job_id", jobId)]
        let job = JobSeries(steps: registry.makeCounter(descriptor: Name.steps, labels: labels),
                            samples: registry.makeCounter(descriptor: Name.samples, labels: labels),
                            trainLoss: registry.makeGauge(descriptor: Name.trainLoss, labels: labels))
        jobs[jobId] = job
        return job
    }
}
