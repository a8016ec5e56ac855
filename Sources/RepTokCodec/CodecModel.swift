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

    public init(path: String) throws {
        self.path = path
        let file = try CodecModelFile.read(path: path)
        encoder = file.encoder; adapter = file.adapter; decoder = file.decoder
        quantizer = file.quantizer; codec = file.codec; fingerprint = file.fingerprint
        // Loaded for coding only: the weights never change, so every product takes a pack.
        encoder.packForInference(); adapter.packForInference(); decoder.packForInference()
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
                guard let f = try? SafeTensorsFile(path: path), (try? CodecModelFile.fingerprint(of: f)) == fp else { continue }
                return try cached(path: path)
            }
        }
        throw CodecError.unknownModel(fp)
    }
}
