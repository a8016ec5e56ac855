// The .rtk record format, version 1: constants shared by the reader and the writer.
// The normative description is Man/rtk.5; keep the two in step.
//
//   offset  size  field
//   0       3     magic D2 52 54 ("\xD2RT")
//   3       1     version (1)
//   4       1     flags: bit 0 has-name; bits 1-3 must-reject; bits 4-7 may-ignore
//   5       1     mode: low nibble quantizer level 1-9, high nibble sampler id (0 Euler, 1 Heun)
//   6       8     model fingerprint, UInt64 little-endian
//   14      v     width  (LEB128, 1...65535)
//           v     height (LEB128, 1...65535; width*height <= 2^26)
//           v     decoder seed (LEB128, any UInt64)
//           v     sampler steps (LEB128, 1...1000)
//          [v     name length (LEB128, 1...255)   only with flag bit 0
//           n     name (UTF-8, relative path)]
//           v     payload length (LEB128, 0...65536)
//           n     payload (opaque)
//           4     CRC-32C (Castagnoli) of every byte above, little-endian

/// Format constants and caps of `.rtk` version 1.
public enum RTKFormat {
    /// Record magic: a non-ASCII byte (invalid as UTF-8 here), then "RT".
    public static let magic: [UInt8] = [0xD2, 0x52, 0x54]
    /// The format version this build reads and writes.
    public static let version: UInt8 = 1

    /// Flag bit 0: the record carries a name.
    public static let flagHasName: UInt8 = 0x01
    /// Flags this version understands.
    public static let knownFlags: UInt8 = 0x01
    /// Reserved flags a reader must reject when set (a future feature it cannot decode).
    public static let mustRejectFlags: UInt8 = 0x0E
    /// Reserved flags a reader must ignore (hints that change neither layout nor decoding);
    /// they are kept in `RTKRecord.ignorableFlags` so a record re-serializes byte for byte.
    public static let mayIgnoreFlags: UInt8 = 0xF0

    /// Width and height cap (each).
    public static let maxDimension = 65_535
    /// Pixel-count cap (width * height): 2^26, e.g. 8192 x 8192.
    public static let maxPixels = 1 << 26
    /// Quantizer levels.
    public static let levels: ClosedRange<Int> = 1...9
    /// Sampler step-count cap.
    public static let maxSteps = 1_000
    /// Sampler step counts.
    public static let steps: ClosedRange<Int> = 1...maxSteps
    /// Name length cap, in UTF-8 bytes.
    public static let maxNameBytes = 255
    /// Payload length cap, in bytes (64 KiB).
    public static let maxPayloadBytes = 65_536

    /// Bytes before the first varint: magic, version, flags, mode, fingerprint.
    public static let fixedHeaderBytes = 14
    /// Checksum size.
    public static let checksumBytes = 4
    /// The smallest possible record (one-byte varints, no name, empty payload).
    public static let minRecordBytes = fixedHeaderBytes + 5 + checksumBytes
    /// Longest LEB128 encoding of a UInt64.
    public static let maxVarintBytes = 10
}
