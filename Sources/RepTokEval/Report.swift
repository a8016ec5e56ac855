// The report of `rttrain eval` (Harness.report): every level at every step count over a set of
// pictures, beside the baselines (another picture's token, the picture's own mean colour, the
// unquantized token, raw RGB thumbnails of the same bytes) and the bars the caller adds (the
// linear bar, LinearCode in RepTokTrain); its table, JSON and the model card's markdown.

import Foundation
import RepTokCodec
import RepTokFormat
import RepTokImage
import RepTokMetrics
import RepTokModels
import RepTokSafeTensors
import RepTokTensor

/// The baselines' pictures.
public enum Baselines {
    /// The picture's own mean colour, as a flat image of its size.
    public static func meanColour(_ img: RGBImage) -> RGBImage {
        var s = [0.0, 0.0, 0.0]
        let n = img.width * img.height
        for i in 0..<n { for c in 0..<3 { s[c] += Double(img.pixels[3 * i + c]) } }
        let m = s.map { UInt8(min(255, max(0, ($0 / Double(max(n, 1))).rounded()))) }
        var px = [UInt8](repeating: 0, count: 3 * n)
        for i in 0..<n { px[3 * i] = m[0]; px[3 * i + 1] = m[1]; px[3 * i + 2] = m[2] }
        return RGBImage(width: img.width, height: img.height, pixels: px)
    }

    /// Bicubic upsampling (Keys kernel, a = -0.5, pixel centres aligned as in PIL/OpenCV,
    /// border taps clamped), rounded to 8 bits.
    public static func bicubic(_ img: RGBImage, width W: Int, height H: Int) -> RGBImage {
        func kernel(_ x0: Double) -> Double {
            let a = -0.5, x = abs(x0)
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
            return 0
        }
        func taps(_ n: Int, _ m: Int) -> [[(Int, Double)]] {
            (0..<m).map { j in
                let c = (Double(j) + 0.5) * Double(n) / Double(m) - 0.5
                let f = Int(floor(c))
                return (f - 1...f + 2).map { (min(max($0, 0), n - 1), kernel(c - Double($0))) }
            }
        }
        let tx = taps(img.width, W), ty = taps(img.height, H)
        var tmp = [Double](repeating: 0, count: img.height * W * 3)
        for y in 0..<img.height {
            for x in 0..<W {
                for c in 0..<3 {
                    var acc = 0.0
                    for (i, w) in tx[x] { acc += w * Double(img.pixels[(y * img.width + i) * 3 + c]) }
                    tmp[(y * W + x) * 3 + c] = acc
                }
            }
        }
        var px = [UInt8](repeating: 0, count: W * H * 3)
        for y in 0..<H {
            for x in 0..<W {
                for c in 0..<3 {
                    var acc = 0.0
                    for (i, w) in ty[y] { acc += w * tmp[(i * W + x) * 3 + c] }
                    px[(y * W + x) * 3 + c] = RGBImage.quantize(Float(acc))
                }
            }
        }
        return RGBImage(width: W, height: H, pixels: px)
    }
}

/// One row of the evaluation table.
public struct EvalRow: Codable, Sendable {
    public var name: String
    public var level: Int?
    public var steps: Int?
    /// Mean PSNR over the pictures whose PSNR is finite (QualityMean); nil (JSON null) when none
    /// is, that is when every picture came back identical.
    public var psnr: Double?
    /// How many pictures the PSNR mean is over, when an identical picture (infinite PSNR) was
    /// left out; nil (not written) when it is over all of them.
    public var psnrPictures: Int?
    /// Mean SSIM over pictures (RepTokMetrics.Metrics.ssim, scikit-image conventions).
    public var ssim: Double?
    /// Mean bytes per picture (whole .rtk record, or the raw thumbnail); nil when not a code.
    public var bytes: Double?
    public var maxBytes: Int?
    /// Fraction of pictures whose record fits the report's byte budget (codec rows).
    public var withinBudget: Double?

