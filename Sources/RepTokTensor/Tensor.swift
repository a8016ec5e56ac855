import Foundation

/// A dense fp32 tensor: contiguous, row-major, 64-byte aligned, reference semantics.
///
/// Storage comes from a small size-keyed pool, so the many same-sized activations of a training
/// loop reuse memory instead of faulting in fresh pages every step.
public final class Tensor {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>

    /// A tensor of zeros.
    public init(_ shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = TensorPool.shared.take(count)
        data.initialize(repeating: 0, count: count)
    }

    /// A tensor whose contents are left as found (callers must write every element).
    public init(uninitialized shape: [Int]) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = TensorPool.shared.take(count)
    }

    public convenience init(_ shape: [Int], _ values: [Float]) {
        self.init(uninitialized: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    public convenience init(_ shape: [Int], repeating v: Float) {
        self.init(uninitialized: shape)
        data.update(repeating: v, count: count)
    }

    deinit { TensorPool.shared.give(data, count) }

    public var rank: Int { shape.count }
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: data, count: count) }

    public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    public func zero() { data.update(repeating: 0, count: count) }
    public func fill(_ v: Float) { data.update(repeating: v, count: count) }

    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy: \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    public func clone() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Same storage order, new shape (copies: tensors own their storage).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let t = Tensor(uninitialized: newShape)
        precondition(t.count == count, "reshape \(shape) -> \(newShape)")
        t.data.update(from: data, count: count)
        return t
    }

    /// Rows [r0, r1) of a tensor viewed as [rows, count/rows], copied.
    public func rows(_ r0: Int, _ r1: Int, width: Int) -> Tensor {
        let t = Tensor(uninitialized: [r1 - r0, width])
        t.data.update(from: data + r0 * width, count: (r1 - r0) * width)
        return t
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = (0..<min(count, 6)).map { String(format: "%.4g", data[$0]) }.joined(separator: ", ")
        return "Tensor\(shape)[\(head)\(count > 6 ? ", ..." : "")]"
    }
}

/// Reuses freed tensor storage by exact element count. Bounded, thread-safe.
final class TensorPool: @unchecked Sendable {
    static let shared = TensorPool()
    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var cachedBytes = 0
    private let limitBytes = 2 << 30
    private let lock = NSLock()

    func take(_ n: Int) -> UnsafeMutablePointer<Float> {
        let n1 = max(n, 1)
        lock.lock()
        if var list = free[n1], let p = list.popLast() {
            free[n1] = list
            cachedBytes -= n1 * 4
            lock.unlock()
            return p
        }
        lock.unlock()
        guard let raw = aligned_alloc_or_nil(bytes: n1 * 4) else {
            fatalError("out of memory allocating \(n1 * 4) bytes")
        }
        return raw.bindMemory(to: Float.self, capacity: n1)
    }

    func give(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
        let n1 = max(n, 1)
        lock.lock()
        if cachedBytes + n1 * 4 <= limitBytes {
            free[n1, default: []].append(p)
            cachedBytes += n1 * 4
            lock.unlock()
            return
        }
        lock.unlock()
        free_raw(UnsafeMutableRawPointer(p))
    }

    /// Releases every cached buffer (for long-lived processes between phases).
    func drain() {
        lock.lock()
        let all = free.values.flatMap { $0 }
        free.removeAll()
        cachedBytes = 0
        lock.unlock()
        for p in all { free_raw(UnsafeMutableRawPointer(p)) }
    }
}

@inline(__always) private func aligned_alloc_or_nil(bytes: Int) -> UnsafeMutableRawPointer? {
    var p: UnsafeMutableRawPointer?
    let rc = posix_memalign(&p, 64, max(bytes, 64))
    return rc == 0 ? p : nil
}

@inline(__always) private func free_raw(_ p: UnsafeMutableRawPointer) { Foundation.free(p) }
