import Foundation

/// Training wall time of a run, all segments together: the seconds of the segments before this
/// process (from the checkpoint) plus the current segment's.
public final class TrainingClock {
    /// Seconds of the earlier segments.
    public let before: Double
    private var segmentStart = DispatchTime.now().uptimeNanoseconds

    public init(before: Double = 0) { self.before = before }

    /// Starts the current segment now (the loop does it when it starts).
    public func startSegment() { segmentStart = DispatchTime.now().uptimeNanoseconds }

    /// Training seconds so far.
    public var seconds: Double { before + Double(DispatchTime.now().uptimeNanoseconds - segmentStart) / 1e9 }
}

/// The loop the three trainers share (tokenizer, SSL encoder, generator): the step budget (a
/// number of steps, or wall-clock minutes turned into one), the progress line (refreshed on a
/// terminal, else every `logEvery` steps and at the last one) with its rate and ETA over the
/// recent steps, metrics.jsonl (trimmed to the resumed step, written every `logEvery` steps and
/// at checkpoints), the checkpoint timer, and the stop request (SIGINT/SIGTERM via
/// `StopSignal`, or `stopAfter` steps for tests): finish the step, write a checkpoint, return
/// `interrupted`. Each trainer supplies its step, its progress text and its checkpoint writer.
public final class TrainingLoop {
    public enum Outcome: Equatable { case finished, interrupted }

    /// The step budget.
    public enum Budget {
        /// A fixed number of steps (the total, not the steps left).
        case steps(Int)
        /// A training time: the total is estimated from the speed of this segment's steps (the
        /// first two left out) and fixed once the run reaches step `fixAt`.
        case seconds(Double, fixAt: Int)
    }

    /// What the loop measured for a progress line.
    public struct Progress {
        /// Steps done, and the budget.
        public var step: Int, total: Int
        /// Items (samples, images, tokens) per second over the recent steps.
        public var perSecond: Double
        /// Time left at the recent speed, as `h:mm:ss` or `m:ss`.
        public var eta: String
    }

    /// One step's report.
    public struct StepReport {
        /// Steps done after this one.
        public var step: Int
        /// The step's seconds.
        public var seconds: Double
        /// Its metrics.jsonl line (without the newline).
        public var metrics: String
        /// Its progress line, from the loop's figures.
        public var progress: (Progress) -> String

        public init(step: Int, seconds: Double, metrics: String, progress: @escaping (Progress) -> String) {
            self.step = step; self.seconds = seconds; self.metrics = metrics; self.progress = progress
        }
    }

    /// Prefix of the loop's own messages ("rttrain", "rttrain ssl", ...).
    public let name: String
    public private(set) var step: Int
    public let clock: TrainingClock
    let itemsPerStep: Int
    let logEvery: Int
    let checkpointSeconds: Double
    /// Steps the rate and ETA average over.
    let window: Int
    let quiet: Bool
    let tty: Bool
    let log: (String) -> Void
    /// Where `checkpoint` writes (for the stop message; nil: nowhere).
    let checkpointPath: String?
    private var metrics: FileHandle?
    private var pending = Data()

    /// Starts a segment of a run at `step`: starts `clock`'s segment, creates `runDir` and opens
    /// its metrics.jsonl (none without a run folder).
    public init(name: String, step: Int, clock: TrainingClock, itemsPerStep: Int, logEvery: Int, checkpointMinutes: Double,
                window: Int = 50, quiet: Bool, log: @escaping (String) -> Void, runDir: String?, checkpointPath: String?) throws {
        self.name = name; self.step = step; self.clock = clock; self.itemsPerStep = itemsPerStep
        self.logEvery = logEvery; self.checkpointSeconds = checkpointMinutes * 60; self.window = window
        self.quiet = quiet; self.tty = isatty(2) != 0 && !quiet; self.log = log; self.checkpointPath = checkpointPath
        clock.startSegment()
        if let dir = runDir {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            metrics = try TrainingLoop.openMetrics(dir + "/metrics.jsonl", keepingStepsUpTo: step)
        }
    }

    deinit { try? metrics?.close() }

    /// Adds a line to metrics.jsonl (written at the next flush).
    public func record(_ line: String) {
        if metrics != nil { pending.append(Data((line + "\n").utf8)) }
    }

