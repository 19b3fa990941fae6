import XCTest
import PSCore
@testable import PSSpec

/// One test per rule of the spec schema: each checks the exact field path and the key words of the message.
final class JobSpecParsingTests: XCTestCase {
    // MARK: whole documents

    func testExampleYAMLParsesToExpectedSpec() throws {
        // Proves the schema's full example parses to the expected JobSpec, paths joined to the base directory.
        XCTAssertEqual(try parse(exampleYAML), exampleSpec)
    }

    func testExampleJSONTwinParsesToSameSpec() throws {
        // Proves JSON is read with the same schema and gives the same JobSpec as the YAML.
        XCTAssertEqual(try parse(exampleJSON, format: .json), exampleSpec)
    }

    func testDefaultsOfAMinimalSpec() throws {
        // Proves every optional field takes its documented default.
        let spec = try parse("""
            name: tiny
            data: {format: csv, train: {path: t.csv}}
            model: {inputs: 3, layers: [{units: 1, activation: sigmoid}]}
            loss: binary_cross_entropy
            optimizer: {name: sgd}
            training: {batch_size: 8, epochs: 1}
            """)
        XCTAssertEqual(spec.seed, 0)
        XCTAssertEqual(spec.data, DataSpec(format: .csv, train: .csv(path: "/jobs/t.csv")))
        XCTAssertEqual(spec.data.preprocessing, .none)
        XCTAssertEqual(spec.data.header, false)
        XCTAssertEqual(spec.data.labelColumn, .index(0))
        XCTAssertEqual(spec.model.layers, [LayerSpec(units: 1, activation: .sigmoid, dropout: 0)])
        XCTAssertEqual(spec.optimizer, OptimizerSpec(kind: .sgd, learningRate: 0.01))
        XCTAssertEqual(spec.training, TrainingSpec(batchSize: 8, chunks: 1, epochs: 1, consistency: .sync))
        XCTAssertNil(spec.earlyStopping)
    }

    func testNullMeansAbsent() throws {
        // Proves an explicit null (or empty value) is treated as an absent field, so defaults apply.
        let spec = try parse(example(replacing: "seed: 42", with: "seed: ~")
            .replacingOccurrences(of: "early_stopping: {monitor: val_loss, patience: 3, min_delta: 0.0, restore_best: true}",
                                  with: "early_stopping:"))
        XCTAssertEqual(spec.seed, 0)
        XCTAssertNil(spec.earlyStopping)
    }

    // MARK: document-level errors

    func testUnknownTopLevelKeyListsExpectedKeys() {
        // Proves an unknown key is named, located by line, and the accepted keys are listed.
        let error = failure(example(replacing: "optimizer: {", with: "optimiser: {"))
        assertError(error, field: "optimiser", "unknown key 'optimiser'", "name, seed, data, model, loss, optimizer",
                    location: "job.yaml:16")
    }

    func testUnknownNestedKeyHasFullPath() {
        // Proves unknown keys deep in the tree carry their full path and line.
        let error = failure(example(replacing: "{units: 128, activation: relu}", with: "{units: 128, activaton: relu}"))
        assertError(error, field: "model.layers[1].activaton", "unknown key", "units, activation, dropout",
                    location: "job.yaml:13")
    }

    func testDuplicateKeyIsRejected() {
        // Proves a key written twice is an error rather than one value silently winning.
        let error = failure(example(replacing: "seed: 42", with: "seed: 42\nseed: 43"))
        assertError(error, field: "seed", "duplicate key", location: "job.yaml:3")
    }

    func testWrongTypeNamesTheValue() {
        // Proves a scalar of the wrong type says what was expected and what was found, at its line.
        let error = failure(example(replacing: "epochs: 10", with: "epochs: abc"))
        assertError(error, field: "training.epochs", "expected an integer, got 'abc'", location: "job.yaml:17")
    }

    func testFloatWhereIntegerExpected() {
        // Proves a fractional number is not truncated into an integer field.
        assertError(failure(example(replacing: "batch_size: 128", with: "batch_size: 12.5")),
                    field: "training.batch_size", "expected an integer", "12.5")
    }

    func testExpectedAMapping() {
        // Proves a scalar where a section belongs is reported as such.
        assertError(failure(example(replacing: "training: {batch_size: 128, chunks: 4, epochs: 10}", with: "training: 5")),
                    field: "training", "expected a mapping, got '5'", location: "job.yaml:17")
        assertError(failure("- a\n- b\n"), field: "", "expected a mapping")
    }

    func testRequiredFieldMissing() {
        // Proves a missing required field is named with its full path and located at its parent.
        assertError(failure(example(replacing: "loss: softmax_cross_entropy\n", with: "")),
                    field: "loss", "required field missing")
        assertError(failure(example(replacing: "  inputs: 784\n", with: "")),
                    field: "model.inputs", "required field missing", location: "job.yaml:10")
    }

    func testYAMLSyntaxErrorHasLine() {
        // Proves a YAML syntax error is reported with the line where the parser stopped.
        let error = failure(example(replacing: "loss: softmax_cross_entropy", with: "loss: [softmax"))
        XCTAssertEqual(error.field, "")
        XCTAssertTrue(error.message.contains("not valid YAML"), error.message)
        XCTAssertTrue(error.location?.hasPrefix("job.yaml:") ?? false, "\(error)")
    }

    func testEmptyDocument() {
        // Proves an empty file is rejected with a message rather than a crash.
        assertError(failure(""), field: "", "empty")
    }