    public init(name: String, level: Int? = nil, steps: Int? = nil, quality: QualityMean, pictures: Int,
                bytes: Double? = nil, maxBytes: Int? = nil, withinBudget: Double? = nil) {
        self.name = name; self.level = level; self.steps = steps
        psnr = quality.psnr
        psnrPictures = quality.psnrCount < pictures ? quality.psnrCount : nil
        ssim = quality.ssim
        self.bytes = bytes; self.maxBytes = maxBytes; self.withinBudget = withinBudget
    }

    enum CodingKeys: String, CodingKey {
        case name, level, steps, psnr, psnrPictures = "psnr_pictures", ssim, bytes, maxBytes = "max_bytes"
        case withinBudget = "within_budget"
    }

    /// As the synthesized encoder, but `psnr` is always written (null when nil).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encodeIfPresent(level, forKey: .level)
        try c.encodeIfPresent(steps, forKey: .steps)
        try c.encode(psnr, forKey: .psnr)
        try c.encodeIfPresent(psnrPictures, forKey: .psnrPictures)
        try c.encodeIfPresent(ssim, forKey: .ssim)
        try c.encodeIfPresent(bytes, forKey: .bytes)
        try c.encodeIfPresent(maxBytes, forKey: .maxBytes)
        try c.encodeIfPresent(withinBudget, forKey: .withinBudget)
    }
}

/// A point of a comparison code the caller measures on the same pictures (rttrain eval's linear
/// bar, RepTokTrain's LinearCode.Point): k coefficients at one step, mean bytes and mean PSNR.
public struct LinearBarPoint: Codable, Sendable, Equatable {
    public var coefficients: Int
    public var step: Double
    public var bytes: Double
    public var psnr: Double

    public init(coefficients: Int, step: Double, bytes: Double, psnr: Double) {
        self.coefficients = coefficients; self.step = step; self.bytes = bytes; self.psnr = psnr
    }
}

public struct EvalReport: Codable, Sendable {
    public var model: String
    public var fingerprint: String
    public var data: String
    public var pictures: Int
    public var imageSize: Int
    public var defaultLevel: Int
    public var defaultSteps: Int
    /// Step counts every level was decoded with (the default first).
    public var steps: [Int]
    public var byteBudget: Int
    public var rows: [EvalRow]
    /// With an SSL encoder: the mean over pictures of cos(token, that encoder's [CLS] token) on
    /// the codec view (what the cosine regularizer holds near 1), and the encoder's fingerprint.
    public var tokenCosine: Double?
    public var sslEncoder: String?
    /// Mean token payload bytes per level (index 0 = level 1).
    public var payloadBytes: [Double] = []
    /// The linear bar (LinearCode) at each level's mean payload bytes, with the pictures it was
    /// fitted on; nil without `--linear-bar`.
    public var linearBar: [LinearBarPoint?]?
    public var linearBarData: String?
    public var linearBarViews: Int?

    enum CodingKeys: String, CodingKey {
        case model, fingerprint, data, pictures, imageSize = "image_size", defaultLevel = "default_level"
        case defaultSteps = "default_steps", steps, byteBudget = "byte_budget", rows
        case tokenCosine = "token_cosine", sslEncoder = "ssl_encoder", payloadBytes = "payload_bytes"
        case linearBar = "linear_bar", linearBarData = "linear_bar_data", linearBarViews = "linear_bar_views"
    }

    public func codec(level: Int, steps: Int) -> EvalRow? {
        rows.first { $0.name == "codec" && $0.level == level && $0.steps == steps }
    }

    /// The largest square RGB thumbnail whose raw bytes (3 k^2) do not exceed `bytes`.
    public static func thumbnailSide(forBytes bytes: Double) -> Int {
        var k = 1
        while Double(3 * (k + 1) * (k + 1)) <= bytes { k += 1 }
        return k
    }

    public func thumbnail(side k: Int) -> EvalRow? { rows.first { $0.name == Harness.thumbnailName(k) } }

