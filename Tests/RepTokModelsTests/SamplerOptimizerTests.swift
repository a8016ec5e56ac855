import Foundation
import RepTokModels
import RepTokNN
import RepTokTensor
import RepTokTestSupport
import XCTest

final class PhiloxTests: XCTestCase {
    /// Known-answer vectors of Random123's Philox4x32-10 (kat_vectors).
    func testKnownAnswers() {
        let a = Philox4x32(seed: 0).block(0, 0, 0, 0)
        XCTAssertEqual([a.0, a.1, a.2, a.3], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8])
        let k = Philox4x32(seed: UInt64(0x299f31d0) << 32 | 0xa4093822)
        let b = k.block(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344)
        XCTAssertEqual([b.0, b.1, b.2, b.3], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1])
        let c = Philox4x32(seed: 0xffffffff_ffffffff).block(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff)
        XCTAssertEqual([c.0, c.1, c.2, c.3], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd])
    }

    func testGaussiansAreIndexAddressableAndNormal() {
        let p = Philox4x32(seed: 42)
        let all = p.gaussian([10_003])
        // any sub-range computed alone equals the same slice
        var part = [Float](repeating: 0, count: 7)
        part.withUnsafeMutableBufferPointer { p.gaussians(start: 4097, count: 7, into: $0.baseAddress!) }
        XCTAssertEqual(part, Array(all.array[4097..<4104]))
        let m = all.array.reduce(0.0) { $0 + Double($1) } / Double(all.count)
        let v = all.array.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(all.count) - m * m
        XCTAssertEqual(m, 0, accuracy: 0.04)
        XCTAssertEqual(v, 1, accuracy: 0.05)
        XCTAssertNotEqual(p.gaussian([8], stream: 1).array, p.gaussian([8], stream: 0).array)
        XCTAssertNotEqual(Philox4x32(seed: 43).gaussian([8]).array, p.gaussian([8]).array)
    }
}

final class SamplerTests: XCTestCase {
    /// For v(x, t) = x (x_t = x_1 e^{t-1}): Euler/Heun approach x_0 = x_1 / e.
    func testSamplersIntegrateALinearField() {
        let x1 = Tensor([1, 4], [1, -2, 0.5, 3])
        for (kind, steps, tol) in [(SamplerKind.euler, 200, 3e-3), (.heun, 20, 1e-3)] {
            let out = FlowSampler(kind, steps: steps).sample(noise: x1) { x, _ in x.clone() }
            for i in 0..<4 {
                XCTAssertEqual(Double(out[i]), Double(x1[i]) / M_E, accuracy: tol * abs(Double(x1[i])) + 1e-6, "\(kind)")
            }
        }
        // one Euler step from t=1 to 0 with v = x gives x - x = 0
        let one = FlowSampler(.euler, steps: 1).sample(noise: x1) { x, _ in x.clone() }
        XCTAssertEqual(one.array, [0, 0, 0, 0])
        XCTAssertEqual(FlowSampler(.heun, steps: 4).evaluations, 7)
    }

    func testTimeGridAndCallbackTimes() {
        var seen: [Float] = []
        _ = FlowSampler(.heun, steps: 2).sample(noise: Tensor([2, 1])) { x, t in
            XCTAssertEqual(t.count, 2); seen.append(t[0]); return Tensor(x.shape)
        }
        XCTAssertEqual(seen, [1, 0.5, 0.5])   // Heun: t0, correction at t1, last step Euler
    }

