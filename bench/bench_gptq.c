/* bench_gptq.c: GPTQ layer solve and Hessian accumulation throughput, as ratios to the OpenBLAS
 * sgemm peak measured in the same process with the same thread count (1 by default).
 * Usage: bench_gptq [--threads N] [--rows11008 R] [--hess-chunks C]   (R = 0 skips that layer)
 * FLOPs counted (what the code performs, not INC's path):
 *   prepare = n^3/3 (dpotrf, double) + n^3/3 (strtri, float)
 *   solve   = rows * n * (n - 1): one multiply-add per (quantized column p, later column j) pair of
 *             every row, whether applied in a rank-1 step, a sub-block GEMM or a lazy-batch GEMM
 *   Hessian = tokens * n * (n + 1): one multiply-add per upper-triangle entry per token */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "bench_util.h"

#include "algos/algo_gptq.h"
#include "core/core_config.h"
#include "core/core_log.h"
#include "kernels/kern_hessian.h"

void openblas_set_num_threads(int);

/* H = 2/1 X^T X + small ridge from random correlated X [tokens][n] (rank <= tokens: dead-free,
 * damping makes it PD like real calibration Hessians) */
static double *random_h(int64_t n, int64_t tokens)
{
    float *X = malloc(sizeof(float) * tokens * n), *Hf = malloc(sizeof(float) * n * n);
    for (int64_t k = 0; k < tokens * n; k++)
        X[k] = bench_rnd() * (1.0f + (float)(k % n % 7));
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)tokens, 2.0f, X, (int)n, 0.0f,
                Hf, (int)n);
    double *H = malloc(sizeof(double) * n * n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++)
            H[i * n + j] = H[j * n + i] = Hf[i * n + j];
    free(X);
    free(Hf);
    return H;
}

static void bench_layer(int64_t rows, int64_t cols, double peak)
{
    double *H = random_h(cols, 1024);
    float *W = malloc(sizeof(float) * rows * cols), *Q = malloc(sizeof(float) * rows * cols);
    for (int64_t k = 0; k < rows * cols; k++)
        W[k] = 0.02f * bench_rnd();
    wq_config cfg;
    wq_config_defaults(&cfg, WQ_ALGO_GPTQ);
    wq_algo_params ap = cfg.ap; /* percdamp 0.01, block 128 */
    wq_config_free(&cfg);
    wq_qspec spec = wq_qspec_default();
    spec.group_size = 128;
    ap.act_order = true;

    wq_gptq_ctx *ctx = NULL;
    double t0 = bench_now();
    if (wq_algo_gptq_prepare(H, cols, &spec, &ap, "bench", &ctx) != WQ_OK) {
        fprintf(stderr, "prepare failed\n");
        exit(1);
    }
    double t1 = bench_now();
    free(H);
    wq_qmatrix qm;
    if (wq_algo_gptq_qmatrix_init(ctx, rows, &qm) != WQ_OK) exit(1);
    double t2 = bench_now();
    if (wq_algo_gptq_solve_rows(ctx, W, 0, rows, rows, 0.0f, &qm, Q, NULL) != WQ_OK) {
        fprintf(stderr, "solve failed\n");
        exit(1);
    }
    double t3 = bench_now();
    double n = (double)cols;
    double fp = 2.0 / 3.0 * n * n * n, fs = (double)rows * n * (n - 1.0);
    double tp = t1 - t0, ts = t3 - t2;
    printf("gptq %5lld x %5lld (int4 sym g128 act_order, block 128)\n", (long long)rows,
           (long long)cols);
    printf("  prepare (dpotrf64+strtri32)   %7.2f s %7.1f GFLOP/s  eff %.2f\n", tp, fp / tp / 1e9,
           fp / tp / 1e9 / peak);
    printf("  solve   (lazy-batch sgemm)    %7.2f s %7.1f GFLOP/s  eff %.2f\n", ts, fs / ts / 1e9,
           fs / ts / 1e9 / peak);
    printf("  total                         %7.2f s %7.1f GFLOP/s  eff %.2f\n", tp + ts,
           (fp + fs) / (tp + ts) / 1e9, (fp + fs) / (tp + ts) / 1e9 / peak);
    wq_qmatrix_free(&qm);
    wq_algo_gptq_destroy(ctx);
    free(W);
    free(Q);
}

static void bench_hessian(int64_t in, int64_t tokens, int chunks, double peak)
{
    float *X = malloc(sizeof(float) * tokens * in);
    for (int64_t k = 0; k < tokens * in; k++)
        X[k] = bench_rnd();
    wq_exact *acc = calloc((size_t)wq_kern_hessian_packed_len(in), sizeof(wq_exact));
    void *scr = malloc(wq_kern_hessian_scratch_bytes(tokens, in, WQ_HESS_F64));
    for (int prec = 0; prec < 2; prec++) {
        double t = bench_now();
        for (int c = 0; c < chunks; c++)
            wq_kern_hessian_add_chunk(acc, X, tokens, in, (wq_hess_prec)prec, scr);
        t = bench_now() - t;
        double f = (double)chunks * (double)tokens * (double)in * (double)(in + 1);
        double gf = f / t / 1e9;
        printf("hessian %s in %lld, %d chunks x %lld tokens: %6.2f s %7.1f GFLOP/s eff %.2f "
               "-> 128 x 2048 tokens: %.0f s\n",
               prec == WQ_HESS_F64 ? "f64" : "f32", (long long)in, chunks, (long long)tokens, t, gf,
               gf / peak, 128.0 * 2048.0 * (double)in * (double)(in + 1) / (gf * 1e9));
    }
    double *H = malloc(sizeof(double) * in * in);
    double t = bench_now();
    wq_kern_hessian_finalize(acc, in, 128, H);
    printf("hessian finalize in %lld: %.2f s\n", (long long)in, bench_now() - t);
    free(H);
    free(X);
    free(acc);
    free(scr);
}

int main(int argc, char **argv)
{
    int threads = 1, hchunks = 2;
    int64_t rows11008 = 4096;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rows11008"))
            rows11008 = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--hess-chunks"))
            hchunks = atoi(argv[i + 1]);
    }
    wq_log_set_level(WQ_LOG_LVL_ERROR);
    openblas_set_num_threads(threads);
    double peak = bench_sgemm_peak();
    printf("OpenBLAS sgemm peak (%d thread%s): %.1f GFLOP/s\n", threads, threads > 1 ? "s" : "",
           peak);
    bench_layer(4096, 4096, peak);
    if (rows11008 > 0) bench_layer(rows11008, 11008, peak);
    bench_hessian(4096, 2048, hchunks, peak);
    return 0;
}
