import RepTokTestSupport
import RepTokTensor
import XCTest

/// patchify / unpatchify, the 2-D sin-cos table, Fourier time features.
final class PositionTests: XCTestCase {
    /// (B, ch, H, W, p) shapes: square, non-square, p = 1.
    let shapes = [(2, 3, 4, 6, 2), (1, 3, 6, 3, 3), (2, 2, 3, 2, 1)]

    func testPatchifyMatchesLayoutAndIsExactInverse() {
        for (k, (B, ch, H, W, p)) in shapes.enumerated() {
            var rng = SeededRNG(51 + UInt64(k))
            let (gh, gw, F) = (H / p, W / p, ch * p * p)
            let x = randn([B, ch, H, W], &rng)
            let y = Ops.patchify(x, patch: p)
            XCTAssertEqual(y.shape, [B, gh * gw, F])
            XCTAssertEqual(y.f64, Ref.patchify(x.f64, B: B, ch: ch, H: H, W: W, p: p), "patchify layout \(x.shape) p=\(p)")
            let back = Ops.unpatchify(y, patch: p, channels: ch, gridH: gh, gridW: gw)
            XCTAssertEqual(back.shape, x.shape)
            assertBitIdentical(back, x, "unpatchify(patchify(x))")
            let z = randn([B, gh * gw, F], &rng)
            let zx = Ops.unpatchify(z, patch: p, channels: ch, gridH: gh, gridW: gw)
            XCTAssertEqual(zx.f64, Ref.unpatchify(z.f64, B: B, ch: ch, gh: gh, gw: gw, p: p), "unpatchify layout")
            assertBitIdentical(Ops.patchify(zx, patch: p), z, "patchify(unpatchify(y))")
        }
    }

    /// The backward of each is the other: <patchify(x), y> == <x, unpatchify(y)>, and
    /// finite differences of <patchify(x), r> with respect to x give unpatchify(r) (and vice versa).
    func testPatchifyAdjoint() {
        for (k, (B, ch, H, W, p)) in shapes.enumerated() {
            var rng = SeededRNG(61 + UInt64(k))
            let (gh, gw, F) = (H / p, W / p, ch * p * p)
            let x = randn([B, ch, H, W], &rng), y = randn([B, gh * gw, F], &rng)
            let lhs = dot(Ops.patchify(x, patch: p).f64, y.f64)
            let rhs = dot(x.f64, Ops.unpatchify(y, patch: p, channels: ch, gridH: gh, gridW: gw).f64)
            XCTAssertEqual(lhs, rhs, accuracy: 1e-12 * max(1, abs(lhs)), "adjoint identity \(x.shape) p=\(p)")
            gradCheck("patchify", [GradInput("x", x.f64,
                                             Ops.unpatchify(y, patch: p, channels: ch, gridH: gh, gridW: gw).f64)],
                      cotangent: y.f64) { Ref.patchify($0[0], B: B, ch: ch, H: H, W: W, p: p) }
            gradCheck("unpatchify", [GradInput("y", y.f64, Ops.patchify(x, patch: p).f64)], cotangent: x.f64) {
                Ref.unpatchify($0[0], B: B, ch: ch, gh: gh, gw: gw, p: p)
            }
        }
    }

    /// Against the formula in ARCHITECTURE.md; values are computed in double and rounded once,
    /// so the error is at most half an fp32 ulp of numbers in [-1, 1] (6e-8).
    func testSinCos2D() {
        for (gh, gw, dim) in [(3, 4, 16), (2, 2, 4), (5, 3, 32)] {
            let t = Ops.sincos2D(gridH: gh, gridW: gw, dim: dim)
            XCTAssertEqual(t.shape, [gh * gw, dim])
            let ref = Ref.sincos2D(gh: gh, gw: gw, dim: dim)
            XCTAssertLessThanOrEqual(maxAbsErr(t.f64, ref), 1.2e-7, "sincos2D \(gh)x\(gw) dim \(dim)")
            // Patch (0, 0): sin 0 = 0, cos 0 = 1 in both halves.
            let q = dim / 4
            let expected0 = [Float](repeating: 0, count: q) + [Float](repeating: 1, count: q)
            XCTAssertEqual(Array(t.array[0..<dim]), expected0 + expected0)
        }
    }

