import PSCore
import Foundation

/// A reader for numeric CSV: one sample per line, one label column, every other column a feature.
/// It parses bytes directly (no String per field, no Foundation number parsing) because a 60,000-line
/// MNIST file has 47 million fields.
public enum CSVReader {
    /// Reads `path` (plain or gzip). `labelLines[i]` is the 1-based line of sample `i`, for messages
    /// about its label. Blank lines are skipped; `\n` and `\r\n` endings are both accepted.
    /// `cancellation` is checked every `linesPerCheck` lines and every piece read or inflated.
    public static func read(path: String, header: Bool, labelColumn: ColumnRef,
                            cancellation: LoadCancellation = .never) throws
        -> (count: Int, width: Int, features: [Float], labels: [Float], labelLines: [Int])
    {
        let file = try FileBytes.read(path: path, expecting: textExpectation(path: path), cancellation: cancellation)
        var parser = Parser(path: path, header: header, labelColumn: labelColumn, cancellation: cancellation)
        try file.bytes.withUnsafeBufferPointer { try parser.parse($0) }
        let width = max(parser.fieldCount - 1, 0)
        return (parser.labels.count, width, parser.features, parser.labels, parser.labelLines)
    }

    /// Leading bytes looked at to tell text from a binary file before the rest is read or inflated.
    static let sniffBytes = 1024
    /// Lines parsed between two looks at the load's cancellation (a few milliseconds of MNIST rows).
    static let linesPerCheck = 4096

    /// A CSV file is text: a NUL byte among its first `sniffBytes` means it is something else (an IDX
    /// file, an archive, zeros), and nothing more of it is read or inflated.
    static func textExpectation(path: String) -> FileBytes.Expectation {
        FileBytes.Expectation(headBytes: sniffBytes) { head in
            if let nul = head.bytes.prefix(sniffBytes).firstIndex(of: 0) {
                throw DataError(file: path, location: head.location(byte: nul),
                                message: "a NUL byte; a CSV file is text, so this is not one (a binary file such as IDX, or zeros?)")
            }
            return .unknown
        }
    }

    private static let comma = UInt8(ascii: ",")
    private static let quote = UInt8(ascii: "\"")
    private static let newline = UInt8(ascii: "\n")
    private static let carriageReturn = UInt8(ascii: "\r")

    private struct Parser {
        let path: String
        let header: Bool
        let labelColumn: ColumnRef
        let cancellation: LoadCancellation
        var names: [String]? = nil
        /// Fields per line, fixed by the first non-blank line; -1 until then.
        var fieldCount = -1
        /// The line that fixed `fieldCount`, named in ragged-row messages.
        var firstLine = 0
        var labelIndex = -1
        var features: [Float] = []
        var labels: [Float] = []
        var labelLines: [Int] = []
        /// Field boundaries of the current line as (start, end) pairs; reused to avoid allocation.
        var bounds: [Int] = []

        init(path: String, header: Bool, labelColumn: ColumnRef, cancellation: LoadCancellation) {
            self.path = path
            self.cancellation = cancellation
            self.header = header
            self.labelColumn = labelColumn
            if case let .index(i) = labelColumn { labelIndex = i }
        }

