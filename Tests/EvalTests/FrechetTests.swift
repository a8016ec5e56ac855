import Foundation
import XCTest
@testable import RepTokEval
import RepTokTensor

/// Frechet distance against pytorch-fid's computation (Fixtures/frechet_reference.json, written by
/// python/scripts/frechet_reference.py), closed forms, the eigensolver, and the bootstrap interval.
final class FrechetTests: XCTestCase {
    struct Case { var name: String; var dim: Int; var a: [Double]; var b: [Double]; var frechet: Double; var traceA: Double }

    static let cases: [Case] = {
        guard let url = Bundle.module.url(forResource: "frechet_reference", withExtension: "json", subdirectory: "Fixtures"),
              let data = try? Data(contentsOf: url),
              let doc = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let cs = doc["cases"] as? [[String: Any]] else { fatalError("frechet_reference.json missing or bad") }
        return cs.map { c in
            Case(name: c["name"] as! String, dim: c["dim"] as! Int, a: c["a"] as! [Double], b: c["b"] as! [Double],
                 frechet: c["frechet"] as! Double, traceA: c["trace_a"] as! Double)
        }
    }()

    func testMatchesPytorchFidComputation() throws {
        XCTAssertEqual(Self.cases.count, 4)
        for c in Self.cases {
            let ga = try Frechet.Gaussian(features: c.a, dim: c.dim)
            let tr = (0..<c.dim).reduce(0.0) { $0 + ga.covariance[$1 * c.dim + $1] }
            XCTAssertEqual(tr, c.traceA, accuracy: 1e-9 * abs(c.traceA), c.name)
            let d = try Frechet.distance(features: c.a, c.b, dim: c.dim)
            // Relative agreement; the near-equal case is a small difference of large traces, so it
            // is compared on the scale of the traces.
            let scale = c.name == "near_equal" ? c.traceA : abs(c.frechet)
            XCTAssertEqual(d, c.frechet, accuracy: 1e-6 * scale, c.name)
        }
    }

    func testClosedFormDiagonal() throws {
        // Independent coordinates: d^2 = |mu_a - mu_b|^2 + sum (sa - sb)^2 (standard deviations).
        let a = Frechet.Gaussian(dim: 3, count: 10, mean: [0, 1, 2], covariance: [4, 0, 0, 0, 1, 0, 0, 0, 9])
        let b = Frechet.Gaussian(dim: 3, count: 10, mean: [1, 1, 0], covariance: [1, 0, 0, 0, 1, 0, 0, 0, 16])
        let expected = (1.0 + 0 + 4) + (1.0 + 0 + 1)
        XCTAssertEqual(try Frechet.distance(a, b), expected, accuracy: 1e-12)
        XCTAssertEqual(try Frechet.distance(a, a), 0, accuracy: 1e-12)
        XCTAssertEqual(try Frechet.distance(a, b), try Frechet.distance(b, a), accuracy: 1e-12)
    }

    func testRotationInvariant() throws {
        // The distance does not change when both sets are rotated by the same orthogonal matrix.
        var rng = SplitMix64(seed: 3)
        let d = 5, n = 80
        let a = (0..<(n * d)).map { _ in rng.uniform() * 2 - 1 }
        let b = (0..<(n * d)).map { i in rng.uniform() * (i % d == 0 ? 3 : 1) + 0.2 }
        let theta = 0.7, c = cos(theta), s = sin(theta)
        func rotate(_ x: [Double]) -> [Double] {
            var y = x
            for i in 0..<n {
                let u = x[i * d], v = x[i * d + 1]
                y[i * d] = c * u - s * v; y[i * d + 1] = s * u + c * v
            }
            return y
        }
        let d0 = try Frechet.distance(features: a, b, dim: d)
        let d1 = try Frechet.distance(features: rotate(a), rotate(b), dim: d)
        XCTAssertGreaterThan(d0, 0.1)
        XCTAssertEqual(d0, d1, accuracy: 1e-10 * d0)
    }

