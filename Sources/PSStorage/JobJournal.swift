import Foundation
import PSCore
import PSSpec
import PSWire

/// One job's entry in the job journal, `jobs/<id>/job.json`: the spec as submitted and every state the
/// job entered, with the time. It is rewritten whole (atomically, flushed) at each change, before the
/// submission is acknowledged, so a restarted server finds every job a client was told about:
///
///     {"format": "ps-job-journal/1", "job_id": "job-3", "name": "mnist-mlp",
///      "spec": "<the spec's wire bytes, base64>", "spec_yaml": "name: mnist-mlp\n…",
///      "states": [{"state": "submitted", "at": "2026-12-05T10:31:02Z", "message": ""}, …]}
///
/// `spec` is what the server reads back (exactly the submitted value); `spec_yaml` is for people.
/// The job's result is in `result.json` beside it once the job has ended.
public struct JobJournalEntry: Equatable, Sendable {
    public struct Change: Equatable, Sendable {
        public var state: JobState
        /// Wall-clock time, seconds since 1970.
        public var at: Double
        public var message: String

        public init(state: JobState, at: Double, message: String = "") {
            self.state = state
            self.at = at
            self.message = message
        }
    }

    public var jobId: String
    public var spec: JobSpec
    public var changes: [Change]

    public init(jobId: String, spec: JobSpec, changes: [Change]) {
        self.jobId = jobId
        self.spec = spec
        self.changes = changes
    }

    /// The last state recorded.
    public var state: JobState { changes.last?.state ?? .submitted }
}

struct JobJournalFile: Codable {
    static let currentFormat = "ps-job-journal/1"

    struct Change: Codable {
        var state: String
        var at: String
        var message: String
    }

    var format: String
    var jobId: String
    var name: String
    var spec: String
    var specYAML: String
    var states: [Change]

    enum CodingKeys: String, CodingKey {
        case format, jobId = "job_id", name, spec, specYAML = "spec_yaml", states
    }
}

/// ISO 8601 in UTC with milliseconds (a formatter per call: they are not thread-safe to share).
private var timeFormat: ISO8601DateFormatter {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f
}

extension RecordStore {
    /// Writes a job's journal entry (replacing the previous one whole).
    public func putJournal(_ entry: JobJournalEntry) throws(StoreError) {
        let key = RecordKey.journal(entry.jobId)
        let file = JobJournalFile(
            format: JobJournalFile.currentFormat, jobId: entry.jobId, name: entry.spec.name,
            spec: Data(entry.spec.wireBytes()).base64EncodedString(), specYAML: entry.spec.yamlText(),
            states: entry.changes.map {
                JobJournalFile.Change(state: $0.state.rawValue, at: timeFormat.string(from: Date(timeIntervalSince1970: $0.at)),
                                      message: $0.message)
            })
        let bytes: [UInt8]
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            bytes = Array(try encoder.encode(file)) + [UInt8(ascii: "\n")]
        } catch {
            throw StoreError(path: location(of: key), "cannot encode the journal entry: \(error)")
        }
        try put(bytes, at: key)
    }

    /// A job's journal entry, or nil when it has none. An entry that cannot be read is an error naming
    /// the file and what is wrong (never a guess at the spec).
    public func journal(jobId: String) throws(StoreError) -> JobJournalEntry? {
        let key = RecordKey.journal(jobId)
        guard let bytes = try get(key) else { return nil }
        let path = location(of: key)
        let file: JobJournalFile
        do {
            file = try JSONDecoder().decode(JobJournalFile.self, from: Data(bytes))
        } catch {
            throw StoreError(path: path, "not a valid journal entry (\(bytes.count) bytes of JSON that does not parse as one)")
        }
        guard file.format == JobJournalFile.currentFormat else {
            throw StoreError(path: path, "format is '\(file.format.prefix(64))', not \(JobJournalFile.currentFormat)")
        }
        guard file.jobId == jobId else { throw StoreError(path: path, "job_id is '\(file.jobId.prefix(64))', not '\(jobId)'") }
        guard let wire = Data(base64Encoded: file.spec) else { throw StoreError(path: path, "spec is not base64") }
        let spec: JobSpec
        do {
            spec = try JobSpec(wireBytes: Array(wire))
        } catch {
            throw StoreError(path: path, "spec: \(error)")
        }
        var changes: [JobJournalEntry.Change] = []
        for (i, change) in file.states.enumerated() {
            guard let state = JobState(rawValue: change.state) else {
                throw StoreError(path: path, "states[\(i)].state '\(change.state.prefix(64))' is not a job state")
            }
            let at = timeFormat.date(from: change.at)?.timeIntervalSince1970 ?? 0
            changes.append(JobJournalEntry.Change(state: state, at: at, message: change.message))
        }
        return JobJournalEntry(jobId: jobId, spec: spec, changes: changes)
    }

    // MARK: Checkpoints

    /// Writes a checkpoint as `checkpoints/<steps>.ckpt`; returns the bytes written.
    @discardableResult
    public func putCheckpoint(_ checkpoint: Checkpoint, steps: Int) throws(StoreError) -> Int {
        let bytes = checkpoint.fileBytes()
        try put(bytes, at: .checkpoint(checkpoint.jobId, steps: steps))
        return bytes.count
    }

    /// Deletes all but the `keep` newest checkpoints of `jobId` (and leftovers of interrupted writes).
    public func pruneCheckpoints(of jobId: String, keep: Int) throws(StoreError) {
        let all = try entries(.checkpoint, of: jobId)
        for entry in all.dropLast(keep) { try delete(RecordKey(.checkpoint, jobId, entry: entry)) }
        try discardUnfinished(.checkpoint, of: jobId)
    }

    /// The checkpoints of `jobId`, newest first, as keys: decode each with `Checkpoint(fileBytes:)` and
    /// fall back to the next when one is damaged.
    public func checkpointKeys(of jobId: String) throws(StoreError) -> [RecordKey] {
        try entries(.checkpoint, of: jobId).reversed().map { RecordKey(.checkpoint, jobId, entry: $0) }
    }
}
