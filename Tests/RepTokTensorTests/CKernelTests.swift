import RepTokTestSupport
import CRTKernels
import Foundation
import XCTest

/// The C helpers used outside the Ops layer: AdamW, EMA, 16-bit conversions, exp/erf.
final class CKernelTests: XCTestCase {
    /// Three AdamW steps against the header's formula in float64:
    /// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m/bc1 / (sqrt(v/bc2) + eps) + wd p).
    /// The learning rate is large (0.05) so the update is resolvable in fp32; the change of p is
    /// compared (relative 1e-5), m and v directly (1e-6).
    func testAdamW() {
        var rng = SeededRNG(101)
        let n = 37
        let p = randn([n], &rng), m = randn([n], &rng, std: 0.1), v = randu([n], &rng, 0, 0.02)
        let (lr, b1, b2, eps, wd): (Float, Float, Float, Float, Float) = (0.05, 0.9, 0.999, 1e-8, 0.05)
        var p64 = p.f64, m64 = m.f64, v64 = v.f64
        for step in 1...3 {
            let g = randn([n], &rng)
            if step == 2 { g[0] = 0; g[1] = 1e-6 }  // tiny gradients: eps matters
            let bc1 = Float(1 - pow(Double(b1), Double(step))), bc2 = Float(1 - pow(Double(b2), Double(step)))
            let before = p.f64
            rt_adamw(p.data, m.data, v.data, g.data, n, lr, b1, b2, bc1, bc2, eps, wd)
            var delta: [Double] = []
            for i in 0..<n {
                let gi = Double(g[i])
                m64[i] = Double(b1) * m64[i] + (1 - Double(b1)) * gi
                v64[i] = Double(b2) * v64[i] + (1 - Double(b2)) * gi * gi
                let upd = Double(lr) * ((m64[i] / Double(bc1)) / ((v64[i] / Double(bc2)).squareRoot() + Double(eps))
                                        + Double(wd) * before[i])
                delta.append(-upd)
                p64[i] = before[i] - upd
            }
            assertRelErr(m.f64, m64, 1e-6, "adamw m, step \(step)")
            assertRelErr(v.f64, v64, 1e-6, "adamw v, step \(step)")
            assertRelErr(zip(p.f64, before).map { $0 - $1 }, delta, 1e-5, "adamw update, step \(step)")
            // Continue from the fp32 state so errors do not compound.
            m64 = m.f64; v64 = v.f64
        }
    }

    private func f16(_ x: Float) -> UInt16 {
        var s = x, h: UInt16 = 0
        rt_f32_to_f16(&h, &s, 1)
        return h
    }

    private func bf16(_ x: Float) -> UInt16 {
        var s = x, h: UInt16 = 0
        rt_f32_to_bf16(&h, &s, 1)
        return h
    }

