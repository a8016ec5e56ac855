import XCTest
@testable import RepTokImage

final class PNGDecodeTests: XCTestCase {
    func testEveryPNGVariantDecodesToExpectedPixels() throws {
        XCTAssertEqual(Fixtures.allPNG.count, 21)
        for f in Fixtures.allPNG {
            let d = try ImageIO.decode(f.bytes)
            XCTAssertEqual(d.format, .png, f.name)
            XCTAssertEqual(d.image.width, f.width, f.name)
            XCTAssertEqual(d.image.height, f.height, f.name)
            XCTAssertEqual(d.image.pixels, f.expected, f.name)
            XCTAssertEqual(d.hadAlpha, f.hadAlpha, f.name)
            XCTAssertEqual(d.originalBitDepth, f.bitDepth, f.name)
            XCTAssertEqual(d.info.interlaced, f.interlaced, f.name)
            XCTAssertEqual(d.orientationApplied, 1, f.name)
            XCTAssertEqual(d.hadICC, f.name == "pngICC", f.name)
        }
    }

    func testColorModels() throws {
        XCTAssertEqual(try ImageIO.decode(Fixtures.pngGrey16.bytes).info.colorModel, .grey)
        XCTAssertEqual(try ImageIO.decode(Fixtures.pngGreyAlpha8.bytes).info.colorModel, .greyAlpha)
        XCTAssertEqual(try ImageIO.decode(Fixtures.pngPalette8tRNS.bytes).info.colorModel, .palette)
        XCTAssertEqual(try ImageIO.decode(Fixtures.pngRGB16.bytes).info.colorModel, .rgb)
        XCTAssertEqual(try ImageIO.decode(Fixtures.pngRGBA8.bytes).info.colorModel, .rgba)
    }

    /// Alpha is composited over white: a fully transparent pixel is white whatever its colour.
    func testTransparentPixelsAreWhite() throws {
        // In the generator, alpha is 0 where (x + 2y) % 5 == 0: pixel (0, 0).
        for f in [Fixtures.pngRGBA8, Fixtures.pngRGBA16, Fixtures.pngGreyAlpha8, Fixtures.pngGreyAlpha16] {
            let img = try ImageIO.decode(f.bytes).image
            XCTAssertTrue(img[0, 0] == (255, 255, 255), f.name)
        }
        // tRNS grey key is the sample at (2, 1).
        let g = try ImageIO.decode(Fixtures.pngGrey8tRNS.bytes).image
        XCTAssertTrue(g[2, 1] == (255, 255, 255))
    }

    func testInterlacedMatchesNonInterlacedEncoding() throws {
        // Same pixels either way: re-encode the decoded interlaced image and decode again.
        let d = try ImageIO.decode(Fixtures.pngInterlacedRGB8.bytes)
        XCTAssertTrue(d.info.interlaced)
        let again = try ImageIO.decode(try ImageIO.encode(d.image, format: .png))
        XCTAssertEqual(again.image, d.image)
        XCTAssertFalse(again.info.interlaced)
    }
}

final class JPEGDecodeTests: XCTestCase {
    func check(_ f: Fixture, tolerance: Int, file: StaticString = #filePath, line: UInt = #line) throws -> DecodedImage {
        let d = try ImageIO.decode(f.bytes)
        XCTAssertEqual(d.format, .jpeg, file: file, line: line)
        XCTAssertEqual(d.image.width, f.width, f.name, file: file, line: line)
        XCTAssertEqual(d.image.height, f.height, f.name, file: file, line: line)
        let diff = maxAbsDiff(d.image.pixels, f.expected)
        XCTAssertLessThanOrEqual(diff, tolerance, "\(f.name): max difference from Pillow's decode", file: file, line: line)
        XCTAssertFalse(d.hadAlpha)
        XCTAssertEqual(d.originalBitDepth, 8)
        return d
    }

    func testBaseline() throws {
        let d = try check(Fixtures.jpegBaseline420, tolerance: 1)
        XCTAssertEqual(d.info.colorModel, .ycbcr)
        XCTAssertFalse(d.info.interlaced)
        XCTAssertFalse(d.hadICC)
    }

