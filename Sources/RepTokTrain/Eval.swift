import Foundation
import RepTokCodec
import RepTokFormat
import RepTokImage
import RepTokModels
import RepTokTensor

/// Image comparisons for evaluation.
public enum Metrics {
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
    /// Mean bytes per picture (whole .rtk record, or the raw thumbnail); nil when not a code.
    public var bytes: Double?
    public var maxBytes: Int?

    enum CodingKeys: String, CodingKey { case name, level, steps, psnr, bytes, maxBytes = "max_bytes" }
}

public struct EvalReport: Codable, Sendable {
    public var model: String
    public var fingerprint: String
    public var data: String
    public var pictures: Int
    public var imageSize: Int
    public var defaultLevel: Int
    public var defaultSteps: Int
    public var rows: [EvalRow]

    enum CodingKeys: String, CodingKey {
        case model, fingerprint, data, pictures, imageSize = "image_size", defaultLevel = "default_level"
        case defaultSteps = "default_steps", rows
    }

    public var table: String {
        var s = "model \(model) (\(fingerprint)), \(pictures) pictures of \(data), PSNR at \(imageSize)x\(imageSize) vs the squashed original\n"
        func pad(_ t: String, _ n: Int, left: Bool = false) -> String {
            t.count >= n ? t : (left ? String(repeating: " ", count: n - t.count) + t : t + String(repeating: " ", count: n - t.count))
        }
        s += pad("name", 40) + pad("level", 6, left: true) + pad("steps", 6, left: true) + pad("PSNR dB", 10, left: true)
            + "   bytes mean / max\n"
        for r in rows {
            let lv = r.level.map(String.init) ?? "-", st = r.steps.map(String.init) ?? "-"
            let by = r.bytes.map { String(format: "%.1f / %d", $0, r.maxBytes ?? 0) } ?? "-"
            s += pad(r.name, 40) + pad(lv, 6, left: true) + pad(st, 6, left: true)
                + pad(String(format: "%.2f", r.psnr), 10, left: true) + "   " + by + "\n"
        }
        return s
    }
}

/// `rttrain eval`: reconstruction quality of a codec model against simple baselines.
public enum Evaluator {
    public static func run(model path: String, data: String, steps extraSteps: [Int] = [1], limit: Int? = nil,
                           progress: (String) -> Void = { _ in }) throws -> EvalReport {
        let model = try CodecModel(path: path)
        let set = try Pictures.open(data)
        let n = min(set.count, limit ?? set.count)
        guard n >= 1 else { throw TrainError.data("\(data) has no pictures") }
        let S = model.imageSize
        var pics = [RGBImage](), refs = [RGBImage]()
        for i in 0..<n { let p = Pictures.picture(set, i); pics.append(p); refs.append(Codec.modelView(p, size: S)) }
        var rows = [EvalRow]()
        func row(_ name: String, level: Int? = nil, steps: Int? = nil, bytes: [Int]? = nil, _ f: (Int) throws -> RGBImage) rethrows {
            var total = 0.0
            for i in 0..<n { total += Metrics.psnr(try f(i), refs[i]) }
            rows.append(EvalRow(name: name, level: level, steps: steps, psnr: total / Double(n),
                                bytes: bytes.map { Double($0.reduce(0, +)) / Double($0.count) }, maxBytes: bytes?.max()))
            progress(name + (level.map { " level \($0)" } ?? "") + (steps.map { " steps \($0)" } ?? ""))
        }
        let native = DecodeOptions(native: true)
        var records = [[RTKRecord]](repeating: [], count: 10)
        for L in Quantizer.levels {
            records[L] = try pics.map { try Codec.encode($0, model: model, options: EncodeOptions(level: L)) }
        }
        let dl = model.codec.defaultLevel, ds = model.codec.defaultSteps
        for L in Quantizer.levels {
            let recs = records[L]
            try row("codec", level: L, steps: recs[0].steps, bytes: try recs.map { try $0.serialized().count }) {
                try Codec.decode(recs[$0], model: model, options: native)
            }
        }
        for s in extraSteps where s != ds {
            var o = native; o.steps = s
            try row("codec", level: dl, steps: s, bytes: try records[dl].map { try $0.serialized().count }) {
                try Codec.decode(records[dl][$0], model: model, options: o)
            }
        }
        // the unquantized token: the quantizer's ceiling
        let kind: RTKSampler = model.codec.defaultSampler == "heun" ? .heun : .euler
        row("unquantized token", steps: ds) {
            let z = Codec.token(pics[$0], model: model)
            let x = Codec.decodeRaw(latent: z, model: model, seed: 0, sampler: kind, steps: ds)
            return RGBImage(planar: x.array, width: S, height: S)
        }
        // baselines
        try row("baseline: another picture's token", level: dl, steps: ds) {
            try Codec.decode(records[dl][($0 + 1) % n], model: model, options: native)
        }
        row("baseline: own mean colour") { Metrics.meanColour(refs[$0]) }
        for t in [6, 8] {
            row("baseline: \(t)x\(t) RGB thumbnail, bicubic", bytes: [Int](repeating: t * t * 3, count: n)) {
                Metrics.bicubic(Codec.modelView(pics[$0], size: t), width: S, height: S)
            }
        }
        return EvalReport(model: path, fingerprint: model.fingerprintHex, data: data, pictures: n, imageSize: S,
                          defaultLevel: dl, defaultSteps: ds, rows: rows)
    }
}
