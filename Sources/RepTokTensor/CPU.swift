import CRTKernels

public enum CPU {
    /// Whether the AVX2/FMA clones of the elementwise kernels run on this CPU.
    public static let hasAVX2FMA: Bool = rt_cpu_has_avx2_fma() != 0
}
