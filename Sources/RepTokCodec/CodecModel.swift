import Foundation
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

    public init() {}

    enum CodingKeys: String, CodingKey {
        case defaultLevel = "default_level", defaultSteps = "default_steps", defaultSampler = "default_sampler"
        case description, bootstrap, baseStep = "base_step"
    }

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        defaultLevel = try c.decodeIfPresent(Int.self, forKey: .defaultLevel) ?? 5
        defaultSteps = try c.decodeIfPresent(Int.self, forKey: .defaultSteps) ?? 1
        defaultSampler = try c.decodeIfPresent(String.self, forKey: .defaultSampler) ?? "euler"
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
        bootstrap = try c.decodeIfPresent(Bool.self, forKey: .bootstrap) ?? false
        baseStep = try c.decodeIfPresent(Float.self, forKey: .baseStep) ?? 1
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
            guard dcfg.tokenDim == ecfg.hiddenSize else { throw ModelError.invalidConfig("decoder token_dim != encoder hidden_size") }
            guard ecfg.imageSize == dcfg.imageSize else { throw ModelError.invalidConfig("encoder and decoder image sizes differ") }
            encoder = Dinov2Encoder(ecfg)
            adapter = TokenAdapter(dim: ecfg.hiddenSize)
            decoder = FlowDecoder(dcfg)
            try ModelFile.load(encoder.parameters, prefix: "encoder.", from: file)
            try ModelFile.load(adapter.parameters, prefix: "adapter.", from: file)
            try ModelFile.load(decoder.parameters, prefix: "decoder.", from: file)
            let D = ecfg.hiddenSize
            let mean = try file.floats("quantizer.mean"), rot = try file.floats("quantizer.rotation")
            let sigma = try file.floats("quantizer.sigma")
            guard mean.count == D, rot.count == D * D, sigma.count == D else {
                throw ModelError.invalidConfig("quantizer tensors do not match token size \(D)")
            }
            let dict = file.contains("quantizer.dictionary") ? try file.rawBytes("quantizer.dictionary") : []
            quantizer = Quantizer(mean: mean, rotation: rot, sigma: sigma, dictionary: dict.count > 1 ? dict : [],
                                  baseStep: codec.baseStep)
            guard Quantizer.levels.contains(codec.defaultLevel), (1...1000).contains(codec.defaultSteps),
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
