import Foundation
import XCTest

/// `training.consistency` as users see it: psctl status (text and --json) and the model file.
final class ConsistencyEndToEndTests: XCTestCase {
    // A job submitted with `--set training.consistency.mode=delayed` shows `delayed (d=1)` in psctl status
    // --json (with no staleness counts: delayed has none) and as a line under the job in the text
    // table, and the model pulled from the cluster records the mode; a sync job adds no such line.
    func testStatusAndModelShowTheMode() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("worker-1")
        let submitted = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml", "--set", "training.consistency.mode=delayed",
                                           "--set", "training.epochs=1", "--wait", "--json"])
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        let job = try XCTUnwrap(try Binaries.json(submitted)["job_id"] as? String)
        let status = try cluster.jobStatus(job)
        XCTAssertEqual(status["consistency"] as? String, "delayed (d=1)", "\(status)")
        XCTAssertEqual((status["staleness_counts"] as? [Any])?.count, 0, "\(status)")
        let text = try cluster.psctl(["status"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("\n\(job): consistency: delayed (d=1)"), text.stdout)

        let sync = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml", "--set", "training.epochs=1", "--wait", "--json"])
        XCTAssertEqual(sync.status, 0, sync.stderr)
        let syncJob = try XCTUnwrap(try Binaries.json(sync)["job_id"] as? String)
        XCTAssertEqual(try cluster.jobStatus(syncJob)["consistency"] as? String, "sync")
        let both = try cluster.psctl(["status"]).stdout
        XCTAssertFalse(both.contains("\(syncJob): consistency"), both)

        let model = NSTemporaryDirectory() + "ps-e2e-consistency-\(UUID().uuidString).model"
        defer { try? FileManager.default.removeItem(atPath: model) }
        let pulled = try cluster.psctl(["model", "pull", job, "-o", model])
        XCTAssertEqual(pulled.status, 0, pulled.stderr)
        let info = try Binaries.run("psctl", ["model", "info", model])
        XCTAssertTrue(info.stdout.contains("\nconsistency delayed (d=1)\n"), info.stdout)
    }
}
