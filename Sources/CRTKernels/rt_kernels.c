/* reptok elementwise kernels. See include/rt_kernels.h for the contracts.
 * Reassociation is allowed so reductions vectorize; results are still deterministic for a given
 * CPU level and input, because the loop structure never depends on the thread count. */
#include "rt_kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#pragma clang fp reassociate(on) contract(fast)

#if defined(__x86_64__) && defined(__clang__)
#define RT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RT_CLONES
#endif
#define RT_INLINE static inline __attribute__((always_inline))

int rt_cpu_has_avx2_fma(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

RT_INLINE float bits_to_float(int32_t i) { float f; memcpy(&f, &i, 4); return f; }

/* Cephes-style expf: range reduction by ln2, degree-6 polynomial, exponent by bit shift.
 * Relative error about 2 ulp on [-87, 88]; inputs are clamped to that range. */
RT_INLINE float exp_inl(float x) {
    /* Below -86 the result would be (near) subnormal, and subnormal arithmetic is ~100x slower
     * on x86: return 0 there (softmax tails and GELU's exp(-x^2/2) lose nothing). */
    float under = x < -86.0f ? 0.0f : 1.0f;
    x = x < -86.0f ? -86.0f : (x > 88.0f ? 88.0f : x);
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float z = r * r;
    float y = (((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r
                + 4.1665795894E-2f) * r + 1.6666665459E-1f) * r + 5.0000001201E-1f) * z + r + 1.0f;
    return y * bits_to_float(((int32_t)n + 127) << 23) * under;
}

/* Max of a row; 16 independent lanes so the compiler vectorizes it (a single running max is a
 * dependent chain of selects it will not reorder). */
RT_INLINE float row_max(const float *x, size_t C) {
    float m[16];
    for (int j = 0; j < 16; j++) m[j] = -INFINITY;
    size_t c = 0;
    for (; c + 16 <= C; c += 16)
        for (int j = 0; j < 16; j++) m[j] = x[c + j] > m[j] ? x[c + j] : m[j];
    float mx = -INFINITY;
    for (int j = 0; j < 16; j++) mx = m[j] > mx ? m[j] : mx;
    for (; c < C; c++) mx = x[c] > mx ? x[c] : mx;
    return mx;
}

/* erf: for |x| < 1 its Taylor series through x^23 (truncation < 2e-9; no cancellation), else
 * Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7, and fp32 evaluation stays within that
 * away from 0). Both are computed and one selected, so the loop stays branch-free and vectorizes. */
RT_INLINE float erf_inl(float x) {
    float ax = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t
                  + 0.254829592f) * t;
    float far = copysignf(1.0f - poly * exp_inl(-ax * ax), x);
    float z = x * x;
    float s = -1.0f / 39916800.0f / 23.0f;           /* (-1)^n / (n! (2n+1)), n = 11 .. 0 */
    s = s * z + 1.0f / 3628800.0f / 21.0f;
    s = s * z - 1.0f / 362880.0f / 19.0f;
    s = s * z + 1.0f / 40320.0f / 17.0f;
    s = s * z - 1.0f / 5040.0f / 15.0f;
    s = s * z + 1.0f / 720.0f / 13.0f;
    s = s * z - 1.0f / 120.0f / 11.0f;
    s = s * z + 1.0f / 24.0f / 9.0f;
    s = s * z - 1.0f / 6.0f / 7.0f;
    s = s * z + 1.0f / 2.0f / 5.0f;
    s = s * z - 1.0f / 3.0f;
    s = s * z + 1.0f;
    float near = x * 1.1283791671f * s;
    return ax < 1.0f ? near : far;
}

float rt_expf(float x) { return exp_inl(x); }
float rt_erff(float x) { return erf_inl(x); }

RT_CLONES void rt_axpy(float *y, const float *x, float a, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}
RT_CLONES void rt_add(float *y, const float *x, const float *z, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] + z[i];
}
RT_CLONES void rt_acc(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
RT_CLONES void rt_scale(float *y, float a, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] *= a;
}
RT_CLONES float rt_sum(const float *x, size_t n) {
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}
RT_CLONES float rt_dot(const float *x, const float *y, size_t n) {
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}
RT_CLONES double rt_sumsq_f64(const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

RT_CLONES void rt_bias_add_rows(float *out, const float *x, const float *bias, size_t r0, size_t r1, size_t C) {
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + r * C; float *o = out + r * C;
        for (size_t c = 0; c < C; c++) o[c] = xr[c] + bias[c];
    }
}
RT_CLONES void rt_bias_grad_rows(float *dbias, const float *dout, size_t r0, size_t r1, size_t C) {
    for (size_t r = r0; r < r1; r++) {
        const float *d = dout + r * C;
        for (size_t c = 0; c < C; c++) dbias[c] += d[c];
    }
}

