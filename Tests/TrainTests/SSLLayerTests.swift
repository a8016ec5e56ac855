import RepTokTestSupport
import Foundation
import RepTokNN
import RepTokTensor
@testable import RepTokTrain
import XCTest

// Gradient checks of the DINO pieces: each fp32 backward against central finite differences of
// a float64 reference forward written from the formulas (not from the fp32 code).

/// SplitMix64 for test data.
typealias SSLTestRNG = SplitMix64

extension SplitMix64 {
    mutating func tensor(_ shape: [Int], std: Double = 1) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t[i] = Float(std * normal()) }
        return t
    }
}

enum SSLRef {
    static func f64(_ t: Tensor) -> [Double] { (0..<t.count).map { Double(t[$0]) } }

    static func l2(_ x: [Double], C: Int, eps: Double = 1e-12) -> [Double] {
        var y = x
        for r in 0..<(x.count / C) {
            var s = 0.0
            for i in 0..<C { s += x[r * C + i] * x[r * C + i] }
            let n = max(s.squareRoot(), eps)
            for i in 0..<C { y[r * C + i] = x[r * C + i] / n }
        }
        return y
    }

    /// y[n, o] = sum_i x[n, i] w[o, i] (+ b[o])
    static func linear(_ x: [Double], _ w: [Double], _ b: [Double]?, inF: Int, outF: Int) -> [Double] {
        let n = x.count / inF
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

    static func gelu(_ x: [Double]) -> [Double] { x.map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) } }

    static func logSoftmax(_ x: [Double]) -> [Double] {
        let m = x.max()!
        let lz = m + log(x.map { exp($0 - m) }.reduce(0, +))
        return x.map { $0 - lz }
    }

    /// sum over views v, samples b, teacher views g != v of -<t_gb, log_softmax(s_vb / temp)>,
    /// divided by pairs * B.
    static func dino(_ s: [Double], views: [Int], teacher t: [Double], G: Int, B: Int, K: Int, temp: Double, pairs: Int) -> Double {
        var total = 0.0
        for (i, v) in views.enumerated() {
            for b in 0..<B {
                let lp = logSoftmax((0..<K).map { s[(i * B + b) * K + $0] / temp })
                for g in 0..<G where g != v {
                    for k in 0..<K { total -= t[(g * B + b) * K + k] * lp[k] }
                }
            }
        }
        return total / Double(pairs * B)
    }

    static func koleo(_ x: [Double], D: Int, eps: Double = 1e-8) -> Double {
        let n = x.count / D
        let y = l2(x, C: D, eps: eps)
        var total = 0.0
        for i in 0..<n {
            var best = -Double.infinity, bj = 0
            for j in 0..<n where j != i {
                var d = 0.0
                for k in 0..<D { d += y[i * D + k] * y[j * D + k] }
                if d > best { best = d; bj = j }
            }
            var ss = 0.0
            for k in 0..<D { let e = y[i * D + k] - y[bj * D + k] + eps; ss += e * e }
            total -= log(ss.squareRoot() + eps)
        }
        return total / Double(n)
    }
}

/// Central finite differences of a scalar function over each element of `x`.
func sslNumericalGrad(_ x: [Double], eps: Double = 1e-6, _ f: ([Double]) -> Double) -> [Double] {
    var v = x
    return x.indices.map { i in
        let x0 = v[i]
        v[i] = x0 + eps; let a = f(v)
        v[i] = x0 - eps; let b = f(v)
        v[i] = x0
        return (a - b) / (2 * eps)
    }
}

func sslRelErr(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count)
    var d = 0.0, r = 0.0
    for i in a.indices { d += (a[i] - b[i]) * (a[i] - b[i]); r += b[i] * b[i] }
    return r == 0 ? d.squareRoot() : (d / r).squareRoot()
}

func assertSSLGrad(_ got: [Double], _ ref: [Double], _ what: String, tol: Double = 1e-3,
                   file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertGreaterThan(ref.map { abs($0) }.reduce(0, +), 0, "\(what): vacuous (zero) gradient", file: file, line: line)
    let e = sslRelErr(got, ref)
    XCTAssertLessThanOrEqual(e, tol, "\(what): relative error \(e)", file: file, line: line)
}

