/// What decides the bits of a chunk's gradient besides the code and the data: the BLAS kernel
/// OpenBLAS runs, its version, the CPU PSMath was compiled for, the C library whose `expf`, `tanhf`
/// and `logf` the activations and losses call, and the number of BLAS threads (OpenBLAS splits a
/// product differently over 1 and 2 threads). Two processes with equal signatures compute bitwise the
/// same gradient for the same chunk; with different ones they may differ in the last bits (a SkylakeX
/// and a Haswell `sgemm` add in different orders), so a bitwise job computes only on workers whose
/// signature equals the job's.
public struct ComputeSignature: Hashable, Sendable, CustomStringConvertible {
    /// OpenBLAS's kernel family as `openblas_get_corename` names it (`Haswell`, `SkylakeX`, `Prescott`…).
    public var blasKernel: String
    /// OpenBLAS's version (`0.3.21`).
    public var blasVersion: String
    /// PSMath's build target: `avx2` (Haswell-class code) or `portable`.
    public var mathTarget: String
    /// The C library and its version (`glibc-2.36`).
    public var libc: String
    /// OpenBLAS threads per process (workers and the local trainer use 1 unless told otherwise).
    public var blasThreads: Int

    public init(blasKernel: String, blasVersion: String, mathTarget: String, libc: String, blasThreads: Int) {
        self.blasKernel = blasKernel
        self.blasVersion = blasVersion
        self.mathTarget = mathTarget
        self.libc = libc
        self.blasThreads = blasThreads
    }

    /// `openblas-0.3.21/Cooperlake/avx2/glibc-2.36/threads-1`: how status, logs, model files and specs write it.
    public var description: String {
        "openblas-\(blasVersion)/\(blasKernel)/\(mathTarget)/\(libc)/threads-\(blasThreads)"
    }

    /// Longest text accepted (a hello, a spec): real signatures are under 64 characters.
    public static let textBytesMax = 200

    /// Reads `description`'s form back, or says what is wrong with `text`. Each part is 1 to 64 of
    /// `[A-Za-z0-9._-]`, so a signature is safe to print in a status table or a log line.
    public static func parse(_ text: String) -> Result<ComputeSignature, SignatureParseError> {
        guard text.utf8.count <= textBytesMax else {
            return .failure(SignatureParseError("a compute signature of \(text.utf8.count) bytes (at most \(textBytesMax)) is not one"))
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5 else {
            return .failure(SignatureParseError("'\(text)' is not a compute signature: expected 5 parts separated by '/', like \(example)"))
        }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard parts.allSatisfy({ (1...64).contains($0.count) && $0.allSatisfy(allowed.contains) }) else {
            return .failure(SignatureParseError("'\(text)': every part must be 1 to 64 of A-Z a-z 0-9 . _ -, like \(example)"))
        }
        guard parts[0].hasPrefix("openblas-"), parts[0].count > "openblas-".count else {
            return .failure(SignatureParseError("'\(text)': the first part must be 'openblas-VERSION', like \(example)"))
        }
        guard ["avx2", "portable"].contains(parts[2]) else {
            return .failure(SignatureParseError("'\(text)': the third part (PSMath's build target) must be 'avx2' or 'portable'"))
        }
        guard parts[4].hasPrefix("threads-"), let threads = Int(parts[4].dropFirst("threads-".count)), (1...1024).contains(threads) else {
            return .failure(SignatureParseError("'\(text)': the fifth part must be 'threads-N' (BLAS threads, 1 to 1024)"))
        }
        return .success(ComputeSignature(blasKernel: parts[1], blasVersion: String(parts[0].dropFirst("openblas-".count)),
                                         mathTarget: parts[2], libc: parts[3], blasThreads: threads))
    }

    static let example = "openblas-0.3.21/Haswell/avx2/glibc-2.36/threads-1"

    /// What differs between a server's signature and its job's workers' in what the server computes
    /// with (the updates: PSMath and the C library's `pow`), e.g. `avx2 ≠ portable`; nil when nothing.
    /// The BLAS kernel and threads do not matter there: the server runs no BLAS.
    public static func serverDifference(server: ComputeSignature, workers: ComputeSignature) -> String? {
        var differences: [String] = []
        if server.mathTarget != workers.mathTarget { differences.append("PSMath \(server.mathTarget) ≠ \(workers.mathTarget)") }
        if server.libc != workers.libc { differences.append("\(server.libc) ≠ \(workers.libc)") }
        return differences.isEmpty ? nil : differences.joined(separator: ", ")
    }

    /// PSMath's build target in this binary (see `BuildTarget`).
    public static var thisBuildMathTarget: String { BuildTarget.requiredCPUFlags.isEmpty ? "portable" : "avx2" }
}

public struct SignatureParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