    /// Same seed, same weights: identical decoder samples with 1 and 2 threads.
    func testDecoderSamplingIsThreadInvariant() {
        let cfg = DecoderConfig(imageSize: 32, patchSize: 4, width: 64, depth: 2, numHeads: 2, tokenDim: 16, freqDim: 32)
        let dec = FlowDecoder(cfg)
        dec.initialize(seed: 5)
        var rng = InitRNG(seed: 9)
        for p in dec.parameters { rng.fillNormal(p.value, std: 0.05) }
        let z = Philox4x32(seed: 1).gaussian([3, 16])
        func run(_ threads: Int) -> [Float] {
            let old = Engine.threads
            Engine.setThreads(threads); defer { Engine.setThreads(old) }
            let noise = Philox4x32(seed: 77).gaussian([3, 3, 32, 32])
            return FlowSampler(.heun, steps: 3).sample(noise: noise) { x, t in dec.predictVelocity(x, t: t, z: z) }.array
        }
        let a = run(1), b = run(2), c = run(2)
        XCTAssertEqual(a, b)
        XCTAssertEqual(b, c)
        XCTAssertFalse(a.contains { !$0.isFinite })
        // The same with the inference weight packs the codec uses.
        dec.packForInference()
        let pa = run(1), pb = run(2)
        XCTAssertEqual(pa, pb, "packed: 1 vs 2 threads")
        XCTAssertNotEqual(pa, [Float](repeating: 0, count: pa.count))
        var d = 0.0, n = 0.0
        for i in a.indices { d += Double((pa[i] - a[i]) * (pa[i] - a[i])); n += Double(a[i] * a[i]) }
        XCTAssertLessThan((d / n).squareRoot(), 1e-5, "packed vs OpenBLAS products")
    }

    /// A batch-1 inference forward with packs runs each block as two row-parallel regions (packed
    /// attention per query row): it must match the OpenBLAS path and not depend on threads, on
    /// sizes where T is not a multiple of the 6-row tiles and the halves differ.
    func testBatchOneRowParallelBlocksMatchAndAreThreadInvariant() throws {
        try XCTSkipUnless(PackedWeight.isSupported, "no AVX2/FMA")
        for (size, patch, width, heads) in [(40, 4, 48, 3), (32, 8, 64, 2)] {   // T = 101, 17
            let cfg = DecoderConfig(imageSize: size, patchSize: patch, width: width, depth: 2, numHeads: heads,
                                    tokenDim: 16, freqDim: 32)
            let plain = FlowDecoder(cfg), packed = FlowDecoder(cfg)
            plain.initialize(seed: 5)
            var rng = InitRNG(seed: 11)
            for p in plain.parameters { rng.fillNormal(p.value, std: 0.08) }
            for (a, b) in zip(packed.parameters, plain.parameters) { a.value.copy(from: b.value) }
            packed.packForInference()
            let x = Philox4x32(seed: 3).gaussian([1, 3, size, size]), z = Philox4x32(seed: 4).gaussian([1, 16])
            let ref = plain.infer(x, t: [0.4], z: z)
            func threads(_ k: Int) -> Tensor {
                let old = Engine.threads
                Engine.setThreads(k); defer { Engine.setThreads(old) }
                return packed.infer(x, t: [0.4], z: z)
            }
            let one = threads(1), two = threads(2)
            XCTAssertEqual(one.array, two.array, "T = \(cfg.tokens): 1 vs 2 threads")
            var d = 0.0, n = 0.0
            for i in 0..<ref.count { d += Double((one[i] - ref[i]) * (one[i] - ref[i])); n += Double(ref[i] * ref[i]) }
            XCTAssertGreaterThan(n, 0)
            XCTAssertLessThan((d / n).squareRoot(), 1e-5, "T = \(cfg.tokens): row-parallel packed vs OpenBLAS path")

            // A batch (pictures spread over the threads, each through the whole stack on one
            // thread): each picture's output is bit for bit its batch-1 output, on 1 and 2 threads.
            let B = 3
            let xb = Philox4x32(seed: 5).gaussian([B, 3, size, size]), zb = Philox4x32(seed: 6).gaussian([B, 16])
            let tb: [Float] = [0.2, 0.5, 0.9]
            let per = 3 * size * size
            func batch(_ k: Int) -> [Float] {
                let old = Engine.threads
                Engine.setThreads(k); defer { Engine.setThreads(old) }
                return packed.infer(xb, t: tb, z: zb).array
            }
            let b1 = batch(1), b2 = batch(2)
            XCTAssertEqual(b1, b2, "T = \(cfg.tokens): batch of 3, 1 vs 2 threads")
            for i in 0..<B {
                let alone = packed.infer(Tensor([1, 3, size, size], Array(xb.array[i * per..<(i + 1) * per])), t: [tb[i]],
                                           z: Tensor([1, 16], Array(zb.array[i * 16..<(i + 1) * 16]))).array
                XCTAssertEqual(Array(b1[i * per..<(i + 1) * per]), alone, "T = \(cfg.tokens): picture \(i) in a batch vs alone")
            }
            let ob = plain.infer(xb, t: tb, z: zb).array
            var db = 0.0, nb = 0.0
            for i in ob.indices { db += Double((b1[i] - ob[i]) * (b1[i] - ob[i])); nb += Double(ob[i] * ob[i]) }
            XCTAssertLessThan((db / nb).squareRoot(), 1e-5, "T = \(cfg.tokens): batch, packed vs OpenBLAS path")
        }
    }

