// Datasets that outgrow one machine (rtenc(1), SHARDS; docs/SHARDING.md):
// - --files-from FILE reads the inputs from a list, one name a line, or NUL-separated with -0;
// - --shard K/N takes shard K (from 0, as Slurm array indices from 0 and Kubernetes'
//   JOB_COMPLETION_INDEX) of N of the names sorted byte-wise as given, as contiguous blocks,
//   before any is opened, so that the shards in K order are exactly the run over the sorted
//   list, with no coordinator, and each worker touches only its own files;
// - --index FILE writes one line per record of a stream, NAME TAB OFFSET TAB BYTES, so that a
//   reader can seek to a record.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Foundation

/// Shard K of N (K from 0).
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) {
        precondition(count >= 1 && (0..<count).contains(index))
        self.index = index
        self.count = count
    }

    /// Parses `K/N`: decimal digits only, N at least 1, K from 0 to N-1. The error is one line.
    public static func parse(_ text: String) throws -> Shard {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        func number(_ s: Substring) -> Int? {
            guard !s.isEmpty, s.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
            return Int(s)
        }
        guard parts.count == 2, let k = number(parts[0]), let n = number(parts[1]) else {
            throw CLIError("--shard wants K/N, two whole numbers with K from 0 to N-1, not '\(text)'")
        }
        if n < 1 { throw CLIError("--shard \(text): N must be at least 1") }
        if k >= n {
            throw CLIError("--shard \(text): K counts from 0 and must be below N (0 to \(n - 1))")
        }
        return Shard(index: k, count: n)
    }

    /// The positions of `total` sorted entries that this shard takes: contiguous blocks, the
    /// first `total % count` shards one entry longer than the others.
    public func range(of total: Int) -> Range<Int> {
        let q = total / count, r = total % count
        let start = index * q + min(index, r)
        return start..<(start + q + (index < r ? 1 : 0))
    }

    /// This shard of `entries`: sorted byte-wise by `key` (a stable sort: equal keys, a name
    /// listed twice, keep their order), then block `index` of the range.
    public func select<T>(_ entries: [T], key: (T) -> [UInt8]) -> [T] {
        let keys = entries.map(key)
        let order = entries.indices.sorted { a, b in
            if keys[a] == keys[b] { return a < b }
            return keys[a].lexicographicallyPrecedes(keys[b])
        }
        return order[range(of: entries.count)].map { entries[$0] }
    }

    public var description: String { "\(index)/\(count)" }
}

/// One name given on the command line or in a list.
public struct NamedInput: Sendable {
    /// The name's bytes, as given (the sort key of --shard).
    public var bytes: [UInt8]
    /// The path to open, or nil for a name that cannot be one.
    public var path: String?
    /// Why the name cannot be used (when `path` is nil).
    public var problem: String = ""

    public init(path: String) {
        self.bytes = Array(path.utf8)
        self.path = path
    }

    public init(unusable bytes: [UInt8], problem: String) {
        self.bytes = bytes
        self.path = nil
        self.problem = problem
    }

    /// The name for messages.
    public var shown: String { path ?? String(decoding: bytes, as: UTF8.self) }
}

public enum FileList {
    /// The largest list read (1 GiB: some ten million names).
    public static let maxBytes = 1 << 30

    /// Reads the list at `path` ("-": stdin). Names end with a newline, or with NUL when `nul`;
    /// the last one may lack its terminator; empty names are skipped. Nothing else is trimmed:
    /// spaces, quotes and a carriage return belong to the name.
    /// A name "-" is the file named "-" (as "./-"), not stdin.
    public static func read(_ path: String, nul: Bool) throws -> [NamedInput] {
        let bytes = try IO.readInput(path, cap: maxBytes)
        return parse(bytes, nul: nul)
    }

    public static func parse(_ bytes: [UInt8], nul: Bool) -> [NamedInput] {
        let separator: UInt8 = nul ? 0 : 0x0A
        return bytes.split(separator: separator, omittingEmptySubsequences: true).map { entry in
            let raw = Array(entry)
            guard let name = String(bytes: raw, encoding: .utf8) else {
                return NamedInput(unusable: raw, problem: "file name in the list is not valid UTF-8")
            }
            if raw.contains(0) {
                return NamedInput(unusable: raw,
                                  problem: "file name in the list holds a NUL byte (a list of NUL-separated names needs -0)")
            }
            return NamedInput(path: name == "-" ? "./-" : name)
        }
    }
}

/// The index of a stream of records: one line per record, in stream order,
/// `NAME<TAB>OFFSET<TAB>BYTES<LF>`, OFFSET and BYTES in decimal, OFFSET counted from the first
/// byte of the stream. Record names hold no control characters (rtk(5)), so no quoting is
/// needed; a record without a name has an empty NAME.
public enum StreamIndex {
    /// The index of `records` (name, serialized size) written back to back from offset `base`.
    public static func text(_ records: [(name: String?, bytes: Int)], base: Int = 0) -> [UInt8] {
        var out = ""
        var offset = base
        for r in records {
            out += "\(r.name ?? "")\t\(offset)\t\(r.bytes)\n"
            offset += r.bytes
        }
        return Array(out.utf8)
    }
}

/// --files-from, -0 and --shard.
public struct ListOptions: ParsableArguments {
    @Option(name: .customLong("files-from"),
            help: ArgumentHelp("Also take the inputs named in FILE (- for stdin), one per line.", valueName: "FILE"))
    public var filesFrom: String?

    @Flag(name: [.customShort("0"), .customLong("null")],
          help: "The names in --files-from end with a NUL byte, not a newline (find -print0).")
    public var nullSeparated = false

    @Option(name: .customLong("shard"),
            help: ArgumentHelp("Take only shard K (from 0) of N of the names, sorted byte-wise.", valueName: "K/N"))
    public var shardText: String?

    public init() {}

    /// The shard, once `check` has passed.
    public var shard: Shard? { shardText.flatMap { try? Shard.parse($0) } }

    /// Usage checks; a failure is one line on stderr and exit status 64.
    public func check(tool: String, inputs: [String]) throws {
        func usage(_ message: String) -> ExitCode { Self.usage(tool: tool, message) }
        if let s = shardText {
            do { _ = try Shard.parse(s) } catch { throw usage("\(error)") }
        }
        if let f = filesFrom, f.isEmpty { throw usage("--files-from needs a file name (- for stdin)") }
        if nullSeparated && filesFrom == nil { throw usage("-0 (--null) needs --files-from") }
        if filesFrom == "-" && inputs.contains("-") {
            throw usage("stdin (-) can be read only once, and --files-from - reads the list from it")
        }
        if shardText != nil && inputs.contains("-") { throw usage("--shard cannot split stdin (-)") }
        if shardText != nil && inputs.isEmpty && filesFrom == nil {
            throw usage("--shard needs inputs to split: --files-from LIST, or files or directories")
        }
    }

    /// Usage error of an option that goes with these (one line, status 64).
    public static func usage(tool: String, _ message: String) -> ExitCode {
        IO.writeAllIgnoringErrors(STDERR_FILENO, Array("\(tool): \(Console.oneLine(message))\n".utf8))
        return ExitCode(ExitStatus.usage)
    }
}
