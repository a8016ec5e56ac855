import Foundation
import RepTokCodec
import RepTokEval
import RepTokImage
import RepTokMetrics
import RepTokModels
import RepTokNN
import RepTokSafeTensors
import RepTokTensor
import XCTest
@testable import RepTokTrain

final class TrainTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "rttrain-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        StopSignal.reset()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Small deterministic pictures of assorted sizes and aspect ratios.
    static func pictures(_ n: Int, salt: Int = 0) -> [RGBImage] {
        let sizes = [(40, 30), (24, 24), (50, 20), (18, 36), (33, 33), (64, 48), (20, 28)]
        return (0..<n).map { k in
            let (w, h) = sizes[(k + salt) % sizes.count]
            var px = [UInt8](repeating: 0, count: w * h * 3)
            var s = UInt32(k * 7919 + salt + 1)
            for y in 0..<h {
                for x in 0..<w {
                    s = s &* 1_664_525 &+ 1_013_904_223
                    let i = (y * w + x) * 3
                    px[i] = UInt8((x * 255 / w + k * 40) % 256)
                    px[i + 1] = UInt8((y * 255 / h + k * 70) % 256)
                    px[i + 2] = UInt8(truncatingIfNeeded: (s >> 24) / 4 + UInt32(k * 20))
                }
            }
            return RGBImage(width: w, height: h, pixels: px)
        }
    }

    func tinyConfig(data: String) -> TrainConfig {
        var c = TrainConfig(data: data)
        c.imageSize = 16; c.patch = 4; c.width = 32; c.depth = 2; c.heads = 2
        c.encWidth = 32; c.encDepth = 2; c.encHeads = 2; c.encPatch = 8
        c.batch = 3; c.steps = 6; c.warmup = 2; c.lr = 1e-3
        c.tune = "all"; c.lambda = 0.1; c.tokenNoise = 0.5; c.tUniform = 0.3; c.seed = 7
        c.logEvery = 1000
        return c
    }

    func step(of checkpoint: String) throws -> Int {
        let f = try SafeTensorsFile(path: checkpoint)
        let s = try JSONDecoder().decode(TrainState.self, from: Data(f.metadata["reptok.train"]!.utf8))
        return s.step
    }

    func testInterruptedAndResumedRunIsBitIdentical() throws {
        let data = dir + "/train.rtds"
        try Pictures.write(Self.pictures(5), to: data)
        let c = tinyConfig(data: data)

        let a = try TokenizerTrainer(config: c, runDir: dir + "/a")
        a.quiet = true
        XCTAssertEqual(try a.run(), .finished)

        let b = try TokenizerTrainer(config: c, runDir: dir + "/b")
        b.quiet = true
        XCTAssertEqual(try b.run(stopAfter: 2), .interrupted)
        XCTAssertEqual(try step(of: dir + "/b/checkpoint.safetensors"), 2)
        let b2 = try TokenizerTrainer(checkpoint: dir + "/b/checkpoint.safetensors", runDir: dir + "/b")
        b2.quiet = true
        XCTAssertEqual(b2.step, 2)
        StopSignal.request()   // a Ctrl-C: finish this step, checkpoint, stop
        XCTAssertEqual(try b2.run(), .interrupted)
        StopSignal.reset()
        XCTAssertEqual(try step(of: dir + "/b/checkpoint.safetensors"), 3)
        let b3 = try TokenizerTrainer(checkpoint: dir + "/b/checkpoint.safetensors", runDir: dir + "/b")
        b3.quiet = true
        XCTAssertEqual(try b3.run(), .finished)

        XCTAssertEqual(try step(of: dir + "/a/checkpoint.safetensors"), 6)
        try assertSameTensors(dir + "/a/checkpoint.safetensors", dir + "/b/checkpoint.safetensors")
        // the metrics log has one line per step, none repeated
        let lines = try String(contentsOfFile: dir + "/b/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 6)
        // and training did something
        let fa = try SafeTensorsFile(path: dir + "/a/checkpoint.safetensors")
        XCTAssertNotEqual(try fa.floats("param.decoder.final.linear.weight").map { abs($0) }.max(), 0)
    }

    /// The thread contract: a run interrupted with 2 threads and resumed with 1 ends with the
    /// tensors of an uninterrupted 1-thread run (and so does a whole 2-thread run). The shapes are
    /// large enough that products, elementwise kernels and attention heads split their work.
    func testResumeWithAnotherThreadCountIsBitIdentical() throws {
        let data = dir + "/train.rtds"
        try Pictures.write(Self.pictures(6), to: data)
        var c = tinyConfig(data: data)
        c.imageSize = 32; c.patch = 4; c.width = 64; c.heads = 4; c.encWidth = 64; c.encHeads = 4
        c.batch = 8; c.steps = 4; c.skipSize = 8; c.skipInput = true; c.layoutDim = 8; c.layoutSize = 8; c.layoutDrop = 0.5
        let old = Engine.threads
        defer { Engine.setThreads(old) }
        Engine.setThreads(1)
        let a = try TokenizerTrainer(config: c, runDir: dir + "/a")
        a.quiet = true
        XCTAssertEqual(try a.run(), .finished)
        Engine.setThreads(2)
        let b = try TokenizerTrainer(config: c, runDir: dir + "/b")
        b.quiet = true
        XCTAssertEqual(try b.run(stopAfter: 2), .interrupted)
        let w = try TokenizerTrainer(config: c, runDir: dir + "/w")
        w.quiet = true
        XCTAssertEqual(try w.run(), .finished)
        Engine.setThreads(1)
        let b2 = try TokenizerTrainer(checkpoint: dir + "/b/checkpoint.safetensors", runDir: dir + "/b")
        b2.quiet = true
        XCTAssertEqual(b2.step, 2)
        XCTAssertEqual(try b2.run(), .finished)
        XCTAssertEqual(try step(of: dir + "/b/checkpoint.safetensors"), 4)
        try assertSameTensors(dir + "/a/checkpoint.safetensors", dir + "/b/checkpoint.safetensors")
        try assertSameTensors(dir + "/a/checkpoint.safetensors", dir + "/w/checkpoint.safetensors")
        let fa = try SafeTensorsFile(path: dir + "/a/checkpoint.safetensors")
        XCTAssertNotEqual(try fa.floats("param.decoder.final.linear.weight").map { abs($0) }.max(), 0)
    }

    /// A pretrained-encoder run (--encoder at another resolution, --tune cls) resumes exactly too.
    func testPretrainedEncoderClsTuneResumes() throws {
        let data = dir + "/train.rtds"
        try Pictures.write(Self.pictures(4), to: data)
        let ecfg = EncoderConfig(hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 2, patchSize: 8, imageSize: 32)
        let enc = Dinov2Encoder(ecfg)
        enc.initialize(seed: 3)
        let encPath = dir + "/enc.safetensors"
        try ModelFile.write(named: enc.parameters.map { ("encoder." + $0.key, $0.value) },
                            metadata: ["reptok.config": try ModelFile.configJSON(encoder: ecfg, decoder: nil)], to: encPath)
        var c = tinyConfig(data: data)
        c.encoderPath = encPath; c.tune = "cls"; c.steps = 4; c.tokenNoise = 0
        let a = try TokenizerTrainer(config: c, runDir: dir + "/a")
        a.quiet = true
        XCTAssertEqual(a.encoderConfig.imageSize, 16)
        XCTAssertEqual(a.model.encoder.positionEmbeddings.shape, [1, 5, 32])
        XCTAssertEqual(try a.run(), .finished)
        let b = try TokenizerTrainer(config: c, runDir: dir + "/b")
        b.quiet = true
        XCTAssertEqual(try b.run(stopAfter: 1), .interrupted)
        let b2 = try TokenizerTrainer(checkpoint: dir + "/b/checkpoint.safetensors", runDir: dir + "/b")
        b2.quiet = true
        XCTAssertEqual(try b2.run(), .finished)
        try assertSameTensors(dir + "/a/checkpoint.safetensors", dir + "/b/checkpoint.safetensors")
        // only the [CLS] embedding of the encoder trained
        let f = try SafeTensorsFile(path: dir + "/a/checkpoint.safetensors")
        XCTAssertEqual(try f.floats("param.encoder.encoder.layer.0.mlp.fc1.weight"), enc.layers[0].parameters.first { $0.key.hasSuffix("mlp.fc1.weight") }!.value.array)
        XCTAssertNotEqual(try f.floats("param.encoder.embeddings.cls_token"), try f.floats("frozen.cls_token"))
    }

    /// Token noise of relative std 0 is exactly no token noise (bit for bit), and with noise the
    /// loss changes and the gradient reaches the encoder.
    func testObjectiveWithZeroTokenNoiseIsThePlainObjective() throws {
        func build() -> TokenizerObjective {
            let e = Dinov2Encoder(EncoderConfig(hiddenSize: 32, numHiddenLayers: 1, numAttentionHeads: 2, patchSize: 8, imageSize: 16))
            e.initialize(seed: 1)
            let d = FlowDecoder(DecoderConfig(imageSize: 16, patchSize: 4, width: 32, depth: 1, numHeads: 2, tokenDim: 32))
            d.initialize(seed: 2)
            var rng = InitRNG(seed: 9)
            for p in d.parameters where p.value.array.allSatisfy({ $0 == 0 }) { rng.fillNormal(p.value, std: 0.02) }
            let m = TokenizerObjective(RepTokModel(encoder: e, adapter: TokenAdapter(dim: 32), decoder: d))
            m.setTune(.all)
            return m
        }
        let m1 = build(), m2 = build()
        let r = StepRandom(seed: 5, step: 3)
        let px = r.gaussian([2, 3, 16, 16], .views), noise = r.gaussian([2, 3, 16, 16], .flowNoise)
        let t = r.times(2, uniformFraction: 0.5)
        let l1 = m1.lossAndGradients(pixelsEnc: px, x: px, t: t, noise: noise, lambda: 0.1)
        let l2 = m2.lossAndGradients(pixelsEnc: px, x: px, t: t, noise: noise, lambda: 0.1,
                                     tokenNoise: (0, r.gaussian([2, 32], .tokenNoise)))
        XCTAssertEqual(l2.tokenNoiseStd, 0)
        XCTAssertEqual(l1.loss, l2.loss)
        for (p, q) in zip(m1.model.trainableParameters, m2.model.trainableParameters) { XCTAssertEqual(p.grad.array, q.grad.array, p.key) }
        // with noise the loss changes, and the gradient reaches the encoder
        for p in m2.model.trainableParameters { p.zeroGrad() }
        let l3 = m2.lossAndGradients(pixelsEnc: px, x: px, t: t, noise: noise, lambda: 0.1,
                                     tokenNoise: (0.5, r.gaussian([2, 32], .tokenNoise)))
        XCTAssertGreaterThan(l3.tokenNoiseStd, 0)
        XCTAssertNotEqual(l3.flow, l1.flow)
        XCTAssertNotEqual(m2.model.encoder.clsToken.grad.array.map { abs($0) }.max(), 0)
    }

    func testExportWritesALoadableCodecModelAndEvalRuns() throws {
        let data = dir + "/train.rtds", val = dir + "/val.rtds"
        try Pictures.write(Self.pictures(7), to: data)
        try Pictures.write(Self.pictures(3, salt: 3), to: val)
        var c = tinyConfig(data: data)
        c.steps = 3
        let a = try TokenizerTrainer(config: c, runDir: nil)
        a.quiet = true
        XCTAssertEqual(try a.run(), .finished)
        var o = ExportOptions(out: dir + "/model.safetensors")
        o.fp16 = true; o.valData = val; o.recordBytes = 60; o.bootstrap = true
        o.description = "test model ({minutes} min)"
        let r = try Exporter.export(a, options: o)
        XCTAssertEqual(r.levels.count, 9)
        XCTAssertEqual(r.levels[4].withinBudget, 1)   // level 5, the default
        XCTAssertTrue(r.roundTripPSNR.isFinite)
        let m = try CodecModel(path: r.path)
        XCTAssertEqual(m.fingerprintHex, r.fingerprint)
        XCTAssertTrue(m.codec.bootstrap)
        XCTAssertEqual(m.codec.description, "test model (0 min)")
        let f = try SafeTensorsFile(path: r.path)
        XCTAssertEqual(try f.info("decoder.final.linear.weight").dtype, .F16)
        XCTAssertEqual(try f.info("quantizer.rotation").dtype, .F32)
        XCTAssertEqual(try f.info("quantizer.dictionary").dtype, .U8)
        XCTAssertTrue(f.contains("frozen.cls_token"))
        // the same checkpoint exports to the same bytes
        let ckA = dir + "/ck.safetensors"
        let b = try TokenizerTrainer(config: c, runDir: nil)
        b.quiet = true
        _ = try b.run()
        try b.saveCheckpoint(to: ckA)
        let e1 = try Exporter.export(try TokenizerTrainer(checkpoint: ckA, runDir: nil), options: o)
        XCTAssertEqual(e1.fingerprint, r.fingerprint)

        let gridPath = dir + "/grid.png"
        let ev = try Evaluator.run(model: r.path, data: val, steps: [1, 2], grid: GridOptions(path: gridPath, pictures: 2))
        XCTAssertEqual(ev.pictures, 3)
        XCTAssertEqual(ev.steps, [1, 2])
        XCTAssertTrue(ev.rows.contains { $0.name.hasPrefix("baseline: 6x6") && $0.bytes == 108 })
        XCTAssertEqual(ev.rows.filter { $0.name == "codec" }.count, 18)   // 9 levels x 2 step counts
        XCTAssertTrue(ev.rows.allSatisfy { $0.psnr.map { $0.isFinite && $0 > 0 } ?? false && $0.psnrPictures == nil })
        XCTAssertTrue(ev.rows.allSatisfy { ($0.ssim ?? -2) > -1 && ($0.ssim ?? 2) <= 1 })
        XCTAssertEqual(ev.codec(level: 5, steps: 1)?.withinBudget, 1)     // fitted to 60 B, counted against 128
        // every level's same-bytes thumbnail is there, and the markdown table names it
        for L in 1...9 {
            let k = EvalReport.thumbnailSide(forBytes: ev.codec(level: L, steps: 1)!.bytes!)
            XCTAssertLessThanOrEqual(3 * k * k, Int(ev.codec(level: L, steps: 1)!.bytes!))
            XCTAssertNotNil(ev.thumbnail(side: k))
        }
        XCTAssertTrue(ev.markdown.contains("| 5 (default) |"), ev.markdown)
        XCTAssertTrue(ev.markdown.contains("PSNR 2 steps"))
        // the grid: 2 rows x (original, 2 decodes, thumbnail), 16 px cells, 2 px gaps; same bytes again
        let g = try ImageIO.decode(Array(try Data(contentsOf: URL(fileURLWithPath: gridPath)))).image
        XCTAssertEqual(g.width, 4 * 16 + 5 * 2)
        XCTAssertEqual(g.height, 2 * 16 + 3 * 2)
        let first = try Data(contentsOf: URL(fileURLWithPath: gridPath))
        _ = try Evaluator.run(model: r.path, data: val, steps: [1, 2], grid: GridOptions(path: gridPath, pictures: 2))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: gridPath)), first)
        // the token's cosine to an SSL encoder's token: against the model's own encoder (the
        // zero-initialized adapter has moved 3 steps) it is near, not at, 1
        XCTAssertNil(ev.tokenCosine)
        let withSSL = try Evaluator.run(model: r.path, data: val, steps: [1], limit: 2, sslEncoder: r.path)
        let cosine = try XCTUnwrap(withSSL.tokenCosine)
        XCTAssertGreaterThan(cosine, 0.9)
        XCTAssertLessThanOrEqual(cosine, 1 + 1e-9)
        XCTAssertEqual(withSSL.sslEncoder?.count, 16)
        XCTAssertTrue(withSSL.markdown.contains("Mean cosine of the token"))
    }

    func testInitFromAModelFileWarmStarts() throws {
        let data = dir + "/train.rtds"
        try Pictures.write(Self.pictures(5), to: data)
        var c = tinyConfig(data: data)
        c.steps = 3
        let a = try TokenizerTrainer(config: c, runDir: nil)
        a.quiet = true
        _ = try a.run()
        var o = ExportOptions(out: dir + "/model.safetensors")
        o.valData = data; o.recordBytes = 200; o.qualityTolerance = 0
        _ = try Exporter.export(a, options: o, log: { _ in })
        var w = c
        w.initFrom = dir + "/model.safetensors"; w.seed = 99
        let b = try TokenizerTrainer(config: w, runDir: nil)
        let f = try SafeTensorsFile(path: dir + "/model.safetensors")
        for (name, p) in b.model.namedParameters {
            XCTAssertEqual(p.value.array, try f.floats(name), name)
        }
        XCTAssertEqual(b.optimizer.step, 0)
        // a run WITH the latent skip warm-starts from this skipless model: the skip starts at zero,
        // so the decoder predicts exactly what the file's decoder does
        var ws = w
        ws.skipSize = 2
        let bs = try TokenizerTrainer(config: ws, runDir: nil)
        let skip = bs.model.decoder.parameters.filter { $0.key.hasPrefix("latent_skip.") }
        XCTAssertEqual(skip.map(\.key).sorted(), ["latent_skip.bias", "latent_skip.weight"])
        XCTAssertTrue(skip.allSatisfy { $0.value.array.allSatisfy { $0 == 0 } })
        let xt = Tensor([1, 3, 16, 16], (0..<768).map { Float($0 % 17) / 17 - 0.5 })
        let zt = Tensor([1, 32], (0..<32).map { Float($0) / 32 })
        XCTAssertEqual(bs.model.decoder.infer(xt, t: [0.7], z: zt).array, b.model.decoder.infer(xt, t: [0.7], z: zt).array)
        XCTAssertEqual(bs.model.decoder.config.skipSize, 2)
        // a skipless decoder config is written without the key (fingerprints of older models stay)
        let plain = String(decoding: try JSONEncoder().encode(b.model.decoder.config), as: UTF8.self)
        XCTAssertFalse(plain.contains("skip_size"))
        let withSkip = try JSONEncoder().encode(bs.model.decoder.config)
        XCTAssertTrue(String(decoding: withSkip, as: UTF8.self).contains("\"skip_size\":2"))
        XCTAssertEqual(try JSONDecoder().decode(DecoderConfig.self, from: withSkip), bs.model.decoder.config)
        var badSkip = ws
        badSkip.prediction = "v"
        XCTAssertThrowsError(try badSkip.validate())
        // --skip-init-std: a random skip (seeded: the same twice), so the encoder gets a gradient
        // through it from the first step
        var wr = ws
        wr.skipInitStd = 0.01
        let r1 = try TokenizerTrainer(config: wr, runDir: nil), r2 = try TokenizerTrainer(config: wr, runDir: nil)
        let w1 = r1.model.decoder.parameters.first { $0.key == "latent_skip.weight" }!.value.array
        XCTAssertEqual(w1, r2.model.decoder.parameters.first { $0.key == "latent_skip.weight" }!.value.array)
        XCTAssertGreaterThan(w1.map { abs($0) }.max()!, 0)
        let rms = (w1.map { Double($0) * Double($0) }.reduce(0, +) / Double(w1.count)).squareRoot()
        XCTAssertEqual(rms, 0.01, accuracy: 0.002)
        var noSkip = w
        noSkip.skipInitStd = 0.01
        XCTAssertThrowsError(try noSkip.validate())
        // a model of another shape is refused with a clear message
        var bad = w
        bad.width = 64
        XCTAssertThrowsError(try TokenizerTrainer(config: bad, runDir: nil)) { e in
            XCTAssertTrue("\(e)".contains("--init-from"), "\(e)")
        }
        XCTAssertEqual(try JSONDecoder().decode(TrainConfig.self, from: Data(try JSONText.encode(w).utf8)).initFrom, w.initFrom)
    }

    func testConfigJSONRoundTripsAndOldCheckpointsKeepDefaults() throws {
        var c = tinyConfig(data: "d.rtds")
        c.minutes = 3; c.steps = nil; c.tOne = 0.25
        let back = try JSONDecoder().decode(TrainConfig.self, from: Data(try JSONText.encode(c).utf8))
        XCTAssertEqual(back, c)
        let old = try JSONDecoder().decode(TrainConfig.self, from: Data(#"{"data": "x.rtds", "batch": 8}"#.utf8))
        var expect = TrainConfig(data: "x.rtds")
        expect.batch = 8
        XCTAssertEqual(old, expect)
        var bad = c
        bad.tune = "cls"   // a fresh encoder must train
        XCTAssertThrowsError(try bad.validate())
    }

    func testBicubicKeepsConstantsAndPSNR() throws {
        let flat = RGBImage(width: 3, height: 2, pixels: [UInt8](repeating: 77, count: 18))
        XCTAssertEqual(Baselines.bicubic(flat, width: 9, height: 7).pixels, [UInt8](repeating: 77, count: 9 * 7 * 3))
        // rttrain eval's PSNR is Metrics.psnr: identical pictures are +infinity, not a 99 dB cap
        XCTAssertEqual(try Metrics.psnr(flat, flat), .infinity)
        var other = flat
        other.pixels[0] = 78
        XCTAssertEqual(try Metrics.psnr(flat, other), 10 * log10(255 * 255 * 18), accuracy: 1e-9)
    }
}

extension XCTestCase {
    /// Every tensor of two checkpoints, compared bit for bit (the trainers' resume tests).
    func assertSameTensors(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let fa = try SafeTensorsFile(path: a), fb = try SafeTensorsFile(path: b)
        XCTAssertEqual(fa.names, fb.names, file: file, line: line)
        var differing = [String]()
        for n in fa.names {
            let ra = try fa.rawBytes(n), rb = try fb.rawBytes(n)
            if ra != rb { differing.append(n) }
        }
        XCTAssertEqual(differing, [], "tensors differ", file: file, line: line)
    }
}
