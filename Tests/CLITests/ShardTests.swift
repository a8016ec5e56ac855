// File lists (--files-from, -0), shards (--shard K/N) and stream indices (--index): rtenc(1)
// SHARDS and INDEX FILES, docs/SHARDING.md.
//
// The completeness property tested: the records of shards 0..N-1 concatenated in K order are
// byte for byte the records of one unsharded run over the byte-wise sorted list, and the same
// multiset of records as an unsharded run over the list in any order.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
import RepTokFormat
import RepTokImage

final class ShardTests: XCTestCase {
    let m = Fixture.model

    /// Eleven images; the names sort differently by byte than by directory walk
    /// ("in/a.png" < "in/a/x.png": '.' is below '/'; "in/B.png" < "in/a.png").
    static let treeNames = ["in/a.png", "in/a/x.png", "in/B.png", "in/c.ppm", "in/sub/b.jpg", "in/sub/d.png",
                            "in/two words.png", "in/z/y/e.jpg", "in/z/f.png", "in/g.ppm", "in/sub/h.png"]

    func makeImages(_ root: String, _ names: [String] = ShardTests.treeNames) {
        for (i, n) in names.enumerated() {
            let w = 8 + i, h = 6 + (i * 5) % 7
            let bytes: [UInt8]
            if n.hasSuffix(".jpg") { bytes = TestImages.jpeg(w, h, seed: i) }
            else if n.hasSuffix(".ppm") { bytes = TestImages.ppm(w, h, seed: i) }
            else { bytes = TestImages.png(w, h, seed: i) }
            writeBytes(root + "/" + n, bytes)
        }
    }

    func lines(_ names: [String]) -> [UInt8] { Array(names.map { $0 + "\n" }.joined().utf8) }
    func nulls(_ names: [String]) -> [UInt8] { Array(names.map { $0 + "\0" }.joined().utf8) }
    func byteSorted(_ names: [String]) -> [String] {
        names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// Entries of an index file: name, offset, bytes.
    func readIndex(_ path: String, file: StaticString = #filePath, line: UInt = #line) -> [(String, Int, Int)] {
        guard let bytes = readBytes(path) else { XCTFail("no index \(path)", file: file, line: line); return [] }
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.isEmpty || text.hasSuffix("\n"), "index ends with a newline", file: file, line: line)
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { l in
            let f = l.split(separator: "\t", omittingEmptySubsequences: false)
            XCTAssertEqual(f.count, 3, "index line \(l)", file: file, line: line)
            return (String(f[0]), Int(f.count > 1 ? f[1] : "") ?? -1, Int(f.count > 2 ? f[2] : "") ?? -1)
        }
    }

    /// Every entry of `index`, read by seeking in `stream`, is exactly one valid record of that
    /// name; the entries cover the stream from its first byte to its last, in order.
    func assertSeekable(stream: String, index: String, names: [String]? = nil,
                        file: StaticString = #filePath, line: UInt = #line) throws {
        let entries = readIndex(index, file: file, line: line)
        let size = (try FileManager.default.attributesOfItem(atPath: stream)[.size] as? NSNumber)?.intValue ?? -1
        let h = try XCTUnwrap(FileHandle(forReadingAtPath: stream), file: file, line: line)
        defer { try? h.close() }
        var expectedOffset = 0
        for (name, offset, bytes) in entries {
            XCTAssertEqual(offset, expectedOffset, "\(name): records are back to back", file: file, line: line)
            try h.seek(toOffset: UInt64(offset))
            let chunk = [UInt8](try h.read(upToCount: bytes) ?? Data())
            XCTAssertEqual(chunk.count, bytes, "\(name): short read", file: file, line: line)
            let records = try RTKRecord.parse(chunk)  // throws on trailing or missing bytes
            XCTAssertEqual(records.count, 1, "\(name)", file: file, line: line)
            XCTAssertEqual(records.first?.name, name, file: file, line: line)
            expectedOffset = offset + bytes
        }
        XCTAssertEqual(expectedOffset, size, "the index covers the whole stream", file: file, line: line)
        if let names { XCTAssertEqual(entries.map(\.0), names, file: file, line: line) }
    }

