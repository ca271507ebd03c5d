/* bench_hqq.c: single-thread HQQ throughput against RTN on a Llama-7B-shaped layer set
 * (4096x4096 and 11008x4096; random normal bf16 weights, fixed seed, widened to f32 once before
 * timing, as a loader hands them over). Both run the same spec, int4 g64 asym (INC's HQQ default):
 *   HQQ: wq_algo_hqq_quantize with INC's defaults (20 iterations, p 0.7, beta 10, kappa 1.01,
 *        quant_zero on, quant_scale off);
 *   RTN: wq_algo_rtn_quantize (asym).
 * Throughput is GB/s of the bf16 input bytes (2 per weight); the headline figure is the ratio
 * HQQ/RTN (target >= 0.2: 20 solver iterations cost at most 5 RTN passes). Each time is the best of
 * `reps` runs (default 3) on the wall clock and on the thread CPU clock (steadier when other
 * processes share the cores). Also printed: solver iterations, mean |W - W^| of both, and one
 * solver iteration per kernel implementation. Usage: bench_hqq [reps] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "algos/algo_hqq.h"
#include "algos/algo_rtn.h"
#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_half.h"
#include "kernels/kern_hqq.h"
#include "kernels/kern_quant.h"

enum { NMAT = 2, BITS = 4, GS = 64 };

static const int64_t k_shapes[NMAT][2] = {{4096, 4096}, {11008, 4096}};

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* N(0, 0.02^2) bf16 weights (Box-Muller), the typical scale of Llama linear weights. */
static void fill_bf16(uint16_t *w, int64_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = ((double)(splitmix(&s) >> 11) + 1.0) * 0x1.0p-53;
        double u2 = (double)(splitmix(&s) >> 11) * 0x1.0p-53;
        double r = 0.02 * sqrt(-2.0 * log(u1));
        w[i] = wq_f32_to_bf16((float)(r * cos(6.283185307179586 * u2)));
        if (i + 1 < n) w[i + 1] = wq_f32_to_bf16((float)(r * sin(6.283185307179586 * u2)));
    }
}

static double mean_abs_err(const float *W, const wq_qmatrix *m, float *tmp)
{
    wq_kern_dequant_matrix(m, tmp);
    double s = 0.0;
    for (int64_t i = 0; i < m->rows * m->cols; i++)
        s += fabs((double)W[i] - (double)tmp[i]);
    return s / (double)(m->rows * m->cols);
}

