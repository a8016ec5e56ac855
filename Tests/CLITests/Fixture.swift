// Shared fixtures of the CLI tests: the tiny model, a slower model (for Ctrl-C and thread
// checks), image trees, and checks shared by the tests.

import Foundation
import XCTest
import RepTokFormat
import RepTokImage

enum Fixture {
    /// A tiny random model: image 16, patch 4, width 16. Decoding takes milliseconds.
    static let model: String = {
        let dir = Tools.scratchRoot + "/models"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return try! TestModel.write(to: dir + "/tiny.safetensors")
    }()

    /// A larger random model whose decoder takes about 0.1 s per step in a debug build.
    static let slowModel: String = {
        let dir = Tools.scratchRoot + "/models-slow"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var s = TestModel.Shape()
        s.imageSize = 64; s.patch = 4; s.hidden = 32; s.heads = 4; s.decoderWidth = 128; s.decoderDepth = 4
        return try! TestModel.write(to: dir + "/slow.safetensors", shape: s, seed: 7)
    }()

    /// The tiny model's fingerprint, read from a record it writes.
    static let fingerprint: UInt64 = {
        let r = Tools.run("rtenc", ["-m", model, "-"], stdin: TestImages.png())
        return try! RTKRecord.parse(r.stdout)[0].fingerprint
    }()

    /// Writes the standard tree under `root/in`: a.png, c.ppm, sub/b.jpg, plus optional extras.
    static func makeTree(_ root: String, extras: [String: [UInt8]] = [:]) {
        writeBytes(root + "/in/a.png", TestImages.png(20, 12))
        writeBytes(root + "/in/c.ppm", TestImages.ppm(9, 7))
        writeBytes(root + "/in/sub/b.jpg", TestImages.jpeg(24, 16))
        for (k, v) in extras { writeBytes(root + "/in/" + k, v) }
    }

    /// Decodes an image file and returns its format and size.
    static func image(_ path: String) -> (ImageFormat, Int, Int)? {
        guard let bytes = readBytes(path), let d = try? ImageIO.decode(bytes) else { return nil }
        return (d.format, d.image.width, d.image.height)
    }

    static func image(bytes: [UInt8]) -> (ImageFormat, Int, Int)? {
        guard let d = try? ImageIO.decode(bytes) else { return nil }
        return (d.format, d.image.width, d.image.height)
    }
}

extension XCTestCase {
    /// A failed run: status 1, no signal, no hang, exactly one line on stderr starting with the
    /// tool's name, with no control characters.
    func assertCleanFailure(_ r: RunResult, tool: String, mentions: String? = nil, _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(r.timedOut, "\(what): hung", file: file, line: line)
        XCTAssertFalse(r.signaled, "\(what): died of signal \(r.status); stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.status, 1, "\(what): exit status; stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderrLines.count, 1, "\(what): expected one line on stderr, got: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix(tool + ": "), "\(what): stderr: \(r.stderr)", file: file, line: line)
        XCTAssertFalse(r.stderr.dropLast().contains { $0.isNewline || ($0.asciiValue.map { $0 < 0x20 } ?? false) },
                       "\(what): control characters in \(r.stderr.debugDescription)", file: file, line: line)
        if let m = mentions {
            XCTAssertTrue(r.stderr.contains(m), "\(what): stderr should mention \(m): \(r.stderr)", file: file, line: line)
        }
    }

    func assertSuccess(_ r: RunResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(r.timedOut, "\(what): hung", file: file, line: line)
        XCTAssertFalse(r.signaled, "\(what): died of signal \(r.status)", file: file, line: line)
        XCTAssertEqual(r.status, 0, "\(what): stderr: \(r.stderr)", file: file, line: line)
    }

    /// No temporary files (".NAME.XXXXXX") anywhere under `dir`.
    func assertNoTemporaries(_ dir: String, file: StaticString = #filePath, line: UInt = #line) {
        let leftovers = listTree(dir).filter { ($0 as NSString).lastPathComponent.hasPrefix(".") }
        XCTAssertEqual(leftovers, [], "temporary files left in \(dir)", file: file, line: line)
    }
}
