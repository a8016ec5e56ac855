// Full-reference image-quality metrics: PSNR, SSIM and MS-SSIM, matching the reference Python
// implementations that papers report (checked by Tests/EvalTests against values from
// python/scripts/metrics_reference.py).
//
// Conventions, for every caller:
//  - Inputs are 8-bit RGB (`RGBImage`, data range 255) or float planes `[C, H, W]` with an explicit
//    data range. Both inputs must have the same size (and channel count), else `MetricsError`.
//  - All arithmetic is Double. No gamma handling: values are compared as stored (sRGB-encoded).
//  - PSNR: 10 log10(R^2 / MSE), MSE over every sample of every channel (scikit-image's
//    `peak_signal_noise_ratio(a, b, data_range=255)` on HxWx3 arrays). Identical inputs give
//    `+infinity`, no cap, in every tool (the one rule; ImageQuality in Quality.swift): text
//    prints it "inf"; JSON, which has no infinity, writes the value `null` with
//    `"psnr_infinite": true` beside it; a mean over pictures (QualityMean) leaves infinite values
//    out and says over how many pictures it was taken.
//  - SSIM: scikit-image's `structural_similarity(a, b, channel_axis=-1, data_range=255,
//    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`: Gaussian window sigma 1.5
//    truncated at 3.5 sigma (radius int(3.5 * 1.5 + 0.5) = 5, 11 taps, float64 weights),
//    K1 = 0.01, K2 = 0.03, population (co)variances, mean of the SSIM map over the map cropped by
//    (11 - 1) / 2 = 5 pixels on each side, then mean over channels. skimage filters with 'reflect'
//    padding and then crops; the crop removes exactly the pixels whose window reaches into the
//    padding, so the result is the mean over the "valid" positions of an unpadded filter, which
//    is what is computed here (python/scripts/metrics_reference.py checks this equivalence to 1e-12).
//    Needs both sides >= 11 (skimage raises below that).
//  - MS-SSIM: pytorch-msssim's `ms_ssim(X, Y, data_range=255, size_average=True, win_size=11,
//    win_sigma=1.5, K=(0.01, 0.03))` with its default weights (0.0448, 0.2856, 0.3001, 0.2363,
//    0.1333): per scale, valid separable filtering with the 11-tap Gaussian (built as
//    pytorch-msssim builds it, in float32), cs and ssim maps averaged over the valid region; between
//    scales 2x2 average pooling with zero padding of 1 on each side of an odd dimension, counted
//    in the divisor (avg_pool2d(kernel_size=2, padding=[h % 2, w % 2])); relu of cs at scales
//    1...K-1 and of ssim at scale K; per channel the product of relu(.)^weight; mean over channels.
//  - MS-SSIM scale fallback (a reptok choice, not pytorch-msssim's): pytorch-msssim asserts the
//    smaller side is > (11 - 1) * 2^4 = 160. For smaller images this uses the most scales K
//    (1...5) with smaller side > 10 * 2^(K-1), so that the coarsest scale still has a side >= 11,
//    with the first K default weights renormalized to sum to 1, and returns K so callers can
//    print it. With K = 5 the weights are used as pytorch-msssim uses them (they sum to 1.0001,
//    unnormalized). K = 1 is relu(SSIM) per channel. Sides <= 10 throw `.tooSmall`.
//    Values computed with K < 5 are not comparable with 5-scale MS-SSIM from the literature.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RepTokImage

public enum MetricsError: Error, Equatable, CustomStringConvertible {
    /// The two inputs differ in width, height or channel count.
    case sizeMismatch(width1: Int, height1: Int, width2: Int, height2: Int)
    /// A planar buffer does not hold `channels * width * height` values (or channels < 1).
    case badPlanarCount(count: Int, channels: Int, width: Int, height: Int)
    /// The image is too small for the metric: `minimum` is the smallest allowed side.
    case tooSmall(width: Int, height: Int, minimum: Int)
    /// The data range is not finite and positive.
    case badDataRange(Double)

    public var description: String {
        switch self {
        case let .sizeMismatch(w1, h1, w2, h2):
            return "images differ in size: \(w1)x\(h1) vs \(w2)x\(h2)"
        case let .badPlanarCount(count, c, w, h):
            return "planar buffer holds \(count) values, expected \(c) x \(h) x \(w)"
        case let .tooSmall(w, h, minimum):
            return "image \(w)x\(h) is too small: each side must be at least \(minimum)"
        case let .badDataRange(r):
            return "data range \(r) is not finite and positive"
        }
    }
}

