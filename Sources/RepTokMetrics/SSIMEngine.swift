// The SSIM / MS-SSIM computation on Double planes (conventions: Metrics.swift's header).
//
// One call allocates its scratch once (two pairs of planes for the downsampling ping-pong, the five
// horizontally filtered planes, one row of vertical accumulators) and reuses it for every channel
// and scale. Filtering is separable and "valid": horizontal pass over whole rows, then the vertical
// pass one output row at a time, with the SSIM/cs terms of that row reduced at once.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum SSIMEngine {
    /// Fills plane `x` (first image) and plane `y` (second image) of channel `c`, width * height values each.
    typealias Loader = (_ c: Int, _ x: UnsafeMutablePointer<Double>, _ y: UnsafeMutablePointer<Double>) -> Void

    /// scipy.ndimage's Gaussian weights (as skimage's SSIM gets them): exp(-x^2 / (2 sigma^2)),
    /// x = -5...5, normalized, in float64.
    static let skimageKernel: [Double] = {
        let r = Metrics.windowSize / 2
        let s2 = Metrics.windowSigma * Metrics.windowSigma
        let w = (-r...r).map { exp(-0.5 / s2 * Double($0 * $0)) }
        let sum = w.reduce(0, +)
        return w.map { $0 / sum }
    }()

    /// pytorch-msssim's `_fspecial_gauss_1d(11, 1.5)`: the same window computed in float32
    /// (exp(-(x^2) / 4.5), sum, divide), so that MS-SSIM uses its weights (bit-identical to
    /// torch 2.13's on x86-64 glibc; a last-bit difference would move MS-SSIM by ~1e-6).
    static let pytorchKernel: [Double] = {
        let r = Metrics.windowSize / 2
        let denom = Float(2 * Metrics.windowSigma * Metrics.windowSigma)
        let w: [Float] = (-r...r).map { exp(-Float($0 * $0) / denom) }
        // torch's float32 sum of these 11 values is the correctly rounded one (checked).
        var sum = 0.0
        for v in w { sum += Double(v) }
        let fsum = Float(sum)
        return w.map { Double($0 / fsum) }
    }()

    /// SSIM of each channel (skimage window).
    static func ssimPerChannel(width: Int, height: Int, channels: Int, dataRange: Double,
                               load: Loader) -> [Double] {
        let ws = Workspace(width: width, height: height, taps: skimageKernel.count, pyramid: false)
        defer { ws.free() }
        let c1 = (Metrics.k1 * dataRange) * (Metrics.k1 * dataRange)
        let c2 = (Metrics.k2 * dataRange) * (Metrics.k2 * dataRange)
        return skimageKernel.withUnsafeBufferPointer { g in
            (0..<channels).map { c in
                load(c, ws.x, ws.y)
                return means(ws.x, ws.y, width: width, height: height, kernel: g, c1: c1, c2: c2, ws: ws).ssim
            }
        }
    }

    /// MS-SSIM averaged over channels, and the scale count.
    static func msssim(width: Int, height: Int, channels: Int, dataRange: Double,
                       load: Loader) -> (value: Double, scales: Int) {
        let scales = Metrics.msssimScales(width: width, height: height)
        precondition(scales >= 1, "msssim: image \(width)x\(height) too small")
        let weights = Metrics.msssimWeights(scales: scales)
        let ws = Workspace(width: width, height: height, taps: pytorchKernel.count, pyramid: scales > 1)
        defer { ws.free() }
        let c1 = (Metrics.k1 * dataRange) * (Metrics.k1 * dataRange)
        let c2 = (Metrics.k2 * dataRange) * (Metrics.k2 * dataRange)
        var total = 0.0
        pytorchKernel.withUnsafeBufferPointer { g in
            for c in 0..<channels {
                load(c, ws.x, ws.y)
                var (x, y, x2, y2) = (ws.x, ws.y, ws.x2, ws.y2)
                var w = width, h = height
                var value = 1.0
                for s in 0..<scales {
                    let m = means(x, y, width: w, height: h, kernel: g, c1: c1, c2: c2, ws: ws)
                    if s < scales - 1 {
                        value *= pow(max(m.cs, 0), weights[s])
                        _ = avgPool2(x, width: w, height: h, into: x2!)
                        (w, h) = avgPool2(y, width: w, height: h, into: y2!)
                        swap(&x, &x2!)
                        swap(&y, &y2!)
                    } else {
                        value *= pow(max(m.ssim, 0), weights[s])
                    }
                }
                total += value
            }
        }
        return (total / Double(channels), scales)
    }

    /// Scratch memory for one call.
    final class Workspace {
        let x: UnsafeMutablePointer<Double>
        let y: UnsafeMutablePointer<Double>
        let x2: UnsafeMutablePointer<Double>?
        let y2: UnsafeMutablePointer<Double>?
        /// Five planes of height * (width - taps + 1): filtered x, y, x*x, y*y, x*y.
        let rows: UnsafeMutablePointer<Double>
        /// Five rows of (width - taps + 1): vertical accumulators.
        let acc: UnsafeMutablePointer<Double>

        init(width: Int, height: Int, taps: Int, pyramid: Bool) {
            let n = width * height
            let ow = width - taps + 1
            x = .allocate(capacity: n)
            y = .allocate(capacity: n)
            // Pooled planes are at most ceil(w/2) x ceil(h/2).
            let n2 = ((width + 1) / 2) * ((height + 1) / 2)
            x2 = pyramid ? .allocate(capacity: n2) : nil
            y2 = pyramid ? .allocate(capacity: n2) : nil
            rows = .allocate(capacity: 5 * height * ow)
            acc = .allocate(capacity: 5 * ow)
        }

        func free() {
            x.deallocate()
            y.deallocate()
            x2?.deallocate()
            y2?.deallocate()
            rows.deallocate()
            acc.deallocate()
        }
    }

    /// Means over the valid region of the SSIM map and of the contrast-structure (cs) map of one
    /// plane pair. Needs width, height >= kernel.count.
    static func means(_ x: UnsafeMutablePointer<Double>, _ y: UnsafeMutablePointer<Double>,
                      width w: Int, height h: Int, kernel g: UnsafeBufferPointer<Double>,
                      c1: Double, c2: Double, ws: Workspace) -> (ssim: Double, cs: Double) {
        let taps = g.count
        let ow = w - taps + 1, oh = h - taps + 1
        precondition(ow >= 1 && oh >= 1)
        let plane = h * ow
        let r0 = ws.rows, r1 = r0 + plane, r2 = r1 + plane, r3 = r2 + plane, r4 = r3 + plane

        // Horizontal pass: every input row -> ow outputs of the five quantities.
        for row in 0..<h {
            let xr = x + row * w, yr = y + row * w
            let o0 = r0 + row * ow, o1 = r1 + row * ow, o2 = r2 + row * ow, o3 = r3 + row * ow, o4 = r4 + row * ow
            for j in 0..<ow {
                o0[j] = 0; o1[j] = 0; o2[j] = 0; o3[j] = 0; o4[j] = 0
            }
            for k in 0..<taps {
                let gk = g[k]
                let xs = xr + k, ys = yr + k
                for j in 0..<ow {
                    let a = xs[j], b = ys[j]
                    let ga = gk * a, gb = gk * b
                    o0[j] += ga
                    o1[j] += gb
                    o2[j] += ga * a
                    o3[j] += gb * b
                    o4[j] += ga * b
                }
            }
        }

        // Vertical pass, one output row at a time, and the reduction.
        let a0 = ws.acc, a1 = a0 + ow, a2 = a1 + ow, a3 = a2 + ow, a4 = a3 + ow
        var sumS = 0.0, sumCS = 0.0
        for i in 0..<oh {
            for j in 0..<(5 * ow) { a0[j] = 0 }
            for k in 0..<taps {
                let gk = g[k]
                let off = (i + k) * ow
                let s0 = r0 + off, s1 = r1 + off, s2 = r2 + off, s3 = r3 + off, s4 = r4 + off
                for j in 0..<ow {
                    a0[j] += gk * s0[j]
                    a1[j] += gk * s1[j]
                    a2[j] += gk * s2[j]
                    a3[j] += gk * s3[j]
                    a4[j] += gk * s4[j]
                }
            }
            var rowS = 0.0, rowCS = 0.0
            for j in 0..<ow {
                let mu1 = a0[j], mu2 = a1[j]
                let mu1sq = mu1 * mu1, mu2sq = mu2 * mu2, mu12 = mu1 * mu2
                let var1 = a2[j] - mu1sq, var2 = a3[j] - mu2sq, cov = a4[j] - mu12
                let cs = (2 * cov + c2) / (var1 + var2 + c2)
                rowCS += cs
                rowS += ((2 * mu12 + c1) / (mu1sq + mu2sq + c1)) * cs
            }
            sumS += rowS
            sumCS += rowCS
        }
        let count = Double(oh * ow)
        return (sumS / count, sumCS / count)
    }

    /// torch's avg_pool2d(kernel_size=2, stride=2, padding=[h % 2, w % 2]) with the default
    /// count_include_pad=True: zero padding of one sample on both sides of an odd dimension, every
    /// output divided by 4. Returns the output size (ceil(w/2), ceil(h/2)).
    @discardableResult
    static func avgPool2(_ src: UnsafeMutablePointer<Double>, width w: Int, height h: Int,
                         into dst: UnsafeMutablePointer<Double>) -> (width: Int, height: Int) {
        let ph = h % 2, pw = w % 2
        let w2 = (w + 2 * pw - 2) / 2 + 1, h2 = (h + 2 * ph - 2) / 2 + 1
        for i in 0..<h2 {
            let rA = 2 * i - ph, rB = rA + 1  // rA may be -1 (padding); rB <= h - 1 always
            let rowA: UnsafeMutablePointer<Double>? = rA >= 0 ? src + rA * w : nil
            let rowB = src + rB * w
            let out = dst + i * w2
            for j in 0..<w2 {
                let cA = 2 * j - pw, cB = cA + 1
                var s = rowB[cB]
                if cA >= 0 { s += rowB[cA] }
                if let rowA {
                    s += rowA[cB]
                    if cA >= 0 { s += rowA[cA] }
                }
                out[j] = s * 0.25
            }
        }
        return (w2, h2)
    }
}
