// Training views of whole pictures, reproducible from (seed, step) alone.
//
// View v (v = step * batchSize + slot) shows image perm_e[v mod N] of epoch e = v / N, where
// perm_e is a Fisher-Yates shuffle of the N images driven by Philox4x32-10 keyed by the seed
// (counter = position, epoch, "PERM"). The view's own random numbers come from the same Philox
// key with counter = (v, "VIEW", block). So the sampler's whole state is (seed, step): a trainer
// that saves them resumes exactly, on any thread count.
//
// A view is either the whole picture squashed to S x S (what the codec sees), with probability
// `wholeFraction`, or a random-resized crop: area fraction in [minArea, maxArea] of the picture,
// aspect ratio (crop width / crop height) log-uniform in [1/maxAspect, maxAspect], squashed to
// S x S. Then a horizontal flip with probability `flipProbability`, then colour jitter: brightness,
// contrast (around the view's mean grey) and saturation (around each pixel's grey), factors
// uniform in [1 - j, 1 + j]. Output: planar [3, S, S] floats, x = p / 127.5 - 1.
//
// Resampling is separable and antialiased: a triangle filter whose support grows with the
// shrink factor (area-like; bilinear when enlarging), over a continuous source window, with
// integer weights summing to 2^14 per output pixel, so a constant picture gives an exactly
// constant view. The vertical pass runs first over contiguous bytes (vectorizes), the horizontal
// pass second over S columns.

import Foundation
import RepTokTensor

public struct ViewConfig: Equatable, Sendable {
    /// Output side S.
    public var size: Int
    /// Share of views that are the whole picture squashed to S x S.
    public var wholeFraction: Double
    /// Crop area as a fraction of the picture's area.
    public var minArea: Double
    public var maxArea: Double
    /// Crop aspect ratio (width / height) is log-uniform in [1 / maxAspect, maxAspect]
    /// (16/9 by default; 4/3 gives torchvision's RandomResizedCrop range).
    public var maxAspect: Double
    public var flipProbability: Double
    /// Colour jitter amplitudes: factors uniform in [1 - a, 1 + a]; 0 turns one off.
    public var brightness: Double
    public var contrast: Double
    public var saturation: Double
    /// Whether whole-picture views get the flip and colour jitter too (crops always do).
    public var augmentWhole: Bool

    public init(size: Int = 128, wholeFraction: Double = 0.25, minArea: Double = 0.35, maxArea: Double = 1.0,
                maxAspect: Double = 16.0 / 9.0, flipProbability: Double = 0.5, brightness: Double = 0.1,
                contrast: Double = 0.1, saturation: Double = 0.1, augmentWhole: Bool = true) {
        self.size = size; self.wholeFraction = wholeFraction; self.minArea = minArea; self.maxArea = maxArea
        self.maxAspect = maxAspect; self.flipProbability = flipProbability; self.brightness = brightness
        self.contrast = contrast; self.saturation = saturation; self.augmentWhole = augmentWhole
    }

    public func validate() throws {
        func check(_ ok: Bool, _ m: String) throws { if !ok { throw ViewSamplerError.config(m) } }
        try check(size >= 1 && size <= 4096, "size \(size) must be 1...4096")
        try check((0...1).contains(wholeFraction), "wholeFraction must be in [0, 1]")
        try check(minArea > 0 && minArea <= maxArea && maxArea <= 1, "need 0 < minArea <= maxArea <= 1")
        try check(maxAspect >= 1 && maxAspect.isFinite, "maxAspect must be >= 1")
        try check((0...1).contains(flipProbability), "flipProbability must be in [0, 1]")
        for (n, v) in [("brightness", brightness), ("contrast", contrast), ("saturation", saturation)] {
            try check(v >= 0 && v < 1, "\(n) jitter must be in [0, 1)")
        }
    }
}

public enum ViewSamplerError: Error, Equatable, CustomStringConvertible {
    case config(String)
    case emptyDataset
    case shape(String)
    public var description: String {
        switch self {
        case .config(let m): return "view sampler: \(m)"
        case .emptyDataset: return "view sampler: the dataset has no images"
        case .shape(let m): return "view sampler: \(m)"
        }
    }
}

/// Everything that defines one view.
public struct ViewParams: Equatable, Sendable {
    public var image: Int
    public var whole: Bool
    /// Source window in pixels (continuous coordinates: the picture spans [0, W] x [0, H]).
    public var cropX: Double, cropY: Double, cropWidth: Double, cropHeight: Double
    public var flip: Bool
    /// Jitter factors (1 = unchanged).
    public var brightness: Float, contrast: Float, saturation: Float

