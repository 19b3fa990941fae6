#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The server's data directory as a `RecordStore`. The layout is the one operators and tools know:
///
///     DATA_DIR/jobs/<job id>/model.psm      a completed job's model (RecordKind.model)
///     DATA_DIR/jobs/<job id>/result.json    a finished job's result (RecordKind.jobRecord)
///     DATA_DIR/jobs/<job id>/job.json       the job journal's entry: spec and state changes (RecordKind.journal)
///     DATA_DIR/jobs/<job id>/checkpoints/<steps>.ckpt   a running job's checkpoints (RecordKind.checkpoint)
///     DATA_DIR/jobs/<job id>/tensorboard/   its event files (written by EventFileObserver, not the store)
///
/// Every `put` writes a temporary file beside the target (`<name>.tmp-<pid>-<random>`), flushes it to
/// disk, renames it over the target and flushes the folder, so the name always points at a whole record
/// and a failed write removes its temporary file. Stateless: safe from any thread; concurrent `put`s of
/// one key leave one of them.
public struct FileRecordStore: RecordStore {
    /// The data directory (`--data-dir`).
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    var jobsDirectory: String { directory + "/jobs" }

    /// The file that holds (or would hold) the record under `key`.
    public func path(of key: RecordKey) -> String {
        switch key.kind.layout {
        case let .jobFile(name): return "\(jobsDirectory)/\(key.id)/\(name)"
        case let .jobFolder(folder, suffix): return "\(jobsDirectory)/\(key.id)/\(folder)/\(key.entry)\(suffix)"
        }
    }

    public func location(of key: RecordKey) -> String { path(of: key) }

    public func open() throws(StoreError) {
        if let failed = makeDirectories(jobsDirectory) {
            throw StoreError(path: failed.path, "cannot create folder: \(failed.reason)")
        }
    }

    public func put(_ bytes: [UInt8], at key: RecordKey) throws(StoreError) {
        let path = path(of: key)
        try key.validate(at: path)
        let folder = parent(of: path)
        if let failed = makeDirectories(folder) {
            throw StoreError(path: path, "cannot create folder \(failed.path): \(failed.reason)")
        }
        try writeAtomically(bytes, to: path, pauseSeconds: key.kind == .checkpoint ? Self.checkpointWritePause : 0)
        // The rename is durable once the folder's entry is on disk too.
        syncDirectory(folder)
    }

    public func get(_ key: RecordKey) throws(StoreError) -> [UInt8]? {
        let path = path(of: key)
        try key.validate(at: path)
        return try readFile(path, bytesMax: key.kind.bytesMax)
    }

    public func list(_ kind: RecordKind) throws(StoreError) -> [String] {
        switch kind.layout {
        case let .jobFile(name):
            return try folderNames(in: jobsDirectory).filter { isRegularFile("\(jobsDirectory)/\($0)/\(name)") }
        case let .jobFolder(folder, _):
            return try folderNames(in: jobsDirectory).filter { isDirectory("\(jobsDirectory)/\($0)/\(folder)") }
        }
    }

    public func entries(_ kind: RecordKind, of jobId: String) throws(StoreError) -> [String] {
        guard case let .jobFolder(folder, suffix) = kind.layout else { return [] }
        try RecordKey(kind, jobId, entry: "x").validate(at: jobsDirectory)
        // Only the names this store writes (12 digits for checkpoints): a file copied in under another
        // name would sort wrongly and is not an entry.
        return try fileNames(in: "\(jobsDirectory)/\(jobId)/\(folder)")
            .filter { $0.hasSuffix(suffix) && $0.count > suffix.count }
            .map { String($0.dropLast(suffix.count)) }
            .filter { RecordKey.isEntryName($0, of: kind) }
    }

    public func delete(_ key: RecordKey) throws(StoreError) {
        let path = path(of: key)
        try key.validate(at: path)
        guard unlink(path) == 0 || errno == ENOENT else { throw failure(path, "cannot remove") }
        syncDirectory(parent(of: path))
    }

    @discardableResult
    public func setAside(_ key: RecordKey) throws(StoreError) -> String {
        let path = path(of: key)
        try key.validate(at: path)
        let aside = path + ".unusable"
        guard rename(path, aside) == 0 else { throw failure(path, "cannot rename it to \(aside)") }
        syncDirectory(parent(of: path))
        return aside
    }

    public func discardUnfinished(_ kind: RecordKind, of jobId: String) throws(StoreError) {
        guard case let .jobFolder(folder, suffix) = kind.layout else { return }
        try RecordKey(kind, jobId, entry: "x").validate(at: jobsDirectory)
        let path = "\(jobsDirectory)/\(jobId)/\(folder)"
        // `<entry><suffix>.tmp-<pid>-<random>`: what `writeAtomically` had not renamed yet.
        for leftover in try fileNames(in: path) where leftover.contains(suffix + ".tmp-") {
            guard unlink("\(path)/\(leftover)") == 0 || errno == ENOENT else { throw failure("\(path)/\(leftover)", "cannot remove") }
        }
    }

