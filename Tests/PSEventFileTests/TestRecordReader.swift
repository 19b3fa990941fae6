import Foundation
@testable import PSEventFile

/// A reader written apart from the writer, for tests only: TFRecord framing with both CRCs checked,
/// and the Event subset decoded field by field (unknown fields skipped, as protobuf does).
enum TestRecordReader {
    enum Failure: Error, Equatable {
        case truncated
        case lengthCRC(offset: Int)
        case dataCRC(offset: Int)
        case malformedEvent(String)
    }

    static func events(in path: String) throws -> [Event] {
        try records([UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))).map(decodeEvent)
    }

    static func records(_ file: [UInt8]) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        var at = 0
        func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n <= file.count - at else { throw Failure.truncated }
            defer { at += n }
            return file[at..<(at + n)]
        }
        while at < file.count {
            let start = at
            let lengthBytes = try take(8)
            guard littleEndian(try take(4)) as UInt32 == masked(lengthBytes) else { throw Failure.lengthCRC(offset: start) }
            let length = littleEndian(lengthBytes) as UInt64
            guard length <= UInt64(file.count) else { throw Failure.truncated }
            let data = try take(Int(length))
            guard littleEndian(try take(4)) as UInt32 == masked(data) else { throw Failure.dataCRC(offset: start) }
            out.append(Array(data))
        }
        return out
    }

    static func decodeEvent(_ bytes: [UInt8]) throws -> Event {
        var event = Event(wallTime: 0)
        try fields(bytes) { field, value in
            switch (field, value) {
            case let (1, .fixed64(v)): event.wallTime = Double(bitPattern: v)
            case let (2, .varint(v)): event.step = Int64(bitPattern: v)
            case let (3, .bytes(b)): event.fileVersion = String(decoding: b, as: UTF8.self)
            case let (5, .bytes(summary)):
                try fields(summary) { field, value in
                    guard field == 1, case let .bytes(valueBytes) = value else { return }
                    var tag = ""
                    var simpleValue: Float?
                    try fields(valueBytes) { field, value in
                        switch (field, value) {
                        case let (1, .bytes(b)): tag = String(decoding: b, as: UTF8.self)
                        case let (2, .fixed32(v)): simpleValue = Float(bitPattern: v)
                        default: break
                        }
                    }
                    guard let simpleValue else { throw Failure.malformedEvent("value '\(tag)' has no simple_value") }
                    event.scalars.append((tag, simpleValue))
                }
            case let (7, .bytes(sessionLog)):
                try fields(sessionLog) { field, value in
                    guard field == 1, case let .varint(status) = value else { return }
                    guard status == Event.sessionStatusStart else { throw Failure.malformedEvent("session status \(status)") }
                    event.sessionStart = true
                }
            default: break
            }
        }
        return event
    }

    enum FieldValue {
        case varint(UInt64), fixed64(UInt64), bytes([UInt8]), fixed32(UInt32)
    }

    /// Calls `visit` with each field of a protobuf message, in order.
    static func fields(_ bytes: [UInt8], _ visit: (Int, FieldValue) throws -> Void) throws {
        var at = 0
        func varint() throws -> UInt64 {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 64, by: 7) {
                guard at < bytes.count else { throw Failure.malformedEvent("varint runs past the end") }
                let byte = bytes[at]
                at += 1
                value |= UInt64(byte & 0x7F) << UInt64(shift)
                if byte < 0x80 { return value }
            }
            throw Failure.malformedEvent("varint longer than 10 bytes")
        }
        func take(_ n: UInt64) throws -> ArraySlice<UInt8> {
            guard n <= UInt64(bytes.count - at) else { throw Failure.malformedEvent("field runs past the end") }
            defer { at += Int(n) }
            return bytes[at..<(at + Int(n))]
        }
        while at < bytes.count {
            let key = try varint()
            let field = Int(key >> 3)
            switch key & 7 {
            case 0: try visit(field, .varint(try varint()))
            case 1: try visit(field, .fixed64(littleEndian(try take(8))))
            case 2: try visit(field, .bytes(Array(try take(try varint()))))
            case 5: try visit(field, .fixed32(littleEndian(try take(4))))
            default: throw Failure.malformedEvent("wire type \(key & 7)")
            }
        }
    }

    private static func masked(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        CRC32C.masked(CRC32C.checksum(bytes))
    }

    private static func littleEndian<T: FixedWidthInteger>(_ bytes: ArraySlice<UInt8>) -> T {
        bytes.reversed().reduce(T(0)) { $0 << 8 | T($1) }
    }
}
