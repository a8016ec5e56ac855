import Foundation
import RepTokCodec
import RepTokData
import RepTokEval
import RepTokFormat
import RepTokImage
import RepTokMetrics
import RepTokModels
import RepTokNN
import RepTokSafeTensors
import RepTokTensor

/// How to turn a trained tokenizer into a codec model file.
public struct ExportOptions: Sendable {
    public var out: String
    /// Store the network weights as F16 (the quantizer stays F32).
    public var fp16 = false
    /// Pictures whose tokens fit the quantizer (PCA, zstd dictionary); default: the run's data.
    public var trainData: String?
    /// Pictures that size the quantizer step; default: the run's --val, else val.rtds beside the data.
    public var valData: String?
    /// The whole .rtk record must fit in this many bytes at the default level...
    public var recordBytes = 128
    /// ...for this fraction of the validation pictures (1 = all of them).
    public var fitFraction = 1.0
    public var defaultLevel = 5
    /// Widen the quantizer step while the default level stays within this many dB of the
    /// unquantized token's validation PSNR (0: the finest step the byte budget allows).
    public var qualityTolerance = 0.1
    public var defaultSteps = 1
    public var sampler = "euler"
    /// Shown by rtinfo; "{minutes}" is replaced by the training time in whole minutes.
    public var description = ""
    public var bootstrap = false
    /// Laplace quantizers: the rate-distortion weights (squared steps per bit) each level's
    /// calibration tries for its encoder (0: plain rounding).
    public var rdoWeights: [Float] = [0, 0.1, 0.2, 0.35]
    /// Laplace quantizers: the number of per-picture step modes (factors 2^((i - M/2) / 4); 0:
    /// none). Kept only when the calibration predicts a gain at some level.
    public var stepModes = 8
    /// Laplace quantizers: raise the training pictures' residuals (the decoder's own error, which
    /// the calibration adds to the quantization error) by the measured gap between a same-size
    /// linear code's held-out and in-sample error (`LinearCode.overfitGap`).
    public var heldOutResiduals = true

    public init(out: String) { self.out = out }
}

/// Bytes of whole records at one level over the validation pictures.
public struct LevelBytes: Codable, Sendable {
    public var level: Int
    public var mean: Double
    public var max: Int
    public var min: Int
    /// Fraction of pictures whose record fits in the export's byte budget.
    public var withinBudget: Double

    enum CodingKeys: String, CodingKey { case level, mean, max, min, withinBudget = "within_budget" }
}

public struct ExportReport: Codable, Sendable {
    public var path: String
    public var fileBytes: Int
    public var fingerprint: String
    public var baseStep: Float
    public var baseStepInSigma: Float
    public var defaultLevel: Int
    public var dictionaryBytes: Int
    public var trainPictures: Int
    public var valPictures: Int
    public var recordBudget: Int
    /// Measured through the written file (CodecModel + Codec.encode).
    public var levels: [LevelBytes]
    /// PSNR (dB, model resolution) of the first validation picture after a full file round trip.
    public var roundTripPSNR: Double
    /// The base step the byte budget alone allows (the finest), and the validation PSNR of the
    /// unquantized tokens and of the default level at the chosen step (nil without the rule).
    public var budgetStep: Float
    public var unquantizedPSNR: Double?
    public var defaultLevelPSNR: Double?

    enum CodingKeys: String, CodingKey {
        case path, fileBytes = "file_bytes", fingerprint, baseStep = "base_step", baseStepInSigma = "base_step_in_sigma"
        case defaultLevel = "default_level", dictionaryBytes = "dictionary_bytes", trainPictures = "train_pictures"
        case valPictures = "val_pictures", recordBudget = "record_budget", levels, roundTripPSNR = "round_trip_psnr"
        case budgetStep = "budget_step", unquantizedPSNR = "unquantized_psnr", defaultLevelPSNR = "default_level_psnr"
    }
}

