import ArgumentParser
import Foundation
import PSCore
import PSData
import PSMath
import PSSpec
import PSTrain
import PSWire

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a job in this process (--local): the oracle the cluster is compared with.")

    @Flag(help: "Train in this process, with the same chunks and reduction tree as the cluster.")
    var local = false

    @Argument(help: "Job spec (YAML or JSON).")
    var spec: String

    @Option(name: .customLong("set"), help: "Override a spec field, e.g. --set training.epochs=3 (repeatable).")
    var overrides: [String] = []

    @Option(name: .shortAndLong, help: "Where to write the trained model (default: NAME.model).")
    var output: String?

    @Flag(help: "Print one JSON object with the results on stdout.")
    var json = false

    @Option(help: "OpenBLAS threads. 1 keeps results independent of thread scheduling.")
    var threads = 1

    func validate() throws {
        guard local else {
            throw ValidationError("--local is required: cluster jobs are submitted with `psctl submit`")
        }
        guard (1...256).contains(threads) else {
            throw ValidationError("--threads must be between 1 and 256")
        }
    }

    func run() throws {
        let kernel = chooseKernel()  // first: it may start psctl again, which must not find its input already read
        let spec = try JobSpec.load(path: self.spec, overrides: overrides)
        BLAS.setThreads(threads)
        printKernelLine(kernel)
        warnIfSignatureDiffers(from: spec)
        if let note = Self.consistencyNote(spec.training.consistency) { printError(note) }
        let data = try DataLoader.load(spec)
        let progress = ProgressView(name: spec.name)
        let result = LocalTrainer(spec: spec, data: data).run(progress: progress.handle)
        let path = output ?? "\(spec.name).model"
        do {
            try result.model.write(to: path)
        } catch {
            throw OperatingError("cannot write model to '\(path)': \(error)")
        }
        if let step = result.nonFinite, result.failed {
            // The same words as a cluster job's failure; the model holds the weights before the step.
            throw OperatingError("\(step); the \(Self.keptWords(result)) are in \(path) (weights_sha256 \(result.weightsSHA256))")
        }
        let s = result.model.summary
        if json {
            let o = s.json(name: spec.name, weightsSHA256: result.weightsSHA256) { o in
                o.set("parameters", result.model.parameters.count)
                o.set("model", path)
                if let step = result.nonFinite { o.set("stopped_on", "\(step)") }
            }
            print(o.text)
        } else {
            print(s.line(title: spec.name))
            if let step = result.nonFinite { print("stopped on a \(step) (training.on_non_finite: stop)") }
            print("model: \(path)  weights_sha256: \(result.weightsSHA256)")
        }
    }

    /// What train --local says of a mode it does not run as written: ssp and async train as sync.
    static func consistencyNote(_ consistency: Consistency) -> String? {
        guard consistency.appliesOnArrival else { return nil }
        return "psctl: training.consistency is \(consistency); train --local trains it as sync (a staleness of 0 "
            + "meets any bound): ssp and async results depend on timing, so use delayed for a reproducible pipelined run"
    }

    /// Which weights a failed run wrote: the best epoch's (early stopping restores them) or the last good ones.
    static func keptWords(_ result: LocalTrainer.Result) -> String {
        if let epoch = result.failedKeptEpoch { return "best epoch's weights (epoch \(epoch))" }
        return "last good weights (step \(result.nonFinite!.step - 1))"
    }
}

/// Progress on standard error: a bar redrawn in place on a terminal (at most ~10 times a second),
/// and one line per epoch in any case.
final class ProgressView {
    let name: String
    let terminal = isatty(STDERR_FILENO) == 1
    var plan: TrainingPlan?
    var lastDraw = ContinuousClock.now
    let clock = ContinuousClock()

    init(name: String) { self.name = name }

    func handle(_ event: TrainingEvent) {
        switch event {
        case let .started(plan):
            self.plan = plan
            printError("\(name): \(plan.parameters) parameters, \(plan.trainSamples) training samples"
                       + (plan.validationSamples > 0 ? ", \(plan.validationSamples) validation" : "")
                       + (plan.testSamples > 0 ? ", \(plan.testSamples) test" : "")
                       + ", \(plan.epochs) epochs of \(plan.stepsPerEpoch) steps")
        case let .step(epoch, step, batchLoss, samplesPerSecond):
            guard terminal, let plan, clock.now - lastDraw > .milliseconds(100) || step + 1 == plan.stepsPerEpoch else { return }
            lastDraw = clock.now
            let fraction = Double(step + 1) / Double(plan.stepsPerEpoch)
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            printError(String(format: "\r\u{1B}[Kepoch %d/%d %@ %3.0f%%  %@ samples/s  loss %.4f",
                              epoch + 1, plan.epochs, bar, fraction * 100, compact(samplesPerSecond), batchLoss),
                       terminator: "")
        case let .epochEnded(r):
            var line = String(format: "epoch %d/%d  train_loss %.4f", r.epoch, plan?.epochs ?? 0, r.trainLoss)
            if let a = r.trainAccuracy { line += String(format: "  train_acc %.4f", a) }
            if let l = r.validationLoss { line += String(format: "  val_loss %.4f", l) }
            if let a = r.validationAccuracy { line += String(format: "  val_acc %.4f", a) }
            line += "  \(compact(r.samplesPerSecond)) samples/s  \(String(format: "%.1f", r.seconds))s"
            if r.validationLoss != nil && r.improved { line += "  *best" }
            if r.stopEarly { line += "  (early stop: best epoch \(r.bestEpoch))" }
            printError((terminal ? "\r\u{1B}[K" : "") + line)
        }
    }
}
