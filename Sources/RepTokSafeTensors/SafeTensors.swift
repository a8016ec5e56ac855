// safetensors reader and writer (Hugging Face format).
//
// Layout: an 8-byte little-endian u64 header length N, then N bytes of UTF-8 JSON (an object
// mapping tensor name -> {"dtype", "shape", "data_offsets": [begin, end]} plus an optional
// "__metadata__" object of strings; it may be padded with trailing spaces), then the raw
// little-endian tensor data. Offsets are relative to the first byte after the header.
//
// Reading validates everything the reference implementation validates, and more; every problem is
// a thrown `SafeTensorsError`, never a trap. Files are memory-mapped (read as a fallback).
// The parser in JSONHeader.swift is a small strict JSON parser (duplicate keys are errors).
//
// Conversions to Float: F32, F16, BF16 natively (16-bit through the CRTKernels converters);
// F64, the integer types and BOOL are converted too (F64 and wide integers are rounded to the
// nearest Float; BOOL is 0 or 1). The 8-bit float types parse and allow raw access, but
// `floats`/`copyFloats` throw `.unsupportedConversion` for them.

import CRTKernels
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Data types

/// A safetensors element type, spelled as in the file.
public enum SafeTensorsDType: String, Sendable, CaseIterable, Hashable {
    case BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .BOOL, .U8, .I8, .F8_E5M2, .F8_E4M3: return 1
        case .I16, .U16, .F16, .BF16: return 2
        case .I32, .U32, .F32: return 4
        case .F64, .I64, .U64: return 8
        }
    }

    /// Whether `floats`/`copyFloats` can convert this type to Float.
    public var convertsToFloat: Bool {
        switch self {
        case .F8_E5M2, .F8_E4M3: return false
        default: return true
        }
    }
}

// MARK: - Errors

