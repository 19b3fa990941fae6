import Foundation
import PSCore

/// Repository root, found from this file's path (Tests/PSTestSupport/Fixtures.swift).
public let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path

/// A real job on the bundled 1,000-sample MNIST slices (`data/mnist/small/`): IDX, scaled by 255,
/// a validation split, the test set. Each suite picks the model and schedule it needs.
public func smallMNISTJob(name: String, seed: UInt64, validationSplit: Double, layers: [LayerSpec],
                          optimizer: OptimizerSpec, batchSize: Int, chunks: Int, epochs: Int,
                          earlyStopping: EarlyStoppingSpec? = nil) -> JobSpec {
    let small = repositoryRoot + "/data/mnist/small/"
    return JobSpec(
        name: name, seed: seed,
        data: DataSpec(format: .idx,
                       train: .idx(images: small + "train-images-idx3-ubyte", labels: small + "train-labels-idx1-ubyte"),
                       validationSplit: validationSplit,
                       test: .idx(images: small + "t10k-images-idx3-ubyte", labels: small + "t10k-labels-idx1-ubyte"),
                       preprocessing: .scale(255)),
        model: ModelSpec(inputs: 784, layers: layers),
        loss: .softmaxCrossEntropy, optimizer: optimizer,
        training: TrainingSpec(batchSize: batchSize, chunks: chunks, epochs: epochs),
        earlyStopping: earlyStopping)
}
