import RepTokTestSupport
import RepTokTensor
import XCTest

/// adaLN modulation (shift/scale read at offsets inside a [B, 6C] mod tensor), gated residual add
/// and LayerScale. Gradients are checked for EVERY element of mod, so writes into the wrong
/// columns (or sample rows) show up as mismatches against the zero finite differences there.
final class ModulationTests: XCTestCase {
    let (B, T, C) = (2, 3, 8)

    func testModulate() {
        // (sh1, sc1) and (sh2, sc2) of split6(ada(...)) = (sh1, sc1, g1, sh2, sc2, g2).
        for (shiftAt, scaleAt, seed) in [(0, C, UInt64(41)), (3 * C, 4 * C, 42)] {
            var rng = SeededRNG(seed)
            let (B, T, C) = (self.B, self.T, self.C), stride = 6 * C
            let x = randn([B, T, C], &rng), mod = randn([B, stride], &rng, std: 0.5)
            let ref: ([[Double]]) -> [Double] = { v in
                Ref.modulate(v[0], v[1], B: B, T: T, C: C, stride: stride, shiftAt: shiftAt, scaleAt: scaleAt)
            }
            let y = Ops.modulate(x, B: B, mod: mod, shiftAt: shiftAt, scaleAt: scaleAt)
            XCTAssertEqual(y.shape, x.shape)
            assertRelErr(y.f64, ref([x.f64, mod.f64]), Tol.fwd, "modulate forward (shift@\(shiftAt), scale@\(scaleAt))")
            let dy = randn(x.shape, &rng)
            let g = accumulatedGradients("modulateBackward", shapes: [x.shape, mod.shape]) { g in
                Ops.modulateBackward(dy, x, B: B, mod: mod, dmod: g[1], shiftAt: shiftAt, scaleAt: scaleAt, dx: g[0])
            }
            gradCheck("modulate (shift@\(shiftAt), scale@\(scaleAt))",
                      [GradInput("x", x.f64, g[0]), GradInput("mod", mod.f64, g[1])], cotangent: dy.f64, forward: ref)
        }
    }

    /// h += gate * y in place. The gradient with respect to h is the identity (the caller passes
    /// dh through); gateAddBackward gives dy and dmod[gate].
    func testGateAdd() {
        for (gateAt, seed) in [(2 * C, UInt64(43)), (5 * C, 44)] {
            var rng = SeededRNG(seed)
            let (B, T, C) = (self.B, self.T, self.C), stride = 6 * C
            let h = randn([B, T, C], &rng), y = randn([B, T, C], &rng), mod = randn([B, stride], &rng, std: 0.5)
            let ref: ([[Double]]) -> [Double] = { v in
                Ref.gateAdd(v[0], v[1], v[2], B: B, T: T, C: C, stride: stride, gateAt: gateAt)
            }
            let expected = ref([h.f64, y.f64, mod.f64])
            let hOut = h.clone()
            Ops.gateAdd(hOut, y, B: B, mod: mod, gateAt: gateAt)
            assertRelErr(hOut.f64, expected, Tol.fwd, "gateAdd forward (gate@\(gateAt))")
            let dh = randn([B, T, C], &rng)
            let g = accumulatedGradients("gateAddBackward", shapes: [y.shape, mod.shape]) { g in
                Ops.gateAddBackward(dh, y, B: B, mod: mod, dmod: g[1], gateAt: gateAt, dy: g[0])
            }
            gradCheck("gateAdd (gate@\(gateAt))",
                      [GradInput("h", h.f64, dh.f64), GradInput("y", y.f64, g[0]), GradInput("mod", mod.f64, g[1])],
                      cotangent: dh.f64, forward: ref)
        }
    }

    func testColScale() {
        var rng = SeededRNG(45)
        let x = randn([3, 7], &rng), gain = randn([7], &rng, std: 0.1, mean: 0.5)
        let ref: ([[Double]]) -> [Double] = { Ref.colScale($0[0], $0[1]) }
        assertRelErr(Ops.colScale(x, gain).f64, ref([x.f64, gain.f64]), Tol.fwd, "colScale forward")
        let dy = randn([3, 7], &rng)
        let g = accumulatedGradients("colScaleBackward", shapes: [x.shape, gain.shape]) { g in
            Ops.colScaleBackward(dy, x, gain, dx: g[0], dg: g[1])
        }
        gradCheck("colScale", [GradInput("x", x.f64, g[0]), GradInput("g", gain.f64, g[1])], cotangent: dy.f64, forward: ref)
        // Frozen gain (dg nil): dx is unchanged.
        let dx = Tensor(x.shape)
        Ops.colScaleBackward(dy, x, gain, dx: dx, dg: nil)
        XCTAssertEqual(dx.f64, g[0], "colScale dx with dg nil")
    }

    /// The row-range forms the decoder's packed inference uses (`layerNormRows`, `modulateRows`,
    /// `gateAddRows`) give every row exactly the tensor forms' bits (the forms checked above and
    /// in NormTests against the references), whatever the range the row is computed in.
    func testRowFormsMatchTheTensorForms() {
        var rng = SeededRNG(45)
        let (T, C) = (7, 16), S = 6 * C
        let h = randn([T, C], &rng, std: 2, mean: 0.3), y = randn([T, C], &rng), mod = randn([1, S], &rng, std: 0.5)
        let (ln, st) = Ops.layerNorm(h, nil, nil, eps: 1e-6)
        let mo = Ops.modulate(ln, B: 1, mod: mod, shiftAt: 3 * C, scaleAt: 4 * C)
        let ga = h.clone()
        Ops.gateAdd(ga, y, B: 1, mod: mod, gateAt: 5 * C)
        for ranges in [[(0, T)], [(0, 3), (3, T)], [(0, 1), (1, 2), (2, 6), (6, T)]] {
            let ln2 = Tensor([T, C]), stats = Tensor([2, T]), mo2 = Tensor([T, C]), ga2 = h.clone()
            for (r0, r1) in ranges {
                Ops.layerNormRows(into: ln2.data, h.data, rows: r0, r1, width: C, eps: 1e-6, mean: stats.data, rstd: stats.data + T)
                Ops.modulateRows(into: mo2.data + r0 * C, ln2.data + r0 * C, rows: r1 - r0, width: C,
                                 shift: mod.data + 3 * C, scale: mod.data + 4 * C)
                Ops.gateAddRows(ga2.data + r0 * C, y.data + r0 * C, rows: r1 - r0, width: C, gate: mod.data + 5 * C)
            }
            XCTAssertEqual(ln2.array, ln.array, "layerNormRows \(ranges)")
            XCTAssertEqual(Array(stats.array[0..<T]), st.mean!.array, "layerNormRows mean \(ranges)")
            XCTAssertEqual(Array(stats.array[T...]), st.rstd.array, "layerNormRows rstd \(ranges)")
            XCTAssertEqual(mo2.array, mo.array, "modulateRows \(ranges)")
            XCTAssertEqual(ga2.array, ga.array, "gateAddRows \(ranges)")
        }
    }
}