public enum Exporter {
    /// Exports the trainer's EMA weights (they replace its live weights: call after training).
    public static func export(_ trainer: TokenizerTrainer, options o: ExportOptions,
                              log: (String) -> Void = { _ in }) throws -> ExportReport {
        let model = trainer.model, cfg = trainer.config
        trainer.ema.copyToParameters()
        let weightType: SafeTensorsDType = o.fp16 ? .F16 : .F32
        let named: [(String, Tensor)] = model.namedParameters.map { ($0.0, $0.1.value) }
        if o.fp16 {
            // round the weights now, so tokens and the quantizer see what the file will hold
            var w = SafeTensorsWriter()
            for (k, t) in named { try w.add(k, shape: t.shape, values: UnsafeBufferPointer(t.buffer), as: .F16) }
            let f = try SafeTensorsFile(data: try w.serialize())
            for (k, t) in named { try f.copyFloats(k, into: t.data, count: t.count) }
        }
        let trainSet = try Pictures.open(o.trainData ?? cfg.data)
        let valPath = o.valData ?? cfg.val ?? defaultValPath(cfg.data)
        guard let vp = valPath, FileManager.default.fileExists(atPath: vp) else {
            throw TrainError.export("no validation data (give --val)")
        }
        let valSet = try Pictures.open(vp)
        let D = model.decoder.config.tokenDim, S = cfg.imageSize
        log("export: tokens of \(trainSet.count) training pictures")
        let trainTokens = try tokens(of: trainSet, model: model, size: S)
        let valTokens = try tokens(of: valSet, model: model, size: S)
        var valDims = [(Int, Int)]()
        for i in 0..<valSet.count { valDims.append((valSet.width(i), valSet.height(i))) }

        if model.adapter.layoutDim > 0 {
            return try exportLaplace(trainer, options: o, named: named, weightType: weightType, trainSet: trainSet,
                                     valSet: valSet, log: log)
        }
        let pca = Quantizer.fit(tokens: trainTokens, dim: D)
        let sigma1 = max(pca.sigma.first ?? 1, 1e-6)
        // the step: the smallest base step whose default-level records fit the budget
        func plain(_ base: Float) -> Quantizer {
            Quantizer(mean: pca.mean, rotation: pca.rotation, sigma: pca.sigma, dictionary: [], baseStep: base)
        }
        func quantizer(_ base: Float) -> Quantizer { plain(base).withDictionary(tokens: trainTokens) }
        func fits(_ q: Quantizer) throws -> Bool {
            let sizes = try recordSizes(q, tokens: valTokens, dims: valDims, level: o.defaultLevel)
            let within = sizes.filter { $0 <= o.recordBytes }.count
            return Double(within) >= o.fitFraction * Double(sizes.count) - 1e-9
        }
        var lo = log2(Double(sigma1) * 1e-3), hi = log2(Double(sigma1) * 20)
        guard try fits(quantizer(Float(exp2(hi)))) else {
            throw TrainError.export("even a step of 20 sigma does not fit \(o.recordBytes) bytes")
        }
        for _ in 0..<18 {
            let mid = (lo + hi) / 2
            if try fits(quantizer(Float(exp2(mid)))) { hi = mid } else { lo = mid }
        }
        let budgetStep = Float(exp2(hi))
        var base = budgetStep
        // No bytes the decoder cannot use: grow the step (by sqrt(2), one level) while the
        // default level's PSNR on the validation pictures stays within the tolerance of the
        // unquantized token's.
        var knee: (ceiling: Double, chosen: Double)?
        if o.qualityTolerance > 0 {
            let refs = (0..<valSet.count).map { Codec.modelView(Pictures.picture(valSet, $0), size: S) }
            let ceiling = try meanPSNR(model, tokens: valTokens, refs: refs, steps: o.defaultSteps, sampler: o.sampler)
            var chosen = try meanPSNR(model, tokens: quantized(plain(base), valTokens, level: o.defaultLevel), refs: refs,
                                  steps: o.defaultSteps, sampler: o.sampler)
            for _ in 0..<24 {
                let next = base * Float(2.0.squareRoot())
                let p = try meanPSNR(model, tokens: quantized(plain(next), valTokens, level: o.defaultLevel), refs: refs,
                                 steps: o.defaultSteps, sampler: o.sampler)
                if p < ceiling - o.qualityTolerance { break }
                base = next; chosen = p
            }
            knee = (ceiling, chosen)
            log(String(format: "export: unquantized PSNR %.3f dB; level %d at base step %.4g: %.3f dB", ceiling, o.defaultLevel, base, chosen))
        }
        let q = quantizer(base)
        log(String(format: "export: base step %.4g (%.3f sigma_1; the byte budget allows %.4g), dictionary %d bytes",
                   base, base / sigma1, budgetStep, q.dictionary.count))

        var codec = CodecConfig()
        codec.defaultLevel = o.defaultLevel
        codec.defaultSteps = o.defaultSteps
        codec.defaultSampler = o.sampler
        codec.baseStep = base
        try write(trainer, codec: codec, options: o, named: named, weightType: weightType, quantizer: q)

        var pics = [RGBImage]()
        for i in 0..<valSet.count { pics.append(Pictures.picture(valSet, i)) }
        return try verify(o.out, valPics: pics, size: S, recordBytes: o.recordBytes, baseStep: base, sigma1: sigma1,
                          trainPictures: trainSet.count, dictionaryBytes: q.dictionary.count, budgetStep: budgetStep,
                          knee: knee)
    }