    public var table: String {
        var s = "model \(model) (\(fingerprint)), \(pictures) pictures of \(data), PSNR at \(imageSize)x\(imageSize) vs the squashed original\n"
        func pad(_ t: String, _ n: Int, left: Bool = false) -> String {
            t.count >= n ? t : (left ? String(repeating: " ", count: n - t.count) + t : t + String(repeating: " ", count: n - t.count))
        }
        s += pad("name", 40) + pad("level", 6, left: true) + pad("steps", 6, left: true) + pad("PSNR dB", 10, left: true)
            + pad("SSIM", 8, left: true) + "   bytes mean / max\n"
        for r in rows {
            let lv = r.level.map(String.init) ?? "-", st = r.steps.map(String.init) ?? "-"
            let by = r.bytes.map { String(format: "%.1f / %d", $0, r.maxBytes ?? 0) } ?? "-"
            s += pad(r.name, 40) + pad(lv, 6, left: true) + pad(st, 6, left: true)
                + pad(r.psnr.map { String(format: "%.2f", $0) } ?? "-", 10, left: true)
                + pad(r.ssim.map { String(format: "%.4f", $0) } ?? "-", 8, left: true) + "   " + by + "\n"
        }
        if let bar = linearBar {
            for (i, b) in bar.enumerated() {
                let psnr = b.map { String(format: "%.2f dB (k %d, step %.1f)", $0.psnr, $0.coefficients, $0.step) } ?? "-"
                s += String(format: "level %d: payload %.1f B; PCA at the same payload: ", i + 1, payloadBytes[i]) + psnr + "\n"
            }
        }
        s += identicalNote
        return s
    }

    /// A line naming the rows whose PSNR mean leaves out pictures decoded identically; empty when none.
    var identicalNote: String {
        let left = rows.filter { $0.psnrPictures != nil }
        guard !left.isEmpty else { return "" }
        return "PSNR over fewer pictures (the others came back identical, infinite PSNR): "
            + left.map { r in r.name + (r.level.map { " level \($0)" } ?? "") + (r.steps.map { " steps \($0)" } ?? "")
                + " \(r.psnrPictures!) of \(pictures)" }.joined(separator: "; ") + "\n"
    }

