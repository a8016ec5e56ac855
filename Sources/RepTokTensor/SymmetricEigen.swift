/// Eigenvalues and eigenvectors of a small symmetric matrix (float64, row-major n x n) by cyclic
/// Jacobi rotations: the one implementation behind the quantizer's PCA (`Quantizer.fit`) and the
/// Frechet distance's fallback when LAPACK is missing (`Frechet.eigen`, whose tests also use it
/// as the cross-check of dsyevd).
public enum SymmetricEigen {
    /// When the sweeps stop, and whether a rotated pair is set to exactly zero.
    public struct Schedule: Sendable {
        public enum Stop: Sendable {
            /// Stop when the squared off-diagonal mass (upper triangle) is below this value.
            case absolute(Double)
            /// Stop when it is at most this fraction of the squared Frobenius norm of the input.
            case relative(Double)
        }

        public var maxSweeps: Int
        public var stop: Stop
        /// Set each annihilated pair (p, q) to 0 rather than to its rounded rotated value.
        public var zeroRotated: Bool

        public init(maxSweeps: Int, stop: Stop, zeroRotated: Bool) {
            self.maxSweeps = maxSweeps; self.stop = stop; self.zeroRotated = zeroRotated
        }

        /// Up to 100 sweeps to a relative off-diagonal mass of 1e-30, rotated pairs zeroed.
        public static let standard = Schedule(maxSweeps: 100, stop: .relative(1e-30), zeroRotated: true)
    }

    /// (eigenvalues, eigenvectors as the columns of a row-major n x n matrix), unsorted.
    public static func jacobi(_ input: [Double], n: Int, _ schedule: Schedule = .standard)
        -> (values: [Double], vectors: [Double]) {
        precondition(input.count == n * n, "SymmetricEigen.jacobi: \(input.count) values for \(n)x\(n)")
        var a = input
        var v = [Double](repeating: 0, count: n * n)
        for i in 0..<n { v[i * n + i] = 1 }
        if n <= 1 { return (n == 1 ? [a[0]] : [], v) }
        var scale = 0.0
        for x in a { scale += x * x }
        if scale == 0 { return ([Double](repeating: 0, count: n), v) }
        a.withUnsafeMutableBufferPointer { A in
            v.withUnsafeMutableBufferPointer { V in
                for _ in 0..<schedule.maxSweeps {
                    var off = 0.0
                    for p in 0..<n { for q in (p + 1)..<n { off += A[p * n + q] * A[p * n + q] } }
                    switch schedule.stop {
                    case .absolute(let t): if off < t { return }
                    case .relative(let t): if off <= t * scale { return }
                    }
                    for p in 0..<(n - 1) {
                        for q in (p + 1)..<n {
                            let apq = A[p * n + q]
                            if abs(apq) < 1e-300 { continue }
                            let app = A[p * n + p], aqq = A[q * n + q]
                            let theta = (aqq - app) / (2 * apq)
                            let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                            let c = 1 / (t * t + 1).squareRoot(), s = t * c
                            // A <- J^T A J on rows/columns p and q.
                            for k in 0..<n {
                                let akp = A[k * n + p], akq = A[k * n + q]
                                A[k * n + p] = c * akp - s * akq
                                A[k * n + q] = s * akp + c * akq
                            }
                            for k in 0..<n {
                                let apk = A[p * n + k], aqk = A[q * n + k]
                                A[p * n + k] = c * apk - s * aqk
                                A[q * n + k] = s * apk + c * aqk
                            }
                            if schedule.zeroRotated { A[p * n + q] = 0; A[q * n + p] = 0 }
                            for k in 0..<n {
                                let vkp = V[k * n + p], vkq = V[k * n + q]
                                V[k * n + p] = c * vkp - s * vkq
                                V[k * n + q] = s * vkp + c * vkq
                            }
                        }
                    }
                }
            }
        }
        return ((0..<n).map { a[$0 * n + $0] }, v)
    }
}
