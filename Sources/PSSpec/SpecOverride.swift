import Foundation

/// `PATH=VALUE` edits applied to the document tree before validation, so an override is checked
/// exactly like the field it replaces.
enum SpecOverride {
    enum Segment: Equatable {
        case key(String)
        case index(Int)
    }

    static func apply(_ override: String, to root: inout SpecNode) throws(SpecError) {
        let location = "override '\(override)'"
        guard let equals = override.firstIndex(of: "=") else {
            throw SpecError(field: "", message: "expected PATH=VALUE, e.g. training.epochs=3", location: location)
        }
        let path = String(override[..<equals])
        let valueText = String(override[override.index(after: equals)...])
        guard let segments = parsePath(path) else {
            throw SpecError(field: path, message: "not a field path (expected keys joined by '.', list entries as [N])",
                            location: location)
        }
        try checkAgainstSchema(segments, path: path, location: location)

        let value: SpecNode
        do {
            value = try SpecNode.parseYAML(valueText, source: location, locationOverride: location)
                ?? SpecNode(.null, text: valueText, location: location)
        } catch {
            throw SpecError(field: path, message: "the value is \(error.message)", location: location)
        }
        try set(value, at: segments[...], in: &root, walked: "", location: location)
    }

    /// `a.b[0].c` → [.key(a), .key(b), .index(0), .key(c)]; nil when malformed.
    static func parsePath(_ path: String) -> [Segment]? {
        var segments: [Segment] = []
        var rest = Substring(path)
        var expectKey = true
        while !rest.isEmpty {
            if rest.first == "[" {
                guard let close = rest.firstIndex(of: "]"), let n = Int(rest[rest.index(after: rest.startIndex)..<close]),
                      n >= 0, !segments.isEmpty else { return nil }
                segments.append(.index(n))
                rest = rest[rest.index(after: close)...]
                expectKey = false
                continue
            }
            if !expectKey {
                guard rest.first == "." else { return nil }
                rest = rest.dropFirst()
            }
            let key = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            guard !key.isEmpty else { return nil }
            segments.append(.key(String(key)))
            rest = rest[key.endIndex...]
            expectKey = false
        }
        return segments.isEmpty ? nil : segments
    }

    /// Rejects a path the schema does not have, naming the keys that exist at that level.
    private static func checkAgainstSchema(_ segments: [Segment], path: String, location: String) throws(SpecError) {
        var template = ""
        for segment in segments {
            switch segment {
            case let .key(key):
                guard let keys = SpecSchema.keys(atTemplate: template), keys.contains(key) else {
                    let expected = SpecSchema.keys(atTemplate: template).map { " (expected \($0.joined(separator: ", ")))" }
                    let at = template.isEmpty ? "" : " under \(template.replacingOccurrences(of: "[]", with: "[N]"))"
                    throw SpecError(field: path, message: "unknown field '\(key)'\(at)\(expected ?? "")",
                                    location: location)
                }
                template = template.isEmpty ? key : "\(template).\(key)"
            case .index:
                guard SpecSchema.lists.contains(template) else {
                    throw SpecError(field: path, message: "\(template) is not a list", location: location)
                }
                template += "[]"
            }
        }
    }

    /// `model.layers[2].units` → `model.layers[].units`, as `SpecSchema` names paths.
    private static func template(_ path: String) -> String {
        path.replacingOccurrences(of: #"\[[0-9]+\]"#, with: "[]", options: .regularExpression)
    }

    private static func set(_ value: SpecNode, at segments: ArraySlice<Segment>, in node: inout SpecNode,
                            walked: String, location: String) throws(SpecError) {
        guard let segment = segments.first else {
            node = value
            return
        }
        let rest = segments.dropFirst()
        switch segment {
        case let .key(key):
            if node.isNull { node = SpecNode(.mapping([]), location: location) }
            if let shorthand = SpecSchema.shorthands[template(walked)], node.isScalar {
                node = SpecNode(.mapping([SpecNode.Entry(key: shorthand, keyLocation: node.location, value: node)]),
                                location: node.location)
            }
            guard case var .mapping(entries) = node.value else {
                throw SpecError(field: walked, message: "cannot set '\(key)': \(walked) is \(node.described), not a mapping",
                                location: location)
            }
            let here = walked.isEmpty ? key : "\(walked).\(key)"
            // The last duplicate is the one a reader would notice; validation rejects duplicates anyway.
            let i: Int
            if let found = entries.lastIndex(where: { $0.key == key }) {
                i = found
            } else {
                entries.append(SpecNode.Entry(key: key, keyLocation: location,
                                              value: SpecNode(.null, location: location)))
                i = entries.count - 1
            }
            node.value = .null  // drop the second reference so the edit below does not copy
            try set(value, at: rest, in: &entries[i].value, walked: here, location: location)
            node.value = .mapping(entries)
        case let .index(n):
            guard case var .sequence(items) = node.value else {
                throw SpecError(field: walked, message: "\(walked) is \(node.described), not a list", location: location)
            }
            guard n < items.count else {
                throw SpecError(field: "\(walked)[\(n)]",
                                message: "index \(n) is out of range (\(walked) has \(items.count) entries)",
                                location: location)
            }
            node.value = .null
            try set(value, at: rest, in: &items[n], walked: "\(walked)[\(n)]", location: location)
            node.value = .sequence(items)
        }
    }
}
