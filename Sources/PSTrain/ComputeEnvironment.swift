#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import PSCore
import PSMath

/// What a computing program does first: make OpenBLAS run the right kernel (`BLASKernelChoice`),
/// and say which one it runs and why. Every program that computes calls `chooseKernel` before it
/// reads any input and before any BLAS call: ps-bench in its `main`, ps-server and ps-worker first
/// in `run()`, psctl first in the commands that compute (train, evaluate, predict).
public enum ComputeEnvironment {
    /// The kernel in use and why, for the program's one start-up log line.
    public struct KernelReport: Sendable {
        public var kernel: String
        public var reason: String
        /// A slow fallback the user kept, or a kernel OpenBLAS did not take: log it as a warning.
        public var warning: Bool

        /// `BLAS kernel Cooperlake (OpenBLAS's own choice for this CPU); compute signature openblas-…`,
        /// with the signature as it is when the line is made: make it after setting the BLAS threads.
        public var line: String { "BLAS kernel \(kernel) (\(reason)); compute signature \(ComputeEnvironment.signature)" }
    }

    /// Decides the kernel; when OpenBLAS fell back to a pre-AVX2 kernel on a CPU with AVX2 or AVX-512,
    /// starts this program again (`execv` of `/proc/self/exe` with the same arguments) with
    /// `OPENBLAS_CORETYPE` set, and does not return. A bad `PS_BLAS_KERNEL_CHOICE` exits 2.
    public static func chooseKernel(program: String,
                                    environment: [String: String] = ProcessInfo.processInfo.environment) -> KernelReport {
        let picked = BLAS.kernel
        switch BLASKernelChoice.decide(picked: picked, cpuFlags: BuildTarget.cpuFlags(), environment: environment) {
        case let .keep(kernel, reason, warning):
            return KernelReport(kernel: kernel, reason: reason, warning: warning)
        case let .invalid(message):
            writeStandardError("\(program): error: \(message)\n")
            exit(2)
        case let .restart(kernel, marker, reason):
            let failure = restart(with: [BLASKernelChoice.coretypeVariable: kernel, BLASKernelChoice.chosenVariable: marker],
                                  environment: environment)
            // Only reached when the exec failed: keep computing, slowly, and say so.
            return KernelReport(kernel: picked, reason: "\(reason), but starting again failed (\(failure))", warning: true)
        }
    }

    /// `execve` of this executable with the same arguments and `environment` plus `added`; returns
    /// only on failure, with the reason. The environment is built as an array rather than with
    /// `setenv`, which is not safe while other threads may read the environment.
    private static func restart(with added: [String: String], environment: [String: String]) -> String {
        let merged = environment.merging(added) { $1 }
        var entries: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") }
        entries.append(nil)
        defer { for entry in entries { free(entry) } }
        execve("/proc/self/exe", CommandLine.unsafeArgv, entries)
        return String(cString: strerror(errno))
    }

    /// This process's compute signature: what `ps-worker` sends in its hello and model files record.
    /// Read it after setting the BLAS thread count (`BLAS.setThreads`): the count is part of it.
    public static var signature: ComputeSignature {
        ComputeSignature(blasKernel: BLAS.kernel, blasVersion: BLAS.version,
                         mathTarget: ComputeSignature.thisBuildMathTarget, libc: libc, blasThreads: BLAS.threads)
    }

    /// `glibc-2.36`: the C library whose `expf`, `tanhf` and `logf` the activations and losses call.
    static let libc: String = {
        #if canImport(Glibc)
        var buffer = [CChar](repeating: 0, count: 64)
        let n = confstr(Int32(_CS_GNU_LIBC_VERSION), &buffer, buffer.count)
        guard n > 0, n <= buffer.count else { return "libc-unknown" }
        // "glibc 2.36" → "glibc-2.36"
        return String(cString: buffer).replacingOccurrences(of: " ", with: "-")
        #else
        return "libc-system"
        #endif
    }()

    private static func writeStandardError(_ text: String) {
        _ = text.withCString { write(2, $0, strlen($0)) }
    }
}
