import Foundation
import PSCore

// Reading a spec: text → document tree (SpecDocument.swift) → overrides (SpecOverride.swift) →
// validation (SpecValidator.swift and SpecValidator+Training.swift, reading typed fields through
// SpecFields.swift) → JobSpec.

extension JobSpec {
    /// Parses a spec written in YAML or JSON, applies `overrides` (`PATH=VALUE`, VALUE read as YAML)
    /// and validates every field. Relative data paths are joined to `baseDirectory` (kept relative
    /// when it is nil); files are not opened here. `source` names the text in error locations.
    public static func parse(_ text: String, format: SpecFormat, source: String = "spec",
                             baseDirectory: String? = nil, overrides: [String] = []) throws(SpecError) -> JobSpec {
        let bytes = text.utf8.count
        guard bytes <= Limits.specBytesMax else {
            throw SpecError(field: "", message: "spec is \(bytes) bytes; at most \(Limits.specBytesMax) are read",
                            location: source)
        }
        var root: SpecNode
        switch format {
        case .yaml:
            guard let node = try SpecNode.parseYAML(text, source: source) else {
                throw SpecError(field: "", message: "the spec is empty", location: source)
            }
            root = node
        case .json:
            root = try SpecNode.parseJSON(text, source: source)
        }
        for override in overrides {
            try SpecOverride.apply(override, to: &root)
        }
        return try SpecValidator(baseDirectory: baseDirectory).jobSpec(root)
    }

    /// Reads and parses a spec file. The format comes from the extension (`.yaml`, `.yml`, `.json`);
    /// relative data paths are resolved against the file's folder, made absolute so that the spec
    /// means the same on every host that sees the same filesystem.
    public static func load(path: String, overrides: [String] = []) throws(SpecError) -> JobSpec {
        let format: SpecFormat
        switch (path as NSString).pathExtension.lowercased() {
        case "yaml", "yml": format = .yaml
        case "json": format = .json
        default:
            throw SpecError(field: "", message: "unknown spec file extension (expected .yaml, .yml or .json)",
                            location: path)
        }
        let data: Data
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            // One byte past the limit is enough to know the file is too large.
            data = try handle.read(upToCount: Limits.specBytesMax + 1) ?? Data()
        } catch {
            throw SpecError(field: "", message: "cannot read the spec: \(error.localizedDescription)", location: path)
        }
        guard data.count <= Limits.specBytesMax else {
            throw SpecError(field: "", message: "spec file is larger than \(Limits.specBytesMax) bytes", location: path)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SpecError(field: "", message: "the spec is not UTF-8 text", location: path)
        }
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let folder = SpecPath.normalize(absolute + "/..")
        return try parse(text, format: format, source: path, baseDirectory: folder, overrides: overrides)
    }
}

/// Lexical path handling: no filesystem access, so parsing stays pure and gives the same answer on
/// every host.
enum SpecPath {
    /// Removes `.` and empty components and folds `name/..`; leading `..` of a relative path stay.
    static func normalize(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".":
                continue
            case "..":
                if let last = parts.last, last != ".." {
                    parts.removeLast()
                } else if !absolute {
                    parts.append(part)
                }
            default:
                parts.append(part)
            }
        }
        let joined = parts.joined(separator: "/")
        if absolute { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }

    /// Joins a relative path to `base`; absolute paths are only normalised.
    static func resolve(_ path: String, base: String?) -> String {
        if path.hasPrefix("/") { return normalize(path) }
        guard let base else { return normalize(path) }
        return normalize(base + "/" + path)
    }
}