    func testSpecLargerThanLimitIsRejectedBeforeParsing() {
        // Proves text over Limits.specBytesMax is refused by size, even if it is otherwise valid.
        let padding = "#" + String(repeating: "x", count: Limits.specBytesMax) + "\n"
        assertError(failure(padding + exampleYAML), field: "", "bytes", "\(Limits.specBytesMax)")
    }

    // MARK: JSON specifics

    func testJSONErrorsHaveLines() {
        // Proves JSON validation errors and JSON syntax errors are located by line like YAML's.
        let bad = exampleJSON.replacingOccurrences(of: "\"epochs\": 10", with: "\"epochs\": \"10\"")
        assertError(failure(bad, format: .json), field: "training.epochs", "expected an integer, got '10'",
                    location: "job.yaml:21")
        let broken = exampleJSON.replacingOccurrences(of: "\"seed\": 42,", with: "\"seed\": 42")
        assertError(failure(broken, format: .json), field: "", "not valid JSON", "','", location: "job.yaml:4")
    }

    func testJSONRejectsNonJSON() {
        // Proves the JSON reader is strict: trailing text, leading zeros and bare words are errors.
        assertError(failure("{} {}", format: .json), field: "", "after the document")
        assertError(failure("{\"seed\": 01}", format: .json), field: "", "leading zero")
        assertError(failure("{name: 1}", format: .json), field: "", "quoted key")
    }

    func testJSONStringEscapes() throws {
        // Proves JSON escapes, including a surrogate pair, decode to the intended characters.
        let text = exampleJSON.replacingOccurrences(of: "\"data/mnist/t10k-images-idx3-ubyte.gz\"",
                                                    with: "\"d\\u00e9j\\u00e0/\\ud83d\\ude00\\t.gz\"")
        let spec = try parse(text, format: .json)
        XCTAssertEqual(spec.data.test, .idx(images: "/jobs/déjà/😀\t.gz", labels: "/jobs/data/mnist/t10k-labels-idx1-ubyte.gz"))
    }

    // MARK: name and seed

    func testNameCharactersAndLength() throws {
        // Proves the name must be 1-64 characters of [A-Za-z0-9._-].
        assertError(failure(example(replacing: "name: mnist-mlp", with: "name: mnist mlp")),
                    field: "name", "1 to 64", "mnist mlp", location: "job.yaml:1")
        assertError(failure(example(replacing: "name: mnist-mlp", with: "name: " + String(repeating: "a", count: 65))),
                    field: "name", "1 to 64")
        assertError(failure(example(replacing: "name: mnist-mlp", with: "name: ''")), field: "name", "1 to 64")
        XCTAssertEqual(try parse(example(replacing: "name: mnist-mlp", with: "name: A.b_c-9")).name, "A.b_c-9")
    }

    func testSeedRange() throws {
        // Proves the seed spans 0 ..< 2^64 and values outside are rejected.
        XCTAssertEqual(try parse(example(replacing: "seed: 42", with: "seed: 18446744073709551615")).seed, UInt64.max)
        assertError(failure(example(replacing: "seed: 42", with: "seed: 18446744073709551616")), field: "seed", "2^64")
        assertError(failure(example(replacing: "seed: 42", with: "seed: -1")), field: "seed", "2^64", "-1")
        assertError(failure(example(replacing: "seed: 42", with: "seed: 1.5")), field: "seed", "expected an integer")
    }

    // MARK: data

    func testDataFormat() {
        // Proves the data format is required and must be idx or csv.
        assertError(failure(example(replacing: "format: idx", with: "format: parquet")),
                    field: "data.format", "unknown data format 'parquet'", "idx, csv", location: "job.yaml:4")
        assertError(failure(example(replacing: "  format: idx                 # idx | csv\n", with: "")),
                    field: "data.format", "required field missing")
    }

    func testIDXSplitNeedsImagesAndLabels() {
        // Proves an idx split must name both files, and a csv-style split is rejected for idx data.
        assertError(failure(example(replacing: ", labels: data/mnist/train-labels-idx1-ubyte.gz}", with: "}")),
                    field: "data.train.labels", "required field missing")
        assertError(failure(example(replacing: "train: {images", with: "train: {path: x.csv, images")),
                    field: "data.train.path", "unknown key 'path'", "images, labels", "format idx")
    }

    func testCSVSplitNeedsPath() {
        // Proves a csv split takes exactly `path`.
        let csv = example(replacing: "format: idx", with: "format: csv")
        assertError(failure(csv), field: "data.train.images", "unknown key 'images'", "expected path")
    }

    func testNULInADataPathIsRefused() {
        // Proves a data path holding a NUL byte (JSON "\u0000", YAML "\0") is refused naming the field,
        // since open(2) would read the path only up to it; a spec that reaches the server with one (which
        // validates `yamlText()` again) is refused the same way.
        let json = exampleJSON.replacingOccurrences(of: "\"data/mnist/t10k-labels-idx1-ubyte.gz\"",
                                                    with: "\"data/mnist/t10k-labels-idx1-ubyte.gz\\u0000.txt\"")
        assertError(failure(json, format: .json), field: "data.test.labels", "a path cannot hold a NUL byte (found at byte 36)")
        assertError(failure(example(replacing: "images: data/mnist/train-images-idx3-ubyte.gz", with: "images: \"x\\0y\"")),
                    field: "data.train.images", "a path cannot hold a NUL byte (found at byte 1)")
        var spec = exampleSpec
        spec.data.train = .idx(images: "/jobs/a\0b", labels: "/jobs/l")
        assertError(failure(spec.yamlText()), field: "data.train.images", "a path cannot hold a NUL byte")
    }

