import PSCore
import XCTest

/// The job life cycle, state × event: every pair of phase and event, against a table written out
/// here independently of the implementation's switch.
final class JobLifecycleTests: XCTestCase {
    /// The legal moves; every pair not listed is refused.
    static let legal: [JobPhase: [JobEvent: JobPhase]] = [
        .queued: [.prepare: .preparing, .cancelled: .cancelled],
        .preparing: [.prepared(workers: true): .running, .prepared(workers: false): .waitingForWorkers,
                     .failed: .failed, .cancelled: .cancelled, .interrupted: .interrupted],
        .waitingForWorkers: [.workersAvailable: .running, .workersGone: .waitingForWorkers,
                             .failed: .failed, .cancelled: .cancelled, .interrupted: .interrupted],
        .running: [.workersAvailable: .running, .workersGone: .waitingForWorkers,
                   .finished(stoppedEarly: false): .completed, .finished(stoppedEarly: true): .stoppedEarly,
                   .failed: .failed, .cancelled: .cancelled, .interrupted: .interrupted],
    ]

    // Proves each of the 9 × 10 phase-event pairs leads where the table says, or is refused.
    func testEveryPhaseAndEvent() {
        XCTAssertEqual(JobPhase.allCases.count, 9)
        XCTAssertEqual(Set(JobEvent.allCases).count, 10)
        for phase in JobPhase.allCases {
            for event in JobEvent.allCases {
                XCTAssertEqual(JobLifecycle.next(after: phase, on: event), Self.legal[phase]?[event],
                               "\(phase) on \(event)")
            }
        }
    }

    // Proves a final state refuses every event, so an ended job never changes again.
    func testFinalStatesAreFinal() {
        for phase in JobPhase.allCases where phase.state.isFinal {
            for event in JobEvent.allCases {
                XCTAssertNil(JobLifecycle.next(after: phase, on: event), "\(phase) on \(event)")
            }
        }
        XCTAssertEqual(JobPhase.allCases.filter(\.state.isFinal),
                       [.completed, .stoppedEarly, .failed, .cancelled, .interrupted])
    }

    // Proves a refused event changes nothing and says so, and a legal one returns the phase it left.
    func testApplyRefusesIllegalEventsWithoutChange() {
        var job = JobLifecycle()
        XCTAssertEqual(job.phase, .queued)
        XCTAssertNil(job.apply(.finished(stoppedEarly: false)), "a queued job cannot complete")
        XCTAssertNil(job.apply(.workersAvailable), "nor start before its data is prepared")
        XCTAssertEqual(job.phase, .queued)
        XCTAssertEqual(job.apply(.prepare), .queued)
        XCTAssertNil(job.apply(.prepare), "prepared only once")
        XCTAssertEqual(job.apply(.prepared(workers: false)), .preparing)
        XCTAssertEqual(job.apply(.workersAvailable), .waitingForWorkers)
        XCTAssertEqual(job.apply(.workersGone), .running)
        XCTAssertEqual(job.apply(.workersAvailable), .waitingForWorkers)
        XCTAssertEqual(job.apply(.finished(stoppedEarly: true)), .running)
        XCTAssertEqual(job.phase, .stoppedEarly)
        XCTAssertNil(job.apply(.cancelled), "an ended job cannot be cancelled")
        XCTAssertEqual(job.state, .stoppedEarly)
    }

    // Proves what clients see: both submitted phases are `submitted`, and wire names are unchanged.
    func testPhasesMapToTheStatesClientsSee() {
        XCTAssertEqual(JobPhase.queued.state, .submitted)
        XCTAssertEqual(JobPhase.preparing.state, .submitted)
        XCTAssertEqual(JobState.allCases.map(\.rawValue),
                       ["submitted", "waiting_for_workers", "running", "completed", "stopped_early", "failed",
                        "cancelled", "interrupted"])
        XCTAssertEqual(Set(JobPhase.allCases.map(\.state)), Set(JobState.allCases))
    }
}
