import Foundation
import RepTokCodec
import RepTokData
import RepTokEval
import RepTokImage
import RepTokTensor

/// The best LINEAR single-vector code of a picture's codec view (issue #13's bar): PCA of the
/// training split's codec views (each picture squashed whole to S x S, and its mirror image),
/// coefficients quantized with one step and entropy coded by a static Laplacian per coefficient.
///
/// Bits are counted as the ideal code length of that static model: coefficient j, quantized to
/// q with step s, costs -log2 of the Laplace(0, b_j) mass of [(|q| - 1/2) s, (|q| + 1/2) s]
/// (for q = 0 the mass of [-s/2, s/2]), with b_j the mean |a_j| over the training views; the
/// coefficients past the k sent cost nothing. A real arithmetic coder spends a byte or so more.
/// Pixels are in 0...255 and every reconstruction is rounded and clipped to 8 bits before its PSNR.
public struct LinearCode: Sendable {
    public let size: Int
    /// d = 3 S^2 values per view, planar RGB.
    public var d: Int { 3 * size * size }
    public let mean: [Float]
    /// Rows are the principal directions (orthonormal), by decreasing variance: [m, d].
    public let basis: [Float]
    public let components: Int
    /// Variance of each coefficient over the training views, and its Laplace scale (mean |a|).
    public let variances: [Double]
    public let laplace: [Double]

    /// Codec views (0...255, planar) of every picture of a set, with their mirror images when
    /// `flips`: [n, 3 S^2].
    public static func views(_ set: PackedDataset, size S: Int, flips: Bool) -> (values: [Float], count: Int) {
        let d = 3 * S * S
        var out = [Float]()
        out.reserveCapacity(set.count * d * (flips ? 2 : 1))
        for i in 0..<set.count {
            let v = Codec.modelView(Pictures.picture(set, i), size: S).planarFloats(scale: 1, offset: 0)
            out += v
            if flips {
                var m = v
                for p in 0..<3 * S { for x in 0..<S { m[p * S + x] = v[p * S + S - 1 - x] } }
                out += m
            }
        }
        return (out, out.count / d)
    }