    func testTrainIsRequired() {
        // Proves data.train is required.
        let text = example(replacing: "  train: {images: data/mnist/train-images-idx3-ubyte.gz, labels: data/mnist/train-labels-idx1-ubyte.gz}\n", with: "")
        assertError(failure(text), field: "data.train", "required field missing")
    }

    func testValidationAndSplitAreExclusive() throws {
        // Proves data.validation and data.validation_split cannot both be given, and validation files parse.
        let both = example(replacing: "validation_split: 0.1", with: "validation_split: 0.1\n  validation: {images: v.gz, labels: vl.gz}")
        assertError(failure(both), field: "data.validation_split", "data.validation")
        let files = try parse(example(replacing: "validation_split: 0.1", with: "validation: {images: v.gz, labels: vl.gz}"))
        XCTAssertEqual(files.data.validation, .idx(images: "/jobs/v.gz", labels: "/jobs/vl.gz"))
        XCTAssertNil(files.data.validationSplit)
    }

    func testValidationSplitRange() {
        // Proves the split must lie strictly between 0 and 1.
        for bad in ["0", "1", "1.5", "-0.1"] {
            assertError(failure(example(replacing: "validation_split: 0.1", with: "validation_split: \(bad)")),
                        field: "data.validation_split", "between 0 and 1", location: "job.yaml:7")
        }
    }

    func testTestSplitIsOptional() throws {
        // Proves data.test may be left out.
        let text = example(replacing: "  test:  {images: data/mnist/t10k-images-idx3-ubyte.gz,  labels: data/mnist/t10k-labels-idx1-ubyte.gz}\n", with: "")
        XCTAssertNil(try parse(text).data.test)
    }

    func testScaleAndStandardize() throws {
        // Proves scale > 0 and standardize are exclusive, and each maps to its Preprocessing case.
        assertError(failure(example(replacing: "scale: 255", with: "scale: 255\n  standardize: true")),
                    field: "data.standardize", "data.scale")
        assertError(failure(example(replacing: "scale: 255", with: "scale: 0")), field: "data.scale", "greater than 0")
        assertError(failure(example(replacing: "scale: 255", with: "scale: yes")), field: "data.scale", "expected a number")
        XCTAssertEqual(try parse(example(replacing: "scale: 255", with: "standardize: true")).data.preprocessing, .standardize)
        XCTAssertEqual(try parse(example(replacing: "scale: 255", with: "standardize: false")).data.preprocessing, .none)
        XCTAssertEqual(try parse(example(replacing: "scale: 255", with: "scale: 255\n  standardize: false")).data.preprocessing,
                       .scale(255))
    }

    func testHeaderAndLabelColumnOnlyForCSV() {
        // Proves header and label_column are rejected for idx data.
        assertError(failure(example(replacing: "scale: 255", with: "scale: 255\n  header: true")),
                    field: "data.header", "csv")
        assertError(failure(example(replacing: "scale: 255", with: "scale: 255\n  label_column: 0")),
                    field: "data.label_column", "csv")
    }

    func testLabelColumnByIndexOrName() throws {
        // Proves label_column takes an index >= 0, or a name only when the file has a header.
        let csv = """
            name: c
            data: {format: csv, train: {path: a.csv}, LABEL}
            model: {inputs: 3, layers: [{units: 1, activation: sigmoid}]}
            loss: binary_cross_entropy
            optimizer: {name: sgd}
            training: {batch_size: 8, epochs: 1}
            """
        func with(_ text: String) -> String { csv.replacingOccurrences(of: "LABEL", with: text) }
        XCTAssertEqual(try parse(with("label_column: 4")).data.labelColumn, .index(4))
        let named = try parse(with("header: true, label_column: diagnosis"))
        XCTAssertEqual(named.data.labelColumn, .name("diagnosis"))
        XCTAssertTrue(named.data.header)
        XCTAssertEqual(try parse(with("header: true, label_column: '3'")).data.labelColumn, .name("3"))
        assertError(failure(with("label_column: diagnosis")), field: "data.label_column", "header: true", "diagnosis")
        assertError(failure(with("label_column: -1")), field: "data.label_column", "at least 0")
        assertError(failure(with("header: 1")), field: "data.header", "expected true or false")
    }

    func testPathsAreNotEmpty() {
        // Proves an empty file path is rejected.
        assertError(failure(example(replacing: "images: data/mnist/train-images-idx3-ubyte.gz", with: "images: ''")),
                    field: "data.train.images", "file path")
    }

    // MARK: model

    func testInputsRange() {
        // Proves model.inputs lies in 1 ... Limits.inputsMax.
        assertError(failure(example(replacing: "inputs: 784", with: "inputs: 0")),
                    field: "model.inputs", "between 1 and \(Limits.inputsMax)", "got 0", location: "job.yaml:10")
        assertError(failure(example(replacing: "inputs: 784", with: "inputs: \(Limits.inputsMax + 1)")),
                    field: "model.inputs", "Limits.inputsMax")
    }

    func testLayerCount() {
        // Proves a model has 1 ... Limits.layersMax layers.
        let empty = failure("""
            name: x
            data: {format: csv, train: {path: a.csv}}
            model: {inputs: 3, layers: []}
            loss: mean_squared_error
            optimizer: {name: sgd}
            training: {batch_size: 8, epochs: 1}
            """)
        assertError(empty, field: "model.layers", "between 1 and \(Limits.layersMax)", "got 0")
        let many = Array(repeating: "{units: 2, activation: relu}", count: Limits.layersMax + 1).joined(separator: ", ")
        let text = """
            name: x
            data: {format: csv, train: {path: a.csv}}
            model: {inputs: 3, layers: [\(many)]}
            loss: mean_squared_error
            optimizer: {name: sgd}
            training: {batch_size: 8, epochs: 1}
            """
        assertError(failure(text), field: "model.layers", "Limits.layersMax", "got \(Limits.layersMax + 1)")
        assertError(failure(text.replacingOccurrences(of: "[\(many)]", with: "3")), field: "model.layers",
                    "expected a list of layers, got '3'")
    }

