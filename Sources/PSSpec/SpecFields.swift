import Foundation

/// One field of the document: its node and its full path, with typed readers whose errors name both.
struct SpecField {
    let node: SpecNode
    let path: String

    func error(_ message: String) -> SpecError {
        SpecError(field: path, message: message, location: node.location)
    }

    func int() throws(SpecError) -> Int {
        switch node.value {
        case let .integer(negative, magnitude):
            guard magnitude <= UInt64(Int.max) else { throw error("integer \(node.text) is out of range") }
            return negative ? -Int(magnitude) : Int(magnitude)
        case .hugeInteger:
            throw error("integer \(node.text) is out of range")
        default:
            throw error("expected an integer, got \(node.described)")
        }
    }

    /// An integer in `range`; the message shows the accepted range and, where given, why it ends there.
    func int(in range: ClosedRange<Int>, limit: String? = nil) throws(SpecError) -> Int {
        let value = try int()
        guard range.contains(value) else {
            let why = limit.map { " (\($0))" } ?? ""
            if range.upperBound == Int.max { throw error("must be at least \(range.lowerBound), got \(value)") }
            throw error("must be between \(range.lowerBound) and \(range.upperBound)\(why), got \(value)")
        }
        return value
    }

    func uint64() throws(SpecError) -> UInt64 {
        switch node.value {
        case let .integer(negative, magnitude):
            guard !negative else { throw error("must be between 0 and 2^64-1, got \(node.text)") }
            return magnitude
        case .hugeInteger:
            throw error("must be between 0 and 2^64-1, got \(node.text)")
        default:
            throw error("expected an integer, got \(node.described)")
        }
    }

    /// A finite number; integers are accepted, booleans and strings are not.
    func double() throws(SpecError) -> Double {
        let value: Double
        switch node.value {
        case let .integer(negative, magnitude):
            value = negative ? -Double(magnitude) : Double(magnitude)
        case let .number(d):
            value = d
        case .hugeInteger:
            throw error("number \(node.text) is out of range")
        default:
            throw error("expected a number, got \(node.described)")
        }
        guard value.isFinite else { throw error("expected a finite number, got \(node.described)") }
        return value
    }

    /// A finite float32. Read from the text itself (not via Double) so that the shortest decimal a
    /// Float prints parses back to exactly that Float.
    func float() throws(SpecError) -> Float {
        let wide = try double()
        var text = node.text.replacingOccurrences(of: "_", with: "")
        if text.hasPrefix("+") { text.removeFirst() }
        let value = Float(text) ?? Float(wide)
        guard value.isFinite else { throw error("\(node.text) is out of range for a 32-bit float") }
        return value
    }

    func bool() throws(SpecError) -> Bool {
        guard case let .bool(b) = node.value else { throw error("expected true or false, got \(node.described)") }
        return b
    }

    /// Any scalar's text: `name: 123` is the name "123".
    func string() throws(SpecError) -> String {
        switch node.value {
        case .mapping, .sequence, .null:
            throw error("expected a string, got \(node.described)")
        case let .string(s):
            return s
        default:
            return node.text
        }
    }

    /// One of an enum's raw values; the message lists them all.
    func choice<E: RawRepresentable & CaseIterable>(_ what: String, _ type: E.Type = E.self) throws(SpecError) -> E
        where E.RawValue == String {
        let text = try string()
        guard let value = E(rawValue: text) else {
            let expected = E.allCases.map(\.rawValue).joined(separator: ", ")
            throw error("unknown \(what) '\(text)' (expected \(expected))")
        }
        return value
    }
}

/// A mapping of the document whose keys have been checked against the schema.
struct SpecFields {
    let node: SpecNode
    let path: String
    private var values: [String: SpecNode] = [:]

    /// Rejects a non-mapping, unknown keys (listing `allowed`, with `context` saying why where the
    /// list depends on another field) and duplicate keys.
    init(_ field: SpecField, allowed: [String], context: String? = nil) throws(SpecError) {
        node = field.node
        path = field.path
        guard case let .mapping(entries) = node.value else {
            throw field.error("expected a mapping, got \(node.described)")
        }
        for entry in entries {
            let child = Self.join(path, entry.key)
            guard allowed.contains(entry.key) else {
                let why = context.map { " for \($0)" } ?? ""
                throw SpecError(field: child,
                                message: "unknown key '\(entry.key)' (expected \(allowed.joined(separator: ", "))\(why))",
                                location: entry.keyLocation)
            }
            guard values[entry.key] == nil else {
                throw SpecError(field: child, message: "duplicate key '\(entry.key)'", location: entry.keyLocation)
            }
            values[entry.key] = entry.value
        }
    }

    static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// The field, or nil when it is absent or null (null means "use the default").
    func optional(_ key: String) -> SpecField? {
        guard let value = values[key], !value.isNull else { return nil }
        return SpecField(node: value, path: Self.join(path, key))
    }

    func required(_ key: String) throws(SpecError) -> SpecField {
        guard let field = optional(key) else {
            throw SpecError(field: Self.join(path, key), message: "required field missing", location: node.location)
        }
        return field
    }

    /// Every present key, in schema order, for rules that apply per key.
    func presentKeys(in order: [String]) -> [String] {
        order.filter { optional($0) != nil }
    }
}
