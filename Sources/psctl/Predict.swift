import ArgumentParser
import Foundation
import PSCore
import PSData
import PSMath
import PSTrain
import PSWire

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on raw features (IDX images or CSV); one CSV line per sample.",
        discussion: """
            Applies the model's stored preprocessing, then the network. Classifiers print \
            `class,p0,p1,…` (class = the most probable; a binary classifier's p1 is P(class 1)), \
            regression models `value` (or `value0,value1,…`).
            """)

    @Option(help: "Model file written by `psctl train --local` or `psctl model pull`.")
    var model: String

    @Option(help: "Features: an IDX images file or a CSV file (plain or gzip).")
    var input: String

    @Option(help: "idx or csv (default: csv when the name ends in .csv or .csv.gz, else idx).")
    var format: DataFormat?

    @Option(name: .shortAndLong, help: "Where to write the predictions (default: standard output).")
    var output: String?

    @Flag(help: "CSV only: the first line is a header.")
    var header = false

    @Option(help: "CSV only: a label column to drop, by zero-based index or (with --header) by name.")
    var labelColumn: String?

    @Option(help: "OpenBLAS threads. 1 (as `train --local` by default) gives the bits training computed.")
    var threads = 1

    var resolvedFormat: DataFormat {
        if let format { return format }
        let name = input.lowercased()
        return name.hasSuffix(".csv") || name.hasSuffix(".csv.gz") ? .csv : .idx
    }

    func validate() throws {
        guard (1...256).contains(threads) else {
            throw ValidationError("--threads must be between 1 and 256")
        }
        if resolvedFormat == .idx && (header || labelColumn != nil) {
            throw ValidationError("--header and --label-column apply to CSV input only")
        }
        if case .name = labelColumnRef, !header {
            throw ValidationError("--label-column by name needs --header")
        }
    }

    var labelColumnRef: ColumnRef? {
        labelColumn.map { Int($0).map(ColumnRef.index) ?? .name($0) }
    }

    func run() throws {
        let kernel = chooseKernel()  // first: it may start psctl again, which must not find its input already read
        let m = try loadModel(model)
        BLAS.setThreads(threads)
        printKernelLine(kernel, quiet: true)
        let (count, width, rawFeatures) = try readFeatures()
        let inputs = m.spec.model.inputs
        guard width == inputs else {
            let rows = resolvedFormat == .idx ? "images have \(width) pixels" : "rows have \(width) features"
            // One column too many is most often the label, still in the file.
            let hint = resolvedFormat == .csv && labelColumn == nil && width == inputs + 1
                ? "; if one column is the label, drop it with --label-column INDEX" + (header ? " or NAME" : "")
                : ""
            throw OperatingError("model expects \(inputs) features, '\(input)' \(rows)\(hint)")
        }
        var features = rawFeatures
        m.preprocessing.apply(to: &features, width: width)
        let outputs = networkOutputs(m, features: features, count: count)
        let text = predictionsCSV(m.spec, outputs: outputs, count: count)
        if let output {
            do {
                try Data(text.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
            } catch {
                throw OperatingError("cannot write predictions to '\(output)': \(error.localizedDescription)")
            }
        } else {
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }

    /// The input's features as `count × width` row-major raw values.
    func readFeatures() throws -> (count: Int, width: Int, features: [Float]) {
        do {
            switch resolvedFormat {
            case .idx:
                let images = try IDXReader.readImages(path: input)
                return (images.count, images.width, images.pixels)
            case .csv:
                if let labelColumnRef {
                    let table = try CSVReader.read(path: input, header: header, labelColumn: labelColumnRef)
                    return (table.count, table.width, table.features)
                }
                // Every column is a feature. The reader always splits off a label column, so read
                // column 0 as the "label" and put it back in front of the other columns.
                let table = try CSVReader.read(path: input, header: header, labelColumn: .index(0))
                let width = table.width + 1
                var features = [Float]()
                features.reserveCapacity(table.count * width)
                for r in 0..<table.count {
                    features.append(table.labels[r])
                    features.append(contentsOf: table.features[(r * table.width)..<((r + 1) * table.width)])
                }
                return (table.count, width, features)
            }
        } catch let error as DataError {
            throw OperatingError("\(error)")
        }
    }
}

extension DataFormat: ExpressibleByArgument {}

/// Reads a model file; any problem is an operating error naming the file.
func loadModel(_ path: String) throws -> TrainedModel {
    do {
        return try TrainedModel.read(path: path)
    } catch {
        throw OperatingError("\(error)")
    }
}

/// The network's outputs for `count × inputs` already-preprocessed features, `[count × outputs]`:
/// probabilities for softmax and sigmoid outputs, the output layer's values otherwise. Runs in
/// evaluation-sized chunks so memory stays bounded by the chunk, not the file.
func networkOutputs(_ model: TrainedModel, features: [Float], count: Int) -> [Float] {
    let network = model.spec.network
    let workspace = Workspace(network: network, capacity: ChunkPlan.evaluationChunkSamples)
    // `Network.evaluate` also scores the chunk against targets; prediction has none, so it gets
    // placeholders of the right kind (class 0 / value 0) and ignores the score.
    let placeholder: Targets = model.spec.loss == .softmaxCrossEntropy
        ? .classes([Int32](repeating: 0, count: count), classCount: network.outputs)
        : .values([Float](repeating: 0, count: count * network.outputs), width: network.outputs)
    var outputs = [Float]()
    outputs.reserveCapacity(count * network.outputs)
    model.parameters.withUnsafeBufferPointer { p in
        features.withUnsafeBufferPointer { f in
            Evaluation.forEachChunk(network: network, parameters: p, features: f, width: network.inputs,
                                    targets: placeholder, count: count, workspace: workspace) { range, _ in
                outputs.append(contentsOf: workspace.outputs(count: range.count))
            }
        }
    }
    return outputs
}

/// The predicted class of each row of `outputs` (`[count × k]`): the first most probable unit, or
/// for a single sigmoid output (binary cross-entropy) 1 when P(class 1) ≥ 0.5.
func predictedClasses(_ spec: JobSpec, outputs: [Float], count: Int) -> [Int] {
    let k = spec.model.outputs
    if spec.loss == .binaryCrossEntropy { return outputs.map { $0 >= 0.5 ? 1 : 0 } }
    return (0..<count).map { r in
        var best = 0
        for j in 1..<max(k, 1) where outputs[r * k + j] > outputs[r * k + best] { best = j }
        return best
    }
}

/// One CSV line per sample with a header; floats print in the shortest form that reads back to the
/// same float32, so a reader sees exactly what the network computed.
func predictionsCSV(_ spec: JobSpec, outputs: [Float], count: Int) -> String {
    let k = spec.model.outputs
    var lines: [String] = []
    lines.reserveCapacity(count + 1)
    if spec.loss.isClassification {
        let classes = predictedClasses(spec, outputs: outputs, count: count)
        // A binary classifier's one output is P(class 1); print both classes like any classifier.
        let binary = spec.loss == .binaryCrossEntropy
        let columns = binary ? 2 : k
        lines.append((["class"] + (0..<columns).map { "p\($0)" }).joined(separator: ","))
        for r in 0..<count {
            let p = binary ? [1 - outputs[r], outputs[r]] : Array(outputs[(r * k)..<((r + 1) * k)])
            lines.append((["\(classes[r])"] + p.map { "\($0)" }).joined(separator: ","))
        }
    } else {
        lines.append(k == 1 ? "value" : (0..<k).map { "value\($0)" }.joined(separator: ","))
        for r in 0..<count {
            lines.append(outputs[(r * k)..<((r + 1) * k)].map { "\($0)" }.joined(separator: ","))
        }
    }
    return lines.joined(separator: "\n") + "\n"
}
