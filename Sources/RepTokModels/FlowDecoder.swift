import Foundation
import RepTokNN
import RepTokTensor

/// Configuration of the pixel-space flow decoder (see docs/ARCHITECTURE.md). JSON keys are
/// snake_case, as stored in a model file's `reptok.config` metadata.
public struct DecoderConfig: Codable, Equatable, Sendable {
    public var imageSize: Int
    public var patchSize: Int
    public var width: Int
    public var depth: Int
    public var numHeads: Int
    public var mlpRatio: Int = 4
    public var tokenDim: Int
    public var freqDim: Int = 256
    /// "x" (clean-image prediction, velocity loss) or "v" (velocity prediction); typed as
    /// `predictionKind` (a string here so the config's JSON, which fingerprints hash, keeps its bytes).
    public var prediction: String = "x"
    public var tEps: Float = 0.05
    public var layerNormEps: Float = 1e-6
    /// Latent skip (0: none): a linear map of the token to a k x k RGB image, upsampled
    /// bilinearly to S x S and added to the predicted clean image (prediction "x" only), so the
    /// token has a direct, linear route to the picture's layout and colours besides joint
    /// attention. Keys `latent_skip.weight` [3 k^2, token_dim], `latent_skip.bias` [3 k^2]
    /// (zero-initialized: a fresh decoder predicts what it would without the skip).
    public var skipSize: Int = 0
    /// The latent skip's image also as the network's INPUT (needs `skipSize` > 0): its patches go
    /// through their own embedding `skip_embed` ([W, 3 p^2], zero-initialized) added to the patch
    /// rows, so the network sees the token's linear picture where it is, not only as a global
    /// condition, and can refine it (at t = 1, the 1-step decode, x_t is pure noise and carries
    /// nothing). Key `skip_input`, written only when true.
    public var skipInput: Bool = false

