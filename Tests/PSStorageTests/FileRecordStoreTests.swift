import Foundation
import PSCore
import PSStorage
import PSWire
import XCTest

/// What only the data directory does: its layout, and how a failed write is reported and cleaned up.
final class FileRecordStoreTests: XCTestCase {
    private var root = ""
    private var directory: String { root + "/data" }
    private let files = FileManager.default

    override func setUp() {
        root = NSTemporaryDirectory() + "ps-store-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? files.removeItem(atPath: root)
    }

    private func openedStore() throws -> FileRecordStore {
        let store = FileRecordStore(directory: directory)
        try store.open()
        return store
    }

    // `open` creates DATA_DIR/jobs; records land where operators and earlier builds put them, in the
    // model file format and as JSON with psctl's field names.
    func testLayoutIsTheDataDirectory() throws {
        let store = try openedStore()
        XCTAssertTrue(isDirectory(directory + "/jobs"))
        let model = StoreContract.model()
        try store.putModel(model, jobId: "job-1")
        try store.putJobRecord(StoreContract.completed)
        XCTAssertEqual(store.path(of: .model("job-1")), directory + "/jobs/job-1/model.psm")
        XCTAssertEqual(store.path(of: .jobRecord("job-1")), directory + "/jobs/job-1/result.json")
        XCTAssertEqual(try TrainedModel.read(path: directory + "/jobs/job-1/model.psm"), model)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/jobs/job-1/result.json")))
        let record = try XCTUnwrap(json as? [String: Any])
        XCTAssertEqual(record["format"] as? String, "ps-job-record/1")
        XCTAssertEqual(record["job_id"] as? String, "job-1")
        XCTAssertEqual(record["state"] as? String, "completed")
        XCTAssertEqual(record["weights_sha256"] as? String, StoreContract.completed.weightsSHA256)
        XCTAssertEqual((record["summary"] as? [String: Any])?["test_accuracy"] as? Double, 0.9824)
        XCTAssertEqual(try files.contentsOfDirectory(atPath: directory + "/jobs/job-1").sorted(), ["model.psm", "result.json"],
                       "no temporary file is left beside the records")
    }

    // Job folders holding only TensorBoard logs (a job that never finished) or a crashed write's
    // temporary file still count for numbering, and are not listed as having records; stray files
    // directly in jobs/ are ignored.
    func testNumberingCountsEveryJobFolder() throws {
        let store = try openedStore()
        try files.createDirectory(atPath: directory + "/jobs/job-7/tensorboard", withIntermediateDirectories: true)
        XCTAssertTrue(files.createFile(atPath: directory + "/jobs/job-9", contents: Data([1])))
        try files.createDirectory(atPath: directory + "/jobs/job-2", withIntermediateDirectories: false)
        XCTAssertTrue(files.createFile(atPath: directory + "/jobs/job-2/model.psm.tmp-1-2", contents: Data([1])),
                      "a temporary file left by a crash is not a record")
        XCTAssertEqual(try store.jobIds(), ["job-2", "job-7"])
        XCTAssertEqual(try store.nextJobNumber(), 8)
        XCTAssertEqual(try store.list(.model), [])
        XCTAssertEqual(try store.list(.jobRecord), [])
    }

    // A put that cannot rename its temporary file over the target (a folder is in the way) fails with an
    // error naming the target, leaves no temporary file, and does not disturb other records.
    func testFailedWriteLeavesNoPartialFile() throws {
        let store = try openedStore()
        try store.put([7, 7], at: .jobRecord("job-1"))
        let target = directory + "/jobs/job-1/model.psm"
        try files.createDirectory(atPath: target, withIntermediateDirectories: false)
        assertStoreError(try store.put(Array(repeating: 1, count: 100_000), at: .model("job-1")), path: target,
                         contains: "cannot rename temporary file \(target).tmp-")
        XCTAssertEqual(try files.contentsOfDirectory(atPath: directory + "/jobs/job-1").sorted(), ["model.psm", "result.json"])
        XCTAssertEqual(try files.contentsOfDirectory(atPath: target), [], "nothing was written into the folder in the way")
        XCTAssertEqual(try store.get(.jobRecord("job-1")), [7, 7])
        assertStoreError(try store.get(.model("job-1")), path: target, contains: "is not a regular file")
    }

