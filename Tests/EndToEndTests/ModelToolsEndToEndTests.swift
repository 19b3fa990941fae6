import Foundation
import XCTest

/// `psctl export`, `predict` and `evaluate` run as a user runs them, with the exported model checked
/// by the real ONNX checker and onnxruntime (tests/check_onnx.py).
final class ModelToolsEndToEndTests: XCTestCase {
    var scratch: String!
    static let images = "data/mnist/small/t10k-images-idx3-ubyte"

    override func setUpWithError() throws {
        scratch = NSTemporaryDirectory() + "ps-e2e-tools-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    // The MNIST example's model, exported, passes onnx's full check, and onnxruntime's probabilities on
    // the test images are within 1e-5 of `psctl predict`'s with the same predicted classes.
    func testExportedClassifierMatchesPredictUnderOnnxruntime() throws {
        let model = try train("examples/mnist-small-sgd.yaml").model
        let onnx = "\(scratch!)/m.onnx", predictions = "\(scratch!)/p.csv"
        let export = try Binaries.run("psctl", ["export", model, "-o", onnx])
        XCTAssertEqual(export.status, 0, export.stderr)
        XCTAssertTrue(export.stdout.contains("opset 13"), export.stdout)
        let predict = try Binaries.run("psctl", ["predict", "--model", model, "--input", Self.images, "--output", predictions])
        XCTAssertEqual(predict.status, 0, predict.stderr)
        let lines = try String(contentsOfFile: predictions, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 1001)
        XCTAssertEqual(lines.first, "class,p0,p1,p2,p3,p4,p5,p6,p7,p8,p9")

        let check = try python(["tests/check_onnx.py", onnx, Self.images, predictions])
        print(check.stdout)
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        XCTAssertTrue(check.stdout.contains("1000/1000 identical"), check.stdout)

        // The same images as CSV (label in column 0) give the same predictions, byte for byte.
        let fromCSV = try Binaries.run("psctl", ["predict", "--model", model, "--input", "data/mnist/small/test.csv",
                                                 "--label-column", "0"])
        XCTAssertEqual(fromCSV.status, 0, fromCSV.stderr)
        XCTAssertEqual(fromCSV.stdout, lines.joined(separator: "\n") + "\n")
    }

    // `evaluate` on the spec the model was trained with reproduces train's test accuracy and loss
    // exactly, and its confusion matrix sums to the samples with the accuracy on its diagonal.
    func testEvaluateReproducesTrainingTestMetrics() throws {
        let trained = try train("examples/mnist-small-sgd.yaml")
        let out = try Binaries.run("psctl", ["evaluate", "--model", trained.model, "--data", "examples/mnist-small-sgd.yaml", "--json"])
        XCTAssertEqual(out.status, 0, out.stderr)
        let result = try Binaries.json(out)
        let accuracy = try XCTUnwrap(result["accuracy"] as? Double)
        XCTAssertEqual(accuracy, try XCTUnwrap(trained.json["test_accuracy"] as? Double))
        XCTAssertEqual(try XCTUnwrap(result["loss"] as? Double), try XCTUnwrap(trained.json["test_loss"] as? Double))
        XCTAssertEqual(result["split"] as? String, "data.test")
        let samples = try XCTUnwrap(result["samples"] as? Int)
        XCTAssertEqual(samples, 1000)
        let matrix = try XCTUnwrap(result["confusion_matrix"] as? [[Int]])
        XCTAssertEqual(matrix.count, 10)
        XCTAssertTrue(matrix.allSatisfy { $0.count == 10 })
        XCTAssertEqual(matrix.joined().reduce(0, +), samples)
        let diagonal = matrix.indices.map { matrix[$0][$0] }.reduce(0, +)
        XCTAssertEqual(Double(diagonal) / Double(samples), accuracy)

        let text = try Binaries.run("psctl", ["evaluate", "--model", trained.model, "--data", "examples/mnist-small-sgd.yaml"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("confusion matrix"), text.stdout)
    }

    // A binary classifier (standardized features, sigmoid output) and a regression model (no
    // preprocessing, linear output) also export to ONNX that onnxruntime runs like `psctl predict`,
    // and `evaluate` reports MSE equal to train's test_mse.
    func testBinaryAndRegressionModelsExportAndEvaluate() throws {
        // "Is the digit a 0?" as 0/1 labels, and the digit itself as a regression target.
        let source = try String(contentsOfFile: Binaries.repositoryRoot + "/data/mnist/small/train.csv", encoding: .utf8)
        let test = try String(contentsOfFile: Binaries.repositoryRoot + "/data/mnist/small/test.csv", encoding: .utf8)
        func relabel(_ text: String, _ f: (Int) -> Int) -> String {
            text.split(separator: "\n").map { line in
                let comma = line.firstIndex(of: ",")!
                return "\(f(Int(line[..<comma])!))" + line[comma...]
            }.joined(separator: "\n") + "\n"
        }
        try relabel(source, { $0 == 0 ? 1 : 0 }).write(toFile: "\(scratch!)/zero-train.csv", atomically: true, encoding: .utf8)
        try relabel(test, { $0 == 0 ? 1 : 0 }).write(toFile: "\(scratch!)/zero-test.csv", atomically: true, encoding: .utf8)
        let cases = [
            ("zero", "zero-train.csv", "zero-test.csv", "standardize: true",
             "{units: 16, activation: sigmoid}, {units: 1, activation: sigmoid}", "binary_cross_entropy", "class,p0,p1"),
            ("digit", Binaries.repositoryRoot + "/data/mnist/small/train.csv",
             Binaries.repositoryRoot + "/data/mnist/small/test.csv", "",
             "{units: 16, activation: tanh}, {units: 1, activation: linear}", "mean_squared_error", "value"),
        ]
        for (name, trainFile, testFile, preprocessing, layers, loss, header) in cases {
            let spec = "\(scratch!)/\(name).yaml"
            try """
                name: \(name)
                seed: 3
                data:
                  format: csv
                  train: {path: \(trainFile)}
                  test: {path: \(testFile)}
                  label_column: 0
                  \(preprocessing)
                model:
                  inputs: 784
                  layers: [\(layers)]
                loss: \(loss)
                optimizer: {name: adam, learning_rate: 0.001}
                training: {batch_size: 50, chunks: 2, epochs: 1}
                """.write(toFile: spec, atomically: true, encoding: .utf8)
            let trained = try train(spec)
            let onnx = "\(scratch!)/\(name).onnx", predictions = "\(scratch!)/\(name).csv"
            let testPath = testFile.hasPrefix("/") ? testFile : "\(scratch!)/\(testFile)"
            let export = try Binaries.run("psctl", ["export", trained.model, "-o", onnx])
            XCTAssertEqual(export.status, 0, export.stderr)
            let predict = try Binaries.run("psctl", ["predict", "--model", trained.model, "--input", testPath,
                                                     "--label-column", "0", "--output", predictions])
            XCTAssertEqual(predict.status, 0, predict.stderr)
            XCTAssertTrue(try String(contentsOfFile: predictions, encoding: .utf8).hasPrefix(header + "\n"), name)
            let check = try python(["tests/check_onnx.py", onnx, testPath, predictions, "--label-column", "0"])
            print(check.stdout)
            XCTAssertEqual(check.status, 0, "\(name): " + check.stdout + check.stderr)

            let evaluate = try Binaries.run("psctl", ["evaluate", "--model", trained.model, "--data", spec, "--json"])
            XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
            let result = try Binaries.json(evaluate)
            if loss == "mean_squared_error" {
                XCTAssertEqual(result["mse"] as? Double, trained.json["test_mse"] as? Double)
                XCTAssertNotNil(result["mae"] as? Double)
            } else {
                XCTAssertEqual(result["accuracy"] as? Double, trained.json["test_accuracy"] as? Double)
                let matrix = try XCTUnwrap(result["confusion_matrix"] as? [[Int]])
                XCTAssertEqual(matrix.count, 2)
                XCTAssertEqual(matrix.joined().reduce(0, +), 1000)
            }
        }
    }

    // `export JOB --server` fetches a finished job's model from the cluster; the cluster computes the
    // local trainer's weights, so the ONNX file is byte for byte the one exported from the local model.
    func testExportFetchesAJobFromTheCluster() throws {
        let local = "\(scratch!)/local.onnx", remote = "\(scratch!)/remote.onnx"
        XCTAssertEqual(try Binaries.run("psctl", ["export", try train("examples/mnist-small-sgd.yaml").model, "-o", local]).status, 0)
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("worker-1")
        let submitted = try cluster.psctl(["submit", "examples/mnist-small-sgd.yaml", "--wait", "--json"])
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        let job = try XCTUnwrap(try Binaries.json(submitted)["job_id"] as? String)
        let export = try cluster.psctl(["export", job, "-o", remote])
        XCTAssertEqual(export.status, 0, export.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: remote), FileManager.default.contents(atPath: local))
        let unknown = try cluster.psctl(["export", "job-999", "-o", remote + ".x"])
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.stderr.contains("job-999"), unknown.stderr)
    }

