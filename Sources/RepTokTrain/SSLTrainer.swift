import Foundation
import RepTokData
import RepTokImage
import RepTokModels
import RepTokNN
import RepTokSafeTensors
import RepTokTensor

/// DINO self-supervised pretraining of the encoder: `rttrain ssl` calls `SSLTrainer.run`.
public enum SSLTrainer {
    /// Trains (or resumes) per `cfg`, writes checkpoints and metrics in `cfg.out`, exports the
    /// teacher encoder to `cfg.export` at the end, and prints the retrieval figure.
    public static func run(_ cfg: SSLConfig) throws {
        if let t = cfg.threads { Engine.setThreads(t) }
        try cfg.validate()
        let session: SSLSession
        if cfg.resume {
            session = try SSLSession(checkpoint: cfg.out! + "/checkpoint.safetensors", overriding: cfg)
        } else {
            session = try SSLSession(config: cfg)
        }
        StopSignal.install()
        if !cfg.quiet {
            let n = session.student.parameterCount, h = session.studentHead.parameterCount
            session.log("rttrain ssl: step \(session.step)/\(session.config.steps), encoder \(n) + head \(h) parameters, "
                        + "batch \(session.config.batch) x (2 x \(session.config.aug.globalSize) px + \(session.config.aug.localCrops) x \(session.config.aug.localSize) px), "
                        + "peak lr \(session.config.peakLR), \(Engine.threads) threads")
        }
        let outcome = try session.train()
        if let e = session.config.export {
            try session.exportEncoder(to: e)
            session.log("rttrain ssl: teacher encoder written to \(e)")
        }
        if outcome == .interrupted { session.log("rttrain ssl: interrupted; continue with --resume") }
        if let b = session.baseline, let l = session.lastRetrieval {
            print(String(format: "retrieval top-1: random init %.1f%% -> step %d %.1f%% (own picture %.1f%% -> %.1f%%; %d views of %d val pictures)",
                         100 * b.top1View, session.step, 100 * l.top1View, 100 * b.top1Picture, 100 * l.top1Picture, l.views, l.pictures))
        }
    }

    /// Retrieval figure of the run's teacher (`cfg.resume`: from the checkpoint in `cfg.out`)
    /// or of a freshly initialized encoder.
    public static func evaluateOnly(_ cfg: SSLConfig) throws -> SSLRetrieval {
        if let t = cfg.threads { Engine.setThreads(t) }
        guard cfg.val != nil else { throw SSLError.config("the retrieval eval needs --val") }
        let s = cfg.resume ? try SSLSession(checkpoint: cfg.out! + "/checkpoint.safetensors", overriding: cfg)
                           : try SSLSession(config: cfg)
        return try s.evaluate()!
    }

