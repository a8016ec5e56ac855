import RepTokTestSupport
import Foundation
import RepTokImage
import RepTokModels
import RepTokNN
import RepTokSafeTensors
import RepTokTensor
@testable import RepTokTrain
import XCTest

/// The DINO trainer on a tiny config and synthetic pictures: the whole student gradient
/// (encoder with position interpolation for local crops, head, DINO loss, KoLeo) against finite
/// differences, exact resume, export as a tokenizer encoder, sampler determinism, retrieval.
final class SSLTrainerTests: XCTestCase {
    static func pictures(_ n: Int, seed: UInt64 = 9) -> [RGBImage] {
        var rng = SSLTestRNG(seed)
        return (0..<n).map { k in
            let w = 40 + 6 * k, h = 30 + 3 * (k % 3)
            let a = (0..<9).map { _ in rng.uniform() }
            var px = [UInt8](repeating: 0, count: w * h * 3)
            for y in 0..<h {
                for x in 0..<w {
                    for c in 0..<3 {
                        let v = 128 + 100 * sin(Double(x) * 0.3 * a[c] + Double(y) * 0.2 * a[3 + c] + 6 * a[6 + c])
                        px[(y * w + x) * 3 + c] = UInt8(max(0, min(255, v + 20 * rng.normal())))
                    }
                }
            }
            return RGBImage(width: w, height: h, pixels: px)
        }
    }

    static func tinyConfig() -> SSLConfig {
        var c = SSLConfig(data: "<memory>")
        c.val = nil
        c.encWidth = 16; c.encDepth = 2; c.encHeads = 2; c.encPatch = 4
        c.aug.globalSize = 16; c.aug.localSize = 8; c.aug.localCrops = 2
        c.headHidden = 16; c.headBottleneck = 8; c.prototypes = 10
        c.batch = 3; c.steps = 6; c.warmup = 2; c.freezeLastLayer = 2; c.lr = 1e-3
        c.quiet = true
        return c
    }

    func testStudentGradientEndToEnd() throws {
        var c = Self.tinyConfig()
        c.koleo = 0.3
        let s = try SSLSession(config: c)
        s.pictures = Self.pictures(5)
        // Larger random weights than the init's (whose tokens are nearly identical for all
        // inputs, which leaves tiny encoder gradients under the fp32 noise of the objective and
        // KoLeo distances near zero), non-zero biases, gains away from 1: every path carries signal.
        var rng = SSLTestRNG(11)
        for p in s.student.parameters + s.studentHead.parameters {
            let gain = p.key.contains("norm") && p.key.hasSuffix("weight") || p.key.contains("layer_scale")
            for i in 0..<p.value.count { p.value[i] = (gain ? 1 : 0) + Float((gain ? 0.2 : 0.25) * rng.normal()) }
        }
        let (g, l) = try s.inputs(step: 1)
        XCTAssertEqual(l?.shape, [6, 3, 8, 8])
        let (probs, _) = s.teacherTargets(globals: g, step: 1)
        func objective() -> Double {
            let r = s.studentLoss(globals: g, locals: l, teacherProbs: probs, backward: false)
            return r.dino + Double(c.koleo) * 2 * r.koleo
        }
        for p in s.optimizer.params { p.zeroGrad() }
        _ = s.studentLoss(globals: g, locals: l, teacherProbs: probs, backward: true)
        // Directional derivative along a random direction per parameter tensor (scaled to the
        // tensor's norm), against central differences of the fp32 objective with Richardson
        // extrapolation over steps h and h/2 (the O(h^2) term cancels; the fp32 noise floor of
        // the objective, ~1e-6, sets the absolute tolerance).
        var checked = 0
        for p in s.student.parameters + s.studentHead.parameters where p.key != "embeddings.mask_token" {
            let u = rng.tensor(p.shape)
            var pn = 0.0, un = 0.0
            for i in 0..<p.value.count { pn += Double(p.value[i] * p.value[i]); un += Double(u[i] * u[i]) }
            let k = Float(max(pn.squareRoot(), 0.1) / un.squareRoot())
            for i in 0..<u.count { u[i] *= k }
            var analytic = 0.0
            for i in 0..<p.value.count { analytic += Double(p.grad[i]) * Double(u[i]) }
            let saved = p.value.clone()
            func fd(_ h: Float) -> Double {
                for i in 0..<p.value.count { p.value[i] = saved[i] + h * u[i] }
                let lp = objective()
                for i in 0..<p.value.count { p.value[i] = saved[i] - h * u[i] }
                let lm = objective()
                p.value.copy(from: saved)
                return (lp - lm) / (2 * Double(h))
            }
            let h: Float = 1e-2
            let rich = (4 * fd(h / 2) - fd(h)) / 3
            XCTAssertEqual(analytic, rich, accuracy: 0.01 * abs(rich) + 2e-4,
                           "\(p.key): analytic \(analytic) vs finite differences \(rich)")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 20)
    }

