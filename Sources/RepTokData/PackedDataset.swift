// The .rtds pack: whole training pictures as raw RGB8, memory-mapped.
//
// Layout (all integers little-endian; docs/DATASET.md is the reference):
//
//   header, 64 bytes
//     0  magic "RTDSPACK"            8 bytes
//     8  version (1)                 u32
//    12  header size (64)            u32
//    16  count                       u64   number of images
//    24  index offset                u64   >= 64
//    32  names offset                u64   class-name table
//    40  names size                  u32   bytes
//    44  class count                 u32
//    48  data offset                 u64
//    56  file size                   u64   must equal the real size
//   index, count x 32 bytes
//     0  pixel offset                u64   absolute; w*h*3 bytes, row-major HWC, R G B
//     8  width, height               u32, u32
//    16  class id, flags             u16, u16
//    20  source id, group id         u32, u32
//    28  CRC-32 (IEEE) of the pixels u32   0 = not recorded
//   class names: per class, u16 byte length (1...255) + UTF-8 bytes
//   pixel data (the writers align each image to 64 bytes; readers only require order)

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Constants of the .rtds format.
public enum RTDS {
    public static let magic: [UInt8] = Array("RTDSPACK".utf8)
    public static let version: UInt32 = 1
    public static let headerSize = 64
    public static let entrySize = 32
    /// Writers align the index-free data area and every image to this many bytes.
    public static let dataAlignment = 64
    /// Caps a reader enforces (a pack beyond them is rejected, not trusted).
    public static let maxCount = 1 << 24
    public static let maxSide = 16_384
    public static let maxClasses = 65_535
    public static let maxClassNameBytes = 255

    /// Per-image flag bits (index entry, offset 18).
    public enum Flag {
        public static let videoFrame: UInt16 = 1        // a frame of a video clip
        public static let greySource: UInt16 = 2        // the original was greyscale
        public static let alphaFlattened: UInt16 = 4    // the original had alpha (flattened over grey)
        public static let rotated: UInt16 = 8           // turned upright from EXIF / album metadata
        public static let downscaled: UInt16 = 16       // shrunk to the builder's short-side cap
        public static let known: UInt16 = 0x1F
    }
}

public enum PackedDatasetError: Error, Equatable, CustomStringConvertible {
    /// The file could not be opened, read or mapped.
    case io(String)
    /// The bytes are not a valid .rtds pack (the message says which check failed).
    case invalid(String)

    public var description: String {
        switch self {
        case .io(let m): return "rtds: \(m)"
        case .invalid(let m): return "rtds: invalid pack: \(m)"
        }
    }
}

/// One index entry.
public struct PackedImageInfo: Equatable, Sendable {
    public var offset: Int
    public var width: Int
    public var height: Int
    public var classID: Int
    public var flags: UInt16
    public var sourceID: Int
    public var groupID: Int
    public var crc32: UInt32
    public var byteCount: Int { width * height * 3 }
}

/// A read-only, memory-mapped .rtds pack. Every header and index field is validated when it is
/// opened (counts, offsets in bounds, sizes consistent, non-overlapping images in file order,
/// class ids in range, caps); after that, accessors only trap on an out-of-range index, like an
/// array. The mapping is private and read-only: a file truncated by someone else while it is
/// mapped can still fault (SIGBUS), as with any mmap reader.
public final class PackedDataset: @unchecked Sendable {
    public let path: String
    public let count: Int
    public let classNames: [String]
    public let fileSize: Int
    private let infos: [PackedImageInfo]
    private let base: UnsafeRawPointer
    private let release: () -> Void

