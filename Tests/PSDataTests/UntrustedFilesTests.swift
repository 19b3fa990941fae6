import Foundation
import PSCore
import XCTest
@testable import PSData

/// Files that are not the dataset they claim to be: gzip bombs, other kinds of file, special files,
/// NUL bytes in paths, and loads stopped from outside.
final class UntrustedFilesTests: TemporaryDirectoryTestCase {
    /// Decompressed bytes of the bombs below: far past the header's size plus the slack.
    private let bombBytes = 32 << 20

    /// `bytes` gzipped with its CRC-32 spoiled: inflating it to the end is an "incorrect data check"
    /// error, so any other error proves the reader stopped before the end.
    private func spoiledGzip(_ bytes: [UInt8]) -> [UInt8] {
        var compressed = gzip(bytes)
        compressed[compressed.count - 6] ^= 0xFF
        return compressed
    }

    /// The number after `prefix` in `text`, e.g. the byte count in "… to 1056784 bytes".
    private func number(after prefix: String, in text: String) -> Int? {
        guard let range = text.range(of: prefix) else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }

    /// Fails unless `text` quotes at most `DataLimits.quotedBytesMax` consecutive bytes of `secret`.
    private func assertQuotesLittle(of secret: String, in text: String, file: StaticString = #filePath, line: UInt = #line) {
        let bytes = Array(secret.utf8)
        let window = DataLimits.quotedBytesMax + 1
        for start in 0...(bytes.count - window) {
            let piece = String(decoding: bytes[start..<(start + window)], as: UTF8.self)
            if text.contains(piece) {
                XCTFail("'\(text)' quotes \(window) bytes of the file: '\(piece)'", file: file, line: line)
                return
            }
        }
    }

    // A gzip IDX file whose header declares 10 images but which inflates to 32 MiB stops inflating
    // within the slack and one piece of the 7,856 bytes its header implies, and says so with the sizes;
    // the spoiled CRC at its end shows it never got there.
    func testGzipBombStopsNearTheSizeItsHeaderImplies() throws {
        let header = idx3(count: 10, rows: 28, cols: 28, pixels: [])
        let path = try write("bomb-images.gz", spoiledGzip(header + [UInt8](repeating: 0, count: bombBytes - header.count)))
        let started = ContinuousClock.now
        let error = assertDataError(try IDXReader.readImages(path: path),
                                    contains: [path, "its IDX3 header implies 7856 bytes (16 + 10 images × 784)",
                                               "DataLimits.gzipSlackBytes allows \(DataLimits.gzipSlackBytes) more",
                                               "stopped after inflating"])
        let inflated = try XCTUnwrap(number(after: " compressed bytes to ", in: error?.message ?? ""))
        print("gzip bomb: stopped after \(inflated) of \(bombBytes) bytes in \(ContinuousClock.now - started)")
        XCTAssertLessThanOrEqual(inflated, 7856 + DataLimits.gzipSlackBytes + DataLimits.pieceBytes)
        // Labels are judged the same way.
        let labels = try write("bomb-labels.gz", spoiledGzip(idx1(count: 3, labels: [UInt8](repeating: 1, count: bombBytes))))
        assertDataError(try IDXReader.readLabels(path: labels), contains: [labels, "its IDX1 header implies 11 bytes", "stopped after inflating"])
    }

    // A gzip of zeros (no header at all) is refused from its first inflated bytes: as IDX by its magic,
    // as CSV by its NUL bytes; neither reaches the spoiled CRC at its end.
    func testHeaderlessGzipBombIsJudgedFromItsFirstBytes() throws {
        let path = try write("zeros.gz", spoiledGzip([UInt8](repeating: 0, count: bombBytes)))
        assertDataError(try IDXReader.readImages(path: path),
                        contains: [path, "byte 0 of the decompressed data", "bad magic 0x00000000, expected 0x00000803"])
        assertDataError(try CSVReader.read(path: path, header: false, labelColumn: .index(0)),
                        contains: [path, "byte 0 of the decompressed data", "a NUL byte; a CSV file is text"])
    }

