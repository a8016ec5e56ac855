import Foundation
import RepTokFormat
import RepTokModels
import RepTokNN
import RepTokSafeTensors
import RepTokTensor

/// Codec settings stored in a model file's `reptok.config` under `codec`.
public struct CodecConfig: Codable, Equatable, Sendable {
    /// Quality level used when -q is not given (files <= 128 bytes for the default model).
    public var defaultLevel: Int = 5
    public var defaultSteps: Int = 1
    public var defaultSampler: String = "euler"
    /// A short description shown by rtinfo and --version.
    public var description: String = ""
    /// True for the bootstrap model shipped before the trained one.
    public var bootstrap: Bool = false
    /// Quantizer step at level 5 (absolute units of the rotated token coordinates).
    public var baseStep: Float = 1
    /// The nine level steps (nil: from `baseStep`). Written only when set.
    public var levelSteps: [Float]?
    /// How many leading coordinates each level codes (nil: all). Written only when set.
    public var levelCoefficients: [Int]?
    /// Encoder only: the rate-distortion weight of each level (Quantizer.levelRDO). Written only when set.
    public var levelRDO: [Float]?
    /// Per level, a factor on the Laplace scales of its tables (Quantizer.levelScale). Written only when set.
    public var levelScale: [Float]?
    /// Step factors of the per-picture step modes (Quantizer.stepModes). Written only when set.
    public var stepModes: [Float]?
    /// Encoder only: the dB per payload bit of each level's mode choice (Quantizer.levelLambda).
    /// Written only when set.
    public var levelLambda: [Float]?
    /// The payload's entropy coder (Quantizer.Entropy). Written only when not zstd, so the
    /// configs (and fingerprints) of the first models are what they were.
    public var entropy: Quantizer.Entropy = .zstd

    public init() {}

    enum CodingKeys: String, CodingKey {
        case defaultLevel = "default_level", defaultSteps = "default_steps", defaultSampler = "default_sampler"
        case description, bootstrap, baseStep = "base_step", levelSteps = "level_steps", levelCoefficients = "level_coefficients", levelRDO = "level_rdo", levelScale = "level_scale", entropy
        case stepModes = "step_modes", levelLambda = "level_lambda"
    }

    public func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(defaultLevel, forKey: .defaultLevel); try c.encode(defaultSteps, forKey: .defaultSteps)
        try c.encode(defaultSampler, forKey: .defaultSampler); try c.encode(description, forKey: .description)
        try c.encode(bootstrap, forKey: .bootstrap); try c.encode(baseStep, forKey: .baseStep)
        if let s = levelSteps { try c.encode(s, forKey: .levelSteps) }
        if let k = levelCoefficients { try c.encode(k, forKey: .levelCoefficients) }
        if let r = levelRDO { try c.encode(r, forKey: .levelRDO) }
        if let f = levelScale { try c.encode(f, forKey: .levelScale) }
        if entropy != .zstd { try c.encode(entropy, forKey: .entropy) }
        if let m = stepModes { try c.encode(m, forKey: .stepModes) }
        if let l = levelLambda { try c.encode(l, forKey: .levelLambda) }
    }

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        defaultLevel = try c.decodeIfPresent(Int.self, forKey: .defaultLevel) ?? 5
        defaultSteps = try c.decodeIfPresent(Int.self, forKey: .defaultSteps) ?? 1
        defaultSampler = try c.decodeIfPresent(String.self, forKey: .defaultSampler) ?? "euler"
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
        bootstrap = try c.decodeIfPresent(Bool.self, forKey: .bootstrap) ?? false
        baseStep = try c.decodeIfPresent(Float.self, forKey: .baseStep) ?? 1
        levelSteps = try c.decodeIfPresent([Float].self, forKey: .levelSteps)
        levelCoefficients = try c.decodeIfPresent([Int].self, forKey: .levelCoefficients)
        levelRDO = try c.decodeIfPresent([Float].self, forKey: .levelRDO)
        levelScale = try c.decodeIfPresent([Float].self, forKey: .levelScale)
        entropy = try c.decodeIfPresent(Quantizer.Entropy.self, forKey: .entropy) ?? .zstd
        stepModes = try c.decodeIfPresent([Float].self, forKey: .stepModes)
        levelLambda = try c.decodeIfPresent([Float].self, forKey: .levelLambda)
    }
}

extension CodecConfig {
    /// `defaultSampler`, typed (kept a string in the config, whose JSON bytes the fingerprint hashes).
    public var sampler: RTKSampler { RTKSampler(SamplerKind(named: defaultSampler)) }
}

extension RTKSampler {
    /// The record's id of a flow sampler.
    public init(_ kind: SamplerKind) {
        switch kind {
        case .euler: self = .euler
        case .heun: self = .heun
        }
    }
}

extension SamplerKind {
    /// The flow sampler a record names.
    public init(_ sampler: RTKSampler) {
        switch sampler {
        case .euler: self = .euler
        case .heun: self = .heun
        }
    }
}

/// A loaded codec model: encoder token path, adapter, decoder and quantizer, identified by a
/// 64-bit fingerprint of exactly those tensors and their configs.
public final class CodecModel: @unchecked Sendable {
    public let path: String
    public let encoder: Dinov2Encoder
    public let adapter: TokenAdapter
    public let decoder: FlowDecoder
    public let quantizer: Quantizer
    public let codec: CodecConfig
    public let fingerprint: UInt64
    public var imageSize: Int { decoder.config.imageSize }

