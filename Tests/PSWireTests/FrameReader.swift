import NIOCore
@testable import PSTransport
import PSWire

/// The product's one frame decoder (`EnvelopeDecoder.nextEnvelope`) fed the way its channel handler
/// feeds it, for the wire tests that check what comes out of a frame: bytes are appended to one
/// buffer as they arrive, then `next()` until it returns nil.
struct FrameReader {
    private var buffer = ByteBuffer()

    /// Bytes received but not yet returned as envelopes.
    var bufferedBytes: Int { buffer.readableBytes }

    mutating func append(_ bytes: some Sequence<UInt8>) { buffer.writeBytes(Array(bytes)) }

    /// The next whole frame decoded, or nil until more bytes arrive.
    mutating func next() throws(WireError) -> Envelope? { try EnvelopeDecoder.nextEnvelope(from: &buffer) }
}
