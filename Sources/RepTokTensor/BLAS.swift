import CBLASLoader

/// Matrix products through OpenBLAS sgemm (row-major).
public enum BLAS {
    /// C[M,N] = alpha * op(A) op(B) + beta * C, op = transpose when the flag is set.
    /// `lda`, `ldb`, `ldc` are the row strides of the stored (untransposed) matrices.
    @inline(__always)
    public static func gemm(transA: Bool = false, transB: Bool = false, M: Int, N: Int, K: Int,
                            alpha: Float = 1, A: UnsafePointer<Float>, lda: Int,
                            B: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
                            C: UnsafeMutablePointer<Float>, ldc: Int) {
        Engine.ensureSetup()
        if M == 0 || N == 0 { return }
        if K == 0 {
            if beta == 0 { for r in 0..<M { (C + r * ldc).update(repeating: 0, count: N) } }
            else if beta != 1 { for r in 0..<M { for c in 0..<N { C[r * ldc + c] *= beta } } }
            return
        }
        // Products are threaded inside OpenBLAS (it shares the packed operands between its
        // threads, which beats splitting the product ourselves: measured in docs/PERFORMANCE.md).
        // OpenBLAS splits the output, never K, so results do not depend on the thread count.
        rt_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int32(M), Int32(N), Int32(K), alpha, A, Int32(lda),
                 B, Int32(ldb), beta, C, Int32(ldc))
    }

    /// Plain product of two contiguous row-major matrices: [M,K] x [K,N] (with optional transposes
    /// of the stored operands: A stored [K,M] when transA, B stored [N,K] when transB).
    public static func matmul(_ a: Tensor, _ b: Tensor, transA: Bool = false, transB: Bool = false) -> Tensor {
        precondition(a.rank == 2 && b.rank == 2, "matmul needs 2-D tensors")
        let M = transA ? a.shape[1] : a.shape[0], K = transA ? a.shape[0] : a.shape[1]
        let K2 = transB ? b.shape[1] : b.shape[0], N = transB ? b.shape[0] : b.shape[1]
        precondition(K == K2, "matmul: inner dims \(a.shape) x \(b.shape)")
        let c = Tensor(uninitialized: [M, N])
        gemm(transA: transA, transB: transB, M: M, N: N, K: K, A: a.data, lda: a.shape[1],
             B: b.data, ldb: b.shape[1], C: c.data, ldc: N)
        return c
    }
}

extension BLAS {
    /// OpenBLAS's configuration string (names the kernel core in use).
    public static var config: String { String(cString: rt_blas_config()) }
    /// The OPENBLAS_CORETYPE in effect.
    public static var coreType: String { String(cString: rt_blas_coretype()) }
}
