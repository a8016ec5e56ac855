import Foundation
@testable import RepTokCodec
import RepTokTensor
import RepTokTestSupport
import XCTest

final class LaplaceCoderTests: XCTestCase {
    func testExpMatchesLibmToRoundingOnTheWholeRange() {
        var worst = 0.0
        var x = 0.0
        while x > -700 {
            let a = LaplaceCoder.exp(x), b = Foundation.exp(x)
            worst = max(worst, abs(a - b) / b)
            x -= 0.0137
        }
        XCTAssertLessThan(worst, 1e-14)
        XCTAssertEqual(LaplaceCoder.exp(0), 1)
        XCTAssertEqual(LaplaceCoder.exp(-800), 0)
    }

    func testTablesSumToTheTotalWithEverySymbolCodable() {
        for (b, s) in [(1.0, 1e-3), (1.0, 0.05), (1.0, 0.7), (1.0, 3.0), (1.0, 40.0), (1e-6, 1.0), (1e6, 1.0)] as [(Float, Float)] {
            let t = LaplaceCoder.Table(scale: b, step: s)
            XCTAssertEqual(t.cum.first, 0)
            XCTAssertEqual(t.cum.last, LaplaceCoder.total, "b \(b) step \(s)")
            XCTAssertEqual(t.cum.count, 2 * t.k + 3)
            XCTAssertLessThanOrEqual(t.k, LaplaceCoder.maxK)
            for i in 0..<(t.cum.count - 1) { XCTAssertGreaterThan(t.cum[i + 1], t.cum[i], "empty symbol \(i)") }
            // symmetric around 0, most probable at 0
            for q in 1...t.k {
                XCTAssertEqual(t.cum[t.k + q + 1] - t.cum[t.k + q], t.cum[t.k - q + 1] - t.cum[t.k - q])
            }
        }
    }

    /// Laplace-distributed symbols, escapes and extreme values come back exactly, in about the
    /// ideal code length.
    func testRoundTripAndCodeLengthNearTheIdeal() throws {
        var rng = SplitMix64(seed: 7)
        for trial in 0..<40 {
            let n = 1 + Int(rng.next() % 300)
            var scales = [Float](), steps = [Float](), sym = [Int32]()
            var ideal = 0.0
            let step: Float = [0.02, 0.3, 1, 5][trial % 4]
            for i in 0..<n {
                let b = Float(0.05 + 3 * rng.uniform(0, 1))
                scales.append(b); steps.append(step)
                let u = rng.uniform(-0.5, 0.5)
                var x = -Double(b) * (u < 0 ? -1 : 1) * log(1 - 2 * abs(u))
                if i == 3 && trial % 5 == 0 { x = Double(step) * 999_999 * (trial % 2 == 0 ? 1 : -1) }   // far out: escape
                let q = Int32(max(-1_000_000, min(1_000_000, (x / Double(step)).rounded())))
                sym.append(q)
                let a = Double(abs(q)), r = Double(step) / Double(b)
                let p = q == 0 ? -expm1(-0.5 * r) : 0.5 * (Foundation.exp(-(a - 0.5) * r) - Foundation.exp(-(a + 0.5) * r))
                ideal += -log2(max(p, 1e-300))
            }
            let tables = zip(scales, steps).map { LaplaceCoder.Table(scale: $0, step: $1) }
            let bytes = LaplaceCoder.encode(sym, tables: tables)
            XCTAssertEqual(try LaplaceCoder.decode(bytes, tables: tables), sym, "trial \(trial)")
            XCTAssertNotEqual(bytes.last, 0, "trailing zero bytes are dropped")
            if trial % 5 != 0 {
                // termination costs at most ~2 bytes, 16-bit table rounding a little per symbol; at the
                // finest step (0.02, up to 150 bins per scale) values past the 256-bin table go
                // through escapes, which cost up to ~3% more
                let slack = step < 0.1 ? 0.03 * ideal / 8 : 0.002 * Double(n)
                XCTAssertLessThanOrEqual(Double(bytes.count), ideal / 8 + 2 + slack, "trial \(trial)")
            }
        }
    }

    func testTooLongEscapeIsRejected() throws {
        let t = [LaplaceCoder.Table(scale: 1, step: 1)]
        func escapeWith(zeros: Int) -> [UInt8] {
            var e = ArithmeticEncoder()
            e.encode(cumLow: t[0].cum[t[0].escape], cumHigh: t[0].cum[t[0].escape + 1], total: LaplaceCoder.total)
            for _ in 0..<zeros { e.bit(0) }
            for _ in 0...zeros { e.bit(1) }
            e.bit(0)
            return e.finish()
        }
        XCTAssertEqual(try LaplaceCoder.decode(escapeWith(zeros: 3), tables: t), [Int32(t[0].k + 15)])
        XCTAssertThrowsError(try LaplaceCoder.decode(escapeWith(zeros: 25), tables: t))
    }

