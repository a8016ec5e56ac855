import RepTokTestSupport
import RepTokTensor
import XCTest

/// The engine promises that the thread count never changes results. Each kernel is run on
/// inputs large enough to be split, with 1 and with 2 threads, and the outputs must be
/// bit-identical. The previous thread count is restored afterwards.
final class ThreadInvarianceTests: XCTestCase {
    /// Runs `body` with 1 and with 2 threads and compares every returned tensor bit for bit.
    private func assertInvariant(_ what: String, file: StaticString = #filePath, line: UInt = #line,
                                 _ body: () -> [Tensor]) {
        let one = withThreads(1, body), two = withThreads(2, body)
        XCTAssertEqual(one.count, two.count)
        for (k, (a, b)) in zip(one, two).enumerated() {
            assertBitIdentical(a, b, "\(what) output #\(k), 1 vs 2 threads", file: file, line: line)
        }
    }

    func testLayerNormAndRMSNorm() {
        var rng = SeededRNG(111)
        let (n, C) = (2048, 256)
        let x = randn([n, C], &rng, std: 2, mean: 0.5), w = randn([C], &rng, std: 0.3, mean: 1), b = randn([C], &rng)
        let dy = randn([n, C], &rng)
        assertInvariant("layerNorm fwd/bwd") {
            let (y, cache) = Ops.layerNorm(x, w, b, eps: 1e-6)
            let dx = Tensor([n, C]), dw = Tensor([C]), db = Tensor([C])
            Ops.layerNormBackward(dy, x, cache, w, dx: dx, dw: dw, db: db)
            return [y, cache.mean!, cache.rstd, dx, dw, db]
        }
        assertInvariant("rmsNorm fwd/bwd") {
            let (y, cache) = Ops.rmsNorm(x, w, eps: 1e-6)
            let dx = Tensor([n, C]), dw = Tensor([C])
            Ops.rmsNormBackward(dy, x, cache, w, dx: dx, dw: dw)
            return [y, cache.rstd, dx, dw]
        }
    }

    func testGELUAndSoftmax() {
        var rng = SeededRNG(112)
        let x = randn([1 << 21], &rng, std: 2), dy = randn([1 << 21], &rng)
        assertInvariant("gelu fwd/bwd (2M)") {
            let dx = Tensor([1 << 21])
            Ops.geluBackward(dy, x, dx: dx)
            return [Ops.gelu(x), dx]
        }
        let s = randn([2048, 128], &rng, std: 2)
        assertInvariant("softmax") { [Ops.softmax(s, scale: 0.3)] }
    }

    func testLinearAndColumnSum() {
        var rng = SeededRNG(113)
        let (n, inF, outF) = (512, 256, 384)
        let x = randn([n, inF], &rng), w = randn([outF, inF], &rng, std: 0.1), b = randn([outF], &rng)
        let dy = randn([n, outF], &rng)
        assertInvariant("linear fwd/bwd") {
            let dx = Tensor([n, inF]), dw = Tensor([outF, inF]), db = Tensor([outF])
            Ops.linearBackward(dy, x, w, dx: dx, dw: dw, db: db)
            return [Ops.linear(x, w, b), dx, dw, db]
        }
        let big = randn([2048, 256], &rng)
        assertInvariant("columnSum (chunked)") {
            let out = Tensor([256])
            Ops.columnSum(big.data, rows: 2048, cols: 256, into: out.data)
            return [out]
        }
    }

    func testAttention() {
        var rng = SeededRNG(114)
        let (B, T, heads, dh) = (4, 64, 4, 16), C = heads * dh
        let qkv = randn([B * T, 3 * C], &rng), dout = randn([B * T, C], &rng)
        assertInvariant("attention fwd/bwd") {
            let (out, cache) = Attention.forward(qkv, B: B, T: T, heads: heads)
            return [out, cache!.probs, Attention.backward(dout, qkv, cache!)]
        }
        assertInvariant("attention, inference path") {
            [Attention.forward(qkv, B: B, T: T, heads: heads, keepProbs: false).0]
        }
    }

    func testThreadCountRestored() {
        let before = Engine.threads
        _ = withThreads(1) { Engine.threads }
        XCTAssertEqual(Engine.threads, before)
    }
}