    /// The model card's tables (GitHub markdown): every level at every step count beside the raw
    /// thumbnail of at most the same bytes, then the baselines.
    public var markdown: String {
        func f2(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "-" }
        func f3(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "-" }
        var s = "Model `\(fingerprint)`, \(pictures) pictures of `\((data as NSString).lastPathComponent)`, "
            + "at \(imageSize)x\(imageSize) against the squashed original; means over pictures; bytes are whole .rtk records "
            + "(seed 0, no name).\n\n"
        let bar = linearBar ?? []
        var h = "| level | bytes mean | max | <= \(byteBudget) B |" + (bar.isEmpty ? "" : " payload B | PCA, same payload |")
        var rule = "| ---: | ---: | ---: | ---: |" + (bar.isEmpty ? "" : " ---: | ---: |")
        for st in steps { h += " PSNR \(st) step\(st == 1 ? "" : "s") |"; rule += " ---: |" }
        for st in steps { h += " SSIM \(st) step\(st == 1 ? "" : "s") |"; rule += " ---: |" }
        h += " thumbnail, same bytes | its PSNR | its SSIM |"; rule += " --- | ---: | ---: |"
        s += h + "\n" + rule + "\n"
        for L in Quantizer.levels {
            guard let base = codec(level: L, steps: steps[0]), let b = base.bytes else { continue }
            var line = "| \(L)\(L == defaultLevel ? " (default)" : "") | " + String(format: "%.1f", b) + " | \(base.maxBytes ?? 0) | "
                + String(format: "%.0f%%", 100 * (base.withinBudget ?? 0)) + " |"
            if !bar.isEmpty {
                line += String(format: " %.1f |", payloadBytes[L - 1])
                line += (bar[L - 1].map { String(format: " %.2f (k %d) |", $0.psnr, $0.coefficients) } ?? " - |")
            }
            for st in steps { line += " " + (codec(level: L, steps: st).map { f2($0.psnr) } ?? "-") + " |" }
            for st in steps { line += " " + f3(codec(level: L, steps: st)?.ssim) + " |" }
            let k = Self.thumbnailSide(forBytes: b)
            if let t = thumbnail(side: k) {
                line += " \(k)x\(k) (\(3 * k * k) B) | \(f2(t.psnr)) | \(f3(t.ssim)) |"
            } else {
                line += " - | - | - |"
            }
            s += line + "\n"
        }
        s += "\n| reference (default level \(defaultLevel), \(defaultSteps) step\(defaultSteps == 1 ? "" : "s")) | PSNR | SSIM | bytes |\n| --- | ---: | ---: | ---: |\n"
        for r in rows where r.name != "codec" {
            s += "| \(r.name) | \(f2(r.psnr)) | \(f3(r.ssim)) | " + (r.bytes.map { String(format: "%.0f", $0) } ?? "-") + " |\n"
        }
        if !bar.isEmpty, let d = linearBarData, let v = linearBarViews {
            s += "\nPCA, same payload: the best linear single-vector code of at most the level's mean payload bytes "
                + "(PCA of the \(v) codec views of `\((d as NSString).lastPathComponent)` and their mirror images; the number of "
                + "coefficients k and one step chosen for the best PSNR; bytes = ideal code length of a static Laplacian per "
                + "coefficient; LinearCode). The codec's payload bytes are real arithmetic-coded bytes, its records add the "
                + "container on top.\n"
        }
        if let c = tokenCosine, let e = sslEncoder {
            s += "\nMean cosine of the token to the SSL encoder's token (`\(e)`) on the same view: " + String(format: "%.4f", c) + ".\n"
        }
        return s
    }
}

extension Harness {
    static func thumbnailName(_ k: Int) -> String { "baseline: \(k)x\(k) RGB thumbnail, bicubic" }

