import Foundation
import XCTest
import RepTokMetrics
import RepTokImage
import RepTokTensor

/// One pair of Fixtures/metrics_reference.json (written by python/scripts/metrics_reference.py).
struct ReferencePair {
    var name: String
    var a: RGBImage
    var b: RGBImage
    var psnr: Double
    var psnrPerChannel: [Double]
    var ssim: Double
    var ssimPerChannel: [Double]
    var msssim: Double
    var msssimFloat32: Double
    var msssimScales: Int
}

enum Reference {
    static let pairs: [ReferencePair] = {
        do { return try load() } catch { fatalError("metrics_reference.json: \(error)") }
    }()

    static func number(_ v: Any?) throws -> Double {
        if let d = v as? Double { return d }
        if let s = v as? String, s == "inf" { return .infinity }
        throw NSError(domain: "fixture", code: 1, userInfo: [NSLocalizedDescriptionKey: "bad number \(String(describing: v))"])
    }

    static func image(_ v: Any?, width: Int, height: Int) throws -> RGBImage {
        guard let s = v as? String, let data = Data(base64Encoded: s) else {
            throw NSError(domain: "fixture", code: 2, userInfo: [NSLocalizedDescriptionKey: "bad base64"])
        }
        let img = try ImageIO.decode([UInt8](data)).image
        guard img.width == width && img.height == height else {
            throw NSError(domain: "fixture", code: 3, userInfo: [NSLocalizedDescriptionKey: "bad size"])
        }
        return img
    }

    static func load() throws -> [ReferencePair] {
        guard let url = Bundle.module.url(forResource: "metrics_reference", withExtension: "json",
                                          subdirectory: "Fixtures") else {
            throw NSError(domain: "fixture", code: 4, userInfo: [NSLocalizedDescriptionKey: "missing fixture"])
        }
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        return try (doc["pairs"] as! [[String: Any]]).map { p in
            let w = p["width"] as! Int, h = p["height"] as! Int
            return ReferencePair(
                name: p["name"] as! String,
                a: try image(p["a_png_base64"], width: w, height: h),
                b: try image(p["b_png_base64"], width: w, height: h),
                psnr: try number(p["psnr"]),
                psnrPerChannel: try (p["psnr_per_channel"] as! [Any]).map(number),
                ssim: try number(p["ssim"]),
                ssimPerChannel: try (p["ssim_per_channel"] as! [Any]).map(number),
                msssim: try number(p["msssim"]),
                msssimFloat32: try number(p["msssim_float32"]),
                msssimScales: p["msssim_scales"] as! Int)
        }
    }
}

/// A deterministic test image (SplitMix64 noise over a gradient).
func testImage(width: Int, height: Int, seed: UInt64) -> RGBImage {
    var rng = SplitMix64(seed: seed)
    var px = [UInt8](repeating: 0, count: width * height * 3)
    for y in 0..<height {
        for x in 0..<width {
            for c in 0..<3 {
                let base = (x * 255 / max(width - 1, 1) + y * 128 / max(height - 1, 1) + c * 40) % 256
                let noise = Int(rng.next() % 41) - 20
                px[(y * width + x) * 3 + c] = UInt8(clamping: base + noise)
            }
        }
    }
    return RGBImage(width: width, height: height, pixels: px)
}

final class MetricsReferenceTests: XCTestCase {
    /// The agreement required with the reference implementations.
    let tolerance = 1e-3
    /// What is achieved (float64 throughout, same windows): a regression guard. MS-SSIM's is
    /// looser because its window is built in float32 with expf, whose last bit is the platform's.
    let tightPSNR = 1e-9, tightSSIM = 1e-9, tightMSSSIM = 1e-5

    func testFixtureCoversScaleCounts() {
        let pairs = Reference.pairs
        XCTAssertGreaterThanOrEqual(pairs.count, 4)
        XCTAssertEqual(Set(pairs.map(\.msssimScales)), [1, 2, 3, 5])
    }

    func testPSNRMatchesScikitImage() throws {
        var worst = 0.0
        for p in Reference.pairs {
            let v = try Metrics.psnr(p.a, p.b)
            XCTAssertEqual(v, p.psnr, accuracy: tolerance, p.name)
            worst = max(worst, abs(v - p.psnr))
            let pc = try Metrics.psnrPerChannel(p.a, p.b)
            XCTAssertEqual(pc.count, 3)
            for c in 0..<3 {
                XCTAssertEqual(pc[c], p.psnrPerChannel[c], accuracy: tolerance, "\(p.name) channel \(c)")
                worst = max(worst, abs(pc[c] - p.psnrPerChannel[c]))
            }
        }
        XCTAssertLessThan(worst, tightPSNR)
        print("PSNR: max |swift - skimage| = \(worst)")
    }

