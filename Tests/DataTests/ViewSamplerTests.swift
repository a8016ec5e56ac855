import Foundation
import XCTest
import RepTokTensor
import RepTokData

final class ViewSamplerTests: XCTestCase {
    /// 12 pictures of assorted shapes (incl. 16:9, portrait, tiny, 512x384), 3 classes.
    func makeDataset() throws -> PackedDataset {
        var w = try PackedDatasetWriter(classNames: ["a", "b", "c"])
        let sizes = [(512, 384), (384, 512), (640, 360), (96, 96), (160, 120), (33, 17),
                     (300, 300), (512, 288), (40, 90), (257, 129), (8, 8), (1000, 512)]
        for (k, (W, H)) in sizes.enumerated() {
            try w.append(width: W, height: H, classID: k % 3, pixels: randomPixels(W, H, seed: UInt64(100 + k)))
        }
        return try PackedDataset(bytes: w.serialized())
    }

    func render(_ s: ViewSampler, step: Int) -> ([Float], [Int32], [ViewParams]) {
        var out = [Float](repeating: .nan, count: s.batchFloats)
        var cls = [Int32](repeating: -1, count: s.batchSize)
        let ps = out.withUnsafeMutableBufferPointer { o in
            cls.withUnsafeMutableBufferPointer { c in s.batch(step: step, into: o.baseAddress!, classes: c.baseAddress!) }
        }
        return (out, cls, ps)
    }

    func testDeterministicForSeedAndStep() throws {
        let ds = try makeDataset()
        let cfg = ViewConfig(size: 32)
        let a = try ViewSampler(dataset: ds, config: cfg, batchSize: 5, seed: 7)
        let b = try ViewSampler(dataset: ds, config: cfg, batchSize: 5, seed: 7)
        for step in [0, 1, 2, 9, 1000] {
            let (oa, ca, pa) = render(a, step: step)
            let (ob, cb, pb) = render(b, step: step)
            XCTAssertEqual(oa, ob)
            XCTAssertEqual(ca, cb)
            XCTAssertEqual(pa, pb)
            XCTAssertFalse(oa.contains { !$0.isFinite || $0 < -1 || $0 > 1 })
            XCTAssertEqual(ca, pa.map { Int32(ds.classID($0.image)) })
        }
        // a different seed gives different views
        let c = try ViewSampler(dataset: ds, config: cfg, batchSize: 5, seed: 8)
        XCTAssertNotEqual(render(a, step: 3).0, render(c, step: 3).0)
        // out-of-order requests do not disturb anything (the permutation cache)
        let late = render(a, step: 50).0
        _ = render(a, step: 0)
        XCTAssertEqual(render(a, step: 50).0, late)
    }

    /// A trainer that saved (seed, step) resumes exactly.
    func testResumeFromSeedAndStep() throws {
        let ds = try makeDataset()
        let cfg = ViewConfig(size: 24)
        let run = try ViewSampler(dataset: ds, config: cfg, batchSize: 4, seed: 99)
        var outs = [[Float]]()
        for _ in 0..<6 {
            var o = [Float](repeating: 0, count: run.batchFloats)
            o.withUnsafeMutableBufferPointer { _ = run.next(into: $0.baseAddress!) }
            outs.append(o)
        }
        XCTAssertEqual(run.step, 6)
        let resumed = try ViewSampler(dataset: ds, config: cfg, batchSize: 4, seed: 99, step: 4)
        for k in 4..<6 {
            var o = [Float](repeating: 0, count: resumed.batchFloats)
            o.withUnsafeMutableBufferPointer { _ = resumed.next(into: $0.baseAddress!) }
            XCTAssertEqual(o, outs[k])
        }
        // Tensor variant
        let t = Tensor([4, 3, 24, 24])
        let again = try ViewSampler(dataset: ds, config: cfg, batchSize: 4, seed: 99, step: 5)
        let classes = try again.next(into: t)
        XCTAssertEqual(t.array, outs[5])
        XCTAssertEqual(classes.count, 4)
        XCTAssertThrowsError(try again.next(into: Tensor([4, 3, 24, 23])))
    }

    /// View k of epoch e is image perm_e[k]: every epoch visits every image once.
    func testEpochsArePermutations() throws {
        let ds = try makeDataset()
        let s = try ViewSampler(dataset: ds, config: ViewConfig(size: 8), batchSize: 5, seed: 3)
        let n = ds.count
        var perms = [[Int]]()
        for e in 0..<4 {
            let p = (0..<n).map { s.imageIndex(view: e * n + $0) }
            XCTAssertEqual(p.sorted(), Array(0..<n))
            perms.append(p)
        }
        XCTAssertGreaterThan(Set(perms.map { $0.description }).count, 1)
    }

    func testThreadCountDoesNotChangeViews() throws {
        let ds = try makeDataset()
        let s = try ViewSampler(dataset: ds, config: ViewConfig(size: 40), batchSize: 8, seed: 5)
        let old = Engine.threads
        defer { Engine.setThreads(old) }
        Engine.setThreads(1)
        let one = render(s, step: 2).0
        Engine.setThreads(4)
        let four = render(s, step: 2).0
        XCTAssertEqual(one, four)
    }

