import Foundation
import XCTest
import RepTokEval
import RepTokImage
import RepTokMetrics

/// The one rule for PSNR of identical pictures (+infinity; means leave it out and say over how
/// many pictures they are; JSON writes null) as ImageQuality, QualityMean and the report rows
/// of rttrain eval (EvalRow) apply it.
final class QualityTests: XCTestCase {
    func testImageQualityIsTheMetricsAndIdenticalIsInfinite() throws {
        let a = testImage(width: 40, height: 24, seed: 1), b = testImage(width: 40, height: 24, seed: 2)
        let q = try ImageQuality.measure(b, against: a)
        XCTAssertEqual(q.psnr, try Metrics.psnr(b, a))
        XCTAssertEqual(q.ssim, try Metrics.ssim(b, a))
        XCTAssertEqual(q.msssim, try Metrics.msssim(b, a).value)
        XCTAssertEqual(q.msssimScales, 2)
        let same = try ImageQuality.measure(a, against: a)
        XCTAssertEqual(same.psnr, .infinity)
        XCTAssertEqual(try XCTUnwrap(same.ssim), 1, accuracy: 1e-12)
        // below SSIM's window: PSNR only
        let small = try ImageQuality.measure(testImage(width: 10, height: 30, seed: 3), against: testImage(width: 10, height: 30, seed: 4))
        XCTAssertTrue(small.psnr.isFinite)
        XCTAssertNil(small.ssim)
        XCTAssertNil(small.msssim)
        XCTAssertEqual(small.msssimScales, 0)
        XCTAssertThrowsError(try ImageQuality.measure(a, against: testImage(width: 24, height: 40, seed: 1)))
    }

    func testMeansLeaveInfiniteOutAndCountThePictures() throws {
        let a = testImage(width: 32, height: 32, seed: 5), b = testImage(width: 32, height: 32, seed: 6)
        let c = testImage(width: 32, height: 32, seed: 7)
        let same = try ImageQuality.measure(a, against: a), ab = try ImageQuality.measure(b, against: a)
        let ac = try ImageQuality.measure(c, against: a)
        let m = QualityMean([ab, same, ac])
        XCTAssertEqual(m.psnr, (ab.psnr + ac.psnr) / 2)
        XCTAssertEqual(m.psnrCount, 2)
        XCTAssertEqual(m.ssim, (ab.ssim! + same.ssim! + ac.ssim!) / 3)
        XCTAssertEqual(m.msssimScales, [2])
        let none = QualityMean([same, same])
        XCTAssertNil(none.psnr)
        XCTAssertEqual(none.psnrCount, 0)
        XCTAssertEqual(QualityMean([]).msssimScales, [])
    }

    func testReportRowsWriteValidJSON() throws {
        let a = testImage(width: 16, height: 16, seed: 8), b = testImage(width: 16, height: 16, seed: 9)
        let same = try ImageQuality.measure(a, against: a), ab = try ImageQuality.measure(b, against: a)
        func json(_ r: EvalRow) throws -> [String: Any] {
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys]
            return try XCTUnwrap(try JSONSerialization.jsonObject(with: try e.encode(r)) as? [String: Any])
        }
        // every picture measured: no psnr_pictures
        let all = try json(EvalRow(name: "codec", level: 3, steps: 1, quality: QualityMean([ab, ab]), pictures: 2))
        XCTAssertEqual(all["psnr"] as? Double, ab.psnr)
        XCTAssertNil(all["psnr_pictures"])
        XCTAssertEqual(Set(all.keys), ["name", "level", "steps", "psnr", "ssim"])
        // one identical picture: the mean of the other, over 1 picture
        let one = try json(EvalRow(name: "codec", level: 3, steps: 1, quality: QualityMean([ab, same]), pictures: 2))
        XCTAssertEqual(one["psnr"] as? Double, ab.psnr)
        XCTAssertEqual(one["psnr_pictures"] as? Int, 1)
        // all identical: null, over 0 pictures
        let none = try json(EvalRow(name: "baseline", quality: QualityMean([same]), pictures: 1, bytes: 27, maxBytes: 27,
                                    withinBudget: 1))
        XCTAssertTrue(none["psnr"] is NSNull)
        XCTAssertEqual(none["psnr_pictures"] as? Int, 0)
        XCTAssertEqual(none["max_bytes"] as? Int, 27)
        let back = try JSONDecoder().decode(EvalRow.self, from: try JSONEncoder().encode(
            EvalRow(name: "x", quality: QualityMean([same, ab]), pictures: 2)))
        XCTAssertEqual(back.psnr, ab.psnr)
        XCTAssertEqual(back.psnrPictures, 1)
    }
}