/// Every failure of reading or writing a safetensors file.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable, Sendable {
    // I/O
    case io(path: String, operation: String, errno: Int32)
    // Framing
    case fileTooShort(size: Int)
    case headerTooLarge(length: UInt64, limit: Int)
    case headerBeyondFile(length: UInt64, fileSize: Int)
    // Header syntax
    case headerNotUTF8(offset: Int)
    case invalidJSON(offset: Int, reason: String)
    case headerNotObject(found: String)
    case duplicateKey(key: String, offset: Int)
    case duplicateTensorName(String)
    case tooManyTensors(limit: Int)
    // Entries
    case entryNotObject(tensor: String, found: String)
    case missingField(tensor: String, field: String)
    case unexpectedField(tensor: String, field: String)
    case invalidField(tensor: String, field: String, reason: String)
    case unknownDtype(tensor: String, dtype: String)
    case invalidShape(tensor: String, reason: String)
    case elementCountOverflow(tensor: String)
    case byteCountMismatch(tensor: String, expected: Int, actual: Int)
    case offsetsReversed(tensor: String, begin: Int, end: Int)
    case offsetsOutOfBounds(tensor: String, end: Int, dataSize: Int)
    case offsetsOverlap(tensor: String, previous: String, begin: Int, previousEnd: Int)
    case offsetsGap(tensor: String, begin: Int, expected: Int)
    case dataNotCovered(coveredEnd: Int, dataSize: Int)
    case metadataNotObject(found: String)
    case metadataValueNotString(key: String, found: String)
    // Access
    case tensorNotFound(String)
    case unsupportedConversion(tensor: String, dtype: SafeTensorsDType)
    case countMismatch(tensor: String, expected: Int, actual: Int)
    // Writing
    case invalidName(String, reason: String)
    case shapeMismatch(tensor: String, shape: [Int], count: Int)

    public var description: String {
        switch self {
        case let .io(path, op, e):
            return "safetensors: \(op) '\(path)' failed: \(String(cString: strerror(e))) (errno \(e))"
        case let .fileTooShort(size):
            return "safetensors: file is \(size) bytes, shorter than the 8-byte header length"
        case let .headerTooLarge(length, limit):
            return "safetensors: header length \(length) exceeds the limit of \(limit) bytes"
        case let .headerBeyondFile(length, size):
            return "safetensors: header length \(length) runs past the end of the \(size)-byte file"
        case let .headerNotUTF8(offset):
            return "safetensors: header is not valid UTF-8 (at header byte \(offset))"
        case let .invalidJSON(offset, reason):
            return "safetensors: header is not valid JSON at header byte \(offset): \(reason)"
        case let .headerNotObject(found):
            return "safetensors: header JSON is \(found), not an object"
        case let .duplicateKey(key, offset):
            return "safetensors: duplicate JSON key \"\(key)\" at header byte \(offset)"
        case let .duplicateTensorName(name):
            return "safetensors: tensor \"\(name)\" is defined more than once"
        case let .tooManyTensors(limit):
            return "safetensors: header declares more than \(limit) tensors"
        case let .entryNotObject(t, found):
            return "safetensors: entry for tensor \"\(t)\" is \(found), not an object"
        case let .missingField(t, f):
            return "safetensors: tensor \"\(t)\" lacks the field \"\(f)\""
        case let .unexpectedField(t, f):
            return "safetensors: tensor \"\(t)\" has an unknown field \"\(f)\""
        case let .invalidField(t, f, reason):
            return "safetensors: tensor \"\(t)\" field \"\(f)\": \(reason)"
        case let .unknownDtype(t, d):
            return "safetensors: tensor \"\(t)\" has unknown dtype \"\(d)\""
        case let .invalidShape(t, reason):
            return "safetensors: tensor \"\(t)\" has an invalid shape: \(reason)"
        case let .elementCountOverflow(t):
            return "safetensors: tensor \"\(t)\": element or byte count overflows"
        case let .byteCountMismatch(t, expected, actual):
            return "safetensors: tensor \"\(t)\" spans \(actual) bytes but its dtype and shape need \(expected)"
        case let .offsetsReversed(t, b, e):
            return "safetensors: tensor \"\(t)\" data_offsets begin \(b) > end \(e)"
        case let .offsetsOutOfBounds(t, e, size):
            return "safetensors: tensor \"\(t)\" ends at data byte \(e), past the \(size)-byte data section"
        case let .offsetsOverlap(t, prev, b, prevEnd):
            return "safetensors: tensor \"\(t)\" begins at data byte \(b), overlapping \"\(prev)\" which ends at \(prevEnd)"
        case let .offsetsGap(t, b, expected):
            return "safetensors: tensor \"\(t)\" begins at data byte \(b), leaving a gap after byte \(expected)"
        case let .dataNotCovered(end, size):
            return "safetensors: tensors cover data bytes [0, \(end)) but the data section has \(size) bytes"
        case let .metadataNotObject(found):
            return "safetensors: \"__metadata__\" is \(found), not an object of strings"
        case let .metadataValueNotString(key, found):
            return "safetensors: \"__metadata__\" value for \"\(key)\" is \(found), not a string"
        case let .tensorNotFound(name):
            return "safetensors: no tensor named \"\(name)\""
        case let .unsupportedConversion(t, d):
            return "safetensors: tensor \"\(t)\" has dtype \(d.rawValue), which cannot be converted here"
        case let .countMismatch(t, expected, actual):
            return "safetensors: tensor \"\(t)\" has \(expected) elements, the destination \(actual)"
        case let .invalidName(name, reason):
            return "safetensors: invalid tensor name \"\(name)\": \(reason)"
        case let .shapeMismatch(t, shape, count):
            return "safetensors: tensor \"\(t)\" shape \(shape) does not hold \(count) elements"
        }
    }
}

// MARK: - Limits

/// Caps applied while parsing a header. All are checked before the memory they bound is used.
public struct SafeTensorsLimits: Sendable, Equatable {
    /// Largest accepted header (the reference implementation uses 100,000,000).
    public var maxHeaderBytes: Int = 100_000_000
    /// Most tensors in one file.
    public var maxTensors: Int = 1_000_000
    /// Deepest JSON nesting (a valid header needs 3).
    public var maxDepth: Int = 32
    /// Longest JSON string, in bytes after unescaping.
    public var maxStringBytes: Int = 16 << 20
    /// Longest JSON number lexeme.
    public var maxNumberLength: Int = 40
    /// Highest tensor rank.
    public var maxRank: Int = 64

