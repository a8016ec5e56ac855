// Errors and size limits of image decoding/encoding.

/// Caps applied while decoding untrusted files (checked from the header, before pixel memory is
/// allocated) and, through `checkOutput`, on sizes a file asks us to produce.
public struct ImageLimits: Equatable, Sendable {
    /// width * height at most this (default 100 megapixels).
    public var maxPixels: Int
    public var maxWidth: Int
    public var maxHeight: Int
    /// Input file size cap (default 256 MiB).
    public var maxBytes: Int
    /// JPEG: most scans accepted (progressive files); libjpeg-turbo's fuzzers use 500.
    public var maxScans: Int
    /// PNG: most bytes libpng may allocate for one ancillary chunk (png_set_chunk_malloc_max).
    public var maxChunkBytes: Int

    public init(maxPixels: Int = 100_000_000, maxWidth: Int = 65535, maxHeight: Int = 65535,
                maxBytes: Int = 256 << 20, maxScans: Int = 500, maxChunkBytes: Int = 8 << 20) {
        self.maxPixels = maxPixels
        self.maxWidth = maxWidth
        self.maxHeight = maxHeight
        self.maxBytes = maxBytes
        self.maxScans = maxScans
        self.maxChunkBytes = maxChunkBytes
    }

    public static let `default` = ImageLimits()

    /// Throws `.invalidDimensions` for a zero/negative size, `.tooLarge` above the caps.
    public func check(width: Int, height: Int) throws {
        guard width > 0 && height > 0 else { throw ImageError.invalidDimensions(width: width, height: height) }
        if exceeds(width: width, height: height) {
            throw ImageError.tooLarge(width: width, height: height, maxWidth: maxWidth,
                                      maxHeight: maxHeight, maxPixels: maxPixels)
        }
    }

    /// For a size we are asked to write (e.g. the size an .rtk file requests for its output):
    /// throws `.invalidDimensions` or `.outputTooLarge`.
    public func checkOutput(width: Int, height: Int) throws {
        guard width > 0 && height > 0 else { throw ImageError.invalidDimensions(width: width, height: height) }
        if exceeds(width: width, height: height) {
            throw ImageError.outputTooLarge(width: width, height: height, maxWidth: maxWidth,
                                            maxHeight: maxHeight, maxPixels: maxPixels)
        }
    }

    func exceeds(width: Int, height: Int) -> Bool {
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        return width > maxWidth || height > maxHeight || overflow || pixels > maxPixels
    }
}

/// An image decoding/encoding failure. Messages are one line; text from libjpeg/libpng is
/// reduced to printable ASCII.
public enum ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    case emptyInput
    /// The input is larger than `ImageLimits.maxBytes`.
    case inputTooLarge(bytes: Int, maxBytes: Int)
    /// Not PNG, JPEG or PNM; `what` names the format when recognised (GIF, WebP...).
    case unknownFormat(what: String)
    /// Zero (or negative) width or height.
    case invalidDimensions(width: Int, height: Int)
    /// The header asks for more pixels than the limits allow (nothing was allocated).
    case tooLarge(width: Int, height: Int, maxWidth: Int, maxHeight: Int, maxPixels: Int)
    /// We were asked to produce an image above the limits (`ImageLimits.checkOutput`).
    case outputTooLarge(width: Int, height: Int, maxWidth: Int, maxHeight: Int, maxPixels: Int)
    /// A JPEG with more scans than `ImageLimits.maxScans`.
    case tooManyScans(limit: Int)
    case truncated(format: ImageFormat, detail: String)
    case corrupt(format: ImageFormat, detail: String)
    /// Well-formed but not supported (12-bit JPEG, unusual colour space...).
    case unsupported(format: ImageFormat, detail: String)
    case outOfMemory(format: ImageFormat)
    /// Encoding failed or its arguments are invalid (quality outside 1...100, empty image...).
    case encodeFailed(format: ImageFormat, detail: String)

    public var description: String {
        switch self {
        case .emptyInput:
            return "empty input (no image data)"
        case .inputTooLarge(let bytes, let cap):
            return "input of \(bytes) bytes is above the \(cap)-byte limit"
        case .unknownFormat(let what):
            return what == "unknown"
                ? "not a PNG, JPEG or PPM/PGM file"
                : "unsupported image format (\(what)); expected PNG, JPEG or PPM/PGM"
        case .invalidDimensions(let w, let h):
            return "invalid image size \(w)x\(h)"
        case .tooLarge(let w, let h, let mw, let mh, let mp):
            return "image is \(w)x\(h), above the limits (at most \(mw)x\(mh) and \(mp) pixels)"
        case .outputTooLarge(let w, let h, let mw, let mh, let mp):
            return "requested output size \(w)x\(h) is above the limits (at most \(mw)x\(mh) and \(mp) pixels)"
        case .tooManyScans(let limit):
            return "JPEG has more than \(limit) scans"
        case .truncated(let f, let d):
            return "truncated \(f) file: \(d)"
        case .corrupt(let f, let d):
            return "corrupt \(f) file: \(d)"
        case .unsupported(let f, let d):
            return "unsupported \(f) file: \(d)"
        case .outOfMemory(let f):
            return "out of memory decoding \(f)"
        case .encodeFailed(let f, let d):
            return "cannot encode \(f): \(d)"
        }
    }

    /// Printable ASCII only, at most 160 characters.
    static func sanitize(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars.prefix(160) {
            out.unicodeScalars.append(u.value >= 0x20 && u.value < 0x7F ? u : "?")
        }
        return out
    }
}