    /// The whole-picture view of a constant picture is exactly constant, shrinking or enlarging,
    /// with or without jitter; without jitter it is exactly p / 127.5 - 1.
    func testWholeViewOfConstantPictureIsConstant() throws {
        let colour: [UInt8] = [200, 31, 77]
        for (W, H) in [(37, 23), (512, 384), (5, 9), (1, 1), (1000, 17)] {
            let px = (0..<(W * H)).flatMap { _ in colour }
            for S in [1, 16, 64, 128] {
                var out = [Float](repeating: .nan, count: 3 * S * S)
                px.withUnsafeBufferPointer { p in
                    out.withUnsafeMutableBufferPointer { o in
                        ViewSampler.render(p, width: W, height: H, params: .whole(image: 0, width: W, height: H),
                                           size: S, into: o.baseAddress!)
                    }
                }
                for c in 0..<3 {
                    let plane = out[(c * S * S)..<((c + 1) * S * S)]
                    XCTAssertTrue(plane.allSatisfy { $0 == Float(colour[c]) / 127.5 - 1 }, "\(W)x\(H) -> \(S)")
                }
                var jittered = ViewParams.whole(image: 0, width: W, height: H)
                jittered.brightness = 1.07; jittered.contrast = 0.93; jittered.saturation = 1.09; jittered.flip = true
                px.withUnsafeBufferPointer { p in
                    out.withUnsafeMutableBufferPointer { o in
                        ViewSampler.render(p, width: W, height: H, params: jittered, size: S, into: o.baseAddress!)
                    }
                }
                for c in 0..<3 {
                    let plane = out[(c * S * S)..<((c + 1) * S * S)]
                    XCTAssertTrue(plane.allSatisfy { $0 == plane.first! }, "jittered \(W)x\(H) -> \(S)")
                }
            }
        }
        // and through the sampler (whole views and crops alike)
        var w = try PackedDatasetWriter(classNames: ["k"])
        try w.append(width: 300, height: 200, classID: 0, pixels: (0..<60_000).flatMap { _ in colour })
        let ds = try PackedDataset(bytes: w.serialized())
        let s = try ViewSampler(dataset: ds, config: ViewConfig(size: 16, brightness: 0, contrast: 0, saturation: 0),
                                batchSize: 6, seed: 1)
        let out = render(s, step: 0).0
        for b in 0..<6 {
            for c in 0..<3 {
                let o = b * 768 + c * 256
                XCTAssertTrue(out[o..<(o + 256)].allSatisfy { $0 == Float(colour[c]) / 127.5 - 1 })
            }
        }
    }

    func testFlipMirrorsTheView() throws {
        let W = 97, H = 61, S = 32
        let px = randomPixels(W, H, seed: 11)
        for base in [ViewParams.whole(image: 0, width: W, height: H),
                     ViewParams(image: 0, whole: false, cropX: 10.3, cropY: 4.7, cropWidth: 60.2, cropHeight: 33.9,
                                brightness: 1.05, contrast: 0.95, saturation: 1.02)] {
            var flipped = base
            flipped.flip = true
            var a = [Float](repeating: 0, count: 3 * S * S), b = a
            px.withUnsafeBufferPointer { p in
                a.withUnsafeMutableBufferPointer { ViewSampler.render(p, width: W, height: H, params: base, size: S, into: $0.baseAddress!) }
                b.withUnsafeMutableBufferPointer { ViewSampler.render(p, width: W, height: H, params: flipped, size: S, into: $0.baseAddress!) }
            }
            for c in 0..<3 {
                for y in 0..<S {
                    for x in 0..<S {
                        XCTAssertEqual(b[(c * S + y) * S + x], a[(c * S + y) * S + (S - 1 - x)])
                    }
                }
            }
            XCTAssertNotEqual(a, b)
        }
    }

