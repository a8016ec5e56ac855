import RepTokTestSupport
import RepTokTensor
import XCTest

/// Linear (plain and strided forms), columnSum, add / addInPlace.
final class LinearTests: XCTestCase {
    func testLinearForwardBackward() {
        for (n, inF, outF, bias) in [(3, 6, 5, true), (2, 8, 7, false), (4, 5, 3, true)] {
            var rng = SeededRNG(UInt64(100 * n + inF))
            let x = randn([n, inF], &rng), w = randn([outF, inF], &rng, std: 0.5)
            let b: Tensor? = bias ? randn([outF], &rng) : nil
            let ref: ([[Double]]) -> [Double] = { v in
                Ref.linear(v[0], v[1], bias ? v[2] : nil, n: n, inF: inF, outF: outF)
            }
            let y = Ops.linear(x, w, b)
            XCTAssertEqual(y.shape, [n, outF])
            assertRelErr(y.f64, ref([x.f64, w.f64] + (b.map { [$0.f64] } ?? [])), Tol.fwd, "linear forward")

            let dy = randn([n, outF], &rng)
            let g = accumulatedGradients("linearBackward", shapes: [[n, inF], [outF, inF], [outF]]) { g in
                Ops.linearBackward(dy, x, w, dx: g[0], dw: g[1], db: bias ? g[2] : nil)
            }
            var inputs = [GradInput("x", x.f64, g[0]), GradInput("w", w.f64, g[1])]
            if let b = b { inputs.append(GradInput("b", b.f64, g[2])) }
            gradCheck("linear n=\(n) in=\(inF) out=\(outF)", inputs, cotangent: dy.f64, forward: ref)
            if !bias { XCTAssertTrue(g[2].allSatisfy { $0 == 0 }, "db nil must be skipped") }

            // nil gradients are skipped; the others are unchanged by the omission.
            let dwOnly = Tensor([outF, inF])
            Ops.linearBackward(dy, x, w, dx: nil, dw: dwOnly, db: nil)
            XCTAssertEqual(dwOnly.f64, g[1], "dw alone equals dw computed with dx and db")
        }
    }

    /// A Conv2d-shaped weight [out, ch, p, p] acts as [out, ch*p*p] (patch embedding as a Linear).
    func testLinearWithConvShapedWeight() {
        var rng = SeededRNG(9)
        let (n, ch, p, outF) = (4, 3, 2, 5), inF = ch * p * p
        let x = randn([n, inF], &rng), w = randn([outF, ch, p, p], &rng, std: 0.5), b = randn([outF], &rng)
        let ref: ([[Double]]) -> [Double] = { v in Ref.linear(v[0], v[1], v[2], n: n, inF: inF, outF: outF) }
        let y = Ops.linear(x, w, b)
        XCTAssertEqual(y.shape, [n, outF])
        assertRelErr(y.f64, ref([x.f64, w.f64, b.f64]), Tol.fwd, "linear with [out, ch, p, p] weight")
        assertBitIdentical(y, Ops.linear(x, w.reshaped([outF, inF]), b), "4-D weight vs the same weight as 2-D")
        let dy = randn([n, outF], &rng)
        let g = accumulatedGradients("linearBackward 4-D weight", shapes: [x.shape, w.shape, [outF]]) { g in
            Ops.linearBackward(dy, x, w, dx: g[0], dw: g[1], db: g[2])
        }
        gradCheck("linear 4-D weight", [GradInput("x", x.f64, g[0]), GradInput("w", w.f64, g[1]),
                                        GradInput("b", b.f64, g[2])], cotangent: dy.f64, forward: ref)
    }

    /// linear(into:ldy:) writes a column block of a wider row-major buffer and nothing else.
    func testLinearIntoStrided() {
        for bias in [true, false] {
            var rng = SeededRNG(bias ? 7 : 8)
            let (n, inF, outF, ld, off) = (3, 6, 4, 13, 5)
            let x = randn([n, inF], &rng), w = randn([outF, inF], &rng), b = randn([outF], &rng)
            let sentinel: Float = 1234.5
            let buf = Tensor([n, ld], repeating: sentinel)
            Ops.linear(into: buf.data + off, ldy: ld, x.data, n: n, w, bias ? b : nil)
            let (block, outside) = columnBlock(buf, rows: n, ld: ld, off: off, width: outF, sentinel: sentinel)
            XCTAssertEqual(outside, 0, "linear(into:ldy:) wrote outside its column block")
            assertRelErr(block, Ref.linear(x.f64, w.f64, bias ? b.f64 : nil, n: n, inF: inF, outF: outF),
                         Tol.fwd, "strided linear forward (bias \(bias))")
        }
    }

