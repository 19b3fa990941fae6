import Foundation
import PSData
@testable import PSServer
import XCTest

/// The server's load pool: at most `LoadLimits.concurrentMax` loads at once, the rest in order; an
/// abandoned load is told to stop and frees its slot at once even if its thread never returns; past
/// `LoadLimits.abandonedMax` stuck loads, a new load is refused with the jobs it waits behind.
final class LoadPoolTests: XCTestCase {
    /// A load body that blocks until `release` is signalled (deaf to its cancellation, as a stuck read),
    /// recording that it started and the cancellation it was given.
    final class Gate: @unchecked Sendable {
        let lock = NSLock()
        var started: [String] = []
        var cancellations: [String: LoadCancellation] = [:]
        let release = DispatchSemaphore(value: 0)

        func body(_ jobId: String) -> LoadPool.Body {
            { [self] cancellation in
                lock.withLock {
                    started.append(jobId)
                    cancellations[jobId] = cancellation
                }
                release.wait()
            }
        }

        func waitStarted(_ count: Int) -> [String] {
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                let s = lock.withLock { started }
                if s.count >= count { return s }
                Thread.sleep(forTimeInterval: 0.005)
            }
            return lock.withLock { started }
        }
    }

    func testBoundedInOrderAndAbandonedLoadsFreeTheirSlot() throws {
        let gate = Gate()
        let pool = LoadPool(deadlineSeconds: 600)
        for i in 1...4 { XCTAssertNil(pool.submit(jobId: "job-\(i)", gate.body("job-\(i)"))) }
        // The first two start at once, on threads of their own: in either order.
        XCTAssertEqual(Set(gate.waitStarted(LoadLimits.concurrentMax)), ["job-1", "job-2"])
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(pool.counts.running, 2)
        XCTAssertEqual(pool.counts.waiting, 2)

        // job-1 never returns; abandoning it starts job-3 now and tells job-1's load why to stop.
        pool.abandon("job-1", reason: "the job was cancelled")
        let three = gate.waitStarted(3)
        XCTAssertEqual(Set(three.prefix(2)), ["job-1", "job-2"])
        XCTAssertEqual(three.dropFirst(2), ["job-3"])
        XCTAssertEqual(gate.lock.withLock { gate.cancellations["job-1"]?.stopReason }, "the job was cancelled")
        XCTAssertEqual(pool.counts.abandoned, 1)

        // A queued load abandoned before it starts never runs.
        pool.abandon("job-4", reason: "the job was cancelled")
        XCTAssertEqual(pool.counts.waiting, 0)
        for _ in 0..<3 { gate.release.signal() }
        let deadline = Date().addingTimeInterval(10)
        while pool.counts != (0, 0, 0), Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        XCTAssertTrue(pool.counts == (0, 0, 0), "\(pool.counts)")
        XCTAssertEqual(Set(gate.lock.withLock { gate.started }), ["job-1", "job-2", "job-3"], "job-4 never ran")
        XCTAssertEqual(gate.lock.withLock { gate.started.count }, 3)
    }

    func testStuckLoadsPastTheLimitAreRefused() throws {
        let gate = Gate()
        let pool = LoadPool(deadlineSeconds: nil)
        for i in 1...LoadLimits.abandonedMax {
            XCTAssertNil(pool.submit(jobId: "job-\(i)", gate.body("job-\(i)")))
            pool.abandon("job-\(i)", reason: "loading data took longer than 1 s")
        }
        _ = gate.waitStarted(LoadLimits.abandonedMax)
        let refusal = pool.submit(jobId: "job-next", gate.body("job-next"))
        XCTAssertEqual(refusal?.hasPrefix("\(LoadLimits.abandonedMax) earlier loads are still stuck reading their data (jobs job-1, "), true,
                       refusal ?? "not refused")
        // Once one comes back, loads are taken again.
        gate.release.signal()
        let deadline = Date().addingTimeInterval(10)
        while pool.counts.abandoned == LoadLimits.abandonedMax, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        XCTAssertNil(pool.submit(jobId: "job-after", gate.body("job-after")))
        for _ in 0...LoadLimits.abandonedMax { gate.release.signal() }
    }
}