    public init(imageSize: Int, patchSize: Int, width: Int, depth: Int, numHeads: Int, mlpRatio: Int = 4,
                tokenDim: Int, freqDim: Int = 256, prediction: String = "x", tEps: Float = 0.05,
                layerNormEps: Float = 1e-6, skipSize: Int = 0, skipInput: Bool = false) {
        self.imageSize = imageSize; self.patchSize = patchSize; self.width = width; self.depth = depth
        self.numHeads = numHeads; self.mlpRatio = mlpRatio; self.tokenDim = tokenDim; self.freqDim = freqDim
        self.prediction = prediction; self.tEps = tEps; self.layerNormEps = layerNormEps; self.skipSize = skipSize
        self.skipInput = skipInput
    }

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", patchSize = "patch_size", width, depth, numHeads = "num_heads"
        case mlpRatio = "mlp_ratio", tokenDim = "token_dim", freqDim = "freq_dim", prediction
        case tEps = "t_eps", layerNormEps = "layer_norm_eps", skipSize = "skip_size"
        case skipInput = "skip_input"
    }

    /// `skip_size` and `skip_input` are written only when set, so configs (and fingerprints) of decoders without
    /// the skip are what they were before it existed.
    public func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(imageSize, forKey: .imageSize); try c.encode(patchSize, forKey: .patchSize)
        try c.encode(width, forKey: .width); try c.encode(depth, forKey: .depth)
        try c.encode(numHeads, forKey: .numHeads); try c.encode(mlpRatio, forKey: .mlpRatio)
        try c.encode(tokenDim, forKey: .tokenDim); try c.encode(freqDim, forKey: .freqDim)
        try c.encode(prediction, forKey: .prediction); try c.encode(tEps, forKey: .tEps)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        if skipSize != 0 { try c.encode(skipSize, forKey: .skipSize) }
        if skipInput { try c.encode(skipInput, forKey: .skipInput) }
    }

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        imageSize = try c.decode(Int.self, forKey: .imageSize)
        patchSize = try c.decode(Int.self, forKey: .patchSize)
        width = try c.decode(Int.self, forKey: .width)
        depth = try c.decode(Int.self, forKey: .depth)
        numHeads = try c.decode(Int.self, forKey: .numHeads)
        mlpRatio = try c.decodeIfPresent(Int.self, forKey: .mlpRatio) ?? 4
        tokenDim = try c.decode(Int.self, forKey: .tokenDim)
        freqDim = try c.decodeIfPresent(Int.self, forKey: .freqDim) ?? 256
        prediction = try c.decodeIfPresent(String.self, forKey: .prediction) ?? "x"
        tEps = try c.decodeIfPresent(Float.self, forKey: .tEps) ?? 0.05
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-6
        skipSize = try c.decodeIfPresent(Int.self, forKey: .skipSize) ?? 0
        skipInput = try c.decodeIfPresent(Bool.self, forKey: .skipInput) ?? false
    }

    /// What the network outputs.
    public enum Prediction: String, CaseIterable, Sendable {
        /// The clean image (trained with the velocity loss).
        case x
        /// The velocity.
        case v
    }

    /// `prediction`, typed (nil for a name `validate` refuses).
    public var predictionKind: Prediction? { Prediction(rawValue: prediction) }

    public var grid: Int { imageSize / patchSize }
    public var patchFeatures: Int { 3 * patchSize * patchSize }
    public var tokens: Int { 1 + grid * grid }

    /// Throws a one-line description of the first invalid field.
    public func validate() throws {
        func bad(_ s: String) -> ModelError { .invalidConfig("decoder: " + s) }
        guard (8...4096).contains(imageSize), (1...64).contains(patchSize), imageSize % patchSize == 0 else {
            throw bad("image_size \(imageSize) / patch_size \(patchSize)")
        }
        guard (4...8192).contains(width), width % 4 == 0 else { throw bad("width \(width) must be a multiple of 4") }
        guard (1...256).contains(depth) else { throw bad("depth \(depth)") }
        guard numHeads >= 1, width % numHeads == 0 else { throw bad("num_heads \(numHeads)") }
        guard (1...16).contains(mlpRatio), (1...65536).contains(tokenDim) else { throw bad("mlp_ratio/token_dim") }
        guard freqDim >= 2, freqDim % 2 == 0, freqDim <= 4096 else { throw bad("freq_dim \(freqDim)") }
        guard predictionKind != nil else { throw bad("prediction \"\(prediction)\"") }
        guard tEps > 0, tEps < 1, layerNormEps > 0 else { throw bad("t_eps/layer_norm_eps") }
        guard (0...imageSize).contains(skipSize), skipSize <= 64 else { throw bad("skip_size \(skipSize): 0-\(min(imageSize, 64))") }
        guard skipSize == 0 || predictionKind == .x else { throw bad("skip_size needs prediction \"x\"") }
        guard !skipInput || skipSize > 0 else { throw bad("skip_input needs skip_size > 0") }
    }

    /// Multiply-adds x2 for one forward pass at batch 1 (matmuls and attention).
    public var forwardFLOPs: Double {
        let T = Double(tokens), W = Double(width), M = Double(width * mlpRatio), N = Double(grid * grid)
        let perBlock = 2 * T * W * 3 * W + 2 * T * W * W + 2 * 2 * T * W * M + 2 * 2 * T * T * W
        let io = 2 * N * Double(patchFeatures) * W * (skipInput ? 3 : 2)
        return Double(depth) * perBlock + io
    }
}

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(String)
    case missingTensor(String)
    case shapeMismatch(String, expected: [Int], got: [Int])
    case unexpectedTensor(String)
    case badFile(String)

    public var description: String {
        switch self {
        case .invalidConfig(let s): return "invalid model config: \(s)"
        case .missingTensor(let k): return "model file lacks tensor \(k)"
        case .shapeMismatch(let k, let e, let g): return "tensor \(k) has shape \(g), expected \(e)"
        case .unexpectedTensor(let k): return "model file has unexpected tensor \(k)"
        case .badFile(let s): return s
        }
    }
}

/// One decoder block: adaLN-Zero modulated attention and MLP (joint attention over the latent
/// token and the patch tokens).
final class DecoderBlock: Module {
    let ada: Linear
    let norm1: LayerNorm, norm2: LayerNorm
    let attn: SelfAttention
    let mlp: MLP
    let W: Int
    private var B = 0, T = 0
    private var mod: Tensor?, n1: Tensor?, n2: Tensor?, a: Tensor?, f: Tensor?

    init(_ prefix: String, _ c: DecoderConfig) {
        W = c.width
        ada = Linear(prefix + ".ada", W, 6 * W)
        norm1 = LayerNorm(prefix + ".norm1", W, eps: c.layerNormEps, affine: false)
        norm2 = LayerNorm(prefix + ".norm2", W, eps: c.layerNormEps, affine: false)
        attn = SelfAttention(prefix + ".attn", dim: W, heads: c.numHeads, layout: .packed)
        mlp = MLP(prefix + ".mlp", dim: W, hidden: W * c.mlpRatio)
    }

