import Foundation
import XCTest
@testable import PSEventFile

/// Unit tests of the event-file writer: checksums and encodings against published and independently
/// produced bytes, and whole files read back by `TestRecordReader`.
final class EventFileTests: XCTestCase {
    // CRC-32C gives the catalogue's check value and the RFC 3720 (iSCSI) test vectors.
    func testCRC32CStandardVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }), 0x113F_DB5C)
    }

    // Framed records equal the bytes TensorBoard's own RecordWriter produces for the same data
    // (generated with tensorboard 2.21's `tensorboard.summary.writer.record_writer.RecordWriter`).
    func testRecordFramingMatchesTensorBoard() {
        var hello: [UInt8] = []
        TFRecord.append(Array("hello".utf8), to: &hello)
        XCTAssertEqual(hello, bytes("0500000000000000eab2043e68656c6c6fbb1f1c19"))
        var empty: [UInt8] = []
        TFRecord.append([], to: &empty)
        XCTAssertEqual(empty, bytes("000000000000000029039807d8ea82a2"))
    }

    // The hand-written protobuf equals `event_pb2.Event(...).SerializeToString()` for the file-version
    // record, for scalar events (a one-byte and a two-byte varint step, a negative value) and for the
    // session-start marker (`session_log` is field 7) at step 0 and at a later step.
    func testEventEncodingMatchesProtobuf() {
        XCTAssertEqual(Event(wallTime: 1.5, fileVersion: "brain.Event:2").encoded(),
                       bytes("09000000000000f83f1a0d627261696e2e4576656e743a32"))
        let loss = Event(wallTime: 1.5, step: 7, scalars: [("train/loss", 0.25)])
        XCTAssertEqual(loss.encoded(), bytes("09000000000000f83f10072a130a110a0a747261696e2f6c6f7373150000803e"))
        var record: [UInt8] = []
        TFRecord.append(loss.encoded(), to: &record)
        XCTAssertEqual(record, bytes("200000000000000029eda95009000000000000f83f10072a130a110a0a747261696e2f6c6f7373150000803ef4985d1a"))
        XCTAssertEqual(Event(wallTime: 1.5, step: 300, scalars: [("a", -1)]).encoded(),
                       bytes("09000000000000f83f10ac022a0a0a080a016115000080bf"))
        XCTAssertEqual(Event(wallTime: 1.5, sessionStart: true).encoded(), bytes("09000000000000f83f3a020801"))
        XCTAssertEqual(Event(wallTime: 1.5, step: 20, sessionStart: true).encoded(), bytes("09000000000000f83f10143a020801"))
    }

    // A written file reads back record by record with valid CRCs: the version first, then every scalar
    // with its tag, step, value and wall time, in order; the name is one TensorBoard picks up.
    func testWrittenFileReadsBack() throws {
        let directory = try scratchDirectory() + "/nested/tensorboard"
        let writer = try EventFileWriter(directory: directory, wallTime: 1_700_000_000.25)
        let points: [(String, Int, Float, Double)] = [
            ("train/loss", 0, 2.3, 1_700_000_001.5), ("train/samples_per_second", 0, 12_345.5, 1_700_000_001.5),
            ("train/loss", 10, 0.75, 1_700_000_002), ("validation/accuracy", 13, 0.9125, 1_700_000_003),
        ]
        for (tag, step, value, time) in points { try writer.scalar(tag: tag, step: step, value: value, wallTime: time) }
        try writer.close()
        try writer.close()

        let name = (writer.path as NSString).lastPathComponent
        XCTAssertTrue(name.hasPrefix("events.out.tfevents.1700000000."), name)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), [name])
        let events = try TestRecordReader.events(in: writer.path)
        XCTAssertEqual(events.count, 1 + points.count)
        XCTAssertEqual(events.first, Event(wallTime: 1_700_000_000.25, fileVersion: "brain.Event:2"))
        for (event, (tag, step, value, time)) in zip(events.dropFirst(), points) {
            XCTAssertEqual(event, Event(wallTime: time, step: Int64(step), scalars: [(tag, value)]))
        }
    }

    // Scalars stay in memory until `flush()`: before it the file holds only the version record, after
    // it everything, so a reader never meets a record we are half-way through writing.
    func testRecordsReachTheFileOnlyOnFlush() throws {
        let writer = try EventFileWriter(directory: try scratchDirectory())
        XCTAssertEqual(try TestRecordReader.events(in: writer.path).count, 1, "the version record is written at once")
        try writer.scalar(tag: "train/loss", step: 1, value: 1)
        try writer.scalar(tag: "train/loss", step: 2, value: 0.5)
        XCTAssertEqual(try TestRecordReader.events(in: writer.path).count, 1)
        try writer.flush()
        XCTAssertEqual(try TestRecordReader.events(in: writer.path).map(\.step), [0, 1, 2])
    }

    // Every cut into a file's last record (from 1 byte to all but one) is reported as truncation, and
    // a flipped bit as a CRC failure; neither is ever read as data.
    func testReaderDetectsTruncationAndCorruption() throws {
        let writer = try EventFileWriter(directory: try scratchDirectory())
        try writer.scalar(tag: "train/loss", step: 10, value: 0.5, wallTime: 1)
        try writer.close()
        let whole = [UInt8](try Data(contentsOf: URL(fileURLWithPath: writer.path)))
        var last: [UInt8] = []
        TFRecord.append(Event(wallTime: 1, step: 10, scalars: [("train/loss", 0.5)]).encoded(), to: &last)
        XCTAssertEqual(Array(whole.suffix(last.count)), last)
        for cut in 1..<last.count {
            XCTAssertThrowsError(try TestRecordReader.records(Array(whole.dropLast(cut))), "cut \(cut)") { error in
                XCTAssertEqual(error as? TestRecordReader.Failure, .truncated, "cut \(cut)")
            }
        }
        XCTAssertEqual(try TestRecordReader.records(Array(whole.dropLast(last.count))).count, 1, "a whole record cut is a shorter file")
        for (position, failure) in [(3, TestRecordReader.Failure.lengthCRC(offset: 0)), (9, .lengthCRC(offset: 0)),
                                    (whole.count - 1, .dataCRC(offset: whole.count - last.count))] {
            var corrupt = whole
            corrupt[position] ^= 0x10
            XCTAssertThrowsError(try TestRecordReader.records(corrupt), "bit flipped at \(position)") { error in
                XCTAssertEqual(error as? TestRecordReader.Failure, failure, "bit flipped at \(position)")
            }
        }
    }

    // Reading files back as TensorBoard does: the scalars at a step are the last value of each tag, a
    // session start at or before that step drops those read before it, a record cut short ends the file,
    // and a file that is not there is passed over.
    func testReaderGivesTheScalarsTensorBoardShowsAtAStep() throws {
        let directory = try scratchDirectory()
        let first = try EventFileWriter(directory: directory, fileSuffix: ".1", wallTime: 1)
        try first.sessionStart(step: 0)
        for (tag, step, value) in [("a", 10, 1), ("b", 10, 2), ("a", 20, 3), ("b", 10, 4)] as [(String, Int, Float)] {
            try first.scalar(tag: tag, step: step, value: value)
        }
        try first.close()
        XCTAssertEqual(EventFileReader.scalars(atStep: 10, in: [first.path]).map { "\($0.tag)=\($0.value)" }, ["a=1.0", "b=4.0"])

        let second = try EventFileWriter(directory: directory, fileSuffix: ".2", wallTime: 1)
        try second.sessionStart(step: 10)
        try second.scalar(tag: "c", step: 10, value: 5)
        try second.scalar(tag: "d", step: 10, value: 6)
        try second.close()
        let paths = [first.path, directory + "/missing", second.path]
        XCTAssertEqual(EventFileReader.scalars(atStep: 10, in: paths).map { "\($0.tag)=\($0.value)" }, ["c=5.0", "d=6.0"])
        XCTAssertEqual(EventFileReader.scalars(atStep: 20, in: paths).map(\.tag), [], "the start at 10 drops step 20")
        XCTAssertEqual(EventFileReader.scalars(atStep: 0, in: paths).map(\.tag), [], "nothing at 0 but the first start")

        let whole = [UInt8](try Data(contentsOf: URL(fileURLWithPath: second.path)))
        XCTAssertEqual(EventFileReader.events(in: whole).count, 4)
        XCTAssertEqual(EventFileReader.events(in: Array(whole.dropLast(1))).map(\.scalars.count), [0, 0, 1], "version, start, c")
        XCTAssertEqual(EventFileReader.events(in: whole), try TestRecordReader.events(in: second.path))
    }

    // Creating a file fails with an error naming the path (never a crash) where a directory cannot be
    // made, and when the file already exists.
    func testCreationErrorsAreTyped() throws {
        let scratch = try scratchDirectory()
        let blocker = scratch + "/not-a-directory"
        XCTAssertTrue(FileManager.default.createFile(atPath: blocker, contents: Data()))
        XCTAssertThrowsError(try EventFileWriter(directory: blocker + "/tensorboard")) { error in
            XCTAssertTrue("\(error)".contains(blocker), "\(error)")
        }
        let first = try EventFileWriter(directory: scratch, wallTime: 1_000)
        XCTAssertThrowsError(try EventFileWriter(directory: scratch, wallTime: 1_000)) { error in
            XCTAssertTrue("\(error)".contains(first.path), "\(error)")
        }
    }

    private func scratchDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "ps-eventfile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }
}

func bytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = hex.startIndex
    while i < hex.endIndex {
        let j = hex.index(i, offsetBy: 2)
        out.append(UInt8(hex[i..<j], radix: 16)!)
        i = j
    }
    return out
}
