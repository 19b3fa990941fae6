import XCTest
import PSCore
@testable import PSWire

/// The checkpoint file format: every field survives, and a truncated, damaged or foreign file is an error
/// (never a checkpoint with some fields read).
final class CheckpointWireTests: XCTestCase {
    static func sample(slots: Int = 2, best: Bool = true) -> Checkpoint {
        let n = 300
        let report = EpochReport(epoch: 1, trainLoss: 0.5, trainAccuracy: 0.8, validationLoss: 0.4, validationAccuracy: nil,
                                 samplesPerSecond: 1234.5, seconds: 2.25, improved: true, bestEpoch: 1, stopEarly: false)
        var c = Checkpoint(
            jobId: "job-7", specSHA256: Array(repeating: 7, count: 32), version: 40, phase: .test, epoch: 1, stepInEpoch: 20,
            epochLossSum: 12.75, epochCorrect: 90, epochSamples: 100, trainingSeconds: 4.5, trainedSamples: 2000,
            epochSeconds: 2.25, history: [report, report], stopper: .init(best: 0.4, bestEpoch: 1, wait: 1),
            tracker: .init(best: nil, bestEpoch: 0, wait: 0), hasBest: best, bestVersion: 20,
            bestParameters: best ? (0..<n).map { Float($0) * 0.5 } : [], keptEpoch: 1, keptVersion: 20,
            signature: "openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-1", signaturesUsed: ["a", "b"],
            parameters: (0..<n).map { Float($0) / 7 }, optimizerSteps: 40,
            optimizerSlots: (0..<slots).map { k in (0..<n).map { Float($0 + k) * 1e-3 } })
        c.epochElapsedSeconds = 1.5
        return c
    }

    func testRoundTrip() throws {
        for c in [Self.sample(), Self.sample(slots: 0, best: false)] {
            XCTAssertEqual(try Checkpoint(fileBytes: c.fileBytes()), c)
        }
        // Delayed mode's earlier versions survive too, in order.
        var delayed = Self.sample()
        delayed.olderVersions = [WeightsVersion(version: 38, parameters: (0..<300).map { Float($0) * 0.25 }),
                                 WeightsVersion(version: 39, parameters: (0..<300).map { -Float($0) })]
        XCTAssertEqual(try Checkpoint(fileBytes: delayed.fileBytes()).olderVersions, delayed.olderVersions)
        var nanLoss = Self.sample()
        nanLoss.epochLossSum = .nan
        XCTAssertTrue(try Checkpoint(fileBytes: nanLoss.fileBytes()).epochLossSum.isNaN)
    }

    func testTruncatedFilesAreRefused() {
        let bytes = Self.sample().fileBytes()
        for length in Set([0, 1, 2, 10, 40, bytes.count / 3, bytes.count / 2, bytes.count - 40, bytes.count - 1]) {
            XCTAssertThrowsError(try Checkpoint(fileBytes: Array(bytes.prefix(length))), "\(length) of \(bytes.count) bytes")
        }
    }

    func testEveryFlippedByteIsRefused() {
        // A flipped bit anywhere: the protobuf framing, the format, the body or the checksum.
        let bytes = Self.sample().fileBytes()
        var accepted: [Int] = []
        for i in stride(from: 0, to: bytes.count, by: max(bytes.count / 400, 1)) {
            var damaged = bytes
            damaged[i] ^= 0x10
            if (try? Checkpoint(fileBytes: damaged)) != nil { accepted.append(i) }
        }
        XCTAssertEqual(accepted, [], "damaged files accepted")
        var damaged = bytes
        damaged[bytes.count / 2] ^= 1
        XCTAssertThrowsError(try Checkpoint(fileBytes: damaged)) { error in
            XCTAssertTrue("\(error)".contains("checksum"), "\(error)")
        }
    }

    func testOtherFilesAreRefusedNamingWhy() {
        let model = Array("not a checkpoint at all".utf8)
        XCTAssertThrowsError(try Checkpoint(fileBytes: model)) { XCTAssertTrue("\($0)".contains("CheckpointFile"), "\($0)") }
        XCTAssertThrowsError(try Checkpoint(fileBytes: [])) { XCTAssertTrue("\($0)".contains("format"), "\($0)") }
    }
}
