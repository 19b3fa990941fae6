import PSTestSupport
import XCTest
import PSCore
import PSWireC
@testable import PSWire

/// Decoding weights and gradients in place (`TensorCut`): the tensor's bytes are read where they lie in
/// the frame, and everything else goes through protobuf-c. protobuf-c decoding the whole frame is the
/// reference: every encoding below, odd or broken, must decode to the same message or the same error.
final class TensorInPlaceTests: XCTestCase {
    /// Big enough to be cut (TensorCut.bytesMin), not a multiple of the SIMD width.
    static let values: [Float] = (0..<1_501).map { Float($0) * 0.25 - 100 }

    func testFieldNumbersMatchTheSchema() {
        func number(_ descriptor: ProtobufCMessageDescriptor, _ name: String) -> UInt32? {
            withUnsafePointer(to: descriptor) { protobuf_c_message_descriptor_get_field_by_name($0, name)?.pointee.id }
        }
        XCTAssertEqual(number(ps__v1__envelope__descriptor, "weights"), TensorCut.weightsBody)
        XCTAssertEqual(number(ps__v1__envelope__descriptor, "push_gradient"), TensorCut.pushGradientBody)
        XCTAssertEqual(number(ps__v1__weights__descriptor, "weights"), TensorCut.weightsTensor)
        XCTAssertEqual(number(ps__v1__push_gradient__descriptor, "gradient"), TensorCut.pushGradientTensor)
        XCTAssertEqual(number(ps__v1__tensor__descriptor, "data"), TensorCut.tensorData)
    }

    func testEncodedFramesDecodeToViewsOfTheFrame() throws {
        let messages: [Message] = [
            .weights(Weights(jobId: "job-1", version: 9, tensor: TensorSlice(offset: 0, values: Self.values))),
            .pushGradient(PushGradient(jobId: "job-1", step: 9, subtree: ChunkRange(firstChunk: 2, chunkCount: 2),
                                       gradient: TensorSlice(offset: 0, values: Self.values),
                                       lossSum: 3.5, correct: 7, samples: 64)),
        ]
        for message in messages {
            let frame = try encodeFrame(requestId: 5, message: message)
            let decoded = try Envelope(payload: frame[4...])
            XCTAssertEqual(decoded, Envelope(requestId: 5, message: message))
            XCTAssertTrue(tensor(of: decoded)?.isView ?? false, "\(message.caseName) was copied, not viewed")
            // Without an owner the bytes are valid only during the call: the tensor is copied once.
            let copied = try frame.withUnsafeBytes { try Envelope(payload: UnsafeRawBufferPointer(rebasing: $0[4...])) }
            XCTAssertEqual(copied, decoded)
        }
    }

    func testAViewKeepsItsFrameAlive() throws {
        var frame: [UInt8]? = try encodeFrame(requestId: 1, message: .weights(
            Weights(jobId: "j", version: 1, tensor: TensorSlice(offset: 0, values: Self.values))))
        let decoded = try Envelope(payload: frame![4...])
        frame = nil
        // Allocations of the same size would reuse freed storage; the view's must not have been freed.
        let noise = [[UInt8]](repeating: [UInt8](repeating: 0xFF, count: 8_000), count: 8)
        XCTAssertEqual(noise.count, 8)
        XCTAssertEqual(tensor(of: decoded)?.array, Self.values)
    }

    func testSmallTensorsAreCopiedByProtobufC() throws {
        let message = Message.weights(Weights(jobId: "j", version: 1, tensor: TensorSlice(offset: 3, values: [1, 2, 3])))
        let frame = try encodeFrame(requestId: 1, message: message)
        let decoded = try Envelope(payload: frame[4...])
        XCTAssertEqual(decoded.message, message)
        XCTAssertEqual(tensor(of: decoded)?.isView, false)
    }

