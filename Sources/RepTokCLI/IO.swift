// File handling shared by the tools: whole-file reads with a size cap, writes that never leave a
// partial file (temporary file in the destination's directory, then rename), the identity of
// files (so an input is never overwritten), and safe joins under an output directory.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A failure with a one-line message, reported as `tool: path: message`.
public struct CLIError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Device and inode of a file.
public struct FileID: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
}

public enum IO {
    /// The text of errno.
    public static func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    /// The identity of the file at `path` (following symbolic links), or nil.
    public static func fileID(_ path: String) -> FileID? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// The identity of an open descriptor.
    public static func fileID(fd: Int32) -> FileID? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        return FileID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    public enum Kind: Sendable { case missing, regular, directory, symlink, other }

    /// What is at `path`, without following a final symbolic link.
    public static func lkind(_ path: String) -> Kind {
        var st = stat()
        guard lstat(path, &st) == 0 else { return .missing }
        return kind(st.st_mode)
    }

    /// What is at `path`, following symbolic links.
    public static func kind(_ path: String) -> Kind {
        var st = stat()
        guard stat(path, &st) == 0 else { return .missing }
        return kind(st.st_mode)
    }

    static func kind(_ mode: mode_t) -> Kind {
        switch mode & S_IFMT {
        case S_IFREG: return .regular
        case S_IFDIR: return .directory
        case S_IFLNK: return .symlink
        default: return .other
        }
    }

    // MARK: Reading

    /// Reads all of `fd` (at most `cap` bytes; more is an error).
    public static func readAll(fd: Int32, cap: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError("read error: \(errorText())")
            }
            if n == 0 { break }
            if out.count + n > cap { throw CLIError("input is larger than \(cap) bytes") }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Reads a whole file, or stdin for "-". Directories are refused.
    public static func readInput(_ path: String, cap: Int) throws -> [UInt8] {
        if path == "-" { return try readAll(fd: STDIN_FILENO, cap: cap) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw CLIError(errorText()) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0 {
            if kind(st.st_mode) == .directory { throw CLIError("is a directory") }
            if kind(st.st_mode) == .regular && Int(st.st_size) > cap {
                throw CLIError("input of \(st.st_size) bytes is larger than \(cap) bytes")
            }
        }
        return try readAll(fd: fd, cap: cap)
    }

    // MARK: Writing

    /// Writes all bytes to `fd`, retrying short writes and EINTR.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var done = 0
        try bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw CLIError("write error: \(errorText())")
                }
                done += n
            }
        }
    }

    public static func writeAllIgnoringErrors(_ fd: Int32, _ bytes: [UInt8]) {
        try? writeAll(fd, bytes)
    }

    /// The permission bits new files get (0666 less the umask), read once at start-up.
    public static let newFileMode: mode_t = {
        let m = umask(0)
        umask(m)
        return 0o666 & ~m
    }()

    // MARK: Paths

    /// The directory part of a path ("." when there is none).
    public static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// The last component of a path.
    public static func basename(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return String(p) }
        return String(p[p.index(after: slash)...])
    }

    /// `root/rel`, creating the directories of `rel` under `root`. An existing component under
    /// `root` that is a symbolic link or not a directory is an error, so names (which may come
    /// from an untrusted record) never lead outside `root`.
    public static func prepare(root: String, rel: String) throws -> String {
        let parts = rel.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard !parts.isEmpty, !parts.contains(".."), !rel.hasPrefix("/") else {
            throw CLIError("refusing output name \(rel)")
        }
        var dir = root
        if lkind(root) == .missing {
            try makeDirectory(root)
        } else if kind(root) != .directory {
            throw CLIError("\(root) is not a directory")
        }
        for part in parts.dropLast() where part != "." {
            dir += "/" + part
            switch lkind(dir) {
            case .missing: try makeDirectory(dir)
            case .directory: break
            case .symlink: throw CLIError("\(dir) is a symbolic link; refusing to write through it")
            default: throw CLIError("\(dir) exists and is not a directory")
            }
        }
        return dir + "/" + parts.last!
    }

    /// mkdir -p.
    public static func makeDirectory(_ path: String) throws {
        if kind(path) == .directory { return }
        let parent = dirname(path)
        if parent != path && parent != "." && parent != "/" && lkind(parent) == .missing {
            try makeDirectory(parent)
        }
        if mkdir(path, 0o777) != 0 && errno != EEXIST {
            throw CLIError("cannot create directory \(path): \(errorText())")
        }
    }
}

/// An output file being written: a temporary file beside the destination, renamed over it on
/// `commit()`. Until then it is registered with `Interrupts`, which removes it on Ctrl-C;
/// `discard()` (or a failed commit) removes it too.
public final class PendingOutput {
    public let destination: String
    public let tempPath: String
    private var fd: Int32
    private let force: Bool
    private var done = false

