import Foundation
import RepTokModels

/// Everything that determines a DINO self-supervised pretraining run of the encoder (stored as
/// JSON, snake_case keys, in every checkpoint's `reptok.ssl` metadata).
///
/// A run is a pure function of this config, the data file and the thread count: every random
/// draw (picture order, crops, flips, jitter, grey, blur, solarization) is keyed by (`seed`,
/// step), so a resumed run repeats the uninterrupted one bit for bit.
///
/// On `resume`, the checkpoint's config is used, except for the run-control fields (data and
/// val paths, out, export, threads, checkpoint/eval/log intervals, eval size, quiet), which are
/// taken from the new config; `steps` may also be raised (the schedules then stretch to the new
/// total, so that continuation is no longer identical to a run started with that total).
public struct SSLConfig: Codable, Equatable, Sendable {
    // MARK: data and run control
    /// Training pictures (.rtds).
    public var data: String
    /// Validation pictures (.rtds) for the retrieval eval; nil: no eval.
    public var val: String?
    /// Run folder: checkpoint.safetensors, metrics.jsonl. nil: no files (tests).
    public var out: String?
    /// Continue the run in `out` from its checkpoint.
    public var resume = false
    /// Write the teacher encoder here at the end (`encoder.*` keys + reptok.config).
    public var export: String?
    /// Engine threads (nil: REPTOK_THREADS or all cores).
    public var threads: Int?
    public var checkpointMinutes = 5.0
    /// Retrieval eval every this many minutes of training (and at the start and the end).
    public var evalMinutes = 10.0
    /// Gallery size of the retrieval eval.
    public var evalViews = 1000
    public var logEvery = 20
    /// No progress output (tests).
    public var quiet = false

    // MARK: encoder (a fresh DINOv2-structured ViT)
    public var encWidth = 192
    public var encDepth = 6
    public var encHeads = 3
    public var encPatch = 16
    public var encMlpRatio = 4
    public var encRegisters = 0
    /// LayerScale initial value (1 = plain ViT, as DINO's ViT-S; DINOv2 uses 1e-5 for its deep
    /// models, but at 0.1 our small encoder's [CLS] barely depends on the input at first and the
    /// DINO loss stays at log K in short runs: see docs/SSL.md).
    public var layerscale: Float = 1

    // MARK: DINO head
    public var headHidden = 1024
    public var headBottleneck = 256
    public var prototypes = 1024

    // MARK: views
    /// Multi-crop settings; `aug.globalSize` is the model resolution (the encoder's image_size).
    public var aug = SSLAugmentConfig()

    // MARK: optimization
    public var batch = 32
    public var steps = 5_000
    /// Peak learning rate per 256 images (scaled by batch/256, DINO's linear rule) unless `lr` is set.
    public var baseLR: Float = 5e-4
    /// Absolute peak learning rate (overrides baseLR scaling).
    public var lr: Float?
    public var minLR: Float = 1e-6
    public var warmup = 300
    /// Weight decay: cosine from weightDecay to weightDecayEnd (DINO: 0.04 -> 0.4).
    public var weightDecay: Float = 0.04
    public var weightDecayEnd: Float = 0.4
    /// Global gradient-norm clip.
    public var clip: Float = 3
    /// The head's last layer gets no updates during the first this many steps (DINO: 1 epoch).
    public var freezeLastLayer = 30
    /// Teacher EMA momentum: cosine from momentum to 1.
    public var momentum: Float = 0.996
    /// Teacher temperature: linear from teacherTempStart to teacherTemp over teacherTempWarmup steps.
    public var teacherTemp: Float = 0.04
    public var teacherTempStart: Float = 0.04
    public var teacherTempWarmup = 0
    public var studentTemp: Float = 0.1
    public var centerMomentum: Float = 0.9
    /// KoLeo weight on the student's global-crop [CLS] tokens (DINOv2: 0.1; 0 = off).
    public var koleo: Float = 0.1
    public var seed: UInt64 = 0

    public init(data: String) { self.data = data }

