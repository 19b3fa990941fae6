#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One server per data directory. Two servers writing the same models, job records and event files
/// would corrupt each other's work, so `ps-server` takes an exclusive `flock` on `DATA_DIR/lock` at
/// start and holds it while it runs. The kernel drops the lock when the process ends, however it ends
/// (SIGKILL and power loss included), so a crashed server never leaves a stale lock behind; the file
/// keeps the holder's pid and program so a second server can say who holds it.
///
/// Taking the lock also proves, before anything else happens, that the directory can be written: an
/// unwritable data directory is refused at start, naming the path, not at the first model write.
public final class DataDirectoryLock: @unchecked Sendable {
    public let directory: String
    public let path: String
    private var fd: Int32

    /// Creates `directory` if needed and locks it; throws naming the directory and, when another
    /// process holds it, that process.
    public init(directory: String, program: String) throws(StoreError) {
        self.directory = directory
        path = directory + "/lock"
        if let failed = makeDirectories(directory) {
            throw StoreError(path: failed.path, "cannot create the data directory: \(failed.reason)")
        }
        fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw StoreError(path: directory, "the data directory is not writable: cannot create \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK ? "in use by \(Self.holder(of: fd))" : "cannot lock \(path): \(String(cString: strerror(errno)))"
            Glibc.close(fd)
            throw StoreError(path: directory, "the data directory is \(reason); stop that server or give this one another --data-dir")
        }
        let note = "pid \(getpid())\nprogram \(program)\n"
        guard ftruncate(fd, 0) == 0, note.withCString({ write(fd, $0, strlen($0)) }) == note.utf8.count else {
            let failure = String(cString: strerror(errno))
            Glibc.close(fd)
            throw StoreError(path: directory, "the data directory is not writable: cannot write \(path): \(failure)")
        }
        fsync(fd)
    }

    /// Lets the directory go (a server that stops; the kernel does the same at exit).
    public func release() {
        guard fd >= 0 else { return }
        Glibc.close(fd)
        fd = -1
    }

    deinit { release() }

    /// "process 4242 (ps-server)", from what the holder wrote into the lock file (bounded read).
    private static func holder(of fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = pread(fd, &buffer, buffer.count, 0)
        let text = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        guard let pid = fields["pid"].flatMap(Int32.init) else { return "another process" }
        return "process \(pid)" + (fields["program"].map { " (\($0.filter { $0.isASCII && !$0.isNewline }.prefix(64)))" } ?? "")
    }
}
