import Foundation
import Logging
import PSControl
import PSCore
import PSServer
import XCTest

/// TensorBoard logs as users get them: a real `ps-server` and `ps-worker` train a job, and the event file
/// the server wrote is read with TensorBoard's own loader (`tests/read_tfevents.py`, tensorboard from
/// tests/requirements.txt, installed by `scripts/install-deps.sh --test`). A job's files across server
/// restarts are written by the server's observer in process and read as TensorBoard reads a run's folder
/// (`tests/read_tensorboard_run.py`).
final class TensorBoardEndToEndTests: XCTestCase {
    static let spec = "examples/mnist-small-sgd.yaml"
    /// `EventFileObserver.stepsPerPointDefault`: the server's default spacing of `train/loss` points.
    static let stepsPerPoint = 10

    // Every scalar in the event file sits at the step we expect and holds the value the job reported:
    // per-epoch figures match the server's "epoch done" log (4 significant digits), the local trainer's
    // epoch lines (the cluster computes its bits exactly; 4 decimals) and, for the last epoch,
    // `psctl submit --wait --json` at full (float32) precision.
    func testEventFileHoldsWhatTheJobReported() throws {
        let run = try Self.trainedJob()
        let scalars = try readEventFile(run.eventFile)
        let epochs = run.epochs.count
        XCTAssertEqual(epochs, 2, "the spec runs 2 epochs")
        let stepsPerEpoch = run.stepsPerEpoch
        let epochEnds = (1...epochs).map { $0 * stepsPerEpoch }
        let points = Array(stride(from: 0, to: epochs * stepsPerEpoch, by: Self.stepsPerPoint))

        var byTag: [String: [(step: Int, value: Double)]] = [:]
        for s in scalars { byTag[s.tag, default: []].append((s.step, s.value)) }
        XCTAssertEqual(Set(byTag.keys), ["train/loss", "train/samples_per_second", "train/learning_rate", "epoch/train_loss",
                                         "epoch/train_accuracy", "validation/loss", "validation/accuracy"])
        XCTAssertEqual(byTag["train/loss"]?.map { $0.step }, points)
        XCTAssertEqual(byTag["train/samples_per_second"]?.map { $0.step }, points)
        for tag in ["train/learning_rate", "epoch/train_loss", "epoch/train_accuracy", "validation/loss", "validation/accuracy"] {
            XCTAssertEqual(byTag[tag]?.map { $0.step }, epochEnds, tag)
        }
        // No job figure reports single batches; an untrained 10-way softmax starts near ln 10.
        let losses = byTag["train/loss"]?.map { $0.value } ?? []
        XCTAssertTrue(losses.allSatisfy { $0.isFinite && $0 > 0 }, "\(losses)")
        XCTAssertEqual(losses.first ?? 0, log(10), accuracy: 0.5)
        XCTAssertTrue(byTag["train/samples_per_second"]?.allSatisfy { $0.value.isFinite && $0.value > 0 } ?? false)
        // Values are float32 in the file; compared as Float, since Foundation's JSON parsing may be one
        // double ulp off.
        XCTAssertEqual(byTag["train/learning_rate"]?.map { Float($0.value) }, [Float](repeating: 0.1, count: epochs))

        for (i, reported) in run.epochs.enumerated() {
            let e = "epoch \(i + 1)"
            let file = { (tag: String) -> Double in byTag[tag]?.first { $0.step == epochEnds[i] }?.value ?? .nan }
            assertSignificant(file("epoch/train_loss"), reported.log["train_loss"], "\(e) train_loss (log)")
            assertSignificant(file("validation/loss"), reported.log["val_loss"], "\(e) val_loss (log)")
            assertSignificant(file("validation/accuracy"), reported.log["val_accuracy"], "\(e) val_accuracy (log)")
            assertDecimals(file("epoch/train_loss"), reported.local["train_loss"], "\(e) train_loss (local)")
            assertDecimals(file("epoch/train_accuracy"), reported.local["train_acc"], "\(e) train_accuracy (local)")
            assertDecimals(file("validation/loss"), reported.local["val_loss"], "\(e) val_loss (local)")
            assertDecimals(file("validation/accuracy"), reported.local["val_acc"], "\(e) val_accuracy (local)")
        }
        let last = { (tag: String) -> Float? in byTag[tag]?.last.map { Float($0.value) } }
        for (tag, key) in [("epoch/train_loss", "train_loss"), ("validation/loss", "val_loss"), ("validation/accuracy", "val_accuracy")] {
            let full = try XCTUnwrap(run.result[key] as? Double, key)
            XCTAssertEqual(last(tag), Float(full), "\(tag) vs wait --json \(key)")
        }
    }