    /// `rttrain eval`'s report: every picture through `measure` at every level, decoded with the
    /// model's step count and each of `steps`; PSNR and SSIM against the squashed original, means
    /// over pictures (QualityMean); baselines: another picture's record, the own mean colour, the
    /// unquantized token, and raw RGB thumbnails (6x6, 8x8 and, per level, the largest one within
    /// the level's mean bytes). `model` and `data` name the model and the pictures in the report.
    /// With `gridPictures`, also the grid: per row a picture (taken evenly over the set), its
    /// original, its default-level decodes at each step count and the thumbnail of the default
    /// level's bytes. The linear bar and the token cosine are the caller's (RepTokTrain).
    public static func report(_ codecModel: CodecModel, model: String, data: String, pictures pics: [RGBImage],
                              steps extraSteps: [Int] = [1], byteBudget: Int = 128, gridPictures: Int? = nil,
                              progress: (String) -> Void = { _ in }) throws -> (report: EvalReport, grid: ImageGrid?) {
        let n = pics.count
        precondition(n >= 1, "Harness.report: no pictures")
        let S = codecModel.imageSize
        let refs = pics.map { Codec.modelView($0, size: S) }
        let dl = codecModel.codec.defaultLevel, ds = codecModel.codec.defaultSteps
        var stepList = [ds]
        for s in extraSteps where !stepList.contains(s) { stepList.append(s) }

        // the codec: per level, per picture, its bytes and each step count's quality
        var bytes = [[Int]](repeating: [], count: 10), payload = [[Int]](repeating: [], count: 10)
        var quality = [[[ImageQuality]]](repeating: [[ImageQuality]](repeating: [], count: stepList.count), count: 10)
        var defaultRecords = [RTKRecord](), gridDecodes = [[RGBImage]](repeating: [], count: stepList.count)
        for i in 0..<n {
            for L in Quantizer.levels {
                let m = try measure(pics[i], view: refs[i], model: codecModel, level: L, steps: stepList)
                bytes[L].append(m.bytes)
                payload[L].append(m.record.payload.count)
                for (k, d) in m.decodes.enumerated() {
                    quality[L][k].append(d.model)
                    if L == dl && gridPictures != nil { gridDecodes[k].append(d.image) }
                }
                if L == dl { defaultRecords.append(m.record) }
            }
            progress("codec: picture \(i + 1) of \(n)")
        }
        var rows = [EvalRow]()
        var levelBytes = [Double](repeating: 0, count: 10)
        for L in Quantizer.levels {
            let b = bytes[L]
            levelBytes[L] = Double(b.reduce(0, +)) / Double(n)
            for (k, st) in stepList.enumerated() {
                rows.append(EvalRow(name: "codec", level: L, steps: st, quality: QualityMean(quality[L][k]), pictures: n,
                                    bytes: levelBytes[L], maxBytes: b.max(),
                                    withinBudget: Double(b.filter { $0 <= byteBudget }.count) / Double(n)))
            }
        }

        /// A baseline row: picture i's image against its view.
        @discardableResult
        func row(_ name: String, level: Int? = nil, steps: Int? = nil, bytes: Int? = nil,
                 _ f: (Int) throws -> RGBImage) throws -> [RGBImage] {
            var q = [ImageQuality](), out = [RGBImage]()
            for i in 0..<n {
                let img = try f(i)
                q.append(try ImageQuality.measure(img, against: refs[i]))
                out.append(img)
            }
            rows.append(EvalRow(name: name, level: level, steps: steps, quality: QualityMean(q), pictures: n,
                                bytes: bytes.map(Double.init), maxBytes: bytes,
                                withinBudget: bytes.map { $0 <= byteBudget ? 1.0 : 0.0 }))
            progress(name + (level.map { " level \($0)" } ?? "") + (steps.map { " steps \($0)" } ?? ""))
            return out
        }
        // the unquantized token: the quantizer's ceiling
        let kind = codecModel.codec.sampler
        try row("unquantized token", steps: ds) {
            let z = Codec.token(pics[$0], model: codecModel)
            let x = Codec.decodeRaw(latent: z, model: codecModel, seed: 0, sampler: kind, steps: ds)
            return RGBImage(planar: x.array, width: S, height: S)
        }
        // baselines
        try row("baseline: another picture's token", level: dl, steps: ds) {
            try Codec.decode(defaultRecords[($0 + 1) % n], model: codecModel, options: DecodeOptions(native: true))
        }
        try row("baseline: own mean colour") { Baselines.meanColour(refs[$0]) }
        var sides = Set([6, 8])
        for L in Quantizer.levels { sides.insert(EvalReport.thumbnailSide(forBytes: levelBytes[L])) }
        var thumbs = [Int: [RGBImage]]()
        for t in sides.sorted() {
            thumbs[t] = try row(thumbnailName(t), bytes: t * t * 3) {
                Baselines.bicubic(Codec.modelView(pics[$0], size: t), width: S, height: S)
            }
        }
        var grid: ImageGrid? = nil
        if let g = gridPictures {
            let k = EvalReport.thumbnailSide(forBytes: levelBytes[dl])
            let columns = [refs] + gridDecodes + [thumbs[k]!]
            let r = Swift.min(g, n)
            var sheet = ImageGrid(rows: r, columns: columns.count, cell: S)
            for row in 0..<r { for (c, column) in columns.enumerated() { sheet.place(column[row * n / r], row: row, column: c) } }
            grid = sheet
        }
        var report = EvalReport(model: model, fingerprint: codecModel.fingerprintHex, data: data, pictures: n, imageSize: S,
                                defaultLevel: dl, defaultSteps: ds, steps: stepList, byteBudget: byteBudget, rows: rows)
        report.payloadBytes = Quantizer.levels.map { L in Double(payload[L].reduce(0, +)) / Double(n) }
        return (report, grid)
    }
}
