/* bench_util.h: shared helpers of the benchmarks: a monotonic clock, a seeded uniform generator and
 * the OpenBLAS sgemm peak (best of 3 square 2048 products) every ratio is measured against. */
#ifndef WQ_BENCH_UTIL_H
#define WQ_BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t bench_rng_state = 0x9e3779b97f4a7c15ULL;
static inline float bench_rnd(void) /* uniform [-1, 1) */
{
    uint64_t z = (bench_rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * 0x1.0p-52 - 1.0);
}

static inline double bench_sgemm_peak(void)
{
    const int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n);
    float *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) abort();
    for (long i = 0; i < (long)n * n; i++)
        a[i] = bench_rnd(), b[i] = bench_rnd();
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        t = bench_now() - t;
        double gf = 2.0 * n * n * (double)n / t / 1e9;
        if (gf > best) best = gf;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

#endif
