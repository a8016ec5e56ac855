import RepTokTensor
import RepTokTestSupport
import XCTest
@testable import RepTokImage

/// SplitMix64: a seeded generator so the mutation loops are reproducible.
typealias SeededRNG = SplitMix64

/// CRC-32 (PNG's), for hand-built chunks.
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        c ^= UInt32(b)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
    }
    return ~c
}

func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

func pngChunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
    let t = Array(type.utf8)
    return be32(UInt32(data.count)) + t + data + be32(crc32(t + data))
}

/// Offset of the first chunk of `type` (its length field) in a PNG.
func pngChunkOffset(_ png: [UInt8], _ type: String) -> Int? {
    var p = 8
    let t = Array(type.utf8)
    while p + 8 <= png.count {
        let len = Int(png[p]) << 24 | Int(png[p + 1]) << 16 | Int(png[p + 2]) << 8 | Int(png[p + 3])
        if Array(png[p + 4..<p + 8]) == t { return p }
        p += 12 + len
    }
    return nil
}

func maxAbsDiff(_ a: [UInt8], _ b: [UInt8]) -> Int {
    precondition(a.count == b.count)
    var m = 0
    for i in 0..<a.count { m = max(m, abs(Int(a[i]) - Int(b[i]))) }
    return m
}

func psnr(_ a: [UInt8], _ b: [UInt8]) -> Double {
    precondition(a.count == b.count)
    var se = 0.0
    for i in 0..<a.count { let d = Double(a[i]) - Double(b[i]); se += d * d }
    let mse = se / Double(a.count)
    return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
}

/// The error `body` throws (fails the test when it returns).
@discardableResult
func expectError<T>(_ body: @autoclosure () throws -> T, _ message: String = "",
                    file: StaticString = #filePath, line: UInt = #line) -> ImageError? {
    do {
        _ = try body()
        XCTFail("expected an error \(message)", file: file, line: line)
        return nil
    } catch let e as ImageError {
        XCTAssertFalse(e.description.isEmpty, file: file, line: line)
        return e
    } catch {
        XCTFail("unexpected error type \(error) \(message)", file: file, line: line)
        return nil
    }
}

/// A test image with smooth and sharp content.
func testImage(width: Int, height: Int) -> RGBImage {
    var px = [UInt8](repeating: 0, count: width * height * 3)
    for y in 0..<height {
        for x in 0..<width {
            let i = (y * width + x) * 3
            px[i] = UInt8((x * 255) / max(width - 1, 1))
            px[i + 1] = UInt8((y * 255) / max(height - 1, 1))
            px[i + 2] = UInt8(truncatingIfNeeded: 128 + Int(100 * sin(Double(x + y) / 5)))
        }
    }
    return RGBImage(width: width, height: height, pixels: px)
}

/// A random-noise image (incompressible, exact round trips).
func noiseImage(width: Int, height: Int, seed: UInt64) -> RGBImage {
    var rng = SeededRNG(seed: seed)
    return RGBImage(width: width, height: height,
                    pixels: (0..<width * height * 3).map { _ in UInt8.random(in: 0...255, using: &rng) })
}