    /// Writes the codec model file (CodecModelFile) of the trainer's weights and `q`, with the
    /// codec part completed from the options and the run's record under `training`.
    static func write(_ trainer: TokenizerTrainer, codec c: CodecConfig, options o: ExportOptions, named: [(String, Tensor)],
                      weightType: SafeTensorsDType, quantizer q: Quantizer) throws {
        let model = trainer.model
        var codec = c
        codec.bootstrap = o.bootstrap
        let st = trainer.state
        codec.description = o.description.replacingOccurrences(of: "{minutes}", with: String(Int((st.wallSeconds / 60).rounded())))
        let training = try JSONValue(encoding: trainer.config)
            .setting("steps", .integer(st.step))
            .setting("wall_seconds", try JSONValue(encoding: (st.wallSeconds * 10).rounded() / 10))
            .setting("samples", .integer(st.samples))
            .setting("threads", .integer(st.threads))
            .setting("weights", "ema")
        try CodecModelFile.write(to: o.out, encoder: trainer.encoderConfig, decoder: model.decoder.config, codec: codec,
                                 training: training, weights: named, frozenCLS: trainer.objective.frozenCLS, quantizer: q,
                                 weightType: weightType)
    }

    static func defaultValPath(_ data: String) -> String? {
        let dir = (data as NSString).deletingLastPathComponent
        let p = (dir.isEmpty ? "." : dir) + "/val.rtds"
        return p == data ? nil : p
    }

    /// Tokens after quantization at `level` (what a decoder gets from a record).
    static func quantized(_ q: Quantizer, _ tokens: [Float], level: Int) -> [Float] {
        let D = q.dim
        var out = [Float]()
        out.reserveCapacity(tokens.count)
        tokens.withUnsafeBufferPointer { tp in
            for i in 0..<tokens.count / D {
                let y = q.symbols(tp.baseAddress! + i * D, level: level).map { Float($0) * q.step(level: level) }
                out += q.unrotate(y)
            }
        }
        return out
    }

    /// Mean PSNR of decoding `tokens` (seed 0, as records are written) against `refs`: the
    /// evaluation's mean (QualityMean), +infinity when every decode is identical.
    static func meanPSNR(_ model: RepTokModel, tokens: [Float], refs: [RGBImage], steps: Int, sampler: String) throws -> Double {
        let D = model.decoder.config.tokenDim, S = model.decoder.config.imageSize
        let kind = SamplerKind(named: sampler)
        var psnrs = [Double]()
        for (i, ref) in refs.enumerated() {
            // batch 1 with the record's noise, exactly as Codec.decodeRaw
            let z = Tensor([1, D], Array(tokens[i * D..<(i + 1) * D]))
            let noise = Philox4x32(seed: 0).gaussian([1, 3, S, S])
            let x = FlowSampler(kind, steps: steps).sample(noise: noise) { x, t in model.decoder.predictVelocity(x, t: t, z: z) }
            psnrs.append(try Metrics.psnr(RGBImage(planar: x.array, width: S, height: S), ref))
        }
        return QualityMean.mean(psnrs) ?? .infinity
    }

    /// Latents z [n * D] of every picture's codec view (whole picture squashed to S x S).
    public static func tokens(of set: PackedDataset, model: RepTokModel, size S: Int, batch: Int = 32) throws -> [Float] {
        var out = [Float]()
        var i = 0
        while i < set.count {
            let n = min(batch, set.count - i)
            let px = Tensor(uninitialized: [n, 3, S, S])
            for b in 0..<n {
                let v = Codec.modelView(Pictures.picture(set, i + b), size: S).planarFloats(scale: 1, offset: 0)
                v.withUnsafeBufferPointer { (px.data + b * 3 * S * S).update(from: $0.baseAddress!, count: 3 * S * S) }
            }
            let z = TokenAdapter.latent(encoder: model.encoder, adapter: model.adapter, pixels255: px)
            out.append(contentsOf: z.array)
            i += n
        }
        return out
    }

