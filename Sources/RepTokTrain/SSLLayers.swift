import Foundation
import RepTokNN
import RepTokTensor

// The pieces of DINO self-supervised training that the engine does not have: row L2
// normalization, a weight-normalized linear layer (g fixed to 1), the DINO projection head, the
// DINO cross-entropy loss with teacher centering and sharpening, and the KoLeo regularizer.
// Backward functions follow the engine's contract: gradients of parameters ACCUMULATE (+=);
// input gradients are returned as new tensors.

public enum SSLOps {
    // MARK: - L2 normalization of rows

    /// y = x / max(||x||, eps) per row of [N, C] (F.normalize). Returns y and the row norms.
    public static func l2Normalize(_ x: Tensor, eps: Float = 1e-12) -> (y: Tensor, norms: [Float]) {
        let C = x.shape.last!, n = x.count / C
        let y = Tensor(uninitialized: x.shape)
        var norms = [Float](repeating: 0, count: n)
        for r in 0..<n {
            let p = x.data + r * C, q = y.data + r * C
            var ss = 0.0
            for i in 0..<C { ss += Double(p[i]) * Double(p[i]) }
            let nr = Float(ss.squareRoot())
            norms[r] = nr
            let inv = 1 / max(nr, eps)
            for i in 0..<C { q[i] = p[i] * inv }
        }
        return (y, norms)
    }

    /// dx = (dy - y <y, dy>) / ||x|| (rows whose norm was clamped at eps: dx = dy / eps).
    public static func l2NormalizeBackward(_ dy: Tensor, y: Tensor, norms: [Float], eps: Float = 1e-12) -> Tensor {
        let C = y.shape.last!, n = y.count / C
        let dx = Tensor(uninitialized: y.shape)
        for r in 0..<n {
            let g = dy.data + r * C, q = y.data + r * C, o = dx.data + r * C
            if norms[r] <= eps {
                for i in 0..<C { o[i] = g[i] / eps }
                continue
            }
            var d = 0.0
            for i in 0..<C { d += Double(q[i]) * Double(g[i]) }
            let dd = Float(d), inv = 1 / norms[r]
            for i in 0..<C { o[i] = (g[i] - q[i] * dd) * inv }
        }
        return dx
    }

    // MARK: - Weight normalization (g = 1)

    /// W_n = V / ||V||_row for a [out, in] weight. Returns W_n and the row norms.
    public static func weightNorm(_ v: Tensor, eps: Float = 1e-12) -> (w: Tensor, norms: [Float]) {
        let (y, n) = l2Normalize(v, eps: eps)
        return (y, n)
    }

    /// dV += (dW - W_n <W_n, dW>_row) / ||V||_row.
    public static func weightNormBackward(_ dw: Tensor, w: Tensor, norms: [Float], into dv: Tensor, eps: Float = 1e-12) {
        let g = l2NormalizeBackward(dw, y: w, norms: norms, eps: eps)
        Ops.addInPlace(dv, g)
    }

    // MARK: - DINO loss

    /// Teacher targets: softmax((t - center) / temp) per row of [N, K].
    public static func teacherProbs(_ t: Tensor, center: Tensor, temp: Float) -> Tensor {
        let K = t.shape.last!, n = t.count / K
        precondition(center.count == K, "teacherProbs: center \(center.shape) vs K \(K)")
        let p = Tensor(uninitialized: t.shape)
        for r in 0..<n {
            let a = t.data + r * K, o = p.data + r * K
            var m = -Float.infinity
            for k in 0..<K { o[k] = (a[k] - center.data[k]) / temp; m = max(m, o[k]) }
            var s = 0.0
            for k in 0..<K { let e = expf(o[k] - m); o[k] = e; s += Double(e) }
            let inv = Float(1 / s)
            for k in 0..<K { o[k] *= inv }
        }
        return p
    }

