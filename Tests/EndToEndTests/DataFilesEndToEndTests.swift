import Foundation
import XCTest

/// Data files that are not what a spec says, with the real binaries: a gzip bomb is refused early with
/// its sizes and little memory, a file that is not a dataset is not quoted back, a path holding a NUL
/// byte is refused naming its field, and a FIFO cannot hang a load.
final class DataFilesEndToEndTests: XCTestCase {
    var scratch: String!

    override func setUpWithError() throws {
        scratch = NSTemporaryDirectory() + "ps-data-e2e-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    /// Peak memory a refused bomb may cost: the old reader inflated all of its 1 GiB first.
    private let refusedPeakRSSMax = 512 << 20

    /// An IDX3 header declaring 10 images of 28 × 28 pixels (7,856 bytes with the body), in printf's
    /// octal escapes.
    private let tenImagesHeader = #"\000\000\010\003\000\000\000\012\000\000\000\034\000\000\000\034"#

    /// Runs a shell command for the test's own set-up (building a bomb), failing the test if it fails.
    private func sh(_ command: String) throws {
        let out = try Binaries.spawn(["/bin/bash", "-c", "set -o pipefail; " + command], secondsMax: 300).output
        XCTAssertEqual(out.status, 0, "\(command): \(out.stderr)")
    }

    /// A JSON spec (one softmax layer over 784 inputs) whose `data` is `data`, written to the scratch folder.
    private func writeSpec(_ name: String, data: String) throws -> String {
        let path = "\(scratch!)/\(name).json"
        let text = """
        {"name": "\(name)", "seed": 1, "data": \(data),
         "model": {"inputs": 784, "layers": [{"units": 10, "activation": "softmax"}]},
         "loss": "softmax_cross_entropy", "optimizer": {"name": "sgd", "learning_rate": 0.1},
         "training": {"batch_size": 10, "epochs": 1}}
        """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func trainLocal(_ spec: String, secondsMax: Double = 300) throws -> Binaries.Measured {
        try Binaries.spawn([Binaries.buildDirectory + "/psctl", "train", "--local", spec], secondsMax: secondsMax)
    }

    private func idxData(images: String, labels: String) -> String {
        #"{"format": "idx", "train": {"images": "\#(images)", "labels": "\#(labels)"}}"#
    }

    private func labelsFile() throws -> String {
        let path = "\(scratch!)/labels"
        try Data([0, 0, 8, 1, 0, 0, 0, 10] + (0..<10).map { UInt8($0) }).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? -1
    }

    // `psctl train --local` on a 1 GiB gzip bomb (`head -c 1G /dev/zero | gzip -1`, about 4.7 MB) is
    // refused in seconds with a few MiB of memory: behind an IDX header declaring 10 images, with the
    // header's size and where inflation stopped; with no header, from its first bytes (as CSV: NUL bytes).
    func testGzipBombIsRefusedEarlyNamingFileAndSizes() throws {
        let bomb = "\(scratch!)/bomb-images.gz"
        try sh("(printf '\(tenImagesHeader)'; head -c 1G /dev/zero) | gzip -1 > '\(bomb)'")
        let run = try trainLocal(try writeSpec("bomb", data: idxData(images: bomb, labels: try labelsFile())))
        print("gzip bomb (IDX header): \(fileSize(bomb)) bytes compressed, refused in \(String(format: "%.2f", run.seconds)) s, peak RSS (VmHWM) \(run.peakRSSBytes >> 20) MiB")
        XCTAssertEqual(run.output.status, 1, run.output.stderr)
        for part in ["data.train.images", bomb, "decompresses past", "its IDX3 header implies 7856 bytes", "stopped after inflating"] {
            XCTAssertTrue(run.output.stderr.contains(part), "lacks '\(part)': \(run.output.stderr)")
        }
        XCTAssertLessThan(run.peakRSSBytes, refusedPeakRSSMax)

        let zeros = "\(scratch!)/zeros.csv.gz"
        try sh("head -c 1G /dev/zero | gzip -1 > '\(zeros)'")
        let csv = try trainLocal(try writeSpec("zeros", data: #"{"format": "csv", "train": {"path": "\#(zeros)"}}"#))
        print("gzip bomb (zeros as CSV): \(fileSize(zeros)) bytes compressed, refused in \(String(format: "%.2f", csv.seconds)) s, peak RSS (VmHWM) \(csv.peakRSSBytes >> 20) MiB")
        XCTAssertEqual(csv.output.status, 1, csv.output.stderr)
        XCTAssertTrue(csv.output.stderr.contains("data.train: \(zeros): byte 0 of the decompressed data: a NUL byte; a CSV file is text"),
                      csv.output.stderr)
        XCTAssertLessThan(csv.peakRSSBytes, refusedPeakRSSMax)
    }

    // The same IDX bomb submitted to a cluster fails the job with the same message, and the server that
    // loaded it stays small (its VmHWM) and keeps serving.
    func testGzipBombSubmittedToAClusterFailsTheJob() throws {
        let bomb = "\(scratch!)/bomb-images.gz"
        try sh("(printf '\(tenImagesHeader)'; head -c 1G /dev/zero) | gzip -1 > '\(bomb)'")
        let spec = try writeSpec("bomb", data: idxData(images: bomb, labels: try labelsFile()))
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        try cluster.startWorker("w1")
        let out = try cluster.psctl(["submit", spec, "--wait"])
        XCTAssertEqual(out.status, 1, out.stderr)
        for part in [bomb, "its IDX3 header implies 7856 bytes", "stopped after inflating"] {
            XCTAssertTrue(out.stderr.contains(part), "lacks '\(part)': \(out.stderr)")
        }
        let peak = Binaries.peakRSS(cluster.server.processIdentifier)
        XCTAssertGreaterThan(peak, 0, "the server's /proc status has no VmHWM")
        print("gzip bomb submitted: server peak RSS (VmHWM) \(peak >> 20) MiB")
        XCTAssertLessThan(peak, refusedPeakRSSMax)
        XCTAssertEqual(try cluster.psctl(["status"]).status, 0, "the server keeps serving")
    }

    // A file that is not a dataset (here a secrets file) named as CSV or as IDX gives an error naming
    // the field and the file that quotes at most 16 of its bytes.
    func testNonDatasetFileIsNotQuotedBack() throws {
        let secrets = "\(scratch!)/secrets.env"
        let text = "DATABASE_PASSWORD=correct-horse-battery-staple-9f8e7d6c\nAPI_TOKEN=ghp_0123456789abcdefghijklmnopqrstuvwxyz\n"
        try text.write(toFile: secrets, atomically: true, encoding: .utf8)
        let asCSV = try trainLocal(try writeSpec("csv", data: #"{"format": "csv", "train": {"path": "\#(secrets)"}}"#))
        let asNamedCSV = try trainLocal(try writeSpec("named", data: #"{"format": "csv", "train": {"path": "\#(secrets)"}, "header": true, "label_column": "label"}"#))
        let asIDX = try trainLocal(try writeSpec("idx", data: idxData(images: secrets, labels: secrets)))
        for run in [asCSV, asNamedCSV, asIDX] {
            XCTAssertEqual(run.output.status, 1, run.output.stderr)
            XCTAssertTrue(run.output.stderr.contains(secrets), run.output.stderr)
            let all = run.output.stdout + run.output.stderr
            let bytes = Array(text.utf8)
            let leaked = (0...(bytes.count - 17)).lazy
                .map { String(decoding: bytes[$0..<($0 + 17)], as: UTF8.self) }.first { all.contains($0) }
            XCTAssertNil(leaked, "quotes 17 bytes of the file: \(all)")
        }
        XCTAssertTrue(asCSV.output.stderr.contains("data.train: \(secrets): line 1, column 1: 'DATABASE_PASSWOR'… is not a number"),
                      asCSV.output.stderr)
    }

    // A data path holding a NUL byte (JSON "\u0000") is refused naming the field; before, open(2) read
    // the path up to the NUL and trained on another file.
    func testNULInADataPathIsRefusedNamingTheField() throws {
        let real = Binaries.repositoryRoot + "/data/mnist/small/train.csv"
        let spec = try writeSpec("nul", data: #"{"format": "csv", "train": {"path": "\#(real)\u0000.secret"}, "label_column": 0}"#)
        let run = try trainLocal(spec)
        XCTAssertEqual(run.output.status, 1, run.output.stdout + run.output.stderr)
        XCTAssertTrue(run.output.stderr.contains("data.train.path: a path cannot hold a NUL byte (found at byte \(real.utf8.count))"),
                      run.output.stderr)
    }

    // A FIFO named as a data file is refused at once, naming the field and the file, instead of the
    // load waiting for a writer forever (such a run is killed after 60 s and fails the test).
    func testFIFODataFileIsRefusedWithoutHanging() throws {
        let fifo = "\(scratch!)/labels.fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let images = Binaries.repositoryRoot + "/data/mnist/small/train-images-idx3-ubyte"
        let run = try trainLocal(try writeSpec("fifo", data: idxData(images: images, labels: fifo)), secondsMax: 60)
        XCTAssertEqual(run.output.status, 1, run.output.stderr)
        XCTAssertTrue(run.output.stderr.contains("data.train.labels: \(fifo): is a FIFO, not a regular file"), run.output.stderr)
    }
}