    /// The squared error (0...255 units, summed) of the 1-step decode of seed-0 records of
    /// unquantized tokens [n, D] against views [n, 3 S^2] in 0...255: the encoder's `residual`.
    static func residuals(_ model: RepTokModel, tokens: [Float], views: [Float], count n: Int, size S: Int) -> [Double] {
        let D = model.decoder.config.tokenDim, d = 3 * S * S
        var out = [Double]()
        var r = 0
        while r < n {
            let b = min(16, n - r)
            let z = Tensor([b, D], Array(tokens[r * D..<(r + b) * D]))
            let x = model.decoder.infer(recordNoise(batch: b, size: S), t: [Float](repeating: 1, count: b), z: z)
            views.withUnsafeBufferPointer { vp in
                for j in 0..<b { out.append(Codec.squaredError8(decoderSpace: x.data + j * d, reference: vp.baseAddress! + (r + j) * d, count: d)) }
            }
            r += b
        }
        return out
    }

    /// Whole-record sizes (as Codec.encode writes them, seed 0, no name) at a level; with step
    /// modes, the encoder's choice needs each picture's `residuals`.
    static func recordSizes(_ q: Quantizer, tokens: [Float], dims: [(Int, Int)], level: Int, residuals: [Double]? = nil) throws -> [Int] {
        let D = q.dim
        return try tokens.withUnsafeBufferPointer { tp in
            try dims.enumerated().map { i, wh in
                let payload = try q.encode(tp.baseAddress! + i * D, level: level, residual: residuals?[i] ?? 0)
                return RTKRecord(fingerprint: 0, width: wh.0, height: wh.1, level: level, seed: 0, sampler: .euler,
                                 steps: 1, name: nil, payload: payload).serializedCount
            }
        }
    }
}

// MARK: - Sensitivity-weighted quantizer with static Laplacian coding

extension Exporter {
    /// Mean whole-record bytes the levels aim at, level 1 to 9 (geometric, 40 to 160 bytes).
    public static let levelTargets: [Double] = (0..<9).map { 40 * pow(4.0, Double($0) / 8) }

    /// Latents [n, D] of views [n, 3 S^2] in 0...255.
    static func latents(_ model: RepTokModel, views x: [Float], count n: Int, size S: Int, batch: Int = 32) -> [Float] {
        let d = 3 * S * S
        var out = [Float]()
        var i = 0
        while i < n {
            let b = min(batch, n - i)
            let px = Tensor([b, 3, S, S], Array(x[i * d..<(i + b) * d]))
            out += TokenAdapter.latent(encoder: model.encoder, adapter: model.adapter, pixels255: px).array
            i += b
        }
        return out
    }

    /// The mean over pictures of J^T J, J the Jacobian of the 1-step decode (pixels 0...255, the
    /// record's noise of seed 0) with respect to the token: one Gaussian probe r per picture
    /// gives J^T r, whose outer products average to J^T J.
    /// The input of a 1-step decode of `b` records of seed 0: the record's noise, once per picture.
    static func recordNoise(batch b: Int, size S: Int) -> Tensor {
        let d = 3 * S * S, noise1 = Philox4x32(seed: 0).gaussian([1, 3, S, S])
        let xt = Tensor(uninitialized: [b, 3, S, S])
        for r in 0..<b { (xt.data + r * d).update(from: noise1.data, count: d) }
        return xt
    }

    static func sensitivity(_ model: RepTokModel, tokens: [Float], count n: Int, batch: Int = 16) -> [Double] {
        let dec = model.decoder, D = dec.config.tokenDim, S = dec.config.imageSize
        var g = [Double](repeating: 0, count: D * D)
        var i = 0
        while i < n {
            let b = min(batch, n - i)
            let xt = recordNoise(batch: b, size: S)
            let z = Tensor([b, D], Array(tokens[i * D..<(i + b) * D]))
            _ = dec.forward(xt, t: [Float](repeating: 1, count: b), z: z, mode: .training)
            let probe = Philox4x32(seed: 0x5E45).gaussian([b, 3, S, S], stream: UInt32(i))
            for k in 0..<probe.count { probe.data[k] *= 127.5 }
            let (_, dz) = dec.backward(probe, needInput: false)
            for r in 0..<b {
                let v = dz.data + r * D
                for p in 0..<D { let a = Double(v[p]); if a == 0 { continue }; for q in 0..<D { g[p * D + q] += a * Double(v[q]) } }
            }
            i += b
        }
        for k in 0..<g.count { g[k] /= Double(n) }
        for p in dec.parameters { p.zeroGrad() }
        return g
    }

