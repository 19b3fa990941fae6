import Foundation
import Logging
import PSControl
import PSCore
@testable import PSEventFile
import PSServer
import XCTest

/// The server's event-file observer driven with the coordinator's observations, as a server that is
/// killed or stopped and restarted on its data directory emits them; the files are read back with
/// `TestRecordReader`. (TensorBoard's own reader checks the same kind of files in TensorBoardEndToEndTests.)
final class EventFileObserverTests: XCTestCase {
    static let jobId = "job-1"
    static let stepsPerPoint = 5
    /// Every file is made within this one second, as on a quick restart: only their suffixes order them.
    static let wallTime = 1_700_000_000.5

    // A job resumed at step 20 (its checkpoint at the end of epoch 1) after a kill goes on in a second file,
    // named to sort after the first, that begins with the restart marker at step 20, then epoch 1's figures
    // again (the marker drops them, and the resumed run does not redo them), then the resumed run's points
    // from step 20 on. The first file holds what was on disk when the server died: everything up to the last
    // checkpoint written.
    func testResumedJobContinuesInANewFileAfterTheRestartMarker() throws {
        let data = try scratchDirectory()
        let killed = observer(data)
        steps(0..<20, run: 1, killed)
        killed.observe(epochEnd(1, run: 1))
        steps(20..<27, run: 1, killed)
        killed.observe(.checkpointWritten(jobId: Self.jobId, step: 20, bytes: 1, seconds: 0))
        steps(27..<33, run: 1, killed) // step 30's point is still buffered when the server dies

        let restarted = observer(data)
        restarted.observe(.jobResumed(jobId: Self.jobId, step: 20))
        steps(20..<40, run: 2, restarted)
        restarted.observe(epochEnd(2, run: 2))
        restarted.observe(.jobState(jobId: Self.jobId, name: "job", state: .completed))

        let files = try eventFiles(data)
        XCTAssertEqual(files.map { ($0 as NSString).lastPathComponent },
                       ["events.out.tfevents.1700000000.\(hostname())", "events.out.tfevents.1700000000.\(hostname()).000001"])
        guard files.count == 2 else { return }
        let before = try TestRecordReader.events(in: files[0])
        XCTAssertEqual(outline(before), ["version", "start 0"] + points(0, 5, 10, 15) + epochFigures(20) + points(20, 25))
        XCTAssertEqual(runs(before), ["0: 1", "5: 1", "10: 1", "15: 1", "20: 1", "20: 1", "25: 1"])
        let after = try TestRecordReader.events(in: files[1])
        XCTAssertEqual(outline(after), ["version", "start 20"] + epochFigures(20) + points(20, 25, 30, 35) + epochFigures(40))
        XCTAssertEqual(runs(after), ["20: 1", "20: 2", "25: 2", "30: 2", "35: 2", "40: 2"])
        withExtendedLifetime(killed) {} // a killed server's buffer never reaches the file
    }

    // A server stopping with SIGTERM (the job suspended) and a job's end both write the buffered points
    // and close the file; nothing more is written for them.
    func testSuspendedAndEndedJobsWriteTheirBufferedPoints() throws {
        let data = try scratchDirectory()
        let observer = observer(data)
        steps(0..<13, run: 1, observer)
        steps(0..<7, run: 1, observer, job: "job-2")
        observer.observe(.jobSuspended(jobId: Self.jobId))
        observer.observe(.jobState(jobId: "job-2", name: "job", state: .failed))
        for (job, expected) in [(Self.jobId, points(0, 5, 10)), ("job-2", points(0, 5))] {
            let files = try eventFiles(data, job: job)
            XCTAssertEqual(files.count, 1, job)
            XCTAssertEqual(outline(try TestRecordReader.events(in: files[0])), ["version", "start 0"] + expected, job)
        }
    }

    // A job resumed from a checkpoint taken after its epoch's last step, before validation, puts that
    // epoch's figures at the step it resumed at, once: whether the epoch had ended before the kill (its
    // figures come over from the first file, and the redone end adds nothing) or not (the redone end writes
    // them, at the resumed step, where the step count goes on).
    func testEpochEndRedoneAfterAResumeIsWrittenOnce() throws {
        for endedBeforeTheKill in [true, false] {
            let data = try scratchDirectory()
            let killed = observer(data)
            steps(0..<20, run: 1, killed)
            killed.observe(.checkpointWritten(jobId: Self.jobId, step: 20, bytes: 1, seconds: 0))
            if endedBeforeTheKill { killed.observe(epochEnd(1, run: 1)) }

            let restarted = observer(data)
            restarted.observe(.jobResumed(jobId: Self.jobId, step: 20))
            restarted.observe(epochEnd(1, run: 1))
            steps(20..<21, run: 2, restarted)
            restarted.observe(.jobSuspended(jobId: Self.jobId))
            let files = try eventFiles(data)
            XCTAssertEqual(files.count, 2, "ended before the kill: \(endedBeforeTheKill)")
            guard files.count == 2 else { continue }
            XCTAssertEqual(outline(try TestRecordReader.events(in: files[1])), ["version", "start 20"] + epochFigures(20) + points(20),
                           "ended before the kill: \(endedBeforeTheKill)")
            withExtendedLifetime(killed) {}
        }
    }