    func testF16RoundToNearestEven() {
        let cases: [(Float, UInt16, String)] = [
            (0, 0x0000, "+0"), (-0.0, 0x8000, "-0"), (1, 0x3C00, "1"), (-2, 0xC000, "-2"), (0.5, 0x3800, "0.5"),
            (0.1, 0x2E66, "0.1"), (65504, 0x7BFF, "max"), (65519.996, 0x7BFF, "just below max+half ulp"),
            (65520, 0x7C00, "max + half ulp ties to even = inf"), (1e6, 0x7C00, "overflow"),
            (.infinity, 0x7C00, "+inf"), (-.infinity, 0xFC00, "-inf"),
            (1 + 0x1p-11, 0x3C00, "tie, even below"), (1 + 3 * 0x1p-11, 0x3C02, "tie, even above"),
            (1 + 0x1p-11 + 0x1p-23, 0x3C01, "just above a tie"), (1 + 0x1p-11 - 0x1p-23, 0x3C00, "just below a tie"),
            (0x1p-14, 0x0400, "min normal"), (0x1p-14 - 0x1p-25, 0x0400, "tie max subnormal / min normal -> even"),
            (0x1p-24, 0x0001, "min subnormal"), (0x1p-25, 0x0000, "half min subnormal ties to 0"),
            (0x1p-25 + 0x1p-40, 0x0001, "just above half min subnormal"), (3 * 0x1p-25, 0x0002, "subnormal tie -> even"),
            (5 * 0x1p-25, 0x0002, "subnormal tie -> even (down)"), (0x1p-26, 0x0000, "underflow"),
            (-0x1p-30, 0x8000, "underflow keeps sign"), (1023 * 0x1p-24, 0x03FF, "max subnormal"),
        ]
        for (x, want, what) in cases {
            XCTAssertEqual(f16(x), want, "f32->f16 \(what): \(x) gave 0x\(String(f16(x), radix: 16))")
        }
        for nan in [Float.nan, Float(bitPattern: 0x7F80_0001), -Float.nan] {
            let h = f16(nan)
            XCTAssertTrue(h & 0x7C00 == 0x7C00 && h & 0x03FF != 0, "NaN must stay NaN: 0x\(String(h, radix: 16))")
        }
        // Against Swift's Float16 (IEEE round to nearest even) on random values across the range.
        var rng = SeededRNG(103)
        var mismatches = 0, first = ""
        for _ in 0..<100_000 {
            let e = Int(rng.uniform(-28, 18).rounded(.down))
            let x = Float(rng.uniform(1, 2) * pow(2, Double(e))) * (rng.uniform() < 0.5 ? -1 : 1)
            let want = Float16(x).bitPattern
            if f16(x) != want {
                mismatches += 1
                if first.isEmpty { first = "\(x): 0x\(String(f16(x), radix: 16)) vs 0x\(String(want, radix: 16))" }
            }
        }
        XCTAssertEqual(mismatches, 0, "f32->f16 vs Float16: first \(first)")
    }

    func testF16ToF32AllValues() {
        var all = (0...0xFFFF).map { UInt16($0) }
        var out = [Float](repeating: 0, count: all.count)
        rt_f16_to_f32(&out, &all, all.count)
        var back = [UInt16](repeating: 0, count: all.count)
        rt_f32_to_f16(&back, &out, out.count)
        var wrong: [String] = [], noRoundTrip: [String] = []
        for h in all {
            let want = Float(Float16(bitPattern: h)), got = out[Int(h)]
            if want.isNaN {
                if !got.isNaN { wrong.append("0x\(String(h, radix: 16)) (NaN) -> \(got)") }
            } else {
                if got.bitPattern != want.bitPattern { wrong.append("0x\(String(h, radix: 16)) -> \(got), want \(want)") }
                if back[Int(h)] != h { noRoundTrip.append("0x\(String(h, radix: 16))") }
            }
        }
        XCTAssertEqual(wrong.count, 0, "f16 -> f32: \(wrong.prefix(5))")
        XCTAssertEqual(noRoundTrip.count, 0, "f16 -> f32 -> f16 round trip: \(noRoundTrip.prefix(5))")
    }

    /// Reference bf16 rounding by distances in float64: the two bf16 neighbours of x (truncation
    /// and one bf16 ulp further from zero), nearest wins, ties go to the even mantissa.
    private func bf16Reference(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        let lo = bits & 0xFFFF_0000
        let loVal = Double(Float(bitPattern: lo))
        let expField = Int((lo >> 23) & 0xFF)
        let ulp = pow(2.0, Double(max(expField, 1) - 127 - 7))
        let hiMag = abs(loVal) + ulp
        let dLo = abs(Double(x)) - abs(loVal), dHi = hiMag - abs(Double(x))
        let loH = UInt16(lo >> 16)
        if dLo < dHi { return loH }
        if dHi < dLo { return loH &+ 1 }
        return loH & 1 == 0 ? loH : loH &+ 1
    }

