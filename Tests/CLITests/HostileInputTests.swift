// Crafted corrupt .rtk files: each must end in exit status 1 with one line on stderr, no
// signal, no hang and no output file left behind.

import Foundation
import XCTest
import RepTokFormat

final class HostileInputTests: XCTestCase {
    let m = Fixture.model

    /// A valid record of the tiny model (20x12, level 5).
    lazy var good: [UInt8] = {
        let r = Tools.run("rtenc", ["-m", m, "-"], stdin: TestImages.png(20, 12))
        precondition(r.status == 0, r.stderr)
        return r.stdout
    }()

    lazy var record: RTKRecord = try! RTKRecord.parse(good)[0]

    /// The crafted files: name, bytes, and whether the container itself is bad (so rtinfo must
    /// fail too) or only what the decoder finds (model, payload).
    func corruptions() -> [(String, [UInt8], Bool)] {
        var list: [(String, [UInt8], Bool)] = []
        func raw(_ edit: (inout RawRecord) -> Void) -> [UInt8] {
            var r = RawRecord(record)
            edit(&r)
            return r.bytes
        }
        XCTAssertEqual(RawRecord(record).bytes, good, "the raw builder reproduces the record")
        func flip(_ at: Int, _ bit: UInt8 = 1) -> [UInt8] { var b = good; b[at] ^= bit; return b }

        list.append(("empty", [], true))
        list.append(("text", Array("hello, world\n".utf8), true))
        list.append(("png", TestImages.png(), true))
        list.append(("magic only", RTKFormat.magic, true))
        list.append(("future version", raw { $0.version = 2 }, true))
        list.append(("version 0", raw { $0.version = 0 }, true))
        list.append(("must-reject flag", raw { $0.flags |= 0x04 }, true))
        list.append(("level 0", raw { $0.mode = 0x00 }, true))
        list.append(("level 10", raw { $0.mode = 0x0A }, true))
        list.append(("sampler 7", raw { $0.mode = 0x75 }, true))
        list.append(("width 0", raw { $0.width = [0] }, true))
        list.append(("height 70000", raw { $0.height = RTKVarint.encode(70_000) }, true))
        list.append(("too many pixels", raw { $0.width = RTKVarint.encode(65_535); $0.height = RTKVarint.encode(65_535) }, true))
        list.append(("steps 0", raw { $0.steps = [0] }, true))
        list.append(("steps 1001", raw { $0.steps = RTKVarint.encode(1001) }, true))
        list.append(("overlong varint", raw { $0.width = [0x94, 0x00] }, true))
        list.append(("varint overflow", raw { $0.seed = [UInt8](repeating: 0xFF, count: 9) + [0x02] }, true))
        list.append(("eleven-byte varint", raw { $0.seed = [UInt8](repeating: 0x80, count: 10) + [0x01] }, true))
        list.append(("absolute name", raw { $0.name = Array("/etc/passwd".utf8); $0.flags |= 1 }, true))
        list.append(("dot-dot name", raw { $0.name = Array("../x.png".utf8); $0.flags |= 1 }, true))
        list.append(("newline in name", raw { $0.name = Array("a\nb.png".utf8); $0.flags |= 1 }, true))
        list.append(("escape in name", raw { $0.name = Array("\u{1B}[2Jx.png".utf8); $0.flags |= 1 }, true))
        list.append(("backslash name", raw { $0.name = Array("a\\b.png".utf8); $0.flags |= 1 }, true))
        list.append(("bad UTF-8 name", raw { $0.name = [0x61, 0xC3, 0x28]; $0.flags |= 1 }, true))
        list.append(("empty name", raw { $0.name = []; $0.flags |= 1 }, true))
        list.append(("payload length past end", raw { $0.payloadLength = RTKVarint.encode(UInt64($0.payload.count + 100)) }, true))
        list.append(("payload length over cap", raw { $0.payloadLength = RTKVarint.encode(70_000) }, true))
        list.append(("checksum off by one", raw { $0.crcDelta = 1 }, true))
        list.append(("payload bit flip", flip(good.count - 6, 0x20), true))
        list.append(("fingerprint bit flip", flip(8), true))
        list.append(("no checksum", Array(good.dropLast(4)), true))
        list.append(("trailing garbage", good + Array("junk".utf8), true))
        list.append(("second record truncated", good + good.prefix(20), true))
        list.append(("second record corrupt", good + flip(30, 0x01), true))
        list.append(("magic prefix at the end", good + [0xD2, 0x52], true))
        list.append(("two records", good + good, true))  // one output cannot hold two images
        // Valid containers whose content the decoder refuses.
        list.append(("unknown model", raw { $0.fingerprint = 0x0123_4567_89AB_CDEF }, false))
        list.append(("payload not zstd", raw { $0.payload = [1, 2, 3, 4, 5, 6, 7, 8] }, false))
        list.append(("empty payload", raw { $0.payload = [] }, false))
        list.append(("payload claims too much", raw {
            $0.payload = Array(try! RTKZstd.compress([UInt8](repeating: 1, count: 10_000)))
        }, false))
        list.append(("too many token values", raw {
            $0.payload = Array(try! RTKZstd.compress([UInt8](repeating: 2, count: 40)))
        }, false))
        list.append(("truncated token value", raw { $0.payload = Array(try! RTKZstd.compress([0x80])) }, false))
        list.append(("token value out of range", raw {
            $0.payload = Array(try! RTKZstd.compress([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]))
        }, false))
        return list
    }

