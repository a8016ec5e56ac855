import RepTokTestSupport
import RepTokTensor
import XCTest

/// LayerNorm and RMSNorm: with and without parameters, small finite-difference checks and large
/// row-split inputs against float64.
final class NormTests: XCTestCase {
    let eps: Float = 1e-5

    /// LayerNorm with the given parameters; x [2, 3, 8] (6 rows of C = 8).
    private func checkLayerNorm(weight: Bool, bias: Bool, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        var rng = SeededRNG(seed)
        let C = 8
        let x = randn([2, 3, C], &rng, std: 1.5, mean: 0.3)
        let w: Tensor? = weight ? randn([C], &rng, std: 0.3, mean: 1) : nil
        let b: Tensor? = bias ? randn([C], &rng) : nil
        let (y, cache) = Ops.layerNorm(x, w, b, eps: eps)
        let e = Double(eps)
        let ref = Ref.layerNorm(x.f64, w?.f64, b?.f64, C: C, eps: e)
        let tag = "layerNorm(w: \(weight), b: \(bias))"
        assertRelErr(y.f64, ref.y, Tol.fwd, "\(tag) forward", file: file, line: line)
        assertRelErr(cache.mean?.f64 ?? [], ref.mean, Tol.fwd, "\(tag) cached mean", file: file, line: line)
        assertRelErr(cache.rstd.f64, ref.rstd, Tol.fwd, "\(tag) cached rstd", file: file, line: line)

        let dy = randn(x.shape, &rng)
        let g = accumulatedGradients("layerNormBackward", shapes: [x.shape, [C], [C]], file: file, line: line) { g in
            Ops.layerNormBackward(dy, x, cache, w, dx: g[0], dw: weight ? g[1] : nil, db: bias ? g[2] : nil)
        }
        var inputs = [GradInput("x", x.f64, g[0])]
        if let w = w { inputs.append(GradInput("w", w.f64, g[1])) }
        if let b = b { inputs.append(GradInput("b", b.f64, g[2])) }
        gradCheck(tag, inputs, cotangent: dy.f64, file: file, line: line) { v in
            Ref.layerNorm(v[0], weight ? v[1] : nil, bias ? v[weight ? 2 : 1] : nil, C: C, eps: e).y
        }
        if !weight { XCTAssertTrue(g[1].allSatisfy { $0 == 0 }, "\(tag): dw nil must be skipped", file: file, line: line) }
        if !bias { XCTAssertTrue(g[2].allSatisfy { $0 == 0 }, "\(tag): db nil must be skipped", file: file, line: line) }
    }

    func testLayerNormAffine() { checkLayerNorm(weight: true, bias: true, seed: 31) }
    func testLayerNormNoAffine() { checkLayerNorm(weight: false, bias: false, seed: 32) }
    func testLayerNormWeightOnly() { checkLayerNorm(weight: true, bias: false, seed: 33) }

    /// A frozen affine LayerNorm (Parameter.g == nil: w given, dw and db nil) still gives dx.
    func testLayerNormFrozenParameters() {
        var rng = SeededRNG(34)
        let C = 8
        let x = randn([3, C], &rng), w = randn([C], &rng, std: 0.3, mean: 1), b = randn([C], &rng)
        let (_, cache) = Ops.layerNorm(x, w, b, eps: eps)
        let dy = randn(x.shape, &rng)
        let dxFrozen = Tensor(x.shape), dxFull = Tensor(x.shape)
        Ops.layerNormBackward(dy, x, cache, w, dx: dxFrozen, dw: nil, db: nil)
        Ops.layerNormBackward(dy, x, cache, w, dx: dxFull, dw: Tensor([C]), db: Tensor([C]))
        assertBitIdentical(dxFrozen, dxFull, "layerNorm dx with frozen parameters")
    }

