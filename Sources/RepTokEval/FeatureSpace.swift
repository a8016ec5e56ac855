// The realism figure's feature space: the [CLS] token of ONE fixed, frozen SSL encoder (ours,
// pretrained by `rttrain ssl`; no Inception weights exist offline), the same file for every
// model compared, identified by its fingerprint.
//
// Views: a small set has fewer images than the Frechet distance needs samples (at least 4x the
// feature dimension), so each image contributes several views: view 0 is the whole image, the
// others random boxes (area 40-100%, aspect 3:4..4:3) drawn from a seeded generator keyed by
// (seed, image index). The SAME boxes, in fractions of the width and height, are cut from an
// original and from its decode, then resampled to the encoder's resolution with the
// antialiased triangle filter (as the codec's own model view).

import Foundation
import RepTokImage
import RepTokModels
import RepTokSafeTensors
import RepTokTensor

public final class SSLFeatureSpace: @unchecked Sendable {
    public let encoder: Dinov2Encoder
    public let path: String
    public let fingerprint: UInt64
    public var dim: Int { encoder.config.hiddenSize }
    public var resolution: Int { encoder.config.imageSize }
    public var fingerprintHex: String { String(format: "%016llx", fingerprint) }

    /// A box in fractions of the image: [x, x + w) x [y, y + h) within [0, 1]^2.
    public struct Box: Equatable, Sendable {
        public var x: Double, y: Double, w: Double, h: Double
        public init(x: Double, y: Double, w: Double, h: Double) { self.x = x; self.y = y; self.w = w; self.h = h }
        public static let whole = Box(x: 0, y: 0, w: 1, h: 1)
    }

    /// Loads the encoder part of an SSL export, SSL checkpoint or codec model file.
    public init(path: String) throws {
        self.path = path
        encoder = try SSLEncoderFile.read(path: path)
        let file = try SafeTensorsFile(path: path)
        fingerprint = try SSLEncoderFile.fingerprint(of: file)
    }

    /// Views per image so that `images` images give at least `4 x dim` samples.
    public func viewsPerImage(images: Int) -> Int {
        guard images > 0 else { return 1 }
        return max(1, (4 * dim + images - 1) / images)
    }

    /// `count` boxes: the whole image, then random boxes, from (seed, image).
    public static func boxes(count: Int, seed: UInt64, image: Int) -> [Box] {
        var rng = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: image) &* SplitMix64.gamma) ^ 0x5EED_F00D)
        var out: [Box] = []
        out.reserveCapacity(count)
        for k in 0..<count {
            if k == 0 { out.append(.whole); continue }
            let area = 0.4 + 0.6 * rng.uniform()
            let logAspect = log(0.75) + (log(4.0 / 3.0) - log(0.75)) * rng.uniform()
            let aspect = exp(logAspect)
            let w = min(1, (area * aspect).squareRoot()), h = min(1, (area / aspect).squareRoot())
            let x = (1 - w) * rng.uniform(), y = (1 - h) * rng.uniform()
            out.append(Box(x: x, y: y, w: w, h: h))
        }
        return out
    }

    /// The [CLS] features of the boxes of one image: `boxes.count` rows of `dim`, float64.
    public func features(_ image: RGBImage, boxes: [Box], batch: Int = 32) -> [Double] {
        let R = resolution
        let planar = image.planarFloats(scale: 1, offset: 0)
        var out: [Double] = []
        out.reserveCapacity(boxes.count * dim)
        var start = 0
        while start < boxes.count {
            let n = min(batch, boxes.count - start)
            let px = Tensor(uninitialized: [n, 3, R, R])
            for i in 0..<n {
                let b = boxes[start + i]
                let dst = UnsafeMutableBufferPointer(start: px.data + i * 3 * R * R, count: 3 * R * R)
                planar.withUnsafeBufferPointer { src in
                    Resample.resizeCropPlanar(src, srcW: image.width, srcH: image.height,
                                              cropX: b.x * Double(image.width), cropY: b.y * Double(image.height),
                                              cropW: b.w * Double(image.width), cropH: b.h * Double(image.height),
                                              dstW: R, dstH: R, filter: .bilinear, into: dst)
                }
            }
            let token = encoder.forward(encoder.normalize(pixels255: px)).token
            for v in 0..<(n * dim) { out.append(Double(token.data[v])) }
            start += n
        }
        return out
    }
}