    func testCraftedCorruptionsFailCleanly() {
        let dir = scratch()
        for (i, (name, bytes, containerBad)) in corruptions().enumerated() {
            let input = "c\(i).rtk"
            writeBytes(dir + "/" + input, bytes)
            let o = Tools.run("rtdec", ["-m", m, input, "-o", "out.png"], cwd: dir, timeout: 60)
            assertCleanFailure(o, tool: "rtdec", mentions: input, "rtdec -o: \(name)")
            let s = Tools.run("rtdec", ["-m", m, input], cwd: dir, timeout: 60)
            assertCleanFailure(s, tool: "rtdec", mentions: input, "rtdec > stdout: \(name)")
            XCTAssertEqual(s.stdout, [], "\(name): nothing on stdout")
            if i % 3 == 0 || !containerBad {
                let p = Tools.run("rtdec", ["-m", m, "-"], stdin: bytes, cwd: dir, timeout: 60)
                assertCleanFailure(p, tool: "rtdec", mentions: "(stdin)", "rtdec - < file: \(name)")
                XCTAssertEqual(p.stdout, [], "\(name): nothing on stdout")
            }
            if containerBad {
                let info = Tools.run("rtinfo", [input], cwd: dir, timeout: 60)
                if name == "two records" {
                    assertSuccess(info, "rtinfo: \(name)")
                } else {
                    assertCleanFailure(info, tool: "rtinfo", mentions: input, "rtinfo: \(name)")
                }
            }
            let left = listTree(dir).filter { $0 != input }
            XCTAssertEqual(left, [], "\(name): output left behind")
            try? FileManager.default.removeItem(atPath: dir + "/" + input)
        }
        XCTAssertEqual(listTree(dir), [])
    }

    func testMessagesNameTheProblem() {
        let dir = scratch()
        let cases = corruptions()
        func message(_ name: String) -> String {
            let bytes = cases.first { $0.0 == name }!.1
            return Tools.run("rtdec", ["-m", m, "-"], stdin: bytes, cwd: dir).stderr
        }
        XCTAssertTrue(message("unknown model").contains("rtdec: (stdin): record 1 (byte 0): model 0123456789abcdef not found"),
                      "the record, its offset and the fingerprint are named")
        XCTAssertTrue(message("text").contains("not an .rtk file (bad magic at byte 0)"))
        XCTAssertTrue(message("future version").contains("record 1 (byte 0): unsupported .rtk version 2"))
        XCTAssertTrue(message("checksum off by one").contains("checksum mismatch"))
        XCTAssertTrue(message("absolute name").contains("checksum") == false)
        XCTAssertTrue(message("absolute name").contains("absolute path"))
        XCTAssertTrue(message("payload not zstd").contains("corrupt token payload"))
        XCTAssertTrue(message("trailing garbage").contains("4 trailing bytes at byte \(good.count)"))
        XCTAssertTrue(message("two records").contains("holds 2 records"))
    }