    /// A sensitivity-weighted quantizer (non-orthogonal analysis) with per-level steps and coded
    /// coordinate counts: payload round trip, exact dequantization, canonical payloads only.
    func testLaplaceQuantizerRoundTripAndCanonicalPayload() throws {
        let D = 10
        var rng = SplitMix64(seed: 3)
        var a = [Float](repeating: 0, count: D * D)
        for i in 0..<D { a[i * D + i] = Float(1 + Double(i) * 0.3) ; if i + 1 < D { a[i * D + i + 1] = 0.2 } }
        // synthesis = inverse of the (upper bidiagonal) analysis, by solving column by column
        var s = [Float](repeating: 0, count: D * D)
        for i in 0..<D {
            // row i of synthesis: z = sum_i y_i s_i with A s_i^T = e_i
            var col = [Double](repeating: 0, count: D)
            for r in stride(from: D - 1, through: 0, by: -1) {
                var v = r == i ? 1.0 : 0.0
                if r + 1 < D { v -= Double(a[r * D + r + 1]) * col[r + 1] }
                col[r] = v / Double(a[r * D + r])
            }
            for j in 0..<D { s[i * D + j] = Float(col[j]) }
        }
        let q = Quantizer(mean: (0..<D).map { Float($0) * 0.1 }, rotation: a, sigma: [Float](repeating: 1, count: D),
                          dictionary: [], baseStep: 0.3, synthesis: s,
                          levelSteps: (0..<9).map { Float(0.8 * pow(0.7, Double($0))) },
                          levelCoefficients: [3, 4, 5, 6, 7, 8, 9, 10, 10], entropy: .laplace,
                          scale: (0..<D).map { Float(1.5 / (1 + Double($0))) })
        for _ in 0..<30 {
            let z = (0..<D).map { _ in Float(rng.normal()) }
            for level in Quantizer.levels {
                let payload = try z.withUnsafeBufferPointer { try q.encode($0.baseAddress!, level: level) }
                let back = try q.decode(payload, level: level)
                let sym = z.withUnsafeBufferPointer { q.symbols($0.baseAddress!, level: level) }
                XCTAssertTrue(sym[q.coded(level: level)...].allSatisfy { $0 == 0 })
                let expect = q.unrotate(sym.map { Float($0) * q.step(level: level) })
                XCTAssertEqual(back, expect)
                // the token is recovered up to the step in the analysis space
                let y = back.withUnsafeBufferPointer { q.rotate($0.baseAddress!) }
                let y0 = z.withUnsafeBufferPointer { q.rotate($0.baseAddress!) }
                for i in 0..<q.coded(level: level) {
                    XCTAssertLessThanOrEqual(abs(y[i] - y0[i]), q.step(level: level) / 2 + 1e-4)
                }
                XCTAssertThrowsError(try q.decode(payload + [1], level: level), "an appended byte")
            }
        }
    }

    /// The encoder's RD choice only moves values toward zero, costs fewer bytes in total, and its
    /// records decode like any other (the decoder does not see the weight).
    func testRateDistortionQuantizationSpendsFewerBytes() throws {
        let D = 24
        var rng = SplitMix64(seed: 21)
        var rot = [Float](repeating: 0, count: D * D)
        for i in 0..<D { rot[i * D + i] = 1 }
        let scale = (0..<D).map { Float(2.0 / (1 + Double($0) * 0.3)) }
        let base = Quantizer(mean: [Float](repeating: 0, count: D), rotation: rot, sigma: scale, dictionary: [], baseStep: 1,
                             levelSteps: [Float](repeating: 0.5, count: 9), entropy: .laplace, scale: scale)
        let rd = base.with(levelSteps: [Float](repeating: 0.5, count: 9), rdo: [Float](repeating: 0.2, count: 9))
        var plainBytes = 0, rdBytes = 0, moved = 0
        for _ in 0..<200 {
            let z = scale.map { b -> Float in
                let u = rng.uniform(-0.5, 0.5)
                return Float(-Double(b) * (u < 0 ? -1 : 1) * log(1 - 2 * abs(u)))
            }
            let y = z.withUnsafeBufferPointer { base.rotate($0.baseAddress!) }
            let a = base.quantize(y, level: 3), b = rd.quantize(y, level: 3)
            for (p, q) in zip(a, b) {
                XCTAssertTrue(p == q || (abs(Int(p)) - abs(Int(q)) == 1 && (q == 0 || p.signum() == q.signum())))
                if p != q { moved += 1 }
            }
            let pa = try z.withUnsafeBufferPointer { try base.encode($0.baseAddress!, level: 3) }
            let pb = try z.withUnsafeBufferPointer { try rd.encode($0.baseAddress!, level: 3) }
            plainBytes += pa.count; rdBytes += pb.count
            XCTAssertEqual(try rd.decode(pb, level: 3), rd.unrotate(b.map { Float($0) * 0.5 }))
            XCTAssertEqual(try base.decode(pb, level: 3), try rd.decode(pb, level: 3), "decoding ignores the RD weight")
        }
        XCTAssertGreaterThan(moved, 0)
        XCTAssertLessThan(rdBytes, plainBytes)
    }
}
