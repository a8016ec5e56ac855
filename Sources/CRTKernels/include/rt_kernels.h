/* reptok elementwise kernels: fp32, contiguous, row-major.
 * Each kernel exists as an x86-64 baseline build, an AVX2/FMA build (x86-64-v3) and an AVX-512
 * build (x86-64-v4); the loader picks one at run time (target_clones), so no compiler flag is
 * needed to build or use them.
 * Conventions: forward kernels write their outputs; backward kernels ACCUMULATE (+=) into
 * input and parameter gradients, so residual branches can share one gradient buffer.
 * Row kernels take [row0, row1) so callers can split rows across threads. */
#ifndef REPTOK_RT_KERNELS_H
#define REPTOK_RT_KERNELS_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if the running CPU has AVX2 and FMA (the fast clones are used), else 0. */
int rt_cpu_has_avx2_fma(void);

/* y[i] = a*x[i] + y[i] */
void rt_axpy(float *y, const float *x, float a, size_t n);
/* y[i] = x[i] + z[i] */
void rt_add(float *y, const float *x, const float *z, size_t n);
/* y[i] += x[i] */
void rt_acc(float *y, const float *x, size_t n);
/* y[i] *= a */
void rt_scale(float *y, float a, size_t n);
float rt_sum(const float *x, size_t n);
float rt_dot(const float *x, const float *y, size_t n);
double rt_sumsq_f64(const float *x, size_t n);

/* out[r, c] = x[r, c] + bias[c] for rows [r0, r1) of width C */
void rt_bias_add_rows(float *out, const float *x, const float *bias, size_t r0, size_t r1, size_t C);
/* dbias[c] += sum_r dout[r, c] for rows [r0, r1) */
void rt_bias_grad_rows(float *dbias, const float *dout, size_t r0, size_t r1, size_t C);

/* LayerNorm over the last dim C. w, b may be NULL (no affine). mean, rstd: one per row. */
void rt_layernorm_fwd(float *out, float *mean, float *rstd, const float *x, const float *w,
                      const float *b, size_t r0, size_t r1, size_t C, float eps);
/* dx += ...; dw, db += ... (dw, db may be NULL: skipped) */
void rt_layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x,
                      const float *mean, const float *rstd, const float *w,
                      size_t r0, size_t r1, size_t C);
/* RMSNorm: out = x * rstd * w (w may be NULL) */
void rt_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w,
                    size_t r0, size_t r1, size_t C, float eps);
void rt_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *rstd,
                    const float *w, size_t r0, size_t r1, size_t C);

/* exact (erf) GELU and SiLU; bwd: dx += dout * f'(x) */
void rt_gelu_fwd(float *out, const float *x, size_t n);
void rt_gelu_bwd(float *dx, const float *dout, const float *x, size_t n);
void rt_silu_fwd(float *out, const float *x, size_t n);
void rt_silu_bwd(float *dx, const float *dout, const float *x, size_t n);

/* Row softmax of x*scale, in place allowed (out may equal x). */
void rt_softmax_rows(float *out, const float *x, float scale, size_t r0, size_t r1, size_t C);
/* dx = scale * p * (dp - sum(dp*p)) per row; WRITES dx (dx may alias dp). */
void rt_softmax_bwd_rows(float *dx, const float *p, const float *dp, float scale,
                         size_t r0, size_t r1, size_t C);

/* Adaptive modulation, per sample b over T tokens of width C:
 * out[b,t,c] = x[b,t,c] * (1 + scale[b*sstride + c]) + shift[b*sstride + c] */
void rt_modulate_fwd(float *out, const float *x, const float *shift, const float *scale,
                     size_t sstride, size_t B, size_t T, size_t C);
/* dx += dout*(1+scale); dshift[b,c] += sum_t dout; dscale[b,c] += sum_t dout*x */
void rt_modulate_bwd(float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                     const float *scale, size_t sstride, size_t B, size_t T, size_t C);
/* Gated residual: h[b,t,c] += gate[b*gstride + c] * y[b,t,c] */
void rt_gate_add_fwd(float *h, const float *y, const float *gate, size_t gstride,
                     size_t B, size_t T, size_t C);
/* dy += dh*gate; dgate[b,c] += sum_t dh*y */
void rt_gate_add_bwd(float *dy, float *dgate, const float *dh, const float *y, const float *gate,
                     size_t gstride, size_t B, size_t T, size_t C);
/* LayerScale: out[r,c] = x[r,c]*g[c]; bwd: dx += dout*g, dg += sum_r dout*x */
void rt_colscale_fwd(float *out, const float *x, const float *g, size_t R, size_t C);
void rt_colscale_bwd(float *dx, float *dg, const float *dout, const float *x, const float *g,
                     size_t R, size_t C);

/* AdamW step over n values (bias-corrected lr folded in by the caller):
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * (m/bc1 / (sqrt(v/bc2) + eps) + wd p) */
void rt_adamw(float *p, float *m, float *v, const float *g, size_t n, float lr, float b1, float b2,
              float bc1, float bc2, float eps, float wd);

/* float <-> 16-bit formats (round to nearest even) */
void rt_f32_to_f16(uint16_t *dst, const float *src, size_t n);
void rt_f16_to_f32(float *dst, const uint16_t *src, size_t n);
void rt_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
void rt_bf16_to_f32(float *dst, const uint16_t *src, size_t n);

/* Vectorizable exp/erf used by the kernels, exported for tests. */
float rt_expf(float x);
float rt_erff(float x);

/* Products against a pre-packed weight (the inference path of linear layers; AVX2/FMA only:
 * call only when rt_cpu_has_avx2_fma() is 1; other builds leave C untouched).
 * rt_gemm_pack: W [N, K] (row stride ldw) -> rt_gemm_packed_floats(N, K) floats at dst, which must
 * be 32-byte aligned. rt_gemm_packed: C[m, n] = act(bias[n] + sum_k X[m, k] W[n, k]) for rows
 * [m0, m1) and the output columns of panels [p0, p1) (panel p = columns 16p .. 16p+15); bias may
 * be NULL; act 0 = none, 1 = GELU (erf). Each element's result is the same whatever row and panel
 * ranges the calls cover, so callers may split either across threads. */
size_t rt_gemm_packed_floats(size_t N, size_t K);
void rt_gemm_pack(float *dst, const float *w, size_t N, size_t K, size_t ldw);
/* The same packing from the transposed matrix: W[n, k] = wt[k * ldwt + n] (wt is [K, N]). */
void rt_gemm_pack_t(float *dst, const float *wt, size_t N, size_t K, size_t ldwt);
void rt_gemm_packed(float *C, size_t ldc, const float *X, size_t ldx, const float *Wp, const float *bias,
                    size_t N, size_t K, size_t m0, size_t m1, size_t p0, size_t p1, int act);

#ifdef __cplusplus
}
#endif
#endif
