import Foundation
import RepTokNN
import RepTokTensor

/// Hugging Face `Dinov2Config` fields (JSON keys as in its config.json).
public struct EncoderConfig: Codable, Equatable, Sendable {
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var mlpRatio: Int = 4
    public var patchSize: Int
    public var imageSize: Int
    public var numChannels: Int = 3
    public var layerNormEps: Float = 1e-6
    public var layerscaleValue: Float = 1
    public var numRegisterTokens: Int = 0
    public var qkvBias: Bool = true
    public var useSwigluFfn: Bool = false
    public var hiddenAct: String = "gelu"
    /// Input normalization (reptok field; HF keeps it in the image processor).
    public var imageMean: [Float] = [0.485, 0.456, 0.406]
    public var imageStd: [Float] = [0.229, 0.224, 0.225]

    public init(hiddenSize: Int, numHiddenLayers: Int, numAttentionHeads: Int, mlpRatio: Int = 4,
                patchSize: Int, imageSize: Int, layerNormEps: Float = 1e-6, layerscaleValue: Float = 1,
                numRegisterTokens: Int = 0) {
        self.hiddenSize = hiddenSize; self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads; self.mlpRatio = mlpRatio; self.patchSize = patchSize
        self.imageSize = imageSize; self.layerNormEps = layerNormEps; self.layerscaleValue = layerscaleValue
        self.numRegisterTokens = numRegisterTokens
    }

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", mlpRatio = "mlp_ratio", patchSize = "patch_size"
        case imageSize = "image_size", numChannels = "num_channels", layerNormEps = "layer_norm_eps"
        case layerscaleValue = "layerscale_value", numRegisterTokens = "num_register_tokens"
        case qkvBias = "qkv_bias", useSwigluFfn = "use_swiglu_ffn", hiddenAct = "hidden_act"
        case imageMean = "image_mean", imageStd = "image_std"
    }

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        mlpRatio = try c.decodeIfPresent(Int.self, forKey: .mlpRatio) ?? 4
        patchSize = try c.decode(Int.self, forKey: .patchSize)
        imageSize = try c.decode(Int.self, forKey: .imageSize)
        numChannels = try c.decodeIfPresent(Int.self, forKey: .numChannels) ?? 3
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-6
        layerscaleValue = try c.decodeIfPresent(Float.self, forKey: .layerscaleValue) ?? 1
        numRegisterTokens = try c.decodeIfPresent(Int.self, forKey: .numRegisterTokens) ?? 0
        qkvBias = try c.decodeIfPresent(Bool.self, forKey: .qkvBias) ?? true
        useSwigluFfn = try c.decodeIfPresent(Bool.self, forKey: .useSwigluFfn) ?? false
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "gelu"
        imageMean = try c.decodeIfPresent([Float].self, forKey: .imageMean) ?? [0.485, 0.456, 0.406]
        imageStd = try c.decodeIfPresent([Float].self, forKey: .imageStd) ?? [0.229, 0.224, 0.225]
    }

    public var grid: Int { imageSize / patchSize }

    public func validate() throws {
        func bad(_ s: String) -> ModelError { .invalidConfig("encoder: " + s) }
        guard (1...8192).contains(hiddenSize), numAttentionHeads >= 1, hiddenSize % numAttentionHeads == 0 else {
            throw bad("hidden_size \(hiddenSize) / heads \(numAttentionHeads)")
        }
        guard (1...256).contains(numHiddenLayers), (1...16).contains(mlpRatio) else { throw bad("layers/mlp_ratio") }
        guard (1...64).contains(patchSize), (patchSize...4096).contains(imageSize) else { throw bad("patch/image size") }
        guard numChannels == 3 else { throw bad("num_channels \(numChannels) (3 supported)") }
        guard (0...64).contains(numRegisterTokens) else { throw bad("num_register_tokens") }
        guard !useSwigluFfn else { throw bad("use_swiglu_ffn is not supported") }
        guard hiddenAct == "gelu" else { throw bad("hidden_act \(hiddenAct) (gelu supported)") }
        guard imageMean.count == 3, imageStd.count == 3, imageStd.allSatisfy({ $0 > 0 }) else { throw bad("image_mean/std") }
    }
}

/// One pre-norm ViT block with LayerScale (HF `Dinov2Layer`).
public final class EncoderLayer: Module {
    let norm1: LayerNorm, norm2: LayerNorm
    let attn: SelfAttention
    let mlp: MLP
    let ls1: Parameter, ls2: Parameter
    private var a: Tensor?, f: Tensor?
    private var B = 0, T = 0