    // Features of the wrong width are an operating error (exit 1) naming the file and both widths;
    // a missing model file is one too, naming the file.
    func testPredictRejectsWrongWidthAndMissingModel() throws {
        let model = try train("examples/mnist-small-sgd.yaml").model
        let wide = try Binaries.run("psctl", ["predict", "--model", model, "--input", "data/mnist/small/test.csv"])
        XCTAssertEqual(wide.status, 1)
        XCTAssertTrue(wide.stderr.contains("model expects 784 features, 'data/mnist/small/test.csv' rows have 785"), wide.stderr)
        XCTAssertTrue(wide.stderr.contains("--label-column"), "one column too many suggests the label column: \(wide.stderr)")
        let labelled = try Binaries.run("psctl", ["predict", "--model", model, "--input", "data/mnist/small/test.csv",
                                                  "--label-column", "0"])
        XCTAssertEqual(labelled.status, 0, labelled.stderr)
        let missing = try Binaries.run("psctl", ["predict", "--model", "\(scratch!)/none.model", "--input", Self.images])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("none.model"), missing.stderr)
        let usage = try Binaries.run("psctl", ["predict", "--model", model, "--input", Self.images, "--header"])
        XCTAssertEqual(usage.status, 2, usage.stderr)
    }

    // MARK: - Helpers

    /// Trains `spec` locally (a few seconds for these specs); the model path and `--json` result.
    func train(_ spec: String) throws -> (model: String, json: [String: Any]) {
        let model = "\(scratch!)/\(UUID().uuidString).model"
        let out = try Binaries.run("psctl", ["train", "--local", spec, "--json", "--output", model])
        XCTAssertEqual(out.status, 0, out.stderr)
        return (model, try Binaries.json(out))
    }

    /// Runs python3 (with onnx and onnxruntime from `scripts/install-deps.sh --test`) from the repository root.
    func python(_ arguments: [String]) throws -> Binaries.Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: Binaries.repositoryRoot)
        // One pipe for both streams, drained before waiting, so neither can fill up and block the child.
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Binaries.Output(status: process.terminationStatus, stdout: String(decoding: output, as: UTF8.self), stderr: "")
    }
}
