import PSCore
import Yams

/// The text formats a job spec may be written in. JSON is read with the same schema as YAML.
public enum SpecFormat: String, Sendable, CaseIterable {
    case yaml
    case json
}

/// A spec document before validation. YAML and JSON both become this tree, so that one validator
/// serves both formats, overrides edit one shape, and the encoder writes one shape back.
struct SpecNode {
    enum Value {
        /// YAML `~`, `null` or an empty value; treated as an absent field.
        case null
        case bool(Bool)
        /// Any integer literal; -0 is stored as 0.
        case integer(negative: Bool, magnitude: UInt64)
        /// An integer literal beyond ±(2^64 − 1): rejected wherever a number is expected.
        case hugeInteger
        case number(Double)
        case string(String)
        case mapping([Entry])
        case sequence([SpecNode])
    }

    struct Entry {
        var key: String
        /// Where the key was written (used for unknown-key errors).
        var keyLocation: String?
        var value: SpecNode
    }

    var value: Value
    /// The scalar as written (`0x10`, `1e-3`, `abc`), for messages and exact float32 parsing.
    var text: String
    /// `source:LINE` or `override 'PATH=VALUE'`; nil where unknown.
    var location: String?

    init(_ value: Value, text: String = "", location: String? = nil) {
        self.value = value
        self.text = text
        self.location = location
    }

    /// How the node is described after "got" in messages.
    var described: String {
        switch value {
        case .null: return "null"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        default: return "'\(text)'"
        }
    }

    var isNull: Bool {
        if case .null = value { return true }
        return false
    }

    /// Not a mapping, list or null.
    var isScalar: Bool {
        switch value {
        case .null, .mapping, .sequence: return false
        default: return true
        }
    }
}

// MARK: - YAML

extension SpecNode {
    /// Parses YAML text with Yams and converts it, keeping each node's line as `source:LINE`, or
    /// marking every node with `locationOverride` (override values, whose lines mean nothing).
    static func parseYAML(_ text: String, source: String,
                          locationOverride: String? = nil) throws(SpecError) -> SpecNode? {
        try checkFlowDepth(text, source: source)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw SpecError(field: "", message: "not valid YAML: \(yamlProblem(error))",
                            location: yamlLocation(error, source: source))
        } catch {
            throw SpecError(field: "", message: "not valid YAML: \(error)", location: source)
        }
        guard let root else { return nil }
        var budget = Limits.specNodesMax
        return try convert(root, source: source, locationOverride: locationOverride, budget: &budget)
    }

    /// Rejects YAML whose flow collections (`[`, `{`) nest deeper than `Limits.specDepthMax` before
    /// Yams, which recurses once per level, reads it. Brackets inside strings and comments count too,
    /// which only errs on the side of refusing text no real spec contains.
    private static func checkFlowDepth(_ text: String, source: String) throws(SpecError) {
        var depth = 0
        var line = 1
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > Limits.specDepthMax {
                    throw SpecError(field: "", message: "nested deeper than \(Limits.specDepthMax) levels "
                        + "(Limits.specDepthMax)", location: "\(source):\(line)")
                }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth = max(0, depth - 1)
            case UInt8(ascii: "\n"):
                line += 1
            default:
                break
            }
        }
    }

    /// Converts a Yams node; `locationOverride` replaces marks (used for override values). Every node
    /// spends one unit of `budget`, so aliases cannot multiply the tree past `Limits.specNodesMax`.
    static func convert(_ node: Node, source: String, locationOverride: String? = nil,
                        budget: inout Int) throws(SpecError) -> SpecNode {
        func location(_ mark: Mark?) -> String? {
            if let locationOverride { return locationOverride }
            guard let mark else { return source }
            return "\(source):\(mark.line)"
        }
        budget -= 1
        guard budget >= 0 else {
            throw SpecError(field: "", message: "the document has more than \(Limits.specNodesMax) values "
                + "(Limits.specNodesMax; aliases count once per use)", location: location(node.mark))
        }
        switch node {
        case let .mapping(mapping):
            var entries: [Entry] = []
            for pair in mapping {
                entries.append(Entry(key: pair.key.scalar?.string ?? String(describing: pair.key),
                                     keyLocation: location(pair.key.mark),
                                     value: try convert(pair.value, source: source, locationOverride: locationOverride,
                                                        budget: &budget)))
            }
            return SpecNode(.mapping(entries), location: location(mapping.mark))
        case let .sequence(sequence):
            var items: [SpecNode] = []
            for item in sequence {
                items.append(try convert(item, source: source, locationOverride: locationOverride, budget: &budget))
            }
            return SpecNode(.sequence(items), location: location(sequence.mark))
        case let .scalar(scalar):
            return SpecNode(scalarValue(scalar, tag: Resolver.default.resolveTag(of: node)), text: scalar.string,
                            location: location(scalar.mark))
        }
    }

    /// Resolves a YAML 1.1 scalar the way Yams does: quoted scalars are strings, plain ones may be
    /// null, booleans, integers (decimal, 0x, 0o, 0b) or floats (including .inf and .nan).
    private static func scalarValue(_ scalar: Node.Scalar, tag: Tag.Name) -> Value {
        switch tag {
        case .null:
            return .null
        case .bool:
            if let b = Bool.construct(from: scalar) { return .bool(b) }
        case .int:
            if let v = Int64.construct(from: scalar) {
                return .integer(negative: v < 0, magnitude: v.magnitude)
            }
            if let v = UInt64.construct(from: scalar) {
                return .integer(negative: false, magnitude: v)
            }
            // `-0` and `+0` are not understood by Yams's radix detection.
            let digits = scalar.string.replacingOccurrences(of: "_", with: "")
            if digits == "-0" || digits == "+0" { return .integer(negative: false, magnitude: 0) }
            return .hugeInteger
        case .float:
            if let d = Double.construct(from: scalar) { return .number(d) }
        default:
            break
        }
        return .string(scalar.string)
    }

    private static func yamlProblem(_ error: YamlError) -> String {
        switch error {
        case let .scanner(_, problem, _, _), let .parser(_, problem, _, _), let .composer(_, problem, _, _):
            return problem
        case let .reader(problem, _, _, _):
            return problem
        default:
            return "\(error)"
        }
    }

    private static func yamlLocation(_ error: YamlError, source: String) -> String {
        switch error {
        case let .scanner(_, _, mark, _), let .parser(_, _, mark, _), let .composer(_, _, mark, _):
            return "\(source):\(mark.line)"
        default:
            return source
        }
    }
}

