import Foundation
import PSWire
import XCTest

/// A diverging job (issue #14: learning rate 1e6 used to end "completed", exit 0, with a NaN loss and a
/// model full of NaN), with the real `psctl`, `ps-server` and `ps-worker`: by default it fails naming
/// the step, and no model holds NaN; with `training.on_non_finite: stop` it completes, stopped early,
/// with the local trainer's bits.
final class NonFiniteEndToEndTests: XCTestCase {
    /// The small MNIST job with plain SGD at 1e6: its loss is NaN within the first epoch.
    let spec = "examples/mnist-small-sgd.yaml"
    let diverging = ["optimizer.learning_rate=1e6"]

    var scratch: String!

    override func setUpWithError() throws {
        scratch = NSTemporaryDirectory() + "ps-e2e-nan-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    func sets(_ overrides: [String]) -> [String] { overrides.flatMap { ["--set", $0] } }

    /// `non-finite loss at step N (epoch E)` in `text`, or nil.
    func nonFiniteStep(in text: String) -> String? {
        text.range(of: #"non-finite (loss|gradient|parameters after the update) at step [0-9]+ \(epoch [0-9]+\)"#,
                   options: .regularExpression).map { String(text[$0]) }
    }

    /// The model file's weights, which must all be finite, and its weights_sha256 as `model info` says.
    func checkedModel(_ path: String, _ what: String) throws -> String {
        let model = try TrainedModel.read(path: path)
        XCTAssertFalse(model.parameters.isEmpty, what)
        XCTAssertTrue(model.parameters.allSatisfy(\.isFinite), "\(what): the model holds NaN or inf")
        let info = try Binaries.run("psctl", ["model", "info", path, "--json"])
        XCTAssertEqual(info.status, 0, info.stderr)
        return try XCTUnwrap(try Binaries.json(info)["weights_sha256"] as? String)
    }

    // By default the diverging job fails: `train --local` exits 1 naming the step and writes the last
    // good weights (no NaN); the cluster's job ends `failed` with the same step, `submit --wait` exits 1,
    // the model it keeps is bitwise the local one, and its checkpoints stay in the data directory.
    func testDivergingJobFailsAtTheSameStepLocallyAndOnTheCluster() throws {
        let localModel = "\(scratch!)/local.model"
        let local = try Binaries.run("psctl", ["train", "--local", spec, "--output", localModel] + sets(diverging))
        XCTAssertEqual(local.status, 1, local.stderr)
        let step = try XCTUnwrap(nonFiniteStep(in: local.stderr), local.stderr)
        XCTAssertTrue(local.stderr.contains("\(step); the last good weights (step "), local.stderr)
        XCTAssertTrue(local.stderr.contains("are in \(localModel)"), local.stderr)
        let localSHA = try checkedModel(localModel, "train --local")
        XCTAssertTrue(local.stderr.contains(localSHA), local.stderr)

        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("a")
        try cluster.startWorker("b")
        // A checkpoint every 2 steps, so there is one to keep.
        let submit = try cluster.psctl(["submit", spec, "--wait"] + sets(diverging + ["checkpoint.every_steps=2"]))
        XCTAssertEqual(submit.status, 1, "\(submit.stdout)\n\(submit.stderr)")
        XCTAssertTrue(submit.stderr.contains("job-1 failed: \(step); the last good weights"), submit.stderr)
        XCTAssertTrue(submit.stderr.contains("psctl model pull job-1"), submit.stderr)
        let status = try cluster.jobStatus("job-1")
        XCTAssertEqual(status["state"] as? String, "failed")
        XCTAssertTrue((status["message"] as? String ?? "").hasPrefix(step), "\(status)")
        let pulled = "\(scratch!)/pulled.model"
        let pull = try cluster.psctl(["model", "pull", "job-1", "-o", pulled])
        XCTAssertEqual(pull.status, 0, pull.stderr)
        XCTAssertEqual(try checkedModel(pulled, "the cluster's model"), localSHA)
        let checkpoints = cluster.dataDirectory + "/jobs/job-1/checkpoints"
        let kept = (try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []
        XCTAssertTrue(kept.contains { $0.hasSuffix(".ckpt") }, "checkpoints of the failed job: \(kept)")
        XCTAssertTrue(cluster.log("server").contains("step not applied"), cluster.log("server").suffix(2000).description)
    }

    // With `on_non_finite: stop` the job completes, stopped early at the same step on both, with a note
    // saying so, and the cluster's weights are bitwise the local trainer's (no NaN in either model).
    func testStopEndsTheJobWithTheLocalBits() throws {
        let overrides = diverging + ["training.on_non_finite=stop"]
        let localModel = "\(scratch!)/local.model"
        let local = try Binaries.run("psctl", ["train", "--local", spec, "--json", "--output", localModel] + sets(overrides))
        XCTAssertEqual(local.status, 0, local.stderr)
        let localResult = try Binaries.json(local)
        let stoppedOn = try XCTUnwrap(localResult["stopped_on"] as? String, local.stdout)
        let step = try XCTUnwrap(nonFiniteStep(in: stoppedOn))
        XCTAssertEqual(localResult["stopped_early"] as? Bool, true)
        let localSHA = try XCTUnwrap(localResult["weights_sha256"] as? String)
        XCTAssertEqual(try checkedModel(localModel, "train --local"), localSHA)
        let text = try Binaries.run("psctl", ["train", "--local", spec, "--output", localModel] + sets(overrides))
        XCTAssertTrue(text.stdout.contains("stopped on a \(step) (training.on_non_finite: stop)"), text.stdout)

        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("a")
        try cluster.startWorker("b")
        let submit = try cluster.psctl(["submit", spec, "--wait", "--json"] + sets(overrides))
        XCTAssertEqual(submit.status, 0, "\(submit.stdout)\n\(submit.stderr)")
        let result = try Binaries.json(submit)
        XCTAssertEqual(result["state"] as? String, "stopped_early")
        XCTAssertEqual(result["message"] as? String, "stopped on a \(step) (training.on_non_finite: stop)")
        XCTAssertEqual(result["weights_sha256"] as? String, localSHA)
        XCTAssertEqual(result["test_accuracy"] as? Double, localResult["test_accuracy"] as? Double)
        let pulled = "\(scratch!)/pulled.model"
        XCTAssertEqual(try cluster.psctl(["model", "pull", "job-1", "-o", pulled]).status, 0)
        XCTAssertEqual(try checkedModel(pulled, "the cluster's model"), localSHA)
    }

    // `on_non_finite: continue` is the old behaviour, kept as an explicit choice: the run completes and
    // its model holds NaN (the one way a model may).
    func testContinueKeepsTheOldBehaviour() throws {
        let model = "\(scratch!)/continue.model"
        let out = try Binaries.run("psctl", ["train", "--local", spec, "--output", model]
                                   + sets(diverging + ["training.on_non_finite=continue"]))
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertTrue(try TrainedModel.read(path: model).parameters.contains { !$0.isFinite })
    }
}
