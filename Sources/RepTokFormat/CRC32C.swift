// CRC-32C (Castagnoli), the .rtk record checksum.
// Reflected polynomial 0x82F63B78 (normal form 0x1EDC6F41), initial value 0xFFFFFFFF,
// final XOR 0xFFFFFFFF, as in iSCSI (RFC 3720), ext4, Btrfs, SCTP.
// Check value: CRC-32C("123456789") = 0xE3069283.
// Like every 32-bit CRC with a non-zero constant term, it detects every single-bit error and
// every burst of 32 bits or fewer; the .rtk records it guards are at most ~66 KiB.

/// CRC-32C (Castagnoli), table driven, one byte at a time (records are tens of bytes).
public enum RTKCRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// Extends a running CRC-32C (`crc` is the value returned for the bytes before `bytes`,
    /// 0 for none) over `bytes`.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }

    /// CRC-32C of `bytes`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 { update(0, bytes) }

    /// CRC-32C of any byte collection.
    public static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        if let c = bytes.withContiguousStorageIfAvailable({ update(0, UnsafeRawBufferPointer($0)) }) {
            return c
        }
        return Array(bytes).withUnsafeBytes { update(0, $0) }
    }
}
