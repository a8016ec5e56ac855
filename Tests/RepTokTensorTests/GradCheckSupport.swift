import RepTokTestSupport
import Foundation
import RepTokTensor
import XCTest

// Shared machinery for the kernel tests: a seeded generator, random tensors, float64 reference
// forwards (plain Double loops, written from the math in docs/ARCHITECTURE.md and the kernel
// contracts, not from the fp32 code), relative errors, a central finite-difference gradient check
// and a check of the backward accumulate (+=) contract.

// MARK: - Tolerances

/// Every tolerance used by the suite, with its justification.
enum Tol {
    /// fp32 forward vs float64 reference, ||a-b||/||b||. Exactly rounded fp32 ops and short BLAS
    /// dot products give ~1e-7; 1e-5 leaves room for sums over a few hundred terms and for the
    /// 2-ulp polynomial exp (softmax, SiLU, attention).
    static let fwd = 1e-5
    /// GELU uses erf by Abramowitz-Stegun 7.1.26 (absolute error 1.5e-7); on the negative side,
    /// where GELU(x) is tiny, that absolute error becomes a larger relative one.
    static let gelu = 1e-4
    /// Analytic fp32 gradient vs central finite differences of the float64 reference
    /// (FD error ~1e-10; the rest is fp32 rounding in the backward).
    static let grad = 1e-3
    /// Large (row-split) inputs vs float64: sums over up to 4096 rows in fp32.
    static let large = 1e-4
    /// Finite-difference step in float64.
    static let fdStep = 1e-6
}

// MARK: - Random numbers

/// SplitMix64: tiny, seeded, identical on every platform.
typealias SeededRNG = SplitMix64

/// A tensor of N(mean, std^2) values.
func randn(_ shape: [Int], _ rng: inout SeededRNG, std: Double = 1, mean: Double = 0) -> Tensor {
    let t = Tensor(uninitialized: shape)
    for i in 0..<t.count { t[i] = Float(mean + std * rng.normal()) }
    return t
}

/// A tensor of U[lo, hi) values.
func randu(_ shape: [Int], _ rng: inout SeededRNG, _ lo: Double, _ hi: Double) -> Tensor {
    let t = Tensor(uninitialized: shape)
    for i in 0..<t.count { t[i] = Float(rng.uniform(lo, hi)) }
    return t
}

extension Tensor {
    /// The values as float64 (exact).
    var f64: [Double] { RepTokTensorTests.f64(data, count) }
}

func f64(_ p: UnsafePointer<Float>, _ n: Int) -> [Double] {
    [Double](unsafeUninitializedCapacity: n) { buf, done in
        for i in 0..<n { buf[i] = Double(p[i]) }
        done = n
    }
}

// MARK: - Errors and assertions

func dot(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "dot: \(a.count) vs \(b.count)")
    var s = 0.0
    for i in a.indices { s += a[i] * b[i] }
    return s
}

func norm(_ a: [Double]) -> Double { dot(a, a).squareRoot() }

/// ||got - ref|| / ||ref|| (the absolute norm of the difference when ref is all zero).
func relErr(_ got: [Double], _ ref: [Double]) -> Double {
    precondition(got.count == ref.count, "relErr: \(got.count) vs \(ref.count) values")
    var d = 0.0, r = 0.0
    got.withUnsafeBufferPointer { g in
        ref.withUnsafeBufferPointer { f in
            for i in 0..<g.count {
                let e = g[i] - f[i]
                d += e * e
                r += f[i] * f[i]
            }
        }
    }
    if d.isNaN { return .infinity }
    return r == 0 ? d.squareRoot() : (d / r).squareRoot()
}

func maxAbsErr(_ got: [Double], _ ref: [Double]) -> Double {
    precondition(got.count == ref.count)
    var m = 0.0
    for i in got.indices { m = max(m, abs(got[i] - ref[i])) }
    return m
}

