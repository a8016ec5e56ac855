import CRTKernels
import RepTokTestSupport
import RepTokTensor
import XCTest

/// The inference products against a pre-packed weight (`PackedWeight`, `rt_gemm_packed`): values
/// against a float64 reference on edge shapes, the fused GELU, the strided form, and the promise
/// that lets the codec split them freely: an element's bits do not depend on the thread count,
/// on how rows or panels are split, or on which other rows are in the batch.
final class PackedLinearTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(PackedWeight.isSupported, "no AVX2/FMA: the packed path is not built on this CPU")
    }

    func testMatchesFloat64ReferenceOnEdgeShapes() {
        var rng = SeededRNG(501)
        // rows around the 6-row tile and the 96-row block, K around the 256 block, N around 16
        for (n, inF, outF) in [(1, 1, 1), (5, 3, 7), (6, 16, 16), (7, 255, 17), (13, 256, 40), (97, 257, 33),
                               (200, 600, 16), (2, 513, 1), (193, 64, 48)] {
            for bias in [false, true] {
                let x = randn([n, inF], &rng), w = randn([outF, inF], &rng, std: 0.5)
                let b: Tensor? = bias ? randn([outF], &rng) : nil
                let p = PackedWeight(w)!
                XCTAssertEqual([p.N, p.K], [outF, inF])
                let ref = Ref.linear(x.f64, w.f64, b?.f64, n: n, inF: inF, outF: outF)
                let y = Ops.linear(x, packed: p, b)
                XCTAssertEqual(y.shape, [n, outF])
                assertRelErr(y.f64, ref, Tol.fwd, "packed linear n=\(n) in=\(inF) out=\(outF) bias \(bias)")
                let g = Ops.linear(x, packed: p, b, activation: .gelu)
                assertRelErr(g.f64, Ref.gelu(ref), Tol.fwd, "packed linear + GELU n=\(n) in=\(inF) out=\(outF)")
            }
        }
    }

    /// The fused GELU against the exact one (float64 erf), element by element: its erf is
    /// Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), so |error| <= 2e-7 max(1, |x|), over the
    /// whole range and far into both tails; the separate kernel (Ops.gelu) meets the same bound.
    func testFusedGELUIsWithinItsErrorBound() {
        var rng = SeededRNG(502)
        let (n, inF, outF) = (37, 48, 64)
        let x = randn([n, inF], &rng, std: 1.5), w = randn([outF, inF], &rng, std: 0.6), b = randn([outF], &rng, std: 2)
        let p = PackedWeight(w)!
        let pre = Ops.linear(x, packed: p, b)
        let fused = Ops.linear(x, packed: p, b, activation: .gelu), separate = Ops.gelu(pre)
        let exact = Ref.gelu(pre.f64)
        var worstFused = 0.0, worstSeparate = 0.0
        for i in 0..<pre.count {
            let scale = max(1, abs(Double(pre[i])))
            worstFused = max(worstFused, abs(Double(fused[i]) - exact[i]) / scale)
            worstSeparate = max(worstSeparate, abs(Double(separate[i]) - exact[i]) / scale)
        }
        XCTAssertLessThan(worstFused, 2e-7, "fused GELU: worst |error| / max(1, |x|)")
        XCTAssertLessThan(worstSeparate, 2e-7, "Ops.gelu: worst |error| / max(1, |x|)")
        let big = pre.array.map { abs($0) }.max()!
        XCTAssertGreaterThan(big, 8, "the inputs must reach the tails")
    }

    /// Bits do not depend on threads, on the row or panel ranges of the calls, or on the batch:
    /// row r computed alone equals row r computed among 200 others.
    func testResultsDoNotDependOnSplitsThreadsOrBatch() {
        var rng = SeededRNG(503)
        let (n, inF, outF) = (203, 700, 88)
        let x = randn([n, inF], &rng), w = randn([outF, inF], &rng, std: 0.3), b = randn([outF], &rng)
        let p = PackedWeight(w)!
        for act in [Ops.Activation.none, .gelu] {
            let one = withThreads(1) { Ops.linear(x, packed: p, b, activation: act) }
            let two = withThreads(2) { Ops.linear(x, packed: p, b, activation: act) }
            assertBitIdentical(one, two, "packed linear (\(act)), 1 vs 2 threads")
            // Pieces: uneven row ranges and panel ranges, written into one output.
            let pieced = Tensor([n, outF], repeating: .nan)
            let panels = (outF + 15) / 16
            for (r0, r1) in [(0, 1), (1, 50), (50, 107), (107, 203)] {
                for (p0, p1) in [(0, 2), (2, panels)] {
                    rt_gemm_packed(pieced.data, outF, x.data, inF, p.panels, b.data, outF, inF, r0, r1, p0, p1, act.rawValue)
                }
            }
            assertBitIdentical(one, pieced, "packed linear (\(act)), one call vs pieces")
            for r in [0, 5, 6, 101, 202] {
                let alone = Ops.linear(x.rows(r, r + 1, width: inF), packed: p, b, activation: act)
                assertBitIdentical(alone, one.rows(r, r + 1, width: outF), "row \(r) alone vs in the batch (\(act))")
            }
        }
    }

    /// The strided form writes its column block and nothing else.
    func testIntoStridedWritesOnlyItsBlock() {
        var rng = SeededRNG(504)
        let (n, inF, outF, ld, off) = (9, 20, 21, 40, 7)
        let x = randn([n, inF], &rng), w = randn([outF, inF], &rng), b = randn([outF], &rng)
        let sentinel: Float = 1234.5
        let buf = Tensor([n, ld], repeating: sentinel)
        Ops.linear(into: buf.data + off, ldy: ld, x.data, n: n, packed: PackedWeight(w)!, b)
        let (block, outside) = columnBlock(buf, rows: n, ld: ld, off: off, width: outF, sentinel: sentinel)
        XCTAssertEqual(outside, 0, "packed linear(into:ldy:) wrote outside its column block")
        assertRelErr(block, Ref.linear(x.f64, w.f64, b.f64, n: n, inF: inF, outF: outF), Tol.fwd, "strided packed linear")
    }

    /// A 4-D (conv-shaped) weight packs as [out, in]; the pack is a snapshot of the weight.
    func testConvShapedWeightAndSnapshot() {
        var rng = SeededRNG(505)
        let x = randn([4, 12], &rng), w = randn([5, 3, 2, 2], &rng), b = randn([5], &rng)
        let p = PackedWeight(w)!
        XCTAssertEqual([p.N, p.K], [5, 12])
        let before = Ops.linear(x, packed: p, b)
        assertRelErr(before.f64, Ref.linear(x.f64, w.f64, b.f64, n: 4, inF: 12, outF: 5), Tol.fwd, "4-D weight")
        w.fill(0)
        assertBitIdentical(Ops.linear(x, packed: p, b), before, "a pack does not see later weight changes")
    }

    func testPackMemoryIsReturned() {
        let start = PackedWeight.bytes
        do {
            let p = PackedWeight(Tensor([33, 10]))!
            XCTAssertEqual(PackedWeight.bytes - start, 48 * 10 * 4, "3 panels of 16 columns x 10 floats")
            _ = p
        }
        XCTAssertEqual(PackedWeight.bytes, start)
    }
}