RT_CLONES void rt_layernorm_fwd(float *out, float *mean, float *rstd, const float *x, const float *w,
                                const float *b, size_t r0, size_t r1, size_t C, float eps) {
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + r * C; float *o = out + r * C;
        float m = 0.0f;
        for (size_t c = 0; c < C; c++) m += xr[c];
        m /= (float)C;
        float v = 0.0f;
        for (size_t c = 0; c < C; c++) { float d = xr[c] - m; v += d * d; }
        v /= (float)C;
        float s = 1.0f / sqrtf(v + eps);
        if (w && b) { for (size_t c = 0; c < C; c++) o[c] = (xr[c] - m) * s * w[c] + b[c]; }
        else if (w) { for (size_t c = 0; c < C; c++) o[c] = (xr[c] - m) * s * w[c]; }
        else        { for (size_t c = 0; c < C; c++) o[c] = (xr[c] - m) * s; }
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = s;
    }
}

RT_CLONES void rt_layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x,
                                const float *mean, const float *rstd, const float *w,
                                size_t r0, size_t r1, size_t C) {
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + r * C; const float *d = dout + r * C; float *dxr = dx + r * C;
        float m = mean[r], s = rstd[r];
        /* dnorm = dout * w; dx = s * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) */
        float a = 0.0f, bsum = 0.0f;
        if (w) {
            for (size_t c = 0; c < C; c++) {
                float xh = (xr[c] - m) * s, dn = d[c] * w[c];
                a += dn; bsum += dn * xh;
            }
        } else {
            for (size_t c = 0; c < C; c++) { float xh = (xr[c] - m) * s; a += d[c]; bsum += d[c] * xh; }
        }
        a /= (float)C; bsum /= (float)C;
        if (w) {
            for (size_t c = 0; c < C; c++) {
                float xh = (xr[c] - m) * s;
                dxr[c] += s * (d[c] * w[c] - a - xh * bsum);
            }
            if (dw) for (size_t c = 0; c < C; c++) dw[c] += d[c] * (xr[c] - m) * s;
            if (db) for (size_t c = 0; c < C; c++) db[c] += d[c];
        } else {
            for (size_t c = 0; c < C; c++) {
                float xh = (xr[c] - m) * s;
                dxr[c] += s * (d[c] - a - xh * bsum);
            }
        }
    }
}

RT_CLONES void rt_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w,
                              size_t r0, size_t r1, size_t C, float eps) {
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + r * C; float *o = out + r * C;
        float ss = 0.0f;
        for (size_t c = 0; c < C; c++) ss += xr[c] * xr[c];
        float s = 1.0f / sqrtf(ss / (float)C + eps);
        if (w) { for (size_t c = 0; c < C; c++) o[c] = xr[c] * s * w[c]; }
        else   { for (size_t c = 0; c < C; c++) o[c] = xr[c] * s; }
        if (rstd) rstd[r] = s;
    }
}

RT_CLONES void rt_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *rstd,
                              const float *w, size_t r0, size_t r1, size_t C) {
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + r * C; const float *d = dout + r * C; float *dxr = dx + r * C;
        float s = rstd[r];
        /* y = x s w; dx = s*(dn - xhat * mean(dn * xhat)), xhat = x s, dn = d w */
        float bsum = 0.0f;
        if (w) { for (size_t c = 0; c < C; c++) bsum += d[c] * w[c] * xr[c] * s; }
        else   { for (size_t c = 0; c < C; c++) bsum += d[c] * xr[c] * s; }
        bsum /= (float)C;
        if (w) {
            for (size_t c = 0; c < C; c++) {
                float xh = xr[c] * s;
                dxr[c] += s * (d[c] * w[c] - xh * bsum);
            }
            if (dw) for (size_t c = 0; c < C; c++) dw[c] += d[c] * xr[c] * s;
        } else {
            for (size_t c = 0; c < C; c++) dxr[c] += s * (d[c] - xr[c] * s * bsum);
        }
    }
}