    var parameters: [Parameter] { ada.parameters + attn.parameters + mlp.parameters }
    func packForInference() { ada.packForInference(); attn.packForInference(); mlp.packForInference() }

    /// The plain batched path: h [B*T, W], cs = silu(c) [B, W]; returns the new h. `.training`
    /// keeps the activations for `backward` (and leaves h as it was); `.inference` updates h in
    /// place. The packed row paths are `inferRows` (FlowDecoder.infer chooses).
    func forward(_ h: Tensor, _ cs: Tensor, B: Int, T: Int, mode: ForwardMode) -> Tensor {
        let training = mode == .training
        let mod = ada.forward(cs, mode: mode)
        let n1 = norm1.forward(h, mode: mode)
        let m1 = Ops.modulate(n1, B: B, mod: mod, shiftAt: 0, scaleAt: W)
        let a = attn.forward(m1, B: B, T: T, mode: mode)
        // norm1 keeps h for its backward when training; at inference h is updated in place.
        let h1 = training ? h.clone() : h
        Ops.gateAdd(h1, a, B: B, mod: mod, gateAt: 2 * W)
        let n2 = norm2.forward(h1, mode: mode)
        let m2 = Ops.modulate(n2, B: B, mod: mod, shiftAt: 3 * W, scaleAt: 4 * W)
        let f = mlp.forward(m2, mode: mode)
        // norm2 keeps h1 for its backward, so the second residual goes to a new tensor.
        let h2 = training ? h1.clone() : h1
        Ops.gateAdd(h2, f, B: B, mod: mod, gateAt: 5 * W)
        if training { self.mod = mod; self.n1 = n1; self.n2 = n2; self.a = a; self.f = f; self.B = B; self.T = T }
        return h2
    }

    /// The packed products of the row-parallel inference path (nil: some product has no pack).
    struct RowPacks { let qkv: PackedWeight, proj: PackedWeight, fc1: PackedWeight, fc2: PackedWeight }
    var rowPacks: RowPacks? {
        guard let q = attn.qkvLinear?.packedWeight, let p = attn.proj.packedWeight,
              let f1 = mlp.fc1.packedWeight, let f2 = mlp.fc2.packedWeight else { return nil }
        return RowPacks(qkv: q, proj: p, fc1: f1, fc2: f2)
    }