    private func checkRMSNorm(weight: Bool, seed: UInt64) {
        var rng = SeededRNG(seed)
        let C = 8
        let x = randn([2, 3, C], &rng, std: 1.5, mean: 0.3)
        let w: Tensor? = weight ? randn([C], &rng, std: 0.3, mean: 1) : nil
        let (y, cache) = Ops.rmsNorm(x, w, eps: eps)
        let e = Double(eps)
        let ref = Ref.rmsNorm(x.f64, w?.f64, C: C, eps: e)
        assertRelErr(y.f64, ref.y, Tol.fwd, "rmsNorm(w: \(weight)) forward")
        assertRelErr(cache.rstd.f64, ref.rstd, Tol.fwd, "rmsNorm(w: \(weight)) cached rstd")
        XCTAssertNil(cache.mean)
        let dy = randn(x.shape, &rng)
        let g = accumulatedGradients("rmsNormBackward", shapes: [x.shape, [C]]) { g in
            Ops.rmsNormBackward(dy, x, cache, w, dx: g[0], dw: weight ? g[1] : nil)
        }
        var inputs = [GradInput("x", x.f64, g[0])]
        if let w = w { inputs.append(GradInput("w", w.f64, g[1])) }
        gradCheck("rmsNorm(w: \(weight))", inputs, cotangent: dy.f64) { v in
            Ref.rmsNorm(v[0], weight ? v[1] : nil, C: C, eps: e).y
        }
    }

    func testRMSNormWithWeight() { checkRMSNorm(weight: true, seed: 35) }
    func testRMSNormWithoutWeight() { checkRMSNorm(weight: false, seed: 36) }

    func testRMSNormFrozenWeight() {
        var rng = SeededRNG(37)
        let C = 8
        let x = randn([3, C], &rng), w = randn([C], &rng, std: 0.3, mean: 1)
        let (_, cache) = Ops.rmsNorm(x, w, eps: eps)
        let dy = randn(x.shape, &rng)
        let dxFrozen = Tensor(x.shape), dxFull = Tensor(x.shape)
        Ops.rmsNormBackward(dy, x, cache, w, dx: dxFrozen, dw: nil)
        Ops.rmsNormBackward(dy, x, cache, w, dx: dxFull, dw: Tensor([C]))
        assertBitIdentical(dxFrozen, dxFull, "rmsNorm dx with a frozen weight")
    }

    /// Large inputs take the multi-chunk row split in forward and backward (per-chunk partial
    /// dw/db reduced in order). [4096, 256] splits evenly; [1037, 300] leaves a short last chunk.
    func testLayerNormLargeMatchesReference() {
        for (n, C, seed) in [(4096, 256, UInt64(38)), (1037, 300, 39)] {
            var rng = SeededRNG(seed)
            let x = randn([n, C], &rng, std: 2, mean: 0.5), w = randn([C], &rng, std: 0.3, mean: 1), b = randn([C], &rng)
            let e = Double(eps)
            let (y, cache) = Ops.layerNorm(x, w, b, eps: eps)
            let ref = Ref.layerNorm(x.f64, w.f64, b.f64, C: C, eps: e)
            assertRelErr(y.f64, ref.y, Tol.fwd, "layerNorm [\(n), \(C)] forward")
            assertRelErr(cache.rstd.f64, ref.rstd, Tol.fwd, "layerNorm [\(n), \(C)] rstd")
            let dy = randn([n, C], &rng)
            let dx = Tensor([n, C]), dw = Tensor([C]), db = Tensor([C])
            Ops.layerNormBackward(dy, x, cache, w, dx: dx, dw: dw, db: db)
            let gr = Ref.layerNormBackward(dy.f64, x.f64, w.f64, C: C, eps: e)
            assertRelErr(dx.f64, gr.dx, Tol.large, "layerNorm [\(n), \(C)] dx")
            assertRelErr(dw.f64, gr.dw, Tol.large, "layerNorm [\(n), \(C)] dw")
            assertRelErr(db.f64, gr.db, Tol.large, "layerNorm [\(n), \(C)] db")
        }
    }

    func testRMSNormLargeMatchesReference() {
        var rng = SeededRNG(40)
        let (n, C) = (4096, 256)
        let x = randn([n, C], &rng, std: 2, mean: 0.5), w = randn([C], &rng, std: 0.3, mean: 1)
        let e = Double(eps)
        let (y, cache) = Ops.rmsNorm(x, w, eps: eps)
        let ref = Ref.rmsNorm(x.f64, w.f64, C: C, eps: e)
        assertRelErr(y.f64, ref.y, Tol.fwd, "rmsNorm large forward")
        let dy = randn([n, C], &rng)
        let dx = Tensor([n, C]), dw = Tensor([C])
        Ops.rmsNormBackward(dy, x, cache, w, dx: dx, dw: dw)
        let gr = Ref.rmsNormBackward(dy.f64, x.f64, w.f64, C: C, eps: e)
        assertRelErr(dx.f64, gr.dx, Tol.large, "rmsNorm large dx")
        assertRelErr(dw.f64, gr.dw, Tol.large, "rmsNorm large dw")
    }
}
