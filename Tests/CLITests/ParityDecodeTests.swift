// The decode parity vectors of Tests/Parity/decode (README.md there), which python/tests/test_decode.py
// reads too: the tiny model's records decoded at the model resolution at 1 and 8 steps, and two
// records of the committed default model at 1 step, must give the committed pictures byte for
// byte (what `rtdec --native --steps N` wrote when the vectors were made). A Swift change that
// alters a decode fails here until the vectors are regenerated (Tests/Parity/decode/regenerate.sh),
// and pytest then checks that Python still agrees with them.

import Foundation
import RepTokCodec
import RepTokFormat
import RepTokImage
import XCTest

final class ParityDecodeTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Parity/decode")

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: folder.appendingPathComponent(name)))
    }

    static func picture(_ name: String) throws -> RGBImage {
        try ImageIO.decode(bytes(name)).image
    }

    /// Decodes every record at `steps` (the model resolution) and compares with `DIR/rN-sSTEPS.png`.
    func check(_ records: [RTKRecord], model: CodecModel, dir: String, steps: [Int]) throws {
        for (i, r) in records.enumerated() {
            for s in steps {
                let got = try Codec.decode(r, model: model, options: DecodeOptions(steps: s, native: true))
                let want = try Self.picture("\(dir)/r\(i + 1)-s\(s).png")
                XCTAssertEqual(got.width, model.imageSize)
                XCTAssertEqual(got.height, model.imageSize)
                XCTAssertEqual(want.width, got.width, "\(dir) record \(i + 1), \(s) steps: size")
                XCTAssertEqual(want.height, got.height, "\(dir) record \(i + 1), \(s) steps: size")
                let differ = zip(got.pixels, want.pixels).filter { $0 != $1 }.count
                XCTAssertEqual(differ, 0, "\(dir) record \(i + 1), \(s) steps: \(differ) of \(got.pixels.count) "
                               + "values differ from the committed picture (regenerate Tests/Parity/decode after a deliberate change)")
            }
        }
    }

    func testTinyModelAtOneAndEightSteps() throws {
        let model = try CodecModel(path: Self.folder.appendingPathComponent("tiny.safetensors").path)
        let records = try RTKRecord.parse(Self.bytes("tiny.rtk"))
        XCTAssertEqual(records.count, 6)
        // what the vectors cover: levels, both samplers, names, long seeds, step modes
        XCTAssertEqual(Set(records.map(\.sampler)), [.euler, .heun])
        XCTAssertTrue(records.allSatisfy { $0.fingerprint == model.fingerprint && $0.name != nil })
        XCTAssertTrue(records.contains { $0.seed == .max })
        XCTAssertNotNil(model.quantizer.stepModes)
        XCTAssertEqual(model.codec.entropy, .laplace)
        try check(records, model: model, dir: "tiny", steps: [1, 8])
    }

    func testDefaultModelAtOneStep() throws {
        let model = try CodecModel.loadDefault()
        let records = try RTKRecord.parse(Self.bytes("default.rtk"))
        XCTAssertEqual(records.count, 2)
        guard records.allSatisfy({ $0.fingerprint == model.fingerprint }) else {
            return XCTFail("Tests/Parity/decode/default.rtk names model \(String(format: "%016llx", records[0].fingerprint)), "
                           + "the default model is \(model.fingerprintHex): run Tests/Parity/decode/regenerate.sh")
        }
        try check(records, model: model, dir: "default", steps: [1])
    }
}
