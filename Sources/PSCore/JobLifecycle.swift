/// A job's life-cycle state as clients see it. Raw values are the names `psctl` prints and the
/// wire's `JobState` values; the coordinator moves a job between them only through `JobLifecycle`.
public enum JobState: String, Equatable, Sendable, CaseIterable {
    case submitted
    case waitingForWorkers = "waiting_for_workers"
    case running
    case completed
    case stoppedEarly = "stopped_early"
    case failed
    case cancelled
    /// The server stopped while the job ran, as servers before the job journal recorded it. This version
    /// never ends a job so (a stopped server's job resumes when it starts again); the state stays so
    /// that results written by earlier versions read back.
    case interrupted

    /// Whether the job has ended and will never change state again.
    public var isFinal: Bool {
        switch self {
        case .submitted, .waitingForWorkers, .running: false
        case .completed, .stoppedEarly, .failed, .cancelled, .interrupted: true
        }
    }
}

/// Where a job is in its life, one step finer than `JobState`: a submitted job is either queued or
/// having its data prepared (`psctl status` shows the latter as "loading data").
public enum JobPhase: Equatable, Hashable, Sendable, CaseIterable {
    case queued
    case preparing
    case waitingForWorkers
    case running
    case completed
    case stoppedEarly
    case failed
    case cancelled
    case interrupted

    /// The state clients are shown.
    public var state: JobState {
        switch self {
        case .queued, .preparing: .submitted
        case .waitingForWorkers: .waitingForWorkers
        case .running: .running
        case .completed: .completed
        case .stoppedEarly: .stoppedEarly
        case .failed: .failed
        case .cancelled: .cancelled
        case .interrupted: .interrupted
        }
    }
}

/// What can happen to a job.
public enum JobEvent: Hashable, Sendable {
    /// The scheduler picked it: its data is being read.
    case prepare
    /// Its data is ready; `workers` says whether any worker is registered to start on.
    case prepared(workers: Bool)
    /// Work was handed out to registered workers.
    case workersAvailable
    /// Every worker left while it had work to do.
    case workersGone
    /// Its last epoch ended (`stoppedEarly`: early stopping ended it first).
    case finished(stoppedEarly: Bool)
    case failed
    case cancelled
    /// The server stopped while it was being prepared or ran (no longer emitted; see `JobState.interrupted`).
    case interrupted

    /// Every event, for tables and tests.
    public static let allCases: [JobEvent] = [
        .prepare, .prepared(workers: true), .prepared(workers: false), .workersAvailable, .workersGone,
        .finished(stoppedEarly: false), .finished(stoppedEarly: true), .failed, .cancelled, .interrupted,
    ]
}

/// A job's phase, changed only by events the transition table allows: an event that is not legal
/// in the current phase is refused and changes nothing, so no code can move a job backwards, out
/// of a final state, or into a state it skipped.
public struct JobLifecycle: Equatable, Sendable {
    public private(set) var phase: JobPhase

    /// A newly submitted job: queued.
    public init() { phase = .queued }

    /// A job that ended in `state` before the server restarted (read back from the journal).
    public init(ended state: JobState) {
        precondition(state.isFinal, "only an ended job is recovered in its state")
        phase = JobPhase.allCases.first { $0.state == state }!
    }

    public var state: JobState { phase.state }

    /// The phase `event` leads to from `phase`, or nil when the event is illegal there. Staying put
    /// is legal only where the event restates the phase (work handed out while running, workers gone
    /// while already waiting for them).
    public static func next(after phase: JobPhase, on event: JobEvent) -> JobPhase? {
        switch (phase, event) {
        case (.queued, .prepare): .preparing
        case (.queued, .cancelled): .cancelled
        case (.preparing, .prepared(workers: true)): .running
        case (.preparing, .prepared(workers: false)): .waitingForWorkers
        case (.waitingForWorkers, .workersAvailable), (.running, .workersAvailable): .running
        case (.running, .workersGone), (.waitingForWorkers, .workersGone): .waitingForWorkers
        case (.running, .finished(stoppedEarly: false)): .completed
        case (.running, .finished(stoppedEarly: true)): .stoppedEarly
        case (.preparing, .failed), (.waitingForWorkers, .failed), (.running, .failed): .failed
        case (.preparing, .cancelled), (.waitingForWorkers, .cancelled), (.running, .cancelled): .cancelled
        case (.preparing, .interrupted), (.waitingForWorkers, .interrupted), (.running, .interrupted): .interrupted
        default: nil
        }
    }

    /// Applies `event`: the phase before it, or nil (and no change) when the table refuses it.
    @discardableResult
    public mutating func apply(_ event: JobEvent) -> JobPhase? {
        guard let next = Self.next(after: phase, on: event) else { return nil }
        defer { phase = next }
        return phase
    }
}