    func testBF16RoundToNearestEven() {
        let cases: [(UInt32, UInt16, String)] = [
            (0x3F80_0000, 0x3F80, "1"), (0xBF80_0000, 0xBF80, "-1"), (0x0000_0000, 0x0000, "+0"), (0x8000_0000, 0x8000, "-0"),
            (0x3F80_8000, 0x3F80, "tie, even below"), (0x3F81_8000, 0x3F82, "tie, even above"),
            (0x3F80_8001, 0x3F81, "just above a tie"), (0x3F80_7FFF, 0x3F80, "just below a tie"),
            (0x7F7F_FFFF, 0x7F80, "FLT_MAX rounds to inf"), (0x7F7F_7FFF, 0x7F7F, "below the overflow tie"),
            (0x7F7F_8000, 0x7F80, "overflow tie, odd -> inf"), (0x7F80_0000, 0x7F80, "+inf"), (0xFF80_0000, 0xFF80, "-inf"),
            (0x0000_0001, 0x0000, "min subnormal"), (0x0000_8000, 0x0000, "subnormal tie -> even 0"),
            (0x0001_8000, 0x0002, "subnormal tie -> even up"), (0x0000_8001, 0x0001, "subnormal above tie"),
            (0x007F_FFFF, 0x0080, "max subnormal rounds to min normal"),
        ]
        for (b, want, what) in cases {
            let x = Float(bitPattern: b)
            XCTAssertEqual(bf16(x), want, "f32->bf16 \(what): 0x\(String(b, radix: 16)) gave 0x\(String(bf16(x), radix: 16))")
            XCTAssertEqual(bf16Reference(x), want, "bf16 reference itself, \(what)")
        }
        for nanBits: UInt32 in [0x7FC0_0000, 0x7F80_0001, 0xFF80_0001, 0x7FFF_FFFF] {
            let h = bf16(Float(bitPattern: nanBits))
            XCTAssertTrue(h & 0x7F80 == 0x7F80 && h & 0x007F != 0, "bf16 NaN 0x\(String(nanBits, radix: 16)) -> 0x\(String(h, radix: 16))")
        }
        var rng = SeededRNG(104)
        var mismatches = 0, first = ""
        for _ in 0..<100_000 {
            var b = UInt32(truncatingIfNeeded: rng.next())
            if rng.uniform() < 0.3 { b = (b & 0xFFFF_0000) | 0x8000 }  // many exact ties
            let x = Float(bitPattern: b)
            if x.isNaN { continue }
            if bf16(x) != bf16Reference(x) {
                mismatches += 1
                if first.isEmpty { first = "0x\(String(b, radix: 16))" }
            }
        }
        XCTAssertEqual(mismatches, 0, "f32->bf16 vs reference: first \(first)")
        // bf16 -> f32 is exact: the 16 bits become the top half.
        var all = (0...0xFFFF).map { UInt16($0) }
        var out = [Float](repeating: 0, count: all.count)
        rt_bf16_to_f32(&out, &all, all.count)
        XCTAssertTrue(all.allSatisfy { out[Int($0)].bitPattern == UInt32($0) << 16 }, "bf16 -> f32 exact")
    }

    /// rt_expf: max relative error <= 5e-7 (~4 ulp) on a 1e-4 grid over [-80, 80] plus random points.
    func testExpAccuracy() {
        var worst = 0.0, at: Float = 0
        func check(_ x: Float) {
            let want = exp(Double(x)), got = Double(rt_expf(x))
            let e = abs(got - want) / want
            if !(e <= worst) { worst = e; at = x }
        }
        for i in 0...1_600_000 { check(Float(-80 + Double(i) * 1e-4)) }
        var rng = SeededRNG(105)
        for _ in 0..<200_000 { check(Float(rng.uniform(-80, 80))) }
        XCTAssertLessThanOrEqual(worst, 5e-7, "rt_expf max relative error \(worst) at \(at)")
        XCTAssertEqual(rt_expf(0), 1)
    }

    /// rt_erff: max absolute error <= 3e-7 over [-6, 6]; odd, erf(0) = 0, saturates to +-1.
    func testErfAccuracy() {
        var worst = 0.0, at: Float = 0, notOdd = 0
        for i in 0...1_200_000 {
            let x = Float(-6 + Double(i) * 1e-5)
            let e = abs(Double(rt_erff(x)) - erf(Double(x)))
            if !(e <= worst) { worst = e; at = x }
            if rt_erff(-x) != -rt_erff(x) { notOdd += 1 }
        }
        XCTAssertEqual(notOdd, 0, "rt_erff(-x) == -rt_erff(x)")
        XCTAssertLessThanOrEqual(worst, 3e-7, "rt_erff max absolute error \(worst) at \(at)")
        XCTAssertEqual(rt_erff(0), 0)
        XCTAssertEqual(rt_erff(10), 1, accuracy: 1e-7)
    }
}