    /// Label-free quality figure: top-1 retrieval of augmented views.
    ///
    /// A gallery of `views` views of the pictures is embedded with the encoder's [CLS] token
    /// (L2-normalized): view k shows picture k mod N, the whole picture squashed to S x S for
    /// its first appearance, else a random box of 50-100% of its area (aspect within 3:4..4:3
    /// of the picture's), squashed. For every gallery view a query is made from the same box:
    /// a random-resized crop of 40-100% of the box's area (aspect 3:4..4:3), a flip with p =
    /// 1/2 and colour jitter (brightness/contrast 0.4, saturation 0.2, hue 0.05). The query's
    /// nearest gallery view by cosine is found; `top1View` is the fraction that find their own
    /// view, `top1Picture` the fraction that find a view of their own picture. Deterministic in
    /// (pictures, views, S, seed); independent of training randomness.
    public static func retrievalTop1(encoder: Dinov2Encoder, pictures: [RGBImage], views G: Int = 1000,
                                     seed: UInt64 = 0x5EA1_C0DE, batch: Int = 50) -> SSLRetrieval {
        let S = encoder.config.imageSize, N = pictures.count
        precondition(N >= 1 && G >= 2, "retrievalTop1: empty gallery")
        let D = encoder.config.hiddenSize
        let ph = Philox4x32(seed: SplitMix64.mix(seed, 0x4E7A1))
        var aug = SSLAugmentConfig()
        aug.brightness = 0.4; aug.contrast = 0.4; aug.saturation = 0.2; aug.hue = 0.05
        aug.jitterProb = 1; aug.greyProb = 0; aug.solarizeProb = 0
        // boxes and query draws, fixed up front
        var galleryBox = [CropBox](), draws = [[Double]]()
        for k in 0..<G {
            let pic = pictures[k % N]
            var r = SSLMultiCrop.Draws(ph.uniforms(stream: 0, start: k * 128, count: 128))
            if k < N {
                galleryBox.append(CropBox(x: 0, y: 0, w: Double(pic.width), h: Double(pic.height)))
            } else {
                galleryBox.append(boxWithin(CropBox(x: 0, y: 0, w: Double(pic.width), h: Double(pic.height)),
                                            scale: [0.5, 1], &r))
            }
            draws.append(Array(r.u[r.i...]))
        }
        func embed(_ make: (Int, UnsafeMutablePointer<Float>) -> Void) -> Tensor {
            let out = Tensor([G, D])
            var k0 = 0
            while k0 < G {
                let n = min(batch, G - k0)
                let px = Tensor(uninitialized: [n, 3, S, S])
                for j in 0..<n { make(k0 + j, px.data + j * 3 * S * S) }
                let tok = encoder.forward(encoder.normalize(pixels255: px), mode: .inference).token
                let (y, _) = SSLOps.l2Normalize(tok)
                (out.data + k0 * D).update(from: y.data, count: n * D)
                k0 += n
            }
            return out
        }
        var planeCache: (Int, [Float])? = nil
        func planes(_ i: Int) -> [Float] {
            if let c = planeCache, c.0 == i { return c.1 }
            let p = pictures[i].planarFloats(scale: 1, offset: 0)
            planeCache = (i, p)
            return p
        }
        let gallery = embed { k, dst in
            let pic = pictures[k % N]
            SSLMultiCrop.render(planes(k % N), pic.width, pic.height, galleryBox[k], size: S, into: dst)
        }
        let queries = embed { k, dst in
            let pic = pictures[k % N]
            var r = SSLMultiCrop.Draws(draws[k])
            let qb = boxWithin(galleryBox[k], scale: [0.4, 1], &r)
            SSLMultiCrop.render(planes(k % N), pic.width, pic.height, qb, size: S, into: dst)
            SSLMultiCrop.photometric(dst, size: S, aug: aug, blurProb: 0, solarizeProb: 0, &r)
        }
        // cosine similarities [G, G] = queries . gallery^T
        let sim = BLAS.matmul(queries, gallery, transB: true)
        var hitView = 0, hitPic = 0
        for q in 0..<G {
            let row = sim.data + q * G
            var best = 0
            for j in 1..<G where row[j] > row[best] { best = j }
            if best == q { hitView += 1 }
            if best % N == q % N { hitPic += 1 }
        }
        return SSLRetrieval(views: G, pictures: N, top1View: Double(hitView) / Double(G), top1Picture: Double(hitPic) / Double(G))
    }

    /// A random box inside `outer`: area fraction in `scale`, aspect in 3:4..4:3 of the outer
    /// box's (clamped to fit).
    static func boxWithin(_ outer: CropBox, scale: [Double], _ r: inout SSLMultiCrop.Draws) -> CropBox {
        let a = outer.w * outer.h * (scale[0] + (scale[1] - scale[0]) * r.next())
        let ar = (outer.w / outer.h) * exp(log(3.0 / 4) + (log(4.0 / 3) - log(3.0 / 4)) * r.next())
        let w = min(outer.w, (a * ar).squareRoot()), h = min(outer.h, (a / ar).squareRoot())
        return CropBox(x: outer.x + (outer.w - w) * r.next(), y: outer.y + (outer.h - h) * r.next(), w: w, h: h)
    }