    /// Hand-written encodings protobuf allows but `encodeFrame` never writes, and broken ones.
    func testEveryEncodingDecodesLikeProtobufC() throws {
        let data = Self.values.withUnsafeBytes { [UInt8]($0) }
        func tensor(_ fields: [Field]) -> [UInt8] { encode(fields) }
        func push(_ tensorFields: [Field], extra: [Field] = [], gradientFirst: Bool = false) -> [UInt8] {
            var fields: [Field] = [.bytes(1, Array("job-1".utf8)), .varint(2, 9), .varint(3, 0), .varint(4, 4),
                                   .fixed64(6, 2.5.bitPattern), .varint(7, 3), .varint(8, 128)]
            let gradient = Field.bytes(5, tensor(tensorFields))
            if gradientFirst { fields.insert(gradient, at: 0) } else { fields.insert(gradient, at: 4) }
            return encode(fields + extra)
        }
        let plainTensor: [Field] = [.varint(1, 0), .bytes(2, data)]
        let cases: [(String, [UInt8])] = [
            ("plain", encode([.varint(1, 5), .bytes(43, push(plainTensor))])),
            ("body before request id", encode([.bytes(43, push(plainTensor)), .varint(1, 5)])),
            ("gradient first, data before offset", encode([.varint(1, 5), .bytes(43, push([.bytes(2, data), .varint(1, 0)], gradientFirst: true))])),
            ("unknown fields everywhere", encode([.fixed32(900, 7), .varint(1, 5),
                                                   .bytes(43, push([.bytes(901, [1, 2, 3]), .varint(1, 0), .bytes(2, data), .fixed64(902, 1)],
                                                                   extra: [.varint(903, 1), .bytes(904, data)])),
                                                   .bytes(905, [9])])),
            ("long-form length prefixes", encode([.varint(1, 5), .paddedBytes(43, encode([.bytes(1, Array("job-1".utf8)), .varint(2, 9), .varint(4, 4), .varint(8, 128),
                                                                                          .paddedBytes(5, encode([.paddedBytes(2, data)]))]))])),
            ("a 6-byte length prefix, which protobuf-c refuses", encode([.varint(1, 5), .bytes(43, push([.varint(1, 0), .paddedBytes(2, data, width: 6)]))])),
            ("two tensors: protobuf merges them", encode([.varint(1, 5), .bytes(43, push(plainTensor, extra: [.bytes(5, tensor([.varint(1, 0), .bytes(2, Array(data.reversed()))]))]))])),
            ("two data fields: the last wins", encode([.varint(1, 5), .bytes(43, push([.bytes(2, Array(data.prefix(4096))), .bytes(2, data)]))])),
            ("two bodies: the last wins", encode([.varint(1, 5), .bytes(43, push(plainTensor)), .bytes(44, encode([.bytes(1, Array("job-1".utf8)), .varint(2, 9), .varint(4, 4)]))])),
            ("weights", encode([.varint(1, 5), .bytes(42, encode([.bytes(1, Array("job-1".utf8)), .varint(2, 3), .bytes(3, tensor(plainTensor))]))])),
            ("data not whole floats", encode([.varint(1, 5), .bytes(43, push([.varint(1, 0), .bytes(2, Array(data.dropLast()))]))])),
            ("data of the wrong wire type", encode([.varint(1, 5), .bytes(43, push([.varint(1, 0), .fixed32(2, 1), .bytes(3, data)]))])),
            ("push missing its samples", encode([.varint(1, 5), .bytes(43, encode([.bytes(1, Array("job-1".utf8)), .varint(2, 9), .varint(4, 4), .bytes(5, tensor(plainTensor))]))])),
        ]
        for (name, payload) in cases {
            try assertDecodesLikeProtobufC(payload, name)
            // Every truncation of the tail (where the small fields after the tensor lie) as well.
            for cut in 1...12 { try assertDecodesLikeProtobufC(Array(payload.dropLast(cut)), "\(name), last \(cut) bytes cut") }
        }
    }