    // MARK: - Lists

    func testFilesFromAFileStdinAndNulSeparated() throws {
        let root = scratch()
        makeImages(root)
        let order = ["in/c.ppm", "in/sub/b.jpg", "in/a.png", "in/two words.png"]
        // The same run from the command line: names in the list's order.
        let direct = Tools.run("rtenc", ["-m", m, "-c"] + order, cwd: root)
        assertSuccess(direct, "rtenc -c files")
        XCTAssertEqual(try RTKRecord.parse(direct.stdout).map(\.name), order)

        // One name a line (an empty line is skipped; the last line lacks its newline).
        var text = lines(["in/c.ppm", "", "in/sub/b.jpg", "in/a.png"]) + Array("in/two words.png".utf8)
        writeBytes(root + "/list.txt", text)
        let f = Tools.run("rtenc", ["-m", m, "--files-from", "list.txt", "-c"], cwd: root)
        assertSuccess(f, "--files-from list.txt")
        XCTAssertEqual(f.stdout, direct.stdout)
        XCTAssertEqual(f.stderrLines, ["rtenc: 4 files encoded, \(order.map { readBytes(root + "/" + $0)!.count }.reduce(0, +)) bytes -> \(direct.stdout.count) bytes"])
        // From stdin.
        let s = Tools.run("rtenc", ["-m", m, "--files-from", "-", "-c"], stdin: text, cwd: root)
        assertSuccess(s, "--files-from -")
        XCTAssertEqual(s.stdout, direct.stdout)
        // NUL-separated, from a file and from stdin, -0 and --null.
        writeBytes(root + "/list0", nulls(order))
        let z = Tools.run("rtenc", ["-m", m, "-0", "--files-from", "list0", "-c"], cwd: root)
        assertSuccess(z, "-0 --files-from list0")
        XCTAssertEqual(z.stdout, direct.stdout)
        let zs = Tools.shell("printf 'in/c.ppm\\0in/sub/b.jpg\\0in/a.png\\0in/two words.png' "
                             + "| rtenc -m \(Tools.q(m)) --null --files-from - -c", cwd: root)
        assertSuccess(zs, "printf ... | rtenc --null --files-from -")
        XCTAssertEqual(zs.stdout, direct.stdout)
        // A NUL-separated list read without -0 is one name holding NUL bytes: refused, with a hint.
        let nz = Tools.run("rtenc", ["-m", m, "--files-from", "list0", "-c"], cwd: root)
        XCTAssertEqual(nz.status, 1, nz.stderr)
        XCTAssertTrue(nz.stderr.contains("holds a NUL byte (a list of NUL-separated names needs -0)"), nz.stderr)
        XCTAssertEqual(nz.stdout, [])
        // A name that is not UTF-8 is reported; the others are encoded.
        let notUTF8 = Tools.run("rtenc", ["-m", m, "--files-from", "-", "-c"],
                                stdin: [0x69, 0x6E, 0x2F, 0xFF, 0x2E, 0x70, 0x6E, 0x67, 0x0A] + lines(["in/a.png"]), cwd: root)
        XCTAssertEqual(notUTF8.status, 1)
        XCTAssertEqual(notUTF8.stderrLines.first, "rtenc: in/\u{FFFD}.png: file name in the list is not valid UTF-8")
        XCTAssertEqual(try RTKRecord.parse(notUTF8.stdout).map(\.name), ["in/a.png"])
        // Names on the command line come first, then the list's.
        let both = Tools.run("rtenc", ["-m", m, "-c", "in/g.ppm", "--files-from", "list.txt"], cwd: root)
        assertSuccess(both, "files and --files-from")
        XCTAssertEqual(try RTKRecord.parse(both.stdout).map(\.name), ["in/g.ppm"] + order)

        // Beside each input, and under -d, as for names on the command line.
        assertSuccess(Tools.run("rtenc", ["-m", m, "--files-from", "list.txt", "-d", "out"], cwd: root), "-d")
        XCTAssertEqual(listTree(root + "/out").filter { $0.hasSuffix(".rtk") },
                       ["in/a.png.rtk", "in/c.ppm.rtk", "in/sub/b.jpg.rtk", "in/two words.png.rtk"])
        // A list of one name still writes a stream of named records to -o.
        writeBytes(root + "/one.txt", lines(["in/a.png"]))
        assertSuccess(Tools.run("rtenc", ["-m", m, "--files-from", "one.txt", "-o", "one.rtk"], cwd: root), "one name")
        XCTAssertEqual(try RTKRecord.parse(readBytes(root + "/one.rtk")!).map(\.name), ["in/a.png"])
        // A directory in the list is walked with -r.
        writeBytes(root + "/dirs.txt", lines(["in/z"]))
        let r = Tools.run("rtenc", ["-m", m, "-r", "--files-from", "dirs.txt", "-c"], cwd: root)
        assertSuccess(r, "-r with a directory in the list")
        XCTAssertEqual(try RTKRecord.parse(r.stdout).map(\.name), ["f.png", "y/e.jpg"])
        // An empty list: nothing to do, an empty stream, success.
        writeBytes(root + "/empty.txt", [])
        let e = Tools.run("rtenc", ["-m", m, "--files-from", "empty.txt", "-o", "empty.rtk"], cwd: root)
        assertSuccess(e, "empty list")
        XCTAssertEqual(readBytes(root + "/empty.rtk"), [])
        // A missing name is reported; the others are encoded.
        text = lines(["in/a.png", "in/nope.png", "in/c.ppm"])
        let miss = Tools.run("rtenc", ["-m", m, "--files-from", "-", "-c"], stdin: text, cwd: root)
        XCTAssertEqual(miss.status, 1)
        XCTAssertEqual(miss.stderrLines, ["rtenc: in/nope.png: No such file or directory", "rtenc: 2 of 3 files encoded, 1 failed"])
        XCTAssertEqual(try RTKRecord.parse(miss.stdout).map(\.name), ["in/a.png", "in/c.ppm"])
        assertNoTemporaries(root)
    }