    func testTrainingStepsMoveTeacherAndFreezeLastLayer() throws {
        let c = Self.tinyConfig()
        let s = try SSLSession(config: c)
        s.pictures = Self.pictures(5)
        let last0 = s.studentHead.lastLayer.weight.value.clone()
        let cls0 = s.teacher.clsToken.value.clone()
        for k in 0..<c.steps {
            let m = try s.trainStep()
            XCTAssertTrue(m.loss.isFinite && m.gradNorm.isFinite, "step \(k)")
            if k == c.freezeLastLayer - 1 {
                XCTAssertEqual(s.studentHead.lastLayer.weight.value.array, last0.array, "last layer frozen for \(c.freezeLastLayer) steps")
            }
        }
        XCTAssertNotEqual(s.studentHead.lastLayer.weight.value.array, last0.array, "last layer trains after the freeze")
        XCTAssertNotEqual(s.teacher.clsToken.value.array, cls0.array, "teacher follows the student")
        XCTAssertNotEqual(s.teacher.clsToken.value.array, s.student.clsToken.value.array, "teacher is an average, not a copy")
        XCTAssertNotEqual(s.center.array, [Float](repeating: 0, count: c.prototypes), "center updated")
    }

    func testResumeIsBitIdentical() throws {
        let fm = FileManager.default
        let base = fm.temporaryDirectory.appendingPathComponent("ssl-resume-\(getpid())").path
        defer { try? fm.removeItem(atPath: base) }
        let pics = Self.pictures(5)
        // uninterrupted
        var c1 = Self.tinyConfig()
        c1.out = base + "/a"
        let a = try SSLSession(config: c1)
        a.pictures = pics
        XCTAssertEqual(try a.train(), .finished)
        // stopped after 3 steps, resumed from the checkpoint
        var c2 = Self.tinyConfig()
        c2.out = base + "/b"
        let b = try SSLSession(config: c2)
        b.pictures = pics
        XCTAssertEqual(try b.train(stopAfter: 3), .interrupted)
        var c3 = c2
        c3.resume = true
        let b2 = try SSLSession(checkpoint: c2.out! + "/checkpoint.safetensors", overriding: c3)
        b2.pictures = pics
        XCTAssertEqual(b2.step, 3)
        XCTAssertEqual(try b2.train(), .finished)
        let fa = try SafeTensorsFile(path: c1.out! + "/checkpoint.safetensors")
        let fb = try SafeTensorsFile(path: c2.out! + "/checkpoint.safetensors")
        XCTAssertEqual(fa.names, fb.names)
        XCTAssertTrue(fa.names.contains("center") && fa.names.contains("adam.m.student.embeddings.cls_token"))
        for n in fa.names {
            XCTAssertEqual(try fa.rawBytes(n), try fb.rawBytes(n), "\(n) differs after resume")
        }
        // metrics: one line per step, steps 1...6 in order, no duplicates from the stopped segment
        let lines = try String(contentsOfFile: c2.out! + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let steps = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
            .filter { $0["eval"] == nil }.compactMap { $0["step"] as? Int }
        XCTAssertEqual(steps, Array(1...6))
    }

    func testExportIsATokenizerEncoder() throws {
        let c = Self.tinyConfig()
        let s = try SSLSession(config: c)
        s.pictures = Self.pictures(4)
        for _ in 0..<2 { _ = try s.trainStep() }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ssl-export-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try s.exportEncoder(to: path)
        let file = try SafeTensorsFile(path: path)
        XCTAssertTrue(file.names.allSatisfy { $0.hasPrefix("encoder.") })
        let cfg = try ModelFile.part(EncoderConfig.self, "encoder", in: file.metadata["reptok.config"]!)
        XCTAssertEqual(cfg, s.teacher.config)
        // what `rttrain tokenizer --encoder FILE` does, at the same and at a larger resolution
        let e = try TokenizerTrainer.loadEncoder(path, imageSize: 16)
        for (p, q) in zip(e.parameters, s.teacher.parameters) { XCTAssertEqual(p.value.array, q.value.array, p.key) }
        let e2 = try TokenizerTrainer.loadEncoder(path, imageSize: 32)
        XCTAssertEqual(e2.config.imageSize, 32)
        let x = Tensor([1, 3, 16, 16], repeating: 0.3)
        XCTAssertEqual(e.forward(x).token.array, s.teacher.forward(x).token.array)
    }

    func testMultiCropIsDeterministic() {
        var aug = SSLAugmentConfig()
        aug.globalSize = 16; aug.localSize = 8; aug.localCrops = 3
        let pics = Self.pictures(4)
        let a = SSLMultiCrop(pictures: pics, aug: aug, seed: 5), b = SSLMultiCrop(pictures: pics, aug: aug, seed: 5)
        _ = b.batch(step: 7, size: 2)   // other calls in between change nothing
        let x = a.batch(step: 3, size: 2), y = b.batch(step: 3, size: 2)
        XCTAssertEqual(x.globals.shape, [4, 3, 16, 16])
        XCTAssertEqual(x.locals?.shape, [6, 3, 8, 8])
        XCTAssertEqual(x.globals.array, y.globals.array)
        XCTAssertEqual(x.locals!.array, y.locals!.array)
        XCTAssertNotEqual(a.batch(step: 4, size: 2).globals.array, x.globals.array)
        XCTAssertTrue(x.globals.array.allSatisfy { $0 >= 0 && $0 <= 255 })
        // the two global crops of a sample differ (independent crops/augmentations)
        XCTAssertNotEqual(Array(x.globals.array[0..<768]), Array(x.globals.array[1536..<2304]))
        // every picture appears once per epoch
        let seen = Set((0..<4).map { a.pictureIndex(step: 0, batch: 4, slot: $0) })
        XCTAssertEqual(seen, Set(0..<4))
    }

    func testRetrievalIsDeterministicAndSane() {
        let pics = Self.pictures(6)
        var cfg = EncoderConfig(hiddenSize: 16, numHiddenLayers: 1, numAttentionHeads: 2, patchSize: 4, imageSize: 16)
        cfg.layerscaleValue = 1
        let enc = Dinov2Encoder(cfg)
        enc.initialize(seed: 3)
        let r1 = SSLTrainer.retrievalTop1(encoder: enc, pictures: pics, views: 24, batch: 7)
        let r2 = SSLTrainer.retrievalTop1(encoder: enc, pictures: pics, views: 24, batch: 24)
        XCTAssertEqual(r1, r2, "batching must not change the result")
        XCTAssertEqual(r1.views, 24)
        XCTAssertTrue((0...1).contains(r1.top1View) && r1.top1Picture >= r1.top1View)
        // a random encoder still tells these very different pictures apart better than chance (1/6)
        XCTAssertGreaterThan(r1.top1Picture, 1.0 / 6)
    }

    func testConfigRoundTripsAndValidates() throws {
        var c = Self.tinyConfig()
        c.aug.blurProb = [0, 0, 0]
        let d = try JSONDecoder().decode(SSLConfig.self, from: try JSONEncoder().encode(c))
        XCTAssertEqual(c, d)
        XCTAssertEqual(c.pairs, 2 * 4 - 2)
        var bad = c
        bad.aug.localSize = 10   // not a multiple of the patch
        XCTAssertThrowsError(try bad.validate())
        bad = c; bad.batch = 1
        XCTAssertThrowsError(try bad.validate())
    }
}
