import XCTest
import PSWireC
@testable import PSWire

final class FrameTests: XCTestCase {
    static let messages: [Message] = [
        .hello(Hello(role: .worker, name: "worker-1@host", nonce: [0, 1, 2, 255],
                     computeSignature: "openblas-0.3.21/Cooperlake/avx2/glibc-2.36/threads-1")),
        .helloOk(HelloOk(serverName: "ps-server-0")),
        .error(ErrorReply(code: .invalidSpec, message: "0 is out of range", field: "model.layers[1].units")),
        .ack,
        .registerWorker(RegisterWorker(name: "w", threads: 2)),
        .registered(Registered(workerId: 7, heartbeatIntervalMilliseconds: 500, heartbeatTimeoutMilliseconds: 3000)),
        .heartbeat(Heartbeat(workerId: 7, stepsDone: 12, samplesPerSecond: 1024.5)),
        .submitJob(Fixtures.spec()),
        .submitted(jobId: "job-1"),
        .cancelJob(jobId: "job-1"),
        .fetchModel(jobId: "job-1"),
        .modelData(Fixtures.model()),
        .pullWeights(PullWeights(jobId: "job-1", version: 3, range: KeyRange(offset: 100, count: 50))),
        .weights(Weights(jobId: "job-1", version: 3, tensor: TensorSlice(offset: 100, values: [1, -0.0, 3.5]))),
        .pushGradient(PushGradient(jobId: "job-1", step: 3, subtree: ChunkRange(firstChunk: 4, chunkCount: 4),
                                   gradient: TensorSlice(offset: 0, values: [0.25, -Float.leastNormalMagnitude / 8, 7]),
                                   lossSum: 12.5, correct: 30, samples: 32)),
        .pushAck(PushAck(jobId: "job-1", step: 3, subtree: ChunkRange(firstChunk: 4, chunkCount: 4), duplicate: true, offset: 200_960)),
        // Jobs, status and the worker's work (StatusAndWorkWireTests covers their variants and errors).
        .startJob(StartJob(jobId: "job-1", spec: Fixtures.spec(variant: 1))),
        .assignment(Fixtures.assignment()),
        .evalResult(EvalResult(jobId: "job-1", kind: .validate, epoch: 3, subtree: ChunkRange(firstChunk: 2, chunkCount: 2),
                               lossSum: 40.5, correct: 60, samples: 64, squaredErrorSum: 0.75)),
        .statusRequest(jobId: ""),
        .statusRequest(jobId: "job-1"),
        .statusReply(Fixtures.statusReply(workers: 5, jobs: 3)),
        .listJobs,
        .jobList([Fixtures.job(0), Fixtures.job(1)]),
        .waitJob(jobId: "job-1"),
        .jobResult(JobResult(jobId: "job-1", state: .stoppedEarly, summary: Fixtures.summaryAll,
                             weightsSHA256: Fixtures.digest, message: "val_loss did not improve for 3 epochs")),
        .jobResult(JobResult(jobId: "job-2", state: .failed, message: "worker lost")),
        .authChallenge(AuthChallenge(serverNonce: Array(repeating: 7, count: 32), serverProof: [1, 2, 3])),
        .authResponse(clientProof: Array(repeating: 9, count: 32)),
    ]

    func testEveryMessageRoundTripsThroughAFrame() throws {
        // Proves each Message case, and its request id, survive encodeFrame → the transport's frame decoder.
        for (i, message) in Self.messages.enumerated() {
            var decoder = FrameReader()
            decoder.append(try encodeFrame(requestId: UInt64(i) + 1, message: message))
            XCTAssertEqual(try decoder.next(), Envelope(requestId: UInt64(i) + 1, message: message))
            XCTAssertNil(try decoder.next())
            XCTAssertEqual(decoder.bufferedBytes, 0)
        }
    }

    func testFrameStartsWithBigEndianPayloadLength() throws {
        // Proves the 4-byte prefix is the big-endian length of what follows.
        let frame = try encodeFrame(requestId: 1, message: .submitted(jobId: String(repeating: "j", count: 300)))
        let length = frame.prefix(4).reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual(length, frame.count - 4)
        XCTAssertGreaterThan(length, 255)
    }