    /// The analysis/synthesis pair of the sensitivity-weighted PCA: with L = (G + eps I)^(1/2),
    /// the eigenvectors v_i of L Sigma L give coordinates y_i = v_i^T L (z - mean) that are
    /// uncorrelated and cost the same pixel error per unit, so one step for all of them spends
    /// bits where the decoder needs them (reverse water-filling; the deadzone of a coarse step
    /// zeroes the directions the decoder hardly sees).
    static func weightedTransform(tokens: [Float], count n: Int, dim D: Int, sensitivity g: [Double])
        -> (mean: [Float], analysis: [Float], synthesis: [Float], sigma: [Float]) {
        var mean = [Double](repeating: 0, count: D)
        for r in 0..<n { for j in 0..<D { mean[j] += Double(tokens[r * D + j]) } }
        for j in 0..<D { mean[j] /= Double(n) }
        var cov = [Double](repeating: 0, count: D * D)
        for r in 0..<n {
            let row = (0..<D).map { Double(tokens[r * D + $0]) - mean[$0] }
            for a in 0..<D { let x = row[a]; for b in 0..<D { cov[a * D + b] += x * row[b] } }
        }
        for k in 0..<cov.count { cov[k] /= Double(max(n - 1, 1)) }
        var trace = 0.0
        for a in 0..<D { trace += g[a * D + a] }
        let eps = 1e-4 * trace / Double(D)
        var ge = g
        for a in 0..<D { ge[a * D + a] += eps }
        let (gw, gv) = Frechet.eigen(ge, n: D)
        var l = [Double](repeating: 0, count: D * D), li = [Double](repeating: 0, count: D * D)
        for a in 0..<D {
            for b in 0..<D {
                var s = 0.0, si = 0.0
                for e in 0..<D {
                    let w = max(gw[e], eps), p = gv[a * D + e] * gv[b * D + e]
                    s += p * w.squareRoot(); si += p / w.squareRoot()
                }
                l[a * D + b] = s; li[a * D + b] = si
            }
        }
        func mul(_ x: [Double], _ y: [Double]) -> [Double] {
            var o = [Double](repeating: 0, count: D * D)
            for a in 0..<D { for e in 0..<D { let xa = x[a * D + e]; if xa == 0 { continue }; for b in 0..<D { o[a * D + b] += xa * y[e * D + b] } } }
            return o
        }
        var m = mul(mul(l, cov), l)
        for a in 0..<D { for b in (a + 1)..<max(a + 1, D) { let v = 0.5 * (m[a * D + b] + m[b * D + a]); m[a * D + b] = v; m[b * D + a] = v } }
        let (mw, mv) = Frechet.eigen(m, n: D)
        let order = (0..<D).sorted { mw[$0] > mw[$1] }
        var analysis = [Float](repeating: 0, count: D * D), synthesis = [Float](repeating: 0, count: D * D)
        var sigma = [Float](repeating: 0, count: D)
        for (i, e) in order.enumerated() {
            var big = 0.0, sign = 1.0
            for j in 0..<D where abs(mv[j * D + e]) > big { big = abs(mv[j * D + e]); sign = mv[j * D + e] < 0 ? -1 : 1 }
            for b in 0..<D {
                var a = 0.0, s = 0.0
                for j in 0..<D { let v = sign * mv[j * D + e]; a += v * l[j * D + b]; s += li[b * D + j] * v }
                analysis[i * D + b] = Float(a); synthesis[i * D + b] = Float(s)
            }
            sigma[i] = Float(max(mw[e], 0).squareRoot())
        }
        return (mean.map { Float($0) }, analysis, synthesis, sigma)
    }

