// rteval: the table, --json, and bad images in a batch.

import Foundation
import XCTest

final class EvalCLITests: XCTestCase {
    let m = Fixture.model

    func testTablePrintsOneRowPerImageAndLevelPlusMeans() {
        let root = scratch()
        Fixture.makeTree(root)
        let r = Tools.run("rteval", ["-m", m, "-q", "1,5-6", "-r", "in"], cwd: root)
        assertSuccess(r, "rteval -q 1,5-6 -r in")
        XCTAssertEqual(r.stderr, "", "no progress when stderr is not a terminal")
        let lines = r.stdoutText.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.first?.hasPrefix("model ") ?? false, r.stdoutText)
        XCTAssertTrue(lines.first?.contains("steps 2") ?? false, r.stdoutText)
        for file in ["in/a.png", "in/c.ppm", "in/sub/b.jpg"] {
            let rows = lines.filter { $0.hasSuffix("  " + file) }
            XCTAssertEqual(rows.count, 3, "\(file): one row per level\n\(r.stdoutText)")
            XCTAssertEqual(rows.map { $0.split(separator: " ").first.map(String.init) }, ["1", "5", "6"], file)
        }
        let means = lines.filter { $0.hasSuffix("mean of 3 images") }
        XCTAssertEqual(means.count, 3, r.stdoutText)
        // c.ppm is 9x7: no SSIM at the original size; the tiny model's 16x16 gets 1 MS-SSIM scale.
        XCTAssertTrue(lines.contains { $0.hasSuffix("in/c.ppm") && $0.contains(" - ") }, r.stdoutText)
        XCTAssertTrue(r.stdoutText.contains("/1 "), "MS-SSIM scales printed below 5: \(r.stdoutText)")

        // Without -r a directory gives its own images only.
        let flat = Tools.run("rteval", ["-m", m, "-q", "2", "in"], cwd: root)
        assertSuccess(flat, "rteval in")
        XCTAssertEqual(flat.stdoutText.split(separator: "\n").filter { $0.hasSuffix(".png") || $0.hasSuffix(".ppm") || $0.hasSuffix(".jpg") }
                        .map { String($0.split(separator: " ").last!) }, ["in/a.png", "in/c.ppm"], flat.stdoutText)