#define RT_SQRT1_2 0.70710678118654752f
#define RT_INV_SQRT_2PI 0.39894228040143268f

RT_CLONES void rt_gelu_fwd(float *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + erf_inl(x[i] * RT_SQRT1_2));
}
RT_CLONES void rt_gelu_bwd(float *dx, const float *dout, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erf_inl(v * RT_SQRT1_2));
        float pdf = RT_INV_SQRT_2PI * exp_inl(-0.5f * v * v);
        dx[i] += dout[i] * (cdf + v * pdf);
    }
}
RT_CLONES void rt_silu_fwd(float *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = x[i] / (1.0f + exp_inl(-x[i]));
}
RT_CLONES void rt_silu_bwd(float *dx, const float *dout, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + exp_inl(-x[i]));
        dx[i] += dout[i] * sg * (1.0f + x[i] * (1.0f - sg));
    }
}

RT_CLONES void rt_softmax_rows(float *out, const float *x, float scale, size_t r0, size_t r1, size_t C) {
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + r * C; float *o = out + r * C;
        float mx = row_max(xr, C);
        float s = 0.0f;
        /* In place gets its own loop: with out == x the vectorizer's overlap check would fail and
         * fall back to scalar code. */
        if (o == xr) { for (size_t c = 0; c < C; c++) { float e = exp_inl((o[c] - mx) * scale); o[c] = e; s += e; } }
        else         { for (size_t c = 0; c < C; c++) { float e = exp_inl((xr[c] - mx) * scale); o[c] = e; s += e; } }
        float inv = 1.0f / s;
        for (size_t c = 0; c < C; c++) o[c] *= inv;
    }
}
RT_CLONES void rt_softmax_bwd_rows(float *dx, const float *p, const float *dp, float scale,
                                   size_t r0, size_t r1, size_t C) {
    for (size_t r = r0; r < r1; r++) {
        const float *pr = p + r * C; const float *dr = dp + r * C; float *o = dx + r * C;
        float s = 0.0f;
        for (size_t c = 0; c < C; c++) s += pr[c] * dr[c];
        if (o == dr) { for (size_t c = 0; c < C; c++) o[c] = scale * pr[c] * (o[c] - s); }
        else         { for (size_t c = 0; c < C; c++) o[c] = scale * pr[c] * (dr[c] - s); }
    }
}

RT_CLONES void rt_modulate_fwd(float *out, const float *x, const float *shift, const float *scale,
                               size_t sstride, size_t B, size_t T, size_t C) {
    for (size_t b = 0; b < B; b++) {
        const float *sh = shift + b * sstride, *sc = scale + b * sstride;
        for (size_t t = 0; t < T; t++) {
            const float *xr = x + (b * T + t) * C; float *o = out + (b * T + t) * C;
            for (size_t c = 0; c < C; c++) o[c] = xr[c] * (1.0f + sc[c]) + sh[c];
        }
    }
}
RT_CLONES void rt_modulate_bwd(float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                               const float *scale, size_t sstride, size_t B, size_t T, size_t C) {
    for (size_t b = 0; b < B; b++) {
        const float *sc = scale + b * sstride;
        float *dsh = dshift + b * sstride, *dsc = dscale + b * sstride;
        for (size_t t = 0; t < T; t++) {
            const float *xr = x + (b * T + t) * C, *d = dout + (b * T + t) * C;
            float *dxr = dx + (b * T + t) * C;
            for (size_t c = 0; c < C; c++) {
                dxr[c] += d[c] * (1.0f + sc[c]);
                dsh[c] += d[c];
                dsc[c] += d[c] * xr[c];
            }
        }
    }
}
RT_CLONES void rt_gate_add_fwd(float *h, const float *y, const float *gate, size_t gstride,
                               size_t B, size_t T, size_t C) {
    for (size_t b = 0; b < B; b++) {
        const float *g = gate + b * gstride;
        for (size_t t = 0; t < T; t++) {
            float *hr = h + (b * T + t) * C; const float *yr = y + (b * T + t) * C;
            for (size_t c = 0; c < C; c++) hr[c] += g[c] * yr[c];
        }
    }
}
RT_CLONES void rt_gate_add_bwd(float *dy, float *dgate, const float *dh, const float *y, const float *gate,
                               size_t gstride, size_t B, size_t T, size_t C) {
    for (size_t b = 0; b < B; b++) {
        const float *g = gate + b * gstride; float *dg = dgate + b * gstride;
        for (size_t t = 0; t < T; t++) {
            const float *d = dh + (b * T + t) * C, *yr = y + (b * T + t) * C;
            float *dyr = dy + (b * T + t) * C;
            for (size_t c = 0; c < C; c++) { dyr[c] += d[c] * g[c]; dg[c] += d[c] * yr[c]; }
        }
    }
}
RT_CLONES void rt_colscale_fwd(float *out, const float *x, const float *g, size_t R, size_t C) {
    for (size_t r = 0; r < R; r++) {
        const float *xr = x + r * C; float *o = out + r * C;
        for (size_t c = 0; c < C; c++) o[c] = xr[c] * g[c];
    }
}
RT_CLONES void rt_colscale_bwd(float *dx, float *dg, const float *dout, const float *x, const float *g,
                               size_t R, size_t C) {
    for (size_t r = 0; r < R; r++) {
        const float *xr = x + r * C, *d = dout + r * C; float *dxr = dx + r * C;
        for (size_t c = 0; c < C; c++) { dxr[c] += d[c] * g[c]; dg[c] += d[c] * xr[c]; }
    }
}

