/// Readers for LeCun's IDX format (big-endian header, then unsigned bytes), plain or gzip.
public enum IDXReader {
    /// IDX magic: two zero bytes, the data type (0x08 = unsigned byte), the number of dimensions.
    static let imagesMagic: UInt32 = 0x0000_0803
    static let flatImagesMagic: UInt32 = 0x0000_0802
    static let labelsMagic: UInt32 = 0x0000_0801
    static let unsignedByteType: UInt8 = 0x08

    /// Images as `count × width` row-major pixels with values 0...255; IDX3 (count, rows, cols) or
    /// IDX2 (count, width).
    public static func readImages(path: String) throws -> (count: Int, width: Int, pixels: [Float]) {
        let images = try readImageFile(path: path)
        return (images.count, images.width, images.pixels)
    }

    /// One label byte per sample.
    public static func readLabels(path: String) throws -> [UInt8] {
        try readLabelFile(path: path).labels
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

    static func readImageFile(path: String) throws -> ImageFile {
        let file = try FileBytes.read(path: path)
        let bytes = file.bytes
        let magic = try readMagic(file, path: path, expected: [imagesMagic, flatImagesMagic],
                                  what: "0x00000803 (IDX3 images) or 0x00000802 (IDX2 images)")
        let dims = magic == imagesMagic ? 3 : 2
        let headerBytes = 4 + 4 * dims
        try requireHeader(file, path: path, bytes: headerBytes, what: "IDX\(dims) images")
        let count = Int(bigEndianWord(bytes, at: 4))
        var width = 1
        for d in 1..<dims {
            let size = Int(bigEndianWord(bytes, at: 4 + 4 * d))
            if size == 0 {
                throw DataError(file: path, location: file.location(byte: 4 + 4 * d),
                                message: "dimension \(d) is 0; images need at least one pixel")
            }
            width *= size  // at most 2^64 - 2^33 + 1: cannot overflow Int
            if width > DataLimits.featuresMax {
                throw DataError(file: path, location: file.location(byte: 4 + 4 * d),
                                message: "images of \(width) pixels exceed the limit of \(DataLimits.featuresMax) features")
            }
        }
        try checkCount(count, width: width, file: file, path: path)
        try requireBody(file, path: path, headerBytes: headerBytes, count: count, itemBytes: width, noun: "images")

        var pixels = [Float](repeating: 0, count: count * width)
        pixels.withUnsafeMutableBufferPointer { out in
            bytes.withUnsafeBufferPointer { input in
                for i in 0..<out.count { out[i] = Float(input[headerBytes + i]) }
            }
        }
        return ImageFile(count: count, width: width, pixels: pixels)
    }

    static func readLabelFile(path: String) throws -> LabelFile {
        let file = try FileBytes.read(path: path)
        _ = try readMagic(file, path: path, expected: [labelsMagic], what: "0x00000801 (IDX1 labels)")
        let headerBytes = 8
        try requireHeader(file, path: path, bytes: headerBytes, what: "IDX1 labels")
        let count = Int(bigEndianWord(file.bytes, at: 4))
        try checkCount(count, width: 1, file: file, path: path)
        try requireBody(file, path: path, headerBytes: headerBytes, count: count, itemBytes: 1, noun: "labels")
        return LabelFile(labels: Array(file.bytes[headerBytes...]), headerBytes: headerBytes, file: file)
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

    private static func requireBody(_ file: FileBytes, path: String, headerBytes: Int, count: Int,
                                    itemBytes: Int, noun: String) throws {
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