    func testSSIMMatchesScikitImage() throws {
        var worst = 0.0
        for p in Reference.pairs {
            let v = try Metrics.ssim(p.a, p.b)
            XCTAssertEqual(v, p.ssim, accuracy: tolerance, p.name)
            worst = max(worst, abs(v - p.ssim))
            let pc = try Metrics.ssimPerChannel(p.a, p.b)
            for c in 0..<3 {
                XCTAssertEqual(pc[c], p.ssimPerChannel[c], accuracy: tolerance, "\(p.name) channel \(c)")
                worst = max(worst, abs(pc[c] - p.ssimPerChannel[c]))
            }
        }
        XCTAssertLessThan(worst, tightSSIM)
        print("SSIM: max |swift - skimage| = \(worst)")
    }

    func testMSSSIMMatchesPytorchMSSSIM() throws {
        var worst = 0.0, worst32 = 0.0
        for p in Reference.pairs {
            let (v, scales) = try Metrics.msssim(p.a, p.b)
            XCTAssertEqual(scales, p.msssimScales, p.name)
            XCTAssertEqual(v, p.msssim, accuracy: tolerance, p.name)
            XCTAssertEqual(v, p.msssimFloat32, accuracy: tolerance, "\(p.name) (float32 reference)")
            worst = max(worst, abs(v - p.msssim))
            worst32 = max(worst32, abs(v - p.msssimFloat32))
        }
        XCTAssertLessThan(worst, tightMSSSIM)
        print("MS-SSIM: max |swift - pytorch_msssim float64| = \(worst), float32: \(worst32)")
    }

    /// The float-plane entry points give the RGBImage results, in 0...255 and in 0...2 with data
    /// range 2 (PSNR, SSIM and MS-SSIM are invariant under scaling of values and data range
    /// together; not under an offset: SSIM's luminance term depends on the mean level, so the
    /// networks' -1...1 planes must be shifted to 0...2 first).
    func testPlanarMatchesRGB() throws {
        for p in Reference.pairs {
            let (w, h) = (p.a.width, p.a.height)
            for (scale, range) in [(Float(1), 255.0), (Float(2.0 / 255.0), 2.0)] {
                let fa = p.a.planarFloats(scale: scale, offset: 0)
                let fb = p.b.planarFloats(scale: scale, offset: 0)
                let tol = range == 255 ? 1e-9 : 1e-5  // scaled floats carry float32 rounding
                XCTAssertEqual(try Metrics.psnr(planarA: fa, planarB: fb, width: w, height: h, dataRange: range),
                               try Metrics.psnr(p.a, p.b), accuracy: tol, p.name)
                XCTAssertEqual(try Metrics.ssim(planarA: fa, planarB: fb, width: w, height: h, dataRange: range),
                               try Metrics.ssim(p.a, p.b), accuracy: tol, p.name)
                let m = try Metrics.msssim(planarA: fa, planarB: fb, width: w, height: h, dataRange: range)
                let r = try Metrics.msssim(p.a, p.b)
                XCTAssertEqual(m.value, r.value, accuracy: tol, p.name)
                XCTAssertEqual(m.scales, r.scales)
            }
        }
    }
}

final class MetricsPropertyTests: XCTestCase {
    func testIdentity() throws {
        for (w, h) in [(11, 11), (24, 13), (64, 64), (161, 170)] {
            let a = testImage(width: w, height: h, seed: UInt64(w * 1000 + h))
            XCTAssertEqual(try Metrics.psnr(a, a), .infinity)
            XCTAssertEqual(try Metrics.psnrPerChannel(a, a), [.infinity, .infinity, .infinity])
            XCTAssertEqual(try Metrics.mse(a, a), 0)
            XCTAssertEqual(try Metrics.ssim(a, a), 1, accuracy: 1e-12)
            let m = try Metrics.msssim(a, a)
            XCTAssertEqual(m.value, 1, accuracy: 1e-12)
            XCTAssertEqual(m.scales, Metrics.msssimScales(width: w, height: h))
        }
    }

    func testSymmetric() throws {
        for p in Reference.pairs {
            XCTAssertEqual(try Metrics.psnr(p.a, p.b), try Metrics.psnr(p.b, p.a))
            XCTAssertEqual(try Metrics.psnrPerChannel(p.a, p.b), try Metrics.psnrPerChannel(p.b, p.a))
            XCTAssertEqual(try Metrics.ssim(p.a, p.b), try Metrics.ssim(p.b, p.a), accuracy: 1e-12, p.name)
            XCTAssertEqual(try Metrics.msssim(p.a, p.b).value, try Metrics.msssim(p.b, p.a).value,
                           accuracy: 1e-12, p.name)
        }
    }

    func testPSNRKnownValue() throws {
        // Every sample differs by 5: MSE 25, PSNR = 10 log10(255^2 / 25).
        let a = testImage(width: 7, height: 3, seed: 1)
        var b = a
        for i in b.pixels.indices { b.pixels[i] = a.pixels[i] >= 128 ? a.pixels[i] - 5 : a.pixels[i] + 5 }
        XCTAssertEqual(try Metrics.mse(a, b), 25)
        XCTAssertEqual(try Metrics.psnr(a, b), 10 * log10(255.0 * 255.0 / 25), accuracy: 1e-12)
        // Only green differs.
        var g = a
        g.pixels[1] = a.pixels[1] >= 128 ? a.pixels[1] - 30 : a.pixels[1] + 30
        let pc = try Metrics.psnrPerChannel(a, g)
        XCTAssertEqual(pc[0], .infinity)
        XCTAssertEqual(pc[1], 10 * log10(255.0 * 255.0 / (900.0 / 21)), accuracy: 1e-12)
        XCTAssertEqual(pc[2], .infinity)
    }

