// rttrain generator: a flow model over the codec's single token (RepTok's generation half).
//
// 1. Token cache (computed once per run folder, `tokens.safetensors`): `views` views per
//    training picture from RepTokData's ViewSampler (half whole pictures, half large
//    random-resized crops, flips, mild jitter: what the tokenizer trained on), each through the
//    codec model's frozen encoder + adapter, with its class label (ImageFolder subfolder).
//    Tokens are standardized: u = (z - mean) / std, mean per dimension, std one scalar (RMS over
//    dimensions) or, with `--per-dim-std`, one per dimension (tokens whose dimensions differ in
//    scale, like a layout model's), stored with the cache and in the exported file.
// 2. Flow matching on u: u_t = (1 - t) u + t eps, target eps - u, t logit-normal with a uniform
//    share; labels dropped to the null class with probability `labelDrop` (classifier-free
//    guidance). AdamW, warm-up + cosine, clipping, EMA; every draw of step s is keyed by
//    (seed, s), so `--resume` repeats the uninterrupted run exactly.
// 3. Export: the EMA weights as a generator file (GeneratorFile, in RepTokCodec: `generator.*`,
//    `normalization.mean` / `normalization.std`, `reptok.config` with the codec model's fingerprint).

import Foundation
import RepTokCodec
import RepTokData
import RepTokModels
import RepTokNN
import RepTokSafeTensors
import RepTokTensor

public struct GeneratorTrainConfig: Codable, Equatable, Sendable {
    public var data: String
    /// The codec model whose tokens are generated (nil: the embedded default model).
    public var model: String?
    public var views = 16
    public var width = 256
    public var depth = 6
    public var mlpRatio = 4
    public var batch = 256
    public var lr: Float = 5e-4
    public var minLR: Float = 0
    public var warmup = 200
    public var steps = 4000
    public var weightDecay: Float = 0.01
    public var clip: Float = 1
    public var ema: Float = 0.999
    public var labelDrop: Float = 0.1
    public var tUniform: Float = 0.1
    public var seed: UInt64 = 0
    public var checkpointMinutes = 5.0
    public var logEvery = 50
    /// Standardize every token dimension by its own std (nil: one scalar std, the first files).
    public var perDimStd: Bool?

    public init(data: String, model: String? = nil) { self.data = data; self.model = model }

    enum CodingKeys: String, CodingKey {
        case data, model, views, width, depth, mlpRatio = "mlp_ratio", batch, lr, minLR = "min_lr", warmup, steps
        case weightDecay = "weight_decay", clip, ema, labelDrop = "label_drop", tUniform = "t_uniform", seed
        case checkpointMinutes = "checkpoint_minutes", logEvery = "log_every", perDimStd = "per_dim_std"
    }

    public func validate() throws {
        func bad(_ s: String) -> TrainError { .config(s) }
        guard (1...1024).contains(views) else { throw bad("--views must be 1-1024") }
        guard (1...65536).contains(batch), steps >= 1, warmup >= 0 else { throw bad("--batch/--steps/--warmup") }
        guard lr > 0, minLR >= 0, minLR <= lr, weightDecay >= 0, clip > 0 else { throw bad("--lr/--min-lr/--weight-decay/--clip") }
        guard ema >= 0, ema < 1, labelDrop >= 0, labelDrop <= 1, tUniform >= 0, tUniform <= 1 else {
            throw bad("--ema/--label-drop/--t-uniform")
        }
        guard checkpointMinutes > 0, logEvery >= 1 else { throw bad("--checkpoint-minutes/--log-every") }
        try GeneratorConfig(tokenDim: 1, width: width, depth: depth, mlpRatio: mlpRatio, classes: ["x"]).validate()
    }
}

struct GeneratorTrainState: Codable, Equatable {
    var format = "reptok-generator-checkpoint"
    var version = 1
    var config: GeneratorTrainConfig
    var codecModel: String
    var step: Int
    var wallSeconds: Double
    var threads: Int

    enum CodingKeys: String, CodingKey {
        case format, version, config, codecModel = "codec_model", step, wallSeconds = "wall_seconds", threads
    }
}

/// A standardized token set with labels (the generator's training data).
public struct TokenSet {
    public let dim: Int
    public let tokens: [Float]       // [count, dim], standardized
    public let labels: [Int]
    public let classes: [String]
    public let mean: [Float]
    /// One scalar, or one per dimension.
    public let std: [Float]
    public var count: Int { labels.count }
}

