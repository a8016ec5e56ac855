import Foundation
import RepTokCodec
import RepTokData
import RepTokImage
import XCTest

/// What training sees as the codec's view (ViewSampler.renderWhole: the whole picture squashed
/// with integer triangle weights summing to 2^14, float output) against what rtenc feeds the
/// encoder (Codec.modelView: Resample's bilinear filter, the same triangle with float weights,
/// rounded to bytes). They are two resamplers of one filter; this test ties them: rounded to
/// 8 bits, the training view is the codec's byte everywhere except at values within 1/32 of a
/// level of a rounding boundary (x.5), where the weights' quantization to 2^-14 may tip the
/// rounding by one level (measured: at most 0.2% of the values, at most 0.014 from x.5).
/// docs/ARCHITECTURE.md ("The codec's view and the training views") says why they stay two.
final class ModelViewAgreementTests: XCTestCase {
    func testRenderWholeRoundsToModelViewBytes() throws {
        // (width, height, S): up, down, odd aspect ratios both ways, near and at identity, 1 px
        let cases: [(Int, Int, Int)] = [(20, 15, 64), (33, 33, 128), (300, 200, 64), (640, 480, 128), (256, 256, 128),
                                        (517, 93, 128), (31, 257, 128), (97, 1000, 128), (127, 300, 128),
                                        (129, 127, 128), (128, 128, 128), (1, 1, 16)]
        var writer = try PackedDatasetWriter(classNames: ["p"])
        let pics = cases.enumerated().map { ParityVectorTests.picture($1.0, $1.1, seed: UInt64($0 + 1)) }
        for p in pics { try writer.append(width: p.width, height: p.height, classID: 0, pixels: p.pixels) }
        let ds = try PackedDataset(bytes: writer.serialized())
        let margin = 1.0 / 32
        for (i, (w, h, S)) in cases.enumerated() {
            var floats = [Float](repeating: 0, count: 3 * S * S)
            ViewSampler.renderWhole(ds, image: i, size: S, into: &floats)
            let view = Codec.modelView(pics[i], size: S)
            XCTAssertEqual(view.width, S)
            var differ = 0
            for c in 0..<3 { for y in 0..<S { for x in 0..<S {
                let f = (Double(floats[(c * S + y) * S + x]) + 1) * 127.5   // the training view in 0...255
                let rounded = Int(RGBImage.quantize(Float(f)))
                let byte = Int(view.pixels[(y * S + x) * 3 + c])
                if rounded == byte { continue }
                differ += 1
                XCTAssertEqual(abs(rounded - byte), 1, "\(w)x\(h) -> \(S): (\(x), \(y), \(c)) \(f) vs \(byte)")
                XCTAssertLessThan(abs(f - f.rounded(.down) - 0.5), margin, "\(w)x\(h) -> \(S): (\(x), \(y), \(c)) \(f) vs \(byte)")
            } } }
            XCTAssertLessThanOrEqual(Double(differ), 0.005 * Double(3 * S * S), "\(w)x\(h) -> \(S): \(differ) values differ")
            if w == S && h == S || w == 1 && h == 1 { XCTAssertEqual(differ, 0, "\(w)x\(h) -> \(S)") }
        }
    }
}