int main(int argc, char **argv)
{
    const int reps = argc > 1 && atoi(argv[1]) > 0 ? atoi(argv[1]) : 3;
    wq_config cfg;
    wq_config_defaults(&cfg, WQ_ALGO_HQQ);
    const wq_algo_params ap = cfg.ap;
    wq_qspec sp = wq_qspec_default();
    sp.dtype = WQ_QDTYPE_INT;
    sp.bits = BITS;
    sp.group_size = GS;
    sp.sym = false;

    const double t0 = clock_s(CLOCK_MONOTONIC);
    float *W[NMAT];
    double in_bytes[NMAT];
    for (int m = 0; m < NMAT; m++) {
        const int64_t n = k_shapes[m][0] * k_shapes[m][1];
        uint16_t *h = wq_malloc((size_t)n * 2);
        W[m] = wq_malloc((size_t)n * sizeof(float));
        if (!h || !W[m]) {
            fprintf(stderr, "bench_hqq: out of memory\n");
            return 1;
        }
        fill_bf16(h, n, 0x5eed0000ULL + (uint64_t)m);
        wq_kern_bf16_to_f32(h, W[m], n);
        wq_free(h);
        in_bytes[m] = (double)n * 2.0;
    }
    printf(
        "bench_hqq: int4 g64 asym, HQQ (INC defaults: %lld iters, p %.2g, beta %.3g, kappa %.3g, "
        "quant_zero %d) vs RTN, f32 in memory, 1 thread, best of %d (setup %.1f s)\n"
        "solver kernels: %s\n",
        (long long)ap.hqq_iters, ap.hqq_lp_norm, ap.hqq_beta, ap.hqq_kappa, ap.quant_zero, reps,
        clock_s(CLOCK_MONOTONIC) - t0, wq_kern_hqq_isa_name(wq_kern_hqq_isa_count() - 1));

    /* best[algo][clock][m]; algo 0 = RTN, 1 = HQQ; clock 0 wall, 1 thread CPU */
    double best[2][2][NMAT], err[2][NMAT];
    wq_algo_hqq_stats stats[NMAT];
    for (int m = 0; m < NMAT; m++) {
        const int64_t rows = k_shapes[m][0], cols = k_shapes[m][1];
        for (int a = 0; a < 2; a++)
            best[a][0][m] = best[a][1][m] = 1e30;
        for (int rep = 0; rep < reps; rep++)
            for (int a = 0; a < 2; a++) {
                wq_qmatrix q = {0};
                const double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
                wq_status st = a == 0
                                   ? wq_algo_rtn_quantize(&sp, "bench", W[m], rows, cols, &q, NULL)
                                   : wq_algo_hqq_quantize_stats(&sp, &ap, "bench", W[m], rows, cols,
                                                                &q, &stats[m]);
                const double w = clock_s(CLOCK_MONOTONIC) - w0;
                const double c = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
                if (st != WQ_OK) {
                    fprintf(stderr, "bench_hqq: %s failed (%d)\n", a ? "HQQ" : "RTN", (int)st);
                    return 1;
                }
                if (w < best[a][0][m]) best[a][0][m] = w;
                if (c < best[a][1][m]) best[a][1][m] = c;
                if (rep == 0) {
                    float *tmp = wq_malloc((size_t)(rows * cols) * sizeof(float));
                    err[a][m] = tmp ? mean_abs_err(W[m], &q, tmp) : NAN;
                    wq_free(tmp);
                }
                wq_qmatrix_free(&q);
            }
    }

    printf("\n%-11s %9s %9s %9s %9s %7s %9s %6s %12s %12s\n", "matrix", "RTN ms", "HQQ ms",
           "RTN GB/s", "HQQ GB/s", "ratio", "ratio_cpu", "iters", "RTN |W-W^|", "HQQ |W-W^|");
    double tot[2][2] = {{0, 0}, {0, 0}}, bytes = 0;
    for (int m = 0; m <= NMAT; m++) {
        char name[32];
        double r[2], h[2];
        for (int k = 0; k < 2; k++) {
            r[k] = m < NMAT ? best[0][k][m] : tot[0][k];
            h[k] = m < NMAT ? best[1][k][m] : tot[1][k];
        }
        const double b = m < NMAT ? in_bytes[m] : bytes;
        if (m < NMAT) {
            snprintf(name, sizeof name, "%lldx%lld", (long long)k_shapes[m][0],
                     (long long)k_shapes[m][1]);
            printf("%-11s %9.1f %9.1f %9.3f %9.3f %7.3f %9.3f %6lld %12.4g %12.4g\n", name,
                   r[0] * 1e3, h[0] * 1e3, b / r[0] / 1e9, b / h[0] / 1e9, r[0] / h[0], r[1] / h[1],
                   (long long)stats[m].iters_run, err[0][m], err[1][m]);
            for (int k = 0; k < 2; k++) {
                tot[0][k] += r[k];
                tot[1][k] += h[k];
            }
            bytes += b;
        } else {
            printf("%-11s %9.1f %9.1f %9.3f %9.3f %7.3f %9.3f\n", "total", r[0] * 1e3, h[0] * 1e3,
                   b / r[0] / 1e9, b / h[0] / 1e9, r[0] / h[0], r[1] / h[1]);
        }
    }
    printf("\nHQQ/RTN throughput ratio (target >= 0.2): %.3f wall, %.3f cpu\n",
           tot[0][0] / tot[1][0], tot[0][1] / tot[1][1]);

    /* One solver iteration on the 4096x4096 layer per kernel implementation (ref on its first
     * 256 rows: scalar, with powf on every element), from the initial parameters. */
    {
        const int64_t rows = k_shapes[0][0], cols = k_shapes[0][1], ng = cols / GS;
        float *s = wq_malloc((size_t)(rows * ng) * sizeof(float));
        float *z0 = wq_malloc((size_t)(rows * ng) * sizeof(float));
        float *z = wq_malloc((size_t)(rows * ng) * sizeof(float));
        double *xs = wq_malloc((size_t)(rows * ng) * sizeof(double));
        if (!s || !z0 || !z || !xs) {
            fprintf(stderr, "bench_hqq: out of memory\n");
            return 1;
        }
        wq_kern_hqq_params_rows(W[0], rows, cols, GS, BITS, true, s, z0, xs);
        wq_kern_hqq_shrink sh;
        wq_kern_hqq_shrink_init(ap.hqq_lp_norm, ap.hqq_beta, &sh);
        printf("\n[one solver iteration, %lldx%lld]\n%-8s %10s %12s\n", (long long)rows,
               (long long)cols, "kernel", "ns/weight", "GB/s (bf16)");
        for (int isa = 0; isa < wq_kern_hqq_isa_count(); isa++) {
            const int64_t nr = isa == 0 ? 256 : rows;
            double b = 1e30;
            for (int rep = 0; rep < reps; rep++) {
                memcpy(z, z0, (size_t)(rows * ng) * sizeof(float));
                const double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
                (void)wq_kern_hqq_step_rows_isa(isa, W[0], nr, cols, GS, BITS, s, xs, z, &sh, NULL);
                const double c = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
                if (c < b) b = c;
            }
            printf("%-8s %10.3f %12.3f\n", wq_kern_hqq_isa_name(isa), b / (double)(nr * cols) * 1e9,
                   (double)(nr * cols) * 2.0 / b / 1e9);
        }
        wq_free(s);
        wq_free(z0);
        wq_free(z);
        wq_free(xs);
    }
    for (int m = 0; m < NMAT; m++)
        wq_free(W[m]);
    return 0;
}