    /// Inference of one picture's T token rows (h, updated in place; md = its 6W modulation row)
    /// with packed weights, cut into row ranges that may run on different threads: `run(regions)`
    /// must call each region for every range, all of region 0 before any of region 1 (region 0:
    /// LN, modulate, qkv; region 1, which needs every row's K and V: attention for the range's
    /// query rows with the packed kernel, proj, residual, LN, modulate, MLP, residual). Every
    /// kernel gives a row the same bits whatever rows it runs with, so neither the ranges nor
    /// the threads change the result.
    func inferRows(_ h: UnsafeMutablePointer<Float>, md: UnsafePointer<Float>, T: Int, packs k: RowPacks,
                   ranges: [(Int, Int)], run: ((Int) -> Void, (Int) -> Void) -> Void) {
        let W = self.W, C3 = 3 * W, F = k.fc1.N, heads = attn.heads
        let (e1, e2) = (norm1.eps, norm2.eps)
        let bq = attn.qkvLinear?.bias?.value, bp = attn.proj.bias?.value, b1 = mlp.fc1.bias?.value, b2 = mlp.fc2.bias?.value
        let qkv = Tensor(uninitialized: [T, C3]), nb = Tensor(uninitialized: [T, W]), mb = Tensor(uninitialized: [T, W])
        let o = Tensor(uninitialized: [T, W]), a = Tensor(uninitialized: [T, W])
        let f1 = Tensor(uninitialized: [T, F]), stats = Tensor(uninitialized: [2, T])
        let most = ranges.map { $0.1 - $0.0 }.max() ?? 0
        let per = (Attention.queryRowsScratch(T: T, dh: W / heads, rows: most) + 15) / 16 * 16
        let scratch = Tensor(uninitialized: [ranges.count, per])
        run({ c in
            let (r0, r1) = ranges[c], n = r1 - r0
            guard n > 0 else { return }
            Ops.layerNormRows(into: nb.data, h, rows: r0, r1, width: W, eps: e1, mean: stats.data, rstd: stats.data + T)
            Ops.modulateRows(into: mb.data + r0 * W, nb.data + r0 * W, rows: n, width: W, shift: md, scale: md + W)
            Ops.linearOneThread(into: qkv.data + r0 * C3, ldy: C3, mb.data + r0 * W, ldx: W, n: n, packed: k.qkv, bq)
        }, { c in
            let (r0, r1) = ranges[c], n = r1 - r0
            guard n > 0 else { return }
            Attention.queryRows(qkv.data, T: T, heads: heads, width: W, r0: r0, r1: r1, out: o.data, ldo: W,
                                scratch: scratch.data + c * per)
            Ops.linearOneThread(into: a.data + r0 * W, ldy: W, o.data + r0 * W, ldx: W, n: n, packed: k.proj, bp)
            Ops.gateAddRows(h + r0 * W, a.data + r0 * W, rows: n, width: W, gate: md + 2 * W)
            Ops.layerNormRows(into: nb.data, h, rows: r0, r1, width: W, eps: e2, mean: stats.data, rstd: stats.data + T)
            Ops.modulateRows(into: mb.data + r0 * W, nb.data + r0 * W, rows: n, width: W, shift: md + 3 * W, scale: md + 4 * W)
            Ops.linearOneThread(into: f1.data + r0 * F, ldy: F, mb.data + r0 * W, ldx: W, n: n, packed: k.fc1, b1, activation: .gelu)
            Ops.linearOneThread(into: a.data + r0 * W, ldy: W, f1.data + r0 * F, ldx: F, n: n, packed: k.fc2, b2)
            Ops.gateAddRows(h + r0 * W, a.data + r0 * W, rows: n, width: W, gate: md + 5 * W)
        })
    }

    /// Batch-1 inference (a codec decode): the rows cut in two by shape, each half on its own
    /// thread, two synchronizations per block instead of one per operation. h is updated in place.
    func inferRowSplit(_ h: Tensor, _ cs: Tensor, T: Int, packs k: RowPacks) {
        let mod = ada.forward(cs, mode: .inference)
        let half = PackedWeight.firstHalf(T)
        inferRows(h.data, md: mod.data, T: T, packs: k, ranges: [(0, half), (half, T)]) { r0, r1 in
            Engine.parallelFor(2, r0)
            Engine.parallelFor(2, r1)
        }
    }

    /// dh: gradient of the block output. Returns dh for the block input; accumulates into dcs.
    func backward(_ dh: Tensor, dcs: Tensor) -> Tensor {
        guard let mod = mod, let n1 = n1, let n2 = n2, let a = a, let f = f else {
            preconditionFailure("DecoderBlock.backward without forward")
        }
        let dmod = Tensor(mod.shape)
        // MLP branch
        let df = Tensor(f.shape)
        Ops.gateAddBackward(dh, f, B: B, mod: mod, dmod: dmod, gateAt: 5 * W, dy: df)
        let dm2 = mlp.backward(df)!
        let dn2 = Tensor(n2.shape)
        Ops.modulateBackward(dm2, n2, B: B, mod: mod, dmod: dmod, shiftAt: 3 * W, scaleAt: 4 * W, dx: dn2)
        let dh1 = norm2.backward(dn2)
        Ops.addInPlace(dh1, dh)
        // attention branch
        let da = Tensor(a.shape)
        Ops.gateAddBackward(dh1, a, B: B, mod: mod, dmod: dmod, gateAt: 2 * W, dy: da)
        let dm1 = attn.backward(da)!
        let dn1 = Tensor(n1.shape)
        Ops.modulateBackward(dm1, n1, B: B, mod: mod, dmod: dmod, shiftAt: 0, scaleAt: W, dx: dn1)
        let dh0 = norm1.backward(dn1)
        Ops.addInPlace(dh0, dh1)
        let dc = ada.backward(dmod)!
        Ops.addInPlace(dcs, dc)
        return dh0
    }
}

