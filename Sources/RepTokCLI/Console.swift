// Messages on stderr: one line each, prefixed with the tool name, never echoing control
// characters (file names and library messages may hold newlines or escape sequences).
// Progress goes to stderr only when stderr is a terminal.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// How much the tools say on stderr.
public enum Verbosity: Int, Comparable, Sendable {
    /// Errors only (--quiet).
    case quiet = 0
    /// Errors, warnings and the batch summary (default).
    case normal = 1
    /// Also one line per file (-v).
    case verbose = 2

    public static func < (a: Verbosity, b: Verbosity) -> Bool { a.rawValue < b.rawValue }
}

/// Serialized stderr output shared by all workers.
public final class Console: @unchecked Sendable {
    public let tool: String
    public let verbosity: Verbosity
    /// Progress is shown only when stderr is a terminal (and not --quiet, and allowed).
    public let showProgress: Bool
    private let lock = NSLock()
    private var progressShown = false

    public init(tool: String, verbosity: Verbosity, progress: Bool = true) {
        self.tool = tool
        self.verbosity = verbosity
        self.showProgress = progress && verbosity >= .normal && isatty(STDERR_FILENO) == 1
    }

    /// Printable text on one line: control characters become '?', at most `limit` characters.
    public static func oneLine(_ s: String, limit: Int = 400) -> String {
        var out = ""
        var n = 0
        for u in s.unicodeScalars {
            if n >= limit { out += "..."; break }
            let cat = u.properties.generalCategory
            if cat == .control || cat == .lineSeparator || cat == .paragraphSeparator || cat == .format {
                out.unicodeScalars.append(u == "\n" || u == "\t" || u == "\r" ? " " : "?")
            } else {
                out.unicodeScalars.append(u)
            }
            n += 1
        }
        return out
    }

    /// A path for messages.
    public static func show(_ path: String) -> String { path == "-" ? "(stdin)" : oneLine(path, limit: 300) }

    private func emit(_ line: String) {
        var text = ""
        if progressShown { text += "\r\u{1B}[K"; progressShown = false }
        text += line + "\n"
        IO.writeAllIgnoringErrors(STDERR_FILENO, Array(text.utf8))
    }

    /// `tool: message` (always shown).
    public func error(_ message: String) {
        lock.lock(); defer { lock.unlock() }
        emit("\(tool): " + Console.oneLine(message))
    }

    /// `tool: path: message` (always shown).
    public func error(path: String, _ message: String) {
        error("\(Console.show(path)): \(message)")
    }

    /// `tool: warning: message` (not under --quiet).
    public func warning(_ message: String) {
        guard verbosity >= .normal else { return }
        lock.lock(); defer { lock.unlock() }
        emit("\(tool): warning: " + Console.oneLine(message))
    }

    /// A line at `level` or above.
    public func info(_ message: String, level: Verbosity = .verbose) {
        guard verbosity >= level else { return }
        lock.lock(); defer { lock.unlock() }
        emit("\(tool): " + Console.oneLine(message))
    }

    /// `\r[done/total] name` on a terminal; nothing otherwise.
    public func progress(done: Int, total: Int, name: String) {
        guard showProgress else { return }
        lock.lock(); defer { lock.unlock() }
        let text = "\r\u{1B}[K\(tool): [\(done)/\(total)] " + Console.oneLine(name, limit: 60)
        IO.writeAllIgnoringErrors(STDERR_FILENO, Array(text.utf8))
        progressShown = true
    }

    /// Erases the progress line (before exiting, or from the interrupt handler).
    public func clearProgress() {
        lock.lock(); defer { lock.unlock() }
        if progressShown {
            IO.writeAllIgnoringErrors(STDERR_FILENO, Array("\r\u{1B}[K".utf8))
            progressShown = false
        }
    }
}

/// Tally of a batch run and its summary line.
public final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    public private(set) var succeeded = 0
    public private(set) var failed = 0
    public private(set) var inputBytes = 0
    public private(set) var outputBytes = 0

    public init() {}

    public func success(inBytes: Int = 0, outBytes: Int = 0) {
        lock.lock(); succeeded += 1; inputBytes += inBytes; outputBytes += outBytes; lock.unlock()
    }

    public func failure() { lock.lock(); failed += 1; lock.unlock() }

    /// A failure that is no item of the batch (stray bytes in a stream): it fails the run but
    /// is not counted among the items.
    public private(set) var otherFailures = 0

    public func otherFailure() { lock.lock(); otherFailures += 1; lock.unlock() }

    public var anyFailed: Bool { lock.lock(); defer { lock.unlock() }; return failed + otherFailures > 0 }
}
