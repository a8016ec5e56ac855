import Foundation
import RepTokImage
import RepTokTensor

/// Settings of the DINO multi-crop augmentation (defaults: DINO's, at our resolutions).
public struct SSLAugmentConfig: Codable, Equatable, Sendable {
    /// Global crops: side (= the model resolution) and area fraction range.
    public var globalSize = 128
    public var globalScale: [Double] = [0.32, 1]
    /// Local crops: count, side, area fraction range.
    public var localCrops = 4
    public var localSize = 64
    public var localScale: [Double] = [0.05, 0.32]
    /// Crop aspect ratios are log-uniform in [1/maxAspect, maxAspect] (then squashed square).
    public var maxAspect = 16.0 / 9.0
    /// Colour jitter (applied with probability jitterProb): factors in [1 - x, 1 + x]; hue shift
    /// in [-hue, hue] turns of the YIQ chroma plane.
    public var jitterProb = 0.8
    public var brightness = 0.4
    public var contrast = 0.4
    public var saturation = 0.2
    public var hue = 0.1
    public var greyProb = 0.2
    /// Gaussian blur probability for global crop 1, global crop 2 and local crops (DINO: 1.0,
    /// 0.1, 0.5); sigma uniform in [0.1, 2] x side / 224 (DINO's range at 224 px).
    public var blurProb: [Double] = [1.0, 0.1, 0.5]
    /// Solarization probability of global crop 2 (DINO: 0.2).
    public var solarizeProb = 0.2

    public init() {}

    enum CodingKeys: String, CodingKey {
        case globalSize = "global_size", globalScale = "global_scale", localCrops = "local_crops"
        case localSize = "local_size", localScale = "local_scale", maxAspect = "max_aspect"
        case jitterProb = "jitter_prob", brightness, contrast, saturation, hue, greyProb = "grey_prob"
        case blurProb = "blur_prob", solarizeProb = "solarize_prob"
    }

    public func validate() throws {
        func bad(_ s: String) -> SSLError { .config(s) }
        guard globalSize >= 8, localSize >= 8, localCrops >= 0, localCrops <= 32 else { throw bad("crop sizes/count") }
        for (n, r) in [("global", globalScale), ("local", localScale)] {
            guard r.count == 2, r[0] > 0, r[0] <= r[1], r[1] <= 1 else { throw bad("\(n) scale \(r) must be 0 < lo <= hi <= 1") }
        }
        guard maxAspect >= 1, maxAspect.isFinite else { throw bad("max aspect \(maxAspect)") }
        guard blurProb.count == 3 else { throw bad("blur_prob needs 3 values") }
        for p in [jitterProb, greyProb, solarizeProb] + blurProb where !(0...1).contains(p) {
            throw bad("probabilities must be in [0, 1]")
        }
        for j in [brightness, contrast, saturation] where !(0..<1).contains(j) { throw bad("jitter strengths must be in [0, 1)") }
        guard (0...0.5).contains(hue) else { throw bad("hue must be in [0, 0.5]") }
    }
}

/// A crop box in source pixel coordinates.
public struct CropBox: Equatable, Sendable {
    public var x: Double, y: Double, w: Double, h: Double
    public init(x: Double, y: Double, w: Double, h: Double) { self.x = x; self.y = y; self.w = w; self.h = h }
}

/// DINO multi-crop views of whole pictures, deterministic in (seed, step): 2 global crops at the
/// model resolution and L local crops, each a random-resized crop (area and aspect ranges from
/// the config, squashed to a square, area-filter resampling), flipped with p = 1/2, colour
/// jittered, greyed, blurred and (global 2) solarized as in DINO. Pixels in [0, 255].
public final class SSLMultiCrop {
    public let pictures: [RGBImage]
    public let aug: SSLAugmentConfig
    let seed: UInt64
    private var permEpoch = -1
    private var perm: [Int] = []
    /// Uniform draws reserved per (sample, crop).
    static let drawsPerCrop = 64

    /// `pictures` should already be shrunk (see `SSLMultiCrop.shrink`).
    public init(pictures: [RGBImage], aug: SSLAugmentConfig, seed: UInt64) {
        precondition(!pictures.isEmpty, "SSLMultiCrop: no pictures")
        self.pictures = pictures; self.aug = aug; self.seed = seed
    }

    /// Shrinks a picture (area filter, aspect kept) so its long side is at most `longSide`.
    public static func shrink(_ p: RGBImage, longSide cap: Int) -> RGBImage {
        let long = max(p.width, p.height)
        guard long > cap else { return p }
        let w = max(1, Int((Double(p.width) * Double(cap) / Double(long)).rounded()))
        let h = max(1, Int((Double(p.height) * Double(cap) / Double(long)).rounded()))
        return Resample.resize(p, width: w, height: h, filter: .area)
    }

