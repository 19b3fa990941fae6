import Foundation

/// A `RecordStore` in memory, for tests: the same contract as the data directory (a `put` replaces a
/// record whole, `list` and `jobIds` are sorted), nothing on disk. Thread-safe.
public final class MemoryRecordStore: RecordStore, @unchecked Sendable {
    private let lock = NSLock()
    private var records: [RecordKey: [UInt8]] = [:]

    public init() {}

    public func open() throws(StoreError) {}

    public func put(_ bytes: [UInt8], at key: RecordKey) throws(StoreError) {
        try key.validate(at: location(of: key))
        lock.withLock { records[key] = bytes }
    }

    public func get(_ key: RecordKey) throws(StoreError) -> [UInt8]? {
        try key.validate(at: location(of: key))
        return lock.withLock { records[key] }
    }

    public func list(_ kind: RecordKind) throws(StoreError) -> [String] {
        Set(lock.withLock { records.keys.filter { $0.kind == kind }.map(\.id) }).sorted()
    }

    public func entries(_ kind: RecordKind, of jobId: String) throws(StoreError) -> [String] {
        lock.withLock { records.keys.filter { $0.kind == kind && $0.id == jobId }.map(\.entry) }
            .filter { RecordKey.isEntryName($0, of: kind) }.sorted()
    }

    public func delete(_ key: RecordKey) throws(StoreError) {
        try key.validate(at: location(of: key))
        _ = lock.withLock { records.removeValue(forKey: key) }
    }

    /// In memory the record is moved out of the store's keys.
    @discardableResult
    public func setAside(_ key: RecordKey) throws(StoreError) -> String {
        try key.validate(at: location(of: key))
        _ = lock.withLock { records.removeValue(forKey: key) }
        return location(of: key) + ".unusable"
    }

    /// Nothing is ever half-written in memory.
    public func discardUnfinished(_ kind: RecordKind, of jobId: String) throws(StoreError) {}

    public func jobIds() throws(StoreError) -> [String] {
        Set(lock.withLock { records.keys.map(\.id) }).sorted()
    }

    /// "memory:jobs/job-3/model.psm": the path the record would have in a data directory.
    public func location(of key: RecordKey) -> String {
        switch key.kind.layout {
        case let .jobFile(name): return "memory:jobs/\(key.id)/\(name)"
        case let .jobFolder(folder, suffix): return "memory:jobs/\(key.id)/\(folder)/\(key.entry)\(suffix)"
        }
    }
}
