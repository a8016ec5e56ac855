import RepTokTensor

/// A trainable tensor with its gradient, checkpoint key and optimizer flags.
public final class Parameter {
    /// The checkpoint key relative to its module (the model prefixes it, e.g. `decoder.`).
    public let key: String
    public let value: Tensor
    public private(set) var grad: Tensor
    /// AdamW weight decay applies (false for biases, norms, embeddings and gains).
    public var decay: Bool
    /// When false, backward passes skip this parameter's gradient (frozen).
    public var trainable: Bool = true
    /// Multiplies the optimizer's learning rate for this parameter (1: the schedule's rate).
    public var lrScale: Float = 1

    public init(_ key: String, _ value: Tensor, decay: Bool) {
        self.key = key
        self.value = value
        self.grad = Tensor(value.shape)
        self.decay = decay
    }

    public var shape: [Int] { value.shape }
    /// The gradient buffer when this parameter is trainable, else nil (so kernels skip the work).
    public var g: Tensor? { trainable ? grad : nil }
    public func zeroGrad() { grad.zero() }
}