RT_CLONES void rt_adamw(float *p, float *m, float *v, const float *g, size_t n, float lr, float b1, float b2,
                        float bc1, float bc2, float eps, float wd) {
    float ib1 = 1.0f / bc1, ib2 = 1.0f / bc2;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi; v[i] = vi;
        p[i] -= lr * ((mi * ib1) / (sqrtf(vi * ib2) + eps) + wd * p[i]);
    }
}
/* IEEE half <-> float, round to nearest even, with subnormals, inf and NaN. */
static uint16_t f32_to_f16_one(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mant = x & 0x7fffffu;
    int32_t exp = (int32_t)((x >> 23) & 0xffu);
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0u));
    int32_t e = exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;  /* may carry into exponent: correct */
    return (uint16_t)(sign | h);
}
static float f16_to_f32_one(uint16_t h) {
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, x;
    if (exp == 0) {
        if (mant == 0) x = sign;
        else {
            int32_t e = -1;
            do { mant <<= 1; e++; } while (!(mant & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) x = sign | 0x7f800000u | (mant << 13);
    else x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    float f; memcpy(&f, &x, 4); return f;
}
void rt_f32_to_f16(uint16_t *dst, const float *src, size_t n) { for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16_one(src[i]); }
void rt_f16_to_f32(float *dst, const uint16_t *src, size_t n) { for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32_one(src[i]); }
void rt_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t x; memcpy(&x, &src[i], 4);
        if ((x & 0x7fffffffu) > 0x7f800000u) { dst[i] = (uint16_t)((x >> 16) | 0x40u); continue; }
        x += 0x7fffu + ((x >> 16) & 1u);
        dst[i] = (uint16_t)(x >> 16);
    }
}
void rt_bf16_to_f32(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) { uint32_t x = (uint32_t)src[i] << 16; memcpy(&dst[i], &x, 4); }
}

/* ---- Products against a pre-packed weight (inference) ------------------------------------
 * C[m, n] = act(bias[n] + sum_k X[m, k] W[n, k]) with W packed once into panels of 16 output
 * columns: panel p holds W[16p .. 16p+15, k] for k = 0 .. K-1, 16 floats per k, zero-padded.
 * A 6x16 register tile runs one FMA chain per element over k = 0 .. K-1 in order, starting from
 * the bias; K is cut in blocks of RT_KC, and each block resumes the chain from the stored
 * partial sums, so every element gets the same operations whatever the blocking, the row range
 * or the panel range a call covers: splitting the rows or panels across threads cannot change a
 * bit. Only the AVX2/FMA build exists; callers check rt_cpu_has_avx2_fma() first. */
#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#define RT_GEMM_KC 256
#define RT_GEMM_MB 96

size_t rt_gemm_packed_floats(size_t N, size_t K) { return (N + 15) / 16 * 16 * K; }

void rt_gemm_pack_t(float *dst, const float *wt, size_t N, size_t K, size_t ldwt) {
    size_t panels = (N + 15) / 16;
    for (size_t p = 0; p < panels; p++) {
        float *d = dst + p * 16 * K;
        size_t n0 = p * 16, cols = N - n0 < 16 ? N - n0 : 16;
        for (size_t k = 0; k < K; k++) {
            const float *src = wt + k * ldwt + n0;
            for (size_t j = 0; j < cols; j++) d[k * 16 + j] = src[j];
            for (size_t j = cols; j < 16; j++) d[k * 16 + j] = 0.0f;
        }
    }
}

