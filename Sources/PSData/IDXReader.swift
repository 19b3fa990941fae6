/// Readers for LeCun's IDX format (big-endian header, then unsigned bytes), plain or gzip.
public enum IDXReader {
    /// IDX magic: two zero bytes, the data type (0x08 = unsigned byte), the number of dimensions.
    static let imagesMagic: UInt32 = 0x0000_0803
    static let flatImagesMagic: UInt32 = 0x0000_0802
    static let labelsMagic: UInt32 = 0x0000_0801
    static let unsignedByteType: UInt8 = 0x08

    /// Images as `count × width` row-major pixels with values 0...255; IDX3 (count, rows, cols) or
    /// IDX2 (count, width).
    public static func readImages(path: String, cancellation: LoadCancellation = .never) throws
        -> (count: Int, width: Int, pixels: [Float])
    {
        let images = try readImageFile(path: path, cancellation: cancellation)
        return (images.count, images.width, images.pixels)
    }

    /// One label byte per sample.
    public static func readLabels(path: String, cancellation: LoadCancellation = .never) throws -> [UInt8] {
        try readLabelFile(path: path, cancellation: cancellation).labels
    }

    struct ImageFile {
        var count: Int
        var width: Int
        var pixels: [Float]
    }

    struct LabelFile {
        var labels: [UInt8]
        /// Byte offset of label 0, for messages about a label.
        var headerBytes: Int
        var file: FileBytes
    }

    /// What an IDX header declares: `count` items of `width` bytes after `headerBytes` header bytes.
    struct Header {
        var dims: Int
        var headerBytes: Int
        var count: Int
        var width: Int
        var totalBytes: Int { headerBytes + count * width }
    }

    /// Reads `path` after judging its header from the first 16 bytes, so a gzip file inflates only as
    /// far as the header says it should (`FileBytes.Expectation`).
    private static func read(path: String, cancellation: LoadCancellation, noun: String,
                             header: @escaping (FileBytes) throws -> Header) throws -> (FileBytes, Header) {
        var found: Header?
        let expectation = FileBytes.Expectation(headBytes: 16) { head in
            let h = try header(head)
            found = h
            return .exactly(h.totalBytes, reason: "its IDX\(h.dims) header implies \(h.totalBytes) bytes (\(h.headerBytes) + \(h.count) \(noun) × \(h.width))")
        }
        let file = try FileBytes.read(path: path, expecting: expectation, cancellation: cancellation)
        guard let found else { preconditionFailure("FileBytes.read returned without judging the header") }
        try requireBody(file, path: path, header: found, noun: noun)
        return (file, found)
    }

    static func readImageFile(path: String, cancellation: LoadCancellation = .never) throws -> ImageFile {
        let (file, header) = try read(path: path, cancellation: cancellation, noun: "images") { head in
            try imageHeader(head, path: path)
        }
        let headerBytes = header.headerBytes
        // Written once, not zeroed first: a pass less over (and the first touch of) the largest array.
        let pixels = try [Float](unsafeUninitializedCapacity: header.count * header.width) { out, initialized in
            try file.bytes.withUnsafeBufferPointer { input in
                var start = 0
                while start < out.count {
                    try cancellation.check(file: path)
                    let end = min(start + DataLimits.pieceBytes, out.count)
                    for i in start..<end { out[i] = Float(input[headerBytes + i]) }
                    start = end
                    initialized = start
                }
            }
        }
        return ImageFile(count: header.count, width: header.width, pixels: pixels)
    }

    /// What `readImageFile` checks (the whole file is read and judged, with the same errors), without
    /// converting the pixels: the count and width of the images.
    static func readImageShape(path: String, cancellation: LoadCancellation = .never) throws -> (count: Int, width: Int) {
        let (_, header) = try read(path: path, cancellation: cancellation, noun: "images") { head in
            try imageHeader(head, path: path)
        }
        return (header.count, header.width)
    }

    static func readLabelFile(path: String, cancellation: LoadCancellation = .never) throws -> LabelFile {
        let (file, header) = try read(path: path, cancellation: cancellation, noun: "labels") { head in
            _ = try readMagic(head, path: path, expected: [labelsMagic], what: "0x00000801 (IDX1 labels)")
            try requireHeader(head, path: path, bytes: 8, what: "IDX1 labels")
            let count = Int(bigEndianWord(head.bytes, at: 4))
            try checkCount(count, width: 1, file: head, path: path)
            return Header(dims: 1, headerBytes: 8, count: count, width: 1)
        }
        return LabelFile(labels: Array(file.bytes[header.headerBytes...]), headerBytes: header.headerBytes, file: file)
    }

