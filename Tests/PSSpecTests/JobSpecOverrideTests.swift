import XCTest
import PSCore
@testable import PSSpec

final class JobSpecOverrideTests: XCTestCase {
    func testValidOverridesReplaceFields() throws {
        // Proves PATH=VALUE overrides replace scalars at nested keys and list entries, values read as YAML.
        let spec = try parse(exampleYAML, overrides: ["training.epochs=3", "optimizer.learning_rate=0.01",
                                                      "model.layers[0].dropout=0.5", "name=renamed"])
        XCTAssertEqual(spec.training.epochs, 3)
        XCTAssertEqual(spec.optimizer.learningRate, 0.01)
        XCTAssertEqual(spec.model.layers[0].dropout, 0.5)
        XCTAssertEqual(spec.name, "renamed")
    }

    func testOverrideAddsMissingFieldsAndSections() throws {
        // Proves an override may set a field the document left out, creating its section if needed.
        let spec = try parse(exampleYAML, overrides: ["optimizer.weight_decay=0.1", "model.layers[1].dropout=0.25"])
        XCTAssertEqual(spec.optimizer.weightDecay, 0.1)
        XCTAssertEqual(spec.model.layers[1].dropout, 0.25)
        let text = example(replacing: "early_stopping: {monitor: val_loss, patience: 3, min_delta: 0.0, restore_best: true}\n",
                           with: "")
        let stopped = try parse(text, overrides: ["early_stopping.patience=5"])
        XCTAssertEqual(stopped.earlyStopping, EarlyStoppingSpec(monitor: .valLoss, patience: 5))
    }

    func testOverrideWithNullRemovesAnOptionalSection() throws {
        // Proves an empty or null value means "absent", so an override can drop early stopping.
        XCTAssertNil(try parse(exampleYAML, overrides: ["early_stopping=null"]).earlyStopping)
        XCTAssertEqual(try parse(exampleYAML, overrides: ["seed="]).seed, 0)
    }

    func testOverrideCanSetAStructuredValue() throws {
        // Proves the value may be any YAML, e.g. a flow mapping for a whole split.
        let spec = try parse(exampleYAML, overrides: ["data.test={images: a.gz, labels: b.gz}"])
        XCTAssertEqual(spec.data.test, .idx(images: "/jobs/a.gz", labels: "/jobs/b.gz"))
    }

    func testOverridesSetConsistencyAsAWholeOrByKey() throws {
        // Proves --set reaches into training.consistency whether the document leaves it out, gives the
        // shorthand string (which becomes {mode: …}) or the mapping, and that the result is validated as written.
        XCTAssertEqual(try parse(exampleYAML, overrides: ["training.consistency=ssp"]).training.consistency, .ssp(2))
        XCTAssertEqual(try parse(exampleYAML, overrides: ["training.consistency.mode=delayed"]).training.consistency, .delayed(1))
        XCTAssertEqual(try parse(exampleYAML, overrides: ["training.consistency.mode=delayed",
                                                          "training.consistency.staleness=2"]).training.consistency, .delayed(2))
        let shorthand = example(replacing: "epochs: 10}", with: "epochs: 10, consistency: ssp}")
        XCTAssertEqual(try parse(shorthand, overrides: ["training.consistency.staleness=4"]).training.consistency, .ssp(4))
        XCTAssertEqual(try parse(shorthand, overrides: ["training.consistency.mode=delayed"]).training.consistency, .delayed(1))
        let mapped = example(replacing: "epochs: 10}", with: "epochs: 10, consistency: {mode: delayed, staleness: 3}}")
        XCTAssertEqual(try parse(mapped, overrides: ["training.consistency.staleness=2"]).training.consistency, .delayed(2))
        XCTAssertEqual(try parse(mapped, overrides: ["training.consistency=async"]).training.consistency, .async)
        XCTAssertFalse(try parse(exampleYAML, overrides: ["training.backup_chunks=false"]).training.backupChunks)
        assertError(failure(exampleYAML, overrides: ["training.consistency.staleness=2"]),
                    field: "training.consistency.mode", "required field missing")
        assertError(failure(shorthand, overrides: ["training.consistency.staleness=20"]),
                    field: "training.consistency.staleness", "ConsistencyLimits.stalenessMax",
                    location: "override 'training.consistency.staleness=20'")
        assertError(failure(exampleYAML, overrides: ["training.consistency.bound=2"]), field: "training.consistency.bound",
                    "unknown field 'bound' under training.consistency", "(expected mode, staleness)")
        assertError(failure(exampleYAML, overrides: ["training.consistency=ssp", "training.backup_chunks=true"]),
                    field: "training.backup_chunks", "backup chunks apply to sync only")
    }

    func testUnknownOverridePathIsNamed() {
        // Proves an override naming a field the schema lacks is rejected, naming the path and the known keys.
        let error = failure(exampleYAML, overrides: ["training.epochz=3"])
        assertError(error, field: "training.epochz", "unknown field 'epochz'", "batch_size, chunks, epochs, consistency",
                    location: "override 'training.epochz=3'")
        assertError(failure(exampleYAML, overrides: ["modle.inputs=3"]), field: "modle.inputs", "unknown field 'modle'")
        assertError(failure(exampleYAML, overrides: ["training[0]=3"]), field: "training[0]", "not a list")
        assertError(failure(exampleYAML, overrides: ["name.first=3"]), field: "name.first", "unknown field 'first'")
    }