void rt_gemm_pack(float *dst, const float *w, size_t N, size_t K, size_t ldw) {
    size_t panels = (N + 15) / 16;
    for (size_t p = 0; p < panels; p++) {
        float *d = dst + p * 16 * K;
        for (size_t j = 0; j < 16; j++) {
            size_t n = p * 16 + j;
            if (n < N) { const float *wr = w + n * ldw; for (size_t k = 0; k < K; k++) d[k * 16 + j] = wr[k]; }
            else       { for (size_t k = 0; k < K; k++) d[k * 16 + j] = 0.0f; }
        }
    }
}

/* exp_inl on 8 lanes (the same formula and constants). */
__attribute__((target("avx2,fma")))
static inline __m256 exp8(__m256 x) {
    __m256 under = _mm256_blendv_ps(_mm256_set1_ps(1.0f), _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(-86.0f), _CMP_LT_OQ));
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-86.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 z = _mm256_mul_ps(r, r);
    __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500E-4f), r, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_add_ps(_mm256_fmadd_ps(y, z, r), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), under);
}

/* GELU(x) = x/2 (1 + erf(x / sqrt 2)) with erf from Abramowitz & Stegun 7.1.26 on the whole
 * line (|error| <= 1.5e-7, which rt_gelu_fwd uses for |x / sqrt 2| >= 1; it switches to a series
 * below). 1 + erf(u) is formed without cancellation: q = t P(t) exp(-u^2) is erfc(|u|), so
 * 1 + erf(u) = 2 - q for u >= 0 and q for u < 0. The reciprocal is rcp plus one Newton step. */
__attribute__((target("avx2,fma")))
static inline __m256 gelu8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 u = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
    __m256 au = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u);
    __m256 d = _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), au, one);
    __m256 t = _mm256_rcp_ps(d);
    t = _mm256_mul_ps(t, _mm256_fnmadd_ps(d, t, _mm256_set1_ps(2.0f)));
    __m256 poly = _mm256_fmadd_ps(_mm256_set1_ps(1.061405429f), t, _mm256_set1_ps(-1.453152027f));
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(1.421413741f));
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-0.284496736f));
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(0.254829592f));
    poly = _mm256_mul_ps(poly, t);
    __m256 q = _mm256_mul_ps(poly, exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), au), au)));
    __m256 onePlusErf = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.0f), q), q, u);  /* sign bit of u picks q */
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), onePlusErf);
}

__attribute__((target("avx2,fma")))
static void gelu_row(float *x, size_t n) {  /* gelu8 on a row of any length (the K = 0 case) */
    for (size_t i = 0; i < n; i += 8) {
        float t[8] = {0};
        size_t m = n - i < 8 ? n - i : 8;
        for (size_t j = 0; j < m; j++) t[j] = x[i + j];
        _mm256_storeu_ps(t, gelu8(_mm256_loadu_ps(t)));
        for (size_t j = 0; j < m; j++) x[i + j] = t[j];
    }
}

/* One 6x16 tile over k in [0, kc): a = the tile's packed rows (6 floats per k, rows past the
 * matrix are zeros), b = the panel (16 floats per k), both already at the block's first k.
 * init: 1 = start from bias16, 0 = resume from c; act 1: GELU on the sums before the store.
 * rows/cols < 6/16 go through a local tile so nothing outside C is touched (the padded rows of
 * a are zeros, and each row's chain is the same as in a full tile). */
