import Foundation
import RepTokNN
import RepTokTensor

/// The token adapter. The SSL part is RepTok's zero-initialized residual projection of the SSL
/// token, c + proj(c). With a layout path (`layoutDim` m > 0) the token also carries m linear
/// layout coordinates read from the picture itself at a coarse scale: the view (decoder space,
/// [-1, 1]) box-averaged to k x k, times `layout.weight` [m, 3 k^2] plus `layout.bias`. The
/// token is the concatenation [c + proj(c), layout(coarse(x))], of size D + m.
///
/// Keys: `proj.weight` [D, D], `proj.bias` [D]; with the layout path `layout.weight`
/// [m, 3 k^2] and `layout.bias` [m] (k and m are read from the weight's shape).
public final class TokenAdapter: Module {
    public let proj: Linear
    public let layout: Linear?
    /// The SSL token size D, the layout size m and the coarse side k (0 without the path).
    public let dim: Int, layoutDim: Int, layoutSize: Int
    public var tokenDim: Int { dim + layoutDim }

    public init(dim: Int, layoutDim: Int = 0, layoutSize: Int = 0) {
        precondition((layoutDim == 0) == (layoutSize == 0) && layoutDim >= 0 && layoutSize >= 0, "layout \(layoutDim)/\(layoutSize)")
        self.dim = dim; self.layoutDim = layoutDim; self.layoutSize = layoutSize
        proj = Linear("proj", dim, dim)
        layout = layoutDim > 0 ? Linear("layout", 3 * layoutSize * layoutSize, layoutDim) : nil
    }

    /// The layout path's (m, k) from a model file's `adapter.layout.weight` shape, (0, 0) when absent.
    public static func layoutShape(weightShape s: [Int]?) throws -> (dim: Int, size: Int) {
        guard let s = s else { return (0, 0) }
        let k = Int(Double((s.count == 2 ? s[1] : 0) / 3).squareRoot().rounded())
        guard s.count == 2, s[0] >= 1, s[0] <= 4096, k >= 1, k <= 64, 3 * k * k == s[1] else {
            throw ModelError.invalidConfig("adapter.layout.weight has shape \(s), expected [m, 3 k^2] with k <= 64")
        }
        return (s[0], k)
    }

    public var parameters: [Parameter] { proj.parameters + (layout?.parameters ?? []) }
    public func packForInference() { proj.packForInference(); layout?.packForInference() }

    /// The coarse picture [B, 3 k^2] (channel-major) of images [B, 3, S, S]: box means over
    /// (S/k)^2 pixels of `scale * v + offset` (pixels255 with scale 1/127.5, offset -1 give the
    /// decoder space). S must be a multiple of k.
    public static func coarse(_ x: Tensor, size k: Int, scale: Float = 1, offset: Float = 0) -> Tensor {
        let B = x.shape[0], S = x.shape[2], f = S / k
        precondition(x.shape.count == 4 && x.shape[1] == 3 && x.shape[3] == S && S % k == 0, "coarse of \(x.shape) to \(k)")
        let out = Tensor(uninitialized: [B, 3 * k * k])
        let inv = 1.0 / Double(f * f)
        for b in 0..<B {
            for c in 0..<3 {
                let plane = x.data + (b * 3 + c) * S * S
                for i in 0..<k {
                    for j in 0..<k {
                        var s = 0.0
                        for u in 0..<f { for v in 0..<f { s += Double(plane[(i * f + u) * S + j * f + v]) } }
                        out.data[b * 3 * k * k + (c * k + i) * k + j] = Float(s * inv) * scale + offset
                    }
                }
            }
        }
        return out
    }

    /// z [B, D + m] from the SSL token c [B, D] and (with the layout path) the picture x
    /// [B, 3, S, S] in decoder space.
    public func forward(_ c: Tensor, image x: Tensor? = nil, mode: ForwardMode = .inference) -> Tensor {
        let ssl = Ops.add(c, proj.forward(c, mode: mode))
        guard let layout = layout else { return ssl }
        guard let x = x else { preconditionFailure("TokenAdapter with a layout path needs the picture") }
        let l = layout.forward(TokenAdapter.coarse(x, size: layoutSize), mode: mode)
        return TokenAdapter.concat(ssl, l)
    }

