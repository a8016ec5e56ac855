import Foundation
import RepTokModels
import RepTokNN
import RepTokTensor

/// The tokenizer's training objective: `RepTokModel.lossAndGradients` plus optional latent noise
/// on the decoder's input (so the decoder learns to tolerate quantization). With no token noise
/// it computes exactly what `lossAndGradients` computes (TrainTests checks bit equality).
public enum TokenizerObjective {
    public struct Loss: Equatable, Sendable {
        public var loss: Float, flow: Float, cos: Float
        public init(loss: Float, flow: Float, cos: Float) { self.loss = loss; self.flow = flow; self.cos = cos }
    }

    /// The std of the token noise for a batch of latents z [B, D]: `relative` x RMS over
    /// dimensions of the per-dimension standard deviation across the batch (0 for B < 2).
    public static func tokenNoiseStd(_ z: Tensor, relative: Float) -> Float {
        let B = z.shape[0], D = z.count / B
        guard B >= 2, relative > 0 else { return 0 }
        var total = 0.0
        for d in 0..<D {
            var m = 0.0
            for b in 0..<B { m += Double(z.data[b * D + d]) }
            m /= Double(B)
            var v = 0.0
            for b in 0..<B { let e = Double(z.data[b * D + d]) - m; v += e * e }
            total += v / Double(B - 1)
        }
        return relative * Float((total / Double(D)).squareRoot())
    }

    /// Forward and backward of one batch; gradients accumulate into trainable parameters.
    /// `tokenNoise`: (relative std, a standard-normal draw [B, D]) or nil.
    public static func lossAndGradients(_ model: RepTokModel, pixelsEnc: Tensor, x: Tensor, t: [Float], noise: Tensor,
                                        lambda: Float, tokenNoise: (relative: Float, draw: Tensor)? = nil)
        -> (loss: Loss, noiseStd: Float) {
        guard let tn = tokenNoise, tn.relative > 0 else {
            let l = model.lossAndGradients(pixelsEnc: pixelsEnc, x: x, t: t, noise: noise, lambda: lambda)
            return (Loss(loss: l.loss, flow: l.flow, cos: l.cos), 0)
        }
        let B = x.shape[0]
        let c0 = model.frozenToken(pixelsEnc)
        let c = model.encoder.forward(pixelsEnc, cache: true).token
        let z = model.adapter.forward(c, cache: true)
        let std = tokenNoiseStd(z, relative: tn.relative)
        precondition(tn.draw.count == z.count, "token noise draw \(tn.draw.shape) for z \(z.shape)")
        let zn = z.clone()
        Ops.axpy(zn, tn.draw, std)
        let xt = Tensor(uninitialized: x.shape), target = Tensor(uninitialized: x.shape)
        let per = x.count / B
        for b in 0..<B {
            let tb = t[b]
            for i in b * per..<(b + 1) * per {
                xt.data[i] = (1 - tb) * x.data[i] + tb * noise.data[i]
                target.data[i] = noise.data[i] - x.data[i]
            }
        }
        let out = model.decoder.forward(xt, t: t, z: zn, cache: true)
        let v = model.decoder.velocity(xt, t: t, out: out)
        let (flow, dv) = Ops.mse(v, target)
        let (cosL, dzCos) = Ops.cosineLoss(z, c0, gradScale: lambda)
        let (dout, _) = model.decoder.velocityBackward(dv, t: t)
        let (_, dzDec) = model.decoder.backward(dout, needInput: false)
        Ops.addInPlace(dzCos, dzDec)   // z + noise: the noise scale is a stop-gradient constant
        let dc = model.adapter.backward(dzCos)
        model.encoder.backward(dToken: dc)
        return (Loss(loss: flow + lambda * cosL, flow: flow, cos: cosL), std)
    }
}

/// EMA of the trainable weights with a decay warm-up (see `TrainConfig.emaWarmup`).
public final class WeightEMA {
    public let params: [Parameter]
    public let shadow: [Tensor]
    public let decay: Float
    public let warmup: Bool
    public var updates = 0

    public init(_ params: [Parameter], decay: Float, warmup: Bool) {
        self.params = params
        self.decay = decay
        self.warmup = warmup
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

    /// Copies the shadow into the live weights.
    public func copyToParameters() {
        for (s, p) in zip(shadow, params) { p.value.copy(from: s) }
    }
}
