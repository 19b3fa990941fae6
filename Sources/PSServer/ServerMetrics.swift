import Dispatch
import PSControl
import PSMetrics
import PSTransport
import PSWire

/// Limits of the server's metrics, each with its reason.
public enum ServerMetricsLimits {
    /// Finished jobs whose per-job series (`job_id` label) are still exported: long enough for the next
    /// scrapes to see their final values, while a long-lived server does not grow series forever.
    public static let finishedJobsRetained = 16
    /// How often the worker-state gauges are refreshed from the coordinator: states change without an
    /// observation (a heartbeat turns late), and once a second is fresh for any scrape interval.
    public static let workerStatesRefreshSeconds = 1.0
}

/// Feeds the server's Prometheus series from the runtime's observations (and, once a second, the
/// workers' states from the coordinator's status and the transport's refusal counts). Everything runs
/// on the coordinator's queue, which is why the mutable state here needs no lock.
public final class ServerMetrics: @unchecked Sendable {
    private let series: ServerSeries
    /// Jobs that have not reached a final state, and their state.
    private var liveJobs: [String: JobState] = [:]
    private var jobCounts: [JobState: Int] = [:]
    /// Finished jobs whose series are still exported, oldest first.
    private var finishedJobs: [String] = []
    private var refresh: (any DispatchSourceTimer)?
    /// The transport's refusal counts at the last refresh (they are counted there, not observed).
    private var refusalsCounted: [ConnectionRefusal: Int] = [:]

    public init(series: ServerSeries) {
        self.series = series
        series.setJobs(JobState.allCases.map { ($0.rawValue, 0) })
        series.setWorkers(Self.reportedWorkerStates.map { ($0.rawValue, 0) })
    }

    deinit { refresh?.cancel() }

    /// The states `clusterStatus` gives a registered worker (`lost` workers are no longer listed).
    static let reportedWorkerStates: [WorkerState] = [.idle, .working, .suspect]

    /// Observes `runtime` (call before `runtime.start()`). The runtime keeps this object alive.
    public func attach(to runtime: ServerRuntime) {
        runtime.observe { observation in self.record(observation) }
        let timer = DispatchSource.makeTimerSource(queue: runtime.queue)
        let interval = ServerMetricsLimits.workerStatesRefreshSeconds
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [weak self, weak runtime] in
            guard let self, let runtime, runtime.coordinator != nil else { return }
            self.refreshWorkers(runtime.coordinator.clusterStatus(now: runtime.now))
            if let transport = runtime.transport { self.refreshRefusals(transport.refusals) }
        }
        timer.resume()
        refresh = timer
    }

    func record(_ observation: Observation) {
        switch observation {
        case let .stepCompleted(jobId, _, _, batchLoss, batchSize, _, _):
            series.stepCounted(jobId: jobId, samples: batchSize, batchLoss: batchLoss)
        case let .stepApplied(_, seconds):
            series.stepApplied(duration: .nanoseconds(Int64(seconds * 1e9)))
        case let .epochCompleted(jobId, report, _):
            series.epochCompleted(jobId: jobId, validationLoss: report.validationLoss,
                                  validationAccuracy: report.validationAccuracy)
        case let .jobState(jobId, _, state):
            jobChanged(jobId, to: state)
        case .workerJoined:
            series.workerJoined()
        case let .workerLeft(_, reason):
            series.workerLeft(Self.leaveReason(reason))
        case .heartbeatMissed:
            series.heartbeatMissed()
        case let .pushStaleness(_, staleness):
            series.pushStaleness(staleness)
        case let .pushAccepted(bytes, duplicate):
            series.pushAccepted(bytes: bytes, duplicate: duplicate)
        case .frameRejected:
            series.frameRejected()
        case let .tlsHandshakeFailed(failure):
            series.tlsHandshakeFailed(failure.reason)
        case let .checkpointWritten(_, _, bytes, seconds):
            series.checkpointWritten(bytes: bytes, duration: .nanoseconds(Int64(seconds * 1e9)))
        case .checkpointFailed:
            series.checkpointFailed()
        case let .authenticationFailed(reason):
            series.authenticationFailed(reason: reason)
        case let .backupChunks(_, _, won):
            series.backupChunks(won: won)
        case .jobResumed, .jobSuspended:
            break
        }
    }

    /// The coordinator's free-text reasons, as a fixed label set.
    static func leaveReason(_ reason: String) -> ServerSeries.LeaveReason {
        switch reason {
        case "disconnected": .disconnected
        case "missed its heartbeat deadline": .heartbeatTimeout
        default: .other
        }
    }

    private func jobChanged(_ jobId: String, to state: JobState) {
        if let previous = liveJobs[jobId] {
            jobCounts[previous, default: 0] -= 1
        } else {
            series.addJob(jobId)
        }
        jobCounts[state, default: 0] += 1
        if state.isFinal {
            liveJobs[jobId] = nil
            finishedJobs.append(jobId)
            if finishedJobs.count > ServerMetricsLimits.finishedJobsRetained {
                series.forgetJob(finishedJobs.removeFirst())
            }
        } else {
            liveJobs[jobId] = state
        }
        series.setJobs(JobState.allCases.map { ($0.rawValue, jobCounts[$0] ?? 0) })
    }

    func refreshRefusals(_ refusals: [ConnectionRefusal: Int]) {
        for (reason, count) in refusals where count > refusalsCounted[reason, default: 0] {
            series.connectionsRefused(reason, count: count - refusalsCounted[reason, default: 0])
            refusalsCounted[reason] = count
        }
    }

    private func refreshWorkers(_ status: ClusterStatus) {
        let counts = Dictionary(grouping: status.workers, by: \.state).mapValues(\.count)
        series.setWorkers(Self.reportedWorkerStates.map { ($0.rawValue, counts[$0] ?? 0) })
    }
}
