// safetensors writer.
//
// Output is deterministic:
// - Data order: tensors sorted by element size descending, then by name (UTF-8 byte order). With
//   the data section starting at a multiple of 8, every tensor then starts at a multiple of its
//   element size (as the Python library arranges by sorting on dtype first). For files whose
//   tensors all have one element size (the usual all-F32 model) this is simply name order.
// - Header: compact JSON, no whitespace, keys sorted by UTF-8 bytes at every level ("__metadata__"
//   included, written only when metadata is non-empty), entries as
//   {"data_offsets":[b,e],"dtype":"F32","shape":[...]}; padded with spaces so that 8 + header
//   length is a multiple of 8.

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Musl)
private let systemWrite = Musl.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif

/// Collects tensors and writes a safetensors file.
public struct SafeTensorsWriter: Sendable {
    struct Entry: Sendable {
        var dtype: SafeTensorsDType
        var shape: [Int]
        var bytes: [UInt8]
    }

    private var entries: [String: Entry] = [:]
    /// The `__metadata__` map (omitted from the file when empty).
    public var metadata: [String: String]

    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    /// Number of tensors added.
    public var count: Int { entries.count }
    /// Names added so far, sorted.
    public var names: [String] { entries.keys.sorted(by: utf8Less) }

    /// Adds a Float tensor stored as `dtype` (.F32, .F16 or .BF16; 16-bit types are rounded to
    /// nearest even). `values.count` must equal the product of `shape`.
    public mutating func add(_ name: String, shape: [Int], values: [Float], as dtype: SafeTensorsDType = .F32) throws {
        try values.withUnsafeBufferPointer { try add(name, shape: shape, values: $0, as: dtype) }
    }

    /// Adds a Float tensor from a buffer (copied/converted now; the buffer need not outlive the call).
    public mutating func add(_ name: String, shape: [Int], values: UnsafeBufferPointer<Float>,
                             as dtype: SafeTensorsDType = .F32) throws {
        try checkName(name)
        guard dtype == .F32 || dtype == .F16 || dtype == .BF16 else {
            throw SafeTensorsError.unsupportedConversion(tensor: name, dtype: dtype)
        }
        let (n, byteCount) = try Self.counts(name, shape, dtype)
        guard n == values.count else { throw SafeTensorsError.shapeMismatch(tensor: name, shape: shape, count: values.count) }
        let bytes = [UInt8](unsafeUninitializedCapacity: byteCount) { buf, initialized in
            if n > 0 { Self.store(values.baseAddress!, dtype, UnsafeMutableRawPointer(buf.baseAddress!), n) }
            initialized = byteCount
        }
        entries[name] = Entry(dtype: dtype, shape: shape, bytes: bytes)
    }

    /// Adds a tensor from its raw little-endian bytes; `bytes.count` must equal
    /// product(shape) * dtype.byteSize.
    public mutating func add(_ name: String, shape: [Int], dtype: SafeTensorsDType, rawBytes: UnsafeRawBufferPointer) throws {
        try checkName(name)
        let (_, byteCount) = try Self.counts(name, shape, dtype)
        guard rawBytes.count == byteCount else {
            throw SafeTensorsError.byteCountMismatch(tensor: name, expected: byteCount, actual: rawBytes.count)
        }
        entries[name] = Entry(dtype: dtype, shape: shape, bytes: [UInt8](rawBytes))
    }

    /// Adds a tensor from its raw little-endian bytes.
    public mutating func add(_ name: String, shape: [Int], dtype: SafeTensorsDType, rawBytes: [UInt8]) throws {
        try rawBytes.withUnsafeBytes { try add(name, shape: shape, dtype: dtype, rawBytes: $0) }
    }

    /// The complete file.
    public func serialize() throws -> [UInt8] {
        let (header, order) = try layout()
        var out: [UInt8] = []
        out.reserveCapacity(header.count + order.reduce(0) { $0 + $1.bytes.count })
        out.append(contentsOf: header)
        for e in order { out.append(contentsOf: e.bytes) }
        return out
    }

