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
/// A job resumed by a restarted server goes on in a new file, whose name sorts after the job's earlier
/// ones, and each file begins with TensorBoard's session-start marker at the step it starts from: a later
/// marker tells TensorBoard that the steps from there on are redone, and it drops the points it read at or
/// after that step, so every step shows once, with the resumed run's value. The figures of an epoch that
/// ended at that step are not redone, so they follow the marker again, read back from the earlier files.
/// Points reach the disk at each epoch's end and each checkpoint written, so a killed server loses only
/// points of steps its restart redoes; a stopping server (SIGTERM) and a job's end write everything.
///
/// Registered with `ServerRuntime.observe`, so it runs on the coordinator's queue: it only appends to
/// an in-memory buffer, and writes (a few kilobytes) once per epoch and per checkpoint so a live TensorBoard
/// sees progress. An I/O error is logged and that job's log stops; the server carries on.
public final class EventFileObserver: Sendable {
    /// Steps between two `train/loss` points: dense enough for a curve, sparse enough that a long job's
    /// file stays small (MNIST at batch 128: 422 steps per epoch, 43 points).
    public static let stepsPerPointDefault = 10
    /// Digits of the number that orders a job's files made within one second (names otherwise differ by
    /// the second): a fixed width, so that name order is number order up to a million files per job.
    static let fileNumberDigits = 6

    private let dataDirectory: String
    private let stepsPerPoint: Int
    private let logger: Logger
    private let wallTime: @Sendable () -> Double
    /// Held only by observation calls, which the runtime already serialises; the lock makes that safe
    /// for any caller.
    private let state = NSLock()
    nonisolated(unsafe) private var jobs: [String: JobLog] = [:]

    /// The tags written every `stepsPerPoint` steps, at the step's index: a resumed job redoes these.
    static let stepTags: Set<String> = ["train/loss", "train/samples_per_second"]

    private struct JobLog {
        /// nil once the file could not be created or written: the job's log has stopped.
        var writer: EventFileWriter?
        /// Steps applied so far, i.e. the global step at which the current epoch's figures belong.
        var stepsDone = 0
        /// Tags written again at `stepsDone` when the job resumed, until its first step or epoch end.
        var carried: Set<String> = []
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
            var log = jobs[jobId] ?? open(jobId, startingAt: step)
            log.stepsDone = step + 1
            log.carried = []
            if step % stepsPerPoint == 0 {
                write(jobId, &log, step: step, [("train/loss", batchLoss), ("train/samples_per_second", samplesPerSecond)])
            }
            jobs[jobId] = log
        case let .epochCompleted(jobId, report, learningRate):
            var log = jobs[jobId] ?? open(jobId, startingAt: 0)
            var scalars: [(String, Double)] = [("train/learning_rate", Double(learningRate)),
                                               ("epoch/train_loss", report.trainLoss)]
            if let a = report.trainAccuracy { scalars.append(("epoch/train_accuracy", a)) }
            if let l = report.validationLoss { scalars.append(("validation/loss", l)) }
            if let a = report.validationAccuracy { scalars.append(("validation/accuracy", a)) }
            // Resumed between the epoch's last step and its end (validation was to come): the carried
            // figures, if it ended before the restart too, are these same values, not to be written twice.
            scalars.removeAll { log.carried.contains($0.0) }
            log.carried = []
            write(jobId, &log, step: log.stepsDone, scalars)
            perform(jobId, &log, "flush") { try $0.flush() }
            jobs[jobId] = log
        case let .checkpointWritten(jobId, _, _, _):
            // A restart redoes the steps after this checkpoint, not those before it: theirs go to disk now.
            guard var log = jobs[jobId] else { return }
            perform(jobId, &log, "flush") { try $0.flush() }
            jobs[jobId] = log
        case let .jobResumed(jobId, step):
            close(jobId)
            let earlier = Self.eventFiles(jobId, dataDirectory: dataDirectory)
            var log = open(jobId, startingAt: step)
            // The marker drops every point at `step` read before it; only the step's own points are redone.
            let carried = EventFileReader.scalars(atStep: step, in: earlier).filter { !Self.stepTags.contains($0.tag) }
            write(jobId, &log, step: step, carried.map { ($0.tag, Double($0.value)) })
            log.carried = Set(carried.map(\.tag))
            // At once, so a live TensorBoard stops showing the points of redone steps when the job resumes.
            perform(jobId, &log, "flush") { try $0.flush() }
            jobs[jobId] = log
        case let .jobState(jobId, _, jobState) where jobState.isFinal:
            close(jobId)
        case let .jobSuspended(jobId):
            close(jobId)
        default:
            break
        }
    }

    /// A new event file for the job, beginning with the session-start marker at `step`.
    private func open(_ jobId: String, startingAt step: Int) -> JobLog {
        let directory = Self.directory(dataDirectory: dataDirectory, jobId: jobId)
        do {
            let writer = try EventFileWriter(directory: directory, fileSuffix: Self.fileSuffix(jobId, dataDirectory: dataDirectory),
                                             wallTime: wallTime())
            var log = JobLog(writer: writer, stepsDone: step)
            perform(jobId, &log, "write") { try $0.sessionStart(step: step, wallTime: wallTime()) }
            logger.info("tensorboard log opened", metadata: ["job": "\(jobId)", "path": "\(writer.path)", "step": "\(step)"])
            return log
        } catch {
            logger.error("cannot create tensorboard log", metadata: ["job": "\(jobId)", "error": "\(error)"])
            return JobLog(writer: nil, stepsDone: step)
        }
    }

    /// TensorBoard reads a folder's event files in name order, and names carry the second they were made
    /// in: a job's first file has no suffix, and a later one (a restart) gets `.N`, N the number of event
    /// files already there, so it sorts after them even when made within the same second.
    private static func fileSuffix(_ jobId: String, dataDirectory: String) -> String {
        let existing = eventFiles(jobId, dataDirectory: dataDirectory).count
        return existing == 0 ? "" : String(format: ".%0\(fileNumberDigits)d", existing)
    }

    /// The job's event files in name order, the order TensorBoard reads them in (it takes any name holding
    /// "tfevents").
    private static func eventFiles(_ jobId: String, dataDirectory: String) -> [String] {
        let folder = directory(dataDirectory: dataDirectory, jobId: jobId)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.contains("tfevents") }.sorted().map { "\(folder)/\($0)" }
    }

    /// Flushes and closes the job's file: the job ended, or the server stops and the job resumes later.
    private func close(_ jobId: String) {
        guard var log = jobs.removeValue(forKey: jobId) else { return }
        perform(jobId, &log, "close") { try $0.close() }
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
