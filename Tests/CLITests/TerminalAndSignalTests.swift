// Terminals (through script(1), which gives the tool a pseudo-terminal), Ctrl-C, usage errors,
// --version and rtinfo's table.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
import RepTokFormat

final class TerminalAndSignalTests: XCTestCase {
    let m = Fixture.model

    /// Runs `command` under script(1): stdin, stdout and stderr are a terminal. Returns the
    /// status and what the terminal showed.
    func onTerminal(_ command: String, cwd: String) throws -> RunResult {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else {
            throw XCTSkip("script(1) is not installed (util-linux)")
        }
        var env: [String: String] = [:]
        env["PATH"] = Tools.productsDir + ":" + (Tools.baseEnvironment["PATH"] ?? "/usr/bin:/bin")
        return Tools.run("/usr/bin/script", ["-qec", command, "/dev/null"], cwd: cwd, env: env, timeout: 60)
    }

    func testBinaryOutputToATerminalIsRefused() throws {
        let dir = scratch()
        writeBytes(dir + "/a.png", TestImages.png())
        let M = Tools.q(m)
        let e = try onTerminal("rtenc -m \(M) a.png", cwd: dir)
        XCTAssertEqual(e.status, 1, e.stdoutText)
        XCTAssertTrue(e.stdoutText.contains("rtenc: stdout is a terminal, aborting (use -f to force)"), e.stdoutText)
        XCTAssertFalse(e.stdoutText.contains("\u{FFFD}"), "no binary reached the terminal")
        assertSuccess(Tools.run("rtenc", ["-m", m, "a.png", "-o", "a.rtk"], cwd: dir), "encode")
        let d = try onTerminal("rtdec -m \(M) a.rtk", cwd: dir)
        XCTAssertEqual(d.status, 1, d.stdoutText)
        XCTAssertTrue(d.stdoutText.contains("rtdec: stdout is a terminal, aborting"), d.stdoutText)
        // Reading from a terminal is refused too (no input means stdin).
        let s = try onTerminal("rtenc -m \(M) -o x.rtk", cwd: dir)
        XCTAssertEqual(s.status, 1, s.stdoutText)
        XCTAssertTrue(s.stdoutText.contains("stdin is a terminal"), s.stdoutText)
        // -f overrides; a file output or rtinfo's text are fine on a terminal.
        let f = try onTerminal("rtenc -m \(M) -f a.png > forced.rtk", cwd: dir)
        XCTAssertEqual(f.status, 0, f.stdoutText)
        let o = try onTerminal("rtenc -m \(M) a.png -o b.rtk", cwd: dir)
        XCTAssertEqual(o.status, 0, o.stdoutText)
        let i = try onTerminal("rtinfo a.rtk", cwd: dir)
        XCTAssertEqual(i.status, 0, i.stdoutText)
        XCTAssertTrue(i.stdoutText.contains("20x12"), i.stdoutText)
        XCTAssertEqual(Set(listTree(dir)), ["a.png", "a.rtk", "b.rtk", "forced.rtk"])
    }

    func testProgressOnlyWhenStderrIsATerminal() throws {
        let root = scratch()
        Fixture.makeTree(root)
        let t = try onTerminal("rtenc -m \(Tools.q(m)) -r in -d out", cwd: root)
        XCTAssertEqual(t.status, 0, t.stdoutText)
        XCTAssertTrue(t.stdoutText.contains("[3/3]"), "progress on a terminal: \(t.stdoutText.debugDescription)")
        let p = Tools.run("rtenc", ["-m", m, "-r", "in", "-d", "out2"], cwd: root)
        assertSuccess(p, "piped")
        XCTAssertFalse(p.stderr.contains("[1/3]"), p.stderr)
        let q = try onTerminal("rtenc -m \(Tools.q(m)) -r in -d out3 --quiet", cwd: root)
        XCTAssertEqual(q.stdoutText, "", "--quiet prints nothing")
    }

