#define _GNU_SOURCE
#include "rt_blas.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CBLAS enum values (cblas.h): RowMajor 101, NoTrans 111, Trans 112. */
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int);
typedef void (*setthreads_fn)(int);
typedef char *(*config_fn)(void);
/* LAPACK dsyevd (Fortran ABI, gfortran's hidden string lengths last). */
typedef void (*dsyevd_fn)(const char *, const char *, const int *, double *, const int *, double *, double *,
                          const int *, int *, const int *, int *, size_t, size_t);

static sgemm_fn p_sgemm;
static setthreads_fn p_set_threads;
static config_fn p_config;
static dsyevd_fn p_dsyevd;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static char err[512];
static char coretype[32];

static const char *pick_coretype(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

static void load(void) {
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (!user || !*user) {
        const char *ct = pick_coretype();
        if (ct) setenv("OPENBLAS_CORETYPE", ct, 0);
    }
    const char *now = getenv("OPENBLAS_CORETYPE");
    snprintf(coretype, sizeof coretype, "%s", now ? now : "");
    const char *names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0", NULL};
    void *h = NULL;
    for (int i = 0; names[i] && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, sizeof err, "cannot load OpenBLAS (libopenblas.so.0): %s; install it with apt-get install libopenblas0",
                 dlerror());
        return;
    }
    p_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
    p_set_threads = (setthreads_fn)dlsym(h, "openblas_set_num_threads");
    p_config = (config_fn)dlsym(h, "openblas_get_config");
    p_dsyevd = (dsyevd_fn)dlsym(h, "dsyevd_");
    if (!p_sgemm) snprintf(err, sizeof err, "OpenBLAS library lacks cblas_sgemm");
}

int rt_blas_load(void) {
    pthread_once(&once, load);
    return p_sgemm ? 0 : -1;
}

const char *rt_blas_error(void) { return err; }

static void need(void) {
    if (rt_blas_load() != 0) {
        fprintf(stderr, "reptok: %s\n", err);
        exit(1);
    }
}

void rt_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    if (!p_sgemm) need();
    p_sgemm(101, transA ? 112 : 111, transB ? 112 : 111, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void rt_blas_set_threads(int n) {
    if (!p_sgemm) need();
    if (p_set_threads) p_set_threads(n);
}

const char *rt_blas_config(void) {
    if (rt_blas_load() != 0) return err;
    return p_config ? p_config() : "OpenBLAS";
}

const char *rt_blas_coretype(void) {
    rt_blas_load();
    return coretype;
}

int rt_dsyevd(int n, double *a, double *w) {
    if (rt_blas_load() != 0 || !p_dsyevd) return -1000;
    if (n <= 0) return -1001;
    int lwork = -1, liwork = -1, info = 0, iw = 0;
    double wq = 0;
    p_dsyevd("V", "L", &n, a, &n, w, &wq, &lwork, &iw, &liwork, &info, 1, 1);
    if (info != 0) return info;
    lwork = (int)wq + 1;
    liwork = iw + 1;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    int *iwork = malloc(sizeof(int) * (size_t)liwork);
    if (!work || !iwork) { free(work); free(iwork); return -1002; }
    p_dsyevd("V", "L", &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    free(work); free(iwork);
    return info;
}
