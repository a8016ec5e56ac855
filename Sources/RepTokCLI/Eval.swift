// rteval: rate and quality of the codec on a set of images.
//
// For each image and each quality level: the record's bytes, bits per pixel (of the original
// image), encode and decode time, and the decode's quality against the input, both at the
// model's resolution (against the input squashed the same way, Codec.modelView) and at the
// original size: PSNR, SSIM and MS-SSIM (RepTokMetrics.Metrics). Per-image rows, per-level means,
// or a JSON object with --json.
//
// Conventions:
//  - Images are evaluated one at a time, levels in order; the times are wall-clock times of
//    Codec.encode (encoder forward + quantization) and of the decode (flow sampler at the model
//    resolution, then the Lanczos resize to the original size, as Codec.decode does).
//  - The measurement is RepTokEval's harness (Harness.measure), the figures RepTokMetrics'
//    ImageQuality and QualityMean.
//  - A metric that cannot be computed at a size (SSIM and MS-SSIM need both sides >= 11) is
//    printed as "-" (null in JSON); identical images give PSNR "inf" (null in JSON, with
//    "psnr_infinite": true). Means are over the images where the value is finite.
//  - MS-SSIM uses 5 scales (Wang et al. 2003) when the smaller side is > 160, else fewer
//    (Metrics.msssimScales); the table marks such values with "/k", k the number of scales.
//  - --realism adds, per level, the Frechet distance between the SSL features (RepTokEval.
//    SSLFeatureSpace: the [CLS] token of one fixed frozen SSL encoder, by default the bundled
//    Models/ssl-encoder.safetensors) of the inputs' model views and of their decodes at the
//    model resolution, over V views per image (default: enough for 4x the feature dimension),
//    with a paired bootstrap interval over images; and its floor: the same inputs against
//    themselves with other view boxes (what sampling alone gives).

import ArgumentParser
import Foundation
import RepTokCodec
import RepTokEval
import RepTokFormat
import RepTokImage
import RepTokMetrics

/// LEVELS for -q: "1,5,9", "1-9", "1-3,7".
public struct LevelList: ExpressibleByArgument, Sendable, Equatable {
    public var levels: [Int]

    public init?(argument: String) {
        var set = Set<Int>()
        for part in argument.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 1 || bounds.count == 2,
                  let lo = Int(bounds[0].trimmingCharacters(in: .whitespaces)),
                  let hi = Int(bounds[bounds.count - 1].trimmingCharacters(in: .whitespaces)),
                  lo <= hi, Quantizer.levels.contains(lo), Quantizer.levels.contains(hi) else { return nil }
            for l in lo...hi { set.insert(l) }
        }
        guard !set.isEmpty else { return nil }
        levels = set.sorted()
    }

    public init(levels: [Int]) { self.levels = levels }

    public static var defaultCompletionKind: CompletionKind { .default }
}

