// rttrain's error paths end to end: usage errors (status 64), and failures reported as one line
// `rttrain: message` (`rttrain ssl: message`) with status 1, before any training starts.

import Foundation
import XCTest

final class TrainCLITests: XCTestCase {
    /// A usage error: status 64, ArgumentParser's message, no run folder made.
    func assertUsage(_ args: [String], mentions: String, root: String, file: StaticString = #filePath, line: UInt = #line) {
        let r = Tools.run("rttrain", args, cwd: root)
        let what = args.joined(separator: " ")
        XCTAssertFalse(r.signaled || r.timedOut, what, file: file, line: line)
        XCTAssertEqual(r.status, 64, "\(what): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "\(what): \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stdout, [], what, file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/run"), what, file: file, line: line)
    }

    func testBadFlagsAreUsageErrors() {
        let root = scratch()
        assertUsage(["tokenizer", "--data", "x.rtds", "--out", "run", "--bogus"], mentions: "Unknown option '--bogus'", root: root)
        assertUsage(["tokenizer", "--data", "x.rtds"], mentions: "Missing expected argument '--out <out>'", root: root)
        assertUsage(["tokenizer", "--data", "x.rtds", "--out", "run", "--steps", "many"], mentions: "--steps", root: root)
        assertUsage(["eval", "--model", "m.safetensors", "--data", "x.rtds", "--steps", "0"], mentions: "--steps: each 1-1000", root: root)
        assertUsage(["eval", "--model", "m.safetensors", "--data", "x.rtds", "--json", "--markdown"],
                    mentions: "--json and --markdown exclude each other", root: root)
        assertUsage(["ssl", "--out", "run", "--blur", "1,2"], mentions: "--blur needs 3 comma-separated numbers", root: root)
        assertUsage(["generator", "--out", "run", "--steps", "-"], mentions: "--steps", root: root)
        assertUsage(["nosuchcommand"], mentions: "Unexpected argument 'nosuchcommand'", root: root)
    }

    func testMissingOrPresentCheckpointFailsCleanly() throws {
        let root = scratch()
        try FileManager.default.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/used", withIntermediateDirectories: true)
        let kept = [UInt8]("not really a checkpoint".utf8)
        try Data(kept).write(to: URL(fileURLWithPath: root + "/used/checkpoint.safetensors"))
        let data = ["--data", root + "/none.rtds"]
        for (command, tool) in [("tokenizer", "rttrain"), ("ssl", "rttrain ssl"), ("generator", "rttrain")] {
            let resume = Tools.run("rttrain", [command] + data + ["--out", root + "/empty", "--resume"], cwd: root)
            assertCleanFailure(resume, tool: tool, mentions: "--resume: no \(root)/empty/checkpoint.safetensors", "\(command) --resume")
            let again = Tools.run("rttrain", [command] + data + ["--out", root + "/used"], cwd: root)
            assertCleanFailure(again, tool: tool, mentions: "\(root)/used/checkpoint.safetensors exists: use --resume or another --out",
                               "\(command) over a run")
            XCTAssertEqual(readBytes(root + "/used/checkpoint.safetensors"), kept, command)
        }
        XCTAssertEqual(listTree(root + "/empty"), [])
    }

    func testBadSettingsAndFilesFailCleanly() throws {
        let root = scratch()
        try Data("not a safetensors file".utf8).write(to: URL(fileURLWithPath: root + "/text.safetensors"))
        func fails(_ args: [String], tool: String = "rttrain", mentions: String, file: StaticString = #filePath, line: UInt = #line) {
            let r = Tools.run("rttrain", args, cwd: root)
            assertCleanFailure(r, tool: tool, mentions: mentions, args.joined(separator: " "), file: file, line: line)
        }
        fails(["tokenizer", "--data", "none.rtds", "--out", "run", "--batch", "0"], mentions: "bad training config: --batch 0")
        fails(["ssl", "--data", "none.rtds", "--val", "none", "--out", "run", "--batch", "0"], tool: "rttrain ssl",
              mentions: "bad config: --batch 0")
        fails(["generator", "--data", "none.rtds", "--out", "run", "--views", "0"], mentions: "bad training config: --views must be 1-1024")
        fails(["generator", "--data", "none.rtds", "--out", "run", "-m", "none.safetensors"], mentions: "cannot read model none.safetensors")
        fails(["export", "--checkpoint", "none.safetensors", "--out", "model.safetensors"], mentions: "checkpoint: cannot read none.safetensors")
        fails(["export", "--checkpoint", "text.safetensors", "--out", "model.safetensors"], mentions: "checkpoint: cannot read text.safetensors")
        fails(["eval", "--model", "none.safetensors", "--data", "none.rtds"], mentions: "cannot read model none.safetensors")
        XCTAssertEqual(listTree(root), ["text.safetensors"])
    }
}
