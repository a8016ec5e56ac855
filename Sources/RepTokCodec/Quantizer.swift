import Foundation
import RepTokFormat
import RepTokTensor

/// Token quantizer: a linear analysis transform of the token (a PCA rotation, or a
/// sensitivity-weighted PCA), uniform scalar quantization with a step set by the quality level,
/// then entropy coding: zigzag varints and zstd with a dictionary trained on quantized training
/// tokens (`entropy` zstd, the first models), or a static Laplacian model per coordinate and an
/// arithmetic coder (`entropy` laplace, LaplaceCoder).
///
/// Stored in the codec model file under `quantizer.` (CodecModelFile writes and reads them):
/// - `quantizer.mean` [D]: per-dimension mean of training tokens
/// - `quantizer.rotation` [D, D]: rows are principal directions, by decreasing variance
/// - `quantizer.sigma` [D]: standard deviation of each principal coordinate
/// - `quantizer.dictionary` [n] (U8): the zstd dictionary (may be absent or empty)
/// - `quantizer.synthesis` [D, D] (optional): row i is the token-space direction of coordinate i
///   (z = mean + sum_i y_i synthesis_i); absent, the rotation's rows (an orthonormal rotation)
/// - `quantizer.scale` [D] (laplace only): each coordinate's Laplace scale b_i (mean |y_i|)
/// and in `reptok.config`'s `codec` part, `base_step`: the absolute step at level 5 in the rotated
/// coordinates (each level scales it by 2^((5 - level) / 2)), or `level_steps`, the nine steps.
///
/// Step modes (laplace only, `step_modes`: M factors): each payload begins with a mode m coded
/// uniformly over M, and the picture's step at its level is the level's step times factor m. The
/// encoder picks the mode per picture (`encode(_:level:residual:)`): the one minimizing the
/// predicted log error 10 log10(residual + e2) plus `level_lambda` dB per payload bit, so a
/// picture whose decode is already close buys more dB with finer steps and a hard picture saves
/// bits where they buy little. Mean PSNR, a mean of logarithms, rises at the same mean bytes.
public struct Quantizer: Sendable, Equatable {
    public enum Entropy: String, Sendable, Codable { case zstd, laplace }
    public static let levels = RTKFormat.levels
    public let dim: Int
    public let mean: [Float]
    public let rotation: [Float]     // [D, D] row-major
    public let sigma: [Float]
    public let dictionary: [UInt8]
    /// Quantizer step at level 5, in absolute units of the rotated coordinates.
    public let baseStep: Float
    /// The synthesis directions when the analysis is not orthonormal ([D, D], row i for y_i).
    public let synthesis: [Float]?
    /// The step of each level 1...9 (nil: from `baseStep`).
    public let levelSteps: [Float]?
    /// How many leading coordinates each level codes (nil: all); the others decode as zero
    /// (an infinite step: the water level of reverse water-filling lies above their variance).
    public let levelCoefficients: [Int]?
    /// Encoder only, per level: the rate-distortion weight of `quantize` (squared steps per bit;
    /// nil or 0: plain rounding). Decoding does not depend on it.
    public let levelRDO: [Float]?
    /// Per level, a factor on every coordinate's Laplace scale in that level's tables (nil: 1),
    /// fitted to the symbols the level's step and RD weight actually produce.
    public let levelScale: [Float]?
    /// Step factors of the per-picture step modes (nil: no mode symbol).
    public let stepModes: [Float]?
    /// Encoder only, per level: the dB per payload bit of the mode choice (needs `stepModes`).
    public let levelLambda: [Float]?
    public static let maxStepModes = 16
    public let entropy: Entropy
    /// Laplace scale of each coordinate (entropy laplace).
    public let scale: [Float]
    private let tables = TableCache()
    /// Varints beyond this count are never written (hard cap on payload work).
    public static let maxPayload = 4096
    /// The longest packed symbol: a value within +-1,000,000 zigzags below 2^21, 3 varint bytes.
    public static let maxPackedBytes = 3

