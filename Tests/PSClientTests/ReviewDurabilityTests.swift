import Foundation
import Logging
import PSClient
import PSCore
import PSServer
import PSStorage
import PSTestSupport
import PSWire
import XCTest

/// Review reproducer: `psctl cancel` is acknowledged before the cancellation is in the data directory.
/// A `kill -9` right after the acknowledgement (reproduced with the real binaries: 3 runs in 20) leaves a
/// journal that still says `running` and no result.json, so the restarted server runs the cancelled job
/// again. A submission is journaled before its reply (`recordSubmission`); a cancel should be too.
final class ReviewDurabilityTests: XCTestCase {
    /// The in-memory store, except that while `holding` every write waits (a slow disk, or a process
    /// about to be killed before the write lands).
    final class HoldingStore: RecordStore, @unchecked Sendable {
        let inner = MemoryRecordStore()
        let lock = NSLock()
        private var _holding = false
        let released = DispatchSemaphore(value: 0)
        var holding: Bool {
            get { lock.withLock { _holding } }
            set { lock.withLock { _holding = newValue } }
        }
        func open() throws(StoreError) {}
        func put(_ bytes: [UInt8], at key: RecordKey) throws(StoreError) {
            if holding { released.wait(); released.signal() }
            try inner.put(bytes, at: key)
        }
        func get(_ key: RecordKey) throws(StoreError) -> [UInt8]? { try inner.get(key) }
        func list(_ kind: RecordKind) throws(StoreError) -> [String] { try inner.list(kind) }
        func entries(_ kind: RecordKind, of jobId: String) throws(StoreError) -> [String] { try inner.entries(kind, of: jobId) }
        func delete(_ key: RecordKey) throws(StoreError) { try inner.delete(key) }
        func setAside(_ key: RecordKey) throws(StoreError) -> String { try inner.setAside(key) }
        func discardUnfinished(_ kind: RecordKind, of jobId: String) throws(StoreError) {}
        func jobIds() throws(StoreError) -> [String] { try inner.jobIds() }
        func location(of key: RecordKey) -> String { inner.location(of: key) }
    }

    func testCancelIsAcknowledgedOnlyOnceRecorded() throws {
        let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let store = HoldingStore()
        let server = ServerRuntime(options: .init(host: "127.0.0.1", port: 0, dataDirectory: "/nonexistent/unused"),
                                   logger: quiet, store: store)
        try server.start()
        defer {
            store.holding = false
            store.released.signal()
            server.stop()
        }
        let client = try PSClient(server: server.address, name: "review")
        defer { client.close() }
        let spec = smallMNISTJob(name: "to-cancel", seed: 1, validationSplit: 0.2,
                                 layers: [LayerSpec(units: 10, activation: .softmax)],
                                 optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1), batchSize: 50, chunks: 1, epochs: 1)
        let jobId = try client.submit(spec)
        // No workers: the job is prepared and waits; let its journal writes land.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, try client.listJobs().first?.state != .waitingForWorkers { Thread.sleep(forTimeInterval: 0.02) }
        Thread.sleep(forTimeInterval: 0.3)
        store.holding = true
        let acknowledged = expectation(description: "cancel acknowledged")
        let other = Unchecked(try PSClient(server: server.address, name: "review-cancel"))
        DispatchQueue.global().async {
            try? other.value.cancel(jobId)
            acknowledged.fulfill()
        }
        // With the fix the acknowledgement waits for the write; here it comes at once.
        if XCTWaiter.wait(for: [acknowledged], timeout: 2) == .completed {
            let journal = try store.inner.journal(jobId: jobId)
            let record = try store.inner.jobRecord(jobId: jobId)
            XCTAssertTrue(journal?.state == .cancelled || record?.state == .cancelled,
                          "the cancel was acknowledged while the data directory says \(journal?.state.rawValue ?? "nothing") "
                              + "and holds no result: a kill -9 now resurrects the cancelled job")
        }
        store.holding = false
        store.released.signal()
        other.value.close()
    }
}