    enum CodingKeys: String, CodingKey {
        case data, val, out, resume, export, threads, checkpointMinutes = "checkpoint_minutes"
        case evalMinutes = "eval_minutes", evalViews = "eval_views", logEvery = "log_every", quiet
        case encWidth = "enc_width", encDepth = "enc_depth", encHeads = "enc_heads", encPatch = "enc_patch"
        case encMlpRatio = "enc_mlp_ratio", encRegisters = "enc_registers", layerscale
        case headHidden = "head_hidden", headBottleneck = "head_bottleneck", prototypes
        case aug, batch, steps, baseLR = "base_lr", lr, minLR = "min_lr", warmup
        case weightDecay = "weight_decay", weightDecayEnd = "weight_decay_end", clip
        case freezeLastLayer = "freeze_last_layer", momentum, teacherTemp = "teacher_temp"
        case teacherTempStart = "teacher_temp_start", teacherTempWarmup = "teacher_temp_warmup"
        case studentTemp = "student_temp", centerMomentum = "center_momentum", koleo, seed
    }

    /// The peak learning rate in effect.
    public var peakLR: Float { lr ?? baseLR * Float(batch) / 256 }

    /// The encoder's config.
    public var encoderConfig: EncoderConfig {
        EncoderConfig(hiddenSize: encWidth, numHiddenLayers: encDepth, numAttentionHeads: encHeads,
                      mlpRatio: encMlpRatio, patchSize: encPatch, imageSize: aug.globalSize,
                      layerscaleValue: layerscale, numRegisterTokens: encRegisters)
    }

    /// Number of (teacher view, student crop) pairs per sample: every crop against both global
    /// teacher views, except a global crop against itself.
    public var pairs: Int { 2 * (2 + aug.localCrops) - 2 }

    /// Throws a one-line description of the first invalid setting.
    public func validate() throws {
        func bad(_ s: String) -> SSLError { .config(s) }
        try aug.validate()
        try encoderConfig.validate()
        guard aug.globalSize % encPatch == 0, aug.localSize % encPatch == 0 else {
            throw bad("crop sizes \(aug.globalSize)/\(aug.localSize) must be multiples of the patch \(encPatch)")
        }
        guard batch >= 2, batch <= 4096 else { throw bad("--batch \(batch) (at least 2: KoLeo and centering need a batch)") }
        guard steps >= 0, warmup >= 0, freezeLastLayer >= 0, teacherTempWarmup >= 0 else { throw bad("step counts must be >= 0") }
        guard peakLR > 0, peakLR.isFinite, minLR >= 0, minLR <= peakLR else { throw bad("--lr/--base-lr/--min-lr") }
        guard weightDecay >= 0, weightDecayEnd >= 0, clip > 0 else { throw bad("--weight-decay/--clip") }
        guard momentum >= 0, momentum <= 1 else { throw bad("--momentum must be in [0, 1]") }
        guard teacherTemp > 0, teacherTempStart > 0, studentTemp > 0 else { throw bad("temperatures must be > 0") }
        guard (0..<1).contains(centerMomentum) else { throw bad("--center-momentum must be in [0, 1)") }
        guard koleo >= 0, koleo.isFinite else { throw bad("--koleo") }
        guard headHidden >= 1, headBottleneck >= 1, prototypes >= 2 else { throw bad("head sizes") }
        guard checkpointMinutes > 0, evalMinutes > 0, logEvery >= 1, evalViews >= 2 else {
            throw bad("--checkpoint-minutes/--eval-minutes/--log-every/--eval-views")
        }
        if let t = threads { guard t >= 1 else { throw bad("--threads \(t)") } }
        if resume && out == nil { throw bad("--resume needs --out (the run folder)") }
    }

    /// Takes the run-control fields from `other` (used on resume).
    mutating func takeRunControl(from o: SSLConfig) {
        data = o.data; val = o.val; out = o.out; resume = o.resume; export = o.export; threads = o.threads
        checkpointMinutes = o.checkpointMinutes; evalMinutes = o.evalMinutes; evalViews = o.evalViews
        logEvery = o.logEvery; quiet = o.quiet
        steps = max(steps, o.steps)
    }
}

public enum SSLError: Error, CustomStringConvertible {
    case config(String)
    case data(String)
    case checkpoint(String)

    public var description: String {
        switch self {
        case .config(let s): return "bad config: \(s)"
        case .data(let s): return "data: \(s)"
        case .checkpoint(let s): return "checkpoint: \(s)"
        }
    }
}
