import Foundation
import RepTokCodec
import RepTokData
import RepTokFormat
import RepTokImage
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
        let D = trainer.encoderConfig.hiddenSize, S = cfg.imageSize
        log("export: tokens of \(trainSet.count) training pictures")
        let trainTokens = try tokens(of: trainSet, model: model, size: S)
        let valTokens = try tokens(of: valSet, model: model, size: S)
        var valDims = [(Int, Int)]()
        for i in 0..<valSet.count { valDims.append((valSet.width(i), valSet.height(i))) }

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
            let ceiling = meanPSNR(model, tokens: valTokens, refs: refs, steps: o.defaultSteps, sampler: o.sampler)
            var chosen = meanPSNR(model, tokens: quantized(plain(base), valTokens, level: o.defaultLevel), refs: refs,
                                  steps: o.defaultSteps, sampler: o.sampler)
            for _ in 0..<24 {
                let next = base * Float(2.0.squareRoot())
                let p = meanPSNR(model, tokens: quantized(plain(next), valTokens, level: o.defaultLevel), refs: refs,
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
        codec.bootstrap = o.bootstrap
        let st = trainer.state
        codec.description = o.description.replacingOccurrences(of: "{minutes}", with: String(Int((st.wallSeconds / 60).rounded())))
        var training = try JSONText.object(cfg) as! [String: Any]
        training["steps"] = st.step
        training["wall_seconds"] = (st.wallSeconds * 10).rounded() / 10
        training["samples"] = st.samples
        training["threads"] = st.threads
        training["weights"] = "ema"
        let json = try ModelFile.configJSON(encoder: trainer.encoderConfig, decoder: model.decoder.config,
                                            extra: ["codec": try JSONText.object(codec), "training": training])
        var w = SafeTensorsWriter(metadata: ["reptok.config": json])
        for (k, t) in named { try w.add(k, shape: t.shape, values: UnsafeBufferPointer(t.buffer), as: weightType) }
        try w.add("frozen.cls_token", shape: model.frozenCLS.shape, values: UnsafeBufferPointer(model.frozenCLS.buffer), as: weightType)
        try w.add("quantizer.mean", shape: [D], values: q.mean, as: .F32)
        try w.add("quantizer.rotation", shape: [D, D], values: q.rotation, as: .F32)
        try w.add("quantizer.sigma", shape: [D], values: q.sigma, as: .F32)
        let dict = q.dictionary.isEmpty ? [UInt8(0)] : q.dictionary
        try w.add("quantizer.dictionary", shape: [dict.count], dtype: .U8, rawBytes: dict)
        let dir = (o.out as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try w.write(to: o.out)

        // verify through the file, as the codec will use it
        let cm = try CodecModel(path: o.out)
        var levels = [LevelBytes]()
        var pics = [RGBImage]()
        for i in 0..<valSet.count { pics.append(Pictures.picture(valSet, i)) }
        var sizes = [[Int]](repeating: [], count: 10)
        for p in pics {
            for L in Quantizer.levels {
                sizes[L].append(try Codec.encode(p, model: cm, options: EncodeOptions(level: L)).serializedCount)
            }
        }
        for L in Quantizer.levels {
            let s = sizes[L]
            levels.append(LevelBytes(level: L, mean: Double(s.reduce(0, +)) / Double(s.count), max: s.max()!, min: s.min()!,
                                     withinBudget: Double(s.filter { $0 <= o.recordBytes }.count) / Double(s.count)))
        }
        let rec = try Codec.encode(pics[0], model: cm)
        let parsed = try RTKRecord.parse(try rec.serialized())
        guard parsed.count == 1, parsed[0] == rec else { throw TrainError.export("record does not round-trip") }
        let back = try Codec.decode(parsed[0], model: cm, options: DecodeOptions(native: true))
        let psnr = Baselines.psnr(back, Codec.modelView(pics[0], size: S))
        let fileBytes = (try FileManager.default.attributesOfItem(atPath: o.out)[.size] as? Int) ?? 0
        return ExportReport(path: o.out, fileBytes: fileBytes, fingerprint: cm.fingerprintHex, baseStep: base,
                            baseStepInSigma: base / sigma1, defaultLevel: o.defaultLevel,
                            dictionaryBytes: q.dictionary.count, trainPictures: trainSet.count, valPictures: valSet.count,
                            recordBudget: o.recordBytes, levels: levels, roundTripPSNR: psnr, budgetStep: budgetStep,
                            unquantizedPSNR: knee?.ceiling, defaultLevelPSNR: knee?.chosen)
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

    /// Mean PSNR of decoding `tokens` (seed 0, as records are written) against `refs`.
    static func meanPSNR(_ model: RepTokModel, tokens: [Float], refs: [RGBImage], steps: Int, sampler: String) -> Double {
        let D = model.encoder.config.hiddenSize, S = model.decoder.config.imageSize
        let kind: SamplerKind = sampler == "heun" ? .heun : .euler
        var total = 0.0
        for (i, ref) in refs.enumerated() {
            // batch 1 with the record's noise, exactly as Codec.decodeRaw
            let z = Tensor([1, D], Array(tokens[i * D..<(i + 1) * D]))
            let noise = Philox4x32(seed: 0).gaussian([1, 3, S, S])
            let x = FlowSampler(kind, steps: steps).sample(noise: noise) { x, t in model.decoder.predictVelocity(x, t: t, z: z) }
            total += Baselines.psnr(RGBImage(planar: x.array, width: S, height: S), ref)
        }
        return total / Double(max(refs.count, 1))
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
            let z = model.adapter.forward(model.encoder.forward(model.encoder.normalize(pixels255: px)).token)
            out.append(contentsOf: z.array)
            i += n
        }
        return out
    }

    /// Whole-record sizes (as Codec.encode writes them, seed 0, no name) at a level.
    static func recordSizes(_ q: Quantizer, tokens: [Float], dims: [(Int, Int)], level: Int) throws -> [Int] {
        let D = q.dim
        return try tokens.withUnsafeBufferPointer { tp in
            try dims.enumerated().map { i, wh in
                let payload = try q.encode(tp.baseAddress! + i * D, level: level)
                return RTKRecord(fingerprint: 0, width: wh.0, height: wh.1, level: level, seed: 0, sampler: .euler,
                                 steps: 1, name: nil, payload: payload).serializedCount
            }
        }
    }
}