func assertRelErr(_ got: [Double], _ ref: [Double], _ tol: Double, _ what: @autoclosure () -> String,
                  file: StaticString = #filePath, line: UInt = #line) {
    guard got.count == ref.count else {
        XCTFail("\(what()): \(got.count) values, reference has \(ref.count)", file: file, line: line)
        return
    }
    let e = relErr(got, ref)
    XCTAssertLessThanOrEqual(e, tol, "\(what()): relative error \(e) > \(tol)", file: file, line: line)
}

/// The column block [off, off + width) of every row of a row-major buffer with row stride `ld`,
/// and how many elements outside it differ from `sentinel` (strided-output tests).
func columnBlock(_ buf: Tensor, rows n: Int, ld: Int, off: Int, width: Int, sentinel: Float) -> (block: [Double], outside: Int) {
    var block: [Double] = [], outside = 0
    for r in 0..<n {
        for c in 0..<ld {
            if c >= off && c < off + width { block.append(Double(buf[r * ld + c])) }
            else if buf[r * ld + c] != sentinel { outside += 1 }
        }
    }
    return (block, outside)
}

/// Bitwise equality of two fp32 tensors (thread-count invariance).
func assertBitIdentical(_ a: Tensor, _ b: Tensor, _ what: @autoclosure () -> String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, "\(what()): shapes", file: file, line: line)
    guard a.count == b.count else { return }
    var firstDiff = -1, diffs = 0
    for i in 0..<a.count where a[i].bitPattern != b[i].bitPattern {
        if firstDiff < 0 { firstDiff = i }
        diffs += 1
    }
    XCTAssertEqual(diffs, 0, "\(what()): \(diffs) of \(a.count) elements differ, first at \(firstDiff)"
                   + (firstDiff >= 0 ? " (\(a[firstDiff]) vs \(b[firstDiff]))" : ""), file: file, line: line)
}

// MARK: - Gradient checking

/// One differentiated input: its float64 values (the fp32 input, converted exactly) and the
/// gradient the fp32 backward produced for it.
struct GradInput {
    let name: String
    let value: [Double]
    let grad: [Double]
    init(_ name: String, _ value: [Double], _ grad: [Double]) {
        precondition(value.count == grad.count, "\(name): \(value.count) values, \(grad.count) gradients")
        self.name = name; self.value = value; self.grad = grad
    }
}

/// Central finite differences of L(inputs) = sum(forward(inputs) * r) with respect to every
/// element of every input.
func numericalGradients(_ inputs: [[Double]], cotangent r: [Double], eps: Double = Tol.fdStep,
                        _ forward: ([[Double]]) -> [Double]) -> [[Double]] {
    var xs = inputs
    var grads = inputs.map { [Double](repeating: 0, count: $0.count) }
    for k in xs.indices {
        for i in xs[k].indices {
            let x0 = xs[k][i]
            xs[k][i] = x0 + eps
            let lp = dot(forward(xs), r)
            xs[k][i] = x0 - eps
            let lm = dot(forward(xs), r)
            xs[k][i] = x0
            grads[k][i] = (lp - lm) / (2 * eps)
        }
    }
    return grads
}

/// Compares the fp32 backward's gradients with central finite differences of the float64
/// reference `forward` (inputs in the order given), with L = sum(forward * cotangent).
func gradCheck(_ kernel: String, _ inputs: [GradInput], cotangent r: [Double], tol: Double = Tol.grad,
               eps: Double = Tol.fdStep, file: StaticString = #filePath, line: UInt = #line,
               forward: ([[Double]]) -> [Double]) {
    let out = forward(inputs.map(\.value))
    guard out.count == r.count else {
        XCTFail("\(kernel): reference gives \(out.count) outputs, cotangent has \(r.count)", file: file, line: line)
        return
    }
    let fd = numericalGradients(inputs.map(\.value), cotangent: r, eps: eps, forward)
    for (k, inp) in inputs.enumerated() {
        XCTAssertGreaterThan(norm(fd[k]) + norm(inp.grad), 0, "\(kernel): d/d\(inp.name) is all zero (vacuous check)",
                             file: file, line: line)
        assertRelErr(inp.grad, fd[k], tol, "\(kernel) backward d/d\(inp.name) vs finite differences",
                     file: file, line: line)
    }
}

