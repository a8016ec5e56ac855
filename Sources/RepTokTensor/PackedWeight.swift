import Foundation
import CRTKernels

/// A linear layer's weight [N, K] repacked once for inference products (`Ops.linear(_:packed:_:)`).
///
/// The products of a batch-1 decode are small (257 rows): OpenBLAS repacks the weight on every
/// call, which measured 12% of a decoder forward (`perf` on `rtbench --profile-forward`). A
/// decoder keeps its weights for thousands of forwards, so the codec packs them once at load, as
/// oneDNN does with its weight prepacking. Each output element is one FMA chain over k in order,
/// so the result never depends on how rows or panels are split across threads.
///
/// The pack is a snapshot: a weight changed after packing is not seen (repack, or drop the pack).
/// Only built on CPUs with AVX2/FMA (`PackedWeight(_:)` returns nil elsewhere).
public final class PackedWeight {
    public let N: Int, K: Int
    let data: UnsafeMutablePointer<Float>

    public static var isSupported: Bool { CPU.hasAVX2FMA }

    /// Packs `w`, viewed as [N = w.shape[0], K = w.count / N]; nil when the CPU lacks AVX2/FMA.
    public init?(_ w: Tensor) {
        guard PackedWeight.isSupported, w.rank >= 1, w.shape[0] > 0 else { return nil }
        N = w.shape[0]; K = w.count / N
        let floats = rt_gemm_packed_floats(N, K)
        guard let raw = aligned_alloc(64, max(64, (floats * 4 + 63) / 64 * 64)) else { return nil }
        data = raw.bindMemory(to: Float.self, capacity: max(floats, 1))
        rt_gemm_pack(data, w.data, N, K, K)
        PackedWeight.lock.lock(); PackedWeight.bytes += floats * 4; PackedWeight.lock.unlock()
        self.floats = floats
    }

    private let floats: Int
    /// The packed panels (`rt_gemm_packed`'s `Wp`).
    public var panels: UnsafePointer<Float> { UnsafePointer(data) }
    deinit {
        free(data)
        PackedWeight.lock.lock(); PackedWeight.bytes -= floats * 4; PackedWeight.lock.unlock()
    }

    /// Where a row split of `n` rows in two halves cuts: near the middle, on a 6-row tile edge
    /// (shape only; results do not depend on it).
    public static func firstHalf(_ n: Int) -> Int { min(n, (n / 2 + 5) / 6 * 6) }

    private static let lock = NSLock()
    /// Bytes held by live packs (for tests and memory reports).
    public private(set) static var bytes = 0
}

extension Ops {
    public enum Activation: Int32 { case none = 0, gelu = 1 }

    /// y = act(x W^T + b) with W pre-packed: x [rows, K] -> [rows, N].
    public static func linear(_ x: Tensor, packed w: PackedWeight, _ b: Tensor?, activation: Activation = .none) -> Tensor {
        precondition(x.count % w.K == 0 && (w.K > 0 || x.count == 0), "linear: input \(x.shape) vs packed weight [\(w.N), \(w.K)]")
        precondition(b == nil || b!.count == w.N, "linear: bias \(b!.shape) vs packed weight [\(w.N), \(w.K)]")
        let n = w.K > 0 ? x.count / w.K : 0
        let y = Tensor(uninitialized: [n, w.N])
        linear(into: y.data, ldy: w.N, x.data, n: n, packed: w, b, activation: activation)
        return y
    }

    /// One-thread form for callers that already split rows across threads: rows [0, n) of x
    /// (row stride `ldx`) into y (row stride `ldy`).
    public static func linearOneThread(into y: UnsafeMutablePointer<Float>, ldy: Int, _ x: UnsafePointer<Float>, ldx: Int,
                                       n: Int, packed w: PackedWeight, _ b: Tensor?, activation: Activation = .none) {
        rt_gemm_packed(y, ldy, x, ldx, w.data, b?.data, w.N, w.K, 0, n, 0, (w.N + 15) / 16, activation.rawValue)
    }

    /// Strided form: writes rows of stride `ldy` (a column block of a wider output).
    public static func linear(into y: UnsafeMutablePointer<Float>, ldy: Int, _ x: UnsafePointer<Float>, n: Int,
                              packed w: PackedWeight, _ b: Tensor?, activation: Activation = .none) {
        let panels = (w.N + 15) / 16
        let bias = b?.data
        // Two halves on the engine's threads once a call is worth it (the split is by shape
        // only, and results do not depend on it anyway): rows when there are enough, else panels.
        if 2 * n * w.N * w.K < (1 << 21) || (n < 192 && panels < 2) {
            linearOneThread(into: y, ldy: ldy, x, ldx: w.K, n: n, packed: w, b, activation: activation)
            return
        }
        if n >= 192 && n >= 4 * panels {
            let half = PackedWeight.firstHalf(n)
            Engine.parallelFor(2) { part in
                let r0 = part == 0 ? 0 : half, r1 = part == 0 ? half : n
                rt_gemm_packed(y, ldy, x, w.K, w.data, bias, w.N, w.K, r0, r1, 0, panels, activation.rawValue)
            }
        } else {
            let half = (panels + 1) / 2
            Engine.parallelFor(2) { part in
                let p0 = part == 0 ? 0 : half, p1 = part == 0 ? half : panels
                rt_gemm_packed(y, ldy, x, w.K, w.data, bias, w.N, w.K, 0, n, p0, p1, activation.rawValue)
            }
        }
    }
}
