import ArgumentParser
import Foundation
import PSCore
import PSWire

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model as ONNX (IR 7, opset 13) for onnxruntime and other ONNX readers.",
        discussion: """
            The graph takes RAW features: the model's preprocessing is its first node. Input \
            "input" [batch, inputs] float32; output "output" [batch, outputs]: probabilities for \
            classifiers, values for regression.
            """)

    @OptionGroup var options: ServerOptions

    @Argument(help: "A model file, or (when no such file exists) a job id whose model is fetched from the cluster.")
    var source: String

    @Option(name: .shortAndLong, help: "Where to write the ONNX model.")
    var output: String

    func run() throws {
        let model: TrainedModel
        if FileManager.default.fileExists(atPath: source) {
            model = try loadModel(source)
        } else {
            do {
                model = try options.fetchModel(source)
            } catch {
                // Say both readings of the argument, so a mistyped file name is not reported as a network problem.
                throw OperatingError("'\(source)' is not a file, and fetching it as a job from \(options.server) failed: \(error)")
            }
        }
        let bytes = model.onnxModelBytes()
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            throw OperatingError("cannot write ONNX model to '\(output)': \(error.localizedDescription)")
        }
        print("\(output): ONNX IR \(ONNXExport.irVersion), opset \(ONNXExport.opsetVersion), "
              + "\(model.spec.model.inputs) inputs → \(model.spec.model.outputs) outputs, \(bytes.count) bytes")
    }
}