__attribute__((target("avx2,fma")))
static void gemm_tile(size_t kc, const float *a, const float *b, float *c, size_t ldc,
                      int init, const float *bias16, int rows, int cols, int act) {
    float tmp[6 * 16];
    float *dst = c; size_t ld = ldc;
    int partial = rows < 6 || cols < 16;
    if (partial) {
        dst = tmp; ld = 16;
        if (!init) for (int r = 0; r < rows; r++) for (int j = 0; j < cols; j++) tmp[r * 16 + j] = c[r * ldc + j];
    }
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (init) {
        c00 = _mm256_loadu_ps(bias16); c01 = _mm256_loadu_ps(bias16 + 8);
        c10 = c00; c11 = c01; c20 = c00; c21 = c01; c30 = c00; c31 = c01; c40 = c00; c41 = c01; c50 = c00; c51 = c01;
    } else {
        c00 = _mm256_loadu_ps(dst + 0 * ld); c01 = _mm256_loadu_ps(dst + 0 * ld + 8);
        c10 = _mm256_loadu_ps(dst + 1 * ld); c11 = _mm256_loadu_ps(dst + 1 * ld + 8);
        c20 = _mm256_loadu_ps(dst + 2 * ld); c21 = _mm256_loadu_ps(dst + 2 * ld + 8);
        c30 = _mm256_loadu_ps(dst + 3 * ld); c31 = _mm256_loadu_ps(dst + 3 * ld + 8);
        c40 = _mm256_loadu_ps(dst + 4 * ld); c41 = _mm256_loadu_ps(dst + 4 * ld + 8);
        c50 = _mm256_loadu_ps(dst + 5 * ld); c51 = _mm256_loadu_ps(dst + 5 * ld + 8);
    }
#pragma clang loop unroll_count(4)
    for (size_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b + 16 * k), b1 = _mm256_load_ps(b + 16 * k + 8), v;
        const float *ak = a + 6 * k;
        v = _mm256_broadcast_ss(ak + 0); c00 = _mm256_fmadd_ps(v, b0, c00); c01 = _mm256_fmadd_ps(v, b1, c01);
        v = _mm256_broadcast_ss(ak + 1); c10 = _mm256_fmadd_ps(v, b0, c10); c11 = _mm256_fmadd_ps(v, b1, c11);
        v = _mm256_broadcast_ss(ak + 2); c20 = _mm256_fmadd_ps(v, b0, c20); c21 = _mm256_fmadd_ps(v, b1, c21);
        v = _mm256_broadcast_ss(ak + 3); c30 = _mm256_fmadd_ps(v, b0, c30); c31 = _mm256_fmadd_ps(v, b1, c31);
        v = _mm256_broadcast_ss(ak + 4); c40 = _mm256_fmadd_ps(v, b0, c40); c41 = _mm256_fmadd_ps(v, b1, c41);
        v = _mm256_broadcast_ss(ak + 5); c50 = _mm256_fmadd_ps(v, b0, c50); c51 = _mm256_fmadd_ps(v, b1, c51);
    }
    _mm256_storeu_ps(dst + 0 * ld, c00); _mm256_storeu_ps(dst + 0 * ld + 8, c01);
    _mm256_storeu_ps(dst + 1 * ld, c10); _mm256_storeu_ps(dst + 1 * ld + 8, c11);
    _mm256_storeu_ps(dst + 2 * ld, c20); _mm256_storeu_ps(dst + 2 * ld + 8, c21);
    _mm256_storeu_ps(dst + 3 * ld, c30); _mm256_storeu_ps(dst + 3 * ld + 8, c31);
    _mm256_storeu_ps(dst + 4 * ld, c40); _mm256_storeu_ps(dst + 4 * ld + 8, c41);
    _mm256_storeu_ps(dst + 5 * ld, c50); _mm256_storeu_ps(dst + 5 * ld + 8, c51);
    if (act == 1)  /* from L1, after the stores: applied to the 12 live sums it would spill them */
        for (int r = 0; r < 6; r++) {
            _mm256_storeu_ps(dst + r * ld, gelu8(_mm256_loadu_ps(dst + r * ld)));
            _mm256_storeu_ps(dst + r * ld + 8, gelu8(_mm256_loadu_ps(dst + r * ld + 8)));
        }
    if (partial) for (int r = 0; r < rows; r++) for (int j = 0; j < cols; j++) c[r * ldc + j] = tmp[r * 16 + j];
}

/* Rows [r0, r1) (at most RT_GEMM_MB) x columns [k0, k0+kc) of X, as tiles of 6 rows, k-major
 * inside a tile (6 floats per k); a last short tile is zero-padded. */
