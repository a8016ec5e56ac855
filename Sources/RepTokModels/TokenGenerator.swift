import Foundation
import RepTokNN
import RepTokTensor

/// Configuration of the token-space generator: a flow model over ONE latent token (RepTok's
/// second half). JSON keys are snake_case, stored as the `generator` part of `reptok.config`.
public struct GeneratorConfig: Codable, Equatable, Sendable {
    /// Dimension of the token it generates (the codec model's token).
    public var tokenDim: Int
    public var width: Int
    public var depth: Int
    public var mlpRatio: Int = 4
    public var freqDim: Int = 256
    /// Class names (ImageFolder layout); the embedding table has one more row, the null class
    /// used for classifier-free guidance.
    public var classes: [String]
    public var layerNormEps: Float = 1e-6

    public init(tokenDim: Int, width: Int, depth: Int, mlpRatio: Int = 4, freqDim: Int = 256,
                classes: [String], layerNormEps: Float = 1e-6) {
        self.tokenDim = tokenDim; self.width = width; self.depth = depth; self.mlpRatio = mlpRatio
        self.freqDim = freqDim; self.classes = classes; self.layerNormEps = layerNormEps
    }

    enum CodingKeys: String, CodingKey {
        case tokenDim = "token_dim", width, depth, mlpRatio = "mlp_ratio", freqDim = "freq_dim", classes
        case layerNormEps = "layer_norm_eps"
    }

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        tokenDim = try c.decode(Int.self, forKey: .tokenDim)
        width = try c.decode(Int.self, forKey: .width)
        depth = try c.decode(Int.self, forKey: .depth)
        mlpRatio = try c.decodeIfPresent(Int.self, forKey: .mlpRatio) ?? 4
        freqDim = try c.decodeIfPresent(Int.self, forKey: .freqDim) ?? 256
        classes = try c.decode([String].self, forKey: .classes)
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-6
    }

    /// The null (unconditional) class index.
    public var nullClass: Int { classes.count }

    public func validate() throws {
        func bad(_ s: String) -> ModelError { .invalidConfig("generator: " + s) }
        guard (1...65536).contains(tokenDim) else { throw bad("token_dim \(tokenDim)") }
        guard (4...8192).contains(width), (1...256).contains(depth), (1...16).contains(mlpRatio) else {
            throw bad("width \(width) / depth \(depth) / mlp_ratio \(mlpRatio)")
        }
        guard freqDim >= 2, freqDim % 2 == 0, freqDim <= 4096 else { throw bad("freq_dim \(freqDim)") }
        guard (1...100_000).contains(classes.count) else { throw bad("\(classes.count) classes") }
        guard Set(classes).count == classes.count, classes.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 255 }) else {
            throw bad("class names must be distinct, 1-255 bytes")
        }
        guard layerNormEps > 0 else { throw bad("layer_norm_eps") }
    }
}

/// One residual MLP block with adaptive LayerNorm (shift, scale, gate from the condition).
final class GeneratorBlock: Module {
    let ada: Linear
    let norm: LayerNorm
    let mlp: MLP
    let W: Int
    private var B = 0
    private var mod: Tensor?, n: Tensor?, f: Tensor?

    init(_ prefix: String, _ c: GeneratorConfig) {
        W = c.width
        ada = Linear(prefix + ".ada", W, 3 * W)
        norm = LayerNorm(prefix + ".norm", W, eps: c.layerNormEps, affine: false)
        mlp = MLP(prefix + ".mlp", dim: W, hidden: W * c.mlpRatio)
    }

    var parameters: [Parameter] { ada.parameters + mlp.parameters }
    func packForInference() { ada.packForInference(); mlp.packForInference() }

