import ArgumentParser
import Foundation
import RepTokCLI
import RepTokTrain

/// `rttrain ssl`: DINO self-supervised pretraining of the encoder (see docs/SSL.md).
struct SSLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssl",
        abstract: "Pretrain the encoder with DINO self-distillation; export the teacher as --encoder input.",
        discussion: "See docs/SSL.md. Ctrl-C writes a final checkpoint; --resume continues it exactly.")

    // data and run control
    @Option(name: .long, help: "Training pictures (.rtds).") var data = "data/train.rtds"
    @Option(name: .long, help: "Validation pictures for the retrieval eval (.rtds; 'none' = no eval).") var val = "data/val.rtds"
    @Option(name: .long, help: "Run folder (checkpoint.safetensors, metrics.jsonl).") var out: String
    @Flag(name: .long, help: "Continue the run in --out from its checkpoint (model/optimization settings come from it).")
    var resume = false
    @Option(name: .long, help: "Write the teacher encoder here at the end (encoder.* keys + reptok.config).")
    var export: String?
    @Option(name: .long, help: "Threads (default: REPTOK_THREADS or all cores).") var threads: Int?
    @Option(name: .long, help: "Minutes between checkpoints.") var checkpointMinutes = 5.0
    @Option(name: .long, help: "Minutes between retrieval evals.") var evalMinutes = 10.0
    @Option(name: .long, help: "Gallery size of the retrieval eval.") var evalViews = 1000
    @Option(name: .long, help: "Steps between log lines when stderr is not a terminal.") var logEvery = 20
    @Flag(name: .long, help: "Only evaluate the run's checkpoint (or a fresh random encoder without --resume) and exit.")
    var evalOnly = false

    // encoder
    @Option(name: .long, help: "Encoder width.") var encWidth = 192
    @Option(name: .long, help: "Encoder depth.") var encDepth = 6
    @Option(name: .long, help: "Encoder heads.") var encHeads = 3
    @Option(name: .long, help: "Encoder patch size.") var encPatch = 16
    @Option(name: .long, help: "Register tokens.") var registers = 0
    @Option(name: .long, help: "LayerScale initial value.") var layerscale: Float = 1
    @Option(name: .long, help: "Model resolution (global crop side).") var imageSize = 128

    // head
    @Option(name: .long, help: "DINO head hidden width.") var headHidden = 1024
    @Option(name: .long, help: "DINO head bottleneck width.") var headBottleneck = 256
    @Option(name: .long, help: "Prototypes K.") var prototypes = 1024

    // crops
    @Option(name: .long, help: "Local crops per image.") var localCrops = 4
    @Option(name: .long, help: "Local crop side.") var localSize = 64
    @Option(name: .long, help: "Smallest global crop area fraction.") var globalMinArea = 0.32
    @Option(name: .long, help: "Local crop area range lo,hi.") var localArea = "0.05,0.32"
    @Option(name: .long, help: "Greyscale probability.") var grey = 0.2
    @Option(name: .long, help: "Blur probabilities for global 1, global 2, locals (e.g. 1,0.1,0.5; 0,0,0 = off).")
    var blur = "1,0.1,0.5"
    @Option(name: .long, help: "Solarization probability of global crop 2.") var solarize = 0.2
    @Option(name: .long, help: "Colour jitter scale (multiplies brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1).")
    var jitter = 1.0

    // optimization
    @Option(name: .long, help: "Batch size (images; each gives 2 global + L local crops).") var batch = 32
    @Option(name: .long, help: "Training steps (default 5000; on --resume: only to extend the run).") var steps: Int?
    @Option(name: .long, help: "Peak learning rate per 256 images (linear scaling).") var baseLr: Float = 5e-4
    @Option(name: .long, help: "Absolute peak learning rate (overrides --base-lr).") var lr: Float?
    @Option(name: .long, help: "Final learning rate.") var minLr: Float = 1e-6
    @Option(name: .long, help: "Warm-up steps.") var warmup = 300
    @Option(name: .long, help: "Weight decay at the start.") var weightDecay: Float = 0.04
    @Option(name: .long, help: "Weight decay at the end (cosine).") var weightDecayEnd: Float = 0.4
    @Option(name: .long, help: "Gradient-norm clip.") var clip: Float = 3
    @Option(name: .long, help: "Steps with the head's last layer frozen.") var freezeLastLayer = 30
    @Option(name: .long, help: "Teacher EMA momentum at the start (cosine to 1).") var momentum: Float = 0.996
    @Option(name: .long, help: "Teacher temperature.") var teacherTemp: Float = 0.04
    @Option(name: .long, help: "Teacher temperature at step 0 (linear warm-up to --teacher-temp).") var teacherTempStart: Float?
    @Option(name: .long, help: "Teacher temperature warm-up steps.") var teacherTempWarmup = 0
    @Option(name: .long, help: "Student temperature.") var studentTemp: Float = 0.1
    @Option(name: .long, help: "Center EMA momentum.") var centerMomentum: Float = 0.9
    @Option(name: .long, help: "KoLeo weight (0 = off).") var koleo: Float = 0.1
    @Option(name: .long, help: "Run seed (weights and every random draw).") var seed: UInt64 = 0

    func numbers(_ s: String, _ n: Int, _ name: String) throws -> [Double] {
        let v = s.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard v.count == n else { throw ValidationError("--\(name) needs \(n) comma-separated numbers") }
        return v
    }

    func config() throws -> SSLConfig {
        var c = SSLConfig(data: data)
        c.val = val == "none" ? nil : val
        c.out = out; c.resume = resume; c.export = export; c.threads = threads
        c.checkpointMinutes = checkpointMinutes; c.evalMinutes = evalMinutes; c.evalViews = evalViews; c.logEvery = logEvery
        c.encWidth = encWidth; c.encDepth = encDepth; c.encHeads = encHeads; c.encPatch = encPatch
        c.encRegisters = registers; c.layerscale = layerscale
        c.headHidden = headHidden; c.headBottleneck = headBottleneck; c.prototypes = prototypes
        c.aug.globalSize = imageSize; c.aug.localSize = localSize; c.aug.localCrops = localCrops
        c.aug.globalScale = [globalMinArea, 1]
        c.aug.localScale = try numbers(localArea, 2, "local-area")
        c.aug.greyProb = grey; c.aug.blurProb = try numbers(blur, 3, "blur"); c.aug.solarizeProb = solarize
        c.aug.brightness *= jitter; c.aug.contrast *= jitter; c.aug.saturation *= jitter; c.aug.hue *= jitter
        c.batch = batch
        c.steps = steps ?? (resume ? 0 : 5_000)
        c.baseLR = baseLr; c.lr = lr; c.minLR = minLr; c.warmup = warmup
        c.weightDecay = weightDecay; c.weightDecayEnd = weightDecayEnd; c.clip = clip
        c.freezeLastLayer = freezeLastLayer; c.momentum = momentum
        c.teacherTemp = teacherTemp; c.teacherTempStart = teacherTempStart ?? teacherTemp
        c.teacherTempWarmup = teacherTempWarmup; c.studentTemp = studentTemp
        c.centerMomentum = centerMomentum; c.koleo = koleo; c.seed = seed
        return c
    }

    func run() throws {
        let c = try config()
        try reportingFailure("rttrain ssl") {
            if evalOnly {
                let r = try SSLTrainer.evaluateOnly(c)
                print(String(format: "retrieval top-1 %.2f%% (own picture %.2f%%) over %d views of %d pictures",
                             100 * r.top1View, 100 * r.top1Picture, r.views, r.pictures))
                return
            }
            _ = try runCheckpoint(out: out, resume: resume)
            try SSLTrainer.run(c)
        }
    }
}