    func testProgressive() throws {
        let d = try check(Fixtures.jpegProgressive, tolerance: 1)
        XCTAssertTrue(d.info.interlaced)
    }

    func testGrey() throws {
        let d = try check(Fixtures.jpegGrey, tolerance: 1)
        XCTAssertEqual(d.info.colorModel, .grey)
        for i in stride(from: 0, to: d.image.pixels.count, by: 3) {
            XCTAssertEqual(d.image.pixels[i], d.image.pixels[i + 1])
            XCTAssertEqual(d.image.pixels[i], d.image.pixels[i + 2])
        }
    }

    /// Adobe (inverted) CMYK, converted like PIL does (PIL rounds slightly differently).
    func testCMYKIsConverted() throws {
        let d = try check(Fixtures.jpegCMYK, tolerance: 2)
        XCTAssertEqual(d.info.colorModel, .cmyk)
        // and close to the RGB original the CMYK file was made from (Pillow: C = 255 - R, K = 0)
        var original = [UInt8]()
        for y in 0..<13 { for x in 0..<21 { original += [UInt8(x * 255 / 20), UInt8(y * 255 / 12), UInt8((x * y * 7 + 40) % 256)] } }
        XCTAssertGreaterThan(psnr(d.image.pixels, original), 40)
    }

    func testICCDetected() throws {
        let d = try check(Fixtures.jpegICC, tolerance: 1)
        XCTAssertTrue(d.hadICC)
    }

    /// Stored rotated/mirrored with EXIF orientation 1...8: all decode to the same upright image.
    func testExifOrientations() throws {
        let upright = try ImageIO.decode(Fixtures.jpegOrientation1.bytes).image
        XCTAssertEqual(upright.width, 24)
        XCTAssertEqual(upright.height, 16)
        for (i, f) in Fixtures.jpegOrientations.enumerated() {
            let o = i + 1
            let d = try ImageIO.decode(f.bytes)
            XCTAssertEqual(d.orientationApplied, o, f.name)
            XCTAssertEqual(d.info.storedWidth, o >= 5 ? 16 : 24, f.name)
            XCTAssertEqual(d.image.width, 24, f.name)
            XCTAssertEqual(d.image.height, 16, f.name)
            XCTAssertLessThanOrEqual(maxAbsDiff(d.image.pixels, upright.pixels), 2, f.name)
            XCTAssertLessThanOrEqual(maxAbsDiff(d.image.pixels, f.expected), 2, f.name)
        }
    }

    func testTooManyScansIsRejected() throws {
        var limits = ImageLimits()
        limits.maxScans = 3
        let e = expectError(try ImageIO.decode(Fixtures.jpegProgressive.bytes, limits: limits))
        XCTAssertEqual(e, .tooManyScans(limit: 3))
        // the baseline file has one scan
        XCTAssertNoThrow(try ImageIO.decode(Fixtures.jpegBaseline420.bytes, limits: limits))
    }
}

final class ExifParserTests: XCTestCase {
    func tiff(littleEndian: Bool, entries: [(tag: UInt16, type: UInt16, count: UInt32, value: UInt32)],
              ifdOffset: UInt32 = 8) -> [UInt8] {
        func u16(_ v: UInt16) -> [UInt8] { littleEndian ? [UInt8(v & 0xFF), UInt8(v >> 8)] : [UInt8(v >> 8), UInt8(v & 0xFF)] }
        func u32(_ v: UInt32) -> [UInt8] { littleEndian ? [0, 8, 16, 24].map { UInt8(v >> $0 & 0xFF) } : be32(v) }
        var d: [UInt8] = littleEndian ? [0x49, 0x49] : [0x4D, 0x4D]
        d += u16(42) + u32(ifdOffset) + u16(UInt16(entries.count))
        for e in entries {
            d += u16(e.tag) + u16(e.type) + u32(e.count)
            d += e.type == 3 ? u16(UInt16(e.value)) + [0, 0] : u32(e.value)
        }
        return d + u32(0)
    }

    func testParsesBothByteOrders() {
        for le in [true, false] {
            for o in 1...8 {
                let t = tiff(littleEndian: le, entries: [(0x010F, 2, 4, 0), (0x0112, 3, 1, UInt32(o))])
                XCTAssertEqual(Exif.orientation(tiff: t), o)
            }
        }
    }

