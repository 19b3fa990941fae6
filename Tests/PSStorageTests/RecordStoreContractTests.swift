import Foundation
import PSStorage
import XCTest

/// The store contract (`StoreContract`) against the data directory.
final class FileRecordStoreContractTests: XCTestCase {
    private var directory = ""

    override func setUp() {
        directory = NSTemporaryDirectory() + "ps-store-\(UUID().uuidString)/data"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: (directory as NSString).deletingLastPathComponent)
    }

    private var store: FileRecordStore { FileRecordStore(directory: directory) }

    func testPutGetReplace() throws { try StoreContract.putGetReplace(store) }
    func testListAndNumbering() throws { try StoreContract.listAndNumbering(store) }
    func testModelRoundTrip() throws { try StoreContract.modelRoundTrip(store) }
    func testJobRecordRoundTrip() throws { try StoreContract.jobRecordRoundTrip(store) }
    func testCorruptRecordsAreNamed() throws { try StoreContract.corruptRecordsAreNamed(store) }
    func testBadIdsAreRefused() throws { try StoreContract.badIdsAreRefused(store) }
    func testConcurrentPuts() throws { try StoreContract.concurrentPuts(store) }
    func testCheckpointEntries() throws { try StoreContract.checkpointEntries(store) }
    func testJournalRoundTrip() throws { try StoreContract.journalRoundTrip(store) }
}

/// The same contract against the in-memory store the tests use.
final class MemoryRecordStoreContractTests: XCTestCase {
    func testPutGetReplace() throws { try StoreContract.putGetReplace(MemoryRecordStore()) }
    func testListAndNumbering() throws { try StoreContract.listAndNumbering(MemoryRecordStore()) }
    func testModelRoundTrip() throws { try StoreContract.modelRoundTrip(MemoryRecordStore()) }
    func testJobRecordRoundTrip() throws { try StoreContract.jobRecordRoundTrip(MemoryRecordStore()) }
    func testCorruptRecordsAreNamed() throws { try StoreContract.corruptRecordsAreNamed(MemoryRecordStore()) }
    func testBadIdsAreRefused() throws { try StoreContract.badIdsAreRefused(MemoryRecordStore()) }
    func testConcurrentPuts() throws { try StoreContract.concurrentPuts(MemoryRecordStore()) }
    func testCheckpointEntries() throws { try StoreContract.checkpointEntries(MemoryRecordStore()) }
    func testJournalRoundTrip() throws { try StoreContract.journalRoundTrip(MemoryRecordStore()) }
}