public struct RTEval: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rteval",
        abstract: "Measure the codec: bytes, bits per pixel, times, PSNR, SSIM and MS-SSIM per image and level.",
        discussion: "Exit status: 0 success, 1 some image could not be evaluated, 64 usage error. See rteval(1).")

    @OptionGroup public var modelOptions: ModelOptions

    @Option(name: [.customShort("q"), .customLong("levels")],
            help: ArgumentHelp("Quality levels, e.g. 1,5,9 or 1-9 (default: 1-9).", valueName: "LEVELS"))
    public var levels: LevelList = LevelList(levels: Array(Quantizer.levels))

    @Option(name: .customLong("steps"),
            help: ArgumentHelp("Decoder steps, 1-1000 (default: the model's, as written in the records).", valueName: "N"))
    public var steps: Int?

    @Flag(name: [.customShort("r"), .customLong("recursive")],
          help: "Also take the images in the subdirectories of a directory (*.png, *.jpg, *.jpeg, *.ppm, *.pgm).")
    public var recursive = false

    @Flag(name: .customLong("json"), help: "Print a JSON object: rows, per-level means, model, steps, MS-SSIM scales.")
    public var json = false

    @Flag(name: .customLong("realism"),
          help: "Also measure the Frechet distance of SSL features, decodes against inputs, per level (see rteval(1)).")
    public var realism = false

    @Option(name: .customLong("feature-encoder"),
            help: ArgumentHelp("SSL encoder for --realism (default: the bundled ssl-encoder).", valueName: "FILE"))
    public var featureEncoder: String?

    @Option(name: .customLong("views"),
            help: ArgumentHelp("Views per image for --realism, 1-4096 (default: enough for 4x the feature dimension).", valueName: "N"))
    public var views: Int?

    @Flag(name: .customLong("sets"),
          help: "With --realism: the distance between the images of the two inputs (e.g. generated vs validation), no codec run.")
    public var sets = false

    @Option(name: .customLong("bootstrap"),
            help: ArgumentHelp("Bootstrap resamples for the --realism interval, 0-10000 (default 200).", valueName: "N"))
    public var bootstrap = 200

    @Flag(name: .customLong("quiet"), help: "Print errors only on stderr (no progress, no warnings).")
    public var quiet = false

    @Flag(name: .customLong("version"), help: "Print the version and the default model's fingerprint.")
    public var version = false

    @Argument(help: ArgumentHelp("Image files, directories (their images; with -r, their trees), or - for stdin.", valueName: "FILE|DIR"))
    public var inputs: [String] = []

    public init() {}

    public func validate() throws {
        if version { return }
        if inputs.isEmpty { throw ValidationError("no input: give image files or directories") }
        if inputs.filter({ $0 == "-" }).count > 1 { throw ValidationError("stdin (-) can be read only once") }
        if let s = steps, !RTKFormat.steps.contains(s) { throw ValidationError("--steps must be 1-\(RTKFormat.maxSteps)") }
        if let m = modelOptions.model, m.isEmpty { throw ValidationError("-m needs a file name") }
        if let v = views, !(1...4096).contains(v) { throw ValidationError("--views must be 1-4096") }
        if !(0...10000).contains(bootstrap) { throw ValidationError("--bootstrap must be 0-10000") }
        if let f = featureEncoder, f.isEmpty { throw ValidationError("--feature-encoder needs a file name") }
        if !realism && (views != nil || featureEncoder != nil || sets) {
            throw ValidationError("--views, --feature-encoder and --sets need --realism")
        }
        if sets && (inputs.count != 2 || inputs.contains("-")) { throw ValidationError("--sets takes two directories or files") }
    }

    static let imageExtensions: Set<String> = ["png", "jpg", "jpeg", "ppm", "pgm"]

    static func isImageName(_ name: String) -> Bool {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return false }
        return imageExtensions.contains(name[name.index(after: dot)...].lowercased())
    }

    struct Row {
        var file: String
        var width: Int
        var height: Int
        var level: Int
        var bytes: Int
        var bpp: Double
        var encodeSeconds: Double
        var decodeSeconds: Double
        var model: ImageQuality
        var original: ImageQuality
    }

    public func run() throws {
        if version { print(ToolVersion.text(tool: "rteval")); return }
        let console = Console(tool: "rteval", verbosity: quiet ? .quiet : .normal, progress: true)
        // A directory is always taken: its own images, and with -r those of its whole tree.
        var list = Inputs.expand(inputs, recursive: true) { RTEval.isImageName($0) }
        if !recursive {
            list.items.removeAll { $0.fromWalk && $0.rel.contains("/") }
            list.errors.removeAll { !inputs.contains($0.0) }  // unreadable subdirectories are not wanted
        }
        var failed = false
        for (arg, message) in list.errors {
            console.error(path: arg, message)
            failed = true
        }
        if list.items.contains(where: { $0.isStdin }) && isatty(STDIN_FILENO) == 1 {
            console.error("stdin is a terminal, aborting")
            throw ExitCode(ExitStatus.failure)
        }
        let model: CodecModel
        do {
            if let m = modelOptions.model { model = try CodecModel.cached(path: m) } else { model = try CodecModel.loadDefault() }
        } catch {
            console.error("\(error)")
            throw ExitCode(ExitStatus.failure)
        }
        var features: SSLFeatureSpace? = nil
        if realism {
            do {
                guard let p = featureEncoder ?? CodecModel.bundledModelPath("ssl-encoder") else {
                    throw CodecError.model("no SSL feature encoder is installed beside this program: give --feature-encoder FILE")
                }
                features = try SSLFeatureSpace(path: p)
            } catch {
                console.error("feature encoder: \(error)")
                throw ExitCode(ExitStatus.failure)
            }
        }
        let S = model.imageSize
        if sets, let fs = features {
            try runSets(fs, size: S, console: console)
            return
        }
        let effectiveSteps = steps ?? model.codec.defaultSteps
        let levelList = levels.levels
        let total = list.items.count * levelList.count
        var done = 0
        var rows: [Row] = []
        var errors: [(String, String)] = list.errors
        // For --realism: per image, its model view and its decode at each level (nil: failed).
        var realismViews: [RGBImage] = []
        var realismDecodes: [[Int: RGBImage]] = []

        for item in list.items {
            let input: RGBImage
            do {
                let bytes = try IO.readInput(item.path, cap: ImageLimits.default.maxBytes)
                let decoded = try ImageIO.decode(bytes)
                if decoded.hadICC {
                    console.warning("\(Console.show(item.path)): ICC profile ignored (pixels are taken as sRGB)")
                }
                input = decoded.image
            } catch {
                console.error(path: item.path, RTEnc.message(error))
                errors.append((item.path, RTEnc.message(error)))
                failed = true
                done += levelList.count
                console.progress(done: done, total: total, name: item.rel)
                continue
            }
            let view = Codec.modelView(input, size: S)
            var decodes: [Int: RGBImage] = [:]
            for level in levelList {
                do {
                    let m = try Harness.measure(input, view: view, model: model, level: level, steps: [steps], originalSize: true)
                    let d = m.decodes[0]
                    if realism { decodes[level] = d.image }
                    rows.append(Row(file: item.path, width: input.width, height: input.height, level: level,
                                    bytes: m.bytes, bpp: Double(m.bytes * 8) / Double(input.width * input.height),
                                    encodeSeconds: m.encodeSeconds, decodeSeconds: d.seconds,
                                    model: d.model, original: d.original!))
                } catch {
                    let msg = "level \(level): " + RTEnc.message(error)
                    console.error(path: item.path, msg)
                    errors.append((item.path, msg))
                    failed = true
                }
                done += 1
                console.progress(done: done, total: total, name: "\(item.rel) level \(level)")
            }
            if realism { realismViews.append(view); realismDecodes.append(decodes) }
        }
        console.clearProgress()
        let means = RTEval.means(rows, levels: levelList)
        var realismResult: Realism? = nil
        if let fs = features {
            do {
                realismResult = try RTEval.realism(fs, views: realismViews, decodes: realismDecodes, levels: levelList,
                                                   viewsPerImage: views, resamples: bootstrap, console: console)
            } catch {
                console.error("realism: \(error)")
                failed = true
            }
        }
        if json {
            printJSON(rows, means: means, model: model, steps: effectiveSteps, levels: levelList, errors: errors,
                      realism: realismResult)
        } else {
            printTable(rows, means: means, model: model, steps: effectiveSteps)
            if let r = realismResult { printRealism(r) }
        }
        try failIf(failed)
    }

    // MARK: - Means

    struct Mean {
        var level: Int
        var images: Int
        var bytes: Double
        var bpp: Double
        var encodeSeconds: Double
        var decodeSeconds: Double
        var model: QualityMean
        var original: QualityMean
    }

    static func means(_ rows: [Row], levels: [Int]) -> [Mean] {
        levels.compactMap { level in
            let r = rows.filter { $0.level == level }
            guard !r.isEmpty else { return nil }
            let n = Double(r.count)
            return Mean(level: level, images: r.count, bytes: Double(r.map { $0.bytes }.reduce(0, +)) / n,
                        bpp: r.map { $0.bpp }.reduce(0, +) / n,
                        encodeSeconds: r.map { $0.encodeSeconds }.reduce(0, +) / n,
                        decodeSeconds: r.map { $0.decodeSeconds }.reduce(0, +) / n,
                        model: QualityMean(r.map { $0.model }), original: QualityMean(r.map { $0.original }))
        }
    }

    // MARK: - Table

    static func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }

    static func fmtPSNR(_ v: Double?) -> String {
        guard let v else { return "-" }
        return v.isFinite ? String(format: "%.2f", v) : "inf"
    }

    static func fmt4(_ v: Double?) -> String { v.map { String(format: "%.4f", $0) } ?? "-" }

    static func fmtMS(_ v: Double?, scales: [Int]) -> String {
        guard let v else { return "-" }
        let s = String(format: "%.4f", v)
        if scales == [5] || scales.isEmpty { return s }
        return s + "/" + scales.map(String.init).joined(separator: ",")
    }

    static func qualityCells(psnr: Double?, ssim: Double?, msssim: Double?, scales: [Int]) -> String {
        pad(fmtPSNR(psnr), 7) + "  " + pad(fmt4(ssim), 6) + "  " + pad(fmtMS(msssim, scales: scales), 10)
    }

    func printTable(_ rows: [Row], means: [Mean], model: CodecModel, steps: Int) {
        let S = model.imageSize
        var lines: [String] = []
        lines.append("model \(model.fingerprintHex)" + (model.codec.bootstrap ? " (BOOTSTRAP)" : "")
                     + ", resolution \(S)x\(S), steps \(steps)")
        guard !rows.isEmpty else {
            IO.writeAllIgnoringErrors(STDOUT_FILENO, Array((lines.joined(separator: "\n") + "\n").utf8))
            return
        }
        let left = RTEval.pad("", 5 + 2 + 8 + 2 + 8 + 2 + 8 + 2 + 8)
        let groupW = 7 + 2 + 6 + 2 + 10
        func group(_ title: String) -> String {
            let t = "-- " + title + " "
            return t + String(repeating: "-", count: max(0, groupW - t.count))
        }
        lines.append(left + "  " + group("at \(S)x\(S)") + "  " + group("at original size"))
        let p = RTEval.pad
        lines.append(p("Level", 5) + "  " + p("Bytes", 8) + "  " + p("BPP", 8) + "  " + p("Enc ms", 8) + "  "
                     + p("Dec ms", 8) + "  " + p("PSNR", 7) + "  " + p("SSIM", 6) + "  " + p("MS-SSIM", 10)
                     + "  " + p("PSNR", 7) + "  " + p("SSIM", 6) + "  " + p("MS-SSIM", 10) + "  "
                     + p("Size", 11) + "  File")
        for r in rows {
            lines.append(p("\(r.level)", 5) + "  " + p("\(r.bytes)", 8) + "  " + p(String(format: "%.4f", r.bpp), 8)
                         + "  " + p(String(format: "%.1f", r.encodeSeconds * 1000), 8) + "  "
                         + p(String(format: "%.1f", r.decodeSeconds * 1000), 8) + "  "
                         + RTEval.qualityCells(psnr: r.model.psnr, ssim: r.model.ssim, msssim: r.model.msssim,
                                               scales: [r.model.msssimScales]) + "  "
                         + RTEval.qualityCells(psnr: r.original.psnr, ssim: r.original.ssim,
                                               msssim: r.original.msssim, scales: [r.original.msssimScales]) + "  "
                         + p("\(r.width)x\(r.height)", 11) + "  " + Console.show(r.file))
        }
        for m in means {
            lines.append(p("\(m.level)", 5) + "  " + p(String(format: "%.1f", m.bytes), 8) + "  "
                         + p(String(format: "%.4f", m.bpp), 8) + "  "
                         + p(String(format: "%.1f", m.encodeSeconds * 1000), 8) + "  "
                         + p(String(format: "%.1f", m.decodeSeconds * 1000), 8) + "  "
                         + RTEval.qualityCells(psnr: m.model.psnr, ssim: m.model.ssim, msssim: m.model.msssim,
                                               scales: m.model.msssimScales) + "  "
                         + RTEval.qualityCells(psnr: m.original.psnr, ssim: m.original.ssim,
                                               msssim: m.original.msssim, scales: m.original.msssimScales) + "  "
                         + p("", 11) + "  mean of \(m.images) image" + (m.images == 1 ? "" : "s"))
        }
        let fewer = rows.contains { ($0.model.msssim != nil && $0.model.msssimScales < 5)
            || ($0.original.msssim != nil && $0.original.msssimScales < 5) }
        if fewer {
            lines.append("MS-SSIM/k: k < 5 scales (image too small for 5), weights renormalized; not comparable with 5-scale MS-SSIM")
        }
        if rows.contains(where: { $0.model.ssim == nil || $0.original.ssim == nil }) {
            lines.append("-: image side below 11, SSIM and MS-SSIM not computed")
        }
        IO.writeAllIgnoringErrors(STDOUT_FILENO, Array((lines.joined(separator: "\n") + "\n").utf8))
    }

    // MARK: - JSON

    static func round(_ v: Double, _ digits: Double) -> Double { (v * digits).rounded() / digits }

    static func json(_ v: Double?, _ digits: Double = 1e6) -> Any {
        guard let v, v.isFinite else { return NSNull() }
        return round(v, digits)
    }

    static func jsonQuality(_ q: ImageQuality) -> [String: Any] {
        var o: [String: Any] = ["psnr": json(q.psnr), "ssim": json(q.ssim), "msssim": json(q.msssim),
                                "msssim_scales": q.msssim == nil ? NSNull() : q.msssimScales as Any]
        if q.psnr.isInfinite { o["psnr_infinite"] = true }
        return o
    }

    static func jsonMeanQuality(_ q: QualityMean) -> [String: Any] {
        ["psnr": json(q.psnr), "psnr_images": q.psnrCount, "ssim": json(q.ssim), "msssim": json(q.msssim),
         "msssim_scales": q.msssimScales]
    }

    func printJSON(_ rows: [Row], means: [Mean], model: CodecModel, steps: Int, levels: [Int], errors: [(String, String)],
                   realism: Realism? = nil) {
        let S = model.imageSize
        let jrows: [[String: Any]] = rows.map { r in
            ["file": r.file, "width": r.width, "height": r.height, "level": r.level, "bytes": r.bytes,
             "bpp": RTEval.round(r.bpp, 1e6), "encode_ms": RTEval.round(r.encodeSeconds * 1000, 1e3),
             "decode_ms": RTEval.round(r.decodeSeconds * 1000, 1e3),
             "model_resolution": RTEval.jsonQuality(r.model), "original_size": RTEval.jsonQuality(r.original)]
        }
        let jmeans: [[String: Any]] = means.map { m in
            ["level": m.level, "images": m.images, "bytes": RTEval.round(m.bytes, 1e3), "bpp": RTEval.round(m.bpp, 1e6),
             "encode_ms": RTEval.round(m.encodeSeconds * 1000, 1e3), "decode_ms": RTEval.round(m.decodeSeconds * 1000, 1e3),
             "model_resolution": RTEval.jsonMeanQuality(m.model), "original_size": RTEval.jsonMeanQuality(m.original)]
        }
        let modelScales = Set(rows.filter { $0.model.msssim != nil }.map { $0.model.msssimScales }).sorted()
        let originalScales = Set(rows.filter { $0.original.msssim != nil }.map { $0.original.msssimScales }).sorted()
        var out: [String: Any] = [
            "model": model.fingerprintHex, "model_path": model.path, "bootstrap": model.codec.bootstrap,
            "resolution": S, "steps": steps, "levels": levels,
            "msssim_scales": ["model_resolution": modelScales, "original_size": originalScales],
            "msssim_weights": Metrics.msssimWeights,
            "rows": jrows, "means": jmeans,
            "errors": errors.map { ["file": $0.0, "message": Console.oneLine($0.1)] },
        ]
        if let r = realism { out["realism"] = RTEval.jsonRealism(r) }
        let data = (try? JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        IO.writeAllIgnoringErrors(STDOUT_FILENO, Array(data) + [0x0A])
    }
}