    /// Creates the temporary file. Refuses when `destination` exists and `force` is off, when
    /// it is a directory, or when it is one of `inputs`.
    public init(destination: String, force: Bool, inputs: Set<FileID>) throws {
        self.destination = destination
        self.force = force
        try PendingOutput.checkDestination(destination, force: force, inputs: inputs)
        var base = IO.basename(destination)
        if base.utf8.count > 200 { base = String(decoding: Array(base.utf8.prefix(200)), as: UTF8.self) }
        let template = IO.dirname(destination) + "/." + base + ".XXXXXX"
        var created: (Int32, String)? = nil
        var createError: Int32 = 0
        try Interrupts.registering { register in
            var buf = Array(template.utf8CString)
            let fd = buf.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            if fd < 0 { createError = errno; return }
            let path = String(cString: buf)
            register(path)
            created = (fd, path)
        }
        guard let (fd, path) = created else {
            throw CLIError("cannot create output in \(IO.dirname(destination)): \(IO.errorText(createError))")
        }
        self.fd = fd
        self.tempPath = path
        _ = fchmod(fd, IO.newFileMode)
    }

    deinit { if !done { discard() } }

    static func checkDestination(_ destination: String, force: Bool, inputs: Set<FileID>) throws {
        let kind = IO.lkind(destination)
        if kind == .missing { return }
        if let id = IO.fileID(destination), inputs.contains(id) {
            throw CLIError("\(destination) is an input; refusing to overwrite it")
        }
        if IO.kind(destination) == .directory { throw CLIError("\(destination) is a directory") }
        if !force { throw CLIError("\(destination) already exists (use -f to overwrite)") }
    }

    public func write(_ bytes: [UInt8]) throws {
        do { try IO.writeAll(fd, bytes) } catch {
            discard()
            throw error
        }
    }

    /// Closes the temporary file and renames it to the destination.
    public func commit(inputs: Set<FileID>) throws {
        precondition(!done)
        if close(fd) != 0 {
            let e = errno
            fd = -1
            discard()
            throw CLIError("write error: \(IO.errorText(e))")
        }
        fd = -1
        var failure: String? = nil
        Interrupts.finishing(tempPath) {
            do {
                try PendingOutput.checkDestination(destination, force: force, inputs: inputs)
            } catch {
                failure = "\(error)"
                unlink(tempPath)
                return
            }
            if !force {
                // No-clobber: link() fails with EEXIST if the destination appeared meanwhile.
                if link(tempPath, destination) == 0 { unlink(tempPath); return }
                let e = errno
                if e == EEXIST || IO.lkind(destination) != .missing {
                    failure = "\(destination) already exists (use -f to overwrite)"
                    unlink(tempPath)
                    return
                }
                // The file system has no hard links: fall through to rename.
            }
            if rename(tempPath, destination) != 0 {
                failure = "cannot rename to \(destination): \(IO.errorText())"
                unlink(tempPath)
            }
        }
        done = true
        if let failure { throw CLIError(failure) }
    }

    /// Removes the temporary file.
    public func discard() {
        guard !done else { return }
        done = true
        if fd >= 0 { close(fd); fd = -1 }
        Interrupts.finishing(tempPath) { unlink(tempPath) }
    }
}

/// Output to stdout. Binary output to a terminal is refused unless forced (zstd's rule).
public enum StandardOutput {
    public static var isTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    public static var stdinIsTerminal: Bool { isatty(STDIN_FILENO) == 1 }

    /// Throws when stdout is a terminal and `force` is off.
    public static func checkBinary(force: Bool) throws {
        if !force && isTerminal { throw CLIError("stdout is a terminal, aborting (use -f to force)") }
    }
}

/// Writes results to stdout in input order while workers finish in any order.
public final class OrderedStdout: @unchecked Sendable {
    private let lock = NSLock()
    private var pending: [Int: [UInt8]?] = [:]
    private var next = 0
    private let slots: Set<Int>
    private var ordered: [Int]
    public private(set) var writeError: String?

    /// `slots`: the job indices that write to stdout, in output order.
    public init(slots: [Int]) {
        self.slots = Set(slots)
        self.ordered = slots
    }

    /// Hands in slot `index`'s bytes (nil when the job failed).
    public func put(_ index: Int, _ bytes: [UInt8]?) {
        lock.lock(); defer { lock.unlock() }
        guard slots.contains(index) else { return }
        pending[index] = .some(bytes)
        while next < ordered.count, let entry = pending[ordered[next]] {
            pending[ordered[next]] = nil
            next += 1
            if let bytes = entry, writeError == nil {
                do { try IO.writeAll(STDOUT_FILENO, bytes) } catch { writeError = "\(error)" }
            }
        }
    }
}
