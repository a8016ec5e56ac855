import RepTokTensor

/// LayerNorm over the last dimension. Keys (when affine): `<prefix>.weight`, `<prefix>.bias`.
public final class LayerNorm: Module {
    public let weight: Parameter?, bias: Parameter?
    public let eps: Float
    private var input: Tensor?, stats: Ops.NormCache?

    public init(_ prefix: String, _ dim: Int, eps: Float, affine: Bool = true) {
        self.eps = eps
        if affine {
            weight = Parameter(prefix + ".weight", Tensor([dim], repeating: 1), decay: false)
            bias = Parameter(prefix + ".bias", Tensor([dim]), decay: false)
        } else {
            weight = nil; bias = nil
        }
    }

    public var parameters: [Parameter] { [weight, bias].compactMap { $0 } }

    public func forward(_ x: Tensor, mode: ForwardMode = .training) -> Tensor {
        let (y, st) = Ops.layerNorm(x, weight?.value, bias?.value, eps: eps)
        if mode == .training { input = x; stats = st }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let x = input, let st = stats else { preconditionFailure("LayerNorm.backward without forward") }
        let dx = Tensor(x.shape)
        Ops.layerNormBackward(dy, x, st, weight?.value, dx: dx, dw: weight?.g, db: bias?.g)
        return dx
    }
}

/// RMSNorm over the last dimension. Key: `<prefix>.weight`.
public final class RMSNorm: Module {
    public let weight: Parameter?
    public let eps: Float
    private var input: Tensor?, stats: Ops.NormCache?

    public init(_ prefix: String, _ dim: Int, eps: Float, affine: Bool = true) {
        self.eps = eps
        weight = affine ? Parameter(prefix + ".weight", Tensor([dim], repeating: 1), decay: false) : nil
    }

    public var parameters: [Parameter] { weight.map { [$0] } ?? [] }

    public func forward(_ x: Tensor, mode: ForwardMode = .training) -> Tensor {
        let (y, st) = Ops.rmsNorm(x, weight?.value, eps: eps)
        if mode == .training { input = x; stats = st }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let x = input, let st = stats else { preconditionFailure("RMSNorm.backward without forward") }
        let dx = Tensor(x.shape)
        Ops.rmsNormBackward(dy, x, st, weight?.value, dx: dx, dw: weight?.g)
        return dx
    }
}
