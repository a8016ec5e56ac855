import Foundation
import RepTokFormat
import RepTokImage
import RepTokModels
import RepTokTensor

/// Options for encoding one image.
public struct EncodeOptions: Sendable {
    /// Quality level 1 (smallest) ... 9 (best); nil = the model's default.
    public var level: Int?
    /// Pick the highest level whose whole record fits in this many bytes.
    public var targetBytes: Int?
    /// Decoder seed written into the file.
    public var seed: UInt64 = 0
    /// Sampler and steps written into the file; nil = the model's defaults.
    public var sampler: RTKSampler?
    public var steps: Int?
    /// Optional record name (a plain relative path).
    public var name: String?

    public init(level: Int? = nil, targetBytes: Int? = nil, seed: UInt64 = 0, sampler: RTKSampler? = nil,
                steps: Int? = nil, name: String? = nil) {
        self.level = level; self.targetBytes = targetBytes; self.seed = seed
        self.sampler = sampler; self.steps = steps; self.name = name
    }
}

/// Options for decoding one record.
public struct DecodeOptions: Sendable {
    /// Override the file's step count / seed.
    public var steps: Int?
    public var seed: UInt64?
    /// Write the model-resolution image instead of resizing back to the original size.
    public var native = false
    /// Explicit output size (overrides both).
    public var size: (width: Int, height: Int)?
    public var limits = ImageLimits.default

    public init(steps: Int? = nil, seed: UInt64? = nil, native: Bool = false, size: (width: Int, height: Int)? = nil) {
        self.steps = steps; self.seed = seed; self.native = native; self.size = size
    }
}

/// Image <-> .rtk record. Thin executables wrap these calls.
public enum Codec {
    /// The model's input view of an image: the WHOLE picture squashed to S x S (no crop, no pad),
    /// with the antialiased triangle filter the training views (RepTokData.ViewSampler) use.
    public static func modelView(_ img: RGBImage, size S: Int) -> RGBImage {
        Resample.resize(img, width: S, height: S, filter: .bilinear)
    }

    /// Sum of squared errors of decoder-space values v (pixel (v + 1) 127.5, rounded and clipped
    /// to 8 bits, as RGBImage stores a decode) against reference pixels in 0...255: what PSNR at
    /// the model resolution measures.
    public static func squaredError8(decoderSpace v: UnsafePointer<Float>, reference: UnsafePointer<Float>, count: Int) -> Double {
        var se = 0.0
        for i in 0..<count {
            let p = min(max(((Double(v[i]) + 1) * 127.5).rounded(), 0), 255)
            let e = p - Double(reference[i]); se += e * e
        }
        return se
    }

    /// The latent token z [1, D] of an image.
    public static func token(_ img: RGBImage, model: CodecModel) -> Tensor {
        let S = model.imageSize
        let view = modelView(img, size: S)
        let px = Tensor([1, 3, S, S], view.planarFloats(scale: 1, offset: 0))
        return TokenAdapter.latent(encoder: model.encoder, adapter: model.adapter, pixels255: px)
    }

    /// Encodes an image into one record.
    public static func encode(_ img: RGBImage, model: CodecModel, options o: EncodeOptions = .init()) throws -> RTKRecord {
        guard (1...RTKFormat.maxDimension).contains(img.width), (1...RTKFormat.maxDimension).contains(img.height) else {
            throw CodecError.image("image size \(img.width)x\(img.height) is outside 1-\(RTKFormat.maxDimension)")
        }
        let z = token(img, model: model)
        let sampler = o.sampler ?? model.codec.sampler
        let steps = o.steps ?? model.codec.defaultSteps
        // step modes: the encoder's choice needs the error of the unquantized token's 1-step decode
        var residual = 0.0
        if model.quantizer.stepModes != nil {
            let S = model.imageSize
            let view = modelView(img, size: S).planarFloats(scale: 1, offset: 0)
            let x = decodeRaw(latent: z, model: model, seed: o.seed, sampler: .euler, steps: 1)
            residual = view.withUnsafeBufferPointer { squaredError8(decoderSpace: x.data, reference: $0.baseAddress!, count: view.count) }
        }
        func record(level: Int) throws -> RTKRecord {
            let payload = try model.quantizer.encode(z.data, level: level, residual: residual)
            return RTKRecord(fingerprint: model.fingerprint, width: img.width, height: img.height, level: level,
                             seed: o.seed, sampler: sampler, steps: steps, name: o.name, payload: payload)
        }
        if let target = o.targetBytes {
            for level in Quantizer.levels.reversed() {
                let r = try record(level: level)
                if r.serializedCount <= target { return r }
            }
            throw CodecError.noLevelFits(target)
        }
        let level = o.level ?? model.codec.defaultLevel
        guard Quantizer.levels.contains(level) else { throw CodecError.badLevel(level) }
        return try record(level: level)
    }

    /// The dequantized latent of a record.
    public static func latent(_ rec: RTKRecord, model: CodecModel) throws -> Tensor {
        let z = try model.quantizer.decode(rec.payload, level: rec.level)
        return Tensor([1, z.count], z)
    }

    /// Runs the flow decoder from the record's seeded noise: the model-resolution image in
    /// decoder space [1, 3, S, S].
    public static func decodeRaw(latent z: Tensor, model: CodecModel, seed: UInt64, sampler: RTKSampler, steps: Int) -> Tensor {
        let S = model.imageSize, B = z.shape[0]
        let noise = Philox4x32(seed: seed).gaussian([B, 3, S, S])
        return FlowSampler(SamplerKind(sampler), steps: steps).sample(noise: noise) { x, t in
            model.decoder.predictVelocity(x, t: t, z: z)
        }
    }

    /// Decodes a record to pixels: at the model resolution with `native`, else at the record's
    /// original size (or `size`).
    public static func decode(_ rec: RTKRecord, model: CodecModel, options o: DecodeOptions = .init()) throws -> RGBImage {
        guard rec.fingerprint == model.fingerprint else { throw CodecError.unknownModel(rec.fingerprint) }
        let steps = o.steps ?? rec.steps
        guard RTKFormat.steps.contains(steps) else { throw CodecError.model("steps \(steps) outside 1-\(RTKFormat.maxSteps)") }
        let (w, h) = o.size ?? (o.native ? (model.imageSize, model.imageSize) : (rec.width, rec.height))
        do { try o.limits.checkOutput(width: w, height: h) } catch { throw CodecError.image("\(error)") }
        let x = decodeRaw(latent: try latent(rec, model: model), model: model, seed: o.seed ?? rec.seed,
                          sampler: rec.sampler, steps: steps)
        let S = model.imageSize
        let img = RGBImage(planar: x.array, width: S, height: S)
        return (w == S && h == S) ? img : Resample.resize(img, width: w, height: h, filter: .lanczos3)
    }
}
