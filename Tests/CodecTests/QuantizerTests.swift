import Foundation
import RepTokCodec
import RepTokFormat
import RepTokTensor
import XCTest

final class QuantizerTests: XCTestCase {
    /// Correlated synthetic tokens: z = A g + mu with decaying column scales.
    func syntheticTokens(n: Int, D: Int, seed: UInt64) -> [Float] { QuantizerTests.synthetic(n: n, D: D, seed: seed) }

    static func synthetic(n: Int, D: Int, seed: UInt64) -> [Float] {
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

    /// A payload holds exactly the token of its level: for zstd, the packing of at most the
    /// level's coded values (no trailing zero, shortest varints); for laplace, their coding.
    /// A 5-value token written twice is refused where the level codes 5 values (issue #14).
    func testAPayloadHoldsExactlyTheLevelsCodedValues() throws {
        let D = 16
        let toks = syntheticTokens(n: 60, D: D, seed: 5)
        let fit = Quantizer.fit(tokens: toks, dim: D)
        let coefficients = [2, 3, 4, 5, 5, 6, 7, 8, 16]
        let zq = fit.with(levelSteps: Quantizer.levels.map { fit.step(level: $0) }, coefficients: coefficients)
        let lq = Quantizer(mean: zq.mean, rotation: zq.rotation, sigma: zq.sigma, dictionary: [], baseStep: zq.baseStep,
                           levelSteps: zq.levelSteps, levelCoefficients: coefficients, entropy: .laplace,
                           scale: zq.sigma.map { max($0, 1e-3) })
        func message(_ body: @autoclosure () throws -> [Float]) -> String {
            do { _ = try body(); return "accepted" } catch { return "\(error)" }
        }
        var checked = 0
        try toks.withUnsafeBufferPointer { tp in
            for r in 0..<20 {
                let z = tp.baseAddress! + r * D
                // zstd: the level-5 token packs 5 values; the last is nonzero (trailing zeros dropped).
                let payload = try zq.encode(z, level: 5)
                XCTAssertNoThrow(try zq.decode(payload, level: 5))
                let raw = try RTKZstd.decompress(payload)
                let values = try Quantizer.unpack(raw, dim: D)
                XCTAssertTrue(values[5...].allSatisfy { $0 == 0 })
                guard values[4] != 0 else { continue }
                checked += 1
                let twice = try RTKZstd.compress(raw + raw)
                XCTAssertTrue(message(try zq.decode(twice, level: 5))
                                .contains("the token is not the packing of the 5 values level 5 codes"), "row \(r)")
                XCTAssertNoThrow(try zq.decode(twice, level: 9), "level 9 codes 16 values: a valid token there")
                XCTAssertThrowsError(try zq.decode(try RTKZstd.compress(raw + [0]), level: 5), "a trailing zero value")
                XCTAssertThrowsError(try zq.decode(try RTKZstd.compress(raw + [0]), level: 9), "a trailing zero value")
                // The first value written with one byte more than it needs.
                var overlong = raw
                overlong[0] |= 0x80
                overlong.insert(0x00, at: 1)
                if raw[0] < 0x80 {
                    XCTAssertThrowsError(try zq.decode(try RTKZstd.compress(overlong), level: 9), "an overlong varint")
                }
                // A frame with its checksum flag set is refused from its header.
                var flagged = payload
                flagged[0] |= 0x04
                XCTAssertTrue(message(try zq.decode(flagged, level: 5)).contains("content checksum or a dictionary ID"))
                // laplace: the same token's coding written twice.
                let coded = try lq.encode(z, level: 5)
                XCTAssertNoThrow(try lq.decode(coded, level: 5))
                if !coded.isEmpty {
                    XCTAssertThrowsError(try lq.decode(coded + coded, level: 5), "row \(r): a laplace token twice")
                }
            }
        }
        XCTAssertGreaterThan(checked, 5)
    }
}

/// Per-picture step modes (laplace): the payload begins with the mode, uniformly coded; the
/// decoder dequantizes with the level's step times the mode's factor; the encoder picks the mode
/// by 10 log10(residual + e2) + lambda bits.
final class StepModeTests: XCTestCase {
    func quantizer(lambda: Float) -> (Quantizer, [Float]) {
        let D = 12
        let toks = QuantizerTests.synthetic(n: 40, D: D, seed: 21)
        let fit = Quantizer.fit(tokens: toks, dim: D)
        let q = Quantizer(mean: fit.mean, rotation: fit.rotation, sigma: fit.sigma, dictionary: [], baseStep: fit.baseStep,
                          levelSteps: Quantizer.levels.map { fit.step(level: $0) }, levelCoefficients: [Int](repeating: 8, count: 9),
                          entropy: .laplace, scale: fit.sigma.map { max($0, 1e-3) * 0.8 },
                          stepModes: [0.5, 0.71, 1, 1.41, 2], levelLambda: [Float](repeating: lambda, count: 9))
        return (q, toks)
    }

