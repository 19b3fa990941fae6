#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The CPU the numeric kernels were compiled for. On an x86-64 host with the Haswell feature set,
/// Package.swift compiles PSMath for Haswell-class CPUs (AVX2, FMA, BMI…) and defines `PS_AVX2` here, so each executable can refuse
/// to start on a CPU without those instructions — a binary copied to an older host stops with this
/// message instead of dying of an illegal instruction mid-step. `PS_PORTABLE_BUILD=1 swift build`
/// builds for any x86-64.
public enum BuildTarget {
    #if PS_AVX2
    /// What `-target-cpu haswell` lets the compiler use in ordinary code, as /proc/cpuinfo names it
    /// (`abm` is LZCNT).
    public static let requiredCPUFlags = ["avx", "avx2", "fma", "bmi1", "bmi2", "abm", "movbe", "f16c", "popcnt"]
    #else
    public static let requiredCPUFlags: [String] = []
    #endif

    /// The flags of `requiredCPUFlags` that this CPU's `/proc/cpuinfo` does not list (none when it
    /// cannot be read: the check is advice, not a gate on other systems).
    public static func missingCPUFlags(cpuinfo path: String = "/proc/cpuinfo") -> [String] {
        guard !requiredCPUFlags.isEmpty, let flags = cpuFlags(cpuinfo: path) else { return [] }
        return requiredCPUFlags.filter { !flags.contains($0) }
    }

    /// The instruction-set flags of this CPU as the kernel lists them in `/proc/cpuinfo` (only those
    /// the kernel has enabled, so AVX-512 is listed only where the OS saves its registers); nil when the
    /// file cannot be read or has no flags line.
    public static func cpuFlags(cpuinfo path: String = "/proc/cpuinfo") -> Set<String>? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            guard text.hasPrefix("flags") else { continue }
            let list = text.split(separator: ":", maxSplits: 1).last ?? ""
            return Set(list.split(whereSeparator: \.isWhitespace).map(String.init))
        }
        return nil
    }

    /// Exits with a message naming the missing instructions when this CPU cannot run the binary.
    public static func requireSupportedCPU(program: String) {
        let missing = missingCPUFlags()
        guard !missing.isEmpty else { return }
        let message = "\(program): this binary was built for CPUs with \(requiredCPUFlags.joined(separator: ", ")); "
            + "this CPU lacks \(missing.joined(separator: ", ")). Rebuild it on this host, or with "
            + "PS_PORTABLE_BUILD=1 for any x86-64.\n"
        _ = message.withCString { write(2, $0, strlen($0)) }
        exit(1)
    }
}
