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

    /// The std of the token noise for a batch of latents (see RepTokModel.tokenNoiseStd).
    public static func tokenNoiseStd(_ z: Tensor, relative: Float) -> Float {
        RepTokModel.tokenNoiseStd(z, relative: relative)
    }

    /// Forward and backward of one batch; gradients accumulate into trainable parameters.
    /// `tokenNoise`: (relative std, a standard-normal draw [B, D]) or nil.
    public static func lossAndGradients(_ model: RepTokModel, pixelsEnc: Tensor, x: Tensor, t: [Float], noise: Tensor,
                                        lambda: Float, tokenNoise: (relative: Float, draw: Tensor)? = nil,
                                        layoutKeep: [Int]? = nil)
        -> (loss: Loss, noiseStd: Float) {
        let l = model.lossAndGradients(pixelsEnc: pixelsEnc, x: x, t: t, noise: noise, lambda: lambda,
                                       tokenNoise: tokenNoise, layoutKeep: layoutKeep)
        return (Loss(loss: l.loss, flow: l.flow, cos: l.cos), l.tokenNoiseStd)
    }
}
