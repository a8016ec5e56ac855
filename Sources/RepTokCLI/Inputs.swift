// Input lists: "-" for stdin, files, and (with -r) directory trees.
//
// Every input gets a relative name, used to mirror the tree under -d and as the record name in
// a stream: below a directory given with -r, the path relative to that directory; for a file
// named on the command line, the path as given when it is relative and has no ".." (with "."
// and empty components dropped), else its last component.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// One input file (or stdin).
public struct InputItem: Sendable {
    /// The path to open, or "-" for stdin.
    public var path: String
    /// The relative name (see above); "stdin" for stdin.
    public var rel: String
    /// True when the file came from a -r directory walk.
    public var fromWalk: Bool

    public var isStdin: Bool { path == "-" }
}

/// The expanded inputs and the arguments that could not be used.
public struct InputList: Sendable {
    public var items: [InputItem] = []
    /// (argument, message) for arguments that are missing, unreadable, or directories without -r.
    public var errors: [(String, String)] = []
    /// Identities of every input file, so that no output ever replaces one.
    public var identities: Set<FileID> = []
    /// True when some argument was a directory expanded by -r.
    public var walkedDirectory = false
}

public enum Inputs {
    /// The relative name of a path named on the command line.
    public static func relativeName(_ path: String) -> String {
        if path == "-" { return "stdin" }
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        if path.hasPrefix("/") || parts.contains("..") || parts.isEmpty { return IO.basename(path) }
        return parts.joined(separator: "/")
    }

    /// Expands the arguments. `accept` chooses which files of a -r walk to take (files named
    /// explicitly are always taken). No arguments means stdin unless `stdinWhenEmpty` is off
    /// (inputs from a file list, which may be empty).
    public static func expand(_ args: [String], recursive: Bool, stdinWhenEmpty: Bool = true,
                              accept: (String) -> Bool) -> InputList {
        var list = InputList()
        let args = args.isEmpty && stdinWhenEmpty ? ["-"] : args
        for arg in args {
            if arg == "-" {
                list.items.append(InputItem(path: "-", rel: "stdin", fromWalk: false))
                continue
            }
            switch IO.kind(arg) {
            case .missing:
                let e = errno
                list.errors.append((arg, IO.lkind(arg) == .symlink ? "dangling symbolic link" : IO.errorText(e)))
            case .directory:
                if recursive {
                    list.walkedDirectory = true
                    walk(root: arg, sub: "", into: &list, accept: accept)
                } else {
                    list.errors.append((arg, "is a directory (use -r to recurse)"))
                }
            default:
                list.items.append(InputItem(path: arg, rel: relativeName(arg), fromWalk: false))
                if let id = IO.fileID(arg) { list.identities.insert(id) }
            }
        }
        return list
    }

    /// Walks a directory in sorted order. Symbolic links to files are taken; symbolic links to
    /// directories are not followed (no loops, no escaping the tree).
    static func walk(root: String, sub: String, into list: inout InputList, accept: (String) -> Bool) {
        let dir = sub.isEmpty ? root : (root.hasSuffix("/") ? root : root + "/") + sub
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
            list.errors.append((dir, "cannot read directory: \(IO.errorText(EACCES))"))
            return
        }
        for name in names.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            let rel = sub.isEmpty ? name : sub + "/" + name
            let path = (root.hasSuffix("/") ? root : root + "/") + rel
            switch IO.lkind(path) {
            case .directory:
                walk(root: root, sub: rel, into: &list, accept: accept)
            case .regular:
                if accept(name) {
                    list.items.append(InputItem(path: path, rel: rel, fromWalk: true))
                    if let id = IO.fileID(path) { list.identities.insert(id) }
                }
            case .symlink:
                if IO.kind(path) == .regular && accept(name) {
                    list.items.append(InputItem(path: path, rel: rel, fromWalk: true))
                    if let id = IO.fileID(path) { list.identities.insert(id) }
                }
            default:
                break
            }
        }
    }
}
