import Foundation
import RepTokData
import RepTokModels
import RepTokNN

/// Everything that determines a tokenizer training run. Stored (as JSON, snake_case keys) in
/// every checkpoint's `reptok.train` metadata and, with the step count and wall time, in the
/// exported model's `reptok.config` under `training`.
///
/// A run is a pure function of this config, the data file and the thread count: every random
/// draw (batch composition, crops, flips, jitter, t, noise, token noise) is keyed by
/// (`seed`, step), so a resumed run repeats the uninterrupted one bit for bit.
public struct TrainConfig: Codable, Equatable, Sendable {
    // data
    public var data: String
    public var val: String?
    // encoder: a pretrained file, or a fresh one of this shape
    public var encoderPath: String?
    /// Warm start: encoder, adapter and decoder weights from this codec model file (a previous
    /// export), with a fresh optimizer. The frozen reference stays that of `encoderPath`.
    public var initFrom: String?
    public var encWidth = 192
    public var encDepth = 6
    public var encHeads = 3
    public var encPatch = 16
    public var tune = "cls"
    public var lambda: Float = 0.1
    // decoder
    public var imageSize = 128
    public var patch = 8
    public var width = 256
    public var depth = 8
    public var heads = 4
    public var prediction = "x"
    /// Decoder latent skip size k (0: none; DecoderConfig.skipSize).
    public var skipSize = 0
    /// Std of a normal initialization of the latent skip's weight (0: zero, the decoder's own
    /// adaLN-Zero-style init). A nonzero skip gives the encoder a direct gradient from step 0.
    public var skipInitStd: Float = 0
    /// Layout path (0: none): the token also carries this many linear layout coordinates read
    /// from the view box-averaged to `layoutSize` x `layoutSize` (TokenAdapter), decoded by the
    /// latent skip. A fresh run starts both from the PCA of the training views (LayoutInit).
    public var layoutDim = 0
    public var layoutSize = 32
    /// The layout coordinates' share of the SSL token's mean energy at initialization.
    public var layoutShare: Float = 0.1
    /// Learning-rate multiplier of the linear layout path (`adapter.layout.*`) and the latent
    /// skip when the run has a layout path; they also get no weight decay. They start at the
    /// least-squares optimum, where a batch's gradient is mostly noise that Adam would turn
    /// into steps of the full rate.
    public var layoutLR: Float = 0.05
    /// How a fresh layout path starts: "pca" (the linear code of the training views) or
    /// "random" (small normal weights in the layout path and the latent skip; the ablation).
    public var layoutInit = "pca"
    /// Probability that a sample's decoder sees only the first K layout coordinates (K
    /// log-uniform in 1...m, the rest zero, the cosine term the whole token): the coarse tokens of
    /// the low quality levels, whose quantizer keeps few directions. The layout coordinates are
    /// ordered by the variance of the PCA start.
    public var layoutDrop: Float = 0
    /// The decoder also embeds the latent skip's picture as input (DecoderConfig.skipInput).
    public var skipInput = false
    // optimization
    public var batch = 16
    public var lr: Float = 3e-4
    public var minLR: Float = 0
    public var warmup = 500
    public var steps: Int?
    public var minutes: Double?
    public var weightDecay: Float = 0.05
    public var clip: Float = 1
    public var ema: Float = 0.999
    /// EMA decay warm-up: the decay used at update k (1-based) is min(ema, (1 + k) / (10 + k)),
    /// so the shadow is not dominated by the random initialization in short runs.
    public var emaWarmup = true
    /// Gaussian noise added to the latent z during training (decoder input only), with std
    /// `tokenNoise` x RMS over dimensions of the per-dimension standard deviation of z within the
    /// batch (a stop-gradient scale, so the model cannot escape the noise by growing z).
    /// Isotropic, like the quantizer's error (a uniform step on rotated coordinates).
    public var tokenNoise: Float = 0
    /// Fraction of samples whose t is uniform in [0, 1] (the rest: sigmoid(N(0, 1))).
    public var tUniform: Float = 0.1
    /// Fraction of samples at t = 1 exactly: pure noise in, so the decoder's output is its
    /// estimate of the image from z alone, which is what a 1-step Euler decode returns.
    public var tOne: Float = 0
    // views
    /// Probability that a view is the whole picture squashed to a square (the codec's view).
    public var wholeView: Float = 0.5
    /// Smallest crop area (fraction of the picture) of a random-resized crop.
    public var minCropArea: Float = 0.35
    /// Crop aspect ratios (width / height) are log-uniform in [1 / maxAspect, maxAspect].
    public var maxAspect: Double = 16.0 / 9.0
    /// Colour jitter strength (brightness/contrast/saturation factors in [1 - j, 1 + j]).
    public var jitter: Float = 0.1
    /// Views are cut from copies of the pictures shrunk to a long side of at most 4 S (area
    /// filter): much cheaper, and the same views up to the two-stage resampling.
    public var shrinkPictures = true
    public var seed: UInt64 = 0
    // mechanics
    public var checkpointMinutes: Double = 5
    public var logEvery = 50

