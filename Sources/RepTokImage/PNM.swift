// Netpbm PGM/PPM: P2/P3 (ASCII) and P5/P6 (binary), maxval 1...65535, read; P6 written.
//
// Header: magic, width, height, maxval as decimal tokens separated by whitespace, with "#"
// comments up to the end of the line; then exactly one whitespace byte before a binary raster.
// Tokens are capped (10 characters in the header and the raster) so nothing overflows; the
// size is checked against the limits as soon as width and height are read, and the raster
// length (binary: exact, ASCII: at least 2 bytes a sample) before the pixels are allocated.
// Samples above maxval are errors. Samples are scaled to 8 bits by round(v * 255 / maxval).
// ASCII rasters: every sample, the last included, must be followed by whitespace (writers end
// the file with a newline), so that a file cut inside its last number is reported as truncated.
// Bytes after the raster are ignored (Netpbm allows several images in one file).

enum PNM {
    static let maxTokenLength = 10

    @inline(__always)
    static func isWhitespace(_ b: UInt8) -> Bool {
        b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D || b == 0x0B || b == 0x0C
    }

    @inline(__always)
    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    static func decode(_ d: [UInt8], limits: ImageLimits) throws -> DecodedImage {
        try d.withUnsafeBufferPointer { try decode($0, limits: limits) }
    }