    // MARK: - Shards

    func testFourShardsAreExactlyTheUnshardedRun() throws {
        let root = scratch()
        makeImages(root)
        // The list in an order of its own (neither sorted nor the walk's).
        let listed = [5, 0, 9, 3, 10, 1, 7, 2, 8, 4, 6].map { ShardTests.treeNames[$0] }
        let sorted = byteSorted(listed)
        XCTAssertNotEqual(listed, sorted)
        writeBytes(root + "/list.txt", lines(listed))
        writeBytes(root + "/reversed.txt", lines(listed.reversed()))
        writeBytes(root + "/sorted.txt", lines(sorted))

        let all = Tools.run("rtenc", ["-m", m, "--files-from", "list.txt", "-o", "all.rtk", "--index", "all.idx"], cwd: root)
        assertSuccess(all, "unsharded")
        let srt = Tools.run("rtenc", ["-m", m, "--files-from", "sorted.txt", "-o", "sorted.rtk", "--index", "sorted.idx"],
                            cwd: root)
        assertSuccess(srt, "unsharded, sorted list")
        let allRecords = try RTKRecord.parse(readBytes(root + "/all.rtk")!)
        XCTAssertEqual(allRecords.map(\.name), listed, "without --shard the list's order is kept")

        var concatenated: [UInt8] = []
        var mergedIndex: [(String, Int, Int)] = []
        var sizes: [Int] = []
        for k in 0..<4 {
            let args = ["-m", m, "--files-from", "list.txt", "--shard", "\(k)/4", "-o", "part-\(k).rtk",
                        "--index", "part-\(k).idx"]
            let r = Tools.run("rtenc", args + (k == 2 ? ["-j", "3"] : []), cwd: root)
            assertSuccess(r, "shard \(k)/4")
            let part = try XCTUnwrap(readBytes(root + "/part-\(k).rtk"))
            let records = try RTKRecord.parse(part)
            sizes.append(records.count)
            XCTAssertEqual(r.stderrLines.count, 1, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("rtenc: shard \(k)/4: \(records.count) files encoded"), r.stderr)
            try assertSeekable(stream: root + "/part-\(k).rtk", index: root + "/part-\(k).idx")
            // Deterministic: the same shard of the list in another order (and with other -j) is
            // the same bytes, index included.
            let again = Tools.run("rtenc", ["-m", m, "--files-from", "reversed.txt", "--shard", "\(k)/4", "-c",
                                            "--index", "again-\(k).idx", "-j", "2"], cwd: root)
            assertSuccess(again, "shard \(k)/4 of the reversed list")
            XCTAssertEqual(again.stdout, part, "shard \(k)/4 depends on the list's order")
            XCTAssertEqual(readBytes(root + "/again-\(k).idx"), readBytes(root + "/part-\(k).idx"))
            // The merge of the indices: offsets shifted by the bytes before the part.
            mergedIndex += readIndex(root + "/part-\(k).idx").map { ($0.0, $0.1 + concatenated.count, $0.2) }
            concatenated += part
        }
        // Contiguous blocks of the sorted list; 11 = 3 + 3 + 3 + 2.
        XCTAssertEqual(sizes, [3, 3, 3, 2])
        // In K order: byte for byte the unsharded run over the sorted list (and --shard 0/1).
        XCTAssertEqual(concatenated, readBytes(root + "/sorted.rtk"))
        XCTAssertEqual(try RTKRecord.parse(concatenated).map(\.name), sorted)
        let one = Tools.run("rtenc", ["-m", m, "--files-from", "list.txt", "--shard", "0/1", "-c"], cwd: root)
        assertSuccess(one, "--shard 0/1")
        XCTAssertEqual(one.stdout, concatenated)
        // As a set (a multiset, compared sorted): the records of the run over the list as given.
        let shardSet = try RTKRecord.parse(concatenated).map { try $0.serialized() }
        let allSet = try allRecords.map { try $0.serialized() }
        XCTAssertEqual(shardSet.sorted { $0.lexicographicallyPrecedes($1) }, allSet.sorted { $0.lexicographicallyPrecedes($1) })
        // The merged index is the sorted run's index, and seeks in the concatenation.
        let sortedIndex = readIndex(root + "/sorted.idx")
        XCTAssertEqual(mergedIndex.map { "\($0.0)\t\($0.1)\t\($0.2)" }, sortedIndex.map { "\($0.0)\t\($0.1)\t\($0.2)" })
        try assertSeekable(stream: root + "/sorted.rtk", index: root + "/sorted.idx", names: sorted)
        try assertSeekable(stream: root + "/all.rtk", index: root + "/all.idx", names: listed)

        // With -r, a directory is one name: the shard that takes it walks it.
        let dirs = ["in/z", "in/sub", "in/a.png", "in/a"]
        writeBytes(root + "/dirs.txt", lines(dirs))
        writeBytes(root + "/dirs-sorted.txt", lines(byteSorted(dirs)))
        let whole = Tools.run("rtenc", ["-m", m, "-r", "--files-from", "dirs-sorted.txt", "-c"], cwd: root)
        assertSuccess(whole, "-r over the sorted list")
        XCTAssertEqual(try RTKRecord.parse(whole.stdout).map(\.name),
                       ["x.png", "in/a.png", "b.jpg", "d.png", "h.png", "f.png", "y/e.jpg"])
        var joined: [UInt8] = []
        for k in 0..<3 {
            let r = Tools.run("rtenc", ["-m", m, "-r", "--files-from", "dirs.txt", "--shard", "\(k)/3", "-c"], cwd: root)
            assertSuccess(r, "-r shard \(k)/3")
            joined += r.stdout
        }
        XCTAssertEqual(joined, whole.stdout)
        assertNoTemporaries(root)
    }