    public init(data: String) { self.data = data }

    enum CodingKeys: String, CodingKey {
        case data, val, encoderPath = "encoder_path", initFrom = "init_from", encWidth = "enc_width", encDepth = "enc_depth"
        case encHeads = "enc_heads", encPatch = "enc_patch", tune, lambda
        case imageSize = "image_size", patch, width, depth, heads, prediction, skipSize = "skip_size", skipInitStd = "skip_init_std"
        case layoutDim = "layout_dim", layoutSize = "layout_size", layoutShare = "layout_share", layoutLR = "layout_lr"
        case layoutInit = "layout_init", layoutDrop = "layout_drop", skipInput = "skip_input"
        case batch, lr, minLR = "min_lr", warmup, steps, minutes, weightDecay = "weight_decay", clip, ema
        case emaWarmup = "ema_warmup", tokenNoise = "token_noise", tUniform = "t_uniform", tOne = "t_one"
        case wholeView = "whole_view", minCropArea = "min_crop_area", maxAspect = "max_aspect", jitter
        case shrinkPictures = "shrink_pictures", seed
        case checkpointMinutes = "checkpoint_minutes", logEvery = "log_every"
    }

    /// Reads a config; settings missing from older checkpoints keep their defaults.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(data: try c.decode(String.self, forKey: .data))
        if c.contains(.val) { val = try c.decode(type(of: val), forKey: .val) }
        if c.contains(.encoderPath) { encoderPath = try c.decode(type(of: encoderPath), forKey: .encoderPath) }
        if c.contains(.initFrom) { initFrom = try c.decode(type(of: initFrom), forKey: .initFrom) }
        if c.contains(.encWidth) { encWidth = try c.decode(type(of: encWidth), forKey: .encWidth) }
        if c.contains(.encDepth) { encDepth = try c.decode(type(of: encDepth), forKey: .encDepth) }
        if c.contains(.encHeads) { encHeads = try c.decode(type(of: encHeads), forKey: .encHeads) }
        if c.contains(.encPatch) { encPatch = try c.decode(type(of: encPatch), forKey: .encPatch) }
        if c.contains(.tune) { tune = try c.decode(type(of: tune), forKey: .tune) }
        if c.contains(.lambda) { lambda = try c.decode(type(of: lambda), forKey: .lambda) }
        if c.contains(.imageSize) { imageSize = try c.decode(type(of: imageSize), forKey: .imageSize) }
        if c.contains(.patch) { patch = try c.decode(type(of: patch), forKey: .patch) }
        if c.contains(.width) { width = try c.decode(type(of: width), forKey: .width) }
        if c.contains(.depth) { depth = try c.decode(type(of: depth), forKey: .depth) }
        if c.contains(.heads) { heads = try c.decode(type(of: heads), forKey: .heads) }
        if c.contains(.prediction) { prediction = try c.decode(type(of: prediction), forKey: .prediction) }
        if c.contains(.skipSize) { skipSize = try c.decode(type(of: skipSize), forKey: .skipSize) }
        if c.contains(.skipInitStd) { skipInitStd = try c.decode(type(of: skipInitStd), forKey: .skipInitStd) }
        if c.contains(.layoutDim) { layoutDim = try c.decode(type(of: layoutDim), forKey: .layoutDim) }
        if c.contains(.layoutSize) { layoutSize = try c.decode(type(of: layoutSize), forKey: .layoutSize) }
        if c.contains(.layoutShare) { layoutShare = try c.decode(type(of: layoutShare), forKey: .layoutShare) }
        if c.contains(.layoutLR) { layoutLR = try c.decode(type(of: layoutLR), forKey: .layoutLR) }
        if c.contains(.layoutInit) { layoutInit = try c.decode(type(of: layoutInit), forKey: .layoutInit) }
        if c.contains(.layoutDrop) { layoutDrop = try c.decode(type(of: layoutDrop), forKey: .layoutDrop) }
        if c.contains(.skipInput) { skipInput = try c.decode(type(of: skipInput), forKey: .skipInput) }
        if c.contains(.batch) { batch = try c.decode(type(of: batch), forKey: .batch) }
        if c.contains(.lr) { lr = try c.decode(type(of: lr), forKey: .lr) }
        if c.contains(.minLR) { minLR = try c.decode(type(of: minLR), forKey: .minLR) }
        if c.contains(.warmup) { warmup = try c.decode(type(of: warmup), forKey: .warmup) }
        if c.contains(.steps) { steps = try c.decode(type(of: steps), forKey: .steps) }
        if c.contains(.minutes) { minutes = try c.decode(type(of: minutes), forKey: .minutes) }
        if c.contains(.weightDecay) { weightDecay = try c.decode(type(of: weightDecay), forKey: .weightDecay) }
        if c.contains(.clip) { clip = try c.decode(type(of: clip), forKey: .clip) }
        if c.contains(.ema) { ema = try c.decode(type(of: ema), forKey: .ema) }
        if c.contains(.emaWarmup) { emaWarmup = try c.decode(type(of: emaWarmup), forKey: .emaWarmup) }
        if c.contains(.tokenNoise) { tokenNoise = try c.decode(type(of: tokenNoise), forKey: .tokenNoise) }
        if c.contains(.tUniform) { tUniform = try c.decode(type(of: tUniform), forKey: .tUniform) }
        if c.contains(.tOne) { tOne = try c.decode(type(of: tOne), forKey: .tOne) }
        if c.contains(.wholeView) { wholeView = try c.decode(type(of: wholeView), forKey: .wholeView) }
        if c.contains(.minCropArea) { minCropArea = try c.decode(type(of: minCropArea), forKey: .minCropArea) }
        if c.contains(.maxAspect) { maxAspect = try c.decode(type(of: maxAspect), forKey: .maxAspect) }
        if c.contains(.jitter) { jitter = try c.decode(type(of: jitter), forKey: .jitter) }
        if c.contains(.shrinkPictures) { shrinkPictures = try c.decode(type(of: shrinkPictures), forKey: .shrinkPictures) }
        if c.contains(.seed) { seed = try c.decode(type(of: seed), forKey: .seed) }
        if c.contains(.checkpointMinutes) { checkpointMinutes = try c.decode(type(of: checkpointMinutes), forKey: .checkpointMinutes) }
        if c.contains(.logEvery) { logEvery = try c.decode(type(of: logEvery), forKey: .logEvery) }
    }

    /// `tune` and `prediction`, typed (nil for a value `validate` refuses). The fields stay
    /// strings, as checkpoints and the command line carry them.
    public var tuneMode: TuneMode? { TuneMode(tune) }
    public var predictionKind: DecoderConfig.Prediction? { DecoderConfig.Prediction(rawValue: prediction) }

    /// The training views (RepTokData's ViewSampler).
    public var viewConfig: ViewConfig {
        ViewConfig(size: imageSize, wholeFraction: Double(wholeView), minArea: Double(minCropArea), maxArea: 1,
                   maxAspect: maxAspect, flipProbability: 0.5, brightness: Double(jitter), contrast: Double(jitter),
                   saturation: Double(jitter), augmentWhole: true)
    }

    /// The decoder's config for an encoder of width `encoderWidth` (the token adds the layout
    /// coordinates).
    public func decoderConfig(encoderWidth: Int) -> DecoderConfig {
        DecoderConfig(imageSize: imageSize, patchSize: patch, width: width, depth: depth, numHeads: heads,
                      tokenDim: encoderWidth + layoutDim, prediction: prediction, skipSize: skipSize,
                      skipInput: skipInput)
    }

    /// Sets the layout path's learning-rate multiplier and weight decay (see `layoutLR`) on a
    /// model's parameters: call before building the optimizer.
    public func applyLayoutRates(_ named: [(String, Parameter)]) {
        guard layoutDim > 0 else { return }
        for (k, p) in named where k.hasPrefix("adapter.layout.") || k.hasPrefix("decoder.latent_skip.") {
            p.lrScale = layoutLR; p.decay = false
        }
    }

    /// The token adapter for an encoder of width `encoderWidth`.
    public func adapter(encoderWidth: Int) -> TokenAdapter {
        TokenAdapter(dim: encoderWidth, layoutDim: layoutDim, layoutSize: layoutDim > 0 ? layoutSize : 0)
    }

    /// The config of a freshly initialized encoder (used when `encoderPath` is nil).
    public var freshEncoderConfig: EncoderConfig {
        EncoderConfig(hiddenSize: encWidth, numHiddenLayers: encDepth, numAttentionHeads: encHeads,
                      patchSize: encPatch, imageSize: imageSize)
    }

    /// Throws a one-line description of the first invalid setting.
    public func validate() throws {
        func bad(_ s: String) -> TrainError { .config(s) }
        guard tuneMode != nil else { throw bad("--tune must be cls, last:K or all (got \(tune))") }
        if encoderPath == nil && tuneMode != .all {
            throw bad("without --encoder the encoder is randomly initialized and must be trained: use --tune all")
        }
        guard batch >= 1, batch <= 4096 else { throw bad("--batch \(batch)") }
        guard (0...64).contains(skipSize) else { throw bad("--skip-size \(skipSize): 0-64") }
        guard skipInitStd >= 0, skipInitStd <= 1, skipInitStd == 0 || skipSize > 0 else {
            throw bad("--skip-init-std \(skipInitStd): 0-1, with --skip-size")
        }
        if skipSize > 0 && predictionKind != .x { throw bad("--skip-size needs --prediction x") }
        guard lr > 0, lr.isFinite, minLR >= 0, minLR <= lr else { throw bad("--lr/--min-lr") }
        guard warmup >= 0 else { throw bad("--warmup \(warmup)") }
        guard (steps != nil) != (minutes != nil) else { throw bad("give exactly one of --steps and --minutes") }
        if let s = steps { guard s >= 0 else { throw bad("--steps \(s)") } }
        guard (0...2048).contains(layoutDim) else { throw bad("--layout-dim \(layoutDim): 0-2048") }
        if layoutDim > 0 {
            guard (1...64).contains(layoutSize), imageSize % layoutSize == 0 else {
                throw bad("--layout-size \(layoutSize) must divide --image-size \(imageSize) (1-64)")
            }
            guard skipSize > 0 else { throw bad("--layout-dim needs the latent skip (--skip-size)") }
            guard layoutShare > 0, layoutShare.isFinite else { throw bad("--layout-share \(layoutShare)") }
            guard layoutLR >= 0, layoutLR.isFinite else { throw bad("--layout-lr \(layoutLR)") }
            guard layoutInit == "pca" || layoutInit == "random" else { throw bad("--layout-init must be pca or random (got \(layoutInit))") }
        }
        guard (0...1).contains(layoutDrop), layoutDrop == 0 || layoutDim > 0 else { throw bad("--layout-drop \(layoutDrop): 0-1, with --layout-dim") }
        if skipInput && skipSize == 0 { throw bad("--skip-input needs the latent skip (--skip-size)") }
        if let m = minutes { guard m > 0, m.isFinite else { throw bad("--minutes \(m)") } }
        guard ema >= 0, ema < 1 else { throw bad("--ema must be in [0, 1)") }
        guard weightDecay >= 0, clip > 0 else { throw bad("--weight-decay/--clip") }
        guard tokenNoise >= 0, tokenNoise.isFinite else { throw bad("--token-noise") }
        guard (0...1).contains(tUniform), (0...1).contains(tOne), tUniform + tOne <= 1 else {
            throw bad("--t-uniform and --t-one must be in [0, 1] with a sum <= 1")
        }
        guard (0...1).contains(wholeView), minCropArea > 0, minCropArea <= 1, (0..<1).contains(jitter),
              maxAspect >= 1, maxAspect.isFinite else {
            throw bad("view settings (--whole-view, --min-crop-area, --max-aspect, --jitter)")
        }
        guard lambda >= 0, lambda.isFinite else { throw bad("--lambda") }
        guard checkpointMinutes > 0, logEvery >= 1 else { throw bad("--checkpoint-minutes/--log-every") }
        if encoderPath == nil { try freshEncoderConfig.validate() }
        try decoderConfig(encoderWidth: encWidth).validate()
    }
}

public enum TrainError: Error, CustomStringConvertible {
    case config(String)
    case data(String)
    case checkpoint(String)
    case export(String)

    public var description: String {
        switch self {
        case .config(let s): return "bad training config: \(s)"
        case .data(let s): return "training data: \(s)"
        case .checkpoint(let s): return "checkpoint: \(s)"
        case .export(let s): return "export: \(s)"
        }
    }
}

/// JSON helpers (sorted keys: the same config always gives the same bytes).
enum JSONText {
    static func encode<T: Encodable>(_ v: T) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: try e.encode(v), as: UTF8.self)
    }

    static func object<T: Encodable>(_ v: T) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(try encode(v).utf8))
    }

    static func string(_ obj: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self)
    }
}