    func testRejectsMalformed() {
        XCTAssertNil(Exif.orientation(tiff: []))
        XCTAssertNil(Exif.orientation(tiff: Array("XX*\0\u{8}\0\0\0".utf8)))
        XCTAssertNil(Exif.orientation(tiff: tiff(littleEndian: true, entries: [(0x0112, 3, 1, 9)])))
        XCTAssertNil(Exif.orientation(tiff: tiff(littleEndian: true, entries: [(0x0112, 3, 1, 0)])))
        XCTAssertNil(Exif.orientation(tiff: tiff(littleEndian: true, entries: [(0x0112, 2, 1, 6)])))
        XCTAssertNil(Exif.orientation(tiff: tiff(littleEndian: true, entries: [(0x0112, 3, 1, 6)], ifdOffset: 0xFFFF_FFF0)))
        XCTAssertNil(Exif.orientation(tiff: tiff(littleEndian: false, entries: [(0x0112, 3, 1, 6)], ifdOffset: 4)))
        // the entry count claims more entries than there are bytes
        var t = tiff(littleEndian: true, entries: [(0x0100, 3, 1, 1)])
        t[8] = 0xFF; t[9] = 0xFF
        XCTAssertNil(Exif.orientation(tiff: t))
        // every truncation of a valid TIFF: nil or the right answer, never a crash
        let good = tiff(littleEndian: true, entries: [(0x0112, 3, 1, 6)])
        for n in 0..<good.count {
            let r = Exif.orientation(tiff: Array(good.prefix(n)))
            XCTAssertTrue(r == nil || r == 6)
        }
    }

    func testOrientationTransforms() {
        // 3x2 image with distinct pixels: check against the definitions (stored -> upright).
        let w = 3, h = 2
        var px = [UInt8]()
        for y in 0..<h { for x in 0..<w { px += [UInt8(10 * y + x), 0, 0] } }
        let img = RGBImage(width: w, height: h, pixels: px)
        func at(_ i: RGBImage, _ x: Int, _ y: Int) -> UInt8 { i[x, y].0 }
        XCTAssertEqual(img.oriented(exif: 1), img)
        let m = img.oriented(exif: 2)
        XCTAssertEqual(at(m, 0, 0), 2)
        let r180 = img.oriented(exif: 3)
        XCTAssertEqual(at(r180, 0, 0), 12)
        let flip = img.oriented(exif: 4)
        XCTAssertEqual(at(flip, 0, 0), 10)
        let t = img.oriented(exif: 5)
        XCTAssertEqual([t.width, t.height], [2, 3])
        XCTAssertEqual([at(t, 0, 0), at(t, 1, 0), at(t, 0, 2)], [0, 10, 2])
        let cw = img.oriented(exif: 6)  // rotate 90 clockwise: top row is the stored left column, bottom first
        XCTAssertEqual([at(cw, 0, 0), at(cw, 1, 0), at(cw, 0, 2)], [10, 0, 12])
        let tv = img.oriented(exif: 7)
        XCTAssertEqual([at(tv, 0, 0), at(tv, 1, 0), at(tv, 1, 2)], [12, 2, 0])
        let ccw = img.oriented(exif: 8)
        XCTAssertEqual([at(ccw, 0, 0), at(ccw, 1, 0), at(ccw, 0, 2)], [2, 12, 0])
        // 6 then 8 is the identity; 5 and 7 are involutions
        XCTAssertEqual(img.oriented(exif: 6).oriented(exif: 8), img)
        XCTAssertEqual(img.oriented(exif: 5).oriented(exif: 5), img)
        XCTAssertEqual(img.oriented(exif: 7).oriented(exif: 7), img)
    }
}

final class PNMDecodeTests: XCTestCase {
    func testBinaryP6AndP5() throws {
        let p6 = Array("P6\n# comment\n3 2\n255\n".utf8) + (0..<18).map { UInt8($0 * 10) }
        let d = try ImageIO.decode(p6)
        XCTAssertEqual(d.format, .ppm)
        XCTAssertEqual(d.image, RGBImage(width: 3, height: 2, pixels: (0..<18).map { UInt8($0 * 10) }))
        XCTAssertEqual(d.originalBitDepth, 8)
        XCTAssertEqual(d.info.colorModel, .rgb)

        let p5 = Array("P5 2 2 255 ".utf8) + [0, 50, 100, 255]
        let g = try ImageIO.decode(p5)
        XCTAssertEqual(g.image.pixels, [0, 0, 0, 50, 50, 50, 100, 100, 100, 255, 255, 255])
        XCTAssertEqual(g.info.colorModel, .grey)
    }

