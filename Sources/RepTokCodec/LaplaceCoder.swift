import Foundation

/// Static entropy coding of quantized token coordinates: coordinate i at a level is a symbol q
/// whose probabilities are those of a Laplace(0, b_i) variable integrated over the quantizer's
/// bins of width `step` (a two-sided geometric law with ratio theta = exp(-step / b_i)), coded
/// by a binary-output arithmetic coder (32-bit, Witten-Neal-Cleary) with minimal termination.
///
/// Determinism: every probability table is computed from the stored b_i and step with IEEE
/// operations only (`LaplaceCoder.exp` is a fixed polynomial, not the platform's libm), so an
/// encoder and a decoder on any machine build the same integer tables.
///
/// Symbols: |q| <= K_i in the table, larger ones as an escape symbol followed by |q| - K_i - 1
/// in order-0 Exp-Golomb and a sign, in equiprobable bits. K_i is the smallest K whose two-sided
/// tail mass is below 2^-20, at most 256.
public enum LaplaceCoder {
    public static let totalBits = 16
    public static let total: UInt32 = 1 << 16
    public static let maxK = 256
    /// Escaped magnitudes above K + 2^21 are refused (the quantizer clamps to 1,000,000).
    static let maxEscapeBits = 21

    /// e^x for x <= 0 with IEEE-exact operations only: x = n ln2 + r, |r| <= ln2 / 2, a degree-13
    /// Taylor polynomial for e^r, times 2^n. Relative error below 1e-15; 0 below -700.
    public static func exp(_ x: Double) -> Double {
        precondition(!(x > 0), "LaplaceCoder.exp is for x <= 0")
        if x < -700 { return 0 }
        let n = (x * 1.4426950408889634).rounded()
        let r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10
        var p = 1.0 / 6227020800.0
        for k in stride(from: 12, through: 1, by: -1) {
            var f = 1.0
            for j in 1...k { f *= Double(j) }
            p = p * r + 1 / f
        }
        p = p * r + 1
        return p * Double(sign: .plus, exponent: Int(n), significand: 1)
    }

    /// The integer table of one coordinate: cumulative frequencies of -K ... K and the escape
    /// (2K + 2 symbols, `cum` has 2K + 3 entries from 0 to `total`).
    public struct Table: Sendable, Equatable {
        public let k: Int
        public let cum: [UInt32]

        /// Laplace scale `b` and quantizer step `step` (both > 0).
        public init(scale b: Float, step: Float) {
            let ratio = Double(step) / Double(max(b, 1e-30))
            // tail beyond K: theta^(K + 1/2) < 2^-20  <=>  (K + 1/2) ratio > 20 ln 2
            let need = (20 * 0.6931471805599453 / ratio - 0.5).rounded(.up)
            let k = Int(min(max(need, 1), Double(LaplaceCoder.maxK)))
            let t = Double(LaplaceCoder.total)
            var freq = [Int](repeating: 0, count: 2 * k + 2)
            let half = 0.5 * ratio
            // P(0) = 1 - e^(-ratio / 2); P(+-q) = (e^(-(q - 1/2) ratio) - e^(-(q + 1/2) ratio)) / 2
            freq[k] = max(1, Int((t * (1 - LaplaceCoder.exp(-half))).rounded(.down)))
            var prev = LaplaceCoder.exp(-half)
            for q in 1...k {
                let next = LaplaceCoder.exp(-(Double(q) + 0.5) * ratio)
                let f = max(1, Int((t * 0.5 * (prev - next)).rounded(.down)))
                freq[k + q] = f; freq[k - q] = f
                prev = next
            }
            freq[2 * k + 1] = max(1, Int((t * prev).rounded(.down)))     // both tails
            // make the sum exactly `total`: the difference goes to (or comes from) the largest
            var sum = freq.reduce(0, +)
            while sum != Int(LaplaceCoder.total) {
                var big = 0
                for i in freq.indices where freq[i] > freq[big] { big = i }
                let change = Int(LaplaceCoder.total) - sum
                let applied = max(change, 1 - freq[big])
                freq[big] += applied
                sum += applied
            }
            var cum = [UInt32](repeating: 0, count: 2 * k + 3)
            for i in 0..<(2 * k + 2) { cum[i + 1] = cum[i] + UInt32(freq[i]) }
            self.k = k
            self.cum = cum
        }

