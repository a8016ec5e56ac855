// Damaged streams as rtk(5) (DAMAGED STREAMS), rtdec(1) and rtinfo(1) say they are read: a
// record whose structure is intact is skipped by its own lengths, so a valid record lying inside
// it (a "ghost") is never decoded; a broken structure resyncs at the next magic; an unknown
// version stops the reading. Also the payload's token check and the messages of issue #14.

import Foundation
import XCTest
import RepTokFormat

final class DamagedStreamTests: XCTestCase {
    let m = Fixture.model

    /// A valid record of the tiny model (20x12, level 5), unnamed.
    lazy var base: RTKRecord = {
        let r = Tools.run("rtenc", ["-m", m, "-"], stdin: TestImages.png(20, 12))
        precondition(r.status == 0, r.stderr)
        return try! RTKRecord.parse(r.stdout)[0]
    }()

    func named(_ name: String) -> [UInt8] {
        var r = base
        r.name = name
        return try! r.serialized()
    }

    /// A record named `name` whose payload is `payload` (any bytes), edited by `edit`.
    func raw(_ name: String, payload: [UInt8], _ edit: (inout RawRecord) -> Void = { _ in }) -> [UInt8] {
        var r = RawRecord(base)
        r.name = Array(name.utf8)
        r.flags |= RTKFormat.flagHasName
        r.payload = payload
        edit(&r)
        return r.bytes
    }

    struct Outcome {
        var decode: RunResult
        var written: [String]
        var info: RunResult
        /// (record index, offset, name) of each record rtinfo --json lists.
        var listed: [(Int, Int, String?)]
    }

    /// rtdec -d and rtinfo --json on `bytes`.
    func read(_ bytes: [UInt8]) -> Outcome {
        let dir = scratch()
        writeBytes(dir + "/s.rtk", bytes)
        let d = Tools.run("rtdec", ["-m", m, "s.rtk", "-d", "out"], cwd: dir, timeout: 60)
        let i = Tools.run("rtinfo", ["--json", "s.rtk"], cwd: dir, timeout: 60)
        let rows = (try? JSONSerialization.jsonObject(with: Data(i.stdout))) as? [[String: Any]] ?? []
        let listed = rows.map { ($0["record"] as? Int ?? -1, $0["offset"] as? Int ?? -1, $0["name"] as? String) }
        assertNoTemporaries(dir)
        return Outcome(decode: d, written: listTree(dir + "/out"), info: i, listed: listed)
    }

    func testGhostInsideARecordThatFailsItsChecksumOrAValueIsNotDecoded() {
        let ghost = named("ghost.png"), after = named("after.png")
        let cases: [(String, [UInt8], String)] = [
            ("checksum", raw("outer.png", payload: ghost) { $0.crcDelta = 1 }, "checksum mismatch (stored 0x"),
            ("level 0", raw("outer.png", payload: ghost) { $0.mode = 0x00 }, "quantizer level 0 is out of range"),
            ("absolute name", raw("/outer.png", payload: ghost), "record name is an absolute path"),
        ]
        for (what, outer, message) in cases {
            let o = read(outer + after)
            XCTAssertFalse(o.decode.signaled, what)
            XCTAssertEqual(o.decode.status, 1, "\(what): \(o.decode.stderr)")
            XCTAssertEqual(o.decode.stderrLines.count, 2, "\(what): \(o.decode.stderr)")
            XCTAssertEqual(o.decode.stderrLines.last, "rtdec: 1 of 2 images decoded, 1 failed", what)
            XCTAssertTrue(o.decode.stderrLines.first?.hasPrefix("rtdec: s.rtk: record 1 (byte 0): " + message) == true,
                          "\(what): \(o.decode.stderr)")
            XCTAssertEqual(o.written, ["after.png"], "\(what): the ghost inside record 1 must not be decoded")
            XCTAssertEqual(o.info.status, 1, what)
            XCTAssertEqual(o.info.stderrLines.count, 1, "\(what): \(o.info.stderr)")
            XCTAssertTrue(o.info.stderr.hasPrefix("rtinfo: s.rtk: record 1 (byte 0): " + message), "\(what): \(o.info.stderr)")
            XCTAssertEqual(o.listed.count, 1, "\(what): \(o.info.stdoutText)")
            XCTAssertTrue(o.listed.first.map { $0.0 == 2 && $0.1 == outer.count && $0.2 == "after.png" } ?? false,
                          "\(what): \(o.listed)")
        }
    }

