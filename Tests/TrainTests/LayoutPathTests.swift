import Foundation
import RepTokCodec
import RepTokEval
import RepTokImage
import RepTokMetrics
import RepTokModels
import RepTokNN
import RepTokTensor
import RepTokTestSupport
@testable import RepTokTrain
import XCTest

final class LayoutPathTests: XCTestCase {
    func smallModel(layoutDim m: Int = 5, random: Bool = true) -> TokenizerObjective {
        let e = Dinov2Encoder(EncoderConfig(hiddenSize: 16, numHiddenLayers: 1, numAttentionHeads: 2, patchSize: 8, imageSize: 16))
        e.initialize(seed: 1)
        let d = FlowDecoder(DecoderConfig(imageSize: 16, patchSize: 4, width: 16, depth: 1, numHeads: 2, tokenDim: 16 + m, skipSize: 4))
        d.initialize(seed: 2)
        let a = TokenAdapter(dim: 16, layoutDim: m, layoutSize: 4)
        var rng = InitRNG(seed: 9)
        if random {
            for p in d.parameters + a.parameters where p.value.array.allSatisfy({ $0 == 0 }) { rng.fillNormal(p.value, std: 0.05) }
        }
        let objective = TokenizerObjective(RepTokModel(encoder: e, adapter: a, decoder: d))
        objective.setTune(.all)
        return objective
    }

    func testCoarseIsTheBoxMean() {
        var rng = SplitMix64(seed: 4)
        let x = Tensor([2, 3, 8, 8], (0..<384).map { _ in Float(rng.uniform(-1, 1)) })
        let c = TokenAdapter.coarse(x, size: 2, scale: 2, offset: 1)
        for b in 0..<2 { for ch in 0..<3 { for i in 0..<2 { for j in 0..<2 {
            var s = 0.0
            for u in 0..<4 { for v in 0..<4 { s += Double(x.data[((b * 3 + ch) * 8 + i * 4 + u) * 8 + j * 4 + v]) } }
            XCTAssertEqual(Double(c.data[b * 12 + (ch * 2 + i) * 2 + j]), 2 * s / 16 + 1, accuracy: 1e-5)
        } } } }
    }

    /// The tokenizer loss through the layout path: analytic gradients of the adapter's layout
    /// and projection weights against central finite differences of the loss.
    func testLayoutPathGradientsMatchFiniteDifferences() {
        let objective = smallModel(), model = objective.model
        let r = StepRandom(seed: 5, step: 1)
        let x = r.gaussian([2, 3, 16, 16], .views), noise = r.gaussian([2, 3, 16, 16], .flowNoise)
        for i in 0..<x.count { x.data[i] = max(-1, min(1, 0.5 * x.data[i])) }
        let t: [Float] = [0.7, 1]
        func loss() -> Double {
            for p in model.trainableParameters { p.zeroGrad() }
            return Double(objective.lossAndGradients(pixelsEnc: x, x: x, t: t, noise: noise, lambda: 0.5).loss)
        }
        _ = loss()
        let checks: [(Parameter, [Int])] = [(model.adapter.layout!.weight, [0, 7, 33, 47]), (model.adapter.layout!.bias!, [0, 4]),
                                           (model.adapter.proj.weight, [3, 100])]
        let grads = checks.map { c in c.1.map { Double(c.0.grad.data[$0]) } }
        for (ci, (p, idx)) in checks.enumerated() {
            for (k, i) in idx.enumerated() {
                let h: Float = 2e-3, v = p.value.data[i]
                p.value.data[i] = v + h; let lp = loss()
                p.value.data[i] = v - h; let lm = loss()
                p.value.data[i] = v
                let fd = (lp - lm) / Double(2 * h)
                XCTAssertEqual(grads[ci][k], fd, accuracy: 2e-3 + 0.03 * abs(fd), "\(p.key)[\(i)]")
            }
        }
    }

    /// --layout-drop: the decoder of a sample with keep K sees the first K layout coordinates and
    /// zeros after them; keep m is the plain step; the layout weights' gradients through the kept
    /// coordinates match finite differences, and a dropped coordinate's row gets only the cosine
    /// term's gradient (lambda 0: none).
    func testLayoutDropTruncatesTheDecodersToken() {
        let objective = smallModel(layoutDim: 5), model = objective.model
        let r = StepRandom(seed: 6, step: 2)
        let x = r.gaussian([2, 3, 16, 16], .views), noise = r.gaussian([2, 3, 16, 16], .flowNoise)
        for i in 0..<x.count { x.data[i] = max(-1, min(1, 0.5 * x.data[i])) }
        let t: [Float] = [1, 0.6]
        func step(_ keep: [Int]?, lambda: Float = 0) -> Double {
            for p in model.trainableParameters { p.zeroGrad() }
            return Double(objective.lossAndGradients(pixelsEnc: x, x: x, t: t, noise: noise, lambda: lambda, layoutKeep: keep).loss)
        }
        XCTAssertEqual(step([5, 5]), step(nil))
        let full = step(nil), cut = step([2, 5])
        XCTAssertNotEqual(cut, full)
        // keep (2, 0): rows 2...4 of the layout weight reach no decoder input, and lambda is 0
        let w = model.adapter.layout!.weight, kk = 48
        _ = step([2, 0])
        for row in 2..<5 { XCTAssertTrue((0..<kk).allSatisfy { w.grad.data[row * kk + $0] == 0 }, "row \(row)") }
        XCTAssertTrue((0..<kk).contains { w.grad.data[$0] != 0 })
        _ = step([2, 5])
        let analytic = Double(w.grad.data[3 * kk + 5])
        let h: Float = 2e-3, v = w.value.data[3 * kk + 5]
        w.value.data[3 * kk + 5] = v + h; let lp = step([2, 5])
        w.value.data[3 * kk + 5] = v - h; let lm = step([2, 5])
        w.value.data[3 * kk + 5] = v
        let fd = (lp - lm) / Double(2 * h)
        XCTAssertEqual(analytic, fd, accuracy: 2e-3 + 0.03 * abs(fd))
        XCTAssertNotEqual(analytic, 0)
    }

