import XCTest
import PSCore
@testable import PSSpec

/// The schema's example, one field per line so tests can name the line an error must point to.
let exampleYAML = """
name: mnist-mlp
seed: 42
data:
  format: idx                 # idx | csv
  train: {images: data/mnist/train-images-idx3-ubyte.gz, labels: data/mnist/train-labels-idx1-ubyte.gz}
  test:  {images: data/mnist/t10k-images-idx3-ubyte.gz,  labels: data/mnist/t10k-labels-idx1-ubyte.gz}
  validation_split: 0.1
  scale: 255
model:
  inputs: 784
  layers:
    - {units: 256, activation: relu, dropout: 0.2}
    - {units: 128, activation: relu}
    - {units: 10, activation: softmax}
loss: softmax_cross_entropy
optimizer: {name: adam, learning_rate: 0.001}
training: {batch_size: 128, chunks: 4, epochs: 10}
early_stopping: {monitor: val_loss, patience: 3, min_delta: 0.0, restore_best: true}

"""

/// The same job in JSON.
let exampleJSON = """
{
  "name": "mnist-mlp",
  "seed": 42,
  "data": {
    "format": "idx",
    "train": {"images": "data/mnist/train-images-idx3-ubyte.gz", "labels": "data/mnist/train-labels-idx1-ubyte.gz"},
    "test": {"images": "data/mnist/t10k-images-idx3-ubyte.gz", "labels": "data/mnist/t10k-labels-idx1-ubyte.gz"},
    "validation_split": 0.1,
    "scale": 255
  },
  "model": {
    "inputs": 784,
    "layers": [
      {"units": 256, "activation": "relu", "dropout": 0.2},
      {"units": 128, "activation": "relu"},
      {"units": 10, "activation": "softmax"}
    ]
  },
  "loss": "softmax_cross_entropy",
  "optimizer": {"name": "adam", "learning_rate": 0.001},
  "training": {"batch_size": 128, "chunks": 4, "epochs": 10},
  "early_stopping": {"monitor": "val_loss", "patience": 3, "min_delta": 0.0, "restore_best": true}
}
"""

/// What `exampleYAML` must parse to with base directory `/jobs`.
let exampleSpec = JobSpec(
    name: "mnist-mlp", seed: 42,
    data: DataSpec(format: .idx,
                   train: .idx(images: "/jobs/data/mnist/train-images-idx3-ubyte.gz",
                               labels: "/jobs/data/mnist/train-labels-idx1-ubyte.gz"),
                   validationSplit: 0.1,
                   test: .idx(images: "/jobs/data/mnist/t10k-images-idx3-ubyte.gz",
                              labels: "/jobs/data/mnist/t10k-labels-idx1-ubyte.gz"),
                   preprocessing: .scale(255)),
    model: ModelSpec(inputs: 784, layers: [LayerSpec(units: 256, activation: .relu, dropout: 0.2),
                                           LayerSpec(units: 128, activation: .relu),
                                           LayerSpec(units: 10, activation: .softmax)]),
    loss: .softmaxCrossEntropy,
    optimizer: OptimizerSpec(kind: .adam, learningRate: 0.001),
    training: TrainingSpec(batchSize: 128, chunks: 4, epochs: 10),
    earlyStopping: EarlyStoppingSpec(monitor: .valLoss, patience: 3, minDelta: 0, restoreBest: true))

extension XCTestCase {
    /// The example with `old` replaced by `new`; fails the test if `old` is not in it.
    func example(replacing old: String, with new: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        XCTAssertTrue(exampleYAML.contains(old), "the example has no '\(old)'", file: file, line: line)
        return exampleYAML.replacingOccurrences(of: old, with: new)
    }

    func parse(_ text: String, format: SpecFormat = .yaml, overrides: [String] = []) throws -> JobSpec {
        try JobSpec.parse(text, format: format, source: "job.yaml", baseDirectory: "/jobs", overrides: overrides)
    }

    /// The error parsing `text` must raise; fails the test (and returns an empty error) if it parses.
    func failure(_ text: String, format: SpecFormat = .yaml, overrides: [String] = [],
                 file: StaticString = #filePath, line: UInt = #line) -> SpecError {
        do {
            let spec = try JobSpec.parse(text, format: format, source: "job.yaml", baseDirectory: "/jobs",
                                         overrides: overrides)
            XCTFail("expected an error, parsed \(spec)", file: file, line: line)
        } catch {
            return error
        }
        return SpecError(field: "<parsed>", message: "")
    }

    /// Asserts the error's field and that its message contains every one of `words`.
    func assertError(_ error: SpecError, field: String, _ words: String..., location: String? = nil,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(error.field, field, "\(error)", file: file, line: line)
        for word in words {
            XCTAssertTrue(error.message.contains(word), "'\(error.message)' lacks '\(word)'", file: file, line: line)
        }
        if let location {
            XCTAssertEqual(error.location, location, "\(error)", file: file, line: line)
        }
    }
}