/// The RepTok flow decoder: noisy image + time + latent token -> velocity.
public final class FlowDecoder: Module {
    public let config: DecoderConfig
    let patchEmbed: Linear, latentEmbed: Linear
    let latentSkip: Linear?
    /// The skip image's patch embedding (`skip_input`).
    let skipEmbed: Linear?
    let tFc1: Linear, tFc2: Linear
    let blocks: [DecoderBlock]
    let finalAda: Linear, finalNorm: LayerNorm, finalLinear: Linear
    let pos: Tensor
    // forward cache
    private var B = 0
    private var tf: Tensor?, c1: Tensor?, c: Tensor?, cs: Tensor?, finalMod: Tensor?, finalN: Tensor?

    public init(_ config: DecoderConfig) {
        self.config = config
        let W = config.width, P = config.patchFeatures
        patchEmbed = Linear("patch_embed", P, W)
        latentEmbed = Linear("latent_embed", config.tokenDim, W)
        let k = config.skipSize
        latentSkip = k > 0 ? Linear("latent_skip", config.tokenDim, 3 * k * k) : nil
        skipEmbed = config.skipInput ? Linear("skip_embed", P, W) : nil
        tFc1 = Linear("t_embed.fc1", config.freqDim, W)
        tFc2 = Linear("t_embed.fc2", W, W)
        blocks = (0..<config.depth).map { DecoderBlock("blocks.\($0)", config) }
        finalAda = Linear("final.ada", W, 2 * W)
        finalNorm = LayerNorm("final.norm", W, eps: config.layerNormEps, affine: false)
        finalLinear = Linear("final.linear", W, P)
        pos = Ops.sincos2D(gridH: config.grid, gridW: config.grid, dim: W)
    }

    public var parameters: [Parameter] {
        patchEmbed.parameters + latentEmbed.parameters + tFc1.parameters + tFc2.parameters
            + blocks.flatMap { $0.parameters } + finalAda.parameters + finalLinear.parameters
            + (latentSkip?.parameters ?? []) + (skipEmbed?.parameters ?? [])
    }

    /// Packs every product's weight for inference (`Linear.packForInference`): call once the
    /// weights are final, as a codec model does after loading. Training forwards drop the packs.
    public func packForInference() {
        for l in [patchEmbed, latentEmbed, tFc1, tFc2, finalAda, finalLinear] + (latentSkip.map { [$0] } ?? []) + (skipEmbed.map { [$0] } ?? []) {
            l.packForInference()
        }
        for b in blocks { b.packForInference() }
    }

    /// Xavier-uniform weights, zero biases, zero adaLN and output layers (adaLN-Zero).
    public func initialize(seed: UInt64) {
        var rng = InitRNG(seed: seed)
        for p in parameters {
            if p.key.hasSuffix(".bias") { p.value.zero() } else { rng.xavier(p.value) }
        }
        for p in blocks.flatMap({ $0.ada.parameters }) + finalAda.parameters + finalLinear.parameters
            + (latentSkip?.parameters ?? []) + (skipEmbed?.parameters ?? []) {
            p.value.zero()
        }
        // t_embed as DiT: normal(0.02)
        rng.fillNormal(tFc1.weight.value, std: 0.02)
        rng.fillNormal(tFc2.weight.value, std: 0.02)
    }

    /// How `infer` runs the blocks on a batch (`inferencePath(batch:)` chooses by shape and packs).
    /// The embeddings before the blocks and the output head after them are shared by every path
    /// (and by the training forward), so a decoder feature such as the latent skip lives in one place.
    public enum InferencePath: Equatable, Sendable {
        /// Batch 1 with packed weights (a codec decode): each block's rows cut in two by shape,
        /// the halves on two threads, two synchronizations per block (`DecoderBlock.inferRows`).
        case rowSplit
        /// Batch > 1 with packed weights: each picture runs the whole stack on one thread,
        /// pictures spread over the threads, no synchronization inside. The same kernels as
        /// `rowSplit`, each row-invariant, so a picture's bits are its batch-1 bits whatever the
        /// batch or the thread count.
        case perPicture
        /// No packs (a CPU without AVX2/FMA, or weights a training forward has touched since
        /// `packForInference`): the training forward's batched OpenBLAS path, keeping nothing.
        case batched
    }

    /// The path `infer` takes for a batch of B pictures (an empty batch: `batched`, as before).
    public func inferencePath(batch B: Int) -> InferencePath {
        guard B >= 1, !blocks.isEmpty, blocks.allSatisfy({ $0.rowPacks != nil }) else { return .batched }
        return B == 1 ? .rowSplit : .perPicture
    }

