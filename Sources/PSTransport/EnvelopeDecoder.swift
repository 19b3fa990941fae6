import NIOCore
import PSWire

/// The first inbound handler of a client's connection: cuts the byte stream into frames (a 4-byte
/// big-endian length, then an envelope) and decodes each into an `Envelope`. A server's connections use
/// `FrameReader`, which frames the same way and adds the limits a server needs against its peers.
///
/// A length above `WireLimits.frameBytesMax` is refused as soon as its 4 bytes are in; no room is made
/// for a body before its bytes arrive; an envelope that does not decode is refused too. Either way the error
/// (a `WireError`) goes down the pipeline and the handler stops decoding: the stream position is lost,
/// so the connection must be closed.
struct EnvelopeDecoder: ByteToMessageDecoder {
    typealias InboundOut = Envelope

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let envelope = try Self.nextEnvelope(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(envelope))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer,
                             seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // What is left is part of a frame whose sender went away; there is nothing to answer.
        return .needMoreData
    }

    /// The next whole frame in `buffer`, decoded and consumed, or nil (nothing consumed) until more
    /// bytes arrive. A length over `frameBytesMax` (the server passes a smaller one before a connection's
    /// hello) is refused from its 4 bytes. No room is made for the rest of a frame before its bytes
    /// arrive: the buffer grows with what arrived (ByteBuffer doubles), so a peer that sends a length
    /// and stops costs nothing. Pure, so the framing can be tested without a channel.
    static func nextEnvelope(from buffer: inout ByteBuffer,
                             frameBytesMax: Int = WireLimits.frameBytesMax) throws(WireError) -> Envelope? {
        let header = WireLimits.frameHeaderBytes
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard Int(length) <= frameBytesMax else {
            if isTLSRecord(buffer) {
                throw WireError(.malformed, field: "frame",
                                "a TLS record, not a frame: the peer uses TLS and this end does not (see --tls-cert, --tls-ca)")
            }
            if frameBytesMax < WireLimits.frameBytesMax && Int(length) <= WireLimits.frameBytesMax {
                throw WireError(.tooLarge, field: "frame",
                                "length \(length) exceeds the \(frameBytesMax) bytes a connection may send before its hello")
            }
            throw WireError(.tooLarge, field: "frame",
                            "length \(length) exceeds frameBytesMax (\(WireLimits.frameBytesMax))")
        }
        let frameBytes = header + Int(length)
        guard buffer.readableBytes >= frameBytes else { return nil }
        // Decoded in place: protobuf-c reads the small fields straight from the receive buffer, and a
        // weights or gradient tensor stays there, the message holding the buffer's storage alive.
        // ByteBuffer is copy-on-write, so the decoder's later reads into this buffer go to a new
        // storage while the message holds the old one: the tensor's bytes never change under it.
        let envelope = try buffer.withUnsafeReadableBytesWithStorageManagement { raw, storage throws(WireError) in
            try Envelope(payload: UnsafeRawBufferPointer(rebasing: raw[header..<frameBytes]),
                         owner: storage.takeUnretainedValue())
        }
        buffer.moveReaderIndex(forwardBy: frameBytes)
        return envelope
    }
}

/// The payload length of the frame `buffer` starts with, once its 4-byte prefix is in.
func frameLength(_ buffer: ByteBuffer) -> Int? {
    buffer.getInteger(at: buffer.readerIndex, as: UInt32.self).map(Int.init)
}

/// Whether `buffer` starts like a TLS record (a content type 20-23, then version 3.x): a TLS peer's
/// hello or alert. Read as a frame length that is over 335 MB, far past `frameBytesMax`, so no real frame
/// is mistaken for one.
private func isTLSRecord(_ buffer: ByteBuffer) -> Bool {
    guard let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
          let major = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) else { return false }
    return (20...23).contains(type) && major == 3
}

extension ErrorReply {
    /// The answer to a frame the decoder refused.
    init(refusing error: WireError) {
        self.init(code: error.kind == .tooLarge ? .tooLarge : .badRequest, message: error.message,
                  field: error.field)
    }
}

/// One envelope framed into a buffer ready to write, or the encoding error.
/// protobuf-c packs straight into the buffer's memory: one copy of a tensor, not two.
func frameBuffer(_ envelope: Envelope, allocator: ByteBufferAllocator) throws(WireError) -> ByteBuffer {
    var buffer = allocator.buffer(capacity: 0)
    try encodeFrame(requestId: envelope.requestId, message: envelope.message) { size, fill in
        buffer.reserveCapacity(size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            fill(UnsafeMutableRawBufferPointer(rebasing: raw[0..<size]))
            return size
        }
    }
    return buffer
}

