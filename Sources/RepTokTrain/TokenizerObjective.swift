import Foundation
import RepTokModels
import RepTokNN
import RepTokTensor

/// Which encoder parameters the tokenizer trains (RepTok: only the input [CLS] embedding).
public enum TuneMode: Equatable, Sendable, CustomStringConvertible {
    case cls
    case last(Int)
    case all

    public init?(_ s: String) {
        if s == "cls" { self = .cls }
        else if s == "all" { self = .all }
        else if s.hasPrefix("last:"), let k = Int(s.dropFirst(5)), k >= 1 { self = .last(k) }
        else { return nil }
    }

    public var description: String {
        switch self {
        case .cls: return "cls"
        case .all: return "all"
        case .last(let k): return "last:\(k)"
        }
    }
}

/// The tokenizer's training objective on a `RepTokModel` (RepTok: flow matching plus the cosine
/// term that holds the token near the frozen SSL token): which parameters train (`setTune`), the
/// frozen reference, and one step's loss and gradients with the optional token noise and layout
/// truncation. The model itself is only the network and its inference.
public final class TokenizerObjective {
    public let model: RepTokModel
    /// The frozen SSL token's [CLS] input embedding (for `.cls` tuning the rest of the frozen
    /// encoder is shared with `model.encoder`, whose other weights do not train).
    public let frozenCLS: Tensor
    /// A frozen copy of the whole encoder, when tuning more than the [CLS] embedding.
    public private(set) var frozenEncoder: Dinov2Encoder?
    public private(set) var tune: TuneMode = .cls

    public init(_ model: RepTokModel) {
        self.model = model
        frozenCLS = model.encoder.clsToken.value.clone()
    }

    /// Freezes the encoder except what `mode` tunes; the adapter and decoder always train.
    /// The frozen reference token keeps the current encoder weights.
    public func setTune(_ mode: TuneMode) {
        let encoder = model.encoder
        tune = mode
        encoder.setTrainable(false)
        encoder.clsToken.trainable = true
        frozenCLS.copy(from: encoder.clsToken.value)
        switch mode {
        case .cls:
            frozenEncoder = nil
        case .last(let k):
            for l in encoder.layers.suffix(k) { l.setTrainable(true) }
            encoder.norm.setTrainable(true)
            frozenEncoder = copyEncoder()
        case .all:
            encoder.setTrainable(true)
            encoder.maskToken.trainable = false
            frozenEncoder = copyEncoder()
        }
        model.adapter.setTrainable(true)
        model.decoder.setTrainable(true)
    }

    private func copyEncoder() -> Dinov2Encoder {
        let e = Dinov2Encoder(model.encoder.config)
        for (a, b) in zip(e.parameters, model.encoder.parameters) { a.value.copy(from: b.value); a.trainable = false }
        return e
    }

    /// The frozen SSL token c0 for normalized encoder input.
    public func frozenToken(_ pixelsEnc: Tensor) -> Tensor {
        if let f = frozenEncoder { return f.forward(pixelsEnc).token }
        let encoder = model.encoder
        let live = encoder.clsToken.value.clone()
        encoder.clsToken.value.copy(from: frozenCLS)
        defer { encoder.clsToken.value.copy(from: live) }
        return encoder.forward(pixelsEnc).token
    }

    /// The frozen SSL token [B, D] zero-padded to the token size D + m: the target of the cosine
    /// term, so the whole token, layout coordinates included, is held near the SSL token.
    public func paddedTarget(_ c0: Tensor) -> Tensor {
        guard model.adapter.layoutDim > 0 else { return c0 }
        return TokenAdapter.concat(c0, Tensor([c0.shape[0], model.adapter.layoutDim]))
    }

    public struct Loss: Sendable, Equatable {
        public var loss: Float, flow: Float, cos: Float
        /// The std of the token noise added to the decoder's input (0 when none).
        public var tokenNoiseStd: Float = 0
        public init(loss: Float, flow: Float, cos: Float, tokenNoiseStd: Float = 0) {
            self.loss = loss; self.flow = flow; self.cos = cos; self.tokenNoiseStd = tokenNoiseStd
        }
    }