/// Runs `backward` into zeroed gradient tensors of the given shapes, then again into tensors
/// pre-filled with known values in [1, 2), and asserts that the second run ADDED to them
/// (result == prefill + gradient) instead of overwriting. Returns the gradients of the first run.
func accumulatedGradients(_ kernel: String, shapes: [[Int]], file: StaticString = #filePath, line: UInt = #line,
                          _ backward: ([Tensor]) -> Void) -> [[Double]] {
    let fresh = shapes.map { Tensor($0) }
    backward(fresh)
    var rng = SeededRNG(0xACC0_0001)
    let pre = shapes.map { randu($0, &rng, 1, 2) }
    let prefill = pre.map { $0.clone() }
    backward(pre)
    for k in shapes.indices {
        var bad = -1
        for i in 0..<pre[k].count {
            let expect = Double(prefill[k][i]) + Double(fresh[k][i])
            let tol = 1e-5 * (abs(Double(prefill[k][i])) + abs(Double(fresh[k][i])))
            if !(abs(Double(pre[k][i]) - expect) <= tol) { bad = i; break }
        }
        if bad >= 0 {
            XCTFail("\(kernel): gradient #\(k) not accumulated at element \(bad): prefill \(prefill[k][bad]) + "
                    + "gradient \(fresh[k][bad]) != \(pre[k][bad])", file: file, line: line)
        }
    }
    return fresh.map(\.f64)
}

/// Runs `body` with the engine's thread count set to `n`, restoring it afterwards.
func withThreads<T>(_ n: Int, _ body: () -> T) -> T {
    let old = Engine.threads
    Engine.setThreads(n)
    defer { Engine.setThreads(old) }
    return body()
}

// MARK: - float64 references

/// Reference forwards in float64. Layouts are row-major like the kernels'; each is a plain loop
/// nest written from the formula.
enum Ref {
    /// y[n, o] = b[o] + sum_i x[n, i] w[o, i]
    static func linear(_ x: [Double], _ w: [Double], _ b: [Double]?, n: Int, inF: Int, outF: Int) -> [Double] {
        var y = [Double](repeating: 0, count: n * outF)
        for r in 0..<n {
            for o in 0..<outF {
                var s = b?[o] ?? 0
                for i in 0..<inF { s += x[r * inF + i] * w[o * inF + i] }
                y[r * outF + o] = s
            }
        }
        return y
    }

    /// Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
    static func gelu(_ x: [Double]) -> [Double] {
        [Double](unsafeUninitializedCapacity: x.count) { y, done in
            x.withUnsafeBufferPointer { xp in
                for i in 0..<xp.count { y[i] = 0.5 * xp[i] * (1 + erf(xp[i] * 0.5.squareRoot())) }
            }
            done = x.count
        }
    }
    /// d/dx GELU = Phi(x) + x phi(x).
    static func geluDerivative(_ x: Double) -> Double {
        0.5 * (1 + erf(x / 2.0.squareRoot())) + x * exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
    }

    static func silu(_ x: [Double]) -> [Double] { x.map { $0 / (1 + exp(-$0)) } }

    /// Row softmax of scale * x.
    static func softmax(_ x: [Double], C: Int, scale: Double) -> [Double] {
        var y = [Double](repeating: 0, count: x.count)
        for r in 0..<(x.count / C) {
            var m = -Double.infinity
            for c in 0..<C { m = max(m, scale * x[r * C + c]) }
            var s = 0.0
            for c in 0..<C { y[r * C + c] = exp(scale * x[r * C + c] - m); s += y[r * C + c] }
            for c in 0..<C { y[r * C + c] /= s }
        }
        return y
    }