    // A gzip CSV, whose size no header states, inflates to at most DataLimits.gzipTextRatioMax times
    // its compressed size (or the slack); the same text uncompressed is read in full.
    func testGzipCSVStopsAtTheTextRatio() throws {
        let row = Array(("0" + String(repeating: ",0", count: 99) + "\n").utf8)
        var text = [UInt8]()
        while text.count < bombBytes { text += row }
        let compressed = spoiledGzip(text)
        XCTAssertGreaterThan(text.count, compressed.count * DataLimits.gzipTextRatioMax, "the test needs a ratio past the limit")
        let path = try write("zeros.csv.gz", compressed)
        let error = assertDataError(try CSVReader.read(path: path, header: false, labelColumn: .index(0)),
                                    contains: [path, "DataLimits.gzipTextRatioMax", "decompress it first", "stopped after inflating"])
        let inflated = try XCTUnwrap(number(after: " compressed bytes to ", in: error?.message ?? ""))
        let allowed = max(compressed.count * DataLimits.gzipTextRatioMax, DataLimits.gzipSlackBytes)
        XCTAssertLessThanOrEqual(inflated, allowed + DataLimits.pieceBytes)
        let plain = try write("zeros.csv", Array(text[..<(row.count * 1000)]))
        XCTAssertEqual(try CSVReader.read(path: plain, header: false, labelColumn: .index(0)).count, 1000)
    }

    // A header that disagrees with the body: a gzip body short of the header is truncated, one a little
    // long has its extra bytes counted, and a plain file far longer than its header is refused by its
    // size before its body is read.
    func testHeaderAndBodyDisagree() throws {
        let short = try write("short.gz", gzip(idx3(count: 100, rows: 2, cols: 2, pixels: [UInt8](repeating: 7, count: 40))))
        assertDataError(try IDXReader.readImages(path: short), contains: [short, "header says 100 images", "only 40 bytes follow"])
        let long = try write("long.gz", gzip(idx3(count: 1, rows: 2, cols: 2, pixels: [UInt8](repeating: 7, count: 1000))))
        assertDataError(try IDXReader.readImages(path: long), contains: [long, "996 extra bytes after the 1 images"])
        let huge = try write("huge", idx3(count: 1, rows: 2, cols: 2, pixels: [UInt8](repeating: 7, count: 3 << 20)))
        assertDataError(try IDXReader.readImages(path: huge),
                        contains: [huge, "file has \(16 + (3 << 20)) bytes, but its IDX3 header implies 20 bytes"])
    }

    // Files that are not datasets at all (a secrets file, a key, a program, an empty gzip) give an error
    // naming the file that quotes at most DataLimits.quotedBytesMax of their bytes, as CSV or as IDX.
    func testNonDatasetFilesAreNotQuoted() throws {
        let secret = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY,password=correct-horse-battery\n"
        let texts = [
            "secrets.env": secret,
            "key.pem": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n",
            "quoted.csv": "\"\(secret.dropLast())\",1\n",
        ]
        for (name, text) in texts {
            for gzipped in [false, true] {
                let path = try write(name + (gzipped ? ".gz" : ""), gzipped ? gzip(Array(text.utf8)) : Array(text.utf8))
                let csv = assertDataError(try CSVReader.read(path: path, header: false, labelColumn: .index(0)), contains: [path])
                assertQuotesLittle(of: text, in: csv?.description ?? "")
                // With a header, the first line is taken as column names, which are not quoted either.
                let named = assertDataError(try CSVReader.read(path: path, header: true, labelColumn: .name("label")),
                                            contains: [path])
                assertQuotesLittle(of: text, in: named?.description ?? "")
                let idx = assertDataError(try IDXReader.readImages(path: path), contains: [path, "bad magic"])
                assertQuotesLittle(of: text, in: idx?.description ?? "")
            }
        }
        // A long non-number field is quoted short and escaped, with its line and column.
        let field = try write("field.csv", text: "1,2\n0,\(secret.prefix { $0 != "," })\n")
        let error = assertDataError(try CSVReader.read(path: field, header: false, labelColumn: .index(0)),
                                    contains: ["line 2, column 2: 'AWS_SECRET_ACCES'… is not a number"])
        assertQuotesLittle(of: secret, in: error?.description ?? "")
        let binary = try write("binary.csv", [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0] + Array(secret.utf8))
        assertDataError(try CSVReader.read(path: binary, header: false, labelColumn: .index(0)),
                        contains: [binary, "byte 7: a NUL byte; a CSV file is text"])
    }

