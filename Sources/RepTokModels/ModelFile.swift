import Foundation
import RepTokNN
import RepTokSafeTensors
import RepTokTensor

/// Reading and writing model files (safetensors with `reptok.config` metadata). Keys are mapped
/// explicitly: each module lists its parameters with their checkpoint keys, and loading fails on a
/// missing tensor or a shape mismatch.
public enum ModelFile {
    /// The metadata key of a model file's configuration document.
    public static let configKey = "reptok.config"

    /// The `reptok.config` JSON for a model with these parts (`format`, `version` 1, `encoder`,
    /// `decoder`, then `extra`), in the stored form (`JSONValue.text`: Float fields keep their
    /// fraction, so `layerscale_value` reads as a float in Python too).
    public static func configJSON(format: String = "reptok-model", encoder: EncoderConfig?, decoder: DecoderConfig?,
                                  extra: [String: JSONValue] = [:]) throws -> String {
        var obj: JSONValue = ["format": .string(format), "version": 1]
        if let e = encoder { obj = obj.setting("encoder", try JSONValue(encoding: e)) }
        if let d = decoder { obj = obj.setting("decoder", try JSONValue(encoding: d)) }
        for (k, v) in extra { obj = obj.setting(k, v) }
        return obj.text()
    }

    /// The parsed `reptok.config` document of a file (nil: none, or not a JSON object).
    public static func config(of file: SafeTensorsFile) -> JSONValue? {
        guard let json = file.metadata[configKey], let v = try? JSONValue.parse(json), case .object = v else { return nil }
        return v
    }

    /// Decodes one part (`encoder`, `decoder`, ...) of a `reptok.config` JSON string.
    public static func part<T: Decodable>(_ type: T.Type, _ key: String, in json: String) throws -> T {
        guard let obj = try? JSONValue.parse(json), case .object = obj else {
            throw ModelError.badFile("reptok.config metadata is not a JSON object")
        }
        guard let sub = obj[key] else { throw ModelError.badFile("reptok.config has no \"\(key)\" part") }
        do {
            // the canonical form, as the fingerprint sees it (an integral 4.0 reads as an Int)
            return try JSONDecoder().decode(T.self, from: Data(try sub.canonicalText().utf8))
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

    /// FNV-1a 64 over, in key order (UTF-8 bytes), every tensor whose name starts with one of
    /// `prefixes` (name, dtype, shape as decimal numbers joined by commas, each followed by a NUL,
    /// then the raw bytes), followed by the listed parts of `reptok.config` that are present,
    /// each in the canonical JSON form (`JSONValue.canonicalText`) followed by a NUL: a model's
    /// identity, independent of its other metadata and of how its JSON was written. A config
    /// that is not a JSON object adds nothing, nor does a part without a canonical form.
    /// Man/rtk.5 MODEL FINGERPRINTS; golden vectors in Tests/Parity/fingerprint.
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
        if let obj = config(of: file) {
            for part in configParts {
                if let text = try? obj[part]?.canonicalText() { eat(text) }
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
