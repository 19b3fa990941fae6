import CZlib
import Foundation

/// A file's contents, decompressed when the file is gzip (recognised by its magic bytes, not its name).
///
/// Reading is streamed in pieces of `DataLimits.pieceBytes`: the reader's `Expectation` judges the
/// first (decompressed) bytes before the rest is read or inflated, and fixes how many bytes the whole
/// file may have, so a gzip bomb stops near the size its header implies instead of inflating to the end.
/// Every piece checks the load's `LoadCancellation`.
struct FileBytes {
    var bytes: [UInt8]
    var wasGzip: Bool

    /// Offsets in a gzip file's errors refer to the decompressed bytes; say so, so nobody looks for
    /// them in the compressed file.
    func location(byte offset: Int) -> String {
        wasGzip ? "byte \(offset) of the decompressed data" : "byte \(offset)"
    }

    static let gzipMagic: (UInt8, UInt8) = (0x1f, 0x8b)

    /// What a reader expects of a file, judged from its first bytes before the rest is read or inflated.
    struct Expectation {
        /// Leading (decompressed) bytes `judge` needs; it gets fewer only when the whole file is shorter.
        var headBytes: Int
        /// Throws when the head shows the file is not what the reader reads; otherwise says how long
        /// the whole file must be. Its argument holds at least `headBytes` bytes or the whole file.
        var judge: (FileBytes) throws -> ImpliedSize
    }

    enum ImpliedSize {
        /// The header fixes the size: `bytes` in all, as `reason` says ("its IDX3 header implies …").
        case exactly(Int, reason: String)
        /// Text has no header that says how long it is.
        case unknown
    }

    /// Reads `path`, inflating it if it starts with the gzip magic bytes. The path must name a regular
    /// file (a FIFO, a device or a folder is an error, found without blocking).
    static func read(path: String, expecting expectation: Expectation? = nil,
                     cancellation: LoadCancellation = .never) throws -> FileBytes {
        let file = try OpenFile(path: path)
        defer { file.close() }
        try cancellation.check(file: path)
        var sink = Sink(path: path, expectation: expectation, cancellation: cancellation, storedBytes: file.size)
        var input = InputPieces(file: file)
        try input.refill()
        if input.available >= 2, input[0] == gzipMagic.0, input[1] == gzipMagic.1 {
            sink.wasGzip = true
            try gunzip(&input, into: &sink)
        } else {
            while input.available > 0 {
                try input.withPending { try sink.append(UnsafeBufferPointer($0)) }
                input.consume(input.available)
                try input.refill()
            }
        }
        return try sink.finish()
    }

