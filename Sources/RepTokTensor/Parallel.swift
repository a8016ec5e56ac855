import Foundation
import CBLASLoader

/// Thread control for the engine.
///
/// The thread contract (one statement, docs/ARCHITECTURE.md "Threads"): the number of threads
/// never changes a result. Work is split into chunks whose boundaries depend only on the problem
/// size, never on the thread count, and each output element is always computed by the same code
/// in the same order; so encoding, decoding and generating give the same bytes, and every
/// training step the same weights, with any thread count: a training run resumed with another
/// thread count continues bit for bit. `REPTOK_THREADS=1` runs everything on one core. Tested:
/// ThreadInvarianceTests (kernels), SamplerTests (the packed decoder paths), CLITests (rtenc and
/// rtdec bytes), TrainTests and GeneratorTrainerTests (runs resumed with another thread count).
public enum Engine {
    /// Worker threads for elementwise work and BLAS (default: all cores, or REPTOK_THREADS).
    public private(set) static var threads: Int = {
        if let s = ProcessInfo.processInfo.environment["REPTOK_THREADS"], let n = Int(s), n >= 1 {
            return n
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// OpenBLAS always runs on one thread; products are split by BLAS.gemm (see there).
    private static let setup: Void = { rt_blas_set_threads(1) }()

    /// Sets the thread count of the engine's loops and product splits.
    public static func setThreads(_ n: Int) {
        ensureSetup()
        threads = max(1, n)
    }

    /// Makes sure OpenBLAS is set up (called by kernels before the first BLAS call).
    @inline(__always) public static func ensureSetup() { _ = setup }

    /// Runs `body(chunk)` for chunk in 0..<chunks, on up to `threads` threads.
    public static func parallelFor(_ chunks: Int, _ body: (Int) -> Void) {
        if chunks <= 1 || threads <= 1 {
            for i in 0..<chunks { body(i) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: chunks) { body($0) }
    }

    /// Splits `n` rows into chunks of at least `minRowsPerChunk` rows, at most 8 chunks,
    /// independently of the thread count, and runs `body(r0, r1)` for each.
    public static func rows(_ n: Int, work perRow: Int, _ body: (Int, Int) -> Void) {
        // Below ~256k element-ops a split costs more than it saves (about 1 ms of work is the bar
        // for the heavier kernels; cheap ones are left serial by their callers).
        let total = n * perRow
        let chunks = total < (1 << 18) ? 1 : min(8, max(1, n / 16))
        if chunks == 1 { body(0, n); return }
        let per = (n + chunks - 1) / chunks
        parallelFor(chunks) { c in
            let r0 = c * per, r1 = min(n, r0 + per)
            if r0 < r1 { body(r0, r1) }
        }
    }
}

