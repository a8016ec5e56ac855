import CRTKernels

/// Multi-head scaled dot-product attention over a packed QKV tensor.
///
/// `qkv` is [B*T, 3C]: columns [0, C) are Q, [C, 2C) K, [2C, 3C) V; head h owns columns
/// [h*dh, (h+1)*dh) of each. No mask. Output [B*T, C]. The attention probabilities are kept
/// for the backward pass ([B, H, T, T]).
public enum Attention {
    public struct Cache {
        public let probs: Tensor
        public let B: Int, T: Int, heads: Int
    }

    public static func forward(_ qkv: Tensor, B: Int, T: Int, heads: Int, keepProbs: Bool = true) -> (Tensor, Cache?) {
        let C3 = qkv.shape.last!, C = C3 / 3, dh = C / heads
        precondition(qkv.count == B * T * C3 && C % heads == 0, "attention: qkv \(qkv.shape), B \(B) T \(T) heads \(heads)")
        let out = Tensor(uninitialized: [B * T, C])
        let scale = 1 / Float(dh).squareRoot()
        let probs = Tensor(uninitialized: keepProbs ? [B, heads, T, T] : [min(B * heads, 8), T, T])
        let jobs = B * heads
        // Each (b, h) is independent; run them on the engine's threads, each product on one
        // thread (split: false on every path, so results never depend on the thread count), which
        // beats threading each small GEMM.
        forEachHead(jobs) { job, slot in
            let b = job / heads, h = job % heads
            let base = qkv.data + b * T * C3
            let q = base + h * dh, k = base + C + h * dh, v = base + 2 * C + h * dh
            let p = keepProbs ? probs.data + job * T * T : probs.data + slot * T * T
            BLAS.gemm(transB: true, M: T, N: T, K: dh, A: q, lda: C3, B: k, ldb: C3, C: p, ldc: T, split: false)
            rt_softmax_rows(p, p, scale, 0, T, T)
            BLAS.gemm(M: T, N: dh, K: T, A: p, lda: T, B: v, ldb: C3,
                      C: out.data + b * T * C + h * dh, ldc: C, split: false)
        }
        return (out, keepProbs ? Cache(probs: probs, B: B, T: T, heads: heads) : nil)
    }

    /// Floats of scratch `queryRows` needs for `rows` query rows of a T-token sequence.
    public static func queryRowsScratch(T: Int, dh: Int, rows: Int) -> Int {
        rt_gemm_packed_floats(T, dh) + rt_gemm_packed_floats(dh, T) + (rows * T + 15) / 16 * 16
    }

    /// Attention output rows [r0, r1) of one sequence (batch 1, no probabilities kept), on the
    /// calling thread: per head, K and V^T are packed as the weights of the packed-product kernel
    /// (rt_gemm_packed), so each output element depends only on its own query row and on K, V,
    /// never on the row range (callers split rows across threads). `scratch`: at least
    /// `queryRowsScratch(T:dh:rows:)` floats, 64-byte aligned. AVX2/FMA only.
    public static func queryRows(_ qkv: UnsafePointer<Float>, T: Int, heads: Int, width C: Int, r0: Int, r1: Int,
                                 out: UnsafeMutablePointer<Float>, ldo: Int, scratch: UnsafeMutablePointer<Float>) {
        let C3 = 3 * C, dh = C / heads, n = r1 - r0
        let scale = 1 / Float(dh).squareRoot()
        let pk = scratch, pv = pk + rt_gemm_packed_floats(T, dh), p = pv + rt_gemm_packed_floats(dh, T)
        for h in 0..<heads {
            let q = qkv + h * dh, k = qkv + C + h * dh, v = qkv + 2 * C + h * dh
            rt_gemm_pack(pk, k, T, dh, C3)          // "weight" [T keys, dh]
            rt_gemm_pack_t(pv, v, dh, T, C3)        // "weight" [dh, T keys] = V^T
            rt_gemm_packed(p, T, q + r0 * C3, C3, pk, nil, T, dh, 0, n, 0, (T + 15) / 16, 0)
            rt_softmax_rows(p, p, scale, 0, n, T)
            rt_gemm_packed(out + r0 * ldo + h * dh, ldo, p, T, pv, nil, dh, T, 0, n, 0, (dh + 15) / 16, 0)
        }
    }

    /// Returns dqkv [B*T, 3C] for dout [B*T, C].
    public static func backward(_ dout: Tensor, _ qkv: Tensor, _ cache: Cache) -> Tensor {
        let (B, T, heads) = (cache.B, cache.T, cache.heads)
        let C3 = qkv.shape.last!, C = C3 / 3, dh = C / heads
        let scale = 1 / Float(dh).squareRoot()
        let dqkv = Tensor(uninitialized: [B * T, C3])
        let scratch = Tensor(uninitialized: [min(B * heads, 8), T, T])
        forEachHead(B * heads) { job, slot in
            let b = job / heads, h = job % heads
            let base = qkv.data + b * T * C3, dbase = dqkv.data + b * T * C3
            let q = base + h * dh, k = base + C + h * dh, v = base + 2 * C + h * dh
            let p = cache.probs.data + job * T * T
            let dp = scratch.data + slot * T * T
            let dO = dout.data + b * T * C + h * dh
            // dP = dO V^T ; dV = P^T dO
            BLAS.gemm(transB: true, M: T, N: T, K: dh, A: dO, lda: C, B: v, ldb: C3, C: dp, ldc: T, split: false)
            BLAS.gemm(transA: true, M: T, N: dh, K: T, A: p, lda: T, B: dO, ldb: C, C: dbase + 2 * C + h * dh, ldc: C3, split: false)
            // dS = scale * softmax'(P) dP (in place)
            rt_softmax_bwd_rows(dp, p, dp, scale, 0, T, T)
            // dQ = dS K ; dK = dS^T Q
            BLAS.gemm(M: T, N: dh, K: T, A: dp, lda: T, B: k, ldb: C3, C: dbase + h * dh, ldc: C3, split: false)
            BLAS.gemm(transA: true, M: T, N: dh, K: T, A: dp, lda: T, B: q, ldb: C3, C: dbase + C + h * dh, ldc: C3, split: false)
        }
        return dqkv
    }

    /// Runs jobs on min(Engine.threads, jobs, 8) workers, job j on worker j mod workers; the
    /// worker index is the job's scratch slot (< 8, the scratch buffers' first dimension).
    /// Results do not depend on the split: each job writes only its own outputs.
    static func forEachHead(_ jobs: Int, _ body: (Int, Int) -> Void) {
        let workers = min(Engine.threads, jobs, 8)
        if workers <= 1 {
            for j in 0..<jobs { body(j, 0) }
            return
        }
        Engine.parallelFor(workers) { w in
            var j = w
            while j < jobs { body(j, w); j += workers }
        }
    }
}
