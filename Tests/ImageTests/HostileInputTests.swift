import RepTokTestSupport
import XCTest
import CImageCodecs
@testable import RepTokImage

/// Malformed, truncated, oversized and mutated files: every one must throw an ImageError (or,
/// for mutations, decode), never crash, hang or allocate the declared size.
final class HostileInputTests: XCTestCase {
    static let p6 = Array("P6\n# x\n5 3\n255\n".utf8) + noiseImage(width: 5, height: 3, seed: 3).pixels
    static let p5sixteen = Array("P5 3 2 65535\n".utf8) + (0..<12).map { UInt8($0 * 20) }
    static let p3 = Array("P3\n3 2\n255\n0 1 2 3 4 5 6 7 8\n9 10 11 12 13 14 15 16 17\n".utf8)

    var allFixtureFiles: [(String, [UInt8])] {
        Fixtures.allPNG.map { ($0.name, $0.bytes) }
            + [Fixtures.jpegBaseline420, Fixtures.jpegProgressive, Fixtures.jpegGrey, Fixtures.jpegCMYK,
               Fixtures.jpegICC, Fixtures.jpegOrientation6].map { ($0.name, $0.bytes) }
            + [("p6", Self.p6), ("p5sixteen", Self.p5sixteen), ("p3", Self.p3)]
    }

    func testEveryTruncationThrows() {
        for (name, file) in allFixtureFiles {
            XCTAssertNoThrow(try ImageIO.decode(file), name)
            for n in 0..<file.count {
                expectError(try ImageIO.decode(Array(file.prefix(n))), "\(name) cut at \(n) of \(file.count)")
            }
        }
    }

    /// ASCII PNM: the last sample must be followed by whitespace, so even a cut right after
    /// its digits (which could be a shorter number) is reported.
    func testASCIITruncationIsDetected() throws {
        XCTAssertEqual(try ImageIO.decode(Self.p3).image.pixels, (0..<18).map { UInt8($0) })
        if case .truncated? = expectError(try ImageIO.decode(Array(Self.p3.dropLast()))) {} else { XCTFail() }
    }

    func testPNGBadCRC() throws {
        let good = Fixtures.pngRGB8.bytes
        // IHDR's CRC (bytes 29...32)
        var bad = good
        bad[30] ^= 0x01
        XCTAssertNotNil(expectError(try ImageIO.decode(bad)))
        // IDAT's CRC
        let idat = try XCTUnwrap(pngChunkOffset(good, "IDAT"))
        let len = Int(good[idat]) << 24 | Int(good[idat + 1]) << 16 | Int(good[idat + 2]) << 8 | Int(good[idat + 3])
        bad = good
        bad[idat + 8 + len] ^= 0x80
        if case .corrupt? = expectError(try ImageIO.decode(bad)) {} else { XCTFail("IDAT CRC") }
        // IDAT data corrupted but its CRC recomputed: zlib/filter errors
        bad = good
        for i in idat + 8..<idat + 8 + len { bad[i] = 0xA5 }
        let crc = crc32(Array(bad[idat + 4..<idat + 8 + len]))
        bad.replaceSubrange(idat + 8 + len..<idat + 12 + len, with: be32(crc))
        expectError(try ImageIO.decode(bad))
        // An ancillary chunk with a bad CRC is dropped (libpng's default), the image decodes.
        let text = try XCTUnwrap(pngChunkOffset(good, "tEXt"))
        bad = good
        bad[text + 9] ^= 0x20  // inside the text
        XCTAssertEqual(try ImageIO.decode(bad).image.pixels, Fixtures.pngRGB8.expected)
    }

    func testPNGUnknownChunks() throws {
        let good = Fixtures.pngRGB8.bytes
        let idat = try XCTUnwrap(pngChunkOffset(good, "IDAT"))
        // unknown ancillary chunk: skipped
        let anc = Array(good[..<idat]) + pngChunk("abCd", [1, 2, 3]) + Array(good[idat...])
        XCTAssertEqual(try ImageIO.decode(anc).image.pixels, Fixtures.pngRGB8.expected)
        // unknown critical chunk: rejected
        let crit = Array(good[..<idat]) + pngChunk("ABCd", [1, 2, 3]) + Array(good[idat...])
        expectError(try ImageIO.decode(crit))
        // missing IEND
        let iend = try XCTUnwrap(pngChunkOffset(good, "IEND"))
        expectError(try ImageIO.decode(Array(good[..<iend])))
        // palette image without PLTE
        let pal = Fixtures.pngPalette8tRNS.bytes
        let plte = try XCTUnwrap(pngChunkOffset(pal, "PLTE"))
        let plteLen = Int(pal[plte + 2]) << 8 | Int(pal[plte + 3])
        expectError(try ImageIO.decode(Array(pal[..<plte]) + Array(pal[(plte + 12 + plteLen)...])))
    }

