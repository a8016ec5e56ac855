import XCTest
@testable import RepTokImage

final class ResampleTests: XCTestCase {
    func planes(_ w: Int, _ h: Int, _ f: (Int, Int, Int) -> Float) -> [Float] {
        var p = [Float](repeating: 0, count: 3 * w * h)
        for c in 0..<3 { for y in 0..<h { for x in 0..<w { p[(c * h + y) * w + x] = f(c, x, y) } } }
        return p
    }

    func testConstantStaysConstant() {
        let sizes = [(1, 1), (3, 2), (16, 16), (37, 23), (128, 96)]
        let src = planes(37, 23) { c, _, _ in [0.25, -0.5, 0.875][c] }
        for filter in ResampleFilter.allCases {
            for (w, h) in sizes {
                let out = Resample.resizePlanar(src, srcW: 37, srcH: 23, dstW: w, dstH: h, filter: filter)
                for c in 0..<3 {
                    for i in 0..<w * h {
                        XCTAssertEqual(out[c * w * h + i], [0.25, -0.5, 0.875][c], accuracy: 1e-5, "\(filter) \(w)x\(h)")
                    }
                }
            }
            // crops, including ones reaching outside the image
            for crop in [(0.5, 0.25, 10.3, 7.7), (-3.0, -2.0, 50.0, 30.0), (30.0, 20.0, 20.0, 20.0)] {
                let out = Resample.resizeCropPlanar(src, srcW: 37, srcH: 23, cropX: crop.0, cropY: crop.1,
                                                    cropW: crop.2, cropH: crop.3, dstW: 9, dstH: 5, filter: filter)
                for c in 0..<3 { for i in 0..<45 { XCTAssertEqual(out[c * 45 + i], [0.25, -0.5, 0.875][c], accuracy: 1e-5) } }
            }
            // RGB8
            let img = RGBImage(width: 13, height: 7, pixels: [UInt8](repeating: 200, count: 13 * 7 * 3))
            XCTAssertTrue(Resample.resize(img, width: 5, height: 9, filter: filter).pixels.allSatisfy { $0 == 200 })
        }
    }

    func testAreaHalvingIsTheExact2x2Mean() {
        let img = noiseImage(width: 16, height: 10, seed: 11)
        let src = img.planarFloats(scale: 1, offset: 0)
        let out = Resample.resizePlanar(src, srcW: 16, srcH: 10, dstW: 8, dstH: 5, filter: .area)
        let small = Resample.resize(img, width: 8, height: 5, filter: .area)
        for c in 0..<3 {
            for y in 0..<5 {
                for x in 0..<8 {
                    var sum = 0
                    for dy in 0..<2 { for dx in 0..<2 { sum += Int(img.pixels[((2 * y + dy) * 16 + 2 * x + dx) * 3 + c]) } }
                    XCTAssertEqual(out[(c * 5 + y) * 8 + x], Float(sum) / 4)  // exact
                    XCTAssertEqual(Int(small.pixels[(y * 8 + x) * 3 + c]), (sum + 2) / 4)  // round half up
                }
            }
        }
        // and by 3 (9-pixel means), exact within float rounding
        let out3 = Resample.resizePlanar(src, srcW: 16, srcH: 10, dstW: 5, dstH: 3, filter: .area)
        let w3 = 16.0 / 5, h3 = 10.0 / 3
        XCTAssertEqual(out3.count, 45)
        // non-integer factor: output (0,0) covers [0, 3.2) x [0, 3.333): fractional coverage
        var expected = 0.0
        for y in 0..<4 {
            for x in 0..<4 {
                let cx = min(Double(x + 1), w3) - Double(x), cy = min(Double(y + 1), h3) - Double(y)
                expected += cx * cy * Double(img.pixels[(y * 16 + x) * 3])
            }
        }
        XCTAssertEqual(Double(out3[0]), expected / (w3 * h3), accuracy: 1e-3)
    }

    func testLanczosOfSmoothFunctionsIsCloseToAnalytic() {
        // A linear ramp is reproduced exactly (away from the borders) by a symmetric normalized kernel.
        let w = 96, h = 64
        let ramp: (Double, Double) -> Double = { x, y in 0.3 + 0.01 * x - 0.02 * y }
        let src = planes(w, h) { _, x, y in Float(ramp(Double(x) + 0.5, Double(y) + 0.5)) }
        // Exact (up to float rounding) when the output centres sit symmetrically between source
        // centres (integer factors); otherwise Lanczos reproduces a ramp only approximately.
        for (dw, dh, tolerance) in [(24, 16, 1e-4), (48, 32, 1e-4), (40, 30, 2e-3), (192, 128, 2e-3)] {
            let out = Resample.resizePlanar(src, srcW: w, srcH: h, dstW: dw, dstH: dh, filter: .lanczos3)
            let sx = Double(w) / Double(dw), sy = Double(h) / Double(dh)
            let marginX = Int((3 * max(sx, 1) / sx).rounded(.up)) + 1, marginY = Int((3 * max(sy, 1) / sy).rounded(.up)) + 1
            for y in marginY..<dh - marginY {
                for x in marginX..<dw - marginX {
                    let v = ramp((Double(x) + 0.5) * sx, (Double(y) + 0.5) * sy)
                    XCTAssertEqual(Double(out[y * dw + x]), v, accuracy: tolerance, "\(dw)x\(dh) at \(x),\(y)")
                }
            }
        }
        // A smooth wave upsampled 4x: close to the analytic function.
        let wave: (Double, Double) -> Double = { x, y in sin(x * 0.2) * cos(y * 0.15) }
        let ws = planes(w, h) { _, x, y in Float(wave(Double(x) + 0.5, Double(y) + 0.5)) }
        let up = Resample.resizePlanar(ws, srcW: w, srcH: h, dstW: 4 * w, dstH: 4 * h, filter: .lanczos3)
        var worst = 0.0
        for y in 16..<4 * h - 16 {
            for x in 16..<4 * w - 16 {
                let v = wave((Double(x) + 0.5) / 4, (Double(y) + 0.5) / 4)
                worst = max(worst, abs(Double(up[y * 4 * w + x]) - v))
            }
        }
        XCTAssertLessThan(worst, 5e-3)
        // Downsampling antialiases: a Nyquist-rate checkerboard averages out to ~0.
        let checker = planes(64, 64) { _, x, y in (x + y) % 2 == 0 ? 1 : -1 }
        let down = Resample.resizePlanar(checker, srcW: 64, srcH: 64, dstW: 16, dstH: 16, filter: .lanczos3)
        XCTAssertLessThan(down.map { abs($0) }.max()!, 0.02)
    }