    func testUnitsRange() {
        // Proves units lie in 1 ... Limits.unitsMax.
        assertError(failure(example(replacing: "units: 128", with: "units: 0")),
                    field: "model.layers[1].units", "between 1 and", "got 0", location: "job.yaml:13")
        assertError(failure(example(replacing: "units: 128", with: "units: 65537")),
                    field: "model.layers[1].units", "Limits.unitsMax")
    }

    func testUnknownActivation() {
        // Proves an unknown activation is named with its layer and the accepted ones listed.
        let error = failure(example(replacing: "activation: softmax}", with: "activation: relu6}"))
        assertError(error, field: "model.layers[2].activation", "unknown activation 'relu6'",
                    "(expected sigmoid, tanh, relu, linear, softmax)", location: "job.yaml:14")
        XCTAssertEqual(error.description,
                       "job.yaml:14: model.layers[2].activation: unknown activation 'relu6' (expected sigmoid, tanh, relu, linear, softmax)")
    }

    func testDropoutRange() throws {
        // Proves dropout lies in [0, 1) and defaults to 0.
        assertError(failure(example(replacing: "dropout: 0.2", with: "dropout: 1")),
                    field: "model.layers[0].dropout", "[0, 1)", location: "job.yaml:12")
        assertError(failure(example(replacing: "dropout: 0.2", with: "dropout: -0.1")),
                    field: "model.layers[0].dropout", "[0, 1)")
        XCTAssertEqual(try parse(exampleYAML).model.layers[1].dropout, 0)
    }

    func testNoDropoutOnLastLayer() throws {
        // Proves the output layer cannot drop units, though an explicit 0 is allowed.
        assertError(failure(example(replacing: "activation: softmax}", with: "activation: softmax, dropout: 0.5}")),
                    field: "model.layers[2].dropout", "last layer")
        XCTAssertNoThrow(try parse(example(replacing: "activation: softmax}", with: "activation: softmax, dropout: 0}")))
    }

    func testSoftmaxOnlyOnLastLayer() {
        // Proves softmax in a hidden layer is rejected at that layer.
        assertError(failure(example(replacing: "{units: 128, activation: relu}", with: "{units: 128, activation: softmax}")),
                    field: "model.layers[1].activation", "only on the last layer")
    }

    func testParameterLimit() {
        // Proves the total parameter count is bounded by Limits.parametersMax and reported on `model`.
        let text = example(replacing: "inputs: 784", with: "inputs: \(Limits.inputsMax)")
            .replacingOccurrences(of: "units: 256", with: "units: 512")
        assertError(failure(text), field: "model", "parameters", "Limits.parametersMax")
    }

    func testModelTooLargeForOneFrameIsRefusedAtValidation() {
        // Proves a 20 M-parameter model (which would validate but could not be sent while the limit was
        // 2^28) is refused when parsed, naming the limit, and that the limit leaves room in a frame.
        let text = example(replacing: "units: 256", with: "units: 25000")
        assertError(failure(text), field: "model", "parameters", "Limits.parametersMax")
        XCTAssertLessThan(Limits.parametersMax, 20_000_000)
        XCTAssertLessThanOrEqual(Limits.parametersMax * 4 + Limits.frameReserveBytes, Limits.frameBytesMax)
    }

    // MARK: loss

    func testUnknownLoss() {
        // Proves an unknown loss lists the accepted ones.
        assertError(failure(example(replacing: "loss: softmax_cross_entropy", with: "loss: hinge")),
                    field: "loss", "unknown loss 'hinge'", "softmax_cross_entropy, binary_cross_entropy, mean_squared_error")
    }

    func testSoftmaxCrossEntropyNeedsSoftmaxOutput() {
        // Proves softmax_cross_entropy needs a softmax last layer with at least two units.
        assertError(failure(example(replacing: "{units: 10, activation: softmax}", with: "{units: 10, activation: sigmoid}")),
                    field: "loss", "softmax_cross_entropy requires a softmax last layer", "sigmoid", location: "job.yaml:15")
        assertError(failure(example(replacing: "{units: 10, activation: softmax}", with: "{units: 1, activation: softmax}")),
                    field: "model.layers[2].units", "at least 2 output units")
    }

    func testBinaryCrossEntropyNeedsOneSigmoidUnit() {
        // Proves binary_cross_entropy needs exactly one sigmoid output unit.
        let bce = example(replacing: "loss: softmax_cross_entropy", with: "loss: binary_cross_entropy")
        assertError(failure(bce), field: "loss", "binary_cross_entropy requires a sigmoid last layer", "softmax")
        let sigmoid10 = bce.replacingOccurrences(of: "{units: 10, activation: softmax}", with: "{units: 10, activation: sigmoid}")
        assertError(failure(sigmoid10), field: "model.layers[2].units", "exactly 1 output unit", "got 10")
        let relu1 = bce.replacingOccurrences(of: "{units: 10, activation: softmax}", with: "{units: 1, activation: relu}")
        assertError(failure(relu1), field: "loss", "binary_cross_entropy requires a sigmoid last layer", "relu")
    }