    /// LayerNorm over rows of width C, biased variance: ((x - mean) / sqrt(var + eps)) * w + b.
    static func layerNorm(_ x: [Double], _ w: [Double]?, _ b: [Double]?, C: Int, eps: Double)
        -> (y: [Double], mean: [Double], rstd: [Double]) {
        let n = x.count / C
        var y = [Double](repeating: 0, count: x.count), mean = [Double](repeating: 0, count: n)
        var rstd = [Double](repeating: 0, count: n)
        x.withUnsafeBufferPointer { xp in
            for r in 0..<n {
                var m = 0.0
                for c in 0..<C { m += xp[r * C + c] }
                m /= Double(C)
                var v = 0.0
                for c in 0..<C { v += (xp[r * C + c] - m) * (xp[r * C + c] - m) }
                v /= Double(C)
                let s = 1 / (v + eps).squareRoot()
                for c in 0..<C {
                    var o = (xp[r * C + c] - m) * s
                    if let w = w { o *= w[c] }
                    if let b = b { o += b[c] }
                    y[r * C + c] = o
                }
                mean[r] = m; rstd[r] = s
            }
        }
        return (y, mean, rstd)
    }

    /// Analytic LayerNorm gradients in float64 (used where finite differences over every element
    /// would be too slow: the large-input tests). Derivation: xh = (x - m) s, s = (var + eps)^-1/2,
    /// dxh = dy w; dx = s (dxh - mean(dxh) - xh mean(dxh xh)); dw = sum_rows dy xh; db = sum_rows dy.
    static func layerNormBackward(_ dy: [Double], _ x: [Double], _ w: [Double]?, C: Int, eps: Double)
        -> (dx: [Double], dw: [Double], db: [Double]) {
        let n = x.count / C
        var dx = [Double](repeating: 0, count: x.count)
        var dw = [Double](repeating: 0, count: C), db = [Double](repeating: 0, count: C)
        let (_, mean, rstd) = layerNorm(x, nil, nil, C: C, eps: eps)
        var xh = [Double](repeating: 0, count: C), g = [Double](repeating: 0, count: C)
        for r in 0..<n {
            var a = 0.0, bsum = 0.0
            for c in 0..<C {
                xh[c] = (x[r * C + c] - mean[r]) * rstd[r]
                g[c] = dy[r * C + c] * (w?[c] ?? 1)
                a += g[c]; bsum += g[c] * xh[c]
                dw[c] += dy[r * C + c] * xh[c]
                db[c] += dy[r * C + c]
            }
            a /= Double(C); bsum /= Double(C)
            for c in 0..<C { dx[r * C + c] = rstd[r] * (g[c] - a - xh[c] * bsum) }
        }
        return (dx, dw, db)
    }

    /// RMSNorm: x / sqrt(mean(x^2) + eps) * w.
    static func rmsNorm(_ x: [Double], _ w: [Double]?, C: Int, eps: Double) -> (y: [Double], rstd: [Double]) {
        let n = x.count / C
        var y = [Double](repeating: 0, count: x.count), rstd = [Double](repeating: 0, count: n)
        for r in 0..<n {
            var ss = 0.0
            for c in 0..<C { ss += x[r * C + c] * x[r * C + c] }
            let s = 1 / (ss / Double(C) + eps).squareRoot()
            for c in 0..<C { y[r * C + c] = x[r * C + c] * s * (w?[c] ?? 1) }
            rstd[r] = s
        }
        return (y, rstd)
    }