    /// Inflates every gzip member (windowBits MAX_WBITS + 32 lets zlib read the gzip header) from
    /// `input` into `sink`. Corrupt, truncated or trailing data is an error at its compressed byte offset.
    private static func gunzip(_ input: inout InputPieces, into sink: inout Sink) throws {
        let path = sink.path
        var stream = z_stream()
        func zlibMessage(_ code: Int32) -> String {
            if let msg = stream.msg { return String(cString: msg) }
            return String(cString: zError(code))
        }
        guard inflateInit2_(&stream, MAX_WBITS + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DataError(file: path, message: "zlib could not start: \(zlibMessage(Z_MEM_ERROR))")
        }
        defer { inflateEnd(&stream) }
        func fail(_ message: String) -> DataError {
            DataError(file: path, location: "byte \(input.consumed) of the gzip stream", message: message)
        }

        var output = [UInt8](repeating: 0, count: DataLimits.pieceBytes)
        while true {
            if input.available == 0 {
                try sink.cancellation.check(file: path)  // a piece that inflates to nothing still counts
                try input.refill()
            }
            let offered = input.available
            var produced = 0
            let code: Int32 = input.withPending { pending in
                output.withUnsafeMutableBufferPointer { out in
                    stream.next_in = pending.baseAddress
                    stream.avail_in = UInt32(offered)
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    let code = inflate(&stream, Z_NO_FLUSH)
                    produced = out.count - Int(stream.avail_out)
                    return code
                }
            }
            input.consume(offered - Int(stream.avail_in))
            if produced > 0 {
                sink.compressedConsumed = input.consumed
                try output.withUnsafeBufferPointer { try sink.append(UnsafeBufferPointer(rebasing: $0[..<produced])) }
            }
            switch code {
            case Z_STREAM_END:
                // A gzip file may hold several members back to back (`cat a.gz b.gz`).
                if input.available < 2 { try input.refill() }
                if input.available == 0 { return }
                if input.available >= 2, input[0] == gzipMagic.0, input[1] == gzipMagic.1 {
                    inflateReset(&stream)
                    continue
                }
                throw fail("\(max(input.storedBytes - input.consumed, input.available)) bytes of trailing garbage after the gzip stream")
            case Z_OK, Z_BUF_ERROR:
                // zlib stops when the output piece is full or the input piece is used up; with output
                // room left and no more input, the stream ended early.
                if produced == output.count { continue }
                if input.available == 0 {
                    try input.refill()
                    if input.available == 0 {
                        throw fail("truncated gzip stream: it ends before its end marker (\(sink.count) bytes decompressed)")
                    }
                }
            case Z_DATA_ERROR:
                throw fail("corrupt gzip stream: \(zlibMessage(code))")
            default:
                throw fail("gzip error: \(zlibMessage(code))")
            }
        }
    }

    /// Collects a file's (decompressed) bytes piece by piece: judges the head once it is complete,
    /// refuses bytes past the size the judgement allows, and checks the cancellation every piece.
    private struct Sink {
        let path: String
        let expectation: Expectation?
        let cancellation: LoadCancellation
        /// The file's size on disk (compressed, for gzip).
        let storedBytes: Int
        var wasGzip = false
        /// Compressed bytes inflated so far, for the message when inflation stops.
        var compressedConsumed = 0
        var bytes: [UInt8] = []
        var judged = false
        /// Most bytes the whole file may have, and why.
        var bytesMax = DataLimits.fileBytesMax
        var limitReason = "DataLimits.fileBytesMax"

        init(path: String, expectation: Expectation?, cancellation: LoadCancellation, storedBytes: Int) {
            self.path = path
            self.expectation = expectation
            self.cancellation = cancellation
            self.storedBytes = storedBytes
        }

        var count: Int { bytes.count }

        mutating func append(_ piece: UnsafeBufferPointer<UInt8>) throws {
            try cancellation.check(file: path)
            if bytes.isEmpty, !wasGzip { bytes.reserveCapacity(storedBytes) }
            bytes.append(contentsOf: piece)
            if !judged, bytes.count >= (expectation?.headBytes ?? 0) { try judge() }
            if bytes.count > bytesMax {
                throw DataError(file: path, message: wasGzip
                    ? "decompresses past \(bytesMax) bytes: \(limitReason); stopped after inflating \(compressedConsumed) of its \(storedBytes) compressed bytes to \(bytes.count) bytes"
                    : "file has more than \(bytesMax) bytes: \(limitReason)")
            }
        }

        mutating func finish() throws -> FileBytes {
            if !judged { try judge() }
            return FileBytes(bytes: bytes, wasGzip: wasGzip)
        }

        private mutating func judge() throws {
            judged = true
            let implied = try expectation?.judge(FileBytes(bytes: bytes, wasGzip: wasGzip)) ?? .unknown
            switch implied {
            case let .exactly(size, reason):
                // The slack lets a slightly long file reach the reader, whose error counts the extra bytes.
                let slack = DataLimits.gzipSlackBytes
                if size + slack < bytesMax {
                    bytesMax = size + slack
                    limitReason = "\(reason), and DataLimits.gzipSlackBytes allows \(slack) more"
                    if wasGzip { bytes.reserveCapacity(size) }
                }
                if !wasGzip, storedBytes > bytesMax {
                    throw DataError(file: path, message: "file has \(storedBytes) bytes, but \(reason)")
                }
            case .unknown where wasGzip:
                let ratio = DataLimits.gzipTextRatioMax
                let allowed = max(storedBytes * ratio, DataLimits.gzipSlackBytes)
                if allowed < bytesMax {
                    bytesMax = allowed
                    limitReason = "a gzip text file is inflated to at most \(ratio) times its compressed size (DataLimits.gzipTextRatioMax) or \(DataLimits.gzipSlackBytes) bytes (DataLimits.gzipSlackBytes), whichever is more; decompress it first to read a larger one"
                }
            case .unknown:
                break
            }
        }
    }
}

