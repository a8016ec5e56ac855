// An 8-bit RGB image and its conversion to/from float planes for the networks.

/// 8-bit RGB, interleaved (`pixels[(y * width + x) * 3 + c]`), rows top to bottom.
/// Pixel values are treated as sRGB-encoded; nothing in this module linearizes them.
public struct RGBImage: Equatable, Sendable {
    public var width: Int
    public var height: Int
    /// `width * height * 3` bytes.
    public var pixels: [UInt8]

    /// Wraps `pixels`; traps if the count is not `width * height * 3` or a size is negative.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0, "RGBImage: negative size")
        let (count, overflow) = width.multipliedReportingOverflow(by: height)
        precondition(!overflow && count <= Int.max / 3 && pixels.count == count * 3,
                     "RGBImage: pixels.count \(pixels.count) is not \(width) x \(height) x 3")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A black image.
    public init(width: Int, height: Int) {
        precondition(width >= 0 && height >= 0, "RGBImage: negative size")
        self.init(width: width, height: height,
                  pixels: [UInt8](repeating: 0, count: width * height * 3))
    }

    /// The three channels of pixel (x, y).
    @inlinable
    public subscript(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        let i = (y * width + x) * 3
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// Default `scale`/`offset`: the networks' [-1, 1] space, x = pixel / 127.5 - 1.
    public static let unitScale: Float = 1 / 127.5
    public static let unitOffset: Float = -1

    /// Planes `[3, height, width]` (all R, then all G, then all B) of `pixel * scale + offset`.
    /// The default maps 0...255 onto -1...1.
    public func planarFloats(scale: Float = RGBImage.unitScale,
                             offset: Float = RGBImage.unitOffset) -> [Float] {
        let n = width * height
        var lut = [Float](repeating: 0, count: 256)
        for v in 0..<256 { lut[v] = Float(v) * scale + offset }
        return [Float](unsafeUninitializedCapacity: 3 * n) { out, initialized in
            pixels.withUnsafeBufferPointer { src in
                lut.withUnsafeBufferPointer { lut in
                    for i in 0..<n {
                        out[i] = lut[Int(src[3 * i])]
                        out[n + i] = lut[Int(src[3 * i + 1])]
                        out[2 * n + i] = lut[Int(src[3 * i + 2])]
                    }
                }
            }
            initialized = 3 * n
        }
    }

    /// The inverse of `planarFloats`: pixel = round((x - offset) * (1 / scale)), clamped to 0...255
    /// (ties away from zero; NaN becomes 0). With the defaults, pixel = round((x + 1) * 127.5).
    /// Traps if `planar.count != 3 * width * height` or `scale` is zero or not finite.
    public init(planar: [Float], width: Int, height: Int,
                scale: Float = RGBImage.unitScale, offset: Float = RGBImage.unitOffset) {
        precondition(width >= 0 && height >= 0, "RGBImage: negative size")
        let n = width * height
        precondition(planar.count == 3 * n,
                     "RGBImage(planar:): \(planar.count) floats for \(width) x \(height) x 3")
        precondition(scale != 0 && scale.isFinite, "RGBImage(planar:): bad scale")
        let inverse = RGBImage.inverseScale(scale)
        let pixels = [UInt8](unsafeUninitializedCapacity: 3 * n) { out, initialized in
            planar.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    out[3 * i] = RGBImage.quantize((src[i] - offset) * inverse)
                    out[3 * i + 1] = RGBImage.quantize((src[n + i] - offset) * inverse)
                    out[3 * i + 2] = RGBImage.quantize((src[2 * n + i] - offset) * inverse)
                }
            }
            initialized = 3 * n
        }
        self.init(width: width, height: height, pixels: pixels)
    }

    /// 1 / scale, snapped to a multiple of 1/64 when within Float rounding of one: `scale` is a
    /// Float, so 1/127.5 or 1/255 arrive slightly off and their inverses would be 127.49999 and
    /// 254.99998; snapping makes the default exactly round((x + 1) * 127.5), ties away from zero.
    static func inverseScale(_ scale: Float) -> Float {
        let inv = 1.0 / Double(scale)
        let snapped = (inv * 64).rounded() / 64
        if snapped != 0 && abs(inv - snapped) <= abs(snapped) * 2.5e-7 { return Float(snapped) }
        return Float(inv)
    }

    /// round(v) clamped to 0...255; NaN -> 0.
    @inlinable
    public static func quantize(_ v: Float) -> UInt8 {
        if !(v > 0) { return 0 }  // also NaN
        if v >= 255 { return 255 }
        // v + 0.5 is exact in Double; truncation is then round-half-up (= away from zero here).
        return UInt8(truncatingIfNeeded: Int(Double(v) + 0.5))
    }
}
