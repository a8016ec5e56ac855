// The quality of one decode against its reference, and the mean over pictures: the figures every
// evaluation prints (rteval, rttrain eval), so that they are computed one way.

import RepTokImage

/// PSNR, SSIM and MS-SSIM of an 8-bit decode against its reference (conventions: Metrics.swift).
public struct ImageQuality: Equatable, Sendable {
    /// dB; `+infinity` when the images are identical.
    public var psnr: Double
    /// nil when a side is below 11 (SSIM's window).
    public var ssim: Double?
    public var msssim: Double?
    /// MS-SSIM scales used (`Metrics.msssimScales`); 0 without MS-SSIM.
    public var msssimScales: Int

    public init(psnr: Double, ssim: Double?, msssim: Double?, msssimScales: Int) {
        self.psnr = psnr; self.ssim = ssim; self.msssim = msssim; self.msssimScales = msssimScales
    }

    /// All three metrics where the size allows (SSIM and MS-SSIM need both sides >= 11).
    public static func measure(_ decoded: RGBImage, against reference: RGBImage) throws -> ImageQuality {
        let psnr = try Metrics.psnr(decoded, reference)
        guard min(reference.width, reference.height) >= Metrics.windowSize else {
            return ImageQuality(psnr: psnr, ssim: nil, msssim: nil, msssimScales: 0)
        }
        let ms = try Metrics.msssim(decoded, reference)
        return ImageQuality(psnr: psnr, ssim: try Metrics.ssim(decoded, reference), msssim: ms.value, msssimScales: ms.scales)
    }
}

/// Means of ImageQuality over pictures. A mean is over the pictures where the value is finite
/// (an identical decode's PSNR is +infinity and is left out: `psnrCount` says how many are in);
/// nil when none is. Sums run in the pictures' order.
public struct QualityMean: Equatable, Sendable {
    public var psnr: Double?
    public var psnrCount: Int
    public var ssim: Double?
    public var msssim: Double?
    /// The MS-SSIM scale counts seen, ascending.
    public var msssimScales: [Int]

    public init(_ q: [ImageQuality]) {
        let psnrs = q.map(\.psnr).filter { $0.isFinite }
        psnr = QualityMean.mean(psnrs)
        psnrCount = psnrs.count
        ssim = QualityMean.mean(q.compactMap(\.ssim))
        msssim = QualityMean.mean(q.compactMap(\.msssim))
        msssimScales = Set(q.filter { $0.msssim != nil }.map(\.msssimScales)).sorted()
    }

    /// The mean of the finite values, nil when there is none.
    public static func mean(_ v: [Double]) -> Double? {
        let f = v.filter { $0.isFinite }
        return f.isEmpty ? nil : f.reduce(0, +) / Double(f.count)
    }
}
