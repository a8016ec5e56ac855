import Foundation
import RepTokTensor

/// Test draws from `SplitMix64` (RepTokTensor), so every randomized test is reproducible. Shared
/// by the test targets (it is not part of the library product).
extension SplitMix64 {
    public init(_ seed: UInt64) { self.init(seed: seed) }

    public mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * uniform() }

    /// Standard normal (Box-Muller on 1 - u, cosine branch).
    public mutating func normal() -> Double {
        let u1 = 1 - uniform(), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    public mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next() >> 56) }
    public mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}