    /// Same size, whole picture: the view is the picture itself (planar, scaled to [-1, 1]).
    func testIdentityAndPlanarLayout() throws {
        let S = 13
        let px = randomPixels(S, S, seed: 4)
        var out = [Float](repeating: 0, count: 3 * S * S)
        px.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer {
                ViewSampler.render(p, width: S, height: S, params: .whole(image: 0, width: S, height: S), size: S, into: $0.baseAddress!)
            }
        }
        for y in 0..<S {
            for x in 0..<S {
                for c in 0..<3 {
                    XCTAssertEqual(out[(c * S + y) * S + x], Float(px[(y * S + x) * 3 + c]) / 127.5 - 1)
                }
            }
        }
    }

    /// Shrinking is antialiased: one-pixel stripes of 0 and 255 average to mid grey.
    func testShrinkingIsAntialiased() throws {
        let W = 256, H = 64, S = 32
        var px = [UInt8](repeating: 0, count: W * H * 3)
        for y in 0..<H { for x in stride(from: 0, to: W, by: 2) { for c in 0..<3 { px[(y * W + x) * 3 + c] = 255 } } }
        var out = [Float](repeating: 0, count: 3 * S * S)
        px.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer {
                ViewSampler.render(p, width: W, height: H, params: .whole(image: 0, width: W, height: H), size: S, into: $0.baseAddress!)
            }
        }
        // (the first and last columns see a one-sided filter, as in PIL: skip them)
        for c in 0..<3 { for y in 0..<S { for x in 1..<(S - 1) { XCTAssertEqual(out[(c * S + y) * S + x], 0, accuracy: 0.01) } } }
        // a left/right split stays a split (no blurring across the whole view)
        var half = [UInt8](repeating: 0, count: W * H * 3)
        for y in 0..<H { for x in (W / 2)..<W { for c in 0..<3 { half[(y * W + x) * 3 + c] = 255 } } }
        half.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer {
                ViewSampler.render(p, width: W, height: H, params: .whole(image: 0, width: W, height: H), size: S, into: $0.baseAddress!)
            }
        }
        XCTAssertEqual(out[0], -1)
        XCTAssertEqual(out[S - 1], 1)
        XCTAssertEqual(out[S / 2 - 2], -1)
        XCTAssertEqual(out[S / 2 + 1], 1)
    }

    /// Crop windows lie inside the picture, keep the configured aspect and area ranges, and the
    /// mixture / flip rates are as configured.
    func testViewStatistics() throws {
        let ds = try makeDataset()
        let cfg = ViewConfig(size: 16, wholeFraction: 0.25, minArea: 0.35, maxAspect: 16.0 / 9.0)
        let s = try ViewSampler(dataset: ds, config: cfg, batchSize: 1, seed: 12)
        var whole = 0, flips = 0
        let n = 4000
        for v in 0..<n {
            let p = s.params(view: v)
            let W = Double(ds.width(p.image)), H = Double(ds.height(p.image))
            XCTAssertGreaterThanOrEqual(p.cropX, 0)
            XCTAssertGreaterThanOrEqual(p.cropY, 0)
            XCTAssertLessThanOrEqual(p.cropX + p.cropWidth, W + 1e-9)
            XCTAssertLessThanOrEqual(p.cropY + p.cropHeight, H + 1e-9)
            if p.whole {
                whole += 1
                XCTAssertEqual(p.cropWidth, W); XCTAssertEqual(p.cropHeight, H)
            } else {
                let aspect = p.cropWidth / p.cropHeight
                XCTAssertLessThanOrEqual(aspect, 16.0 / 9.0 + 1e-9)
                XCTAssertGreaterThanOrEqual(aspect, 9.0 / 16.0 - 1e-9)
                let frac = p.cropWidth * p.cropHeight / (W * H)
                XCTAssertLessThanOrEqual(frac, 1 + 1e-9)
                // the area is the sampled one unless that aspect cannot fit it (then the largest crop)
                if frac < 0.35 - 1e-9 {
                    XCTAssertTrue(abs(p.cropWidth - W) < 1e-6 || abs(p.cropHeight - H) < 1e-6)
                }
            }
            if p.flip { flips += 1 }
            XCTAssertTrue((0.9...1.1).contains(p.brightness) && (0.9...1.1).contains(p.contrast)
                          && (0.9...1.1).contains(p.saturation))
        }
        XCTAssertEqual(Double(whole) / Double(n), 0.25, accuracy: 0.03)
        XCTAssertEqual(Double(flips) / Double(n), 0.5, accuracy: 0.03)
    }

    func testConfigValidation() throws {
        let ds = try makeDataset()
        for bad in [ViewConfig(size: 0), ViewConfig(wholeFraction: 1.5), ViewConfig(minArea: 0),
                    ViewConfig(minArea: 0.8, maxArea: 0.5), ViewConfig(maxAspect: 0.5), ViewConfig(brightness: 1)] {
            XCTAssertThrowsError(try ViewSampler(dataset: ds, config: bad, batchSize: 2, seed: 0))
        }
        XCTAssertThrowsError(try ViewSampler(dataset: ds, batchSize: 0, seed: 0))
    }

    /// Speed of one 512x384 -> 128x128 view (reported; the bound is loose for debug builds).
    func testViewSpeed() throws {
        let W = 512, H = 384, S = 128
        let px = randomPixels(W, H, seed: 5)
        var out = [Float](repeating: 0, count: 3 * S * S)
        let params = [ViewParams.whole(image: 0, width: W, height: H),
                      ViewParams(image: 0, whole: false, cropX: 40, cropY: 20, cropWidth: 400, cropHeight: 300,
                                 flip: true, brightness: 1.05, contrast: 0.97, saturation: 1.03)]
        var best = Double.infinity
        px.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for r in 0..<20 {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    ViewSampler.render(p, width: W, height: H, params: params[r % 2], size: S, into: o.baseAddress!)
                    best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                }
            }
        }
        print("ViewSampler: 512x384 -> 128x128 view: \(String(format: "%.3f", best)) ms (best of 20)")
        XCTAssertLessThan(best, 200)
    }
}