public final class GeneratorTrainer {
    public let config: GeneratorTrainConfig
    public let codec: CodecModel
    public let generator: TokenGenerator
    public let optimizer: AdamW
    public let ema: EMA
    public private(set) var step = 0
    public private(set) var data: TokenSet!
    /// Training wall time, all segments together.
    private(set) var clock = TrainingClock()
    public let runDir: String
    public var log: (String) -> Void = { s in FileHandle.standardError.write(Data((s + "\n").utf8)) }
    public var quiet = false

    var checkpointPath: String { runDir + "/checkpoint.safetensors" }
    var metricsPath: String { runDir + "/metrics.jsonl" }
    var cachePath: String { runDir + "/tokens.safetensors" }

    static func loadCodec(_ path: String?) throws -> CodecModel {
        do { return try path.map { try CodecModel.cached(path: $0) } ?? CodecModel.loadDefault() } catch {
            throw TrainError.config("codec model: \(error)")
        }
    }

    /// A fresh run; the class list comes from the data file.
    public init(config: GeneratorTrainConfig, runDir: String) throws {
        try config.validate()
        self.config = config
        self.runDir = runDir
        codec = try GeneratorTrainer.loadCodec(config.model)
        let ds = try Pictures.open(config.data)
        let gcfg = GeneratorConfig(tokenDim: codec.quantizer.dim, width: config.width, depth: config.depth,
                                   mlpRatio: config.mlpRatio, classes: ds.classNames)
        try gcfg.validate()
        generator = TokenGenerator(gcfg)
        generator.initialize(seed: SplitMix64.mix(config.seed, 0x6E4E))
        optimizer = AdamW(generator.parameters, weightDecay: config.weightDecay)
        ema = EMA(generator.parameters, decay: config.ema, warmup: true)
    }

