import XCTest
@testable import PSCore

final class SHA256Tests: XCTestCase {
    private func hex(_ text: String) -> String { SHA256.hex(SHA256.hash(text)) }

    func testEmptyMessage() {
        // Proves the digest of the empty message matches FIPS 180-4's published value.
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    func testABC() {
        // Proves the one-block NIST vector "abc".
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testTwoBlockMessages() {
        // Proves the 448-bit and 896-bit NIST vectors, whose padding spills into a second block.
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    func testOneMillionA() {
        // Proves the long NIST vector, one million 'a', both in one call and in 1000-byte updates.
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        XCTAssertEqual(SHA256.hex(SHA256.hash(million)), expected)
        var hasher = SHA256Hasher()
        let piece = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { hasher.update(piece) }
        XCTAssertEqual(SHA256.hex(hasher.finalize()), expected)
    }

    func testAnySplitGivesTheSameDigest() {
        // Proves that splitting the input into three updates at every pair of points (across and within
        // block boundaries) gives the one-shot digest, and that finalize leaves the hasher usable.
        let message = (0..<150).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        let expected = SHA256.hash(message)
        for i in stride(from: 0, through: message.count, by: 7) {
            for j in stride(from: i, through: message.count, by: 5) {
                var hasher = SHA256Hasher()
                hasher.update(Array(message[..<i]))
                XCTAssertEqual(hasher.finalize(), SHA256.hash(Array(message[..<i])))
                hasher.update(Array(message[i..<j]))
                hasher.update(Array(message[j...]))
                XCTAssertEqual(hasher.finalize(), expected, "split at \(i), \(j)")
            }
        }
    }

    func testRawBufferAndHex() {
        // Proves the raw-buffer entry point agrees with the array one and that hex is lower-case, two digits a byte.
        let bytes: [UInt8] = [0x00, 0x0f, 0xa0, 0xff]
        XCTAssertEqual(SHA256.hex(bytes), "000fa0ff")
        XCTAssertEqual(bytes.withUnsafeBytes { SHA256.hash($0) }, SHA256.hash(bytes))
        XCTAssertEqual(SHA256.hash(bytes).count, SHA256.digestBytes)
    }
}
