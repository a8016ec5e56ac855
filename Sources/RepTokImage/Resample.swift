// Separable resampling of float planes (and RGB8 images through them).
//
// Values are filtered as given: for images that means sRGB-encoded values, NO gamma
// linearization (what PIL, torchvision and OpenCV do by default).
//
// Geometry: source pixel i covers [i, i+1). Output pixel j of a crop [x0, x0 + w) resized to n
// samples is centred at x0 + (j + 0.5) * w / n. When downsampling by s = w / n > 1 the kernel is
// stretched by s (antialiasing, as PIL does); at image edges the kernel is cut at the border and
// the remaining weights renormalized to sum 1 (PIL's rule), so constants stay constant. Filters:
//  - area: each output is the average of the source area under its footprint (exact coverage
//    weights, fractional at the ends); for integer factors the plain k x k box mean. When
//    upsampling it degenerates to bilinear interpolation.
//  - bilinear: triangle kernel, support 1 (stretched when downsampling).
//  - lanczos3: sinc(x) sinc(x/3), |x| < 3 (stretched when downsampling).
// Work per call: two 1-D weight tables, one temporary buffer, two passes (the cheaper order is
// picked; rows/columns outside a crop's reach are never touched).

public enum ResampleFilter: String, Sendable, CaseIterable {
    case area
    case bilinear
    case lanczos3

    /// Kernel radius at scale 1, in source pixels.
    var support: Double {
        switch self {
        case .area: return 0.5
        case .bilinear: return 1
        case .lanczos3: return 3
        }
    }
}

public enum Resample {
    /// Resizes an RGB8 image (rounding and clamping the filtered values). The same size returns
    /// `img` unchanged.
    public static func resize(_ img: RGBImage, width: Int, height: Int,
                              filter: ResampleFilter = .lanczos3) -> RGBImage {
        precondition(width > 0 && height > 0, "Resample.resize: empty output size")
        precondition(img.width > 0 && img.height > 0, "Resample.resize: empty image")
        if width == img.width && height == img.height { return img }
        let planes = img.planarFloats(scale: 1, offset: 0)
        let out = resizePlanar(planes, srcW: img.width, srcH: img.height, dstW: width, dstH: height,
                               filter: filter)
        return RGBImage(planar: out, width: width, height: height, scale: 1, offset: 0)
    }

    /// Resizes `channels` planes of `srcW x srcH` floats (`[channels, srcH, srcW]`) to
    /// `[channels, dstH, dstW]`.
    public static func resizePlanar(_ src: [Float], srcW: Int, srcH: Int, dstW: Int, dstH: Int,
                                    filter: ResampleFilter, channels: Int = 3) -> [Float] {
        resizeCropPlanar(src, srcW: srcW, srcH: srcH, cropX: 0, cropY: 0,
                         cropW: Double(srcW), cropH: Double(srcH), dstW: dstW, dstH: dstH,
                         filter: filter, channels: channels)
    }

