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

    /// A tensor from the file as a Tensor of its stored shape.
    public static func tensor(_ name: String, in file: SafeTensorsFile) throws -> Tensor {
        guard file.contains(name) else { throw ModelError.missingTensor(name) }
        let info = try file.info(name)
        let t = Tensor(uninitialized: info.shape)
        try file.copyFloats(name, into: t.data, count: t.count)
        return t
    }
}