    /// Writes the file atomically: a temporary file in the same directory, fsync, then rename.
    public func write(to path: String) throws {
        let (header, order) = try layout()
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let tmp = (dir.isEmpty ? "" : dir) + "/." + base + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = tmp.withCString { open($0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        if fd < 0 { throw SafeTensorsError.io(path: tmp, operation: "create", errno: errno) }
        var closed = false
        do {
            try Self.writeAll(fd, header, path: tmp)
            for e in order { try Self.writeAll(fd, e.bytes, path: tmp) }
            if fsync(fd) != 0 { throw SafeTensorsError.io(path: tmp, operation: "fsync", errno: errno) }
            closed = true
            if close(fd) != 0 { throw SafeTensorsError.io(path: tmp, operation: "close", errno: errno) }
            let r = tmp.withCString { t in path.withCString { rename(t, $0) } }
            if r != 0 { throw SafeTensorsError.io(path: path, operation: "rename", errno: errno) }
        } catch {
            if !closed { _ = close(fd) }
            _ = tmp.withCString { unlink($0) }
            throw error
        }
    }

    // MARK: - Internals

    private func checkName(_ name: String) throws {
        if name.isEmpty { throw SafeTensorsError.invalidName(name, reason: "names must be non-empty") }
        if name == "__metadata__" { throw SafeTensorsError.invalidName(name, reason: "the name is reserved for metadata") }
        if entries[name] != nil { throw SafeTensorsError.duplicateTensorName(name) }
    }

    private static func counts(_ name: String, _ shape: [Int], _ dtype: SafeTensorsDType) throws -> (Int, Int) {
        var n = 1
        for (j, d) in shape.enumerated() {
            if d < 0 { throw SafeTensorsError.invalidShape(tensor: name, reason: "dimension \(j) is negative (\(d))") }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { throw SafeTensorsError.elementCountOverflow(tensor: name) }
            n = p
        }
        let (b, o) = n.multipliedReportingOverflow(by: dtype.byteSize)
        if o { throw SafeTensorsError.elementCountOverflow(tensor: name) }
        return (n, b)
    }

    /// Float -> dtype bytes; stages through an aligned buffer if `dst` is not 2-byte aligned.
    private static func store(_ src: UnsafePointer<Float>, _ dtype: SafeTensorsDType, _ dst: UnsafeMutableRawPointer, _ n: Int) {
        if dtype == .F32 || Int(bitPattern: dst) & 1 == 0 {
            convertFromFloat(src, dtype, dst, n)
            return
        }
        let chunk = 8192
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: chunk) { tmp in
            var k = 0
            while k < n {
                let m = min(chunk, n - k)
                convertFromFloat(src + k, dtype, UnsafeMutableRawPointer(tmp.baseAddress!), m)
                (dst + 2 * k).copyMemory(from: tmp.baseAddress!, byteCount: 2 * m)
                k += m
            }
        }
    }

    /// The 8-byte length plus padded JSON header, and the entries in data order.
    private func layout() throws -> ([UInt8], [Entry]) {
        let dataOrder = entries.sorted { a, b in
            let sa = a.value.dtype.byteSize, sb = b.value.dtype.byteSize
            return sa != sb ? sa > sb : utf8Less(a.key, b.key)
        }
        var offsets: [String: (Int, Int)] = [:]
        offsets.reserveCapacity(dataOrder.count)
        var position = 0
        for (name, e) in dataOrder {
            offsets[name] = (position, position + e.bytes.count)
            position += e.bytes.count
        }
        var keys = Array(entries.keys)
        if !metadata.isEmpty { keys.append("__metadata__") }
        keys.sort(by: utf8Less)

        var json: [UInt8] = [UInt8(ascii: "{")]
        for (k, key) in keys.enumerated() {
            if k > 0 { json.append(UInt8(ascii: ",")) }
            appendJSONString(key, to: &json)
            json.append(UInt8(ascii: ":"))
            if key == "__metadata__" {
                json.append(UInt8(ascii: "{"))
                for (m, mk) in metadata.keys.sorted(by: utf8Less).enumerated() {
                    if m > 0 { json.append(UInt8(ascii: ",")) }
                    appendJSONString(mk, to: &json)
                    json.append(UInt8(ascii: ":"))
                    appendJSONString(metadata[mk]!, to: &json)
                }
                json.append(UInt8(ascii: "}"))
            } else {
                let e = entries[key]!
                let (b, en) = offsets[key]!
                json.append(contentsOf: "{\"data_offsets\":[\(b),\(en)],\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[".utf8)
                for (j, d) in e.shape.enumerated() {
                    if j > 0 { json.append(UInt8(ascii: ",")) }
                    json.append(contentsOf: String(d).utf8)
                }
                json.append(contentsOf: "]}".utf8)
            }
        }
        json.append(UInt8(ascii: "}"))
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        if json.count > SafeTensorsLimits.default.maxHeaderBytes {
            throw SafeTensorsError.headerTooLarge(length: UInt64(json.count), limit: SafeTensorsLimits.default.maxHeaderBytes)
        }
        var header: [UInt8] = []
        header.reserveCapacity(8 + json.count)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { header.append(contentsOf: $0) }
        header.append(contentsOf: json)
        return (header, dataOrder.map(\.value))
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let r = systemWrite(fd, buf.baseAddress! + done, min(buf.count - done, 1 << 30))
                if r < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError.io(path: path, operation: "write", errno: errno)
                }
                done += r
            }
        }
    }
}

@inline(__always) private func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x61 + v - 10 }

/// Appends `s` as a JSON string literal: quotes, backslashes and control characters escaped,
/// everything else as raw UTF-8.
func appendJSONString(_ s: String, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    for c in s.utf8 {
        switch c {
        case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
        case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
        case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
        case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
        case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
        case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
        case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
        case 0..<0x20:
            out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, 0x30 + (c >> 4), hexDigit(c & 15)])
        default: out.append(c)
        }
    }
    out.append(UInt8(ascii: "\""))
}
