// Unsigned LEB128 varints, strict: canonical (shortest) encodings only, at most 10 bytes,
// value within UInt64. One encoding per value is what lets a parsed record re-serialize to
// the very bytes it came from.

/// Unsigned LEB128: 7 value bits per byte, least significant group first, high bit set on
/// every byte but the last.
public enum RTKVarint {
    /// The outcome of decoding one varint.
    public enum Decoded: Equatable, Sendable {
        /// A canonical value and its encoded length.
        case value(UInt64, length: Int)
        /// The input ended inside the varint.
        case truncated
        /// A longer encoding than needed (a final 0x00 byte after the first).
        case overlong
        /// More than 10 bytes, or a 10th byte carrying bits beyond 2^64.
        case overflow
    }

    /// Appends the canonical encoding of `value`.
    public static func append(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// The canonical encoding of `value` (1 to 10 bytes).
    public static func encode(_ value: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        append(value, to: &out)
        return out
    }

    /// Number of bytes `value` takes.
    public static func encodedLength(_ value: UInt64) -> Int {
        var v = value, n = 1
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }

    /// Decodes the varint at `offset` in `buffer`.
    public static func decode(_ buffer: UnsafeRawBufferPointer, at offset: Int) -> Decoded {
        var value: UInt64 = 0
        var i = 0
        while true {
            if i == RTKFormat.maxVarintBytes { return .overflow }
            guard offset + i < buffer.count else { return .truncated }
            let b = buffer[offset + i]
            // The 10th byte holds bit 63 only: 0x00 or 0x01, and no continuation.
            if i == RTKFormat.maxVarintBytes - 1 && b > 1 { return .overflow }
            value |= UInt64(b & 0x7F) << UInt64(7 * i)
            i += 1
            if b & 0x80 == 0 {
                if i > 1 && b == 0 { return .overlong }
                return .value(value, length: i)
            }
        }
    }
}