    func testScaleCountRule() {
        // K = most scales (<= 5) with smaller side > 10 * 2^(K-1); pytorch-msssim's 5 needs > 160.
        let cases: [(Int, Int)] = [(10, 0), (11, 1), (20, 1), (21, 2), (40, 2), (41, 3), (80, 3), (81, 4),
                                   (160, 4), (161, 5), (4096, 5)]
        for (side, k) in cases {
            XCTAssertEqual(Metrics.msssimScales(width: side, height: side), k, "side \(side)")
            XCTAssertEqual(Metrics.msssimScales(width: side, height: 5000), k, "side \(side)")
            XCTAssertEqual(Metrics.msssimScales(width: 5000, height: side), k, "side \(side)")
        }
        XCTAssertEqual(Metrics.msssimWeights(scales: 5), Metrics.msssimWeights)
        for k in 1...4 {
            let w = Metrics.msssimWeights(scales: k)
            XCTAssertEqual(w.count, k)
            XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-15)
            XCTAssertEqual(w[0] / w[w.count - 1], Metrics.msssimWeights[0] / Metrics.msssimWeights[k - 1],
                           accuracy: 1e-12)
        }
    }

    func testSmallImageFallbackReported() throws {
        let a = testImage(width: 24, height: 13, seed: 7)
        let b = testImage(width: 24, height: 13, seed: 8)
        let m = try Metrics.msssim(a, b)
        XCTAssertEqual(m.scales, 1)
        // One scale: relu(SSIM) per channel (pytorch-msssim's float32-built window vs skimage's float64 one).
        let ssim = try Metrics.ssimPerChannel(a, b).map { max($0, 0) }
        XCTAssertEqual(m.value, ssim.reduce(0, +) / 3, accuracy: 1e-5)
        XCTAssertEqual(try Metrics.msssim(testImage(width: 100, height: 60, seed: 1),
                                          testImage(width: 100, height: 60, seed: 2)).scales, 3)
        XCTAssertEqual(try Metrics.msssim(testImage(width: 170, height: 300, seed: 1),
                                          testImage(width: 170, height: 300, seed: 2)).scales, 5)
    }

    func testErrors() {
        let a = testImage(width: 20, height: 20, seed: 1)
        let b = testImage(width: 20, height: 21, seed: 1)
        let mismatch = MetricsError.sizeMismatch(width1: 20, height1: 20, width2: 20, height2: 21)
        XCTAssertThrowsError(try Metrics.psnr(a, b)) { XCTAssertEqual($0 as? MetricsError, mismatch) }
        XCTAssertThrowsError(try Metrics.ssim(a, b)) { XCTAssertEqual($0 as? MetricsError, mismatch) }
        XCTAssertThrowsError(try Metrics.msssim(a, b)) { XCTAssertEqual($0 as? MetricsError, mismatch) }

        let small = testImage(width: 30, height: 10, seed: 1)
        XCTAssertNoThrow(try Metrics.psnr(small, small))
        XCTAssertThrowsError(try Metrics.ssim(small, small)) {
            XCTAssertEqual($0 as? MetricsError, .tooSmall(width: 30, height: 10, minimum: 11))
        }
        XCTAssertThrowsError(try Metrics.msssim(small, small)) {
            XCTAssertEqual($0 as? MetricsError, .tooSmall(width: 30, height: 10, minimum: 11))
        }
        let empty = RGBImage(width: 0, height: 0)
        XCTAssertThrowsError(try Metrics.psnr(empty, empty))

        let f = [Float](repeating: 0, count: 3 * 12 * 12)
        XCTAssertThrowsError(try Metrics.ssim(planarA: f, planarB: Array(f.dropLast()), width: 12, height: 12,
                                              dataRange: 1))
        XCTAssertThrowsError(try Metrics.ssim(planarA: f, planarB: f, width: 12, height: 12, channels: 2,
                                              dataRange: 1))
        XCTAssertThrowsError(try Metrics.ssim(planarA: f, planarB: f, width: 12, height: 12, dataRange: 0)) {
            XCTAssertEqual($0 as? MetricsError, .badDataRange(0))
        }
        XCTAssertNoThrow(try Metrics.ssim(planarA: f, planarB: f, width: 12, height: 12, dataRange: 1))
        // Single-channel planes.
        let g = [Float](repeating: 0.5, count: 12 * 12)
        XCTAssertEqual(try Metrics.ssim(planarA: g, planarB: g, width: 12, height: 12, channels: 1, dataRange: 1), 1)
    }
}
