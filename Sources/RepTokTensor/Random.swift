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