    func testModesRoundTripAndTheDecoderUsesTheModesStep() throws {
        let (q, toks) = quantizer(lambda: 0.01)
        let D = q.dim
        try toks.withUnsafeBufferPointer { tp in
            for r in 0..<20 {
                let y = q.rotate(tp.baseAddress! + r * D)
                for m in 0..<5 {
                    let p = q.laplacePayload(y, level: 5, mode: m)
                    XCTAssertEqual(try LaplaceCoder.decodeHeader(p.bytes, count: 5), m)
                    let z = try q.decode(p.bytes, level: 5)
                    // the decoded token is the mode's dequantization
                    let sym = q.quantize(y, level: 5, mode: m), s = q.step(level: 5, mode: m)
                    let expect = q.unrotate(sym.map { Float($0) * s })
                    for i in 0..<D { XCTAssertEqual(z[i], expect[i], accuracy: 1e-4 * max(1, abs(expect[i]))) }
                    XCTAssertEqual(s, q.step(level: 5) * [0.5, 0.71, 1, 1.41, 2][m])
                    // one token, one payload: longer bytes are refused, or (when they code later
                    // symbols the short one left at zero) decode to another token
                    for longer in [p.bytes + [0x5A], p.bytes + p.bytes, p.bytes + [0]] where longer != p.bytes {
                        if let other = try? q.decode(longer, level: 5) { XCTAssertNotEqual(other, z) }
                    }
                    XCTAssertThrowsError(try q.decode(p.bytes + [0], level: 5), "a trailing zero byte")
                }
            }
        }
    }

    /// A picture whose decode is already good (small residual) buys its dB with finer modes; a
    /// bad one (large residual) gets coarser ones; lambda 0 takes the least error.
    func testTheEncodersChoiceFollowsTheResidualAndLambda() throws {
        let (q, toks) = quantizer(lambda: 0.02)
        let (q0, _) = quantizer(lambda: 0)
        let D = q.dim
        var fineSum = 0, coarseSum = 0
        toks.withUnsafeBufferPointer { tp in
            for r in 0..<20 {
                let y = q.rotate(tp.baseAddress! + r * D)
                var e2 = 0.0
                for v in y { e2 += Double(v * v) }
                let small = q.chooseMode(y, level: 5, residual: 1e-3 * e2), large = q.chooseMode(y, level: 5, residual: 1e3 * e2)
                XCTAssertLessThanOrEqual(small.mode, large.mode, "row \(r)")
                fineSum += small.mode; coarseSum += large.mode
                // lambda 0: the least error, whatever the bytes
                let errors = (0..<5).map { q0.laplacePayload(y, level: 5, mode: $0).error }
                XCTAssertEqual(q0.chooseMode(y, level: 5, residual: e2).error, errors.min()!)
                // the choice is the least cost among the modes
                let costs = (0..<5).map { m -> Double in
                    let p = q.laplacePayload(y, level: 5, mode: m)
                    return 10 * log10(1e3 * e2 + p.error) + 0.02 * Double(8 * p.bytes.count)
                }
                XCTAssertEqual(large.mode, costs.firstIndex(of: costs.min()!)!)
                XCTAssertEqual(large.bytes, q.laplacePayload(y, level: 5, mode: large.mode).bytes)
            }
        }
        XCTAssertLessThan(fineSum, coarseSum)
    }

    /// Modes are laplace-only settings, refused elsewhere by the model loader's checks; a
    /// quantizer without them writes no mode symbol (the payloads of earlier models).
    func testNoModesMeansNoHeader() throws {
        let (q, toks) = quantizer(lambda: 0.01)
        let plain = q.with(stepModes: nil, lambda: nil)
        XCTAssertNil(plain.levelLambda)
        let y = plain.rotate(toks)
        let p = plain.laplacePayload(y, level: 3)
        XCTAssertEqual(p.bytes, LaplaceCoder.encode(Array(plain.quantize(y, level: 3)[0..<8]), tables: plain.laplaceTables(level: 3)))
        XCTAssertEqual(try toks.withUnsafeBufferPointer { try plain.encode($0.baseAddress!, level: 3, residual: 5) }, p.bytes)
        var cfg = CodecConfig()
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(cfg), as: UTF8.self).contains("step_modes"))
        cfg.stepModes = [0.5, 1]; cfg.levelLambda = [Float](repeating: 0.1, count: 9)
        let back = try JSONDecoder().decode(CodecConfig.self, from: JSONEncoder().encode(cfg))
        XCTAssertEqual(back.stepModes, [0.5, 1]); XCTAssertEqual(back.levelLambda, cfg.levelLambda)
    }
}