    init(_ prefix: String, _ c: EncoderConfig) {
        let D = c.hiddenSize
        norm1 = LayerNorm(prefix + ".norm1", D, eps: c.layerNormEps)
        norm2 = LayerNorm(prefix + ".norm2", D, eps: c.layerNormEps)
        attn = SelfAttention(prefix + ".attention", dim: D, heads: c.numAttentionHeads, layout: .huggingFace, bias: c.qkvBias)
        mlp = MLP(prefix + ".mlp", dim: D, hidden: D * c.mlpRatio)
        ls1 = Parameter(prefix + ".layer_scale1.lambda1", Tensor([D], repeating: c.layerscaleValue), decay: false)
        ls2 = Parameter(prefix + ".layer_scale2.lambda1", Tensor([D], repeating: c.layerscaleValue), decay: false)
    }

    public var parameters: [Parameter] {
        norm1.parameters + attn.parameters + [ls1] + norm2.parameters + mlp.parameters + [ls2]
    }
    func packForInference() { attn.packForInference(); mlp.packForInference() }

    func forward(_ h: Tensor, B: Int, T: Int, mode: ForwardMode) -> Tensor {
        let a = attn.forward(norm1.forward(h, mode: mode), B: B, T: T, mode: mode)
        let h1 = Ops.add(h, Ops.colScale(a, ls1.value))
        let f = mlp.forward(norm2.forward(h1, mode: mode), mode: mode)
        let h2 = Ops.add(h1, Ops.colScale(f, ls2.value))
        if mode == .training { self.a = a; self.f = f; self.B = B; self.T = T }
        return h2
    }

    func backward(_ dh: Tensor) -> Tensor {
        guard let a = a, let f = f else { preconditionFailure("EncoderLayer.backward without forward") }
        let df = Tensor(f.shape)
        Ops.colScaleBackward(dh, f, ls2.value, dx: df, dg: ls2.g)
        let dh1 = norm2.backward(mlp.backward(df)!)
        Ops.addInPlace(dh1, dh)
        let da = Tensor(a.shape)
        Ops.colScaleBackward(dh1, a, ls1.value, dx: da, dg: ls1.g)
        let dh0 = norm1.backward(attn.backward(da)!)
        Ops.addInPlace(dh0, dh1)
        return dh0
    }
}

/// A DINOv2-structured ViT (HF `Dinov2Model` / `Dinov2WithRegistersModel` key names). Its output
/// token is the final-normalized [CLS] token. Keys are relative (`embeddings.cls_token`, ...).
public final class Dinov2Encoder: Module {
    public let config: EncoderConfig
    public let clsToken: Parameter, maskToken: Parameter, registerTokens: Parameter?
    public let positionEmbeddings: Parameter
    let patchEmbed: Linear
    public let layers: [EncoderLayer]
    public let norm: LayerNorm
    // forward cache
    private var B = 0, T = 0, gh = 0, gw = 0
    private var interp: PosInterpolation?

    public init(_ config: EncoderConfig) {
        self.config = config
        let D = config.hiddenSize, p = config.patchSize, N = config.grid * config.grid
        clsToken = Parameter("embeddings.cls_token", Tensor([1, 1, D]), decay: false)
        maskToken = Parameter("embeddings.mask_token", Tensor([1, D]), decay: false)
        registerTokens = config.numRegisterTokens > 0
            ? Parameter("embeddings.register_tokens", Tensor([1, config.numRegisterTokens, D]), decay: false) : nil
        positionEmbeddings = Parameter("embeddings.position_embeddings", Tensor([1, N + 1, D]), decay: false)
        patchEmbed = Linear("embeddings.patch_embeddings.projection", 3 * p * p, D,
                            weightShape: [D, 3, p, p])
        layers = (0..<config.numHiddenLayers).map { EncoderLayer("encoder.layer.\($0)", config) }
        norm = LayerNorm("layernorm", D, eps: config.layerNormEps)
    }

    public var parameters: [Parameter] {
        [clsToken, maskToken] + (registerTokens.map { [$0] } ?? []) + [positionEmbeddings]
            + patchEmbed.parameters + layers.flatMap { $0.parameters } + norm.parameters
    }

    /// Packs every product's weight for inference (see `FlowDecoder.packForInference`).
    public func packForInference() {
        patchEmbed.packForInference()
        for l in layers { l.packForInference() }
    }

    /// ViT-style init: truncated normal(0.02) for weights and embeddings, zero biases, unit norms,
    /// LayerScale at `layerscale_value`.
    public func initialize(seed: UInt64) {
        var rng = InitRNG(seed: seed)
        for p in parameters {
            if p.key.hasSuffix(".bias") { p.value.zero() }
            else if p.key.contains("norm") || p.key.hasSuffix("layernorm.weight") { p.value.fill(1) }
            else if p.key.contains("layer_scale") { p.value.fill(config.layerscaleValue) }
            else if p.key == "embeddings.mask_token" { p.value.zero() }
            else { rng.truncNormal(p.value, std: 0.02) }
        }
    }

