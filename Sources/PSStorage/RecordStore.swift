import PSCore

/// What the server keeps between jobs and across restarts, as keyed records: each record is a whole
/// byte string under a `RecordKey` (a kind and an id), written at once or not at all.
///
/// Four kinds pass through it: the trained model of each completed job (`RecordKind.model`), the final
/// `JobResult` of every finished job (`RecordKind.jobRecord`), the job journal's entry of every job
/// (`RecordKind.journal`) and a running job's checkpoints (`RecordKind.checkpoint`, numbered entries in
/// a per-job folder); `ServerRecords.swift` and `JobJournal.swift` hold their encodings. The protocol is
/// keyed records with an atomic `put` (a reader never sees half a record, a crash leaves the previous
/// one), `get`, `list` per kind, `entries` of a folder kind, `delete`, `setAside` (a damaged record out
/// of the way) and `discardUnfinished` (leftovers of interrupted writes).
///
/// `FileRecordStore` is the server's data directory; `MemoryRecordStore` is for tests. Implementations
/// are safe to call from several threads.
public protocol RecordStore: Sendable {
    /// Makes the store usable (the file store creates its folders). Called once, before anything else.
    func open() throws(StoreError)

    /// Stores `bytes` as the record under `key`, replacing any earlier one atomically: afterwards `get`
    /// returns either the old record or the new one, never a mix, and a failed `put` leaves no partial
    /// record behind.
    func put(_ bytes: [UInt8], at key: RecordKey) throws(StoreError)

    /// The record under `key`, or nil when there is none.
    func get(_ key: RecordKey) throws(StoreError) -> [UInt8]?

    /// The ids that have a record of `kind`, sorted.
    func list(_ kind: RecordKind) throws(StoreError) -> [String]

    /// The entries of a per-job folder kind (`Layout.jobFolder`) that `jobId` has, sorted; temporary
    /// files of interrupted writes are not entries.
    func entries(_ kind: RecordKind, of jobId: String) throws(StoreError) -> [String]

    /// Removes the record under `key`; a missing record is not an error.
    func delete(_ key: RecordKey) throws(StoreError)

    /// Renames the record under `key` to `<its name>.unusable` beside it, out of the kind's entries (a
    /// damaged checkpoint: kept for a person to look at, never read again). Returns the new location.
    @discardableResult
    func setAside(_ key: RecordKey) throws(StoreError) -> String

    /// Removes what interrupted writes of a per-job folder kind left in `jobId`'s folder (temporary
    /// files a crash left behind). Call it only while no write of that kind is under way.
    func discardUnfinished(_ kind: RecordKind, of jobId: String) throws(StoreError)

    /// Every job id the store holds anything for, sorted: ids with a record of any kind, and in a data
    /// directory any `jobs/<id>/` folder (one holding only TensorBoard logs included). Job numbers
    /// continue after these, so a new job never writes into an earlier job's place.
    func jobIds() throws(StoreError) -> [String]

    /// Where the record under `key` is (or would be) kept, for messages: a file's path, or a name in memory.
    func location(of key: RecordKey) -> String
}

/// The kinds of record the server keeps, and where each lives in a data directory.
public struct RecordKind: Hashable, Sendable, CustomStringConvertible {
    /// Where records of a kind live in a data directory.
    public enum Layout: Hashable, Sendable {
        /// `jobs/<id>/<file name>`: one file per job, beside the job's other files (its TensorBoard logs).
        case jobFile(String)
        /// `jobs/<id>/<folder>/<entry><suffix>`: numbered entries of one job (its checkpoints).
        case jobFolder(String, suffix: String)
    }

    /// A short name for messages, e.g. "model".
    public let name: String
    public let layout: Layout
    /// The largest record of this kind that is read: a bigger file is damaged or foreign, and reading it
    /// whole could exhaust the server's memory.
    public let bytesMax: Int

    public init(name: String, layout: Layout, bytesMax: Int) {
        self.name = name
        self.layout = layout
        self.bytesMax = bytesMax
    }

