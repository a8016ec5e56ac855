import CRTKernels
import Foundation
import RepTokTensor

/// Learning-rate schedule: linear warmup from 0, then cosine decay to `minLR`.
public struct WarmupCosine: Codable, Equatable {
    public var peakLR: Float, minLR: Float
    public var warmupSteps: Int, totalSteps: Int

    public init(peakLR: Float, minLR: Float = 0, warmupSteps: Int, totalSteps: Int) {
        self.peakLR = peakLR; self.minLR = minLR; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps
    }

    /// LR for step `s` (0-based: the first update uses s = 0).
    public func lr(_ s: Int) -> Float {
        if s < warmupSteps { return peakLR * Float(s + 1) / Float(warmupSteps) }
        let span = max(1, totalSteps - warmupSteps)
        let p = min(1, Double(s - warmupSteps) / Double(span))
        return minLR + (peakLR - minLR) * Float(0.5 * (1 + cos(Double.pi * p)))
    }
}

/// AdamW (decoupled weight decay, bias-corrected) over trainable parameters. Weight decay applies
/// only where `Parameter.decay` is set (the decay mask: weights of Linear layers, not biases,
/// norms, embeddings or gains).
public final class AdamW {
    public var beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float
    public let params: [Parameter]
    public private(set) var m: [Tensor], v: [Tensor]
    public private(set) var step = 0

    public init(_ params: [Parameter], weightDecay: Float = 0.05) {
        self.params = params.filter { $0.trainable }
        self.weightDecay = weightDecay
        m = self.params.map { Tensor($0.shape) }
        v = self.params.map { Tensor($0.shape) }
    }

    /// Global L2 norm of the gradients (float64 accumulation).
    public func gradNorm() -> Float {
        var s = 0.0
        for p in params { s += rt_sumsq_f64(p.grad.data, p.grad.count) }
        return Float(s.squareRoot())
    }

    /// Scales gradients so their global norm is at most `maxNorm`; returns the norm before clipping.
    @discardableResult
    public func clipGradients(maxNorm: Float) -> Float {
        let n = gradNorm()
        if n > maxNorm, n.isFinite {
            let k = maxNorm / (n + 1e-6)
            for p in params { rt_scale(p.grad.data, k, p.grad.count) }
        }
        return n
    }

    public func update(lr: Float) {
        step += 1
        let bc1 = 1 - powf(beta1, Float(step)), bc2 = 1 - powf(beta2, Float(step))
        for (i, p) in params.enumerated() {
            rt_adamw(p.value.data, m[i].data, v[i].data, p.grad.data, p.value.count, lr * p.lrScale, beta1, beta2,
                     bc1, bc2, eps, p.decay ? weightDecay : 0)
        }
    }

    /// Restores moment buffers and the step count (for --resume).
    public func restore(step: Int, m: [Tensor], v: [Tensor]) {
        precondition(m.count == params.count && v.count == params.count, "optimizer state size")
        self.step = step
        for i in params.indices { self.m[i].copy(from: m[i]); self.v[i].copy(from: v[i]) }
    }
}

/// Exponential moving average of parameters: shadow = d * shadow + (1 - d) * p, optionally with
/// a decay warm-up: update k (1-based) uses min(decay, (1 + k) / (10 + k)) (the trainers' EMA,
/// see `TrainConfig.emaWarmup`).
public final class EMA {
    public let decay: Float
    public let warmup: Bool
    public let params: [Parameter]
    public let shadow: [Tensor]
    /// Updates made so far (a resumed run sets it to its step).
    public var updates = 0

    public init(_ params: [Parameter], decay: Float, warmup: Bool = false) {
        self.decay = decay
        self.warmup = warmup
        self.params = params
        shadow = params.map { $0.value.clone() }
    }

    /// The decay of the next update.
    public var currentDecay: Float {
        let k = Float(updates + 1)
        return warmup ? min(decay, (1 + k) / (10 + k)) : decay
    }

    public func update() {
        let d = currentDecay, e = 1 - d
        for (s, p) in zip(shadow, params) {
            let sp = s.data, pp = p.value.data
            for i in 0..<s.count { sp[i] = d * sp[i] + e * pp[i] }
        }
        updates += 1
    }

    /// Swaps EMA weights into the live parameters (call twice to swap back).
    public func swap() {
        for (i, p) in params.enumerated() {
            let tmp = p.value.clone()
            p.value.copy(from: shadow[i])
            shadow[i].copy(from: tmp)
        }
    }

    /// Copies the shadow into the live weights.
    public func copyToParameters() {
        for (s, p) in zip(shadow, params) { p.value.copy(from: s) }
    }
}