    func testGhostInsideAFutureVersionRecordIsNotDecodedAndReadingStops() {
        let first = named("first.png"), ghost = named("ghost.png"), after = named("after.png")
        let cases: [(String, [UInt8], String)] = [
            ("version 2", raw("future.png", payload: ghost) { $0.version = 2 },
             "unsupported .rtk version 2 (this build reads version 1)"),
            ("must-reject flag", raw("future.png", payload: ghost) { $0.flags |= 0x02 },
             "record uses unsupported features (must-reject flag bits 0x02 set)"),
        ]
        for (what, future, message) in cases {
            let rest = future.count + after.count
            let line = "record 2 (byte \(first.count)): \(message); its length is unknown, so the last \(rest) bytes "
                + "of the input are not read"
            let o = read(first + future + after)
            XCTAssertEqual(o.decode.status, 1, "\(what): \(o.decode.stderr)")
            XCTAssertEqual(o.decode.stderrLines, ["rtdec: s.rtk: " + line, "rtdec: 1 of 2 images decoded, 1 failed"], what)
            XCTAssertEqual(o.written, ["first.png"], "\(what): nothing inside or after the record is decoded")
            XCTAssertEqual(o.info.status, 1, what)
            XCTAssertEqual(o.info.stderrLines, ["rtinfo: s.rtk: " + line], what)
            XCTAssertEqual(o.listed.map(\.2), ["first.png"], what)
        }
    }

    func testABrokenStructureResyncsAtTheNextMagic() {
        let first = named("first.png"), after = named("after.png")
        let broken = raw("broken.png", payload: base.payload) { $0.width = [0x94, 0x00] }
        let o = read(first + broken + after)
        XCTAssertEqual(o.decode.status, 1, o.decode.stderr)
        XCTAssertEqual(o.decode.stderrLines, [
            "rtdec: s.rtk: record 2 (byte \(first.count)): malformed record: overlong varint for width at byte \(first.count + 14)",
            "rtdec: 2 of 3 images decoded, 1 failed",
        ])
        XCTAssertEqual(o.written, ["after.png", "first.png"])
        XCTAssertEqual(o.listed.map(\.0), [1, 3])
        XCTAssertEqual(o.listed.map(\.1), [0, first.count + broken.count])
        // A record skipped by its lengths that lands on stray bytes: those are reported, and
        // reading goes on at the next magic.
        let bad = raw("bad.png", payload: base.payload) { $0.crcDelta = 1 }
        let s = read(bad + [0x00, 0x01] + after)
        XCTAssertEqual(s.decode.stderrLines.count, 3, s.decode.stderr)
        XCTAssertEqual(s.decode.stderrLines.dropFirst().map { $0 }, [
            "rtdec: s.rtk: 2 trailing bytes at byte \(bad.count) do not begin an .rtk record (bad magic)",
            "rtdec: 1 of 2 images decoded, 1 failed, 1 other error",
        ])
        XCTAssertEqual(s.written, ["after.png"])
    }

    func testStrayBytesAreNoImage() {
        let o = read(named("a.png") + named("b.png") + [0x00])
        XCTAssertEqual(o.decode.status, 1)
        XCTAssertEqual(o.decode.stderrLines, [
            "rtdec: s.rtk: 1 trailing byte at byte \(2 * named("a.png").count) does not begin an .rtk record (bad magic)",
            "rtdec: 2 images decoded, 1 other error",
        ])
        XCTAssertEqual(o.written, ["a.png", "b.png"])
        XCTAssertEqual(o.info.status, 1)
        XCTAssertEqual(o.listed.count, 2)
    }