    func testIdentitySizeReturnsSamePixels() {
        let img = noiseImage(width: 19, height: 11, seed: 5)
        for filter in ResampleFilter.allCases {
            XCTAssertEqual(Resample.resize(img, width: 19, height: 11, filter: filter), img)
            let p = img.planarFloats()
            XCTAssertEqual(Resample.resizePlanar(p, srcW: 19, srcH: 11, dstW: 19, dstH: 11, filter: filter), p)
            // integer crop at scale 1: exactly the sub-image
            let crop = Resample.resizeCropPlanar(p, srcW: 19, srcH: 11, cropX: 3, cropY: 2, cropW: 8, cropH: 5,
                                                 dstW: 8, dstH: 5, filter: filter)
            for c in 0..<3 { for y in 0..<5 { for x in 0..<8 {
                XCTAssertEqual(crop[(c * 5 + y) * 8 + x], p[(c * 11 + y + 2) * 19 + x + 3], "\(filter)")
            } } }
            // one axis identity
            let wide = Resample.resizePlanar(p, srcW: 19, srcH: 11, dstW: 7, dstH: 11, filter: filter)
            let back = Resample.resizePlanar(p, srcW: 19, srcH: 11, dstW: 19, dstH: 4, filter: filter)
            XCTAssertEqual(wide.count, 3 * 7 * 11)
            XCTAssertEqual(back.count, 3 * 19 * 4)
        }
    }

    /// Both pass orders (horizontal first / vertical first) give the same result.
    func testPassOrderDoesNotMatter() {
        let src = noiseImage(width: 40, height: 30, seed: 9).planarFloats()
        // tall output from a wide crop vs the transposed problem
        let a = Resample.resizeCropPlanar(src, srcW: 40, srcH: 30, cropX: 2.5, cropY: 1.25, cropW: 30, cropH: 20,
                                          dstW: 5, dstH: 25, filter: .lanczos3)
        // transpose source, resize transposed, transpose back
        func transpose(_ p: [Float], _ w: Int, _ h: Int) -> [Float] {
            var t = [Float](repeating: 0, count: p.count)
            for c in 0..<3 { for y in 0..<h { for x in 0..<w { t[(c * w + x) * h + y] = p[(c * h + y) * w + x] } } }
            return t
        }
        let bt = Resample.resizeCropPlanar(transpose(src, 40, 30), srcW: 30, srcH: 40, cropX: 1.25, cropY: 2.5,
                                           cropW: 20, cropH: 30, dstW: 25, dstH: 5, filter: .lanczos3)
        let b = transpose(bt, 25, 5)
        for i in 0..<a.count { XCTAssertEqual(a[i], b[i], accuracy: 1e-4) }
        // and each order forced
        defer { Resample.forceOrder = nil }
        for filter in ResampleFilter.allCases {
            var results: [[Float]] = []
            for order in [true, false] {
                Resample.forceOrder = order
                results.append(Resample.resizeCropPlanar(src, srcW: 40, srcH: 30, cropX: 2.5, cropY: 1.25, cropW: 30,
                                                         cropH: 20, dstW: 17, dstH: 9, filter: filter))
            }
            for i in 0..<results[0].count { XCTAssertEqual(results[0][i], results[1][i], accuracy: 1e-4, "\(filter)") }
        }
    }

    func testBilinearUpsampleInterpolates() {
        // 2 -> 4 samples: centres at 0.25, 0.75, 1.25, 1.75 source pixels: edge samples clamp
        let src: [Float] = [0, 1]
        let out = Resample.resizePlanar(src, srcW: 2, srcH: 1, dstW: 4, dstH: 1, filter: .bilinear, channels: 1)
        XCTAssertEqual(out, [0, 0.25, 0.75, 1])
    }

    func testTrainingCropSpeed() {
        // 512x384 -> 128x128 crops (prints the time; debug builds are much slower)
        let src = noiseImage(width: 512, height: 384, seed: 2).planarFloats()
        var dst = [Float](repeating: 0, count: 3 * 128 * 128)
        let clock = ContinuousClock()
        let n = 10
        let t = clock.measure {
            src.withUnsafeBufferPointer { s in
                dst.withUnsafeMutableBufferPointer { d in
                    for i in 0..<n {
                        Resample.resizeCropPlanar(s, srcW: 512, srcH: 384, cropX: Double(i), cropY: 3.5,
                                                  cropW: 480, cropH: 360, dstW: 128, dstH: 128,
                                                  filter: .lanczos3, into: d)
                    }
                }
            }
        }
        print("resizeCropPlanar 512x384 crop -> 128x128 lanczos3: \(t / n) per call")
        XCTAssertTrue(dst.allSatisfy { $0.isFinite })
    }
}