    public init() {}
    public static let `default` = SafeTensorsLimits()
}

// MARK: - Tensor info

/// One tensor's header entry.
public struct TensorInfo: Sendable, Equatable, Hashable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// The tensor's `data_offsets`: bytes relative to the start of the data section.
    public let byteRange: Range<Int>
    /// Product of `shape` (1 for a scalar, shape []).
    public let elementCount: Int

    public var byteCount: Int { byteRange.count }
}

// MARK: - Backing storage

/// Owns the file bytes: a read-only mapping or a heap buffer. Never written after init.
final class SafeTensorsStorage: @unchecked Sendable {
    let base: UnsafeRawPointer
    let count: Int
    let isMapped: Bool

    /// Heap copy of `bytes`.
    init(copying bytes: UnsafeRawBufferPointer) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        if let src = bytes.baseAddress, bytes.count > 0 { p.copyMemory(from: src, byteCount: bytes.count) }
        base = UnsafeRawPointer(p)
        count = bytes.count
        isMapped = false
    }

    private init(base: UnsafeRawPointer, count: Int, isMapped: Bool) {
        self.base = base
        self.count = count
        self.isMapped = isMapped
    }

    /// Maps `path` read-only; reads it into memory when mapping is impossible.
    static func open(path: String) throws -> SafeTensorsStorage {
        let fd = path.withCString { openReadOnly($0) }
        if fd < 0 { throw SafeTensorsError.io(path: path, operation: "open", errno: errno) }
        defer { _ = close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw SafeTensorsError.io(path: path, operation: "stat", errno: errno) }
        let isRegular = (st.st_mode & S_IFMT) == S_IFREG
        if isRegular {
            let size = Int(st.st_size)
            if size == 0 { return SafeTensorsStorage(copying: UnsafeRawBufferPointer(start: nil, count: 0)) }
            if let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0),
               m != UnsafeMutableRawPointer(bitPattern: -1) {
                return SafeTensorsStorage(base: UnsafeRawPointer(m), count: size, isMapped: true)
            }
        }
        // Fallback: read until end of file.
        var capacity = isRegular ? max(Int(st.st_size), 1) : 1 << 16
        var buf = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        var used = 0
        while true {
            if used == capacity {
                let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 64)
                bigger.copyMemory(from: buf, byteCount: used)
                buf.deallocate()
                buf = bigger
                capacity *= 2
            }
            let r = read(fd, buf + used, min(capacity - used, 1 << 30))
            if r < 0 {
                if errno == EINTR { continue }
                let e = errno
                buf.deallocate()
                throw SafeTensorsError.io(path: path, operation: "read", errno: e)
            }
            if r == 0 { break }
            used += r
        }
        return SafeTensorsStorage(base: UnsafeRawPointer(buf), count: used, isMapped: false)
    }

    deinit {
        if isMapped {
            _ = munmap(UnsafeMutableRawPointer(mutating: base), count)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }
}

@inline(__always)
private func openReadOnly(_ path: UnsafePointer<CChar>) -> Int32 {
    open(path, O_RDONLY | O_CLOEXEC)
}

// MARK: - Reader

/// A parsed safetensors file. Immutable and safe to share between threads.
public final class SafeTensorsFile: Sendable {
    let storage: SafeTensorsStorage
    /// Absolute file offset of the data section (8 + header length).
    public let dataStart: Int
    /// Size of the data section in bytes.
    public let dataSize: Int
    /// Tensor names, sorted (by Unicode scalar order, which equals UTF-8 byte order).
    public let names: [String]
    /// The `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    private let table: [String: TensorInfo]

    /// Memory-maps (or, failing that, reads) the file at `path` and validates it.
    public convenience init(path: String, limits: SafeTensorsLimits = .default) throws {
        try self.init(storage: SafeTensorsStorage.open(path: path), limits: limits)
    }