    func testMeanSquaredErrorForbidsSoftmax() throws {
        // Proves mean_squared_error cannot follow softmax and accepts any other output.
        let mse = example(replacing: "loss: softmax_cross_entropy", with: "loss: mean_squared_error")
        assertError(failure(mse), field: "model.layers[2].activation", "softmax_cross_entropy", "mean_squared_error")
        let linear = mse.replacingOccurrences(of: "{units: 10, activation: softmax}", with: "{units: 10, activation: linear}")
        XCTAssertEqual(try parse(linear).loss, .meanSquaredError)
    }

    // MARK: optimizer

    func testOptimizerNameRequiredAndKnown() {
        // Proves optimizer.name is required and must be a known optimizer.
        assertError(failure(example(replacing: "{name: adam, learning_rate: 0.001}", with: "{learning_rate: 0.001}")),
                    field: "optimizer.name", "required field missing", location: "job.yaml:16")
        assertError(failure(example(replacing: "name: adam", with: "name: lbfgs")),
                    field: "optimizer.name", "unknown optimizer 'lbfgs'", "sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam, adamw")
    }

    func testOptimizerDefaultsPerKind() throws {
        // Proves each optimizer gets PyTorch's torch.optim defaults; unused fields keep OptimizerSpec's init values.
        func optimizer(_ name: String) throws -> OptimizerSpec {
            try parse(example(replacing: "{name: adam, learning_rate: 0.001}", with: "{name: \(name)}")).optimizer
        }
        XCTAssertEqual(try optimizer("sgd"), OptimizerSpec(kind: .sgd, learningRate: 0.01))
        XCTAssertEqual(try optimizer("momentum"), OptimizerSpec(kind: .momentum, learningRate: 0.01, momentum: 0.9))
        XCTAssertEqual(try optimizer("nesterov"), OptimizerSpec(kind: .nesterov, learningRate: 0.01, momentum: 0.9))
        XCTAssertEqual(try optimizer("adagrad"), OptimizerSpec(kind: .adagrad, learningRate: 0.01, epsilon: 1e-10))
        XCTAssertEqual(try optimizer("adadelta"), OptimizerSpec(kind: .adadelta, learningRate: 1.0, epsilon: 1e-6, rho: 0.9))
        XCTAssertEqual(try optimizer("rmsprop"), OptimizerSpec(kind: .rmsprop, learningRate: 0.01, momentum: 0,
                                                               epsilon: 1e-8, alpha: 0.99))
        XCTAssertEqual(try optimizer("adam"), OptimizerSpec(kind: .adam, learningRate: 0.001, beta1: 0.9, beta2: 0.999,
                                                            epsilon: 1e-8, weightDecay: 0))
        XCTAssertEqual(try optimizer("adamw"), OptimizerSpec(kind: .adamw, learningRate: 0.001, weightDecay: 0.01))
    }

    func testOptimizerFieldNotUsedByKind() {
        // Proves a hyper-parameter the chosen optimizer does not read is rejected, listing the ones it does.
        assertError(failure(example(replacing: "{name: adam, learning_rate: 0.001}", with: "{name: sgd, beta1: 0.9}")),
                    field: "optimizer.beta1", "not used by sgd", "(its fields: learning_rate, weight_decay, clip_norm)",
                    location: "job.yaml:16")
        assertError(failure(example(replacing: "{name: adam, learning_rate: 0.001}", with: "{name: adam, momentum: 0.9}")),
                    field: "optimizer.momentum", "not used by adam")
        assertError(failure(example(replacing: "{name: adam, learning_rate: 0.001}", with: "{name: adam, lr: 0.1}")),
                    field: "optimizer.lr", "unknown key 'lr'", "learning_rate")
    }

    func testOptimizerRanges() {
        // Proves every hyper-parameter's range: lr > 0, momentum/betas in [0,1), epsilon > 0, rho/alpha in (0,1),
        // weight_decay >= 0, clip_norm > 0.
        let cases: [(String, String, String)] = [
            ("{name: sgd, learning_rate: 0}", "optimizer.learning_rate", "greater than 0"),
            ("{name: sgd, learning_rate: -0.1}", "optimizer.learning_rate", "greater than 0"),
            ("{name: momentum, momentum: 1}", "optimizer.momentum", "[0, 1)"),
            ("{name: nesterov, momentum: 0}", "optimizer.momentum", "nesterov needs momentum greater than 0"),
            ("{name: adam, beta1: 1.0}", "optimizer.beta1", "[0, 1)"),
            ("{name: adamw, beta2: -0.5}", "optimizer.beta2", "[0, 1)"),
            ("{name: adagrad, epsilon: 0}", "optimizer.epsilon", "greater than 0"),
            ("{name: adadelta, rho: 1}", "optimizer.rho", "(0, 1)"),
            ("{name: rmsprop, alpha: 0}", "optimizer.alpha", "(0, 1)"),
            ("{name: rmsprop, momentum: 1.5}", "optimizer.momentum", "[0, 1)"),
            ("{name: sgd, weight_decay: -1}", "optimizer.weight_decay", "at least 0"),
            ("{name: adam, clip_norm: 0}", "optimizer.clip_norm", "greater than 0"),
        ]
        for (optimizer, field, words) in cases {
            assertError(failure(example(replacing: "{name: adam, learning_rate: 0.001}", with: optimizer)),
                        field: field, words)
        }
    }

