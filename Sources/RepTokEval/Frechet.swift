// Frechet distance between two sets of feature vectors, each summarized by a Gaussian
// (Heusel et al. 2017, the formula behind FID; here on features of our own frozen SSL encoder,
// so it is NOT "FID" and is named for what it is):
//
//     d^2 = ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2})
//
// Covariances are unbiased (divide by n - 1, as numpy.cov and pytorch-fid). The trace of the
// matrix square root is taken through two symmetric eigendecompositions in float64 (LAPACK
// dsyevd from OpenBLAS, about 1000x faster than the cyclic Jacobi of RepTokTensor kept as the
// fallback and as the tests' cross-check), negative eigenvalues from rounding clamped to zero.
//
// The bootstrap interval resamples IMAGES, not feature rows: several views of one image are
// correlated, so each replicate draws N images with replacement and takes all their views, the
// same images on both sides (a paired bootstrap: originals and their own decodes).

import CBLASLoader
import Foundation
import RepTokTensor

public enum FrechetError: Error, Equatable, CustomStringConvertible {
    case shape(String)
    case tooFewSamples(Int)

    public var description: String {
        switch self {
        case .shape(let s): return "Frechet distance: \(s)"
        case .tooFewSamples(let n): return "Frechet distance: needs at least 2 samples per set, got \(n)"
        }
    }
}

public enum Frechet {
    /// Mean and unbiased covariance of `count` rows of `dim` features (row-major).
    public struct Gaussian: Equatable, Sendable {
        public let dim: Int
        public let count: Int
        public let mean: [Double]
        /// dim x dim, row-major, symmetric.
        public let covariance: [Double]

        public init(dim: Int, count: Int, mean: [Double], covariance: [Double]) {
            self.dim = dim; self.count = count; self.mean = mean; self.covariance = covariance
        }

        public init(features: [Double], dim: Int) throws {
            guard dim > 0, features.count % dim == 0 else {
                throw FrechetError.shape("\(features.count) values are not rows of \(dim)")
            }
            let n = features.count / dim
            guard n >= 2 else { throw FrechetError.tooFewSamples(n) }
            guard features.allSatisfy({ $0.isFinite }) else { throw FrechetError.shape("non-finite feature") }
            var mu = [Double](repeating: 0, count: dim)
            for i in 0..<n { for j in 0..<dim { mu[j] += features[i * dim + j] } }
            for j in 0..<dim { mu[j] /= Double(n) }
            var cov = [Double](repeating: 0, count: dim * dim)
            var centred = [Double](repeating: 0, count: dim)
            cov.withUnsafeMutableBufferPointer { c in
                for i in 0..<n {
                    for j in 0..<dim { centred[j] = features[i * dim + j] - mu[j] }
                    for a in 0..<dim {
                        let xa = centred[a]
                        if xa == 0 { continue }
                        let row = a * dim
                        for b in a..<dim { c[row + b] += xa * centred[b] }
                    }
                }
                let s = 1 / Double(n - 1)
                for a in 0..<dim {
                    for b in a..<dim {
                        let v = c[a * dim + b] * s
                        c[a * dim + b] = v
                        c[b * dim + a] = v
                    }
                }
            }
            self.init(dim: dim, count: n, mean: mu, covariance: cov)
        }
    }

    /// The Frechet distance d^2 between two Gaussians of the same dimension.
    public static func distance(_ a: Gaussian, _ b: Gaussian) throws -> Double {
        guard a.dim == b.dim else { throw FrechetError.shape("dimensions \(a.dim) and \(b.dim) differ") }
        let n = a.dim
        var d2 = 0.0
        for j in 0..<n { let d = a.mean[j] - b.mean[j]; d2 += d * d }
        var trA = 0.0, trB = 0.0
        for j in 0..<n { trA += a.covariance[j * n + j]; trB += b.covariance[j * n + j] }
        // S_a^{1/2} = V diag(sqrt(max(l, 0))) V^T
        let ea = eigen(a.covariance, n: n)
        var root = [Double](repeating: 0, count: n * n)
        for k in 0..<n {
            let s = ea.values[k] > 0 ? ea.values[k].squareRoot() : 0
            if s == 0 { continue }
            for i in 0..<n {
                let vik = ea.vectors[i * n + k] * s
                if vik == 0 { continue }
                for j in 0..<n { root[i * n + j] += vik * ea.vectors[j * n + k] }
            }
        }
        // M = R S_b R (symmetric PSD); Tr(M^{1/2}) = sum sqrt(eig(M)).
        let rs = multiply(root, b.covariance, n: n)
        var m = multiply(rs, root, n: n)
        symmetrize(&m, n: n)
        let em = eigen(m, n: n)
        var trRoot = 0.0
        for l in em.values where l > 0 { trRoot += l.squareRoot() }
        return max(0, d2 + trA + trB - 2 * trRoot)
    }

    /// The distance of two feature sets (rows of `dim`).
    public static func distance(features a: [Double], _ b: [Double], dim: Int) throws -> Double {
        try distance(Gaussian(features: a, dim: dim), Gaussian(features: b, dim: dim))
    }

    /// A distance with its bootstrap percentile interval.
    public struct Estimate: Equatable, Sendable {
        public let value: Double
        public let low: Double
        public let high: Double
        public let confidence: Double
        public let resamples: Int
        /// Images (groups) and feature rows per set.
        public let groups: Int
        public let samples: Int
    }