    /// Tokens in the sequence for an input of h x w pixels (CLS + registers + patches).
    public func sequenceLength(height: Int, width: Int) -> Int {
        1 + config.numRegisterTokens + (height / config.patchSize) * (width / config.patchSize)
    }

    /// pixels: [B, 3, H, W], already normalized. Returns (token [B, D], last hidden [B, T, D]).
    public func forward(_ pixels: Tensor, mode: ForwardMode = .inference) -> (token: Tensor, hidden: Tensor) {
        let c = config, D = c.hiddenSize, p = c.patchSize, R = c.numRegisterTokens
        let B = pixels.shape[0], H = pixels.shape[2], W = pixels.shape[3]
        precondition(pixels.rank == 4 && pixels.shape[1] == 3 && H % p == 0 && W % p == 0,
                     "encoder input \(pixels.shape) (patch \(p))")
        let gh = H / p, gw = W / p, N = gh * gw, T = 1 + R + N
        let pe = patchEmbed.forward(Ops.patchify(pixels, patch: p), mode: mode)
        // position table for this grid
        let interp: PosInterpolation? = (gh == c.grid && gw == c.grid) ? nil
            : PosInterpolation(from: c.grid, toH: gh, toW: gw, antialias: R > 0)
        let patchPos: UnsafePointer<Float>
        let interpolated: Tensor?
        if let ip = interp {
            interpolated = ip.forward(positionEmbeddings.value.data + D, dim: D)
            patchPos = UnsafePointer(interpolated!.data)
        } else {
            interpolated = nil
            patchPos = UnsafePointer(positionEmbeddings.value.data + D)
        }
        var h = Tensor(uninitialized: [B * T, D])
        for b in 0..<B {
            let row0 = h.data + b * T * D
            Ops.add(into: row0, clsToken.value.data, positionEmbeddings.value.data, count: D)
            if let r = registerTokens { (row0 + D).update(from: r.value.data, count: R * D) }
            Ops.add(into: row0 + (1 + R) * D, pe.data + b * N * D, patchPos, count: N * D)
        }
        withExtendedLifetime(interpolated) {}
        for l in layers { h = l.forward(h, B: B, T: T, mode: mode) }
        let out = norm.forward(h, mode: mode)
        let token = Tensor(uninitialized: [B, D])
        for b in 0..<B { (token.data + b * D).update(from: out.data + b * T * D, count: D) }
        if mode == .training { self.B = B; self.T = T; self.gh = gh; self.gw = gw; self.interp = interp }
        return (token, out.reshaped([B, T, D]))
    }

    /// Backward from d(token) (and optionally d(last hidden) [B, T, D]). Accumulates gradients of
    /// trainable parameters; returns d(pixels) when `needInput`.
    @discardableResult
    public func backward(dToken: Tensor, dHidden: Tensor? = nil, needInput: Bool = false) -> Tensor? {
        let c = config, D = c.hiddenSize, R = c.numRegisterTokens, B = self.B, T = self.T
        let N = gh * gw
        let dout = dHidden?.reshaped([B * T, D]) ?? Tensor([B * T, D])
        for b in 0..<B { Ops.addRows(dout.data + b * T * D, dToken.data + b * D, count: D) }
        var dh = norm.backward(dout)
        for l in layers.reversed() { dh = l.backward(dh) }
        // embeddings
        for b in 0..<B {
            let row0 = dh.data + b * T * D
            if let g = clsToken.g { Ops.addRows(g.data, row0, count: D) }
            if let g = positionEmbeddings.g, interp == nil {
                Ops.addRows(g.data, row0, count: D)
                Ops.addRows(g.data + D, row0 + (1 + R) * D, count: N * D)
            } else if let g = positionEmbeddings.g {
                Ops.addRows(g.data, row0, count: D)
                interp!.backward(row0 + (1 + R) * D, dim: D, into: g.data + D)
            }
            if let r = registerTokens, let g = r.g { Ops.addRows(g.data, row0 + D, count: R * D) }
        }
        let needPatch = needInput || patchEmbed.weight.trainable
        guard needPatch else { return nil }
        let dpe = Tensor(uninitialized: [B * N, D])
        for b in 0..<B { (dpe.data + b * N * D).update(from: dh.data + (b * T + 1 + R) * D, count: N * D) }
        let dpatch = patchEmbed.backward(dpe, needInput: needInput)
        return dpatch.map { Ops.unpatchify($0, batch: B, patch: c.patchSize, channels: 3, gridH: gh, gridW: gw) }
    }