        mutating func parse(_ buffer: UnsafeBufferPointer<UInt8>) throws {
            guard let base = buffer.baseAddress, !buffer.isEmpty else {
                throw DataError(file: path, message: "file is empty; expected CSV rows")
            }
            if case let .name(name) = labelColumn, !header {
                throw DataError(field: "data.label_column", file: path,
                                message: "label column '\(name)' is given by name, but the file has no header (set data.header: true or give a column index)")
            }
            if labelIndex < 0, case .index = labelColumn {
                throw DataError(field: "data.label_column", file: path, message: "label column index \(labelIndex) is negative")
            }
            let end = buffer.count
            var position = 0
            var line = 0
            while position < end {
                line += 1
                if line % linesPerCheck == 0 { try cancellation.check(file: path) }
                let lineStart = position
                var lineEnd: Int
                if let hit = memchr(base + position, Int32(newline), end - position) {
                    lineEnd = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                    position = lineEnd + 1
                } else {
                    lineEnd = end
                    position = end
                }
                if lineEnd > lineStart, base[lineEnd - 1] == carriageReturn { lineEnd -= 1 }
                if isBlank(base, lineStart, lineEnd) { continue }

                try split(base, lineStart, lineEnd, line: line)
                let found = bounds.count / 2
                if fieldCount < 0 {
                    fieldCount = found
                    firstLine = line
                    try resolveLabelColumn()
                    if header {
                        names = stride(from: 0, to: bounds.count, by: 2).map { k in
                            text(base, bounds[k], bounds[k + 1]).replacingOccurrences(of: "\"\"", with: "\"")
                        }
                        try resolveLabelName()
                        continue
                    }
                } else if found != fieldCount {
                    throw DataError(file: path, location: "line \(line)",
                                    message: "ragged row: found \(found) fields, expected \(fieldCount) like line \(firstLine)")
                }
                if labels.isEmpty { reserve(totalBytes: end, lineBytes: position - lineStart) }
                try parseRow(base, line: line)
            }
            if fieldCount < 0 {
                throw DataError(file: path, message: "file has only blank lines; expected CSV rows")
            }
            if fieldCount < 2 {
                throw DataError(file: path, message: "rows have \(fieldCount) field; need a label and at least one feature")
            }
        }

        private func isBlank(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
            var i = start
            while i < end {
                if base[i] != 0x20 && base[i] != 0x09 { return false }
                i += 1
            }
            return true
        }

        /// Fills `bounds` with the line's field ranges, quotes stripped.
        private mutating func split(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int, line: Int) throws {
            bounds.removeAll(keepingCapacity: true)
            var p = start
            while true {
                if p < end, base[p] == quote {
                    let open = p
                    p += 1
                    // A doubled quote inside a quoted field is a literal quote (RFC 4180).
                    while true {
                        guard p < end else {
                            throw DataError(file: path, location: "line \(line), column \(bounds.count / 2 + 1)",
                                            message: "unterminated quoted field starting at character \(open - start + 1)")
                        }
                        if base[p] == quote {
                            if p + 1 < end, base[p + 1] == quote { p += 2; continue }
                            break
                        }
                        p += 1
                    }
                    bounds.append(open + 1)
                    bounds.append(p)
                    p += 1
                    if p < end, base[p] != comma {
                        throw DataError(file: path, location: "line \(line), column \(bounds.count / 2)",
                                        message: "unexpected text after the closing quote")
                    }
                } else {
                    let fieldStart = p
                    while p < end, base[p] != comma { p += 1 }
                    bounds.append(fieldStart)
                    bounds.append(p)
                }
                if p >= end { return }
                p += 1  // the comma; a comma at the end of the line starts one more (empty) field
            }
        }

        private mutating func resolveLabelColumn() throws {
            if case .index = labelColumn, labelIndex >= fieldCount {
                throw DataError(field: "data.label_column", file: path,
                                message: "label column index \(labelIndex) is out of range: the first row has \(fieldCount) columns (indices 0..<\(fieldCount))")
            }
        }

        private mutating func resolveLabelName() throws {
            guard case let .name(name) = labelColumn, let names else { return }
            let trimmed = names.map { $0.trimmingCharacters(in: .whitespaces) }
            guard let index = trimmed.firstIndex(of: name) else {
                // The header is not listed: the file may not be a CSV at all. A name that differs only
                // in case is shown, as it is what the user meant and barely more than what they typed.
                var message = "no column named '\(name)' among the header's \(trimmed.count) columns"
                if let near = trimmed.firstIndex(where: { $0.lowercased() == name.lowercased() }) {
                    message += "; column \(near + 1) is \(DataError.quote(trimmed[near])) (names are case-sensitive)"
                }
                throw DataError(field: "data.label_column", file: path, location: "line 1", message: message)
            }
            labelIndex = index
        }

