import XCTest
import PSCore
import PSWire
@testable import PSClient

/// The consistency line `psctl status` shows under a job (text and --watch).
final class ConsistencyNoteTests: XCTestCase {
    private func job(_ consistency: String, _ counts: [Int] = []) -> JobStatus {
        var status = JobStatus(jobId: "job-1", name: "mnist", state: .running, epoch: 1, epochs: 10, step: 3,
                               stepsPerEpoch: 422, bestEpoch: 0, samplesPerSecond: 0, workers: 2)
        status.consistency = consistency
        status.stalenessCounts = counts
        return status
    }

    func testSyncSaysNothingAndOtherModesAreNamed() {
        // Proves the default (sync, or a server that does not report the mode) adds no line, and the
        // other modes are named as Consistency.description writes them.
        XCTAssertNil(job("sync").consistencyNote)
        XCTAssertNil(job("").consistencyNote)
        XCTAssertEqual(job(Consistency.delayed(1).description).consistencyNote, "consistency: delayed (d=1)")
        XCTAssertEqual(job(Consistency.ssp(2).description).consistencyNote, "consistency: ssp (s=2)")
        XCTAssertEqual(job("async", [0, 0]).consistencyNote, "consistency: async", "no pushes yet: no staleness")
    }

    func testStalenessMedianAndMaximum() {
        // Proves the median is the smallest staleness with at least half the pushes at or below it, and
        // the maximum the largest staleness any push had.
        XCTAssertEqual(job("ssp (s=2)", [3, 5, 2]).consistencyNote, "consistency: ssp (s=2), staleness p50 1, max 2 over 10 pushes")
        XCTAssertEqual(JobStatus.stalenessSummary([5, 5]), "p50 0, max 1 over 10 pushes")
        XCTAssertEqual(JobStatus.stalenessSummary([4, 5]), "p50 1, max 1 over 9 pushes")
        XCTAssertEqual(JobStatus.stalenessSummary([0, 0, 0, 1]), "p50 3, max 3 over 1 push")
        XCTAssertEqual(JobStatus.stalenessSummary([90, 9, 0, 0, 1, 0]), "p50 0, max 4 over 100 pushes")
        XCTAssertNil(JobStatus.stalenessSummary([]))
    }
}
