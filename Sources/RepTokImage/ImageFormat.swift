// File formats, decode results and what we learned about the source.

/// The formats this module reads and writes.
public enum ImageFormat: String, Sendable, CaseIterable, CustomStringConvertible {
    case png
    case jpeg
    /// Netpbm: reads P2/P3/P5/P6 (PGM/PPM, ASCII and binary, maxval 1...65535); writes P6.
    case ppm

    /// From a file name extension, with or without the dot, any case: png; jpg, jpeg, jpe, jfif;
    /// ppm, pnm, pgm. `nil` for anything else. (`.pgm` writes P6 colour like `.ppm`.)
    public init?(pathExtension: String) {
        var ext = Substring(pathExtension)
        if ext.hasPrefix(".") { ext = ext.dropFirst() }
        switch ext.lowercased() {
        case "png": self = .png
        case "jpg", "jpeg", "jpe", "jfif": self = .jpeg
        case "ppm", "pnm", "pgm": self = .ppm
        default: return nil
        }
    }

    /// The format of a path's extension (text after the last "." of the last component).
    public init?(path: String) {
        let name = path.split(separator: "/", omittingEmptySubsequences: false).last ?? ""
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
        self.init(pathExtension: String(name[name.index(after: dot)...]))
    }

    /// The usual extension, without the dot.
    public var fileExtension: String {
        switch self {
        case .png: return "png"
        case .jpeg: return "jpg"
        case .ppm: return "ppm"
        }
    }

    public var description: String {
        switch self {
        case .png: return "PNG"
        case .jpeg: return "JPEG"
        case .ppm: return "PPM/PGM"
        }
    }

    /// The format the first bytes announce (PNG signature, JPEG SOI + marker, P2/P3/P5/P6 +
    /// whitespace), or nil.
    public static func sniff(_ data: [UInt8]) -> ImageFormat? {
        if data.count >= 8 && data[0..<8].elementsEqual(pngSignature) { return .png }
        if data.count >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF { return .jpeg }
        if data.count >= 3 && data[0] == UInt8(ascii: "P")
            && [UInt8(ascii: "2"), UInt8(ascii: "3"), UInt8(ascii: "5"), UInt8(ascii: "6")].contains(data[1])
            && PNM.isWhitespace(data[2]) {
            return .ppm
        }
        return nil
    }

    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// A name for formats we recognise but do not read, for the error message.
    static func describeUnsupported(_ d: [UInt8]) -> String {
        func starts(_ s: [UInt8]) -> Bool { d.count >= s.count && d[0..<s.count].elementsEqual(s) }
        func ascii(_ s: String) -> [UInt8] { Array(s.utf8) }
        if starts(ascii("GIF87a")) || starts(ascii("GIF89a")) { return "GIF" }
        if starts(ascii("RIFF")) && d.count >= 12 && d[8..<12].elementsEqual(ascii("WEBP")) { return "WebP" }
        if starts(ascii("BM")) { return "BMP" }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
        if starts([0xFF, 0x0A]) || starts([0, 0, 0, 0x0C, 0x4A, 0x58, 0x4C, 0x20]) { return "JPEG XL" }
        if d.count >= 12 && d[4..<8].elementsEqual(ascii("ftyp")) { return "ISO-BMFF (AVIF/HEIF)" }
        if starts([0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50]) || starts([0xFF, 0x4F, 0xFF, 0x51]) { return "JPEG 2000" }
        if starts(ascii("P1")) || starts(ascii("P4")) { return "PBM" }
        if starts(ascii("P7")) { return "PAM" }
        if starts(ascii("Pf")) || starts(ascii("PF")) { return "PFM" }
        if starts(ascii("qoif")) { return "QOI" }
        if starts(ascii("8BPS")) { return "PSD" }
        if starts([0xFF, 0xD8]) || (d.count < 8 && !d.isEmpty && pngSignature.starts(with: d)) {
            return "truncated PNG/JPEG signature"
        }
        return "unknown"
    }
}

/// The colour model of the source file (before conversion to RGB8).
public enum SourceColorModel: String, Sendable {
    case grey, greyAlpha, palette, rgb, rgba
    /// JPEG YCbCr (the usual colour JPEG).
    case ycbcr
    /// JPEG CMYK / YCCK, converted to RGB (see `ImageIO`).
    case cmyk, ycck
}

/// What the decoder learned about the source besides the pixels.
public struct ImageInfo: Equatable, Sendable {
    public var format: ImageFormat
    public var colorModel: SourceColorModel
    /// The source had an alpha channel or a PNG tRNS chunk (composited over white).
    public var hadAlpha: Bool
    /// The source carried an ICC profile (PNG iCCP, JPEG APP2 ICC_PROFILE). It is NOT applied:
    /// pixels are treated as sRGB; rtenc warns.
    public var hadICC: Bool
    /// Bits per sample in the file: PNG 1/2/4/8/16, JPEG 8, PNM ceil(log2(maxval + 1)).
    public var originalBitDepth: Int
    /// The EXIF orientation (1...8) that was applied to give upright pixels; 1 when there was
    /// none (or for PNG/PNM, whose EXIF is not read).
    public var orientationApplied: Int
    /// PNG Adam7 interlace or JPEG progressive.
    public var interlaced: Bool
    /// Width and height as stored, before the orientation was applied.
    public var storedWidth: Int
    public var storedHeight: Int

    public init(format: ImageFormat, colorModel: SourceColorModel, hadAlpha: Bool = false,
                hadICC: Bool = false, originalBitDepth: Int = 8, orientationApplied: Int = 1,
                interlaced: Bool = false, storedWidth: Int, storedHeight: Int) {
        self.format = format
        self.colorModel = colorModel
        self.hadAlpha = hadAlpha
        self.hadICC = hadICC
        self.originalBitDepth = originalBitDepth
        self.orientationApplied = orientationApplied
        self.interlaced = interlaced
        self.storedWidth = storedWidth
        self.storedHeight = storedHeight
    }
}

/// A decoded image: upright RGB8 pixels plus what the file said.
public struct DecodedImage: Equatable, Sendable {
    public var image: RGBImage
    public var info: ImageInfo

    public init(image: RGBImage, info: ImageInfo) {
        self.image = image
        self.info = info
    }

    public var format: ImageFormat { info.format }
    public var hadAlpha: Bool { info.hadAlpha }
    public var hadICC: Bool { info.hadICC }
    public var originalBitDepth: Int { info.originalBitDepth }
    public var orientationApplied: Int { info.orientationApplied }
}