    /// `a` and `b`: per image (group), its feature rows (each a multiple of `dim` values); group i
    /// of `a` is paired with group i of `b`. The interval resamples groups with replacement,
    /// `resamples` times (seeded: the same inputs give the same interval).
    public static func estimate(groupsA a: [[Double]], groupsB b: [[Double]], dim: Int, resamples: Int = 200,
                                confidence: Double = 0.95, seed: UInt64 = 0) throws -> Estimate {
        guard a.count == b.count, !a.isEmpty else {
            throw FrechetError.shape("the two sets need the same, non-zero number of images (\(a.count), \(b.count))")
        }
        guard resamples >= 0, confidence > 0, confidence < 1 else { throw FrechetError.shape("bad bootstrap settings") }
        let value = try distance(features: a.flatMap { $0 }, b.flatMap { $0 }, dim: dim)
        let samples = a.reduce(0) { $0 + $1.count } / dim
        var reps: [Double] = []
        reps.reserveCapacity(resamples)
        var rng = SplitMix64(seed: seed)
        let N = a.count
        for _ in 0..<resamples {
            var fa: [Double] = [], fb: [Double] = []
            fa.reserveCapacity(samples * dim); fb.reserveCapacity(samples * dim)
            for _ in 0..<N {
                let i = Int(rng.next() % UInt64(N))
                fa += a[i]; fb += b[i]
            }
            // A replicate can draw too few distinct rows for a covariance; such draws are skipped.
            guard fa.count / dim >= 2, fb.count / dim >= 2 else { continue }
            reps.append(try distance(features: fa, fb, dim: dim))
        }
        return interval(value: value, reps: reps, confidence: confidence, groups: N, samples: samples)
    }

    /// Two independent sets (e.g. generated images against validation images): each replicate
    /// resamples the groups of each set on its own, with replacement.
    public static func estimateUnpaired(groupsA a: [[Double]], groupsB b: [[Double]], dim: Int, resamples: Int = 200,
                                        confidence: Double = 0.95, seed: UInt64 = 0) throws -> Estimate {
        guard !a.isEmpty, !b.isEmpty else { throw FrechetError.shape("both sets need images") }
        guard resamples >= 0, confidence > 0, confidence < 1 else { throw FrechetError.shape("bad bootstrap settings") }
        let value = try distance(features: a.flatMap { $0 }, b.flatMap { $0 }, dim: dim)
        var rng = SplitMix64(seed: seed)
        var reps: [Double] = []
        func draw(_ g: [[Double]]) -> [Double] {
            var out: [Double] = []
            for _ in 0..<g.count { out += g[Int(rng.next() % UInt64(g.count))] }
            return out
        }
        for _ in 0..<resamples {
            let fa = draw(a), fb = draw(b)
            guard fa.count / dim >= 2, fb.count / dim >= 2 else { continue }
            reps.append(try distance(features: fa, fb, dim: dim))
        }
        return interval(value: value, reps: reps, confidence: confidence, groups: min(a.count, b.count),
                        samples: min(a.reduce(0) { $0 + $1.count }, b.reduce(0) { $0 + $1.count }) / dim)
    }

    static func interval(value: Double, reps: [Double], confidence: Double, groups: Int, samples: Int) -> Estimate {
        let r = reps.sorted()
        func pct(_ q: Double) -> Double {
            guard !r.isEmpty else { return value }
            let x = q * Double(r.count - 1)
            let lo = Int(x.rounded(.down)), hi = min(r.count - 1, lo + 1)
            return r[lo] + (r[hi] - r[lo]) * (x - Double(lo))
        }
        let tail = (1 - confidence) / 2
        return Estimate(value: value, low: pct(tail), high: pct(1 - tail), confidence: confidence,
                        resamples: r.count, groups: groups, samples: samples)
    }

    // MARK: - Linear algebra (float64, small n)

    static func multiply(_ x: [Double], _ y: [Double], n: Int) -> [Double] {
        var out = [Double](repeating: 0, count: n * n)
        out.withUnsafeMutableBufferPointer { o in
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeBufferPointer { yp in
                    for i in 0..<n {
                        for k in 0..<n {
                            let xik = xp[i * n + k]
                            if xik == 0 { continue }
                            let yr = k * n, orow = i * n
                            for j in 0..<n { o[orow + j] += xik * yp[yr + j] }
                        }
                    }
                }
            }
        }
        return out
    }

    static func symmetrize(_ m: inout [Double], n: Int) {
        for i in 0..<n {
            for j in (i + 1)..<max(i + 1, n) {
                let v = 0.5 * (m[i * n + j] + m[j * n + i])
                m[i * n + j] = v; m[j * n + i] = v
            }
        }
    }

    /// Eigenvalues and eigenvectors (columns of `vectors`, row-major n x n) of a symmetric matrix:
    /// LAPACK dsyevd when OpenBLAS provides it, else cyclic Jacobi (`SymmetricEigen.jacobi`).
    public static func eigen(_ input: [Double], n: Int) -> (values: [Double], vectors: [Double]) {
        var a = input, w = [Double](repeating: 0, count: n)
        let info = a.withUnsafeMutableBufferPointer { ap in
            w.withUnsafeMutableBufferPointer { wp in rt_dsyevd(Int32(n), ap.baseAddress, wp.baseAddress) }
        }
        guard info == 0 else { return SymmetricEigen.jacobi(input, n: n) }
        // LAPACK's column-major vectors: vector k is a[k*n ..< k*n+n]; return them as columns.
        var v = [Double](repeating: 0, count: n * n)
        for k in 0..<n { for i in 0..<n { v[i * n + k] = a[k * n + i] } }
        return (w, v)
    }
}