    /// Resamples the crop `[cropX, cropX + cropW) x [cropY, cropY + cropH)` (source pixel
    /// coordinates, fractions allowed) of `[channels, srcH, srcW]` planes to
    /// `[channels, dstH, dstW]`: random-resized-crop views. Parts of a crop outside the image
    /// take the nearest image content (kernels are cut at the border and renormalized).
    public static func resizeCropPlanar(_ src: [Float], srcW: Int, srcH: Int,
                                        cropX: Double, cropY: Double, cropW: Double, cropH: Double,
                                        dstW: Int, dstH: Int, filter: ResampleFilter,
                                        channels: Int = 3) -> [Float] {
        precondition(dstW > 0 && dstH > 0 && channels > 0, "Resample: empty output")
        let count = channels * dstH * dstW
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            src.withUnsafeBufferPointer { s in
                resizeCropPlanar(s, srcW: srcW, srcH: srcH, cropX: cropX, cropY: cropY,
                                 cropW: cropW, cropH: cropH, dstW: dstW, dstH: dstH,
                                 filter: filter, channels: channels, into: out)
            }
            initialized = count
        }
    }

    /// As above, writing into `dst` (`channels * dstH * dstW` floats), for callers that reuse
    /// their buffers.
    public static func resizeCropPlanar(_ src: UnsafeBufferPointer<Float>, srcW: Int, srcH: Int,
                                        cropX: Double, cropY: Double, cropW: Double, cropH: Double,
                                        dstW: Int, dstH: Int, filter: ResampleFilter,
                                        channels: Int = 3, into dst: UnsafeMutableBufferPointer<Float>) {
        precondition(srcW > 0 && srcH > 0 && dstW > 0 && dstH > 0 && channels > 0,
                     "Resample: empty size")
        precondition(src.count == channels * srcW * srcH, "Resample: source has \(src.count) floats, not \(channels)x\(srcH)x\(srcW)")
        precondition(dst.count == channels * dstW * dstH, "Resample: destination has \(dst.count) floats, not \(channels)x\(dstH)x\(dstW)")
        precondition(cropX.isFinite && cropY.isFinite && cropW.isFinite && cropH.isFinite
                     && cropW > 0 && cropH > 0, "Resample: bad crop")
        let sp = src.baseAddress!, dp = dst.baseAddress!
        let srcPlane = srcW * srcH, dstPlane = dstW * dstH

        let hIdentity = dstW == srcW && cropX == 0 && cropW == Double(srcW)
        let vIdentity = dstH == srcH && cropY == 0 && cropH == Double(srcH)
        if hIdentity && vIdentity {
            dp.update(from: sp, count: src.count)
            return
        }
        let hTaps = FilterTaps(srcSize: srcW, dstSize: dstW, origin: cropX, span: cropW, filter: filter)
        let vTaps = FilterTaps(srcSize: srcH, dstSize: dstH, origin: cropY, span: cropH, filter: filter)
        if vIdentity {
            for c in 0..<channels {
                hPass(sp + c * srcPlane, srcStride: srcW, colOffset: 0, rows: dstH, hTaps,
                      dp + c * dstPlane, dstStride: dstW)
            }
            return
        }
        if hIdentity {
            for c in 0..<channels {
                vPass(sp + c * srcPlane, srcStride: srcW, rowOffset: 0, cols: dstW, vTaps,
                      dp + c * dstPlane, dstStride: dstW)
            }
            return
        }
        let rowsNeeded = vTaps.hi - vTaps.lo, colsNeeded = hTaps.hi - hTaps.lo
        // Multiply-adds of each order; the vertical pass vectorizes across a row and the
        // horizontal one (a dot product per output) does not, so it counts about 3x.
        let hCost = 3, vCost = 1
        let horizontalFirst = Resample.forceOrder
            ?? (rowsNeeded * hTaps.totalTaps * hCost + dstW * vTaps.totalTaps * vCost
                <= colsNeeded * vTaps.totalTaps * vCost + dstH * hTaps.totalTaps * hCost)
        let tmpCount = horizontalFirst ? rowsNeeded * dstW : dstH * colsNeeded
        let tmp = UnsafeMutablePointer<Float>.allocate(capacity: max(tmpCount, 1))
        defer { tmp.deallocate() }
        for c in 0..<channels {
            let s = sp + c * srcPlane, d = dp + c * dstPlane
            if horizontalFirst {
                hPass(s + vTaps.lo * srcW, srcStride: srcW, colOffset: 0, rows: rowsNeeded, hTaps,
                      tmp, dstStride: dstW)
                vPass(tmp, srcStride: dstW, rowOffset: vTaps.lo, cols: dstW, vTaps, d, dstStride: dstW)
            } else {
                vPass(s + hTaps.lo, srcStride: srcW, rowOffset: 0, cols: colsNeeded, vTaps,
                      tmp, dstStride: colsNeeded)
                hPass(tmp, srcStride: colsNeeded, colOffset: hTaps.lo, rows: dstH, hTaps, d, dstStride: dstW)
            }
        }
    }

    /// Tests/benchmarks only: force the pass order (true = horizontal first).
    nonisolated(unsafe) static var forceOrder: Bool? = nil

    /// For each of `rows` rows: dst[j] = sum_k w[j][k] * src[start[j] - colOffset + k].
    static func hPass(_ src: UnsafePointer<Float>, srcStride: Int, colOffset: Int, rows: Int,
                      _ taps: FilterTaps, _ dst: UnsafeMutablePointer<Float>, dstStride: Int) {
        let n = taps.starts.count, stride = taps.maxTaps
        taps.starts.withUnsafeBufferPointer { starts in
            taps.counts.withUnsafeBufferPointer { counts in
                taps.weights.withUnsafeBufferPointer { weights in
                    let wb = weights.baseAddress!
                    for r in 0..<rows {
                        let inRow = src + r * srcStride - colOffset
                        let outRow = dst + r * dstStride
                        for j in 0..<n {
                            let p = inRow + starts[j], w = wb + j * stride
                            let count = counts[j]
                            // four partial sums: independent chains the CPU can overlap
                            var a0: Float = 0, a1: Float = 0, a2: Float = 0, a3: Float = 0
                            var k = 0
                            while k + 4 <= count {
                                a0 += w[k] * p[k]
                                a1 += w[k + 1] * p[k + 1]
                                a2 += w[k + 2] * p[k + 2]
                                a3 += w[k + 3] * p[k + 3]
                                k += 4
                            }
                            while k < count { a0 += w[k] * p[k]; k += 1 }
                            outRow[j] = (a0 + a1) + (a2 + a3)
                        }
                    }
                }
            }
        }
    }

    /// For each output row j: dst[j][c] = sum_k w[j][k] * src[start[j] - rowOffset + k][c].
    static func vPass(_ src: UnsafePointer<Float>, srcStride: Int, rowOffset: Int, cols: Int,
                      _ taps: FilterTaps, _ dst: UnsafeMutablePointer<Float>, dstStride: Int) {
        let n = taps.starts.count, stride = taps.maxTaps
        taps.starts.withUnsafeBufferPointer { starts in
            taps.counts.withUnsafeBufferPointer { counts in
                taps.weights.withUnsafeBufferPointer { weights in
                    let wb = weights.baseAddress!
                    for j in 0..<n {
                        let out = dst + j * dstStride
                        let first = src + (starts[j] - rowOffset) * srcStride
                        let w = wb + j * stride
                        let w0 = w[0]
                        for c in 0..<cols { out[c] = w0 * first[c] }
                        for k in 1..<max(counts[j], 1) {
                            let wk = w[k], row = first + k * srcStride
                            for c in 0..<cols { out[c] += wk * row[c] }
                        }
                    }
                }
            }
        }
    }
}

