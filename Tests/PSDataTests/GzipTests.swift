import Foundation
import XCTest
@testable import PSData

final class GzipTests: TemporaryDirectoryTestCase {
    private let sample: [UInt8] = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7919 >> 3) }

    // A damaged deflate stream is reported as corrupt with zlib's own message and a compressed offset.
    func testCorruptGzip() throws {
        var bytes = gzip(sample)
        for k in 20..<40 { bytes[k] ^= 0xA5 }
        let path = try write("corrupt.gz", bytes)
        let error = assertDataError(try FileBytes.read(path: path), contains: [path, "of the gzip stream", "corrupt gzip stream: "])
        XCTAssertTrue(error?.location?.hasPrefix("byte ") ?? false)
        // zlib's message follows the colon; it is never empty.
        XCTAssertGreaterThan(error?.message.count ?? 0, "corrupt gzip stream: ".count)
        // Readers pass the error through unchanged.
        assertDataError(try IDXReader.readImages(path: path), contains: [path, "corrupt gzip stream"])
    }

    // A bad checksum (intact deflate data, altered trailer) is reported as corrupt.
    func testChecksumMismatch() throws {
        var bytes = gzip(sample)
        bytes[bytes.count - 6] ^= 0xFF  // inside the CRC-32
        let path = try write("crc.gz", bytes)
        assertDataError(try FileBytes.read(path: path), contains: [path, "corrupt gzip stream", "incorrect data check"])
    }

    // A gzip stream cut short is reported as truncated, with how much it gave before ending.
    func testTruncatedGzip() throws {
        let bytes = gzip(sample)
        let path = try write("truncated.gz", Array(bytes[..<(bytes.count / 2)]))
        assertDataError(try FileBytes.read(path: path),
                        contains: [path, "byte \(bytes.count / 2) of the gzip stream", "truncated gzip stream", "bytes decompressed"])
        let headerOnly = try write("header-only.gz", Array(bytes[..<5]))
        assertDataError(try FileBytes.read(path: headerOnly), contains: [headerOnly, "truncated gzip stream"])
    }

    // Concatenated gzip members decompress to the concatenation, as gunzip does.
    func testConcatenatedMembers() throws {
        let path = try write("two.gz", gzip([1, 2, 3]) + gzip(sample))
        XCTAssertEqual(try FileBytes.read(path: path).bytes, [1, 2, 3] + sample)
    }

    // Bytes after the gzip stream that are not another member are rejected, not ignored.
    func testTrailingGarbage() throws {
        let bytes = gzip(sample)
        let path = try write("garbage.gz", bytes + [0, 1, 2])
        assertDataError(try FileBytes.read(path: path),
                        contains: [path, "byte \(bytes.count) of the gzip stream", "3 bytes of trailing garbage"])
    }

    // A file that starts like gzip but only has the two magic bytes is truncated, and plain files pass through.
    func testMagicDetection() throws {
        let plain = try write("plain.gz", [0x1f, 0x8c, 1, 2])
        XCTAssertEqual(try FileBytes.read(path: plain).bytes, [0x1f, 0x8c, 1, 2])
        XCTAssertFalse(try FileBytes.read(path: plain).wasGzip)
        let magicOnly = try write("magic", [0x1f, 0x8b])
        assertDataError(try FileBytes.read(path: magicOnly), contains: [magicOnly, "truncated gzip stream"])
    }
}