        // --steps overrides the decode steps; bad levels are usage errors.
        let s = Tools.run("rteval", ["-m", m, "-q", "3", "--steps", "1", "in/a.png"], cwd: root)
        assertSuccess(s, "--steps 1")
        XCTAssertTrue(s.stdoutText.contains("steps 1"), s.stdoutText)
        XCTAssertEqual(Tools.run("rteval", ["-m", m, "-q", "0-3", "in/a.png"], cwd: root).status, 64)
        XCTAssertEqual(Tools.run("rteval", ["-m", m, "-q", "5-2", "in/a.png"], cwd: root).status, 64)
        XCTAssertEqual(Tools.run("rteval", ["-m", m, "--steps", "0", "in/a.png"], cwd: root).status, 64)
        XCTAssertEqual(Tools.run("rteval", ["-m", m], cwd: root).status, 64)
    }

    func testJSONHasRowsMeansModelStepsAndScales() throws {
        let root = scratch()
        Fixture.makeTree(root)
        let r = Tools.run("rteval", ["-m", m, "-q", "2-3", "--json", "in/a.png", "in/sub/b.jpg"], cwd: root)
        assertSuccess(r, "rteval --json")
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any])
        XCTAssertEqual(obj["model"] as? String, String(format: "%016llx", Fixture.fingerprint))
        XCTAssertEqual(obj["steps"] as? Int, 2)
        XCTAssertEqual(obj["levels"] as? [Int], [2, 3])
        let scales = try XCTUnwrap(obj["msssim_scales"] as? [String: Any])
        XCTAssertEqual(scales["model_resolution"] as? [Int], [1])
        XCTAssertEqual(scales["original_size"] as? [Int], [1])
        let rows = try XCTUnwrap(obj["rows"] as? [[String: Any]])
        XCTAssertEqual(rows.count, 4)
        XCTAssertEqual(rows.map { $0["file"] as? String }, ["in/a.png", "in/a.png", "in/sub/b.jpg", "in/sub/b.jpg"])
        XCTAssertEqual(rows.map { $0["level"] as? Int }, [2, 3, 2, 3])
        for row in rows {
            for k in ["bytes", "bpp", "encode_ms", "decode_ms", "width", "height"] {
                XCTAssertNotNil(row[k] as? NSNumber, "row field \(k)")
            }
            for k in ["model_resolution", "original_size"] {
                let q = try XCTUnwrap(row[k] as? [String: Any], k)
                XCTAssertNotNil(q["psnr"] as? Double, "\(k).psnr")
                let ssim = try XCTUnwrap(q["ssim"] as? Double, "\(k).ssim")
                XCTAssertTrue(ssim > -1 && ssim <= 1)
                XCTAssertNotNil(q["msssim"] as? Double, "\(k).msssim")
                XCTAssertEqual(q["msssim_scales"] as? Int, 1)
            }
        }
        XCTAssertEqual(rows[0]["width"] as? Int, 20)
        let bytes = try XCTUnwrap(rows[0]["bytes"] as? Int)
        XCTAssertEqual(try XCTUnwrap(rows[0]["bpp"] as? Double), Double(bytes * 8) / Double(20 * 12), accuracy: 1e-5)
        let means = try XCTUnwrap(obj["means"] as? [[String: Any]])
        XCTAssertEqual(means.map { $0["level"] as? Int }, [2, 3])
        XCTAssertEqual(means.map { $0["images"] as? Int }, [2, 2])
        XCTAssertNotNil((means[0]["original_size"] as? [String: Any])?["psnr"] as? Double)
    }

    func testCorruptImageFailsWithExit1AndTheOthersAreEvaluated() throws {
        let root = scratch()
        Fixture.makeTree(root, extras: ["sub/bad.png": Array(TestImages.png().prefix(50)),
                                        "notes.txt": Array("not an image\n".utf8)])
        let r = Tools.run("rteval", ["-m", m, "-q", "4", "-r", "in"], cwd: root)
        XCTAssertFalse(r.signaled)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderrLines.count, 1, r.stderr)
        XCTAssertTrue(r.stderrLines.first?.hasPrefix("rteval: in/sub/bad.png: ") ?? false, r.stderr)
        let lines = r.stdoutText.split(separator: "\n").map(String.init)
        for file in ["in/a.png", "in/c.ppm", "in/sub/b.jpg"] {
            XCTAssertEqual(lines.filter { $0.hasSuffix("  " + file) }.count, 1, "\(file)\n\(r.stdoutText)")
        }
        XCTAssertFalse(r.stdoutText.contains("notes.txt"))
        XCTAssertEqual(lines.filter { $0.hasSuffix("mean of 3 images") }.count, 1, r.stdoutText)

        let j = Tools.run("rteval", ["-m", m, "-q", "4", "--json", "in/sub/bad.png", "in/a.png", "in/missing.png"], cwd: root)
        XCTAssertEqual(j.status, 1, j.stderr)
        XCTAssertEqual(j.stderrLines.count, 2, j.stderr)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(j.stdout)) as? [String: Any])
        XCTAssertEqual((obj["rows"] as? [[String: Any]])?.count, 1)
        XCTAssertEqual((obj["errors"] as? [[String: Any]])?.compactMap { $0["file"] as? String }.sorted(),
                       ["in/missing.png", "in/sub/bad.png"])
    }

    func testRealismReportsFrechetPerLevelWithIntervalAndIsDeterministic() throws {
        let root = scratch()
        Fixture.makeTree(root)
        // Any file with encoder.* tensors and an encoder config serves as the feature encoder; the
        // test model's own encoder is small enough for a test.
        let args = ["-m", m, "-q", "2,6", "--json", "--realism", "--feature-encoder", m, "--views", "5",
                    "--bootstrap", "20", "in/a.png", "in/sub/b.jpg", "in/c.ppm"]
        let r = Tools.run("rteval", args, cwd: root)
        assertSuccess(r, "rteval --realism --json")
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any])
        let real = try XCTUnwrap(obj["realism"] as? [String: Any], r.stdoutText)
        XCTAssertEqual(real["views_per_image"] as? Int, 5)
        XCTAssertEqual(real["resamples"] as? Int, 20)
        XCTAssertEqual(real["feature_encoder_path"] as? String, m)
        let levels = try XCTUnwrap(real["levels"] as? [[String: Any]])
        XCTAssertEqual(levels.map { $0["level"] as? Int }, [2, 6])
        for l in levels + [try XCTUnwrap(real["floor"] as? [String: Any])] {
            let v = try XCTUnwrap(l["frechet"] as? Double), lo = try XCTUnwrap(l["low"] as? Double),
                hi = try XCTUnwrap(l["high"] as? Double)
            XCTAssertGreaterThanOrEqual(v, 0)
            XCTAssertLessThanOrEqual(lo, hi)
            XCTAssertEqual(l["images"] as? Int, 3)
            XCTAssertEqual(l["samples"] as? Int, 15)
        }
        // Same inputs, same numbers (times aside).
        let again = Tools.run("rteval", args, cwd: root)
        let obj2 = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(again.stdout)) as? [String: Any])
        XCTAssertEqual(obj2["realism"] as? NSDictionary, real as NSDictionary)

        // The table form prints one line per level, the floor, and the under-sampling note
        // (3 images x 5 views < 4 x the feature dimension).
        let t = Tools.run("rteval", ["-m", m, "-q", "4", "--realism", "--feature-encoder", m, "--views", "5",
                                     "--bootstrap", "0", "in/a.png", "in/c.ppm"], cwd: root)
        assertSuccess(t, "rteval --realism")
        XCTAssertTrue(t.stdoutText.contains("SSL-feature Frechet distance"), t.stdoutText)
        XCTAssertTrue(t.stdoutText.contains("\nfloor  "), t.stdoutText)
        XCTAssertTrue(t.stdoutText.contains("biased upward"), t.stdoutText)

        // Usage errors, and a missing feature encoder: one line, exit 1, no table.
        XCTAssertEqual(Tools.run("rteval", ["-m", m, "--views", "3", "in/a.png"], cwd: root).status, 64)
        XCTAssertEqual(Tools.run("rteval", ["-m", m, "--realism", "--views", "0", "in/a.png"], cwd: root).status, 64)
        XCTAssertEqual(Tools.run("rteval", ["-m", m, "--realism", "--bootstrap", "-1", "in/a.png"], cwd: root).status, 64)
        let bad = Tools.run("rteval", ["-m", m, "--realism", "--feature-encoder", "nope.safetensors", "in/a.png"], cwd: root)
        assertCleanFailure(bad, tool: "rteval", mentions: "nope.safetensors", "missing feature encoder")
        XCTAssertEqual(bad.stdout, [])
    }

    func testRealismSetsComparesTwoFolders() throws {
        let root = scratch()
        for k in 0..<4 {
            writeBytes(root + "/a/\(k).png", TestImages.png(20, 12, seed: k))
            writeBytes(root + "/b/\(k).png", TestImages.png(14, 18, seed: 10 + k))
        }
        let args = ["-m", m, "--realism", "--sets", "--feature-encoder", m, "--views", "6", "--bootstrap", "25", "--json", "a", "b"]
        let r = Tools.run("rteval", args, cwd: root)
        assertSuccess(r, "rteval --realism --sets")
        let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any], r.stdoutText)
        XCTAssertEqual(o["images"] as? [Int], [4, 4])
        XCTAssertEqual(o["samples"] as? [Int], [24, 24])
        XCTAssertEqual(o["resamples"] as? Int, 25)
        let v = try XCTUnwrap(o["frechet"] as? Double), lo = try XCTUnwrap(o["low"] as? Double), hi = try XCTUnwrap(o["high"] as? Double)
        XCTAssertGreaterThan(v, 0)
        XCTAssertLessThanOrEqual(lo, hi)
        let again = Tools.run("rteval", args, cwd: root)
        XCTAssertEqual(again.stdout, r.stdout, "no times in this output: byte-identical")
        let t = Tools.run("rteval", ["-m", m, "--realism", "--sets", "--feature-encoder", m, "--views", "6", "a", "b"], cwd: root)
        assertSuccess(t, "table")
        XCTAssertTrue(t.stdoutText.contains("Frechet distance between a (4 images) and b (4 images)"), t.stdoutText)
        XCTAssertEqual(Tools.run("rteval", ["-m", m, "--realism", "--sets", "a"], cwd: root).status, 64)
        XCTAssertEqual(Tools.run("rteval", ["-m", m, "--sets", "a", "b"], cwd: root).status, 64)
        writeBytes(root + "/c/0.png", TestImages.png(20, 12))
        assertCleanFailure(Tools.run("rteval", ["-m", m, "--realism", "--sets", "--feature-encoder", m, "a", "c"], cwd: root),
                           tool: "rteval", mentions: "at least 2 images", "one-image set")
    }

    /// Without --feature-encoder the bundled SSL encoder is the feature space: the same file for
    /// every model compared (its fingerprint is in the JSON).
    func testRealismDefaultsToTheBundledSSLEncoder() throws {
        let root = scratch()
        Fixture.makeTree(root)
        let r = Tools.run("rteval", ["-m", m, "-q", "5", "--realism", "--views", "2", "--bootstrap", "0", "--json",
                                     "in/a.png", "in/sub/b.jpg"], cwd: root)
        assertSuccess(r, "rteval --realism with the bundled encoder")
        let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any])
        let real = try XCTUnwrap(o["realism"] as? [String: Any])
        XCTAssertTrue((real["feature_encoder_path"] as? String)?.hasSuffix("Models/ssl-encoder.safetensors") ?? false, "\(real)")
        XCTAssertEqual(real["dims"] as? Int, 192)
        XCTAssertEqual(real["resolution"] as? Int, 128)
    }
}
