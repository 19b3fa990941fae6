/// TFRecord framing: each record is
/// `uint64 length (LE) | uint32 masked CRC-32C of those 8 bytes (LE) | data | uint32 masked CRC-32C of data (LE)`.
enum TFRecord {
    /// Bytes a record adds around its data.
    static let overheadBytes = 8 + 4 + 4

    /// Appends one framed record holding `data` to `out`.
    static func append(_ data: [UInt8], to out: inout [UInt8]) {
        var length: [UInt8] = []
        appendLittleEndian(UInt64(data.count), to: &length)
        out += length
        appendLittleEndian(CRC32C.masked(CRC32C.checksum(length)), to: &out)
        out += data
        appendLittleEndian(CRC32C.masked(CRC32C.checksum(data)), to: &out)
    }
}

func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
    for i in 0..<(T.bitWidth / 8) { out.append(UInt8(truncatingIfNeeded: value >> (i * 8))) }
}
