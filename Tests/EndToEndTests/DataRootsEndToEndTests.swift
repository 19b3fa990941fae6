import Foundation
import XCTest

/// `ps-worker --data-root` with the real binaries: a job whose data lies outside a worker's roots (or
/// is not a regular file) is refused by that worker; the reason reaches `psctl status`, the others compute the job,
/// and when no worker can, the job fails naming each worker and why. No file's contents are echoed.
final class DataRootsEndToEndTests: XCTestCase {
    func testRefusedOutsideTheRootsAndTheReasonReachesTheClient() throws {
        let spec = "examples/mnist-small-sgd.yaml"
        let overrides = ["training.epochs=3"]
        let local = try Reference.localSHA(spec, overrides)
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        let elsewhere = cluster.directory + "/elsewhere"
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        // One worker confined to an empty folder, one to the repository's data.
        try cluster.startWorker("confined", extraArguments: ["--data-root", elsewhere])
        try cluster.startWorker("free", extraArguments: ["--data-root", Binaries.repositoryRoot + "/data"])
        let out = try cluster.psctl(["submit", spec, "--wait", "--json"] + overrides.flatMap { ["--set", $0] })
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertEqual(try Binaries.json(out)["weights_sha256"] as? String, local, "the free worker computed it all")
        XCTAssertTrue(cluster.log("confined").contains("outside this worker's data roots"), cluster.log("confined"))
        XCTAssertTrue(cluster.log(cluster.serverLog).contains("worker cannot run the job"))

        // Now only the confined worker: the job fails, naming the worker and the field.
        cluster.kill("free")
        let failed = try cluster.psctl(["submit", spec, "--wait"] + overrides.flatMap { ["--set", $0] })
        XCTAssertEqual(failed.status, 1)
        XCTAssertTrue(failed.stderr.contains("no worker can run the job: confined: data.train.images: "), failed.stderr)
        XCTAssertTrue(failed.stderr.contains("outside this worker's data roots (\(elsewhere))"), failed.stderr)
    }
}