    /// Training/validation pictures from an .rtds file (RepTokData's PackedDataset), shrunk so
    /// the long side is at most `longSide` (crops are then cheap; 4x the model resolution keeps
    /// full detail for every crop of area >= 1/16).
    public static func loadPictures(_ path: String, longSide: Int) throws -> [RGBImage] {
        let ds: PackedDataset
        do { ds = try PackedDataset(path: path) } catch { throw SSLError.data("\(path): \(error)") }
        guard ds.count > 0 else { throw SSLError.data("\(path) holds no pictures") }
        return (0..<ds.count).map { i in
            let img = RGBImage(width: ds.width(i), height: ds.height(i), pixels: Array(ds.pixels(i)))
            return SSLMultiCrop.shrink(img, longSide: longSide)
        }
    }
}

/// Result of `SSLTrainer.retrievalTop1`.
public struct SSLRetrieval: Codable, Equatable, Sendable {
    public var views: Int, pictures: Int
    public var top1View: Double, top1Picture: Double
    enum CodingKeys: String, CodingKey {
        case views, pictures, top1View = "top1_view", top1Picture = "top1_picture"
    }
}

/// What an SSL checkpoint records besides tensors (`reptok.ssl` metadata).
public struct SSLState: Codable, Equatable, Sendable {
    public var format = "reptok-ssl-checkpoint"
    public var version = 1
    public var config: SSLConfig
    public var step: Int
    public var wallSeconds: Double
    public var samples: Int
    public var threads: Int
    /// Training wall time at the last retrieval eval.
    public var lastEvalWall: Double
    /// Retrieval of the random initialization, and the latest one.
    public var baseline: SSLRetrieval?
    public var lastRetrieval: SSLRetrieval?

    enum CodingKeys: String, CodingKey {
        case format, version, config, step, wallSeconds = "wall_seconds", samples, threads, lastEvalWall = "last_eval_wall"
        case baseline, lastRetrieval = "last_retrieval"
    }
}

/// One step's numbers (a metrics.jsonl line).
public struct SSLStepMetrics: Codable, Sendable {
    public var step: Int
    public var loss: Double, koleo: Double
    public var lr: Float, wd: Float, momentum: Float, teacherTemp: Float
    public var gradNorm: Float
    /// Mean per-sample entropy of the teacher targets, and entropy of their batch mean (nats).
    public var teacherEntropy: Double, teacherMeanEntropy: Double
    public var seconds: Double
    public var wall: Double

    enum CodingKeys: String, CodingKey {
        case step, loss, koleo, lr, wd, momentum, teacherTemp = "teacher_temp", gradNorm = "grad_norm"
        case teacherEntropy = "teacher_entropy", teacherMeanEntropy = "teacher_mean_entropy", seconds, wall
    }
}

/// A DINO run: student and teacher encoders with heads, optimizer, center, data, loop.
public final class SSLSession {
    public private(set) var config: SSLConfig
    public let student: Dinov2Encoder, teacher: Dinov2Encoder
    public let studentHead: DINOHead, teacherHead: DINOHead
    public let optimizer: AdamW
    public let center: Tensor
    public private(set) var step = 0
    public private(set) var samples = 0
    /// Training wall time, all segments together.
    private(set) var clock = TrainingClock()
    private var lastEvalWall: Double = 0
    public private(set) var baseline: SSLRetrieval?
    public private(set) var lastRetrieval: SSLRetrieval?
    private var crops: SSLMultiCrop?
    private var valPictures: [RGBImage]?
    /// Pictures to train on (set by tests; else loaded from `config.data`).
    public var pictures: [RGBImage]?
    /// Where progress goes (stderr by default).
    public var log: (String) -> Void = { s in FileHandle.standardError.write(Data((s + "\n").utf8)) }

