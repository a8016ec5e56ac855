// Option groups shared by rtenc and rtdec (zstd's conventions), the version text and the
// exit statuses.

import ArgumentParser
import Foundation
import RepTokCodec
import RepTokFormat
import RepTokImage

/// Exit statuses of all the tools.
public enum ExitStatus {
    /// Success.
    public static let success: Int32 = 0
    /// Some input failed (bad file, unknown model, write error, refusal to overwrite...).
    public static let failure: Int32 = 1
    /// Usage error (bad option or argument); ArgumentParser's validation status, EX_USAGE.
    public static let usage: Int32 = 64
}

/// The version of the tools.
public enum ToolVersion {
    public static let string = "0.1.0"

    /// `tool VERSION (.rtk format 1)` and the default model's fingerprint.
    public static func text(tool: String) -> String {
        var lines = ["\(tool) \(string) (.rtk format \(RTKFormat.version))"]
        if CodecModel.defaultModelPath() == nil {
            lines.append("default model: not installed")
        } else {
            do {
                let m = try CodecModel.loadDefault()
                var line = "default model: \(m.fingerprintHex)"
                if m.codec.bootstrap { line += " bootstrap" }
                if !m.codec.description.isEmpty { line += " (\(Console.oneLine(m.codec.description, limit: 100)))" }
                lines.append(line)
            } catch {
                lines.append("default model: unusable: " + Console.oneLine("\(error)", limit: 200))
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// Where outputs go, and how inputs are gathered.
public struct FileOptions: ParsableArguments {
    @Option(name: [.customShort("o"), .customLong("output")],
            help: ArgumentHelp("Write the output to FILE.", valueName: "FILE"))
    public var output: String?

    @Flag(name: [.customShort("c"), .customLong("stdout")],
          help: "Write everything to stdout, one after another.")
    public var toStdout = false

    @Option(name: [.customShort("d"), .customLong("output-dir")],
            help: ArgumentHelp("Write outputs under DIR, mirroring the input tree.", valueName: "DIR"))
    public var outputDir: String?

    @Flag(name: [.customShort("f"), .customLong("force")],
          help: "Overwrite existing outputs; write binary data to a terminal.")
    public var force = false

    @Flag(name: [.customShort("r"), .customLong("recursive")], help: "Descend into directories.")
    public var recursive = false

    @Option(name: [.customShort("j"), .customLong("jobs")],
            help: ArgumentHelp("Process N images at a time (0: one per core).", valueName: "N"))
    public var jobs = 1

    public init() {}

    /// Usage checks shared by rtenc and rtdec.
    public func check(inputs: [String]) throws {
        if output != nil && toStdout { throw ValidationError("-o and -c cannot be combined") }
        if output != nil && outputDir != nil { throw ValidationError("-o and -d cannot be combined") }
        if toStdout && outputDir != nil { throw ValidationError("-c and -d cannot be combined") }
        if jobs < 0 { throw ValidationError("-j must be 0 or more") }
        if inputs.filter({ $0 == "-" }).count > 1 { throw ValidationError("stdin (-) can be read only once") }
        if let o = output, o.isEmpty { throw ValidationError("-o needs a file name") }
        if let d = outputDir, d.isEmpty { throw ValidationError("-d needs a directory name") }
    }
}

/// -m MODEL.
public struct ModelOptions: ParsableArguments {
    @Option(name: [.customShort("m"), .customLong("model")],
            help: ArgumentHelp("The model file (default: the embedded model).", valueName: "MODEL"))
    public var model: String?

    public init() {}
}

/// --quiet, -v, --no-progress, --version.
public struct ReportOptions: ParsableArguments {
    @Flag(name: .customLong("quiet"), help: "Print errors only.")
    public var quiet = false

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Print a line for every file.")
    public var verbose = false

    @Flag(name: .customLong("no-progress"), help: "Never show progress (shown only when stderr is a terminal).")
    public var noProgress = false

    @Flag(name: .customLong("version"), help: "Print the version and the default model's fingerprint.")
    public var version = false

    public init() {}

    public var verbosity: Verbosity { quiet ? .quiet : (verbose ? .verbose : .normal) }

    public func check() throws {
        if quiet && verbose { throw ValidationError("--quiet and -v cannot be combined") }
    }
}

/// WxH for --size.
public struct ImageSize: ExpressibleByArgument, Sendable, Equatable {
    public var width: Int
    public var height: Int

    public init?(argument: String) {
        let parts = argument.lowercased().split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]),
              (1...RTKFormat.maxDimension).contains(w), (1...RTKFormat.maxDimension).contains(h) else { return nil }
        width = w
        height = h
    }

    public static var defaultCompletionKind: CompletionKind { .default }
}

/// png | jpg | ppm for --format.
public struct FormatArgument: ExpressibleByArgument, Sendable {
    public var format: ImageFormat

    public init?(argument: String) {
        guard let f = ImageFormat(pathExtension: argument) else { return nil }
        format = f
    }

    public static var allValueStrings: [String] { ["png", "jpg", "ppm"] }
}

/// euler | heun for --sampler.
public struct SamplerArgument: ExpressibleByArgument, Sendable {
    public var sampler: RTKSampler

    public init?(argument: String) {
        guard let s = RTKSampler.allCases.first(where: { $0.description == argument.lowercased() }) else { return nil }
        sampler = s
    }

    public static var allValueStrings: [String] { ["euler", "heun"] }
}

/// Exits with status 1 after the failures were reported.
public func failIf(_ failed: Bool) throws {
    if failed { throw ExitCode(ExitStatus.failure) }
}
