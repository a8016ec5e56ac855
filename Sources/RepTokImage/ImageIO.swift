// Decoding (PNG, JPEG, PPM/PGM, chosen by magic bytes) and encoding (PNG, JPEG, PPM).
//
// Decisions, for every caller:
//  - Output is always RGB8. Grey is replicated; palettes expanded; 16-bit samples rounded to 8.
//  - Alpha (PNG alpha channels and tRNS) is COMPOSITED OVER WHITE, at the source bit depth:
//    v = (c*a + max*(max - a) + max/2) / max, then 16-bit -> 8-bit rounding. `hadAlpha` says so.
//  - CMYK/YCCK JPEGs are converted: R = (255-C)(255-K)/255 (rounded), likewise G, B; files with
//    an Adobe APP14 marker hold inverted CMYK (Photoshop), which is what PIL/ImageMagick assume.
//  - ICC profiles are NOT applied: pixels are treated as sRGB. `hadICC` reports a PNG iCCP chunk
//    or JPEG APP2 ICC_PROFILE segment so that rtenc can warn. Other metadata (text, gAMA, cHRM,
//    sRGB, pHYs, EXIF apart from orientation...) is ignored and dropped.
//  - JPEG EXIF orientation 1...8 is applied (from the first APP1 Exif segment; malformed EXIF
//    means no rotation). PNG eXIf is not read.
//  - No gamma handling anywhere: values stay sRGB-encoded.
//  - Corrupt-data warnings from libjpeg (premature end, bad Huffman code...) are errors, so a
//    truncated file always fails. libpng warnings are discarded; its errors (bad CRC in a
//    critical chunk, bad zlib data, missing IEND...) are errors.
//  - Limits (`ImageLimits`) are checked from the header before pixel memory is allocated.
import CImageCodecs
import CPNG  // the libpng header version (libraryVersions); CImageCodecs links its own libraries

public enum ImageIO {
    /// Default JPEG quality for `encode`.
    public static let defaultJPEGQuality = 92
    /// JPEG encoder: chroma is kept at full resolution (4:4:4) at and above this quality,
    /// subsampled 4:2:0 below it (ImageMagick's rule).
    public static let jpegFullChromaQuality = 90
    /// zlib level for PNG output.
    public static let pngCompressionLevel = 6

    /// Decodes PNG, JPEG or PPM/PGM (chosen by the leading bytes, not by any file name).
    public static func decode(_ data: [UInt8], limits: ImageLimits = .default) throws -> DecodedImage {
        if data.isEmpty { throw ImageError.emptyInput }
        if data.count > limits.maxBytes { throw ImageError.inputTooLarge(bytes: data.count, maxBytes: limits.maxBytes) }
        guard let format = ImageFormat.sniff(data) else {
            throw ImageError.unknownFormat(what: ImageFormat.describeUnsupported(data))
        }
        switch format {
        case .png: return try decodePNG(data, limits: limits)
        case .jpeg: return try decodeJPEG(data, limits: limits)
        case .ppm: return try PNM.decode(data, limits: limits)
        }
    }