    static func decode(_ d: UnsafeBufferPointer<UInt8>, limits: ImageLimits) throws -> DecodedImage {
        func truncated(_ what: String) -> ImageError { .truncated(format: .ppm, detail: what) }
        func corrupt(_ what: String) -> ImageError { .corrupt(format: .ppm, detail: what) }
        guard d.count >= 3, d[0] == UInt8(ascii: "P") else { throw corrupt("bad magic") }
        let kind = d[1]
        let ascii: Bool, channels: Int
        switch kind {
        case UInt8(ascii: "2"): ascii = true; channels = 1
        case UInt8(ascii: "3"): ascii = true; channels = 3
        case UInt8(ascii: "5"): ascii = false; channels = 1
        case UInt8(ascii: "6"): ascii = false; channels = 3
        default: throw ImageError.unknownFormat(what: "Netpbm P\(Character(Unicode.Scalar(kind)))")
        }
        var pos = 2

        // Header token: skip whitespace and comments, then 1...10 digits followed by whitespace
        // or '#'. (A comment may run to the end of a line: "\n" or "\r".)
        func headerNumber(_ field: String) throws -> Int {
            while true {
                guard pos < d.count else { throw truncated("header ends before \(field)") }
                let b = d[pos]
                if isWhitespace(b) {
                    pos += 1
                } else if b == UInt8(ascii: "#") {
                    while pos < d.count && d[pos] != 0x0A && d[pos] != 0x0D { pos += 1 }
                } else {
                    break
                }
            }
            var value = 0, length = 0
            while pos < d.count && isDigit(d[pos]) {
                length += 1
                if length > maxTokenLength { throw corrupt("\(field) has more than \(maxTokenLength) digits") }
                value = value * 10 + Int(d[pos] - 0x30)
                pos += 1
            }
            if length == 0 { throw corrupt("\(field) is not a decimal number") }
            guard pos < d.count else { throw truncated("header ends after \(field)") }
            guard isWhitespace(d[pos]) || d[pos] == UInt8(ascii: "#") else {
                throw corrupt("\(field) is not a decimal number")
            }
            return value
        }

        let width = try headerNumber("width")
        let height = try headerNumber("height")
        try limits.check(width: width, height: height)
        let maxval = try headerNumber("maxval")
        guard maxval >= 1 && maxval <= 65535 else { throw corrupt("maxval \(maxval) outside 1...65535") }
        let depth = Int.bitWidth - maxval.leadingZeroBitCount

        let samples = width * height * channels  // within limits: no overflow
        var pixels = [UInt8](repeating: 0, count: 0)
        // v8 = round(v * 255 / maxval) for every v <= maxval.
        let lut: [UInt8] = maxval == 255 ? [] : (0...maxval).map { UInt8(($0 * 255 + maxval / 2) / maxval) }

        // A comment right after maxval runs to the end of its line; the line break is then the
        // whitespace byte that ends the header.
        while pos < d.count && d[pos] == UInt8(ascii: "#") {
            while pos < d.count && d[pos] != 0x0A && d[pos] != 0x0D { pos += 1 }
        }
        if !ascii {
            guard pos < d.count else { throw truncated("no raster") }
            pos += 1  // the one whitespace byte
            let bytesPerSample = maxval < 256 ? 1 : 2
            let needed = samples * bytesPerSample
            guard d.count - pos >= needed else {
                throw truncated("raster has \(d.count - pos) of \(needed) bytes")
            }
            var bad = false
            var raw = [UInt8](unsafeUninitializedCapacity: samples) { out, initialized in
                let src = d.baseAddress! + pos
                if bytesPerSample == 1 {
                    if maxval == 255 {
                        out.baseAddress!.update(from: src, count: samples)
                    } else {
                        lut.withUnsafeBufferPointer { lut in
                            for i in 0..<samples {
                                let v = Int(src[i])
                                if v > maxval { bad = true; out[i] = 0 } else { out[i] = lut[v] }
                            }
                        }
                    }
                } else {
                    lut.withUnsafeBufferPointer { lut in
                        for i in 0..<samples {
                            let v = Int(src[2 * i]) << 8 | Int(src[2 * i + 1])
                            if v > maxval { bad = true; out[i] = 0 } else { out[i] = lut[v] }
                        }
                    }
                }
                initialized = samples
            }
            if bad { throw corrupt("a sample exceeds maxval \(maxval)") }
            if channels == 1 { raw = expandGrey(raw) }
            pixels = raw
        } else {
            guard pos < d.count else { throw truncated("no raster") }
            // Each sample needs a digit and a separator.
            guard d.count - pos >= 2 * samples else {
                throw truncated("raster too short for \(samples) samples")
            }
            var raw = [UInt8](repeating: 0, count: samples)
            try raw.withUnsafeMutableBufferPointer { out in
                for i in 0..<samples {
                    while pos < d.count && isWhitespace(d[pos]) { pos += 1 }
                    guard pos < d.count else { throw truncated("raster ends at sample \(i) of \(samples)") }
                    var value = 0, length = 0
                    while pos < d.count && isDigit(d[pos]) {
                        length += 1
                        if length > maxTokenLength { throw corrupt("sample \(i) has more than \(maxTokenLength) digits") }
                        value = value * 10 + Int(d[pos] - 0x30)
                        pos += 1
                    }
                    if length == 0 { throw corrupt("sample \(i) is not a decimal number") }
                    // Whitespace must follow every sample, the last one included (all writers
                    // end with a newline): a file cut inside its last number is then detected.
                    guard pos < d.count else { throw truncated("raster ends inside sample \(i)") }
                    if !isWhitespace(d[pos]) { throw corrupt("sample \(i) is not a decimal number") }
                    if value > maxval { throw corrupt("sample \(i) exceeds maxval \(maxval)") }
                    out[i] = maxval == 255 ? UInt8(value) : lut[value]
                }
            }
            if channels == 1 { raw = expandGrey(raw) }
            pixels = raw
        }
        let info = ImageInfo(format: .ppm, colorModel: channels == 1 ? .grey : .rgb,
                             originalBitDepth: depth, storedWidth: width, storedHeight: height)
        return DecodedImage(image: RGBImage(width: width, height: height, pixels: pixels), info: info)
    }

    static func expandGrey(_ g: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: g.count * 3) { out, initialized in
            for i in 0..<g.count {
                let v = g[i]
                out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v
            }
            initialized = g.count * 3
        }
    }

    /// Binary P6, maxval 255.
    static func encode(_ img: RGBImage) -> [UInt8] {
        var out = Array("P6\n\(img.width) \(img.height)\n255\n".utf8)
        out.reserveCapacity(out.count + img.pixels.count)
        out.append(contentsOf: img.pixels)
        return out
    }
}