        var escape: Int { 2 * k + 1 }
    }

    /// Codes symbols, one per table; with a `header` (value in 0..<count), first that value,
    /// uniformly over `count` (the quantizer's step mode).
    public static func encode(_ q: [Int32], tables: [Table], header: (value: Int, count: Int)? = nil) -> [UInt8] {
        precondition(q.count == tables.count, "LaplaceCoder.encode: \(q.count) symbols for \(tables.count) tables")
        var e = ArithmeticEncoder()
        if let h = header {
            precondition((2...256).contains(h.count) && (0..<h.count).contains(h.value), "LaplaceCoder header \(h)")
            e.encode(cumLow: UInt32(h.value), cumHigh: UInt32(h.value + 1), total: UInt32(h.count))
        }
        for (v, tb) in zip(q, tables) {
            let a = Int(v.magnitude)
            if a <= tb.k {
                let s = tb.k + Int(v)
                e.encode(cumLow: tb.cum[s], cumHigh: tb.cum[s + 1], total: LaplaceCoder.total)
            } else {
                e.encode(cumLow: tb.cum[tb.escape], cumHigh: tb.cum[tb.escape + 1], total: LaplaceCoder.total)
                let m = UInt32(a - tb.k - 1) + 1                           // Exp-Golomb of m - 1
                let nbits = 32 - m.leadingZeroBitCount
                for _ in 1..<nbits { e.bit(0) }
                for i in stride(from: nbits - 1, through: 0, by: -1) { e.bit(Int((m >> UInt32(i)) & 1)) }
                e.bit(v < 0 ? 1 : 0)
            }
        }
        return e.finish()
    }

    /// The header value of a payload coded with a header of `count` values.
    public static func decodeHeader(_ bytes: [UInt8], count: Int) throws -> Int {
        guard (2...256).contains(count) else { throw CodecError.corruptPayload("header of \(count) values") }
        var d = ArithmeticDecoder(bytes)
        return d.decode(cum: (0...count).map { UInt32($0) }, total: UInt32(count))
    }

    /// Decodes `tables.count` symbols (after a header of `header` values, skipped); throws on an
    /// escape longer than the cap.
    public static func decode(_ bytes: [UInt8], tables: [Table], header: Int? = nil) throws -> [Int32] {
        var d = ArithmeticDecoder(bytes)
        if let n = header {
            guard (2...256).contains(n) else { throw CodecError.corruptPayload("header of \(n) values") }
            _ = d.decode(cum: (0...n).map { UInt32($0) }, total: UInt32(n))
        }
        var out = [Int32]()
        out.reserveCapacity(tables.count)
        for tb in tables {
            let s = d.decode(cum: tb.cum, total: LaplaceCoder.total)
            if s != tb.escape { out.append(Int32(s - tb.k)); continue }
            var zeros = 0
            while d.bit() == 0 {
                zeros += 1
                guard zeros < LaplaceCoder.maxEscapeBits else { throw CodecError.corruptPayload("escaped token value too long") }
            }
            var m: UInt32 = 1
            for _ in 0..<zeros { m = (m << 1) | UInt32(d.bit()) }
            let a = Int(m - 1) + tb.k + 1
            guard a <= 1_000_000 else { throw CodecError.corruptPayload("token value out of range") }
            out.append(d.bit() == 1 ? Int32(-a) : Int32(a))
        }
        return out
    }
}

/// Binary-output arithmetic encoder over 32-bit intervals (E1/E2/E3 renormalization with
/// pending underflow bits). `finish` writes the fewest bits that single out a point of the final
/// interval when the decoder reads zeros past the end, then drops trailing zero bytes.
struct ArithmeticEncoder {
    static let half: UInt64 = 1 << 31, quarter: UInt64 = 1 << 30, top: UInt64 = 0xFFFF_FFFF
    private var low: UInt64 = 0, high: UInt64 = top, pending = 0
    private var bytes = [UInt8](), acc: UInt8 = 0, nacc = 0

