import RepTokTensor

/// y = x W^T + b. Keys: `<prefix>.weight` [out, in], `<prefix>.bias` [out].
public final class Linear: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let inFeatures: Int, outFeatures: Int
    private var input: Tensor?
    /// The inference pack of the weight (`packForInference`); nil: products go through OpenBLAS.
    private var pack: PackedWeight?

    /// `weightShape` stores the weight with a different (same-count) shape, e.g. a patch
    /// embedding kept as the Conv2d kernel [out, ch, p, p] for checkpoint compatibility.
    public init(_ prefix: String, _ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, weightShape: [Int]? = nil) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        let ws = weightShape ?? [outFeatures, inFeatures]
        precondition(ws.reduce(1, *) == inFeatures * outFeatures && ws[0] == outFeatures, "Linear weight shape \(ws)")
        weight = Parameter(prefix + ".weight", Tensor(ws), decay: true)
        self.bias = bias ? Parameter(prefix + ".bias", Tensor([outFeatures]), decay: false) : nil
    }

    public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

    /// x: [..., in] -> [rows, out]. `.training` keeps x for backward and drops the pack, if any
    /// (the weight is about to change); `.inference` touches no state (concurrent forwards are
    /// safe) and multiplies through the pack when there is one.
    public func forward(_ x: Tensor, mode: ForwardMode = .training) -> Tensor {
        if mode == .training { input = x; pack = nil }
        return product(x, mode: mode)
    }

    /// x W^T + b, then `activation`, keeping no state. `.inference`: through the pack when there
    /// is one (a training step passes `.training`: its weights are not the pack's).
    public func product(_ x: Tensor, mode: ForwardMode, activation: Ops.Activation = .none) -> Tensor {
        if mode == .inference, let p = pack { return Ops.linear(x, packed: p, bias?.value, activation: activation) }
        let y = Ops.linear(x, weight.value, bias?.value)
        switch activation {
        case .none: return y
        case .gelu: return Ops.gelu(y)
        }
    }

    /// Strided form of `product` (no activation): rows of stride `ldy`.
    public func product(into y: UnsafeMutablePointer<Float>, ldy: Int, _ x: UnsafePointer<Float>, n: Int, mode: ForwardMode) {
        if mode == .inference, let p = pack { Ops.linear(into: y, ldy: ldy, x, n: n, packed: p, bias?.value) }
        else { Ops.linear(into: y, ldy: ldy, x, n: n, weight.value, bias?.value) }
    }

    /// Packs the weight for inference products (`PackedWeight`): a snapshot, so call it once the
    /// weights are final (models loaded for decoding); a training forward drops it. No-op on CPUs
    /// without AVX2/FMA.
    public func packForInference() { pack = PackedWeight(weight.value) }
    public func dropPack() { pack = nil }
    /// The inference pack, if any.
    public var packedWeight: PackedWeight? { pack }

    /// Accumulates parameter gradients; returns dx (nil when `needInput` is false).
    @discardableResult
    public func backward(_ dy: Tensor, needInput: Bool = true) -> Tensor? {
        guard let x = input else { preconditionFailure("Linear.backward without a cached forward") }
        let dx = needInput ? Tensor(x.shape) : nil
        Ops.linearBackward(dy, x, weight.value, dx: dx, dw: weight.g, db: bias?.g)
        return dx
    }

    public func release() { input = nil }
}