    /// Analytic RMSNorm gradients: xh = x s, g = dy w; dx = s (g - xh mean(g xh)); dw = sum dy xh.
    static func rmsNormBackward(_ dy: [Double], _ x: [Double], _ w: [Double]?, C: Int, eps: Double)
        -> (dx: [Double], dw: [Double]) {
        let n = x.count / C
        let (_, rstd) = rmsNorm(x, nil, C: C, eps: eps)
        var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: C)
        for r in 0..<n {
            let s = rstd[r]
            var bsum = 0.0
            for c in 0..<C { bsum += dy[r * C + c] * (w?[c] ?? 1) * x[r * C + c] * s }
            bsum /= Double(C)
            for c in 0..<C {
                let xh = x[r * C + c] * s
                dx[r * C + c] = s * (dy[r * C + c] * (w?[c] ?? 1) - xh * bsum)
                dw[c] += dy[r * C + c] * xh
            }
        }
        return (dx, dw)
    }

    /// out[b,t,c] = x[b,t,c] (1 + mod[b, scaleAt + c]) + mod[b, shiftAt + c]; mod is [B, stride].
    static func modulate(_ x: [Double], _ mod: [Double], B: Int, T: Int, C: Int, stride: Int,
                         shiftAt: Int, scaleAt: Int) -> [Double] {
        var y = [Double](repeating: 0, count: x.count)
        for b in 0..<B {
            for t in 0..<T {
                for c in 0..<C {
                    let i = (b * T + t) * C + c
                    y[i] = x[i] * (1 + mod[b * stride + scaleAt + c]) + mod[b * stride + shiftAt + c]
                }
            }
        }
        return y
    }

    /// h[b,t,c] + mod[b, gateAt + c] * y[b,t,c]
    static func gateAdd(_ h: [Double], _ y: [Double], _ mod: [Double], B: Int, T: Int, C: Int, stride: Int,
                        gateAt: Int) -> [Double] {
        var o = h
        for b in 0..<B {
            for t in 0..<T {
                for c in 0..<C {
                    let i = (b * T + t) * C + c
                    o[i] += mod[b * stride + gateAt + c] * y[i]
                }
            }
        }
        return o
    }

    /// out[r, c] = x[r, c] g[c]
    static func colScale(_ x: [Double], _ g: [Double]) -> [Double] {
        let C = g.count
        return x.indices.map { x[$0] * g[$0 % C] }
    }

    /// [B, ch, H, W] -> [B, (H/p)(W/p), ch p p], features (channel, ky, kx). Written as a scatter
    /// over the image pixels (the kernel gathers per patch).
    static func patchify(_ x: [Double], B: Int, ch: Int, H: Int, W: Int, p: Int) -> [Double] {
        let gh = H / p, gw = W / p, F = ch * p * p
        var y = [Double](repeating: .nan, count: B * gh * gw * F)
        for b in 0..<B {
            for c in 0..<ch {
                for yy in 0..<H {
                    for xx in 0..<W {
                        let (i, ky, j, kx) = (yy / p, yy % p, xx / p, xx % p)
                        y[((b * gh + i) * gw + j) * F + (c * p + ky) * p + kx] = x[((b * ch + c) * H + yy) * W + xx]
                    }
                }
            }
        }
        return y
    }

    static func unpatchify(_ y: [Double], B: Int, ch: Int, gh: Int, gw: Int, p: Int) -> [Double] {
        let H = gh * p, W = gw * p, F = ch * p * p
        var x = [Double](repeating: .nan, count: B * ch * H * W)
        for b in 0..<B {
            for c in 0..<ch {
                for yy in 0..<H {
                    for xx in 0..<W {
                        let (i, ky, j, kx) = (yy / p, yy % p, xx / p, xx % p)
                        x[((b * ch + c) * H + yy) * W + xx] = y[((b * gh + i) * gw + j) * F + (c * p + ky) * p + kx]
                    }
                }
            }
        }
        return x
    }

    /// ARCHITECTURE.md: for the patch in row i, column j, w_k = 10000^(-k / (W/4)), k < W/4:
    /// P[i, j] = concat(sin(i w), cos(i w), sin(j w), cos(j w)).
    static func sincos2D(gh: Int, gw: Int, dim: Int) -> [Double] {
        let q = dim / 4
        var out: [Double] = []
        for i in 0..<gh {
            for j in 0..<gw {
                let w = (0..<q).map { exp(-log(10000) * Double($0) / Double(q)) }
                out += w.map { sin(Double(i) * $0) } + w.map { cos(Double(i) * $0) }
                out += w.map { sin(Double(j) * $0) } + w.map { cos(Double(j) * $0) }
            }
        }
        return out
    }

    /// ARCHITECTURE.md: tf = concat(cos(1000 t f_k), sin(1000 t f_k)), f_k = exp(-ln(10000) k / (F/2)).
    static func fourier(_ t: [Double], dim: Int) -> [Double] {
        let half = dim / 2
        var out: [Double] = []
        for tv in t {
            let f = (0..<half).map { exp(-log(10000) * Double($0) / Double(half)) }
            out += f.map { cos(1000 * tv * $0) } + f.map { sin(1000 * tv * $0) }
        }
        return out
    }

    static func mse(_ a: [Double], _ b: [Double]) -> Double {
        var s = 0.0
        for i in a.indices { s += (a[i] - b[i]) * (a[i] - b[i]) }
        return s / Double(a.count)
    }

    /// mean over rows of 1 - <a, b> / (max(|a|, eps) max(|b|, eps)).
    static func cosineLoss(_ a: [Double], _ b: [Double], D: Int, eps: Double) -> Double {
        let n = a.count / D
        var total = 0.0
        for r in 0..<n {
            var ab = 0.0, aa = 0.0, bb = 0.0
            for i in 0..<D {
                ab += a[r * D + i] * b[r * D + i]; aa += a[r * D + i] * a[r * D + i]; bb += b[r * D + i] * b[r * D + i]
            }
            total += 1 - ab / (max(aa.squareRoot(), eps) * max(bb.squareRoot(), eps))
        }
        return total / Double(n)
    }

    /// Multi-head attention over packed qkv [B*T, 3C] (q | k | v column blocks, head h = columns
    /// [h dh, (h+1) dh) of each): per head softmax(Q K^T / sqrt(dh)) V, heads concatenated.
    /// Returns out [B*T, C] and the probabilities [B, H, T, T].
    static func attention(_ qkv: [Double], B: Int, T: Int, heads: Int) -> (out: [Double], probs: [Double]) {
        let C3 = qkv.count / (B * T), C = C3 / 3, dh = C / heads
        var out = [Double](repeating: 0, count: B * T * C)
        var probs = [Double](repeating: 0, count: B * heads * T * T)
        func q(_ b: Int, _ t: Int, _ h: Int, _ d: Int) -> Double { qkv[(b * T + t) * C3 + h * dh + d] }
        func k(_ b: Int, _ t: Int, _ h: Int, _ d: Int) -> Double { qkv[(b * T + t) * C3 + C + h * dh + d] }
        func v(_ b: Int, _ t: Int, _ h: Int, _ d: Int) -> Double { qkv[(b * T + t) * C3 + 2 * C + h * dh + d] }
        for b in 0..<B {
            for h in 0..<heads {
                for i in 0..<T {
                    var s = [Double](repeating: 0, count: T)
                    for j in 0..<T {
                        for d in 0..<dh { s[j] += q(b, i, h, d) * k(b, j, h, d) }
                        s[j] /= Double(dh).squareRoot()
                    }
                    let m = s.max()!
                    let e = s.map { exp($0 - m) }
                    let z = e.reduce(0, +)
                    for j in 0..<T {
                        let pij = e[j] / z
                        probs[((b * heads + h) * T + i) * T + j] = pij
                        for d in 0..<dh { out[(b * T + i) * C + h * dh + d] += pij * v(b, j, h, d) }
                    }
                }
            }
        }
        return (out, probs)
    }
}
