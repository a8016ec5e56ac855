// The one evaluation harness of the codec: a picture is encoded at a level, the record's bytes
// are counted, the record is decoded with each step count asked for, and each decode is measured
// (RepTokMetrics: PSNR, SSIM, MS-SSIM) against the picture's model view (Codec.modelView) and,
// when asked, resized back to the picture's size (Lanczos-3, as Codec.decode does) against the
// picture itself. `rteval` (RepTokCLI/Eval.swift) runs it per input file and level;
// `Harness.report` (Report.swift, what `rttrain eval` prints) per picture of a set, with its
// baselines. Times are wall-clock: the encode is Codec.encode (encoder forward and quantization),
// a decode is the flow sampler at the model resolution plus the resize back when asked.

import Foundation
import RepTokCodec
import RepTokFormat
import RepTokImage
import RepTokMetrics

public enum Harness {
    /// One decode of a record.
    public struct Decode {
        /// The step count it was decoded with.
        public var steps: Int
        public var seconds: Double
        /// The decode at the model resolution.
        public var image: RGBImage
        /// Against the picture's model view.
        public var model: ImageQuality
        /// The decode resized to the picture's size against the picture; nil unless asked for.
        public var original: ImageQuality?
    }

    /// One picture at one level.
    public struct Level {
        public var level: Int
        public var record: RTKRecord
        /// The whole serialized record.
        public var bytes: Int
        public var encodeSeconds: Double
        /// One per entry of the `steps` asked for, in that order.
        public var decodes: [Decode]
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    static func seconds(since t: UInt64) -> Double { Double(now() &- t) / 1e9 }

    /// Encodes `picture` at `level` (seed 0, no name), counts the record's bytes and decodes it
    /// once per entry of `steps` (nil: the record's own step count). `view` is the picture's model
    /// view, `Codec.modelView(picture, size: model.imageSize)`, passed in so that callers
    /// measuring several levels make it once.
    public static func measure(_ picture: RGBImage, view: RGBImage, model: CodecModel, level: Int,
                               steps: [Int?] = [nil], originalSize: Bool = false) throws -> Level {
        let S = model.imageSize
        var t = now()
        let record = try Codec.encode(picture, model: model, options: EncodeOptions(level: level))
        let encodeSeconds = seconds(since: t)
        let bytes = try record.serialized().count
        var decodes: [Decode] = []
        for st in steps {
            t = now()
            let native = try Codec.decode(record, model: model, options: DecodeOptions(steps: st, native: true))
            var full: RGBImage? = nil
            if originalSize {
                full = (picture.width == S && picture.height == S)
                    ? native : Resample.resize(native, width: picture.width, height: picture.height, filter: .lanczos3)
            }
            let secs = seconds(since: t)
            decodes.append(Decode(steps: st ?? record.steps, seconds: secs, image: native,
                                  model: try ImageQuality.measure(native, against: view),
                                  original: try full.map { try ImageQuality.measure($0, against: picture) }))
        }
        return Level(level: level, record: record, bytes: bytes, encodeSeconds: encodeSeconds, decodes: decodes)
    }
}
