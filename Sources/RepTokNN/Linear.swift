import RepTokTensor

/// y = x W^T + b. Keys: `<prefix>.weight` [out, in], `<prefix>.bias` [out].
public final class Linear: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let inFeatures: Int, outFeatures: Int
    private var input: Tensor?

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

    /// x: [..., in] -> [rows, out]. Keeps x for backward when `cache` is true.
    public func forward(_ x: Tensor, cache: Bool = true) -> Tensor {
        if cache { input = x }   // inference touches no state: concurrent forwards are safe
        return Ops.linear(x, weight.value, bias?.value)
    }

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
