import Foundation
import RepTokNN
import RepTokSafeTensors
import RepTokTensor

/// Reading and writing model files (safetensors with `reptok.config` metadata). Keys are mapped
/// explicitly: each module lists its parameters with their checkpoint keys, and loading fails on a
/// missing tensor or a shape mismatch.
public enum ModelFile {
    /// The `reptok.config` JSON for a model with these parts.
    public static func configJSON(encoder: EncoderConfig?, decoder: DecoderConfig?, extra: [String: Any] = [:]) throws -> String {
        var obj: [String: Any] = ["format": "reptok-model", "version": 1]
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        if let e = encoder { obj["encoder"] = try JSONSerialization.jsonObject(with: enc.encode(e)) }
        if let d = decoder { obj["decoder"] = try JSONSerialization.jsonObject(with: enc.encode(d)) }
        for (k, v) in extra { obj[k] = v }
        let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Decodes one part (`encoder`, `decoder`, ...) of a `reptok.config` JSON string.
    public static func part<T: Decodable>(_ type: T.Type, _ key: String, in json: String) throws -> T {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else {
            throw ModelError.badFile("reptok.config metadata is not a JSON object")
        }
        guard let sub = obj[key] else { throw ModelError.badFile("reptok.config has no \"\(key)\" part") }
        do {
            let data = try JSONSerialization.data(withJSONObject: sub)
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw ModelError.badFile("reptok.config \"\(key)\" part is invalid: \(error)")
        }
    }

    /// Writes tensors (F32 by default, or 16-bit storage) with metadata, atomically.
    public static func write(named: [(String, Tensor)], metadata: [String: String], to path: String,
                             dtype: SafeTensorsDType = .F32) throws {
        var w = SafeTensorsWriter(metadata: metadata)
        for (k, t) in named {
            try w.add(k, shape: t.shape, values: UnsafeBufferPointer(t.buffer), as: dtype)
        }
        try w.write(to: path)
    }

    /// Copies `prefix + key` of every parameter from the file. Missing tensors and shape
    /// mismatches are errors; so are tensors under `prefix` that no parameter takes (unless
    /// `allowExtra`).
    public static func load(_ params: [Parameter], prefix: String, from file: SafeTensorsFile,
                            allowExtra: Bool = false, ignoring: Set<String> = []) throws {
        var known = Set<String>()
        for p in params {
            let name = prefix + p.key
            known.insert(name)
            guard file.contains(name) else { throw ModelError.missingTensor(name) }
            let info = try file.info(name)
            guard info.shape == p.shape else { throw ModelError.shapeMismatch(name, expected: p.shape, got: info.shape) }
            try file.copyFloats(name, into: p.value.data, count: p.value.count)
        }
        if !allowExtra {
            for n in file.names where n.hasPrefix(prefix) && !known.contains(n) && !ignoring.contains(n) {
                throw ModelError.unexpectedTensor(n)
            }
        }
    }

    /// FNV-1a 64 over, in key order, every tensor whose name starts with one of `prefixes`
    /// (name, dtype, shape, raw bytes), followed by the listed parts of `reptok.config`
    /// (sorted-key JSON): a model's identity, independent of its other metadata.
    public static func fingerprint(of file: SafeTensorsFile, prefixes: [String], configParts: [String]) throws -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func eat(_ bytes: UnsafeRawBufferPointer) {
            for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        }
        func eat(_ s: String) {
            var s = s
            s.withUTF8 { eat(UnsafeRawBufferPointer($0)) }
            withUnsafeBytes(of: UInt8(0)) { eat($0) }  // NUL terminator (not eat("\u{0}"): that recursed)
        }
        for name in file.names where prefixes.contains(where: { name.hasPrefix($0) }) {
            let info = try file.info(name)
            eat(name); eat(info.dtype.rawValue); eat(info.shape.map(String.init).joined(separator: ","))
            try file.withRawBytes(name) { eat($0) }
        }
        if let json = file.metadata["reptok.config"],
           let obj = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] {
            for part in configParts {
                if let sub = obj[part], let d = try? JSONSerialization.data(withJSONObject: sub, options: [.sortedKeys]) {
                    eat(String(decoding: d, as: UTF8.self))
                }
            }
        }
        return h
    }

    /// A tensor from the file as a Tensor of its stored shape.
    public static func tensor(_ name: String, in file: SafeTensorsFile) throws -> Tensor {
        guard file.contains(name) else { throw ModelError.missingTensor(name) }
        let info = try file.info(name)
        let t = Tensor(uninitialized: info.shape)
        try file.copyFloats(name, into: t.data, count: t.count)
        return t
    }
}

extension Dinov2Encoder {
    /// The encoder of a file holding `encoder.*` tensors and a `reptok.config` with an `encoder`
    /// part: what `rttrain ssl --export` writes, an SSL checkpoint (its teacher) or a codec model
    /// file. At another `imageSize` than the file's, the position table is resampled once to the
    /// new grid (the bicubic interpolation the encoder would do at run time), so the returned
    /// config is consistent.
    public static func load(path: String, imageSize: Int? = nil) throws -> Dinov2Encoder {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw ModelError.badFile("cannot read encoder \(path): \(error)") }
        guard let cj = file.metadata["reptok.config"] else { throw ModelError.badFile("\(path): no reptok.config metadata") }
        var ecfg = try ModelFile.part(EncoderConfig.self, "encoder", in: cj)
        do { try ecfg.validate() } catch { throw ModelError.badFile("\(path): \(error)") }
        let S = imageSize ?? ecfg.imageSize
        guard S > 0, S % ecfg.patchSize == 0 else {
            throw ModelError.invalidConfig("image size \(S) is not a multiple of the encoder's patch \(ecfg.patchSize)")
        }
        let src = Dinov2Encoder(ecfg)
        try ModelFile.load(src.parameters, prefix: "encoder.", from: file)
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
}
