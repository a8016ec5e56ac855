// Single files, pipes, determinism and the encode/decode options.

import Foundation
import XCTest
import RepTokFormat
import RepTokImage

final class PipelineTests: XCTestCase {
    let m = Fixture.model

    func testPipelineRoundTrip() throws {
        let dir = scratch()
        writeBytes(dir + "/a.png", TestImages.png(20, 12))
        let M = Tools.q(m)
        let r = Tools.shell("cat a.png | rtenc -m \(M) - | rtdec -m \(M) - > a2.png", cwd: dir)
        assertSuccess(r, "cat a.png | rtenc - | rtdec - > a2.png")
        XCTAssertEqual(r.stderr, "")
        let info = try XCTUnwrap(Fixture.image(dir + "/a2.png"))
        XCTAssertEqual(info.0, .png)
        XCTAssertEqual(info.1, 20)
        XCTAssertEqual(info.2, 12)
        // No arguments at all: stdin to stdout, same bytes.
        let r2 = Tools.shell("rtenc -m \(M) < a.png | rtdec -m \(M) > a3.png", cwd: dir)
        assertSuccess(r2, "rtenc < a.png | rtdec > a3.png")
        XCTAssertEqual(readBytes(dir + "/a2.png"), readBytes(dir + "/a3.png"))
        XCTAssertEqual(Set(listTree(dir)), ["a.png", "a2.png", "a3.png"])
    }

    func testOneInputGoesToStdout() throws {
        let dir = scratch()
        writeBytes(dir + "/a.png", TestImages.png(20, 12))
        let r = Tools.run("rtenc", ["-m", m, "a.png"], cwd: dir)
        assertSuccess(r, "rtenc a.png")
        XCTAssertEqual(r.stderr, "")
        let records = try RTKRecord.parse(r.stdout)
        XCTAssertEqual(records.count, 1)
        XCTAssertEqual(records[0].width, 20)
        XCTAssertEqual(records[0].height, 12)
        XCTAssertNil(records[0].name, "a single record to stdout carries no name")
        XCTAssertEqual(records[0].fingerprint, Fixture.fingerprint)
        XCTAssertEqual(listTree(dir), ["a.png"], "nothing written beside the input")

        let d = Tools.run("rtdec", ["-m", m, "-"], stdin: r.stdout)
        assertSuccess(d, "rtdec -")
        let info = try XCTUnwrap(Fixture.image(bytes: d.stdout))
        XCTAssertEqual(info.0, .png)
        XCTAssertEqual(info.1, 20)
    }

    func testEncodingTheSameImageTwiceGivesIdenticalBytes() {
        let dir = scratch()
        writeBytes(dir + "/b.jpg", TestImages.jpeg(24, 16))
        let a = Tools.run("rtenc", ["-m", m, "b.jpg"], cwd: dir)
        let b = Tools.run("rtenc", ["-m", m, "-"], stdin: readBytes(dir + "/b.jpg"))
        let c = Tools.run("rtenc", ["-m", m, "b.jpg"], cwd: dir, env: ["REPTOK_THREADS": "1"])
        assertSuccess(a, "first")
        XCTAssertFalse(a.stdout.isEmpty)
        XCTAssertEqual(a.stdout, b.stdout)
        XCTAssertEqual(a.stdout, c.stdout)
        // -o writes the same bytes.
        let o = Tools.run("rtenc", ["-m", m, "b.jpg", "-o", "b.rtk"], cwd: dir)
        assertSuccess(o, "-o")
        XCTAssertEqual(readBytes(dir + "/b.rtk"), a.stdout)
    }

    func testDecodingIsIdenticalAcrossRunsAndThreadCounts() throws {
        let slow = Fixture.slowModel
        let dir = scratch()
        writeBytes(dir + "/a.png", TestImages.png(40, 30))
        let e = Tools.run("rtenc", ["-m", slow, "a.png", "-o", "a.rtk"], cwd: dir)
        assertSuccess(e, "encode")
        var outputs: [[UInt8]] = []
        for threads in ["1", "2", "2", "1"] {
            let d = Tools.run("rtdec", ["-m", slow, "--steps", "2", "a.rtk"], cwd: dir, env: ["REPTOK_THREADS": threads])
            assertSuccess(d, "decode with \(threads) threads")
            outputs.append(d.stdout)
        }
        XCTAssertFalse(outputs[0].isEmpty)
        for o in outputs.dropFirst() { XCTAssertEqual(o, outputs[0], "decoded images differ") }
        // Encoding too: the same record bytes with 1 and 2 threads.
        let e1 = Tools.run("rtenc", ["-m", slow, "a.png"], cwd: dir, env: ["REPTOK_THREADS": "1"])
        let e2 = Tools.run("rtenc", ["-m", slow, "a.png"], cwd: dir, env: ["REPTOK_THREADS": "2"])
        assertSuccess(e1, "encode with 1 thread")
        XCTAssertEqual(e1.stdout, e2.stdout, "encoded records differ")
        XCTAssertEqual(e1.stdout, readBytes(dir + "/a.rtk"))
        // The model-resolution image too (no resampling in the way).
        let n1 = Tools.run("rtdec", ["-m", slow, "--steps", "2", "--native", "a.rtk"], cwd: dir, env: ["REPTOK_THREADS": "1"])
        let n2 = Tools.run("rtdec", ["-m", slow, "--steps", "2", "--native", "a.rtk"], cwd: dir, env: ["REPTOK_THREADS": "2"])
        assertSuccess(n1, "native 1")
        XCTAssertEqual(n1.stdout, n2.stdout)
        XCTAssertEqual(Fixture.image(bytes: n1.stdout)?.1, 64)
    }