    /// PCA of n views [n, d] (0...255) with `components` directions, by the n x n Gram matrix.
    public static func fit(views x: [Float], count n: Int, size S: Int, components: Int) -> LinearCode {
        let d = 3 * S * S
        precondition(x.count == n * d && n >= 2, "LinearCode.fit: \(x.count) values for \(n) views of \(d)")
        let m = min(components, n - 1)
        var mean = [Double](repeating: 0, count: d)
        for r in 0..<n { for j in 0..<d { mean[j] += Double(x[r * d + j]) } }
        for j in 0..<d { mean[j] /= Double(n) }
        let xc = Tensor(uninitialized: [n, d])
        for r in 0..<n { for j in 0..<d { xc.data[r * d + j] = Float(Double(x[r * d + j]) - mean[j]) } }
        let gram = BLAS.matmul(xc, xc, transB: true)                       // [n, n]
        var g = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { g[i * n + j] = 0.5 * (Double(gram.data[i * n + j]) + Double(gram.data[j * n + i])) } }
        let (vals, vecs) = Frechet.eigen(g, n: n)
        let order = (0..<n).sorted { vals[$0] > vals[$1] }.prefix(m)
        // basis row j = X^T u_j / sqrt(w_j); coefficient of view r on it: sqrt(w_j) u_rj
        let ut = Tensor(uninitialized: [m, n])
        var variances = [Double](), laplace = [Double]()
        for (k, e) in order.enumerated() {
            let w = max(vals[e], 1e-12)
            var absSum = 0.0
            for r in 0..<n {
                let u = vecs[r * n + e]
                ut.data[k * n + r] = Float(u / w.squareRoot())
                absSum += abs(u) * w.squareRoot()
            }
            variances.append(w / Double(n))
            laplace.append(max(absSum / Double(n), 1e-9))
        }
        let basis = BLAS.matmul(ut, xc)                                    // [m, d]
        // make each direction's largest entry positive (a deterministic sign)
        var b = basis.array
        for k in 0..<m {
            var big: Float = 0, sign: Float = 1
            for j in 0..<d where abs(b[k * d + j]) > big { big = abs(b[k * d + j]); sign = b[k * d + j] < 0 ? -1 : 1 }
            if sign < 0 { for j in 0..<d { b[k * d + j] = -b[k * d + j] } }
        }
        return LinearCode(size: S, mean: mean.map { Float($0) }, basis: b, components: m, variances: variances,
                          laplace: laplace)
    }

    /// Coefficients [n, m] of views [n, d] (0...255).
    public func coefficients(_ x: [Float], count n: Int) -> [Float] {
        let xc = Tensor(uninitialized: [n, d])
        for r in 0..<n { for j in 0..<d { xc.data[r * d + j] = x[r * d + j] - mean[j] } }
        return BLAS.matmul(xc, Tensor([components, d], basis), transB: true).array
    }

    /// Squared errors (0...255, summed, the reconstruction rounded to 8 bits) of views [n, d]
    /// coded with all the code's coefficients, unquantized.
    public func residuals(_ x: [Float], count n: Int) -> [Double] {
        let c = Tensor([n, components], coefficients(x, count: n))
        let rec = BLAS.matmul(c, Tensor([components, d], basis))            // [n, d]
        return (0..<n).map { r in
            var se = 0.0
            for j in 0..<d {
                let p = min(max((Double(rec.data[r * d + j]) + Double(mean[j])).rounded(), 0), 255)
                let e = p - Double(x[r * d + j]); se += e * e
            }
            return se
        }
    }

    /// How much a code of `components` directions fitted on these views flatters them: the mean
    /// over views of 10 log10(held-out residual / in-sample residual), the held-out residual of a
    /// view from a code fitted without its picture (`folds` folds by picture; views come in
    /// groups of `perPicture`, a picture and its mirror image). In dB, >= 0 in practice.
    public static func overfitGap(views x: [Float], count n: Int, size S: Int, components: Int, perPicture: Int = 2,
                                  folds: Int = 5) -> Double {
        let d = 3 * S * S, pictures = n / perPicture
        let inSample = fit(views: x, count: n, size: S, components: components).residuals(x, count: n)
        var gap = 0.0, counted = 0
        for f in 0..<folds {
            var train = [Float](), test = [Float](), testIdx = [Int]()
            for p in 0..<pictures {
                for v in 0..<perPicture {
                    let r = p * perPicture + v
                    if p % folds == f { test += x[r * d..<(r + 1) * d]; testIdx.append(r) } else { train += x[r * d..<(r + 1) * d] }
                }
            }
            guard !testIdx.isEmpty, train.count / d > components else { continue }
            let held = fit(views: train, count: train.count / d, size: S, components: components).residuals(test, count: testIdx.count)
            for (k, r) in testIdx.enumerated() {
                gap += 10 * log10(max(held[k], 1e-9) / max(inSample[r], 1e-9)); counted += 1
            }
        }
        return counted > 0 ? gap / Double(counted) : 0
    }

    /// Ideal code length in bits of symbol q with step s under Laplace(0, b).
    public static func bits(_ q: Double, step s: Double, scale b: Double) -> Double {
        let a = abs(q)
        let p = a == 0 ? -expm1(-0.5 * s / b) : 0.5 * (exp(-(a - 0.5) * s / b) - exp(-(a + 0.5) * s / b))
        return -log2(max(p, 1e-300))
    }

    /// One point of the code: k coefficients at one step, its mean bytes and mean PSNR (the
    /// evaluation report's bar point).
    public typealias Point = LinearBarPoint

    /// Mean payload bytes and PSNR over views [n, d] for every (k, step) of a grid.
    public func curve(views x: [Float], count n: Int, ks: [Int]? = nil, steps: Int = 40) -> [Point] {
        let a = coefficients(x, count: n), m = components
        let kList = (ks ?? [2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 200, 256, 320, 400, 512]).filter { $0 <= m }
        let sigma1 = variances.first.map { $0.squareRoot() } ?? 1
        var points = [Point]()
        for k in kList {
            let bt = Tensor(uninitialized: [k, d])
            (bt.data).update(from: basis, count: k * d)
            for si in 0..<steps {
                let step = sigma1 * 0.01 * pow(400.0, Double(si) / Double(steps - 1))   // 0.01 ... 4 sigma_1
                let q = Tensor(uninitialized: [n, k])
                var bits = 0.0
                for r in 0..<n {
                    for j in 0..<k {
                        let v = (Double(a[r * m + j]) / step).rounded()
                        q.data[r * k + j] = Float(v * step)
                        bits += LinearCode.bits(v, step: step, scale: laplace[j])
                    }
                }
                let rec = BLAS.matmul(q, bt)
                var psnr = 0.0
                for r in 0..<n {
                    var se = 0.0
                    for j in 0..<d {
                        let v = min(max((rec.data[r * d + j] + mean[j]).rounded(), 0), 255)
                        let e = Double(v - x[r * d + j]); se += e * e
                    }
                    psnr += se == 0 ? 99 : 10 * log10(255.0 * 255.0 / (se / Double(d)))
                }
                points.append(Point(coefficients: k, step: step, bytes: bits / 8 / Double(n), psnr: psnr / Double(n)))
            }
        }
        return points
    }

    /// The best point of `points` whose mean bytes fit `budget` (nil when none does).
    public static func best(_ points: [Point], within budget: Double) -> Point? {
        points.filter { $0.bytes <= budget + 1e-9 }.max { $0.psnr < $1.psnr }
    }
}
