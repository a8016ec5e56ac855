import Foundation
import XCTest
@testable import RepTokModels
import RepTokNN
import RepTokTensor
import RepTokTestSupport

extension SplitMix64 {
    mutating func tensor(_ shape: [Int], std: Float = 1) -> Tensor {
        let t = Tensor(shape)
        for i in 0..<t.count { t[i] = Float(normal()) * std }
        return t
    }
}

/// The token-space generator: gradients against finite differences, classifier-free guidance,
/// config checks.
final class GeneratorTests: XCTestCase {
    static func model(seed: UInt64 = 1) -> TokenGenerator {
        let g = TokenGenerator(GeneratorConfig(tokenDim: 6, width: 8, depth: 2, mlpRatio: 2, freqDim: 8,
                                               classes: ["cats", "dogs", "fish"]))
        g.initialize(seed: seed)
        // adaLN-Zero leaves most gradients zero at init: perturb every weight for the check.
        var rng = SplitMix64(seed: seed &+ 99)
        for p in g.parameters { for i in 0..<p.value.count { p.value[i] += Float(rng.normal()) * 0.3 } }
        return g
    }

    func testBackwardMatchesFiniteDifferences() {
        let g = Self.model()
        var rng = SplitMix64(seed: 5)
        let B = 4
        let x = rng.tensor([B, 6]), r = rng.tensor([B, 6])
        let t: [Float] = [0.1, 0.5, 0.9, 0.33], labels = [0, 2, 3, 1]   // 3 = the null class
        func objective() -> Double {
            let v = g.forward(x, t: t, labels: labels)
            var s = 0.0
            for i in 0..<v.count { s += Double(v[i]) * Double(r[i]) }
            return s
        }
        g.zeroGrad()
        _ = g.forward(x, t: t, labels: labels, mode: .training)
        let dx = g.backward(r)
        func check(_ value: Tensor, _ grad: [Float], _ what: String) {
            let u = rng.tensor(value.shape)
            var analytic = 0.0
            for i in 0..<value.count { analytic += Double(grad[i]) * Double(u[i]) }
            let saved = value.clone()
            func fd(_ h: Float) -> Double {
                for i in 0..<value.count { value[i] = saved[i] + h * u[i] }
                let lp = objective()
                for i in 0..<value.count { value[i] = saved[i] - h * u[i] }
                let lm = objective()
                value.copy(from: saved)
                return (lp - lm) / (2 * Double(h))
            }
            let h: Float = 1e-2
            let rich = (4 * fd(h / 2) - fd(h)) / 3
            XCTAssertEqual(analytic, rich, accuracy: 2e-3 * abs(rich) + 2e-4, "\(what): \(analytic) vs \(rich)")
        }
        var checked = 0
        for p in g.parameters {
            check(p.value, p.grad.array, p.key)
            checked += 1
        }
        check(x, dx.array, "input")
        XCTAssertEqual(checked, g.parameters.count)
        XCTAssertGreaterThan(checked, 15)
    }

    func testClassEmbeddingGradientOnlyForUsedRows() {
        let g = Self.model()
        var rng = SplitMix64(seed: 8)
        g.zeroGrad()
        _ = g.forward(rng.tensor([2, 6]), t: [0.3, 0.7], labels: [1, 1], mode: .training)
        g.backward(rng.tensor([2, 6]))
        let W = g.config.width
        for row in 0...g.config.nullClass {
            let norm = (0..<W).reduce(Float(0)) { $0 + abs(g.classEmbed.grad[row * W + $1]) }
            if row == 1 { XCTAssertGreaterThan(norm, 0) } else { XCTAssertEqual(norm, 0, "row \(row)") }
        }
    }

    func testGuidance() {
        let g = Self.model()
        var rng = SplitMix64(seed: 9)
        let x = rng.tensor([3, 6]), t: [Float] = [0.2, 0.6, 0.95], labels = [0, 2, 3]
        let vc = g.forward(x, t: t, labels: labels)
        let vu = g.forward(x, t: t, labels: [3, 3, 3])
        XCTAssertEqual(g.guidedVelocity(x, t: t, labels: labels, scale: 1).array, vc.array)
        let s: Float = 2.5
        let v = g.guidedVelocity(x, t: t, labels: labels, scale: s, interval: 0.3...0.9)
        for i in 0..<6 {
            XCTAssertEqual(v[i], vc[i], "t 0.2 is outside the interval")
            XCTAssertEqual(v[6 + i], vu[6 + i] + s * (vc[6 + i] - vu[6 + i]), accuracy: 1e-5)
            XCTAssertEqual(v[12 + i], vc[12 + i], "the null class is not guided")
        }
        XCTAssertNotEqual(vc[6], vu[6])
    }

    func testFreshModelPredictsZeroAndBatchRowsAreIndependent() {
        let g = TokenGenerator(GeneratorConfig(tokenDim: 5, width: 8, depth: 1, classes: ["a"]))
        g.initialize(seed: 3)
        var rng = SplitMix64(seed: 1)
        XCTAssertEqual(g.forward(rng.tensor([2, 5]), t: [0.5, 0.5], labels: [0, 1]).array, [Float](repeating: 0, count: 10))
        let m = Self.model()
        let x = rng.tensor([2, 6])
        let both = m.forward(x, t: [0.4, 0.8], labels: [0, 2])
        let second = m.forward(Tensor([1, 6], Array(x.array[6...])), t: [0.8], labels: [2])
        for i in 0..<6 { XCTAssertEqual(both[6 + i], second[i], accuracy: 1e-6) }
    }

    func testConfigJSONAndValidation() throws {
        let c = GeneratorConfig(tokenDim: 192, width: 256, depth: 6, classes: ["a", "b"])
        let data = try JSONEncoder().encode(c)
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("\"token_dim\":192"))
        XCTAssertEqual(try JSONDecoder().decode(GeneratorConfig.self, from: data), c)
        XCTAssertNoThrow(try c.validate())
        var bad = c; bad.classes = ["a", "a"]
        XCTAssertThrowsError(try bad.validate())
        bad = c; bad.classes = []
        XCTAssertThrowsError(try bad.validate())
        bad = c; bad.freqDim = 7
        XCTAssertThrowsError(try bad.validate())
        XCTAssertEqual(c.nullClass, 2)
    }
}