    /// The DINO loss for one group of student crops, and its gradient with respect to their
    /// logits.
    ///
    /// `teacher`: the teacher's target probabilities for the G global views, view-major
    /// ([G*B, K], row v*B + b). `student`: logits of the crops `views` (view-major, [V*B, K], row
    /// i*B + b is crop `views[i]` of sample b; crop ids 0..<G are the global views, the same
    /// crops the teacher saw). Each (teacher view g, student crop v) pair with g != v adds
    /// mean_b CE(t_gb, softmax(s_vb / temp)); the total is divided by `pairs` (the number of pairs
    /// over ALL crops of the step, so that the groups' losses and gradients add up).
    public static func dinoLoss(student: Tensor, views: [Int], teacher: Tensor, G: Int, B: Int,
                                temp: Float, pairs: Int) -> (loss: Double, grad: Tensor) {
        let K = student.shape.last!
        precondition(student.count == views.count * B * K, "dinoLoss: student \(student.shape), \(views.count) views, B \(B)")
        precondition(teacher.count == G * B * K, "dinoLoss: teacher \(teacher.shape), G \(G), B \(B)")
        let grad = Tensor(uninitialized: student.shape)
        let scale = 1 / (Float(pairs) * Float(B))
        var total = 0.0
        var logp = [Float](repeating: 0, count: K), tsum = [Float](repeating: 0, count: K)
        for (i, v) in views.enumerated() {
            let partners = (0..<G).filter { $0 != v }
            for b in 0..<B {
                let s = student.data + (i * B + b) * K, g = grad.data + (i * B + b) * K
                // log_softmax(s / temp)
                var m = -Float.infinity
                for k in 0..<K { logp[k] = s[k] / temp; m = max(m, logp[k]) }
                var z = 0.0
                for k in 0..<K { z += Double(expf(logp[k] - m)) }
                let lz = m + Float(log(z))
                for k in 0..<K { logp[k] -= lz }
                for k in 0..<K { tsum[k] = 0 }
                var ce = 0.0
                for gv in partners {
                    let t = teacher.data + (gv * B + b) * K
                    for k in 0..<K { tsum[k] += t[k]; ce -= Double(t[k]) * Double(logp[k]) }
                }
                total += ce
                // d/ds_k = (n p_k - sum_g t_gk) / temp, with sum_k t_gk = 1
                let np = Float(partners.count), k1 = scale / temp
                for k in 0..<K { g[k] = k1 * (np * expf(logp[k]) - tsum[k]) }
            }
        }
        return (total / (Double(pairs) * Double(B)), grad)
    }

    /// center <- m center + (1 - m) mean over rows of t ([N, K]).
    public static func updateCenter(_ center: Tensor, teacherLogits t: Tensor, momentum m: Float) {
        let K = center.count, n = t.count / K
        var acc = [Double](repeating: 0, count: K)
        for r in 0..<n { for k in 0..<K { acc[k] += Double(t.data[r * K + k]) } }
        for k in 0..<K { center.data[k] = m * center.data[k] + (1 - m) * Float(acc[k] / Double(n)) }
    }

    /// Mean per-row entropy of probabilities [N, K], and the entropy of their mean row (nats).
    /// DINO's two collapse modes: uniform outputs (both near log K) and one dominant
    /// prototype (both near 0). Healthy training: the first low, the second high.
    public static func entropies(_ p: Tensor) -> (rowMean: Double, ofMean: Double) {
        let K = p.shape.last!, n = p.count / K
        var mean = [Double](repeating: 0, count: K), h = 0.0
        for r in 0..<n {
            for k in 0..<K {
                let v = Double(p.data[r * K + k])
                mean[k] += v
                if v > 0 { h -= v * log(v) }
            }
        }
        var hm = 0.0
        for k in 0..<K { let v = mean[k] / Double(n); if v > 0 { hm -= v * log(v) } }
        return (h / Double(n), hm)
    }

    // MARK: - KoLeo

    /// KoLeo regularizer (DINOv2): x rows are L2-normalized, each row's nearest other row (by
    /// inner product) is found, loss = -mean_i log(||y_i - y_nn(i) + eps|| + eps). Returns the
    /// loss and d(loss)/dx scaled by `weight` ([N, D]; the gradient reaches both ends of each
    /// pair, as in PyTorch). Needs N >= 2.
    public static func koleo(_ x: Tensor, weight: Float, eps: Float = 1e-8) -> (loss: Double, grad: Tensor) {
        let D = x.shape.last!, n = x.count / D
        precondition(n >= 2, "koleo needs at least 2 rows")
        let (y, norms) = l2Normalize(x, eps: eps)
        var nn = [Int](repeating: 0, count: n)
        for i in 0..<n {
            var best = -Float.infinity, bj = i == 0 ? 1 : 0
            for j in 0..<n where j != i {
                var d: Float = 0
                for k in 0..<D { d += y.data[i * D + k] * y.data[j * D + k] }
                if d > best { best = d; bj = j }
            }
            nn[i] = bj
        }
        let dy = Tensor([n, D])
        var total = 0.0
        var diff = [Float](repeating: 0, count: D)
        for i in 0..<n {
            let j = nn[i]
            var ss = 0.0
            for k in 0..<D {
                diff[k] = y.data[i * D + k] - y.data[j * D + k] + eps
                ss += Double(diff[k]) * Double(diff[k])
            }
            let dist = Float(ss.squareRoot())
            total -= log(Double(dist) + Double(eps))
            // d(-log(dist + eps))/d diff = -diff / (dist (dist + eps))
            let c = -weight / Float(n) / (max(dist, 1e-30) * (dist + eps))
            for k in 0..<D {
                dy.data[i * D + k] += c * diff[k]
                dy.data[j * D + k] -= c * diff[k]
            }
        }
        let dx = l2NormalizeBackward(dy, y: y, norms: norms, eps: eps)
        return (total / Double(n), dx)
    }
}

