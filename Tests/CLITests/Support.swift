// Helpers for the end-to-end tests: locating and running the built rtenc/rtdec/rtinfo binaries,
// a random-but-valid tiny model file (for tests only: the real model is trained elsewhere),
// image fixtures, and a raw .rtk record builder for crafted corruptions.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
import RepTokCodec
import RepTokFormat
import RepTokImage
import RepTokModels
import RepTokNN
import RepTokSafeTensors
import RepTokTensor

// MARK: - Running the tools

/// The outcome of one run of a tool.
struct RunResult {
    var status: Int32
    /// True when the process died of a signal (then `status` is the signal number).
    var signaled: Bool
    var stdout: [UInt8]
    var stderr: String
    var timedOut: Bool

    var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

enum Tools {
    /// The build products directory: where the test bundle is, which also holds the executables.
    static let productsDir: String = {
        var candidates: [String] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append((exe as NSString).deletingLastPathComponent)
        }
        candidates.append(Bundle.main.bundlePath)
        candidates.append((Bundle.main.bundlePath as NSString).deletingLastPathComponent)
        for b in Bundle.allBundles { candidates.append((b.bundlePath as NSString).deletingLastPathComponent) }
        for dir in candidates where FileManager.default.isExecutableFile(atPath: dir + "/rtenc") {
            return dir
        }
        return candidates.first ?? "."
    }()

    static func path(_ tool: String) -> String { productsDir + "/" + tool }

    /// An environment that finds no installed models: no $REPTOK_MODEL_PATH, an empty data home.
    static let baseEnvironment: [String: String] = {
        var env = ProcessInfo.processInfo.environment
        env["REPTOK_MODEL_PATH"] = nil
        env["REPTOK_THREADS"] = nil
        env["XDG_DATA_HOME"] = scratchRoot + "/xdg-empty"
        return env
    }()

    /// Root of all scratch folders of this test run.
    static let scratchRoot: String = {
        let p = NSTemporaryDirectory() + "reptok-cli-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: p + "/xdg-empty", withIntermediateDirectories: true)
        // REPTOK_CLI_TESTS_KEEP=1 keeps the folder (models, trees) for a look afterwards.
        if ProcessInfo.processInfo.environment["REPTOK_CLI_TESTS_KEEP"] == nil {
            atexit { try? FileManager.default.removeItem(atPath: Tools.scratchRoot) }
        }
        return p
    }()

    /// Runs `tool args` with `stdin` (empty when nil), in `cwd`, with extra environment; kills it
    /// after `timeout` seconds (reported as timedOut).
    static func run(_ tool: String, _ args: [String], stdin: [UInt8]? = nil, cwd: String? = nil,
                    env: [String: String] = [:], timeout: Double = 120) -> RunResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool.hasPrefix("/") ? tool : path(tool))
        p.arguments = args
        var environment = baseEnvironment
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let inPipe = Pipe(), outPipe = Pipe(), errPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        p.standardError = errPipe
        do { try p.run() } catch {
            return RunResult(status: -1, signaled: false, stdout: [], stderr: "cannot run \(tool): \(error)", timedOut: false)
        }
        let group = DispatchGroup()
        let box = OutputBox()
        DispatchQueue.global().async(group: group) { box.out = [UInt8](outPipe.fileHandleForReading.readDataToEndOfFile()) }
        DispatchQueue.global().async(group: group) { box.err = [UInt8](errPipe.fileHandleForReading.readDataToEndOfFile()) }
        DispatchQueue.global().async {
            let h = inPipe.fileHandleForWriting
            if let stdin, !stdin.isEmpty {
                stdin.withUnsafeBytes { raw in
                    var done = 0
                    while done < raw.count {
                        let n = write(h.fileDescriptor, raw.baseAddress! + done, raw.count - done)
                        if n <= 0 { break }
                        done += n
                    }
                }
            }
            try? h.close()
        }
        var timedOut = false
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning {
            if Date() > deadline { timedOut = true; p.terminate(); kill(p.processIdentifier, SIGKILL); break }
            usleep(2_000)
        }
        p.waitUntilExit()
        group.wait()
        return RunResult(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
                         stdout: box.out, stderr: String(decoding: box.err, as: UTF8.self), timedOut: timedOut)
    }

    /// Runs a shell command line (for pipelines) with the products directory first in $PATH.
    static func shell(_ command: String, cwd: String? = nil, env: [String: String] = [:],
                      stdin: [UInt8]? = nil, timeout: Double = 120) -> RunResult {
        var e = env
        e["PATH"] = productsDir + ":" + (baseEnvironment["PATH"] ?? "/usr/bin:/bin")
        return run("/bin/sh", ["-c", command], stdin: stdin, cwd: cwd, env: e, timeout: timeout)
    }

    /// Quotes for /bin/sh.
    static func q(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}

