import Foundation
import PSCore
import PSData
import XCTest

/// A worker's data roots: paths are resolved before they are judged, only regular files are data, and a
/// refusal names the field and the path, never anything inside the file.
final class DataRootsTests: XCTestCase {
    var base = ""

    override func setUpWithError() throws {
        base = NSTemporaryDirectory() + "ps-roots-\(UUID().uuidString)"
        for folder in ["/data", "/elsewhere"] {
            try FileManager.default.createDirectory(atPath: base + folder, withIntermediateDirectories: true)
        }
        try "secret contents".write(toFile: base + "/elsewhere/secret.csv", atomically: true, encoding: .utf8)
        try "1,2\n".write(toFile: base + "/data/train.csv", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: base + "/data/link.csv", withDestinationPath: base + "/elsewhere/secret.csv")
        XCTAssertEqual(mkfifo(base + "/data/fifo.csv", 0o600), 0)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: base)
    }

    func spec(_ path: String) -> JobSpec {
        JobSpec(name: "r", seed: 1, data: DataSpec(format: .csv, train: .csv(path: path)),
                model: ModelSpec(inputs: 1, layers: [LayerSpec(units: 2, activation: .softmax)]), loss: .softmaxCrossEntropy,
                optimizer: OptimizerSpec(kind: .sgd, learningRate: 0.1), training: TrainingSpec(batchSize: 1, chunks: 1, epochs: 1),
                earlyStopping: nil)
    }

    func testInsideOutsideSymlinksAndSpecialFiles() throws {
        let roots = try DataRoots([base + "/data"])
        XCTAssertNil(roots.refusal(spec(base + "/data/train.csv")))
        XCTAssertNil(roots.refusal(spec(base + "/data/../data/train.csv")))
        let outside = try XCTUnwrap(roots.refusal(spec(base + "/elsewhere/secret.csv")))
        XCTAssertTrue(outside.hasPrefix("data.train.path: ") && outside.contains("outside this worker's data roots"), outside)
        let link = try XCTUnwrap(roots.refusal(spec(base + "/data/link.csv")), "a symlink out of the root is outside")
        XCTAssertTrue(link.contains("which resolves to") && link.contains("/elsewhere/secret.csv"), link)
        let dotdot = try XCTUnwrap(roots.refusal(spec(base + "/data/../elsewhere/secret.csv")))
        XCTAssertTrue(dotdot.contains("outside"), dotdot)
        let fifo = try XCTUnwrap(roots.refusal(spec(base + "/data/fifo.csv")))
        XCTAssertTrue(fifo.contains("is a FIFO, not a regular file"), fifo)
        XCTAssertTrue(try XCTUnwrap(roots.refusal(spec(base + "/data"))).contains("a folder"))
        XCTAssertTrue(try XCTUnwrap(roots.refusal(spec(base + "/data/missing.csv"))).contains("No such file"))
        // A root does not admit a sibling whose name it prefixes.
        try FileManager.default.createDirectory(atPath: base + "/database", withIntermediateDirectories: true)
        try "1,2\n".write(toFile: base + "/database/t.csv", atomically: true, encoding: .utf8)
        XCTAssertNotNil(roots.refusal(spec(base + "/database/t.csv")))
        for text in [outside, link, fifo] { XCTAssertFalse(text.contains("secret contents")) }
    }

    func testWithoutRootsOnlyRegularFilesAreRequired() throws {
        let any = try DataRoots([])
        XCTAssertNil(any.refusal(spec(base + "/elsewhere/secret.csv")))
        XCTAssertNotNil(any.refusal(spec(base + "/data/fifo.csv")))
        XCTAssertNotNil(any.refusal(spec("/dev/zero")))
        // A NUL byte would make realpath judge the file before it; the spec validator refuses such a
        // spec first, and a worker does not rely on that.
        XCTAssertEqual(any.refusal(spec(base + "/data/train.csv\0/../../elsewhere/secret.csv")),
                       "data.train.path: \(base)/data/train.csv\\0/../../elsewhere/secret.csv: a path cannot hold a NUL byte")
    }

    func testBadRootsAreNamed() {
        XCTAssertThrowsError(try DataRoots([base + "/nope"])) { XCTAssertTrue("\($0)".contains("/nope"), "\($0)") }
        XCTAssertThrowsError(try DataRoots([base + "/data/train.csv"])) { XCTAssertTrue("\($0)".contains("not a folder"), "\($0)") }
    }
}