    func forward(_ h: Tensor, _ cs: Tensor, B: Int, mode: ForwardMode) -> Tensor {
        let mod = ada.forward(cs, mode: mode)
        let n = norm.forward(h, mode: mode)
        let m = Ops.modulate(n, B: B, mod: mod, shiftAt: 0, scaleAt: W)
        let f = mlp.forward(m, mode: mode)
        let h1 = mode == .training ? h.clone() : h
        Ops.gateAdd(h1, f, B: B, mod: mod, gateAt: 2 * W)
        if mode == .training { self.mod = mod; self.n = n; self.f = f; self.B = B }
        return h1
    }

    func backward(_ dh: Tensor, dcs: Tensor) -> Tensor {
        guard let mod = mod, let n = n, let f = f else { preconditionFailure("GeneratorBlock.backward without forward") }
        let dmod = Tensor(mod.shape)
        let df = Tensor(f.shape)
        Ops.gateAddBackward(dh, f, B: B, mod: mod, dmod: dmod, gateAt: 2 * W, dy: df)
        let dm = mlp.backward(df)!
        let dn = Tensor(n.shape)
        Ops.modulateBackward(dm, n, B: B, mod: mod, dmod: dmod, shiftAt: 0, scaleAt: W, dx: dn)
        let dh0 = norm.backward(dn)
        Ops.addInPlace(dh0, dh)
        Ops.addInPlace(dcs, ada.backward(dmod)!)
        return dh0
    }
}

/// Flow model over the (normalized) token: (x_t, t, class) -> velocity eps - x. Keys:
/// `in_proj`, `t_embed.fc1/fc2`, `class_embed` [classes + 1, width], `blocks.i.ada/mlp.fc1/fc2`,
/// `final.ada`, `final.linear` (documented in docs/ARCHITECTURE.md).
public final class TokenGenerator: Module {
    public let config: GeneratorConfig
    let inProj: Linear
    let tFc1: Linear, tFc2: Linear
    public let classEmbed: Parameter
    let blocks: [GeneratorBlock]
    let finalAda: Linear, finalNorm: LayerNorm, finalLinear: Linear
    private var B = 0
    private var c1: Tensor?, c: Tensor?, cs: Tensor?, labels: [Int] = [], finalMod: Tensor?, finalN: Tensor?

    public init(_ config: GeneratorConfig) {
        self.config = config
        let W = config.width, D = config.tokenDim
        inProj = Linear("in_proj", D, W)
        tFc1 = Linear("t_embed.fc1", config.freqDim, W)
        tFc2 = Linear("t_embed.fc2", W, W)
        classEmbed = Parameter("class_embed", Tensor([config.classes.count + 1, W]), decay: false)
        blocks = (0..<config.depth).map { GeneratorBlock("blocks.\($0)", config) }
        finalAda = Linear("final.ada", W, 2 * W)
        finalNorm = LayerNorm("final.norm", W, eps: config.layerNormEps, affine: false)
        finalLinear = Linear("final.linear", W, D)
    }

    public var parameters: [Parameter] {
        inProj.parameters + tFc1.parameters + tFc2.parameters + [classEmbed]
            + blocks.flatMap { $0.parameters } + finalAda.parameters + finalLinear.parameters
    }

    /// Packs every product's weight for inference (see `FlowDecoder.packForInference`).
    public func packForInference() {
        for l in [inProj, tFc1, tFc2, finalAda, finalLinear] { l.packForInference() }
        for b in blocks { b.packForInference() }
    }

    /// Xavier weights, zero biases, N(0, 0.02) time and class embeddings, zero adaLN and output
    /// layers (adaLN-Zero: the model starts at v = 0).
    public func initialize(seed: UInt64) {
        var rng = InitRNG(seed: seed)
        for p in parameters {
            if p.key.hasSuffix(".bias") { p.value.zero() } else { rng.xavier(p.value) }
        }
        for p in blocks.flatMap({ $0.ada.parameters }) + finalAda.parameters + finalLinear.parameters { p.value.zero() }
        rng.fillNormal(tFc1.weight.value, std: 0.02)
        rng.fillNormal(tFc2.weight.value, std: 0.02)
        rng.fillNormal(classEmbed.value, std: 0.02)
    }