    /// Packs are snapshots for inference: a training forward drops them, so a model that trains
    /// after being packed never computes with stale weights.
    func testTrainingForwardDropsWeightPacks() throws {
        try XCTSkipUnless(PackedWeight.isSupported, "no AVX2/FMA")
        let cfg = DecoderConfig(imageSize: 16, patchSize: 4, width: 32, depth: 1, numHeads: 2, tokenDim: 8, freqDim: 16)
        let dec = FlowDecoder(cfg)
        dec.initialize(seed: 3)
        var rng = InitRNG(seed: 4)
        for p in dec.parameters { rng.fillNormal(p.value, std: 0.1) }
        let x = Philox4x32(seed: 2).gaussian([2, 3, 16, 16]), z = Philox4x32(seed: 3).gaussian([2, 8])
        let start = PackedWeight.bytes
        XCTAssertEqual(dec.inferencePath(batch: 1), .batched)
        dec.packForInference()
        XCTAssertGreaterThan(PackedWeight.bytes, start)
        XCTAssertEqual(dec.inferencePath(batch: 1), .rowSplit)
        XCTAssertEqual(dec.inferencePath(batch: 2), .perPicture)
        let packed = dec.infer(x, t: [0.3, 0.7], z: z)
        _ = dec.forward(x, t: [0.3, 0.7], z: z, mode: .training)
        XCTAssertEqual(PackedWeight.bytes, start, "a training forward frees every pack")
        XCTAssertEqual(dec.inferencePath(batch: 1), .batched)
        XCTAssertEqual(dec.inferencePath(batch: 2), .batched)
        for p in dec.parameters where p.key.hasSuffix(".weight") { p.value.data[0] += 0.5 }
        let after = dec.infer(x, t: [0.3, 0.7], z: z), before = packed.array
        XCTAssertNotEqual(after.array, before, "the changed weights are used")
    }
}

final class OptimizerTests: XCTestCase {
    func testWarmupCosineSchedule() {
        let s = WarmupCosine(peakLR: 1e-3, minLR: 1e-5, warmupSteps: 10, totalSteps: 110)
        XCTAssertEqual(s.lr(0), 1e-4, accuracy: 1e-9)
        XCTAssertEqual(s.lr(9), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s.lr(10), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s.lr(60), (1e-3 + 1e-5) / 2, accuracy: 1e-8)
        XCTAssertEqual(s.lr(110), 1e-5, accuracy: 1e-9)
        XCTAssertEqual(s.lr(500), 1e-5, accuracy: 1e-9)
    }

    func testAdamWStepDecayMaskAndClipping() {
        let w = Parameter("w", Tensor([3], [1, -2, 3]), decay: true)
        let b = Parameter("b", Tensor([2], [0.5, -0.5]), decay: false)
        let frozen = Parameter("f", Tensor([1], [7]), decay: true)
        frozen.trainable = false
        let opt = AdamW([w, b, frozen], weightDecay: 0.1)
        XCTAssertEqual(opt.params.count, 2, "frozen parameters are not optimized")
        w.grad.copy(from: Tensor([3], [3, 0, -4]))
        b.grad.copy(from: Tensor([2], [0, 0]))
        // clipping to global norm 1 (norm is 5)
        XCTAssertEqual(opt.clipGradients(maxNorm: 1), 5, accuracy: 1e-5)
        XCTAssertEqual(Double(opt.gradNorm()), 1, accuracy: 1e-4)
        opt.update(lr: 0.01)
        // first step: m/bc1 = g, v/bc2 = g^2 -> update = lr * (sign(g) + wd * p) for g != 0
        XCTAssertEqual(w.value[0], 1 - 0.01 * (1 + 0.1 * 1), accuracy: 1e-5)
        XCTAssertEqual(w.value[1], -2 - 0.01 * (0 + 0.1 * -2), accuracy: 1e-5)
        XCTAssertEqual(w.value[2], 3 - 0.01 * (-1 + 0.1 * 3), accuracy: 1e-5)
        XCTAssertEqual(b.value.array, [0.5, -0.5], "no decay and zero gradient: unchanged")
        XCTAssertEqual(frozen.value[0], 7)
        XCTAssertEqual(opt.step, 1)
    }

