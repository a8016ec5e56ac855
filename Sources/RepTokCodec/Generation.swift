import Foundation
import RepTokFormat
import RepTokModels
import RepTokSafeTensors
import RepTokTensor

/// The token generator file: what `rttrain generator` exports and rtgen reads. Its keys, writer
/// and reader:
/// - `generator.*`: the flow model's weights (TokenGenerator), F32 or F16;
/// - `normalization.mean` [D] and `normalization.std` [1] or [D] (F32): the standardization its
///   tokens were trained in (u = (z - mean) / std);
/// - `reptok.config` = {format "reptok-generator", version 1, `generator`: GeneratorConfig,
///   `codec_model`: the fingerprint (16 hex digits) of the codec model whose tokens it generates,
///   `training`: the run's record}.
public enum GeneratorFile {
    public static let format = "reptok-generator"
    public static let prefix = "generator.", meanKey = "normalization.mean", stdKey = "normalization.std"
    /// The `reptok.config` part holding the GeneratorConfig (also in the trainer's checkpoints).
    public static let configPart = "generator"

    /// Writes a generator file, atomically.
    public static func write(_ generator: TokenGenerator, mean: [Float], std: [Float], codecModel: String,
                             training: JSONValue, to path: String, fp16: Bool = false) throws {
        let meta: JSONValue = ["format": .string(format), "version": 1, configPart: try JSONValue(encoding: generator.config),
                               "codec_model": .string(codecModel), "training": training]
        var w = SafeTensorsWriter(metadata: [ModelFile.configKey: meta.text()])
        for p in generator.parameters {
            try w.add(prefix + p.key, shape: p.shape, values: UnsafeBufferPointer(p.value.buffer), as: fp16 ? .F16 : .F32)
        }
        try w.add(meanKey, shape: [mean.count], values: mean, as: .F32)
        try w.add(stdKey, shape: [std.count], values: std, as: .F32)
        try w.write(to: path)
    }

    /// What a generator file holds, checked and loaded.
    public typealias Contents = (generator: TokenGenerator, mean: [Float], std: [Float], codecModel: String)

    /// Reads and checks a generator file.
    public static func read(path: String) throws -> Contents {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw CodecError.model("cannot read generator \(path): \(error)") }
        guard let cj = file.metadata[ModelFile.configKey], let obj = try? JSONValue.parse(cj),
              obj["format"] == .string(format), case let .string(fp)? = obj["codec_model"] else {
            throw CodecError.model("\(path) is not a reptok generator file")
        }
        let cfg: GeneratorConfig
        do {
            cfg = try ModelFile.part(GeneratorConfig.self, configPart, in: cj)
            try cfg.validate()
        } catch { throw CodecError.model("\(path): \(error)") }
        let generator = TokenGenerator(cfg)
        do {
            try ModelFile.load(generator.parameters, prefix: prefix, from: file)
            let m = try ModelFile.tensor(meanKey, in: file), s = try ModelFile.tensor(stdKey, in: file)
            guard m.count == cfg.tokenDim, s.count == 1 || s.count == cfg.tokenDim, s.array.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw CodecError.model("\(path): bad normalization tensors")
            }
            return (generator, m.array, s.array, fp)
        } catch let e as CodecError { throw e } catch { throw CodecError.model("\(path): \(error)") }
    }
}

/// A loaded token generator file (GeneratorFile): the flow model over one codec model's tokens,
/// with the token standardization it was trained in.
public final class GeneratorModel: @unchecked Sendable {
    public let path: String
    public let generator: TokenGenerator
    public let mean: [Float]
    /// One scalar std, or one per token dimension.
    public let std: [Float]
    /// Fingerprint (16 hex digits) of the codec model whose tokens it generates.
    public let codecModel: String
    public var config: GeneratorConfig { generator.config }

    public init(path: String) throws {
        self.path = path
        let file = try GeneratorFile.read(path: path)
        generator = file.generator; mean = file.mean; std = file.std; codecModel = file.codecModel
        generator.packForInference()  // loaded for sampling only: its weights never change
    }

    /// The generator shipped beside the programs (`Models/generator.safetensors`), if any.
    public static func bundledPath() -> String? { CodecModel.bundledModelPath("generator") }

    /// Class index of a name (nil: unknown).
    public func classIndex(_ name: String) -> Int? { config.classes.firstIndex(of: name) }

    /// Samples one token per label, sample i from the noise of Philox(seed, i) so that a sample
    /// does not depend on how many others are drawn with it. Euler from t = 1 to 0 in `steps`
    /// steps; classifier-free guidance `cfg` on t in `interval`. Returns [B, D] codec tokens.
    public func sample(labels: [Int], seed: UInt64, firstIndex: Int = 0, steps: Int, cfg: Float,
                       interval: ClosedRange<Float>) -> Tensor {
        let B = labels.count, D = config.tokenDim
        let noise = Tensor(uninitialized: [B, D])
        for b in 0..<B {
            let n = Philox4x32(seed: GeneratorModel.sampleKey(seed, firstIndex + b)).gaussian([1, D])
            (noise.data + b * D).update(from: n.data, count: D)
        }
        let u = FlowSampler(.euler, steps: steps).sample(noise: noise) { x, t in
            generator.guidedVelocity(x, t: t, labels: labels, scale: cfg, interval: interval)
        }
        for b in 0..<B { for d in 0..<D { u.data[b * D + d] = u.data[b * D + d] * std[std.count == 1 ? 0 : d] + mean[d] } }
        return u
    }

    /// The Philox key of sample `i`: SplitMix64's output function of the generator's (seed, i)
    /// input with a constant flipped in before it.
    static func sampleKey(_ seed: UInt64, _ i: Int) -> UInt64 {
        SplitMix64.finalize((seed &+ SplitMix64.gamma &* (UInt64(i) &+ 1)) ^ 0x6E4E_5A3D)
    }
}

extension Codec {
    /// A record of a latent token (no source image: its size is the model resolution). With step
    /// modes the token's own decode is the picture, so its residual is 0 and the encoder weighs
    /// the quantization error alone.
    public static func record(latent z: UnsafePointer<Float>, model: CodecModel, level: Int, seed: UInt64 = 0,
                              name: String? = nil) throws -> RTKRecord {
        guard Quantizer.levels.contains(level) else { throw CodecError.badLevel(level) }
        return RTKRecord(fingerprint: model.fingerprint, width: model.imageSize, height: model.imageSize, level: level,
                         seed: seed, sampler: model.codec.sampler, steps: model.codec.defaultSteps, name: name,
                         payload: try model.quantizer.encode(z, level: level))
    }
}
