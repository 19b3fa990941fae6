import Foundation
import XCTest

/// `psctl train --local` and `psctl model info`, run as a user runs them.
final class LocalTrainingTests: XCTestCase {
    var scratch: String!

    override func setUpWithError() throws {
        scratch = NSTemporaryDirectory() + "ps-e2e-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    // The example MNIST job reaches at least 97.5% test accuracy within its 10 epochs, two runs give the
    // same weights_sha256, and `model info` reports that same fingerprint for the written model.
    func testMNISTExampleIsAccurateAndReproducible() throws {
        var results: [[String: Any]] = []
        for run in 0..<2 {
            let model = "\(scratch!)/run\(run).model"
            let out = try Binaries.run("psctl", ["train", "--local", "examples/mnist-mlp.yaml", "--json", "--output", model])
            XCTAssertEqual(out.status, 0, out.stderr)
            results.append(try Binaries.json(out))
        }
        let accuracy = try XCTUnwrap(results[0]["test_accuracy"] as? Double)
        XCTAssertGreaterThanOrEqual(accuracy, 0.975)
        XCTAssertLessThanOrEqual(try XCTUnwrap(results[0]["epochs_run"] as? Int), 10)
        let sha = try XCTUnwrap(results[0]["weights_sha256"] as? String)
        XCTAssertEqual(sha.count, 64)
        XCTAssertEqual(sha, results[1]["weights_sha256"] as? String, "two runs of the same spec must agree bitwise")
        for key in ["test_loss", "best_epoch", "samples_per_second"] {
            XCTAssertNotNil(results[0][key], "missing \(key)")
        }
        let info = try Binaries.run("psctl", ["model", "info", "\(scratch!)/run0.model", "--json"])
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertEqual(try Binaries.json(info)["weights_sha256"] as? String, sha)
        XCTAssertEqual(try Binaries.json(info)["parameters"] as? Int, 235_146)
    }

    // The MNIST example in delayed mode (d = 1 and 2) still reaches 97.5% test accuracy in train --local.
    func testMNISTExampleDelayedIsAccurate() throws {
        for d in [1, 2] {
            let out = try Binaries.run("psctl", ["train", "--local", "examples/mnist-mlp.yaml", "--json",
                                                 "--set", "training.consistency={mode: delayed, staleness: \(d)}",
                                                 "--output", "\(scratch!)/d\(d).model"])
            XCTAssertEqual(out.status, 0, out.stderr)
            let accuracy = try XCTUnwrap(try Binaries.json(out)["test_accuracy"] as? Double)
            print("MNIST example, delayed d=\(d): test accuracy \(accuracy)")
            XCTAssertGreaterThanOrEqual(accuracy, 0.975, "delayed d=\(d)")
        }
    }

    // `--set training.consistency...` reaches train --local: delayed (d=1) gives other weights than sync
    // and model info records the mode; ssp and async say in one line that they train as sync, and give
    // sync's weights.
    func testConsistencyModesInTrainLocal() throws {
        func train(_ overrides: [String], _ name: String) throws -> (sha: String, stderr: String) {
            let out = try Binaries.run("psctl", ["train", "--local", "examples/mnist-small-sgd.yaml", "--json",
                                                 "--output", "\(scratch!)/\(name).model"] + overrides.flatMap { ["--set", $0] })
            XCTAssertEqual(out.status, 0, out.stderr)
            return (try XCTUnwrap(try Binaries.json(out)["weights_sha256"] as? String), out.stderr)
        }
        let sync = try train([], "sync")
        XCTAssertFalse(sync.stderr.contains("trains it as sync"), sync.stderr)
        let delayed = try train(["training.consistency.mode=delayed", "training.consistency.staleness=1"], "delayed")
        XCTAssertNotEqual(delayed.sha, sync.sha, "delayed computes on older weights")
        XCTAssertFalse(delayed.stderr.contains("trains it as sync"), delayed.stderr)
        for mode in ["ssp", "async"] {
            let run = try train(["training.consistency=\(mode)"], mode)
            XCTAssertEqual(run.sha, sync.sha, "\(mode) trains as sync locally")
            XCTAssertTrue(run.stderr.contains("training.consistency is \(mode)"), run.stderr)
            XCTAssertTrue(run.stderr.contains("train --local trains it as sync"), run.stderr)
            XCTAssertTrue(run.stderr.contains("use delayed for a reproducible pipelined run"), run.stderr)
        }
        let info = try Binaries.run("psctl", ["model", "info", "\(scratch!)/delayed.model"])
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertTrue(info.stdout.contains("\nconsistency delayed (d=1)\n"), info.stdout)
        let infoJSON = try Binaries.run("psctl", ["model", "info", "\(scratch!)/ssp.model", "--json"])
        XCTAssertEqual(try Binaries.json(infoJSON)["consistency"] as? String, "ssp (s=2)")
        let syncInfo = try Binaries.run("psctl", ["model", "info", "\(scratch!)/sync.model"])
        XCTAssertTrue(syncInfo.stdout.contains("\nconsistency sync\n"), syncInfo.stdout)
        let refused = try Binaries.run("psctl", ["train", "--local", "examples/mnist-small-sgd.yaml",
                                                 "--set", "training.consistency.mode=delayed",
                                                 "--set", "training.consistency.staleness=9"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("training.consistency.staleness: must be between 1 and 8 (ConsistencyLimits.stalenessMax), got 9"),
                      refused.stderr)
    }

    // A bad spec value exits 1 and names the field; nothing is trained and no model is written.
    func testInvalidSpecNamesTheField() throws {
        let model = "\(scratch!)/never.model"
        let out = try Binaries.run("psctl", ["train", "--local", "examples/mnist-mlp.yaml",
                                             "--set", "model.layers[2].activation=relu6", "--output", model])
        XCTAssertEqual(out.status, 1)
        XCTAssertTrue(out.stderr.contains("model.layers[2].activation: unknown activation 'relu6'"), out.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: model))
    }

    // A spec whose data file is missing exits 1 naming the field and the file.
    func testMissingDataFileNamesFieldAndFile() throws {
        let out = try Binaries.run("psctl", ["train", "--local", "examples/mnist-small-sgd.yaml",
                                             "--set", "data.train.labels=/nonexistent/labels"])
        XCTAssertEqual(out.status, 1)
        XCTAssertTrue(out.stderr.contains("data.train.labels"), out.stderr)
        XCTAssertTrue(out.stderr.contains("/nonexistent/labels"), out.stderr)
    }

    // Usage errors (unknown flag, missing --local) exit 2 with the usage text.
    func testUsageErrorsExitTwo() throws {
        let unknown = try Binaries.run("psctl", ["train", "--local", "--bogus", "x"])
        XCTAssertEqual(unknown.status, 2)
        XCTAssertTrue(unknown.stderr.contains("Unknown option '--bogus'"), unknown.stderr)
        let notLocal = try Binaries.run("psctl", ["train", "examples/mnist-small-sgd.yaml"])
        XCTAssertEqual(notLocal.status, 2)
        XCTAssertTrue(notLocal.stderr.contains("--local"), notLocal.stderr)
    }

    // ps-server's numeric flags are range-checked before anything starts, naming the flag; the exit
    // status is ArgumentParser's for a validation error, EX_USAGE (64).
    func testServerFlagsOutOfRangeAreUsageErrors() throws {
        for (binary, arguments, flag) in [("ps-server", ["--update-threads", "0"], "--update-threads"),
                                          ("ps-server", ["--update-threads", "257"], "--update-threads"),
                                          ("ps-server", ["--shards", "0"], "--shards")] {
            let out = try Binaries.run(binary, arguments)
            XCTAssertEqual(out.status, 64, "\(binary) \(arguments): \(out.stderr)")
            XCTAssertTrue(out.stderr.contains("\(flag) must be between"), out.stderr)
        }
    }

    // A file that is not a model is an operating error naming the file.
    func testModelInfoRejectsOtherFiles() throws {
        let out = try Binaries.run("psctl", ["model", "info", "README.md"])
        XCTAssertEqual(out.status, 1)
        XCTAssertTrue(out.stderr.contains("README.md"), out.stderr)
    }
}