    func pngHeader(width: UInt32, height: UInt32, depth: UInt8 = 8, colorType: UInt8 = 2) -> [UInt8] {
        [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
            + pngChunk("IHDR", be32(width) + be32(height) + [depth, colorType, 0, 0, 0])
            + pngChunk("IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]) + pngChunk("IEND", [])
    }

    func jpegWithSize(_ base: [UInt8], width: Int, height: Int) throws -> [UInt8] {
        var d = base
        var p = 2
        while p + 4 < d.count {
            XCTAssertEqual(d[p], 0xFF)
            let marker = d[p + 1]
            let len = Int(d[p + 2]) << 8 | Int(d[p + 3])
            if marker == 0xC0 || marker == 0xC2 {
                d[p + 5] = UInt8(height >> 8); d[p + 6] = UInt8(height & 0xFF)
                d[p + 7] = UInt8(width >> 8); d[p + 8] = UInt8(width & 0xFF)
                return d
            }
            p += 2 + len
        }
        throw ImageError.corrupt(format: .jpeg, detail: "no SOF in test file")
    }

    func assertFastLimitError(_ data: [UInt8], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let clock = ContinuousClock()
        let start = clock.now
        let error = expectError(try ImageIO.decode(data), what, file: file, line: line)
        let t = clock.now - start
        if case .tooLarge? = error {} else { XCTFail("\(what): expected tooLarge, got \(String(describing: error))", file: file, line: line) }
        XCTAssertLessThan(t, .milliseconds(200), what, file: file, line: line)
    }

    func testHugeDeclaredSizesAreRejectedFromTheHeader() throws {
        assertFastLimitError(pngHeader(width: 100_000, height: 100_000), "PNG 100000x100000")
        assertFastLimitError(pngHeader(width: 20_000, height: 20_000), "PNG 400 MP")
        assertFastLimitError(pngHeader(width: 0x7FFF_FFFF, height: 1), "PNG 2^31-1 wide")
        assertFastLimitError(try jpegWithSize(Fixtures.jpegBaseline420.bytes, width: 60_000, height: 60_000), "JPEG 60000x60000")
        assertFastLimitError(try jpegWithSize(Fixtures.jpegProgressive.bytes, width: 65535, height: 65535), "JPEG 65535x65535")
        assertFastLimitError(Array("P6 100000 100000 255\n".utf8), "PPM 100000x100000")
        assertFastLimitError(Array("P3 100000 100000 255\n1 2 3".utf8), "PPM ASCII 100000x100000")
        assertFastLimitError(Array("P5 70000 1 255\n".utf8), "PGM 70000 wide")
        assertFastLimitError(Array("P6 9999999999 9999999999 255\n".utf8), "PPM 10-digit sizes")
        // Custom limits apply too
        var small = ImageLimits()
        small.maxPixels = 20
        XCTAssertEqual(expectError(try ImageIO.decode(Fixtures.pngRGB8.bytes, limits: small)),
                       .tooLarge(width: 7, height: 5, maxWidth: 65535, maxHeight: 65535, maxPixels: 20))
        XCTAssertEqual(expectError(try ImageIO.decode(Fixtures.jpegGrey.bytes, limits: small)),
                       .tooLarge(width: 21, height: 13, maxWidth: 65535, maxHeight: 65535, maxPixels: 20))
        small.maxWidth = 4
        XCTAssertEqual(expectError(try ImageIO.decode(Self.p6, limits: small)),
                       .tooLarge(width: 5, height: 3, maxWidth: 4, maxHeight: 65535, maxPixels: 20))
    }

    /// The C decoders check the limits themselves (the Swift IHDR pre-check is a first line).
    func testCLevelLimitChecks() {
        var limits = rt_img_limits(max_width: 65535, max_height: 65535, max_pixels: 20, max_scans: 500,
                                   max_chunk_bytes: 1 << 20)
        var out = rt_img_decoded()
        let png = Fixtures.pngRGB8.bytes
        let status = png.withUnsafeBufferPointer { rt_png_decode($0.baseAddress, $0.count, &limits, &out) }
        XCTAssertEqual(Int(status), RT_IMG_LIMIT)
        XCTAssertEqual([out.width, out.height], [7, 5])
        XCTAssertNil(out.pixels)
        // libpng's own user limits (png_set_user_limits)
        limits = rt_img_limits(max_width: 4, max_height: 65535, max_pixels: 1000, max_scans: 500, max_chunk_bytes: 1 << 20)
        let s2 = png.withUnsafeBufferPointer { rt_png_decode($0.baseAddress, $0.count, &limits, &out) }
        XCTAssertEqual(Int(s2), RT_IMG_LIMIT)
        XCTAssertNil(out.pixels)
        // no data
        XCTAssertEqual(Int(rt_jpeg_decode(nil, 0, &limits, &out)), RT_IMG_BAD_ARGUMENT)
        XCTAssertEqual(Int(rt_png_decode(nil, 0, &limits, &out)), RT_IMG_BAD_ARGUMENT)
    }

    func testZeroSizes() throws {
        expectError(try ImageIO.decode(pngHeader(width: 0, height: 5)))
        expectError(try ImageIO.decode(pngHeader(width: 5, height: 0)))
        expectError(try ImageIO.decode(try jpegWithSize(Fixtures.jpegBaseline420.bytes, width: 0, height: 13)))
        expectError(try ImageIO.decode(try jpegWithSize(Fixtures.jpegBaseline420.bytes, width: 21, height: 0)))
        XCTAssertEqual(expectError(try ImageIO.decode(Array("P5 0 0 255\n".utf8))), .invalidDimensions(width: 0, height: 0))
        XCTAssertEqual(expectError(try ImageIO.decode(pngHeader(width: 0, height: 5))), .invalidDimensions(width: 0, height: 5))
        XCTAssertThrowsError(try ImageLimits().checkOutput(width: 0, height: 1))
    }

    func testCheckOutput() {
        let l = ImageLimits()
        XCTAssertNoThrow(try l.checkOutput(width: 10_000, height: 10_000))
        XCTAssertEqual(expectError(try l.checkOutput(width: 10_001, height: 10_000)),
                       .outputTooLarge(width: 10_001, height: 10_000, maxWidth: 65535, maxHeight: 65535, maxPixels: 100_000_000))
        expectError(try l.checkOutput(width: 65536, height: 1))
        expectError(try l.checkOutput(width: 1, height: 65536))
        expectError(try l.checkOutput(width: Int.max, height: Int.max))
        expectError(try l.checkOutput(width: -1, height: 5))
    }

    func testCorruptJPEGHuffmanData() throws {
        let good = Fixtures.jpegBaseline420.bytes
        // find SOS and replace the entropy-coded data (up to EOI) with stuffed 0xFF bytes:
        // all-ones bit strings are not a valid Huffman code
        var p = 2
        var sosData = -1
        while p + 4 < good.count {
            let marker = good[p + 1], len = Int(good[p + 2]) << 8 | Int(good[p + 3])
            if marker == 0xDA { sosData = p + 2 + len; break }
            p += 2 + len
        }
        XCTAssertGreaterThan(sosData, 0)
        var bad = Array(good[..<sosData])
        while bad.count < good.count - 2 { bad += [0xFF, 0x00] }
        bad += [0xFF, 0xD9]
        let e = expectError(try ImageIO.decode(bad))
        if case .corrupt(.jpeg, let detail)? = e {
            XCTAssertTrue(detail.contains("Corrupt JPEG data"), detail)
        } else { XCTFail("\(String(describing: e))") }
        // a marker in the middle of the data
        var marker = good
        marker.replaceSubrange(sosData + 10..<sosData + 12, with: [0xFF, 0xD0 + 3])
        expectError(try ImageIO.decode(marker))
        // garbage instead of a quantization table id etc.: header bytes zeroed
        var hdr = good
        for i in 2..<min(40, hdr.count) { hdr[i] = 0 }
        expectError(try ImageIO.decode(hdr))
    }

    /// Seeded random mutations of each valid file: throws an ImageError or decodes, never
    /// crashes. (Lower pixel cap so that a mutated size field cannot ask for much memory.)
    func testRandomMutations() {
        var limits = ImageLimits()
        limits.maxPixels = 1 << 20
        let files: [(String, [UInt8])] = [
            ("pngRGBA16", Fixtures.pngRGBA16.bytes), ("pngPalette8tRNS", Fixtures.pngPalette8tRNS.bytes),
            ("pngInterlacedPalette4", Fixtures.pngInterlacedPalette4.bytes), ("pngGrey1", Fixtures.pngGrey1.bytes),
            ("jpegBaseline420", Fixtures.jpegBaseline420.bytes), ("jpegProgressive", Fixtures.jpegProgressive.bytes),
            ("jpegCMYK", Fixtures.jpegCMYK.bytes), ("jpegOrientation6", Fixtures.jpegOrientation6.bytes),
            ("p6", Self.p6), ("p5sixteen", Self.p5sixteen), ("p3", Self.p3),
        ]
        var decoded = 0, rejected = 0
        for (index, (name, file)) in files.enumerated() {
            var rng = SeededRNG(seed: 0x5EED_0000 + UInt64(index))
            for _ in 0..<2000 {
                var m = file
                let edits = Int.random(in: 1...4, using: &rng)
                for _ in 0..<edits {
                    let i = Int.random(in: 0..<m.count, using: &rng)
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0: m[i] = UInt8.random(in: 0...255, using: &rng)
                    case 1: m[i] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
                    case 2: m[i] = [0x00, 0xFF, 0x7F, 0x80][Int.random(in: 0..<4, using: &rng)]
                    default:
                        if m.count > 2 { m.remove(at: i) }
                    }
                }
                do {
                    let d = try ImageIO.decode(m, limits: limits)
                    XCTAssertEqual(d.image.pixels.count, d.image.width * d.image.height * 3, name)
                    decoded += 1
                } catch is ImageError {
                    rejected += 1
                } catch {
                    XCTFail("\(name): \(error)")
                }
            }
        }
        XCTAssertEqual(decoded + rejected, files.count * 2000)
        print("mutations: \(decoded) decoded, \(rejected) rejected")
    }
}
