// EXIF orientation: reading the tag from a JPEG APP1 Exif payload and applying it.

enum Exif {
    /// The Orientation tag (0x0112) of IFD0 in `tiff` (the APP1 payload after "Exif\0\0"), if
    /// present and in 1...8. Every offset and count is bounds-checked; anything malformed gives
    /// nil (no rotation) rather than an error, as viewers do.
    static func orientation(tiff d: [UInt8]) -> Int? {
        guard d.count >= 8 else { return nil }
        let little: Bool
        if d[0] == 0x49 && d[1] == 0x49 { little = true }        // "II"
        else if d[0] == 0x4D && d[1] == 0x4D { little = false }  // "MM"
        else { return nil }
        func u16(_ o: Int) -> Int? {
            guard o >= 0 && o <= d.count - 2 else { return nil }
            return little ? Int(d[o]) | Int(d[o + 1]) << 8 : Int(d[o]) << 8 | Int(d[o + 1])
        }
        func u32(_ o: Int) -> Int? {
            guard o >= 0 && o <= d.count - 4 else { return nil }
            let b = (Int(d[o]), Int(d[o + 1]), Int(d[o + 2]), Int(d[o + 3]))
            return little ? b.0 | b.1 << 8 | b.2 << 16 | b.3 << 24 : b.0 << 24 | b.1 << 16 | b.2 << 8 | b.3
        }
        guard u16(2) == 42, let ifd = u32(4), ifd >= 8, let n = u16(ifd) else { return nil }
        for i in 0..<n {
            let e = ifd + 2 + 12 * i
            guard e <= d.count - 12 else { return nil }
            guard let tag = u16(e), tag == 0x0112 else { continue }
            guard let type = u16(e + 2), let count = u32(e + 4), count >= 1 else { return nil }
            let value: Int?
            switch type {
            case 3: value = u16(e + 8)          // SHORT (the standard type)
            case 4: value = count == 1 ? u32(e + 8) : nil  // LONG, written by some tools
            default: value = nil
            }
            guard let v = value, (1...8).contains(v) else { return nil }
            return v
        }
        return nil
    }
}

extension RGBImage {
    /// The upright image for a stored image with EXIF orientation `orientation` (1...8; other
    /// values return self): 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
    /// 7 transverse, 8 rotate 90 counter-clockwise. 5...8 swap width and height.
    public func oriented(exif orientation: Int) -> RGBImage {
        guard (2...8).contains(orientation), width > 0, height > 0 else { return self }
        let w = width, h = height
        let swap = orientation >= 5
        let ow = swap ? h : w, oh = swap ? w : h
        var out = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<oh {
                    for x in 0..<ow {
                        let sx: Int, sy: Int
                        switch orientation {
                        case 2: sx = w - 1 - x; sy = y
                        case 3: sx = w - 1 - x; sy = h - 1 - y
                        case 4: sx = x; sy = h - 1 - y
                        case 5: sx = y; sy = x
                        case 6: sx = y; sy = h - 1 - x
                        case 7: sx = w - 1 - y; sy = h - 1 - x
                        default: sx = w - 1 - y; sy = x  // 8
                        }
                        let s = (sy * w + sx) * 3, o = (y * ow + x) * 3
                        dst[o] = src[s]; dst[o + 1] = src[s + 1]; dst[o + 2] = src[s + 2]
                    }
                }
            }
        }
        return RGBImage(width: ow, height: oh, pixels: out)
    }
}