    public var checkpointPath: String? { config.out.map { $0 + "/checkpoint.safetensors" } }
    public var metricsPath: String? { config.out.map { $0 + "/metrics.jsonl" } }

    private static func build(_ c: SSLConfig) -> (Dinov2Encoder, DINOHead, Dinov2Encoder, DINOHead) {
        let e = c.encoderConfig
        let mk = { DINOHead(inDim: c.encWidth, hidden: c.headHidden, bottleneck: c.headBottleneck, prototypes: c.prototypes) }
        return (Dinov2Encoder(e), mk(), Dinov2Encoder(e), mk())
    }

    /// A fresh run: student initialized from the seed, teacher a copy of it.
    public init(config: SSLConfig) throws {
        try config.validate()
        self.config = config
        (student, studentHead, teacher, teacherHead) = SSLSession.build(config)
        student.initialize(seed: SplitMix64.mix(config.seed, 0xE1C0DE))
        studentHead.initialize(seed: SplitMix64.mix(config.seed, 0x4EAD))
        for (t, s) in zip(teacher.parameters + teacherHead.parameters, student.parameters + studentHead.parameters) {
            t.value.copy(from: s.value)
        }
        for p in teacher.parameters + teacherHead.parameters { p.trainable = false }
        optimizer = AdamW(student.parameters + studentHead.parameters, weightDecay: config.weightDecay)
        center = Tensor([config.prototypes])
    }

