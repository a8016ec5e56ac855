// rtdec: .rtk records -> images.

import ArgumentParser
import Foundation
import RepTokCodec
import RepTokFormat
import RepTokImage

public struct RTDec: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rtdec",
        abstract: "Decode .rtk records into images.",
        discussion: """
        One input without -o is written to stdout (refused when stdout is a terminal, unless -f). \
        Several inputs (or -r) give NAME beside each NAME.rtk, or under -d DIR; a stream of several \
        records is unpacked with -d DIR by record names. A corrupt record is reported and the others \
        still decode. Exit status: 0 success, 1 some input failed, 64 usage error. See rtdec(1).
        """)

    @OptionGroup public var files: FileOptions
    @OptionGroup public var modelOptions: ModelOptions

    @Option(name: .customLong("steps"), help: ArgumentHelp("Sampler steps, 1-1000 (default: the record's).", valueName: "N"))
    public var steps: Int?

    @Option(name: .customLong("seed"), help: ArgumentHelp("Noise seed (default: the record's).", valueName: "N"))
    public var seed: UInt64?

    @Flag(name: .customLong("native"), help: "Write the model-resolution image instead of the original size.")
    public var native = false

    @Option(name: .customLong("size"), help: ArgumentHelp("Output size.", valueName: "WxH"))
    public var size: ImageSize?

    @Option(name: .customLong("format"),
            help: ArgumentHelp("Output format: png, jpg or ppm (default: from the output name, else PNG).", valueName: "FORMAT"))
    public var format: FormatArgument?

    @Option(name: .customLong("max-pixels"),
            help: ArgumentHelp("Refuse to write images of more than N pixels (default 100000000).", valueName: "N"))
    public var maxPixels: Int?

    @OptionGroup public var report: ReportOptions

    @Argument(help: ArgumentHelp(".rtk files, directories with -r, or - for stdin.", valueName: "FILE"))
    public var inputs: [String] = []

    public init() {}

    public func validate() throws {
        try files.check(inputs: inputs)
        try report.check()
        if let s = steps, !RTKFormat.steps.contains(s) { throw ValidationError("--steps must be 1 to \(RTKFormat.maxSteps), not \(s)") }
        if native && size != nil { throw ValidationError("--native and --size cannot be combined") }
        if let n = maxPixels, n < 1 { throw ValidationError("--max-pixels must be positive") }
        if files.output != nil && (inputs.count > 1 || files.recursive) {
            throw ValidationError("-o takes one input (use -d DIR for several)")
        }
    }

    enum Destination {
        case stdout
        /// A file: `root` is the -d directory and `rel` the name under it, or root nil and
        /// `rel` the whole path.
        case file(root: String?, rel: String)
    }

    struct Job {
        var input: InputItem
        var entry: StreamRecord
        var destination: Destination
        var format: ImageFormat
        /// The input holds several records (messages name the record).
        var multi: Bool
    }

    public func run() throws {
        if report.version { print(ToolVersion.text(tool: "rtdec")); return }
        let console = Console(tool: "rtdec", verbosity: report.verbosity, progress: !report.noProgress)
        Interrupts.beforeExit = { console.clearProgress() }
        Interrupts.install()

        let list = Inputs.expand(inputs, recursive: files.recursive) { $0.hasSuffix(".rtk") }
        let several = max(inputs.count, 1) > 1 || files.recursive

        enum Mode { case stdout, concatenated, output(String), directory(String), beside }
        let mode: Mode
        if let o = files.output { mode = .output(o) }
        else if files.toStdout { mode = .concatenated }
        else if let d = files.outputDir { mode = .directory(d) }
        else if several { mode = .beside }
        else { mode = .stdout }

        var writesStdout = false
        switch mode {
        case .stdout, .concatenated: writesStdout = !list.items.isEmpty
        case .beside: writesStdout = list.items.contains { $0.isStdin }
        default: break
        }
        if writesStdout {
            do { try StandardOutput.checkBinary(force: files.force) } catch {
                console.error("\(error)")
                throw ExitCode(ExitStatus.failure)
            }
        }
        if list.items.contains(where: { $0.isStdin }) && StandardOutput.stdinIsTerminal && !files.force {
            console.error("stdin is a terminal, aborting (use -f to force)")
            throw ExitCode(ExitStatus.failure)
        }

        var preferred: CodecModel? = nil
        if let m = modelOptions.model {
            do { preferred = try CodecModel.cached(path: m) } catch {
                console.error("\(error)")
                throw ExitCode(ExitStatus.failure)
            }
        }
        let tally = Tally()
        for (arg, message) in list.errors {
            console.error(path: arg, message)
            tally.failure()
        }
        let finder = ModelFinder(preferred: preferred)

        // Plan: read and parse every input, one job per record that will be decoded.
        let chosenFormat = format?.format
        var jobs: [Job] = []
        var seen: [String: String] = [:]
        for item in list.items {
            let bytes: [UInt8]
            do { bytes = try IO.readInput(item.path, cap: RTDec.maxInputBytes) } catch {
                console.error(path: item.path, "\(error)")
                tally.failure()
                continue
            }
            let parsed = ParsedStream(bytes)
            // A single output (stdout, -o, NAME beside NAME.rtk) is written only from an input that
            // parses completely and holds exactly one record.
            switch mode {
            case .stdout, .output, .beside:
                if !parsed.isClean {
                    console.error(path: item.path, parsed.errors[0])
                    tally.failure()
                    continue
                }
                if parsed.records.count != 1 {
                    console.error(path: item.path, "holds \(parsed.records.count) records; use -d DIR to unpack them (or -c)")
                    tally.failure()
                    continue
                }
            case .concatenated, .directory:
                // A record that did not parse is an image that failed; stray bytes are no image.
                for p in parsed.problems {
                    console.error(path: item.path, p.message)
                    if p.isRecord { tally.failure() } else { tally.otherFailure() }
                }
            }
            for entry in parsed.records {
                let name = entry.record.name
                switch mode {
                case .stdout, .concatenated:
                    let f = chosenFormat ?? name.flatMap { ImageFormat(path: $0) } ?? .png
                    jobs.append(Job(input: item, entry: entry, destination: .stdout, format: f, multi: parsed.recordCount > 1))
                case .output(let o):
                    let f = chosenFormat ?? ImageFormat(path: o) ?? .png
                    jobs.append(Job(input: item, entry: entry, destination: .file(root: nil, rel: o), format: f, multi: parsed.recordCount > 1))
                case .beside:
                    if item.isStdin {
                        let f = chosenFormat ?? name.flatMap { ImageFormat(path: $0) } ?? .png
                        jobs.append(Job(input: item, entry: entry, destination: .stdout, format: f, multi: parsed.recordCount > 1))
                        continue
                    }
                    let base = IO.basename(item.path)
                    guard base.hasSuffix(".rtk"), base.count > 4, item.path.hasSuffix(base) else {
                        console.error(path: item.path, "unknown suffix (expected .rtk); use -o or -d")
                        tally.failure()
                        continue
                    }
                    let (path, f) = RTDec.name(String(item.path.dropLast(4)), chosenFormat)
                    if let earlier = seen[path] {
                        console.error(path: item.path, "output \(path) is also the output of \(earlier)")
                        tally.failure()
                        continue
                    }
                    seen[path] = item.path
                    jobs.append(Job(input: item, entry: entry, destination: .file(root: nil, rel: path), format: f, multi: parsed.recordCount > 1))
                case .directory(let dir):
                    let base: String
                    if let name {
                        base = name
                    } else {
                        let stem = item.rel.hasSuffix(".rtk") && item.rel.count > 4 ? String(item.rel.dropLast(4)) : item.rel
                        if parsed.recordCount > 1 {
                            base = "\(stem)-\(entry.index).\((chosenFormat ?? .png).fileExtension)"
                        } else if item.rel.hasSuffix(".rtk") {
                            base = stem
                        } else {
                            base = stem + "." + (chosenFormat ?? .png).fileExtension
                        }
                    }
                    let (rel, f) = RTDec.name(base, chosenFormat)
                    let key = (dir.hasSuffix("/") ? dir : dir + "/") + rel
                    let what = "\(Console.show(item.path)) record \(entry.index)"
                    if let earlier = seen[key] {
                        console.error(path: item.path, "record \(entry.index) (byte \(entry.offset)): output \(key) is also the output of \(earlier)")
                        tally.failure()
                        continue
                    }
                    seen[key] = what
                    jobs.append(Job(input: item, entry: entry, destination: .file(root: dir, rel: rel), format: f, multi: parsed.recordCount > 1))
                }
            }
        }

        let stdoutSlots = jobs.indices.filter { if case .stdout = jobs[$0].destination { return true }; return false }
        let ordered = OrderedStdout(slots: stdoutSlots)
        let done = Counter()
        var options = DecodeOptions(steps: steps, seed: seed, native: native,
                                    size: size.map { (width: $0.width, height: $0.height) })
        if let n = maxPixels { options.limits.maxPixels = n }
        let decodeOptions = options
        let force = files.force, identities = list.identities
        let plan = jobs

        let workers = Workers.count(requested: files.jobs, items: plan.count)
        Workers.run(items: plan.count, workers: workers) { i in
            let job = plan[i]
            var pending: PendingOutput? = nil
            var shownPath: String? = nil
            do {
                if case .file(let root, let rel) = job.destination {
                    let path = try root.map { try IO.prepare(root: $0, rel: rel) } ?? rel
                    shownPath = path
                    pending = try PendingOutput(destination: path, force: force, inputs: identities)
                }
                let record = job.entry.record
                let model = try finder.model(for: record.fingerprint)
                let image = try Codec.decode(record, model: model, options: decodeOptions)
                let bytes = try ImageIO.encode(image, format: job.format)
                if let p = pending {
                    try p.write(bytes)
                    try p.commit(inputs: identities)
                } else {
                    ordered.put(i, bytes)
                }
                tally.success(inBytes: job.entry.size, outBytes: bytes.count)
                let target = shownPath.map { " -> " + Console.show($0) } ?? ""
                let which = job.multi ? " record \(job.entry.index)" : ""
                console.info("\(Console.show(job.input.path))\(which)\(target): \(image.width)x\(image.height) "
                             + "\(job.format.fileExtension), \(bytes.count) bytes")
            } catch {
                pending?.discard()
                ordered.put(i, nil)
                // Like the reader's messages, every failure names the record and its offset.
                console.error(path: job.input.path, "record \(job.entry.index) (byte \(job.entry.offset)): " + RTEnc.message(error))
                tally.failure()
            }
            let n = (done.take(below: Int.max) ?? 0) + 1
            console.progress(done: n, total: plan.count, name: shownPath ?? job.input.rel)
        }
        console.clearProgress()

        if let e = ordered.writeError {
            console.error("stdout: \(e)")
            tally.failure()
        }
        if several || plan.count > 1 || tally.failed + tally.succeeded > 1 {
            let total = tally.succeeded + tally.failed
            var line = tally.failed > 0 ? "\(tally.succeeded) of \(total) images decoded, \(tally.failed) failed"
                : "\(total) image\(total == 1 ? "" : "s") decoded"
            let other = tally.otherFailures
            if other > 0 { line += ", \(other) other error\(other == 1 ? "" : "s")" }
            console.info(line, level: .normal)
        }
        try failIf(tally.anyFailed)
    }

    /// Largest .rtk input read (a stream of many records).
    public static let maxInputBytes = 256 << 20

    /// The output name for a derived name and the format to write: with --format F, a name whose
    /// extension names another format gets F's extension appended; otherwise the name's extension
    /// decides, PNG when it names none.
    static func name(_ base: String, _ chosen: ImageFormat?) -> (String, ImageFormat) {
        let named = ImageFormat(path: base)
        if let f = chosen {
            if let n = named, n != f { return (base + "." + f.fileExtension, f) }
            return (base, f)
        }
        return (base, named ?? .png)
    }
}

/// Models by fingerprint: the -m model, the default model, or $REPTOK_MODEL_PATH and the user's
/// model folder (CodecModel.find). Results, failures included, are cached.
final class ModelFinder: @unchecked Sendable {
    private let preferred: CodecModel?
    private let lock = NSLock()
    private var found: [UInt64: Result<CodecModel, Error>] = [:]

    init(preferred: CodecModel?) { self.preferred = preferred }

    func model(for fingerprint: UInt64) throws -> CodecModel {
        if let p = preferred, p.fingerprint == fingerprint { return p }
        lock.lock(); defer { lock.unlock() }
        if let r = found[fingerprint] { return try r.get() }
        let r = Result { try CodecModel.find(fingerprint: fingerprint, preferred: preferred) }
        found[fingerprint] = r
        return try r.get()
    }
}
