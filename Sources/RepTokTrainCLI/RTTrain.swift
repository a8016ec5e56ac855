import ArgumentParser
import Foundation
import RepTokCLI
import RepTokFormat
import RepTokTensor
import RepTokTrain

/// rttrain: train the RepTok tokenizer, export codec model files, evaluate them. A failure is
/// one line `rttrain: message` (`rttrain ssl: message` for ssl) on stderr and exit status 1;
/// usage errors are ArgumentParser's (status 64).
public struct RTTrain: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rttrain",
        abstract: "Train reptok tokenizers and export them as codec models.",
        discussion: "See docs/TRAINING.md.",
        subcommands: [Tokenizer.self, Export.self, Eval.self, SSLCommand.self, GeneratorCommand.self])

    public init() {}
}

/// Runs a command's work; its error is reported as the line `tool: message` and the command
/// fails with status 1.
func reportingFailure(_ tool: String = "rttrain", _ body: () throws -> Void) throws {
    do { try body() } catch {
        stderrLine(tool + ": " + "\(error)")
        throw ExitCode(ExitStatus.failure)
    }
}

/// The checkpoint of the run folder `out`: it must be there to resume a run, and must not be
/// there to start one.
func runCheckpoint(out: String, resume: Bool) throws -> String {
    let ckpt = out + "/checkpoint.safetensors"
    let exists = FileManager.default.fileExists(atPath: ckpt)
    if resume && !exists { throw CLIError("--resume: no \(ckpt)") }
    if !resume && exists { throw CLIError("\(ckpt) exists: use --resume or another --out") }
    return ckpt
}

func stderrLine(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

func printJSON<T: Encodable>(_ v: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .prettyPrinted]
    print(String(decoding: try e.encode(v), as: UTF8.self))
}

func levelTable(_ r: ExportReport) -> String {
    var s = "level  bytes mean    min    max  <= \(r.recordBudget) B\n"
    for l in r.levels {
        s += String(format: "%5d  %10.1f  %5d  %5d  %6.1f%%%@\n", l.level, l.mean, l.min, l.max, 100 * l.withinBudget,
                    l.level == r.defaultLevel ? "  (default)" : "")
    }
    return s
}

struct ExportFlags: ParsableArguments {
    @Flag(name: .long, help: "Store network weights as F16 (quantizer stays F32).") var fp16 = false
    @Option(name: .long, help: "Validation pictures that size the quantizer step (default: the run's --val or val.rtds beside --data).")
    var val: String?
    @Option(name: .long, help: "Record byte budget at the default level.") var recordBytes = 128
    @Option(name: .long, help: "Fraction of validation pictures that must fit the budget.") var fitFraction = 1.0
    @Option(name: .long, help: "Default quality level.") var defaultLevel = 5
    @Option(name: .long, help: "Widen the step while the default level stays within this many dB of the unquantized PSNR on --val (0: finest step that fits).")
    var qualityTolerance = 0.1
    @Option(name: .long, help: "Default decoder steps.") var defaultSteps = 1
    @Option(name: .long, help: "Default sampler (euler|heun).") var sampler = "euler"
    @Option(name: .long, help: "Model description ({minutes}: training minutes).") var description = ""
    @Flag(name: .long, help: "Mark the model as the bootstrap model.") var bootstrap = false
    @Option(name: .long, help: "Layout models: per-picture step modes the encoder chooses from (0: none; kept only if they gain).")
    var stepModes = 8
    @Flag(name: .long, help: "Layout models: calibrate on the training pictures' own decode error, without raising it by the held-out gap of a same-size linear code.")
    var inSampleResiduals = false

    func options(out: String, data: String?) -> ExportOptions {
        var o = ExportOptions(out: out)
        o.fp16 = fp16; o.valData = val; o.recordBytes = recordBytes; o.fitFraction = fitFraction
        o.defaultLevel = defaultLevel; o.qualityTolerance = qualityTolerance; o.defaultSteps = defaultSteps; o.sampler = sampler
        o.description = description; o.bootstrap = bootstrap; o.trainData = data; o.stepModes = stepModes
        o.heldOutResiduals = !inSampleResiduals
        return o
    }
}