// MARK: - Weight-normalized linear layer

/// y = x W_n^T with W_n = V / ||V||_row (weight norm with the gain g fixed to 1, as DINO's last
/// layer with norm_last_layer). Key: `<prefix>.weight` (V, [out, in]). No bias.
public final class WeightNormLinear: Module {
    public let weight: Parameter
    public let inFeatures: Int, outFeatures: Int
    private var input: Tensor?, wn: Tensor?, norms: [Float] = []

    public init(_ prefix: String, _ inFeatures: Int, _ outFeatures: Int) {
        self.inFeatures = inFeatures; self.outFeatures = outFeatures
        weight = Parameter(prefix + ".weight", Tensor([outFeatures, inFeatures]), decay: true)
    }

    public var parameters: [Parameter] { [weight] }

    public func forward(_ x: Tensor, mode: ForwardMode = .training) -> Tensor {
        let (w, n) = SSLOps.weightNorm(weight.value)
        if mode == .training { input = x; wn = w; norms = n }
        return Ops.linear(x, w, nil)
    }

    /// Accumulates dV (when trainable); returns dx.
    public func backward(_ dy: Tensor) -> Tensor {
        guard let x = input, let w = wn else { preconditionFailure("WeightNormLinear.backward without forward") }
        let dx = Tensor(x.shape)
        if let dv = weight.g {
            let dw = Tensor(w.shape)
            Ops.linearBackward(dy, x, w, dx: dx, dw: dw, db: nil)
            SSLOps.weightNormBackward(dw, w: w, norms: norms, into: dv)
        } else {
            Ops.linearBackward(dy, x, w, dx: dx, dw: nil, db: nil)
        }
        return dx
    }
}

// MARK: - DINO head

/// DINO projection head: MLP (in -> hidden -> GELU -> hidden -> GELU -> bottleneck), L2
/// normalization, then a weight-normalized linear layer to K prototype logits.
/// Keys (relative): `mlp.0`, `mlp.2`, `mlp.4` (Linear), `last_layer.weight` (V).
public final class DINOHead: Module {
    public let fc1: Linear, fc2: Linear, fc3: Linear
    public let lastLayer: WeightNormLinear
    private var h1: Tensor?, h2: Tensor?, zn: Tensor?, znorms: [Float] = []

    public init(inDim: Int, hidden: Int, bottleneck: Int, prototypes: Int) {
        fc1 = Linear("mlp.0", inDim, hidden)
        fc2 = Linear("mlp.2", hidden, hidden)
        fc3 = Linear("mlp.4", hidden, bottleneck)
        lastLayer = WeightNormLinear("last_layer", bottleneck, prototypes)
    }

    public var parameters: [Parameter] { fc1.parameters + fc2.parameters + fc3.parameters + lastLayer.parameters }

    /// DINO's init: truncated normal(0.02) for the MLP weights, zero biases; the last layer as
    /// PyTorch's nn.Linear default (uniform, bound 1/sqrt(in)).
    public func initialize(seed: UInt64) {
        var rng = InitRNG(seed: seed)
        for l in [fc1, fc2, fc3] {
            rng.truncNormal(l.weight.value, std: 0.02)
            l.bias?.value.zero()
        }
        rng.fillUniform(lastLayer.weight.value, bound: 1 / Double(lastLayer.inFeatures).squareRoot())
    }

    /// x: [N, in] -> logits [N, K].
    public func forward(_ x: Tensor, mode: ForwardMode = .training) -> Tensor {
        let a1 = fc1.forward(x, mode: mode)
        let g1 = Ops.gelu(a1)
        let a2 = fc2.forward(g1, mode: mode)
        let g2 = Ops.gelu(a2)
        let z = fc3.forward(g2, mode: mode)
        let (zn, nz) = SSLOps.l2Normalize(z)
        if mode == .training { h1 = a1; h2 = a2; self.zn = zn; znorms = nz }
        return lastLayer.forward(zn, mode: mode)
    }

    /// Accumulates parameter gradients; returns d(input).
    public func backward(_ dlogits: Tensor) -> Tensor {
        guard let a1 = h1, let a2 = h2, let zn = zn else { preconditionFailure("DINOHead.backward without forward") }
        let dzn = lastLayer.backward(dlogits)
        let dz = SSLOps.l2NormalizeBackward(dzn, y: zn, norms: znorms)
        let dg2 = fc3.backward(dz)!
        let da2 = Tensor(a2.shape)
        Ops.geluBackward(dg2, a2, dx: da2)
        let dg1 = fc2.backward(da2)!
        let da1 = Tensor(a1.shape)
        Ops.geluBackward(dg1, a1, dx: da1)
        return fc1.backward(da1)!
    }

    /// Drops cached activations.
    public func release() {
        h1 = nil; h2 = nil; zn = nil
        fc1.release(); fc2.release(); fc3.release()
    }
}
