#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PSCore

/// The folders a worker reads job data from (`ps-worker --data-root DIR`, repeatable). A job's data
/// paths are resolved (symlinks and `..` included) and must lie inside one of them, and every data
/// file must be a regular file (never a FIFO, a device or a folder), whatever the roots. The reasons
/// name the spec field and the path, never anything read from the file.
public struct DataRoots: Sendable, Equatable {
    /// The roots, resolved. Empty: any path (only the regular-file rule applies).
    public let roots: [String]

    /// Resolves each root; one that does not exist or is not a folder is an error naming it.
    public init(_ paths: [String]) throws(DataRootsError) {
        var resolved: [String] = []
        for path in paths {
            guard let real = Self.resolve(path) else {
                throw DataRootsError("--data-root \(path): \(String(cString: strerror(errno)))")
            }
            guard Self.kind(real) == S_IFDIR else { throw DataRootsError("--data-root \(path): not a folder") }
            resolved.append(real)
        }
        roots = resolved
    }

    /// Why this worker must not run `spec`, or nil when every data file is a regular file inside a root.
    public func refusal(_ spec: JobSpec) -> String? {
        for (field, path) in spec.dataPaths {
            // realpath(3) would read the path only up to a NUL and judge another file.
            if path.utf8.contains(0) {
                return "\(field): \(path.replacingOccurrences(of: "\0", with: "\\0")): a path cannot hold a NUL byte"
            }
            guard let real = Self.resolve(path) else {
                return "\(field): \(path): \(String(cString: strerror(errno)))"
            }
            if !roots.isEmpty, !roots.contains(where: { real == $0 || real.hasPrefix($0 == "/" ? "/" : $0 + "/") }) {
                let shown = real == path ? path : "\(path) (which resolves to \(real))"
                return "\(field): \(shown) is outside this worker's data roots (\(roots.joined(separator: ", ")))"
            }
            let kind = Self.kind(real)
            guard kind == S_IFREG else {
                return "\(field): \(path) is \(Self.describe(kind)), not a regular file"
            }
        }
        return nil
    }

    static func resolve(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }

    static func kind(_ path: String) -> mode_t? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return st.st_mode & S_IFMT
    }

    static func describe(_ kind: mode_t?) -> String {
        switch kind {
        case S_IFDIR: "a folder"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "not a plain file"
        }
    }
}

public struct DataRootsError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