    /// A completed job's trained model: `jobs/<id>/model.psm`, the model file format (`TrainedModel`).
    public static let model = RecordKind(name: "model", layout: .jobFile("model.psm"), bytesMax: 2 * Limits.frameBytesMax)
    /// A finished job's final `JobResult`, as JSON: `jobs/<id>/result.json`.
    public static let jobRecord = RecordKind(name: "job record", layout: .jobFile("result.json"), bytesMax: 1 << 20)
    /// The job journal's entry for a job, as JSON: `jobs/<id>/job.json` (its spec and state changes).
    public static let journal = RecordKind(name: "journal entry", layout: .jobFile("job.json"), bytesMax: 8 * Limits.specBytesMax)
    /// A running job's checkpoints: `jobs/<id>/checkpoints/<steps, 12 digits>.ckpt`.
    /// (Parameters, two optimizer slots and best weights at `Limits.parametersMax`, and the rest.)
    public static let checkpoint = RecordKind(name: "checkpoint", layout: .jobFolder("checkpoints", suffix: ".ckpt"),
                                              bytesMax: 5 * Limits.frameBytesMax)

    public var description: String { name }
}

/// A record's name: its kind and, within the kind, its id (a job id for per-job kinds).
public struct RecordKey: Hashable, Sendable, CustomStringConvertible {
    public let kind: RecordKind
    public let id: String
    /// The entry within the job's folder, for `Layout.jobFolder` kinds ("" otherwise).
    public let entry: String

    public init(_ kind: RecordKind, _ id: String, entry: String = "") {
        self.kind = kind
        self.id = id
        self.entry = entry
    }

    public static func model(_ jobId: String) -> RecordKey { RecordKey(.model, jobId) }
    public static func jobRecord(_ jobId: String) -> RecordKey { RecordKey(.jobRecord, jobId) }
    public static func journal(_ jobId: String) -> RecordKey { RecordKey(.journal, jobId) }
    /// The checkpoint holding `steps` training steps: entries sort by step.
    public static func checkpoint(_ jobId: String, steps: Int) -> RecordKey {
        let digits = String(steps)
        return RecordKey(.checkpoint, jobId, entry: String(repeating: "0", count: max(12 - digits.count, 0)) + digits)
    }

    public var description: String { entry.isEmpty ? "\(kind.name) of \(id)" : "\(kind.name) \(entry) of \(id)" }

    /// Whether `name` is an entry name this store writes for `kind` (checkpoints: 12 digits).
    public static func isEntryName(_ name: String, of kind: RecordKind) -> Bool {
        kind != .checkpoint || (name.utf8.count == 12 && name.utf8.allSatisfy { $0 >= 48 && $0 <= 57 })
    }

    /// Checks that the id (and entry) can name a file: not empty, not "." or "..", no "/" and no NUL, at
    /// most 255 bytes; an entry exactly when the kind has them.
    func validate(at location: String) throws(StoreError) {
        func plain(_ name: String) -> Bool {
            !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\0") && name.utf8.count <= 200
        }
        guard plain(id) else {
            throw StoreError(path: location, "'\(id)' cannot be a record id (it must be a plain file name)")
        }
        let folder: Bool = if case .jobFolder = kind.layout { true } else { false }
        guard folder ? plain(entry) : entry.isEmpty else {
            throw StoreError(path: location, "'\(entry)' cannot be an entry of a \(kind.name)")
        }
    }
}

/// Why a store operation failed: the file, folder or record concerned, and what went wrong there.
public struct StoreError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file or folder (or the record's name in memory).
    public var path: String
    /// What failed, e.g. "cannot write: No space left on device".
    public var message: String
    /// The record itself is unusable (not a regular file, too large), as opposed to an operation that
    /// failed and may work later (permissions, I/O errors).
    public var isDamage: Bool

    public init(path: String, _ message: String, isDamage: Bool = false) {
        self.path = path
        self.message = message
        self.isDamage = isDamage
    }

    /// "/srv/ps-data/jobs/job-3/model.psm: cannot create folder /srv/ps-data/jobs/job-3: Not a directory".
    public var description: String { "\(path): \(message)" }
}