    func testEMAUpdateAndSwap() {
        let p = Parameter("p", Tensor([2], [0, 0]), decay: true)
        let ema = EMA([p], decay: 0.9)
        p.value.copy(from: Tensor([2], [1, 2]))
        ema.update()
        XCTAssertEqual(ema.shadow[0][0], 0.1, accuracy: 1e-6)
        XCTAssertEqual(ema.shadow[0][1], 0.2, accuracy: 1e-6)
        ema.swap()
        XCTAssertEqual(p.value[1], 0.2, accuracy: 1e-6)
        ema.swap()
        XCTAssertEqual(p.value.array, [1, 2])
    }

    /// One update against a float64 reference, for several decays, and the warm-up schedule
    /// min(decay, (1 + k) / (10 + k)) of update k.
    func testEMAUpdateMatchesFloat64AndWarmsUp() {
        var rng = SplitMix64(seed: 102)
        for d: Float in [0.999, 0.5, 0] {
            let p = Parameter("p", Tensor([29], (0..<29).map { _ in Float(rng.normal()) }), decay: true)
            let ema = EMA([p], decay: d)
            ema.shadow[0].copy(from: Tensor([29], (0..<29).map { _ in Float(rng.normal()) }))
            let ref = (0..<29).map { Double(d) * Double(ema.shadow[0][$0]) + (1 - Double(d)) * Double(p.value[$0]) }
            ema.update()
            var e2 = 0.0, r2 = 0.0
            for i in 0..<29 { let e = Double(ema.shadow[0][i]) - ref[i]; e2 += e * e; r2 += ref[i] * ref[i] }
            XCTAssertLessThanOrEqual((e2 / r2).squareRoot(), 1e-6, "ema d=\(d)")
            XCTAssertEqual(ema.updates, 1)
        }
        let w = EMA([Parameter("q", Tensor([1], [0]), decay: true)], decay: 0.5, warmup: true)
        var decays = [Float]()
        for _ in 0..<3 { decays.append(w.currentDecay); w.update() }
        XCTAssertEqual(decays, [Float(2) / 11, Float(3) / 12, Float(4) / 13])
        w.updates = 8   // (1 + 9) / (10 + 9) > 0.5: the decay itself
        XCTAssertEqual(w.currentDecay, 0.5)
        XCTAssertEqual(EMA([], decay: 0.9).currentDecay, 0.9, "no warm-up")
    }

    /// A tiny decoder trained for a few AdamW steps on one batch must lower its loss (the
    /// gradients, optimizer and model are wired together).
    func testTrainingStepsReduceLoss() {
        let cfg = DecoderConfig(imageSize: 16, patchSize: 4, width: 32, depth: 1, numHeads: 2, tokenDim: 8, freqDim: 16)
        let dec = FlowDecoder(cfg)
        dec.initialize(seed: 1)
        let opt = AdamW(dec.parameters, weightDecay: 0)
        let ph = Philox4x32(seed: 3)
        let x = ph.gaussian([4, 3, 16, 16], stream: 1), noise = ph.gaussian([4, 3, 16, 16], stream: 2)
        let z = ph.gaussian([4, 8], stream: 3)
        let t: [Float] = [0.2, 0.4, 0.6, 0.8]
        var xt = Tensor(x.shape), target = Tensor(x.shape)
        for b in 0..<4 { for i in 0..<(3 * 256) { let k = b * 768 + i
            xt[k] = (1 - t[b]) * x[k] + t[b] * noise[k]; target[k] = noise[k] - x[k] } }
        func step() -> Float {
            dec.zeroGrad()
            let out = dec.forward(xt, t: t, z: z, mode: .training)
            let (loss, dv) = Ops.mse(dec.velocity(xt, t: t, out: out), target)
            _ = dec.backward(dec.velocityBackward(dv, t: t).dout)
            opt.update(lr: 3e-3)
            return loss
        }
        let first = step()
        var last = first
        for _ in 0..<30 { last = step() }
        XCTAssertLessThan(last, first * 0.8, "loss \(first) -> \(last)")
        xt = Tensor([1]); target = Tensor([1])
    }
}
