import Foundation
import RepTokCodec
import RepTokEval
import RepTokFormat
import RepTokImage
import RepTokMetrics
import RepTokModels
import RepTokSafeTensors
import RepTokTensor

/// Image comparisons for the training evaluation (the codec's full metrics, SSIM among them, are
/// RepTokMetrics.Metrics).
public enum Baselines {
    /// PSNR (dB) of 8-bit RGB images of the same size (99 dB when identical).
    public static func psnr(_ a: RGBImage, _ b: RGBImage) -> Double {
        precondition(a.width == b.width && a.height == b.height, "psnr: sizes differ")
        var se = 0.0
        for i in 0..<a.pixels.count { let d = Double(a.pixels[i]) - Double(b.pixels[i]); se += d * d }
        let mse = se / Double(a.pixels.count)
        return mse == 0 ? 99 : 10 * log10(255 * 255 / mse)
    }

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
    public var psnr: Double
    /// Mean SSIM over pictures (RepTokMetrics.Metrics.ssim, scikit-image conventions).
    public var ssim: Double?
    /// Mean bytes per picture (whole .rtk record, or the raw thumbnail); nil when not a code.
    public var bytes: Double?
    public var maxBytes: Int?
    /// Fraction of pictures whose record fits the report's byte budget (codec rows).
    public var withinBudget: Double?

    enum CodingKeys: String, CodingKey {
        case name, level, steps, psnr, ssim, bytes, maxBytes = "max_bytes", withinBudget = "within_budget"
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
    public var linearBar: [LinearCode.Point?]?
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

