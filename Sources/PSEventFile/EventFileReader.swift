import Foundation

/// Reads back event files as TensorBoard does: records in order up to the first incomplete or damaged
/// one (where a killed process cut the file, TensorBoard stops too), each decoded as the Event subset
/// `EventFileWriter` writes. Only the server's restart path uses it, so it favours plainness over speed.
public enum EventFileReader {
    /// The scalars a reader shows at `step` after reading the files at `paths` in that order, one value per
    /// tag (the last read), in the order the tags first appear: a session start at or before `step` drops
    /// those read before it, as TensorBoard's restart handling does. A file that cannot be read is passed
    /// over, as TensorBoard would.
    public static func scalars(atStep step: Int, in paths: [String]) -> [(tag: String, value: Float)] {
        var found: [(tag: String, value: Float)] = []
        for path in paths {
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            for event in events(in: [UInt8](data)) {
                if event.sessionStart, event.step <= Int64(step) { found.removeAll() }
                guard event.step == Int64(step) else { continue }
                for scalar in event.scalars {
                    if let i = found.firstIndex(where: { $0.tag == scalar.tag }) { found[i].value = scalar.value } else { found.append(scalar) }
                }
            }
        }
        return found
    }

    /// The events of a file's bytes, up to the first record that is incomplete, fails its CRC or does not
    /// decode.
    static func events(in file: [UInt8]) -> [Event] {
        var out: [Event] = []
        var at = 0
        while file.count - at >= TFRecord.overheadBytes {
            let lengthBytes = Array(file[at..<(at + 8)])
            guard UInt32(littleEndian: file, at: at + 8) == CRC32C.masked(CRC32C.checksum(lengthBytes)) else { break }
            let length = UInt64(littleEndian: file, at: at)
            guard length <= UInt64(file.count - at - TFRecord.overheadBytes) else { break }
            let data = Array(file[(at + 12)..<(at + 12 + Int(length))])
            guard UInt32(littleEndian: file, at: at + 12 + Int(length)) == CRC32C.masked(CRC32C.checksum(data)),
                  let event = Event(decoding: data) else { break }
            out.append(event)
            at += TFRecord.overheadBytes + Int(length)
        }
        return out
    }
}

extension Event {
    /// Decodes the fields this subset knows and skips the others; nil for bytes that are not protobuf.
    init?(decoding bytes: [UInt8]) {
        var event = Event(wallTime: 0)
        let decoded = ProtobufReader.fields(bytes) { field, value in
            switch (field, value) {
            case let (1, .fixed64(v)): event.wallTime = Double(bitPattern: v)
            case let (2, .varint(v)): event.step = Int64(bitPattern: v)
            case let (3, .bytes(b)): event.fileVersion = String(decoding: b, as: UTF8.self)
            case let (5, .bytes(summary)):
                return ProtobufReader.fields(summary) { field, value in
                    guard field == 1, case let .bytes(valueBytes) = value else { return true }
                    var tag = ""
                    var simpleValue: Float?
                    let ok = ProtobufReader.fields(valueBytes) { field, value in
                        switch (field, value) {
                        case let (1, .bytes(b)): tag = String(decoding: b, as: UTF8.self)
                        case let (2, .fixed32(v)): simpleValue = Float(bitPattern: v)
                        default: break
                        }
                        return true
                    }
                    // A value of another kind (an image, a tensor) is not one of ours: passed over.
                    if ok, let simpleValue { event.scalars.append((tag, simpleValue)) }
                    return ok
                }
            case let (7, .bytes(sessionLog)):
                return ProtobufReader.fields(sessionLog) { field, value in
                    if field == 1, case let .varint(status) = value, status == Self.sessionStatusStart { event.sessionStart = true }
                    return true
                }
            default: break
            }
            return true
        }
        guard decoded else { return nil }
        self = event
    }
}

/// Protobuf decoding of the four wire types the Event subset uses.
enum ProtobufReader {
    enum Value {
        case varint(UInt64), fixed64(UInt64), bytes([UInt8]), fixed32(UInt32)
    }

    /// Calls `visit` with each field of a message in order; false when the bytes are malformed or `visit`
    /// returned false.
    static func fields(_ bytes: [UInt8], _ visit: (Int, Value) -> Bool) -> Bool {
        var at = 0
        func varint() -> UInt64? {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 64, by: 7) {
                guard at < bytes.count else { return nil }
                let byte = bytes[at]
                at += 1
                value |= UInt64(byte & 0x7F) << UInt64(shift)
                if byte < 0x80 { return value }
            }
            return nil
        }
        while at < bytes.count {
            guard let key = varint() else { return false }
            let value: Value
            switch key & 7 {
            case 0:
                guard let v = varint() else { return false }
                value = .varint(v)
            case 1:
                guard bytes.count - at >= 8 else { return false }
                value = .fixed64(UInt64(littleEndian: bytes, at: at))
                at += 8
            case 2:
                guard let n = varint(), n <= UInt64(bytes.count - at) else { return false }
                value = .bytes(Array(bytes[at..<(at + Int(n))]))
                at += Int(n)
            case 5:
                guard bytes.count - at >= 4 else { return false }
                value = .fixed32(UInt32(littleEndian: bytes, at: at))
                at += 4
            default:
                return false
            }
            guard visit(Int(key >> 3), value) else { return false }
        }
        return true
    }
}

extension FixedWidthInteger {
    /// The little-endian integer at `offset` in `bytes` (the caller checked that it fits).
    init(littleEndian bytes: [UInt8], at offset: Int) {
        self = (0..<(Self.bitWidth / 8)).reduce(Self(0)) { $0 | Self(bytes[offset + $1]) << ($1 * 8) }
    }
}