    func testTwoFramesSplitAtEveryByteBoundaryDecode() throws {
        // Proves the decoder yields both frames whichever byte the stream is cut at.
        let first = Message.pushGradient(PushGradient(
            jobId: "j", step: 1, subtree: ChunkRange(firstChunk: 0, chunkCount: 2),
            gradient: TensorSlice(offset: 8, values: [1, 2, 3, 4]), lossSum: 1, correct: 1, samples: 2))
        let second = Message.hello(Hello(role: .client, name: "psctl"))
        let stream = try encodeFrame(requestId: 1, message: first) + encodeFrame(requestId: 2, message: second)
        for cut in 0...stream.count {
            var decoder = FrameReader()
            var received: [Envelope] = []
            decoder.append(stream[..<cut])
            while let envelope = try decoder.next() { received.append(envelope) }
            decoder.append(stream[cut...])
            while let envelope = try decoder.next() { received.append(envelope) }
            XCTAssertEqual(received, [Envelope(requestId: 1, message: first), Envelope(requestId: 2, message: second)],
                           "cut at \(cut)")
        }
    }

    func testByteByByteDelivery() throws {
        // Proves frames fed one byte at a time decode, and nothing is yielded early.
        let stream = try Self.messages.prefix(5).enumerated().flatMap { i, m in try encodeFrame(requestId: UInt64(i), message: m) }
        var decoder = FrameReader()
        var received = 0
        for byte in stream {
            decoder.append(CollectionOfOne(byte))
            while try decoder.next() != nil { received += 1 }
        }
        XCTAssertEqual(received, 5)
    }

    func testLengthOfExactlyFrameBytesMaxIsAcceptedAndOneMoreIsRejected() throws {
        // Proves the limit is inclusive: a prefix of frameBytesMax waits for the payload, frameBytesMax+1 fails.
        var atLimit = FrameReader()
        atLimit.append(bigEndian(WireLimits.frameBytesMax))
        XCTAssertNil(try atLimit.next())
        var overLimit = FrameReader()
        overLimit.append(bigEndian(WireLimits.frameBytesMax + 1))
        let error = assertWireError(try overLimit.next(), names: "frameBytesMax")
        XCTAssertEqual(error?.kind, .tooLarge)
    }

    func testFrameOfExactlyFrameBytesMaxRoundTripsAndOneByteMoreIsNotEncoded() throws {
        // Proves a real frame of exactly frameBytesMax payload bytes encodes and decodes, and one byte more is refused.
        let values = [Float](repeating: 0.5, count: WireLimits.frameBytesMax / 4 - 16)
        var jobId = "j"
        var frame = try encodeFrame(requestId: 1, message: .weights(Weights(jobId: jobId, version: 1,
                                                                           tensor: TensorSlice(offset: 0, values: values))))
        jobId += String(repeating: "j", count: WireLimits.frameBytesMax - (frame.count - 4))
        let weights = Weights(jobId: jobId, version: 1, tensor: TensorSlice(offset: 0, values: values))
        frame = try encodeFrame(requestId: 1, message: .weights(weights))
        XCTAssertEqual(frame.count - 4, WireLimits.frameBytesMax)
        var decoder = FrameReader()
        decoder.append(frame)
        XCTAssertEqual(try decoder.next()?.message, .weights(weights))
        var tooBig = weights
        tooBig.jobId += "j"
        let error = assertWireError(try encodeFrame(requestId: 1, message: .weights(tooBig)), names: "Envelope")
        XCTAssertEqual(error?.kind, .tooLarge)
    }

    func testLargestMessagesAtTheLimitsFitInOneFrame() throws {
        // Proves the messages that carry a whole parameter vector still fit in one frame when every
        // limit that sizes them is at its maximum: Limits.parametersMax agrees with the frame limit.
        let values = [Float](repeating: 0.25, count: Limits.parametersMax)
        let features = [Float](repeating: 1, count: Limits.inputsMax)
        var model = Fixtures.model(preprocessing: .standardize(mean: features, std: features))
        model.parameters = values
        let whole = TensorSlice(offset: 0, values: values)
        let messages: [Message] = [
            .modelData(model),
            .weights(Weights(jobId: "job-\(Int.max)", version: .max, tensor: whole)),
            .pushGradient(PushGradient(jobId: "job-\(Int.max)", step: .max, subtree: ChunkRange(firstChunk: 0, chunkCount: Limits.chunksMax),
                                       gradient: whole, lossSum: .greatestFiniteMagnitude, correct: .max, samples: .max)),
        ]
        for message in messages {
            let frame = try encodeFrame(requestId: .max, message: message)
            XCTAssertLessThanOrEqual(frame.count - 4, WireLimits.frameBytesMax, message.caseName)
            XCTAssertGreaterThan(frame.count, values.count * 4, message.caseName)
        }
    }

