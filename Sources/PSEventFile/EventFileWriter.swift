#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// An event file could not be created or written; `path` names the file, `reason` the system's error.
public struct EventFileError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var operation: String
    public var reason: String

    init(_ operation: String, _ path: String, reason: String) {
        self.operation = operation
        self.path = path
        self.reason = reason
    }

    init(_ operation: String, _ path: String, errno code: Int32) {
        self.init(operation, path, reason: String(cString: strerror(code)))
    }

    public var description: String { "\(operation) \(path): \(reason)" }
}

/// Writes one TensorBoard event file: TFRecord-framed `tensorflow.Event` messages, the first holding
/// the file version, the others a session start or one scalar each. Records are buffered and reach the file only whole,
/// on `flush()`, so a reader (a live TensorBoard) never sees half a record written by us; when a write
/// fails the file is cut back to its last whole record. Not thread-safe: use it from one queue.
public final class EventFileWriter {
    /// The format TensorBoard expects in the first record.
    public static let fileVersion = "brain.Event:2"
    /// Buffered bytes that force a write before the next `flush()`: bounds memory between flushes
    /// (about 20,000 scalars).
    public static let bufferBytesMax = 1 << 20

    /// The event file's path: `DIRECTORY/events.out.tfevents.SECONDS.HOSTNAME[SUFFIX]`.
    public let path: String
    private var descriptor: Int32
    private var pending: [UInt8] = []
    /// The file's length after the last whole write: where a failed write is cut back to.
    private var committedBytes: off_t = 0

    /// Creates `directory` when missing and a new event file in it holding the file-version record.
    /// Fails if the file exists (names carry the second and the host, so that means a second writer).
    public init(directory: String, fileSuffix: String = "", wallTime: Double = Date().timeIntervalSince1970) throws {
        path = "\(directory)/events.out.tfevents.\(Int64(wallTime)).\(Self.hostname())\(fileSuffix)"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw EventFileError("create directory", directory, reason: "\(error)")
        }
        descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw EventFileError("create", path, errno: errno) }
        append(Event(wallTime: wallTime, fileVersion: Self.fileVersion))
        try flush()
    }

    deinit { try? close() }

    /// Buffers a scalar (TensorBoard's scalar dashboard plots `tag` against `step`).
    public func scalar(tag: String, step: Int, value: Float, wallTime: Double = Date().timeIntervalSince1970) throws {
        append(Event(wallTime: wallTime, step: Int64(step), scalars: [(tag, value)]))
        if pending.count >= Self.bufferBytesMax { try flush() }
    }

    /// Buffers TensorBoard's session-start marker at `step`. Written first in each file: the first one a
    /// reader meets starts the run, and each later one marks a restart whose steps from `step` on are redone,
    /// so the reader drops the points at or after `step` it read before (its `purge_orphaned_data`).
    public func sessionStart(step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        append(Event(wallTime: wallTime, step: Int64(step), sessionStart: true))
        if pending.count >= Self.bufferBytesMax { try flush() }
    }

    /// Writes the buffered records. On failure they are dropped and the file is cut back to its last
    /// whole record, so it stays readable.
    public func flush() throws {
        guard descriptor >= 0 else { throw EventFileError("write", path, errno: EBADF) }
        defer { pending.removeAll(keepingCapacity: true) }
        var written = 0
        while written < pending.count {
            let n = pending.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                _ = ftruncate(descriptor, committedBytes)
                throw EventFileError("write", path, errno: code)
            }
            written += n
        }
        committedBytes += off_t(written)
    }

    /// Flushes and closes the file; later calls do nothing.
    public func close() throws {
        guard descriptor >= 0 else { return }
        defer {
            _ = systemClose(descriptor)
            descriptor = -1
        }
        try flush()
    }

    private func append(_ event: Event) {
        TFRecord.append(event.encoded(), to: &pending)
    }

    private static func hostname() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
        let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // The host becomes part of a file name.
        return host.isEmpty || host.contains("/") ? "localhost" : host
    }
}

private func systemClose(_ descriptor: Int32) -> Int32 {
    #if canImport(Darwin)
    Darwin.close(descriptor)
    #elseif canImport(Musl)
    Musl.close(descriptor)
    #else
    Glibc.close(descriptor)
    #endif
}