    /// Raw network output [B, 3, S, S] (the clean image for prediction "x", else the velocity).
    /// `.training` is the plain batched forward that keeps the activations for `backward` (and
    /// drops the weight packs); `.inference` is `infer`.
    public func forward(_ xt: Tensor, t: [Float], z: Tensor, mode: ForwardMode) -> Tensor {
        run(xt, t: t, z: z, mode: mode)
    }

    /// Inference, the one entry for every batch size: the raw output [B, 3, S, S], keeping no
    /// state (concurrent calls are safe), the blocks run by `inferencePath(batch: B)`.
    public func infer(_ xt: Tensor, t: [Float], z: Tensor) -> Tensor {
        run(xt, t: t, z: z, mode: .inference)
    }

    private func run(_ xt: Tensor, t: [Float], z: Tensor, mode: ForwardMode) -> Tensor {
        let cfg = config, B = xt.shape[0], W = cfg.width, N = cfg.grid * cfg.grid, T = cfg.tokens
        precondition(xt.shape == [B, 3, cfg.imageSize, cfg.imageSize] && t.count == B && z.count == B * cfg.tokenDim,
                     "decoder input shapes x_t \(xt.shape) t \(t.count) z \(z.shape)")
        let training = mode == .training
        let tf = Ops.fourierFeatures(t, dim: cfg.freqDim)
        let c1 = tFc1.forward(tf, mode: mode)
        let c = tFc2.forward(Ops.silu(c1), mode: mode)
        let cs = Ops.silu(c)
        let pe = patchEmbed.forward(Ops.patchify(xt, patch: cfg.patchSize), mode: mode)
        // the latent skip's picture: added to the output, and with skip_input embedded as input
        var up: Tensor? = nil
        if let skip = latentSkip {
            let k = cfg.skipSize
            let s = skip.forward(z, mode: mode)
            up = Ops.upsampleBilinear(Tensor([B, 3, k, k], s.array), size: cfg.imageSize)
        }
        if let se = skipEmbed, let up = up {
            Ops.addInPlace(pe, se.forward(Ops.patchify(up, patch: cfg.patchSize), mode: mode))
        }
        let lat = latentEmbed.forward(z, mode: mode)
        var h = Tensor(uninitialized: [B * T, W])
        for b in 0..<B {
            (h.data + b * T * W).update(from: lat.data + b * W, count: W)
            let dst = h.data + (b * T + 1) * W
            (dst).update(from: pe.data + b * N * W, count: N * W)
            Ops.addRows(dst, pos.data, count: N * W)
        }
        switch training ? .batched : inferencePath(batch: B) {
        case .batched:
            for blk in blocks { h = blk.forward(h, cs, B: B, T: T, mode: mode) }
        case .rowSplit:
            for blk in blocks { blk.inferRowSplit(h, cs, T: T, packs: blk.rowPacks!) }
        case .perPicture:
            let packs = blocks.map { $0.rowPacks! }
            let mods = blocks.map { $0.ada.forward(cs, mode: .inference) }
            let S = 6 * W
            Engine.parallelFor(B) { b in
                for (i, blk) in blocks.enumerated() {
                    blk.inferRows(h.data + b * T * W, md: mods[i].data + b * S, T: T, packs: packs[i],
                                  ranges: [(0, T)]) { r0, r1 in r0(0); r1(0) }
                }
            }
        }
        let fmod = finalAda.forward(cs, mode: mode)
        let hp = Tensor(uninitialized: [B * N, W])
        for b in 0..<B { (hp.data + b * N * W).update(from: h.data + (b * T + 1) * W, count: N * W) }
        let fn = finalNorm.forward(hp, mode: mode)
        let fm = Ops.modulate(fn, B: B, mod: fmod, shiftAt: 0, scaleAt: W)
        let o = finalLinear.forward(fm, mode: mode)
        if training { self.B = B; self.tf = tf; self.c1 = c1; self.c = c; self.cs = cs; finalMod = fmod; finalN = fn }
        let img = Ops.unpatchify(o, batch: B, patch: cfg.patchSize, channels: 3, gridH: cfg.grid, gridW: cfg.grid)
        if let up = up { Ops.addInPlace(img, up) }
        return img
    }