    /// A test hook, named so in every log line it causes: `PS_TEST_CHECKPOINT_WRITE_PAUSE_SECONDS` makes
    /// each checkpoint write stop for that long halfway through its temporary file, so an end-to-end test
    /// can kill the server while a checkpoint is being written. Never set it in production.
    public static let checkpointWritePause: Double = {
        guard let text = getenv("PS_TEST_CHECKPOINT_WRITE_PAUSE_SECONDS").map({ String(cString: $0) }),
              let seconds = Double(text), seconds > 0, seconds <= 60 else { return 0 }
        return seconds
    }()

    public func jobIds() throws(StoreError) -> [String] {
        try folderNames(in: jobsDirectory)
    }
}

// MARK: POSIX helpers

private func failure(_ path: String, _ what: String) -> StoreError {
    StoreError(path: path, "\(what): \(String(cString: strerror(errno)))")
}

private func parent(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

private func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

private func isRegularFile(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
}

/// `mkdir -p`: creates `path` and any missing parents; an existing folder is fine, an existing file is
/// not. Returns the folder that could not be created and why, or nil when `path` is a folder now.
func makeDirectories(_ path: String) -> (path: String, reason: String)? {
    if isDirectory(path) { return nil }
    let up = parent(of: path)
    if up != path && !up.isEmpty, let failed = makeDirectories(up) { return failed }
    if mkdir(path, 0o755) == 0 { return nil }
    if errno == EEXIST { return isDirectory(path) ? nil : (path, "it exists and is not a directory") }
    return (path, String(cString: strerror(errno)))
}

/// The names of the regular files directly inside `path`, sorted; none when `path` does not exist.
private func fileNames(in path: String) throws(StoreError) -> [String] {
    try names(in: path).filter { isRegularFile("\(path)/\($0)") }
}

/// The names of the folders directly inside `path`, sorted; none when `path` does not exist.
private func folderNames(in path: String) throws(StoreError) -> [String] {
    try names(in: path).filter { isDirectory("\(path)/\($0)") }
}

/// Every name directly inside `path` but "." and "..", sorted; none when `path` does not exist.
private func names(in path: String) throws(StoreError) -> [String] {
    guard let dir = opendir(path) else {
        if errno == ENOENT { return [] }
        throw failure(path, "cannot list folder")
    }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if name != ".", name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// Writes `bytes` to a fresh temporary file beside `path`, flushes it and renames it over `path`. On any
/// failure the temporary file is removed and the error names the file that could not be written.
private func writeAtomically(_ bytes: [UInt8], to path: String, pauseSeconds: Double = 0) throws(StoreError) {
    var temporary = ""
    var fd: Int32 = -1
    for _ in 0..<8 where fd < 0 {
        temporary = "\(path).tmp-\(getpid())-\(String(UInt32.random(in: .min ... .max), radix: 16))"
        fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 && errno != EEXIST { break }
    }
    guard fd >= 0 else { throw failure(path, "cannot create temporary file \(temporary)") }
    func abandon(_ error: StoreError) -> StoreError {
        unlink(temporary)
        return error
    }
    var done = 0
    var paused = pauseSeconds <= 0
    while done < bytes.count {
        let end = paused ? bytes.count : bytes.count / 2
        if done >= end {
            // The test hook (`FileRecordStore.checkpointWritePause`): half the file is written.
            paused = true
            let note = "ps-server: test hook PS_TEST_CHECKPOINT_WRITE_PAUSE_SECONDS: pausing \(pauseSeconds)s halfway through \(temporary)\n"
            _ = note.withCString { Glibc.write(2, $0, strlen($0)) }
            usleep(UInt32(pauseSeconds * 1_000_000))
            continue
        }
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, end - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
            let error = failure(path, "cannot write temporary file \(temporary)")
            close(fd)
            throw abandon(error)
        }
        done += n
    }
    // Flushed before the rename, so the name never points at data still only in the page cache.
    let flushed = fsync(fd) == 0
    guard close(fd) == 0, flushed else { throw abandon(failure(path, "cannot flush temporary file \(temporary)")) }
    guard rename(temporary, path) == 0 else {
        throw abandon(failure(path, "cannot rename temporary file \(temporary) over it"))
    }
}

/// Best effort: a folder that cannot be opened or flushed still holds the renamed file.
private func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    close(fd)
}

/// The whole file, or nil when it does not exist. Opened without blocking (a FIFO put in a record's place
/// must not hang the server) and read only if it is a regular file of at most `bytesMax` bytes.
private func readFile(_ path: String, bytesMax: Int) throws(StoreError) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else {
        if errno == ENOENT { return nil }
        throw failure(path, "cannot open")
    }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw failure(path, "cannot stat") }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw StoreError(path: path, "is not a regular file", isDamage: true) }
    guard st.st_size <= bytesMax else {
        throw StoreError(path: path, "is \(st.st_size) bytes, more than such a record can be (\(bytesMax))", isDamage: true)
    }
    var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
            if n == 0 { throw StoreError(path: path, "the file shrank while it was read") }
            throw failure(path, "cannot read")
        }
        done += n
    }
    return bytes
}
