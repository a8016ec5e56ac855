// Ctrl-C (SIGINT), SIGTERM and SIGHUP remove the partial outputs, then the process dies of the
// signal as it would have without a handler (a shell sees status 128 + signal).
//
// The signal handler only writes the signal number to a pipe (write(2) is async-signal-safe);
// a watcher thread reads it, and under the registry lock unlinks every temporary file still
// registered and marks the process as dying, so no new temporary file is created afterwards.
// Signals that were ignored when the program started (nohup, background jobs) stay ignored.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

public enum Interrupts {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var temps: Set<String> = []
    nonisolated(unsafe) private static var dying = false
    nonisolated(unsafe) private static var installed = false
    /// Write end of the self-pipe, read by the signal handler.
    nonisolated(unsafe) static var pipeWrite: Int32 = -1
    /// Called (on the watcher thread) before the process dies, e.g. to clear a progress line.
    nonisolated(unsafe) public static var beforeExit: (@Sendable () -> Void)?

    /// Installs the handlers (once).
    public static func install() {
        lock.lock(); defer { lock.unlock() }
        if installed { return }
        installed = true
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        pipeWrite = fds[1]
        let readEnd = fds[0]
        let thread = Thread {
            var byte: UInt8 = 0
            while true {
                let n = read(readEnd, &byte, 1)
                if n == 1 { die(signal: Int32(byte)) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
            }
        }
        thread.stackSize = 1 << 18
        thread.start()
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            // SIG_IGN is the handler value 1.
            if let previous = signal(sig, interruptHandler), unsafeBitCast(previous, to: Int.self) == 1 {
                signal(sig, SIG_IGN)
            }
        }
    }

    private static func die(signal sig: Int32) {
        lock.lock()
        dying = true
        for path in temps { unlink(path) }
        temps.removeAll()
        lock.unlock()
        beforeExit?()
        signal(sig, SIG_DFL)
        raise(sig)
        _exit(128 + sig)
    }

    /// Runs `create` under the registry lock; it creates a temporary file and registers its
    /// path with the closure it is given. Throws if the process is being interrupted.
    static func registering(_ create: ((String) -> Void) -> Void) throws {
        lock.lock(); defer { lock.unlock() }
        if dying { throw CLIError("interrupted") }
        create { temps.insert($0) }
    }

    /// Runs `body` (which renames or removes `path`) under the registry lock, then forgets the
    /// path.
    static func finishing(_ path: String, _ body: () -> Void) {
        lock.lock(); defer { lock.unlock() }
        if dying { return }
        body()
        temps.remove(path)
    }
}

private let interruptHandler: @convention(c) (Int32) -> Void = { sig in
    var byte = UInt8(truncatingIfNeeded: sig)
    _ = write(Interrupts.pipeWrite, &byte, 1)
}