    /// Gradients for a loss on the raw output: accumulates parameter gradients, returns
    /// (d x_t, d z). Call after `forward(..., mode: .training)`.
    public func backward(_ dout: Tensor, needInput: Bool = true) -> (dxt: Tensor?, dz: Tensor) {
        guard let cs = cs, let c = c, let c1 = c1, let fmod = finalMod, let fn = finalN else {
            preconditionFailure("FlowDecoder.backward without a cached forward")
        }
        let cfg = config, B = self.B, W = cfg.width, N = cfg.grid * cfg.grid, T = cfg.tokens
        let dO = Ops.patchify(dout, patch: cfg.patchSize)
        let dfm = finalLinear.backward(dO)!
        let dfmod = Tensor(fmod.shape), dfn = Tensor(fn.shape)
        Ops.modulateBackward(dfm, fn, B: B, mod: fmod, dmod: dfmod, shiftAt: 0, scaleAt: W, dx: dfn)
        let dhp = finalNorm.backward(dfn)
        let dcs = finalAda.backward(dfmod)!
        var dh = Tensor([B * T, W])
        for b in 0..<B { (dh.data + (b * T + 1) * W).update(from: dhp.data + b * N * W, count: N * W) }
        for blk in blocks.reversed() { dh = blk.backward(dh, dcs: dcs) }
        // latent token rows and patch rows
        let dlat = Tensor(uninitialized: [B, W]), dpe = Tensor(uninitialized: [B * N, W])
        for b in 0..<B {
            (dlat.data + b * W).update(from: dh.data + b * T * W, count: W)
            (dpe.data + b * N * W).update(from: dh.data + (b * T + 1) * W, count: N * W)
        }
        let dz = latentEmbed.backward(dlat)!
        if let skip = latentSkip {
            let k = cfg.skipSize
            var dup = dout
            if let se = skipEmbed {
                // the skip picture's gradient: the output's plus its input embedding's
                let dsp = se.backward(dpe)!
                dup = Ops.unpatchify(dsp, batch: B, patch: cfg.patchSize, channels: 3, gridH: cfg.grid, gridW: cfg.grid)
                Ops.addInPlace(dup, dout)
            }
            let ds = Ops.upsampleBilinearBackward(dup, from: k)
            Ops.addInPlace(dz, skip.backward(Tensor([B, 3 * k * k], ds.array))!)
        }
        let dpatches = patchEmbed.backward(dpe, needInput: needInput)
        // time path
        let dc = Tensor(c.shape)
        Ops.siluBackward(dcs, c, dx: dc)
        let da1 = tFc2.backward(dc)!
        let dc1 = Tensor(c1.shape)
        Ops.siluBackward(da1, c1, dx: dc1)
        tFc1.backward(dc1, needInput: false)
        let dxt = dpatches.map {
            Ops.unpatchify($0, batch: B, patch: cfg.patchSize, channels: 3, gridH: cfg.grid, gridW: cfg.grid)
        }
        return (dxt, dz)
    }

    /// Velocity from the raw output (prediction "x": v = (x_t - out) / max(t, t_eps)).
    public func velocity(_ xt: Tensor, t: [Float], out: Tensor) -> Tensor {
        if config.predictionKind == .v { return out }
        let B = xt.shape[0], per = xt.count / B
        let v = Tensor(uninitialized: xt.shape)
        for b in 0..<B {
            let k = 1 / max(t[b], config.tEps)
            for i in b * per..<(b + 1) * per { v.data[i] = (xt.data[i] - out.data[i]) * k }
        }
        return v
    }

    /// Chain rule through `velocity`: given dL/dv returns (dL/dout, dL/dx_t contribution or nil).
    public func velocityBackward(_ dv: Tensor, t: [Float]) -> (dout: Tensor, dxt: Tensor?) {
        if config.predictionKind == .v { return (dv, nil) }
        let B = dv.shape[0], per = dv.count / B
        let dout = Tensor(uninitialized: dv.shape), dxt = Tensor(uninitialized: dv.shape)
        for b in 0..<B {
            let k = 1 / max(t[b], config.tEps)
            for i in b * per..<(b + 1) * per { dxt.data[i] = dv.data[i] * k; dout.data[i] = -dv.data[i] * k }
        }
        return (dout, dxt)
    }

    /// The velocity field v(x_t, t | z), for samplers.
    public func predictVelocity(_ xt: Tensor, t: [Float], z: Tensor) -> Tensor {
        velocity(xt, t: t, out: infer(xt, t: t, z: z))
    }
}
