/// What decides the bits of a chunk's gradient besides the code and the data: the BLAS kernel
/// OpenBLAS runs, its version, the CPU PSMath was compiled for, and the C library whose `expf`,
/// `tanhf` and `logf` the activations and losses call. Two processes with equal signatures compute
/// bitwise the same gradient for the same chunk; with different ones they may differ in the last bits
/// (a SkylakeX and a Haswell `sgemm` add in different orders), so a bitwise job computes only on
/// workers whose signature equals the job's.
public struct ComputeSignature: Hashable, Sendable, CustomStringConvertible {
    /// OpenBLAS's kernel family as `openblas_get_corename` names it (`Haswell`, `SkylakeX`, `Prescott`…).
    public var blasKernel: String
    /// OpenBLAS's version (`0.3.21`).
    public var blasVersion: String
    /// PSMath's build target: `avx2` (Haswell-class code) or `portable`.
    public var mathTarget: String
    /// The C library and its version (`glibc-2.36`).
    public var libc: String

    public init(blasKernel: String, blasVersion: String, mathTarget: String, libc: String) {
        self.blasKernel = blasKernel
        self.blasVersion = blasVersion
        self.mathTarget = mathTarget
        self.libc = libc
    }

    /// `openblas-0.3.21/Cooperlake/avx2/glibc-2.36`: how status, logs, model files and specs write it.
    public var description: String {
        "openblas-\(blasVersion)/\(blasKernel)/\(mathTarget)/\(libc)"
    }

    /// Reads `description`'s form back; nil (with the reason) when `text` is not one.
    public static func parse(_ text: String) -> Result<ComputeSignature, SignatureParseError> {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4 else {
            return .failure(SignatureParseError("'\(text)' is not a compute signature: expected 4 parts separated by '/', like \(example)"))
        }
        guard parts[0].hasPrefix("openblas-"), parts[0].count > "openblas-".count else {
            return .failure(SignatureParseError("'\(text)': the first part must be 'openblas-VERSION', like \(example)"))
        }
        guard parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && !$0.isWhitespace } }) else {
            return .failure(SignatureParseError("'\(text)': every part must be non-empty ASCII without spaces, like \(example)"))
        }
        guard ["avx2", "portable"].contains(parts[2]) else {
            return .failure(SignatureParseError("'\(text)': the third part (PSMath's build target) must be 'avx2' or 'portable'"))
        }
        return .success(ComputeSignature(blasKernel: parts[1], blasVersion: String(parts[0].dropFirst("openblas-".count)),
                                         mathTarget: parts[2], libc: parts[3]))
    }

    static let example = "openblas-0.3.21/Haswell/avx2/glibc-2.36"

    /// PSMath's build target in this binary (see `BuildTarget`).
    public static var thisBuildMathTarget: String { BuildTarget.requiredCPUFlags.isEmpty ? "portable" : "avx2" }
}

public struct SignatureParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
