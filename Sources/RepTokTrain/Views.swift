import Foundation
import RepTokCodec
import RepTokData
import RepTokImage
import RepTokTensor

/// Random streams of one training step: everything random in step `step` of a run with seed
/// `seed` comes from Philox keyed by mix(seed, step), one counter stream per use.
public struct StepRandom {
    public enum Stream: UInt32 { case flowNoise = 0, time = 1, tokenNoise = 2, views = 3, layoutKeep = 4 }
    public let philox: Philox4x32

    public init(seed: UInt64, step: Int) { philox = Philox4x32(seed: SplitMix64.mix(seed, UInt64(step))) }

    public func gaussian(_ shape: [Int], _ s: Stream) -> Tensor { philox.gaussian(shape, stream: s.rawValue) }
    public func uniforms(_ n: Int, _ s: Stream) -> [Double] { philox.uniforms(stream: s.rawValue, count: n) }

    /// Layout coordinates each sample's decoder sees (`TrainConfig.layoutDrop`): m, or with
    /// probability `drop` a count log-uniform in 1...m.
    public func layoutKeep(_ B: Int, m: Int, drop: Float) -> [Int] {
        let u = uniforms(2 * B, .layoutKeep)
        return (0..<B).map { b in
            guard u[2 * b] < Double(drop) else { return m }
            return min(m, max(1, Int(Foundation.exp(u[2 * b + 1] * Foundation.log(Double(m) + 1)))))
        }
    }

    /// t per sample: exactly 1 with probability `oneFraction` (the only time a 1-step decode
    /// uses), uniform in [0, 1] with probability `uniformFraction`, else sigmoid(N(0, 1)).
    public func times(_ B: Int, uniformFraction: Float, oneFraction: Float = 0) -> [Float] {
        let u = uniforms(3 * B, .time)
        return (0..<B).map { b in
            if u[3 * b] < Double(oneFraction) { return 1 }
            if u[3 * b] < Double(oneFraction) + Double(uniformFraction) { return Float(u[3 * b + 1]) }
            // Box-Muller from two uniforms of the same stream
            let n = (-2 * log(u[3 * b + 1])).squareRoot() * cos(2 * Double.pi * u[3 * b + 2])
            return Float(1 / (1 + exp(-n)))
        }
    }
}

/// Picture files (.rtds, read by RepTokData's PackedDataset) as the trainer uses them.
public enum Pictures {
    public static func open(_ path: String) throws -> PackedDataset {
        do { return try PackedDataset(path: path) } catch { throw TrainError.data("\(path): \(error)") }
    }

    /// Picture `i` as an RGBImage.
    public static func picture(_ ds: PackedDataset, _ i: Int) -> RGBImage {
        RGBImage(width: ds.width(i), height: ds.height(i), pixels: Array(ds.pixels(i)))
    }

    /// An in-memory copy whose pictures are shrunk (area filter) to a long side of at most
    /// `maxSide`: training views at S = maxSide / 4 then cost a fraction of full-size ones.
    public static func shrunk(_ ds: PackedDataset, maxSide: Int) throws -> PackedDataset {
        var w = try PackedDatasetWriter(classNames: ds.classNames)
        for i in 0..<ds.count {
            var p = picture(ds, i)
            let long = max(p.width, p.height)
            if long > maxSide {
                let nw = max(1, Int((Double(p.width) * Double(maxSide) / Double(long)).rounded()))
                let nh = max(1, Int((Double(p.height) * Double(maxSide) / Double(long)).rounded()))
                p = Resample.resize(p, width: nw, height: nh, filter: .area)
            }
            try w.append(width: p.width, height: p.height, classID: ds.classID(i), pixels: p.pixels,
                         sourceID: ds.sourceID(i), groupID: ds.groupID(i), flags: ds.flags(i))
        }
        return try PackedDataset(bytes: w.serialized())
    }

    /// Writes pictures as an .rtds pack (one class): for tests and small datasets.
    public static func write(_ pics: [RGBImage], to path: String) throws {
        var w = try PackedDatasetWriter(classNames: ["pictures"])
        for p in pics { try w.append(width: p.width, height: p.height, classID: 0, pixels: p.pixels) }
        try w.write(to: path)
    }
}
