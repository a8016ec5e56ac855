import CBLASLoader

/// Matrix products through OpenBLAS sgemm (row-major).
public enum BLAS {
    /// C[M,N] = alpha * op(A) op(B) + beta * C, op = transpose when the flag is set.
    /// `lda`, `ldb`, `ldc` are the row strides of the stored (untransposed) matrices.
    ///
    /// `split`: large products are cut in two (along the larger of M and N) and the halves
    /// run on the engine's threads; OpenBLAS itself always runs single-threaded. The cut
    /// depends only on the shape, never on the thread count, so every output element is
    /// computed by the same kernel call over the same K order whatever the number of threads:
    /// results are bit-identical. (OpenBLAS's own threading is not: on Haswell-class kernels
    /// its partition of the output depends on the thread count and edge tiles round
    /// differently, measured on an AMD EPYC: 1 vs 2 threads differed in the last bit of 5% of
    /// the elements.) Callers that already run products in parallel (attention heads) pass
    /// `split: false`, on every path, so that those products do not depend on threads either.
    public static func gemm(transA: Bool = false, transB: Bool = false, M: Int, N: Int, K: Int,
                            alpha: Float = 1, A: UnsafePointer<Float>, lda: Int,
                            B: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
                            C: UnsafeMutablePointer<Float>, ldc: Int, split: Bool = true) {
        Engine.ensureSetup()
        if M == 0 || N == 0 { return }
        if K == 0 {
            if beta == 0 { for r in 0..<M { (C + r * ldc).update(repeating: 0, count: N) } }
            else if beta != 1 { for r in 0..<M { for c in 0..<N { C[r * ldc + c] *= beta } } }
            return
        }
        let ta: Int32 = transA ? 1 : 0, tb: Int32 = transB ? 1 : 0
        if !split || 2 * M * N * K < (1 << 21) || (M < 64 && N < 64) {
            rt_sgemm(ta, tb, Int32(M), Int32(N), Int32(K), alpha, A, Int32(lda), B, Int32(ldb), beta, C, Int32(ldc))
            return
        }
        // Cut the larger of M and N: each half then repacks the smaller of the two shared
        // operands (all of B when M is cut, all of A when N is cut).
        if M >= N {
            let half = ((M / 2) + 15) / 16 * 16
            Engine.parallelFor(2) { part in
                let m0 = part == 0 ? 0 : half, m1 = part == 0 ? half : M
                let a = transA ? A + m0 : A + m0 * lda
                rt_sgemm(ta, tb, Int32(m1 - m0), Int32(N), Int32(K), alpha, a, Int32(lda), B, Int32(ldb), beta,
                         C + m0 * ldc, Int32(ldc))
            }
        } else {
            let half = ((N / 2) + 15) / 16 * 16
            Engine.parallelFor(2) { part in
                let n0 = part == 0 ? 0 : half, n1 = part == 0 ? half : N
                let b = transB ? B + n0 * ldb : B + n0
                rt_sgemm(ta, tb, Int32(M), Int32(n1 - n0), Int32(K), alpha, A, Int32(lda), b, Int32(ldb), beta,
                         C + n0, Int32(ldc))
            }
        }
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
