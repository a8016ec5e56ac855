import Foundation
import RepTokModels
import RepTokNN
import RepTokSafeTensors
import RepTokTensor
import RepTokTrain
import XCTest

/// Conformance against the PyTorch reference (python/reptok/model.py, python/scripts/make_fixtures.py) and
/// transformers' own Dinov2Model: forward <= 1e-4, gradients <= 1e-3 (relative L2).
final class ConformanceTests: XCTestCase {
    static func fixture(_ name: String) throws -> SafeTensorsFile {
        guard let url = Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures") else {
            throw XCTSkip("fixture \(name) missing")
        }
        return try SafeTensorsFile(path: url.path)
    }

    func t(_ f: SafeTensorsFile, _ name: String) throws -> Tensor { try ModelFile.tensor(name, in: f) }

    func relErr(_ a: Tensor, _ b: Tensor) -> Double {
        XCTAssertEqual(a.count, b.count)
        var num = 0.0, den = 0.0
        for i in 0..<min(a.count, b.count) {
            let d = Double(a[i]) - Double(b[i]); num += d * d; den += Double(b[i]) * Double(b[i])
        }
        return den == 0 ? num.squareRoot() : (num / den).squareRoot()
    }

    func assertClose(_ a: Tensor, _ b: Tensor, _ tol: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        // Gradients that are zero in exact arithmetic (the mask token; attention key biases,
        // since softmax ignores a constant shift of the scores) are float noise in both
        // implementations: check them absolutely.
        if b.array.allSatisfy({ abs($0) < 1e-6 }) {
            let m = a.array.map { abs($0) }.max() ?? 0
            XCTAssertLessThanOrEqual(m, 1e-5, "\(what): expected zeros, max |a| = \(m)", file: file, line: line)
            return
        }
        let e = relErr(a, b)
        XCTAssertLessThanOrEqual(e, tol, "\(what): relative error \(e)", file: file, line: line)
    }

    func encoder(from f: SafeTensorsFile, prefix: String, hf: Bool = false) throws -> Dinov2Encoder {
        let cfg: EncoderConfig
        if hf, let j = f.metadata["hf_config"] {
            cfg = try JSONDecoder().decode(EncoderConfig.self, from: Data(j.utf8))
        } else {
            cfg = try ModelFile.part(EncoderConfig.self, "encoder", in: f.metadata["reptok.config"]!)
        }
        try cfg.validate()
        let e = Dinov2Encoder(cfg)
        try ModelFile.load(e.parameters, prefix: prefix, from: f, allowExtra: true)
        return e
    }

    func checkEncoder(_ name: String) throws {
        let f = try Self.fixture(name)
        let enc = try encoder(from: f, prefix: "encoder.")
        let (tok, hid) = enc.forward(try t(f, "in.pixels"), mode: .training)
        assertClose(tok, try t(f, "out.token"), 1e-4, "\(name) token")
        assertClose(hid, try t(f, "out.hidden"), 1e-4, "\(name) hidden")
        enc.zeroGrad()
        let dpx = enc.backward(dToken: try t(f, "in.r"), needInput: true)!
        assertClose(dpx, try t(f, "grad.in.pixels"), 1e-3, "\(name) grad pixels")
        for p in enc.parameters {
            assertClose(p.grad, try t(f, "grad.encoder." + p.key), 1e-3, "\(name) grad \(p.key)")
        }
        for s in ["interp", "interp_down", "interp_up"] {
            let (tk, hd) = enc.forward(try t(f, "in.pixels_" + s))
            assertClose(tk, try t(f, "out.token_" + s), 1e-4, "\(name) token_\(s)")
            assertClose(hd, try t(f, "out.hidden_" + s), 1e-4, "\(name) hidden_\(s)")
        }
        // The codec's inference path: every product through a weight pack.
        enc.packForInference()
        let (ptok, phid) = enc.forward(try t(f, "in.pixels"))
        assertClose(ptok, try t(f, "out.token"), 1e-4, "\(name) token, packed weights")
        assertClose(phid, try t(f, "out.hidden"), 1e-4, "\(name) hidden, packed weights")
    }

    func testEncoderMatchesReference() throws { try checkEncoder("encoder") }
    func testEncoderWithRegistersMatchesReference() throws { try checkEncoder("encoder_registers") }

    func checkHF(_ name: String) throws {
        let f = try Self.fixture(name)
        // A bare Hugging Face checkpoint: every tensor must be taken (no unexpected keys).
        let weights = Set(f.names.filter { !$0.hasPrefix("in.") && !$0.hasPrefix("out.") })
        let enc = try encoder(from: f, prefix: "", hf: true)
        XCTAssertEqual(Set(enc.parameters.map { $0.key }), weights, "\(name): checkpoint keys")
        let (tok, hid) = enc.forward(try t(f, "in.pixels"))
        assertClose(tok, try t(f, "out.pooler"), 1e-4, "\(name) pooler")
        assertClose(hid, try t(f, "out.hidden"), 1e-4, "\(name) hidden")
        for s in ["interp", "interp_down", "interp_up"] {
            let (tk, hd) = enc.forward(try t(f, "in.pixels_" + s))
            assertClose(tk, try t(f, "out.pooler_" + s), 1e-4, "\(name) pooler_\(s)")
            assertClose(hd, try t(f, "out.hidden_" + s), 1e-4, "\(name) hidden_\(s)")
        }
    }

    func testTransformersDinov2Model() throws { try checkHF("dinov2_hf") }
    func testTransformersDinov2WithRegistersModel() throws { try checkHF("dinov2_registers_hf") }

    func checkDecoder(_ name: String) throws {
        let f = try Self.fixture(name)
        let cfg = try ModelFile.part(DecoderConfig.self, "decoder", in: f.metadata["reptok.config"]!)
        try cfg.validate()
        let dec = FlowDecoder(cfg)
        try ModelFile.load(dec.parameters, prefix: "decoder.", from: f)
        let xt = try t(f, "in.x_t"), z = try t(f, "in.z")
        let tv = try t(f, "in.t").array
        assertClose(Ops.fourierFeatures(tv, dim: cfg.freqDim), try t(f, "out.t_features"), 1e-5, "t features")
        assertClose(Ops.sincos2D(gridH: cfg.grid, gridW: cfg.grid, dim: cfg.width), try t(f, "out.pos"), 1e-6, "pos table")
        let out = dec.forward(xt, t: tv, z: z, mode: .training)
        let v = dec.velocity(xt, t: tv, out: out)
        assertClose(out, try t(f, "out.out"), 1e-4, "\(name) out")
        assertClose(v, try t(f, "out.v"), 1e-4, "\(name) v")
        dec.zeroGrad()
        let (dout, dxtDirect) = dec.velocityBackward(try t(f, "in.r"), t: tv)
        let (dxt, dz) = dec.backward(dout)
        if let d = dxtDirect { Ops.addInPlace(dxt!, d) }
        assertClose(dxt!, try t(f, "grad.in.x_t"), 1e-3, "\(name) grad x_t")
        assertClose(dz, try t(f, "grad.in.z"), 1e-3, "\(name) grad z")
        for p in dec.parameters {
            assertClose(p.grad, try t(f, "grad.decoder." + p.key), 1e-3, "\(name) grad \(p.key)")
        }
        let ts = try t(f, "in.t_small").array
        let o2 = dec.infer(xt, t: ts, z: z)
        assertClose(o2, try t(f, "out.out_t_small"), 1e-4, "\(name) out t_small")
        assertClose(dec.velocity(xt, t: ts, out: o2), try t(f, "out.v_t_small"), 1e-4, "\(name) v t_small")
        // The codec's inference path: every product through a weight pack (GELU fused).
        dec.packForInference()
        assertClose(dec.infer(xt, t: tv, z: z), try t(f, "out.out"), 1e-4, "\(name) out, packed weights")
        assertClose(dec.infer(xt, t: ts, z: z), try t(f, "out.out_t_small"), 1e-4, "\(name) out t_small, packed weights")
    }

    func testDecoderXPredictionMatchesReference() throws { try checkDecoder("decoder") }
    func testDecoderVPredictionMatchesReference() throws { try checkDecoder("decoder_v") }
    /// The latent skip (3x3 RGB from the token, bilinearly upsampled to 16x16, added to the output).
    func testDecoderLatentSkipMatchesReference() throws { try checkDecoder("decoder_skip") }
    /// The skip picture (4x4) also embedded as the network's input (`skip_input`, `skip_embed`).
    func testDecoderSkipInputMatchesReference() throws { try checkDecoder("decoder_skip_input") }

    /// A zero `skip_embed` (its initialization) leaves the decoder's output exactly as it was, so
    /// a model warm-started with `--skip-input` starts at the model it came from.
    func testZeroSkipInputChangesNothing() throws {
        let f = try Self.fixture("decoder_skip")
        var cfg = try ModelFile.part(DecoderConfig.self, "decoder", in: f.metadata["reptok.config"]!)
        let plain = FlowDecoder(cfg)
        try ModelFile.load(plain.parameters, prefix: "decoder.", from: f)
        cfg.skipInput = true
        try cfg.validate()
        let withInput = FlowDecoder(cfg)
        withInput.initialize(seed: 1)
        try ModelFile.load(withInput.parameters.filter { !$0.key.hasPrefix("skip_embed.") }, prefix: "decoder.", from: f)
        XCTAssertTrue(withInput.parameters.contains { $0.key == "skip_embed.weight" && $0.value.array.allSatisfy { $0 == 0 } })
        let xt = try t(f, "in.x_t"), z = try t(f, "in.z"), tv = try t(f, "in.t").array
        XCTAssertEqual(withInput.infer(xt, t: tv, z: z).array, plain.infer(xt, t: tv, z: z).array)
        // written only when set: a config without it encodes as before
        cfg.skipInput = false
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(cfg), as: UTF8.self).contains("skip_input"))
        cfg.skipInput = true
        XCTAssertTrue(String(decoding: try JSONEncoder().encode(cfg), as: UTF8.self).contains("\"skip_input\":true"))
        cfg.skipSize = 0
        XCTAssertThrowsError(try cfg.validate())
    }

    /// `prediction` typed: x and v known, anything else refused; the name stays a string on the wire.
    func testPredictionKind() throws {
        var cfg = DecoderConfig(imageSize: 16, patchSize: 4, width: 16, depth: 1, numHeads: 2, tokenDim: 8, freqDim: 16)
        XCTAssertEqual(cfg.predictionKind, .x)
        XCTAssertNoThrow(try cfg.validate())
        cfg.prediction = "v"
        XCTAssertEqual(cfg.predictionKind, .v)
        XCTAssertNoThrow(try cfg.validate())
        XCTAssertTrue(String(decoding: try JSONEncoder().encode(cfg), as: UTF8.self).contains("\"prediction\":\"v\""))
        cfg.skipSize = 2
        XCTAssertThrowsError(try cfg.validate()) { XCTAssertEqual("\($0)", "invalid model config: decoder: skip_size needs prediction \"x\"") }
        cfg.skipSize = 0
        cfg.prediction = "eps"
        XCTAssertNil(cfg.predictionKind)
        XCTAssertThrowsError(try cfg.validate()) { XCTAssertEqual("\($0)", "invalid model config: decoder: prediction \"eps\"") }
    }

    func testTrainingStepMatchesReference() throws {
        let f = try Self.fixture("train_step")
        let json = f.metadata["reptok.config"]!
        let ecfg = try ModelFile.part(EncoderConfig.self, "encoder", in: json)
        let dcfg = try ModelFile.part(DecoderConfig.self, "decoder", in: json)
        let enc = Dinov2Encoder(ecfg), ad = TokenAdapter(dim: ecfg.hiddenSize), dec = FlowDecoder(dcfg)
        try ModelFile.load(enc.parameters, prefix: "encoder.", from: f)
        try ModelFile.load(ad.parameters, prefix: "adapter.", from: f)
        try ModelFile.load(dec.parameters, prefix: "decoder.", from: f)
        let model = RepTokModel(encoder: enc, adapter: ad, decoder: dec)
        let objective = TokenizerObjective(model)
        objective.setTune(.cls)
        objective.frozenCLS.copy(from: try t(f, "frozen.cls_token"))
        for p in model.trainableParameters { p.zeroGrad() }
        let lambda = try t(f, "in.lambda")[0]
        let loss = objective.lossAndGradients(pixelsEnc: try t(f, "in.pixels_enc"), x: try t(f, "in.x"),
                                          t: try t(f, "in.t").array, noise: try t(f, "in.noise"), lambda: lambda)
        assertClose(Tensor([1], [loss.loss]), try t(f, "out.loss"), 1e-4, "loss")
        assertClose(Tensor([1], [loss.flow]), try t(f, "out.flow_loss"), 1e-4, "flow loss")
        assertClose(Tensor([1], [loss.cos]), try t(f, "out.cos_loss"), 1e-4, "cos loss")
        assertClose(model.encode(try t(f, "in.pixels_enc")), try t(f, "out.z"), 1e-4, "z")
        let trainable = model.namedParameters.filter { $0.1.trainable }
        XCTAssertEqual(Set(trainable.map { $0.0 }), Set(f.names.filter { $0.hasPrefix("grad.") }.map { String($0.dropFirst(5)) }))
        for (k, p) in trainable { assertClose(p.grad, try t(f, "grad." + k), 1e-3, "grad \(k)") }
    }
}
