import Foundation
import RepTokFormat
import RepTokModels
import RepTokNN
import RepTokSafeTensors
import RepTokTensor

/// The codec model file: what `rttrain export` writes (and reptok.export, python/reptok/export.py) and
/// CodecModel reads. Its keys, writer and reader:
/// - `encoder.*` (an SSL encoder file's part: SSLEncoderFile), `adapter.*`, `decoder.*`: the
///   network (docs/ARCHITECTURE.md), F32 or F16;
/// - `frozen.cls_token`: the frozen encoder's [CLS] input embedding (training only);
/// - the quantizer (Quantizer), F32: `quantizer.mean` [D], `quantizer.rotation` [D, D] (the
///   analysis), `quantizer.sigma` [D], and by its entropy coder either `quantizer.dictionary` [n]
///   (U8, zstd; one zero byte: none) or `quantizer.scale` [D] (laplace), with
///   `quantizer.synthesis` [D, D] when the analysis is not orthonormal;
/// - `reptok.config` = {format "reptok-model", version 1, `encoder`: EncoderConfig, `decoder`:
///   DecoderConfig, `codec`: CodecConfig, `training`: the run's record}.
/// The model's identity (`fingerprint`) covers the tensors a decode needs and the encoder, decoder
/// and codec parts, not `frozen.*` or `training`.
public enum CodecModelFile {
    public static let quantizerPrefix = "quantizer."
    /// Prefixes of the tensors a decode needs (and the fingerprint covers): the network's
    /// (RepTokModel's) and the quantizer's.
    public static let fingerprintPrefixes = [RepTokModel.encoderPrefix, RepTokModel.adapterPrefix, RepTokModel.decoderPrefix,
                                             quantizerPrefix]
    /// The `reptok.config` parts: the EncoderConfig (an SSL encoder file's), DecoderConfig,
    /// CodecConfig and the run's record.
    public static let encoderPart = SSLEncoderFile.configPart, decoderPart = "decoder", codecPart = "codec", trainingPart = "training"
    /// The `reptok.config` parts the fingerprint covers.
    public static let fingerprintParts = [encoderPart, decoderPart, codecPart]

    /// Tensor names outside the network's parameters.
    public enum Key {
        public static let mean = "quantizer.mean", rotation = "quantizer.rotation", sigma = "quantizer.sigma"
        public static let dictionary = "quantizer.dictionary", synthesis = "quantizer.synthesis", scale = "quantizer.scale"
        public static let frozenCLS = "frozen.cls_token"
        /// The layout path's weight (its shape gives the layout's size and count).
        public static let layoutWeight = RepTokModel.adapterPrefix + "layout.weight"
    }

    /// Writes a codec model file, atomically (creating its folder): the network's `weights`
    /// (names with their prefixes) and `frozenCLS` as `weightType`, the quantizer's tensors as F32.
    public static func write(to path: String, encoder: EncoderConfig, decoder: DecoderConfig, codec: CodecConfig,
                             training: JSONValue, weights: [(String, Tensor)], frozenCLS: Tensor, quantizer q: Quantizer,
                             weightType: SafeTensorsDType) throws {
        let json = try ModelFile.configJSON(encoder: encoder, decoder: decoder,
                                            extra: [codecPart: try JSONValue(encoding: codec), trainingPart: training])
        var w = SafeTensorsWriter(metadata: [ModelFile.configKey: json])
        for (k, t) in weights { try w.add(k, shape: t.shape, values: UnsafeBufferPointer(t.buffer), as: weightType) }
        try w.add(Key.frozenCLS, shape: frozenCLS.shape, values: UnsafeBufferPointer(frozenCLS.buffer), as: weightType)
        let D = q.dim
        try w.add(Key.mean, shape: [D], values: q.mean, as: .F32)
        try w.add(Key.rotation, shape: [D, D], values: q.rotation, as: .F32)
        try w.add(Key.sigma, shape: [D], values: q.sigma, as: .F32)
        if let s = q.synthesis { try w.add(Key.synthesis, shape: [D, D], values: s, as: .F32) }
        switch q.entropy {
        case .zstd:
            let dict = q.dictionary.isEmpty ? [UInt8(0)] : q.dictionary
            try w.add(Key.dictionary, shape: [dict.count], dtype: .U8, rawBytes: dict)
        case .laplace:
            try w.add(Key.scale, shape: [D], values: q.scale, as: .F32)
        }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try w.write(to: path)
    }

    /// What a codec model file holds, checked and loaded.
    public typealias Contents = (encoder: Dinov2Encoder, adapter: TokenAdapter, decoder: FlowDecoder, quantizer: Quantizer,
                                 codec: CodecConfig, fingerprint: UInt64)