    func testEigenDecomposition() {
        var rng = SplitMix64(seed: 11)
        let n = 17
        var m = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { let v = rng.uniform() - 0.5; m[i * n + j] = v; m[j * n + i] = v } }
        let (values, vectors) = SymmetricEigen.jacobi(m, n: n)
        // A v_k = l_k v_k and V^T V = I.
        for k in 0..<n {
            for i in 0..<n {
                var av = 0.0
                for j in 0..<n { av += m[i * n + j] * vectors[j * n + k] }
                XCTAssertEqual(av, values[k] * vectors[i * n + k], accuracy: 1e-12)
            }
            for l in 0..<n {
                var dot = 0.0
                for i in 0..<n { dot += vectors[i * n + k] * vectors[i * n + l] }
                XCTAssertEqual(dot, k == l ? 1 : 0, accuracy: 1e-12)
            }
        }
        let trace = (0..<n).reduce(0.0) { $0 + m[$1 * n + $1] }
        XCTAssertEqual(values.reduce(0, +), trace, accuracy: 1e-12)
        // LAPACK (what the distance uses) gives the same spectrum and the same eigenvectors up to sign.
        let (lv, lvec) = Frechet.eigen(m, n: n)
        let order = values.indices.sorted { values[$0] < values[$1] }
        for (r, k) in order.enumerated() {
            XCTAssertEqual(lv[r], values[k], accuracy: 1e-12)
            var dot = 0.0
            for i in 0..<n { dot += lvec[i * n + r] * vectors[i * n + k] }
            XCTAssertEqual(abs(dot), 1, accuracy: 1e-9)
        }
    }

    func testBootstrapIntervalBracketsAndIsSeeded() throws {
        var rng = SplitMix64(seed: 5)
        let d = 4
        let groupsA = (0..<30).map { _ in (0..<(3 * d)).map { _ in rng.uniform() } }
        let groupsB = (0..<30).map { _ in (0..<(3 * d)).map { i in rng.uniform() * 1.5 + (i % d == 1 ? 0.4 : 0) } }
        let e = try Frechet.estimate(groupsA: groupsA, groupsB: groupsB, dim: d, resamples: 100, seed: 1)
        XCTAssertEqual(e.groups, 30)
        XCTAssertEqual(e.samples, 90)
        XCTAssertEqual(e.resamples, 100)
        XCTAssertLessThan(e.low, e.high)
        XCTAssertLessThanOrEqual(e.low, e.value * 1.05)
        XCTAssertGreaterThanOrEqual(e.high, e.value * 0.95)
        XCTAssertEqual(e.value, try Frechet.distance(features: groupsA.flatMap { $0 }, groupsB.flatMap { $0 }, dim: d))
        let again = try Frechet.estimate(groupsA: groupsA, groupsB: groupsB, dim: d, resamples: 100, seed: 1)
        XCTAssertEqual(e, again)
        let other = try Frechet.estimate(groupsA: groupsA, groupsB: groupsB, dim: d, resamples: 100, seed: 2)
        XCTAssertNotEqual(e.low, other.low)
    }

    func testUnpairedBootstrap() throws {
        var rng = SplitMix64(seed: 21)
        let d = 3
        let a = (0..<25).map { _ in (0..<(2 * d)).map { _ in rng.uniform() } }
        let b = (0..<40).map { _ in (0..<(2 * d)).map { _ in rng.uniform() * 2 } }
        let e = try Frechet.estimateUnpaired(groupsA: a, groupsB: b, dim: d, resamples: 80, seed: 3)
        XCTAssertEqual(e.value, try Frechet.distance(features: a.flatMap { $0 }, b.flatMap { $0 }, dim: d))
        XCTAssertEqual(e.resamples, 80)
        XCTAssertLessThan(e.low, e.high)
        XCTAssertLessThanOrEqual(e.low, e.value * 1.1)
        XCTAssertGreaterThanOrEqual(e.high, e.value * 0.9)
        XCTAssertEqual(e, try Frechet.estimateUnpaired(groupsA: a, groupsB: b, dim: d, resamples: 80, seed: 3))
        XCTAssertThrowsError(try Frechet.estimateUnpaired(groupsA: [], groupsB: b, dim: d))
    }

    func testErrors() {
        XCTAssertThrowsError(try Frechet.Gaussian(features: [1, 2, 3], dim: 2))
        XCTAssertThrowsError(try Frechet.Gaussian(features: [1, 2], dim: 2))          // one sample
        XCTAssertThrowsError(try Frechet.Gaussian(features: [1, .nan, 3, 4], dim: 2))
        XCTAssertThrowsError(try Frechet.distance(features: [1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9], dim: 3))
        XCTAssertThrowsError(try Frechet.distance(Frechet.Gaussian(features: [1, 2, 3, 4], dim: 2),
                                                  Frechet.Gaussian(features: [1, 2, 3, 4, 5, 6], dim: 3)))
        XCTAssertThrowsError(try Frechet.estimate(groupsA: [[1, 2]], groupsB: [], dim: 2))
    }
}