    func testEveryTruncationFailsCleanly() {
        let dir = scratch()
        for n in stride(from: 0, to: good.count, by: 3) {
            writeBytes(dir + "/t.rtk", Array(good.prefix(n)))
            let r = Tools.run("rtdec", ["-m", m, "t.rtk", "-o", "t.png"], cwd: dir, timeout: 60)
            assertCleanFailure(r, tool: "rtdec", "truncated to \(n) bytes")
            XCTAssertEqual(listTree(dir), ["t.rtk"], "truncated to \(n): output left")
        }
    }

    func testUnknownModelIsFoundThroughTheSearchPath() throws {
        let dir = scratch()
        writeBytes(dir + "/a.rtk", good)
        let r = Tools.run("rtdec", ["a.rtk", "-o", "a.png"], cwd: dir)
        assertCleanFailure(r, tool: "rtdec", mentions: String(format: "%016llx", record.fingerprint), "no model")
        XCTAssertEqual(listTree(dir), ["a.rtk"])
        // A folder of models in $REPTOK_MODEL_PATH is searched by fingerprint.
        let models = dir + "/models"
        try FileManager.default.createDirectory(atPath: models, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: m, toPath: models + "/mine.safetensors")
        let found = Tools.run("rtdec", ["a.rtk", "-o", "a.png"], cwd: dir, env: ["REPTOK_MODEL_PATH": "/nonexistent:" + models])
        assertSuccess(found, "model found by fingerprint")
        XCTAssertEqual(Fixture.image(dir + "/a.png")?.1, 20)
    }

    func testHugeOutputSizeIsCappedByMaxPixels() throws {
        // A valid 40-odd-byte record may ask for a 65535x1024 image; --max-pixels refuses it.
        var r = record
        r.width = 65_535
        r.height = 1_024
        let dir = scratch()
        writeBytes(dir + "/huge.rtk", try r.serialized())
        let d = Tools.run("rtdec", ["-m", m, "--max-pixels", "1000000", "huge.rtk", "-o", "huge.png"], cwd: dir)
        assertCleanFailure(d, tool: "rtdec", mentions: "above the limits", "--max-pixels")
        XCTAssertEqual(listTree(dir), ["huge.rtk"])
        let s = Tools.run("rtdec", ["-m", m, "--size", "2000x1000", "--max-pixels", "1000000", "huge.rtk"], cwd: dir)
        assertCleanFailure(s, tool: "rtdec", mentions: "above the limits", "--size over --max-pixels")
    }

    func testDecodingAPNGOrAFolderFailsCleanly() {
        let dir = scratch()
        writeBytes(dir + "/a.png", TestImages.png())
        let r = Tools.run("rtdec", ["-m", m, "a.png"], cwd: dir)
        assertCleanFailure(r, tool: "rtdec", mentions: "not an .rtk file", "rtdec a.png")
        try? FileManager.default.createDirectory(atPath: dir + "/d", withIntermediateDirectories: true)
        let d = Tools.run("rtdec", ["-m", m, "d"], cwd: dir)
        assertCleanFailure(d, tool: "rtdec", mentions: "is a directory", "rtdec d")
        let i = Tools.run("rtinfo", ["a.png"], cwd: dir)
        assertCleanFailure(i, tool: "rtinfo", mentions: "not an .rtk file", "rtinfo a.png")
        XCTAssertEqual(i.stdout, [])
    }
}
