import XCTest
import PSCore
@testable import PSSpec

final class JobSpecEncodingTests: XCTestCase {
    /// Asserts that both encodings parse back to `spec`.
    private func assertRoundTrip(_ spec: JobSpec, file: StaticString = #filePath, line: UInt = #line) {
        let yaml = spec.yamlText()
        let json = spec.jsonText()
        XCTAssertEqual(try? JobSpec.parse(yaml, format: .yaml), spec, yaml, file: file, line: line)
        XCTAssertEqual(try? JobSpec.parse(json, format: .json), spec, json, file: file, line: line)
        do {
            _ = try JobSpec.parse(yaml, format: .yaml)
        } catch {
            XCTFail("\(error)\n\(yaml)", file: file, line: line)
        }
    }

    func testExampleRoundTrips() throws {
        // Proves the full example survives encode → parse in YAML and JSON.
        assertRoundTrip(exampleSpec)
    }

    func testEncodingWritesEveryDefault() throws {
        // Proves defaults are written out explicitly, so the text alone says exactly what runs.
        let yaml = try parse(exampleYAML).yamlText()
        for expected in ["seed: 42", "beta1: 0.9", "beta2: 0.999", "epsilon: 1e-08", "weight_decay: 0.0",
                         "consistency: sync", "on_non_finite: fail", "dropout: 0.0", "restore_best: true", "scale: 255.0"] {
            XCTAssertTrue(yaml.contains(expected), "missing '\(expected)' in\n\(yaml)")
        }
        XCTAssertTrue(yaml.contains("    - {units: 256, activation: relu, dropout: 0.2}"), yaml)
        XCTAssertFalse(yaml.contains("header"), "idx specs must not carry csv-only keys:\n\(yaml)")
    }

    func testOnNonFiniteRoundTrips() throws {
        // Proves every non-finite policy survives encode → parse in YAML and JSON, and is written out.
        for policy in NonFinitePolicy.allCases {
            var spec = exampleSpec
            spec.training.onNonFinite = policy
            assertRoundTrip(spec)
            XCTAssertTrue(spec.jsonText().contains("\"on_non_finite\": \"\(policy.rawValue)\""), spec.jsonText())
        }
    }

    func testConsistencyAndBackupChunksRoundTrip() throws {
        // Proves every mode (with stalenesses at both ends) and backup_chunks survive encode → parse in YAML
        // and JSON, written as the reference says: sync/async as the plain mode, delayed/ssp as {mode, staleness},
        // backup_chunks only when turned off in sync.
        let cases: [(Consistency, Bool, String)] = [
            (.sync, true, "consistency: sync"),
            (.sync, false, "consistency: sync"),
            (.delayed(1), false, "consistency: {mode: delayed, staleness: 1}"),
            (.delayed(ConsistencyLimits.stalenessMax), false, "consistency: {mode: delayed, staleness: 8}"),
            (.ssp(2), false, "consistency: {mode: ssp, staleness: 2}"),
            (.async, false, "consistency: async"),
        ]
        for (consistency, backupChunks, written) in cases {
            var spec = exampleSpec
            spec.training.consistency = consistency
            spec.training.backupChunks = backupChunks
            assertRoundTrip(spec)
            let yaml = spec.yamlText()
            XCTAssertTrue(yaml.contains(written), "missing '\(written)' in\n\(yaml)")
            XCTAssertEqual(yaml.contains("backup_chunks: false"), consistency == .sync && !backupChunks, yaml)
            XCTAssertFalse(yaml.contains("backup_chunks: true"), yaml)
        }
        var delayed = exampleSpec
        delayed.training.consistency = .delayed(2)
        delayed.training.backupChunks = false
        XCTAssertTrue(delayed.jsonText().contains("""
            "consistency": {
                  "mode": "delayed",
                  "staleness": 2
                }
            """), delayed.jsonText())
    }

    func testDefaultSpecTextIsUnchanged() throws {
        // Proves a spec without consistency or backup_chunks encodes as it did before they existed
        // (the text is stored in model files and journals): the training line is exactly the old one.
        let yaml = try parse(exampleYAML).yamlText()
        XCTAssertTrue(yaml.contains("\ntraining: {batch_size: 128, chunks: 4, epochs: 10, consistency: sync, on_non_finite: fail}\n"),
                      yaml)
        let json = try parse(exampleYAML).jsonText()
        XCTAssertTrue(json.contains("""
              "training": {
                "batch_size": 128,
                "chunks": 4,
                "epochs": 10,
                "consistency": "sync",
                "on_non_finite": "fail"
              },
            """), json)
    }