    /// [B, 3, H, W] pixels in [0, 255] -> normalized encoder input.
    public func normalize(pixels255 x: Tensor) -> Tensor {
        let y = Tensor(uninitialized: x.shape)
        let B = x.shape[0], plane = x.shape[2] * x.shape[3]
        for b in 0..<B {
            for ch in 0..<3 {
                let m = config.imageMean[ch], s = config.imageStd[ch]
                let base = (b * 3 + ch) * plane
                for i in 0..<plane { y.data[base + i] = (x.data[base + i] / 255 - m) / s }
            }
        }
        return y
    }
}

/// Separable resize of the patch position table, exactly as PyTorch's bicubic
/// `F.interpolate(size=..., align_corners=False)` (antialias false: a = -0.75, clamped taps;
/// antialias true: PIL-style a = -0.5 filter widened when shrinking, normalized weights).
public struct PosInterpolation {
    public let src: Int, outH: Int, outW: Int
    /// Row-major [out, src] weight matrices.
    public let wy: [Double], wx: [Double]

    public init(from src: Int, toH: Int, toW: Int, antialias: Bool) {
        self.src = src; outH = toH; outW = toW
        wy = PosInterpolation.weights(src: src, out: toH, antialias: antialias)
        wx = PosInterpolation.weights(src: src, out: toW, antialias: antialias)
    }

    static func weights(src: Int, out: Int, antialias: Bool) -> [Double] {
        var m = [Double](repeating: 0, count: out * src)
        // PyTorch computes the scale in float (accscalar for float input is float for AA? it is
        // opmath float); we use Float arithmetic where it does, to match its rounding.
        let scale = Float(src) / Float(out)
        if !antialias {
            let A: Float = -0.75
            func cc1(_ x: Float) -> Float { ((A + 2) * x - (A + 3)) * x * x + 1 }
            func cc2(_ x: Float) -> Float { ((A * x - 5 * A) * x + 8 * A) * x - 4 * A }
            for i in 0..<out {
                let real = scale * (Float(i) + 0.5) - 0.5
                let fl = floorf(real)
                let t = real - fl
                let ws = [cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t)]
                for k in 0..<4 {
                    let idx = min(max(Int(fl) - 1 + k, 0), src - 1)
                    m[i * src + idx] += Double(ws[k])
                }
            }
        } else {
            let a: Float = -0.5
            func filter(_ x0: Float) -> Float {
                let x = abs(x0)
                if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
                if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
                return 0
            }
            let support: Float = scale >= 1 ? 2 * scale : 2
            let invscale: Float = scale >= 1 ? 1 / scale : 1
            for i in 0..<out {
                let center = scale * (Float(i) + 0.5)
                let xmin = max(Int(center - support + 0.5), 0)
                let xsize = min(Int(center + support + 0.5), src) - xmin
                var ws = [Float](repeating: 0, count: max(xsize, 0))
                var total: Float = 0
                for j in 0..<max(xsize, 0) {
                    let w = filter((Float(j + xmin) - center + 0.5) * invscale)
                    ws[j] = w; total += w
                }
                for j in 0..<max(xsize, 0) {
                    m[i * src + xmin + j] = Double(total != 0 ? ws[j] / total : 0)
                }
            }
        }
        return m
    }

    /// table: [src*src, dim] (row-major grid) -> [outH*outW, dim]
    public func forward(_ table: UnsafePointer<Float>, dim: Int) -> Tensor {
        let out = Tensor([outH * outW, dim])
        var acc = [Double](repeating: 0, count: dim)
        for i in 0..<outH {
            for j in 0..<outW {
                for c in 0..<dim { acc[c] = 0 }
                for a in 0..<src where wy[i * src + a] != 0 {
                    for b in 0..<src where wx[j * src + b] != 0 {
                        let w = wy[i * src + a] * wx[j * src + b]
                        let row = table + (a * src + b) * dim
                        for c in 0..<dim { acc[c] += w * Double(row[c]) }
                    }
                }
                for c in 0..<dim { out.data[(i * outW + j) * dim + c] = Float(acc[c]) }
            }
        }
        return out
    }

    /// Adjoint: into[src*src, dim] += M^T grad[outH*outW, dim]
    public func backward(_ grad: UnsafePointer<Float>, dim: Int, into: UnsafeMutablePointer<Float>) {
        for i in 0..<outH {
            for j in 0..<outW {
                let g = grad + (i * outW + j) * dim
                for a in 0..<src where wy[i * src + a] != 0 {
                    for b in 0..<src where wx[j * src + b] != 0 {
                        let w = Float(wy[i * src + a] * wx[j * src + b])
                        let row = into + (a * src + b) * dim
                        for c in 0..<dim { row[c] += w * g[c] }
                    }
                }
            }
        }
    }
}
