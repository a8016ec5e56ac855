import RepTokTensor
import RepTokTestSupport
import Foundation
import XCTest
@testable import RepTokSafeTensors

// MARK: - Helpers shared by the test files

/// A crafted file: 8-byte length (the real one unless overridden), header bytes, data.
func craftFile(headerBytes: [UInt8], data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
    var out: [UInt8] = []
    withUnsafeBytes(of: (length ?? UInt64(headerBytes.count)).littleEndian) { out.append(contentsOf: $0) }
    out.append(contentsOf: headerBytes)
    out.append(contentsOf: data)
    return out
}

func craftFile(_ header: String, data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
    craftFile(headerBytes: Array(header.utf8), data: data, length: length)
}

func leBytes(_ values: [Float]) -> [UInt8] {
    var out: [UInt8] = []
    for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
    return out
}

func leBytes16(_ values: [UInt16]) -> [UInt8] {
    var out: [UInt8] = []
    for v in values { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    return out
}

func u16s(_ bytes: [UInt8]) -> [UInt16] {
    stride(from: 0, to: bytes.count, by: 2).map { UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8 }
}

/// A fresh temporary directory, removed at the end of the test.
func makeTempDir(_ test: XCTestCase) throws -> String {
    let dir = NSTemporaryDirectory() + "reptok-st-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

/// Independent round-to-nearest-even reference for Float -> BF16 (finite inputs).
func referenceBF16(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    let lo = bits & 0xFFFF_0000
    let hi = lo &+ 0x1_0000  // next BF16 away from zero (may be inf)
    let dl = abs(Double(x) - Double(Float(bitPattern: lo)))
    let dh = abs(Double(Float(bitPattern: hi)) - Double(x))
    if dl < dh { return UInt16(lo >> 16) }
    if dh < dl { return UInt16(hi >> 16) }
    return (lo >> 16) & 1 == 0 ? UInt16(lo >> 16) : UInt16(hi >> 16)
}

/// Writes `values` as `dtype` through the writer and returns the stored 16-bit patterns.
func storedBits(_ values: [Float], as dtype: SafeTensorsDType) throws -> [UInt16] {
    var w = SafeTensorsWriter()
    try w.add("t", shape: [values.count], values: values, as: dtype)
    return u16s(try SafeTensorsFile(data: w.serialize()).rawBytes("t"))
}

func bits(_ f: Float) -> UInt32 { f.bitPattern }

// MARK: - Tests

final class SafeTensorsTests: XCTestCase {

    // MARK: Round trips

    func testF32RoundTripIsExact() throws {
        var rng = SplitMix64(seed: 1)
        var values = (0..<1000).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng)) }
        values += [0, -0.0, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, .greatestFiniteMagnitude]
        var w = SafeTensorsWriter()
        try w.add("x", shape: [values.count], values: values)
        try w.add("m", shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        let f = try SafeTensorsFile(data: w.serialize())
        XCTAssertEqual(f.names, ["m", "x"])
        XCTAssertEqual(try f.floats("x").map(bits), values.map(bits))  // bit-exact, NaN payloads too
        XCTAssertEqual(try f.floats("m"), [1, 2, 3, 4, 5, 6])
        let info = try f.info("m")
        XCTAssertEqual(info.dtype, .F32)
        XCTAssertEqual(info.shape, [2, 3])
        XCTAssertEqual(info.elementCount, 6)
        XCTAssertEqual(info.byteCount, 24)
    }

    func testF16RoundTripWithinRounding() throws {
        var rng = SplitMix64(seed: 2)
        let values = (0..<10_000).map { _ in Float.random(in: -70000...70000, using: &rng) }
            + (0..<10_000).map { _ in Float.random(in: -1...1, using: &rng) }
            + (0..<10_000).map { _ in Float.random(in: -1e-4...1e-4, using: &rng) }
        var w = SafeTensorsWriter()
        try w.add("h", shape: [values.count], values: values, as: .F16)
        let f = try SafeTensorsFile(data: w.serialize())
        XCTAssertEqual(try f.info("h").dtype, .F16)
        let back = try f.floats("h")
        for (v, b) in zip(values, back) {
            // The stdlib's Float16 conversion is round-to-nearest-even: an independent reference.
            XCTAssertEqual(bits(b), bits(Float(Float16(v))), "value \(v)")
            if abs(v) <= 65504, abs(v) >= 6.103515625e-05 {
                XCTAssertLessThanOrEqual(abs(b - v), abs(v) * 0x1p-11 * 1.0001)
            }
        }
    }

    func testBF16RoundTripWithinRounding() throws {
        var rng = SplitMix64(seed: 3)
        var values = (0..<20_000).map { _ -> Float in
            let f = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))
            return f.isFinite ? f : 1
        }
        values += (0..<10_000).map { _ in Float.random(in: -10...10, using: &rng) }
        var w = SafeTensorsWriter()
        try w.add("b", shape: [values.count], values: values, as: .BF16)
        let f = try SafeTensorsFile(data: w.serialize())
        let raw = u16s(try f.rawBytes("b"))
        let back = try f.floats("b")
        for k in values.indices {
            XCTAssertEqual(raw[k], referenceBF16(values[k]), "value \(values[k])")
            XCTAssertEqual(bits(back[k]), UInt32(raw[k]) << 16)
        }
    }

    func testF16RoundToNearestEvenSpotChecks() throws {
        let cases: [(Float, UInt16)] = [
            (1.0, 0x3C00), (-2.0, 0xC000), (0.0, 0x0000), (-0.0, 0x8000),
            (65504, 0x7BFF),                         // largest finite
            (65519.996, 0x7BFF),                     // just below the halfway point to 65536
            (65520, 0x7C00),                         // halfway: ties to even = overflow to inf
            (1e6, 0x7C00), (-1e6, 0xFC00), (.greatestFiniteMagnitude, 0x7C00),
            (.infinity, 0x7C00), (-.infinity, 0xFC00),
            (1 + 0x1p-11, 0x3C00),                   // tie between 0x3C00 and 0x3C01 -> even
            (1 + 3 * 0x1p-11, 0x3C02),               // tie between 0x3C01 and 0x3C02 -> even
            (1 + 0x1p-11 + 0x1p-20, 0x3C01),         // just above the tie
            (0x1p-14, 0x0400),                       // smallest normal
            (1023 * 0x1p-24, 0x03FF),                // largest subnormal
            (0x1p-24, 0x0001),                       // smallest subnormal
            (0x1p-25, 0x0000),                       // tie between 0 and 1 ulp -> even (0)
            (1.5 * 0x1p-25, 0x0001),                 // above the tie
            (3 * 0x1p-25, 0x0002),                   // tie between 1 and 2 ulp -> even (2)
            (5 * 0x1p-25, 0x0002),                   // tie between 2 and 3 ulp -> even (2)
            (-0x1p-24, 0x8001), (0x1p-30, 0x0000), (-0x1p-30, 0x8000),
            (1023.5 * 0x1p-24, 0x0400),              // rounds up from subnormal into the smallest normal
        ]
        let stored = try storedBits(cases.map(\.0), as: .F16)
        for (k, c) in cases.enumerated() {
            XCTAssertEqual(stored[k], c.1, "F16 of \(c.0): got 0x\(String(stored[k], radix: 16))")
        }
        let nan = try storedBits([.nan, -.nan, Float(bitPattern: 0x7F80_0001)], as: .F16)
        for n in nan { XCTAssertTrue(n & 0x7C00 == 0x7C00 && n & 0x03FF != 0, "NaN stays NaN: \(n)") }
    }

    func testBF16RoundToNearestEvenSpotChecks() throws {
        let cases: [(Float, UInt16)] = [
            (1.0, 0x3F80), (-2.0, 0xC000), (-0.0, 0x8000),
            (1 + 0x1p-8, 0x3F80),                    // tie -> even
            (1 + 3 * 0x1p-8, 0x3F82),                // tie -> even (up)
            (1 + 0x1p-8 + 0x1p-20, 0x3F81),          // above the tie
            (.greatestFiniteMagnitude, 0x7F80),      // overflows to inf
            (Float(bitPattern: 0x7F7F_7FFF), 0x7F7F), // just below the tie: largest finite
            (.infinity, 0x7F80), (-.infinity, 0xFF80),
            (Float(bitPattern: 0x0001_16C2), 0x0001), // subnormals
            (Float(bitPattern: 0x0001_8000), 0x0002), // subnormal tie, odd -> up
            (Float(bitPattern: 0x0002_8000), 0x0002), // subnormal tie, even -> down
            (Float(bitPattern: 0x0000_7FFF), 0x0000), (Float(bitPattern: 0x8000_8001), 0x8001),
        ]
        let stored = try storedBits(cases.map(\.0), as: .BF16)
        for (k, c) in cases.enumerated() {
            XCTAssertEqual(stored[k], c.1, "BF16 of \(c.0): got 0x\(String(stored[k], radix: 16))")
        }
        let nan = try storedBits([.nan, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFFF_FFFF)], as: .BF16)
        for n in nan { XCTAssertTrue(n & 0x7F80 == 0x7F80 && n & 0x007F != 0, "NaN stays NaN: \(n)") }
    }

    func testAll16BitPatternsDecode() throws {
        let patterns = (0...0xFFFF).map { UInt16($0) }
        var w = SafeTensorsWriter()
        try w.add("h", shape: [patterns.count], dtype: .F16, rawBytes: leBytes16(patterns))
        try w.add("b", shape: [patterns.count], dtype: .BF16, rawBytes: leBytes16(patterns))
        let f = try SafeTensorsFile(data: w.serialize())
        let h = try f.floats("h"), b = try f.floats("b")
        for p in patterns {
            let ref = Float(Float16(bitPattern: p))
            if ref.isNaN { XCTAssertTrue(h[Int(p)].isNaN) } else { XCTAssertEqual(bits(h[Int(p)]), bits(ref)) }
            XCTAssertEqual(bits(b[Int(p)]), UInt32(p) << 16)
        }
    }

    func testMetadataRoundTripAndEscaping() throws {
        let meta = ["format": "pt", "reptok.config": "{\"encoder\":{\"hidden_size\":384},\"version\":1}",
                    "weird \"key\"\\": "line1\nline2\t\u{01}\u{1F}\u{7F} é 😀", "": "empty key"]
        var w = SafeTensorsWriter(metadata: meta)
        let names = ["a\"b", "back\\slash", "new\nline", "ctl\u{02}", "uni é😀", "encoder.layer.0.norm1.weight"]
        for (k, n) in names.enumerated() { try w.add(n, shape: [1], values: [Float(k)]) }
        let bytes = try w.serialize()
        let f = try SafeTensorsFile(data: bytes)
        XCTAssertEqual(f.metadata, meta)
        XCTAssertEqual(Set(f.names), Set(names))
        XCTAssertEqual(f.names, names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        for (k, n) in names.enumerated() { XCTAssertEqual(try f.floats(n), [Float(k)]) }
        // Cross-check: the header is JSON that Foundation also accepts.
        let hl = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let json = try JSONSerialization.jsonObject(with: Data(bytes[8..<8 + hl])) as? [String: Any]
        XCTAssertEqual(json?["__metadata__"] as? [String: String], meta)
    }

    func testEmptyFileAndSpecialShapes() throws {
        let empty = try SafeTensorsWriter().serialize()
        XCTAssertEqual(empty, craftFile("{}      "))
        let f0 = try SafeTensorsFile(data: empty)
        XCTAssertEqual(f0.names, [])
        XCTAssertEqual(f0.metadata, [:])

        var w = SafeTensorsWriter()
        try w.add("scalar", shape: [], values: [4.5])
        try w.add("zero", shape: [0, 7], values: [])
        try w.add("zero16", shape: [3, 0], values: [], as: .F16)
        let f = try SafeTensorsFile(data: w.serialize())
        XCTAssertEqual(try f.info("scalar").shape, [])
        XCTAssertEqual(try f.floats("scalar"), [4.5])
        XCTAssertEqual(try f.floats("zero"), [])
        XCTAssertEqual(try f.info("zero16").elementCount, 0)
        try f.copyFloats("zero", into: UnsafeMutableBufferPointer<Float>(start: nil, count: 0))
    }

    func testDeterministicLayoutAndExactHeader() throws {
        var w = SafeTensorsWriter(metadata: ["k": "v"])
        try w.add("b", shape: [2], values: [1, 2])
        try w.add("a", shape: [1], values: [3], as: .F16)
        try w.add("c", shape: [1], dtype: .U8, rawBytes: [9])
        try w.add("d", shape: [1], dtype: .I64, rawBytes: [1, 0, 0, 0, 0, 0, 0, 0])
        let bytes = try w.serialize()
        let json = #"{"__metadata__":{"k":"v"},"a":{"data_offsets":[16,18],"dtype":"F16","shape":[1]},"#
            + #""b":{"data_offsets":[8,16],"dtype":"F32","shape":[2]},"#
            + #""c":{"data_offsets":[18,19],"dtype":"U8","shape":[1]},"#
            + #""d":{"data_offsets":[0,8],"dtype":"I64","shape":[1]}}"#
        var padded = Array(json.utf8)
        while padded.count % 8 != 0 { padded.append(0x20) }
        let data = [1, 0, 0, 0, 0, 0, 0, 0] + leBytes([1, 2]) + leBytes16([0x4200]) + [9]
        XCTAssertEqual(bytes, craftFile(headerBytes: padded, data: data))
        XCTAssertEqual((8 + padded.count) % 8, 0)
        // Same content added in another order: same bytes.
        var w2 = SafeTensorsWriter()
        try w2.add("d", shape: [1], dtype: .I64, rawBytes: [1, 0, 0, 0, 0, 0, 0, 0])
        try w2.add("c", shape: [1], dtype: .U8, rawBytes: [9])
        try w2.add("a", shape: [1], values: [3], as: .F16)
        try w2.add("b", shape: [2], values: [1, 2])
        w2.metadata = ["k": "v"]
        XCTAssertEqual(try w2.serialize(), bytes)
        let f = try SafeTensorsFile(data: bytes)
        XCTAssertEqual(f.dataStart % 8, 0)
        XCTAssertEqual(try f.floats("d"), [1])
        XCTAssertEqual(try f.floats("c"), [9])
        XCTAssertEqual(try f.floats("a"), [3])
    }

    // MARK: Unaligned data

    func testUnalignedOffsets() throws {
        // Header of odd length, so the data section starts at an odd file offset; inside it a
        // 1-byte tensor first, so every following tensor is misaligned as well.
        let f32: [Float] = [1.5, -2.25, 3e-20, .infinity]
        let f16: [UInt16] = [0x3C00, 0xC000, 0x0001, 0x7BFF]  // 1, -2, 2^-24, 65504
        let bf16: [UInt16] = [0x3F80, 0xC049, 0x0001]         // 1, -3.140625, subnormal
        let f64: [Double] = [0.5, -1e300]
        var data: [UInt8] = [7]
        data += leBytes(f32)
        data += leBytes16(f16)
        data += leBytes16(bf16)
        for d in f64 { withUnsafeBytes(of: d.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        data += [0xFF, 0xFF, 0xFF, 0xFF]  // I32 -1
        var header = #"{"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"#
            + #""f":{"dtype":"F32","shape":[4],"data_offsets":[1,17]},"#
            + #""h":{"dtype":"F16","shape":[2,2],"data_offsets":[17,25]},"#
            + #""b":{"dtype":"BF16","shape":[3],"data_offsets":[25,31]},"#
            + #""d":{"dtype":"F64","shape":[2],"data_offsets":[31,47]},"#
            + #""i":{"dtype":"I32","shape":[1],"data_offsets":[47,51]}}"#
        if header.utf8.count % 2 == 0 { header += " " }
        let bytes = craftFile(header, data: data)
        let dir = try makeTempDir(self)
        let path = dir + "/unaligned.safetensors"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        for f in [try SafeTensorsFile(data: bytes), try SafeTensorsFile(path: path)] {
            XCTAssertEqual(f.dataStart % 2, 1)
            XCTAssertEqual(try f.floats("u"), [7])
            XCTAssertEqual(try f.floats("f").map(bits), f32.map(bits))
            XCTAssertEqual(try f.floats("h"), [1, -2, 0x1p-24, 65504])
            XCTAssertEqual(try f.floats("b").map(bits), [0x3F80_0000, 0xC049_0000, 0x0001_0000])
            XCTAssertEqual(try f.floats("d"), [0.5, -.infinity])  // -1e300 rounds to -inf in Float
            XCTAssertEqual(try f.floats("i"), [-1])
            let dst = UnsafeMutablePointer<Float>.allocate(capacity: 4)
            defer { dst.deallocate() }
            try f.copyFloats("h", into: dst, count: 4)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: dst, count: 4)), [1, -2, 0x1p-24, 65504])
            XCTAssertEqual(try f.rawBytes("h"), leBytes16(f16))
        }
    }

    func testLargeUnalignedF16UsesChunkedPath() throws {
        // More than one staging chunk (8192) at an odd address.
        let n = 20_001
        let patterns = (0..<n).map { UInt16(truncatingIfNeeded: $0 &* 2654435761) & 0x7BFF }
        let header = #"{"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"h":{"dtype":"F16","shape":[\#(n)],"data_offsets":[1,\#(1 + 2 * n)]}}"#
        let f = try SafeTensorsFile(data: craftFile(header, data: [0] + leBytes16(patterns)))
        let back = try f.floats("h")
        for k in 0..<n { XCTAssertEqual(bits(back[k]), bits(Float(Float16(bitPattern: patterns[k])))) }
    }

    // MARK: Python fixture

    // Written by Python's safetensors 0.8.0 (safetensors.torch.save), torch 2.13, with:
    //   import base64, torch
    //   from safetensors.torch import save
    //   t = {"w.f32": torch.tensor([[0.0, 1.0, -2.5], [3.25, 1e-8, -1e30]], dtype=torch.float32),
    //        "w.f16": torch.tensor([0.5, -1.0, 65504.0, 2.0**-24], dtype=torch.float16),
    //        "w.bf16": torch.tensor([[1.0, -3.140625], [2.0**100, -0.0]], dtype=torch.bfloat16),
    //        "idx.i64": torch.tensor([-1, 0, 1 << 40], dtype=torch.int64),
    //        "idx.i32": torch.tensor([-7, 123456], dtype=torch.int32),
    //        "mask.bool": torch.tensor([True, False, True]),
    //        "b.u8": torch.tensor([0, 255], dtype=torch.uint8),
    //        "d.f64": torch.tensor([0.1, -2.0], dtype=torch.float64),
    //        "scalar": torch.tensor(7.5, dtype=torch.float32),
    //        "empty": torch.zeros((0, 4), dtype=torch.float32)}
    //   b = save(t, metadata={"format": "pt", "note": "h\u00e9llo \"q\"\n"})
    //   print(base64.b64encode(b).decode())
    // (The Rust side orders __metadata__ keys by hash, so reruns may differ in that order.)
    static let pythonFixture = "mAIAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJub3RlIjoiaMOpbGxvIFwicVwiXG4iLCJmb3JtYXQiOiJwdCJ9LCJpZHguaTY0Ijp7ImR0eXBlIjoiSTY0Iiwic2hhcGUiOlszXSwiZGF0YV9vZmZzZXRzIjpbMCwyNF19LCJkLmY2NCI6eyJkdHlwZSI6IkY2NCIsInNoYXBlIjpbMl0sImRhdGFfb2Zmc2V0cyI6WzI0LDQwXX0sImVtcHR5Ijp7ImR0eXBlIjoiRjMyIiwic2hhcGUiOlswLDRdLCJkYXRhX29mZnNldHMiOls0MCw0MF19LCJzY2FsYXIiOnsiZHR5cGUiOiJGMzIiLCJzaGFwZSI6W10sImRhdGFfb2Zmc2V0cyI6WzQwLDQ0XX0sIncuZjMyIjp7ImR0eXBlIjoiRjMyIiwic2hhcGUiOlsyLDNdLCJkYXRhX29mZnNldHMiOls0NCw2OF19LCJpZHguaTMyIjp7ImR0eXBlIjoiSTMyIiwic2hhcGUiOlsyXSwiZGF0YV9vZmZzZXRzIjpbNjgsNzZdfSwidy5iZjE2Ijp7ImR0eXBlIjoiQkYxNiIsInNoYXBlIjpbMiwyXSwiZGF0YV9vZmZzZXRzIjpbNzYsODRdfSwidy5mMTYiOnsiZHR5cGUiOiJGMTYiLCJzaGFwZSI6WzRdLCJkYXRhX29mZnNldHMiOls4NCw5Ml19LCJiLnU4Ijp7ImR0eXBlIjoiVTgiLCJzaGFwZSI6WzJdLCJkYXRhX29mZnNldHMiOls5Miw5NF19LCJtYXNrLmJvb2wiOnsiZHR5cGUiOiJCT09MIiwic2hhcGUiOlszXSwiZGF0YV9vZmZzZXRzIjpbOTQsOTddfX0gICAg//////////8AAAAAAAAAAAAAAAAAAQAAmpmZmZmZuT8AAAAAAAAAwAAA8EAAAAAAAACAPwAAIMAAAFBAd8wrMsrySfH5////QOIBAIA/ScCAcQCAADgAvP97AQAA/wEAAQ=="

    static func pythonFixtureBytes() -> [UInt8] { [UInt8](Data(base64Encoded: pythonFixture)!) }

    func testReadsFileWrittenByPythonSafetensors() throws {
        let f = try SafeTensorsFile(data: Self.pythonFixtureBytes())
        XCTAssertEqual(f.names, ["b.u8", "d.f64", "empty", "idx.i32", "idx.i64", "mask.bool", "scalar",
                                 "w.bf16", "w.f16", "w.f32"])
        XCTAssertEqual(f.metadata, ["format": "pt", "note": "h\u{e9}llo \"q\"\n"])
        XCTAssertEqual(try f.info("w.f32").shape, [2, 3])
        XCTAssertEqual(try f.floats("w.f32"), [0, 1, -2.5, 3.25, 1e-8, -1e30])
        XCTAssertEqual(try f.info("w.f16").dtype, .F16)
        XCTAssertEqual(try f.floats("w.f16"), [0.5, -1, 65504, 0x1p-24])
        XCTAssertEqual(try f.info("w.bf16").dtype, .BF16)
        let bf = try f.floats("w.bf16")
        XCTAssertEqual(bf, [1, -3.140625, 0x1p100, 0])
        XCTAssertEqual(bf[3].sign, .minus)
        XCTAssertEqual(try f.info("idx.i64").dtype, .I64)
        XCTAssertEqual(try f.floats("idx.i64"), [-1, 0, 0x1p40])
        XCTAssertEqual(try f.rawBytes("idx.i64").prefix(8), [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertEqual(try f.floats("idx.i32"), [-7, 123456])
        XCTAssertEqual(try f.info("mask.bool").dtype, .BOOL)
        XCTAssertEqual(try f.floats("mask.bool"), [1, 0, 1])
        XCTAssertEqual(try f.floats("b.u8"), [0, 255])
        XCTAssertEqual(try f.floats("d.f64"), [Float(0.1), -2])
        XCTAssertEqual(try f.info("scalar").shape, [])
        XCTAssertEqual(try f.floats("scalar"), [7.5])
        XCTAssertEqual(try f.info("empty").shape, [0, 4])
        XCTAssertEqual(try f.floats("empty"), [])

        // Re-written by our writer: same content.
        var w = SafeTensorsWriter(metadata: f.metadata)
        for t in f.tensors { try w.add(t.name, shape: t.shape, dtype: t.dtype, rawBytes: f.rawBytes(t.name)) }
        let g = try SafeTensorsFile(data: w.serialize())
        XCTAssertEqual(g.names, f.names)
        XCTAssertEqual(g.metadata, f.metadata)
        for n in f.names {
            XCTAssertEqual(try g.rawBytes(n), try f.rawBytes(n))
            XCTAssertEqual(try g.info(n).shape, try f.info(n).shape)
            XCTAssertEqual(try g.info(n).dtype, try f.info(n).dtype)
        }
    }

    // MARK: Files

    func testAtomicWriteAndMappedRead() throws {
        let dir = try makeTempDir(self)
        let path = dir + "/model.safetensors"
        let values = (0..<100_000).map { Float($0) * 0.25 - 7 }
        var w = SafeTensorsWriter(metadata: ["format": "reptok-model"])
        try w.add("decoder.w", shape: [1000, 100], values: values)
        try w.add("decoder.h", shape: [100_000], values: values, as: .BF16)
        try w.write(to: path)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])
        let f = try SafeTensorsFile(path: path)
        XCTAssertTrue(f.isMemoryMapped)
        XCTAssertEqual(f.metadata["format"], "reptok-model")
        XCTAssertEqual(try f.floats("decoder.w"), values)
        let buf = UnsafeMutableBufferPointer<Float>.allocate(capacity: values.count)
        defer { buf.deallocate() }
        try f.copyFloats("decoder.h", into: buf)
        XCTAssertEqual(Array(buf).map(bits), values.map { UInt32(referenceBF16($0)) << 16 })
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data(try w.serialize()))

        // Overwrite in place (rename over an existing file), still no temp files left.
        var w2 = SafeTensorsWriter()
        try w2.add("x", shape: [1], values: [1])
        try w2.write(to: path)
        XCTAssertEqual(try SafeTensorsFile(path: path).names, ["x"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])
        // The earlier mapping stays valid after the rename.
        XCTAssertEqual(try f.floats("decoder.w").count, values.count)

        XCTAssertThrowsError(try w2.write(to: dir + "/no/such/dir/x.safetensors")) { e in
            guard case .io = e as? SafeTensorsError else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try SafeTensorsFile(path: dir + "/missing.safetensors")) { e in
            guard case .io(_, "open", ENOENT) = e as? SafeTensorsError else { return XCTFail("\(e)") }
        }
        let emptyPath = dir + "/empty.safetensors"
        _ = FileManager.default.createFile(atPath: emptyPath, contents: Data())
        XCTAssertThrowsError(try SafeTensorsFile(path: emptyPath)) { e in
            XCTAssertEqual(e as? SafeTensorsError, .fileTooShort(size: 0))
        }
    }

    func testDataInitializer() throws {
        var w = SafeTensorsWriter()
        try w.add("x", shape: [3], values: [1, 2, 3], as: .F16)
        let f = try SafeTensorsFile(bytes: Data(try w.serialize()))
        XCTAssertFalse(f.isMemoryMapped)
        XCTAssertEqual(try f.floats("x"), [1, 2, 3])
    }

    // MARK: Access and writer errors

    func testAccessErrors() throws {
        var w = SafeTensorsWriter()
        try w.add("x", shape: [3], values: [1, 2, 3])
        try w.add("f8", shape: [2], dtype: .F8_E4M3, rawBytes: [0x38, 0x40])
        let f = try SafeTensorsFile(data: w.serialize())
        XCTAssertThrowsError(try f.floats("nope")) { XCTAssertEqual($0 as? SafeTensorsError, .tensorNotFound("nope")) }
        XCTAssertThrowsError(try f.info("nope"))
        XCTAssertFalse(f.contains("nope"))
        XCTAssertTrue(f.contains("x"))
        XCTAssertThrowsError(try f.floats("f8")) {
            XCTAssertEqual($0 as? SafeTensorsError, .unsupportedConversion(tensor: "f8", dtype: .F8_E4M3))
        }
        XCTAssertEqual(try f.rawBytes("f8"), [0x38, 0x40])
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: 4)
        defer { dst.deallocate() }
        XCTAssertThrowsError(try f.copyFloats("x", into: dst, count: 4)) {
            XCTAssertEqual($0 as? SafeTensorsError, .countMismatch(tensor: "x", expected: 3, actual: 4))
        }
        XCTAssertEqual(try f.withRawBytes("x") { $0.count }, 12)
    }

    func testWriterRejectsBadInput() throws {
        var w = SafeTensorsWriter()
        try w.add("x", shape: [2], values: [1, 2])
        func expect(_ expected: SafeTensorsError, _ body: () throws -> Void) {
            XCTAssertThrowsError(try body()) { XCTAssertEqual($0 as? SafeTensorsError, expected) }
        }
        expect(.duplicateTensorName("x")) { try w.add("x", shape: [2], values: [1, 2]) }
        expect(.invalidName("", reason: "names must be non-empty")) { try w.add("", shape: [1], values: [1]) }
        expect(.invalidName("__metadata__", reason: "the name is reserved for metadata")) {
            try w.add("__metadata__", shape: [1], values: [1])
        }
        expect(.shapeMismatch(tensor: "y", shape: [2, 2], count: 3)) { try w.add("y", shape: [2, 2], values: [1, 2, 3]) }
        expect(.invalidShape(tensor: "y", reason: "dimension 1 is negative (-1)")) { try w.add("y", shape: [1, -1], values: []) }
        expect(.elementCountOverflow(tensor: "y")) { try w.add("y", shape: [1 << 40, 1 << 40], values: []) }
        expect(.elementCountOverflow(tensor: "y")) { try w.add("y", shape: [1 << 61], dtype: .F64, rawBytes: []) }
        expect(.unsupportedConversion(tensor: "y", dtype: .I32)) { try w.add("y", shape: [1], values: [1], as: .I32) }
        expect(.byteCountMismatch(tensor: "y", expected: 8, actual: 7)) {
            try w.add("y", shape: [2], dtype: .F32, rawBytes: [UInt8](repeating: 0, count: 7))
        }
        XCTAssertEqual(w.count, 1)
        XCTAssertEqual(w.names, ["x"])
        XCTAssertEqual(try SafeTensorsFile(data: w.serialize()).floats("x"), [1, 2])
    }

    func testErrorDescriptionsAreOneLineAndNameTheSubject() {
        let errors: [SafeTensorsError] = [
            .fileTooShort(size: 3), .headerTooLarge(length: 1 << 40, limit: 100), .headerBeyondFile(length: 99, fileSize: 20),
            .headerNotUTF8(offset: 4), .invalidJSON(offset: 2, reason: "x"), .headerNotObject(found: "an array"),
            .duplicateKey(key: "k", offset: 1), .duplicateTensorName("w"), .tooManyTensors(limit: 2),
            .entryNotObject(tensor: "w", found: "null"), .missingField(tensor: "w", field: "dtype"),
            .unexpectedField(tensor: "w", field: "z"), .invalidField(tensor: "w", field: "shape", reason: "r"),
            .unknownDtype(tensor: "w", dtype: "F7"), .invalidShape(tensor: "w", reason: "r"),
            .elementCountOverflow(tensor: "w"), .byteCountMismatch(tensor: "w", expected: 1, actual: 2),
            .offsetsReversed(tensor: "w", begin: 2, end: 1), .offsetsOutOfBounds(tensor: "w", end: 9, dataSize: 4),
            .offsetsOverlap(tensor: "w", previous: "v", begin: 0, previousEnd: 4), .offsetsGap(tensor: "w", begin: 8, expected: 4),
            .dataNotCovered(coveredEnd: 4, dataSize: 8), .metadataNotObject(found: "an array"),
            .metadataValueNotString(key: "k", found: "an integer"), .tensorNotFound("w"),
            .unsupportedConversion(tensor: "w", dtype: .F8_E5M2), .countMismatch(tensor: "w", expected: 1, actual: 2),
            .invalidName("", reason: "r"), .shapeMismatch(tensor: "w", shape: [1], count: 2),
            .io(path: "/p", operation: "open", errno: ENOENT),
        ]
        for e in errors {
            let d = e.description
            XCTAssertTrue(d.hasPrefix("safetensors: "), d)
            XCTAssertFalse(d.contains("\n"), d)
        }
        XCTAssertTrue(SafeTensorsError.byteCountMismatch(tensor: "enc.w", expected: 1, actual: 2).description.contains("\"enc.w\""))
        XCTAssertTrue(SafeTensorsError.missingField(tensor: "enc.w", field: "dtype").description.contains("\"dtype\""))
    }

    func testJSONEscapesInHeaderAreDecoded() throws {
        let header = #"{"__metadata__":{"a\/b":"\u00e9\ud83d\ude00\"\\\b\f\n\r\t\u0000"},"t\u0041":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let f = try SafeTensorsFile(data: craftFile(header, data: leBytes([2])))
        XCTAssertEqual(f.metadata, ["a/b": "é😀\"\\\u{08}\u{0C}\n\r\t\u{0}"])
        XCTAssertEqual(try f.floats("tA"), [2])
    }

    func testLimitsAreConfigurable() throws {
        var w = SafeTensorsWriter()
        for k in 0..<3 { try w.add("t\(k)", shape: [1], values: [Float(k)]) }
        let bytes = try w.serialize()
        var limits = SafeTensorsLimits()
        limits.maxTensors = 2
        XCTAssertThrowsError(try SafeTensorsFile(data: bytes, limits: limits)) {
            XCTAssertEqual($0 as? SafeTensorsError, .tooManyTensors(limit: 2))
        }
        limits = SafeTensorsLimits()
        limits.maxHeaderBytes = 16
        XCTAssertThrowsError(try SafeTensorsFile(data: bytes, limits: limits)) {
            guard case .headerTooLarge(_, 16) = $0 as? SafeTensorsError else { return XCTFail("\($0)") }
        }
        limits = SafeTensorsLimits()
        limits.maxTensors = 3
        XCTAssertEqual(try SafeTensorsFile(data: bytes, limits: limits).names.count, 3)
    }

    func testManyTensorsParseQuickly() throws {
        // 20,000 small tensors: the header path has no quadratic behaviour.
        var w = SafeTensorsWriter()
        for k in 0..<20_000 { try w.add("layer.\(k).w", shape: [2], values: [Float(k), 1]) }
        let f = try SafeTensorsFile(data: w.serialize())
        XCTAssertEqual(f.names.count, 20_000)
        XCTAssertEqual(try f.floats("layer.12345.w"), [12345, 1])
    }
}
