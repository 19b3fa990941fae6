import Crypto

/// Content digests (model fingerprints, the weights' `weights_sha256`): SHA-256 from swift-crypto,
/// and the lower-case hexadecimal the project prints them in.
public enum Digest {
    /// Bytes in one SHA-256 digest.
    public static let sha256Bytes = 32

    /// The SHA-256 digest of `bytes`.
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        Array(Crypto.SHA256.hash(data: bytes))
    }

    /// The SHA-256 digest of `bytes`.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { sha256($0) }
    }

    /// The SHA-256 digest of a string's UTF-8 bytes.
    public static func sha256(_ string: String) -> [UInt8] {
        sha256(Array(string.utf8))
    }

    /// Lower-case hexadecimal, two digits per byte.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
