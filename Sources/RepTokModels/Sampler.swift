import Foundation
import RepTokTensor

/// Flow-matching ODE samplers, kept apart from the model: they only see a velocity callback
/// `v(x, t)` (t per batch element), as samplers do in diffusion engines.
public enum SamplerKind: String, Codable, CaseIterable, Sendable {
    case euler, heun

    /// The sampler of a name as configs and options store it: "heun" is Heun, any other name
    /// Euler (a codec model whose default sampler is neither name is refused on load).
    public init(named name: String) { self = SamplerKind(rawValue: name) ?? .euler }
}

public struct FlowSampler: Sendable {
    public var kind: SamplerKind
    public var steps: Int

    public init(_ kind: SamplerKind = .euler, steps: Int) {
        precondition(steps >= 1, "sampler needs at least one step")
        self.kind = kind; self.steps = steps
    }

    /// The time grid t_i = 1 - i/N, i = 0...N.
    public var times: [Float] { (0...steps).map { 1 - Float($0) / Float(steps) } }

    /// Integrates from `noise` (t = 1) to t = 0. Euler: x += h v(x, t_i). Heun: a trapezoidal
    /// correction on every step except the last one (which ends at t = 0).
    public func sample(noise: Tensor, velocity: (Tensor, [Float]) -> Tensor) -> Tensor {
        let B = noise.shape[0]
        let ts = times
        let x = noise.clone()
        for i in 0..<steps {
            let t0 = ts[i], t1 = ts[i + 1], h = t1 - t0
            let v0 = velocity(x, [Float](repeating: t0, count: B))
            if kind == .euler || i == steps - 1 {
                Ops.axpy(x, v0, h)
            } else {
                let xe = x.clone()
                Ops.axpy(xe, v0, h)
                let v1 = velocity(xe, [Float](repeating: t1, count: B))
                Ops.axpy(x, v0, h / 2)
                Ops.axpy(x, v1, h / 2)
            }
        }
        return x
    }

    /// Model evaluations per image.
    public var evaluations: Int { kind == .euler ? steps : 2 * steps - 1 }
}
