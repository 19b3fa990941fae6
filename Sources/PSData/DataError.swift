/// A dataset that cannot be used: which spec field named it, which file, where in the file, and what
/// is wrong, so the user can fix the file or the spec without a debugger. Printed as one line:
/// `data.train.labels: data/x-labels-idx1-ubyte: byte 8: label 11 out of range 0..<10`.
public struct DataError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Spec field path (`data.train.images`, `model.inputs`); nil from the raw readers, which do not
    /// know the spec. `DataLoader` fills it in.
    public var field: String?
    /// The file the problem is in, as the spec spelled it.
    public var file: String?
    /// Where in the file: `byte 16`, `line 12, column 5 ('pixel4')`.
    public var location: String?
    /// What is wrong and, where it helps, what was expected.
    public var message: String

    public init(field: String? = nil, file: String? = nil, location: String? = nil, message: String) {
        self.field = field
        self.file = file
        self.location = location
        self.message = message
    }

    public var description: String {
        [field, file, location, message].compactMap { $0 }.joined(separator: ": ")
    }

    /// This error attributed to `field`, unless a more specific field is already set.
    func inField(_ field: String) -> DataError {
        var copy = self
        if copy.field == nil { copy.field = field }
        return copy
    }
}

extension DataError {
    /// At most `DataLimits.quotedBytesMax` of `bytes` as a quoted literal for a message: printable ASCII
    /// as it is, every other byte (and the quote and backslash) escaped as `\xNN`, "…" when cut.
    public static func quote(_ bytes: some Collection<UInt8>) -> String {
        var out = "'"
        for byte in bytes.prefix(DataLimits.quotedBytesMax) {
            if byte >= 0x20, byte < 0x7f, byte != UInt8(ascii: "'"), byte != UInt8(ascii: "\\") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16)
                out += "\\x" + (hex.count == 1 ? "0" : "") + hex
            }
        }
        return out + "'" + (bytes.count > DataLimits.quotedBytesMax ? "…" : "")
    }

    /// `quote` of a string's UTF-8 bytes.
    public static func quote(_ text: String) -> String { quote(Array(text.utf8)) }
}

/// Runs `body`, attributing any `DataError` it throws to `field`.
func attributing<T>(to field: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as DataError {
        throw error.inField(field)
    }
}
