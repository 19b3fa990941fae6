// Frames: a 4-byte big-endian payload length, then the envelope (Message+Wire.swift maps its body).
import PSWireC

/// One frame ready for the socket: the 4-byte big-endian length of the envelope, then the envelope.
/// The envelope is packed straight into the returned buffer, and tensors are read straight from
/// their arrays, so the values are copied once. Fails when the envelope exceeds
/// `WireLimits.frameBytesMax` (a model too large to send), which the receiver would refuse.
public func encodeFrame(requestId: UInt64, message: Message) throws(WireError) -> [UInt8] {
    var frame: [UInt8] = []
    try encodeFrame(requestId: requestId, message: message) { size, fill in
        frame = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            fill(UnsafeMutableRawBufferPointer(buffer))
            count = size
        }
    }
    return frame
}

/// Encodes one frame straight into memory the caller provides, with no intermediate array: `sink` is
/// called once with the frame's size and a `fill` function that packs the frame into a buffer of at
/// least that size. This is how the transport writes a megabyte of weights into a network buffer
/// with a single copy.
public func encodeFrame(requestId: UInt64, message: Message,
                        into sink: (_ frameBytes: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Void) -> Void) throws(WireError) {
    let arena = CArena()
    let result: Result<Void, WireError> = withExtendedLifetime(arena) {
        message.withEnvelope(arena, requestId: requestId) { envelope -> Result<Void, WireError> in
            let base = UnsafeRawPointer(envelope).assumingMemoryBound(to: ProtobufCMessage.self)
            let size = protobuf_c_message_get_packed_size(base)
            guard size <= WireLimits.frameBytesMax else {
                return .failure(WireError(.tooLarge, field: "Envelope",
                                          "\(size) bytes exceeds frameBytesMax (\(WireLimits.frameBytesMax))"))
            }
            let header = WireLimits.frameHeaderBytes
            sink(header + size) { out in
                precondition(out.count >= header + size, "frame buffer of \(out.count) bytes, need \(header + size)")
                let length = UInt32(size)
                out[0] = UInt8(truncatingIfNeeded: length >> 24)
                out[1] = UInt8(truncatingIfNeeded: length >> 16)
                out[2] = UInt8(truncatingIfNeeded: length >> 8)
                out[3] = UInt8(truncatingIfNeeded: length)
                let body = out.baseAddress!.assumingMemoryBound(to: UInt8.self) + header
                let written = size == 0 ? 0
                    : size >= streamingPackBytesMin ? packStreaming(base, into: body, capacity: size)
                    : protobuf_c_message_pack(base, body)
                precondition(written == size, "protobuf-c packed \(written) bytes, announced \(size)")
            }
            return .success(())
        }
    }
    try result.get()
}

extension Envelope {
    /// Decodes and checks one envelope (a frame's payload, without the length). Errors name the
    /// message and field (`PushGradient.gradient.data`); an unknown body is an error, not ignored.
    /// An array or array slice is read in place, and a tensor in it stays there (the decoded message
    /// keeps the array's storage alive); any other collection is copied once first.
    public init(payload: some Collection<UInt8>) throws(WireError) {
        if let slice = payload as? ArraySlice<UInt8> {
            try self.init(slice: slice)
        } else if let array = payload as? [UInt8] {
            try self.init(slice: array[...])
        } else {
            try self.init(slice: Array(payload)[...])
        }
    }

    private init(slice: ArraySlice<UInt8>) throws(WireError) {
        let owner = ReceivedBytes(slice)
        try self.init(payload: owner.bytes, owner: owner)
    }

    /// Decodes and checks one envelope straight from memory the caller owns (a network buffer's
    /// readable bytes); the bytes need to stay valid only during the call, so a tensor in them is
    /// copied once into the message.
    public init(payload: UnsafeRawBufferPointer) throws(WireError) {
        try Self.checkPayloadSize(payload.count)
        guard let cut = TensorCut(payload) else {
            try self.init(unpacked: unpack(payload, { ps__v1__envelope__unpack(nil, $0, $1) }), tensorView: nil)
            return
        }
        let view = ReceivedBytes(copying: UnsafeRawBufferPointer(rebasing: payload[cut.data]))
        try self.init(unpacked: cut.stripped.withUnsafeBytes { unpack($0, { ps__v1__envelope__unpack(nil, $0, $1) }) },
                      tensorView: view)
    }

    /// Decodes and checks one envelope from memory that `owner` keeps alive and unchanged (a network
    /// buffer's storage). A weights or gradient tensor is not copied: the message reads it where it lies
    /// and holds `owner` until the message is gone.
    public init(payload: UnsafeRawBufferPointer, owner: AnyObject) throws(WireError) {
        try Self.checkPayloadSize(payload.count)
        guard let cut = TensorCut(payload) else {
            try self.init(unpacked: unpack(payload, { ps__v1__envelope__unpack(nil, $0, $1) }), tensorView: nil)
            return
        }
        let view = ReceivedBytes(UnsafeRawBufferPointer(rebasing: payload[cut.data]), owner: owner)
        try self.init(unpacked: cut.stripped.withUnsafeBytes { unpack($0, { ps__v1__envelope__unpack(nil, $0, $1) }) },
                      tensorView: view)
    }

    private static func checkPayloadSize(_ count: Int) throws(WireError) {
        guard count <= WireLimits.frameBytesMax else {
            throw WireError(.tooLarge, field: "Envelope",
                            "\(count) bytes exceeds frameBytesMax (\(WireLimits.frameBytesMax))")
        }
    }

    /// Takes ownership of what protobuf-c unpacked (nil: it rejected the bytes) and frees it.
    private init(unpacked envelope: UnsafeMutablePointer<Ps__V1__Envelope>?, tensorView: ReceivedBytes?) throws(WireError) {
        guard let envelope else { throw WireError(field: "Envelope", "not a valid protobuf message") }
        defer { ps__v1__envelope__free_unpacked(envelope, nil) }
        self.init(requestId: envelope.pointee.request_id, message: try Message(c: envelope.pointee, tensorView: tensorView))
    }
}
