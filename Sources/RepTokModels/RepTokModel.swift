import Foundation
import RepTokNN
import RepTokTensor

/// z = c + proj(c): the zero-initialized residual projection of the SSL token.
/// Keys: `proj.weight` [D, D], `proj.bias` [D].
public final class TokenAdapter: Module {
    public let proj: Linear

    public init(dim: Int) { proj = Linear("proj", dim, dim) }

    public var parameters: [Parameter] { proj.parameters }
    public func packForInference() { proj.packForInference() }

    public func forward(_ c: Tensor, cache: Bool = false) -> Tensor {
        Ops.add(c, proj.forward(c, cache: cache))
    }

    /// Returns dc; accumulates proj gradients.
    public func backward(_ dz: Tensor) -> Tensor {
        let dc = proj.backward(dz)!
        Ops.addInPlace(dc, dz)
        return dc
    }
}

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

/// The tokenizer: encoder + adapter + decoder, with the RepTok training objective.
public final class RepTokModel {
    public let encoder: Dinov2Encoder
    public let adapter: TokenAdapter
    public let decoder: FlowDecoder
    /// The frozen SSL token's [CLS] input embedding (for `.cls` tuning the rest of the frozen
    /// encoder is shared with `encoder`, whose other weights do not train).
    public let frozenCLS: Tensor
    /// A frozen copy of the whole encoder, when tuning more than the [CLS] embedding.
    public private(set) var frozenEncoder: Dinov2Encoder?
    public private(set) var tune: TuneMode = .cls

    public init(encoder: Dinov2Encoder, adapter: TokenAdapter, decoder: FlowDecoder) {
        self.encoder = encoder
        self.adapter = adapter
        self.decoder = decoder
        frozenCLS = encoder.clsToken.value.clone()
    }

    /// Every parameter with its full checkpoint key (`encoder.`, `adapter.`, `decoder.`).
    public var namedParameters: [(String, Parameter)] {
        encoder.parameters.map { ("encoder." + $0.key, $0) } + adapter.parameters.map { ("adapter." + $0.key, $0) }
            + decoder.parameters.map { ("decoder." + $0.key, $0) }
    }

    public var trainableParameters: [Parameter] { namedParameters.map { $0.1 }.filter { $0.trainable } }

    /// Freezes the encoder except what `mode` tunes; the adapter and decoder always train.
    /// The frozen reference token keeps the current encoder weights.
    public func setTune(_ mode: TuneMode) {
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
        adapter.setTrainable(true)
        decoder.setTrainable(true)
    }

    private func copyEncoder() -> Dinov2Encoder {
        let e = Dinov2Encoder(encoder.config)
        for (a, b) in zip(e.parameters, encoder.parameters) { a.value.copy(from: b.value); a.trainable = false }
        return e
    }

    /// The frozen SSL token c0 for normalized encoder input.
    public func frozenToken(_ pixelsEnc: Tensor) -> Tensor {
        if let f = frozenEncoder { return f.forward(pixelsEnc).token }
        let live = encoder.clsToken.value.clone()
        encoder.clsToken.value.copy(from: frozenCLS)
        defer { encoder.clsToken.value.copy(from: live) }
        return encoder.forward(pixelsEnc).token
    }

    /// The latent z for normalized encoder input.
    public func encode(_ pixelsEnc: Tensor) -> Tensor {
        adapter.forward(encoder.forward(pixelsEnc).token)
    }

    public struct StepLoss: Sendable, Equatable {
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
    public func lossAndGradients(pixelsEnc: Tensor, x: Tensor, t: [Float], noise: Tensor, lambda: Float,
                                 tokenNoise: (relative: Float, draw: Tensor)? = nil) -> StepLoss {
        let B = x.shape[0]
        let c0 = frozenToken(pixelsEnc)
        let c = encoder.forward(pixelsEnc, cache: true).token
        let z = adapter.forward(c, cache: true)
        var zDec = z, noiseStd: Float = 0
        if let tn = tokenNoise, tn.relative > 0 {
            precondition(tn.draw.count == z.count, "token noise draw \(tn.draw.shape) for z \(z.shape)")
            noiseStd = RepTokModel.tokenNoiseStd(z, relative: tn.relative)
            zDec = z.clone()
            Ops.axpy(zDec, tn.draw, noiseStd)
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
        let out = decoder.forward(xt, t: t, z: zDec, cache: true)
        let v = decoder.velocity(xt, t: t, out: out)
        let (flow, dv) = Ops.mse(v, target)
        let (cosL, dzCos) = Ops.cosineLoss(z, c0, gradScale: lambda)
        let (dout, _) = decoder.velocityBackward(dv, t: t)
        let (_, dzDec) = decoder.backward(dout, needInput: false)
        Ops.addInPlace(dzCos, dzDec)
        let dc = adapter.backward(dzCos)
        encoder.backward(dToken: dc)
        return StepLoss(loss: flow + lambda * cosL, flow: flow, cos: cosL, tokenNoiseStd: noiseStd)
    }
}
