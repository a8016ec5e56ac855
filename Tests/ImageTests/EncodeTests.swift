import XCTest
@testable import RepTokImage

final class EncodeTests: XCTestCase {
    func testPNGRoundTripIsExact() throws {
        for (w, h) in [(1, 1), (7, 5), (64, 33)] {
            let img = noiseImage(width: w, height: h, seed: UInt64(w * 100 + h))
            let png = try ImageIO.encode(img, format: .png)
            XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            let d = try ImageIO.decode(png)
            XCTAssertEqual(d.image, img)
            XCTAssertEqual(d.info.colorModel, .rgb)
            XCTAssertFalse(d.hadAlpha)
        }
    }

    func testPPMRoundTripIsExact() throws {
        let img = noiseImage(width: 13, height: 9, seed: 7)
        let ppm = try ImageIO.encode(img, format: .ppm)
        XCTAssertEqual(Array(ppm.prefix(3)), Array("P6\n".utf8))
        XCTAssertEqual(try ImageIO.decode(ppm).image, img)
    }

    func testJPEGRoundTripPSNR() throws {
        let img = testImage(width: 96, height: 64)
        let q92 = try ImageIO.encode(img, format: .jpeg)  // default quality 92, 4:4:4
        let d = try ImageIO.decode(q92)
        XCTAssertEqual(d.image.width, 96)
        XCTAssertEqual(d.image.height, 64)
        XCTAssertGreaterThan(psnr(d.image.pixels, img.pixels), 38)
        let q50 = try ImageIO.encode(img, format: .jpeg, quality: 50)  // 4:2:0
        XCTAssertLessThan(q50.count, q92.count)
        XCTAssertGreaterThan(psnr(try ImageIO.decode(q50).image.pixels, img.pixels), 28)
        // odd size, 1x1
        for (w, h) in [(1, 1), (17, 3)] {
            let small = testImage(width: w, height: h)
            let r = try ImageIO.decode(try ImageIO.encode(small, format: .jpeg, quality: 100)).image
            XCTAssertEqual(r.width, w)
            XCTAssertLessThanOrEqual(maxAbsDiff(r.pixels, small.pixels), 6)
        }
    }

    func testEncodeRejectsBadArguments() {
        let img = testImage(width: 4, height: 4)
        expectError(try ImageIO.encode(img, format: .jpeg, quality: 0))
        expectError(try ImageIO.encode(img, format: .jpeg, quality: 101))
        for f in ImageFormat.allCases {
            expectError(try ImageIO.encode(RGBImage(width: 0, height: 0), format: f))
            var bad = img
            bad.pixels.removeLast()
            expectError(try ImageIO.encode(bad, format: f))
        }
        // JPEG cannot hold more than 65500 pixels a side (checked before encoding)
        let wide = RGBImage(width: 65501, height: 1)
        XCTAssertEqual(expectError(try ImageIO.encode(wide, format: .jpeg)),
                       .encodeFailed(format: .jpeg, detail: "JPEG holds at most 65500 pixels a side"))
    }

    func testFormatFromExtension() {
        XCTAssertEqual(ImageFormat(pathExtension: "png"), .png)
        XCTAssertEqual(ImageFormat(pathExtension: ".PNG"), .png)
        XCTAssertEqual(ImageFormat(pathExtension: "jpg"), .jpeg)
        XCTAssertEqual(ImageFormat(pathExtension: "JPEG"), .jpeg)
        XCTAssertEqual(ImageFormat(pathExtension: "ppm"), .ppm)
        XCTAssertEqual(ImageFormat(pathExtension: "pnm"), .ppm)
        XCTAssertEqual(ImageFormat(pathExtension: "pgm"), .ppm)
        XCTAssertNil(ImageFormat(pathExtension: "gif"))
        XCTAssertNil(ImageFormat(pathExtension: ""))
        XCTAssertEqual(ImageFormat(path: "/a/b.c/photo.JPG"), .jpeg)
        XCTAssertNil(ImageFormat(path: "/a/b.png/photo"))
        XCTAssertNil(ImageFormat(path: ".png"))
    }

    func testSniffing() {
        XCTAssertEqual(ImageFormat.sniff(Fixtures.pngRGB8.bytes), .png)
        XCTAssertEqual(ImageFormat.sniff(Fixtures.jpegGrey.bytes), .jpeg)
        XCTAssertEqual(ImageFormat.sniff(Array("P6\n".utf8)), .ppm)
        XCTAssertNil(ImageFormat.sniff(Array("GIF89a".utf8)))
        XCTAssertEqual(expectError(try ImageIO.decode(Array("GIF89a\u{1}\u{0}".utf8))), .unknownFormat(what: "GIF"))
        XCTAssertEqual(expectError(try ImageIO.decode([])), .emptyInput)
        var limits = ImageLimits()
        limits.maxBytes = 100
        XCTAssertEqual(expectError(try ImageIO.decode(Fixtures.pngRGB8.bytes, limits: limits)),
                       .inputTooLarge(bytes: Fixtures.pngRGB8.bytes.count, maxBytes: 100))
    }

    func testLibraryVersions() {
        XCTAssertTrue(ImageIO.libraryVersions.contains("libpng 1.6"), ImageIO.libraryVersions)
    }
}

final class RGBImageTests: XCTestCase {
    func testPlanarRoundTrip() {
        let img = noiseImage(width: 5, height: 3, seed: 1)
        let p = img.planarFloats()
        XCTAssertEqual(p.count, 45)
        // layout [3, H, W]
        XCTAssertEqual(p[0], Float(img.pixels[0]) / 127.5 - 1, accuracy: 1e-6)
        XCTAssertEqual(p[15 + 2 * 5 + 4], Float(img.pixels[(2 * 5 + 4) * 3 + 1]) / 127.5 - 1, accuracy: 1e-6)
        XCTAssertEqual(p[30 + 7], Float(img.pixels[7 * 3 + 2]) / 127.5 - 1, accuracy: 1e-6)
        XCTAssertEqual(RGBImage(planar: p, width: 5, height: 3), img)
        // other scale/offset
        let q = img.planarFloats(scale: 1 / 255, offset: 0)
        XCTAssertEqual(RGBImage(planar: q, width: 5, height: 3, scale: 1 / 255, offset: 0), img)
        // all 256 values survive the default mapping
        let all = RGBImage(width: 256, height: 1, pixels: (0..<768).map { UInt8($0 / 3) })
        XCTAssertEqual(RGBImage(planar: all.planarFloats(), width: 256, height: 1), all)
    }

    func testQuantizeRoundsAndClamps() {
        // x in [-1, 1]: pixel = round((x + 1) * 127.5)
        let xs: [Float] = [-1, 1, 0, -2, 2, .nan, .infinity, -.infinity, 1 / 127.5 - 1, 0.002]
        let p = xs + xs + xs
        let img = RGBImage(planar: p, width: xs.count, height: 1)
        let r = (0..<xs.count).map { img.pixels[$0 * 3] }
        XCTAssertEqual(r, [0, 255, 128, 0, 255, 0, 255, 0, 1, 128])
        XCTAssertEqual(RGBImage.quantize(127.5), 128)
        XCTAssertEqual(RGBImage.quantize(127.49), 127)
        XCTAssertEqual(RGBImage.quantize(254.5), 255)
    }
}