        private mutating func reserve(totalBytes: Int, lineBytes: Int) {
            let rows = totalBytes / max(lineBytes, 1) + 16
            let width = fieldCount - 1
            guard rows * width <= DataLimits.valuesMax else { return }
            features.reserveCapacity(rows * width)
            labels.reserveCapacity(rows)
            labelLines.reserveCapacity(rows)
        }

        private mutating func parseRow(_ base: UnsafePointer<UInt8>, line: Int) throws {
            if labels.count >= DataLimits.samplesMax || features.count + fieldCount - 1 > DataLimits.valuesMax {
                throw DataError(file: path, location: "line \(line)",
                                message: "more than \(DataLimits.valuesMax) feature values, the limit")
            }
            for column in 0..<fieldCount {
                let fieldStart = bounds[2 * column]
                let fieldEnd = bounds[2 * column + 1]
                guard let value = parseNumber(base, fieldStart, fieldEnd), value.isFinite else {
                    throw fieldError(base, fieldStart, fieldEnd, line: line, column: column)
                }
                if column == labelIndex {
                    labels.append(value)
                    labelLines.append(line)
                } else {
                    features.append(value)
                }
            }
        }

        private func fieldError(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int, line: Int, column: Int) -> DataError {
            var location = "line \(line), column \(column + 1)"
            if let names { location += " (\(DataError.quote(names[column])))" }
            let field = UnsafeBufferPointer(start: base + start, count: end - start)
            let shown = DataError.quote(field)
            let message: String
            if field.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
                message = "empty field; expected a number"
            } else if parseNumber(base, start, end) != nil {
                message = "non-finite value \(shown); features and labels must be finite 32-bit floats"
            } else {
                message = "\(shown) is not a number; expected a decimal number such as 0.5 or -3e2"
            }
            return DataError(file: path, location: location, message: message)
        }

        private func text(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> String {
            String(decoding: UnsafeBufferPointer(start: base + start, count: end - start), as: UTF8.self)
        }
    }
}

/// Exact powers of ten representable in a Double: 10^22 is the largest (Clinger's fast path).
private let exactPowersOfTen: [Double] = (0...22).map { k in
    var p = 1.0
    for _ in 0..<k { p *= 10 }
    return p
}