    /// Parses an in-memory file (the bytes are copied once).
    public convenience init(data: [UInt8], limits: SafeTensorsLimits = .default) throws {
        let s = data.withUnsafeBytes { SafeTensorsStorage(copying: $0) }
        try self.init(storage: s, limits: limits)
    }

    /// Parses an in-memory file (the bytes are copied once).
    public convenience init(bytes: Data, limits: SafeTensorsLimits = .default) throws {
        let s = bytes.withUnsafeBytes { SafeTensorsStorage(copying: $0) }
        try self.init(storage: s, limits: limits)
    }

    init(storage: SafeTensorsStorage, limits: SafeTensorsLimits) throws {
        let file = UnsafeRawBufferPointer(start: storage.base, count: storage.count)
        let parsed = try parseSafeTensors(file, limits: limits)
        self.storage = storage
        dataStart = parsed.dataStart
        dataSize = storage.count - parsed.dataStart
        metadata = parsed.metadata
        var t = [String: TensorInfo](minimumCapacity: parsed.tensors.count)
        for info in parsed.tensors { t[info.name] = info }
        table = t
        names = parsed.tensors.map(\.name).sorted(by: utf8Less)
    }

    /// Whether the file is memory-mapped (false: it was read into memory).
    public var isMemoryMapped: Bool { storage.isMapped }

    /// All tensors, sorted by name.
    public var tensors: [TensorInfo] { names.map { table[$0]! } }

    public func contains(_ name: String) -> Bool { table[name] != nil }

    /// The header entry of `name`.
    public func info(_ name: String) throws -> TensorInfo {
        guard let i = table[name] else { throw SafeTensorsError.tensorNotFound(name) }
        return i
    }

    /// Calls `body` with the tensor's raw little-endian bytes, in place (no copy). The pointer is
    /// valid only during the call and may be unaligned.
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let i = try info(name)
        return try withExtendedLifetime(storage) {
            try body(UnsafeRawBufferPointer(start: storage.base + dataStart + i.byteRange.lowerBound,
                                            count: i.byteCount))
        }
    }

    /// A copy of the tensor's raw little-endian bytes.
    public func rawBytes(_ name: String) throws -> [UInt8] {
        try withRawBytes(name) { [UInt8]($0) }
    }

    /// The tensor converted to Float (see the file comment for which dtypes convert).
    public func floats(_ name: String) throws -> [Float] {
        let i = try info(name)
        guard i.dtype.convertsToFloat else { throw SafeTensorsError.unsupportedConversion(tensor: name, dtype: i.dtype) }
        let n = i.elementCount
        return try [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            if n > 0 { try copyFloats(name, into: buf.baseAddress!, count: n) }
            initialized = n
        }
    }

    /// Converts the tensor to Float straight into `destination`, which must hold exactly
    /// `count` == element count values.
    public func copyFloats(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        let i = try info(name)
        guard count == i.elementCount else {
            throw SafeTensorsError.countMismatch(tensor: name, expected: i.elementCount, actual: count)
        }
        guard i.dtype.convertsToFloat else { throw SafeTensorsError.unsupportedConversion(tensor: name, dtype: i.dtype) }
        if count == 0 { return }
        withExtendedLifetime(storage) {
            let src = storage.base + dataStart + i.byteRange.lowerBound
            convertToFloat(src, i.dtype, destination, count)
        }
    }

    /// Copies the tensor into `destination` as Float (convenience over `copyFloats(_:into:count:)`).
    public func copyFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let p = destination.baseAddress else {
            let i = try info(name)
            if i.elementCount != 0 {
                throw SafeTensorsError.countMismatch(tensor: name, expected: i.elementCount, actual: 0)
            }
            return
        }
        try copyFloats(name, into: p, count: destination.count)
    }
}

