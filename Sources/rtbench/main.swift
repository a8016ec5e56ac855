import ArgumentParser
import Foundation
import RepTokModels
import RepTokNN
import RepTokTensor
import RepTokTrain

/// rtbench: engine speed. Decoder forward at batch 1 and 8, one tokenizer training step, GFLOP/s
/// from the model's FLOP count, and the sgemm rate on the decoder's own matrix shapes measured in
/// the same run. Prints a table (or JSON). Compare with PyTorch: tools/bench.sh.
@main
struct RTBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rtbench", abstract: "Measure the reptok engine's speed.")

    @Option(name: .long, help: "Decoder width.") var width = 256
    @Option(name: .long, help: "Decoder depth.") var depth = 8
    @Option(name: .long, help: "Attention heads.") var heads = 4
    @Option(name: .long, help: "Image size (tokens = 1 + (size/patch)^2).") var size = 128
    @Option(name: .long, help: "Patch size.") var patch = 8
    @Option(name: .long, help: "Timed runs per measurement (median reported).") var runs = 7
    @Option(name: .long, help: "Threads (default: all cores).") var threads: Int?
    @Option(name: .long, help: "Write the benchmark's decoder weights here (safetensors) for the PyTorch side.")
    var saveWeights: String?
    @Flag(name: .long, help: "Print JSON.") var json = false
    @Option(name: .long, help: "Only run the decoder forward at this batch size this many times (for profilers).")
    var profileForward: Int?
    @Option(name: .long, help: "Batch size for --profile-forward.") var profileBatch = 1
    @Flag(name: .long, help: "Time the decoder block's operations one by one as FlowDecoder.infer runs them at batch --profile-batch (packed row path; the batched OpenBLAS path with --no-pack), then infer itself.")
    var opProfile = false
    @Flag(name: .long, help: "Forwards through OpenBLAS, without the inference weight packs the codec uses.")
    var noPack = false
    @Flag(name: .long, help: "Time decoder forwards with and without weight packs, interleaved (median and fastest).")
    var comparePack = false

    func median(_ f: () -> Void) -> Double {
        f()  // warm-up
        var ts = [Double]()
        for _ in 0..<max(runs, 5) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            f()
            ts.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return ts.sorted()[ts.count / 2]
    }

    func run() throws {
        if let n = threads { Engine.setThreads(n) }
        let enc = EncoderConfig(hiddenSize: 192, numHiddenLayers: 6, numAttentionHeads: 3, patchSize: 16, imageSize: size)
        let dcfg = DecoderConfig(imageSize: size, patchSize: patch, width: width, depth: depth, numHeads: heads,
                                 tokenDim: enc.hiddenSize)
        try dcfg.validate()
        let decoder = FlowDecoder(dcfg)
        decoder.initialize(seed: 1)
        // Non-zero adaLN and head weights so every path carries real values.
        var rng = InitRNG(seed: 2)
        for p in decoder.parameters where p.value.array.allSatisfy({ $0 == 0 }) { rng.fillNormal(p.value, std: 0.02) }
        if let path = saveWeights {
            try ModelFile.write(named: decoder.parameters.map { ("decoder." + $0.key, $0.value) },
                                metadata: ["reptok.config": try ModelFile.configJSON(encoder: enc, decoder: dcfg)],
                                to: path)
        }
        let philox = Philox4x32(seed: 7)
        // As a codec model does after loading: pack the weights once for inference products.
        let packStart = DispatchTime.now().uptimeNanoseconds
        if !noPack { decoder.packForInference() }
        let packSeconds = Double(DispatchTime.now().uptimeNanoseconds - packStart) / 1e9
        if opProfile {
            let B = profileBatch, T = dcfg.tokens, W = width, F = 4 * W
            var total = 0.0
            func op(_ name: String, _ f: () -> Void) {
                let s = median(f) * 1e3
                total += s
                print(name.padding(toLength: 34, withPad: " ", startingAt: 0) + String(format: " %8.3f ms", s))
            }
            let wq = philox.gaussian([3 * W, W], stream: 3), wp = philox.gaussian([W, W], stream: 4)
            let w1 = philox.gaussian([F, W], stream: 5), w2 = philox.gaussian([W, F], stream: 6)
            let bq = Tensor([3 * W]), b1 = Tensor([F]), bw = Tensor([W])
            let path = decoder.inferencePath(batch: B)
            if path == .batched {
                // What ships without weight packs (--no-pack, or a CPU without AVX2/FMA): infer's
                // batched path, each operation over the batch's B*T rows.
                print("decoder block operations, batched path (OpenBLAS), batch \(B): \(B * T) rows")
                let M = B * T
                let x = philox.gaussian([M, W]), h4 = philox.gaussian([M, F], stream: 2)
                let qkv = Ops.linear(x, wq, bq), mod = philox.gaussian([B, 6 * W], stream: 7)
                op("qkv linear") { _ = Ops.linear(x, wq, bq) }
                op("attention") { _ = Attention.forward(qkv, B: B, T: T, heads: heads, keepProbs: false) }
                op("proj linear") { _ = Ops.linear(x, wp, bw) }
                op("fc1 linear") { _ = Ops.linear(x, w1, b1) }
                op("gelu") { _ = Ops.gelu(h4) }
                op("fc2 linear") { _ = Ops.linear(h4, w2, bw) }
                op("2x layernorm") { _ = Ops.layerNorm(x, nil, nil, eps: 1e-6); _ = Ops.layerNorm(x, nil, nil, eps: 1e-6) }
                op("2x modulate") { _ = Ops.modulate(x, B: B, mod: mod, shiftAt: 0, scaleAt: W); _ = Ops.modulate(x, B: B, mod: mod, shiftAt: 0, scaleAt: W) }
                op("2x gateAdd") { Ops.gateAdd(x, x, B: B, mod: mod, gateAt: 0); Ops.gateAdd(x, x, B: B, mod: mod, gateAt: 0) }
                print(String(format: "sum per block %.3f ms, x %d blocks = %.2f ms", total, depth, total * Double(depth)))
            } else {
                // What ships with packs (rowSplit at batch 1, perPicture above): each block is
                // DecoderBlock.inferRows over a picture's T rows, every operation on one thread:
                // fused row ops, packed products, attention for the rows' queries with K and V
                // packed per head. Timed here on one picture's T rows on this thread (the unit of
                // perPicture; rowSplit runs the two halves of it on two threads).
                print("decoder block operations as FlowDecoder.infer runs them (\(path) at batch \(B)): one picture's \(T) rows, one thread")
                let pq = PackedWeight(wq)!, pp = PackedWeight(wp)!, p1 = PackedWeight(w1)!, p2 = PackedWeight(w2)!
                let h = philox.gaussian([T, W]), md = philox.gaussian([1, 6 * W], stream: 7)
                let nb = Tensor([T, W]), mb = Tensor([T, W]), qkv = philox.gaussian([T, 3 * W], stream: 8)
                let o = Tensor([T, W]), a = Tensor([T, W]), f1 = Tensor([T, F]), stats = Tensor([2, T])
                let dh = W / heads, scratch = Tensor([Attention.queryRowsScratch(T: T, dh: dh, rows: T)])
                op("layernorm (rows)") {
                    Ops.layerNormRows(into: nb.data, h.data, rows: 0, T, width: W, eps: 1e-6, mean: stats.data, rstd: stats.data + T)
                }
                op("modulate (rows)") { Ops.modulateRows(into: mb.data, nb.data, rows: T, width: W, shift: md.data, scale: md.data + W) }
                op("qkv linear (packed)") { Ops.linearOneThread(into: qkv.data, ldy: 3 * W, mb.data, ldx: W, n: T, packed: pq, bq) }
                op("attention (packed query rows)") {
                    Attention.queryRows(qkv.data, T: T, heads: heads, width: W, r0: 0, r1: T, out: o.data, ldo: W, scratch: scratch.data)
                }
                op("proj linear (packed)") { Ops.linearOneThread(into: a.data, ldy: W, o.data, ldx: W, n: T, packed: pp, bw) }
                op("gated residual (rows)") { Ops.gateAddRows(h.data, a.data, rows: T, width: W, gate: md.data + 2 * W) }
                op("layernorm (rows)") {
                    Ops.layerNormRows(into: nb.data, h.data, rows: 0, T, width: W, eps: 1e-6, mean: stats.data, rstd: stats.data + T)
                }
                op("modulate (rows)") { Ops.modulateRows(into: mb.data, nb.data, rows: T, width: W, shift: md.data + 3 * W, scale: md.data + 4 * W) }
                op("fc1 linear+gelu (packed)") {
                    Ops.linearOneThread(into: f1.data, ldy: F, mb.data, ldx: W, n: T, packed: p1, b1, activation: .gelu)
                }
                op("fc2 linear (packed)") { Ops.linearOneThread(into: a.data, ldy: W, f1.data, ldx: F, n: T, packed: p2, bw) }
                op("gated residual (rows)") { Ops.gateAddRows(h.data, a.data, rows: T, width: W, gate: md.data + 5 * W) }
                print(String(format: "sum per block %.3f ms, x %d blocks x %d pictures = %.2f ms of one-thread work", total, depth, B,
                             total * Double(depth * B)))
            }
            // The whole forward as shipped, for scale: the blocks plus embeddings and output head,
            // on the engine's threads.
            let x = philox.gaussian([B, 3, size, size]), z = philox.gaussian([B, enc.hiddenSize], stream: 1)
            let t = [Float](repeating: 0.5, count: B)
            let s = median { _ = decoder.infer(x, t: t, z: z) } * 1e3
            print(String(format: "FlowDecoder.infer, batch %d (%@), %d threads: %.2f ms (%.3f ms per block with the embeddings and head)",
                         B, "\(path)" as NSString, Engine.threads, s, s / Double(depth)))
            return
        }
        if comparePack {
            // Interleaved, so that both paths see the same noise of a shared machine.
            guard PackedWeight.isSupported else { throw ValidationError("--compare-pack: this CPU has no AVX2/FMA, so no weight packs") }
            decoder.packForInference()
            for B in [1, 8] {
                let x = philox.gaussian([B, 3, size, size]), z = philox.gaussian([B, enc.hiddenSize], stream: 1)
                let t = [Float](repeating: 0.5, count: B)
                var tp = [Double](), tu = [Double]()
                let plain = FlowDecoder(dcfg)
                for (a, b) in zip(plain.parameters, decoder.parameters) { a.value.copy(from: b.value) }
                _ = decoder.infer(x, t: t, z: z); _ = plain.infer(x, t: t, z: z)  // warm-up
                for _ in 0..<max(runs, 5) * (B == 1 ? 5 : 1) {
                    var t0 = DispatchTime.now().uptimeNanoseconds
                    _ = decoder.infer(x, t: t, z: z)
                    tp.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                    t0 = DispatchTime.now().uptimeNanoseconds
                    _ = plain.infer(x, t: t, z: z)
                    tu.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                }
                tp.sort(); tu.sort()
                print(String(format: "decoder forward, batch %d: weight packs %.2f ms (fastest %.2f), OpenBLAS %.2f ms (fastest %.2f): %.2fx",
                             B, tp[tp.count / 2], tp[0], tu[tu.count / 2], tu[0], tu[tu.count / 2] / tp[tp.count / 2]))
            }
            return
        }
        if let n = profileForward {
            let B = profileBatch
            let x = philox.gaussian([B, 3, size, size]), z = philox.gaussian([B, enc.hiddenSize], stream: 1)
            for _ in 0..<n { _ = decoder.infer(x, t: [Float](repeating: 0.5, count: B), z: z) }
            return
        }
        var rows: [(String, Double, Double)] = []  // name, seconds, GFLOP
        let fwdFlops = dcfg.forwardFLOPs / 1e9
        for B in [1, 8] {
            let x = philox.gaussian([B, 3, size, size])
            let z = philox.gaussian([B, enc.hiddenSize], stream: 1)
            let t = [Float](repeating: 0.5, count: B)
            let s = median { _ = decoder.infer(x, t: t, z: z) }
            rows.append(("decoder forward, batch \(B)", s, fwdFlops * Double(B)))
        }
        // sgemm on the decoder's own shapes (one forward's worth of GEMMs, batch 8)
        let gemmRate: Double = {
            let T = dcfg.tokens, W = width, M = 8 * T, H = W * 4
            let shapes = [(M, 3 * W, W), (M, W, W), (M, H, W), (M, W, H)]
            let a = Tensor([M, H]), b = Tensor([H, 3 * W]), c = Tensor([M, H])
            rng.fillNormal(a, std: 1); rng.fillNormal(b, std: 1)
            var flops = 0.0
            for (m, n, k) in shapes { flops += 2 * Double(m * n * k) }
            let sec = median {
                for _ in 0..<depth {
                    for (m, n, k) in shapes {
                        BLAS.gemm(transB: true, M: m, N: n, K: k, A: a.data, lda: k, B: b.data, ldb: k, C: c.data, ldc: n)
                    }
                }
            }
            return flops * Double(depth) / sec / 1e9
        }()
        let decoderPacked = !noPack && PackedWeight.isSupported
        // training step: encoder (cls tuned) + adapter + decoder, batch 8 (its forward drops the packs)
        let encoder = Dinov2Encoder(enc)
        encoder.initialize(seed: 3)
        let model = RepTokModel(encoder: encoder, adapter: TokenAdapter(dim: enc.hiddenSize), decoder: decoder)
        let objective = TokenizerObjective(model)
        objective.setTune(.cls)
        let B = 8
        let px = philox.gaussian([B, 3, size, size], stream: 2)
        let noise = philox.gaussian([B, 3, size, size], stream: 3)
        let tt = (0..<B).map { Float($0 + 1) / Float(B + 1) }
        let stepS = median {
            for p in model.trainableParameters { p.zeroGrad() }
            _ = objective.lossAndGradients(pixelsEnc: px, x: px, t: tt, noise: noise, lambda: 0.1)
        }
        let encFlops = 2 * Double(B) * encoderFLOPs(enc) / 1e9
        // decoder fwd+bwd = 3x forward; encoder: 2 forwards (live + frozen) + backward without dW (~2x)
        rows.append(("train step, batch 8", stepS, 3 * fwdFlops * Double(B) + encFlops * 2))

        if json {
            var out: [String: Any] = ["threads": Engine.threads, "sgemm_gflops_decoder_shapes": gemmRate,
                                      "avx2_fma": CPU.hasAVX2FMA, "packed": decoderPacked, "pack_seconds": packSeconds]
            out["rows"] = rows.map { ["name": $0.0, "seconds": $0.1, "gflops": $0.2 / $0.1] }
            let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("rtbench: decoder width \(width) depth \(depth) heads \(heads), \(dcfg.tokens) tokens; \(Engine.threads) threads; AVX2/FMA kernels: \(CPU.hasAVX2FMA)")
            print(String(format: "sgemm on the decoder's shapes: %.1f GFLOP/s", gemmRate))
            print(decoderPacked ? String(format: "forwards with inference weight packs (packed once in %.1f ms)", packSeconds * 1e3)
                                : "forwards through OpenBLAS (no weight packs)")
            for (name, s, gf) in rows {
                print(String(format: "%-28@ %9.2f ms  %7.1f GFLOP/s  %5.1f%% of sgemm", name as NSString, s * 1e3, gf / s, 100 * gf / s / gemmRate))
            }
        }
    }

    func encoderFLOPs(_ c: EncoderConfig) -> Double {
        let T = Double(1 + c.numRegisterTokens + c.grid * c.grid), D = Double(c.hiddenSize), M = D * Double(c.mlpRatio)
        return Double(c.numHiddenLayers) * (T * D * 3 * D + T * D * D + 2 * T * D * M + 2 * T * T * D)
    }
}