    public init(image: Int, whole: Bool, cropX: Double, cropY: Double, cropWidth: Double, cropHeight: Double,
                flip: Bool = false, brightness: Float = 1, contrast: Float = 1, saturation: Float = 1) {
        self.image = image; self.whole = whole; self.cropX = cropX; self.cropY = cropY
        self.cropWidth = cropWidth; self.cropHeight = cropHeight; self.flip = flip
        self.brightness = brightness; self.contrast = contrast; self.saturation = saturation
    }

    /// The codec's view: the whole picture squashed, no flip, no jitter.
    public static func whole(image: Int, width: Int, height: Int) -> ViewParams {
        ViewParams(image: image, whole: true, cropX: 0, cropY: 0, cropWidth: Double(width), cropHeight: Double(height))
    }
}

/// Produces training views into preallocated [B, 3, S, S] float buffers. Not safe to call from
/// several threads at once (it caches the current epoch's permutation); `batch` itself renders
/// the views of a batch in parallel (Engine.parallelFor), with results independent of the
/// thread count.
public final class ViewSampler {
    public let dataset: PackedDataset
    public let config: ViewConfig
    public let batchSize: Int
    public let seed: UInt64
    /// The next step `next(into:)` renders. The sampler's whole state is (seed, step).
    public var step: Int

    private let philox: Philox4x32
    private var permEpoch = -1
    private var perm: [Int32] = []

    static let tagPerm: UInt32 = 0x5045_524D   // "PERM"
    static let tagView: UInt32 = 0x5649_4557   // "VIEW"

    public init(dataset: PackedDataset, config: ViewConfig = ViewConfig(), batchSize: Int, seed: UInt64, step: Int = 0) throws {
        try config.validate()
        guard dataset.count > 0 else { throw ViewSamplerError.emptyDataset }
        guard batchSize >= 1 else { throw ViewSamplerError.config("batch size must be >= 1") }
        guard step >= 0 else { throw ViewSamplerError.config("step must be >= 0") }
        self.dataset = dataset; self.config = config; self.batchSize = batchSize
        self.seed = seed; self.step = step
        philox = Philox4x32(seed: seed)
    }

    public var size: Int { config.size }
    /// Floats per view (3 * S * S) and per batch.
    public var viewFloats: Int { 3 * config.size * config.size }
    public var batchFloats: Int { batchSize * viewFloats }

    // MARK: randomness

    @inline(__always) static func unit(_ u: UInt32) -> Double { (Double(u) + 0.5) * (1.0 / 4_294_967_296.0) }

    /// The permutation of epoch `e` (cached for the current epoch).
    private func permutation(_ e: Int) -> [Int32] {
        if e == permEpoch { return perm }
        let n = dataset.count
        var p = (0..<n).map { Int32($0) }
        let e64 = UInt64(e)
        for i in stride(from: n - 1, to: 0, by: -1) {
            let b = philox.block(UInt32(truncatingIfNeeded: i), UInt32(truncatingIfNeeded: e64),
                                 ViewSampler.tagPerm, UInt32(truncatingIfNeeded: e64 >> 32))
            let r = (UInt64(b.0) << 32) | UInt64(b.1)
            let j = Int(r % UInt64(i + 1))
            p.swapAt(i, j)
        }
        perm = p; permEpoch = e
        return p
    }

    /// The image of view `v` (v = step * batchSize + slot).
    public func imageIndex(view v: Int) -> Int {
        precondition(v >= 0, "view index must be >= 0")
        let n = dataset.count
        return Int(permutation(v / n)[v % n])
    }

