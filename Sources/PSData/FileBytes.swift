import CZlib
import Foundation

/// A file's contents, decompressed when the file is gzip (recognised by its magic bytes, not its name).
struct FileBytes {
    var bytes: [UInt8]
    var wasGzip: Bool

    /// Offsets in a gzip file's errors refer to the decompressed bytes; say so, so nobody looks for
    /// them in the compressed file.
    func location(byte offset: Int) -> String {
        wasGzip ? "byte \(offset) of the decompressed data" : "byte \(offset)"
    }

    static let gzipMagic: (UInt8, UInt8) = (0x1f, 0x8b)

    /// Reads `path`, inflating it if it starts with the gzip magic bytes.
    static func read(path: String) throws -> FileBytes {
        let raw = try readRaw(path: path)
        if raw.count >= 2, raw[0] == gzipMagic.0, raw[1] == gzipMagic.1 {
            return FileBytes(bytes: try gunzip(raw, path: path), wasGzip: true)
        }
        return FileBytes(bytes: raw, wasGzip: false)
    }

    /// The file's bytes as stored; errors carry the operating system's reason.
    static func readRaw(path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        if fd < 0 { throw osError(path: path, doing: "cannot open") }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) != 0 { throw osError(path: path, doing: "cannot stat") }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            throw DataError(file: path, message: "cannot read: is a directory")
        }
        let size = Int(info.st_size)
        if size > DataLimits.fileBytesMax {
            throw DataError(file: path, message: "file has \(size) bytes; the limit is \(DataLimits.fileBytesMax)")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var filled = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while filled < size {
                let n = Foundation.read(fd, buffer.baseAddress! + filled, size - filled)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw osError(path: path, doing: "cannot read")
                }
                if n == 0 { break }  // the file shrank while we read it
                filled += n
            }
        }
        if filled < size { bytes.removeLast(size - filled) }
        return bytes
    }

    private static func osError(path: String, doing: String) -> DataError {
        DataError(file: path, message: "\(doing): \(String(cString: strerror(errno)))")
    }

    /// The output buffer's first size. The last four bytes of a gzip member are its uncompressed size
    /// mod 2^32: a good first guess when plausible. Deflate expands at most 1032:1, so a larger claim
    /// comes from a damaged or truncated file and must not make us allocate gigabytes before inflating
    /// a single byte.
    private static func initialCapacity(_ compressed: [UInt8]) -> Int {
        let deflateRatioMax = 1032
        var capacity = max(compressed.count * 4, 64)
        if compressed.count >= 18 {
            let n = compressed.count
            let isize = Int(compressed[n - 4]) | Int(compressed[n - 3]) << 8
                | Int(compressed[n - 2]) << 16 | Int(compressed[n - 1]) << 24
            if isize <= compressed.count * deflateRatioMax { capacity = max(isize, 64) }
        }
        return min(capacity, DataLimits.fileBytesMax)
    }

    /// Inflates every gzip member in `compressed` (windowBits MAX_WBITS + 32 lets zlib read the gzip
    /// header). Corrupt, truncated or trailing data is an error at its compressed byte offset.
    static func gunzip(_ compressed: [UInt8], path: String) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: initialCapacity(compressed))
        var produced = 0
        var stream = z_stream()
        var consumed = 0

        func fail(_ message: String) -> DataError {
            DataError(file: path, location: "byte \(consumed) of the gzip stream", message: message)
        }
        func zlibMessage(_ code: Int32) -> String {
            if let msg = stream.msg { return String(cString: msg) }
            return String(cString: zError(code))
        }

        guard inflateInit2_(&stream, MAX_WBITS + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DataError(file: path, message: "zlib could not start: \(zlibMessage(Z_MEM_ERROR))")
        }
        defer { inflateEnd(&stream) }

        try compressed.withUnsafeBufferPointer { input in
            // zlib's avail_in is 32-bit; feed at most this much per call.
            let feedMax = 1 << 30
            while true {
                if produced == output.count {
                    if output.count >= DataLimits.fileBytesMax {
                        throw fail("decompresses to more than \(DataLimits.fileBytesMax) bytes, the limit")
                    }
                    output.append(contentsOf: repeatElement(0, count: min(output.count, DataLimits.fileBytesMax - output.count)))
                }
                let feed = min(input.count - consumed, feedMax)
                let room = min(output.count - produced, feedMax)
                let code: Int32 = output.withUnsafeMutableBufferPointer { out in
                    stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress! + consumed)
                    stream.avail_in = UInt32(feed)
                    stream.next_out = out.baseAddress! + produced
                    stream.avail_out = UInt32(room)
                    let code = inflate(&stream, Z_NO_FLUSH)
                    consumed += feed - Int(stream.avail_in)
                    produced += room - Int(stream.avail_out)
                    return code
                }
                switch code {
                case Z_OK:
                    continue
                case Z_STREAM_END:
                    // A gzip file may hold several members back to back (`cat a.gz b.gz`).
                    if consumed == input.count { return }
                    if input.count - consumed >= 2, input[consumed] == gzipMagic.0, input[consumed + 1] == gzipMagic.1 {
                        inflateReset(&stream)
                        continue
                    }
                    throw fail("\(input.count - consumed) bytes of trailing garbage after the gzip stream")
                case Z_BUF_ERROR where consumed == input.count && produced < output.count:
                    throw fail("truncated gzip stream: it ends before its end marker (\(produced) bytes decompressed)")
                case Z_BUF_ERROR:
                    continue  // no room for output: the loop head grows the buffer
                case Z_DATA_ERROR:
                    throw fail("corrupt gzip stream: \(zlibMessage(code))")
                default:
                    throw fail("gzip error: \(zlibMessage(code))")
                }
            }
        }
        output.removeLast(output.count - produced)
        return output
    }
}