    /// Random damage to the bytes around the tensor (the scanner's territory) in encoded frames.
    func testDamagedFramesDecodeLikeProtobufC() throws {
        var random = SeededGenerator(state: 42)
        for message: Message in [
            .weights(Weights(jobId: "job-17", version: 300, tensor: TensorSlice(offset: 0, values: Self.values))),
            .pushGradient(PushGradient(jobId: "job-17", step: 300, subtree: ChunkRange(firstChunk: 0, chunkCount: 8),
                                       gradient: TensorSlice(offset: 0, values: Self.values), lossSum: 1, correct: 2, samples: 256)),
        ] {
            let payload = Array(try encodeFrame(requestId: 77, message: message).dropFirst(4))
            let dataBytes = Self.values.count * 4
            let head = payload.count - dataBytes - 40  // the bytes before the data, and those after it
            for trial in 0..<400 {
                var damaged = payload
                for _ in 0..<(1 + Int(random.next() % 3)) {
                    let inHead = random.next() % 2 == 0
                    let position = inHead ? Int(random.next() % UInt64(max(head + 8, 1)))
                                          : payload.count - 1 - Int(random.next() % 40)
                    damaged[min(max(position, 0), payload.count - 1)] = UInt8(truncatingIfNeeded: random.next())
                }
                try assertDecodesLikeProtobufC(damaged, "\(message.caseName) trial \(trial)")
            }
        }
    }

    // MARK: - Helpers

    private func tensor(of envelope: Envelope) -> FloatData? {
        switch envelope.message {
        case let .weights(w): w.tensor.data
        case let .pushGradient(p): p.gradient.data
        default: nil
        }
    }

    /// What protobuf-c alone makes of the payload, with the conversion's checks.
    private func reference(_ payload: [UInt8]) -> Result<Envelope, WireError> {
        payload.withUnsafeBytes { raw -> Result<Envelope, WireError> in
            guard let e = unpack(raw, { ps__v1__envelope__unpack(nil, $0, $1) }) else {
                return .failure(WireError(field: "Envelope", "not a valid protobuf message"))
            }
            defer { ps__v1__envelope__free_unpacked(e, nil) }
            return Result { () throws(WireError) in
                Envelope(requestId: e.pointee.request_id, message: try Message(c: e.pointee))
            }
        }
    }

    private func assertDecodesLikeProtobufC(_ payload: [UInt8], _ name: String, line: UInt = #line) throws {
        let expected = reference(payload)
        let fromArray = Result { () throws(WireError) in try Envelope(payload: payload) }
        let fromMemory = payload.withUnsafeBytes { raw in Result { () throws(WireError) in try Envelope(payload: raw) } }
        for (how, got) in [("array", fromArray), ("memory", fromMemory)] {
            switch (got, expected) {
            case let (.success(a), .success(b)):
                // Not XCTAssertEqual: it would print two megabyte messages.
                XCTAssertTrue(a == b, "\(name) (\(how)): decoded a different \(b.message.caseName) than protobuf-c", line: line)
            case let (.failure(a), .failure(b)):
                XCTAssertEqual("\(a)", "\(b)", "\(name) (\(how))", line: line)
            case let (.success(a), .failure(b)):
                XCTFail("\(name) (\(how)): decoded a \(a.message.caseName), protobuf-c failed: \(b)", line: line)
            case let (.failure(a), .success(b)):
                XCTFail("\(name) (\(how)): failed (\(a)), protobuf-c decoded a \(b.message.caseName)", line: line)
            }
        }
    }
}

/// One protobuf field for hand-written encodings.
private enum Field {
    case varint(UInt32, UInt64)
    case fixed32(UInt32, UInt32)
    case fixed64(UInt32, UInt64)
    case bytes(UInt32, [UInt8])
    /// Length-delimited with the length written in `width` bytes (5 is valid and never produced by
    /// encoders; protobuf-c refuses more).
    case paddedBytes(UInt32, [UInt8], width: Int = 5)
}

private func encode(_ fields: [Field]) -> [UInt8] {
    var out: [UInt8] = []
    func varint(_ value: UInt64) { WireScan.appendVarint(value, to: &out) }
    func key(_ number: UInt32, _ type: UInt64) { varint(UInt64(number) << 3 | type) }
    for field in fields {
        switch field {
        case let .varint(n, v): key(n, 0); varint(v)
        case let .fixed32(n, v): key(n, 5); withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
        case let .fixed64(n, v): key(n, 1); withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
        case let .bytes(n, b): key(n, 2); varint(UInt64(b.count)); out.append(contentsOf: b)
        case let .paddedBytes(n, b, width):
            key(n, 2)
            var v = UInt64(b.count)
            for _ in 0..<(width - 1) { out.append(UInt8(truncatingIfNeeded: v) | 0x80); v >>= 7 }
            out.append(UInt8(v))
            out.append(contentsOf: b)
        }
    }
    return out
}

