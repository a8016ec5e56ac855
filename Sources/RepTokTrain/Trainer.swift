import Foundation
import RepTokData
import RepTokModels
import RepTokNN
import RepTokSafeTensors
import RepTokTensor

/// What a checkpoint records besides tensors (`reptok.train` metadata).
public struct TrainState: Codable, Equatable, Sendable {
    public var format = "reptok-train-checkpoint"
    public var version = 1
    public var config: TrainConfig
    /// Optimizer steps done.
    public var step: Int
    /// The step budget (fixed at the start with --steps; with --minutes fixed when warm-up ends).
    public var totalSteps: Int?
    /// Training wall time so far, all segments together (seconds).
    public var wallSeconds: Double
    /// Images seen.
    public var samples: Int
    /// Thread count of the run, as a record: results do not depend on it (a resume with another
    /// thread count continues bit for bit, Engine's thread contract).
    public var threads: Int

    enum CodingKeys: String, CodingKey {
        case format, version, config, step, totalSteps = "total_steps", wallSeconds = "wall_seconds", samples, threads
    }
}

/// One step's numbers (a metrics.jsonl line).
public struct StepMetrics: Codable, Sendable {
    public var step: Int
    public var loss: Float, flow: Float, cos: Float
    public var lr: Float
    public var gradNorm: Float
    public var tokenNoiseStd: Float
    public var seconds: Double
    public var wall: Double

    enum CodingKeys: String, CodingKey {
        case step, loss, flow, cos, lr, gradNorm = "grad_norm", tokenNoiseStd = "token_noise_std", seconds, wall
    }
}

/// The tokenizer trainer: model, optimizer, EMA, data and the loop with checkpoints.
public final class TokenizerTrainer {
    public let config: TrainConfig
    public let encoderConfig: EncoderConfig
    public let model: RepTokModel
    /// The training objective on `model` (tuned parameters, frozen reference, loss).
    public let objective: TokenizerObjective
    public let optimizer: AdamW
    public let ema: EMA
    public private(set) var step = 0
    public private(set) var totalSteps: Int?
    /// Training wall time, all segments together.
    private(set) var clock = TrainingClock()
    public private(set) var samples = 0
    /// Run folder (checkpoint.safetensors, metrics.jsonl); nil: no files.
    public let runDir: String?
    private var views: ViewSampler?
    /// Where progress goes (stderr by default; tests silence it).
    public var log: (String) -> Void = { s in FileHandle.standardError.write(Data((s + "\n").utf8)) }
    public var quiet = false
    /// What the layout path's PCA start measured (fresh runs with a layout path).
    public private(set) var layoutReport: LayoutInit.Report?

    public var checkpointPath: String? { runDir.map { $0 + "/checkpoint.safetensors" } }
    public var metricsPath: String? { runDir.map { $0 + "/metrics.jsonl" } }

