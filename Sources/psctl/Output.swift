import Foundation
import PSCore
import PSTrain

/// Writes to standard error without buffering (progress and diagnostics; stdout carries results).
func printError(_ text: String, terminator: String = "\n") {
    FileHandle.standardError.write(Data((text + terminator).utf8))
}

/// One JSON object with keys in the given order and no escapes beyond JSON's, printed on one line so
/// scripts can read it with `jq`.
struct JSONObject {
    private var fields: [(String, String)] = []

    mutating func set(_ key: String, _ value: String?) {
        fields.append((key, value.map(Self.quote) ?? "null"))
    }
    mutating func set(_ key: String, _ value: Int?) {
        fields.append((key, value.map(String.init) ?? "null"))
    }
    mutating func set(_ key: String, _ value: Double?) {
        fields.append((key, value.map { $0.isFinite ? "\($0)" : "null" } ?? "null"))
    }
    mutating func set(_ key: String, _ value: Bool) {
        fields.append((key, value ? "true" : "false"))
    }
    mutating func set(_ key: String, raw: String) {
        fields.append((key, raw))
    }

    var text: String {
        "{" + fields.map { "\(Self.quote($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

extension TrainingSummary {
    /// The fields `train --local --json` (and later `wait --json`) print.
    func json(name: String, weightsSHA256: String, extra: (inout JSONObject) -> Void = { _ in }) -> JSONObject {
        var o = JSONObject()
        o.set("name", name)
        if let testAccuracy { o.set("test_accuracy", testAccuracy) }
        if let testMSE { o.set("test_mse", testMSE) }
        o.set("test_loss", testLoss)
        o.set("epochs_run", epochsRun)
        o.set("best_epoch", bestEpoch)
        o.set("stopped_early", stoppedEarly)
        o.set("train_loss", trainLoss)
        o.set("val_loss", validationLoss)
        o.set("val_accuracy", validationAccuracy)
        o.set("samples_per_second", samplesPerSecond)
        o.set("weights_sha256", weightsSHA256)
        o.set("compute_signatures", raw: "[" + computeSignatures.map(JSONObject.quote).joined(separator: ", ") + "]")
        o.set("bitwise_reproducible", bitwiseReproducible)
        extra(&o)
        return o
    }
}

extension TrainingSummary {
    /// One human line: "NAME STATE: 10 epochs (best 9), test accuracy 0.9824, …, 41.2k samples/s".
    func line(title: String) -> String {
        var line = "\(title): \(epochsRun) epochs (best \(bestEpoch)\(stoppedEarly ? ", stopped early" : ""))"
        if let a = testAccuracy { line += String(format: ", test accuracy %.4f", a) }
        if let m = testMSE { line += String(format: ", test MSE %.6g", m) }
        if let l = testLoss { line += String(format: ", test loss %.4f", l) }
        line += ", \(compact(samplesPerSecond)) samples/s"
        if timingDependent {
            line += "\n  not bitwise-reproducible: trained in ssp or async mode (pushes applied as they arrived)"
        }
        if computeSignatures.count > 1 {
            line += "\n  not bitwise-reproducible: computed on \(computeSignatures.count) compute signatures (\(computeSignatures.joined(separator: ", ")))"
        }
        return line
    }
}

/// The first thing a command that computes does (see `BLASKernelChoice`): it may start psctl again with
/// a better kernel, so it comes before any input is read and before any BLAS call.
func chooseKernel() -> ComputeEnvironment.KernelReport {
    ComputeEnvironment.chooseKernel(program: "psctl")
}

/// The start-up line: which BLAS kernel and why, and the compute signature (print it after setting
/// the BLAS threads, which are part of it). `quiet` (predict, evaluate: their output is often piped)
/// prints it only when it is a warning.
func printKernelLine(_ report: ComputeEnvironment.KernelReport, quiet: Bool = false) {
    if !quiet || report.warning { printError("psctl: \(report.warning ? "warning: " : "")\(report.line)") }
}

/// `train --local` is the cluster's reference: say so when this host could not reproduce a cluster
/// job that names its signature (call after `BLAS.setThreads`, the count is part of the signature).
func warnIfSignatureDiffers(from spec: JobSpec) {
    guard let named = spec.training.computeSignature else { return }
    let own = ComputeEnvironment.signature.description
    if own != named {
        printError("psctl: warning: the spec's training.compute_signature is \(named), this process computes with \(own): "
                   + "its weights can differ in the last bits from a cluster job on workers with the spec's signature")
    }
}

/// 12345.6 → "12.3k", for progress lines.
func compact(_ x: Double) -> String {
    if x >= 1e6 { return String(format: "%.2fM", x / 1e6) }
    if x >= 1e3 { return String(format: "%.1fk", x / 1e3) }
    return String(format: "%.0f", x)
}
