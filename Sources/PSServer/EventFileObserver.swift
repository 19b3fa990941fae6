import Foundation
import Logging
import PSControl
import PSEventFile
import PSTrain
import PSWire

/// Writes each job's training curves as a TensorBoard event file in `DATA_DIR/jobs/JOB/tensorboard/`:
/// `train/loss` and `train/samples_per_second` every `stepsPerPoint` steps, and at each epoch's end
/// `train/learning_rate`, `epoch/train_loss`, `epoch/train_accuracy`, `validation/loss` and
/// `validation/accuracy` (accuracies for classification, validation figures when the job has a
/// validation split). Steps are global; an epoch's figures sit at the step that ends it.
///
/// Registered with `ServerRuntime.observe`, so it runs on the coordinator's queue: it only appends to
/// an in-memory buffer, and writes (a few kilobytes) once per epoch so a live TensorBoard sees progress.
/// An I/O error is logged and that job's log stops; the server carries on.
public final class EventFileObserver: Sendable {
    /// Steps between two `train/loss` points: dense enough for a curve, sparse enough that a long job's
    /// file stays small (MNIST at batch 128: 422 steps per epoch, 43 points).
    public static let stepsPerPointDefault = 10

    private let dataDirectory: String
    private let stepsPerPoint: Int
    private let logger: Logger
    private let wallTime: @Sendable () -> Double
    /// Held only by observation calls, which the runtime already serialises; the lock makes that safe
    /// for any caller.
    private let state = NSLock()
    nonisolated(unsafe) private var jobs: [String: JobLog] = [:]

    private struct JobLog {
        /// nil once the file could not be created or written: the job's log has stopped.
        var writer: EventFileWriter?
        /// Steps applied so far, i.e. the global step at which the current epoch's figures belong.
        var stepsDone = 0
    }

    public init(dataDirectory: String, stepsPerPoint: Int = stepsPerPointDefault, logger: Logger,
                wallTime: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        precondition(stepsPerPoint > 0, "stepsPerPoint must be positive")
        self.dataDirectory = dataDirectory
        self.stepsPerPoint = stepsPerPoint
        self.logger = logger
        self.wallTime = wallTime
    }

    /// Where a job's event files go: the folder to give `tensorboard --logdir` is `DATA_DIR/jobs`.
    public static func directory(dataDirectory: String, jobId: String) -> String {
        "\(dataDirectory)/jobs/\(jobId)/tensorboard"
    }

    /// Pass this to `ServerRuntime.observe`.
    public func observe(_ observation: Observation) {
        state.lock()
        defer { state.unlock() }
        switch observation {
        case let .stepCompleted(jobId, step, _, batchLoss, _, _, samplesPerSecond):
            var log = jobs[jobId] ?? open(jobId)
            log.stepsDone = step + 1
            if step % stepsPerPoint == 0 {
                write(jobId, &log, step: step, [("train/loss", batchLoss), ("train/samples_per_second", samplesPerSecond)])
            }
            jobs[jobId] = log
        case let .epochCompleted(jobId, report, learningRate):
            var log = jobs[jobId] ?? open(jobId)
            var scalars: [(String, Double)] = [("train/learning_rate", Double(learningRate)),
                                               ("epoch/train_loss", report.trainLoss)]
            if let a = report.trainAccuracy { scalars.append(("epoch/train_accuracy", a)) }
            if let l = report.validationLoss { scalars.append(("validation/loss", l)) }
            if let a = report.validationAccuracy { scalars.append(("validation/accuracy", a)) }
            write(jobId, &log, step: log.stepsDone, scalars)
            perform(jobId, &log, "flush") { try $0.flush() }
            jobs[jobId] = log
        case let .jobState(jobId, _, jobState) where jobState.isFinal:
            guard var log = jobs.removeValue(forKey: jobId) else { return }
            perform(jobId, &log, "close") { try $0.close() }
        default:
            break
        }
    }

    private func open(_ jobId: String) -> JobLog {
        let directory = Self.directory(dataDirectory: dataDirectory, jobId: jobId)
        do {
            let writer = try EventFileWriter(directory: directory, wallTime: wallTime())
            logger.info("tensorboard log opened", metadata: ["job": "\(jobId)", "path": "\(writer.path)"])
            return JobLog(writer: writer)
        } catch {
            logger.error("cannot create tensorboard log", metadata: ["job": "\(jobId)", "error": "\(error)"])
            return JobLog(writer: nil)
        }
    }

    private func write(_ jobId: String, _ log: inout JobLog, step: Int, _ scalars: [(String, Double)]) {
        let now = wallTime()
        perform(jobId, &log, "write") { writer in
            for (tag, value) in scalars { try writer.scalar(tag: tag, step: step, value: Float(value), wallTime: now) }
        }
    }

    /// Runs `body` on the job's writer; on an error logs it and stops the job's log, so one failing disk
    /// costs one log line per job, not one per step.
    private func perform(_ jobId: String, _ log: inout JobLog, _ what: String, _ body: (EventFileWriter) throws -> Void) {
        guard let writer = log.writer else { return }
        do {
            try body(writer)
        } catch {
            logger.error("cannot \(what) tensorboard log; no more points for this job",
                         metadata: ["job": "\(jobId)", "error": "\(error)"])
            try? writer.close()
            log.writer = nil
        }
    }
}