    func testIndexSeeksToExactlyOneRecordEvenWhenSomeInputsFail() throws {
        let root = scratch()
        makeImages(root)
        writeBytes(root + "/in/bad.png", Array(TestImages.png().prefix(40)))
        let names = ["in/a.png", "in/bad.png", "in/sub/b.jpg", "in/missing.png", "in/two words.png"]
        writeBytes(root + "/list.txt", lines(names))
        // To a file: the good records, an index of just them.
        let o = Tools.run("rtenc", ["-m", m, "--files-from", "list.txt", "-o", "s.rtk", "--index", "s.idx", "-j", "2"],
                          cwd: root)
        XCTAssertEqual(o.status, 1, o.stderr)
        XCTAssertEqual(o.stderrLines.count, 3, o.stderr)
        XCTAssertEqual(o.stderrLines.last, "rtenc: 3 of 5 files encoded, 2 failed")
        try assertSeekable(stream: root + "/s.rtk", index: root + "/s.idx", names: ["in/a.png", "in/sub/b.jpg", "in/two words.png"])
        // To stdout (-c): the index describes stdout's stream.
        let c = Tools.run("rtenc", ["-m", m, "--files-from", "list.txt", "-c", "--index", "c.idx"], cwd: root)
        XCTAssertEqual(c.status, 1)
        XCTAssertEqual(c.stdout, readBytes(root + "/s.rtk"))
        XCTAssertEqual(readBytes(root + "/c.idx"), readBytes(root + "/s.idx"))
        // A record read from stdin has no name: an empty first field.
        let p = Tools.run("rtenc", ["-m", m, "-", "in/c.ppm", "-c", "--index", "p.idx"], stdin: readBytes(root + "/in/a.png"),
                          cwd: root)
        assertSuccess(p, "stdin and a file with --index")
        writeBytes(root + "/p.rtk", p.stdout)
        let entries = readIndex(root + "/p.idx")
        XCTAssertEqual(entries.map(\.0), ["", "in/c.ppm"])
        XCTAssertNil(try RTKRecord.parse(Array(p.stdout.prefix(entries[0].2))).first?.name)
        // --index with one input and -o: a stream of one named record.
        let single = Tools.run("rtenc", ["-m", m, "in/a.png", "-o", "a.rtk", "--index", "a.idx"], cwd: root)
        assertSuccess(single, "one input with --index")
        try assertSeekable(stream: root + "/a.rtk", index: root + "/a.idx", names: ["in/a.png"])
        // Every input failed: neither the stream nor its index.
        writeBytes(root + "/bad.txt", lines(["in/bad.png", "in/missing.png"]))
        let none = Tools.run("rtenc", ["-m", m, "--files-from", "bad.txt", "-o", "none.rtk", "--index", "none.idx"], cwd: root)
        XCTAssertEqual(none.status, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/none.rtk"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/none.idx"))
        // An existing index is not replaced without -f, and nothing is encoded.
        writeBytes(root + "/good.txt", lines(["in/a.png", "in/c.ppm"]))
        let exists = Tools.run("rtenc", ["-m", m, "--files-from", "good.txt", "-o", "t.rtk", "--index", "s.idx"], cwd: root)
        assertCleanFailure(exists, tool: "rtenc", mentions: "s.idx already exists (use -f to overwrite)", "existing index")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/t.rtk"))
        // An index over an input, even with -f.
        let over = Tools.run("rtenc", ["-m", m, "in/a.png", "-o", "t.rtk", "--index", "in/a.png", "-f"], cwd: root)
        assertCleanFailure(over, tool: "rtenc", mentions: "is an input", "index over an input")
        assertNoTemporaries(root)
    }

    func testEmptyShardsAndErrorsBelongToOneShard() throws {
        let root = scratch()
        makeImages(root, ["in/a.png", "in/b.png"])
        writeBytes(root + "/list.txt", lines(["in/b.png", "in/a.png"]))
        for k in 0..<4 {
            let r = Tools.run("rtenc", ["-m", m, "--files-from", "list.txt", "--shard", "\(k)/4", "-o", "p\(k).rtk",
                                        "--index", "p\(k).idx"], cwd: root)
            assertSuccess(r, "shard \(k)/4 of 2 inputs")
            if k < 2 {
                XCTAssertEqual(try RTKRecord.parse(readBytes(root + "/p\(k).rtk")!).map(\.name), [k == 0 ? "in/a.png" : "in/b.png"])
                try assertSeekable(stream: root + "/p\(k).rtk", index: root + "/p\(k).idx")
            } else {
                XCTAssertEqual(r.stderrLines, ["rtenc: shard \(k)/4 is empty (2 names in 4 shards)"])
                XCTAssertEqual(readBytes(root + "/p\(k).rtk"), [], "an empty shard leaves an empty stream")
                XCTAssertEqual(readBytes(root + "/p\(k).idx"), [], "and an empty index")
                let c = Tools.run("rtenc", ["-m", m, "--files-from", "list.txt", "--shard", "\(k)/4", "-c", "--quiet"], cwd: root)
                assertSuccess(c, "empty shard to stdout")
                XCTAssertEqual(c.stdout, [])
                XCTAssertEqual(c.stderr, "")
            }
        }
        // A name that cannot be used is reported by exactly one shard, where it sorts.
        writeBytes(root + "/miss.txt", lines(["in/b.png", "in/a.png", "in/0missing.png", "in"]))
        var reports: [String] = []
        var statuses: [Int32] = []
        for k in 0..<3 {
            let r = Tools.run("rtenc", ["-m", m, "--files-from", "miss.txt", "--shard", "\(k)/3", "-c", "--quiet"], cwd: root)
            XCTAssertFalse(r.signaled)
            reports += r.stderrLines
            statuses.append(r.status)
        }
        // Sorted: in, in/0missing.png, in/a.png, in/b.png -> [in, in/0missing.png], [in/a.png], [in/b.png].
        XCTAssertEqual(reports, ["rtenc: in: is a directory (use -r to recurse)", "rtenc: in/0missing.png: No such file or directory"])
        XCTAssertEqual(statuses, [1, 0, 0])
        assertNoTemporaries(root)
    }

    func testBadShardValuesAndListsFailInOneLineWithNoOutput() {
        let root = scratch()
        makeImages(root, ["in/a.png", "in/b.png"])
        writeBytes(root + "/list.txt", lines(["in/a.png", "in/b.png"]))
        func assertUsage(_ args: [String], mentions: String, stdin: [UInt8]? = nil, file: StaticString = #filePath, line: UInt = #line) {
            let r = Tools.run("rtenc", ["-m", m] + args + ["-o", "out.rtk"], stdin: stdin, cwd: root)
            let what = args.joined(separator: " ")
            XCTAssertFalse(r.signaled, what, file: file, line: line)
            XCTAssertEqual(r.status, 64, "\(what): \(r.stderr)", file: file, line: line)
            XCTAssertEqual(r.stderrLines.count, 1, "\(what): one line: \(r.stderr)", file: file, line: line)
            XCTAssertTrue(r.stderr.hasPrefix("rtenc: ") && r.stderr.contains(mentions), "\(what): \(r.stderr)", file: file, line: line)
            XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/out.rtk"), what, file: file, line: line)
        }
        let list = ["--files-from", "list.txt"]
        assertUsage(list + ["--shard", "4/4"], mentions: "--shard 4/4: K counts from 0 and must be below N (0 to 3)")
        assertUsage(list + ["--shard", "0/0"], mentions: "--shard 0/0: N must be at least 1")
        for bad in ["-1/4", "1", "a/b", "1/2/3", "+1/4", " 1/4", "1/4 ", "1/", "/4", "1.0/4", "99999999999999999999/1"] {
            assertUsage(list + ["--shard=" + bad], mentions: "--shard wants K/N, two whole numbers with K from 0 to N-1")
        }
        assertUsage(["-0", "in/a.png"], mentions: "-0 (--null) needs --files-from")
        assertUsage(["--files-from", ""], mentions: "--files-from needs a file name")
        assertUsage(["--files-from", "-", "-"], mentions: "stdin (-) can be read only once")
        assertUsage(list + ["--shard", "0/2", "-"], mentions: "--shard cannot split stdin (-)")
        assertUsage(["--shard", "0/2"], mentions: "--shard needs inputs to split")
        assertUsage(list + ["--index", "out.rtk"], mentions: "--index and -o name the same file")
        assertUsage(list + ["--index", "-"], mentions: "--index needs a file name")
        let noStream = Tools.run("rtenc", ["-m", m, "--files-from", "list.txt", "--index", "i.idx"], cwd: root)
        XCTAssertEqual(noStream.status, 64)
        XCTAssertEqual(noStream.stderrLines, ["rtenc: --index needs a stream of records: -o FILE or -c"])

        // A list that cannot be read: one line, status 1, no output (nor index) at all.
        for (arg, message) in [("nope.txt", "nope.txt: cannot read the file list: No such file or directory"),
                               ("in", "in: cannot read the file list: is a directory")] {
            let r = Tools.run("rtenc", ["-m", m, "--files-from", arg, "--shard", "1/2", "-o", "out.rtk", "--index", "out.idx"],
                              cwd: root)
            assertCleanFailure(r, tool: "rtenc", mentions: message, "unreadable list \(arg)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/out.rtk"))
            XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/out.idx"))
        }
        XCTAssertEqual(listTree(root).filter { !$0.hasPrefix("in") }, ["list.txt"])
    }

    // MARK: - docs/SHARDING.md

    /// The fenced block that follows `marker` in docs/SHARDING.md.
    func documentedBlock(_ marker: String) throws -> String {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let doc = try String(contentsOf: repo.appendingPathComponent("docs/SHARDING.md"), encoding: .utf8)
        let after = try XCTUnwrap(doc.range(of: "<!-- \(marker) -->"), "marker \(marker)")
        let rest = doc[after.upperBound...]
        let open = try XCTUnwrap(rest.range(of: "```sh\n"))
        let close = try XCTUnwrap(rest[open.upperBound...].range(of: "\n```"))
        return String(rest[open.upperBound..<close.lowerBound])
    }

    func testDocumentedExampleRunsAndMerges() throws {
        let root = scratch()
        let names = ["photos/2019/a.png", "photos/2019/b.jpg", "photos/2020/c d.png", "photos/e.jpg", "photos/f.png",
                     "photos/g/h.jpg", "photos/i.png"]
        makeImages(root, names)
        writeBytes(root + "/photos/notes.txt", Array("not an image\n".utf8))
        // The tools under test, with the tiny model.
        let M = Tools.q(m)
        let prelude = "set -e\nrtenc() { command rtenc -m \(M) \"$@\"; }\nrtdec() { command rtdec -m \(M) \"$@\"; }\n"
        let example = try documentedBlock("sharding-example: tested")
        let r = Tools.shell(prelude + example, cwd: root)
        assertSuccess(r, "the documented example")
        XCTAssertFalse(r.stderr.contains("failed"), r.stderr)
        for k in 0..<4 { XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/part-\(k).idx"), "part-\(k).idx") }

        // The merged file: every image once, in sorted order, the same bytes as one run.
        let sorted = byteSorted(names)
        writeBytes(root + "/sorted.txt", lines(sorted))
        let one = Tools.run("rtenc", ["-m", m, "--files-from", "sorted.txt", "-o", "one.rtk", "--index", "one.idx"], cwd: root)
        assertSuccess(one, "unsharded")
        XCTAssertEqual(readBytes(root + "/all.rtk"), readBytes(root + "/one.rtk"))
        XCTAssertEqual(readBytes(root + "/all.idx"), readBytes(root + "/one.idx"))
        try assertSeekable(stream: root + "/all.rtk", index: root + "/all.idx", names: sorted)

        // The documented seek: one record out of the merged file, decoded.
        let seek = try documentedBlock("sharding-seek: tested")
        let s = Tools.shell(prelude + seek, cwd: root)
        assertSuccess(s, "the documented seek")
        let b = try XCTUnwrap(Fixture.image(root + "/b.png"))
        XCTAssertEqual(b.0, .png)
        XCTAssertEqual(b.1, 9)  // photos/2019/b.jpg: the second image, 9 pixels wide
        assertNoTemporaries(root)
    }
}
