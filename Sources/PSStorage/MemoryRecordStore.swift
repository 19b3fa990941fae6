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
        lock.withLock { records.keys.filter { $0.kind == kind }.map(\.id) }.sorted()
    }

    public func jobIds() throws(StoreError) -> [String] {
        let ids = lock.withLock {
            records.keys.filter { if case .jobFile = $0.kind.layout { true } else { false } }.map(\.id)
        }
        return Set(ids).sorted()
    }

    /// "memory:jobs/job-3/model.psm": the path the record would have in a data directory.
    public func location(of key: RecordKey) -> String {
        switch key.kind.layout {
        case let .jobFile(name): return "memory:jobs/\(key.id)/\(name)"
        }
    }
}
