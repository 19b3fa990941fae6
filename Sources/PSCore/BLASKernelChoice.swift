/// Which OpenBLAS kernel a program computes with, decided once at start-up. Debian 12's OpenBLAS
/// 0.3.21 picks its kernel from the CPU model; on a CPU newer than it knows (Intel family 6 model 207,
/// for one) it falls back to **Prescott**, an SSE3 kernel that runs `sgemm` at about a fifth of the
/// speed the CPU's AVX-512 allows. OpenBLAS reads `OPENBLAS_CORETYPE` only while the library loads, so
/// the fix is to start the program again with the variable set (`ComputeEnvironment` does the exec).
///
/// Rules, in order:
/// 1. `OPENBLAS_CORETYPE` set by the user: always respected.
/// 2. Set by our own restart (`PS_BLAS_KERNEL_CHOSEN` holds `FALLBACK>CHOSEN`): the chosen kernel, and
///    a warning if OpenBLAS did not take it.
/// 3. `PS_BLAS_KERNEL_CHOICE=off`: OpenBLAS's pick stays, with a warning if it is a fallback.
/// 4. OpenBLAS picked a pre-AVX2 fallback on a CPU with AVX2 and FMA (or AVX-512): restart with the
///    best kernel of OpenBLAS 0.3.21 that the CPU supports.
/// 5. Otherwise OpenBLAS's pick stays.
///
/// Pure: the kernel OpenBLAS picked, the CPU's flags and the environment come in as values.
public enum BLASKernelChoice {
    /// Set by the restart, read by the restarted process: `FALLBACK>CHOSEN`.
    public static let chosenVariable = "PS_BLAS_KERNEL_CHOSEN"
    /// `auto` (default; also when empty) or `off`, in any case.
    public static let switchVariable = "PS_BLAS_KERNEL_CHOICE"
    /// OpenBLAS's own variable, read when the library loads.
    public static let coretypeVariable = "OPENBLAS_CORETYPE"
    /// Tests only: treat OpenBLAS's pick as this kernel, so the restart can be exercised on a CPU that
    /// OpenBLAS knows (nothing else can make it fall back). Ignored once `OPENBLAS_CORETYPE` is set.
    public static let testPickedVariable = "PS_BLAS_TEST_PICKED"

    /// OpenBLAS 0.3.21's x86-64 kernels that use neither AVX2 nor AVX-512, as `openblas_get_corename`
    /// names them (lower-cased): what it runs on a CPU it does not recognise, and too slow for one with
    /// AVX2. Kernels not listed here (Haswell, Zen, SkylakeX, Cooperlake…) are never replaced.
    public static let preAVX2Kernels: Set<String> = [
        "katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn", "dunnington",
        "nehalem", "athlon", "opteron", "opteron_sse3", "barcelona", "nano", "bobcat", "sandybridge",
        "bulldozer", "piledriver", "steamroller", "unknown",
    ]

    /// The best kernel of OpenBLAS 0.3.21 this CPU runs, from its `/proc/cpuinfo` flags: Cooperlake
    /// (AVX-512 with BF16), SkylakeX (AVX-512 F/CD/BW/DQ/VL), Haswell (AVX2 and FMA); nil below that.
    public static func bestKernel(cpuFlags flags: Set<String>) -> String? {
        let avx512 = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains)
        if avx512 && flags.contains("avx512_bf16") { return "Cooperlake" }
        if avx512 { return "SkylakeX" }
        if flags.contains("avx2") && flags.contains("fma") { return "Haswell" }
        return nil
    }

    public static func isPreAVX2(_ kernel: String) -> Bool { preAVX2Kernels.contains(kernel.lowercased()) }

    public enum Decision: Equatable, Sendable {
        /// Compute with the kernel loaded; `reason` goes in the start-up log line, `warning` marks a
        /// line that should be a warning (a slow or refused kernel).
        case keep(kernel: String, reason: String, warning: Bool)
        /// Start this program again with `OPENBLAS_CORETYPE=kernel` and `PS_BLAS_KERNEL_CHOSEN=marker`.
        case restart(kernel: String, marker: String, reason: String)
        /// A variable of ours holds a value we do not understand (exit 2 with this message).
        case invalid(String)
    }

    /// `picked`: what `openblas_get_corename` says now; `cpuFlags`: nil where /proc/cpuinfo is unreadable.
    public static func decide(picked: String, cpuFlags: Set<String>?, environment env: [String: String]) -> Decision {
        // Labelled only where the simulated pick decided something (not under a user's own OPENBLAS_CORETYPE).
        let userSet = env[coretypeVariable].map { !$0.isEmpty } ?? false
        let simulated = (env[testPickedVariable].map { !$0.isEmpty } ?? false) && (!userSet || env[chosenVariable] != nil)
        switch decideFor(picked: picked, cpuFlags: cpuFlags, environment: env) {
        case let .keep(kernel, reason, warning) where simulated:
            return .keep(kernel: kernel, reason: reason + " [pick simulated by \(testPickedVariable)]", warning: warning)
        case let decision:
            return decision
        }
    }

    private static func decideFor(picked: String, cpuFlags: Set<String>?, environment env: [String: String]) -> Decision {
        let best = cpuFlags.flatMap(bestKernel(cpuFlags:))
        if let asked = env[coretypeVariable], !asked.isEmpty {
            if let marker = env[chosenVariable], let arrow = marker.firstIndex(of: ">"),
               marker[marker.index(after: arrow)...].lowercased() == asked.lowercased() {
                let fallback = String(marker[..<arrow])
                if picked.lowercased() == asked.lowercased() {
                    return .keep(kernel: picked, reason: "chosen at start-up: OpenBLAS picked its \(fallback) fallback on this CPU, "
                                 + "which runs \(asked); \(switchVariable)=off keeps OpenBLAS's pick", warning: false)
                }
                return .keep(kernel: picked, reason: "asked OpenBLAS for \(asked) instead of its \(fallback) fallback, "
                             + "but it runs \(picked)", warning: true)
            }
            if picked.lowercased() == asked.lowercased() {
                return .keep(kernel: picked, reason: "\(coretypeVariable)=\(asked) set in the environment", warning: false)
            }
            return .keep(kernel: picked, reason: "\(coretypeVariable)=\(asked) set in the environment, but OpenBLAS runs \(picked)",
                         warning: true)
        }
        // Read only here, where it matters: empty is the default, case does not matter.
        let choice = (env[switchVariable] ?? "").lowercased()
        guard ["", "auto", "off"].contains(choice) else {
            return .invalid("\(switchVariable)='\(env[switchVariable] ?? "")' is not 'auto' or 'off'")
        }
        let effective = env[testPickedVariable].flatMap { $0.isEmpty ? nil : $0 } ?? picked
        guard isPreAVX2(effective), let best else {
            let note = best == nil && isPreAVX2(effective) ? "; this CPU has no AVX2/FMA" : ""
            return .keep(kernel: picked, reason: "OpenBLAS's own choice for this CPU\(note)", warning: false)
        }
        if choice == "off" {
            return .keep(kernel: picked, reason: "OpenBLAS fell back to \(effective) although this CPU runs \(best) "
                         + "(several times faster); automatic choice turned off by \(switchVariable)=off", warning: true)
        }
        return .restart(kernel: best, marker: "\(effective)>\(best)",
                        reason: "OpenBLAS fell back to \(effective) on a CPU that runs \(best); starting again with \(coretypeVariable)=\(best)")
    }
}
