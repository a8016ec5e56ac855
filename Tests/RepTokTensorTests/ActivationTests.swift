import RepTokTestSupport
import RepTokTensor
import XCTest

/// GELU, SiLU, softmax (with scale): small finite-difference checks and large row-split inputs.
final class ActivationTests: XCTestCase {
    func testGELU() {
        var rng = SeededRNG(21)
        let x = randn([3, 7], &rng, std: 2)
        let y = Ops.gelu(x)
        assertRelErr(y.f64, Ref.gelu(x.f64), Tol.gelu, "gelu forward")
        let dy = randn([3, 7], &rng)
        let g = accumulatedGradients("geluBackward", shapes: [x.shape]) { g in Ops.geluBackward(dy, x, dx: g[0]) }
        gradCheck("gelu", [GradInput("x", x.f64, g[0])], cotangent: dy.f64) { Ref.gelu($0[0]) }
    }

    func testSiLU() {
        var rng = SeededRNG(22)
        let x = randn([2, 8], &rng, std: 3)
        let y = Ops.silu(x)
        assertRelErr(y.f64, Ref.silu(x.f64), Tol.fwd, "silu forward")
        let dy = randn([2, 8], &rng)
        let g = accumulatedGradients("siluBackward", shapes: [x.shape]) { g in Ops.siluBackward(dy, x, dx: g[0]) }
        gradCheck("silu", [GradInput("x", x.f64, g[0])], cotangent: dy.f64) { Ref.silu($0[0]) }
    }

    func testSoftmaxWithScale() {
        for (scale, seed) in [(Float(1), UInt64(23)), (Float(0.7), 24), (1 / Float(8).squareRoot(), 25)] {
            var rng = SeededRNG(seed)
            let x = randn([3, 6], &rng, std: 2)
            let p = Ops.softmax(x, scale: scale)
            let ref: ([[Double]]) -> [Double] = { Ref.softmax($0[0], C: 6, scale: Double(scale)) }
            assertRelErr(p.f64, ref([x.f64]), Tol.fwd, "softmax forward scale \(scale)")
            let dp = randn([3, 6], &rng)
            let g = accumulatedGradients("softmaxBackward", shapes: [x.shape]) { g in
                Ops.softmaxBackward(dp, p, scale: scale, dx: g[0])
            }
            gradCheck("softmax scale \(scale)", [GradInput("x", x.f64, g[0])], cotangent: dp.f64, forward: ref)
        }
    }

    /// 1M + 37 elements: the 1024-element row split into 8 chunks with a ragged last row.
    func testGELULargeMatchesReference() {
        var rng = SeededRNG(26)
        let n = (1 << 20) + 37
        let x = randn([n], &rng, std: 2), dy = randn([n], &rng)
        let y = Ops.gelu(x)
        assertRelErr(y.f64, Ref.gelu(x.f64), Tol.gelu, "gelu forward, large")
        let dx = Tensor([n])
        Ops.geluBackward(dy, x, dx: dx)
        let ref = (0..<n).map { Double(dy[$0]) * Ref.geluDerivative(Double(x[$0])) }
        assertRelErr(dx.f64, ref, Tol.large, "gelu backward, large")
    }

    /// [1031, 64]: big enough for the 8-way row split, ragged last chunk.
    func testSoftmaxLargeMatchesReference() {
        var rng = SeededRNG(27)
        let x = randn([1031, 64], &rng, std: 3)
        let p = Ops.softmax(x, scale: 0.5)
        assertRelErr(p.f64, Ref.softmax(x.f64, C: 64, scale: 0.5), Tol.fwd, "softmax forward, large")
    }
}