    /// Picture of batch slot `b` at step `step`: a fresh permutation every epoch, keyed by (seed, epoch).
    public func pictureIndex(step: Int, batch B: Int, slot b: Int) -> Int {
        let n = pictures.count
        let k = step * B + b, epoch = k / n
        if epoch != permEpoch {
            let ph = Philox4x32(seed: SplitMix64.mix(seed ^ 0x55_4C_50_45_52_4D, UInt64(epoch)))
            let u = ph.uniforms(stream: 0, count: n)
            var p = Array(0..<n)
            for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, min(i, Int(u[i] * Double(i + 1)))) }
            perm = p; permEpoch = epoch
        }
        return perm[k % n]
    }

    /// The crops of step `step`: globals [2B, 3, Sg, Sg] and locals [L*B, 3, Sl, Sl] (nil when
    /// L = 0), both view-major (row v*B + b is crop v of sample b).
    public func batch(step: Int, size B: Int) -> (globals: Tensor, locals: Tensor?) {
        let L = aug.localCrops, V = 2 + L
        let Sg = aug.globalSize, Sl = aug.localSize
        let globals = Tensor(uninitialized: [2 * B, 3, Sg, Sg])
        let locals = L > 0 ? Tensor(uninitialized: [L * B, 3, Sl, Sl]) : nil
        let ph = Philox4x32(seed: SplitMix64.mix(seed ^ 0x55_4C_56_49_45_57, UInt64(step)))
        let index = (0..<B).map { pictureIndex(step: step, batch: B, slot: $0) }
        // samples are independent (own pixels, own draws): render them on the engine's threads
        let gp = globals.data, lp = locals?.data
        Engine.parallelFor(B) { b in
            let pic = pictures[index[b]]
            let planes = pic.planarFloats(scale: 1, offset: 0)
            for v in 0..<V {
                let u = ph.uniforms(stream: 0, start: (b * V + v) * Self.drawsPerCrop, count: Self.drawsPerCrop)
                var r = Draws(u)
                let isGlobal = v < 2
                let S = isGlobal ? Sg : Sl
                let dst = isGlobal ? gp + (v * B + b) * 3 * S * S : lp! + ((v - 2) * B + b) * 3 * S * S
                let box = Self.randomBox(width: pic.width, height: pic.height, scale: isGlobal ? aug.globalScale : aug.localScale,
                                         maxAspect: aug.maxAspect, &r)
                Self.render(planes, pic.width, pic.height, box, size: S, into: dst)
                let blurP = isGlobal ? aug.blurProb[v] : aug.blurProb[2]
                Self.photometric(dst, size: S, aug: aug, blurProb: blurP, solarizeProb: v == 1 ? aug.solarizeProb : 0, &r)
            }
        }
        return (globals, locals)
    }

    // MARK: - Pieces (also used by the retrieval eval)

    /// Sequential reader over a fixed block of uniforms.
    struct Draws {
        let u: [Double]
        var i = 0
        init(_ u: [Double]) { self.u = u }
        mutating func next() -> Double {
            precondition(i < u.count, "SSLMultiCrop: out of reserved random draws")
            defer { i += 1 }
            return u[i]
        }
    }

    /// torchvision RandomResizedCrop's box: up to 10 tries of (area fraction, log-aspect) that
    /// fit; otherwise the largest centred box of the clamped aspect.
    static func randomBox(width: Int, height: Int, scale: [Double], maxAspect: Double, _ r: inout Draws) -> CropBox {
        let W = Double(width), H = Double(height), area = W * H
        let la = log(maxAspect)
        for _ in 0..<10 {
            let a = area * (scale[0] + (scale[1] - scale[0]) * r.next())
            let ar = exp(-la + 2 * la * r.next())
            let w = (a * ar).squareRoot(), h = (a / ar).squareRoot()
            let ux = r.next(), uy = r.next()
            if w <= W && h <= H && w >= 1 && h >= 1 {
                return CropBox(x: (W - w) * ux, y: (H - h) * uy, w: w, h: h)
            }
        }
        // fallback: whole picture, aspect clamped to the range, centred
        let ar = W / H
        if ar > maxAspect { let w = H * maxAspect; return CropBox(x: (W - w) / 2, y: 0, w: w, h: H) }
        if ar < 1 / maxAspect { let h = W * maxAspect; return CropBox(x: 0, y: (H - h) / 2, w: W, h: h) }
        return CropBox(x: 0, y: 0, w: W, h: H)
    }

    /// Resamples `box` of planar [3, h, w] floats to [3, S, S] at `dst` (area filter).
    static func render(_ planes: [Float], _ w: Int, _ h: Int, _ box: CropBox, size S: Int, into dst: UnsafeMutablePointer<Float>) {
        planes.withUnsafeBufferPointer { src in
            Resample.resizeCropPlanar(src, srcW: w, srcH: h, cropX: box.x, cropY: box.y, cropW: box.w, cropH: box.h,
                                      dstW: S, dstH: S, filter: .area,
                                      into: UnsafeMutableBufferPointer(start: dst, count: 3 * S * S))
        }
    }

    /// Flip, colour jitter, greyscale, blur, solarize (in this order), consuming draws.
    static func photometric(_ p: UnsafeMutablePointer<Float>, size S: Int, aug: SSLAugmentConfig,
                            blurProb: Double, solarizeProb: Double, _ r: inout Draws) {
        let n = S * S
        if r.next() < 0.5 { flip(p, S) }
        let doJitter = r.next() < aug.jitterProb
        let fb = 1 + aug.brightness * (2 * r.next() - 1), fc = 1 + aug.contrast * (2 * r.next() - 1)
        let fs = 1 + aug.saturation * (2 * r.next() - 1), fh = aug.hue * (2 * r.next() - 1)
        if doJitter { colourJitter(p, n, brightness: Float(fb), contrast: Float(fc), saturation: Float(fs), hue: Float(fh)) }
        if r.next() < aug.greyProb { grey(p, n) }
        let doBlur = r.next() < blurProb
        let sigma = (0.1 + 1.9 * r.next()) * Double(S) / 224
        if doBlur { gaussianBlur(p, S, sigma: Float(sigma)) }
        if r.next() < solarizeProb { for i in 0..<(3 * n) where p[i] >= 128 { p[i] = 255 - p[i] } }
    }

    static func flip(_ p: UnsafeMutablePointer<Float>, _ S: Int) {
        for c in 0..<3 {
            for y in 0..<S {
                let row = p + (c * S + y) * S
                var a = 0, z = S - 1
                while a < z { let t = row[a]; row[a] = row[z]; row[z] = t; a += 1; z -= 1 }
            }
        }
    }

    /// Brightness (scale), contrast (blend with the mean grey), saturation (blend with each
    /// pixel's grey), hue (rotation of the YIQ chroma plane by `hue` turns); clamped to [0, 255].
    static func colourJitter(_ p: UnsafeMutablePointer<Float>, _ n: Int, brightness: Float, contrast: Float,
                             saturation: Float, hue: Float) {
        for i in 0..<(3 * n) { p[i] = min(255, max(0, p[i] * brightness)) }
        var mg = 0.0
        for i in 0..<n { mg += Double(0.299 * p[i] + 0.587 * p[n + i] + 0.114 * p[2 * n + i]) }
        let m = Float(mg / Double(n))
        for i in 0..<(3 * n) { p[i] = min(255, max(0, (p[i] - m) * contrast + m)) }
        let ch = cos(2 * Float.pi * hue), sh = sin(2 * Float.pi * hue)
        for i in 0..<n {
            var r = p[i], g = p[n + i], b = p[2 * n + i]
            let grey = 0.299 * r + 0.587 * g + 0.114 * b
            r = grey + (r - grey) * saturation; g = grey + (g - grey) * saturation; b = grey + (b - grey) * saturation
            if hue != 0 {
                let y = 0.299 * r + 0.587 * g + 0.114 * b
                let ci = 0.596 * r - 0.274 * g - 0.322 * b, cq = 0.211 * r - 0.523 * g + 0.312 * b
                let i2 = ci * ch - cq * sh, q2 = ci * sh + cq * ch
                r = y + 0.956 * i2 + 0.621 * q2; g = y - 0.272 * i2 - 0.647 * q2; b = y - 1.106 * i2 + 1.703 * q2
            }
            p[i] = min(255, max(0, r)); p[n + i] = min(255, max(0, g)); p[2 * n + i] = min(255, max(0, b))
        }
    }

    static func grey(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n {
            let g = 0.299 * p[i] + 0.587 * p[n + i] + 0.114 * p[2 * n + i]
            p[i] = g; p[n + i] = g; p[2 * n + i] = g
        }
    }

    /// Separable Gaussian blur (radius ceil(3 sigma), borders clamped).
    static func gaussianBlur(_ p: UnsafeMutablePointer<Float>, _ S: Int, sigma: Float) {
        let rad = max(1, Int((3 * sigma).rounded(.up)))
        var k = [Float](repeating: 0, count: 2 * rad + 1)
        var s: Float = 0
        for i in -rad...rad { k[i + rad] = expf(-Float(i * i) / (2 * sigma * sigma)); s += k[i + rad] }
        for i in k.indices { k[i] /= s }
        var tmp = [Float](repeating: 0, count: S * S)
        for c in 0..<3 {
            let plane = p + c * S * S
            for y in 0..<S {
                for x in 0..<S {
                    var a: Float = 0
                    for t in -rad...rad { a += k[t + rad] * plane[y * S + min(S - 1, max(0, x + t))] }
                    tmp[y * S + x] = a
                }
            }
            for y in 0..<S {
                for x in 0..<S {
                    var a: Float = 0
                    for t in -rad...rad { a += k[t + rad] * tmp[min(S - 1, max(0, y + t)) * S + x] }
                    plane[y * S + x] = a
                }
            }
        }
    }
}
