import Foundation
import PSCore
import PSStorage
import PSTestSupport
import PSWire
import XCTest

/// What every `RecordStore` must do, written once and run against each implementation
/// (`FileRecordStoreContractTests`, `MemoryRecordStoreContractTests`).
enum StoreContract {
    /// A small but real model (784-4-10 on the small MNIST job), with `parameters` set from `seed`.
    static func model(seed: Float = 1) -> TrainedModel {
        let spec = smallMNISTJob(name: "stored", seed: 3, validationSplit: 0.2,
                                 layers: [LayerSpec(units: 4, activation: .relu), LayerSpec(units: 10, activation: .softmax)],
                                 optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1), batchSize: 20, chunks: 2, epochs: 1)
        let count = 784 * 4 + 4 + 4 * 10 + 10  // the layout's weights and biases
        let summary = TrainingSummary(epochsRun: 1, bestEpoch: 1, stoppedEarly: false, trainLoss: 0.5, validationLoss: 0.6,
                                      validationAccuracy: 0.8, testLoss: 0.7, testAccuracy: 0.75, samplesPerSecond: 1234.5)
        return TrainedModel(spec: spec, preprocessing: .scale(divisor: 255),
                            parameters: (0..<count).map { Float($0 % 97) * 0.01 * seed - 0.3 }, summary: summary)
    }

    static let completed = JobResult(
        jobId: "job-1", state: .completed,
        summary: TrainingSummary(epochsRun: 10, bestEpoch: 9, stoppedEarly: true, trainLoss: 0.123456789012345,
                                 validationLoss: 0.2, validationAccuracy: 0.9754, testLoss: 0.0812, testAccuracy: 0.9824,
                                 testMSE: nil, samplesPerSecond: 41234.56789),
        weightsSHA256: String(repeating: "ab", count: 32))

    static func opened(_ store: any RecordStore) throws -> any RecordStore {
        try store.open()
        return store
    }

    // A missing record is nil; a put is read back exactly; a second put replaces it whole (shorter too).
    static func putGetReplace(_ store: any RecordStore) throws {
        let store = try opened(store)
        XCTAssertNil(try store.get(.model("job-1")))
        try store.put([1, 2, 3, 4, 5], at: .model("job-1"))
        XCTAssertEqual(try store.get(.model("job-1")), [1, 2, 3, 4, 5])
        try store.put([9], at: .model("job-1"))
        XCTAssertEqual(try store.get(.model("job-1")), [9])
        try store.put([], at: .jobRecord("job-1"))
        XCTAssertEqual(try store.get(.jobRecord("job-1")), [], "an empty record is a record")
        XCTAssertEqual(try store.get(.model("job-1")), [9], "kinds do not share records")
    }

    // `list` gives the ids with a record of one kind, `jobIds` every id, both sorted; numbering continues after the highest.
    static func listAndNumbering(_ store: any RecordStore) throws {
        let store = try opened(store)
        XCTAssertEqual(try store.list(.model), [])
        XCTAssertEqual(try store.jobIds(), [])
        XCTAssertEqual(try store.nextJobNumber(), 1)
        try store.put([1], at: .model("job-3"))
        try store.put([1], at: .model("job-1"))
        try store.put([2], at: .jobRecord("job-3"))
        try store.put([2], at: .jobRecord("job-10"))
        XCTAssertEqual(try store.list(.model), ["job-1", "job-3"])
        XCTAssertEqual(try store.list(.jobRecord), ["job-10", "job-3"])
        XCTAssertEqual(try store.jobIds(), ["job-1", "job-10", "job-3"])
        XCTAssertEqual(try store.nextJobNumber(), 11)
    }

    // A model goes in and comes out equal, with the bytes of a model file.
    static func modelRoundTrip(_ store: any RecordStore) throws {
        let store = try opened(store)
        let model = model()
        XCTAssertNil(try store.model(jobId: "job-2"))
        try store.putModel(model, jobId: "job-2")
        XCTAssertEqual(try store.model(jobId: "job-2"), model)
        XCTAssertEqual(try store.get(.model("job-2")), model.serialized())
        let other = Self.model(seed: 2)
        try store.putModel(other, jobId: "job-2")
        XCTAssertEqual(try store.model(jobId: "job-2"), other)
    }

    // Job records of every shape come back equal: a full summary, none (failed), infinities and NaN.
    static func jobRecordRoundTrip(_ store: any RecordStore) throws {
        let store = try opened(store)
        XCTAssertNil(try store.jobRecord(jobId: "job-1"))
        try store.putJobRecord(completed)
        XCTAssertEqual(try store.jobRecord(jobId: "job-1"), completed)
        let failed = JobResult(jobId: "job-2", state: .failed, message: "data.train.images: cannot read '/x' \"quoted\"\n")
        try store.putJobRecord(failed)
        XCTAssertEqual(try store.jobRecord(jobId: "job-2"), failed)
        var diverged = completed
        diverged.jobId = "job-3"
        diverged.state = .interrupted
        diverged.summary!.trainLoss = .infinity
        diverged.summary!.validationLoss = -.infinity
        diverged.summary!.testLoss = .nan
        try store.putJobRecord(diverged)
        let back = try XCTUnwrap(try store.jobRecord(jobId: "job-3"))
        XCTAssertEqual(back.summary?.trainLoss, .infinity)
        XCTAssertEqual(back.summary?.validationLoss, -.infinity)
        XCTAssertTrue(back.summary?.testLoss?.isNaN ?? false)
        diverged.summary!.testLoss = nil
        var backWithoutNaN = back
        backWithoutNaN.summary!.testLoss = nil
        XCTAssertEqual(backWithoutNaN, diverged)
        XCTAssertEqual(try store.list(.jobRecord), ["job-1", "job-2", "job-3"])
    }

    // Records that are not what their kind says are errors naming where they are and what is wrong.
    static func corruptRecordsAreNamed(_ store: any RecordStore) throws {
        let store = try opened(store)
        try store.put(Array("{\"job_id\": ".utf8), at: .jobRecord("job-4"))
        assertStoreError(try store.jobRecord(jobId: "job-4"), path: store.location(of: .jobRecord("job-4")),
                         contains: "not a valid job record")
        try store.putJobRecord(JobResult(jobId: "job-5", state: .cancelled))
        let job5 = try XCTUnwrap(try store.get(.jobRecord("job-5")))
        try store.put(job5, at: .jobRecord("job-6"))  // job-5's record under job-6's name
        assertStoreError(try store.jobRecord(jobId: "job-6"), path: store.location(of: .jobRecord("job-6")),
                         contains: "job_id is 'job-5', not 'job-6'")
        let running = String(decoding: job5, as: UTF8.self).replacingOccurrences(of: "\"cancelled\"", with: "\"running\"")
        try store.put(Array(running.utf8), at: .jobRecord("job-5"))
        assertStoreError(try store.jobRecord(jobId: "job-5"), path: store.location(of: .jobRecord("job-5")),
                         contains: "state 'running' is not a final job state")
        try store.put([0xFF, 0x00, 0x13], at: .model("job-7"))
        assertStoreError(try store.model(jobId: "job-7"), path: store.location(of: .model("job-7")),
                         contains: "not a valid model file")
    }

    // Ids that are not plain file names are refused, naming the id, and nothing is stored.
    static func badIdsAreRefused(_ store: any RecordStore) throws {
        let store = try opened(store)
        for id in ["", ".", "..", "../escape", "a/b", "nul\0byte", String(repeating: "x", count: 256)] {
            assertStoreError(try store.put([1], at: .model(id)), path: store.location(of: .model(id)),
                             contains: "cannot be a record id")
            assertStoreError(try store.get(.model(id)), path: store.location(of: .model(id)), contains: "cannot be a record id")
        }
        XCTAssertEqual(try store.jobIds(), [])
    }

    // Puts from several threads at once all land.
    static func concurrentPuts(_ store: any RecordStore) throws {
        let store = try opened(store)
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            do {
                try store.put(Array(repeating: UInt8(i), count: 1000 + i), at: .model("job-\(i + 1)"))
            } catch {
                XCTFail("put \(i): \(error)")
            }
        }
        XCTAssertEqual(try store.list(.model).count, 16)
        for i in 0..<16 { XCTAssertEqual(try store.get(.model("job-\(i + 1)")), Array(repeating: UInt8(i), count: 1000 + i)) }
    }

    /// Checkpoints: numbered entries per job, listed in step order, pruned to the newest, deleted.
    static func checkpointEntries(_ store: any RecordStore) throws {
        let store = try opened(store)
        var c = CheckpointFixture.sample
        for steps in [5, 40, 120, 1000] {
            c.optimizerSteps = steps
            try store.putCheckpoint(c, steps: steps)
        }
        XCTAssertEqual(try store.entries(.checkpoint, of: "job-3"), ["000000000005", "000000000040", "000000000120", "000000001000"])
        XCTAssertEqual(try store.checkpointKeys(of: "job-3").map(\.entry).first, "000000001000", "newest first")
        XCTAssertEqual(try store.list(.checkpoint), ["job-3"])
        XCTAssertEqual(try store.entries(.checkpoint, of: "job-4"), [])
        let bytes = try XCTUnwrap(try store.get(.checkpoint("job-3", steps: 120)))
        XCTAssertEqual(try Checkpoint(fileBytes: bytes).optimizerSteps, 120)
        try store.pruneCheckpoints(of: "job-3", keep: 2)
        XCTAssertEqual(try store.entries(.checkpoint, of: "job-3"), ["000000000120", "000000001000"])
        try store.delete(.checkpoint("job-3", steps: 120))
        try store.delete(.checkpoint("job-3", steps: 120))  // already gone: fine
        XCTAssertEqual(try store.entries(.checkpoint, of: "job-3"), ["000000001000"])
        XCTAssertThrowsError(try store.put([1], at: RecordKey(.checkpoint, "job-3")), "a checkpoint needs an entry")
        XCTAssertThrowsError(try store.put([1], at: RecordKey(.model, "job-3", entry: "x")), "a model has none")
        XCTAssertThrowsError(try store.put([1], at: RecordKey(.checkpoint, "job-3", entry: "../x")))
    }

    /// The journal: an entry round-trips with its spec exactly; a damaged one is an error naming its place.
    static func journalRoundTrip(_ store: any RecordStore) throws {
        let store = try opened(store)
        let spec = model().spec
        let entry = JobJournalEntry(jobId: "job-2", spec: spec, changes: [
            .init(state: .submitted, at: 1_700_000_000.25), .init(state: .running, at: 1_700_000_001.5),
            .init(state: .failed, at: 1_700_000_002, message: "data: cannot open"),
        ])
        try store.putJournal(entry)
        let read = try XCTUnwrap(try store.journal(jobId: "job-2"))
        XCTAssertEqual(read.spec, spec)
        XCTAssertEqual(read.changes.map(\.state), [.submitted, .running, .failed])
        XCTAssertEqual(read.changes.map(\.at), [1_700_000_000.25, 1_700_000_001.5, 1_700_000_002])
        XCTAssertEqual(read.changes.last?.message, "data: cannot open")
        XCTAssertEqual(read.state, .failed)
        XCTAssertNil(try store.journal(jobId: "job-9"))
        XCTAssertEqual(try store.list(.journal), ["job-2"])
        try store.put(Array("{\"format\": 1}".utf8), at: .journal("job-3"))
        assertStoreError(try store.journal(jobId: "job-3"), path: store.location(of: .journal("job-3")), contains: "not a valid journal entry")
    }
}

/// Asserts that `body` throws a `StoreError` for `path` whose message contains `text`.
func assertStoreError<T>(_ body: @autoclosure () throws -> T, path: String, contains text: String,
                         file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        guard let error = error as? StoreError else { return XCTFail("not a StoreError: \(error)", file: file, line: line) }
        XCTAssertEqual(error.path, path, file: file, line: line)
        XCTAssertTrue(error.message.contains(text), "'\(error.message)' does not say '\(text)'", file: file, line: line)
        XCTAssertTrue("\(error)".hasPrefix(path + ": "), "'\(error)' does not start with the path", file: file, line: line)
    }
}

/// A small valid checkpoint for store tests.
enum CheckpointFixture {
    static var sample: Checkpoint {
        Checkpoint(jobId: "job-3", specSHA256: Array(repeating: 1, count: 32), version: 5, phase: .train, epoch: 0,
                   stepInEpoch: 5, parameters: [1, 2, 3], optimizerSteps: 5, optimizerSlots: [[0, 0, 0]])
    }
}