    /// Rows [a | b] of two row-aligned matrices.
    public static func concat(_ a: Tensor, _ b: Tensor) -> Tensor {
        let B = a.shape[0], na = a.count / B, nb = b.count / B
        let out = Tensor(uninitialized: [B, na + nb])
        for r in 0..<B {
            (out.data + r * (na + nb)).update(from: a.data + r * na, count: na)
            (out.data + r * (na + nb) + na).update(from: b.data + r * nb, count: nb)
        }
        return out
    }

    /// The latent of pictures [B, 3, S, S] in 0...255 (the codec's view): the encoder's SSL token
    /// through the adapter, which also reads the picture when it has a layout path.
    public static func latent(encoder: Dinov2Encoder, adapter: TokenAdapter, pixels255 px: Tensor) -> Tensor {
        let c = encoder.forward(encoder.normalize(pixels255: px)).token
        guard adapter.layout != nil else { return adapter.forward(c) }
        let x = Tensor(uninitialized: px.shape)
        for i in 0..<px.count { x.data[i] = px.data[i] / 127.5 - 1 }
        return adapter.forward(c, image: x)
    }

    /// Columns [from, from + n) of a row-major matrix.
    public static func columns(_ a: Tensor, from: Int, count n: Int) -> Tensor {
        let B = a.shape[0], w = a.count / B
        let out = Tensor(uninitialized: [B, n])
        for r in 0..<B { (out.data + r * n).update(from: a.data + r * w + from, count: n) }
        return out
    }

    /// Returns dc; accumulates the projection's and the layout path's gradients.
    public func backward(_ dz: Tensor) -> Tensor {
        let dSSL = layout == nil ? dz : TokenAdapter.columns(dz, from: 0, count: dim)
        if let layout = layout { layout.backward(TokenAdapter.columns(dz, from: dim, count: layoutDim), needInput: false) }
        let dc = proj.backward(dSSL)!
        Ops.addInPlace(dc, dSSL)
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

    /// The key prefixes of the three parts in checkpoints and codec model files (the encoder's is
    /// an SSL encoder file's).
    public static let encoderPrefix = SSLEncoderFile.prefix, adapterPrefix = "adapter.", decoderPrefix = "decoder."

    /// Every parameter with its full checkpoint key (`encoder.`, `adapter.`, `decoder.`).
    public var namedParameters: [(String, Parameter)] {
        encoder.parameters.map { (Self.encoderPrefix + $0.key, $0) } + adapter.parameters.map { (Self.adapterPrefix + $0.key, $0) }
            + decoder.parameters.map { (Self.decoderPrefix + $0.key, $0) }
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

    /// The latent z for normalized encoder input `pixelsEnc` and the same view `x` in decoder
    /// space (read by the layout path; nil without one).
    public func encode(_ pixelsEnc: Tensor, image x: Tensor? = nil) -> Tensor {
        adapter.forward(encoder.forward(pixelsEnc).token, image: x)
    }

    /// The frozen SSL token [B, D] zero-padded to the token size D + m: the target of the cosine
    /// term, so the whole token, layout coordinates included, is held near the SSL token.
    public func paddedTarget(_ c0: Tensor) -> Tensor {
        guard adapter.layoutDim > 0 else { return c0 }
        return TokenAdapter.concat(c0, Tensor([c0.shape[0], adapter.layoutDim]))
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
    /// `layoutKeep` [B] (with a layout path): the number of layout coordinates sample b's decoder
    /// sees; the others are zero in its input (and get no gradient from it).
    public func lossAndGradients(pixelsEnc: Tensor, x: Tensor, t: [Float], noise: Tensor, lambda: Float,
                                 tokenNoise: (relative: Float, draw: Tensor)? = nil, layoutKeep: [Int]? = nil) -> StepLoss {
        let B = x.shape[0]
        let c0 = paddedTarget(frozenToken(pixelsEnc))
        let c = encoder.forward(pixelsEnc, mode: .training).token
        let z = adapter.forward(c, image: x, mode: .training)
        var zDec = z, noiseStd: Float = 0
        if let tn = tokenNoise, tn.relative > 0 {
            precondition(tn.draw.count == z.count, "token noise draw \(tn.draw.shape) for z \(z.shape)")
            noiseStd = RepTokModel.tokenNoiseStd(z, relative: tn.relative)
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
        return StepLoss(loss: flow + lambda * cosL, flow: flow, cos: cosL, tokenNoiseStd: noiseStd)
    }
}