    func testNumbersMustBeFiniteAndNotBooleans() throws {
        // Proves float fields accept integers but reject booleans, strings and non-finite values.
        let sgd = { (lr: String) in self.example(replacing: "{name: adam, learning_rate: 0.001}", with: "{name: sgd, learning_rate: \(lr)}") }
        XCTAssertEqual(try parse(sgd("1")).optimizer.learningRate, 1)
        assertError(failure(sgd("true")), field: "optimizer.learning_rate", "expected a number, got 'true'")
        assertError(failure(sgd("'0.1'")), field: "optimizer.learning_rate", "expected a number")
        assertError(failure(sgd(".inf")), field: "optimizer.learning_rate", "finite")
        assertError(failure(sgd(".nan")), field: "optimizer.learning_rate", "finite")
        assertError(failure(sgd("1e39")), field: "optimizer.learning_rate", "32-bit float")
    }

    // MARK: training

    func testBatchSizeRange() {
        // Proves batch_size lies in 1 ... Limits.batchSizeMax.
        assertError(failure(example(replacing: "batch_size: 128", with: "batch_size: 0")),
                    field: "training.batch_size", "between 1 and \(Limits.batchSizeMax)", location: "job.yaml:17")
        assertError(failure(example(replacing: "batch_size: 128", with: "batch_size: 65537")),
                    field: "training.batch_size", "Limits.batchSizeMax")
    }

    func testChunksRange() throws {
        // Proves chunks lie in 1 ... min(batch_size, Limits.chunksMax) and default to 1.
        assertError(failure(example(replacing: "chunks: 4", with: "chunks: 129")),
                    field: "training.chunks", "between 1 and 128", "batch_size")
        assertError(failure(example(replacing: "batch_size: 128, chunks: 4", with: "batch_size: 4096, chunks: 1025")),
                    field: "training.chunks", "between 1 and 1024", "Limits.chunksMax")
        assertError(failure(example(replacing: "chunks: 4", with: "chunks: 0")), field: "training.chunks", "got 0")
        XCTAssertEqual(try parse(example(replacing: "chunks: 4, ", with: "")).training.chunks, 1)
    }

    func testEpochsRange() {
        // Proves epochs lie in 1 ... Limits.epochsMax.
        assertError(failure(example(replacing: "epochs: 10", with: "epochs: 0")), field: "training.epochs", "between 1 and")
        assertError(failure(example(replacing: "epochs: 10", with: "epochs: 100001")), field: "training.epochs",
                    "Limits.epochsMax")
    }

    func testConsistencyModeNamesTheAcceptedModes() throws {
        // Proves consistency accepts the four modes and names them for an unknown one.
        XCTAssertEqual(try parse(example(replacing: "epochs: 10}", with: "epochs: 10, consistency: sync}")).training.consistency, .sync)
        XCTAssertEqual(try parse(example(replacing: "epochs: 10}", with: "epochs: 10, consistency: async}")).training.consistency, .async)
        assertError(failure(example(replacing: "epochs: 10}", with: "epochs: 10, consistency: eventual}")),
                    field: "training.consistency", "'eventual'", "(expected sync, delayed, ssp, async)")
    }

    /// The example with `training` given `extra` after its epochs.
    private func training(_ extra: String) -> String {
        example(replacing: "epochs: 10}", with: "epochs: 10, \(extra)}")
    }

    func testConsistencyShorthandTakesTheModesDefaultStaleness() throws {
        // Proves the plain string names the mode and takes Consistency.defaultStaleness: delayed 1, ssp 2.
        XCTAssertEqual(try parse(training("consistency: delayed")).training.consistency, .delayed(1))
        XCTAssertEqual(try parse(training("consistency: ssp")).training.consistency, .ssp(2))
        XCTAssertEqual(try parse(exampleYAML).training.consistency, .sync)
    }

    func testConsistencyMappingReadsModeAndStaleness() throws {
        // Proves the map form reads mode and staleness (optional: the mode's default), in YAML and JSON,
        // and stalenesses at both ends of 1...ConsistencyLimits.stalenessMax.
        XCTAssertEqual(try parse(training("consistency: {mode: delayed, staleness: 2}")).training.consistency, .delayed(2))
        XCTAssertEqual(try parse(training("consistency: {mode: ssp, staleness: 1}")).training.consistency, .ssp(1))
        XCTAssertEqual(try parse(training("consistency: {mode: ssp, staleness: \(ConsistencyLimits.stalenessMax)}"))
            .training.consistency, .ssp(ConsistencyLimits.stalenessMax))
        XCTAssertEqual(try parse(training("consistency: {mode: delayed}")).training.consistency, .delayed(1))
        XCTAssertEqual(try parse(training("consistency: {mode: async}")).training.consistency, .async)
        XCTAssertEqual(try parse(training("consistency: {mode: sync}")).training.consistency, .sync)
        let json = exampleJSON.replacingOccurrences(of: "\"epochs\": 10}",
                                                    with: "\"epochs\": 10, \"consistency\": {\"mode\": \"ssp\", \"staleness\": 3}}")
        XCTAssertNotEqual(json, exampleJSON)
        XCTAssertEqual(try parse(json, format: .json).training.consistency, .ssp(3))
    }

    func testConsistencyStalenessIsCheckedPerMode() {
        // Proves sync and async refuse a staleness (saying why), delayed and ssp need one in
        // 1...ConsistencyLimits.stalenessMax (naming the limit), and a bad mode or key in the map is named.
        assertError(failure(training("consistency: {mode: sync, staleness: 1}")),
                    field: "training.consistency.staleness", "sync takes no staleness")
        assertError(failure(training("consistency: {mode: async, staleness: 4}")),
                    field: "training.consistency.staleness", "async takes no staleness", "ConsistencyLimits.asyncStalenessMax")
        assertError(failure(training("consistency: {mode: delayed, staleness: 0}")),
                    field: "training.consistency.staleness", "between 1 and 8", "ConsistencyLimits.stalenessMax", "got 0")
        assertError(failure(training("consistency: {mode: ssp, staleness: 9}")),
                    field: "training.consistency.staleness", "between 1 and 8", "ConsistencyLimits.stalenessMax", "got 9")
        assertError(failure(training("consistency: {mode: ssp, staleness: two}")),
                    field: "training.consistency.staleness", "expected an integer")
        assertError(failure(training("consistency: {mode: eventual}")),
                    field: "training.consistency.mode", "'eventual'", "(expected sync, delayed, ssp, async)")
        assertError(failure(training("consistency: {staleness: 2}")), field: "training.consistency.mode",
                    "required field missing")
        assertError(failure(training("consistency: {mode: ssp, stalenes: 2}")), field: "training.consistency.stalenes",
                    "unknown key 'stalenes'", "(expected mode, staleness)")
        assertError(failure(training("consistency: [ssp]")), field: "training.consistency", "expected a string, got a list")
    }

