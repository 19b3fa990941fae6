import ArgumentParser
import Foundation
import PSCore
import PSData
import PSTrain
import PSWire

struct Model: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect model files.",
        subcommands: [Info.self, Pull.self, Init.self])

    /// A model before any training: the spec's initial weights (drawn from its seed, exactly as
    /// `train --local` and the cluster start) and the preprocessing fitted on its training split, so
    /// `predict` can show what the untrained network answers.
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a spec's untrained model: its seeded initial weights and fitted preprocessing.")

        @Argument(help: "Job spec (YAML or JSON).")
        var spec: String

        @Option(name: .customLong("set"), help: "Override a spec field, e.g. --set seed=7 (repeatable).")
        var overrides: [String] = []

        @Option(name: .shortAndLong, help: "Where to write the model (default: NAME-initial.model).")
        var output: String?

        func run() throws {
            let spec = try JobSpec.load(path: self.spec, overrides: overrides)
            let data = try DataLoader.load(spec)  // the preprocessing is fitted on the training split
            var summary = TrainingSummary(epochsRun: 0, bestEpoch: 0, stoppedEarly: false, trainLoss: .nan, samplesPerSecond: 0)
            summary.computeSignatures = []
            let model = TrainedModel(spec: spec, preprocessing: data.preprocessing,
                                     parameters: spec.network.initialParameters(seed: spec.seed), summary: summary)
            let path = output ?? "\(spec.name)-initial.model"
            do {
                try model.write(to: path)
            } catch {
                throw OperatingError("cannot write model to '\(path)': \(error)")
            }
            print("\(path)  untrained (seed \(spec.seed))  weights_sha256: \(weightsSHA256(model.parameters))")
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a model's layout, training summary and weights_sha256.")

        @Argument(help: "Model file written by `psctl train --local` or pulled from the cluster.")
        var model: String

        @Flag(help: "Print one JSON object instead of a table.")
        var json = false

        func run() throws {
            let m: TrainedModel
            do {
                m = try TrainedModel.read(path: model)
            } catch {
                throw OperatingError("\(error)")
            }
            let layout = m.spec.network.layout
            guard layout.count == m.parameters.count else {
                throw OperatingError("\(model): holds \(m.parameters.count) parameters but its spec's layout needs \(layout.count)")
            }
            let sha = weightsSHA256(m.parameters)
            if json {
                let layers = layout.layers.enumerated().map { (l, layer) in
                    "{\"units\": \(layer.units), \"fan_in\": \(layer.fanIn), "
                        + "\"activation\": \(JSONObject.quote(m.spec.model.layers[l].activation.rawValue)), "
                        + "\"dropout\": \(m.spec.model.layers[l].dropout), "
                        + "\"weights_offset\": \(layer.weightOffset), \"bias_offset\": \(layer.biasOffset)}"
                }
                let o = m.summary.json(name: m.spec.name, weightsSHA256: sha) { o in
                    o.set("parameters", m.parameters.count)
                    o.set("inputs", layout.inputs)
                    o.set("loss", m.spec.loss.rawValue)
                    o.set("optimizer", m.spec.optimizer.kind.rawValue)
                    o.set("consistency", m.spec.training.consistency.description)
                    o.set("layers", raw: "[" + layers.joined(separator: ", ") + "]")
                }
                print(o.text)
                return
            }
            print("model \(m.spec.name)  (\(model))")
            print("inputs \(layout.inputs), loss \(m.spec.loss.rawValue), optimizer \(m.spec.optimizer.kind.rawValue), preprocessing \(describe(m.preprocessing))")
            print(pad("layer", 6) + pad("shape", 14) + pad("activation", 12) + pad("dropout", 9) + pad("weights [offset, count)", 26) + "biases [offset, count)")
            for (l, layer) in layout.layers.enumerated() {
                let spec = m.spec.model.layers[l]
                print(pad("\(l)", 6) + pad("\(layer.fanIn)→\(layer.units)", 14) + pad(spec.activation.rawValue, 12)
                      + pad(spec.dropout > 0 ? "\(spec.dropout)" : "-", 9)
                      + pad("[\(layer.weightOffset), \(layer.weightCount))", 26) + "[\(layer.biasOffset), \(layer.units))")
            }
            print("parameters \(m.parameters.count) (\(m.parameters.count * 4) bytes)")
            let s = m.summary
            var line = "trained \(s.epochsRun) epochs, best epoch \(s.bestEpoch)\(s.stoppedEarly ? ", stopped early" : "")"
            if let a = s.testAccuracy { line += String(format: ", test accuracy %.4f", a) }
            if let e = s.testMSE { line += String(format: ", test MSE %.6g", e) }
            print(line)
            print("consistency \(m.spec.training.consistency)"
                  + (m.spec.training.consistency.isExact ? "" : " (not bitwise-reproducible: pushes applied on arrival)"))
            switch s.computeSignatures.count {
            case 0 where s.epochsRun == 0: print("untrained: the spec's initial weights (psctl model init)")
            case 0: print("compute signature: not recorded (a model file from before signatures)")
            case 1 where s.timingDependent: print("compute signature \(s.computeSignatures[0]) (trained in ssp or async mode: not bitwise-reproducible)")
            case 1: print("compute signature \(s.computeSignatures[0]) (bitwise-reproducible on hosts with it)")
            default: print("compute signatures \(s.computeSignatures.joined(separator: ", ")) (mixed: not bitwise-reproducible)")
            }
            print("weights_sha256 \(sha)")
        }

        func pad(_ s: String, _ width: Int) -> String {
            s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
        }

        func describe(_ p: FittedPreprocessing) -> String {
            switch p {
            case .none: return "none"
            case let .scale(divisor): return "scale 1/\(divisor)"
            case let .standardize(mean, _): return "standardize (\(mean.count) features)"
            }
        }
    }
}