/// A data file opened for reading. Opened non-blocking so a FIFO with no writer cannot hang the load,
/// then checked to be a regular file before a byte is read.
private struct OpenFile {
    let path: String
    let fd: Int32
    let size: Int

    init(path: String) throws {
        self.path = path
        if let nul = path.utf8.firstIndex(of: 0) {
            // open(2) would read the path only up to the NUL and open another file.
            throw DataError(file: path.replacingOccurrences(of: "\0", with: "\\0"),
                            message: "the path holds a NUL byte (at byte \(path.utf8.distance(from: path.utf8.startIndex, to: nul))); a path cannot")
        }
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 { throw Self.osError(path: path, doing: "cannot open") }
        var info = stat()
        if fstat(fd, &info) != 0 {
            let error = Self.osError(path: path, doing: "cannot stat")
            Foundation.close(fd)
            throw error
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            Foundation.close(fd)
            throw DataError(file: path, message: "is \(DataRoots.describe(kind)), not a regular file; data files must be regular files")
        }
        size = Int(info.st_size)
        if size > DataLimits.fileBytesMax {
            Foundation.close(fd)
            throw DataError(file: path, message: "file has \(size) bytes; the limit is \(DataLimits.fileBytesMax) (DataLimits.fileBytesMax)")
        }
    }

    func close() { Foundation.close(fd) }

    static func osError(path: String, doing: String) -> DataError {
        DataError(file: path, message: "\(doing): \(String(cString: strerror(errno)))")
    }
}

/// A file's stored bytes, read one piece of `DataLimits.pieceBytes` at a time; the unconsumed bytes
/// are `buffer[head...]`.
private struct InputPieces {
    let file: OpenFile
    private var buffer: [UInt8] = []
    private var head = 0
    /// Stored bytes consumed so far: the offset of the next one in the file.
    private(set) var consumed = 0
    private var atEnd = false

    init(file: OpenFile) { self.file = file }

    var storedBytes: Int { file.size }
    var available: Int { buffer.count - head }
    subscript(k: Int) -> UInt8 { buffer[head + k] }

    mutating func consume(_ n: Int) {
        head += n
        consumed += n
    }

    /// Runs `body` on the unconsumed bytes.
    mutating func withPending<R>(_ body: (UnsafeMutableBufferPointer<UInt8>) throws -> R) rethrows -> R {
        let start = head
        return try buffer.withUnsafeMutableBufferPointer { try body(UnsafeMutableBufferPointer(rebasing: $0[start...])) }
    }

    /// Reads up to one more piece after the unconsumed bytes (called when few or none are left, so
    /// moving them to the front is cheap); at the end of the file, reads nothing.
    mutating func refill() throws {
        guard !atEnd else { return }
        buffer.removeFirst(head)
        head = 0
        let start = buffer.count
        let piece = DataLimits.pieceBytes
        buffer.append(contentsOf: repeatElement(0, count: piece))
        var filled = 0
        let fd = file.fd
        try buffer.withUnsafeMutableBytes { bytes in
            while filled < piece {
                let n = Foundation.read(fd, bytes.baseAddress! + start + filled, piece - filled)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw OpenFile.osError(path: file.path, doing: "cannot read")
                }
                if n == 0 { atEnd = true; break }
                filled += n
            }
        }
        buffer.removeLast(piece - filled)
    }
}
