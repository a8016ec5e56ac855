import CRTKernels
import Foundation

/// Tensor kernels as forward/backward pairs (llm.c style).
///
/// Forward functions return new tensors. Backward functions ACCUMULATE into the gradient
/// tensors they are given (`+=`), so callers zero gradients once per step and residual
/// branches can share buffers. Every backward has a finite-difference test in float64.
public enum Ops {
    // MARK: - Linear: y = x W^T + b

    /// x: [N, in], w: [out, in], b: [out] or nil -> [N, out]
    /// A weight stored with more dims (a Conv2d kernel [out, ch, p, p]) acts as [out, count/out].
    public static func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor?) -> Tensor {
        let outF = w.shape[0], inF = w.count / outF
        precondition(x.count % inF == 0, "linear: input \(x.shape) vs weight \(w.shape)")
        let n = x.count / inF
        let y = Tensor(uninitialized: [n, outF])
        linear(into: y.data, x.data, n: n, w, b)
        return y
    }

    /// Writes y = x W^T + b into a caller buffer with row stride `ldy` (default: out).
    public static func linear(into y: UnsafeMutablePointer<Float>, ldy: Int? = nil, _ x: UnsafePointer<Float>, n: Int,
                              _ w: Tensor, _ b: Tensor?) {
        let outF = w.shape[0], inF = w.count / outF, ld = ldy ?? outF
        if let b = b {
            for r in 0..<n { (y + r * ld).update(from: b.data, count: outF) }
        }
        BLAS.gemm(transB: true, M: n, N: outF, K: inF, A: x, lda: inF, B: w.data, ldb: inF,
                  beta: b == nil ? 0 : 1, C: y, ldc: ld)
    }

    /// dx += dy W; dw += dy^T x; db += colsum(dy). Any of dx, dw, db may be nil (skipped).
    public static func linearBackward(_ dy: Tensor, _ x: Tensor, _ w: Tensor,
                                      dx: Tensor?, dw: Tensor?, db: Tensor?) {
        let n = dy.count / w.shape[0]
        linearBackward(dy.data, ldy: w.shape[0], x.data, n: n, w, dx: dx?.data, dw: dw, db: db)
    }

    /// Strided form: dy rows have stride `ldy` (a column block of a wider gradient).
    public static func linearBackward(_ dy: UnsafePointer<Float>, ldy: Int, _ x: UnsafePointer<Float>, n: Int,
                                      _ w: Tensor, dx: UnsafeMutablePointer<Float>?, dw: Tensor?, db: Tensor?) {
        let outF = w.shape[0], inF = w.count / outF
        if let dx = dx {
            BLAS.gemm(M: n, N: inF, K: outF, A: dy, lda: ldy, B: w.data, ldb: inF,
                      beta: 1, C: dx, ldc: inF)
        }
        if let dw = dw {
            BLAS.gemm(transA: true, M: outF, N: inF, K: n, A: dy, lda: ldy, B: x, ldb: inF,
                      beta: 1, C: dw.data, ldc: inF)
        }
        if let db = db { columnSum(dy, rows: n, cols: outF, stride: ldy, into: db.data) }
    }

    /// into[c] += sum_r x[r, c], split in fixed chunks with an ordered reduction.
    public static func columnSum(_ x: UnsafePointer<Float>, rows n: Int, cols: Int, stride: Int? = nil,
                                 into out: UnsafeMutablePointer<Float>) {
        let ld = stride ?? cols
        if ld != cols {
            for r in 0..<n { rt_acc(out, x + r * ld, cols) }
            return
        }
        let chunks = n * cols < (1 << 19) ? 1 : 4
        if chunks == 1 { rt_bias_grad_rows(out, x, 0, n, cols); return }
        let part = Tensor([chunks, cols]), per = (n + chunks - 1) / chunks
        Engine.parallelFor(chunks) { c in
            let r0 = c * per, r1 = min(n, r0 + per)
            if r0 < r1 { rt_bias_grad_rows(part.data + c * cols, x, r0, r1, cols) }
        }
        for c in 0..<chunks { rt_acc(out, part.data + c * cols, cols) }
    }

    // MARK: - Elementwise

    /// x + y
    public static func add(_ x: Tensor, _ y: Tensor) -> Tensor {
        precondition(x.count == y.count, "add: \(x.shape) + \(y.shape)")
        let o = Tensor(uninitialized: x.shape)
        rt_add(o.data, x.data, y.data, x.count)
        return o
    }

    /// a += b (in place residual add). Its backward is the identity on both inputs.
    public static func addInPlace(_ a: Tensor, _ b: Tensor) {
        precondition(a.count == b.count, "addInPlace: \(a.shape) += \(b.shape)")
        rt_acc(a.data, b.data, a.count)
    }

    public static func gelu(_ x: Tensor) -> Tensor {
        let o = Tensor(uninitialized: x.shape)
        Engine.rows(x.count / 1024 + (x.count % 1024 > 0 ? 1 : 0), work: 1024 * 8) { r0, r1 in
            let s = r0 * 1024, e = min(x.count, r1 * 1024)
            rt_gelu_fwd(o.data + s, x.data + s, e - s)
        }
        return o
    }

    public static func geluBackward(_ dy: Tensor, _ x: Tensor, dx: Tensor) {
        Engine.rows(x.count / 1024 + (x.count % 1024 > 0 ? 1 : 0), work: 1024 * 10) { r0, r1 in
            let s = r0 * 1024, e = min(x.count, r1 * 1024)
            rt_gelu_bwd(dx.data + s, dy.data + s, x.data + s, e - s)
        }
    }

    public static func silu(_ x: Tensor) -> Tensor {
        let o = Tensor(uninitialized: x.shape)
        rt_silu_fwd(o.data, x.data, x.count)
        return o
    }

    public static func siluBackward(_ dy: Tensor, _ x: Tensor, dx: Tensor) {
        rt_silu_bwd(dx.data, dy.data, x.data, x.count)
    }

    // MARK: - Normalization

    public struct NormCache { public let mean: Tensor?; public let rstd: Tensor }

    /// LayerNorm over the last dimension. w, b nil = no affine.
    public static func layerNorm(_ x: Tensor, _ w: Tensor?, _ b: Tensor?, eps: Float) -> (Tensor, NormCache) {
        let C = x.shape.last!, n = x.count / C
        let y = Tensor(uninitialized: x.shape), mean = Tensor(uninitialized: [n]), rstd = Tensor(uninitialized: [n])
        Engine.rows(n, work: C * 3) { r0, r1 in
            rt_layernorm_fwd(y.data, mean.data, rstd.data, x.data, w?.data, b?.data, r0, r1, C, eps)
        }
        return (y, NormCache(mean: mean, rstd: rstd))
    }

    public static func layerNormBackward(_ dy: Tensor, _ x: Tensor, _ cache: NormCache, _ w: Tensor?,
                                         dx: Tensor, dw: Tensor?, db: Tensor?) {
        let C = x.shape.last!, n = x.count / C
        normBackwardChunked(n: n, C: C, hasParams: w != nil && (dw != nil || db != nil)) { r0, r1, pdw, pdb in
            rt_layernorm_bwd(dx.data, pdw, pdb, dy.data, x.data, cache.mean!.data, cache.rstd.data,
                             w?.data, r0, r1, C)
        } reduce: { pdw, pdb in
            if let dw = dw { rt_acc(dw.data, pdw, C) }
            if let db = db { rt_acc(db.data, pdb, C) }
        }
    }

    /// RMSNorm over the last dimension: x / sqrt(mean(x^2) + eps) * w.
    public static func rmsNorm(_ x: Tensor, _ w: Tensor?, eps: Float) -> (Tensor, NormCache) {
        let C = x.shape.last!, n = x.count / C
        let y = Tensor(uninitialized: x.shape), rstd = Tensor(uninitialized: [n])
        Engine.rows(n, work: C * 2) { r0, r1 in
            rt_rmsnorm_fwd(y.data, rstd.data, x.data, w?.data, r0, r1, C, eps)
        }
        return (y, NormCache(mean: nil, rstd: rstd))
    }

    public static func rmsNormBackward(_ dy: Tensor, _ x: Tensor, _ cache: NormCache, _ w: Tensor?,
                                       dx: Tensor, dw: Tensor?) {
        let C = x.shape.last!, n = x.count / C
        normBackwardChunked(n: n, C: C, hasParams: w != nil && dw != nil) { r0, r1, pdw, _ in
            rt_rmsnorm_bwd(dx.data, pdw, dy.data, x.data, cache.rstd.data, w?.data, r0, r1, C)
        } reduce: { pdw, _ in
            if let dw = dw { rt_acc(dw.data, pdw, C) }
        }
    }

    /// Runs a row-chunked norm backward; parameter gradients go to per-chunk partial buffers that
    /// are reduced in chunk order, so the result does not depend on the thread count.
    private static func normBackwardChunked(
        n: Int, C: Int, hasParams: Bool,
        _ body: (Int, Int, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void,
        reduce: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    ) {
        let chunks = n * C < (1 << 18) ? 1 : min(8, max(1, n / 16))
        let per = (n + chunks - 1) / chunks
        let part = hasParams ? Tensor([chunks, 2, C]) : nil
        Engine.parallelFor(chunks) { c in
            let r0 = c * per, r1 = min(n, r0 + per)
            guard r0 < r1 else { return }
            let pdw = part.map { $0.data + c * 2 * C }, pdb = part.map { $0.data + c * 2 * C + C }
            body(r0, r1, pdw, pdb)
        }
        if let part = part {
            for c in 0..<chunks { reduce(part.data + c * 2 * C, part.data + c * 2 * C + C) }
        }
    }

    // MARK: - Softmax (rows)

    public static func softmax(_ x: Tensor, scale: Float = 1) -> Tensor {
        let C = x.shape.last!, n = x.count / C
        let y = Tensor(uninitialized: x.shape)
        Engine.rows(n, work: C * 6) { r0, r1 in rt_softmax_rows(y.data, x.data, scale, r0, r1, C) }
        return y
    }

    /// dx += scale * p * (dp - sum(dp p))
    public static func softmaxBackward(_ dp: Tensor, _ p: Tensor, scale: Float = 1, dx: Tensor) {
        let C = p.shape.last!, n = p.count / C
        let tmp = Tensor(uninitialized: p.shape)
        rt_softmax_bwd_rows(tmp.data, p.data, dp.data, scale, 0, n, C)
        rt_acc(dx.data, tmp.data, p.count)
    }

    // MARK: - Adaptive modulation (time-conditioned norms)

    /// out[b,t,:] = x[b,t,:] * (1 + scale[b,:]) + shift[b,:]. shift/scale are read from `mod`
    /// ([B, stride]) at column offsets `shiftAt` and `scaleAt`.
    public static func modulate(_ x: Tensor, B: Int, mod: Tensor, shiftAt: Int, scaleAt: Int) -> Tensor {
        let C = x.shape.last!, T = x.count / C / B, stride = mod.count / B
        let y = Tensor(uninitialized: x.shape)
        rt_modulate_fwd(y.data, x.data, mod.data + shiftAt, mod.data + scaleAt, stride, B, T, C)
        return y
    }

    public static func modulateBackward(_ dy: Tensor, _ x: Tensor, B: Int, mod: Tensor, dmod: Tensor,
                                        shiftAt: Int, scaleAt: Int, dx: Tensor) {
        let C = x.shape.last!, T = x.count / C / B, stride = mod.count / B
        rt_modulate_bwd(dx.data, dmod.data + shiftAt, dmod.data + scaleAt, dy.data, x.data,
                        mod.data + scaleAt, stride, B, T, C)
    }

    /// h[b,t,:] += gate[b,:] * y[b,t,:], gate read from `mod` at column `gateAt`.
    public static func gateAdd(_ h: Tensor, _ y: Tensor, B: Int, mod: Tensor, gateAt: Int) {
        let C = y.shape.last!, T = y.count / C / B, stride = mod.count / B
        rt_gate_add_fwd(h.data, y.data, mod.data + gateAt, stride, B, T, C)
    }

    /// dy += dh * gate; dmod[gate] += sum_t dh * y
    public static func gateAddBackward(_ dh: Tensor, _ y: Tensor, B: Int, mod: Tensor, dmod: Tensor,
                                       gateAt: Int, dy: Tensor) {
        let C = y.shape.last!, T = y.count / C / B, stride = mod.count / B
        rt_gate_add_bwd(dy.data, dmod.data + gateAt, dh.data, y.data, mod.data + gateAt, stride, B, T, C)
    }

    // MARK: - Row ranges (the decoder's packed inference rows)
    // Raw-buffer forms of `layerNorm`, `modulate` and `gateAdd` for a range of rows of one
    // sequence, on the calling thread: the same kernels, so a row gets the same bits as through
    // the tensor forms (RepTokTensorTests checks that), whatever range it is computed in.

    /// Rows [r0, r1) of `layerNorm(x, nil, nil, eps:)` (no affine) for x, y [rows, C]: y's rows
    /// r0..<r1 and the rows' mean and rstd at `mean[r]`, `rstd[r]`.
    public static func layerNormRows(into y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows r0: Int, _ r1: Int,
                                     width C: Int, eps: Float, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>) {
        rt_layernorm_fwd(y, mean, rstd, x, nil, nil, r0, r1, C, eps)
    }

    /// `modulate` of n rows of one sequence: y[r, :] = x[r, :] * (1 + scale) + shift, shift and
    /// scale [C] (a picture's modulation row at its column offsets).
    public static func modulateRows(into y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows n: Int, width C: Int,
                                    shift: UnsafePointer<Float>, scale: UnsafePointer<Float>) {
        rt_modulate_fwd(y, x, shift, scale, 0, 1, n, C)
    }

    /// `gateAdd` of n rows of one sequence: h[r, :] += gate * y[r, :], gate [C].
    public static func gateAddRows(_ h: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, rows n: Int, width C: Int,
                                   gate: UnsafePointer<Float>) {
        rt_gate_add_fwd(h, y, gate, 0, 1, n, C)
    }

    /// LayerScale: out[r, c] = x[r, c] * g[c]
    public static func colScale(_ x: Tensor, _ g: Tensor) -> Tensor {
        let C = g.count, y = Tensor(uninitialized: x.shape)
        rt_colscale_fwd(y.data, x.data, g.data, x.count / C, C)
        return y
    }

    public static func colScaleBackward(_ dy: Tensor, _ x: Tensor, _ g: Tensor, dx: Tensor, dg: Tensor?) {
        let C = g.count
        if let dg = dg {
            rt_colscale_bwd(dx.data, dg.data, dy.data, x.data, g.data, x.count / C, C)
        } else {
            let scratch = Tensor([C])
            rt_colscale_bwd(dx.data, scratch.data, dy.data, x.data, g.data, x.count / C, C)
        }
    }

    // MARK: - Patches and positions

    /// [B, ch, H, W] -> [B, (H/p)*(W/p), ch*p*p], features in (channel, ky, kx) order.
    public static func patchify(_ x: Tensor, patch p: Int) -> Tensor {
        let (B, ch, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        precondition(H % p == 0 && W % p == 0, "patchify: \(H)x\(W) not divisible by \(p)")
        let gh = H / p, gw = W / p, F = ch * p * p
        let y = Tensor(uninitialized: [B, gh * gw, F])
        for b in 0..<B {
            for i in 0..<gh {
                for j in 0..<gw {
                    let dst = y.data + ((b * gh + i) * gw + j) * F
                    for c in 0..<ch {
                        for ky in 0..<p {
                            let src = x.data + ((b * ch + c) * H + i * p + ky) * W + j * p
                            (dst + (c * p + ky) * p).update(from: src, count: p)
                        }
                    }
                }
            }
        }
        return y
    }

    /// Inverse of patchify: [B, gh*gw, ch*p*p] -> [B, ch, gh*p, gw*p]. (The backward of each is the other.)
    public static func unpatchify(_ y: Tensor, patch p: Int, channels ch: Int, gridH gh: Int, gridW gw: Int) -> Tensor {
        unpatchify(y, batch: y.shape[0], patch: p, channels: ch, gridH: gh, gridW: gw)
    }

    /// unpatchify for any tensor holding `batch` x (gh*gw) x (ch*p*p) values (e.g. [B*N, F]).
    public static func unpatchify(_ y: Tensor, batch B: Int, patch p: Int, channels ch: Int, gridH gh: Int, gridW gw: Int) -> Tensor {
        let H = gh * p, W = gw * p, F = ch * p * p
        precondition(y.count == B * gh * gw * F, "unpatchify: \(y.shape)")
        let x = Tensor(uninitialized: [B, ch, H, W])
        for b in 0..<B {
            for i in 0..<gh {
                for j in 0..<gw {
                    let src = y.data + ((b * gh + i) * gw + j) * F
                    for c in 0..<ch {
                        for ky in 0..<p {
                            let dst = x.data + ((b * ch + c) * H + i * p + ky) * W + j * p
                            dst.update(from: src + (c * p + ky) * p, count: p)
                        }
                    }
                }
            }
        }
        return x
    }

    /// Fixed 2-D sin-cos table [gh*gw, dim]: concat(sin(i w), cos(i w), sin(j w), cos(j w)),
    /// w_k = 10000^(-k/(dim/4)). Computed in double, stored in float.
    public static func sincos2D(gridH gh: Int, gridW gw: Int, dim: Int) -> Tensor {
        precondition(dim % 4 == 0, "sincos2D: dim must be a multiple of 4")
        let q = dim / 4
        let t = Tensor(uninitialized: [gh * gw, dim])
        for i in 0..<gh {
            for j in 0..<gw {
                let row = t.data + (i * gw + j) * dim
                for k in 0..<q {
                    let w = pow(10000.0, -Double(k) / Double(q))
                    row[k] = Float(sin(Double(i) * w))
                    row[q + k] = Float(cos(Double(i) * w))
                    row[2 * q + k] = Float(sin(Double(j) * w))
                    row[3 * q + k] = Float(cos(Double(j) * w))
                }
            }
        }
        return t
    }

    /// Fourier time features [B, dim]: concat(cos(1000 t f_k), sin(1000 t f_k)),
    /// f_k = exp(-ln(10000) k / (dim/2)).
    public static func fourierFeatures(_ t: [Float], dim: Int) -> Tensor {
        let half = dim / 2
        let y = Tensor(uninitialized: [t.count, dim])
        for (b, tv) in t.enumerated() {
            for k in 0..<half {
                let f = exp(-log(10000.0) * Double(k) / Double(half))
                let a = 1000.0 * Double(tv) * f
                y.data[b * dim + k] = Float(cos(a))
                y.data[b * dim + half + k] = Float(sin(a))
            }
        }
        return y
    }

    /// d/dt of the Fourier features: dt[b] += sum_k dy . dfeat/dt
    public static func fourierFeaturesBackward(_ dy: Tensor, _ t: [Float], dim: Int) -> [Float] {
        let half = dim / 2
        var dt = [Float](repeating: 0, count: t.count)
        for (b, tv) in t.enumerated() {
            var acc = 0.0
            for k in 0..<half {
                let f = 1000.0 * exp(-log(10000.0) * Double(k) / Double(half))
                let a = f * Double(tv)
                acc += Double(dy.data[b * dim + k]) * -sin(a) * f
                acc += Double(dy.data[b * dim + half + k]) * cos(a) * f
            }
            dt[b] = Float(acc)
        }
        return dt
    }

    // MARK: - Losses

    /// mean((a - b)^2) and its gradient with respect to a (scaled by `gradScale`).
    public static func mse(_ a: Tensor, _ b: Tensor, gradScale: Float = 1) -> (loss: Float, grad: Tensor) {
        precondition(a.count == b.count, "mse: \(a.shape) vs \(b.shape)")
        let g = Tensor(uninitialized: a.shape)
        var acc = 0.0
        let k = 2 * gradScale / Float(a.count)
        for i in 0..<a.count {
            let d = a.data[i] - b.data[i]
            acc += Double(d) * Double(d)
            g.data[i] = k * d
        }
        return (Float(acc / Double(a.count)), g)
    }

    /// mean_b(1 - cos(a_b, b_b)) over rows of [B, D], and its gradient with respect to a.
    public static func cosineLoss(_ a: Tensor, _ b: Tensor, gradScale: Float = 1, eps: Float = 1e-8) -> (loss: Float, grad: Tensor) {
        let D = a.shape.last!, B = a.count / D
        let g = Tensor(uninitialized: a.shape)
        var total = 0.0
        for r in 0..<B {
            let pa = a.data + r * D, pb = b.data + r * D
            let na = max(sqrt(Double(rt_sumsq_f64(pa, D))), Double(eps))
            let nb = max(sqrt(Double(rt_sumsq_f64(pb, D))), Double(eps))
            var dot = 0.0
            for i in 0..<D { dot += Double(pa[i]) * Double(pb[i]) }
            let cosv = dot / (na * nb)
            total += 1 - cosv
            // d(1-cos)/da = -(b/(|a||b|) - cos * a/|a|^2)
            let k = Double(gradScale) / Double(B)
            for i in 0..<D {
                g.data[r * D + i] = Float(-k * (Double(pb[i]) / (na * nb) - cosv * Double(pa[i]) / (na * na)))
            }
        }
        return (Float(total / Double(B)), g)
    }
}

extension Ops {
    /// dst[i] += src[i] for raw buffers.
    @inline(__always)
    public static func addRows(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
        rt_acc(dst, src, count)
    }
}

extension Ops {
    /// dst[i] = a[i] + b[i] for raw buffers.
    @inline(__always)
    public static func add(into dst: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        rt_add(dst, a, b, count)
    }
}

extension Ops {
    /// y += a * x
    public static func axpy(_ y: Tensor, _ x: Tensor, _ a: Float) {
        precondition(x.count == y.count, "axpy: \(y.shape) += a * \(x.shape)")
        rt_axpy(y.data, x.data, a, y.count)
    }
}

// MARK: - Bilinear upsampling (the decoder's latent skip)

extension Ops {
    /// The [S, k] matrix of bilinear interpolation from k to S samples with half-pixel centres
    /// (source coordinate (j + 0.5) k / S - 0.5, clamped to [0, k - 1]): torch's
    /// `F.interpolate(mode="bilinear", align_corners=False)` along one axis, written out so both
    /// implementations build the same weights. Row j has at most two nonzeros summing to 1.
    public static func bilinearMatrix(from k: Int, to S: Int) -> [Float] {
        precondition(k >= 1 && S >= 1, "bilinearMatrix \(k) -> \(S)")
        var u = [Float](repeating: 0, count: S * k)
        for j in 0..<S {
            let src = min(max((Double(j) + 0.5) * Double(k) / Double(S) - 0.5, 0), Double(k - 1))
            let i0 = Int(src.rounded(.down)), i1 = min(i0 + 1, k - 1)
            let w1 = src - Double(i0)
            u[j * k + i0] += Float(1 - w1)
            u[j * k + i1] += Float(w1)
        }
        return u
    }

    /// [B, C, k, k] -> [B, C, S, S]: y = U x U^T per plane, U = `bilinearMatrix(from: k, to: S)`.
    public static func upsampleBilinear(_ x: Tensor, size S: Int) -> Tensor {
        let k = x.shape[x.shape.count - 1]
        precondition(x.shape.count == 4 && x.shape[2] == k, "upsampleBilinear: x \(x.shape)")
        return sandwich(x, u: bilinearMatrix(from: k, to: S), k: k, S: S, adjoint: false)
    }

    /// The adjoint: dx = U^T dy U per plane, [B, C, S, S] -> [B, C, k, k].
    public static func upsampleBilinearBackward(_ dy: Tensor, from k: Int) -> Tensor {
        let S = dy.shape[dy.shape.count - 1]
        precondition(dy.shape.count == 4 && dy.shape[2] == S, "upsampleBilinearBackward: dy \(dy.shape)")
        return sandwich(dy, u: bilinearMatrix(from: k, to: S), k: k, S: S, adjoint: true)
    }

    /// Per plane of x: U x U^T (k x k -> S x S), or with `adjoint` U^T x U (S x S -> k x k);
    /// U is [S, k]. Two products per plane, each on one thread (no split: thread-invariant).
    static func sandwich(_ x: Tensor, u: [Float], k: Int, S: Int, adjoint: Bool) -> Tensor {
        let (n, m) = adjoint ? (S, k) : (k, S)        // plane side in, out
        let planes = x.count / (n * n)
        let y = Tensor(uninitialized: [x.shape[0], x.shape[1], m, m])
        let tmp = Tensor(uninitialized: [S, k])
        u.withUnsafeBufferPointer { U in
            for p in 0..<planes {
                let xp = x.data + p * n * n, yp = y.data + p * m * m
                if adjoint {
                    // tmp = x U ([S, k]); y = U^T tmp ([k, k])
                    BLAS.gemm(M: S, N: k, K: S, A: xp, lda: S, B: U.baseAddress!, ldb: k, C: tmp.data, ldc: k, split: false)
                    BLAS.gemm(transA: true, M: k, N: k, K: S, A: U.baseAddress!, lda: k, B: tmp.data, ldb: k,
                              C: yp, ldc: k, split: false)
                } else {
                    // tmp = U x ([S, k]); y = tmp U^T ([S, S])
                    BLAS.gemm(M: S, N: k, K: k, A: U.baseAddress!, lda: k, B: xp, ldb: k, C: tmp.data, ldc: k, split: false)
                    BLAS.gemm(transB: true, M: S, N: S, K: k, A: tmp.data, lda: k, B: U.baseAddress!, ldb: k,
                              C: yp, ldc: S, split: false)
                }
            }
        }
        return y
    }
}