    /// A run restored from its checkpoint; run-control fields come from `cfg`.
    public init(checkpoint path: String, overriding cfg: SSLConfig?) throws {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw SSLError.checkpoint("cannot read \(path): \(error)") }
        guard let js = file.metadata["reptok.ssl"] else {
            throw SSLError.checkpoint("\(path) is not an SSL checkpoint (no reptok.ssl metadata)")
        }
        let state: SSLState
        do { state = try JSONDecoder().decode(SSLState.self, from: Data(js.utf8)) } catch {
            throw SSLError.checkpoint("\(path): bad reptok.ssl metadata: \(error)")
        }
        var c = state.config
        if let o = cfg { c.takeRunControl(from: o) }
        try c.validate()
        config = c
        (student, studentHead, teacher, teacherHead) = SSLSession.build(c)
        for p in teacher.parameters + teacherHead.parameters { p.trainable = false }
        optimizer = AdamW(student.parameters + studentHead.parameters, weightDecay: c.weightDecay)
        center = Tensor([c.prototypes])
        do {
            try ModelFile.load(teacher.parameters, prefix: SSLEncoderFile.prefix, from: file)
            try ModelFile.load(student.parameters, prefix: "student.", from: file)
            try ModelFile.load(studentHead.parameters, prefix: "student_head.", from: file)
            try ModelFile.load(teacherHead.parameters, prefix: "teacher_head.", from: file)
            try file.copyFloats("center", into: center.data, count: center.count)
            var m = [Tensor](), v = [Tensor]()
            for (name, p) in namedStudentParameters {
                let mt = Tensor(p.shape), vt = Tensor(p.shape)
                try file.copyFloats("adam.m." + name, into: mt.data, count: mt.count)
                try file.copyFloats("adam.v." + name, into: vt.data, count: vt.count)
                m.append(mt); v.append(vt)
            }
            optimizer.restore(step: state.step, m: m, v: v)
        } catch let e as SSLError {
            throw e
        } catch {
            throw SSLError.checkpoint("\(path): \(error)")
        }
        step = state.step
        samples = state.samples
        clock = TrainingClock(before: state.wallSeconds)
        lastEvalWall = state.lastEvalWall
        baseline = state.baseline
        lastRetrieval = state.lastRetrieval
        // (the engine's results do not depend on the thread count, so neither does the continuation)
    }

    var namedStudentParameters: [(String, Parameter)] {
        student.parameters.map { ("student." + $0.key, $0) } + studentHead.parameters.map { ("student_head." + $0.key, $0) }
    }

    // MARK: - Schedules (per step, as DINO's per-iteration schedules)

    func cosine(_ s: Int, from a: Float, to b: Float) -> Float {
        let p = config.steps > 0 ? min(1, Double(s) / Double(config.steps)) : 1
        return b + (a - b) * Float(0.5 * (1 + cos(Double.pi * p)))
    }
    public func learningRate(_ s: Int) -> Float {
        WarmupCosine(peakLR: config.peakLR, minLR: config.minLR, warmupSteps: config.warmup, totalSteps: config.steps).lr(s)
    }
    public func weightDecay(_ s: Int) -> Float { cosine(s, from: config.weightDecay, to: config.weightDecayEnd) }
    public func momentum(_ s: Int) -> Float { cosine(s, from: config.momentum, to: 1) }
    public func teacherTemp(_ s: Int) -> Float {
        guard s < config.teacherTempWarmup else { return config.teacherTemp }
        return config.teacherTempStart + (config.teacherTemp - config.teacherTempStart) * Float(s) / Float(config.teacherTempWarmup)
    }

    // MARK: - One step

    func prepareData() throws {
        if crops == nil {
            let pics = try pictures ?? SSLTrainer.loadPictures(config.data, longSide: 4 * config.aug.globalSize)
            crops = SSLMultiCrop(pictures: pics, aug: config.aug, seed: config.seed)
        }
        if valPictures == nil, let v = config.val {
            valPictures = try SSLTrainer.loadPictures(v, longSide: 4 * config.aug.globalSize)
        }
    }

    /// The student's loss on one step's crops against the teacher targets `tProbs`: the DINO
    /// loss over all (teacher global, student crop) pairs and KoLeo on the global-crop tokens.
    /// With `backward`, accumulates the student's gradients (encoder and head). Inputs are
    /// normalized pixels.
    public func studentLoss(globals gIn: Tensor, locals lIn: Tensor?, teacherProbs tProbs: Tensor,
                            backward: Bool) -> (dino: Double, koleo: Double) {
        let B = gIn.shape[0] / 2, L = lIn.map { $0.shape[0] / B } ?? 0, D = config.encWidth
        let sTok = student.forward(gIn, mode: backward ? .training : .inference).token
        let sLogits = studentHead.forward(sTok, mode: backward ? .training : .inference)
        var (loss, g) = SSLOps.dinoLoss(student: sLogits, views: [0, 1], teacher: tProbs, G: 2, B: B,
                                        temp: config.studentTemp, pairs: config.pairs)
        let dTok = backward ? studentHead.backward(g) : nil
        var koleo = 0.0
        if config.koleo > 0 {
            for v in 0..<2 {
                let rows = sTok.rows(v * B, (v + 1) * B, width: D)
                let (kl, kg) = SSLOps.koleo(rows, weight: config.koleo)
                koleo += kl
                if let d = dTok { Ops.addRows(d.data + v * B * D, kg.data, count: B * D) }
            }
        }
        if let d = dTok { student.backward(dToken: d) }
        if let lIn = lIn, L > 0 {
            let lTok = student.forward(lIn, mode: backward ? .training : .inference).token
            let lLogits = studentHead.forward(lTok, mode: backward ? .training : .inference)
            let (ll, lg) = SSLOps.dinoLoss(student: lLogits, views: Array(2..<(2 + L)), teacher: tProbs, G: 2, B: B,
                                           temp: config.studentTemp, pairs: config.pairs)
            loss += ll
            g = lg
            if backward { student.backward(dToken: studentHead.backward(g)) }
        }
        return (loss, koleo / 2)
    }

    /// Teacher targets for normalized global crops [2B, 3, S, S] at step `s`, and the teacher's logits.
    public func teacherTargets(globals gIn: Tensor, step s: Int) -> (probs: Tensor, logits: Tensor) {
        let tLogits = teacherHead.forward(teacher.forward(gIn, mode: .inference).token, mode: .inference)
        return (SSLOps.teacherProbs(tLogits, center: center, temp: teacherTemp(s)), tLogits)
    }

    /// Normalized crops of step `s`.
    public func inputs(step s: Int) throws -> (globals: Tensor, locals: Tensor?) {
        try prepareData()
        let (gl, lo) = crops!.batch(step: s, size: config.batch)
        return (student.normalize(pixels255: gl), lo.map { student.normalize(pixels255: $0) })
    }

    /// One optimizer step on the crops of step `step`.
    public func trainStep() throws -> SSLStepMetrics {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let B = config.batch
        let (gIn, lIn) = try inputs(step: step)
        let tt = teacherTemp(step)
        let (tProbs, tLogits) = teacherTargets(globals: gIn, step: step)
        for p in optimizer.params { p.zeroGrad() }
        let (loss, koleo) = studentLoss(globals: gIn, locals: lIn, teacherProbs: tProbs, backward: true)
        studentHead.release()
        // DINO freezes the last layer at first: no gradient, no update (no weight decay either)
        let frozen = step < config.freezeLastLayer ? studentHead.lastLayer.weight : nil
        frozen?.zeroGrad()
        let gn = optimizer.clipGradients(maxNorm: config.clip)
        let rate = learningRate(step), wd = weightDecay(step), m = momentum(step)
        if gn.isFinite {
            optimizer.weightDecay = wd
            let keep = frozen?.value.clone()
            optimizer.update(lr: rate)
            if let f = frozen, let k = keep { f.value.copy(from: k) }
            // teacher <- m teacher + (1 - m) student
            for (t, s) in zip(teacher.parameters + teacherHead.parameters, student.parameters + studentHead.parameters) {
                let tp = t.value.data, sp = s.value.data
                for i in 0..<t.value.count { tp[i] = m * tp[i] + (1 - m) * sp[i] }
            }
            SSLOps.updateCenter(center, teacherLogits: tLogits, momentum: config.centerMomentum)
        } else {
            log("rttrain ssl: step \(step): non-finite gradient norm, update skipped")
        }
        let ent = SSLOps.entropies(tProbs)
        step += 1
        samples += B
        let sec = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return SSLStepMetrics(step: step, loss: loss, koleo: koleo, lr: rate, wd: wd, momentum: m, teacherTemp: tt,
                              gradNorm: gn, teacherEntropy: ent.rowMean, teacherMeanEntropy: ent.ofMean,
                              seconds: sec, wall: clock.seconds)
    }

    // MARK: - Eval, checkpoints, export

    /// The retrieval figure of the teacher on the validation pictures (nil without --val).
    public func evaluate() throws -> SSLRetrieval? {
        try prepareData()
        guard let v = valPictures else { return nil }
        return SSLTrainer.retrievalTop1(encoder: teacher, pictures: v, views: config.evalViews)
    }

    public var state: SSLState {
        SSLState(config: config, step: step, wallSeconds: clock.seconds, samples: samples,
                 threads: Engine.threads, lastEvalWall: lastEvalWall, baseline: baseline, lastRetrieval: lastRetrieval)
    }

    /// Writes everything a resume needs, atomically. The teacher encoder is stored under
    /// `encoder.` with a `reptok.config`, so the checkpoint itself also works as `--encoder`.
    public func saveCheckpoint(to path: String) throws {
        var w = SafeTensorsWriter(metadata: [
            "reptok.ssl": try JSONText.encode(state),
            ModelFile.configKey: try ModelFile.configJSON(encoder: teacher.config, decoder: nil),
        ])
        func add(_ name: String, _ t: Tensor) throws {
            try w.add(name, shape: t.shape, values: UnsafeBufferPointer(t.buffer), as: .F32)
        }
        for p in teacher.parameters { try add(SSLEncoderFile.prefix + p.key, p.value) }
        for p in teacherHead.parameters { try add("teacher_head." + p.key, p.value) }
        for (name, p) in namedStudentParameters { try add(name, p.value) }
        precondition(optimizer.params.count == namedStudentParameters.count, "optimizer/parameter mismatch")
        for (i, (name, _)) in namedStudentParameters.enumerated() {
            try add("adam.m." + name, optimizer.m[i])
            try add("adam.v." + name, optimizer.v[i])
        }
        try add("center", center)
        try w.write(to: path)
    }

    /// The teacher encoder as an SSL encoder file (SSLEncoderFile), with an `ssl` record of the run.
    public func exportEncoder(to path: String) throws {
        let info: JSONValue = ["step": .integer(step), "wall_seconds": try JSONValue(encoding: clock.seconds.rounded()),
                               "config": try JSONValue(encoding: config)]
        try SSLEncoderFile.write(teacher, ssl: info, to: path)
    }

    // MARK: - The loop

    public typealias Outcome = TrainingLoop.Outcome

    /// Runs until `config.steps` (`finished`) or until a stop is requested (SIGINT, or
    /// `stopAfter` steps for tests), writing a final checkpoint either way. Retrieval evals run
    /// at the start of a fresh run (the random-init baseline), every `evalMinutes`, and at the end.
    public func train(stopAfter: Int? = nil) throws -> Outcome {
        try prepareData()
        let quiet = config.quiet
        let loop = try TrainingLoop(name: "rttrain ssl", step: step, clock: clock, itemsPerStep: config.batch, logEvery: config.logEvery,
                                    checkpointMinutes: config.checkpointMinutes, window: 30, quiet: quiet, log: log,
                                    runDir: config.out, checkpointPath: checkpointPath)
        func runEval(baseline: Bool) throws {
            let t0 = DispatchTime.now().uptimeNanoseconds
            guard let r = try evaluate() else { return }
            let sec = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            lastEvalWall = clock.seconds
            lastRetrieval = r
            if baseline { self.baseline = r }
            loop.record(try JSONText.string(["step": step, "eval": "retrieval", "baseline": baseline, "top1_view": r.top1View,
                                             "top1_picture": r.top1Picture, "views": r.views, "pictures": r.pictures,
                                             "eval_seconds": sec, "wall": clock.seconds]))
            loop.flush()
            if !quiet {
                loop.clearProgress()
                log(String(format: "rttrain ssl: step %d retrieval top-1 %.1f%% (own picture %.1f%%) over %d views of %d val pictures%@ [%.0f s]",
                           step, 100 * r.top1View, 100 * r.top1Picture, r.views, r.pictures,
                           baseline ? " (random init)" : "", sec))
            }
        }
        if step == 0 && config.steps > 0 { try runEval(baseline: true) }
        var smooth: Double? = nil
        return try loop.run(budget: .steps(config.steps), stopAfter: stopAfter, train: { total in
            let m = try trainStep()
            smooth = smooth.map { 0.95 * $0 + 0.05 * m.loss } ?? m.loss
            let sm = smooth!
            return TrainingLoop.StepReport(step: step, seconds: m.seconds, metrics: try JSONText.encode(m)) { p in
                String(format: "ssl step %d/%d  %.1f img/s  loss %.4f  koleo %.3f  H(t) %.2f/%.2f  lr %.2e  m %.4f  |g| %.2f  ETA %@",
                       p.step, p.total, p.perSecond, sm, m.koleo, m.teacherEntropy, m.teacherMeanEntropy, m.lr, m.momentum, m.gradNorm, p.eta)
            }
        }, checkpoint: {
            if let p = checkpointPath { try saveCheckpoint(to: p) }
        }, afterStep: { total in
            if step < total && clock.seconds - lastEvalWall >= config.evalMinutes * 60 { try runEval(baseline: false) }
        }, finish: {
            try runEval(baseline: false)
        })
    }
}