    /// Opens and validates `path` (memory-mapped). With `verifyChecksums`, also checks the CRC-32
    /// of every image that records one (reads the whole file once).
    public init(path: String, verifyChecksums: Bool = false) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PackedDatasetError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PackedDatasetError.io("cannot stat \(path)") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw PackedDatasetError.io("\(path) is not a regular file") }
        let size = Int(st.st_size)
        guard size >= RTDS.headerSize else {
            throw PackedDatasetError.invalid("file is \(size) bytes, shorter than the \(RTDS.headerSize)-byte header")
        }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw PackedDatasetError.io("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        let raw = UnsafeRawPointer(m)
        do {
            let parsed = try PackedDataset.parse(UnsafeRawBufferPointer(start: raw, count: size))
            (count, classNames, infos) = parsed
        } catch {
            munmap(m, size)
            throw error
        }
        base = raw
        fileSize = size
        release = { munmap(m, size) }
        if verifyChecksums { try verifyAll() }
    }

    /// Validates a pack held in memory (copied; for tests, tools and fuzzing).
    public init(bytes: [UInt8], verifyChecksums: Bool = false) throws {
        path = "<memory>"
        let size = bytes.count
        let buf = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: 64)
        bytes.withUnsafeBytes { if size > 0 { buf.copyMemory(from: $0.baseAddress!, byteCount: size) } }
        do {
            (count, classNames, infos) = try PackedDataset.parse(UnsafeRawBufferPointer(start: buf, count: size))
        } catch {
            buf.deallocate()
            throw error
        }
        base = UnsafeRawPointer(buf)
        fileSize = size
        release = { buf.deallocate() }
        if verifyChecksums { try verifyAll() }
    }

    deinit { release() }

    // MARK: accessors

    public var classCount: Int { classNames.count }
    public func info(_ i: Int) -> PackedImageInfo { infos[i] }
    public func width(_ i: Int) -> Int { infos[i].width }
    public func height(_ i: Int) -> Int { infos[i].height }
    public func classID(_ i: Int) -> Int { infos[i].classID }
    public func flags(_ i: Int) -> UInt16 { infos[i].flags }
    public func sourceID(_ i: Int) -> Int { infos[i].sourceID }
    public func groupID(_ i: Int) -> Int { infos[i].groupID }
    public func className(_ c: Int) -> String { classNames[c] }

    /// The pixels of image `i`: height x width x 3 bytes, row-major, R G B. Valid while the
    /// dataset is alive.
    public func pixels(_ i: Int) -> UnsafeBufferPointer<UInt8> {
        let e = infos[i]
        return UnsafeBufferPointer(start: (base + e.offset).assumingMemoryBound(to: UInt8.self), count: e.byteCount)
    }

    /// Whether image `i`'s pixels match its recorded CRC-32 (true when none is recorded).
    public func checksumMatches(_ i: Int) -> Bool {
        let e = infos[i]
        if e.crc32 == 0 { return true }
        return CRC32.checksum(UnsafeRawBufferPointer(pixels(i))) == e.crc32
    }

    private func verifyAll() throws {
        for i in 0..<count where !checksumMatches(i) {
            throw PackedDatasetError.invalid("image \(i): pixel CRC-32 mismatch")
        }
    }

    // MARK: validation

    static func parse(_ b: UnsafeRawBufferPointer) throws -> (Int, [String], [PackedImageInfo]) {
        func bad(_ m: String) -> PackedDatasetError { .invalid(m) }
        let size = b.count
        guard size >= RTDS.headerSize else { throw bad("shorter than the header") }
        func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        // Converts a u64 field to Int only when it is at most the file size (no overflow later).
        func within(_ v: UInt64, _ what: String) throws -> Int {
            guard v <= UInt64(size) else { throw bad("\(what) \(v) is beyond the end of the file (\(size) bytes)") }
            return Int(v)
        }

        guard b.prefix(8).elementsEqual(RTDS.magic) else { throw bad("no RTDSPACK magic") }
        let version = u32(8)
        guard version == RTDS.version else { throw bad("unsupported version \(version) (this reader knows \(RTDS.version))") }
        guard u32(12) == UInt32(RTDS.headerSize) else { throw bad("header size \(u32(12)), expected \(RTDS.headerSize)") }
        let rawCount = u64(16)
        guard rawCount <= UInt64(RTDS.maxCount) else { throw bad("count \(rawCount) is over the cap \(RTDS.maxCount)") }
        let count = Int(rawCount)
        let indexOff = try within(u64(24), "index offset")
        let namesOff = try within(u64(32), "names offset")
        let namesSize = Int(u32(40))
        let classCount = Int(u32(44))
        let dataOff = try within(u64(48), "data offset")
        let declared = u64(56)
        guard declared == UInt64(size) else { throw bad("header says \(declared) bytes, the file has \(size)") }
        guard classCount <= RTDS.maxClasses else { throw bad("class count \(classCount) is over the cap \(RTDS.maxClasses)") }
        guard count == 0 || classCount >= 1 else { throw bad("images but no classes") }
        guard indexOff >= RTDS.headerSize else { throw bad("index offset \(indexOff) overlaps the header") }
        let indexEnd = indexOff + count * RTDS.entrySize   // count <= 2^24: no overflow
        guard indexEnd <= size else { throw bad("index (\(count) entries) runs past the end of the file") }
        guard namesOff >= indexEnd else { throw bad("class names overlap the index") }
        guard namesSize <= size - namesOff else { throw bad("class names run past the end of the file") }
        guard dataOff >= namesOff + namesSize else { throw bad("pixel data overlaps the class names") }

        // class names
        var names = [String]()
        names.reserveCapacity(classCount)
        var p = namesOff
        let namesEnd = namesOff + namesSize
        for c in 0..<classCount {
            guard p + 2 <= namesEnd else { throw bad("class name \(c) runs past the name table") }
            let n = Int(u16(p))
            guard n >= 1, n <= RTDS.maxClassNameBytes else { throw bad("class name \(c) has length \(n)") }
            guard p + 2 + n <= namesEnd else { throw bad("class name \(c) runs past the name table") }
            let bytes = UnsafeRawBufferPointer(rebasing: b[(p + 2)..<(p + 2 + n)])
            guard let s = String(validating: bytes.bindMemory(to: UInt8.self), as: UTF8.self) else {
                throw bad("class name \(c) is not UTF-8")
            }
            names.append(s)
            p += 2 + n
        }
        guard p == namesEnd else { throw bad("name table has \(namesEnd - p) stray bytes") }

        // index
        var infos = [PackedImageInfo]()
        infos.reserveCapacity(count)
        var prevEnd = dataOff
        for i in 0..<count {
            let e = indexOff + i * RTDS.entrySize
            let off = u64(e)
            let w = Int(u32(e + 8)), h = Int(u32(e + 12))
            let cls = Int(u16(e + 16)), flags = u16(e + 18)
            guard w >= 1, h >= 1, w <= RTDS.maxSide, h <= RTDS.maxSide else {
                throw bad("image \(i) is \(w)x\(h) (sides must be 1...\(RTDS.maxSide))")
            }
            guard cls < classCount else { throw bad("image \(i) has class \(cls) of \(classCount)") }
            guard flags & ~RTDS.Flag.known == 0 else { throw bad("image \(i) has unknown flags \(flags)") }
            let n = w * h * 3   // <= 3 * 2^28: no overflow
            guard off <= UInt64(size), Int(off) >= prevEnd else {
                throw bad("image \(i) starts at \(off), before the end of the previous image or the data area (\(prevEnd))")
            }
            guard n <= size - Int(off) else { throw bad("image \(i) (\(w)x\(h)) runs past the end of the file") }
            infos.append(PackedImageInfo(offset: Int(off), width: w, height: h, classID: cls, flags: flags,
                                         sourceID: Int(u32(e + 20)), groupID: Int(u32(e + 24)), crc32: u32(e + 28)))
            prevEnd = Int(off) + n
        }
        return (count, names, infos)
    }
}

/// CRC-32 (IEEE 802.3, as zlib.crc32): reflected polynomial 0xEDB88320, init and final XOR
/// 0xFFFFFFFF. Check value CRC-32("123456789") = 0xCBF43926. Slicing by 8.
public enum CRC32 {
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 { t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[Int(t[(k - 1) * 256 + i] & 0xFF)] }
        }
        return t
    }()

    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        let n = bytes.count
        guard n > 0, let p = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return crc }
        tables.withUnsafeBufferPointer { t in
            var i = 0
            while i + 8 <= n {
                let lo = c ^ (UInt32(p[i]) | UInt32(p[i + 1]) << 8 | UInt32(p[i + 2]) << 16 | UInt32(p[i + 3]) << 24)
                let hi = UInt32(p[i + 4]) | UInt32(p[i + 5]) << 8 | UInt32(p[i + 6]) << 16 | UInt32(p[i + 7]) << 24
                c = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n { c = t[Int((c ^ UInt32(p[i])) & 0xFF)] ^ (c >> 8); i += 1 }
        }
        return ~c
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 { update(0, bytes) }
    public static func checksum(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { update(0, $0) } }
}
