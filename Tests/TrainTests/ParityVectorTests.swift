import Foundation
import RepTokCodec
import RepTokData
import RepTokImage
import RepTokTensor
import RepTokTrain
import XCTest

/// The parity vectors of Tests/Parity (issue #15): values the Swift engine computes and the
/// Python package (python/reptok, python/tests/test_parity.py) must reproduce. This test checks
/// that Swift still computes the committed values; pytest checks that Python does. A change on
/// one side only therefore fails one of the two suites.
///
/// Regenerate after a deliberate change (then pytest says whether Python follows):
///   REPTOK_PARITY_WRITE=1 swift test --filter ParityVectorTests
final class ParityVectorTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Parity")
    static var writing: Bool { ProcessInfo.processInfo.environment["REPTOK_PARITY_WRITE"] == "1" }

    // MARK: encoding helpers (arrays travel as base64 of little-endian bytes: exact, compact)

    static func b64<T: FixedWidthInteger>(_ v: [T]) -> String {
        var bytes = [UInt8](); bytes.reserveCapacity(v.count * MemoryLayout<T>.size)
        for x in v { withUnsafeBytes(of: x.littleEndian) { bytes += $0 } }
        return Data(bytes).base64EncodedString()
    }
    static func f32(_ v: [Float]) -> String { b64(v.map(\.bitPattern)) }
    static func f64(_ v: [Double]) -> String { b64(v.map(\.bitPattern)) }
    static func hex64(_ x: UInt64) -> String { String(format: "%016llx", x) }

    /// A deterministic RGB8 picture (SplitMix64 bytes with a smooth part, so resamplers have
    /// both edges and gradients to work on).
    static func picture(_ w: Int, _ h: Int, seed: UInt64) -> RGBImage {
        var g = SplitMix64(seed: seed)
        var px = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h { for x in 0..<w { for c in 0..<3 {
            let smooth = (x * 255 / max(1, w - 1) + y * 127 / max(1, h - 1) + c * 60) % 256
            let noise = Int(g.next() % 64)
            px[(y * w + x) * 3 + c] = UInt8(min(255, smooth / 2 + noise * 2))
        } } }
        return RGBImage(width: w, height: h, pixels: px)
    }

    // MARK: the vectors

    /// Philox blocks, SplitMix64.mix, gaussian and uniform streams, the step randoms.
    static func rngVectors() -> [String: Any] {
        var blocks = [[String: Any]]()
        for (seed, c) in [(UInt64(0), (UInt32(0), UInt32(0), UInt32(0), UInt32(0))),
                          (UInt64(0xFFFF_FFFF_FFFF_FFFF), (UInt32.max, UInt32.max, UInt32.max, UInt32.max)),
                          (UInt64(0xA409_3822_299F_31D0), (UInt32(0x243F_6A88), UInt32(0x85A3_08D3),
                                                           UInt32(0x1319_8A2E), UInt32(0x0370_7344))),
                          (UInt64(7), (UInt32(5), UInt32(1), UInt32(0x5649_4557), UInt32(2)))] {
            let b = Philox4x32(seed: seed).block(c.0, c.1, c.2, c.3)
            blocks.append(["seed": hex64(seed), "counter": [c.0, c.1, c.2, c.3].map(Int.init),
                           "out": [b.0, b.1, b.2, b.3].map(Int.init)])
        }
        var mixes = [[String]]()
        for (a, b) in [(UInt64(0), UInt64(0)), (1, 2), (2, 1), (0, 1509), (0xDEAD_BEEF, 123_456_789),
                       (UInt64.max, UInt64.max)] {
            mixes.append([hex64(a), hex64(b), hex64(SplitMix64.mix(a, b))])
        }
        var gaussians = [[String: Any]]()
        for (seed, stream, start, count) in [(UInt64(0), UInt32(0), 0, 64), (UInt64(12345), UInt32(2), 3, 29),
                                             (UInt64(1) << 40, UInt32(1), 1_000_001, 7)] {
            var out = [Float](repeating: 0, count: count)
            Philox4x32(seed: seed).gaussians(stream: stream, start: start, count: count, into: &out)
            gaussians.append(["seed": hex64(seed), "stream": Int(stream), "start": start, "count": count, "f32": f32(out)])
        }
        var uniforms = [[String: Any]]()
        for (seed, stream, start, count) in [(UInt64(7), UInt32(1), 0, 16), (UInt64(99), UInt32(3), 5, 11)] {
            let u = Philox4x32(seed: seed).uniforms(stream: stream, start: start, count: count)
            uniforms.append(["seed": hex64(seed), "stream": Int(stream), "start": start, "count": count, "f64": f64(u)])
        }
        var steps = [[String: Any]]()
        for (seed, step) in [(UInt64(0), 0), (UInt64(0), 1508), (UInt64(42), 7)] {
            let r = StepRandom(seed: seed, step: step)
            let noise = r.gaussian([2, 3, 4], .flowNoise)
            steps.append(["seed": hex64(seed), "step": step,
                          "times": ["batch": 16, "uniform_fraction": 0.1, "one_fraction": 0.5,
                                    "f32": f32(r.times(16, uniformFraction: 0.1, oneFraction: 0.5))],
                          "flow_noise": ["count": noise.count, "f32": f32(Array(UnsafeBufferPointer(start: noise.data, count: noise.count)))],
                          "token_noise": ["count": 10, "f32": f32(Array(UnsafeBufferPointer(start: r.gaussian([10], .tokenNoise).data, count: 10)))],
                          "layout_keep": ["batch": 12, "m": 384, "drop": 0.5, "out": r.layoutKeep(12, m: 384, drop: 0.5)]])
        }
        return ["philox_blocks": blocks, "mix64": mixes, "gaussians": gaussians, "uniforms": uniforms, "step_random": steps]
    }

    /// Resample.resize of a fixed picture with each filter, and Codec.modelView.
    static func resampleVectors() -> [String: Any] {
        let src = picture(23, 17, seed: 3)
        var cases = [[String: Any]]()
        for (filter, name) in [(ResampleFilter.area, "area"), (.bilinear, "bilinear"), (.lanczos3, "lanczos3")] {
            for (w, h) in [(7, 5), (40, 31), (23, 9)] {
                let out = Resample.resize(src, width: w, height: h, filter: filter)
                cases.append(["filter": name, "width": w, "height": h, "rgb": Data(out.pixels).base64EncodedString()])
            }
        }
        let view = Codec.modelView(src, size: 16)
        return ["source": ["width": src.width, "height": src.height, "rgb": Data(src.pixels).base64EncodedString()],
                "resize": cases, "model_view": ["size": 16, "rgb": Data(view.pixels).base64EncodedString()]]
    }

    /// The pictures of views.rtds (written beside the vectors).
    static func viewPictures() -> [RGBImage] { [picture(31, 20, seed: 11), picture(12, 29, seed: 12), picture(40, 40, seed: 13)] }

    /// ViewSampler's parameters and rendered views of (seed, step) over views.rtds, and the
    /// whole-picture view (ViewSampler.renderWhole).
    static func viewVectors(_ ds: PackedDataset) throws -> [String: Any] {
        let cfg = ViewConfig(size: 12, wholeFraction: 0.3, minArea: 0.35, maxArea: 1.0, maxAspect: 16.0 / 9,
                             flipProbability: 0.5, brightness: 0.2, contrast: 0.2, saturation: 0.2, augmentWhole: true)
        let sampler = try ViewSampler(dataset: ds, config: cfg, batchSize: 2, seed: 2024)
        var views = [[String: Any]]()
        var buf = [Float](repeating: 0, count: sampler.viewFloats)
        for v in 0..<8 {
            let p = sampler.renderView(v, into: &buf)
            views.append(["view": v, "image": p.image, "whole": p.whole, "x": p.cropX, "y": p.cropY,
                          "w": p.cropWidth, "h": p.cropHeight, "flip": p.flip,
                          "brightness": Double(p.brightness), "contrast": Double(p.contrast),
                          "saturation": Double(p.saturation), "f32": f32(buf)])
        }
        var whole = [[String: Any]]()
        for i in 0..<ds.count {
            ViewSampler.renderWhole(ds, image: i, size: 12, into: &buf)
            whole.append(["image": i, "f32": f32(buf)])
        }
        return ["config": ["size": cfg.size, "whole": cfg.wholeFraction, "min_area": cfg.minArea, "max_area": cfg.maxArea,
                           "max_aspect": cfg.maxAspect, "flip": cfg.flipProbability, "brightness": cfg.brightness,
                           "contrast": cfg.contrast, "saturation": cfg.saturation, "augment_whole": cfg.augmentWhole],
                "seed": 2024, "batch": 2, "views": views, "whole": whole]
    }

    static func allVectors(_ ds: PackedDataset) throws -> [String: Any] {
        ["format": "reptok-parity", "version": 1,
         "note": "Written by Tests/TrainTests/ParityVectorTests.swift (REPTOK_PARITY_WRITE=1); read by it and by python/tests/test_parity.py",
         "rng": rngVectors(), "resample": resampleVectors(), "views": try viewVectors(ds)]
    }

    // MARK: the test

    func testSwiftReproducesTheCommittedParityVectors() throws {
        let dsPath = Self.folder.appendingPathComponent("views.rtds").path
        let jsonPath = Self.folder.appendingPathComponent("core.json")
        if Self.writing {
            try FileManager.default.createDirectory(at: Self.folder, withIntermediateDirectories: true)
            try Pictures.write(Self.viewPictures(), to: dsPath)
        }
        let ds = try PackedDataset(path: dsPath, verifyChecksums: true)
        // the committed pack holds exactly the pictures this file makes
        XCTAssertEqual(ds.count, Self.viewPictures().count)
        for (i, p) in Self.viewPictures().enumerated() {
            XCTAssertEqual(Array(ds.pixels(i)), p.pixels, "views.rtds picture \(i)")
        }
        let fresh = try JSONSerialization.data(withJSONObject: try Self.allVectors(ds),
                                               options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        if Self.writing { try fresh.write(to: jsonPath) }
        let committed = try JSONSerialization.jsonObject(with: Data(contentsOf: jsonPath)) as! NSDictionary
        let now = try JSONSerialization.jsonObject(with: fresh) as! NSDictionary
        for key in ["rng", "resample", "views"] {
            let a = committed[key] as? NSDictionary, b = now[key] as? NSDictionary
            XCTAssertNotNil(a, "core.json lacks \(key)")
            for sub in (b?.allKeys as? [String] ?? []).sorted() {
                XCTAssertEqual(a?[sub] as? NSObject, b?[sub] as? NSObject,
                               "Tests/Parity/core.json \(key).\(sub) differs from what Swift computes now: "
                               + "regenerate (REPTOK_PARITY_WRITE=1) only for a deliberate change, then make python/reptok follow")
            }
        }
    }
}