    // A job that a restarted server resumes with no file of its own yet (it was queued, or starts over)
    // gets the plain name.
    func testResumedJobWithoutEarlierFilesGetsThePlainName() throws {
        let data = try scratchDirectory()
        observer(data).observe(.jobResumed(jobId: Self.jobId, step: 0))
        XCTAssertEqual(try eventFiles(data).map { ($0 as NSString).lastPathComponent }, ["events.out.tfevents.1700000000.\(hostname())"])
    }

    // Twelve files made within one second (a job and eleven quick restarts) sort by name in the order they
    // were made, past the ninth, which a suffix without leading zeros would not.
    func testFileNamesSortInTheOrderTheFilesWereMade() throws {
        let data = try scratchDirectory()
        steps(0..<1, run: 1, observer(data))
        for step in 1...11 { observer(data).observe(.jobResumed(jobId: Self.jobId, step: step)) }
        let starts = try eventFiles(data).map { try TestRecordReader.events(in: $0).filter(\.sessionStart).map(\.step) }
        XCTAssertEqual(starts, (0...11).map { [Int64($0)] })
    }

    // MARK: Driving the observer

    private func observer(_ data: String) -> EventFileObserver {
        EventFileObserver(dataDirectory: data, stepsPerPoint: Self.stepsPerPoint,
                          logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                          wallTime: { Self.wallTime })
    }

    /// The batch loss run `run` reports at `step`: its integer part says which run wrote a point.
    private static func loss(step: Int, run: Int) -> Double { Double(run) + Double(step) / 1000 }

    private func steps(_ range: Range<Int>, run: Int, _ observer: EventFileObserver, job: String = jobId) {
        for step in range {
            observer.observe(.stepCompleted(jobId: job, step: step, epoch: step / 20 + 1, batchLoss: Self.loss(step: step, run: run),
                                            batchSize: 32, learningRate: 0.1, samplesPerSecond: 1000))
        }
    }

    private func epochEnd(_ epoch: Int, run: Int) -> Observation {
        .epochCompleted(jobId: Self.jobId, report: EpochReport(epoch: epoch, trainLoss: Double(run), trainAccuracy: nil,
                                                               validationLoss: nil, validationAccuracy: nil, samplesPerSecond: 1000,
                                                               seconds: 1, improved: false, bestEpoch: 0, stopEarly: false),
                        learningRate: 0.1)
    }

    // MARK: Reading back

    /// Each event as "version", "start STEP" or "TAG STEP".
    private func outline(_ events: [Event]) -> [String] {
        events.flatMap { event -> [String] in
            if !event.fileVersion.isEmpty { return ["version"] }
            if event.sessionStart { return ["start \(event.step)"] }
            return event.scalars.map { "\($0.tag) \(event.step)" }
        }
    }

    private func points(_ steps: Int...) -> [String] {
        steps.flatMap { ["train/loss \($0)", "train/samples_per_second \($0)"] }
    }

    private func epochFigures(_ step: Int) -> [String] {
        ["train/learning_rate \(step)", "epoch/train_loss \(step)"]
    }

    /// "STEP: RUN" for each `train/loss` and `epoch/train_loss` value: which run wrote it (the integer part).
    private func runs(_ events: [Event]) -> [String] {
        events.flatMap { event in
            event.scalars.filter { $0.tag.hasSuffix("train_loss") || $0.tag == "train/loss" }.map { "\(event.step): \(Int($0.value))" }
        }
    }

    /// The job's event files in name order, the order TensorBoard reads them in.
    private func eventFiles(_ data: String, job: String = jobId) throws -> [String] {
        let directory = EventFileObserver.directory(dataDirectory: data, jobId: job)
        return try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains("tfevents") }.sorted()
            .map { directory + "/" + $0 }
    }

    private func hostname() -> String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func scratchDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "ps-eventobserver-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }
}
