import NIOCore
@testable import PSTransport
import PSWire
import XCTest

/// The frame decoder, fed the way `ByteToMessageHandler` feeds it: bytes appended to one buffer as
/// they arrive, then `nextEnvelope` until it returns nil.
final class FramingTests: XCTestCase {
    private let hello = Envelope(requestId: 7, message: .hello(Hello(role: .worker, name: "worker-1")))
    private let weights = Envelope(requestId: 8, message: .weights(Weights(
        jobId: "job-1", version: 3, tensor: TensorSlice(offset: 10, values: (0..<300).map { Float($0) / 7 }))))

    private func bytes(_ envelope: Envelope) -> [UInt8] { frame(envelope.message, requestId: envelope.requestId) }

    /// Feeds `chunks` in order and returns every envelope decoded.
    private func decode(_ chunks: [ArraySlice<UInt8>], into buffer: inout ByteBuffer) throws -> [Envelope] {
        var envelopes: [Envelope] = []
        for chunk in chunks {
            buffer.writeBytes(chunk)
            while let envelope = try EnvelopeDecoder.nextEnvelope(from: &buffer) { envelopes.append(envelope) }
        }
        return envelopes
    }

    // Proves a frame cut in two at every possible point still decodes to the one envelope.
    func testFrameSplitAtEveryBoundaryDecodesOnce() throws {
        let whole = bytes(weights)
        for cut in 0...whole.count {
            var buffer = ByteBuffer()
            let envelopes = try decode([whole[..<cut], whole[cut...]], into: &buffer)
            XCTAssertEqual(envelopes, [weights], "cut at \(cut)")
            XCTAssertEqual(buffer.readableBytes, 0)
        }
    }

    // Proves two frames arriving byte by byte, and two frames arriving in one read, come out in order.
    func testByteByByteAndTwoFramesInOneRead() throws {
        let both = bytes(hello) + bytes(weights)
        var buffer = ByteBuffer()
        XCTAssertEqual(try decode(both.indices.map { both[$0...$0] }, into: &buffer), [hello, weights])
        buffer = ByteBuffer()
        XCTAssertEqual(try decode([both[...]], into: &buffer), [hello, weights])
    }

    // Proves a truncated frame waits without consuming anything, and completes when its last byte comes.
    func testTruncatedFrameWaits() throws {
        let whole = bytes(hello)
        var buffer = ByteBuffer()
        XCTAssertEqual(try decode([whole.dropLast()], into: &buffer), [])
        XCTAssertEqual(buffer.readableBytes, whole.count - 1, "nothing consumed while waiting")
        XCTAssertEqual(try decode([whole.suffix(1)], into: &buffer), [hello])
    }

    // Proves a length prefix of frameBytesMax + 1 is refused from its 4 bytes alone, with no room made for the body.
    func testOversizedLengthRejectedBeforeBody() {
        var buffer = ByteBuffer()
        buffer.writeBytes(lengthPrefix(WireLimits.frameBytesMax + 1))
        XCTAssertThrowsError(try EnvelopeDecoder.nextEnvelope(from: &buffer)) { error in
            XCTAssertEqual((error as? WireError)?.kind, .tooLarge)
        }
        XCTAssertLessThan(buffer.capacity, 1 << 16, "no room reserved for the refused body")
    }

    // Proves the largest allowed length is accepted and simply waits for its body.
    func testMaximumLengthWaits() throws {
        var buffer = ByteBuffer()
        buffer.writeBytes(lengthPrefix(WireLimits.frameBytesMax))
        XCTAssertNil(try EnvelopeDecoder.nextEnvelope(from: &buffer))
    }

    // Proves a length prefix makes no room for its body: a peer that sends the largest length and a few
    // bytes costs a few bytes of buffer, not a 64 MiB frame (it did reserve the whole frame).
    func testLengthPrefixReservesNothing() throws {
        var buffer = ByteBuffer()
        buffer.writeBytes(lengthPrefix(WireLimits.frameBytesMax) + [1, 2, 3])
        XCTAssertNil(try EnvelopeDecoder.nextEnvelope(from: &buffer))
        XCTAssertLessThan(buffer.capacity, 1 << 16, "room made for a body that has not arrived")
    }

    // Proves the smaller limit a server applies before a connection's hello refuses a frame from its
    // length prefix, saying why, while the same length passes the ordinary limit.
    func testLimitBeforeHello() throws {
        var buffer = ByteBuffer()
        buffer.writeBytes(lengthPrefix(TransportLimits.helloFrameBytesMax + 1))
        XCTAssertThrowsError(try EnvelopeDecoder.nextEnvelope(from: &buffer, frameBytesMax: TransportLimits.helloFrameBytesMax)) {
            XCTAssertEqual(($0 as? WireError)?.kind, .tooLarge)
            XCTAssertEqual(($0 as? WireError)?.message,
                           "length 65537 exceeds the 65536 bytes a connection may send before its hello")
        }
        XCTAssertNil(try EnvelopeDecoder.nextEnvelope(from: &buffer))
    }

    // Proves a well-framed payload that is not an envelope is refused as malformed, not skipped.
    func testGarbagePayloadRejected() {
        var buffer = ByteBuffer()
        buffer.writeBytes(lengthPrefix(5) + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertThrowsError(try EnvelopeDecoder.nextEnvelope(from: &buffer)) { error in
            XCTAssertEqual((error as? WireError)?.kind, .malformed)
        }
    }

    // Proves refusals map to the error codes the peer is told: tooLarge for size, badRequest otherwise.
    func testRefusalCodes() {
        XCTAssertEqual(ErrorReply(refusing: WireError(.tooLarge, field: "frame", "big")).code, .tooLarge)
        XCTAssertEqual(ErrorReply(refusing: WireError(field: "Envelope", "bad")).code, .badRequest)
    }
}

/// The transport's other pure pieces: address parsing and the reconnect schedule.
final class AddressAndBackoffTests: XCTestCase {
    // Proves HOST:PORT parsing accepts IPv4, names and bracketed IPv6, and names the text it refuses.
    func testParseAddress() throws {
        XCTAssertTrue(try parseAddress("127.0.0.1:7070") == ("127.0.0.1", 7070))
        XCTAssertTrue(try parseAddress("ps-0.local:0") == ("ps-0.local", 0))
        XCTAssertTrue(try parseAddress("[::1]:80") == ("::1", 80))
        for bad in ["abc", ":80", "host:", "host:65536", "host:-1", "host:x"] {
            XCTAssertThrowsError(try parseAddress(bad)) { error in
                XCTAssertEqual("\(error)", "'\(bad)' is not HOST:PORT")
            }
        }
    }

    // Proves the backoff doubles from 100 ms, caps at 5 s, and jitters by at most ±20%.
    func testBackoff() {
        let backoff = Backoff()
        let delays = (0..<8).map { backoff.delaySeconds(failures: $0, unitRandom: 0.5) }
        for (delay, expected) in zip(delays, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5]) {
            XCTAssertEqual(delay, expected, accuracy: 1e-9)
        }
        XCTAssertEqual(backoff.delaySeconds(failures: 0, unitRandom: 0), 0.08, accuracy: 1e-9)
        XCTAssertEqual(backoff.delaySeconds(failures: 0, unitRandom: 1), 0.12, accuracy: 1e-9)
        XCTAssertEqual(backoff.delaySeconds(failures: 1000, unitRandom: 1), 6, accuracy: 1e-9)
    }
}