    static func exportLaplace(_ trainer: TokenizerTrainer, options o: ExportOptions, named: [(String, Tensor)],
                              weightType: SafeTensorsDType, trainSet: PackedDataset, valSet: PackedDataset,
                              log: (String) -> Void) throws -> ExportReport {
        let model = trainer.model, cfg = trainer.config
        let D = model.decoder.config.tokenDim, S = cfg.imageSize
        let (views, n) = LinearCode.views(trainSet, size: S, flips: true)
        log("export: tokens of \(n) training views (pictures and mirror images)")
        let trainTokens = latents(model, views: views, count: n, size: S)
        log("export: decoder sensitivity (J^T J of the 1-step decode, \(n) probes)")
        let g = sensitivity(model, tokens: trainTokens, count: n)
        let t = weightedTransform(tokens: trainTokens, count: n, dim: D, sensitivity: g)
        var plain = Quantizer(mean: t.mean, rotation: t.analysis, sigma: t.sigma, dictionary: [], baseStep: 1,
                              synthesis: t.synthesis, entropy: .laplace, scale: [Float](repeating: 1, count: D))
        // Laplace scales: mean |y_i| over the training tokens
        var absSum = [Double](repeating: 0, count: D)
        var ys = [[Float]]()
        trainTokens.withUnsafeBufferPointer { tp in
            for r in 0..<n {
                let y = plain.rotate(tp.baseAddress! + r * D)
                for i in 0..<D { absSum[i] += Double(abs(y[i])) }
                if r % 2 == 0 { ys.append(y) }                              // the pictures themselves, for sizes
            }
        }
        let scale = absSum.map { Float(max($0 / Double(n), 1e-12)) }
        plain = Quantizer(mean: t.mean, rotation: t.analysis, sigma: t.sigma, dictionary: [], baseStep: 1,
                          synthesis: t.synthesis, entropy: .laplace, scale: scale)
        // level steps: mean whole-record bytes of the training pictures on the targets
        var dims = [(Int, Int)]()
        for i in 0..<trainSet.count { dims.append((trainSet.width(i), trainSet.height(i))) }
        // per level: the coded coordinate count k and the step whose records hit the level's mean
        // byte target on the training pictures with the least distortion in the weighted space
        // (squared error of the coded coordinates plus the energy of the dropped ones)
        // The decoder's own error on each training picture from its unquantized token (pixel
        // sum of squares): a picture's PSNR after quantization is predicted from it plus the
        // weighted-space error, which approximates the added pixel sum of squares (y is whitened
        // by J^T J), so the calibration maximizes the mean PSNR over pictures, as measured.
        let d = 3 * S * S
        // the pictures' (even rows: not the mirror images) tokens and views
        var evenTokens = [Float](), evenViews = [Float]()
        for r in stride(from: 0, to: n, by: 2) {
            evenTokens.append(contentsOf: trainTokens[r * D..<(r + 1) * D]); evenViews.append(contentsOf: views[r * d..<(r + 1) * d])
        }
        var residual = residuals(model, tokens: evenTokens, views: evenViews, count: ys.count, size: S)
        let meanPSNR = { (r: [Double]) in r.map { 10 * log10(255 * 255 * Double(d) / max($0, 1e-9)) }.reduce(0, +) / Double(r.count) }
        log(String(format: "export: the training pictures' 1-step decode of their unquantized tokens: %.2f dB mean PSNR", meanPSNR(residual)))
        if o.heldOutResiduals {
            // The training pictures flatter the model (its linear path is a PCA of them): raise
            // their residuals by what a linear code of the same size gains on the pictures it was
            // fitted on over pictures it was not (5-fold), so the calibration sees the residuals
            // of pictures the model has not seen, as the codec will.
            let m = max(model.adapter.layoutDim, 1)
            let gap = LinearCode.overfitGap(views: views, count: n, size: S, components: m)
            for i in residual.indices { residual[i] *= pow(10, gap / 10) }
            log(String(format: "export: a %d-direction linear code flatters the pictures it was fitted on by %.2f dB (5-fold); the calibration's residuals are raised by that (%.2f dB mean PSNR)",
                       m, gap, meanPSNR(residual)))
        }
        // Mean whole-record bytes and minus the mean predicted PSNR (lower is better) of the
        // training pictures under one level's settings, with step modes when given.
        func measure(_ step: Float, k: Int, rdo: Float, factor: Float = 1, modes: [Float]? = nil,
                     lambda: Float = 0) -> (bytes: Double, distortion: Double) {
            let q = plain.with(levelSteps: [Float](repeating: step, count: 9), coefficients: [Int](repeating: k, count: 9),
                               rdo: [Float](repeating: rdo, count: 9), scaleFactors: [Float](repeating: factor, count: 9))
                .with(stepModes: modes, lambda: [Float](repeating: lambda, count: 9))
            var total = 0, dist = 0.0
            for (pi, (y, wh)) in zip(ys, dims).enumerated() {
                let c = q.chooseMode(y, level: 1, residual: residual[pi])
                dist += -10 * log10(255 * 255 * Double(d) / max(residual[pi] + c.error, 1e-9))
                total += RTKRecord(fingerprint: 0, width: wh.0, height: wh.1, level: 1, seed: 0, sampler: .euler,
                                   steps: 1, name: nil, payload: c.bytes).serializedCount
            }
            return (Double(total) / Double(ys.count), dist / Double(ys.count))
        }
        let sigma1 = Double(max(t.sigma.first ?? 1, 1e-12))
        var kList = [8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 448, 512].filter { $0 < D }
        kList.append(D)
        // the step that hits `target` bytes for a setting (nil: none does)
        func stepFor(_ target: Double, k: Int, rdo: Float, factor: Float) -> (step: Float, bytes: Double, distortion: Double)? {
            var lo = log2(sigma1 * 1e-4), hi = log2(sigma1 * 50)                // bytes fall as the step grows
            guard measure(Float(exp2(hi)), k: k, rdo: rdo, factor: factor).bytes <= target else { return nil }
            for _ in 0..<22 {
                let mid = (lo + hi) / 2
                if measure(Float(exp2(mid)), k: k, rdo: rdo, factor: factor).bytes > target { lo = mid } else { hi = mid }
            }
            let m = measure(Float(exp2(hi)), k: k, rdo: rdo, factor: factor)
            return (Float(exp2(hi)), m.bytes, m.distortion)
        }
        var steps = [Float](), counts = [Int](), rdos = [Float](), factors = [Float]()
        for (li, target) in levelTargets.enumerated() {
            // 1. the coded count and RD weight, with the fitted scales as they are
            var best: (k: Int, step: Float, rdo: Float, factor: Float, bytes: Double, distortion: Double)?
            for rdo in o.rdoWeights {
                for k in kList {
                    guard let m = stepFor(target, k: k, rdo: rdo, factor: 1) else { continue }
                    if best == nil || m.distortion < best!.distortion { best = (k, m.step, rdo, 1, m.bytes, m.distortion) }
                }
            }
            guard var b = best else { throw TrainError.export("no step reaches \(target) bytes at level \(li + 1)") }
            // 2. the tables' scale factor, with the RD weight around its choice
            let k = b.k, w0 = b.rdo
            for rdo in [w0 - 0.05, w0, w0 + 0.05, w0 + 0.1, w0 + 0.15] where rdo >= 0 {
                for factor in stride(from: Float(0.6), through: 1.4001, by: 0.1) {
                    guard let m = stepFor(target, k: k, rdo: rdo, factor: factor) else { continue }
                    if m.distortion < b.distortion { b = (k, m.step, rdo, factor, m.bytes, m.distortion) }
                }
            }
            steps.append(b.step); counts.append(b.k); rdos.append(b.rdo); factors.append(b.factor)
            log(String(format: "export: level %d: %d coordinates, step %.4g (%.3f sigma_1), RD weight %.2f, scale factor %.1f: %.1f B on the training pictures (target %.1f), predicted %.2f dB",
                       li + 1, b.k, b.step, Double(b.step) / sigma1, b.rdo, b.factor, b.bytes, target, -b.distortion))
        }
        var q = plain.with(levelSteps: steps, coefficients: counts, rdo: rdos.contains { $0 > 0 } ? rdos : nil,
                           scaleFactors: factors.contains { $0 != 1 } ? factors : nil)
        // 3. per-picture step modes: for each level, the lambda (dB per payload bit) of the
        // encoder's mode choice that hits the same byte target, at a few scalings of the level's
        // step; kept when the predicted mean PSNR gains at some level
        if o.stepModes >= 2 {
            let modes = (0..<o.stepModes).map { Float(exp2(Double($0 - o.stepModes / 2) / 4)) }
            func measureModes(_ step: Float, level li: Int, lambda: Float) -> (bytes: Double, distortion: Double) {
                measure(step, k: counts[li], rdo: rdos[li], factor: factors[li], modes: modes, lambda: lambda)
            }
            // every level codes the mode symbol once modes are on, so they are on for all levels
            // or none: kept when the predicted mean PSNR summed over the levels gains
            var modeSteps = steps, lambdas = [Float](repeating: 0, count: 9), change = 0.0, reached = true
            for (li, target) in levelTargets.enumerated() {
                let before = -measure(steps[li], k: counts[li], rdo: rdos[li], factor: factors[li]).distortion
                var best: (step: Float, lambda: Float, bytes: Double, psnr: Double)?
                for scale in [Float(0.85), 1, 1.15] {
                    let st = steps[li] * scale
                    // bytes fall as lambda grows; log-bisection over [2^-17, 1] dB per bit
                    var lo = -17.0, hi = 0.0
                    guard measureModes(st, level: li, lambda: Float(exp2(lo))).bytes >= target,
                          measureModes(st, level: li, lambda: Float(exp2(hi))).bytes <= target else { continue }
                    for _ in 0..<16 {
                        let mid = (lo + hi) / 2
                        if measureModes(st, level: li, lambda: Float(exp2(mid))).bytes > target { lo = mid } else { hi = mid }
                    }
                    let m = measureModes(st, level: li, lambda: Float(exp2(hi)))
                    if best == nil || -m.distortion > best!.psnr { best = (st, Float(exp2(hi)), m.bytes, -m.distortion) }
                }
                guard let b = best else {
                    log("export: level \(li + 1): no step mode setting reaches \(target) B")
                    reached = false
                    break
                }
                log(String(format: "export: level %d with %d step modes: step %.4g, lambda %.4g dB/bit: %.1f B, predicted %.2f dB (%+.3f)",
                           li + 1, modes.count, b.step, b.lambda, b.bytes, b.psnr, b.psnr - before))
                modeSteps[li] = b.step; lambdas[li] = b.lambda; change += b.psnr - before
            }
            if reached && change > 0 {
                steps = modeSteps
                q = plain.with(levelSteps: steps, coefficients: counts, rdo: rdos.contains { $0 > 0 } ? rdos : nil,
                               scaleFactors: factors.contains { $0 != 1 } ? factors : nil).with(stepModes: modes, lambda: lambdas)
            } else {
                log("export: step modes not used (predicted change \(String(format: "%+.3f", change)) dB summed over the levels)")
            }
        }
        // default level: the highest whose records all fit the budget on the validation pictures
        var valPics = [RGBImage]()
        for i in 0..<valSet.count { valPics.append(Pictures.picture(valSet, i)) }
        let valTokens = try tokens(of: valSet, model: model, size: S)
        var valResiduals: [Double]? = nil
        if q.stepModes != nil {
            var vv = [Float]()
            for p in valPics { vv.append(contentsOf: Codec.modelView(p, size: S).planarFloats(scale: 1, offset: 0)) }
            valResiduals = residuals(model, tokens: valTokens, views: vv, count: valPics.count, size: S)
        }
        var defaultLevel = 1
        for L in Quantizer.levels {
            let sizes = try recordSizes(q, tokens: valTokens, dims: valPics.map { ($0.width, $0.height) }, level: L,
                                        residuals: valResiduals)
            if Double(sizes.filter { $0 <= o.recordBytes }.count) >= o.fitFraction * Double(sizes.count) - 1e-9 { defaultLevel = L }
        }
        log("export: default level \(defaultLevel) (the highest whose validation records fit \(o.recordBytes) B)")
        var codec = CodecConfig()
        codec.defaultLevel = defaultLevel
        codec.defaultSteps = o.defaultSteps
        codec.defaultSampler = o.sampler
        codec.baseStep = steps[4]
        codec.levelSteps = steps
        codec.levelCoefficients = counts
        codec.levelRDO = q.levelRDO
        codec.levelScale = q.levelScale
        codec.stepModes = q.stepModes
        codec.levelLambda = q.levelLambda
        codec.entropy = .laplace
        try write(trainer, codec: codec, options: o, named: named, weightType: weightType, quantizer: q)
        return try verify(o.out, valPics: valPics, size: S, recordBytes: o.recordBytes, baseStep: steps[4],
                          sigma1: Float(sigma1), trainPictures: trainSet.count, dictionaryBytes: 0, budgetStep: steps[4],
                          knee: nil)
    }

