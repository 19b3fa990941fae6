import PSTestSupport
import XCTest
@testable import PSWire

final class MalformedInputTests: XCTestCase {
    func testRandomBytesNeverCrashAnyDecoder() {
        // Proves arbitrary bytes only ever decode or throw WireError, for envelopes (from arrays and raw
        // buffers), specs and model files.
        var random = SeededGenerator(state: 0x5EED)
        for _ in 0..<20_000 {
            let bytes = (0..<Int.random(in: 0...96, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            _ = try? Envelope(payload: bytes)
            _ = bytes.withUnsafeBytes { try? Envelope(payload: $0) }
            _ = try? JobSpec(wireBytes: bytes)
            _ = try? TrainedModel(serialized: bytes)
        }
    }

    func testMutatedValidFramesNeverCrash() throws {
        // Proves valid frames of every message (status, assignments and results included) with random bytes
        // flipped or cut never crash the decoders, and whatever still decodes encodes again.
        var random = SeededGenerator(state: 42)
        let payloads = try (FrameTests.messages + [.statusReply(Fixtures.statusReply(workers: 40, jobs: 12))]).map { try payload($0) }
        let models = [Fixtures.model().serialized()]
        let specs = [Fixtures.spec().wireBytes(), Fixtures.spec(variant: 1).wireBytes()]
        for iteration in 0..<20_000 {
            let sources = payloads + models + specs
            var bytes = sources[iteration % sources.count]
            for _ in 0..<Int.random(in: 1...4, using: &random) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            if Bool.random(using: &random) { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random))) }
            // Whatever decodes is valid, so it encodes again (no encoder precondition fires on it).
            if let envelope = try? Envelope(payload: bytes) {
                XCTAssertNoThrow(try encodeFrame(requestId: envelope.requestId, message: envelope.message))
            }
            _ = bytes.withUnsafeBytes { try? Envelope(payload: $0) }
            _ = try? JobSpec(wireBytes: bytes)
            _ = try? TrainedModel(serialized: bytes)
        }
    }

    func testRandomStreamsThroughTheFrameDecoderOnlyThrowWireErrors() {
        // Proves a random byte stream fed in random pieces ends in frames, waiting, or a WireError.
        var random = SeededGenerator(state: 7)
        for _ in 0..<2_000 {
            var decoder = FrameReader()
            // Small lengths so that many streams reach the payload decoder instead of the size check.
            var stream: [UInt8] = [0, 0, 0, UInt8.random(in: 0...40, using: &random)]
            stream += (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            var position = 0
            do {
                while position < stream.count {
                    let end = min(stream.count, position + Int.random(in: 1...8, using: &random))
                    decoder.append(stream[position..<end])
                    position = end
                    while try decoder.next() != nil {}
                }
            } catch {
                // Typed throws: the only error a decoder can produce is a WireError.
                XCTAssertFalse(error.description.isEmpty)
            }
        }
    }
}
