import Foundation

/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"): a counter-based
/// generator. Output block k depends only on (key, counter), so any element of a noise tensor can
/// be computed independently: the same seed gives the same noise on any thread count.
public struct Philox4x32 {
    public let key0: UInt32, key1: UInt32

    public init(seed: UInt64) {
        key0 = UInt32(truncatingIfNeeded: seed)
        key1 = UInt32(truncatingIfNeeded: seed >> 32)
    }

    @inline(__always)
    public func block(_ c0: UInt32, _ c1: UInt32, _ c2: UInt32, _ c3: UInt32) -> (UInt32, UInt32, UInt32, UInt32) {
        var (x0, x1, x2, x3) = (c0, c1, c2, c3)
        var k0 = key0, k1 = key1
        for r in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(x0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(x2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (x0, x1, x2, x3) = (hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0)
            if r < 9 { k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85 }
        }
        return (x0, x1, x2, x3)
    }

    @inline(__always) static func uniform(_ u: UInt32) -> Double { (Double(u >> 8) + 0.5) / 16_777_216.0 }

    /// Standard normal values for elements [start, start + count) of stream `stream`.
    public func gaussians(stream: UInt32 = 0, start: Int = 0, count: Int, into out: UnsafeMutablePointer<Float>) {
        var i = 0
        while i < count {
            let e = start + i, k = e >> 2
            let (u0, u1, u2, u3) = block(UInt32(truncatingIfNeeded: k), stream,
                                         UInt32(truncatingIfNeeded: k >> 32), 0)
            let r0 = (-2 * log(Philox4x32.uniform(u0))).squareRoot(), a0 = 2 * Double.pi * Philox4x32.uniform(u1)
            let r1 = (-2 * log(Philox4x32.uniform(u2))).squareRoot(), a1 = 2 * Double.pi * Philox4x32.uniform(u3)
            let vals = [r0 * cos(a0), r0 * sin(a0), r1 * cos(a1), r1 * sin(a1)]
            var j = e & 3
            while j < 4 && i < count { out[i] = Float(vals[j]); j += 1; i += 1 }
        }
    }

    /// A tensor of standard normals.
    public func gaussian(_ shape: [Int], stream: UInt32 = 0) -> Tensor {
        let t = Tensor(uninitialized: shape)
        gaussians(stream: stream, count: t.count, into: t.data)
        return t
    }

    /// Uniform [0, 1) values (one per 32-bit output), elements [start, start+count).
    public func uniforms(stream: UInt32, start: Int = 0, count: Int) -> [Double] {
        var out = [Double](); out.reserveCapacity(count)
        var e = start
        while out.count < count {
            let k = e >> 2
            let b = block(UInt32(truncatingIfNeeded: k), stream, UInt32(truncatingIfNeeded: k >> 32), 1)
            let vals = [b.0, b.1, b.2, b.3]
            var j = e & 3
            while j < 4 && out.count < count { out.append(Philox4x32.uniform(vals[j])); j += 1; e += 1 }
        }
        return out
    }
}

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014):
/// a small seeded sequential generator, the same stream on every machine. The one home of the
/// generator and of its 64-bit mixing function: initializers (`InitRNG`), bootstrap draws,
/// Philox keys derived from (seed, index) and the tests' random data all come from here.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The golden-ratio increment of the state.
    public static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15

    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// The output function (a bijection of 64-bit words).
    @inline(__always)
    public static func finalize(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Output `b` (from 0) of the generator seeded with `a`, without stepping through the ones
    /// before it: derives independent keys from (seed, index).
    @inline(__always)
    public static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 { finalize(a &+ gamma &* (b &+ 1)) }

    public mutating func next() -> UInt64 {
        state &+= Self.gamma
        return Self.finalize(state)
    }

    /// Uniform in [0, 1): the top 53 bits.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }
}