    func testBackupChunksIsSyncOnly() throws {
        // Proves backup_chunks defaults to true in sync and false elsewhere, may be turned off in any mode,
        // and an explicit true with another mode is refused naming the field and the mode.
        XCTAssertTrue(try parse(exampleYAML).training.backupChunks)
        XCTAssertFalse(try parse(training("backup_chunks: false")).training.backupChunks)
        XCTAssertTrue(try parse(training("consistency: sync, backup_chunks: true")).training.backupChunks)
        for mode in ["delayed", "ssp", "async"] {
            XCTAssertFalse(try parse(training("consistency: \(mode)")).training.backupChunks, mode)
            XCTAssertFalse(try parse(training("consistency: \(mode), backup_chunks: false")).training.backupChunks, mode)
            assertError(failure(training("consistency: \(mode), backup_chunks: true")), field: "training.backup_chunks",
                        "backup chunks apply to sync only", "training.consistency is \(mode)")
        }
        assertError(failure(training("backup_chunks: yes please")), field: "training.backup_chunks", "expected true or false")
    }

    func testComputeSignatureFields() throws {
        // Proves compute_signature is checked as a signature, allow_mixed_signatures is a bool
        // (default false), and the two together are refused as contradictory.
        let sig = "openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-1"
        let named = try parse(example(replacing: "epochs: 10}", with: "epochs: 10, compute_signature: '\(sig)'}"))
        XCTAssertEqual(named.training.computeSignature, sig)
        XCTAssertFalse(named.training.allowMixedSignatures)
        XCTAssertEqual(try parse(example(replacing: "epochs: 10}", with: "epochs: 10, allow_mixed_signatures: true}"))
            .training.allowMixedSignatures, true)
        XCTAssertNil(try parse(example(replacing: "epochs: 10}", with: "epochs: 10}")).training.computeSignature)
        assertError(failure(example(replacing: "epochs: 10}", with: "epochs: 10, compute_signature: Haswell}")),
                    field: "training.compute_signature", "not a compute signature", "5 parts")
        assertError(failure(example(replacing: "epochs: 10}", with: "epochs: 10, compute_signature: 'openblas-0.3.21/Haswell/sse/glibc-2.36/threads-1'}")),
                    field: "training.compute_signature", "'avx2' or 'portable'")
        assertError(failure(example(replacing: "epochs: 10}", with: "epochs: 10, allow_mixed_signatures: 1}")),
                    field: "training.allow_mixed_signatures")
        assertError(failure(example(replacing: "epochs: 10}",
                                    with: "epochs: 10, compute_signature: '\(sig)', allow_mixed_signatures: true}")),
                    field: "training.compute_signature", "set one of them")
    }

    func testOnNonFiniteDefaultsToFailAndNamesTheChoices() throws {
        // Proves training.on_non_finite defaults to fail (a spec without it, as written before it
        // existed), accepts fail, stop and continue, in YAML and by --set, and names the choices otherwise.
        XCTAssertEqual(try parse(exampleYAML).training.onNonFinite, .fail)
        for policy in NonFinitePolicy.allCases {
            XCTAssertEqual(try parse(example(replacing: "epochs: 10}", with: "epochs: 10, on_non_finite: \(policy.rawValue)}"))
                .training.onNonFinite, policy)
            XCTAssertEqual(try JobSpec.parse(exampleYAML, format: .yaml, overrides: ["training.on_non_finite=\(policy.rawValue)"])
                .training.onNonFinite, policy)
        }
        assertError(failure(example(replacing: "epochs: 10}", with: "epochs: 10, on_non_finite: skip}")),
                    field: "training.on_non_finite", "unknown non-finite policy 'skip'", "(expected fail, stop, continue)")
        assertError(failure(example(replacing: "epochs: 10}", with: "epochs: 10, on_non_finite: true}")),
                    field: "training.on_non_finite", "(expected fail, stop, continue)")
        assertError(failure(example(replacing: "epochs: 10}", with: "epochs: 10, on_non_finite: [stop]}")),
                    field: "training.on_non_finite", "expected a string")
    }

    // MARK: early stopping

    func testEarlyStoppingDefaultsAndPatience() throws {
        // Proves monitor, min_delta and restore_best default, and patience is required and >= 0.
        let spec = try parse(example(replacing: "{monitor: val_loss, patience: 3, min_delta: 0.0, restore_best: true}",
                                     with: "{patience: 0}"))
        XCTAssertEqual(spec.earlyStopping, EarlyStoppingSpec(monitor: .valLoss, patience: 0, minDelta: 0, restoreBest: true))
        assertError(failure(example(replacing: "patience: 3, ", with: "")),
                    field: "early_stopping.patience", "required field missing", location: "job.yaml:18")
        assertError(failure(example(replacing: "patience: 3", with: "patience: -1")),
                    field: "early_stopping.patience", "between 0 and")
        assertError(failure(example(replacing: "min_delta: 0.0", with: "min_delta: -0.5")),
                    field: "early_stopping.min_delta", "at least 0")
        assertError(failure(example(replacing: "restore_best: true", with: "restore_best: 1")),
                    field: "early_stopping.restore_best", "expected true or false")
        assertError(failure(example(replacing: "monitor: val_loss", with: "monitor: loss")),
                    field: "early_stopping.monitor", "unknown metric 'loss'", "val_loss, val_accuracy")
    }

