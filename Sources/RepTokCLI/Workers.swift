// -j N: N images at a time, each worker's engine loops on cores / N threads, so the total never
// exceeds the cores. Inference reads the model and touches no shared state, so workers share
// one CodecModel.

import Foundation
import RepTokTensor

public enum Workers {
    /// The cores the engine may use ($REPTOK_THREADS, else all), as read at start-up.
    public static let cores: Int = Engine.threads

    /// Effective worker count for `requested` (-j; 0 = one per core) and `count` items.
    public static func count(requested: Int, items: Int) -> Int {
        let n = requested == 0 ? cores : requested
        return max(1, min(n, items))
    }

    /// Runs `body(i)` for every i in 0..<items on `workers` threads (inline when 1), after
    /// giving the engine max(1, cores / workers) threads.
    public static func run(items: Int, workers: Int, _ body: @escaping @Sendable (Int) -> Void) {
        guard items > 0 else { return }
        if workers <= 1 {
            for i in 0..<items { body(i) }
            return
        }
        Engine.setThreads(max(1, cores / workers))
        let next = Counter()
        let group = DispatchGroup()
        for _ in 0..<workers {
            group.enter()
            let t = Thread {
                while let i = next.take(below: items) { body(i) }
                group.leave()
            }
            t.stackSize = 8 << 20
            t.start()
        }
        group.wait()
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    func take(below limit: Int) -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard value < limit else { return nil }
        value += 1
        return value - 1
    }
}