final class OutputBox: @unchecked Sendable {
    var out: [UInt8] = []
    var err: [UInt8] = []
}

// MARK: - Scratch folders

/// A fresh folder under the run's scratch root.
func scratch(_ name: String = #function) -> String {
    let clean = name.filter { $0.isLetter || $0.isNumber }
    let p = Tools.scratchRoot + "/\(clean)-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
}

/// Every file and folder below `dir`, relative, sorted.
func listTree(_ dir: String) -> [String] {
    guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
    return (e.allObjects as? [String] ?? []).sorted()
}

func readBytes(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) }
}

func writeBytes(_ path: String, _ bytes: [UInt8]) {
    let dir = (path as NSString).deletingLastPathComponent
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

// MARK: - A tiny random model (tests only)

/// Random test weights: the initializers' normal draws (InitRNG) from SplitMix64(seed:), as Float.
struct TestRNG {
    var draws: InitRNG
    init(seed: UInt64) { draws = InitRNG(SplitMix64(seed: seed)) }
    mutating func normal() -> Float { Float(draws.normal()) }
}

/// Writes a random-but-valid codec model in the layout CodecModel loads: encoder.*, adapter.*,
/// decoder.*, quantizer.mean/rotation/sigma/dictionary and reptok.config with encoder, decoder
/// and codec parts. Random weights: for tests only.
enum TestModel {
    struct Shape {
        var imageSize = 16, patch = 4, hidden = 16, encoderLayers = 1, heads = 2
        var decoderWidth = 16, decoderDepth = 1, freqDim = 16
    }

    @discardableResult
    static func write(to path: String, shape s: Shape = Shape(), seed: UInt64 = 1, defaultSteps: Int = 2,
                      codecExtra: [String: JSONValue] = [:]) throws -> String {
        let ecfg = EncoderConfig(hiddenSize: s.hidden, numHiddenLayers: s.encoderLayers, numAttentionHeads: s.heads,
                                 patchSize: s.patch, imageSize: s.imageSize)
        let dcfg = DecoderConfig(imageSize: s.imageSize, patchSize: s.patch, width: s.decoderWidth, depth: s.decoderDepth,
                                 numHeads: s.heads, tokenDim: s.hidden, freqDim: s.freqDim)
        try ecfg.validate()
        try dcfg.validate()
        var rng = TestRNG(seed: seed)
        var w = SafeTensorsWriter(metadata: [:])
        func addParams(_ prefix: String, _ params: [(String, [Int])]) throws {
            for (key, shape) in params {
                let n = shape.reduce(1, *)
                let isGain = key.hasSuffix("norm1.weight") || key.hasSuffix("norm2.weight") || key.hasSuffix("norm.weight")
                let values: [Float] = (0..<n).map { _ in isGain ? 1 + 0.05 * rng.normal() : 0.2 * rng.normal() }
                try w.add(prefix + key, shape: shape, values: values)
            }
        }
        try addParams("encoder.", Dinov2Encoder(ecfg).parameters.map { ($0.key, $0.shape) })
        try addParams("adapter.", TokenAdapter(dim: s.hidden).parameters.map { ($0.key, $0.shape) })
        try addParams("decoder.", FlowDecoder(dcfg).parameters.map { ($0.key, $0.shape) })
        let D = s.hidden
        try w.add("quantizer.mean", shape: [D], values: [Float](repeating: 0, count: D))
        var rot = [Float](repeating: 0, count: D * D)
        for i in 0..<D { rot[i * D + i] = 1 }
        try w.add("quantizer.rotation", shape: [D, D], values: rot)
        try w.add("quantizer.sigma", shape: [D], values: [Float](repeating: 1, count: D))
        try w.add("quantizer.dictionary", shape: [1], dtype: .U8, rawBytes: [0])
        var codec: [String: JSONValue] = ["default_level": 5, "default_steps": .integer(defaultSteps), "default_sampler": "euler",
                                          "description": "random test model", "bootstrap": true, "base_step": 0.25]
        codec.merge(codecExtra) { $1 }
        w.metadata["reptok.config"] = try ModelFile.configJSON(encoder: ecfg, decoder: dcfg,
                                                               extra: ["codec": .object(codec.map { ($0.key, $0.value) })])
        try w.write(to: path)
        return path
    }
}

// MARK: - Images

enum TestImages {
    /// A smooth colour gradient with a little pattern, w x h.
    static func image(_ w: Int, _ h: Int, seed: Int = 0) -> RGBImage {
        var px = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                let i = (y * w + x) * 3
                px[i] = UInt8((x * 255) / max(w - 1, 1))
                px[i + 1] = UInt8((y * 255) / max(h - 1, 1))
                px[i + 2] = UInt8(((x + y + seed * 37) * 13) & 0xFF)
            }
        }
        return RGBImage(width: w, height: h, pixels: px)
    }

    static func png(_ w: Int = 20, _ h: Int = 12, seed: Int = 0) -> [UInt8] {
        try! ImageIO.encode(image(w, h, seed: seed), format: .png)
    }

    static func jpeg(_ w: Int = 24, _ h: Int = 16, seed: Int = 0) -> [UInt8] {
        try! ImageIO.encode(image(w, h, seed: seed), format: .jpeg)
    }

    static func ppm(_ w: Int = 9, _ h: Int = 7, seed: Int = 0) -> [UInt8] {
        try! ImageIO.encode(image(w, h, seed: seed), format: .ppm)
    }
}

