import Foundation
import RepTokCodec
import RepTokData
import RepTokEval
import RepTokModels
import RepTokNN
import RepTokTensor

/// Starts the layout path at the linear code: after `apply`, a 1-step decode of the model (whose
/// flow network outputs zero at initialization) is the PCA reconstruction of the picture from m
/// coefficients, read from the coarse picture by a ridge regression.
///
/// - The encoder side (`adapter.layout`): a = F^T (coarse(x) - mean), the ridge regression
///   (dual form, over the training views) of the views' PCA coefficients on their k x k box
///   means; the token carries s a, with s chosen so that the layout coordinates hold `share`
///   of the SSL token's mean energy (E|s a|^2 = share E|c|^2): the token stays near the SSL token.
/// - The decoder side (`decoder.latent_skip`): skip = P(mean) + P(basis) (z_layout / s), with P
///   the least-squares inverse of the skip's bilinear upsampling, so upsample(skip) is the PCA
///   reconstruction up to what a k_s x k_s image cannot hold; the SSL coordinates get zero weight.
public enum LayoutInit {
    public struct Report: Codable, Sendable {
        public var views: Int
        public var components: Int
        public var scale: Double
        public var sslEnergy: Double
        public var layoutEnergy: Double
        /// Mean PSNR of the init's linear reconstruction over the fitting views (0...255, rounded).
        public var trainPSNR: Double
        /// The first (up to 8) views: PSNR of the model's own 1-step decode, and of the linear
        /// reconstruction it should equal.
        public var modelPSNR: Double
        public var linearPSNR: Double
    }

