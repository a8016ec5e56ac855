// rtgen: new images from the token space (rtgen(1)).
//
// A generator file (rttrain generator) samples tokens of one codec model; the codec's decoder
// renders them. -o DIR writes NNNN_CLASS.png files; -o - writes the sampled tokens as a
// concatenated .rtk stream (each record decodes with rtdec like any other). --lerp A.rtk B.rtk
// decodes N tokens on the straight line between two records' tokens (no generator needed).
//
// Determinism: sample i comes from the noise of (seed, i) and is decoded with the decoder noise
// seed written in its record (seed + i), so the same command gives the same bytes, whatever -n
// or the thread count.

import ArgumentParser
import Foundation
import RepTokCodec
import RepTokFormat
import RepTokImage
import RepTokTensor

public struct RTGen: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rtgen",
        abstract: "Generate images (or .rtk records) from the token space of a reptok model.",
        discussion: "Exit status: 0 success, 1 failure, 64 usage error. See rtgen(1).")

    @OptionGroup public var modelOptions: ModelOptions

    @Option(name: [.customShort("g"), .customLong("generator")],
            help: ArgumentHelp("Generator file (default: the one installed beside the program).", valueName: "FILE"))
    public var generatorPath: String?

    @Option(name: [.customShort("n"), .customLong("count")], help: ArgumentHelp("Images to generate, 1-10000.", valueName: "N"))
    public var count = 16

    @Option(name: .customLong("class"), help: ArgumentHelp("Class to generate (default: all classes in turn).", valueName: "NAME"))
    public var className: String?

    @Flag(name: .customLong("unconditional"), help: "Generate without a class (the null class).")
    public var unconditional = false

    @Option(name: .customLong("cfg"), help: ArgumentHelp("Classifier-free guidance scale (1: none; default 1.5).", valueName: "S"))
    public var cfg: Float = 1.5

    @Option(name: .customLong("cfg-interval"),
            help: ArgumentHelp("Guide only for t in [A, B] (t = 1 is noise; default 0.3,0.9).", valueName: "A,B"))
    public var cfgInterval = "0.3,0.9"

    @Option(name: .customLong("seed"), help: ArgumentHelp("Seed (default 0).", valueName: "S"))
    public var seed: UInt64 = 0

    @Option(name: .customLong("steps"), help: ArgumentHelp("Generator sampler steps, 1-1000 (default 50).", valueName: "K"))
    public var steps = 50

    @Option(name: .customLong("decode-steps"),
            help: ArgumentHelp("Decoder steps, 1-1000 (default: the model's).", valueName: "N"))
    public var decodeSteps: Int?

    @Option(name: [.customShort("q"), .customLong("level")],
            help: ArgumentHelp("Quality level of the records written with -o - (default: the model's).", valueName: "LEVEL"))
    public var level: Int?

    @Option(name: .customLong("lerp"), parsing: .upToNextOption,
            help: ArgumentHelp("Interpolate between the tokens of two .rtk files instead of sampling.", valueName: "A.rtk B.rtk"))
    public var lerp: [String] = []

    @Flag(name: .customLong("list-classes"), help: "Print the generator's class names, one per line, and exit.")
    public var listClasses = false

    @Option(name: [.customShort("o"), .customLong("output")],
            help: ArgumentHelp("Output directory for PNGs (created if missing), or - for an .rtk stream on stdout.", valueName: "DIR|-"))
    public var output: String?

    @Option(name: .customLong("grid"),
            help: ArgumentHelp("Write the images as one PNG grid instead (one row per class when cycling through the classes, else rows of 8).", valueName: "FILE"))
    public var grid: String?

    @Flag(name: [.customShort("f"), .customLong("force")], help: "Overwrite existing files; write binary data to a terminal.")
    public var force = false

    @Flag(name: .customLong("quiet"), help: "Print errors only.")
    public var quiet = false

    @Flag(name: .customLong("version"), help: "Print the version and the default model's fingerprint.")
    public var version = false

    public init() {}

    var interval: ClosedRange<Float>? {
        let p = cfgInterval.split(separator: ",", omittingEmptySubsequences: false)
        guard p.count == 2, let a = Float(p[0].trimmingCharacters(in: .whitespaces)),
              let b = Float(p[1].trimmingCharacters(in: .whitespaces)), a >= 0, b <= 1, a <= b else { return nil }
        return a...b
    }

    public func validate() throws {
        if version || listClasses { return }
        if grid != nil && output != nil { throw ValidationError("--grid and -o exclude each other") }
        if grid == "" || grid == "-" { throw ValidationError("--grid needs a file name") }
        guard output != nil || grid != nil else { throw ValidationError("give -o DIR (PNG files), -o - (an .rtk stream) or --grid FILE") }
        if output == "" { throw ValidationError("-o needs a directory or -") }
        guard (1...10000).contains(count) else { throw ValidationError("-n must be 1-10000") }
        guard RTKFormat.steps.contains(steps) else { throw ValidationError("--steps must be 1-\(RTKFormat.maxSteps)") }
        if let d = decodeSteps, !RTKFormat.steps.contains(d) { throw ValidationError("--decode-steps must be 1-\(RTKFormat.maxSteps)") }
        if let l = level, !RTKFormat.levels.contains(l) { throw ValidationError("-q must be 1-\(RTKFormat.levels.upperBound)") }
        guard cfg.isFinite, cfg >= 0, cfg <= 100 else { throw ValidationError("--cfg must be 0-100") }
        guard interval != nil else { throw ValidationError("--cfg-interval must be A,B with 0 <= A <= B <= 1") }
        if !lerp.isEmpty && lerp.count != 2 { throw ValidationError("--lerp takes two .rtk files") }
        if !lerp.isEmpty && (className != nil || unconditional) { throw ValidationError("--lerp samples no class") }
        if className != nil && unconditional { throw ValidationError("--class and --unconditional exclude each other") }
        if let m = modelOptions.model, m.isEmpty { throw ValidationError("-m needs a file name") }
    }

    func loadGenerator(_ console: Console) throws -> GeneratorModel {
        guard let p = generatorPath ?? GeneratorModel.bundledPath() else {
            throw CLIError("no generator is installed beside this program: give -g FILE (rttrain generator writes one)")
        }
        return try GeneratorModel(path: p)
    }

    public func run() throws {
        if version { print(ToolVersion.text(tool: "rtgen")); return }
        let console = Console(tool: "rtgen", verbosity: quiet ? .quiet : .normal, progress: true)
        Interrupts.beforeExit = { console.clearProgress() }
        Interrupts.install()
        do {
            if listClasses {
                let g = try loadGenerator(console)
                IO.writeAllIgnoringErrors(STDOUT_FILENO, Array((g.config.classes.joined(separator: "\n") + "\n").utf8))
                return
            }
            let model = try modelOptions.model.map { try CodecModel.cached(path: $0) } ?? CodecModel.loadDefault()
            let toStdout = output == "-"
            var rowsByClass: Int? = nil
            if toStdout { try StandardOutput.checkBinary(force: force) }
            let D = model.quantizer.dim
            var tokens: Tensor
            var names: [String]
            if lerp.isEmpty {
                let g = try loadGenerator(console)
                guard g.codecModel == model.fingerprintHex else {
                    throw CLIError("generator \(g.path) samples tokens of model \(g.codecModel), not of \(model.fingerprintHex) (give -m)")
                }
                guard g.config.tokenDim == D else { throw CLIError("generator token size \(g.config.tokenDim) != model's \(D)") }
                var labels: [Int]
                if unconditional {
                    labels = [Int](repeating: g.config.nullClass, count: count)
                } else if let c = className {
                    guard let k = g.classIndex(c) else {
                        throw CLIError("unknown class \"\(Console.oneLine(c, limit: 80))\" (rtgen --list-classes lists them)")
                    }
                    labels = [Int](repeating: k, count: count)
                } else {
                    labels = (0..<count).map { $0 % g.config.classes.count }
                    rowsByClass = min(count, g.config.classes.count)
                }
                tokens = Tensor([count, D])
                let chunk = 64
                var i = 0
                while i < count {
                    let n = min(chunk, count - i)
                    let z = g.sample(labels: Array(labels[i..<(i + n)]), seed: seed, firstIndex: i, steps: steps,
                                     cfg: cfg, interval: interval!)
                    (tokens.data + i * D).update(from: z.data, count: n * D)
                    i += n
                    console.progress(done: i, total: count * 2, name: "tokens")
                }
                names = labels.enumerated().map { i, l in
                    String(format: "%04d", i) + "_" + (l == g.config.nullClass ? "any" : RTGen.safeName(g.config.classes[l]))
                }
            } else {
                var ends: [Tensor] = []
                for p in lerp {
                    let recs = try RTKRecord.parse(try IO.readInput(p, cap: 1 << 20))
                    guard let r = recs.first else { throw CLIError("\(Console.show(p)): no record") }
                    guard r.fingerprint == model.fingerprint else {
                        throw CLIError("\(Console.show(p)) was made with model \(String(format: "%016llx", r.fingerprint)), not \(model.fingerprintHex) (give -m)")
                    }
                    ends.append(try Codec.latent(r, model: model))
                }
                tokens = Tensor([count, D])
                for i in 0..<count {
                    let a = count == 1 ? 0 : Float(i) / Float(count - 1)
                    for d in 0..<D { tokens.data[i * D + d] = (1 - a) * ends[0].data[d] + a * ends[1].data[d] }
                }
                names = (0..<count).map { String(format: "lerp_%04d", $0) }
            }
            if toStdout {
                var out: [UInt8] = []
                for i in 0..<count {
                    let r = try Codec.record(latent: tokens.data + i * D, model: model, level: level ?? model.codec.defaultLevel,
                                             seed: seed &+ UInt64(i), name: names[i])
                    try r.append(to: &out)
                }
                try IO.writeAll(STDOUT_FILENO, out)
                console.clearProgress()
                return
            }
            let S = model.imageSize
            func render(_ i: Int) -> RGBImage {
                let z = Tensor([1, D], Array(UnsafeBufferPointer(start: tokens.data + i * D, count: D)))
                let x = Codec.decodeRaw(latent: z, model: model, seed: seed &+ UInt64(i), sampler: model.codec.sampler,
                                        steps: decodeSteps ?? model.codec.defaultSteps)
                return RGBImage(planar: x.array, width: S, height: S)
            }
            if let gridPath = grid {
                // sample i at (row, column): by class (i % K, i / K) when cycling, else row-major, 8 wide
                let rows = rowsByClass ?? (count + 7) / 8
                let cols = rowsByClass.map { (count + $0 - 1) / $0 } ?? min(count, 8)
                var sheet = ImageGrid(rows: rows, columns: cols, cell: S)
                for i in 0..<count {
                    let (r, c) = rowsByClass.map { (i % $0, i / $0) } ?? (i / 8, i % 8)
                    sheet.place(render(i), row: r, column: c)
                    console.progress(done: count + i + 1, total: count * 2, name: names[i])
                }
                let png = try sheet.png()
                let pending = try PendingOutput(destination: gridPath, force: force, inputs: [])
                try pending.write(png)
                try pending.commit(inputs: [])
                console.clearProgress()
                if !quiet { console.info("\(count) images in \(gridPath) (\(rows) x \(cols))", level: .normal) }
                return
            }
            let dir = output!
            try IO.makeDirectory(dir)
            for i in 0..<count {
                let png = try ImageIO.encode(render(i), format: .png)
                let dest = dir + "/" + names[i] + ".png"
                let pending = try PendingOutput(destination: dest, force: force, inputs: [])
                try pending.write(png)
                try pending.commit(inputs: [])
                console.progress(done: count + i + 1, total: count * 2, name: names[i])
            }
            console.clearProgress()
            if !quiet { console.info("\(count) images in \(dir)", level: .normal) }
        } catch {
            console.clearProgress()
            console.error(RTEnc.message(error))
            throw ExitCode(ExitStatus.failure)
        }
    }

    /// A class name as a file-name part: letters, digits, '-', '_' and '.' kept, others '_'.
    static func safeName(_ s: String) -> String {
        String(s.prefix(60).map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }
}
