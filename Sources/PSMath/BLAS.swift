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
