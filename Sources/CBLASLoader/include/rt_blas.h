/* OpenBLAS, loaded at run time.
 *
 * Why not link it: OpenBLAS picks its kernels when it is loaded, and Debian's 0.3.21 does not
 * recognize recent Xeons (Sapphire Rapids) and falls back to its "Prescott" SSE3 kernels: 6x
 * slower sgemm. Its override, the OPENBLAS_CORETYPE environment variable, must be set before the
 * library initializes, which a linked library does before any of our code runs. So the first
 * BLAS call sets OPENBLAS_CORETYPE from the CPU's features (unless the user set it) and then
 * dlopen()s libopenblas. */
#ifndef REPTOK_RT_BLAS_H
#define REPTOK_RT_BLAS_H
#ifdef __cplusplus
extern "C" {
#endif

/* Row-major C = alpha * op(A) op(B) + beta * C. transA/transB: 0 or 1. */
void rt_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
void rt_blas_set_threads(int n);
/* 0 on success; else a message is available from rt_blas_error(). Called by the others. */
int rt_blas_load(void);
const char *rt_blas_error(void);
/* OpenBLAS's own configuration string (includes the kernel core it chose). */
const char *rt_blas_config(void);
/* The OPENBLAS_CORETYPE in effect ("" if none). */
const char *rt_blas_coretype(void);
/* LAPACK dsyevd of OpenBLAS: eigenvalues (ascending) into w[n] and eigenvectors of the symmetric
 * n x n matrix a (either triangle; row- and column-major agree) written over a, vector k in
 * a[k*n ... k*n+n-1]. Returns 0, LAPACK's info, or < -999 when the routine is unavailable. */
int rt_dsyevd(int n, double *a, double *w);

#ifdef __cplusplus
}
#endif
#endif