    /// A run restored from `runDir/checkpoint.safetensors`.
    public init(resuming runDir: String) throws {
        self.runDir = runDir
        let path = runDir + "/checkpoint.safetensors"
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw TrainError.checkpoint("cannot read \(path): \(error)") }
        guard let js = file.metadata["reptok.generator-train"], let cj = file.metadata[ModelFile.configKey] else {
            throw TrainError.checkpoint("\(path) is not a generator checkpoint")
        }
        let state: GeneratorTrainState
        do { state = try JSONDecoder().decode(GeneratorTrainState.self, from: Data(js.utf8)) } catch {
            throw TrainError.checkpoint("\(path): bad metadata: \(error)")
        }
        config = state.config
        codec = try GeneratorTrainer.loadCodec(config.model)
        guard codec.fingerprintHex == state.codecModel else {
            throw TrainError.checkpoint("\(path) was trained on the tokens of model \(state.codecModel), not \(codec.fingerprintHex)")
        }
        let gcfg = try ModelFile.part(GeneratorConfig.self, GeneratorFile.configPart, in: cj)
        generator = TokenGenerator(gcfg)
        try ModelFile.load(generator.parameters, prefix: "param.", from: file)
        optimizer = AdamW(generator.parameters, weightDecay: config.weightDecay)
        let ms = try generator.parameters.map { try ModelFile.tensor("adam.m." + $0.key, in: file) }
        let vs = try generator.parameters.map { try ModelFile.tensor("adam.v." + $0.key, in: file) }
        optimizer.restore(step: state.step, m: ms, v: vs)
        ema = EMA(generator.parameters, decay: config.ema, warmup: true)
        for (s, p) in zip(ema.shadow, generator.parameters) { s.copy(from: try ModelFile.tensor("ema." + p.key, in: file)) }
        ema.updates = state.step
        step = state.step
        clock = TrainingClock(before: state.wallSeconds)
    }

    // MARK: - Tokens

    /// The token cache: loaded from the run folder when it matches, else computed and written.
    public func prepareTokens() throws {
        if let t = try? loadTokens() { data = t; return }
        let ds = try Pictures.open(config.data)
        let S = codec.imageSize, D = codec.quantizer.dim, B = 32
        let views = try ViewSampler(dataset: ds, config: ViewConfig(size: S, wholeFraction: 0.5), batchSize: B,
                                    seed: SplitMix64.mix(config.seed, 0x70CE))
        let total = ds.count * config.views
        var raw = [Float](), labels = [Int]()
        raw.reserveCapacity(total * D)
        var s = 0
        while labels.count < total {
            let x = Tensor(uninitialized: [B, 3, S, S])
            var cls = [Int32](repeating: 0, count: B)
            _ = cls.withUnsafeMutableBufferPointer { views.batch(step: s, into: x.data, classes: $0.baseAddress) }
            for i in 0..<x.count { x.data[i] = (x.data[i] + 1) * 127.5 }
            let z = TokenAdapter.latent(encoder: codec.encoder, adapter: codec.adapter, pixels255: x)
            let n = min(B, total - labels.count)
            raw += Array(UnsafeBufferPointer(start: z.data, count: n * D))
            labels += cls[0..<n].map { Int($0) }
            s += 1
            if !quiet && isatty(2) != 0 {
                FileHandle.standardError.write(Data("\r\u{1B}[Krttrain generator: tokens \(labels.count)/\(total)".utf8))
            }
        }
        if !quiet && isatty(2) != 0 { FileHandle.standardError.write(Data("\n".utf8)) }
        let N = labels.count
        var mean = [Float](repeating: 0, count: D)
        for i in 0..<N { for d in 0..<D { mean[d] += raw[i * D + d] } }
        for d in 0..<D { mean[d] /= Float(N) }
        var ss = [Double](repeating: 0, count: D)
        for i in 0..<N { for d in 0..<D { let c = Double(raw[i * D + d] - mean[d]); ss[d] += c * c } }
        let std: [Float] = config.perDimStd == true
            ? ss.map { Float(max(($0 / Double(N)).squareRoot(), 1e-8)) }
            : [Float(max((ss.reduce(0, +) / Double(N * D)).squareRoot(), 1e-8))]
        for i in 0..<N { for d in 0..<D { raw[i * D + d] = (raw[i * D + d] - mean[d]) / std[std.count == 1 ? 0 : d] } }
        data = TokenSet(dim: D, tokens: raw, labels: labels, classes: ds.classNames, mean: mean, std: std)
        try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        var w = SafeTensorsWriter(metadata: ["reptok.tokens": try JSONText.string(
            ["codec_model": codec.fingerprintHex, "data": config.data, "views": config.views, "seed": config.seed,
             "classes": ds.classNames] as [String: Any])])
        try w.add("tokens", shape: [N, D], values: raw, as: .F32)
        try w.add("labels", shape: [N], values: labels.map(Float.init), as: .F32)
        try w.add("mean", shape: [D], values: mean, as: .F32)
        try w.add("std", shape: [std.count], values: std, as: .F32)
        try w.write(to: cachePath)
        log("rttrain generator: \(N) tokens of \(ds.count) pictures (\(config.views) views each), \(ds.classNames.count) classes; cached in \(cachePath)")
    }

    func loadTokens() throws -> TokenSet {
        let f = try SafeTensorsFile(path: cachePath)
        guard let js = f.metadata["reptok.tokens"],
              let o = try JSONSerialization.jsonObject(with: Data(js.utf8)) as? [String: Any],
              o["codec_model"] as? String == codec.fingerprintHex, o["data"] as? String == config.data,
              o["views"] as? Int == config.views, let classes = o["classes"] as? [String] else {
            throw TrainError.data("stale token cache")
        }
        let t = try ModelFile.tensor("tokens", in: f), l = try ModelFile.tensor("labels", in: f)
        let m = try ModelFile.tensor("mean", in: f), s = try ModelFile.tensor("std", in: f)
        guard t.shape.count == 2, t.shape[1] == codec.quantizer.dim, l.count == t.shape[0], classes == generator.config.classes else {
            throw TrainError.data("token cache shape")
        }
        return TokenSet(dim: t.shape[1], tokens: t.array, labels: l.array.map { Int($0) }, classes: classes,
                        mean: m.array, std: s.array)
    }

    // MARK: - Training

    func lossAndGradients(step s: Int) -> Float {
        let B = config.batch, D = data.dim
        let rnd = StepRandom(seed: config.seed, step: s)
        let u = rnd.uniforms(2 * B, .views)
        let t = rnd.times(B, uniformFraction: config.tUniform)
        let eps = rnd.gaussian([B, D], .flowNoise)
        let xt = Tensor(uninitialized: [B, D]), target = Tensor(uninitialized: [B, D])
        var labels = [Int](repeating: 0, count: B)
        for b in 0..<B {
            let i = min(data.count - 1, Int(u[2 * b] * Double(data.count)))
            labels[b] = u[2 * b + 1] < Double(config.labelDrop) ? generator.config.nullClass : data.labels[i]
            for d in 0..<D {
                let x = data.tokens[i * D + d], e = eps.data[b * D + d]
                xt.data[b * D + d] = (1 - t[b]) * x + t[b] * e
                target.data[b * D + d] = e - x
            }
        }
        for p in optimizer.params { p.zeroGrad() }
        let v = generator.forward(xt, t: t, labels: labels, mode: .training)
        let dv = Tensor(uninitialized: v.shape)
        var loss = 0.0
        let k = 2 / Float(B * D)
        for i in 0..<v.count {
            let r = v.data[i] - target.data[i]
            loss += Double(r * r)
            dv.data[i] = k * r
        }
        generator.backward(dv)
        return Float(loss / Double(B * D))
    }

    public func saveCheckpoint() throws {
        let state = GeneratorTrainState(config: config, codecModel: codec.fingerprintHex, step: step,
                                        wallSeconds: clock.seconds, threads: Engine.threads)
        var w = SafeTensorsWriter(metadata: ["reptok.generator-train": try JSONText.encode(state),
                                             ModelFile.configKey: ([GeneratorFile.configPart: try JSONValue(encoding: generator.config)] as JSONValue).text()])
        func add(_ n: String, _ t: Tensor) throws { try w.add(n, shape: t.shape, values: UnsafeBufferPointer(t.buffer), as: .F32) }
        for (i, p) in generator.parameters.enumerated() {
            try add("param." + p.key, p.value)
            try add("adam.m." + p.key, optimizer.m[i])
            try add("adam.v." + p.key, optimizer.v[i])
            try add("ema." + p.key, ema.shadow[i])
        }
        try w.write(to: checkpointPath)
    }

    public typealias Outcome = TrainingLoop.Outcome

    /// One optimizer step on the batch of step `step`: its metrics.jsonl line, loss, rate and gradient norm.
    func trainStep() throws -> (metrics: String, seconds: Double, loss: Float, lr: Float, gradNorm: Float) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let loss = lossAndGradients(step: step)
        let gn = optimizer.clipGradients(maxNorm: config.clip)
        let rate = WarmupCosine(peakLR: config.lr, minLR: config.minLR, warmupSteps: config.warmup, totalSteps: config.steps).lr(step)
        if gn.isFinite { optimizer.update(lr: rate); ema.update() } else { log("rttrain generator: step \(step): non-finite gradient, skipped") }
        step += 1
        let sec = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let line = try JSONText.string(["step": step, "loss": Double(loss), "lr": Double(rate), "grad_norm": Double(gn),
                                        "seconds": sec, "wall": clock.seconds])
        return (line, sec, loss, rate, gn)
    }

    public func run(stopAfter: Int? = nil) throws -> Outcome {
        try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        if data == nil { try prepareTokens() }
        let loop = try TrainingLoop(name: "rttrain generator", step: step, clock: clock, itemsPerStep: config.batch,
                                    logEvery: config.logEvery, checkpointMinutes: config.checkpointMinutes, quiet: quiet, log: log,
                                    runDir: runDir, checkpointPath: checkpointPath)
        var smooth: Double? = nil
        return try loop.run(budget: .steps(config.steps), stopAfter: stopAfter, train: { _ in
            let m = try trainStep()
            smooth = smooth.map { 0.98 * $0 + 0.02 * Double(m.loss) } ?? Double(m.loss)
            let sm = smooth!
            return TrainingLoop.StepReport(step: step, seconds: m.seconds, metrics: m.metrics) { p in
                String(format: "generator step %d/%d  %.0f tokens/s  loss %.4f  lr %.2e  |g| %.2f  ETA %@",
                       p.step, p.total, p.perSecond, sm, m.lr, m.gradNorm, p.eta)
            }
        }, checkpoint: saveCheckpoint)
    }

    // MARK: - Export

    /// Writes the generator file (GeneratorFile: the EMA weights) that rtgen loads.
    public func export(to path: String, fp16: Bool = false) throws {
        guard let d = data else { throw TrainError.export("no token statistics (run the training first)") }
        let live = generator.parameters.map { $0.value.clone() }
        ema.copyToParameters()
        defer { for (p, v) in zip(generator.parameters, live) { p.value.copy(from: v) } }
        let training: JSONValue = ["config": try JSONValue(encoding: config), "steps": .integer(step),
                                   "wall_seconds": try JSONValue(encoding: clock.seconds), "tokens": .integer(d.count)]
        try GeneratorFile.write(generator, mean: d.mean, std: d.std, codecModel: codec.fingerprintHex, training: training,
                                to: path, fp16: fp16)
    }
}
