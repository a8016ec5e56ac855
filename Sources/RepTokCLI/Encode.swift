// rtenc: images -> .rtk records.

import ArgumentParser
import Foundation
import RepTokCodec
import RepTokFormat
import RepTokImage

public struct RTEnc: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rtenc",
        abstract: "Encode images into .rtk records: one quantized latent token per image.",
        discussion: """
        One input without -o is written to stdout (refused when stdout is a terminal, unless -f). \
        Several inputs (or -r, or -d) give NAME.rtk beside each NAME, or under -d DIR. -c writes \
        one stream of named records to stdout; -o FILE with several inputs writes that stream to FILE. \
        --files-from LIST --shard K/N -o FILE --index IDX encodes one shard of a large list (K from 0). \
        Exit status: 0 success, 1 some input failed, 64 usage error. See rtenc(1).
        """)

    @OptionGroup public var files: FileOptions
    @OptionGroup public var lists: ListOptions

    @Option(name: .customLong("index"),
            help: ArgumentHelp("Also write the stream's index to FILE: NAME, OFFSET, BYTES per record.", valueName: "FILE"))
    public var index: String?

    @OptionGroup public var modelOptions: ModelOptions

    @Option(name: [.customShort("q"), .customLong("quality")],
            help: ArgumentHelp("Quality level 1 (smallest) to 9 (best); default: the model's.", valueName: "LEVEL"))
    public var level: Int?

    @Option(name: .customLong("target-bytes"),
            help: ArgumentHelp("Use the highest level whose record fits in N bytes.", valueName: "N"))
    public var targetBytes: Int?

    @Option(name: .customLong("steps"),
            help: ArgumentHelp("Sampler steps stored for the decoder, 1-1000; default: the model's.", valueName: "N"))
    public var steps: Int?

    @Option(name: .customLong("sampler"), help: ArgumentHelp("Sampler stored for the decoder: euler or heun.", valueName: "NAME"))
    public var sampler: SamplerArgument?

    @Option(name: .customLong("seed"), help: ArgumentHelp("Decoder noise seed stored in the record.", valueName: "N"))
    public var seed: UInt64 = 0

    @OptionGroup public var report: ReportOptions

    @Argument(help: ArgumentHelp("Images (PNG, JPEG, PPM/PGM), directories with -r, or - for stdin.", valueName: "FILE"))
    public var inputs: [String] = []

    public init() {}

    public func validate() throws {
        try files.check(inputs: inputs)
        try lists.check(tool: "rtenc", inputs: inputs)
        if let ix = index {
            if ix.isEmpty || ix == "-" { throw ListOptions.usage(tool: "rtenc", "--index needs a file name") }
            if files.output == nil && !files.toStdout {
                throw ListOptions.usage(tool: "rtenc", "--index needs a stream of records: -o FILE or -c")
            }
            if let o = files.output, o == ix || (IO.fileID(o) != nil && IO.fileID(o) == IO.fileID(ix)) {
                throw ListOptions.usage(tool: "rtenc", "--index and -o name the same file")
            }
        }
        try report.check()
        if let l = level, !RTKFormat.levels.contains(l) { throw ValidationError("-q must be 1 to \(RTKFormat.levels.upperBound), not \(l)") }
        if let t = targetBytes, t < 1 { throw ValidationError("--target-bytes must be positive") }
        if level != nil && targetBytes != nil { throw ValidationError("-q and --target-bytes cannot be combined") }
        if let s = steps, !RTKFormat.steps.contains(s) { throw ValidationError("--steps must be 1 to \(RTKFormat.maxSteps), not \(s)") }
    }

    /// Where one input's record goes.
    enum Destination {
        case stdoutSlot
        case file(String)
        case stream
        case failed(String)
    }

    public func run() throws {
        if report.version { print(ToolVersion.text(tool: "rtenc")); return }
        let console = Console(tool: "rtenc", verbosity: report.verbosity, progress: !report.noProgress)
        Interrupts.beforeExit = { console.clearProgress() }
        Interrupts.install()

        // The names: the command line's, then the list's. The list is read before anything is
        // written: an unreadable list leaves no output.
        var names = inputs.map { NamedInput(path: $0) }
        if let from = lists.filesFrom {
            do { names += try FileList.read(from, nul: lists.nullSeparated) } catch {
                console.error(path: from, "cannot read the file list: \(error)")
                throw ExitCode(ExitStatus.failure)
            }
        }
        // A shard is chosen among the names before any is opened: each worker stats and walks
        // only its own part of the dataset.
        let shard = lists.shard
        let namesInAll = names.count
        if let shard { names = shard.select(names) { $0.bytes } }
        var list = Inputs.expand(names.compactMap(\.path), recursive: files.recursive,
                                 stdinWhenEmpty: lists.filesFrom == nil && shard == nil) { ImageFormat(path: $0) != nil }
        list.errors += names.filter { $0.path == nil }.map { ($0.shown, $0.problem) }
        // A list or a shard is a batch even when it holds one input (or none): its records are
        // named, and -o FILE holds a stream, so that the shards' outputs can be concatenated.
        let batch = lists.filesFrom != nil || shard != nil || index != nil
        let argumentCount = max(inputs.count, 1)
        let several = argumentCount > 1 || list.walkedDirectory || files.recursive || batch
        // -c, or -o with several inputs: one stream of named records.
        let streamMode = files.toStdout || (files.output != nil && several)
        let singleToStdout = !streamMode && files.output == nil && files.outputDir == nil && !several

        var destinations: [Destination] = []
        var seen: [String: String] = [:]
        for item in list.items {
            if streamMode { destinations.append(.stream); continue }
            if let o = files.output { destinations.append(.file(o)); continue }
            if item.isStdin && files.outputDir == nil { destinations.append(.stdoutSlot); continue }
            if singleToStdout { destinations.append(.stdoutSlot); continue }
            let path: String
            if let dir = files.outputDir {
                path = (dir.hasSuffix("/") ? dir : dir + "/") + item.rel + ".rtk"
            } else {
                path = item.path + ".rtk"
            }
            if let earlier = seen[path] {
                destinations.append(.failed("output \(path) is also the output of \(earlier)"))
            } else {
                seen[path] = item.path
                destinations.append(.file(path))
            }
        }

        let toStdout = files.toStdout || destinations.contains { if case .stdoutSlot = $0 { return true }; return false }
        if toStdout {
            do { try StandardOutput.checkBinary(force: files.force) } catch {
                console.error("\(error)")
                throw ExitCode(ExitStatus.failure)
            }
        }
        if list.items.contains(where: { $0.isStdin }) && StandardOutput.stdinIsTerminal && !files.force {
            console.error("stdin is a terminal, aborting (use -f to force)")
            throw ExitCode(ExitStatus.failure)
        }

        let model: CodecModel
        do {
            if let m = modelOptions.model { model = try CodecModel.cached(path: m) } else { model = try CodecModel.loadDefault() }
        } catch {
            console.error("\(error)")
            throw ExitCode(ExitStatus.failure)
        }

        let tally = Tally()
        for (arg, message) in list.errors {
            console.error(path: arg, message)
            tally.failure()
        }

        // The stream's file (-o with several inputs) and its index are opened first so that a
        // refusal costs no work.
        var streamFile: PendingOutput? = nil
        var indexFile: PendingOutput? = nil
        do {
            if streamMode, let o = files.output {
                streamFile = try PendingOutput(destination: o, force: files.force, inputs: list.identities)
            }
            if let ix = index {
                indexFile = try PendingOutput(destination: ix, force: files.force, inputs: list.identities)
            }
        } catch {
            streamFile?.discard()
            console.error("\(error)")
            throw ExitCode(ExitStatus.failure)
        }

        let items = list.items
        let plan = destinations
        let stdoutSlots = items.indices.filter {
            if case .stdoutSlot = destinations[$0] { return true }
            return streamMode && files.toStdout
        }
        let ordered = OrderedStdout(slots: stdoutSlots)
        let streamResults = ResultSlots(count: streamMode ? items.count : 0)
        let done = Counter()
        let options = EncodeOptions(level: level, targetBytes: targetBytes, seed: seed, sampler: sampler?.sampler,
                                    steps: steps)
        let force = files.force, identities = list.identities
        let outputDirUsed = files.output == nil ? files.outputDir : nil
        let toStdoutStream = streamMode && files.toStdout

        let workers = Workers.count(requested: files.jobs, items: items.count)
        Workers.run(items: items.count, workers: workers) { i in
            let item = items[i]
            var pending: PendingOutput? = nil
            do {
                var destPath: String? = nil
                switch plan[i] {
                case .failed(let why): throw CLIError(why)
                case .file(let p):
                    // Under -d, create the mirrored directories (refusing symbolic links on the way).
                    if let root = outputDirUsed {
                        destPath = try IO.prepare(root: root, rel: item.rel + ".rtk")
                    } else {
                        destPath = p
                    }
                    pending = try PendingOutput(destination: destPath!, force: force, inputs: identities)
                default: break
                }
                let bytes = try IO.readInput(item.path, cap: ImageLimits.default.maxBytes)
                // A record holds at most 2^26 pixels (rtk.5): larger images are refused from the
                // header, before their pixels are decoded, with that cap in the message.
                let decoded = try ImageIO.decode(bytes, limits: ImageLimits(maxPixels: RTKFormat.maxPixels))
                if decoded.hadICC {
                    console.warning("\(Console.show(item.path)): ICC profile ignored (pixels are taken as sRGB)")
                }
                var o = options
                if streamMode && !item.isStdin { o.name = item.rel }
                let record = try Codec.encode(decoded.image, model: model, options: o)
                let out = try record.serialized()
                switch plan[i] {
                case .file:
                    try pending!.write(out)
                    try pending!.commit(inputs: identities)
                case .stdoutSlot:
                    ordered.put(i, out)
                case .stream:
                    streamResults.set(i, out)
                    if toStdoutStream { ordered.put(i, out) }
                case .failed: break
                }
                tally.success(inBytes: bytes.count, outBytes: out.count)
                let bpp = Double(out.count * 8) / Double(decoded.image.width * decoded.image.height)
                let target = destPath.map { " -> " + Console.show($0) } ?? ""
                console.info("\(Console.show(item.path))\(target): \(decoded.image.width)x\(decoded.image.height), "
                             + "level \(record.level), \(out.count) bytes, \(String(format: "%.4f", bpp)) bpp")
            } catch {
                pending?.discard()
                ordered.put(i, nil)
                console.error(path: item.path, Self.message(error))
                tally.failure()
            }
            let n = (done.take(below: Int.max) ?? 0) + 1
            console.progress(done: n, total: items.count, name: item.rel)
        }
        console.clearProgress()

        // The records of the stream, in input order (failed inputs have none).
        let results = streamResults.all
        let written = streamMode ? items.indices.compactMap { i in
            results[i].map { (name: items[i].isStdin ? nil : items[i].rel, bytes: $0) }
        } : []
        // No input at all (an empty list, or an empty shard) gives an empty stream, so that every
        // shard that succeeds leaves its output; inputs that all failed leave none.
        let nothingToDo = batch && items.isEmpty && list.errors.isEmpty
        var streamComplete = true
        if let f = streamFile {
            if written.isEmpty && !nothingToDo {
                f.discard()
                streamComplete = false
            } else {
                do {
                    try f.write(written.flatMap { $0.bytes })
                    try f.commit(inputs: list.identities)
                } catch {
                    console.error("\(error)")
                    tally.failure()
                    streamComplete = false
                }
            }
        }
        if let e = ordered.writeError {
            console.error("stdout: \(e)")
            tally.failure()
            streamComplete = false
        }
        // The index describes the stream as written: it is kept only with it.
        if let ix = indexFile {
            if streamComplete && (!written.isEmpty || nothingToDo) {
                do {
                    try ix.write(StreamIndex.text(written.map { ($0.name, $0.bytes.count) }))
                    try ix.commit(inputs: list.identities)
                } catch {
                    console.error("\(error)")
                    tally.otherFailure()
                }
            } else {
                ix.discard()
            }
        }
        let prefix = shard.map { "shard \($0): " } ?? ""
        if let shard, nothingToDo {
            console.info("shard \(shard) is empty (\(namesInAll) name\(namesInAll == 1 ? "" : "s") in \(shard.count) shards)",
                         level: .normal)
        } else if argumentCount > 1 || list.walkedDirectory || tally.failed + tally.succeeded > 1 || batch {
            let total = tally.succeeded + tally.failed
            let noun = "file\(total == 1 ? "" : "s")"
            if tally.failed > 0 {
                console.info("\(prefix)\(tally.succeeded) of \(total) \(noun) encoded, \(tally.failed) failed", level: .normal)
            } else {
                console.info("\(prefix)\(total) \(noun) encoded, \(tally.inputBytes) bytes -> \(tally.outputBytes) bytes",
                             level: .normal)
            }
        }
        try failIf(tally.anyFailed)
    }

    /// One line for an error of the image, codec or format layers.
    static func message(_ error: Error) -> String {
        if let e = error as? RTKError { return e.description }
        if let e = error as? CodecError { return e.description }
        if let e = error as? ImageError { return e.description }
        return "\(error)"
    }
}

/// Per-item results written by workers.
final class ResultSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [[UInt8]?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ i: Int, _ bytes: [UInt8]) { lock.lock(); slots[i] = bytes; lock.unlock() }

    var all: [[UInt8]?] { lock.lock(); defer { lock.unlock() }; return slots }
}
