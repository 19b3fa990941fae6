import CBLAS

/// Thin, shape-commented wrappers over OpenBLAS. All matrices are row-major.
public enum BLAS {
    /// C[m×n] = alpha · op(A) · op(B) + beta · C, with op(A) `m×k` and op(B) `k×n`.
    @inline(__always)
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                     a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Sets the number of threads OpenBLAS uses in this process. Workers and the local trainer use 1
    /// by default: results then do not depend on how OpenBLAS splits a product across threads.
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(n))
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }
}

extension BLAS {
    /// The kernel family OpenBLAS loaded for this process (`Haswell`, `SkylakeX`, `Prescott`…): chosen
    /// from the CPU model, or from `OPENBLAS_CORETYPE` when the library loaded.
    public static var kernel: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name).trimmingTrailingSpaces()
    }

    /// OpenBLAS's build configuration (`OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64`).
    public static var configuration: String {
        guard let text = openblas_get_config() else { return "unknown" }
        return String(cString: text).trimmingTrailingSpaces()
    }

    /// OpenBLAS's version, the second word of its configuration (`0.3.21`).
    public static var version: String {
        let words = configuration.split(separator: " ")
        return words.count >= 2 && words[0] == "OpenBLAS" ? String(words[1]) : "unknown"
    }
}

private extension String {
    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while let last = s.last, last == " " || last == "\n" { s = s.dropLast() }
        return String(s)
    }
}