    /// Forward: computed in double and rounded once (<= 1.2e-7 absolute). Backward: d/dt of
    /// <features(t), r> against finite differences in float64 (|d/dt| ~ 1000, relative tolerance).
    func testFourierFeatures() {
        let t: [Float] = [0, 0.37, 1, 0.05, 0.999]
        for dim in [16, 256] {
            var rng = SeededRNG(71 + UInt64(dim))
            let y = Ops.fourierFeatures(t, dim: dim)
            XCTAssertEqual(y.shape, [t.count, dim])
            let ref: ([[Double]]) -> [Double] = { Ref.fourier($0[0], dim: dim) }
            let t64 = t.map(Double.init)
            XCTAssertLessThanOrEqual(maxAbsErr(y.f64, ref([t64])), 1.2e-7, "fourierFeatures dim \(dim)")
            let dy = randn([t.count, dim], &rng)
            let dt = Ops.fourierFeaturesBackward(dy, t, dim: dim)
            XCTAssertEqual(dt.count, t.count)
            gradCheck("fourierFeatures dim \(dim)", [GradInput("t", t64, dt.map(Double.init))], cotangent: dy.f64,
                      forward: ref)
        }
    }

    /// Bilinear upsampling, half-pixel centres with clamped borders, against a float64 reference
    /// written per output pixel (not from the matrix form), its gradient by finite differences,
    /// and the properties torch's align_corners=False interpolation has: constants stay constant,
    /// k == S is the identity, 1 -> S is a broadcast.
    func testUpsampleBilinear() {
        func ref(_ x: [Double], planes: Int, k: Int, S: Int) -> [Double] {
            var y = [Double](repeating: 0, count: planes * S * S)
            func coord(_ j: Int) -> (Int, Int, Double) {
                let s = min(max((Double(j) + 0.5) * Double(k) / Double(S) - 0.5, 0), Double(k - 1))
                let i0 = Int(s.rounded(.down))
                return (i0, min(i0 + 1, k - 1), s - Double(i0))
            }
            for p in 0..<planes {
                for r in 0..<S {
                    let (y0, y1, wy) = coord(r)
                    for c in 0..<S {
                        let (x0, x1, wx) = coord(c)
                        func v(_ a: Int, _ b: Int) -> Double { x[p * k * k + a * k + b] }
                        y[p * S * S + r * S + c] = (1 - wy) * ((1 - wx) * v(y0, x0) + wx * v(y0, x1))
                            + wy * ((1 - wx) * v(y1, x0) + wx * v(y1, x1))
                    }
                }
            }
            return y
        }
        for (n, (B, C, k, S)) in [(2, 3, 4, 16), (1, 2, 3, 7), (1, 1, 5, 5), (2, 1, 1, 4), (1, 3, 4, 3)].enumerated() {
            var rng = SeededRNG(71 + UInt64(n))
            let x = randn([B, C, k, k], &rng)
            let y = Ops.upsampleBilinear(x, size: S)
            XCTAssertEqual(y.shape, [B, C, S, S])
            assertRelErr(y.f64, ref(x.f64, planes: B * C, k: k, S: S), Tol.fwd, "upsample \(k) -> \(S)")
            let dy = randn(y.shape, &rng)
            let dx = Ops.upsampleBilinearBackward(dy, from: k)
            XCTAssertEqual(dx.shape, x.shape)
            gradCheck("upsampleBilinear \(k) -> \(S)", [GradInput("x", x.f64, dx.f64)], cotangent: dy.f64) {
                ref($0[0], planes: B * C, k: k, S: S)
            }
        }
        let flat = Tensor([1, 1, 3, 3], [Float](repeating: 0.25, count: 9))
        XCTAssertTrue(Ops.upsampleBilinear(flat, size: 10).array.allSatisfy { abs($0 - 0.25) < 1e-7 })
        var rng = SeededRNG(79)
        let x = randn([1, 2, 6, 6], &rng)
        assertRelErr(Ops.upsampleBilinear(x, size: 6).f64, x.f64, 1e-7, "k == S is the identity")
        for j in 0..<12 {
            let row = Array(Ops.bilinearMatrix(from: 4, to: 12)[(j * 4)..<(j * 4 + 4)])
            XCTAssertEqual(Double(row.reduce(0, +)), 1, accuracy: 1e-6, "row \(j) sums to 1")
        }
    }
}