    /// Reads and checks a codec model file.
    public static func read(path: String) throws -> Contents {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch {
            throw CodecError.model("cannot read model \(path): \(error)")
        }
        guard let json = file.metadata[ModelFile.configKey] else {
            throw CodecError.model("\(path) is not a reptok model (no reptok.config metadata)")
        }
        let encoder: Dinov2Encoder, adapter: TokenAdapter, decoder: FlowDecoder, codec: CodecConfig, quantizer: Quantizer
        do {
            let ecfg = try ModelFile.part(EncoderConfig.self, encoderPart, in: json)
            let dcfg = try ModelFile.part(DecoderConfig.self, decoderPart, in: json)
            codec = try ModelFile.part(CodecConfig.self, codecPart, in: json)
            try ecfg.validate(); try dcfg.validate()
            let layout = try TokenAdapter.layoutShape(weightShape: file.contains(Key.layoutWeight) ? try file.info(Key.layoutWeight).shape : nil)
            guard dcfg.tokenDim == ecfg.hiddenSize + layout.dim else {
                throw ModelError.invalidConfig("decoder token_dim \(dcfg.tokenDim) != encoder hidden_size \(ecfg.hiddenSize) + layout \(layout.dim)")
            }
            guard layout.dim == 0 || ecfg.imageSize % layout.size == 0 else {
                throw ModelError.invalidConfig("layout size \(layout.size) does not divide the image size \(ecfg.imageSize)")
            }
            guard ecfg.imageSize == dcfg.imageSize else { throw ModelError.invalidConfig("encoder and decoder image sizes differ") }
            encoder = Dinov2Encoder(ecfg)
            adapter = TokenAdapter(dim: ecfg.hiddenSize, layoutDim: layout.dim, layoutSize: layout.size)
            decoder = FlowDecoder(dcfg)
            try ModelFile.load(encoder.parameters, prefix: RepTokModel.encoderPrefix, from: file)
            try ModelFile.load(adapter.parameters, prefix: RepTokModel.adapterPrefix, from: file)
            try ModelFile.load(decoder.parameters, prefix: RepTokModel.decoderPrefix, from: file)
            let D = dcfg.tokenDim
            let mean = try file.floats(Key.mean), rot = try file.floats(Key.rotation)
            let sigma = try file.floats(Key.sigma)
            guard mean.count == D, rot.count == D * D, sigma.count == D else {
                throw ModelError.invalidConfig("quantizer tensors do not match token size \(D)")
            }
            let dict = file.contains(Key.dictionary) ? try file.rawBytes(Key.dictionary) : []
            let synthesis = file.contains(Key.synthesis) ? try file.floats(Key.synthesis) : nil
            let scale = file.contains(Key.scale) ? try file.floats(Key.scale) : []
            guard synthesis == nil || synthesis!.count == D * D else {
                throw ModelError.invalidConfig("\(Key.synthesis) does not match token size \(D)")
            }
            if codec.entropy == .laplace {
                guard scale.count == D, scale.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                    throw ModelError.invalidConfig("\(Key.scale) must hold \(D) positive scales")
                }
            }
            if let ls = codec.levelSteps {
                guard ls.count == Quantizer.levels.count, ls.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                    throw ModelError.invalidConfig("level_steps must be 9 positive steps")
                }
            }
            if let lk = codec.levelCoefficients {
                guard lk.count == Quantizer.levels.count, lk.allSatisfy({ (0...D).contains($0) }) else {
                    throw ModelError.invalidConfig("level_coefficients must be 9 counts in 0-\(D)")
                }
            }
            if let r = codec.levelRDO {
                guard r.count == Quantizer.levels.count, r.allSatisfy({ $0 >= 0 && $0.isFinite }), codec.entropy == .laplace else {
                    throw ModelError.invalidConfig("level_rdo must be 9 weights >= 0, with entropy laplace")
                }
            }
            if let f = codec.levelScale {
                guard f.count == Quantizer.levels.count, f.allSatisfy({ $0 > 0 && $0.isFinite }), codec.entropy == .laplace else {
                    throw ModelError.invalidConfig("level_scale must be 9 factors > 0, with entropy laplace")
                }
            }
            if let m = codec.stepModes {
                guard (2...Quantizer.maxStepModes).contains(m.count), m.allSatisfy({ $0 > 0 && $0.isFinite }), codec.entropy == .laplace else {
                    throw ModelError.invalidConfig("step_modes must be 2-\(Quantizer.maxStepModes) factors > 0, with entropy laplace")
                }
            }
            if let l = codec.levelLambda {
                guard l.count == Quantizer.levels.count, l.allSatisfy({ $0 >= 0 && $0.isFinite }), codec.stepModes != nil else {
                    throw ModelError.invalidConfig("level_lambda must be 9 weights >= 0, with step_modes")
                }
            }
            quantizer = Quantizer(mean: mean, rotation: rot, sigma: sigma, dictionary: dict.count > 1 ? dict : [],
                                  baseStep: codec.baseStep, synthesis: synthesis, levelSteps: codec.levelSteps,
                                  levelCoefficients: codec.levelCoefficients, levelRDO: codec.levelRDO, levelScale: codec.levelScale,
                                  entropy: codec.entropy, scale: scale, stepModes: codec.stepModes, levelLambda: codec.levelLambda)
            guard Quantizer.levels.contains(codec.defaultLevel), RTKFormat.steps.contains(codec.defaultSteps),
                  SamplerKind(rawValue: codec.defaultSampler) != nil else {
                throw ModelError.invalidConfig("codec defaults out of range")
            }
        } catch let e as CodecError {
            throw e
        } catch {
            throw CodecError.model("\(path): \(error)")
        }
        return (encoder, adapter, decoder, quantizer, codec, try fingerprint(of: file))
    }

    /// The model's identity: ModelFile.fingerprint over the tensors under `fingerprintPrefixes`
    /// and the `fingerprintParts` of the config (Man/rtk.5 MODEL FINGERPRINTS).
    public static func fingerprint(of file: SafeTensorsFile) throws -> UInt64 {
        try ModelFile.fingerprint(of: file, prefixes: fingerprintPrefixes, configParts: fingerprintParts)
    }
}