    /// The parameters of view `v`.
    public func params(view v: Int) -> ViewParams {
        let img = imageIndex(view: v)
        let W = Double(dataset.width(img)), H = Double(dataset.height(img))
        let v64 = UInt64(v)
        var u = [Double]()
        u.reserveCapacity(12)
        for blk in 0..<3 {
            let b = philox.block(UInt32(truncatingIfNeeded: v64), UInt32(truncatingIfNeeded: v64 >> 32),
                                 ViewSampler.tagView, UInt32(blk))
            u += [ViewSampler.unit(b.0), ViewSampler.unit(b.1), ViewSampler.unit(b.2), ViewSampler.unit(b.3)]
        }
        let c = config
        var p = ViewParams.whole(image: img, width: Int(W), height: Int(H))
        if u[0] >= c.wholeFraction {
            p.whole = false
            let la = log(c.maxAspect)
            let r = exp(-la + 2 * la * u[1])
            let area = (c.minArea + (c.maxArea - c.minArea) * u[2]) * W * H
            var w = (area * r).squareRoot(), h = (area / r).squareRoot()
            let shrink = min(1, W / w, H / h)   // keep the aspect; the largest such crop if too big
            w = min(w * shrink, W); h = min(h * shrink, H)
            p.cropWidth = w; p.cropHeight = h
            p.cropX = max(0, W - w) * u[3]; p.cropY = max(0, H - h) * u[4]
        }
        if !p.whole || c.augmentWhole {
            p.flip = u[5] < c.flipProbability
            p.brightness = Float(1 + c.brightness * (2 * u[6] - 1))
            p.contrast = Float(1 + c.contrast * (2 * u[7] - 1))
            p.saturation = Float(1 + c.saturation * (2 * u[8] - 1))
        }
        return p
    }

    // MARK: rendering

    /// Renders view `v` into `out` (3 * S * S floats).
    @discardableResult
    public func renderView(_ v: Int, into out: UnsafeMutablePointer<Float>) -> ViewParams {
        let p = params(view: v)
        ViewSampler.render(dataset.pixels(p.image), width: dataset.width(p.image), height: dataset.height(p.image),
                           params: p, size: config.size, into: out)
        return p
    }

    /// Renders the batch of step `s` into `out` ([B, 3, S, S] floats) and, if given, the class ids
    /// into `classes` (B values). Does not change `step`.
    @discardableResult
    public func batch(step s: Int, into out: UnsafeMutablePointer<Float>, classes: UnsafeMutablePointer<Int32>? = nil) -> [ViewParams] {
        precondition(s >= 0)
        let B = batchSize, S = config.size, per = viewFloats
        let ps = (0..<B).map { params(view: s * B + $0) }   // serial: uses the permutation cache
        let ds = dataset
        Engine.parallelFor(B) { b in
            let p = ps[b]
            ViewSampler.render(ds.pixels(p.image), width: ds.width(p.image), height: ds.height(p.image),
                               params: p, size: S, into: out + b * per)
        }
        if let classes { for b in 0..<B { classes[b] = Int32(dataset.classID(ps[b].image)) } }
        return ps
    }

    /// Renders the batch of the current step and advances `step`.
    @discardableResult
    public func next(into out: UnsafeMutablePointer<Float>, classes: UnsafeMutablePointer<Int32>? = nil) -> [ViewParams] {
        let ps = batch(step: step, into: out, classes: classes)
        step += 1
        return ps
    }

    /// Renders the batch of the current step into a [B, 3, S, S] tensor, advances `step`, and
    /// returns the class ids.
    @discardableResult
    public func next(into t: Tensor) throws -> [Int] {
        let S = config.size
        guard t.shape == [batchSize, 3, S, S] else {
            throw ViewSamplerError.shape("tensor is \(t.shape), expected [\(batchSize), 3, \(S), \(S)]")
        }
        let ps = next(into: t.data)
        return ps.map { dataset.classID($0.image) }
    }

    /// The codec's view of image `i` (whole picture squashed to S x S, no augmentation).
    public static func renderWhole(_ ds: PackedDataset, image i: Int, size S: Int, into out: UnsafeMutablePointer<Float>) {
        render(ds.pixels(i), width: ds.width(i), height: ds.height(i),
               params: .whole(image: i, width: ds.width(i), height: ds.height(i)), size: S, into: out)
    }