    public func thumbnail(side k: Int) -> EvalRow? { rows.first { $0.name == Evaluator.thumbnailName(k) } }

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
                + pad(String(format: "%.2f", r.psnr), 10, left: true)
                + pad(r.ssim.map { String(format: "%.4f", $0) } ?? "-", 8, left: true) + "   " + by + "\n"
        }
        if let bar = linearBar {
            for (i, b) in bar.enumerated() {
                let psnr = b.map { String(format: "%.2f dB (k %d, step %.1f)", $0.psnr, $0.coefficients, $0.step) } ?? "-"
                s += String(format: "level %d: payload %.1f B; PCA at the same payload: ", i + 1, payloadBytes[i]) + psnr + "\n"
            }
        }
        return s
    }

    /// The model card's tables (GitHub markdown): every level at every step count beside the raw
    /// thumbnail of at most the same bytes, then the baselines.
    public var markdown: String {
        func f2(_ v: Double) -> String { String(format: "%.2f", v) }
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

/// Where and how `Evaluator.run` draws its picture grid.
public struct GridOptions: Sendable {
    public var path: String
    /// Rows: pictures taken evenly over the set.
    public var pictures: Int
    public init(path: String, pictures: Int = 8) { self.path = path; self.pictures = pictures }
}

/// `rttrain eval`: reconstruction quality of a codec model against simple baselines.
public enum Evaluator {
    static func thumbnailName(_ k: Int) -> String { "baseline: \(k)x\(k) RGB thumbnail, bicubic" }

    /// Decodes every picture of `data` at every level with the model's step count and each of
    /// `steps`; PSNR and SSIM against the squashed original; baselines: another picture's
    /// record, the own mean colour, the unquantized token, and raw RGB thumbnails (6x6, 8x8 and,
    /// per level, the largest one within the level's mean bytes). With `grid`, also writes a PNG:
    /// per row a picture, its original, its default-level decodes at each step count and the
    /// thumbnail of the default level's bytes.
    public static func run(model path: String, data: String, steps extraSteps: [Int] = [1], limit: Int? = nil,
                           byteBudget: Int = 128, grid: GridOptions? = nil, sslEncoder: String? = nil,
                           linearBar barData: String? = nil,
                           progress: (String) -> Void = { _ in }) throws -> EvalReport {
        let model = try CodecModel(path: path)
        let set = try Pictures.open(data)
        let n = min(set.count, limit ?? set.count)
        guard n >= 1 else { throw TrainError.data("\(data) has no pictures") }
        let S = model.imageSize
        var pics = [RGBImage](), refs = [RGBImage]()
        for i in 0..<n { let p = Pictures.picture(set, i); pics.append(p); refs.append(Codec.modelView(p, size: S)) }
        var rows = [EvalRow]()
        @discardableResult
        func row(_ name: String, level: Int? = nil, steps: Int? = nil, bytes: [Int]? = nil,
                 _ f: (Int) throws -> RGBImage) throws -> [RGBImage] {
            var tp = 0.0, ts = 0.0
            var out = [RGBImage]()
            for i in 0..<n {
                let img = try f(i)
                tp += Baselines.psnr(img, refs[i])
                ts += try Metrics.ssim(img, refs[i])
                out.append(img)
            }
            rows.append(EvalRow(name: name, level: level, steps: steps, psnr: tp / Double(n), ssim: ts / Double(n),
                                bytes: bytes.map { Double($0.reduce(0, +)) / Double($0.count) }, maxBytes: bytes?.max(),
                                withinBudget: bytes.map { b in Double(b.filter { $0 <= byteBudget }.count) / Double(b.count) }))
            progress(name + (level.map { " level \($0)" } ?? "") + (steps.map { " steps \($0)" } ?? ""))
            return out
        }
        let dl = model.codec.defaultLevel, ds = model.codec.defaultSteps
        var stepList = [ds]
        for s in extraSteps where !stepList.contains(s) { stepList.append(s) }
        var records = [[RTKRecord]](repeating: [], count: 10)
        for L in Quantizer.levels {
            records[L] = try pics.map { try Codec.encode($0, model: model, options: EncodeOptions(level: L)) }
        }
        var gridDecodes = [[RGBImage]]()
        var levelBytes = [Double](repeating: 0, count: 10)
        for L in Quantizer.levels {
            let recs = records[L]
            let bytes = try recs.map { try $0.serialized().count }
            levelBytes[L] = Double(bytes.reduce(0, +)) / Double(n)
            for st in stepList {
                var o = DecodeOptions(native: true)
                if st != recs[0].steps { o.steps = st }
                let d = try row("codec", level: L, steps: st, bytes: bytes) { try Codec.decode(recs[$0], model: model, options: o) }
                if L == dl { gridDecodes.append(d) }
            }
        }
        // the unquantized token: the quantizer's ceiling
        let kind = model.codec.sampler
        try row("unquantized token", steps: ds) {
            let z = Codec.token(pics[$0], model: model)
            let x = Codec.decodeRaw(latent: z, model: model, seed: 0, sampler: kind, steps: ds)
            return RGBImage(planar: x.array, width: S, height: S)
        }
        // baselines
        try row("baseline: another picture's token", level: dl, steps: ds) {
            try Codec.decode(records[dl][($0 + 1) % n], model: model, options: DecodeOptions(native: true))
        }
        try row("baseline: own mean colour") { Baselines.meanColour(refs[$0]) }
        var sides = Set([6, 8])
        for L in Quantizer.levels { sides.insert(EvalReport.thumbnailSide(forBytes: levelBytes[L])) }
        var thumbs = [Int: [RGBImage]]()
        for t in sides.sorted() {
            thumbs[t] = try row(thumbnailName(t), bytes: [Int](repeating: t * t * 3, count: n)) {
                Baselines.bicubic(Codec.modelView(pics[$0], size: t), width: S, height: S)
            }
        }
        if let g = grid {
            let k = EvalReport.thumbnailSide(forBytes: levelBytes[dl])
            let cols = [refs] + gridDecodes + [thumbs[k]!]
            try writeGrid(columns: cols, rows: Swift.min(g.pictures, n), total: n, cell: S, path: g.path)
        }
        var report = EvalReport(model: path, fingerprint: model.fingerprintHex, data: data, pictures: n, imageSize: S,
                                defaultLevel: dl, defaultSteps: ds, steps: stepList, byteBudget: byteBudget, rows: rows)
        report.payloadBytes = Quantizer.levels.map { L in Double(records[L].reduce(0) { $0 + $1.payload.count }) / Double(n) }
        if let bd = barData {
            let (tv, tn) = LinearCode.views(try Pictures.open(bd), size: S, flips: true)
            progress("linear bar: PCA of \(tn) views")
            let code = LinearCode.fit(views: tv, count: tn, size: S, components: 512)
            var vv = [Float]()
            for r in refs { vv += r.planarFloats(scale: 1, offset: 0) }
            let curve = code.curve(views: vv, count: n)
            report.linearBar = report.payloadBytes.map { LinearCode.best(curve, within: $0) }
            report.linearBarData = bd
            report.linearBarViews = tn
        }
        if let sp = sslEncoder {
            let ssl = try SSLEncoderFile.read(path: sp, imageSize: S)
            var total = 0.0
            for i in 0..<n {
                let z = Codec.token(pics[i], model: model)
                let px = Tensor([1, 3, S, S], refs[i].planarFloats(scale: 1, offset: 0))
                let c0 = ssl.forward(ssl.normalize(pixels255: px)).token
                // a token with layout coordinates is compared with the SSL token padded with zeros
                guard c0.count == model.adapter.dim else {
                    throw TrainError.data("--ssl-encoder token size \(c0.count) != the model's \(model.adapter.dim)")
                }
                var dot = 0.0, na = 0.0, nb = 0.0
                for d in 0..<z.count {
                    let a = Double(z.data[d]), b = d < c0.count ? Double(c0.data[d]) : 0
                    dot += a * b; na += a * a; nb += b * b
                }
                total += dot / max((na * nb).squareRoot(), 1e-30)
            }
            report.tokenCosine = total / Double(n)
            let fp = try SSLEncoderFile.fingerprint(of: try SafeTensorsFile(path: sp))
            report.sslEncoder = String(format: "%016llx", fp)
        }
        return report
    }

    /// A PNG of `rows` pictures (indices spread evenly over `total`), one column per image list,
    /// cells `cell` px with a 2 px white gap (ImageGrid); written atomically.
    static func writeGrid(columns: [[RGBImage]], rows: Int, total: Int, cell S: Int, path: String) throws {
        var sheet = ImageGrid(rows: rows, columns: columns.count, cell: S)
        for r in 0..<rows { for (c, column) in columns.enumerated() { sheet.place(column[r * total / rows], row: r, column: c) } }
        let bytes = try sheet.png()
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else {
            throw TrainError.data("cannot write \(tmp)")
        }
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: tmp, toPath: path)
    }
}
