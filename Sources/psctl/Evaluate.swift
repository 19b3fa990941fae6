import ArgumentParser
import Foundation
import PSCore
import PSData
import PSMath
import PSSpec
import PSTrain
import PSWire

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a model on a job spec's test data (else its validation data).",
        discussion: """
            Reads the split the spec names (data.test, else data.validation or data.validation_split) \
            and applies the MODEL's stored preprocessing, not statistics fitted again. Classifiers: \
            loss, accuracy and a confusion matrix (rows: true class, columns: predicted). \
            Regression: MSE and MAE.
            """)

    @Option(help: "Model file written by `psctl train --local` or `psctl model pull`.")
    var model: String

    @Option(help: "Job spec (YAML or JSON) whose data section names the files to score on.")
    var data: String

    @Option(name: .customLong("set"), help: "Override a spec field, e.g. --set data.test.images=… (repeatable).")
    var overrides: [String] = []

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Option(help: "OpenBLAS threads. 1 (as `train --local` by default) gives the bits training computed.")
    var threads = 1

    func validate() throws {
        guard (1...256).contains(threads) else {
            throw ValidationError("--threads must be between 1 and 256")
        }
    }

    func run() throws {
        let kernel = chooseKernel()  // first: it may start psctl again, which must not find its input already read
        let m = try loadModel(model)
        BLAS.setThreads(threads)
        printKernelLine(kernel, quiet: true)
        let (split, dataset) = try loadSplit(for: m)
        let network = m.spec.network
        // The trainer's own evaluation (same chunks, same reduction order), so loss and accuracy are
        // the bits `train --local` reported for its test split.
        let workspace = Workspace(network: network, capacity: ChunkPlan.evaluationChunkSamples)
        let stats = Evaluation.stats(network: network, parameters: m.parameters, dataset: dataset, workspace: workspace)
        let n = Double(stats.samples)
        let loss = stats.lossSum / n
        let outputs = networkOutputs(m, features: dataset.features, count: dataset.count)

        var o = JSONObject()
        o.set("model", model)
        o.set("split", split)
        o.set("samples", stats.samples)
        o.set("loss", loss)
        var text = ["\(m.spec.name) on \(split): \(stats.samples) samples", String(format: "loss %.6f", loss)]
        if m.spec.loss.isClassification {
            let accuracy = Double(stats.correct) / n
            let matrix = confusionMatrix(m.spec, outputs: outputs, targets: dataset.targets, count: dataset.count)
            o.set("accuracy", accuracy)
            o.set("confusion_matrix", raw: "[" + matrix.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }
                .joined(separator: ", ") + "]")
            text[1] += String(format: "  accuracy %.4f", accuracy)
            text.append("confusion matrix (rows: true class, columns: predicted class)")
            text.append(contentsOf: table(matrix))
        } else {
            // Mean squared error is the loss itself (what `train --local` reports as test_mse).
            let mae = meanAbsoluteError(outputs: outputs, targets: dataset.targets, width: network.outputs)
            o.set("mse", loss)
            o.set("mae", mae)
            text[1] += String(format: "  mse %.6g  mae %.6g", loss, mae)
        }
        print(json ? o.text : text.joined(separator: "\n"))
    }

    /// The spec's evaluation split, raw, with the model's preprocessing applied. Labels are read for
    /// the model's loss and outputs, so the spec's own model section does not matter.
    func loadSplit(for m: TrainedModel) throws -> (String, Dataset) {
        var spec = try JobSpec.load(path: data, overrides: overrides)
        spec.model = m.spec.model
        spec.loss = m.spec.loss
        spec.data.preprocessing = .none
        let loaded: LoadedData
        do {
            loaded = try DataLoader.load(spec)
        } catch let error as DataError {
            throw OperatingError("\(data): \(error)")
        }
        var split: String
        var dataset: Dataset
        if let test = loaded.test {
            (split, dataset) = ("data.test", test)
        } else if let validation = loaded.validation {
            (split, dataset) = (spec.data.validation != nil ? "data.validation" : "data.validation_split", validation)
        } else {
            throw OperatingError("\(data): names no data.test, data.validation or data.validation_split to evaluate on")
        }
        m.preprocessing.apply(to: &dataset.features, width: dataset.width)
        return (split, dataset)
    }

    /// counts[true class][predicted class].
    func confusionMatrix(_ spec: JobSpec, outputs: [Float], targets: Targets, count: Int) -> [[Int]] {
        let classes = spec.loss == .binaryCrossEntropy ? 2 : spec.model.outputs
        var matrix = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        let predicted = predictedClasses(spec, outputs: outputs, count: count)
        for r in 0..<count {
            let truth: Int
            switch targets {
            case let .classes(labels, _): truth = Int(labels[r])
            case let .values(values, _): truth = Int(values[r])  // binary cross-entropy: 0 or 1
            }
            matrix[truth][predicted[r]] += 1
        }
        return matrix
    }

    /// Mean over samples and outputs of the absolute error (one-hot targets for class labels, as mean
    /// squared error trains against).
    func meanAbsoluteError(outputs: [Float], targets: Targets, width: Int) -> Double {
        var absolute = 0.0
        for (i, y) in outputs.enumerated() {
            let t: Float
            switch targets {
            case let .values(values, _): t = values[i]
            case let .classes(labels, _): t = Int(labels[i / width]) == i % width ? 1 : 0
            }
            absolute += abs(Double(y) - Double(t))
        }
        return absolute / Double(max(outputs.count, 1))
    }

    func table(_ matrix: [[Int]]) -> [String] {
        let width = max(5, (matrix.flatMap { $0 }.max().map { String($0).count } ?? 1) + 1)
        func cell(_ s: String) -> String { String(repeating: " ", count: max(width - s.count, 1)) + s }
        var lines = [cell("") + matrix.indices.map { cell("\($0)") }.joined()]
        for (i, row) in matrix.enumerated() {
            lines.append(cell("\(i)") + row.map { cell("\($0)") }.joined())
        }
        return lines
    }
}
