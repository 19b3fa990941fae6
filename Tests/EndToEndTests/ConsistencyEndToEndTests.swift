import Foundation
import XCTest

/// The consistency modes with the real binaries on 127.0.0.1. `delayed` is exact: the cluster's weights
/// equal `psctl train --local`'s with the same delay for any number of workers, across a worker killed
/// mid-job and across a server killed and restarted. `ssp` and `async` are not reproducible: they must
/// reach the example's accuracy, say so in their result, and show their staleness. Status and the
/// model file show the mode.
final class ConsistencyEndToEndTests: XCTestCase {
    static let spec = "examples/mnist-mlp.yaml"

    static func delayed(_ d: Int) -> [String] {
        ["training.consistency.mode=delayed", "training.consistency.staleness=\(d)"]
    }

    /// Submits `spec` with `overrides` to a fresh cluster of `workers` and waits for the result.
    func run(workers: Int, _ overrides: [String], spec: String = ConsistencyEndToEndTests.spec,
             file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        for i in 1...workers { try cluster.startWorker("worker-\(i)") }
        let out = try cluster.psctl(["submit", spec, "--wait", "--json"] + overrides.flatMap { ["--set", $0] })
        XCTAssertEqual(out.status, 0, "\(workers) workers, \(overrides): \(out.stderr)\n\(cluster.log("server").suffix(2000))",
                       file: file, line: line)
        return try Binaries.json(out)
    }

    /// A cluster of two workers running the example with `overrides`, once its second epoch reached `step`.
    func runIntoEpochTwo(_ overrides: [String], step: Int) throws -> (LocalCluster, String) {
        let cluster = try LocalCluster()
        try cluster.startWorker("a")
        try cluster.startWorker("b")
        let submit = try cluster.psctl(["submit", Self.spec] + overrides.flatMap { ["--set", $0] })
        XCTAssertEqual(submit.status, 0, submit.stderr)
        let job = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try cluster.waitUntil("epoch 2 is under way") {
            let s = try cluster.jobStatus(job)
            return (s["epoch"] as? Int ?? 0) >= 2 && (s["step"] as? Int ?? 0) >= step
        }
        return (cluster, job)
    }

