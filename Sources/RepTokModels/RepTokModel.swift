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

/// The tokenizer's network: encoder + adapter + decoder, and its inference (`encode`; decoding
/// is the decoder's `infer`). The training objective (loss and gradients, the tuned parameters,
/// the frozen reference) is RepTokTrain's `TokenizerObjective`.
public final class RepTokModel {
    public let encoder: Dinov2Encoder
    public let adapter: TokenAdapter
    public let decoder: FlowDecoder

    public init(encoder: Dinov2Encoder, adapter: TokenAdapter, decoder: FlowDecoder) {
        self.encoder = encoder
        self.adapter = adapter
        self.decoder = decoder
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

    /// The latent z for normalized encoder input `pixelsEnc` and the same view `x` in decoder
    /// space (read by the layout path; nil without one).
    public func encode(_ pixelsEnc: Tensor, image x: Tensor? = nil) -> Tensor {
        adapter.forward(encoder.forward(pixelsEnc).token, image: x)
    }
}