    func testCSVSpecRoundTrips() {
        // Proves csv-only fields (header, named label column), standardize and validation files round-trip.
        let spec = JobSpec(
            name: "cancer", seed: UInt64.max,
            data: DataSpec(format: .csv, train: .csv(path: "/d/train data.csv"), validation: .csv(path: "rel/v: 1.csv"),
                           test: .csv(path: "/d/test.csv"), preprocessing: .standardize, header: true,
                           labelColumn: .name("yes")),
            model: ModelSpec(inputs: 30, layers: [LayerSpec(units: 16, activation: .tanh, dropout: 0.1),
                                                  LayerSpec(units: 1, activation: .sigmoid)]),
            loss: .binaryCrossEntropy,
            optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.05),
            training: TrainingSpec(batchSize: 32, chunks: 3, epochs: 7),
            earlyStopping: EarlyStoppingSpec(monitor: .valAccuracy, patience: 2, minDelta: 1e-4, restoreBest: false))
        assertRoundTrip(spec)
        var indexed = spec
        indexed.data.labelColumn = .index(30)
        indexed.data.header = false
        indexed.data.preprocessing = .none
        indexed.earlyStopping = nil
        indexed.data.validation = nil
        assertRoundTrip(indexed)
    }

    func testEveryOptimizerRoundTrips() {
        // Proves each optimizer's hyper-parameters, including non-default values and clip_norm, round-trip.
        let optimizers = [
            OptimizerSpec(kind: .sgd, learningRate: 0.1, weightDecay: 1e-4, clipNorm: 5),
            OptimizerSpec(kind: .momentum, learningRate: 0.02, momentum: 0.8),
            OptimizerSpec(kind: .nesterov, learningRate: 0.03, momentum: 0.95, weightDecay: 0.001),
            OptimizerSpec(kind: .adagrad, learningRate: 0.04, epsilon: 1e-10, clipNorm: 1.5),
            OptimizerSpec(kind: .adadelta, learningRate: 1.0, epsilon: 1e-6, rho: 0.95),
            OptimizerSpec(kind: .rmsprop, learningRate: 0.001, momentum: 0.5, epsilon: 1e-7, alpha: 0.9),
            OptimizerSpec(kind: .adam, learningRate: 3e-4, beta1: 0.85, beta2: 0.99, epsilon: 1e-7),
            OptimizerSpec(kind: .adamw, learningRate: 0.001, weightDecay: 0.01, clipNorm: 0.333),
        ]
        for optimizer in optimizers {
            var spec = exampleSpec
            spec.optimizer = optimizer
            assertRoundTrip(spec)
        }
    }

    func testAwkwardValuesRoundTrip() {
        // Proves names and numbers that YAML would misread unquoted (a bool-like name, tiny floats) round-trip.
        for name in ["true", "0x10", "1e5", "null", "-a", ".inf", "2024-01-01"] {
            var spec = exampleSpec
            spec.name = name
            assertRoundTrip(spec)
        }
        var spec = exampleSpec
        spec.model.layers[0].dropout = 0.1234567
        spec.data.validationSplit = 1.0 / 3.0
        spec.data.preprocessing = .scale(1e-30)
        spec.earlyStopping?.minDelta = .leastNonzeroMagnitude
        assertRoundTrip(spec)
    }

    func testJSONIsStable() throws {
        // Proves equal specs encode to identical JSON bytes, whichever format they were read from.
        XCTAssertEqual(try parse(exampleYAML).jsonText(), try parse(exampleJSON, format: .json).jsonText())
    }
}

final class ExampleFilesTests: XCTestCase {
    /// The repository's `examples/` folder, found from this file's path.
    private let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("examples")

    func testExamplesLoad() throws {
        // Proves every shipped example is valid and names data under the repository's data/ folder.
        let repository = examples.deletingLastPathComponent().standardizedFileURL.path
        for file in ["mnist-mlp.yaml", "mnist-mlp.json", "mnist-small-sgd.yaml", "mnist-csv.yaml"] {
            let spec = try JobSpec.load(path: examples.appendingPathComponent(file).path)
            XCTAssertTrue(spec.data.train.paths.allSatisfy { $0.hasPrefix(repository + "/data/mnist/") },
                          "\(file): \(spec.data.train.paths)")
        }
    }

    func testMNISTExampleInBothFormatsIsTheSameJob() throws {
        // Proves the YAML and JSON MNIST examples describe the same job, the one the schema documents.
        let yaml = try JobSpec.load(path: examples.appendingPathComponent("mnist-mlp.yaml").path)
        let json = try JobSpec.load(path: examples.appendingPathComponent("mnist-mlp.json").path)
        XCTAssertEqual(yaml, json)
        XCTAssertEqual(yaml.model, exampleSpec.model)
        XCTAssertEqual(yaml.optimizer, exampleSpec.optimizer)
        XCTAssertEqual(yaml.training, exampleSpec.training)
        XCTAssertEqual(yaml.earlyStopping, exampleSpec.earlyStopping)
    }

    func testSmallAndCSVExamples() throws {
        // Proves the small examples are the documented jobs: SGD 0.1, 784-64-10, 2 epochs; csv without header.
        let small = try JobSpec.load(path: examples.appendingPathComponent("mnist-small-sgd.yaml").path)
        XCTAssertEqual(small.optimizer, OptimizerSpec(kind: .sgd, learningRate: 0.1))
        XCTAssertEqual(small.model, ModelSpec(inputs: 784, layers: [LayerSpec(units: 64, activation: .relu),
                                                                     LayerSpec(units: 10, activation: .softmax)]))
        XCTAssertEqual(small.training.epochs, 2)
        XCTAssertEqual(small.data.validationSplit, 0.2)
        let csv = try JobSpec.load(path: examples.appendingPathComponent("mnist-csv.yaml").path)
        XCTAssertEqual(csv.data.format, .csv)
        XCTAssertEqual(csv.data.header, false)
        XCTAssertEqual(csv.data.labelColumn, .index(0))
        XCTAssertTrue(csv.data.test?.paths.first?.hasSuffix("data/mnist/small/test.csv") ?? false)
    }
}