    public static func apply(model: RepTokModel, data: PackedDataset, share: Double = 0.1,
                             log: (String) -> Void = { _ in }) throws -> Report {
        let adapter = model.adapter, dec = model.decoder.config
        guard let layout = adapter.layout else { throw TrainError.config("the model has no layout path") }
        let S = dec.imageSize, m = adapter.layoutDim, k = adapter.layoutSize, D = adapter.dim, ks = dec.skipSize
        guard ks > 0, let skipW = model.decoder.parameters.first(where: { $0.key == "latent_skip.weight" }),
              let skipB = model.decoder.parameters.first(where: { $0.key == "latent_skip.bias" }) else {
            throw TrainError.config("the layout path needs the decoder's latent skip (--skip-size)")
        }
        let (x, n) = LinearCode.views(data, size: S, flips: true)
        guard n > m else { throw TrainError.data("\(n) views for \(m) layout coordinates: need more pictures") }
        log("layout init: PCA of \(n) views at \(S)x\(S), \(m) components")
        let code = LinearCode.fit(views: x, count: n, size: S, components: m)
        let d = 3 * S * S, kk = 3 * k * k
        let coef = code.coefficients(x, count: n)                        // [n, m], 0...255 units
        // coarse views (0...255) and their mean
        let xt = Tensor([n, 3, S, S], x)
        let xc = TokenAdapter.coarse(xt, size: k)                        // [n, 3 k^2]
        var cmean = [Double](repeating: 0, count: kk)
        for r in 0..<n { for j in 0..<kk { cmean[j] += Double(xc.data[r * kk + j]) } }
        for j in 0..<kk { cmean[j] /= Double(n) }
        for r in 0..<n { for j in 0..<kk { xc.data[r * kk + j] -= Float(cmean[j]) } }
        // dual ridge: F^T = A^T (Xc Xc^T + lambda I)^-1 Xc
        let kg = BLAS.matmul(xc, xc, transB: true)
        var g = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { g[i * n + j] = 0.5 * (Double(kg.data[i * n + j]) + Double(kg.data[j * n + i])) } }
        let lambda = Double(n)                                           // 1 per view, in pixel^2: a light ridge
        let (w, v) = Frechet.eigen(g, n: n)
        // M = V diag(1 / (w + lambda)) V^T A  [n, m]
        var vta = [Double](repeating: 0, count: n * m)
        for e in 0..<n {
            let inv = 1 / (max(w[e], 0) + lambda)
            for j in 0..<m {
                var s = 0.0
                for r in 0..<n { s += v[r * n + e] * Double(coef[r * m + j]) }
                vta[e * m + j] = s * inv
            }
        }
        let mt = Tensor(uninitialized: [m, n])
        for r in 0..<n {
            for j in 0..<m {
                var s = 0.0
                for e in 0..<n { s += v[r * n + e] * vta[e * m + j] }
                mt.data[j * n + r] = Float(s)
            }
        }
        let ft = BLAS.matmul(mt, xc)                                     // [m, 3 k^2]
        let ahat = BLAS.matmul(xc, ft, transB: true)                     // [n, m] predicted coefficients
        var layoutEnergy = 0.0
        for i in 0..<ahat.count { layoutEnergy += Double(ahat.data[i]) * Double(ahat.data[i]) }
        layoutEnergy /= Double(n)
        // the SSL token's energy on (up to) 64 views
        let nt = min(n, 64)
        let px = Tensor([nt, 3, S, S], Array(x[0..<nt * d]))
        let c = model.encoder.forward(model.encoder.normalize(pixels255: px)).token
        var sslEnergy = 0.0
        for i in 0..<c.count { sslEnergy += Double(c.data[i]) * Double(c.data[i]) }
        sslEnergy /= Double(nt)
        let s = (share * sslEnergy / max(layoutEnergy, 1e-12)).squareRoot()
        // encoder side, on decoder-space input u = x / 127.5 - 1 (x = 127.5 (u + 1)):
        // s F^T (x_c - cmean) = 127.5 s F^T u_c + s F^T (127.5 - cmean)
        let lw = layout.weight.value, lb = layout.bias!.value
        for j in 0..<m {
            var bias = 0.0
            for i in 0..<kk {
                let f = Double(ft.data[j * kk + i])
                lw.data[j * kk + i] = Float(127.5 * s * f)
                bias += f * (127.5 - cmean[i])
            }
            lb.data[j] = Float(s * bias)
        }
        // decoder side: skip = P(mean / 127.5 - 1) + sum_j P(basis_j) / (127.5 s) z_(D + j)
        let planes = Tensor(uninitialized: [m + 1, 3, S, S])
        for i in 0..<d { planes.data[i] = code.mean[i] / 127.5 - 1 }
        for j in 0..<m { (planes.data + (j + 1) * d).update(from: code.basis.withUnsafeBufferPointer { $0.baseAddress! + j * d }, count: d) }
        let small = leastSquaresDownsample(planes, from: S, to: ks)      // [m + 1, 3, ks, ks]
        let q = 3 * ks * ks, T = D + m
        precondition(skipW.value.shape == [q, T], "latent_skip.weight \(skipW.value.shape)")
        skipW.value.zero()
        for i in 0..<q {
            skipB.value.data[i] = small.data[i]
            for j in 0..<m { skipW.value.data[i * T + D + j] = Float(Double(small.data[(j + 1) * q + i]) / (127.5 * s)) }
        }
        // the linear reconstruction of the fitting views, as the model will decode it
        let up = Ops.upsampleBilinear(small, size: S)
        let upBasis = Tensor(uninitialized: [m, d])
        upBasis.data.update(from: up.data + d, count: m * d)
        let rec = BLAS.matmul(ahat, upBasis)                             // [n, d]
        var psnr = 0.0
        for r in 0..<n {
            var se = 0.0
            for i in 0..<d {
                let u = Double(up.data[i]) + Double(rec.data[r * d + i]) / 127.5
                let p = min(max(((u + 1) * 127.5).rounded(), 0), 255)
                let e = p - Double(x[r * d + i]); se += e * e
            }
            psnr += se == 0 ? 99 : 10 * log10(255 * 255 / (se / Double(d)))
        }
        // the same through the model itself (1-step decode of the first views' latents)
        let nm = min(n, 8)
        let z = TokenAdapter.latent(encoder: model.encoder, adapter: adapter, pixels255: Tensor([nm, 3, S, S], Array(x[0..<nm * d])))
        let out = model.decoder.infer(Exporter.recordNoise(batch: nm, size: S), t: [Float](repeating: 1, count: nm), z: z)
        var modelPSNR = 0.0, linearPSNR = 0.0
        for r in 0..<nm {
            let se = x.withUnsafeBufferPointer {
                Codec.squaredError8(decoderSpace: out.data + r * d, reference: $0.baseAddress! + r * d, count: d)
            }
            var sl = 0.0
            for i in 0..<d {
                let l = min(max(((Double(up.data[i]) + Double(rec.data[r * d + i]) / 127.5 + 1) * 127.5).rounded(), 0), 255)
                sl += (l - Double(x[r * d + i])) * (l - Double(x[r * d + i]))
            }
            modelPSNR += 10 * log10(255 * 255 / max(se / Double(d), 1e-10))
            linearPSNR += 10 * log10(255 * 255 / max(sl / Double(d), 1e-10))
        }
        let report = Report(views: n, components: m, scale: s, sslEnergy: sslEnergy, layoutEnergy: layoutEnergy * s * s,
                            trainPSNR: psnr / Double(n), modelPSNR: modelPSNR / Double(nm), linearPSNR: linearPSNR / Double(nm))
        log(String(format: "layout init: scale %.4g, layout energy %.4g vs SSL %.4g; linear reconstruction of the views %.2f dB; first %d through the model %.2f dB (linear %.2f)",
                   s, report.layoutEnergy, sslEnergy, report.trainPSNR, nm, modelPSNR / Double(nm), linearPSNR / Double(nm)))
        return report
    }

    /// Per plane, the k x k image whose bilinear upsampling (Ops.upsampleBilinear) is closest
    /// in least squares to the S x S plane: G^-1 U^T X U G^-1 with G = U^T U.
    public static func leastSquaresDownsample(_ x: Tensor, from S: Int, to k: Int) -> Tensor {
        let ut = Ops.upsampleBilinearBackward(x, from: k)                // U^T X U
        let u = Ops.bilinearMatrix(from: k, to: S)                       // [S, k]
        var g = [Double](repeating: 0, count: k * k)
        for a in 0..<k { for b in 0..<k { var s = 0.0; for r in 0..<S { s += Double(u[r * k + a]) * Double(u[r * k + b]) }; g[a * k + b] = s } }
        let (w, v) = Frechet.eigen(g, n: k)
        var ginv = [Double](repeating: 0, count: k * k)
        for a in 0..<k { for b in 0..<k { var s = 0.0; for e in 0..<k { s += v[a * k + e] * v[b * k + e] / max(w[e], 1e-12) }; ginv[a * k + b] = s } }
        let planes = x.count / (S * S)
        let out = Tensor(uninitialized: [x.shape[0], x.shape[1], k, k])
        var tmp = [Double](repeating: 0, count: k * k)
        for p in 0..<planes {
            let src = ut.data + p * k * k, dst = out.data + p * k * k
            for a in 0..<k { for b in 0..<k { var s = 0.0; for e in 0..<k { s += ginv[a * k + e] * Double(src[e * k + b]) }; tmp[a * k + b] = s } }
            for a in 0..<k { for b in 0..<k { var s = 0.0; for e in 0..<k { s += tmp[a * k + e] * ginv[e * k + b] }; dst[a * k + b] = Float(s) } }
        }
        return out
    }
}