    /// Renders one view of an RGB8 picture (height x width x 3 bytes) into `out`: planar
    /// [3, S, S] floats in [-1, 1]. Pure: safe to call from several threads.
    public static func render(_ pixels: UnsafeBufferPointer<UInt8>, width W: Int, height H: Int,
                              params p: ViewParams, size S: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(W >= 1 && H >= 1 && S >= 1 && pixels.count >= W * H * 3, "bad picture")
        precondition(p.cropX.isFinite && p.cropY.isFinite && p.cropWidth > 0 && p.cropHeight > 0
                     && p.cropWidth.isFinite && p.cropHeight.isFinite, "bad crop")
        // Clamp the window into the picture (tolerates rounding in callers' arithmetic).
        let cx = min(max(0, p.cropX), Double(W)), cy = min(max(0, p.cropY), Double(H))
        let cw = max(min(p.cropWidth, Double(W) - cx), 1e-6), ch = max(min(p.cropHeight, Double(H) - cy), 1e-6)
        let xw = AxisWeights(source: W, start: cx, length: cw, outSize: S)
        let yw = AxisWeights(source: H, start: cy, length: ch, outSize: S)
        let x0 = xw.lo, nc = xw.hi - xw.lo
        let rowLen = nc * 3
        let row = UnsafeMutablePointer<Float>.allocate(capacity: rowLen + 4)   // slack for the 4-float loads
        row.update(repeating: 0, count: rowLen + 4)
        defer { row.deallocate() }
        let plane = S * S
        let scale: Float = 1.0 / Float(1 << 28)
        let scaleB = scale * p.brightness
        let brightUp = p.brightness > 1
        let direct = p.contrast == 1 && p.saturation == 1
        var lumaSum = 0.0
        let xstart3 = xw.start.map { ($0 - x0) * 3 }
        let xcount = xw.count
        let src = pixels.baseAddress!
        let rowStride = W * 3
        xw.weights.withUnsafeBufferPointer { xwp in
            yw.weights.withUnsafeBufferPointer { ywp in
                for o in 0..<S {
                    // vertical: row[e] = sum_k wy_k * pixel[y_k][x0 + e / 3][e % 3]; every partial
                    // sum is an integer below 255 * 2^14 < 2^24, so exact in Float
                    let yn = yw.count[o]
                    let wy = ywp.baseAddress! + o * yw.stride
                    let base = src + (yw.start[o] * W + x0) * 3
                    // four taps per pass over the row: the loops auto-vectorize
                    var k = 0
                    while k < yn {
                        let n = min(4, yn - k)
                        let s0 = base + k * rowStride
                        let w0 = wy[k]
                        switch n {
                        case 4:
                            let s1 = s0 + rowStride, s2 = s1 + rowStride, s3 = s2 + rowStride
                            let w1 = wy[k + 1], w2 = wy[k + 2], w3 = wy[k + 3]
                            if k == 0 {
                                for e in 0..<rowLen { row[e] = w0 * Float(s0[e]) + w1 * Float(s1[e]) + w2 * Float(s2[e]) + w3 * Float(s3[e]) }
                            } else {
                                for e in 0..<rowLen { row[e] += w0 * Float(s0[e]) + w1 * Float(s1[e]) + w2 * Float(s2[e]) + w3 * Float(s3[e]) }
                            }
                        case 3:
                            let s1 = s0 + rowStride, s2 = s1 + rowStride
                            let w1 = wy[k + 1], w2 = wy[k + 2]
                            if k == 0 {
                                for e in 0..<rowLen { row[e] = w0 * Float(s0[e]) + w1 * Float(s1[e]) + w2 * Float(s2[e]) }
                            } else {
                                for e in 0..<rowLen { row[e] += w0 * Float(s0[e]) + w1 * Float(s1[e]) + w2 * Float(s2[e]) }
                            }
                        case 2:
                            let s1 = s0 + rowStride
                            let w1 = wy[k + 1]
                            if k == 0 {
                                for e in 0..<rowLen { row[e] = w0 * Float(s0[e]) + w1 * Float(s1[e]) }
                            } else {
                                for e in 0..<rowLen { row[e] += w0 * Float(s0[e]) + w1 * Float(s1[e]) }
                            }
                        default:
                            if k == 0 {
                                for e in 0..<rowLen { row[e] = w0 * Float(s0[e]) }
                            } else {
                                for e in 0..<rowLen { row[e] += w0 * Float(s0[e]) }
                            }
                        }
                        k += n
                    }
                    // horizontal: one 4-float load (R G B + the next R) per tap; brightness and
                    // (without contrast/saturation jitter) the [-1, 1] scaling fused in the store
                    var lumaRow: Float = 0
                    for i in 0..<S {
                        let j = p.flip ? S &- 1 &- i : i
                        let xn = xcount[j]
                        let wp = xwp.baseAddress! + j &* xw.stride
                        var q = UnsafeRawPointer(row + xstart3[j])
                        var acc = SIMD4<Float>(repeating: 0)
                        for k in 0..<xn {
                            acc += wp[k] * q.loadUnaligned(as: SIMD4<Float>.self)
                            q += 12
                        }
                        var v = acc * scaleB
                        if brightUp { v = v.replacing(with: 255, where: v .> 255) }
                        let at = o &* S &+ i
                        if direct {
                            out[at] = v.x / 127.5 - 1
                            out[plane &+ at] = v.y / 127.5 - 1
                            out[2 &* plane &+ at] = v.z / 127.5 - 1
                        } else {
                            out[at] = v.x; out[plane &+ at] = v.y; out[2 &* plane &+ at] = v.z
                            lumaRow += 0.299 * v.x + 0.587 * v.y + 0.114 * v.z
                        }
                    }
                    lumaSum += Double(lumaRow)
                }
            }
        }
        if !direct {
            contrastSaturationNormalize(out, count: plane, mean: Float(lumaSum / Double(plane)),
                                        contrast: p.contrast, saturation: p.saturation)
        }
    }