    public init(mean: [Float], rotation: [Float], sigma: [Float], dictionary: [UInt8], baseStep: Float,
                synthesis: [Float]? = nil, levelSteps: [Float]? = nil, levelCoefficients: [Int]? = nil,
                levelRDO: [Float]? = nil, levelScale: [Float]? = nil, entropy: Entropy = .zstd, scale: [Float] = [],
                stepModes: [Float]? = nil, levelLambda: [Float]? = nil) {
        dim = mean.count
        self.mean = mean; self.rotation = rotation; self.sigma = sigma
        self.dictionary = dictionary; self.baseStep = baseStep
        self.synthesis = synthesis; self.levelSteps = levelSteps; self.entropy = entropy; self.scale = scale
        self.levelCoefficients = levelCoefficients
        self.levelRDO = levelRDO
        self.levelScale = levelScale
        self.stepModes = stepModes; self.levelLambda = levelLambda
        precondition(stepModes == nil || ((2...Quantizer.maxStepModes).contains(stepModes!.count) && entropy == .laplace
                     && stepModes!.allSatisfy { $0 > 0 && $0.isFinite }), "step_modes: 2-16 factors > 0, laplace only")
        precondition(levelLambda == nil || (stepModes != nil && levelLambda!.count == Quantizer.levels.count
                     && levelLambda!.allSatisfy { $0 >= 0 && $0.isFinite }), "level_lambda: 9 weights >= 0, with step_modes")
        precondition(levelScale == nil || (levelScale!.count == Quantizer.levels.count && entropy == .laplace
                     && levelScale!.allSatisfy { $0 > 0 && $0.isFinite }), "level_scale: 9 factors > 0, laplace only")
        precondition(levelRDO == nil || (levelRDO!.count == Quantizer.levels.count && entropy == .laplace
                     && levelRDO!.allSatisfy { $0 >= 0 && $0.isFinite }), "level_rdo: 9 weights >= 0, laplace only")
        precondition(levelCoefficients == nil || (levelCoefficients!.count == Quantizer.levels.count
                     && levelCoefficients!.allSatisfy { (0...mean.count).contains($0) }), "level_coefficients: 9 counts within the token size")
        precondition(levelSteps == nil || levelSteps!.count == Quantizer.levels.count, "level_steps needs 9 steps")
        precondition(entropy == .zstd || scale.count == mean.count, "a laplace quantizer needs a scale per coordinate")
    }

    public static func == (a: Quantizer, b: Quantizer) -> Bool {
        a.mean == b.mean && a.rotation == b.rotation && a.sigma == b.sigma && a.dictionary == b.dictionary
            && a.baseStep == b.baseStep && a.synthesis == b.synthesis && a.levelSteps == b.levelSteps
            && a.entropy == b.entropy && a.scale == b.scale && a.levelCoefficients == b.levelCoefficients
            && a.levelRDO == b.levelRDO && a.levelScale == b.levelScale && a.stepModes == b.stepModes
            && a.levelLambda == b.levelLambda
    }

    /// The same quantizer with other level steps, coded coordinate counts and RD weights.
    public func with(levelSteps s: [Float], coefficients k: [Int]? = nil, rdo: [Float]? = nil,
                     scaleFactors f: [Float]? = nil) -> Quantizer {
        Quantizer(mean: mean, rotation: rotation, sigma: sigma, dictionary: dictionary, baseStep: baseStep,
                  synthesis: synthesis, levelSteps: s, levelCoefficients: k ?? levelCoefficients, levelRDO: rdo ?? levelRDO,
                  levelScale: f ?? levelScale, entropy: entropy, scale: scale, stepModes: stepModes, levelLambda: levelLambda)
    }

    /// The same quantizer with step modes (nil: none) and their per-level weights.
    public func with(stepModes m: [Float]?, lambda: [Float]?) -> Quantizer {
        Quantizer(mean: mean, rotation: rotation, sigma: sigma, dictionary: dictionary, baseStep: baseStep,
                  synthesis: synthesis, levelSteps: levelSteps, levelCoefficients: levelCoefficients, levelRDO: levelRDO,
                  levelScale: levelScale, entropy: entropy, scale: scale, stepModes: m, levelLambda: m == nil ? nil : lambda)
    }

    /// The number of leading coordinates a level codes.
    public func coded(level: Int) -> Int { levelCoefficients?[level - 1] ?? dim }

    /// The step of a level: `levelSteps`, else each level halves the step variance of the
    /// previous one: step = base * 2^((5 - L) / 2).
    public func step(level: Int) -> Float {
        if let s = levelSteps { return s[level - 1] }
        return baseStep * Float(pow(2.0, Double(5 - level) / 2))
    }

    /// The step of a level in step mode `mode` (the level's step times the mode's factor).
    public func step(level: Int, mode: Int) -> Float {
        guard let m = stepModes else { return step(level: level) }
        return step(level: level) * m[mode]
    }

    /// Probability tables of a level (and step mode), computed once per quantizer, level and mode.
    public func laplaceTables(level: Int, mode: Int = 0) -> [LaplaceCoder.Table] {
        tables.get(level * 32 + mode) {
            let st = step(level: level, mode: mode), f = levelScale?[level - 1] ?? 1
            return scale[0..<coded(level: level)].map { LaplaceCoder.Table(scale: $0 * f, step: st) }
        }
    }