final class SSLLayerTests: XCTestCase {
    func testL2NormalizeForwardBackward() {
        var rng = SSLTestRNG(1)
        let (N, C) = (4, 7)
        let x = rng.tensor([N, C]), r = rng.tensor([N, C])
        let (y, norms) = SSLOps.l2Normalize(x)
        XCTAssertLessThan(sslRelErr(SSLRef.f64(y), SSLRef.l2(SSLRef.f64(x), C: C)), 1e-6)
        let dx = SSLOps.l2NormalizeBackward(r, y: y, norms: norms)
        let rr = SSLRef.f64(r)
        let fd = sslNumericalGrad(SSLRef.f64(x)) { v in zip(SSLRef.l2(v, C: C), rr).map { $0 * $1 }.reduce(0, +) }
        assertSSLGrad(SSLRef.f64(dx), fd, "l2Normalize backward")
    }

    func testWeightNormLinearBackward() {
        var rng = SSLTestRNG(2)
        let (N, I, O) = (3, 5, 4)
        let layer = WeightNormLinear("last", I, O)
        layer.weight.value.copy(from: rng.tensor([O, I], std: 0.7))
        let x = rng.tensor([N, I]), r = rng.tensor([N, O])
        let y = layer.forward(x)
        func ref(_ xv: [Double], _ vv: [Double]) -> [Double] { SSLRef.linear(xv, SSLRef.l2(vv, C: I), nil, inF: I, outF: O) }
        XCTAssertLessThan(sslRelErr(SSLRef.f64(y), ref(SSLRef.f64(x), SSLRef.f64(layer.weight.value))), 1e-6)
        // accumulate contract: pre-filled gradient + new gradient
        layer.weight.grad.fill(0.5)
        let dx = layer.backward(r)
        let rr = SSLRef.f64(r), xv = SSLRef.f64(x), vv = SSLRef.f64(layer.weight.value)
        let fdx = sslNumericalGrad(xv) { v in zip(ref(v, vv), rr).map { $0 * $1 }.reduce(0, +) }
        let fdv = sslNumericalGrad(vv) { v in zip(ref(xv, v), rr).map { $0 * $1 }.reduce(0, +) }
        assertSSLGrad(SSLRef.f64(dx), fdx, "weight-norm linear dx")
        assertSSLGrad(SSLRef.f64(layer.weight.grad).map { $0 - 0.5 }, fdv, "weight-norm linear dV (accumulated)")
        // The function is invariant to the scale of each row of V: dV is orthogonal to V's rows.
        for o in 0..<O {
            var d = 0.0
            for i in 0..<I { d += (Double(layer.weight.grad[o * I + i]) - 0.5) * vv[o * I + i] }
            XCTAssertEqual(d, 0, accuracy: 1e-5, "row \(o): dV . V")
        }
    }

    func testDINOHeadBackward() {
        var rng = SSLTestRNG(3)
        let (N, Din, H, Bn, K) = (3, 5, 6, 4, 7)
        let head = DINOHead(inDim: Din, hidden: H, bottleneck: Bn, prototypes: K)
        // non-trivial weights everywhere (biases too)
        for p in head.parameters { p.value.copy(from: rng.tensor(p.shape, std: 0.6)) }
        let x = rng.tensor([N, Din]), r = rng.tensor([N, K])
        let params = head.parameters
        func ref(_ xv: [Double], _ pv: [[Double]]) -> [Double] {
            // order: fc1 w, b, fc2 w, b, fc3 w, b, last V
            let h1 = SSLRef.gelu(SSLRef.linear(xv, pv[0], pv[1], inF: Din, outF: H))
            let h2 = SSLRef.gelu(SSLRef.linear(h1, pv[2], pv[3], inF: H, outF: H))
            let z = SSLRef.l2(SSLRef.linear(h2, pv[4], pv[5], inF: H, outF: Bn), C: Bn)
            return SSLRef.linear(z, SSLRef.l2(pv[6], C: Bn), nil, inF: Bn, outF: K)
        }
        let xv = SSLRef.f64(x), pv = params.map { SSLRef.f64($0.value) }, rr = SSLRef.f64(r)
        let y = head.forward(x)
        XCTAssertLessThan(sslRelErr(SSLRef.f64(y), ref(xv, pv)), 2e-5, "DINO head forward")
        head.zeroGrad()
        let dx = head.backward(r)
        func loss(_ xv: [Double], _ pv: [[Double]]) -> Double { zip(ref(xv, pv), rr).map { $0 * $1 }.reduce(0, +) }
        assertSSLGrad(SSLRef.f64(dx), sslNumericalGrad(xv) { loss($0, pv) }, "DINO head dx")
        for (k, p) in params.enumerated() {
            let fd = sslNumericalGrad(pv[k]) { v in var q = pv; q[k] = v; return loss(xv, q) }
            assertSSLGrad(SSLRef.f64(p.grad), fd, "DINO head d\(p.key)")
        }
    }