// MARK: - Raw records

/// A record written field by field (any value, legal or not), then a CRC-32C over all of it.
struct RawRecord {
    var magic: [UInt8] = RTKFormat.magic
    var version: UInt8 = 1
    var flags: UInt8 = 0
    var mode: UInt8 = 0x05
    var fingerprint: UInt64 = 0
    var width: [UInt8] = RTKVarint.encode(20)
    var height: [UInt8] = RTKVarint.encode(12)
    var seed: [UInt8] = RTKVarint.encode(0)
    var steps: [UInt8] = RTKVarint.encode(1)
    var name: [UInt8]? = nil
    var payloadLength: [UInt8]? = nil
    var payload: [UInt8] = []
    var crcDelta: UInt32 = 0

    /// The fields of a valid record.
    init(_ r: RTKRecord) {
        mode = UInt8(r.level) | r.sampler.rawValue << 4
        fingerprint = r.fingerprint
        width = RTKVarint.encode(UInt64(r.width))
        height = RTKVarint.encode(UInt64(r.height))
        seed = RTKVarint.encode(r.seed)
        steps = RTKVarint.encode(UInt64(r.steps))
        if let n = r.name { name = Array(n.utf8); flags |= 1 }
        payload = r.payload
    }

    var bytes: [UInt8] {
        var out = magic + [version, flags, mode]
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: fingerprint >> UInt64(8 * i))) }
        out += width + height + seed + steps
        if let name { out += RTKVarint.encode(UInt64(name.count)) + name }
        out += payloadLength ?? RTKVarint.encode(UInt64(payload.count))
        out += payload
        let crc = RTKCRC32C.checksum(out) &+ crcDelta
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: crc >> UInt32(8 * i))) }
        return out
    }
}