    // A quote shows printable ASCII as it is, escapes everything else (and its own quote and
    // backslash), and cuts at DataLimits.quotedBytesMax bytes.
    func testQuoteEscapesAndCuts() {
        XCTAssertEqual(DataError.quote([0x41, 0x00, 0x27, 0x5c, 0xff, 0x0a]), "'A\\x00\\x27\\x5c\\xff\\x0a'")
        XCTAssertEqual(DataError.quote("0123456789abcdefSECRET"), "'0123456789abcdef'…")
        XCTAssertEqual(DataError.quote("0123456789abcdef"), "'0123456789abcdef'")
        XCTAssertEqual(DataError.quote(""), "''")
    }

    // A FIFO (with no writer), a device and a folder are refused at open, naming the file and its kind,
    // without blocking; if the read did block, the test unblocks it and fails instead of hanging.
    func testSpecialFilesAreRefusedWithoutBlocking() throws {
        let fifo = directory.appendingPathComponent("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let done = DispatchSemaphore(value: 0)
        let outcome = Box<Error>()
        Thread.detachNewThread {
            do { _ = try IDXReader.readImages(path: fifo) } catch { outcome.value = error }
            done.signal()
        }
        if done.wait(timeout: .now() + 30) == .timedOut {
            let writer = open(fifo, O_WRONLY | O_NONBLOCK)
            if writer >= 0 { close(writer) }
            _ = done.wait(timeout: .now() + 30)
            return XCTFail("reading a FIFO blocked")
        }
        XCTAssertEqual((outcome.value as? DataError)?.description, "\(fifo): is a FIFO, not a regular file; data files must be regular files")
        assertDataError(try CSVReader.read(path: "/dev/zero", header: false, labelColumn: .index(0)),
                        contains: ["/dev/zero: is a character device, not a regular file"])
        assertDataError(try IDXReader.readLabels(path: directory.path), contains: [directory.path, "is a folder, not a regular file"])
    }

    // A path holding a NUL byte is refused, not cut short at the NUL to open another file.
    func testNULInPathIsRefused() throws {
        let real = try write("labels", idx1(count: 1, labels: [3]))
        XCTAssertEqual(try IDXReader.readLabels(path: real), [3])
        assertDataError(try IDXReader.readLabels(path: real + "\0.csv"),
                        contains: [real + "\\0.csv", "the path holds a NUL byte (at byte \(real.utf8.count)); a path cannot"])
    }

    // A load cancelled from another thread while it parses a large CSV stops inside the reader (the
    // error names the file, which a check between files could not) with the reason, soon after.
    func testCancelFromAnotherThreadStopsTheReader() throws {
        let train = mnist("train.csv.gz")
        let spec = makeSpec(DataSpec(format: .csv, train: .csv(path: train), header: false, labelColumn: .index(0)))
        let cancellation = LoadCancellation()
        let started = DispatchSemaphore(value: 0)
        let cancelledAt = Box<ContinuousClock.Instant>()
        Thread.detachNewThread {
            started.wait()
            Thread.sleep(forTimeInterval: 0.1)
            cancelledAt.value = ContinuousClock.now
            cancellation.cancel("the job was cancelled")
        }
        started.signal()
        let error = assertDataError(try DataLoader.load(spec, cancellation: cancellation),
                                    contains: ["data.train", train, "load stopped: the job was cancelled"])
        XCTAssertEqual(error?.file, train)
        let delay = ContinuousClock.now - (cancelledAt.value ?? .now)
        print("cancelled load stopped \(delay) after the cancel")
        XCTAssertLessThan(delay, .seconds(5), "a piece of work is milliseconds; this is far more")
    }

    // A load past its deadline (here ~0) stops with the deadline in its message, whichever check sees it.
    func testDeadlineStopsTheLoad() throws {
        let spec = makeSpec(DataSpec(format: .idx, train: .idx(images: mnist("train-images-idx3-ubyte.gz"),
                                                                labels: mnist("train-labels-idx1-ubyte.gz"))))
        assertDataError(try DataLoader.load(spec, cancellation: LoadCancellation(seconds: 0.000_001)),
                        contains: ["load stopped: loading took longer than its deadline of 1e-06 s"])
        // The readers check it themselves, naming their file.
        let images = mnist("train-images-idx3-ubyte.gz")
        let error = assertDataError(try IDXReader.readImages(path: images, cancellation: LoadCancellation(seconds: 0)),
                                    contains: [images, "took longer than its deadline"])
        XCTAssertEqual(error?.file, images)
    }
}

/// A value handed from one thread to another; the semaphore or lock around it orders the accesses.
private final class Box<T>: @unchecked Sendable {
    var value: T?
}
