// Errors of the .rtk reader, writer and zstd helpers. Every message is one line and never
// echoes a record name or payload bytes (those may hold terminal control sequences).

/// What is wrong with a record name.
public enum RTKNameProblem: Equatable, Sendable {
    case empty
    case tooLong(UInt64)
    case invalidUTF8
    case absolute
    case driveLetter
    case emptyComponent
    case dotComponent
    case dotDotComponent
    case backslash
    case controlCharacter(UInt32)
}

/// An `.rtk` or zstd payload error.
public indirect enum RTKError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No bytes at all.
    case emptyInput
    /// The first record does not start with the magic.
    case badMagic(offset: Int)
    /// A version this build does not read.
    case unsupportedVersion(Int)
    /// Must-reject flag bits are set (a future feature).
    case unknownRequiredFlags(UInt8)
    /// The input ends inside `field`, which starts at `offset`.
    case truncated(field: String, offset: Int)
    /// A length field claims more bytes than are left.
    case lengthBeyondEnd(field: String, offset: Int, length: UInt64, available: Int)
    /// A varint with a longer encoding than needed.
    case overlongVarint(field: String, offset: Int)
    /// A varint of more than 10 bytes or above 2^64 - 1.
    case varintOverflow(field: String, offset: Int)
    /// A field value outside its allowed range.
    case outOfRange(field: String, value: UInt64, range: ClosedRange<UInt64>)
    /// width * height above `RTKFormat.maxPixels`.
    case tooManyPixels(width: Int, height: Int, cap: Int)
    /// A sampler id this build does not know.
    case unknownSampler(Int)
    /// A record name that is not a plain relative path.
    case badName(RTKNameProblem)
    /// The stored CRC-32C differs from the one computed over the record.
    case checksumMismatch(stored: UInt32, computed: UInt32)
    /// `RTKRecord.ignorableFlags` holds bits outside `RTKFormat.mayIgnoreFlags` (writer side).
    case invalidIgnorableFlags(UInt8)
    /// The error `underlying` in record `index` (1-based) starting at byte `offset`.
    case inRecord(index: Int, offset: Int, RTKError)
    /// Bytes after the last whole record that do not begin another record.
    case trailingBytes(offset: Int, count: Int)

    /// libzstd reported an error.
    case zstd(operation: String, message: String)
    /// The payload is not one zstd frame (bad magic, truncated header, skippable frame...).
    case zstdNotAFrame(String)
    /// The frame header does not state its decompressed size.
    case zstdUnknownContentSize
    /// The frame header claims more than the caller's cap; nothing was allocated.
    case zstdTooLarge(claimed: UInt64, cap: Int)
    /// Bytes follow the zstd frame inside the payload.
    case zstdTrailingBytes(frameBytes: Int, total: Int)
    /// Decompression produced a different size than the header stated.
    case zstdSizeMismatch(expected: Int, got: Int)
    /// Invalid input to the dictionary trainer, or training failed.
    case dictionary(String)

    public var description: String {
        switch self {
        case .emptyInput:
            return "not an .rtk file (empty input)"
        case .badMagic(let offset):
            return "not an .rtk file (bad magic at byte \(offset))"
        case .unsupportedVersion(let v):
            return "unsupported .rtk version \(v) (this build reads version \(RTKFormat.version))"
        case .unknownRequiredFlags(let bits):
            return "record uses unsupported features (must-reject flag bits \(hex2(bits)) set)"
        case .truncated(let field, let offset):
            return "truncated record: \(field) at byte \(offset) runs past the end of the input"
        case .lengthBeyondEnd(let field, let offset, let length, let available):
            return "truncated record: \(field) at byte \(offset) is \(length) byte\(length == 1 ? "" : "s") but only "
                + "\(available) \(available == 1 ? "is" : "are") left"
        case .overlongVarint(let field, let offset):
            return "malformed record: overlong varint for \(field) at byte \(offset)"
        case .varintOverflow(let field, let offset):
            return "malformed record: varint for \(field) at byte \(offset) overflows 64 bits"
        case .outOfRange(let field, let value, let range):
            return "\(field) \(value) is out of range (\(range.lowerBound)...\(range.upperBound))"
        case .tooManyPixels(let w, let h, let cap):
            return "image \(w)x\(h) has more than \(cap) pixels"
        case .unknownSampler(let id):
            return "unknown sampler id \(id) (this build knows 0 Euler, 1 Heun)"
        case .badName(let problem):
            switch problem {
            case .empty: return "record name is empty"
            case .tooLong(let n): return "record name is \(n) bytes (cap \(RTKFormat.maxNameBytes))"
            case .invalidUTF8: return "record name is not valid UTF-8"
            case .absolute: return "record name is an absolute path"
            case .driveLetter: return "record name is an absolute path (drive letter)"
            case .emptyComponent: return "record name has an empty path component"
            case .dotComponent: return "record name has a '.' path component"
            case .dotDotComponent: return "record name has a '..' path component"
            case .backslash: return "record name contains a backslash"
            case .controlCharacter(let u):
                return "record name contains control character U+\(hex(UInt64(u), width: 4))"
            }
        case .checksumMismatch(let stored, let computed):
            return "checksum mismatch (stored 0x\(hex(UInt64(stored), width: 8)), computed 0x\(hex(UInt64(computed), width: 8)))"
        case .invalidIgnorableFlags(let bits):
            return "ignorable flags \(hex2(bits)) outside the may-ignore mask \(hex2(RTKFormat.mayIgnoreFlags))"
        case .inRecord(let index, let offset, let underlying):
            return "record \(index) (byte \(offset)): \(underlying)"
        case .trailingBytes(let offset, let count):
            return count == 1
                ? "1 trailing byte at byte \(offset) does not begin an .rtk record (bad magic)"
                : "\(count) trailing bytes at byte \(offset) do not begin an .rtk record (bad magic)"
        case .zstd(let operation, let message):
            return "zstd \(operation) failed: \(message)"
        case .zstdNotAFrame(let why):
            return "payload is not a zstd frame: \(why)"
        case .zstdUnknownContentSize:
            return "zstd frame does not state its decompressed size"
        case .zstdTooLarge(let claimed, let cap):
            return "zstd frame claims \(claimed) decompressed bytes, over the cap of \(cap)"
        case .zstdTrailingBytes(let frame, let total):
            return "\(total - frame) bytes follow the \(frame)-byte zstd frame"
        case .zstdSizeMismatch(let expected, let got):
            return "zstd frame decompressed to \(got) bytes, header said \(expected)"
        case .dictionary(let why):
            return "zstd dictionary: \(why)"
        }
    }

    /// The innermost error, without `inRecord` wrappers.
    public var underlying: RTKError {
        if case .inRecord(_, _, let e) = self { return e.underlying }
        return self
    }
}

@inline(__always) func hex(_ v: UInt64, width: Int) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return (s.count < width ? String(repeating: "0", count: width - s.count) : "") + s
}

@inline(__always) func hex2(_ v: UInt8) -> String { "0x" + hex(UInt64(v), width: 2) }