    /// Encodes as PNG (8-bit RGB), JPEG (`quality` 1...100, see `jpegFullChromaQuality`) or PPM
    /// (binary P6). `quality` is ignored except for JPEG.
    public static func encode(_ img: RGBImage, format: ImageFormat,
                              quality: Int = ImageIO.defaultJPEGQuality) throws -> [UInt8] {
        guard img.width > 0 && img.height > 0 else {
            throw ImageError.encodeFailed(format: format, detail: "empty image \(img.width)x\(img.height)")
        }
        let (n, overflow) = img.width.multipliedReportingOverflow(by: img.height)
        guard !overflow && n <= Int.max / 3 && img.pixels.count == n * 3 else {
            throw ImageError.encodeFailed(format: format, detail: "pixel count does not match \(img.width)x\(img.height)")
        }
        switch format {
        case .ppm:
            return PNM.encode(img)
        case .png:
            guard img.width <= 0x7FFF_FFFF && img.height <= 0x7FFF_FFFF else {
                throw ImageError.encodeFailed(format: .png, detail: "larger than PNG allows")
            }
            return try runEncoder(.png) { out in
                img.pixels.withUnsafeBufferPointer {
                    rt_png_encode($0.baseAddress, UInt32(img.width), UInt32(img.height),
                                  Int32(pngCompressionLevel), out)
                }
            }
        case .jpeg:
            guard (1...100).contains(quality) else {
                throw ImageError.encodeFailed(format: .jpeg, detail: "quality \(quality) outside 1...100")
            }
            guard img.width <= 65500 && img.height <= 65500 else {
                throw ImageError.encodeFailed(format: .jpeg, detail: "JPEG holds at most 65500 pixels a side")
            }
            let full: Int32 = quality >= jpegFullChromaQuality ? 1 : 0
            return try runEncoder(.jpeg) { out in
                img.pixels.withUnsafeBufferPointer {
                    rt_jpeg_encode($0.baseAddress, UInt32(img.width), UInt32(img.height),
                                   Int32(quality), full, out)
                }
            }
        }
    }

    /// libpng and libjpeg versions, e.g. "libpng 1.6.39, libjpeg API 62".
    public static var libraryVersions: String {
        let png = String(cString: rt_png_library_version())
        // The libpng headers' version (the CPNG module's png.h).
        let header = PNG_LIBPNG_VER_STRING
        return "libpng \(png) (headers \(header)), libjpeg API \(rt_jpeg_library_version())"
    }

    // MARK: - C bridging

    static func cLimits(_ l: ImageLimits) -> rt_img_limits {
        rt_img_limits(max_width: UInt32(clamping: max(0, l.maxWidth)),
                      max_height: UInt32(clamping: max(0, l.maxHeight)),
                      max_pixels: UInt64(max(0, l.maxPixels)),
                      max_scans: UInt32(clamping: max(0, l.maxScans)),
                      max_chunk_bytes: UInt32(clamping: max(0, l.maxChunkBytes)))
    }

