// rtgen end to end: PNG directories, .rtk streams, classes, interpolation, determinism, errors.

import Foundation
import XCTest
import RepTokFormat
import RepTokImage
import RepTokModels
import RepTokSafeTensors

enum TestGenerator {
    /// A random generator for the tiny test model's tokens (classes cats, dogs, fish).
    static func write(to path: String, codecModel: String, tokenDim: Int = 16, seed: UInt64 = 4) throws -> String {
        let cfg = GeneratorConfig(tokenDim: tokenDim, width: 16, depth: 2, mlpRatio: 2, freqDim: 16, classes: ["cats", "dogs", "fish"])
        let g = TokenGenerator(cfg)
        g.initialize(seed: seed)
        var rng = TestRNG(seed: seed)
        for p in g.parameters { for i in 0..<p.value.count { p.value[i] += 0.2 * rng.normal() } }
        let meta = try JSONSerialization.data(withJSONObject: [
            "format": "reptok-generator", "version": 1, "codec_model": codecModel,
            "generator": try JSONSerialization.jsonObject(with: JSONEncoder().encode(cfg))] as [String: Any], options: [.sortedKeys])
        var w = SafeTensorsWriter(metadata: ["reptok.config": String(decoding: meta, as: UTF8.self)])
        for p in g.parameters { try w.add("generator." + p.key, shape: p.shape, values: p.value.array) }
        try w.add("normalization.mean", shape: [tokenDim], values: (0..<tokenDim).map { Float($0) * 0.01 })
        try w.add("normalization.std", shape: [1], values: [0.5])
        try w.write(to: path)
        return path
    }
}

final class GenerateCLITests: XCTestCase {
    let m = Fixture.model
    lazy var fp = String(format: "%016llx", Fixture.fingerprint)

    func testPNGsAreDeterministicPerIndexAndNamedByClass() throws {
        let root = scratch()
        let g = try TestGenerator.write(to: root + "/gen.safetensors", codecModel: fp)
        let r = Tools.run("rtgen", ["-m", m, "-g", g, "-n", "5", "--steps", "4", "-o", "out"], cwd: root)
        assertSuccess(r, "rtgen -n 5")
        XCTAssertEqual(listTree(root + "/out"), ["0000_cats.png", "0001_dogs.png", "0002_fish.png", "0003_cats.png", "0004_dogs.png"])
        for f in listTree(root + "/out") {
            let img = Fixture.image(root + "/out/" + f)
            XCTAssertEqual(img?.0, .png, f)
            XCTAssertEqual(img?.1, 16, f); XCTAssertEqual(img?.2, 16, f)
        }
        // same command, same bytes; fewer images: the same first ones
        let again = Tools.run("rtgen", ["-m", m, "-g", g, "-n", "3", "--steps", "4", "-o", "out2"], cwd: root)
        assertSuccess(again, "rtgen -n 3")
        for f in ["0000_cats.png", "0001_dogs.png", "0002_fish.png"] {
            XCTAssertEqual(readBytes(root + "/out/" + f), readBytes(root + "/out2/" + f), f)
        }
        // another seed, other images
        assertSuccess(Tools.run("rtgen", ["-m", m, "-g", g, "-n", "1", "--steps", "4", "--seed", "9", "-o", "out3"], cwd: root), "--seed")
        XCTAssertNotEqual(readBytes(root + "/out3/0000_cats.png"), readBytes(root + "/out/0000_cats.png"))
        // existing files are kept without -f, replaced with it
        let clash = Tools.run("rtgen", ["-m", m, "-g", g, "-n", "1", "--steps", "4", "--seed", "9", "-o", "out"], cwd: root)
        assertCleanFailure(clash, tool: "rtgen", mentions: "already exists", "no -f")
        XCTAssertEqual(readBytes(root + "/out/0000_cats.png"), readBytes(root + "/out2/0000_cats.png"))
        assertSuccess(Tools.run("rtgen", ["-m", m, "-g", g, "-n", "1", "--steps", "4", "--seed", "9", "-f", "-o", "out"], cwd: root), "-f")
        XCTAssertEqual(readBytes(root + "/out/0000_cats.png"), readBytes(root + "/out3/0000_cats.png"))
        // --grid: one PNG, a row per class (cats, dogs, fish), 2 px white gaps; its cells are the
        // images -o wrote
        assertSuccess(Tools.run("rtgen", ["-m", m, "-g", g, "-n", "5", "--steps", "4", "--grid", "grid.png"], cwd: root), "--grid")
        let gridImg = try ImageIO.decode(readBytes(root + "/grid.png") ?? []).image
        XCTAssertEqual(gridImg.width, 2 * 16 + 3 * 2); XCTAssertEqual(gridImg.height, 3 * 16 + 4 * 2)
        // (out/0000 was replaced by the seed-9 image above; out2 holds the seed-0 0000-0002)
        for (i, f) in ["out2/0000_cats.png", "out2/0001_dogs.png", "out2/0002_fish.png", "out/0003_cats.png"].enumerated() {
            let cell = try ImageIO.decode(readBytes(root + "/" + f) ?? []).image
            let (r, c) = (i % 3, i / 3)
            for y in 0..<16 {
                let row = ((2 + r * 18 + y) * gridImg.width + 2 + c * 18) * 3
                XCTAssertEqual(Array(gridImg.pixels[row..<row + 48]), Array(cell.pixels[(y * 48)..<(y * 48 + 48)]), "\(f) row \(y)")
            }
        }
        XCTAssertEqual(Array(gridImg.pixels[0..<6]), [255, 255, 255, 255, 255, 255])
        assertCleanFailure(Tools.run("rtgen", ["-m", m, "-g", g, "-n", "1", "--grid", "grid.png"], cwd: root),
                           tool: "rtgen", mentions: "already exists", "--grid without -f")
        assertNoTemporaries(root)
    }