    func testSixteenBitAndOddMaxval() throws {
        // maxval 65535, big-endian samples: 0, 257*128=32896 -> 128, 65535 -> 255, 32767 -> 127.5 -> 127 (v*255+32767)/65535
        let p5 = Array("P5 4 1 65535\n".utf8) + [0, 0, 0x80, 0x80, 0xFF, 0xFF, 0x7F, 0xFF]
        let d = try ImageIO.decode(p5)
        XCTAssertEqual(d.image.pixels, [0, 0, 0, 128, 128, 128, 255, 255, 255, 127, 127, 127])
        XCTAssertEqual(d.originalBitDepth, 16)
        // maxval 1000 (two bytes a sample)
        let p6 = Array("P6 1 1 1000\n".utf8) + [0x03, 0xE8, 0x01, 0xF4, 0x00, 0x00]
        XCTAssertEqual(try ImageIO.decode(p6).image.pixels, [255, 128, 0])
        // maxval 1: 0/1 -> 0/255; maxval 3
        XCTAssertEqual(try ImageIO.decode(Array("P5 2 1 1\n".utf8) + [1, 0]).image.pixels, [255, 255, 255, 0, 0, 0])
        XCTAssertEqual(try ImageIO.decode(Array("P5 1 1 3\n".utf8) + [2]).image.pixels, [170, 170, 170])
        XCTAssertEqual(try ImageIO.decode(Array("P5 1 1 3\n".utf8) + [2]).originalBitDepth, 2)
    }

    func testASCII() throws {
        let p3 = Array("P3\n# c\n2 1 # trailing comment\n255\n 1 2 3\n\n 250   251 252\n".utf8)
        XCTAssertEqual(try ImageIO.decode(p3).image.pixels, [1, 2, 3, 250, 251, 252])
        let p2 = Array("P2 3 1 15 0 15 8\n".utf8)
        // the last sample must be followed by whitespace
        expectError(try ImageIO.decode(Array("P2 3 1 15 0 15 8".utf8)))
        XCTAssertEqual(try ImageIO.decode(p2).image.pixels, [0, 0, 0, 255, 255, 255, 136, 136, 136])
        let p2wide = Array("P2 1 1 65535 0000065535\n".utf8)  // leading zeros within the token cap
        XCTAssertEqual(try ImageIO.decode(p2wide).image.pixels, [255, 255, 255])
    }

    func testRejectsBadHeadersAndSamples() {
        let cases: [String] = [
            "P6 0 1 255\n",            // zero width
            "P6 1 0 255\n",            // zero height
            "P6 -1 1 255\n",           // negative
            "P6 1 1 0\n\u{0}\u{0}\u{0}",       // maxval 0
            "P6 1 1 65536\n",          // maxval too big
            "P6 1 1 99999999999\n",    // token too long
            "P6 123456789012 1 255\n", // token too long
            "P6 1 1 2x5\n",            // junk in number
            "P3 1 1 255 1 2 300",      // sample above maxval
            "P3 1 1 255 1 2 1x",       // junk sample
            "P3 1 1 255 1 2 00000000001", // sample token too long
            "P3 1 1 255 1 2",          // missing sample
            "P2 2 1 255 1",            // missing sample
            "P6 1 1 255",              // header ends
            "P6 2 2 255\n\u{1}\u{2}",  // short raster
            "P5 1 1 10\n\u{b}",        // sample 11 > maxval 10
            "P7 1 1 255\n",            // PAM: not supported
            "P4 1 1\n\u{0}",           // PBM: not supported
        ]
        for c in cases { expectError(try ImageIO.decode(Array(c.utf8)), c) }
        XCTAssertEqual(expectError(try ImageIO.decode(Array("P6 0 1 255\n".utf8))), .invalidDimensions(width: 0, height: 1))
    }
}