public enum Metrics {
    /// Gaussian window of SSIM and MS-SSIM: 11 taps, sigma 1.5.
    public static let windowSize = 11
    public static let windowSigma = 1.5
    public static let k1 = 0.01
    public static let k2 = 0.03
    /// pytorch-msssim's (and Wang et al. 2003's) scale weights, finest scale first.
    public static let msssimWeights: [Double] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]

    /// Number of MS-SSIM scales used for a `width` x `height` image: 5 when the smaller side is
    /// > 160 (pytorch-msssim's requirement), else the most K with smaller side > 10 * 2^(K-1);
    /// 0 when the smaller side is <= 10 (no MS-SSIM).
    public static func msssimScales(width: Int, height: Int) -> Int {
        let side = min(width, height)
        var k = 0
        while k < msssimWeights.count && side > (windowSize - 1) << k { k += 1 }
        return k
    }

    /// The weights used with `scales` scales: the default five for 5, else the first `scales`
    /// renormalized to sum to 1.
    public static func msssimWeights(scales: Int) -> [Double] {
        precondition(scales >= 1 && scales <= msssimWeights.count, "msssimWeights: scales \(scales)")
        if scales == msssimWeights.count { return msssimWeights }
        let w = Array(msssimWeights[0..<scales])
        let sum = w.reduce(0, +)
        return w.map { $0 / sum }
    }

    // MARK: - RGBImage (8-bit, data range 255)

    /// Mean squared error over all samples of all three channels.
    public static func mse(_ a: RGBImage, _ b: RGBImage) throws -> Double {
        try checkSame(a, b, minimumSide: 1)
        let s = sumSquaredDifferences(a, b)
        return Double(s.0 + s.1 + s.2) / Double(a.width * a.height * 3)
    }

    /// PSNR in dB over all three channels (data range 255); `+infinity` for identical images.
    public static func psnr(_ a: RGBImage, _ b: RGBImage) throws -> Double {
        try psnr(mse: mse(a, b), dataRange: 255)
    }

    /// PSNR in dB of each channel separately, [R, G, B]; `+infinity` for an identical channel.
    public static func psnrPerChannel(_ a: RGBImage, _ b: RGBImage) throws -> [Double] {
        try checkSame(a, b, minimumSide: 1)
        let s = sumSquaredDifferences(a, b)
        let n = Double(a.width * a.height)
        return try [s.0, s.1, s.2].map { try psnr(mse: Double($0) / n, dataRange: 255) }
    }

    /// SSIM (scikit-image conventions, see the file header), mean over the three channels.
    public static func ssim(_ a: RGBImage, _ b: RGBImage) throws -> Double {
        let v = try ssimPerChannel(a, b)
        return v.reduce(0, +) / Double(v.count)
    }

    /// SSIM of each channel, [R, G, B].
    public static func ssimPerChannel(_ a: RGBImage, _ b: RGBImage) throws -> [Double] {
        try checkSame(a, b, minimumSide: windowSize)
        return SSIMEngine.ssimPerChannel(width: a.width, height: a.height, channels: 3, dataRange: 255,
                                         load: rgbLoader(a, b))
    }

    /// MS-SSIM (pytorch-msssim conventions and the scale fallback, see the file header) and the
    /// number of scales it used (5 unless the smaller side is <= 160).
    public static func msssim(_ a: RGBImage, _ b: RGBImage) throws -> (value: Double, scales: Int) {
        try checkSame(a, b, minimumSide: windowSize)
        return SSIMEngine.msssim(width: a.width, height: a.height, channels: 3, dataRange: 255,
                                 load: rgbLoader(a, b))
    }

    // MARK: - Float planes [channels, height, width] with an explicit data range

    /// PSNR over all samples of two planar buffers; `dataRange` is the peak (255 for 0...255,
    /// 2 for the networks' -1...1).
    public static func psnr(planarA a: [Float], planarB b: [Float], width: Int, height: Int,
                            channels: Int = 3, dataRange: Double) throws -> Double {
        try checkPlanar(a, b, width: width, height: height, channels: channels, minimumSide: 1)
        var sum = 0.0
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                for i in 0..<pa.count {
                    let d = Double(pa[i]) - Double(pb[i])
                    sum += d * d
                }
            }
        }
        return try psnr(mse: sum / Double(a.count), dataRange: dataRange)
    }

    /// SSIM of two planar buffers, mean over channels.
    public static func ssim(planarA a: [Float], planarB b: [Float], width: Int, height: Int,
                            channels: Int = 3, dataRange: Double) throws -> Double {
        try checkPlanar(a, b, width: width, height: height, channels: channels, minimumSide: windowSize)
        try checkRange(dataRange)
        let v = SSIMEngine.ssimPerChannel(width: width, height: height, channels: channels, dataRange: dataRange,
                                          load: planarLoader(a, b, plane: width * height))
        return v.reduce(0, +) / Double(v.count)
    }

    /// MS-SSIM of two planar buffers and the number of scales used.
    public static func msssim(planarA a: [Float], planarB b: [Float], width: Int, height: Int,
                              channels: Int = 3, dataRange: Double) throws -> (value: Double, scales: Int) {
        try checkPlanar(a, b, width: width, height: height, channels: channels, minimumSide: windowSize)
        try checkRange(dataRange)
        return SSIMEngine.msssim(width: width, height: height, channels: channels, dataRange: dataRange,
                                 load: planarLoader(a, b, plane: width * height))
    }

    // MARK: - Helpers

    /// 10 log10(dataRange^2 / mse); `+infinity` when mse is 0.
    public static func psnr(mse: Double, dataRange: Double) throws -> Double {
        try checkRange(dataRange)
        if mse == 0 { return .infinity }
        return 10 * log10(dataRange * dataRange / mse)
    }

    static func checkRange(_ r: Double) throws {
        guard r.isFinite && r > 0 else { throw MetricsError.badDataRange(r) }
    }

    static func checkSame(_ a: RGBImage, _ b: RGBImage, minimumSide: Int) throws {
        guard a.width == b.width && a.height == b.height else {
            throw MetricsError.sizeMismatch(width1: a.width, height1: a.height, width2: b.width, height2: b.height)
        }
        guard a.width >= minimumSide && a.height >= minimumSide else {
            throw MetricsError.tooSmall(width: a.width, height: a.height, minimum: minimumSide)
        }
    }

    static func checkPlanar(_ a: [Float], _ b: [Float], width: Int, height: Int, channels: Int,
                            minimumSide: Int) throws {
        guard width >= minimumSide && height >= minimumSide else {
            throw MetricsError.tooSmall(width: width, height: height, minimum: minimumSide)
        }
        let (n, o1) = width.multipliedReportingOverflow(by: height)
        let (total, o2) = n.multipliedReportingOverflow(by: max(channels, 0))
        for buf in [a, b] where channels < 1 || o1 || o2 || buf.count != total {
            throw MetricsError.badPlanarCount(count: buf.count, channels: channels, width: width, height: height)
        }
    }

    /// Per-channel sums of squared differences, exact in integers.
    static func sumSquaredDifferences(_ a: RGBImage, _ b: RGBImage) -> (Int, Int, Int) {
        var s0 = 0, s1 = 0, s2 = 0
        a.pixels.withUnsafeBufferPointer { pa in
            b.pixels.withUnsafeBufferPointer { pb in
                var i = 0
                while i < pa.count {
                    let d0 = Int(pa[i]) - Int(pb[i])
                    let d1 = Int(pa[i + 1]) - Int(pb[i + 1])
                    let d2 = Int(pa[i + 2]) - Int(pb[i + 2])
                    s0 += d0 * d0
                    s1 += d1 * d1
                    s2 += d2 * d2
                    i += 3
                }
            }
        }
        return (s0, s1, s2)
    }

    /// Fills the two planes of channel c from interleaved RGB8.
    static func rgbLoader(_ a: RGBImage, _ b: RGBImage) -> SSIMEngine.Loader {
        return { c, x, y in
            a.pixels.withUnsafeBufferPointer { pa in
                b.pixels.withUnsafeBufferPointer { pb in
                    let n = pa.count / 3
                    for i in 0..<n {
                        x[i] = Double(pa[3 * i + c])
                        y[i] = Double(pb[3 * i + c])
                    }
                }
            }
        }
    }

    static func planarLoader(_ a: [Float], _ b: [Float], plane n: Int) -> SSIMEngine.Loader {
        return { c, x, y in
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    for i in 0..<n {
                        x[i] = Double(pa[c * n + i])
                        y[i] = Double(pb[c * n + i])
                    }
                }
            }
        }
    }
}