    func testClassesGuidanceAndList() throws {
        let root = scratch()
        let g = try TestGenerator.write(to: root + "/gen.safetensors", codecModel: fp)
        let list = Tools.run("rtgen", ["-g", g, "--list-classes"], cwd: root)
        assertSuccess(list, "--list-classes")
        XCTAssertEqual(list.stdoutText, "cats\ndogs\nfish\n")
        assertSuccess(Tools.run("rtgen", ["-m", m, "-g", g, "-n", "2", "--class", "fish", "--steps", "3", "-o", "f"], cwd: root), "--class")
        XCTAssertEqual(listTree(root + "/f"), ["0000_fish.png", "0001_fish.png"])
        assertSuccess(Tools.run("rtgen", ["-m", m, "-g", g, "-n", "1", "--unconditional", "--steps", "3", "-o", "u"], cwd: root), "uncond")
        XCTAssertEqual(listTree(root + "/u"), ["0000_any.png"])
        // guidance changes the sample; --cfg 1 and a guidance interval that misses every t agree
        for (dir, args) in [("c1", ["--cfg", "1"]), ("c3", ["--cfg", "3"]), ("c3off", ["--cfg", "3", "--cfg-interval", "0.95,0.96"])] {
            assertSuccess(Tools.run("rtgen", ["-m", m, "-g", g, "-n", "1", "--steps", "4", "-o", dir] + args, cwd: root), dir)
        }
        XCTAssertNotEqual(readBytes(root + "/c1/0000_cats.png"), readBytes(root + "/c3/0000_cats.png"))
        XCTAssertEqual(readBytes(root + "/c1/0000_cats.png"), readBytes(root + "/c3off/0000_cats.png"))
        let bad = Tools.run("rtgen", ["-m", m, "-g", g, "--class", "unicorns", "-o", "x"], cwd: root)
        assertCleanFailure(bad, tool: "rtgen", mentions: "unicorns", "unknown class")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/x/0000_unicorns.png"))
    }

