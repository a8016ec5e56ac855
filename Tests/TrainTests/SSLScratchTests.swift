import Foundation
import RepTokTensor
@testable import RepTokTrain
import XCTest

final class SSLScratchTests: XCTestCase {
    func testScratchFD() throws {
        for koleo: Float in [0, 0.3] {
        for locals in [false, true] {
        var c = SSLTrainerTests.tinyConfig()
        c.koleo = koleo
        let s = try SSLSession(config: c)
        s.pictures = SSLTrainerTests.pictures(5)
        var rng = SSLTestRNG(11)
        let (g, l0) = try s.inputs(step: 1)
        let l = locals ? l0 : nil
        let (probs, _) = s.teacherTargets(globals: g, step: 1)
        func objective() -> Double {
            let r = s.studentLoss(globals: g, locals: l, teacherProbs: probs, backward: false)
            return r.dino + Double(c.koleo) * 2 * r.koleo
        }
        for p in s.optimizer.params { p.zeroGrad() }
        _ = s.studentLoss(globals: g, locals: l, teacherProbs: probs, backward: true)
        for p in s.student.parameters where p.key.hasPrefix("encoder.layer.0.norm") || p.key.hasPrefix("encoder.layer.0.attention.attention.query.bias") || p.key.contains("cls_token") {
            let u = rng.tensor(p.shape)
            var analytic = 0.0
            for i in 0..<p.value.count { analytic += Double(p.grad[i]) * Double(u[i]) }
            let saved = p.value.clone()
            var fds = [Double]()
            for eps: Float in [1e-2, 3e-3, 1e-3, 3e-4] {
                for i in 0..<p.value.count { p.value[i] = saved[i] + eps * u[i] }
                let lp = objective()
                for i in 0..<p.value.count { p.value[i] = saved[i] - eps * u[i] }
                let lm = objective()
                p.value.copy(from: saved)
                fds.append((lp - lm) / (2 * Double(eps)))
            }
            print("koleo \(koleo) locals \(locals) \(p.key): analytic \(analytic) fd \(fds)")
        }
        }
        }
    }
}
