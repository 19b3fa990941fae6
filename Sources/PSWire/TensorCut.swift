// Reading a weights or gradient tensor in place: protobuf-c's unpack copies every `bytes` field, so the
// decoder first finds the tensor's bytes with a small protobuf wire scan, hands protobuf-c the message
// without them (the field kept, empty) and reads the floats from the frame.
import PSWireC

/// Where the float bytes of a `Weights` or `PushGradient` envelope lie, and the same envelope with
/// those bytes removed.
///
/// Only the plain shape is cut: exactly one `weights` (42) or `push_gradient` (43) field in the
/// envelope, exactly one tensor field in it and exactly one `data` field in the tensor, every one
/// length-delimited, and at least `bytesMin` bytes of data. Anything else (repeated fields, which
/// protobuf merges; malformed bytes; small tensors) is left whole to protobuf-c, whose answer is
/// the reference. For the plain shape the two are the same message: protobuf-c sees every field
/// but the data, and the data is exactly the bytes it would have copied.
struct TensorCut {
    /// The tensor's data bytes, as indices into the payload.
    let data: Range<Int>
    /// The payload without them: the data field present with length 0, the lengths of the tensor
    /// and body fields shortened to match.
    let stripped: [UInt8]

    /// Tensors smaller than this are copied by protobuf-c like any other field: the cut is for
    /// megabytes, and copying a few kilobytes costs less than building the stripped envelope.
    static let bytesMin = 4096

    /// Field numbers of the path, from data.proto / envelope.proto (checked against protobuf-c's
    /// descriptors by the tests).
    static let weightsBody: UInt32 = 42
    static let pushGradientBody: UInt32 = 43
    static let weightsTensor: UInt32 = 3
    static let pushGradientTensor: UInt32 = 5
    static let tensorData: UInt32 = 2

    init?(_ payload: UnsafeRawBufferPointer) {
        guard payload.count >= Self.bytesMin else { return nil }
        let scan = WireScan(payload)
        guard let body = scan.onlyField(in: 0..<payload.count,
                                        where: { $0 == Self.weightsBody || $0 == Self.pushGradientBody }) else { return nil }
        let tensorNumber = body.number == Self.weightsBody ? Self.weightsTensor : Self.pushGradientTensor
        guard let tensor = scan.onlyField(in: body.value, where: { $0 == tensorNumber }),
              let data = scan.onlyField(in: tensor.value, where: { $0 == Self.tensorData }),
              data.value.count >= Self.bytesMin else { return nil }

        // The tensor shrinks by the data and its length prefix, which becomes the one byte 0; the
        // body shrinks by what the tensor lost plus any change in the tensor's own length prefix.
        let tensorLength = tensor.value.count - (data.value.upperBound - data.lengthStart) + 1
        let bodyLength = body.value.count - (tensor.value.upperBound - tensor.lengthStart)
            + WireScan.varintSize(UInt64(tensorLength)) + tensorLength
        var out: [UInt8] = []
        out.reserveCapacity(payload.count - data.value.count + 2 * 10)
        out.append(contentsOf: payload[0..<body.lengthStart])
        WireScan.appendVarint(UInt64(bodyLength), to: &out)
        out.append(contentsOf: payload[body.value.lowerBound..<tensor.lengthStart])
        WireScan.appendVarint(UInt64(tensorLength), to: &out)
        out.append(contentsOf: payload[tensor.value.lowerBound..<data.lengthStart])
        out.append(0)
        out.append(contentsOf: payload[data.value.upperBound..<payload.count])
        self.data = data.value
        self.stripped = out
    }
}

/// A forward-only reader of protobuf's wire format: fields, varints, lengths. No schema, no values.
struct WireScan {
    /// A length-delimited field.
    struct Field {
        let number: UInt32
        /// Where the length prefix starts.
        let lengthStart: Int
        /// The value's bytes, after the prefix.
        let value: Range<Int>
    }

    private let bytes: UnsafeRawBufferPointer

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// The one field in `range` whose number `matches`, when there is exactly one and it is
    /// length-delimited; nil when there is none, more than one, one of another wire type, or the bytes
    /// are not well-formed protobuf as protobuf-c reads it (a truncated varint or value, field number 0,
    /// a group or unknown wire type, a length prefix over 5 bytes). Other fields are skipped, not
    /// stored, so a frame of millions of tiny fields costs no memory here.
    func onlyField(in range: Range<Int>, where matches: (UInt32) -> Bool) -> Field? {
        var found: Field?
        var i = range.lowerBound
        while i < range.upperBound {
            guard let key = varint(&i, end: range.upperBound) else { return nil }
            let number = key >> 3, wireType = UInt8(key & 7)
            guard number >= 1, number <= 0x1FFF_FFFF else { return nil }
            let start = i
            var valueStart = i
            switch wireType {
            case 0:
                guard varint(&i, end: range.upperBound) != nil else { return nil }
            case 1, 5:
                let width = wireType == 1 ? 8 : 4
                guard range.upperBound - i >= width else { return nil }
                i += width
            case 2:
                guard let length = varint(&i, end: range.upperBound), i - start <= Self.lengthPrefixBytesMax,
                      length <= UInt64(range.upperBound - i) else { return nil }
                valueStart = i
                i += Int(length)
            default:
                return nil
            }
            guard matches(UInt32(number)) else { continue }
            guard found == nil, wireType == 2 else { return nil }
            found = Field(number: UInt32(number), lengthStart: start, value: valueStart..<i)
        }
        return found
    }

    /// protobuf-c reads a length prefix of at most 5 bytes (a 32-bit length) and rejects a longer one.
    static let lengthPrefixBytesMax = 5

    /// A base-128 varint of at most 10 bytes, advancing `i`; nil when truncated or too long.
    func varint(_ i: inout Int, end: Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while i < end, shift < 64 {
            let byte = bytes[i]
            i += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }

    static func varintSize(_ value: UInt64) -> Int {
        var n = 1, v = value >> 7
        while v != 0 { n += 1; v >>= 7 }
        return n
    }

    static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }
}
