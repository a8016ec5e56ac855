// Batches, trees, streams of named records, overwriting and names.

import Foundation
import XCTest
import RepTokFormat
import RepTokImage

final class BatchTests: XCTestCase {
    let m = Fixture.model

    func testTreeWithACorruptImageEncodesTheRestAndDecodes() throws {
        let root = scratch()
        Fixture.makeTree(root, extras: ["sub/bad.png": Array(TestImages.png().prefix(50)),
                                        "notes.txt": Array("not an image\n".utf8)])
        let r = Tools.run("rtenc", ["-m", m, "-r", "in", "-d", "out"], cwd: root)
        XCTAssertFalse(r.signaled)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderrLines.count, 2, r.stderr)
        XCTAssertTrue(r.stderrLines[0].hasPrefix("rtenc: in/sub/bad.png: "), r.stderr)
        XCTAssertEqual(r.stderrLines[1], "rtenc: 3 of 4 files encoded, 1 failed")
        XCTAssertFalse(r.stderr.contains("\r"), "no progress when stderr is not a terminal")
        XCTAssertEqual(r.stdout, [])
        XCTAssertEqual(listTree(root + "/out"), ["a.png.rtk", "c.ppm.rtk", "sub", "sub/b.jpg.rtk"])

        let d = Tools.run("rtdec", ["-m", m, "-r", "out", "-d", "dec"], cwd: root)
        assertSuccess(d, "rtdec -r out -d dec")
        XCTAssertEqual(listTree(root + "/dec"), ["a.png", "c.ppm", "sub", "sub/b.jpg"])
        XCTAssertTrue(Fixture.image(root + "/dec/a.png")! == (.png, 20, 12))
        XCTAssertTrue(Fixture.image(root + "/dec/c.ppm")! == (.ppm, 9, 7))
        XCTAssertTrue(Fixture.image(root + "/dec/sub/b.jpg")! == (.jpeg, 24, 16))