    /// Rotated coordinates y = R (z - mean).
    public func rotate(_ z: UnsafePointer<Float>) -> [Float] {
        var y = [Float](repeating: 0, count: dim)
        for i in 0..<dim {
            var acc = 0.0
            let row = i * dim
            for j in 0..<dim { acc += Double(rotation[row + j]) * Double(z[j] - mean[j]) }
            y[i] = Float(acc)
        }
        return y
    }

    /// z = mean + sum_i y_i s_i, s_i the synthesis rows (the rotation's rows when orthonormal)
    public func unrotate(_ y: [Float]) -> [Float] {
        var z = [Double](repeating: 0, count: dim)
        let rows = synthesis ?? rotation
        for i in 0..<dim where y[i] != 0 {
            let row = i * dim, yi = Double(y[i])
            for j in 0..<dim { z[j] += Double(rows[row + j]) * yi }
        }
        return (0..<dim).map { Float(z[$0]) + mean[$0] }
    }

    /// Integer symbols for a token at a level.
    public func symbols(_ z: UnsafePointer<Float>, level: Int) -> [Int32] {
        quantize(rotate(z), level: level)
    }

    /// Symbols of rotated coordinates y at a level: the coded coordinates rounded to the step,
    /// the rest 0. With an RD weight w > 0 (laplace), each nonzero value may move one step toward
    /// zero when that lowers (y/step - q)^2 + w bits(q), bits from the level's table: fewer bytes
    /// for a little more distortion, an encoder choice the decoder does not see.
    public func quantize(_ y: [Float], level: Int, mode: Int = 0) -> [Int32] {
        let s = step(level: level, mode: mode), k = coded(level: level)
        var q = y.enumerated().map { i, v in i < k ? Int32(max(-1_000_000, min(1_000_000, (v / s).rounded()))) : 0 }
        guard let w = levelRDO?[level - 1], w > 0 else { return q }
        let tables = laplaceTables(level: level, mode: mode)
        for i in 0..<k where q[i] != 0 {
            let t = tables[i], a = Int(q[i].magnitude)
            guard a <= t.k else { continue }
            func bits(_ v: Int) -> Double {
                let sIdx = t.k + v
                return -log2(Double(t.cum[sIdx + 1] - t.cum[sIdx]) / Double(LaplaceCoder.total))
            }
            let x = Double(y[i]) / Double(s), v0 = Int(q[i]), v1 = v0 > 0 ? v0 - 1 : v0 + 1
            let j0 = (x - Double(v0)) * (x - Double(v0)) + Double(w) * bits(v0)
            let j1 = (x - Double(v1)) * (x - Double(v1)) + Double(w) * bits(v1)
            if j1 < j0 { q[i] = Int32(v1) }
        }
        return q
    }

    /// Symbols -> varint bytes (zigzag), trailing zeros dropped.
    public static func pack(_ q: [Int32]) -> [UInt8] {
        var n = q.count
        while n > 0 && q[n - 1] == 0 { n -= 1 }
        var out = [UInt8]()
        out.reserveCapacity(n + 8)
        for v in q[0..<n] {
            var u = UInt32(bitPattern: (v << 1) ^ (v >> 31))
            while u >= 0x80 { out.append(UInt8(u & 0x7f) | 0x80); u >>= 7 }
            out.append(UInt8(u))
        }
        return out
    }