    private static func imageHeader(_ head: FileBytes, path: String) throws -> Header {
        let bytes = head.bytes
        let magic = try readMagic(head, path: path, expected: [imagesMagic, flatImagesMagic],
                                  what: "0x00000803 (IDX3 images) or 0x00000802 (IDX2 images)")
        let dims = magic == imagesMagic ? 3 : 2
        let headerBytes = 4 + 4 * dims
        try requireHeader(head, path: path, bytes: headerBytes, what: "IDX\(dims) images")
        let count = Int(bigEndianWord(bytes, at: 4))
        var width = 1
        for d in 1..<dims {
            let size = Int(bigEndianWord(bytes, at: 4 + 4 * d))
            if size == 0 {
                throw DataError(file: path, location: head.location(byte: 4 + 4 * d),
                                message: "dimension \(d) is 0; images need at least one pixel")
            }
            width *= size  // at most 2^64 - 2^33 + 1: cannot overflow Int
            if width > DataLimits.featuresMax {
                throw DataError(file: path, location: head.location(byte: 4 + 4 * d),
                                message: "images of \(width) pixels exceed the limit of \(DataLimits.featuresMax) features")
            }
        }
        try checkCount(count, width: width, file: head, path: path)
        return Header(dims: dims, headerBytes: headerBytes, count: count, width: width)
    }

    private static func bigEndianWord(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16
            | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    private static func hex(_ word: UInt32) -> String {
        let digits = String(word, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }

    private static func readMagic(_ file: FileBytes, path: String, expected: [UInt32], what: String) throws -> UInt32 {
        let bytes = file.bytes
        if bytes.isEmpty {
            throw DataError(file: path, message: "file is empty; expected an IDX header starting with magic \(what)")
        }
        if bytes.count < 4 {
            throw DataError(file: path, location: file.location(byte: bytes.count),
                            message: "truncated header: the file ends after \(bytes.count) of the 4 magic bytes")
        }
        let magic = bigEndianWord(bytes, at: 0)
        if expected.contains(magic) { return magic }
        var message = "bad magic \(hex(magic)), expected \(what)"
        if bytes[0] == 0, bytes[1] == 0, bytes[2] != unsignedByteType {
            message += "; data type 0x\(String(bytes[2], radix: 16)) is not supported, only unsigned bytes (0x08)"
        }
        throw DataError(file: path, location: file.location(byte: 0), message: message)
    }

    private static func requireHeader(_ file: FileBytes, path: String, bytes: Int, what: String) throws {
        if file.bytes.count < bytes {
            throw DataError(file: path, location: file.location(byte: file.bytes.count),
                            message: "truncated header: \(what) need \(bytes) header bytes but the file has \(file.bytes.count)")
        }
    }

    private static func checkCount(_ count: Int, width: Int, file: FileBytes, path: String) throws {
        if count > DataLimits.samplesMax || count * width > DataLimits.valuesMax {
            throw DataError(file: path, location: file.location(byte: 4),
                            message: "header declares \(count) items of \(width) values, beyond the limits of \(DataLimits.samplesMax) samples and \(DataLimits.valuesMax) values")
        }
    }

    private static func requireBody(_ file: FileBytes, path: String, header: Header, noun: String) throws {
        let (headerBytes, count, itemBytes) = (header.headerBytes, header.count, header.width)
        let expected = count * itemBytes
        let present = file.bytes.count - headerBytes
        if present < expected {
            throw DataError(file: path, location: file.location(byte: headerBytes),
                            message: "truncated data: header says \(count) \(noun) of \(itemBytes) byte\(itemBytes == 1 ? "" : "s") (\(expected) bytes from byte \(headerBytes)) but only \(present) bytes follow")
        }
        if present > expected {
            throw DataError(file: path, location: file.location(byte: headerBytes + expected),
                            message: "\(present - expected) extra bytes after the \(count) \(noun) the header declares")
        }
    }
}