static void pack_rows(float *dst, const float *X, size_t ldx, size_t r0, size_t r1, size_t k0, size_t kc) {
    for (size_t t = r0; t < r1; t += 6) {
        float *d = dst + (t - r0) * kc;
        size_t rows = r1 - t < 6 ? r1 - t : 6;
        if (rows == 6) {
            const float *x0 = X + t * ldx + k0, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx, *x4 = x3 + ldx, *x5 = x4 + ldx;
            for (size_t k = 0; k < kc; k++) {
                d[6 * k] = x0[k]; d[6 * k + 1] = x1[k]; d[6 * k + 2] = x2[k];
                d[6 * k + 3] = x3[k]; d[6 * k + 4] = x4[k]; d[6 * k + 5] = x5[k];
            }
        } else {
            for (size_t i = 0; i < 6; i++) {
                if (i < rows) { const float *x = X + (t + i) * ldx + k0; for (size_t k = 0; k < kc; k++) d[k * 6 + i] = x[k]; }
                else          { for (size_t k = 0; k < kc; k++) d[k * 6 + i] = 0.0f; }
            }
        }
    }
}

void rt_gemm_packed(float *C, size_t ldc, const float *X, size_t ldx, const float *Wp, const float *bias,
                    size_t N, size_t K, size_t m0, size_t m1, size_t p0, size_t p1, int act) {
    size_t panels = (N + 15) / 16;
    if (p1 > panels) p1 = panels;
    if (m0 >= m1 || p0 >= p1) return;
    if (K == 0) {  /* empty sum: bias (or 0), then the activation */
        size_t n0 = p0 * 16, n1 = p1 * 16 < N ? p1 * 16 : N;
        for (size_t m = m0; m < m1; m++) {
            for (size_t n = n0; n < n1; n++) C[m * ldc + n] = bias ? bias[n] : 0.0f;
            if (act == 1) gelu_row(C + m * ldc + n0, n1 - n0);
        }
        return;
    }
    /* The packed rows of one block: 96 x 256 floats (96 KiB, L2-resident), one per thread. */
    static __thread float *abuf;
    if (!abuf) {
        abuf = aligned_alloc(64, sizeof(float) * RT_GEMM_MB * RT_GEMM_KC);
        if (!abuf) abort();
    }
    float bias16[16];
    for (size_t mb = m0; mb < m1; mb += RT_GEMM_MB) {
        size_t me = mb + RT_GEMM_MB < m1 ? mb + RT_GEMM_MB : m1;
        for (size_t k0 = 0; k0 < K; k0 += RT_GEMM_KC) {
            size_t kc = K - k0 < RT_GEMM_KC ? K - k0 : RT_GEMM_KC;
            int first = k0 == 0, last = k0 + kc == K;
            pack_rows(abuf, X, ldx, mb, me, k0, kc);
            for (size_t p = p0; p < p1; p++) {
                int cols = N - p * 16 < 16 ? (int)(N - p * 16) : 16;
                if (first) for (int j = 0; j < 16; j++) bias16[j] = bias && j < cols ? bias[p * 16 + j] : 0.0f;
                const float *b = Wp + p * 16 * K + k0 * 16;
                /* The next panel's slice (kc x 16 floats, kc lines of 64 bytes) is fetched while
                 * this one's tiles run, spread evenly over them. */
                const char *next = p + 1 < p1 ? (const char *)(b + 16 * K) : NULL;
                size_t tiles = (me - mb + 5) / 6, per = (kc + tiles - 1) / tiles, line = 0;
                for (size_t r = mb; r < me; r += 6) {
                    int rows = me - r < 6 ? (int)(me - r) : 6;
                    float *c = C + r * ldc + p * 16;
                    const float *a = abuf + (r - mb) * kc;
                    if (next) for (size_t j = 0; j < per && line < kc; j++, line++) __builtin_prefetch(next + 64 * line, 0, 3);
                    gemm_tile(kc, a, b, c, ldc, first, bias16, rows, cols, last ? act : 0);
                }
            }
        }
    }
}
#else
size_t rt_gemm_packed_floats(size_t N, size_t K) { return (N + 15) / 16 * 16 * K; }
void rt_gemm_pack(float *dst, const float *w, size_t N, size_t K, size_t ldw) { (void)dst; (void)w; (void)N; (void)K; (void)ldw; }
void rt_gemm_pack_t(float *dst, const float *wt, size_t N, size_t K, size_t ldwt) { (void)dst; (void)wt; (void)N; (void)K; (void)ldwt; }
void rt_gemm_packed(float *C, size_t ldc, const float *X, size_t ldx, const float *Wp, const float *bias,
                    size_t N, size_t K, size_t m0, size_t m1, size_t p0, size_t p1, int act) {
    (void)C; (void)ldc; (void)X; (void)ldx; (void)Wp; (void)bias; (void)N; (void)K; (void)m0; (void)m1; (void)p0; (void)p1; (void)act;
}
#endif