    func testDINOLossValueAndGradient() {
        var rng = SSLTestRNG(4)
        let (G, B, K, L) = (2, 3, 6, 2)
        let pairs = G * (G + L) - G
        let tLogits = rng.tensor([G * B, K], std: 0.3), center = rng.tensor([K], std: 0.1)
        let tt: Float = 0.07, ts: Float = 0.1
        let probs = SSLOps.teacherProbs(tLogits, center: center, temp: tt)
        // teacher probs vs float64 softmax((t - c) / tt)
        var refP = [Double]()
        for r in 0..<(G * B) {
            let row = (0..<K).map { (Double(tLogits[r * K + $0]) - Double(center[$0])) / Double(tt) }
            refP += SSLRef.logSoftmax(row).map { exp($0) }
        }
        XCTAssertLessThan(sslRelErr(SSLRef.f64(probs), refP), 1e-5, "teacher probs")
        let tv = SSLRef.f64(probs)
        // globals group and locals group, summed: the total equals the loss over all crops at once
        let sG = rng.tensor([G * B, K], std: 0.5), sL = rng.tensor([L * B, K], std: 0.5)
        let (lg, gg) = SSLOps.dinoLoss(student: sG, views: [0, 1], teacher: probs, G: G, B: B, temp: ts, pairs: pairs)
        let (ll, gl) = SSLOps.dinoLoss(student: sL, views: [2, 3], teacher: probs, G: G, B: B, temp: ts, pairs: pairs)
        let all = SSLRef.f64(sG) + SSLRef.f64(sL)
        let ref = SSLRef.dino(all, views: [0, 1, 2, 3], teacher: tv, G: G, B: B, K: K, temp: Double(ts), pairs: pairs)
        XCTAssertEqual(lg + ll, ref, accuracy: 1e-6 * abs(ref), "DINO loss value")
        let fd = sslNumericalGrad(all) { SSLRef.dino($0, views: [0, 1, 2, 3], teacher: tv, G: G, B: B, K: K, temp: Double(ts), pairs: pairs) }
        assertSSLGrad(SSLRef.f64(gg) + SSLRef.f64(gl), fd, "DINO loss d(student logits)")
    }

    func testCenterUpdateAndEntropies() {
        let c = Tensor([3], [1, 2, 3])
        let t = Tensor([2, 3], [0, 0, 0, 2, 4, 6])
        SSLOps.updateCenter(c, teacherLogits: t, momentum: 0.9)
        XCTAssertEqual(c.array, [0.9 + 0.1, 1.8 + 0.2, 2.7 + 0.3].map { Float($0) })
        let uniform = Tensor([2, 4], repeating: 0.25)
        let e = SSLOps.entropies(uniform)
        XCTAssertEqual(e.rowMean, log(4), accuracy: 1e-6)
        XCTAssertEqual(e.ofMean, log(4), accuracy: 1e-6)
        let onehot = Tensor([2, 2], [1, 0, 0, 1])
        let e2 = SSLOps.entropies(onehot)
        XCTAssertEqual(e2.rowMean, 0, accuracy: 1e-12)
        XCTAssertEqual(e2.ofMean, log(2), accuracy: 1e-6)
    }

    func testKoLeoValueAndGradient() {
        var rng = SSLTestRNG(5)
        let (N, D) = (5, 4)
        let x = rng.tensor([N, D])
        let w: Float = 0.7
        let (loss, g) = SSLOps.koleo(x, weight: w)
        let xv = SSLRef.f64(x)
        XCTAssertEqual(loss, SSLRef.koleo(xv, D: D), accuracy: 1e-5, "KoLeo value")
        let fd = sslNumericalGrad(xv) { Double(w) * SSLRef.koleo($0, D: D) }
        assertSSLGrad(SSLRef.f64(g), fd, "KoLeo dx")
    }
}
