import ArgumentParser
import Foundation
import RepTokCLI
import RepTokTensor
import RepTokTrain

/// rttrain generator: the token-space flow model that rtgen samples (docs/GENERATION.md).
struct GeneratorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generator",
        abstract: "Train a class-conditional flow model over the codec's tokens, then export it for rtgen.")

    @Option(name: .long, help: "Training pictures (.rtds; subfolder classes as built by reptok-build-dataset).")
    var data = "data/train.rtds"
    @Option(name: [.customShort("m"), .long], help: "Codec model whose tokens are generated (default: the embedded model).")
    var model: String?
    @Option(name: .long, help: "Run folder (tokens.safetensors, checkpoint.safetensors, metrics.jsonl, generator.safetensors).")
    var out: String
    @Flag(name: .long, help: "Continue the run in --out from its checkpoint (settings come from it).") var resume = false
    @Option(name: .long, help: "Token views per training picture (cached once).") var views = 16
    @Option(name: .long, help: "Generator width.") var width = 256
    @Option(name: .long, help: "Residual blocks.") var depth = 6
    @Option(name: .long, help: "MLP hidden size / width.") var mlpRatio = 4
    @Option(name: .long, help: "Batch size (tokens).") var batch = 256
    @Option(name: .long, help: "Peak learning rate.") var lr: Float = 5e-4
    @Option(name: .long, help: "Final learning rate.") var minLr: Float = 0
    @Option(name: .long, help: "Warm-up steps.") var warmup = 200
    @Option(name: .long, help: "Training steps.") var steps = 4000
    @Option(name: .long, help: "AdamW weight decay (Linear weights).") var weightDecay: Float = 0.01
    @Option(name: .long, help: "EMA decay of the exported weights.") var ema: Float = 0.999
    @Option(name: .long, help: "Probability of dropping the label to the null class (classifier-free guidance).")
    var labelDrop: Float = 0.1
    @Option(name: .long, help: "Fraction of t drawn uniformly (else logit-normal).") var tUniform: Float = 0.1
    @Option(name: .long, help: "Run seed.") var seed: UInt64 = 0
    @Option(name: .long, help: "Minutes between checkpoints.") var checkpointMinutes: Double = 5
    @Option(name: .long, help: "Steps between log lines when stderr is not a terminal.") var logEvery = 50
    @Flag(name: .long, help: "Standardize every token dimension by its own std (tokens whose dimensions differ in scale, as a layout model's).")
    var perDimStd = false
    @Option(name: .long, help: "Threads (default: REPTOK_THREADS or all cores).") var threads: Int?
    @Option(name: .long, help: "Generator file to write at the end (default: OUT/generator.safetensors).") var export: String?
    @Flag(name: .long, help: "Store the exported weights as F16.") var fp16 = false

    func run() throws {
        if let n = threads { Engine.setThreads(n) }
        StopSignal.install()
        try reportingFailure {
            _ = try runCheckpoint(out: out, resume: resume)
            let trainer: GeneratorTrainer
            if resume {
                trainer = try GeneratorTrainer(resuming: out)
                stderrLine("rttrain generator: resuming \(out) at step \(trainer.step)")
            } else {
                var c = GeneratorTrainConfig(data: data, model: model)
                c.views = views; c.width = width; c.depth = depth; c.mlpRatio = mlpRatio; c.batch = batch
                c.lr = lr; c.minLR = minLr; c.warmup = warmup; c.steps = steps; c.weightDecay = weightDecay
                c.ema = ema; c.labelDrop = labelDrop; c.tUniform = tUniform; c.seed = seed
                c.checkpointMinutes = checkpointMinutes; c.logEvery = logEvery
                if perDimStd { c.perDimStd = true }
                trainer = try GeneratorTrainer(config: c, runDir: out)
                stderrLine("rttrain generator: \(out): \(trainer.generator.parameterCount) parameters, "
                           + "\(trainer.generator.config.classes.count) classes, tokens of model \(trainer.codec.fingerprintHex)")
            }
            if try trainer.run() == .interrupted { return }
            let path = export ?? out + "/generator.safetensors"
            try trainer.export(to: path, fp16: fp16)
            stderrLine("rttrain generator: finished \(trainer.step) steps; wrote \(path)")
        }
    }
}