    func testEveryDecodeFailureNamesTheRecordAndOffset() {
        let dir = scratch()
        var r = base
        r.fingerprint = 0x0123_4567_89AB_CDEF
        writeBytes(dir + "/one.rtk", try! r.serialized())
        let one = Tools.run("rtdec", ["-m", m, "one.rtk", "-o", "one.png"], cwd: dir)
        assertCleanFailure(one, tool: "rtdec", "unknown model")
        XCTAssertTrue(one.stderr.hasPrefix("rtdec: one.rtk: record 1 (byte 0): model 0123456789abcdef not found ("), one.stderr)
        let good = named("good.png")
        writeBytes(dir + "/two.rtk", good + (try! { var n = r; n.name = "x.png"; return try n.serialized() }()))
        let two = Tools.run("rtdec", ["-m", m, "two.rtk", "-d", "out"], cwd: dir)
        XCTAssertEqual(two.stderrLines, [
            "rtdec: two.rtk: record 2 (byte \(good.count)): model 0123456789abcdef not found "
                + "(default model, -m, $REPTOK_MODEL_PATH, ~/.local/share/reptok/models)",
            "rtdec: 1 of 2 images decoded, 1 failed",
        ])
    }

    /// A model whose level 5 codes 5 token values: a token of 5 values written twice is refused
    /// (it decoded with exit 0 before), and the record itself still decodes.
    func testATokenOfTheWrongLengthIsRefused() throws {
        let dir = scratch()
        let model = try TestModel.write(to: dir + "/coeff.safetensors",
                                        codecExtra: ["level_coefficients": [2, 3, 4, 5, 5, 6, 7, 8, 16]])
        let enc = Tools.run("rtenc", ["-m", model, "-q", "5", "-"], stdin: TestImages.png(20, 12))
        assertSuccess(enc, "rtenc with level coefficients")
        let record = try RTKRecord.parse(enc.stdout)[0]
        let token = try RTKZstd.decompress(record.payload)
        // Five zigzag varints, the last nonzero: a whole token of level 5.
        XCTAssertEqual(token.filter { $0 & 0x80 == 0 }.count, 5, "\(token)")
        XCTAssertNotEqual(token.last, 0)
        var twice = record
        twice.payload = try RTKZstd.compress(token + token)
        writeBytes(dir + "/ok.rtk", enc.stdout)
        writeBytes(dir + "/twice.rtk", try twice.serialized())
        assertSuccess(Tools.run("rtdec", ["-m", model, "ok.rtk", "-o", "ok.png"], cwd: dir), "the record itself")
        let r = Tools.run("rtdec", ["-m", model, "twice.rtk", "-o", "twice.png"], cwd: dir)
        assertCleanFailure(r, tool: "rtdec", mentions: "record 1 (byte 0): corrupt token payload: the token is not the "
                           + "packing of the 5 values level 5 codes", "a 5-value token written twice")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/twice.png"))
    }

    /// rtenc refuses a picture larger than a record can describe, with the record's cap.
    func testRtencQuotesTheRecordsPixelCap() {
        let dir = scratch()
        writeBytes(dir + "/big.ppm", Array("P6\n8193 8192\n255\n".utf8) + [0, 0, 0])
        let r = Tools.run("rtenc", ["-m", m, "big.ppm", "-o", "big.rtk"], cwd: dir)
        assertCleanFailure(r, tool: "rtenc", mentions: "image is 8193x8192, above the limits (at most 65535x65535 and "
                           + "67108864 pixels)", "8193x8192")
        XCTAssertEqual(listTree(dir), ["big.ppm"])
    }
}
