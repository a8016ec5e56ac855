import RepTokTensor

/// How a forward pass runs; every layer and model forward takes one (in place of a `cache` flag
/// that used to mean three things).
/// - `training`: keeps what the backward needs (inputs, activations) and drops any inference
///   weight pack (the weights are about to change); products go through OpenBLAS.
/// - `inference`: keeps nothing (concurrent forwards are safe) and multiplies through a layer's
///   inference pack when it has one (`Linear.packForInference`).
/// Which inference strategy a model runs (the flow decoder's row-split, per-picture or batched
/// path) is not the mode's business: `FlowDecoder.infer` chooses it from the shape.
public enum ForwardMode: Sendable, Equatable {
    case training, inference
}

/// A layer or model: it owns named parameters (keys relative to the model's prefix).
public protocol Module: AnyObject {
    var parameters: [Parameter] { get }
}

extension Module {
    public func zeroGrad() { for p in parameters { p.zeroGrad() } }
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }
    public func setTrainable(_ on: Bool) { for p in parameters { p.trainable = on } }
    /// Parameters by key.
    public var parameterMap: [String: Parameter] {
        Dictionary(parameters.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
    }
}

/// Deterministic initializers (seeded; same seed -> same weights on any machine): a SplitMix64
/// stream (seeded with `seed` plus one increment) and the draws made from it.
public struct InitRNG {
    private var base: SplitMix64
    public init(seed: UInt64) { base = SplitMix64(seed: seed &+ SplitMix64.gamma) }
    /// Draws from a given generator's stream (its state moves on in this copy only).
    public init(_ generator: SplitMix64) { base = generator }
    public mutating func next() -> UInt64 { base.next() }
    /// Uniform in [0, 1).
    public mutating func uniform() -> Double { base.uniform() }
    /// Standard normal (Box-Muller, cosine branch).
    public mutating func normal() -> Double {
        let a = max(uniform(), 1e-300), b = uniform()
        return (-2 * log(a)).squareRoot() * cos(2 * Double.pi * b)
    }
    public mutating func fillUniform(_ t: Tensor, bound: Double) {
        for i in 0..<t.count { t.data[i] = Float((uniform() * 2 - 1) * bound) }
    }
    public mutating func fillNormal(_ t: Tensor, std: Double) {
        for i in 0..<t.count { t.data[i] = Float(normal() * std) }
    }
    /// Xavier-uniform for a [out, in] weight.
    public mutating func xavier(_ t: Tensor) {
        let fanOut = t.shape[0], fanIn = t.count / fanOut
        fillUniform(t, bound: (6.0 / Double(fanIn + fanOut)).squareRoot())
    }
    /// Truncated normal (at 2 std), as ViTs initialize.
    public mutating func truncNormal(_ t: Tensor, std: Double) {
        for i in 0..<t.count {
            var v = normal()
            while abs(v) > 2 { v = normal() }
            t.data[i] = Float(v * std)
        }
    }
}

import Foundation