    /// The std of training token noise for latents z [B, D]: `relative` x the RMS over dimensions
    /// of the per-dimension standard deviation across the batch (0 for B < 2).
    public static func tokenNoiseStd(_ z: Tensor, relative: Float) -> Float {
        let B = z.shape[0], D = z.count / B
        guard B >= 2, relative > 0 else { return 0 }
        var total = 0.0
        for d in 0..<D {
            var m = 0.0
            for b in 0..<B { m += Double(z.data[b * D + d]) }
            m /= Double(B)
            var v = 0.0
            for b in 0..<B { let e = Double(z.data[b * D + d]) - m; v += e * e }
            total += v / Double(B - 1)
        }
        return relative * Float((total / Double(D)).squareRoot())
    }

    /// One tokenizer training step's forward and backward (gradients accumulate into trainable
    /// parameters; no optimizer update). `x` is the image in decoder space [-1, 1], `pixelsEnc`
    /// the same view normalized for the encoder, `t` [B] and `noise` like `x`.
    /// `tokenNoise` (relative std, a standard-normal draw like z) adds noise to the decoder's
    /// latent input so the decoder learns to tolerate quantization; its scale is a constant for
    /// the gradient, and the cosine term sees the clean token.
    /// `layoutKeep` [B] (with a layout path): the number of layout coordinates sample b's decoder
    /// sees; the others are zero in its input (and get no gradient from it).
    public func lossAndGradients(pixelsEnc: Tensor, x: Tensor, t: [Float], noise: Tensor, lambda: Float,
                                 tokenNoise: (relative: Float, draw: Tensor)? = nil, layoutKeep: [Int]? = nil) -> Loss {
        let encoder = model.encoder, adapter = model.adapter, decoder = model.decoder
        let B = x.shape[0]
        let c0 = paddedTarget(frozenToken(pixelsEnc))
        let c = encoder.forward(pixelsEnc, mode: .training).token
        let z = adapter.forward(c, image: x, mode: .training)
        var zDec = z, noiseStd: Float = 0
        if let tn = tokenNoise, tn.relative > 0 {
            precondition(tn.draw.count == z.count, "token noise draw \(tn.draw.shape) for z \(z.shape)")
            noiseStd = Self.tokenNoiseStd(z, relative: tn.relative)
            zDec = z.clone()
            Ops.axpy(zDec, tn.draw, noiseStd)
        }
        let Dz = z.count / B, m = adapter.layoutDim
        func truncate(_ a: Tensor) {
            guard let keep = layoutKeep, m > 0 else { return }
            precondition(keep.count == B, "layoutKeep \(keep.count) for batch \(B)")
            for b in 0..<B where keep[b] < m {
                (a.data + b * Dz + adapter.dim + max(0, keep[b])).update(repeating: 0, count: m - max(0, keep[b]))
            }
        }
        if layoutKeep != nil && m > 0 {
            if zDec === z { zDec = z.clone() }
            truncate(zDec)
        }
        // x_t = (1 - t) x + t eps; v* = eps - x
        let xt = Tensor(uninitialized: x.shape), target = Tensor(uninitialized: x.shape)
        let per = x.count / B
        for b in 0..<B {
            let tb = t[b]
            for i in b * per..<(b + 1) * per {
                xt.data[i] = (1 - tb) * x.data[i] + tb * noise.data[i]
                target.data[i] = noise.data[i] - x.data[i]
            }
        }
        let out = decoder.forward(xt, t: t, z: zDec, mode: .training)
        let v = decoder.velocity(xt, t: t, out: out)
        let (flow, dv) = Ops.mse(v, target)
        let (cosL, dzCos) = Ops.cosineLoss(z, c0, gradScale: lambda)
        let (dout, _) = decoder.velocityBackward(dv, t: t)
        let (_, dzDec) = decoder.backward(dout, needInput: false)
        truncate(dzDec)
        Ops.addInPlace(dzCos, dzDec)
        let dc = adapter.backward(dzCos)
        encoder.backward(dToken: dc)
        return Loss(loss: flow + lambda * cosL, flow: flow, cos: cosL, tokenNoiseStd: noiseStd)
    }
}