    /// A fresh run (weights initialized from `config.seed`, or the encoder loaded from `encoderPath`).
    public init(config: TrainConfig, runDir: String?) throws {
        try config.validate()
        self.config = config
        self.runDir = runDir
        let encoder: Dinov2Encoder
        if let ep = config.encoderPath {
            encoder = try TokenizerTrainer.loadEncoder(ep, imageSize: config.imageSize)
        } else {
            encoder = Dinov2Encoder(config.freshEncoderConfig)
            encoder.initialize(seed: SplitMix64.mix(config.seed, 0xE1C0DE))
        }
        encoderConfig = encoder.config
        let dcfg = config.decoderConfig(encoderWidth: encoderConfig.hiddenSize)
        try dcfg.validate()
        let decoder = FlowDecoder(dcfg)
        decoder.initialize(seed: SplitMix64.mix(config.seed, 0xDEC0DE))
        model = RepTokModel(encoder: encoder, adapter: config.adapter(encoderWidth: encoderConfig.hiddenSize), decoder: decoder)
        objective = TokenizerObjective(model)
        objective.setTune(config.tuneMode!)
        if let path = config.initFrom {
            // After setTune: the frozen reference keeps the SSL encoder's weights.
            let f: SafeTensorsFile
            do { f = try SafeTensorsFile(path: path) } catch { throw TrainError.config("--init-from \(path): \(error)") }
            do {
                try ModelFile.load(model.encoder.parameters, prefix: RepTokModel.encoderPrefix, from: f)
                try ModelFile.load(model.adapter.parameters, prefix: RepTokModel.adapterPrefix, from: f)
                // A model without the latent skip warm-starts a run with one: the skip keeps its
                // zero initialization, so the start predicts exactly what the model did.
                let skipless = config.skipSize > 0 && !f.contains("decoder.latent_skip.weight")
                // Likewise a skip input added to a model without one starts at zero: the same start.
                let noSkipInput = config.skipInput && !f.contains("decoder.skip_embed.weight")
                let dparams = model.decoder.parameters.filter {
                    !(skipless && $0.key.hasPrefix("latent_skip.")) && !(noSkipInput && $0.key.hasPrefix("skip_embed."))
                }
                try ModelFile.load(dparams, prefix: RepTokModel.decoderPrefix, from: f)
            } catch { throw TrainError.config("--init-from \(path): \(error) (the run's shapes must match the model's)") }
        }
        // A fresh layout path starts at the linear code of the training views.
        if config.layoutDim > 0 && config.initFrom == nil && config.layoutInit == "random" {
            // the ablation's random start: small normal weights, so the path has gradients
            var rng = InitRNG(seed: SplitMix64.mix(config.seed, 0x1A70))
            for (k, p) in model.namedParameters where k == "adapter.layout.weight" || k == "decoder.latent_skip.weight" {
                rng.fillNormal(p.value, std: 0.01)
            }
        } else if config.layoutDim > 0 && config.initFrom == nil {
            layoutReport = try LayoutInit.apply(model: model, data: try Pictures.open(config.data),
                                                share: Double(config.layoutShare)) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        }
        // A random latent skip (unless it came from --init-from): the encoder gets a direct
        // gradient from the first step, instead of waiting for the zero skip to grow.
        if config.skipInitStd > 0, let w = model.decoder.parameters.first(where: { $0.key == "latent_skip.weight" }),
           w.value.array.allSatisfy({ $0 == 0 }) {
            var rng = InitRNG(seed: SplitMix64.mix(config.seed, 0x5C1B))
            rng.fillNormal(w.value, std: Double(config.skipInitStd))
        }
        config.applyLayoutRates(model.namedParameters)
        optimizer = AdamW(model.trainableParameters, weightDecay: config.weightDecay)
        ema = EMA(model.trainableParameters, decay: config.ema, warmup: config.emaWarmup)
        totalSteps = config.steps
    }

