import XCTest
@testable import PSCore

/// The project's digests are SHA-256 (swift-crypto): FIPS 180-4's published vectors through `Digest`.
final class DigestTests: XCTestCase {
    private func hex(_ text: String) -> String { Digest.hex(Digest.sha256(text)) }

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
        // Proves the long NIST vector, one million 'a'.
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        XCTAssertEqual(Digest.hex(Digest.sha256(million)), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testRawBufferAndHex() {
        // Proves the raw-buffer entry point agrees with the array one and that hex is lower-case, two digits a byte.
        let bytes: [UInt8] = [0x00, 0x0f, 0xa0, 0xff]
        XCTAssertEqual(Digest.hex(bytes), "000fa0ff")
        XCTAssertEqual(bytes.withUnsafeBytes { Digest.sha256($0) }, Digest.sha256(bytes))
        XCTAssertEqual(Digest.sha256(bytes).count, Digest.sha256Bytes)
    }
}
