/// The subset of `tensorflow.Event` a scalar log needs, encoded by hand as protobuf:
///
///     message Event      { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
///                          SessionLog session_log = 7; }   // 6 is the deprecated log_message
///     message Summary    { repeated Value value = 1; }
///     message Value      { string tag = 1; float simple_value = 2; }
///     message SessionLog { SessionStatus status = 1; }   // enum SessionStatus { START = 1; ... }
///
/// Zero and empty fields are omitted, as proto3 does.
struct Event: Equatable {
    var wallTime: Double
    var step: Int64 = 0
    var fileVersion: String = ""
    /// `Summary.value`: (tag, simple_value) pairs.
    var scalars: [(tag: String, value: Float)] = []
    /// `session_log { status: START }`: TensorBoard reads every START after a run's first as a restart at
    /// `step`, and drops the points at or after it that it read before.
    var sessionStart = false

    static func == (a: Event, b: Event) -> Bool {
        a.wallTime == b.wallTime && a.step == b.step && a.fileVersion == b.fileVersion && a.sessionStart == b.sessionStart
            && a.scalars.map(\.tag) == b.scalars.map(\.tag) && a.scalars.map(\.value) == b.scalars.map(\.value)
    }

    /// `SessionLog.SessionStatus.START`.
    static let sessionStatusStart: UInt64 = 1

    /// The protobuf wire bytes.
    func encoded() -> [UInt8] {
        var out = ProtobufWriter()
        if wallTime != 0 { out.double(field: 1, wallTime) }
        if step != 0 { out.varint(field: 2, UInt64(bitPattern: step)) }
        if !fileVersion.isEmpty { out.bytes(field: 3, Array(fileVersion.utf8)) }
        if !scalars.isEmpty {
            var summary = ProtobufWriter()
            for scalar in scalars {
                var value = ProtobufWriter()
                value.bytes(field: 1, Array(scalar.tag.utf8))
                value.float(field: 2, scalar.value)
                summary.bytes(field: 1, value.bytes)
            }
            out.bytes(field: 5, summary.bytes)
        }
        if sessionStart {
            var sessionLog = ProtobufWriter()
            sessionLog.varint(field: 1, Self.sessionStatusStart)
            out.bytes(field: 7, sessionLog.bytes)
        }
        return out.bytes
    }
}

/// Protobuf encoding of the three wire types the Event subset uses.
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    private enum WireType: UInt64 { case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5 }

    private mutating func key(_ field: Int, _ type: WireType) {
        appendVarint(UInt64(field) << 3 | type.rawValue)
    }

    private mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func varint(field: Int, _ value: UInt64) {
        key(field, .varint)
        appendVarint(value)
    }

    mutating func double(field: Int, _ value: Double) {
        key(field, .fixed64)
        appendLittleEndian(value.bitPattern, to: &bytes)
    }

    mutating func float(field: Int, _ value: Float) {
        key(field, .fixed32)
        appendLittleEndian(value.bitPattern, to: &bytes)
    }

    mutating func bytes(field: Int, _ value: [UInt8]) {
        key(field, .lengthDelimited)
        appendVarint(UInt64(value.count))
        bytes += value
    }
}