// MARK: - JSON

extension SpecNode {
    /// Parses strict JSON (RFC 8259) into the tree, keeping each value's line. A small hand-written
    /// reader rather than Foundation's: it keeps key order and lines, and never confuses `1` and `true`.
    static func parseJSON(_ text: String, source: String) throws(SpecError) -> SpecNode {
        var reader = JSONReader(bytes: Array(text.utf8), source: source)
        return try reader.document()
    }
}

private struct JSONReader {
    let bytes: [UInt8]
    let source: String
    var index = 0
    var line = 1
    static let depthMax = Limits.specDepthMax

    init(bytes: [UInt8], source: String) {
        self.bytes = bytes
        self.source = source
    }

    var location: String { "\(source):\(line)" }

    func fail(_ message: String) -> SpecError {
        SpecError(field: "", message: "not valid JSON: \(message)", location: location)
    }

    mutating func document() throws(SpecError) -> SpecNode {
        skipSpace()
        let node = try value(depth: 0)
        skipSpace()
        guard index == bytes.count else { throw fail("unexpected text after the document") }
        return node
    }

    mutating func skipSpace() {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\n"): line += 1
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"): break
            default: return
            }
            index += 1
        }
    }

    mutating func value(depth: Int) throws(SpecError) -> SpecNode {
        guard depth < Self.depthMax else { throw fail("nested deeper than \(Self.depthMax) levels") }
        guard index < bytes.count else { throw fail("unexpected end of text") }
        let start = location
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var entries: [SpecNode.Entry] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return SpecNode(.mapping(entries), location: start)
            }
            while true {
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                    throw fail("expected a quoted key")
                }
                let keyLocation = location
                let key = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                let item = try value(depth: depth + 1)
                entries.append(SpecNode.Entry(key: key, keyLocation: keyLocation, value: item))
                skipSpace()
                if try endOf(container: "}") { break }
            }
            return SpecNode(.mapping(entries), location: start)
        case UInt8(ascii: "["):
            index += 1
            var items: [SpecNode] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return SpecNode(.sequence(items), location: start)
            }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                if try endOf(container: "]") { break }
            }
            return SpecNode(.sequence(items), location: start)
        case UInt8(ascii: "\""):
            let s = try string()
            return SpecNode(.string(s), text: s, location: start)
        case UInt8(ascii: "t"):
            try literal("true")
            return SpecNode(.bool(true), text: "true", location: start)
        case UInt8(ascii: "f"):
            try literal("false")
            return SpecNode(.bool(false), text: "false", location: start)
        case UInt8(ascii: "n"):
            try literal("null")
            return SpecNode(.null, text: "null", location: start)
        default:
            return try number(location: start)
        }
    }

    /// After an element: consumes `,` (returns false) or the closing bracket (returns true).
    mutating func endOf(container close: Unicode.Scalar) throws(SpecError) -> Bool {
        guard index < bytes.count else { throw fail("unexpected end of text") }
        if bytes[index] == UInt8(ascii: ",") { index += 1; return false }
        if bytes[index] == UInt8(ascii: close) { index += 1; return true }
        throw fail("expected ',' or '\(close)'")
    }

    mutating func expect(_ c: Unicode.Scalar) throws(SpecError) {
        guard index < bytes.count, bytes[index] == UInt8(ascii: c) else { throw fail("expected '\(c)'") }
        index += 1
    }

    mutating func literal(_ word: String) throws(SpecError) {
        for c in word.utf8 {
            guard index < bytes.count, bytes[index] == c else { throw fail("expected '\(word)'") }
            index += 1
        }
    }

    mutating func number(location: String) throws(SpecError) -> SpecNode {
        let start = index
        func digits() -> Int {
            let from = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                index += 1
            }
            return index - from
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        let intStart = index
        let intDigits = digits()
        guard intDigits > 0 else { throw fail("unexpected character") }
        guard intDigits == 1 || bytes[intStart] != UInt8(ascii: "0") else { throw fail("leading zero in a number") }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            isInteger = false
            guard digits() > 0 else { throw fail("expected digits after '.'") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            isInteger = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw fail("expected digits in the exponent") }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if isInteger {
            let negative = bytes[start] == UInt8(ascii: "-")
            let magnitudeText = negative ? String(text.dropFirst()) : text
            guard let magnitude = UInt64(magnitudeText) else { return SpecNode(.hugeInteger, text: text, location: location) }
            return SpecNode(.integer(negative: negative && magnitude != 0, magnitude: magnitude), text: text, location: location)
        }
        // Strict JSON number syntax is a subset of what Double(_:) reads.
        return SpecNode(.number(Double(text)!), text: text, location: location)
    }

    mutating func string() throws(SpecError) -> String {
        index += 1  // opening quote
        var scalars = String.UnicodeScalarView()
        var pendingHigh: UInt32?
        while true {
            guard index < bytes.count else { throw fail("unterminated string") }
            let b = bytes[index]
            if b == UInt8(ascii: "\"") { index += 1; break }
            guard b >= 0x20 else { throw fail("control character in a string") }
            if b == UInt8(ascii: "\\") {
                index += 1
                guard index < bytes.count else { throw fail("unterminated string") }
                let e = bytes[index]
                index += 1
                let simple: Unicode.Scalar?
                switch e {
                case UInt8(ascii: "\""): simple = "\""
                case UInt8(ascii: "\\"): simple = "\\"
                case UInt8(ascii: "/"): simple = "/"
                case UInt8(ascii: "b"): simple = "\u{08}"
                case UInt8(ascii: "f"): simple = "\u{0C}"
                case UInt8(ascii: "n"): simple = "\n"
                case UInt8(ascii: "r"): simple = "\r"
                case UInt8(ascii: "t"): simple = "\t"
                case UInt8(ascii: "u"): simple = nil
                default: throw fail("unknown escape '\\\(Unicode.Scalar(e))'")
                }
                if let simple {
                    guard pendingHigh == nil else { throw fail("unpaired surrogate") }
                    scalars.append(simple)
                    continue
                }
                guard index + 4 <= bytes.count,
                      let unit = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16)
                else { throw fail("expected four hex digits after '\\u'") }
                index += 4
                if let high = pendingHigh {
                    guard (0xDC00...0xDFFF).contains(unit) else { throw fail("unpaired surrogate") }
                    pendingHigh = nil
                    scalars.append(Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00))!)
                } else if (0xD800...0xDBFF).contains(unit) {
                    pendingHigh = unit
                } else if let scalar = Unicode.Scalar(unit) {
                    scalars.append(scalar)
                } else {
                    throw fail("unpaired surrogate")
                }
                continue
            }
            guard pendingHigh == nil else { throw fail("unpaired surrogate") }
            // Copy one UTF-8 sequence; the input came from a String, so it is valid UTF-8.
            let length = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
            let end = min(index + length, bytes.count)
            scalars.append(contentsOf: String(decoding: bytes[index..<end], as: UTF8.self).unicodeScalars)
            index = end
        }
        guard pendingHigh == nil else { throw fail("unpaired surrogate") }
        return String(scalars)
    }
}