    func testValAccuracyNeedsClassificationLoss() throws {
        // Proves val_accuracy can be monitored for classification losses only.
        XCTAssertEqual(try parse(example(replacing: "monitor: val_loss", with: "monitor: val_accuracy")).earlyStopping?.monitor,
                       .valAccuracy)
        let mse = example(replacing: "loss: softmax_cross_entropy", with: "loss: mean_squared_error")
            .replacingOccurrences(of: "{units: 10, activation: softmax}", with: "{units: 10, activation: linear}")
            .replacingOccurrences(of: "monitor: val_loss", with: "monitor: val_accuracy")
        assertError(failure(mse), field: "early_stopping.monitor", "classification loss", "mean_squared_error",
                    location: "job.yaml:18")
    }

    func testEarlyStoppingNeedsValidationData() {
        // Proves early stopping without validation data is rejected on `early_stopping`.
        assertError(failure(example(replacing: "  validation_split: 0.1\n", with: "")),
                    field: "early_stopping", "requires validation data", "data.validation_split", location: "job.yaml:17")
    }
}

/// Hostile input: limits that keep a bad spec from costing the parser more than a bad spec is worth.
final class JobSpecHostileInputTests: XCTestCase {
    func testAliasExpansionIsBounded() {
        // Proves YAML aliases that multiply ("billion laughs") are stopped by Limits.specNodesMax.
        var text = "a0: [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...6 {
            let p = "*a\(i - 1)"
            text += "a\(i): &a\(i) [\(Array(repeating: p, count: 10).joined(separator: ", "))]\n"
        }
        text = text.replacingOccurrences(of: "a0: [", with: "a0: &a0 [")
        assertError(failure(text), field: "", "Limits.specNodesMax")
    }

    func testDeepNestingIsRefused() {
        // Proves deeply nested flow collections are refused before the recursive readers see them.
        let deep = String(repeating: "[", count: 100_000)
        assertError(failure("name: " + deep), field: "", "Limits.specDepthMax", location: "job.yaml:1")
        assertError(failure(deep, format: .json), field: "", "nested deeper")
    }
}

/// The `checkpoint` section: defaults, each field's range, and that it round-trips.
final class CheckpointSpecParsingTests: XCTestCase {
    func testDefaultsAndFields() throws {
        // Proves a spec without the section gets every 30 s and each epoch's end, keeping 2, and each
        // field is read.
        XCTAssertEqual(try parse(exampleYAML).checkpoint, CheckpointSpec(everySteps: 0, everySeconds: 30, atEpochEnd: true, keep: 2))
        let spec = try parse(exampleYAML + "checkpoint: {every_steps: 50, every_seconds: 0, at_epoch_end: false, keep: 5}\n")
        XCTAssertEqual(spec.checkpoint, CheckpointSpec(everySteps: 50, everySeconds: 0, atEpochEnd: false, keep: 5))
        XCTAssertFalse(spec.checkpoint.isOff)
        XCTAssertTrue(try parse(exampleYAML + "checkpoint: {every_seconds: 0, at_epoch_end: false}\n").checkpoint.isOff)
        XCTAssertEqual(try parse(exampleYAML, overrides: ["checkpoint.every_steps=7"]).checkpoint.everySteps, 7)
    }

    func testRanges() {
        // Proves every field is range-checked and named, and unknown keys are listed.
        assertError(failure(exampleYAML + "checkpoint: {keep: 0}\n"), field: "checkpoint.keep", "between 1 and \(Limits.checkpointsKeptMax)")
        assertError(failure(exampleYAML + "checkpoint: {keep: 101}\n"), field: "checkpoint.keep", "Limits.checkpointsKeptMax")
        assertError(failure(exampleYAML + "checkpoint: {every_steps: -1}\n"), field: "checkpoint.every_steps", "0 turns it off")
        assertError(failure(exampleYAML + "checkpoint: {every_seconds: -0.5}\n"), field: "checkpoint.every_seconds", "0 (off)")
        assertError(failure(exampleYAML + "checkpoint: {every_seconds: 1e9}\n"), field: "checkpoint.every_seconds", "Limits.checkpointSecondsMax")
        assertError(failure(exampleYAML + "checkpoint: {at_epoch_end: 1}\n"), field: "checkpoint.at_epoch_end")
        assertError(failure(exampleYAML + "checkpoint: {every: 5}\n"), field: "checkpoint.every", "every_steps")
    }

    func testRoundTripsInTextAndOnTheWire() throws {
        // Proves a non-default section is written (and read back) in YAML, JSON and on the wire, and the
        // default one is left out of the text.
        var spec = try parse(exampleYAML)
        XCTAssertFalse(spec.yamlText().contains("checkpoint"))
        spec.checkpoint = CheckpointSpec(everySteps: 3, everySeconds: 12.5, atEpochEnd: false, keep: 4)
        XCTAssertEqual(try JobSpec.parse(spec.yamlText(), format: .yaml), spec)
        XCTAssertEqual(try JobSpec.parse(spec.jsonText(), format: .json), spec)
    }
}