    func testDecodeOptions() throws {
        let dir = scratch()
        writeBytes(dir + "/a.png", TestImages.png(20, 12))
        assertSuccess(Tools.run("rtenc", ["-m", m, "a.png", "-o", "a.png.rtk"], cwd: dir), "encode")
        func dec(_ args: [String]) -> [UInt8] {
            let r = Tools.run("rtdec", ["-m", m] + args + ["a.png.rtk"], cwd: dir)
            assertSuccess(r, "rtdec \(args)")
            return r.stdout
        }
        let plain = dec([])
        XCTAssertEqual(Fixture.image(bytes: plain)?.1, 20)
        let sized = try XCTUnwrap(Fixture.image(bytes: dec(["--size", "7x5"])))
        XCTAssertEqual(sized.1, 7)
        XCTAssertEqual(sized.2, 5)
        XCTAssertEqual(Fixture.image(bytes: dec(["--native"]))?.1, 16)
        XCTAssertEqual(Fixture.image(bytes: dec(["--format", "jpg"]))?.0, .jpeg)
        XCTAssertEqual(Fixture.image(bytes: dec(["--format", "ppm"]))?.0, .ppm)
        XCTAssertNotEqual(dec(["--seed", "5"]), plain, "another seed gives another rendering")
        XCTAssertEqual(dec(["--seed", "0"]), plain, "the record's seed is 0")
        XCTAssertNotEqual(dec(["--steps", "5"]), plain)
        // -o picks the format from the extension.
        assertSuccess(Tools.run("rtdec", ["-m", m, "a.png.rtk", "-o", "x.jpg"], cwd: dir), "-o x.jpg")
        XCTAssertEqual(Fixture.image(dir + "/x.jpg")?.0, .jpeg)
        assertSuccess(Tools.run("rtdec", ["-m", m, "a.png.rtk", "-o", "x.out"], cwd: dir), "-o x.out")
        XCTAssertEqual(Fixture.image(dir + "/x.out")?.0, .png, "PNG when the extension names no format")
    }

    func testEncodeOptionsAreStored() throws {
        let dir = scratch()
        writeBytes(dir + "/a.png", TestImages.png(20, 12))
        let r = Tools.run("rtenc", ["-m", m, "-q", "2", "--steps", "7", "--sampler", "heun", "--seed", "300", "a.png"], cwd: dir)
        assertSuccess(r, "rtenc with options")
        let rec = try RTKRecord.parse(r.stdout)[0]
        XCTAssertEqual(rec.level, 2)
        XCTAssertEqual(rec.steps, 7)
        XCTAssertEqual(rec.sampler, .heun)
        XCTAssertEqual(rec.seed, 300)
        let d = Tools.run("rtenc", ["-m", m, "a.png"], cwd: dir)
        let def = try RTKRecord.parse(d.stdout)[0]
        XCTAssertEqual(def.level, 5, "the model's default level")
        XCTAssertEqual(def.steps, 2, "the model's default steps")
        // --target-bytes: the record fits, or the file fails with one line.
        let big = Tools.run("rtenc", ["-m", m, "--target-bytes", "1000", "a.png"], cwd: dir)
        assertSuccess(big, "--target-bytes 1000")
        let fit = try RTKRecord.parse(big.stdout)[0]
        XCTAssertEqual(fit.level, 9, "the highest level that fits")
        XCTAssertLessThanOrEqual(big.stdout.count, 1000)
        let tiny = Tools.run("rtenc", ["-m", m, "--target-bytes", "10", "a.png"], cwd: dir)
        assertCleanFailure(tiny, tool: "rtenc", mentions: "no quality level fits", "--target-bytes 10")
        XCTAssertEqual(tiny.stdout, [])
    }

    func testBadImagesFailWithOneLine() {
        let dir = scratch()
        writeBytes(dir + "/notes.txt", Array("hello\n".utf8))
        writeBytes(dir + "/trunc.png", Array(TestImages.png().prefix(40)))
        writeBytes(dir + "/empty.png", [])
        writeBytes(dir + "/a.gif", Array("GIF89a....".utf8))
        for name in ["notes.txt", "trunc.png", "empty.png", "a.gif", "missing.png"] {
            let r = Tools.run("rtenc", ["-m", m, name], cwd: dir)
            assertCleanFailure(r, tool: "rtenc", mentions: name, "rtenc \(name)")
            XCTAssertEqual(r.stdout, [], name)
            let o = Tools.run("rtenc", ["-m", m, name, "-o", "out.rtk"], cwd: dir)
            assertCleanFailure(o, tool: "rtenc", mentions: name, "rtenc \(name) -o out.rtk")
        }
        let e = Tools.run("rtenc", ["-m", m, "-"], stdin: [])
        assertCleanFailure(e, tool: "rtenc", mentions: "empty", "empty stdin")
        XCTAssertEqual(Set(listTree(dir)), ["notes.txt", "trunc.png", "empty.png", "a.gif"], "no output left")
        // A model file that is not one.
        let bad = Tools.run("rtenc", ["-m", dir + "/notes.txt", "a.gif"], cwd: dir)
        assertCleanFailure(bad, tool: "rtenc", "bad model")
        let none = Tools.run("rtdec", ["-m", dir + "/nope.safetensors", "x.rtk"], cwd: dir)
        assertCleanFailure(none, tool: "rtdec", "missing model")
    }
}