        // Files named on the command line mirror their relative paths under -d.
        let d2 = Tools.run("rtdec", ["-m", m, "out/a.png.rtk", "out/sub/b.jpg.rtk", "-d", "dec2"], cwd: root)
        assertSuccess(d2, "rtdec files -d dec2")
        XCTAssertEqual(listTree(root + "/dec2"), ["out", "out/a.png", "out/sub", "out/sub/b.jpg"])
        assertNoTemporaries(root)
    }

    func testParallelJobsGiveTheSameFiles() {
        let root = scratch()
        Fixture.makeTree(root, extras: ["d.png": TestImages.png(17, 33, seed: 3), "e.png": TestImages.png(5, 5, seed: 4)])
        assertSuccess(Tools.run("rtenc", ["-m", m, "-r", "in", "-d", "o1", "-j", "1"], cwd: root), "-j 1")
        assertSuccess(Tools.run("rtenc", ["-m", m, "-r", "in", "-d", "o2", "-j", "3"], cwd: root), "-j 3")
        assertSuccess(Tools.run("rtenc", ["-m", m, "-r", "in", "-c", "-j", "0"], cwd: root), "-j 0 -c")
        let names = listTree(root + "/o1")
        XCTAssertEqual(names.count, 6)
        XCTAssertEqual(names, listTree(root + "/o2"))
        for n in names where n.hasSuffix(".rtk") {
            XCTAssertEqual(readBytes(root + "/o1/" + n), readBytes(root + "/o2/" + n), n)
        }
        assertSuccess(Tools.run("rtdec", ["-m", m, "-r", "o1", "-d", "d1"], cwd: root), "dec -j 1")
        assertSuccess(Tools.run("rtdec", ["-m", m, "-r", "o1", "-d", "d2", "-j", "2"], cwd: root), "dec -j 2")
        for n in listTree(root + "/d1") where n.contains(".") {
            XCTAssertEqual(readBytes(root + "/d1/" + n), readBytes(root + "/d2/" + n), n)
        }
        // A concatenated stream is in input order whatever -j.
        let c1 = Tools.run("rtenc", ["-m", m, "-r", "in", "-c"], cwd: root)
        let c3 = Tools.run("rtenc", ["-m", m, "-r", "in", "-c", "-j", "3"], cwd: root)
        XCTAssertEqual(c1.stdout, c3.stdout)
    }

    func testOutputsBesideInputsAndOverwriting() {
        let dir = scratch()
        writeBytes(dir + "/a.png", TestImages.png(20, 12))
        writeBytes(dir + "/b.jpg", TestImages.jpeg(24, 16))
        let r = Tools.run("rtenc", ["-m", m, "a.png", "b.jpg"], cwd: dir)
        assertSuccess(r, "rtenc a.png b.jpg")
        XCTAssertEqual(r.stderrLines.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("rtenc: 2 files encoded"), "summary: \(r.stderr)")
        XCTAssertEqual(listTree(dir), ["a.png", "a.png.rtk", "b.jpg", "b.jpg.rtk"])
        let before = readBytes(dir + "/a.png.rtk")

        // Again: the outputs exist.
        let again = Tools.run("rtenc", ["-m", m, "a.png", "b.jpg", "--quiet"], cwd: dir)
        XCTAssertEqual(again.status, 1)
        XCTAssertEqual(again.stderrLines.count, 2, again.stderr)
        XCTAssertTrue(again.stderr.contains("already exists (use -f to overwrite)"))
        XCTAssertEqual(readBytes(dir + "/a.png.rtk"), before)
        assertSuccess(Tools.run("rtenc", ["-m", m, "-q", "1", "a.png", "b.jpg", "-f"], cwd: dir), "-f")
        XCTAssertEqual(try RTKRecord.parse(readBytes(dir + "/a.png.rtk")!)[0].level, 1)

        // Decoding beside: NAME.rtk -> NAME, refused while the images exist.
        let d = Tools.run("rtdec", ["-m", m, "a.png.rtk", "b.jpg.rtk"], cwd: dir)
        XCTAssertEqual(d.status, 1)
        XCTAssertTrue(d.stderr.contains("a.png is an input") || d.stderr.contains("already exists"), d.stderr)
        try? FileManager.default.removeItem(atPath: dir + "/a.png")
        try? FileManager.default.removeItem(atPath: dir + "/b.jpg")
        assertSuccess(Tools.run("rtdec", ["-m", m, "a.png.rtk", "b.jpg.rtk"], cwd: dir), "rtdec beside")
        XCTAssertTrue(Fixture.image(dir + "/a.png")! == (.png, 20, 12))
        XCTAssertTrue(Fixture.image(dir + "/b.jpg")! == (.jpeg, 24, 16))
        // --format with a name that names another format appends the extension.
        assertSuccess(Tools.run("rtdec", ["-m", m, "a.png.rtk", "b.jpg.rtk", "--format", "ppm"], cwd: dir), "--format ppm")
        XCTAssertEqual(Fixture.image(dir + "/a.png.ppm")?.0, .ppm)
        // An input that does not end in .rtk cannot be named in a batch.
        writeBytes(dir + "/x.bin", readBytes(dir + "/a.png.rtk")!)
        let bin = Tools.run("rtdec", ["-m", m, "x.bin", "a.png.rtk", "-f"], cwd: dir)
        XCTAssertEqual(bin.status, 1)
        XCTAssertTrue(bin.stderr.contains("x.bin: unknown suffix"), bin.stderr)
        assertNoTemporaries(dir)
    }

    func testNeverOverwritesAnInputEvenWithForce() {
        let dir = scratch()
        let png = TestImages.png(20, 12)
        writeBytes(dir + "/a.png", png)
        let r = Tools.run("rtenc", ["-m", m, "a.png", "-o", "a.png", "-f"], cwd: dir)
        assertCleanFailure(r, tool: "rtenc", mentions: "is an input", "rtenc a.png -o a.png -f")
        XCTAssertEqual(readBytes(dir + "/a.png"), png)
        // Through a symbolic link too.
        symlink("a.png", dir + "/link.rtk")
        let l = Tools.run("rtenc", ["-m", m, "a.png", "-o", "link.rtk", "-f"], cwd: dir)
        assertCleanFailure(l, tool: "rtenc", mentions: "is an input", "output is a link to the input")
        XCTAssertEqual(readBytes(dir + "/a.png"), png)

        assertSuccess(Tools.run("rtenc", ["-m", m, "a.png", "-o", "a.rtk"], cwd: dir), "encode")
        let rtk = readBytes(dir + "/a.rtk")
        let d = Tools.run("rtdec", ["-m", m, "a.rtk", "-o", "a.rtk", "-f"], cwd: dir)
        assertCleanFailure(d, tool: "rtdec", mentions: "is an input", "rtdec a.rtk -o a.rtk -f")
        XCTAssertEqual(readBytes(dir + "/a.rtk"), rtk)
        // Existing output without -f.
        writeBytes(dir + "/out.png", [1, 2, 3])
        let e = Tools.run("rtdec", ["-m", m, "a.rtk", "-o", "out.png"], cwd: dir)
        assertCleanFailure(e, tool: "rtdec", mentions: "already exists", "existing output")
        XCTAssertEqual(readBytes(dir + "/out.png"), [1, 2, 3])
        assertSuccess(Tools.run("rtdec", ["-m", m, "a.rtk", "-o", "out.png", "-f"], cwd: dir), "-f")
        XCTAssertEqual(Fixture.image(dir + "/out.png")?.0, .png)
        assertNoTemporaries(dir)
    }

    func testStreamOfNamedRecordsPacksAndUnpacks() throws {
        let root = scratch()
        Fixture.makeTree(root)
        let c = Tools.run("rtenc", ["-m", m, "-r", "-c", "in"], cwd: root)
        assertSuccess(c, "rtenc -r -c in")
        let records = try RTKRecord.parse(c.stdout)
        XCTAssertEqual(records.map { $0.name }, ["a.png", "c.ppm", "sub/b.jpg"])
        writeBytes(root + "/s.rtk", c.stdout)
        // -o with several inputs writes the same stream.
        assertSuccess(Tools.run("rtenc", ["-m", m, "-r", "in", "-o", "s2.rtk"], cwd: root), "-o stream")
        XCTAssertEqual(readBytes(root + "/s2.rtk"), c.stdout)
        // Files named on the command line keep their relative path; absolute ones their last component.
        let named = Tools.run("rtenc", ["-m", m, "-c", "in/sub/b.jpg", "./in/a.png", root + "/in/c.ppm"], cwd: root)
        assertSuccess(named, "rtenc -c files")
        XCTAssertEqual(try RTKRecord.parse(named.stdout).map { $0.name }, ["in/sub/b.jpg", "in/a.png", "c.ppm"])

        let info = Tools.run("rtinfo", ["--json", "s.rtk"], cwd: root)
        assertSuccess(info, "rtinfo --json")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(info.stdout)) as? [[String: Any]])
        XCTAssertEqual(json.map { $0["name"] as? String }, ["a.png", "c.ppm", "sub/b.jpg"])
        XCTAssertEqual(json.map { $0["width"] as? Int }, [20, 9, 24])
        XCTAssertEqual(json.map { $0["record"] as? Int }, [1, 2, 3])
        XCTAssertEqual(json[0]["model"] as? String, String(format: "%016llx", Fixture.fingerprint))
        XCTAssertEqual(json.map { $0["bytes"] as? Int }.reduce(0) { $0 + ($1 ?? 0) }, c.stdout.count)

        let d = Tools.run("rtdec", ["-m", m, "s.rtk", "-d", "dec"], cwd: root)
        assertSuccess(d, "rtdec s.rtk -d dec")
        XCTAssertEqual(listTree(root + "/dec"), ["a.png", "c.ppm", "sub", "sub/b.jpg"])
        XCTAssertTrue(Fixture.image(root + "/dec/sub/b.jpg")! == (.jpeg, 24, 16))
        // Through a pipe.
        let p = Tools.shell("rtenc -m \(Tools.q(m)) -r -c in | rtdec -m \(Tools.q(m)) -d piped", cwd: root)
        assertSuccess(p, "rtenc -c | rtdec -d")
        XCTAssertEqual(listTree(root + "/piped"), ["a.png", "c.ppm", "sub", "sub/b.jpg"])
        XCTAssertEqual(readBytes(root + "/piped/a.png"), readBytes(root + "/dec/a.png"))

        // A stream cannot go to one file or to stdout without -c.
        let o = Tools.run("rtdec", ["-m", m, "s.rtk", "-o", "one.png"], cwd: root)
        assertCleanFailure(o, tool: "rtdec", mentions: "holds 3 records", "stream to -o")
        let so = Tools.run("rtdec", ["-m", m, "s.rtk"], cwd: root)
        assertCleanFailure(so, tool: "rtdec", mentions: "holds 3 records", "stream to stdout")
        XCTAssertEqual(so.stdout, [])
        // -c concatenates the images (PPM here).
        let cat = Tools.run("rtdec", ["-m", m, "-c", "--format", "ppm", "s.rtk"], cwd: root)
        assertSuccess(cat, "rtdec -c")
        XCTAssertEqual(Array(cat.stdout.prefix(2)), Array("P6".utf8))
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/one.png"))

        // Unnamed records of a stream are numbered.
        let one = Tools.run("rtenc", ["-m", m, "in/a.png"], cwd: root).stdout
        writeBytes(root + "/pair.rtk", one + one)
        assertSuccess(Tools.run("rtdec", ["-m", m, "pair.rtk", "-d", "num"], cwd: root), "unnamed stream")
        XCTAssertEqual(listTree(root + "/num"), ["pair-1.png", "pair-2.png"])
        assertNoTemporaries(root)
    }

    func testCorruptRecordInTheMiddleOfAStream() throws {
        let root = scratch()
        Fixture.makeTree(root)
        var s = Tools.run("rtenc", ["-m", m, "-r", "-c", "in"], cwd: root).stdout
        let records = try RTKRecord.parse(s)
        let first = try records[0].serialized().count
        s[first + 20] ^= 0x10  // inside record 2
        writeBytes(root + "/bad.rtk", s)
        let d = Tools.run("rtdec", ["-m", m, "bad.rtk", "-d", "dec"], cwd: root)
        XCTAssertFalse(d.signaled)
        XCTAssertEqual(d.status, 1)
        XCTAssertEqual(d.stderrLines.count, 2, d.stderr)
        XCTAssertEqual(d.stderrLines.first.map { $0.hasPrefix("rtdec: bad.rtk: record 2 (byte \(first)): checksum mismatch") }, true, d.stderr)
        XCTAssertEqual(d.stderrLines.last, "rtdec: 2 of 3 images decoded, 1 failed")
        XCTAssertEqual(listTree(root + "/dec"), ["a.png", "sub", "sub/b.jpg"], "the other records still decode")

        let i = Tools.run("rtinfo", ["bad.rtk"], cwd: root)
        XCTAssertEqual(i.status, 1)
        XCTAssertEqual(i.stderrLines.count, 1, i.stderr)
        let lines = i.stdoutText.split(separator: "\n")
        XCTAssertEqual(lines.count, 5, "header, two records, total, model note: \(i.stdoutText)")
        XCTAssertTrue(lines[4].hasPrefix("model "), i.stdoutText)
        XCTAssertTrue(lines[1].hasSuffix("  a.png"))
        XCTAssertTrue(lines[2].hasSuffix("  sub/b.jpg"))

        // Garbage between records is reported and skipped.
        let good = try RTKRecord.parse(Tools.run("rtenc", ["-m", m, "-r", "-c", "in"], cwd: root).stdout)
        let junk = try good[0].serialized() + Array("junk".utf8) + good[1].serialized()
        writeBytes(root + "/junk.rtk", junk)
        let j = Tools.run("rtdec", ["-m", m, "junk.rtk", "-d", "dec2"], cwd: root)
        XCTAssertEqual(j.status, 1)
        XCTAssertTrue(j.stderr.contains("4 trailing bytes at byte"), j.stderr)
        XCTAssertEqual(listTree(root + "/dec2"), ["a.png", "c.ppm"])
        assertNoTemporaries(root)
    }

    func testDuplicateAndHostileNamesUnderOutputDirectory() throws {
        let root = scratch()
        writeBytes(root + "/a.png", TestImages.png(20, 12))
        let rec = try RTKRecord.parse(Tools.run("rtenc", ["-m", m, "a.png"], cwd: root).stdout)[0]
        func named(_ n: String) throws -> [UInt8] { var r = rec; r.name = n; return try r.serialized() }
        // Two records with the same name: the second is refused, the first written.
        writeBytes(root + "/dup.rtk", try named("x.png") + named("x.png"))
        let d = Tools.run("rtdec", ["-m", m, "dup.rtk", "-d", "dup"], cwd: root)
        XCTAssertEqual(d.status, 1)
        let first = try named("x.png").count
        XCTAssertTrue(d.stderr.contains("dup.rtk: record 2 (byte \(first)): output dup/x.png is also the output of dup.rtk record 1"),
                      d.stderr)
        XCTAssertEqual(listTree(root + "/dup"), ["x.png"])
        // A directory on the way that is a symbolic link is not followed out of -d.
        try FileManager.default.createDirectory(atPath: root + "/outside", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/dest", withIntermediateDirectories: true)
        symlink(root + "/outside", root + "/dest/sub")
        writeBytes(root + "/link.rtk", try named("sub/evil.png"))
        let l = Tools.run("rtdec", ["-m", m, "link.rtk", "-d", "dest"], cwd: root)
        assertCleanFailure(l, tool: "rtdec", mentions: "symbolic link", "symlinked directory")
        XCTAssertEqual(listTree(root + "/outside"), [])
    }

    func testMissingFilesAndDirectoriesInABatch() {
        let root = scratch()
        Fixture.makeTree(root)
        let r = Tools.run("rtenc", ["-m", m, "in/a.png", "missing.png", "in", "-d", "out"], cwd: root)
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderrLines.count, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("rtenc: missing.png: No such file or directory"), r.stderr)
        XCTAssertTrue(r.stderr.contains("rtenc: in: is a directory (use -r to recurse)"), r.stderr)
        XCTAssertEqual(listTree(root + "/out"), ["in", "in/a.png.rtk"])
        let one = Tools.run("rtenc", ["-m", m, "in"], cwd: root)
        assertCleanFailure(one, tool: "rtenc", mentions: "is a directory", "one directory")
    }
}

private func == (a: (ImageFormat, Int, Int), b: (ImageFormat, Int, Int)) -> Bool {
    a.0 == b.0 && a.1 == b.1 && a.2 == b.2
}
