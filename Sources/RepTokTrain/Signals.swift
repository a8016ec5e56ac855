import Foundation

/// SIGINT / SIGTERM while training: the first one asks the loop to finish its current step, write
/// a final checkpoint and exit 0; a second one kills the process the default way.
public enum StopSignal {
    nonisolated(unsafe) private static var flag: sig_atomic_t = 0
    nonisolated(unsafe) private static var installed = false

    public static var requested: Bool { flag != 0 }

    /// Sets the flag (tests use this to simulate Ctrl-C).
    public static func request() { flag = 1 }
    public static func reset() { flag = 0 }

    public static func install() {
        guard !installed else { return }
        installed = true
        let handler: @convention(c) (Int32) -> Void = { sig in
            if StopSignal.flag != 0 {
                signal(sig, SIG_DFL)
                raise(sig)
                return
            }
            StopSignal.flag = 1
            let msg = "\nrttrain: stopping after this step (again to abort)\n"
            msg.withCString { _ = write(2, $0, strlen($0)) }
        }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
    }
}