/// 1-D resampling weights: output j reads source samples starts[j] ..< starts[j] + counts[j]
/// with weights[j * maxTaps ..< j * maxTaps + counts[j]] (summing to 1). maxTaps is the table
/// stride (the widest window the filter can have), not the largest count.
struct FilterTaps {
    var starts: [Int]
    var counts: [Int]
    var weights: [Float]
    var maxTaps: Int
    /// The source range any output reads: [lo, hi).
    var lo: Int
    var hi: Int
    var totalTaps: Int

    init(srcSize: Int, dstSize: Int, origin: Double, span: Double, filter: ResampleFilter) {
        let scale = span / Double(dstSize)
        let stretch = max(scale, 1)
        let support = filter.support * stretch
        // Widest possible window, for the table stride.
        let widest = min(Int((2 * support).rounded(.up)) + 2, srcSize)
        var starts = [Int](repeating: 0, count: dstSize)
        var counts = [Int](repeating: 0, count: dstSize)
        var weights = [Float](repeating: 0, count: dstSize * max(widest, 1))
        var scratch = [Double](repeating: 0, count: max(widest, 1))
        var lo = Int.max, hi = Int.min, total = 0
        for j in 0..<dstSize {
            let center = origin + (Double(j) + 0.5) * scale
            var a = Int(max(-1e15, (center - support).rounded(.down)))
            var b = Int(min(1e15, (center + support).rounded(.up)))
            a = max(a, 0)
            b = min(b, srcSize)
            var count = 0, sum = 0.0
            if a < b {
                count = min(b - a, widest)
                for k in 0..<count {
                    let x = Double(a + k)
                    let w: Double
                    switch filter {
                    case .area:
                        let l = center - 0.5 * stretch, r = center + 0.5 * stretch
                        w = max(0, min(x + 1, r) - max(x, l))
                    case .bilinear:
                        w = max(0, 1 - abs((x + 0.5 - center) / stretch))
                    case .lanczos3:
                        w = lanczos3((x + 0.5 - center) / stretch)
                    }
                    scratch[k] = w
                }
                // Trim zero weights at both ends.
                var first = 0
                while first < count && scratch[first] == 0 { first += 1 }
                while count > first && scratch[count - 1] == 0 { count -= 1 }
                if first > 0 {
                    for k in first..<count { scratch[k - first] = scratch[k] }
                    count -= first
                    a += first
                }
                for k in 0..<count { sum += scratch[k] }
            }
            if count == 0 || abs(sum) < 1e-9 {
                // The window misses the image (a crop far outside it): nearest sample.
                a = min(max(Int(max(-1e15, min(1e15, center.rounded(.down)))), 0), srcSize - 1)
                count = 1
                scratch[0] = 1
                sum = 1
            }
            starts[j] = a
            counts[j] = count
            for k in 0..<count { weights[j * max(widest, 1) + k] = Float(scratch[k] / sum) }
            lo = min(lo, a)
            hi = max(hi, a + count)
            total += count
        }
        self.starts = starts
        self.counts = counts
        self.weights = weights
        self.maxTaps = max(widest, 1)
        self.lo = lo
        self.hi = hi
        self.totalTaps = total
    }
}

/// sinc(x) sinc(x / 3) for |x| < 3, else 0; exactly 0 at nonzero integers.
@inline(__always)
func lanczos3(_ x: Double) -> Double {
    if x == 0 { return 1 }
    if x <= -3 || x >= 3 { return 0 }
    if x == x.rounded() { return 0 }
    let a = Double.pi * x / 3
    let s = sin(a)
    let s3 = s * (3 - 4 * s * s)  // sin(3a) = sin(pi x)
    return s3 * s / (3 * a * a)   // sin(pi x) sin(pi x / 3) / ((pi x)^2 / 3)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