    // delayed d = 1: the MNIST example (10 epochs) on 3 workers reaches 97.5% with the local trainer's
    // bits (LocalTrainingTests shows d = 2's local run reaching it too); 2 epochs of it with d = 1 and 2
    // on 1, 2 and 3 workers have the local bits, which differ from sync's.
    func testDelayedMatchesLocalOnOneTwoThreeWorkers() throws {
        let full = Self.delayed(1)
        let result = try run(workers: 3, full)
        XCTAssertEqual(result["weights_sha256"] as? String, try Reference.localSHA(Self.spec, full), "d=1, 3 workers")
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(result["test_accuracy"] as? Double), 0.975, "d=1")
        XCTAssertEqual(result["bitwise_reproducible"] as? Bool, true)
        print("delayed d=1, 3 workers: test_accuracy \(result["test_accuracy"] ?? "?") samples_per_second \(result["samples_per_second"] ?? "?")")
        let sync = try Reference.localSHA(Self.spec, ["training.epochs=2"])
        for d in [1, 2] {
            let short = Self.delayed(d) + ["training.epochs=2"]
            let shortLocal = try Reference.localSHA(Self.spec, short)
            XCTAssertNotEqual(shortLocal, sync, "d=\(d): delayed computes something else than sync")
            for workers in [1, 2, 3] {
                XCTAssertEqual(try run(workers: workers, short)["weights_sha256"] as? String, shortLocal, "d=\(d), \(workers) workers")
            }
        }
    }

    // delayed d = 1 and 2: a worker killed with SIGKILL mid-job (its chunks of every open step go to
    // the others) and another started: the job ends with the local trainer's bits.
    func testDelayedWorkerKilledMidJobKeepsTheLocalBits() throws {
        for d in [1, 2] {
            let overrides = Self.delayed(d) + ["training.epochs=3"]
            let local = try Reference.localSHA(Self.spec, overrides)
            let (cluster, job) = try runIntoEpochTwo(overrides, step: 50)
            defer { cluster.stop() }
            cluster.kill("a", signal: SIGKILL)
            try cluster.waitUntil("the server notices") { try cluster.workerCount() == 1 }
            try cluster.startWorker("c")
            let wait = try cluster.psctl(["wait", job, "--json"])
            XCTAssertEqual(wait.status, 0, wait.stderr)
            XCTAssertEqual(try Binaries.json(wait)["weights_sha256"] as? String, local, "d=\(d)")
            XCTAssertTrue(cluster.log("server").contains("worker left"), "the kill was not noticed")
            XCTAssertFalse(cluster.log("server").contains("weights asked for a version the shard does not hold"),
                           cluster.log("server").suffix(2000).description)
        }
    }

    // delayed d = 2 with a checkpoint every 40 steps: the server killed with SIGKILL mid-epoch and
    // restarted resumes from a checkpoint that holds the two earlier versions the next steps compute
    // on, and the job ends with the local trainer's bits.
    func testDelayedServerKilledResumesWithTheLocalBits() throws {
        let overrides = Self.delayed(2) + ["training.epochs=3", "checkpoint.every_steps=40"]
        let local = try Reference.localSHA(Self.spec, overrides)
        let (cluster, job) = try runIntoEpochTwo(overrides, step: 130)
        defer { cluster.stop() }
        try cluster.restartServer(signal: SIGKILL)
        try cluster.waitForServerLog("] job resumes from its checkpoint")
        let wait = try cluster.psctl(["wait", job, "--json"])
        XCTAssertEqual(wait.status, 0, wait.stderr)
        XCTAssertEqual(try Binaries.json(wait)["weights_sha256"] as? String, local)
        let resumed = cluster.log("server-2")
        XCTAssertTrue(resumed.contains("] job resumes from its checkpoint"), resumed.suffix(2000).description)
        XCTAssertFalse(resumed.contains("weights asked for a version the shard does not hold"), resumed.suffix(2000).description)
    }

    // ssp (s = 2) and async on 2 workers: the MNIST example reaches 97.5%, the result says it is not
    // reproducible, and the server's metrics count every applied batch's staleness (within the bound).
    // Early stopping's patience is raised to the epoch count so that every run trains its 10 epochs:
    // with the example's patience of 3, one ssp run in 10 here stopped at epoch 6 on a noisy plateau of
    // the validation loss (0.9733, its best epoch 3 kept); scripts/mode-accuracy.sh measures the example
    // as it is.
    func testSSPAndAsyncReachTheTargetAndShowStaleness() throws {
        for (mode, bound) in [("ssp", 2), ("async", 32)] {
            let cluster = try LocalCluster(extraServerArguments: ["--metrics-listen", "127.0.0.1:0"])
            defer { cluster.stop() }
            try cluster.startWorker("w1")
            try cluster.startWorker("w2")
            let out = try cluster.psctl(["submit", Self.spec, "--wait", "--json", "--set", "training.consistency=\(mode)",
                                         "--set", "early_stopping.patience=10"])
            XCTAssertEqual(out.status, 0, "\(mode): \(out.stderr)\n\(cluster.log("server").suffix(2000))")
            let result = try Binaries.json(out)
            XCTAssertGreaterThanOrEqual(try XCTUnwrap(result["test_accuracy"] as? Double), 0.975, mode)
            XCTAssertEqual(result["bitwise_reproducible"] as? Bool, false, mode)
            let metrics = try String(contentsOf: URL(string: try cluster.metricsURL())!, encoding: .utf8)
            let count = try XCTUnwrap(Self.value(of: "ps_push_staleness_count", in: metrics), metrics)
            let epochs = try XCTUnwrap(result["epochs_run"] as? Int)
            XCTAssertEqual(count, Double(epochs * 422), "\(mode): one staleness per applied batch (422 steps per epoch)")
            let within = try XCTUnwrap(Self.value(of: "ps_push_staleness_bucket{le=\"\(Double(bound))\"}", in: metrics), metrics)
            XCTAssertEqual(within, count, "\(mode): no batch applied more than \(bound) versions stale")
            print("\(mode): test_accuracy \(result["test_accuracy"] ?? "?") samples_per_second \(result["samples_per_second"] ?? "?")")
        }
    }

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

    static func value(of series: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}
