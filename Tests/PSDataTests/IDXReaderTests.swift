import Foundation
import XCTest
@testable import PSData

final class IDXReaderTests: TemporaryDirectoryTestCase {
    // The bundled 1,000-sample slice reads as 1,000 images of 28×28 bytes with MNIST's first labels.
    func testReadsSmallMNISTSlice() throws {
        let images = try IDXReader.readImages(path: mnist("small/train-images-idx3-ubyte"))
        XCTAssertEqual(images.count, 1000)
        XCTAssertEqual(images.width, 784)
        XCTAssertEqual(images.pixels.count, 784_000)
        XCTAssertEqual(images.pixels.max(), 255)
        XCTAssertEqual(images.pixels.min(), 0)
        let labels = try IDXReader.readLabels(path: mnist("small/train-labels-idx1-ubyte"))
        XCTAssertEqual(labels.count, 1000)
        XCTAssertEqual(Array(labels.prefix(5)), [5, 0, 4, 1, 9])
    }

    // IDX2 images (count, width) are accepted and keep byte order.
    func testReadsFlatIDX2Images() throws {
        let path = try write("flat", bigEndian(0x0000_0802) + bigEndian(2) + bigEndian(3) + [1, 2, 3, 4, 5, 255])
        let images = try IDXReader.readImages(path: path)
        XCTAssertEqual(images.count, 2)
        XCTAssertEqual(images.width, 3)
        XCTAssertEqual(images.pixels, [1, 2, 3, 4, 5, 255])
    }

    // A gzip file gives exactly the bytes of its plain twin; gzip is detected by magic, not by name.
    func testGzipAndPlainAgree() throws {
        let plainImages = mnist("small/train-images-idx3-ubyte")
        let plainLabels = mnist("small/train-labels-idx1-ubyte")
        let gzImages = try write("images-no-gz-suffix", gzip(Array(try Data(contentsOf: URL(fileURLWithPath: plainImages)))))
        let gzLabels = try write("labels.gz", gzip(Array(try Data(contentsOf: URL(fileURLWithPath: plainLabels)))))
        let a = try IDXReader.readImages(path: plainImages)
        let b = try IDXReader.readImages(path: gzImages)
        XCTAssertEqual(a.count, b.count)
        XCTAssertEqual(a.width, b.width)
        XCTAssertEqual(a.pixels, b.pixels)
        XCTAssertEqual(try IDXReader.readLabels(path: plainLabels), try IDXReader.readLabels(path: gzLabels))
    }

    // A labels file given as images is rejected at byte 0, saying what magic was found and expected.
    func testBadMagicNamesFoundAndExpected() throws {
        let path = try write("labels-as-images", idx1(count: 2, labels: [1, 2]))
        let error = assertDataError(try IDXReader.readImages(path: path),
                                    contains: [path, "byte 0", "bad magic 0x00000801", "expected 0x00000803"])
        XCTAssertEqual(error?.location, "byte 0")
    }

    // A data type other than unsigned bytes (here 0x0D, float) is named in the bad-magic message.
    func testUnsupportedDataTypeIsNamed() throws {
        let path = try write("floats", idx3(count: 1, rows: 1, cols: 1, pixels: [0, 0, 0, 0], magic: 0x0000_0D03))
        assertDataError(try IDXReader.readImages(path: path),
                        contains: [path, "byte 0", "bad magic 0x00000d03", "data type 0xd", "only unsigned bytes (0x08)"])
    }

    // A header cut short reports where the file ends and how many header bytes were needed.
    func testTruncatedHeader() throws {
        let path = try write("short-header", bigEndian(0x0000_0803) + bigEndian(1000) + [0, 0])
        assertDataError(try IDXReader.readImages(path: path),
                        contains: [path, "byte 10", "truncated header", "need 16 header bytes", "has 10"])
        let labels = try write("short-labels-header", bigEndian(0x0000_0801) + [0, 0])
        assertDataError(try IDXReader.readLabels(path: labels),
                        contains: [labels, "byte 6", "truncated header", "need 8 header bytes"])
        let magicOnly = try write("two-bytes", [0, 0])
        assertDataError(try IDXReader.readImages(path: magicOnly),
                        contains: [magicOnly, "byte 2", "truncated header"])
    }

    // Missing pixel data is reported with the header's numbers and the bytes actually present.
    func testTruncatedData() throws {
        let path = try write("short-data", idx3(count: 1000, rows: 28, cols: 28, pixels: [UInt8](repeating: 7, count: 100)))
        let error = assertDataError(try IDXReader.readImages(path: path), contains: [path])
        XCTAssertEqual(error?.description,
                       "\(path): byte 16: truncated data: header says 1000 images of 784 bytes (784000 bytes from byte 16) but only 100 bytes follow")
        let labels = try write("short-labels", idx1(count: 10, labels: [1, 2, 3]))
        assertDataError(try IDXReader.readLabels(path: labels),
                        contains: [labels, "byte 8", "header says 10 labels of 1 byte (10 bytes from byte 8) but only 3 bytes follow"])
    }

    // Bytes beyond what the header declares are an error at the first extra byte.
    func testExtraBytes() throws {
        let path = try write("long", idx3(count: 2, rows: 2, cols: 2, pixels: [UInt8](repeating: 1, count: 11)))
        assertDataError(try IDXReader.readImages(path: path),
                        contains: [path, "byte 24", "3 extra bytes after the 2 images the header declares"])
        let labels = try write("long-labels", idx1(count: 2, labels: [1, 2, 3]))
        assertDataError(try IDXReader.readLabels(path: labels),
                        contains: [labels, "byte 10", "1 extra bytes after the 2 labels"])
    }

    // An empty file says so rather than reporting a bad magic.
    func testEmptyFile() throws {
        let path = try write("empty", [])
        assertDataError(try IDXReader.readImages(path: path), contains: [path, "file is empty"])
    }

    // A zero-sized image dimension is rejected at its header offset.
    func testZeroDimension() throws {
        let path = try write("zero-cols", idx3(count: 1, rows: 28, cols: 0, pixels: []))
        assertDataError(try IDXReader.readImages(path: path), contains: [path, "byte 12", "dimension 2 is 0"])
    }

    // A missing file is reported with the operating system's reason, and a folder as not a regular file.
    func testUnreadableFile() throws {
        let missing = directory.appendingPathComponent("does-not-exist").path
        assertDataError(try IDXReader.readImages(path: missing), contains: [missing, "cannot open", "No such file or directory"])
        assertDataError(try IDXReader.readLabels(path: directory.path), contains: [directory.path, "is a folder, not a regular file"])
    }

    // Offsets in a gzip file's errors are marked as offsets into the decompressed data.
    func testGzipOffsetsAreDecompressedOffsets() throws {
        let path = try write("short.gz", gzip(idx3(count: 3, rows: 2, cols: 2, pixels: [1, 2, 3])))
        assertDataError(try IDXReader.readImages(path: path),
                        contains: [path, "byte 16 of the decompressed data", "but only 3 bytes follow"])
    }
}