struct Tokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a tokenizer (encoder [CLS] path + adapter + flow decoder), then export it.")

    @Option(name: .long, help: "Training pictures (.rtds).") var data: String
    @Option(name: .long, help: "Run folder (checkpoint.safetensors, metrics.jsonl, model.safetensors).") var out: String
    @Option(name: .long, help: "SSL encoder safetensors (keys encoder.*); without it a fresh encoder is trained (--tune all).")
    var encoder: String?
    @Option(name: .long, help: "Encoder parameters to train: cls | last:K | all.") var tune: String?
    @Option(name: .long, help: "Warm start from a codec model file (same shapes; fresh optimizer; the reference stays --encoder's).")
    var initFrom: String?
    @Option(name: .long, help: "Weight of the 1 - cos(z, frozen token) term.") var lambda: Float = 0.1
    @Option(name: .long, help: "Decoder (and model) image size.") var imageSize = 128
    @Option(name: .long, help: "Decoder patch size.") var patch = 8
    @Option(name: .long, help: "Decoder width.") var width = 256
    @Option(name: .long, help: "Decoder depth.") var depth = 8
    @Option(name: .long, help: "Decoder heads.") var heads = 4
    @Option(name: .long, help: "Decoder prediction: x (clean image) or v (velocity).") var prediction = "x"
    @Option(name: .long, help: "Decoder latent skip: the token's linear k x k image, upsampled and added (0: none).")
    var skipSize = 0
    @Option(name: .long, help: "Std of a random latent-skip initialization (0: zero).") var skipInitStd: Float = 0
    @Flag(name: .long, help: "The decoder also embeds the latent skip's picture as input (zero-initialized; a refiner of the linear picture).")
    var skipInput = false
    @Option(name: .long, help: "Layout path: linear layout coordinates in the token, read from the coarse picture and started from the PCA of the training views (0: none; needs --skip-size).")
    var layoutDim = 0
    @Option(name: .long, help: "Side of the coarse picture the layout path reads (divides --image-size).") var layoutSize = 32
    @Option(name: .long, help: "Layout coordinates' share of the SSL token's energy at the PCA start.") var layoutShare: Float = 0.1
    @Option(name: .long, help: "Learning-rate multiplier (and no weight decay) of the layout path and the latent skip.") var layoutLr: Float = 0.05
    @Option(name: .long, help: "Start of a fresh layout path: pca or random (the ablation).") var layoutInit = "pca"
    @Option(name: .long, help: "Probability that a sample's decoder sees only the first K layout coordinates (K log-uniform), like the low levels' tokens.")
    var layoutDrop: Float = 0
    @Option(name: .long, help: "Fresh encoder width.") var encWidth = 192
    @Option(name: .long, help: "Fresh encoder depth.") var encDepth = 6
    @Option(name: .long, help: "Fresh encoder heads.") var encHeads = 3
    @Option(name: .long, help: "Fresh encoder patch size.") var encPatch = 16
    @Option(name: .long, help: "Batch size.") var batch = 16
    @Option(name: .long, help: "Peak learning rate.") var lr: Float = 3e-4
    @Option(name: .long, help: "Final learning rate of the cosine decay.") var minLr: Float = 0
    @Option(name: .long, help: "Warm-up steps.") var warmup = 500
    @Option(name: .long, help: "Training steps.") var steps: Int?
    @Option(name: .long, help: "Training time in minutes (the step budget is fixed from the speed when warm-up ends).")
    var minutes: Double?
    @Option(name: .long, help: "AdamW weight decay (on Linear weights).") var weightDecay: Float = 0.05
    @Option(name: .long, help: "EMA decay of the exported weights.") var ema: Float = 0.999
    @Option(name: .long, help: "Latent noise std, relative to the batch's RMS per-dimension token std.") var tokenNoise: Float = 0
    @Option(name: .long, help: "Fraction of t drawn uniformly in [0, 1] (else logit-normal).") var tUniform: Float = 0.1
    @Option(name: .long, help: "Fraction of samples at t = 1 (what 1-step decoding uses).") var tOne: Float = 0
    @Option(name: .long, help: "Probability of a whole-picture view (else a random-resized crop).") var wholeView: Float = 0.5
    @Option(name: .long, help: "Smallest crop area fraction.") var minCropArea: Float = 0.35
    @Option(name: .long, help: "Crop aspect ratios within [1/A, A].") var maxAspect: Double = 16.0 / 9.0
    @Option(name: .long, help: "Colour jitter strength.") var jitter: Float = 0.1
    @Flag(name: .long, help: "Cut views from the full-size pictures (default: copies shrunk to 4x the image size).")
    var fullSizeViews = false
    @Option(name: .long, help: "Run seed (weights and every random draw).") var seed: UInt64 = 0
    @Flag(name: .long, help: "Continue the run in --out from its checkpoint (other settings come from it).") var resume = false
    @Option(name: .long, help: "Minutes between checkpoints.") var checkpointMinutes: Double = 5
    @Option(name: .long, help: "Steps between log lines when stderr is not a terminal.") var logEvery = 50
    @Option(name: .long, help: "Threads (default: REPTOK_THREADS or all cores).") var threads: Int?
    @Flag(name: .long, help: "Do not export a model at the end.") var noExport = false
    @OptionGroup var export: ExportFlags

    func run() throws {
        if let n = threads { Engine.setThreads(n) }
        StopSignal.install()
        try reportingFailure {
            let ckpt = try runCheckpoint(out: out, resume: resume)
            let trainer: TokenizerTrainer
            if resume {
                trainer = try TokenizerTrainer(checkpoint: ckpt, runDir: out)
                stderrLine("rttrain: resuming \(out) at step \(trainer.step)")
            } else {
                var c = TrainConfig(data: data)
                c.val = export.val
                c.encoderPath = encoder
                c.initFrom = initFrom
                c.tune = tune ?? (encoder == nil ? "all" : "cls")
                c.lambda = lambda
                c.imageSize = imageSize; c.patch = patch; c.width = width; c.depth = depth; c.heads = heads
                c.prediction = prediction; c.skipSize = skipSize; c.skipInitStd = skipInitStd
                c.layoutDim = layoutDim; c.layoutSize = layoutSize; c.layoutShare = layoutShare; c.layoutLR = layoutLr
                c.layoutInit = layoutInit; c.layoutDrop = layoutDrop; c.skipInput = skipInput
                c.encWidth = encWidth; c.encDepth = encDepth; c.encHeads = encHeads; c.encPatch = encPatch
                c.batch = batch; c.lr = lr; c.minLR = minLr; c.warmup = warmup; c.steps = steps; c.minutes = minutes
                c.weightDecay = weightDecay; c.ema = ema; c.tokenNoise = tokenNoise; c.tUniform = tUniform; c.tOne = tOne
                c.wholeView = wholeView; c.minCropArea = minCropArea; c.jitter = jitter
                c.maxAspect = maxAspect; c.shrinkPictures = !fullSizeViews; c.seed = seed
                c.checkpointMinutes = checkpointMinutes; c.logEvery = logEvery
                trainer = try TokenizerTrainer(config: c, runDir: out)
                let n = trainer.model.namedParameters.filter { $0.1.trainable }.reduce(0) { $0 + $1.1.value.count }
                stderrLine("rttrain: \(out): \(n) trainable parameters, tune \(c.tune), \(Engine.threads) threads")
            }
            let outcome = try trainer.run()
            if outcome == .interrupted { return }
            stderrLine(String(format: "rttrain: finished %d steps in %.1f min", trainer.step, trainer.state.wallSeconds / 60))
            if noExport { return }
            let r = try Exporter.export(trainer, options: export.options(out: out + "/model.safetensors", data: nil), log: stderrLine)
            stderrLine("rttrain: wrote \(r.path) (\(r.fileBytes) bytes, fingerprint \(r.fingerprint))")
            FileHandle.standardError.write(Data(levelTable(r).utf8))
        }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a codec model file from a training checkpoint (EMA weights, fitted quantizer).")

    @Option(name: .long, help: "Training checkpoint.") var checkpoint: String
    @Option(name: .long, help: "Model file to write.") var out: String
    @Option(name: .long, help: "Pictures to fit the quantizer on (default: the run's training data).") var data: String?
    @Flag(name: .long, help: "Print the report as JSON.") var json = false
    @OptionGroup var export: ExportFlags

    func run() throws {
        try reportingFailure {
            let trainer = try TokenizerTrainer(checkpoint: checkpoint, runDir: nil)
            let r = try Exporter.export(trainer, options: export.options(out: out, data: data), log: stderrLine)
            if json { try printJSON(r); return }
            print("wrote \(r.path): \(r.fileBytes) bytes, fingerprint \(r.fingerprint)")
            print(String(format: "base step %.4g (%.3f sigma_1), dictionary %d bytes, round-trip PSNR %.2f dB",
                         r.baseStep, r.baseStepInSigma, r.dictionaryBytes, r.roundTripPSNR))
            print(levelTable(r), terminator: "")
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "PSNR per level and step count, bytes, and baselines on a picture set.")

    @Option(name: .long, help: "Codec model file.") var model: String
    @Option(name: .long, help: "Pictures (.rtds).") var data: String
    @Option(name: .long, parsing: .upToNextOption, help: "Extra step counts to decode the default level with.")
    var steps: [Int] = [1]
    @Option(name: .long, help: "Only the first N pictures.") var limit: Int?
    @Option(name: .long, help: "Threads (default: REPTOK_THREADS or all cores).") var threads: Int?
    @Option(name: .long, help: "Record size the within-budget column counts against.") var byteBudget = 128
    @Option(name: .long, help: "Also write a PNG grid: originals, default-level decodes, same-bytes thumbnails.")
    var grid: String?
    @Option(name: .long, help: "Rows (pictures) of the grid.") var gridPictures = 8
    @Option(name: .long, help: "SSL encoder file: also report the token's mean cosine to its [CLS] token.")
    var sslEncoder: String?
    @Option(name: .long, help: "Training pictures (.rtds): also report the best linear (PCA) code of each level's payload bytes, fitted on their codec views.")
    var linearBar: String?
    @Flag(name: .long, help: "Print JSON.") var json = false
    @Flag(name: .long, help: "Print the model card's markdown tables.") var markdown = false

    func validate() throws {
        guard steps.allSatisfy({ RTKFormat.steps.contains($0) }) else { throw ValidationError("--steps: each 1-\(RTKFormat.maxSteps)") }
        guard (1...256).contains(gridPictures) else { throw ValidationError("--grid-pictures: 1-256") }
        guard byteBudget >= 1 else { throw ValidationError("--byte-budget: at least 1") }
        guard !(json && markdown) else { throw ValidationError("--json and --markdown exclude each other") }
    }

    func run() throws {
        if let n = threads { Engine.setThreads(n) }
        try reportingFailure {
            let r = try Evaluator.run(model: model, data: data, steps: steps, limit: limit, byteBudget: byteBudget,
                                      grid: grid.map { GridOptions(path: $0, pictures: gridPictures) }, sslEncoder: sslEncoder,
                                      linearBar: linearBar)
            if json { try printJSON(r) } else if markdown { print(r.markdown, terminator: "") } else { print(r.table, terminator: "") }
        }
    }
}
