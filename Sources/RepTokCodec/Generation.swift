import Foundation
import RepTokFormat
import RepTokModels
import RepTokSafeTensors
import RepTokTensor

/// A token generator file (what `rttrain generator` exports): the flow model over one codec
/// model's tokens, with the token standardization it was trained in.
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
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw CodecError.model("cannot read generator \(path): \(error)") }
        guard let cj = file.metadata["reptok.config"],
              let obj = try? JSONSerialization.jsonObject(with: Data(cj.utf8)) as? [String: Any],
              obj["format"] as? String == "reptok-generator", let fp = obj["codec_model"] as? String else {
            throw CodecError.model("\(path) is not a reptok generator file")
        }
        let cfg: GeneratorConfig
        do {
            cfg = try ModelFile.part(GeneratorConfig.self, "generator", in: cj)
            try cfg.validate()
        } catch { throw CodecError.model("\(path): \(error)") }
        generator = TokenGenerator(cfg)
        do {
            try ModelFile.load(generator.parameters, prefix: "generator.", from: file)
            let m = try ModelFile.tensor("normalization.mean", in: file), s = try ModelFile.tensor("normalization.std", in: file)
            guard m.count == cfg.tokenDim, s.count == 1 || s.count == cfg.tokenDim, s.array.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw CodecError.model("\(path): bad normalization tensors")
            }
            mean = m.array; std = s.array
        } catch let e as CodecError { throw e } catch { throw CodecError.model("\(path): \(error)") }
        generator.packForInference()  // loaded for sampling only: its weights never change
        codecModel = fp
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