    /// Strided linearBackward: dy is a column block (e.g. the K part of a packed dqkv) of a wider
    /// gradient. Loss L = <linear(x, w, b), r> with r that block.
    func testLinearBackwardStrided() {
        var rng = SeededRNG(11)
        let (n, inF, outF) = (3, 5, 4), ldy = 3 * outF, block = 1
        let x = randn([n, inF], &rng), w = randn([outF, inF], &rng), b = randn([outF], &rng)
        let wide = randn([n, ldy], &rng)
        let wideBefore = wide.f64
        var r: [Double] = []
        for row in 0..<n { for c in 0..<outF { r.append(Double(wide[row * ldy + block * outF + c])) } }
        let g = accumulatedGradients("linearBackward(strided)", shapes: [[n, inF], [outF, inF], [outF]]) { g in
            Ops.linearBackward(wide.data + block * outF, ldy: ldy, x.data, n: n, w, dx: g[0].data, dw: g[1], db: g[2])
        }
        XCTAssertEqual(wide.f64, wideBefore, "dy must be read-only")
        gradCheck("linearBackward strided", [GradInput("x", x.f64, g[0]), GradInput("w", w.f64, g[1]),
                                             GradInput("b", b.f64, g[2])], cotangent: r) { v in
            Ref.linear(v[0], v[1], v[2], n: n, inF: inF, outF: outF)
        }
    }

    func testColumnSum() {
        var rng = SeededRNG(12)
        func ref(_ x: [Double], rows: Int, cols: Int, stride: Int, offset: Int, pre: [Double]) -> [Double] {
            var s = pre
            for r in 0..<rows { for c in 0..<cols { s[c] += x[r * stride + offset + c] } }
            return s
        }
        // Contiguous, small (one chunk), accumulating into known values.
        do {
            let x = randn([5, 7], &rng), out = randu([7], &rng, 1, 2), pre = out.f64
            Ops.columnSum(x.data, rows: 5, cols: 7, into: out.data)
            assertRelErr(out.f64, ref(x.f64, rows: 5, cols: 7, stride: 7, offset: 0, pre: pre), 1e-6, "columnSum small")
        }
        // Strided (a column block of a wider matrix).
        do {
            let x = randn([6, 11], &rng), out = randu([4], &rng, 1, 2), pre = out.f64
            Ops.columnSum(x.data + 3, rows: 6, cols: 4, stride: 11, into: out.data)
            assertRelErr(out.f64, ref(x.f64, rows: 6, cols: 4, stride: 11, offset: 3, pre: pre), 1e-6, "columnSum strided")
        }
        // Large: the 4-chunk path with an ordered reduction, rows not a multiple of 4.
        do {
            let (rows, cols) = (2051, 256)
            let x = randn([rows, cols], &rng), out = randu([cols], &rng, 1, 2), pre = out.f64
            Ops.columnSum(x.data, rows: rows, cols: cols, into: out.data)
            assertRelErr(out.f64, ref(x.f64, rows: rows, cols: cols, stride: cols, offset: 0, pre: pre), Tol.fwd,
                         "columnSum large (chunked)")
        }
    }

    /// add / addInPlace: exactly rounded, so equal to Float(x + y) bit for bit. Their backward is
    /// the identity on both inputs (callers pass the gradient through): checked against finite
    /// differences of the float64 forward.
    func testAddAndAddInPlace() {
        var rng = SeededRNG(13)
        let x = randn([3, 7], &rng), y = randn([3, 7], &rng), r = randn([3, 7], &rng)
        let s = Ops.add(x, y)
        XCTAssertEqual(s.shape, [3, 7])
        for i in 0..<x.count { XCTAssertEqual(s[i], Float(Double(x[i]) + Double(y[i])), "add at \(i)") }
        let a = x.clone()
        Ops.addInPlace(a, y)
        assertBitIdentical(a, s, "addInPlace vs add")
        gradCheck("add", [GradInput("x", x.f64, r.f64), GradInput("y", y.f64, r.f64)], cotangent: r.f64) { v in
            zip(v[0], v[1]).map { $0 + $1 }
        }
        // Raw-buffer forms: add(into:) and addRows are the same exactly rounded adds.
        let o = Tensor([3, 7], repeating: -1)
        Ops.add(into: o.data, x.data, y.data, count: x.count)
        assertBitIdentical(o, s, "add(into:) vs add")
        let acc = x.clone()
        Ops.addRows(acc.data, y.data, count: x.count)
        assertBitIdentical(acc, s, "addRows vs add")
    }

    /// y += a x; linear in both, so its gradients are a r (for x) and r (for y).
    func testAxpy() {
        var rng = SeededRNG(14)
        let x = randn([2, 9], &rng), y = randn([2, 9], &rng), r = randn([2, 9], &rng)
        let a: Float = -0.37
        let out = y.clone()
        Ops.axpy(out, x, a)
        assertRelErr(out.f64, zip(x.f64, y.f64).map { Double(a) * $0 + $1 }, 1e-7, "axpy")
        gradCheck("axpy", [GradInput("x", x.f64, r.f64.map { Double(a) * $0 }), GradInput("y", y.f64, r.f64)],
                  cotangent: r.f64) { v in zip(v[0], v[1]).map { Double(a) * $0 + $1 } }
    }
}