    /// The keep counts: m without drop; with drop 1 every count in 1...m, deterministic in (seed,
    /// step), spread log-uniformly (both small and large counts occur).
    func testLayoutKeepDraws() {
        XCTAssertEqual(StepRandom(seed: 1, step: 3).layoutKeep(64, m: 384, drop: 0), [Int](repeating: 384, count: 64))
        let k = StepRandom(seed: 1, step: 3).layoutKeep(256, m: 384, drop: 1)
        XCTAssertEqual(k, StepRandom(seed: 1, step: 3).layoutKeep(256, m: 384, drop: 1))
        XCTAssertNotEqual(k, StepRandom(seed: 1, step: 4).layoutKeep(256, m: 384, drop: 1))
        XCTAssertTrue(k.allSatisfy { (1...384).contains($0) })
        XCTAssertGreaterThan(k.filter { $0 <= 20 }.count, 60)      // log-uniform: P(K <= 20) ~ 0.5
        XCTAssertGreaterThan(k.filter { $0 >= 100 }.count, 40)     // P(K >= 100) ~ 0.23
        let half = StepRandom(seed: 2, step: 0).layoutKeep(400, m: 10, drop: 0.5).filter { $0 < 10 }.count
        XCTAssertTrue((150...250).contains(half), "\(half) of 400 dropped at 0.5 (some draws keep all 10)")
    }

    func testLayoutSettingsAreValidated() {
        var c = TrainConfig(data: "x.rtds")
        c.steps = 1; c.encoderPath = "e"; c.tune = "all"; c.skipSize = 4; c.imageSize = 16; c.patch = 4; c.width = 16
        c.depth = 1; c.heads = 2
        XCTAssertNoThrow(try c.validate())
        var d = c; d.layoutDrop = 0.5
        XCTAssertThrowsError(try d.validate())          // needs --layout-dim
        d.layoutDim = 5; d.layoutSize = 4
        XCTAssertNoThrow(try d.validate())
        d.layoutInit = "zeros"
        XCTAssertThrowsError(try d.validate())
        d.layoutInit = "random"; d.layoutDrop = 1.5
        XCTAssertThrowsError(try d.validate())
        var e = c; e.skipInput = true
        XCTAssertNoThrow(try e.validate())
        e.skipSize = 0
        XCTAssertThrowsError(try e.validate())
        // the new settings round-trip through a checkpoint's JSON
        d.layoutDrop = 0.25; d.skipInput = true
        let back = try? JSONDecoder().decode(TrainConfig.self, from: JSONEncoder().encode(d))
        XCTAssertEqual(back?.layoutDrop, 0.25); XCTAssertEqual(back?.layoutInit, "random"); XCTAssertEqual(back?.skipInput, true)
    }

    /// After LayoutInit the model's own 1-step decode is the linear (PCA) reconstruction, and it
    /// beats the pictures' mean colour.
    func testLayoutInitMakesTheModelTheLinearCode() throws {
        var rng = SplitMix64(seed: 11)
        var pics = [RGBImageLike]()
        for _ in 0..<20 {
            // smooth pictures: a colour ramp plus a blob
            let w = 24 + rng.int(16), h = 20 + rng.int(16)
            let c = (0..<3).map { _ in rng.uniform(40, 200) }, g = (0..<3).map { _ in rng.uniform(-3, 3) }
            let cx = rng.uniform(0, Double(w)), cy = rng.uniform(0, Double(h))
            var px = [UInt8](repeating: 0, count: w * h * 3)
            for y in 0..<h { for x in 0..<w { for ch in 0..<3 {
                let dx = Double(x) - cx, dy = Double(y) - cy
                let blob: Double = 60 * exp(-(dx * dx + dy * dy) / 40)
                let ramp: Double = c[ch] + g[ch] * Double(x - y)
                let v: Double = ramp + (ch == 0 ? blob : -blob / 2)
                px[(y * w + x) * 3 + ch] = UInt8(max(0, min(255, v)))
            } } }
            pics.append(RGBImageLike(w: w, h: h, px: px))
        }
        let dir = NSTemporaryDirectory() + "layout-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Pictures.write(pics.map { $0.image }, to: dir + "/p.rtds")
        let model = smallModel(layoutDim: 6, random: false).model
        let rep = try LayoutInit.apply(model: model, data: try Pictures.open(dir + "/p.rtds"), share: 0.1)
        XCTAssertEqual(rep.views, 40)
        XCTAssertEqual(rep.modelPSNR, rep.linearPSNR, accuracy: 0.05)
        XCTAssertEqual(rep.layoutEnergy / rep.sslEnergy, 0.1, accuracy: 1e-3)
        let meanColour = try pics.map { p -> Double in
            let v = RepTokCodec.Codec.modelView(p.image, size: 16)
            return try Metrics.psnr(Baselines.meanColour(v), v)
        }.reduce(0, +) / 20
        XCTAssertGreaterThan(rep.trainPSNR, meanColour + 3)
    }
}

struct RGBImageLike {
    let w: Int, h: Int, px: [UInt8]
    var image: RepTokImage.RGBImage { RepTokImage.RGBImage(width: w, height: h, pixels: px) }
}