    // A copy of the event file with its last bytes cut off is reported by the reader as data loss
    // (exit 2, a message on stderr) and yields fewer scalars, so a broken file cannot pass the test above.
    func testTruncatedEventFileIsReported() throws {
        let run = try Self.trainedJob()
        let whole = try XCTUnwrap(FileManager.default.contents(atPath: run.eventFile))
        let complete = try readEventFile(run.eventFile).count
        for cut in [1, 4, 9] {
            let copy = run.directory + "/truncated-\(cut).tfevents"
            XCTAssertTrue(FileManager.default.createFile(atPath: copy, contents: whole.dropLast(cut)))
            let out = try python(["tests/read_tfevents.py", copy])
            XCTAssertEqual(out.status, 2, "cut \(cut): \(out.stderr)")
            XCTAssertTrue(out.stderr.contains("data loss"), "cut \(cut): \(out.stderr)")
            let scalars = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]
            XCTAssertEqual((scalars?["scalars"] as? [Any])?.count, complete - 1, "cut \(cut)")
        }
    }

    // A job's files across two restarts, written by the server's observer as a restarted server drives it
    // (killed after the checkpoint at epoch 1's end, step 20, then stopped with SIGTERM after one at step 30),
    // read as TensorBoard reads the folder, by both its accumulators with their defaults: every tag's steps
    // strictly increase, none twice, a redone step shows the value of the run that redid it last, and
    // epoch 1's figures, at the step the job resumed from but not redone, are still there.
    func testRestartedJobReadsBackOnceForEveryStep() throws {
        let data = NSTemporaryDirectory() + "ps-tensorboard-restart-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let job = "job-1"
        let observer = { EventFileObserver(dataDirectory: data, stepsPerPoint: 5,
                                           logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })) }
        /// Run `run` reports `run + step / 1000` as the batch loss and `run` as the epoch's train loss.
        func steps(_ range: Range<Int>, run: Int, _ o: EventFileObserver) {
            for step in range {
                o.observe(.stepCompleted(jobId: job, step: step, epoch: step / 20 + 1, batchLoss: Double(run) + Double(step) / 1000,
                                         batchSize: 32, learningRate: 0.1, samplesPerSecond: 1000))
            }
        }
        func epochEnd(_ epoch: Int, run: Int) -> Observation {
            .epochCompleted(jobId: job, report: EpochReport(epoch: epoch, trainLoss: Double(run), trainAccuracy: nil, validationLoss: nil,
                                                            validationAccuracy: nil, samplesPerSecond: 1000, seconds: 1, improved: false,
                                                            bestEpoch: 0, stopEarly: false),
                            learningRate: 0.1)
        }
        let killed = observer()
        steps(0..<20, run: 1, killed)
        killed.observe(epochEnd(1, run: 1))
        steps(20..<27, run: 1, killed)
        killed.observe(.checkpointWritten(jobId: job, step: 20, bytes: 1, seconds: 0))
        steps(27..<33, run: 1, killed)
        let stopped = observer()
        stopped.observe(.jobResumed(jobId: job, step: 20))
        steps(20..<31, run: 2, stopped)
        stopped.observe(.checkpointWritten(jobId: job, step: 30, bytes: 1, seconds: 0))
        steps(31..<37, run: 2, stopped)
        stopped.observe(.jobSuspended(jobId: job))
        let last = observer()
        last.observe(.jobResumed(jobId: job, step: 30))
        steps(30..<40, run: 3, last)
        last.observe(epochEnd(2, run: 3))
        last.observe(.jobState(jobId: job, name: "job", state: .completed))

        let folder = EventFileObserver.directory(dataDirectory: data, jobId: job)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder).count, 3, "one file per server run")
        let run = { (step: Int) -> Int in step < 20 ? 1 : step < 30 ? 2 : 3 }
        let points = Array(stride(from: 0, to: 40, by: 5))
        for reader in [[], ["--legacy"]] {
            let out = try python(["tests/read_tensorboard_run.py"] + reader + [folder])
            XCTAssertEqual(out.status, 0, "read_tensorboard_run.py \(reader): \(out.stderr)")
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any], out.stdout)
            let tags = try XCTUnwrap(object["scalars"] as? [String: [[String: Any]]], out.stdout)
            let byTag = tags.mapValues { $0.map { (step: $0["step"] as? Int ?? -1, value: $0["value"] as? Double ?? .nan) } }
            XCTAssertEqual(Set(byTag.keys), ["train/loss", "train/samples_per_second", "train/learning_rate", "epoch/train_loss"], "\(reader)")
            for (tag, series) in byTag {
                let steps = series.map(\.step)
                XCTAssertTrue(zip(steps, steps.dropFirst()).allSatisfy { $0 < $1 }, "\(reader) \(tag): steps not strictly increasing: \(steps)")
            }
            XCTAssertEqual(byTag["train/loss"]?.map(\.step), points, "\(reader)")
            XCTAssertEqual(byTag["train/samples_per_second"]?.map(\.step), points, "\(reader)")
            XCTAssertEqual(byTag["train/loss"]?.map { Float($0.value) }, points.map { Float(Double(run($0)) + Double($0) / 1000) }, "\(reader)")
            XCTAssertEqual(byTag["epoch/train_loss"]?.map(\.step), [20, 40], "\(reader)")
            XCTAssertEqual(byTag["epoch/train_loss"]?.map(\.value), [1, 3], "\(reader)")
        }
        withExtendedLifetime(killed) {} // a killed server's buffer never reaches the file
    }

    // MARK: One training run shared by the tests

    struct TrainedJob {
        var directory: String
        var eventFile: String
        var stepsPerEpoch: Int
        /// `psctl submit --wait --json`.
        var result: [String: Any]
        /// Per epoch: the server's "epoch done" fields and the local trainer's epoch line.
        var epochs: [(log: [String: String], local: [String: String])]
        /// Kept for the tests that read its files: a cluster removes its folder when it goes away.
        var cluster: LocalCluster
    }

    /// XCTest runs one test at a time, so this needs no lock.
    nonisolated(unsafe) private static var shared: TrainedJob?

    private static func trainedJob() throws -> TrainedJob {
        if let shared { return shared }
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("worker-1")
        let out = try cluster.psctl(["submit", spec, "--wait", "--json"])
        XCTAssertEqual(out.status, 0, "\(out.stderr)\n\(cluster.log("server").suffix(2000))")
        let result = try Binaries.json(out)
        let jobId = try XCTUnwrap(result["job_id"] as? String)
        let stepsPerEpoch = try XCTUnwrap(try cluster.jobStatus(jobId)["steps_per_epoch"] as? Int)
        // A stopped server has closed every event file.
        cluster.stop()

        let folder = "\(cluster.directory)/data/jobs/\(jobId)/tensorboard"
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains("tfevents") }
        XCTAssertEqual(files.count, 1, "one event file per job in \(folder): \(files)")
        let eventFile = folder + "/" + (try XCTUnwrap(files.first))

        let local = try Binaries.run("psctl", ["train", "--local", spec, "--json", "--output", "/dev/null"])
        XCTAssertEqual(local.status, 0, local.stderr)
        XCTAssertEqual(try Binaries.json(local)["weights_sha256"] as? String, result["weights_sha256"] as? String,
                       "the cluster and the local trainer must compute the same job for their figures to be compared")
        let logged = fields(in: cluster.log("server"), lineContaining: "epoch done", job: jobId)
        let localEpochs = fields(in: local.stderr, lineContaining: "train_loss ", job: nil)
        XCTAssertEqual(logged.count, localEpochs.count)
        let run = TrainedJob(directory: cluster.directory, eventFile: eventFile, stepsPerEpoch: stepsPerEpoch, result: result,
                             epochs: Array(zip(logged, localEpochs)), cluster: cluster)
        shared = run
        return run
    }

    /// The `key=value` fields of the server's log lines, or the `key value` pairs of the local trainer's
    /// epoch lines, one dictionary per matching line.
    private static func fields(in text: String, lineContaining marker: String, job: String?) -> [[String: String]] {
        let pair = job == nil ? #"([a-z_]+) ([0-9.eE+-]+)"# : #"([a-z_]+)=([^ ]+)"#
        let regex = try! NSRegularExpression(pattern: pair)
        return text.split(separator: "\n").map(String.init)
            .filter { line in line.contains(marker) && (job.map { line.contains("job=\($0) ") } ?? true) }
            .map { line in
                var out: [String: String] = [:]
                for m in regex.matches(in: line, range: NSRange(line.startIndex..., in: line)) {
                    out[String(line[Range(m.range(at: 1), in: line)!])] = String(line[Range(m.range(at: 2), in: line)!])
                }
                return out
            }
    }

    // MARK: Reading and comparing

    private struct Scalar {
        var tag: String
        var step: Int
        var value: Double
    }

    private func readEventFile(_ path: String) throws -> [Scalar] {
        let out = try python(["tests/read_tfevents.py", path])
        XCTAssertEqual(out.status, 0, "read_tfevents.py: \(out.stderr)")
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any], out.stdout)
        XCTAssertEqual(object["file_version"] as? String, "brain.Event:2")
        return try XCTUnwrap(object["scalars"] as? [[String: Any]]).map {
            Scalar(tag: $0["tag"] as? String ?? "", step: $0["step"] as? Int ?? -1, value: $0["value"] as? Double ?? .nan)
        }
    }

    /// Runs python3 from the repository root; a missing tensorboard is a failure that says how to install it.
    private func python(_ arguments: [String]) throws -> Binaries.Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: Binaries.repositoryRoot)
        let base = NSTemporaryDirectory() + "ps-python-\(UUID().uuidString)"
        for suffix in [".out", ".err"] { _ = FileManager.default.createFile(atPath: base + suffix, contents: nil) }
        defer { for suffix in [".out", ".err"] { try? FileManager.default.removeItem(atPath: base + suffix) } }
        process.standardOutput = FileHandle(forWritingAtPath: base + ".out")
        process.standardError = FileHandle(forWritingAtPath: base + ".err")
        try process.run()
        process.waitUntilExit()
        let out = Binaries.Output(status: process.terminationStatus,
                                  stdout: String(decoding: FileManager.default.contents(atPath: base + ".out") ?? Data(), as: UTF8.self),
                                  stderr: String(decoding: FileManager.default.contents(atPath: base + ".err") ?? Data(), as: UTF8.self))
        if out.stderr.contains("No module named 'tensorboard'") {
            XCTFail("tensorboard is not installed for python3: run scripts/install-deps.sh --test")
        }
        return out
    }

    /// `value` (a float32 from the file) rounds to `printed`, which has 4 significant digits ("%.4g").
    private func assertSignificant(_ value: Double, _ printed: String?, _ what: String, line: UInt = #line) {
        guard let printed, let p = Double(printed) else { return XCTFail("\(what): not reported", line: line) }
        let halfUnit = p == 0 ? 5e-5 : 0.5 * pow(10, floor(log10(abs(p))) - 3)
        XCTAssertEqual(value, p, accuracy: halfUnit * (1 + 1e-4), "\(what): file \(value), reported \(printed)", line: line)
    }

    /// `value` rounds to `printed`, which has 4 decimals ("%.4f").
    private func assertDecimals(_ value: Double, _ printed: String?, _ what: String, line: UInt = #line) {
        guard let printed, let p = Double(printed) else { return XCTFail("\(what): not reported", line: line) }
        XCTAssertEqual(value, p, accuracy: 5e-5 * (1 + 1e-4), "\(what): file \(value), reported \(printed)", line: line)
    }
}
