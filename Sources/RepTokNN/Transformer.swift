import RepTokTensor

/// Multi-head self-attention with an output projection.
///
/// Two checkpoint layouts: `.packed` (one `qkv` Linear [3D, D], rows q|k|v, and `proj`; used by
/// the flow decoder) and `.huggingFace` (Hugging Face ViT/DINOv2: `attention.query`,
/// `attention.key`, `attention.value`, `output.dense`; used by the encoder). Both compute into
/// one packed [N, 3D] buffer, so the attention kernel is shared.
public final class SelfAttention: Module {
    public enum Layout { case packed, huggingFace }
    public let dim: Int, heads: Int
    public let layout: Layout
    let qkv: Linear?
    let q: Linear?, k: Linear?, v: Linear?
    public let proj: Linear
    private var input: Tensor?, packed: Tensor?, cacheAttn: Attention.Cache?
    private var B = 0, T = 0

    public init(_ prefix: String, dim: Int, heads: Int, layout: Layout, bias: Bool = true) {
        precondition(dim % heads == 0, "attention: width \(dim) not divisible by \(heads) heads")
        self.dim = dim; self.heads = heads; self.layout = layout
        switch layout {
        case .packed:
            qkv = Linear(prefix + ".qkv", dim, 3 * dim, bias: bias)
            q = nil; k = nil; v = nil
            proj = Linear(prefix + ".proj", dim, dim)
        case .huggingFace:
            qkv = nil
            q = Linear(prefix + ".attention.query", dim, dim, bias: bias)
            k = Linear(prefix + ".attention.key", dim, dim, bias: bias)
            v = Linear(prefix + ".attention.value", dim, dim, bias: bias)
            proj = Linear(prefix + ".output.dense", dim, dim)
        }
    }

    public var parameters: [Parameter] {
        (qkv.map { $0.parameters } ?? [q!, k!, v!].flatMap { $0.parameters }) + proj.parameters
    }

    /// The packed-layout qkv projection (nil for the Hugging Face layout).
    public var qkvLinear: Linear? { qkv }

    /// Every product layer (for `packForInference`).
    public var linears: [Linear] { (qkv.map { [$0] } ?? [q!, k!, v!]) + [proj] }
    public func packForInference() { for l in linears { l.packForInference() } }

    /// x: [B*T, D] -> [B*T, D]
    public func forward(_ x: Tensor, B: Int, T: Int, mode: ForwardMode = .training) -> Tensor {
        let n = B * T, training = mode == .training
        let buf: Tensor
        if training { for l in linears { l.dropPack() } }
        if let qkv = qkv {
            buf = qkv.product(x, mode: mode)
        } else {
            buf = Tensor(uninitialized: [n, 3 * dim])
            for (j, l) in [q!, k!, v!].enumerated() {
                l.product(into: buf.data + j * dim, ldy: 3 * dim, x.data, n: n, mode: mode)
            }
        }
        let (o, c) = Attention.forward(buf, B: B, T: T, heads: heads, keepProbs: training)
        let y = proj.forward(o, mode: mode)
        if training { input = x; packed = buf; cacheAttn = c; self.B = B; self.T = T }
        return y
    }

    public func backward(_ dy: Tensor, needInput: Bool = true) -> Tensor? {
        guard let x = input, let buf = packed, let c = cacheAttn else {
            preconditionFailure("SelfAttention.backward without forward")
        }
        let dO = proj.backward(dy)!
        let dqkv = Attention.backward(dO, buf, c)
        let n = B * T
        let dx = needInput ? Tensor(x.shape) : nil
        if let qkv = qkv {
            Ops.linearBackward(dqkv, x, qkv.weight.value, dx: dx, dw: qkv.weight.g, db: qkv.bias?.g)
        } else {
            for (j, l) in [q!, k!, v!].enumerated() {
                Ops.linearBackward(dqkv.data + j * dim, ldy: 3 * dim, x.data, n: n, l.weight.value,
                                   dx: dx?.data, dw: l.weight.g, db: l.bias?.g)
            }
        }
        return dx
    }
}

/// fc2(gelu(fc1(x))). Keys: `<prefix>.fc1`, `<prefix>.fc2`.
public final class MLP: Module {
    public let fc1: Linear, fc2: Linear
    private var pre: Tensor?

    public init(_ prefix: String, dim: Int, hidden: Int) {
        fc1 = Linear(prefix + ".fc1", dim, hidden)
        fc2 = Linear(prefix + ".fc2", hidden, dim)
    }

    public var parameters: [Parameter] { fc1.parameters + fc2.parameters }
    public func packForInference() { fc1.packForInference(); fc2.packForInference() }

    public func forward(_ x: Tensor, mode: ForwardMode = .training) -> Tensor {
        if mode == .inference {  // GELU fused into the first product, no pre-activation kept
            return fc2.forward(fc1.product(x, mode: .inference, activation: .gelu), mode: .inference)
        }
        let h = fc1.forward(x, mode: .training)
        pre = h
        return fc2.forward(Ops.gelu(h), mode: .training)
    }

    public func backward(_ dy: Tensor, needInput: Bool = true) -> Tensor? {
        guard let h = pre else { preconditionFailure("MLP.backward without forward") }
        let da = fc2.backward(dy)!
        let dh = Tensor(h.shape)
        Ops.geluBackward(da, h, dx: dh)
        return fc1.backward(dh, needInput: needInput)
    }
}