    func testOverrideIndexOutOfRange() {
        // Proves an override cannot invent list entries.
        assertError(failure(exampleYAML, overrides: ["model.layers[3].units=5"]), field: "model.layers[3]",
                    "index 3 is out of range", "3 entries")
    }

    func testOverrideWithBadValueIsValidatedLikeTheField() {
        // Proves an override's value goes through the same validation, located at the override.
        assertError(failure(exampleYAML, overrides: ["training.epochs=abc"]), field: "training.epochs",
                    "expected an integer, got 'abc'", location: "override 'training.epochs=abc'")
        assertError(failure(exampleYAML, overrides: ["model.layers[2].activation=relu6"]),
                    field: "model.layers[2].activation", "relu6")
    }

    func testMalformedOverrides() {
        // Proves overrides without '=' or with a malformed path are rejected with the expected form.
        assertError(failure(exampleYAML, overrides: ["training.epochs"]), field: "", "PATH=VALUE")
        assertError(failure(exampleYAML, overrides: ["training..epochs=3"]), field: "training..epochs", "not a field path")
        assertError(failure(exampleYAML, overrides: ["[0]=3"]), field: "[0]", "not a field path")
        assertError(failure(exampleYAML, overrides: ["data.scale=[1"]), field: "data.scale", "not valid YAML")
    }

    func testOverridesApplyToJSON() throws {
        // Proves overrides work on JSON documents as well.
        XCTAssertEqual(try parse(exampleJSON, format: .json, overrides: ["training.chunks=8"]).training.chunks, 8)
    }
}

final class SpecPathTests: XCTestCase {
    func testRelativePathsJoinTheBaseDirectory() throws {
        // Proves relative data paths are joined to the base directory and normalised; absolute ones are kept.
        let text = example(replacing: "images: data/mnist/train-images-idx3-ubyte.gz", with: "images: ../x/./y//train.gz")
            .replacingOccurrences(of: "labels: data/mnist/train-labels-idx1-ubyte.gz", with: "labels: /abs/../labels.gz")
        let spec = try JobSpec.parse(text, format: .yaml, source: "s", baseDirectory: "/jobs/mnist/")
        XCTAssertEqual(spec.data.train, .idx(images: "/jobs/x/y/train.gz", labels: "/labels.gz"))
    }

    func testWithoutBaseDirectoryPathsStayRelative() throws {
        // Proves a nil base directory keeps relative paths relative (normalised), for text that has no file.
        let spec = try JobSpec.parse(exampleYAML, format: .yaml)
        XCTAssertEqual(spec.data.train, .idx(images: "data/mnist/train-images-idx3-ubyte.gz",
                                             labels: "data/mnist/train-labels-idx1-ubyte.gz"))
    }

    func testNormalize() {
        // Proves lexical normalisation folds '.', '..' and repeated slashes without touching the filesystem.
        XCTAssertEqual(SpecPath.normalize("/a/b/../c/./d//"), "/a/c/d")
        XCTAssertEqual(SpecPath.normalize("/../a"), "/a")
        XCTAssertEqual(SpecPath.normalize("../../a/b/.."), "../../a")
        XCTAssertEqual(SpecPath.normalize("a/.."), ".")
        XCTAssertEqual(SpecPath.resolve("x", base: "rel/dir"), "rel/dir/x")
    }

    func testLoadResolvesAgainstTheFileFolderAndNamesTheFile() throws {
        // Proves load() picks the format from the extension, resolves paths against the file's folder,
        // and uses the path as the error source.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("spec-\(UUID().uuidString)/jobs")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder.deletingLastPathComponent()) }
        let yamlPath = folder.appendingPathComponent("job.yml").path
        try exampleYAML.write(toFile: yamlPath, atomically: true, encoding: .utf8)
        let spec = try JobSpec.load(path: yamlPath, overrides: ["training.epochs=2"])
        XCTAssertEqual(spec.data.test?.paths.first, folder.path + "/data/mnist/t10k-images-idx3-ubyte.gz")
        XCTAssertEqual(spec.training.epochs, 2)

        let jsonPath = folder.appendingPathComponent("job.json").path
        try exampleJSON.replacingOccurrences(of: "\"seed\": 42", with: "\"seed\": -4")
            .write(toFile: jsonPath, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try JobSpec.load(path: jsonPath)) { error in
            XCTAssertEqual((error as? SpecError)?.location, jsonPath + ":3")
            XCTAssertEqual((error as? SpecError)?.field, "seed")
        }
        XCTAssertThrowsError(try JobSpec.load(path: folder.appendingPathComponent("job.txt").path)) { error in
            XCTAssertTrue((error as? SpecError)?.message.contains(".yaml") ?? false, "\(error)")
        }
        XCTAssertThrowsError(try JobSpec.load(path: folder.appendingPathComponent("missing.yaml").path)) { error in
            XCTAssertTrue((error as? SpecError)?.message.contains("cannot read") ?? false, "\(error)")
        }
    }
}