    static func message<T>(_ tuple: inout T) -> String {
        withUnsafeBytes(of: &tuple) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return ImageError.sanitize(String(decoding: bytes, as: UTF8.self))
        }
    }

    static func mapError(_ status: Int32, format: ImageFormat, out: inout rt_img_decoded,
                         limits: ImageLimits) -> ImageError {
        let text = message(&out.message)
        switch Int(status) {
        case RT_IMG_TRUNCATED:
            return .truncated(format: format, detail: text)
        case RT_IMG_LIMIT:
            let w = Int(out.width), h = Int(out.height)
            if w > 0 && h > 0 {
                do { try limits.check(width: w, height: h) } catch let e as ImageError { return e } catch {}
            } else if out.width == 0 && out.height == 0 && format == .png {
                // libpng's own user-limit check fired before IHDR was stored.
                return .tooLarge(width: 0, height: 0, maxWidth: limits.maxWidth,
                                 maxHeight: limits.maxHeight, maxPixels: limits.maxPixels)
            } else {
                return .invalidDimensions(width: w, height: h)
            }
            // within our limits but beyond the library's (JPEG: 65500 pixels a side)
            return .unsupported(format: format, detail: text)
        case RT_IMG_TOO_MANY_SCANS:
            return .tooManyScans(limit: limits.maxScans)
        case RT_IMG_UNSUPPORTED:
            return .unsupported(format: format, detail: text)
        case RT_IMG_NO_MEMORY:
            return .outOfMemory(format: format)
        default:
            return .corrupt(format: format, detail: text.isEmpty ? "decoder error \(status)" : text)
        }
    }

    static func colorModel(_ c: Int32) -> SourceColorModel {
        switch Int(c) {
        case RT_COLOR_GREY: return .grey
        case RT_COLOR_GREY_ALPHA: return .greyAlpha
        case RT_COLOR_PALETTE: return .palette
        case RT_COLOR_RGBA: return .rgba
        case RT_COLOR_YCBCR: return .ycbcr
        case RT_COLOR_CMYK: return .cmyk
        case RT_COLOR_YCCK: return .ycck
        default: return .rgb
        }
    }

    typealias CDecoder = (UnsafePointer<UInt8>?, Int, UnsafePointer<rt_img_limits>?,
                          UnsafeMutablePointer<rt_img_decoded>?) -> Int32

    /// Runs a C decoder and copies its pixels out; `exif` gets the JPEG Exif payload.
    static func runDecoder(_ decoder: CDecoder, _ data: [UInt8], format: ImageFormat,
                           limits: ImageLimits) throws -> (RGBImage, rt_img_decoded, [UInt8]) {
        var out = rt_img_decoded()
        var cl = cLimits(limits)
        let status = data.withUnsafeBufferPointer { buf in
            decoder(buf.baseAddress, buf.count, &cl, &out)
        }
        defer { rt_img_decoded_free(&out) }
        guard Int(status) == RT_IMG_OK, let px = out.pixels else {
            if Int(status) == RT_IMG_OK { throw ImageError.corrupt(format: format, detail: "no pixels") }
            throw mapError(status, format: format, out: &out, limits: limits)
        }
        let w = Int(out.width), h = Int(out.height)
        let pixels = Array(UnsafeBufferPointer(start: px, count: w * h * 3))
        var exif: [UInt8] = []
        if let e = out.exif, out.exif_size > 0 { exif = Array(UnsafeBufferPointer(start: e, count: out.exif_size)) }
        var info = out
        info.pixels = nil
        info.exif = nil
        return (RGBImage(width: w, height: h, pixels: pixels), info, exif)
    }

    static func decodePNG(_ data: [UInt8], limits: ImageLimits) throws -> DecodedImage {
        // IHDR is always the first chunk: check its size before libpng sees the file, so the
        // error names the size (libpng's own user-limit check is the second line).
        if data.count >= 24 && data[12..<16].elementsEqual("IHDR".utf8) {
            func be32(_ o: Int) -> Int { Int(data[o]) << 24 | Int(data[o + 1]) << 16 | Int(data[o + 2]) << 8 | Int(data[o + 3]) }
            try limits.check(width: be32(16), height: be32(20))
        }
        let (image, d, _) = try runDecoder(rt_png_decode, data, format: .png, limits: limits)
        let info = ImageInfo(format: .png, colorModel: colorModel(d.color), hadAlpha: d.had_alpha != 0,
                             hadICC: d.had_icc != 0, originalBitDepth: Int(d.bit_depth),
                             orientationApplied: 1, interlaced: d.interlaced != 0,
                             storedWidth: image.width, storedHeight: image.height)
        return DecodedImage(image: image, info: info)
    }

    static func decodeJPEG(_ data: [UInt8], limits: ImageLimits) throws -> DecodedImage {
        let (stored, d, exif) = try runDecoder(rt_jpeg_decode, data, format: .jpeg, limits: limits)
        let orientation = exif.isEmpty ? 1 : (Exif.orientation(tiff: exif) ?? 1)
        let image = stored.oriented(exif: orientation)
        let info = ImageInfo(format: .jpeg, colorModel: colorModel(d.color), hadAlpha: false,
                             hadICC: d.had_icc != 0, originalBitDepth: Int(d.bit_depth),
                             orientationApplied: orientation, interlaced: d.interlaced != 0,
                             storedWidth: stored.width, storedHeight: stored.height)
        return DecodedImage(image: image, info: info)
    }

    static func runEncoder(_ format: ImageFormat,
                           _ body: (UnsafeMutablePointer<rt_img_encoded>) -> Int32) throws -> [UInt8] {
        var out = rt_img_encoded()
        let status = body(&out)
        defer { rt_img_encoded_free(&out) }
        guard Int(status) == RT_IMG_OK, let p = out.data else {
            throw ImageError.encodeFailed(format: format, detail: message(&out.message))
        }
        return Array(UnsafeBufferPointer(start: p, count: out.size))
    }
}