    func testOversizedPrefixIsRejectedBeforeThePayloadArrives() {
        // Proves a hostile 4 GiB length fails at once from the 4 header bytes, and keeps failing: the
        // refused prefix is never consumed as if it were a frame, whatever arrives after it.
        var decoder = FrameReader()
        decoder.append([0xFF, 0xFF, 0xFF, 0xFF])
        let error = assertWireError(try decoder.next(), names: "frame")
        XCTAssertEqual(error?.kind, .tooLarge)
        XCTAssertEqual(decoder.bufferedBytes, 4)
        decoder.append([0, 0, 0, 0])
        assertWireError(try decoder.next(), names: "frame")
    }

    func testTruncatedFrameWaitsForTheRest() throws {
        // Proves a frame missing its last byte yields nothing until that byte arrives.
        let frame = try encodeFrame(requestId: 9, message: .ack)
        var decoder = FrameReader()
        decoder.append(frame.dropLast())
        XCTAssertNil(try decoder.next())
        XCTAssertNil(try decoder.next())
        decoder.append(frame.suffix(1))
        XCTAssertEqual(try decoder.next(), Envelope(requestId: 9, message: .ack))
    }

    func testGarbagePayloadIsADecodeError() {
        // Proves a well-sized frame of garbage is a malformed WireError about the envelope.
        var decoder = FrameReader()
        decoder.append([0, 0, 0, 6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        let error = assertWireError(try decoder.next(), names: "Envelope")
        XCTAssertEqual(error?.kind, .malformed)
    }

    func testEmptyEnvelopeIsAnUnknownBody() {
        // Proves a frame with no body (or a body from a newer schema) is rejected as an unknown body.
        var decoder = FrameReader()
        decoder.append([0, 0, 0, 0])
        let error = assertWireError(try decoder.next(), names: "Envelope")
        XCTAssertEqual(error?.description, "Envelope: unknown body")
        // Field 63, varint 1: a body this build has never heard of.
        XCTAssertEqual(assertWireError(try Envelope(payload: [0xF8, 0x03, 0x01]), names: "Envelope")?.message,
                       "unknown body")
    }

    func testTensorWithPartialFloatIsRejected() throws {
        // Proves a tensor whose byte count is not a multiple of 4 is rejected naming the tensor's data field.
        let bytes = edited(try payload(Self.messages[14]), unpack: ps__v1__envelope__unpack,
                           free: ps__v1__envelope__free_unpacked) {
            $0.pointee.push_gradient.pointee.gradient.pointee.data.len = 10
        }
        let error = assertWireError(try Envelope(payload: bytes), names: "PushGradient.gradient.data")
        XCTAssertEqual(error?.message, "10 bytes is not a whole number of float32 values")
    }

    func testBadEnumsAndMissingFieldsInMessagesAreRejected() throws {
        // Proves an unknown role, an unknown error code, a missing tensor and an empty job id name their fields.
        let role = edited(try payload(Self.messages[0]), unpack: ps__v1__envelope__unpack,
                          free: ps__v1__envelope__free_unpacked) { $0.pointee.hello.pointee.role = Ps__V1__Role(rawValue: 9) }
        assertWireError(try Envelope(payload: role), names: "Hello.role: 9")
        let code = edited(try payload(Self.messages[2]), unpack: ps__v1__envelope__unpack,
                          free: ps__v1__envelope__free_unpacked) { $0.pointee.error.pointee.code = Ps__V1__ErrorCode(rawValue: 77) }
        assertWireError(try Envelope(payload: code), names: "Error.code: 77")
        let tensor = edited(try payload(Self.messages[13]), unpack: ps__v1__envelope__unpack,
                            free: ps__v1__envelope__free_unpacked) { $0.pointee.weights.pointee.weights = nil }
        assertWireError(try Envelope(payload: tensor), names: "Weights.weights: missing")
        let job = edited(try payload(Self.messages[12]), unpack: ps__v1__envelope__unpack,
                         free: ps__v1__envelope__free_unpacked) { $0.pointee.pull_weights.pointee.job_id = strdup("") }
        assertWireError(try Envelope(payload: job), names: "PullWeights.job_id: missing")
    }

    private func bigEndian(_ length: Int) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: length >> (24 - 8 * $0)) }
    }
}