    /// Writes the recorded lines.
    public func flush() {
        if !pending.isEmpty { metrics?.write(pending); pending.removeAll() }
    }

    /// Erases the progress line on a terminal (before a message of the trainer's own).
    public func clearProgress() {
        if tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }

    /// Runs steps until the budget is spent (`finished`: `finish`, then a final checkpoint) or
    /// a stop is requested (`interrupted`, after a checkpoint). `train(total)` does one step;
    /// `afterStep(total)` runs after each step's line (evals on a timer); `fixed(total)` hears
    /// the total a time budget settled on.
    public func run(budget: Budget, stopAfter: Int? = nil,
                    train: (_ total: Int) throws -> StepReport,
                    checkpoint: () throws -> Void,
                    afterStep: (_ total: Int) throws -> Void = { _ in },
                    finish: () throws -> Void = {},
                    fixed: (_ total: Int) -> Void = { _ in }) throws -> Outcome {
        var lastCkpt = DispatchTime.now().uptimeNanoseconds
        var recent = [Double]()          // seconds of recent steps (rate, ETA)
        var segmentSteps = 0, timedSteps = 0, segmentTime = 0.0
        var fixedTotal: Int?
        if case .steps(let n) = budget { fixedTotal = n }
        while true {
            let total: Int
            if let t = fixedTotal {
                total = t
            } else if case .seconds(let seconds, let fixAt) = budget {
                let avg = timedSteps >= 3 ? segmentTime / Double(timedSteps) : 1.0
                let left = max(0, seconds - clock.seconds)
                total = max(step + 1, step + Int(left / max(avg, 1e-3)))
                if step >= fixAt {
                    fixedTotal = total
                    fixed(total)
                    log("\(name): step budget fixed at \(total) steps")
                }
            } else {
                preconditionFailure("unreachable")
            }
            if step >= total { break }
            let r = try train(total)
            step = r.step
            segmentSteps += 1
            if segmentSteps > 2 { segmentTime += r.seconds; timedSteps += 1 }   // the first steps warm caches
            recent.append(r.seconds); if recent.count > window { recent.removeFirst() }
            record(r.metrics)
            let avg = recent.reduce(0, +) / Double(recent.count)
            let line = r.progress(Progress(step: step, total: total, perSecond: Double(itemsPerStep) / avg,
                                           eta: TrainingLoop.clock(Double(total - step) * avg)))
            if tty {
                FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            } else if !quiet && (step % logEvery == 0 || step == total) {
                log(line)
            }
            if step % logEvery == 0 { flush() }
            try afterStep(total)
            let stop = StopSignal.requested || (stopAfter.map { step >= $0 } ?? false)
            if stop || Double(DispatchTime.now().uptimeNanoseconds - lastCkpt) / 1e9 >= checkpointSeconds {
                flush()
                try checkpoint()
                lastCkpt = DispatchTime.now().uptimeNanoseconds
                if stop {
                    if tty { FileHandle.standardError.write(Data("\n".utf8)) }
                    log("\(name): stopped at step \(step)" + (checkpointPath.map { "; checkpoint written to \($0)" } ?? ""))
                    return .interrupted
                }
            }
        }
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        try finish()
        flush()
        try checkpoint()
        return .finished
    }

    /// Opens metrics.jsonl for appending, dropping lines past `step` (left by a run that went on
    /// after its last checkpoint).
    static func openMetrics(_ path: String, keepingStepsUpTo step: Int) throws -> FileHandle {
        let fm = FileManager.default
        if fm.fileExists(atPath: path) {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            var kept = [Substring]()
            for line in text.split(separator: "\n") {
                if let d = line.data(using: .utf8), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
                   let s = o["step"] as? Int, s <= step { kept.append(line) }
            }
            try Data(kept.map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: path))
        } else {
            _ = fm.createFile(atPath: path, contents: nil)
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw TrainError.config("cannot write \(path)") }
        h.seekToEndOfFile()
        return h
    }

    /// Seconds as `h:mm:ss` (an hour or more) or `m:ss`; "?" when not finite.
    public static func clock(_ s: Double) -> String {
        guard s.isFinite else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}