    func testCtrlCRemovesThePartialOutput() throws {
        let slow = Fixture.slowModel
        let dir = scratch()
        writeBytes(dir + "/a.png", TestImages.png(32, 24))
        assertSuccess(Tools.run("rtenc", ["-m", slow, "a.png", "-o", "a.rtk"], cwd: dir), "encode")
        let out = dir + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for args in [["-o", "out/x.png"], ["-d", "out"]] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Tools.path("rtdec"))
            p.arguments = ["-m", slow, "--steps", "1000", "a.rtk"] + args
            p.currentDirectoryURL = URL(fileURLWithPath: dir)
            p.environment = Tools.baseEnvironment
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            // Wait until the output is open (its temporary file exists), then interrupt.
            let deadline = Date().addingTimeInterval(60)
            while listTree(out).isEmpty && p.isRunning && Date() < deadline { usleep(20_000) }
            XCTAssertTrue(p.isRunning, "rtdec \(args) ended before it could be interrupted")
            XCTAssertEqual(listTree(out).count, 1)
            XCTAssertTrue(listTree(out).first?.hasPrefix(".") ?? false, "a temporary file: \(listTree(out))")
            usleep(200_000)
            kill(p.processIdentifier, SIGINT)
            let stop = Date().addingTimeInterval(30)
            while p.isRunning && Date() < stop { usleep(10_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL); XCTFail("rtdec \(args) ignored SIGINT") }
            p.waitUntilExit()
            XCTAssertEqual(p.terminationReason, .uncaughtSignal, "dies of the signal")
            XCTAssertEqual(p.terminationStatus, SIGINT)
            XCTAssertEqual(listTree(out), [], "rtdec \(args): partial output left")
        }
    }

    func testUsageErrorsExit64() {
        let dir = scratch()
        let cases: [(String, [String])] = [
            ("rtenc", ["--bogus"]), ("rtenc", ["-q", "0", "a.png"]), ("rtenc", ["-q", "10", "a.png"]),
            ("rtenc", ["-q", "x", "a.png"]), ("rtenc", ["-q", "3", "--target-bytes", "90", "a.png"]),
            ("rtenc", ["-c", "-o", "x", "a.png"]), ("rtenc", ["-c", "-d", "x", "a.png"]), ("rtenc", ["-j", "-1", "a"]),
            ("rtenc", ["--steps", "0", "a"]), ("rtenc", ["--sampler", "rk4", "a"]), ("rtenc", ["-", "-"]),
            ("rtenc", ["--quiet", "-v", "a"]),
            ("rtdec", ["--native", "--size", "4x4", "a.rtk"]), ("rtdec", ["--size", "0x4", "a.rtk"]),
            ("rtdec", ["--size", "4", "a.rtk"]), ("rtdec", ["--format", "gif", "a.rtk"]),
            ("rtdec", ["-o", "x.png", "a.rtk", "b.rtk"]), ("rtdec", ["--steps", "1001", "a.rtk"]),
            ("rtdec", ["--seed", "-1", "a.rtk"]), ("rtdec", ["-o", "x", "-d", "y", "a.rtk"]),
            ("rtinfo", ["--bogus"]), ("rtinfo", ["-", "-"]),
        ]
        for (tool, args) in cases {
            let r = Tools.run(tool, args, cwd: dir)
            XCTAssertEqual(r.status, 64, "\(tool) \(args): \(r.stderr)")
            XCTAssertFalse(r.signaled)
            XCTAssertTrue(r.stderr.hasPrefix("Error: "), "\(tool) \(args): \(r.stderr)")
        }
        XCTAssertEqual(listTree(dir), [])
        for tool in ["rtenc", "rtdec", "rtinfo"] {
            let h = Tools.run(tool, ["--help"])
            assertSuccess(h, "\(tool) --help")
            XCTAssertTrue(h.stdoutText.contains("USAGE: \(tool)"), h.stdoutText)
        }
    }

    func testVersion() {
        for tool in ["rtenc", "rtdec", "rtinfo"] {
            let r = Tools.run(tool, ["--version"])
            assertSuccess(r, "\(tool) --version")
            let lines = r.stdoutText.split(separator: "\n")
            XCTAssertEqual(lines.count, 2, r.stdoutText)
            XCTAssertTrue(lines.first?.hasPrefix("\(tool) 0.") ?? false, r.stdoutText)
            XCTAssertTrue(lines.last?.hasPrefix("default model: ") ?? false, r.stdoutText)
        }
    }

    func testInfoLabelsTheDefaultModel() throws {
        let root = scratch()
        Fixture.makeTree(root)
        // the label follows the model file's codec.bootstrap flag, whichever model is the default
        let bootstrap = Tools.run("rtenc", ["--version"], cwd: root).stdoutText.contains("bootstrap")
        assertSuccess(Tools.run("rtenc", ["-f", "-o", "a.rtk", "in/a.png"], cwd: root), "encode with the default model")
        let r = Tools.run("rtinfo", ["a.rtk"], cwd: root)
        assertSuccess(r, "rtinfo")
        XCTAssertTrue(r.stdoutText.contains("the default model"), r.stdoutText)
        XCTAssertEqual(r.stdoutText.contains("BOOTSTRAP"), bootstrap, r.stdoutText)
        let j = Tools.run("rtinfo", ["--json", "a.rtk"], cwd: root)
        XCTAssertEqual(j.stdoutText.contains("BOOTSTRAP"), bootstrap, j.stdoutText)
    }

    func testInfoTable() throws {
        let root = scratch()
        Fixture.makeTree(root)
        assertSuccess(Tools.run("rtenc", ["-m", m, "-r", "in", "-d", "out"], cwd: root), "encode")
        let r = Tools.run("rtinfo", ["-r", "out"], cwd: root)
        assertSuccess(r, "rtinfo -r out")
        let lines = r.stdoutText.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 6, r.stdoutText)
        XCTAssertEqual(lines[0].split(separator: " "), ["Bytes", "Size", "Level", "Model", "BPP", "Name"])
        let fp = String(format: "%016llx", Fixture.fingerprint)
        let fields = lines[1].split(separator: " ").map(String.init)
        let bytes = try XCTUnwrap(Int(fields[0]))
        XCTAssertEqual(fields[1], "20x12")
        XCTAssertEqual(fields[2], "5")
        XCTAssertEqual(fields[3], fp)
        XCTAssertEqual(fields[4], String(format: "%.4f", Double(bytes * 8) / 240))
        XCTAssertEqual(fields[5], "out/a.png.rtk")
        XCTAssertTrue(lines[4].hasSuffix("3 records"))
        // the test model is not this build's default: the note says so (the bootstrap label
        // for the default model is checked in testInfoLabelsTheDefaultModel)
        XCTAssertEqual(lines[5], "model \(fp): not this build's default model (rtdec searches -m, $REPTOK_MODEL_PATH, ~/.local/share/reptok/models)")
        let v = Tools.run("rtinfo", ["-v", "out/a.png.rtk"], cwd: root)
        assertSuccess(v, "rtinfo -v")
        XCTAssertTrue(v.stdoutText.contains("euler"), v.stdoutText)
        let s = Tools.shell("rtenc -m \(Tools.q(m)) -c in/a.png in/c.ppm | rtinfo", cwd: root)
        assertSuccess(s, "rtenc -c | rtinfo")
        XCTAssertTrue(s.stdoutText.contains("  in/a.png\n"), s.stdoutText)
        XCTAssertTrue(s.stdoutText.contains("  in/c.ppm\n"), s.stdoutText)
    }
}