    /// Velocity [B, D] for x_t [B, D], t and class labels (nullClass = unconditional).
    public func forward(_ xt: Tensor, t: [Float], labels: [Int], mode: ForwardMode = .inference) -> Tensor {
        let cfg = config, B = xt.shape[0], W = cfg.width
        precondition(xt.count == B * cfg.tokenDim && t.count == B && labels.count == B,
                     "generator input shapes x_t \(xt.shape) t \(t.count) labels \(labels.count)")
        precondition(labels.allSatisfy { (0...cfg.nullClass).contains($0) }, "generator: class label out of range")
        let c1 = tFc1.forward(Ops.fourierFeatures(t, dim: cfg.freqDim), mode: mode)
        let c = tFc2.forward(Ops.silu(c1), mode: mode)
        for b in 0..<B { Ops.addRows(c.data + b * W, classEmbed.value.data + labels[b] * W, count: W) }
        let cs = Ops.silu(c)
        var h = inProj.forward(xt.reshaped([B, cfg.tokenDim]), mode: mode)
        for blk in blocks { h = blk.forward(h, cs, B: B, mode: mode) }
        let fmod = finalAda.forward(cs, mode: mode)
        let fn = finalNorm.forward(h, mode: mode)
        let fm = Ops.modulate(fn, B: B, mod: fmod, shiftAt: 0, scaleAt: W)
        let out = finalLinear.forward(fm, mode: mode)
        if mode == .training { self.B = B; self.c1 = c1; self.c = c; self.cs = cs; self.labels = labels; finalMod = fmod; finalN = fn }
        return out
    }

    /// Accumulates parameter gradients for dL/d(velocity); returns dL/dx_t. After a cached forward.
    @discardableResult
    public func backward(_ dv: Tensor) -> Tensor {
        guard cs != nil, let c = c, let c1 = c1, let fmod = finalMod, let fn = finalN else {
            preconditionFailure("TokenGenerator.backward without a cached forward")
        }
        let B = self.B, W = config.width
        let dfm = finalLinear.backward(dv)!
        let dfmod = Tensor(fmod.shape), dfn = Tensor(fn.shape)
        Ops.modulateBackward(dfm, fn, B: B, mod: fmod, dmod: dfmod, shiftAt: 0, scaleAt: W, dx: dfn)
        var dh = finalNorm.backward(dfn)
        let dcs = finalAda.backward(dfmod)!
        for blk in blocks.reversed() { dh = blk.backward(dh, dcs: dcs) }
        let dx = inProj.backward(dh)!
        let dc = Tensor(c.shape)
        Ops.siluBackward(dcs, c, dx: dc)
        for b in 0..<B { Ops.addRows(classEmbed.grad.data + labels[b] * W, dc.data + b * W, count: W) }
        let da1 = tFc2.backward(dc)!
        let dc1 = Tensor(c1.shape)
        Ops.siluBackward(da1, c1, dx: dc1)
        tFc1.backward(dc1, needInput: false)
        return dx
    }

    /// Classifier-free guided velocity: v_null + s (v_class - v_null) for t in [lo, hi], else
    /// v_class (s = 1 or an unconditional label: one pass).
    public func guidedVelocity(_ xt: Tensor, t: [Float], labels: [Int], scale: Float,
                               interval: ClosedRange<Float> = 0...1) -> Tensor {
        let B = xt.shape[0], D = config.tokenDim
        let guided = (0..<B).filter { scale != 1 && labels[$0] != config.nullClass && interval.contains(t[$0]) }
        let v = forward(xt, t: t, labels: labels)
        guard !guided.isEmpty else { return v }
        let vu = forward(xt, t: t, labels: [Int](repeating: config.nullClass, count: B))
        for b in guided {
            for i in b * D..<(b + 1) * D { v.data[i] = vu.data[i] + scale * (v.data[i] - vu.data[i]) }
        }
        return v
    }
}