    func testStreamOutputDecodesWithRtdecAndLerpEndsAtTheInput() throws {
        let root = scratch()
        let g = try TestGenerator.write(to: root + "/gen.safetensors", codecModel: fp)
        let s = Tools.run("rtgen", ["-m", m, "-g", g, "-n", "3", "--steps", "4", "-o", "-"], cwd: root)
        assertSuccess(s, "rtgen -o -")
        let recs = try RTKRecord.parse(s.stdout)
        XCTAssertEqual(recs.count, 3)
        XCTAssertEqual(recs.map { $0.name }, ["0000_cats", "0001_dogs", "0002_fish"])
        XCTAssertEqual(recs.map { $0.seed }, [0, 1, 2])
        XCTAssertTrue(recs.allSatisfy { $0.fingerprint == Fixture.fingerprint && $0.width == 16 && $0.height == 16 })
        writeBytes(root + "/gen.rtk", s.stdout)
        let d = Tools.run("rtdec", ["-m", m, "-c", "--format", "ppm", "gen.rtk"], cwd: root)
        assertSuccess(d, "rtdec of the stream")

        // --lerp: the first frame is the first record's own decode.
        writeBytes(root + "/a.png", TestImages.png(20, 12, seed: 1))
        writeBytes(root + "/b.png", TestImages.png(20, 12, seed: 2))
        for n in ["a", "b"] { assertSuccess(Tools.run("rtenc", ["-m", m, "-o", n + ".rtk", n + ".png"], cwd: root), "rtenc") }
        let l = Tools.run("rtgen", ["-m", m, "--lerp", "a.rtk", "b.rtk", "-n", "4", "-o", "lerp"], cwd: root)
        assertSuccess(l, "--lerp")
        XCTAssertEqual(listTree(root + "/lerp"), ["lerp_0000.png", "lerp_0001.png", "lerp_0002.png", "lerp_0003.png"])
        assertSuccess(Tools.run("rtdec", ["-m", m, "--native", "-o", "a_native.png", "a.rtk"], cwd: root), "rtdec --native")
        XCTAssertEqual(readBytes(root + "/lerp/lerp_0000.png"), readBytes(root + "/a_native.png"))
        XCTAssertNotEqual(readBytes(root + "/lerp/lerp_0001.png"), readBytes(root + "/a_native.png"))
    }

    func testUsageAndCleanFailures() throws {
        let root = scratch()
        let g = try TestGenerator.write(to: root + "/gen.safetensors", codecModel: fp)
        for args in [["-m", m, "-g", g], ["-m", m, "-g", g, "-n", "0", "-o", "o"], ["-m", m, "-g", g, "--steps", "0", "-o", "o"],
                     ["-m", m, "-g", g, "--cfg-interval", "0.9,0.3", "-o", "o"], ["-m", m, "--lerp", "a.rtk", "-o", "o"],
                     ["-m", m, "-g", g, "--class", "cats", "--unconditional", "-o", "o"], ["-m", m, "-g", g, "-q", "12", "-o", "-"],
                     ["-m", m, "-g", g, "--grid", "x.png", "-o", "d"], ["-m", m, "-g", g, "--grid", "-"]] {
            XCTAssertEqual(Tools.run("rtgen", args, cwd: root).status, 64, args.joined(separator: " "))
        }
        // a generator for another model, a missing one, a file that is not a generator
        let other = try TestGenerator.write(to: root + "/other.safetensors", codecModel: "0123456789abcdef")
        assertCleanFailure(Tools.run("rtgen", ["-m", m, "-g", other, "-o", "o"], cwd: root), tool: "rtgen",
                           mentions: "0123456789abcdef", "other model")
        assertCleanFailure(Tools.run("rtgen", ["-m", m, "-g", "nope.safetensors", "-o", "o"], cwd: root), tool: "rtgen",
                           mentions: "nope.safetensors", "missing generator")
        assertCleanFailure(Tools.run("rtgen", ["-m", m, "-g", m, "-o", "o"], cwd: root), tool: "rtgen",
                           mentions: "not a reptok generator", "codec model as generator")
        writeBytes(root + "/junk.rtk", [1, 2, 3])
        assertCleanFailure(Tools.run("rtgen", ["-m", m, "--lerp", "junk.rtk", "junk.rtk", "-o", "o"], cwd: root), tool: "rtgen",
                           "corrupt --lerp input")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/o"))
    }

    /// The installed generator belongs to the installed default model: `rtgen -n N -o DIR` works
    /// with no flags, and gives the same images every time.
    func testDefaultGeneratorMatchesTheDefaultModel() throws {
        let root = scratch()
        let r = Tools.run("rtgen", ["-n", "3", "--steps", "8", "-o", "out"], cwd: root)
        assertSuccess(r, "rtgen with the defaults")
        XCTAssertEqual(listTree(root + "/out").count, 3)
        let again = Tools.run("rtgen", ["-n", "3", "--steps", "8", "-o", "out2"], cwd: root)
        assertSuccess(again, "again")
        for f in listTree(root + "/out") { XCTAssertEqual(readBytes(root + "/out/" + f), readBytes(root + "/out2/" + f), f) }
        let classes = Tools.run("rtgen", ["--list-classes"], cwd: root)
        assertSuccess(classes, "--list-classes")
        XCTAssertGreaterThan(classes.stdoutText.split(separator: "\n").count, 1)
    }
}