    // A put whose job folder cannot be created (a file is in the way) names the record and the folder.
    func testFolderInTheWayIsNamed() throws {
        let store = try openedStore()
        XCTAssertTrue(files.createFile(atPath: directory + "/jobs/job-2", contents: Data([1])))
        let target = directory + "/jobs/job-2/model.psm"
        assertStoreError(try store.putModel(StoreContract.model(), jobId: "job-2"), path: target,
                         contains: "cannot create folder \(directory)/jobs/job-2: it exists and is not a directory")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: directory + "/jobs/job-2")), Data([1]))
    }

    // A data directory that is a file cannot be opened, and the error says which path.
    func testOpenNamesAnUnusableDirectory() throws {
        try files.createDirectory(atPath: root, withIntermediateDirectories: true)
        XCTAssertTrue(files.createFile(atPath: directory, contents: Data()))
        assertStoreError(try FileRecordStore(directory: directory).open(), path: directory,
                         contains: "cannot create folder: it exists and is not a directory")
    }

    // A store on a data directory that does not exist yet lists nothing and reads nothing.
    func testMissingDirectoryIsEmpty() throws {
        let store = FileRecordStore(directory: directory)
        XCTAssertEqual(try store.jobIds(), [])
        XCTAssertNil(try store.get(.model("job-1")))
        XCTAssertEqual(try store.nextJobNumber(), 1)
    }

    // Checkpoints live in jobs/JOB/checkpoints/STEPS.ckpt; a temporary file an interrupted write left
    // there is not an entry, and is removed by discardUnfinished (and by pruning).
    func testCheckpointLayoutAndLeftovers() throws {
        let store = try openedStore()
        try store.putCheckpoint(CheckpointFixture.sample, steps: 5)
        let folder = directory + "/jobs/job-3/checkpoints"
        XCTAssertEqual(store.path(of: .checkpoint("job-3", steps: 5)), folder + "/000000000005.ckpt")
        XCTAssertTrue(files.createFile(atPath: folder + "/000000000009.ckpt.tmp-12-ab", contents: Data([1, 2])))
        XCTAssertTrue(files.createFile(atPath: folder + "/notes.txt", contents: Data([1])))
        XCTAssertEqual(try store.entries(.checkpoint, of: "job-3"), ["000000000005"])
        try store.discardUnfinished(.checkpoint, of: "job-3")
        XCTAssertEqual(try files.contentsOfDirectory(atPath: folder).sorted(), ["000000000005.ckpt", "notes.txt"])
        XCTAssertEqual(try store.nextJobNumber(), 4, "a job with only checkpoints counts")
        XCTAssertEqual(try store.setAside(.checkpoint("job-3", steps: 5)), folder + "/000000000005.ckpt.unusable")
        XCTAssertEqual(try store.entries(.checkpoint, of: "job-3"), [])
        XCTAssertTrue(files.fileExists(atPath: folder + "/000000000005.ckpt.unusable"))
    }

    private func isDirectory(_ path: String) -> Bool {
        var flag: ObjCBool = false
        return files.fileExists(atPath: path, isDirectory: &flag) && flag.boolValue
    }
}

/// Review reproducer: a FIFO where a record should be makes `get` block for ever in open(2). The server
/// reads every job's result.json (and model.psm) at start, so `mkfifo DATA_DIR/jobs/job-1/result.json`
/// makes ps-server hang before it listens (reproduced with the real binary: thread in wait_for_partner).
final class ReviewSpecialFileTests: XCTestCase {
    func testFIFOInPlaceOfARecordIsAnErrorNotAHang() throws {
        let root = NSTemporaryDirectory() + "ps-store-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = FileRecordStore(directory: root + "/data")
        try store.open()
        let path = store.path(of: .jobRecord("job-1"))
        try FileManager.default.createDirectory(atPath: root + "/data/jobs/job-1", withIntermediateDirectories: true)
        XCTAssertEqual(mkfifo(path, 0o644), 0)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? store.get(.jobRecord("job-1"))
            done.signal()
        }
        let returned = done.wait(timeout: .now() + 3) == .success
        XCTAssertTrue(returned, "get(\(path)) on a FIFO blocks in open(2)")
        if !returned {
            // Unblock the reader so the test process can end.
            let fd = open(path, O_WRONLY | O_NONBLOCK)
            if fd >= 0 { close(fd) }
            _ = done.wait(timeout: .now() + 3)
        }
    }
}
