// rtinfo: one line per record, like `zstd -l`.

import ArgumentParser
import Foundation
import RepTokCodec
import RepTokFormat

public struct RTInfo: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rtinfo",
        abstract: "List the records of .rtk files: name, size, model, level, bytes, bits per pixel.",
        discussion: "Exit status: 0 success, 1 some input is not a valid .rtk stream, 64 usage error. See rtinfo(1).")

    @Flag(name: .customLong("json"), help: "Print a JSON array of records.")
    public var json = false

    @Flag(name: [.customShort("r"), .customLong("recursive")], help: "Descend into directories (*.rtk files).")
    public var recursive = false

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Also show sampler, steps, seed and offset.")
    public var verbose = false

    @Flag(name: .customLong("quiet"), help: "Print errors only on stderr (no total line).")
    public var quiet = false

    @Flag(name: .customLong("version"), help: "Print the version and the default model's fingerprint.")
    public var version = false

    @Argument(help: ArgumentHelp(".rtk files, directories with -r, or - for stdin.", valueName: "FILE"))
    public var inputs: [String] = []

    public init() {}

    public func validate() throws {
        if inputs.filter({ $0 == "-" }).count > 1 { throw ValidationError("stdin (-) can be read only once") }
        if quiet && verbose { throw ValidationError("--quiet and -v cannot be combined") }
    }

    struct Row {
        var file: String
        var entry: StreamRecord
        var multi: Bool
    }

    public func run() throws {
        if version { print(ToolVersion.text(tool: "rtinfo")); return }
        let console = Console(tool: "rtinfo", verbosity: quiet ? .quiet : .normal, progress: false)
        let list = Inputs.expand(inputs, recursive: recursive) { $0.hasSuffix(".rtk") }
        var failed = false
        for (arg, message) in list.errors {
            console.error(path: arg, message)
            failed = true
        }
        if list.items.contains(where: { $0.isStdin }) && isatty(STDIN_FILENO) == 1 {
            console.error("stdin is a terminal, aborting")
            throw ExitCode(ExitStatus.failure)
        }
        var rows: [Row] = []
        for item in list.items {
            let bytes: [UInt8]
            do { bytes = try IO.readInput(item.path, cap: RTDec.maxInputBytes) } catch {
                console.error(path: item.path, "\(error)")
                failed = true
                continue
            }
            let parsed = ParsedStream(bytes)
            for e in parsed.errors { console.error(path: item.path, e) }
            if !parsed.isClean { failed = true }
            let multi = parsed.recordCount > 1
            for entry in parsed.records { rows.append(Row(file: item.path, entry: entry, multi: multi)) }
        }
        if json { printJSON(rows) } else { printTable(rows, console: console) }
        try failIf(failed)
    }

    /// What this build knows of a model: the default (and whether it is the bootstrap model), or not.
    static func modelNote(_ fp: UInt64) -> String {
        guard let d = try? CodecModel.loadDefault() else { return "not the default model (no default model installed)" }
        guard d.fingerprint == fp else { return "not this build's default model (rtdec searches -m, $REPTOK_MODEL_PATH, ~/.local/share/reptok/models)" }
        let what = d.codec.description.isEmpty ? "" : ": " + d.codec.description
        return (d.codec.bootstrap ? "the default model, a BOOTSTRAP model" : "the default model") + what
    }

    static func bpp(_ e: StreamRecord) -> Double {
        Double(e.size * 8) / Double(e.record.width * e.record.height)
    }

    static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 16 - s.count)) + s
    }

    func printJSON(_ rows: [Row]) {
        var out: [[String: Any]] = []
        for r in rows {
            let rec = r.entry.record
            var o: [String: Any] = [
                "file": r.file == "-" ? "-" : r.file, "record": r.entry.index, "offset": r.entry.offset,
                "bytes": r.entry.size, "width": rec.width, "height": rec.height,
                "model": RTInfo.hex(rec.fingerprint), "level": rec.level, "sampler": rec.sampler.description,
                "steps": rec.steps, "seed": NSNumber(value: rec.seed), "payload_bytes": rec.payload.count,
                "bpp": (RTInfo.bpp(r.entry) * 1e6).rounded() / 1e6,
            ]
            o["name"] = rec.name ?? NSNull()
            o["model_note"] = RTInfo.modelNote(rec.fingerprint)
            out.append(o)
        }
        let data = (try? JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data("[]".utf8)
        IO.writeAllIgnoringErrors(STDOUT_FILENO, Array(data) + [0x0A])
    }

    func printTable(_ rows: [Row], console: Console) {
        guard !rows.isEmpty else { return }
        func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
        var lines: [String] = []
        var header = pad("Bytes", 7) + "  " + pad("Size", 11) + "  " + pad("Level", 5) + "  " + "Model           "
            + "  " + pad("BPP", 8)
        if verbose { header += "  " + "Sampler" + "  " + pad("Steps", 5) + "  " + pad("Seed", 10) + "  " + pad("Offset", 8) }
        header += "  Name"
        lines.append(header)
        var total = 0
        for r in rows {
            let rec = r.entry.record
            total += r.entry.size
            var line = pad("\(r.entry.size)", 7) + "  " + pad("\(rec.width)x\(rec.height)", 11) + "  "
                + pad("\(rec.level)", 5) + "  " + RTInfo.hex(rec.fingerprint) + "  "
                + pad(String(format: "%.4f", RTInfo.bpp(r.entry)), 8)
            if verbose {
                line += "  " + rec.sampler.description.padding(toLength: 7, withPad: " ", startingAt: 0) + "  "
                    + pad("\(rec.steps)", 5) + "  " + pad("\(rec.seed)", 10) + "  " + pad("\(r.entry.offset)", 8)
            }
            let name: String
            if let n = rec.name { name = n }
            else { name = Console.show(r.file) + (r.multi ? "#\(r.entry.index)" : "") }
            line += "  " + Console.oneLine(name)
            lines.append(line)
        }
        if rows.count > 1 && !quiet {
            lines.append(pad("\(total)", 7) + "  \(rows.count) records")
        }
        if !quiet {
            for fp in Set(rows.map { $0.entry.record.fingerprint }).sorted() {
                lines.append("model \(RTInfo.hex(fp)): " + RTInfo.modelNote(fp))
            }
        }
        IO.writeAllIgnoringErrors(STDOUT_FILENO, Array((lines.joined(separator: "\n") + "\n").utf8))
    }
}
