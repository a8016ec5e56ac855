import RepTokTestSupport
import RepTokTensor
import XCTest

/// Losses (their gradient is returned, scaled by gradScale: checked as the FD gradient of
/// gradScale * loss) and multi-head attention.
final class LossTests: XCTestCase {
    func testMSE() {
        var rng = SeededRNG(81)
        let a = randn([3, 5], &rng), b = randn([3, 5], &rng)
        let gradScale: Float = 0.5
        let (loss, grad) = Ops.mse(a, b, gradScale: gradScale)
        let ref = Ref.mse(a.f64, b.f64)
        XCTAssertEqual(Double(loss), ref, accuracy: 1e-6 * ref, "mse loss")
        XCTAssertEqual(grad.shape, a.shape)
        gradCheck("mse", [GradInput("a", a.f64, grad.f64)], cotangent: [Double(gradScale)]) { [b] v in
            [Ref.mse(v[0], b.f64)]
        }
    }

    func testCosineLoss() {
        var rng = SeededRNG(82)
        let (B, D) = (3, 8)
        let a = randn([B, D], &rng), b = randn([B, D], &rng, std: 2)
        // Make one row nearly aligned (cos ~ 1), where the gradient is small and cancels.
        for i in 0..<D { a[D + i] = b[D + i] * 0.5 + a[D + i] * 0.05 }
        let gradScale: Float = 1.3
        let (loss, grad) = Ops.cosineLoss(a, b, gradScale: gradScale)
        let ref = Ref.cosineLoss(a.f64, b.f64, D: D, eps: Double(Float(1e-8)))
        XCTAssertEqual(Double(loss), ref, accuracy: 1e-6, "cosineLoss loss")
        gradCheck("cosineLoss", [GradInput("a", a.f64, grad.f64)], cotangent: [Double(gradScale)]) { [b] v in
            [Ref.cosineLoss(v[0], b.f64, D: D, eps: Double(Float(1e-8)))]
        }
    }
}

final class AttentionTests: XCTestCase {
    /// (B, T, heads, head dim): the required B=2, T=5, 2 heads of 4, plus one head and many heads.
    let configs = [(2, 5, 2, 4), (1, 3, 1, 8), (3, 4, 4, 2)]

    /// The inference path (no probabilities kept) on wider shapes: T and the head width not
    /// multiples of the kernels' tiles, and the decoder's own T = 257, dh = 64.
    func testInferenceAttentionMatchesReference() {
        for (B, T, heads, dh) in [(2, 37, 2, 24), (1, 257, 1, 64), (3, 7, 3, 5)] {
            var rng = SeededRNG(UInt64(7 * T + dh))
            let qkv = randn([B * T, 3 * heads * dh], &rng)
            let (out, cache) = Attention.forward(qkv, B: B, T: T, heads: heads, keepProbs: false)
            XCTAssertNil(cache)
            let ref = Ref.attention(qkv.f64, B: B, T: T, heads: heads)
            assertRelErr(out.f64, ref.out, Tol.fwd, "inference attention B=\(B) T=\(T) heads=\(heads) dh=\(dh)")
        }
    }

    func testAttentionForwardBackward() {
        for (k, (B, T, heads, dh)) in configs.enumerated() {
            var rng = SeededRNG(91 + UInt64(k))
            let C = heads * dh
            let qkv = randn([B * T, 3 * C], &rng)
            let tag = "attention B=\(B) T=\(T) heads=\(heads) dh=\(dh)"
            let (out, cache) = Attention.forward(qkv, B: B, T: T, heads: heads)
            XCTAssertEqual(out.shape, [B * T, C])
            let ref = Ref.attention(qkv.f64, B: B, T: T, heads: heads)
            assertRelErr(out.f64, ref.out, Tol.fwd, "\(tag) forward")
            guard let cache = cache else { XCTFail("\(tag): no cache"); continue }
            XCTAssertEqual(cache.probs.shape, [B, heads, T, T])
            assertRelErr(cache.probs.f64, ref.probs, Tol.fwd, "\(tag) probabilities")
            // keepProbs: false computes the same output.
            let (out2, cache2) = Attention.forward(qkv, B: B, T: T, heads: heads, keepProbs: false)
            XCTAssertNil(cache2)
            assertBitIdentical(out2, out, "\(tag) keepProbs false")

            // backward RETURNS a fresh dqkv (no accumulate contract); check every element.
            let dout = randn([B * T, C], &rng)
            let dqkv = Attention.backward(dout, qkv, cache)
            XCTAssertEqual(dqkv.shape, qkv.shape)
            gradCheck(tag, [GradInput("qkv", qkv.f64, dqkv.f64)], cotangent: dout.f64) {
                Ref.attention($0[0], B: B, T: T, heads: heads).out
            }
            // Per block (q, k, v) as well, so a small block cannot hide behind a large one.
            let fd = numericalGradients([qkv.f64], cotangent: dout.f64) { Ref.attention($0[0], B: B, T: T, heads: heads).out }[0]
            for (bi, name) in ["q", "k", "v"].enumerated() {
                var got: [Double] = [], want: [Double] = []
                for r in 0..<(B * T) {
                    for c in (bi * C)..<((bi + 1) * C) {
                        got.append(Double(dqkv[r * 3 * C + c])); want.append(fd[r * 3 * C + c])
                    }
                }
                assertRelErr(got, want, Tol.grad, "\(tag) d\(name)")
            }
        }
    }
}