    /// Record sizes per level and a round trip, through the written file as the codec uses it.
    static func verify(_ path: String, valPics pics: [RGBImage], size S: Int, recordBytes: Int, baseStep: Float, sigma1: Float,
                       trainPictures: Int, dictionaryBytes: Int, budgetStep: Float,
                       knee: (ceiling: Double, chosen: Double)?) throws -> ExportReport {
        let cm = try CodecModel(path: path)
        var levels = [LevelBytes]()
        var sizes = [[Int]](repeating: [], count: 10)
        for p in pics {
            for L in Quantizer.levels {
                sizes[L].append(try Codec.encode(p, model: cm, options: EncodeOptions(level: L)).serializedCount)
            }
        }
        for L in Quantizer.levels {
            let s = sizes[L]
            levels.append(LevelBytes(level: L, mean: Double(s.reduce(0, +)) / Double(s.count), max: s.max()!, min: s.min()!,
                                     withinBudget: Double(s.filter { $0 <= recordBytes }.count) / Double(s.count)))
        }
        let rec = try Codec.encode(pics[0], model: cm)
        let parsed = try RTKRecord.parse(try rec.serialized())
        guard parsed.count == 1, parsed[0] == rec else { throw TrainError.export("record does not round-trip") }
        let back = try Codec.decode(parsed[0], model: cm, options: DecodeOptions(native: true))
        let psnr = try Metrics.psnr(back, Codec.modelView(pics[0], size: S))
        let fileBytes = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return ExportReport(path: path, fileBytes: fileBytes, fingerprint: cm.fingerprintHex, baseStep: baseStep,
                            baseStepInSigma: baseStep / sigma1, defaultLevel: cm.codec.defaultLevel,
                            dictionaryBytes: dictionaryBytes, trainPictures: trainPictures, valPictures: pics.count,
                            recordBudget: recordBytes, levels: levels, roundTripPSNR: psnr, budgetStep: budgetStep,
                            unquantizedPSNR: knee?.ceiling, defaultLevelPSNR: knee?.chosen)
    }
}