    /// Contrast (around the view's mean grey `mean`), then saturation (around each pixel's grey),
    /// clamping to [0, 255] after each, then x / 127.5 - 1. Brightness was applied before.
    static func contrastSaturationNormalize(_ out: UnsafeMutablePointer<Float>, count n: Int, mean m: Float,
                                            contrast c: Float, saturation s: Float) {
        @inline(__always) func clamp(_ v: Float) -> Float { min(255, max(0, v)) }
        for i in 0..<n {
            var r = out[i], g = out[n &+ i], b = out[2 &* n &+ i]
            if c != 1 { r = clamp((r - m) * c + m); g = clamp((g - m) * c + m); b = clamp((b - m) * c + m) }
            if s != 1 {
                let l = 0.299 * r + 0.587 * g + 0.114 * b
                r = clamp((r - l) * s + l); g = clamp((g - l) * s + l); b = clamp((b - l) * s + l)
            }
            out[i] = r / 127.5 - 1; out[n &+ i] = g / 127.5 - 1; out[2 &* n &+ i] = b / 127.5 - 1
        }
    }
}

/// Resampling weights along one axis: output pixel i averages source pixels
/// start[i] ..< start[i] + count[i] with integer weights summing to 2^14.
struct AxisWeights {
    static let one: Int32 = 1 << 14
    var start: [Int]
    var count: [Int]
    /// Integer weights (as exact Float values), `stride` per output pixel.
    var weights: [Float]
    var stride: Int
    /// Source range touched by any output pixel.
    var lo: Int, hi: Int

    init(source n: Int, start a: Double, length L: Double, outSize S: Int) {
        let scale = L / Double(S)
        let support = max(scale, 1.0)     // triangle half-width in source pixels
        stride = Int(2 * support) + 3
        start = [Int](repeating: 0, count: S)
        count = [Int](repeating: 0, count: S)
        weights = [Float](repeating: 0, count: S * stride)
        lo = n; hi = 0
        var w = [Double](repeating: 0, count: stride)
        var q = [Int32](repeating: 0, count: stride)
        for i in 0..<S {
            let c = a + (Double(i) + 0.5) * scale
            var j0 = max(0, Int((c - support - 0.5).rounded(.down)))
            var j1 = min(n - 1, Int((c + support - 0.5).rounded(.up)))
            if j1 - j0 + 1 > stride { j1 = j0 + stride - 1 }
            var sum = 0.0
            for j in j0...j1 {
                let t = abs(Double(j) + 0.5 - c) / support
                w[j - j0] = max(0, 1 - t)
                sum += w[j - j0]
            }
            if sum <= 0 {   // cannot happen for a window inside the picture; nearest pixel then
                let j = min(n - 1, max(0, Int(c)))
                j0 = j; j1 = j; w[0] = 1; sum = 1
            }
            // quantize to integers summing to exactly 2^14
            let taps = j1 - j0 + 1
            var total: Int32 = 0, big = 0
            let norm = Double(AxisWeights.one) / sum
            for k in 0..<taps {
                q[k] = Int32(w[k] * norm + 0.5)   // w >= 0: truncation rounds
                total += q[k]
                if q[k] > q[big] { big = k }
            }
            q[big] += AxisWeights.one - total
            // trim zero taps at both ends
            var f = 0, l = taps - 1
            while f < l && q[f] == 0 { f += 1 }
            while l > f && q[l] == 0 { l -= 1 }
            start[i] = j0 + f
            count[i] = l - f + 1
            for k in 0..<(l - f + 1) { weights[i * stride + k] = Float(q[f + k]) }
            lo = min(lo, start[i]); hi = max(hi, start[i] + count[i])
        }
    }
}
