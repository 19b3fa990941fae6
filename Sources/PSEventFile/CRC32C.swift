/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum TFRecord framing uses.
/// A byte-at-a-time table: event files are small, so simplicity wins over slicing-by-8.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { byte -> UInt32 in
        var crc = UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    /// The CRC-32C of `bytes` (crc32c("123456789") = 0xE3069283).
    static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord stores CRCs rotated and offset, because a CRC of data that itself holds CRCs is weak.
    static func masked(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