    /// Prefixes whose tensors a decode needs (and the fingerprint covers).
    public static let fingerprintPrefixes = ["encoder.", "adapter.", "decoder.", "quantizer."]

    public init(path: String) throws {
        self.path = path
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch {
            throw CodecError.model("cannot read model \(path): \(error)")
        }
        guard let json = file.metadata["reptok.config"] else {
            throw CodecError.model("\(path) is not a reptok model (no reptok.config metadata)")
        }
        do {
            let ecfg = try ModelFile.part(EncoderConfig.self, "encoder", in: json)
            let dcfg = try ModelFile.part(DecoderConfig.self, "decoder", in: json)
            codec = try ModelFile.part(CodecConfig.self, "codec", in: json)
            try ecfg.validate(); try dcfg.validate()
            let layout = try TokenAdapter.layoutShape(weightShape: file.contains("adapter.layout.weight") ? try file.info("adapter.layout.weight").shape : nil)
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
            try ModelFile.load(encoder.parameters, prefix: "encoder.", from: file)
            try ModelFile.load(adapter.parameters, prefix: "adapter.", from: file)
            try ModelFile.load(decoder.parameters, prefix: "decoder.", from: file)
            let D = dcfg.tokenDim
            let mean = try file.floats("quantizer.mean"), rot = try file.floats("quantizer.rotation")
            let sigma = try file.floats("quantizer.sigma")
            guard mean.count == D, rot.count == D * D, sigma.count == D else {
                throw ModelError.invalidConfig("quantizer tensors do not match token size \(D)")
            }
            let dict = file.contains("quantizer.dictionary") ? try file.rawBytes("quantizer.dictionary") : []
            let synthesis = file.contains("quantizer.synthesis") ? try file.floats("quantizer.synthesis") : nil
            let scale = file.contains("quantizer.scale") ? try file.floats("quantizer.scale") : []
            guard synthesis == nil || synthesis!.count == D * D else {
                throw ModelError.invalidConfig("quantizer.synthesis does not match token size \(D)")
            }
            if codec.entropy == .laplace {
                guard scale.count == D, scale.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                    throw ModelError.invalidConfig("quantizer.scale must hold \(D) positive scales")
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
        fingerprint = try CodecModel.fingerprint(of: file)
        // Loaded for coding only: the weights never change, so every product takes a pack.
        encoder.packForInference(); adapter.packForInference(); decoder.packForInference()
    }

    /// FNV-1a 64 over, in key order, every tensor under the decode prefixes (name, dtype, shape,
    /// raw bytes) followed by the encoder, decoder and codec parts of the config.
    public static func fingerprint(of file: SafeTensorsFile) throws -> UInt64 {
        try ModelFile.fingerprint(of: file, prefixes: fingerprintPrefixes, configParts: ["encoder", "decoder", "codec"])
    }

    public var fingerprintHex: String { String(format: "%016llx", fingerprint) }

    /// The model shipped with the package (resource `Models/default.safetensors`).
    public static func defaultModelPath() -> String? { bundledModelPath("default") }

    /// A file `Models/NAME.safetensors` shipped with the package: `default` (the codec model),
    /// `ssl-encoder` (the fixed feature encoder of rteval's realism figure).
    public static func bundledModelPath(_ name: String) -> String? {
        Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Models")?.path
    }

    nonisolated(unsafe) private static var cache: [String: CodecModel] = [:]
    private static let cacheLock = NSLock()

    /// Loads (once per process) the model at `path`.
    public static func cached(path: String) throws -> CodecModel {
        cacheLock.lock(); defer { cacheLock.unlock() }
        if let m = cache[path] { return m }
        let m = try CodecModel(path: path)
        cache[path] = m
        return m
    }

    public static func loadDefault() throws -> CodecModel {
        guard let p = defaultModelPath() else { throw CodecError.model("the default model is not installed beside this program") }
        return try cached(path: p)
    }

    /// Folders searched for models by fingerprint: $REPTOK_MODEL_PATH (colon-separated), then
    /// ~/.local/share/reptok/models (or $XDG_DATA_HOME/reptok/models).
    public static func searchPath() -> [String] {
        let env = ProcessInfo.processInfo.environment
        var dirs = (env["REPTOK_MODEL_PATH"] ?? "").split(separator: ":").map(String.init).filter { !$0.isEmpty }
        if let x = env["XDG_DATA_HOME"], !x.isEmpty { dirs.append(x + "/reptok/models") }
        else if let home = env["HOME"] { dirs.append(home + "/.local/share/reptok/models") }
        return dirs
    }

    /// The model with this fingerprint: `preferred` (a -m model) if it matches, the default model,
    /// or a *.safetensors file in the search path.
    public static func find(fingerprint fp: UInt64, preferred: CodecModel? = nil) throws -> CodecModel {
        if let p = preferred, p.fingerprint == fp { return p }
        if let d = try? loadDefault(), d.fingerprint == fp { return d }
        let fm = FileManager.default
        for dir in searchPath() {
            guard let names = try? fm.contentsOfDirectory(atPath: dir) else { continue }
            for n in names.sorted() where n.hasSuffix(".safetensors") {
                let path = dir + "/" + n
                guard let f = try? SafeTensorsFile(path: path), (try? fingerprint(of: f)) == fp else { continue }
                return try cached(path: path)
            }
        }
        throw CodecError.unknownModel(fp)
    }
}