    private mutating func put(_ b: Int) {
        acc = (acc << 1) | UInt8(b)
        nacc += 1
        if nacc == 8 { bytes.append(acc); acc = 0; nacc = 0 }
    }

    private mutating func emit(_ b: Int) {
        put(b)
        while pending > 0 { put(1 - b); pending -= 1 }
    }

    mutating func encode(cumLow: UInt32, cumHigh: UInt32, total: UInt32) {
        let range = high - low + 1
        high = low + range * UInt64(cumHigh) / UInt64(total) - 1
        low = low + range * UInt64(cumLow) / UInt64(total)
        while true {
            if high < Self.half {
                emit(0)
            } else if low >= Self.half {
                emit(1); low -= Self.half; high -= Self.half
            } else if low >= Self.quarter && high < Self.half + Self.quarter {
                pending += 1; low -= Self.quarter; high -= Self.quarter
            } else {
                break
            }
            low <<= 1; high = (high << 1) | 1
        }
    }

    /// One equiprobable bit.
    mutating func bit(_ b: Int) { encode(cumLow: UInt32(b), cumHigh: UInt32(b + 1), total: 2) }

    mutating func finish() -> [UInt8] {
        // the shortest n such that v = low rounded up to a multiple of 2^(32 - n) is <= high
        for n in (pending > 0 ? 1 : 0)...32 {
            let unit = UInt64(1) << UInt64(32 - n)
            let v = (low + unit - 1) / unit * unit
            if v <= high {
                for i in 0..<n { let b = Int((v >> UInt64(31 - i)) & 1); if i == 0 { emit(b) } else { put(b) } }
                break
            }
        }
        if nacc > 0 { bytes.append(acc << UInt8(8 - nacc)); acc = 0; nacc = 0 }
        while bytes.last == 0 { bytes.removeLast() }
        return bytes
    }
}

/// The decoder of `ArithmeticEncoder`: reads zeros past the end of its bytes.
struct ArithmeticDecoder {
    private let bytes: [UInt8]
    private var pos = 0
    private var low: UInt64 = 0, high: UInt64 = ArithmeticEncoder.top, value: UInt64 = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        for _ in 0..<32 { value = (value << 1) | UInt64(next()) }
    }

    private mutating func next() -> Int {
        let i = pos >> 3
        let b = i < bytes.count ? Int((bytes[i] >> UInt8(7 - (pos & 7))) & 1) : 0
        pos += 1
        return b
    }

    /// The symbol s with cum[s] <= target < cum[s + 1].
    mutating func decode(cum: [UInt32], total: UInt32) -> Int {
        let range = high - low + 1
        let target = ((value - low + 1) * UInt64(total) - 1) / range
        var lo = 0, hi = cum.count - 2                                   // binary search
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if UInt64(cum[mid]) <= target { lo = mid } else { hi = mid - 1 }
        }
        let s = lo
        high = low + range * UInt64(cum[s + 1]) / UInt64(total) - 1
        low = low + range * UInt64(cum[s]) / UInt64(total)
        while true {
            if high < ArithmeticEncoder.half {
            } else if low >= ArithmeticEncoder.half {
                value -= ArithmeticEncoder.half; low -= ArithmeticEncoder.half; high -= ArithmeticEncoder.half
            } else if low >= ArithmeticEncoder.quarter && high < ArithmeticEncoder.half + ArithmeticEncoder.quarter {
                value -= ArithmeticEncoder.quarter; low -= ArithmeticEncoder.quarter; high -= ArithmeticEncoder.quarter
            } else {
                break
            }
            low <<= 1; high = (high << 1) | 1; value = (value << 1) | UInt64(next())
        }
        return s
    }

    mutating func bit() -> Int {
        decode(cum: [0, 1, 2], total: 2)
    }
}
