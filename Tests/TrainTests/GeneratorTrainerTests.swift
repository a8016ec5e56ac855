import Foundation
import RepTokCodec
import RepTokData
import RepTokImage
import RepTokModels
import RepTokSafeTensors
import RepTokTensor
import XCTest
@testable import RepTokTrain

/// rttrain generator: token cache, exact resume, export that rtgen's loader reads, seeded sampling.
final class GeneratorTrainerTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "rtgen-train-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        StopSignal.reset()
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// A tiny codec model (exported from a 2-step tokenizer run) and a two-class picture pack.
    func fixture(layout: Bool = false) throws -> (model: String, data: String) {
        let plain = dir + "/plain.rtds"
        try Pictures.write(TrainTests.pictures(6), to: plain)
        var c = TrainConfig(data: plain)
        c.imageSize = 16; c.patch = 4; c.width = 32; c.depth = 1; c.heads = 2
        c.encWidth = 32; c.encDepth = 1; c.encHeads = 2; c.encPatch = 8
        c.batch = 3; c.steps = 2; c.warmup = 1; c.tune = "all"; c.seed = 3; c.logEvery = 1000
        if layout { c.layoutDim = 5; c.layoutSize = 4; c.skipSize = 4 }
        let t = try TokenizerTrainer(config: c, runDir: nil)
        t.quiet = true
        _ = try t.run()
        var o = ExportOptions(out: dir + "/model.safetensors")
        o.valData = plain; o.recordBytes = 200; o.qualityTolerance = 0
        _ = try Exporter.export(t, options: o, log: { _ in })
        var w = try PackedDatasetWriter(classNames: ["cats", "dogs"])
        for (k, p) in TrainTests.pictures(6).enumerated() {
            try w.append(width: p.width, height: p.height, classID: k % 2, pixels: p.pixels)
        }
        let data = dir + "/classes.rtds"
        try w.write(to: data)
        return (dir + "/model.safetensors", data)
    }

    func config(_ f: (model: String, data: String)) -> GeneratorTrainConfig {
        var c = GeneratorTrainConfig(data: f.data, model: f.model)
        c.views = 3; c.width = 16; c.depth = 2; c.batch = 8; c.steps = 6; c.warmup = 2; c.lr = 1e-3; c.seed = 11
        c.logEvery = 1000
        return c
    }

    /// The thread contract for the generator: stopped with 2 threads, resumed with 1, the run
    /// ends with the tensors of an uninterrupted 1-thread run.
    func testResumeWithAnotherThreadCountIsBitIdentical() throws {
        let f = try fixture()
        var c = config(f)
        c.width = 64; c.batch = 16
        let old = Engine.threads
        defer { Engine.setThreads(old) }
        Engine.setThreads(1)
        let a = try GeneratorTrainer(config: c, runDir: dir + "/a")
        a.quiet = true
        XCTAssertEqual(try a.run(), .finished)
        Engine.setThreads(2)
        let b = try GeneratorTrainer(config: c, runDir: dir + "/b")
        b.quiet = true
        XCTAssertEqual(try b.run(stopAfter: 3), .interrupted)
        Engine.setThreads(1)
        let b2 = try GeneratorTrainer(resuming: dir + "/b")
        b2.quiet = true
        XCTAssertEqual(b2.step, 3)
        XCTAssertEqual(try b2.run(), .finished)
        try assertSameTensors(dir + "/a/checkpoint.safetensors", dir + "/b/checkpoint.safetensors")
        let fa = try SafeTensorsFile(path: dir + "/a/checkpoint.safetensors")
        XCTAssertNotEqual(try fa.floats("param.final.linear.weight").map { abs($0) }.max(), 0)
    }

    func testResumeIsBitIdenticalAndExportSamples() throws {
        let f = try fixture()
        let c = config(f)
        let a = try GeneratorTrainer(config: c, runDir: dir + "/a")
        a.quiet = true
        XCTAssertEqual(try a.run(), .finished)
        XCTAssertEqual(a.data.count, 18)
        XCTAssertEqual(Set(a.data.labels), [0, 1])
        XCTAssertEqual(a.generator.config.classes, ["cats", "dogs"])
        // standardized tokens: zero mean per dimension, unit RMS
        let D = a.data.dim
        var rms = 0.0
        for i in 0..<a.data.tokens.count { rms += Double(a.data.tokens[i] * a.data.tokens[i]) }
        XCTAssertEqual((rms / Double(a.data.tokens.count)).squareRoot(), 1, accuracy: 1e-3)
        let m0 = (0..<a.data.count).reduce(0.0) { $0 + Double(a.data.tokens[$1 * D]) } / Double(a.data.count)
        XCTAssertEqual(m0, 0, accuracy: 1e-4)

        let b = try GeneratorTrainer(config: c, runDir: dir + "/b")
        b.quiet = true
        XCTAssertEqual(try b.run(stopAfter: 2), .interrupted)
        let b2 = try GeneratorTrainer(resuming: dir + "/b")
        b2.quiet = true
        XCTAssertEqual(b2.step, 2)
        StopSignal.request()
        XCTAssertEqual(try b2.run(), .interrupted)
        StopSignal.reset()
        let b3 = try GeneratorTrainer(resuming: dir + "/b")
        b3.quiet = true
        XCTAssertEqual(b3.step, 3)
        XCTAssertEqual(try b3.run(), .finished)
        try assertSameTensors(dir + "/a/checkpoint.safetensors", dir + "/b/checkpoint.safetensors")
        let fa = try SafeTensorsFile(path: dir + "/a/checkpoint.safetensors")
        XCTAssertNotEqual(try fa.floats("param.final.linear.weight").map { abs($0) }.max(), 0, "training moved the output layer")
        let lines = try String(contentsOfFile: dir + "/b/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 6)

        // Export -> GeneratorModel: the loader checks and samples deterministically per index.
        let path = dir + "/gen.safetensors"
        try a.export(to: path)
        let g = try GeneratorModel(path: path)
        let codec = try CodecModel(path: f.model)
        XCTAssertEqual(g.codecModel, codec.fingerprintHex)
        XCTAssertEqual(g.config.tokenDim, codec.quantizer.dim)
        let z4 = g.sample(labels: [0, 1, 2, 0], seed: 5, steps: 4, cfg: 2, interval: 0.3...0.9)
        let z1 = g.sample(labels: [2], seed: 5, firstIndex: 2, steps: 4, cfg: 2, interval: 0.3...0.9)
        for d in 0..<D { XCTAssertEqual(z4[2 * D + d], z1[d], accuracy: 1e-6) }
        XCTAssertEqual(g.sample(labels: [0, 1, 2, 0], seed: 5, steps: 4, cfg: 2, interval: 0.3...0.9).array, z4.array)
        XCTAssertNotEqual(g.sample(labels: [0], seed: 6, steps: 4, cfg: 2, interval: 0.3...0.9).array,
                          Array(z4.array[0..<D]))
        // the EMA weights were exported, not the live ones
        let gf = try SafeTensorsFile(path: path)
        XCTAssertEqual(try gf.floats("generator.final.linear.weight"), try fa.floats("ema.final.linear.weight"))
    }

    func testStaleCheckpointAndBadFilesAreErrors() throws {
        let f = try fixture()
        XCTAssertThrowsError(try GeneratorTrainer(resuming: dir + "/nothing-here"))
        var c = config(f)
        c.views = 0
        XCTAssertThrowsError(try GeneratorTrainer(config: c, runDir: dir + "/x"))
        // a codec model file is not a generator file
        XCTAssertThrowsError(try GeneratorModel(path: f.model)) { e in
            XCTAssertTrue("\(e)".contains("not a reptok generator"), "\(e)")
        }
        XCTAssertThrowsError(try GeneratorModel(path: dir + "/missing.safetensors"))
    }

    /// A layout model end to end: the laplace export loads as a codec model whose levels spend
    /// more bytes for less error, and a per-dimension standardized generator samples its tokens.
    func testLayoutModelExportAndPerDimensionGenerator() throws {
        let f = try fixture(layout: true)
        let codec = try CodecModel(path: f.model)
        XCTAssertEqual(codec.adapter.layoutDim, 5)
        XCTAssertEqual(codec.quantizer.dim, 37)
        XCTAssertEqual(codec.codec.entropy.rawValue, "laplace")
        XCTAssertEqual(codec.codec.levelSteps?.count, 9)
        let pic = TrainTests.pictures(6)[1]
        var bytes = [Int](), errs = [Double]()
        for L in Quantizer.levels {
            let rec = try Codec.encode(pic, model: codec, options: EncodeOptions(level: L))
            bytes.append(rec.payload.count)
            let z = try Codec.latent(rec, model: codec), z0 = Codec.token(pic, model: codec)
            let y = z.array.withUnsafeBufferPointer { codec.quantizer.rotate($0.baseAddress!) }
            let y0 = z0.array.withUnsafeBufferPointer { codec.quantizer.rotate($0.baseAddress!) }
            errs.append(zip(y, y0).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) })
            XCTAssertEqual(try Codec.decode(rec, model: codec).width, pic.width)
        }
        XCTAssertLessThan(bytes[0], bytes[8])
        XCTAssertLessThan(errs[8], errs[0])

        var c = config(f)
        c.perDimStd = true
        let a = try GeneratorTrainer(config: c, runDir: dir + "/pd")
        a.quiet = true
        XCTAssertEqual(try a.run(), .finished)
        let D = a.data.dim
        XCTAssertEqual(a.data.std.count, D)
        for d in 0..<D {   // every dimension standardized on its own
            var v = 0.0
            for i in 0..<a.data.count { v += Double(a.data.tokens[i * D + d] * a.data.tokens[i * D + d]) }
            XCTAssertEqual(v / Double(a.data.count), 1, accuracy: 1e-3)
        }
        let path = dir + "/gen-pd.safetensors"
        try a.export(to: path)
        let g = try GeneratorModel(path: path)
        XCTAssertEqual(g.std.count, D)
        let z = g.sample(labels: [0, 1], seed: 1, steps: 4, cfg: 1.5, interval: 0.3...0.9)
        XCTAssertTrue(z.array.allSatisfy { $0.isFinite })
        XCTAssertEqual(z.count, 2 * codec.quantizer.dim)
    }
}
