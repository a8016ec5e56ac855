import Foundation
import RepTokCodec
import RepTokTensor
import XCTest

final class QuantizerTests: XCTestCase {
    /// Correlated synthetic tokens: z = A g + mu with decaying column scales.
    func syntheticTokens(n: Int, D: Int, seed: UInt64) -> [Float] {
        let g = Philox4x32(seed: seed).gaussian([n, D]).array
        let a = Philox4x32(seed: seed + 1).gaussian([D, D]).array
        var z = [Float](repeating: 0, count: n * D)
        for r in 0..<n {
            for i in 0..<D {
                var acc: Float = 0.3 * Float(i)
                for j in 0..<D { acc += a[i * D + j] * g[r * D + j] * Float(pow(0.7, Double(j))) }
                z[r * D + i] = acc
            }
        }
        return z
    }

    func testFitGivesOrthonormalSortedRotation() {
        let D = 12
        let q = Quantizer.fit(tokens: syntheticTokens(n: 400, D: D, seed: 1), dim: D)
        for i in 0..<D {
            for j in 0..<D {
                var dot = 0.0
                for k in 0..<D { dot += Double(q.rotation[i * D + k]) * Double(q.rotation[j * D + k]) }
                XCTAssertEqual(dot, i == j ? 1 : 0, accuracy: 1e-5)
            }
        }
        for i in 1..<D { XCTAssertGreaterThanOrEqual(q.sigma[i - 1], q.sigma[i]) }
        XCTAssertGreaterThan(q.sigma[0], 5 * q.sigma[D - 1])
    }

    func testRoundTripErrorIsBoundedByTheStepAndShrinksWithLevel() throws {
        let D = 16
        let toks = syntheticTokens(n: 300, D: D, seed: 2)
        let q = Quantizer.fit(tokens: toks, dim: D).withDictionary(tokens: toks, maxBytes: 1024)
        var lastErr = Double.infinity, lastBytes = 0
        for level in Quantizer.levels {
            var err = 0.0, bytes = 0
            try toks.withUnsafeBufferPointer { tp in
                for r in 0..<50 {
                    let z = tp.baseAddress! + r * D
                    let payload = try q.encode(z, level: level)
                    bytes += payload.count
                    let back = try q.decode(payload, level: level)
                    // rotated-space error per coordinate is at most step/2
                    let y0 = q.rotate(z)
                    let y1 = back.withUnsafeBufferPointer { q.rotate($0.baseAddress!) }
                    for i in 0..<D {
                        XCTAssertLessThanOrEqual(abs(y0[i] - y1[i]), q.step(level: level) / 2 * 1.0001 + 1e-4)
                        err += Double((y0[i] - y1[i]) * (y0[i] - y1[i]))
                    }
                }
            }
            XCTAssertLessThan(err, lastErr, "level \(level) must reconstruct better")
            XCTAssertGreaterThanOrEqual(bytes, lastBytes, "level \(level) must not be smaller")
            lastErr = err; lastBytes = bytes
        }
    }

    func testEncodingIsDeterministic() throws {
        let D = 8
        let toks = syntheticTokens(n: 50, D: D, seed: 3)
        let q = Quantizer.fit(tokens: toks, dim: D).withDictionary(tokens: toks)
        try toks.withUnsafeBufferPointer { tp in
            XCTAssertEqual(try q.encode(tp.baseAddress!, level: 5), try q.encode(tp.baseAddress!, level: 5))
        }
    }

    func testPackUnpackAndHostilePayloads() throws {
        let q: [Int32] = [0, 1, -1, 63, -64, 64, 1_000_000, -1_000_000, 0, 0]
        let packed = Quantizer.pack(q)
        XCTAssertEqual(try Quantizer.unpack(packed, dim: q.count), q)
        XCTAssertEqual(Quantizer.pack([0, 0, 0]), [], "trailing zeros are dropped")
        XCTAssertEqual(try Quantizer.unpack([], dim: 3), [0, 0, 0])
        // more values than dims, truncated varint, over-long varint, out of range
        XCTAssertThrowsError(try Quantizer.unpack([1, 1, 1, 1], dim: 3))
        XCTAssertThrowsError(try Quantizer.unpack([0x80], dim: 3))
        XCTAssertThrowsError(try Quantizer.unpack([0x80, 0x80, 0x80, 0x80, 0x80, 0x01], dim: 3))
        XCTAssertThrowsError(try Quantizer.unpack(Quantizer.pack([Int32.max / 2]), dim: 3))
        let D = 8
        let toks = syntheticTokens(n: 20, D: D, seed: 4)
        let qz = Quantizer.fit(tokens: toks, dim: D)
        XCTAssertThrowsError(try qz.decode([0xde, 0xad, 0xbe, 0xef], level: 5))
        XCTAssertThrowsError(try qz.decode([], level: 5))
    }
}
