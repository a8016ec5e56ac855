import Foundation
import RepTokCodec
import RepTokEval
import RepTokImage
import RepTokModels
import RepTokSafeTensors
import RepTokTensor

/// Where and how `Evaluator.run` draws its picture grid.
public struct GridOptions: Sendable {
    public var path: String
    /// Rows: pictures taken evenly over the set.
    public var pictures: Int
    public init(path: String, pictures: Int = 8) { self.path = path; self.pictures = pictures }
}

/// `rttrain eval`: the evaluation harness's report (RepTokEval.Harness.report) on the pictures of
/// an .rtds pack, with the training side's bars: the linear bar (LinearCode, fitted on training
/// pictures) and the token's cosine to an SSL encoder's token.
public enum Evaluator {
    /// Harness.report on the first `limit` pictures of `data`; with `linearBar`, the best linear
    /// code of each level's mean payload bytes fitted on the pictures of that pack; with
    /// `sslEncoder`, the mean cosine of the token to that encoder's [CLS] token on the codec view;
    /// with `grid`, the report's grid as a PNG (written atomically).
    public static func run(model path: String, data: String, steps extraSteps: [Int] = [1], limit: Int? = nil,
                           byteBudget: Int = 128, grid: GridOptions? = nil, sslEncoder: String? = nil,
                           linearBar barData: String? = nil,
                           progress: (String) -> Void = { _ in }) throws -> EvalReport {
        let model = try CodecModel(path: path)
        let set = try Pictures.open(data)
        let n = min(set.count, limit ?? set.count)
        guard n >= 1 else { throw TrainError.data("\(data) has no pictures") }
        let S = model.imageSize
        let pics = (0..<n).map { Pictures.picture(set, $0) }
        var (report, sheet) = try Harness.report(model, model: path, data: data, pictures: pics, steps: extraSteps,
                                                 byteBudget: byteBudget, gridPictures: grid?.pictures, progress: progress)
        if let g = grid, let sheet { try writeAtomically(try sheet.png(), to: g.path) }
        if let bd = barData {
            let (tv, tn) = LinearCode.views(try Pictures.open(bd), size: S, flips: true)
            progress("linear bar: PCA of \(tn) views")
            let code = LinearCode.fit(views: tv, count: tn, size: S, components: 512)
            var vv = [Float]()
            for p in pics { vv += Codec.modelView(p, size: S).planarFloats(scale: 1, offset: 0) }
            let curve = code.curve(views: vv, count: n)
            report.linearBar = report.payloadBytes.map { LinearCode.best(curve, within: $0) }
            report.linearBarData = bd
            report.linearBarViews = tn
        }
        if let sp = sslEncoder {
            let ssl = try SSLEncoderFile.read(path: sp, imageSize: S)
            var total = 0.0
            for i in 0..<n {
                let z = Codec.token(pics[i], model: model)
                let px = Tensor([1, 3, S, S], Codec.modelView(pics[i], size: S).planarFloats(scale: 1, offset: 0))
                let c0 = ssl.forward(ssl.normalize(pixels255: px)).token
                // a token with layout coordinates is compared with the SSL token padded with zeros
                guard c0.count == model.adapter.dim else {
                    throw TrainError.data("--ssl-encoder token size \(c0.count) != the model's \(model.adapter.dim)")
                }
                var dot = 0.0, na = 0.0, nb = 0.0
                for d in 0..<z.count {
                    let a = Double(z.data[d]), b = d < c0.count ? Double(c0.data[d]) : 0
                    dot += a * b; na += a * a; nb += b * b
                }
                total += dot / max((na * nb).squareRoot(), 1e-30)
            }
            report.tokenCosine = total / Double(n)
            let fp = try SSLEncoderFile.fingerprint(of: try SafeTensorsFile(path: sp))
            report.sslEncoder = String(format: "%016llx", fp)
        }
        return report
    }

    /// Writes `bytes` to `path` through a temporary file beside it.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else {
            throw TrainError.data("cannot write \(tmp)")
        }
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: tmp, toPath: path)
    }
}