    /// A run restored from its checkpoint (weights, frozen reference, optimizer moments, EMA,
    /// step, budget): continuing it repeats the uninterrupted run exactly.
    public init(checkpoint path: String, runDir: String?) throws {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw TrainError.checkpoint("cannot read \(path): \(error)") }
        guard let js = file.metadata["reptok.train"], let cj = file.metadata["reptok.config"] else {
            throw TrainError.checkpoint("\(path) is not a training checkpoint (no reptok.train metadata)")
        }
        let state: TrainState
        do { state = try JSONDecoder().decode(TrainState.self, from: Data(js.utf8)) } catch {
            throw TrainError.checkpoint("\(path): bad reptok.train metadata: \(error)")
        }
        config = state.config
        self.runDir = runDir
        encoderConfig = try ModelFile.part(EncoderConfig.self, "encoder", in: cj)
        let dcfg = try ModelFile.part(DecoderConfig.self, "decoder", in: cj)
        let encoder = Dinov2Encoder(encoderConfig)
        let decoder = FlowDecoder(dcfg)
        model = RepTokModel(encoder: encoder, adapter: config.adapter(encoderWidth: encoderConfig.hiddenSize), decoder: decoder)
        objective = TokenizerObjective(model)
        do {
            // 1. the frozen reference: setTune copies it from the live encoder
            if file.contains("frozen.encoder.layernorm.weight") {
                try ModelFile.load(encoder.parameters, prefix: "frozen.encoder.", from: file)
            } else {
                try ModelFile.load(encoder.parameters, prefix: "param.encoder.", from: file)
                try file.copyFloats("frozen.cls_token", into: encoder.clsToken.value.data, count: encoder.clsToken.value.count)
            }
            guard let mode = config.tuneMode else { throw TrainError.checkpoint("bad tune mode \(config.tune)") }
            objective.setTune(mode)
            // 2. live weights
            for (name, p) in model.namedParameters {
                try file.copyFloats("param." + name, into: p.value.data, count: p.value.count)
            }
            config.applyLayoutRates(model.namedParameters)
        optimizer = AdamW(model.trainableParameters, weightDecay: config.weightDecay)
            ema = EMA(model.trainableParameters, decay: config.ema, warmup: config.emaWarmup)
            let trainable = model.namedParameters.filter { $0.1.trainable }
            var m = [Tensor](), v = [Tensor]()
            for (i, (name, p)) in trainable.enumerated() {
                let mt = Tensor(p.shape), vt = Tensor(p.shape)
                try file.copyFloats("adam.m." + name, into: mt.data, count: mt.count)
                try file.copyFloats("adam.v." + name, into: vt.data, count: vt.count)
                m.append(mt); v.append(vt)
                try file.copyFloats("ema." + name, into: ema.shadow[i].data, count: ema.shadow[i].count)
            }
            optimizer.restore(step: state.step, m: m, v: v)
        } catch let e as TrainError {
            throw e
        } catch {
            throw TrainError.checkpoint("\(path): \(error)")
        }
        ema.updates = state.step
        step = state.step
        totalSteps = state.totalSteps
        clock = TrainingClock(before: state.wallSeconds)
        samples = state.samples
    }

    /// Loads an SSL encoder (`encoder.*` keys, `reptok.config` with an `encoder` part); the
    /// position table is resampled to `imageSize` when the file's differs (as the encoder would
    /// do at run time), so the encoder's config matches the decoder's image size.
    public static func loadEncoder(_ path: String, imageSize S: Int) throws -> Dinov2Encoder {
        do { return try SSLEncoderFile.read(path: path, imageSize: S) } catch let e as ModelError {
            throw TrainError.config(e.description)
        }
    }

    // MARK: - Checkpoints

    public var state: TrainState {
        TrainState(config: config, step: step, totalSteps: totalSteps, wallSeconds: clock.seconds,
                   samples: samples, threads: Engine.threads)
    }

    /// Writes everything a resume needs, atomically (temporary file + rename).
    public func saveCheckpoint(to path: String) throws {
        var w = SafeTensorsWriter(metadata: [
            "reptok.train": try JSONText.encode(state),
            "reptok.config": try ModelFile.configJSON(encoder: encoderConfig, decoder: model.decoder.config),
        ])
        func add(_ name: String, _ t: Tensor) throws {
            try w.add(name, shape: t.shape, values: UnsafeBufferPointer(t.buffer), as: .F32)
        }
        for (name, p) in model.namedParameters { try add("param." + name, p.value) }
        try add("frozen.cls_token", objective.frozenCLS)
        if let f = objective.frozenEncoder {
            for p in f.parameters { try add("frozen.encoder." + p.key, p.value) }
        }
        let trainable = model.namedParameters.filter { $0.1.trainable }
        precondition(trainable.count == optimizer.params.count && trainable.count == ema.shadow.count)
        for (i, (name, _)) in trainable.enumerated() {
            try add("adam.m." + name, optimizer.m[i])
            try add("adam.v." + name, optimizer.v[i])
            try add("ema." + name, ema.shadow[i])
        }
        try w.write(to: path)
    }

    // MARK: - Training

    public typealias Outcome = TrainingLoop.Outcome

    private func lr(_ s: Int, total: Int) -> Float {
        WarmupCosine(peakLR: config.lr, minLR: config.minLR, warmupSteps: config.warmup, totalSteps: total).lr(s)
    }

    /// One optimizer step on the batch of step `step`.
    func trainOneStep(total: Int) -> StepMetrics {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let B = config.batch, S = config.imageSize, D = encoderConfig.hiddenSize
        let rnd = StepRandom(seed: config.seed, step: step)
        let x = Tensor(uninitialized: [B, 3, S, S])      // decoder space [-1, 1]
        views!.batch(step: step, into: x.data)
        let px = Tensor(uninitialized: x.shape)           // the same view in [0, 255]
        for i in 0..<x.count { px.data[i] = (x.data[i] + 1) * 127.5 }
        let pe = model.encoder.normalize(pixels255: px)
        let t = rnd.times(B, uniformFraction: config.tUniform, oneFraction: config.tOne)
        let noise = rnd.gaussian([B, 3, S, S], .flowNoise)
        for p in optimizer.params { p.zeroGrad() }
        let tn = config.tokenNoise > 0 ? (relative: config.tokenNoise, draw: rnd.gaussian([B, D + config.layoutDim], .tokenNoise)) : nil
        let keep = config.layoutDrop > 0 ? rnd.layoutKeep(B, m: config.layoutDim, drop: config.layoutDrop) : nil
        let loss = objective.lossAndGradients(pixelsEnc: pe, x: x, t: t, noise: noise, lambda: config.lambda,
                                              tokenNoise: tn, layoutKeep: keep)
        let gn = optimizer.clipGradients(maxNorm: config.clip)
        let rate = lr(step, total: total)
        if gn.isFinite {
            optimizer.update(lr: rate)
            ema.update()
        } else {
            log("rttrain: step \(step): non-finite gradient norm, update skipped")
        }
        step += 1
        samples += B
        let sec = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return StepMetrics(step: step, loss: loss.loss, flow: loss.flow, cos: loss.cos, lr: rate, gradNorm: gn,
                           tokenNoiseStd: loss.tokenNoiseStd, seconds: sec, wall: clock.seconds)
    }

    /// Runs until the step budget is spent (`finished`), or until a stop is requested (SIGINT,
    /// or `stopAfter` steps for tests): then a final checkpoint is written (`interrupted`).
    public func run(stopAfter: Int? = nil) throws -> Outcome {
        if views == nil {
            var set = try Pictures.open(config.data)
            if config.shrinkPictures { set = try Pictures.shrunk(set, maxSide: 4 * config.imageSize) }
            views = try ViewSampler(dataset: set, config: config.viewConfig, batchSize: config.batch, seed: config.seed)
        }
        let loop = try TrainingLoop(name: "rttrain", step: step, clock: clock, itemsPerStep: config.batch, logEvery: config.logEvery,
                                    checkpointMinutes: config.checkpointMinutes, quiet: quiet, log: log, runDir: runDir,
                                    checkpointPath: checkpointPath)
        var smooth: (loss: Double, flow: Double, cos: Double)? = nil
        let budget: TrainingLoop.Budget = totalSteps.map { .steps($0) }
            ?? .seconds(config.minutes! * 60, fixAt: max(config.warmup, 20))
        return try loop.run(budget: budget, stopAfter: stopAfter, train: { total in
            let m = trainOneStep(total: total)
            let k = 0.98
            if let s = smooth {
                smooth = (k * s.loss + (1 - k) * Double(m.loss), k * s.flow + (1 - k) * Double(m.flow), k * s.cos + (1 - k) * Double(m.cos))
            } else { smooth = (Double(m.loss), Double(m.flow), Double(m.cos)) }
            let sm = smooth!
            return TrainingLoop.StepReport(step: step, seconds: m.seconds, metrics: try JSONText.encode(m)) { p in
                String(format: "step %d/%d  %.1f samples/s  loss %.4f  flow %.4f  cos %.4f  lr %.2e  |g| %.2f  ETA %@",
                       p.step, p.total, p.perSecond, sm.loss, sm.flow, sm.cos, m.lr, m.gradNorm, p.eta)
            }
        }, checkpoint: {
            if let p = checkpointPath { try saveCheckpoint(to: p) }
        }, fixed: { totalSteps = $0 })
    }
}