/// Byte-wise UTF-8 order (the order the writer uses and Rust's `str` ordering).
func utf8Less(_ a: String, _ b: String) -> Bool {
    var a = a, b = b
    return a.withUTF8 { pa in
        b.withUTF8 { pb in
            let n = min(pa.count, pb.count)
            let c = n == 0 ? 0 : memcmp(pa.baseAddress!, pb.baseAddress!, n)
            return c != 0 ? c < 0 : pa.count < pb.count
        }
    }
}

// MARK: - Conversions

private let conversionChunk = 8192

/// Converts `n` elements at `src` (any alignment, little-endian) into `dst`.
func convertToFloat(_ src: UnsafeRawPointer, _ dtype: SafeTensorsDType, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    switch dtype {
    case .F32:
        #if _endian(little)
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: n * 4)
        #else
        for k in 0..<n {
            dst[k] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self)))
        }
        #endif
    case .F16, .BF16:
        let bf16 = dtype == .BF16
        #if _endian(little)
        if Int(bitPattern: src) & 1 == 0 {
            let s = src.bindMemory(to: UInt16.self, capacity: n)
            if bf16 { rt_bf16_to_f32(dst, s, n) } else { rt_f16_to_f32(dst, s, n) }
            return
        }
        #endif
        // Unaligned (or big-endian): stage aligned chunks.
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: conversionChunk) { tmp in
            let t = tmp.baseAddress!
            var k = 0
            while k < n {
                let m = min(conversionChunk, n - k)
                #if _endian(little)
                UnsafeMutableRawPointer(t).copyMemory(from: src + 2 * k, byteCount: 2 * m)
                #else
                for j in 0..<m {
                    t[j] = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * (k + j), as: UInt16.self))
                }
                #endif
                if bf16 { rt_bf16_to_f32(dst + k, t, m) } else { rt_f16_to_f32(dst + k, t, m) }
                k += m
            }
        }
    case .F64:
        for k in 0..<n {
            dst[k] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * k, as: UInt64.self))))
        }
    case .I64:
        for k in 0..<n { dst[k] = Float(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * k, as: Int64.self))) }
    case .U64:
        for k in 0..<n { dst[k] = Float(UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * k, as: UInt64.self))) }
    case .I32:
        for k in 0..<n { dst[k] = Float(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * k, as: Int32.self))) }
    case .U32:
        for k in 0..<n { dst[k] = Float(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))) }
    case .I16:
        for k in 0..<n { dst[k] = Float(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * k, as: Int16.self))) }
    case .U16:
        for k in 0..<n { dst[k] = Float(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self))) }
    case .I8:
        for k in 0..<n { dst[k] = Float(src.load(fromByteOffset: k, as: Int8.self)) }
    case .U8:
        for k in 0..<n { dst[k] = Float(src.load(fromByteOffset: k, as: UInt8.self)) }
    case .BOOL:
        for k in 0..<n { dst[k] = src.load(fromByteOffset: k, as: UInt8.self) != 0 ? 1 : 0 }
    case .F8_E5M2, .F8_E4M3:
        break  // callers reject these first (convertsToFloat)
    }
}

/// Converts `n` floats into `dtype` (F32, F16 or BF16) little-endian bytes at `dst` (any alignment
/// for F32; 2-byte aligned for 16-bit types).
func convertFromFloat(_ src: UnsafePointer<Float>, _ dtype: SafeTensorsDType, _ dst: UnsafeMutableRawPointer, _ n: Int) {
    if n == 0 { return }
    switch dtype {
    case .F32:
        #if _endian(little)
        dst.copyMemory(from: src, byteCount: 4 * n)
        #else
        for k in 0..<n { dst.storeBytes(of: src[k].bitPattern.littleEndian, toByteOffset: 4 * k, as: UInt32.self) }
        #endif
    case .F16, .BF16:
        let d = dst.bindMemory(to: UInt16.self, capacity: n)
        if dtype == .BF16 { rt_f32_to_bf16(d, src, n) } else { rt_f32_to_f16(d, src, n) }
        #if _endian(big)
        for k in 0..<n { d[k] = d[k].littleEndian }
        #endif
    default:
        break  // the writer rejects other storage types first
    }
}