/// Parses a decimal number (optional sign, digits, fraction, exponent; `nan`, `inf`, `infinity` in any
/// case) from `base[start..<end]`, ignoring surrounding spaces and tabs. Returns nil if the text is not
/// a number. Common inputs take Clinger's fast path, which is correctly rounded; long mantissas and
/// large exponents fall back to strtod.
@inline(__always)
func parseNumber(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Float? {
    var i = start
    var e = end
    while i < e, base[i] == 0x20 || base[i] == 0x09 { i += 1 }
    while e > i, base[e - 1] == 0x20 || base[e - 1] == 0x09 { e -= 1 }
    if i == e { return nil }
    let textStart = i
    var negative = false
    if base[i] == UInt8(ascii: "-") {
        negative = true
        i += 1
    } else if base[i] == UInt8(ascii: "+") {
        i += 1
    }
    let digitsStart = i
    var decimal = DecimalText()
    decimal.readMantissa(base, &i, e)
    if !decimal.sawDigit { return parseSpecial(base, digitsStart, e, negative: negative) }
    if i < e, base[i] | 0x20 == UInt8(ascii: "e") {
        i += 1
        guard decimal.readExponent(base, &i, e) else { return nil }
    }
    if i != e { return nil }
    return decimal.fastValue(negative: negative) ?? slowParse(base, textStart, e)
}

/// A decimal number's digits as `parseNumber` reads them: the first 19 significant digits (which
/// always fit a UInt64) and the power of ten that scales them. Lives in registers; nothing is allocated.
private struct DecimalText {
    var mantissa: UInt64 = 0
    var significant = 0
    var exponent = 0
    /// False once a non-zero digit past the 19th was dropped.
    var exact = true
    var sawDigit = false

    /// Reads the integer digits, then `.` and the fraction digits, from `base[i..<e]`, advancing `i`.
    @inline(__always)
    mutating func readMantissa(_ base: UnsafePointer<UInt8>, _ i: inout Int, _ e: Int) {
        while i < e, base[i] &- 48 < 10 {
            sawDigit = true
            let digit = UInt64(base[i] &- 48)
            if significant < 19 {
                mantissa = mantissa &* 10 &+ digit
                if mantissa != 0 { significant += 1 }
            } else {
                exponent += 1
                if digit != 0 { exact = false }
            }
            i += 1
        }
        if i < e, base[i] == UInt8(ascii: ".") {
            i += 1
            while i < e, base[i] &- 48 < 10 {
                sawDigit = true
                let digit = UInt64(base[i] &- 48)
                if significant < 19 {
                    mantissa = mantissa &* 10 &+ digit
                    if mantissa != 0 { significant += 1 }
                    exponent -= 1
                } else if digit != 0 {
                    exact = false
                }
                i += 1
            }
        }
    }

    /// Reads the exponent after `e`/`E` (optional sign, digits) from `base[i..<e]`, advancing `i`, and
    /// adds it to `exponent`; false when it has no digits.
    @inline(__always)
    mutating func readExponent(_ base: UnsafePointer<UInt8>, _ i: inout Int, _ e: Int) -> Bool {
        var exponentNegative = false
        if i < e, base[i] == UInt8(ascii: "-") {
            exponentNegative = true
            i += 1
        } else if i < e, base[i] == UInt8(ascii: "+") {
            i += 1
        }
        var written = 0
        var sawExponentDigit = false
        while i < e, base[i] &- 48 < 10 {
            sawExponentDigit = true
            if written < 100_000 { written = written * 10 + Int(base[i] &- 48) }  // saturate: far past any float
            i += 1
        }
        if !sawExponentDigit { return false }
        exponent += exponentNegative ? -written : written
        return true
    }

    /// The value, where Clinger's fast path rounds it correctly (the mantissa and the power of ten are
    /// both exact Doubles); nil where strtod has to.
    @inline(__always)
    func fastValue(negative: Bool) -> Float? {
        if mantissa == 0 { return negative ? -0.0 : 0 }
        if exponent == 0 && mantissa <= 1 << 53 {
            let value = Double(mantissa)
            return Float(negative ? -value : value)
        }
        if exact && mantissa <= 1 << 53 && exponent >= -22 && exponent <= 22 {
            let value = exponent < 0 ? Double(mantissa) / exactPowersOfTen[-exponent]
                : Double(mantissa) * exactPowersOfTen[exponent]
            return Float(negative ? -value : value)
        }
        return nil
    }
}

/// strtod on a NUL-terminated copy; only for text the fast path cannot round exactly.
private func slowParse(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Float {
    let length = end - start
    return withUnsafeTemporaryAllocation(of: CChar.self, capacity: length + 1) { buffer in
        for k in 0..<length { buffer[k] = CChar(bitPattern: base[start + k]) }
        buffer[length] = 0
        return Float(strtod(buffer.baseAddress!, nil))
    }
}

private func parseSpecial(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int, negative: Bool) -> Float? {
    var word = [UInt8]()
    for k in start..<end { word.append(base[k] | 0x20) }  // ASCII lower case
    switch String(decoding: word, as: UTF8.self) {
    case "nan": return .nan
    case "inf", "infinity": return negative ? -.infinity : .infinity
    default: return nil
    }
}