    public static func unpack(_ b: [UInt8], dim: Int) throws -> [Int32] {
        var q = [Int32](), i = 0
        q.reserveCapacity(dim)
        while i < b.count {
            guard q.count < dim else { throw CodecError.corruptPayload("more than \(dim) token values") }
            var u: UInt32 = 0, shift: UInt32 = 0
            while true {
                guard i < b.count else { throw CodecError.corruptPayload("truncated token value") }
                let byte = b[i]; i += 1
                guard shift < 32 else { throw CodecError.corruptPayload("token value too long") }
                u |= UInt32(byte & 0x7f) << shift
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            let v = Int32(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
            guard abs(Int(v)) <= 1_000_000 else { throw CodecError.corruptPayload("token value out of range") }
            q.append(v)
        }
        while q.count < dim { q.append(0) }
        return q
    }

    /// The payload of rotated coordinates y in step mode `mode` (laplace): the mode symbol when
    /// the quantizer has modes, then the level's coded symbols; with the squared error of the
    /// dequantized coordinates (all of them, the uncoded ones at zero).
    public func laplacePayload(_ y: [Float], level: Int, mode: Int = 0) -> (bytes: [UInt8], error: Double) {
        let q = quantize(y, level: level, mode: mode), k = coded(level: level), s = Double(step(level: level, mode: mode))
        var e2 = 0.0
        for i in 0..<dim { let e = Double(y[i]) - Double(q[i]) * s; e2 += e * e }
        let header = stepModes.map { (value: mode, count: $0.count) }
        return (LaplaceCoder.encode(Array(q[0..<k]), tables: laplaceTables(level: level, mode: mode), header: header), e2)
    }

    /// The step mode the encoder picks for rotated coordinates y: the least predicted log error
    /// 10 log10(residual + e2) plus level_lambda dB per payload bit (ties: the lower mode).
    /// `residual` is the squared error (0...255 pixel units, summed) of the decode of the
    /// unquantized token; e2, in the same units when the quantizer's coordinates are whitened by
    /// the decoder's sensitivity, approximates what quantization adds.
    public func chooseMode(_ y: [Float], level: Int, residual: Double) -> (mode: Int, bytes: [UInt8], error: Double) {
        guard let modes = stepModes else { let p = laplacePayload(y, level: level); return (0, p.bytes, p.error) }
        let lambda = Double(levelLambda?[level - 1] ?? 0)
        var best: (mode: Int, bytes: [UInt8], error: Double, cost: Double)?
        for m in 0..<modes.count {
            let (bytes, e2) = laplacePayload(y, level: level, mode: m)
            let cost = 10 * log10(max(residual + e2, 1e-9)) + lambda * Double(8 * bytes.count)
            if best == nil || cost < best!.cost { best = (m, bytes, e2, cost) }
        }
        return (best!.mode, best!.bytes, best!.error)
    }

    /// Token -> payload bytes (zstd, magicless, with the dictionary; or arithmetic-coded).
    /// `residual`: with step modes, the squared error of the unquantized token's decode (see
    /// `chooseMode`); ignored otherwise.
    public func encode(_ z: UnsafePointer<Float>, level: Int, residual: Double = 0) throws -> [UInt8] {
        if entropy == .laplace {
            return chooseMode(rotate(z), level: level, residual: residual).bytes
        }
        let raw = Quantizer.pack(symbols(z, level: level))
        return try RTKZstd.compress(raw, dictionary: dictionary.isEmpty ? nil : dictionary)
    }

    /// Payload bytes -> token.
    public func decode(_ payload: [UInt8], level: Int) throws -> [Float] {
        if entropy == .laplace {
            // the step mode first, when the quantizer has modes; then the level's symbols
            let mode = try stepModes.map { try LaplaceCoder.decodeHeader(payload, count: $0.count) } ?? 0
            let tables = laplaceTables(level: level, mode: mode)
            let header = stepModes.map { (value: mode, count: $0.count) }
            var q = try LaplaceCoder.decode(payload, tables: tables, header: header?.count)
            // one payload per token: bytes past the coded values, or a non-canonical coding of them
            guard LaplaceCoder.encode(q, tables: tables, header: header) == payload else {
                throw CodecError.corruptPayload("the payload is not the coding of \(dim) token values (extra or altered bytes)")
            }
            q += [Int32](repeating: 0, count: dim - q.count)
            let s = step(level: level, mode: mode)
            return unrotate(q.map { Float($0) * s })
        }
        // One frame as `encode` writes it: no content checksum and no dictionary ID (bits 0-2 of
        // the frame header descriptor, the payload's first byte), a content size of at most
        // maxPackedBytes per coded value, refused before anything is allocated.
        let k = coded(level: level)
        if let descriptor = payload.first, descriptor & 0x07 != 0 {
            throw CodecError.corruptPayload("the zstd frame has a content checksum or a dictionary ID")
        }
        let raw: [UInt8]
        do {
            raw = try RTKZstd.decompress(payload, dictionary: dictionary.isEmpty ? nil : dictionary,
                                         maxBytes: Quantizer.maxPackedBytes * k)
        } catch {
            throw CodecError.corruptPayload("\(error)")
        }
        let q = try Quantizer.unpack(raw, dim: dim)
        // One token per payload: exactly the packing of the level's k coded values (at most k
        // values, no trailing zero value, shortest varints), as for laplace payloads.
        guard !q[k...].contains(where: { $0 != 0 }), Quantizer.pack(q) == raw else {
            throw CodecError.corruptPayload("the token is not the packing of the \(k) values level \(level) codes "
                                            + "(extra values, trailing zeros or overlong varints)")
        }
        let s = step(level: level)
        return unrotate(q.map { Float($0) * s })
    }

    // MARK: - Fitting

    /// Fits mean, PCA rotation and sigmas to tokens [n, D] (Jacobi eigendecomposition in double).
    public static func fit(tokens: [Float], dim D: Int, baseStepInSigma: Float = 0.25) -> Quantizer {
        let n = tokens.count / D
        var mean = [Double](repeating: 0, count: D)
        for r in 0..<n { for j in 0..<D { mean[j] += Double(tokens[r * D + j]) } }
        for j in 0..<D { mean[j] /= Double(max(n, 1)) }
        var cov = [Double](repeating: 0, count: D * D)
        var row = [Double](repeating: 0, count: D)
        for r in 0..<n {
            for j in 0..<D { row[j] = Double(tokens[r * D + j]) - mean[j] }
            for i in 0..<D { let a = row[i]; if a == 0 { continue }; for j in i..<D { cov[i * D + j] += a * row[j] } }
        }
        for i in 0..<D { for j in i..<D { cov[i * D + j] /= Double(max(n - 1, 1)); cov[j * D + i] = cov[i * D + j] } }
        let (vals, vecs) = SymmetricEigen.jacobi(cov, n: D, Quantizer.fitEigenSchedule)
        let order = (0..<D).sorted { vals[$0] > vals[$1] }
        var rot = [Float](repeating: 0, count: D * D)
        var sig = [Float](repeating: 0, count: D)
        for (k, e) in order.enumerated() {
            // eigenvector e is column e of vecs; make its largest entry positive (deterministic sign)
            var big = 0.0, sign = 1.0
            for j in 0..<D where abs(vecs[j * D + e]) > big { big = abs(vecs[j * D + e]); sign = vecs[j * D + e] < 0 ? -1 : 1 }
            for j in 0..<D { rot[k * D + j] = Float(sign * vecs[j * D + e]) }
            sig[k] = Float(max(vals[e], 0).squareRoot())
        }
        return Quantizer(mean: mean.map { Float($0) }, rotation: rot, sigma: sig, dictionary: [],
                         baseStep: max(sig.first ?? 1, 1e-6) * baseStepInSigma)
    }

    /// The Jacobi schedule of `fit`: 60 sweeps to an absolute off-diagonal mass of 1e-22, rotated
    /// pairs left at their rounded values (kept so a refit gives the same rotation bit for bit).
    static let fitEigenSchedule = SymmetricEigen.Schedule(maxSweeps: 60, stop: .absolute(1e-22), zeroRotated: false)

    /// The same quantizer with a zstd dictionary trained on these tokens' symbols at every level.
    public func withDictionary(tokens: [Float], maxBytes: Int = 2048) -> Quantizer {
        var samples = [[UInt8]]()
        let n = tokens.count / dim
        tokens.withUnsafeBufferPointer { tp in
            for r in 0..<n {
                for level in Quantizer.levels {
                    samples.append(Quantizer.pack(symbols(tp.baseAddress! + r * dim, level: level)))
                }
            }
        }
        let dict = (try? RTKZstd.trainDictionary(samples: samples, maxBytes: maxBytes)) ?? []
        return Quantizer(mean: mean, rotation: rotation, sigma: sigma, dictionary: dict, baseStep: baseStep,
                         synthesis: synthesis, levelSteps: levelSteps, levelCoefficients: levelCoefficients, levelRDO: levelRDO,
                         levelScale: levelScale, entropy: entropy, scale: scale, stepModes: stepModes, levelLambda: levelLambda)
    }
}

/// Per-level (and step mode) probability tables, built on first use (a quantizer is immutable).
final class TableCache: @unchecked Sendable {
    private var levels = [Int: [LaplaceCoder.Table]]()
    private let lock = NSLock()

    func get(_ level: Int, _ make: () -> [LaplaceCoder.Table]) -> [LaplaceCoder.Table] {
        lock.lock(); defer { lock.unlock() }
        if let t = levels[level] { return t }
        let t = make()
        levels[level] = t
        return t
    }
}

public enum CodecError: Error, CustomStringConvertible, Equatable {
    case corruptPayload(String)
    case unknownModel(UInt64)
    case badLevel(Int)
    case noLevelFits(Int)
    case model(String)
    case image(String)

    public var description: String {
        switch self {
        case .corruptPayload(let s): return "corrupt token payload: \(s)"
        case .unknownModel(let f): return String(format: "model %016llx not found (default model, -m, $REPTOK_MODEL_PATH, ~/.local/share/reptok/models)", f)
        case .badLevel(let l): return "quality level \(l) is outside 1-9"
        case .noLevelFits(let n): return "no quality level fits in \(n) bytes"
        case .model(let s): return s
        case .image(let s): return s
        }
    }
}
