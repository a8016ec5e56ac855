import Foundation
import RepTokSafeTensors
import RepTokTensor

/// The SSL encoder file: what `rttrain ssl --export` writes and `rttrain tokenizer --encoder`,
/// `rteval --realism` (the feature space) and `rttrain eval` read. Its keys, writer and reader:
/// - tensors `encoder.` + the Hugging Face `Dinov2Model` names (docs/ARCHITECTURE.md);
/// - `reptok.config` = {format "reptok-model", version 1, `encoder`: EncoderConfig, `ssl`: the
///   run's record (step, wall_seconds, config)}.
/// The reader takes the encoder part of any file laid out this way: an SSL export, an SSL
/// checkpoint (its teacher) or a codec model file (CodecModelFile keeps its encoder here too).
public enum SSLEncoderFile {
    /// Prefix of the encoder's tensors.
    public static let prefix = "encoder."
    /// The `reptok.config` part holding the EncoderConfig.
    public static let configPart = "encoder"

    /// Writes the encoder with the run's record under `ssl`, atomically.
    public static func write(_ encoder: Dinov2Encoder, ssl: JSONValue, to path: String) throws {
        let meta = try ModelFile.configJSON(encoder: encoder.config, decoder: nil, extra: ["ssl": ssl])
        try ModelFile.write(named: encoder.parameters.map { (prefix + $0.key, $0.value) },
                            metadata: [ModelFile.configKey: meta], to: path)
    }

    /// The encoder of a file holding `encoder.*` tensors and a `reptok.config` with an `encoder`
    /// part. At another `imageSize` than the file's, the position table is resampled once to the
    /// new grid (the bicubic interpolation the encoder would do at run time), so the returned
    /// config is consistent.
    public static func read(path: String, imageSize: Int? = nil) throws -> Dinov2Encoder {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw ModelError.badFile("cannot read encoder \(path): \(error)") }
        guard let cj = file.metadata[ModelFile.configKey] else { throw ModelError.badFile("\(path): no reptok.config metadata") }
        var ecfg = try ModelFile.part(EncoderConfig.self, configPart, in: cj)
        do { try ecfg.validate() } catch { throw ModelError.badFile("\(path): \(error)") }
        let S = imageSize ?? ecfg.imageSize
        guard S > 0, S % ecfg.patchSize == 0 else {
            throw ModelError.invalidConfig("image size \(S) is not a multiple of the encoder's patch \(ecfg.patchSize)")
        }
        let src = Dinov2Encoder(ecfg)
        try ModelFile.load(src.parameters, prefix: prefix, from: file)
        if ecfg.imageSize == S { return src }
        ecfg.imageSize = S
        let dst = Dinov2Encoder(ecfg)
        let D = ecfg.hiddenSize, g = S / ecfg.patchSize
        for (a, b) in zip(dst.parameters, src.parameters) where a.key != "embeddings.position_embeddings" {
            a.value.copy(from: b.value)
        }
        let ip = PosInterpolation(from: src.config.grid, toH: g, toW: g, antialias: ecfg.numRegisterTokens > 0)
        let table = ip.forward(src.positionEmbeddings.value.data + D, dim: D)
        let pos = dst.positionEmbeddings.value
        pos.data.update(from: src.positionEmbeddings.value.data, count: D)
        (pos.data + D).update(from: table.data, count: g * g * D)
        return dst
    }

    /// The encoder's identity: ModelFile.fingerprint over the `encoder.` tensors and the
    /// `encoder` config part (what rteval --realism and rttrain eval report).
    public static func fingerprint(of file: SafeTensorsFile) throws -> UInt64 {
        try ModelFile.fingerprint(of: file, prefixes: [prefix], configParts: [configPart])
    }
}
