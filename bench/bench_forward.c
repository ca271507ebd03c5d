/* bench_forward.c: throughput of one fp32 Llama decoder block (wq_kern_block_forward) on a
 * synthetic Llama-2-7B-shaped layer with GQA (d 4096, FFN 11008, 32 heads, 8 KV heads, head_dim 128,
 * seeded random weights), one sequence of 512 tokens, as a ratio to the OpenBLAS sgemm peak measured
 * in the same process with the same thread count (1 by default).
 * Usage: bench_forward [--threads N] [--tokens T] [--reps R]
 * FLOPs counted: 2 * T * (params of the 7 linears) + causal attention 2 * 2 * H * D * T(T+1)/2
 * (QK^T and PV over the kept lower triangle); norms, RoPE, softmax and SwiGLU are not counted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "core/core_model_cfg.h"
#include "kernels/kern_llama.h"

void openblas_set_num_threads(int);

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng_state = 0x5eed1234abcdULL;
static float rnd(void) /* uniform [-1, 1) */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * 0x1.0p-52 - 1.0);
}

static float *alloc_f(size_t n)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_forward: out of memory (%zu floats)\n", n);
        exit(1);
    }
    return p;
}

/* Uniform in [-s, s): the variance of a scaled init keeps activations O(1) through the block. */
static float *rand_f(size_t n, float s)
{
    float *p = alloc_f(n);
    for (size_t i = 0; i < n; i++)
        p[i] = s * rnd();
    return p;
}

static double sgemm_peak(void)
{
    const int n = 2048;
    float *a = rand_f((size_t)n * n, 1.0f), *b = rand_f((size_t)n * n, 1.0f);
    float *c = alloc_f((size_t)n * n);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        t = now() - t;
        double gf = 2.0 * n * n * (double)n / t / 1e9;
        if (gf > best)
            best = gf;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

int main(int argc, char **argv)
{
    int threads = 1, reps = 3;
    int64_t T = 512;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
            T = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--tokens T] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || T < 1 || reps < 1) {
        fprintf(stderr, "bench_forward: --threads, --tokens and --reps must be >= 1\n");
        return 2;
    }
    openblas_set_num_threads(threads);

    wq_model_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    strcpy(cfg.model_type, "llama");
    cfg.hidden_size = 4096;
    cfg.intermediate_size = 11008;
    cfg.n_layers = 1;
    cfg.n_heads = 32;
    cfg.n_kv_heads = 8;
    cfg.head_dim = 128;
    cfg.vocab_size = 32000;
    cfg.max_position_embeddings = 4096;
    cfg.rope_theta = 10000.0;
    cfg.rms_norm_eps = 1e-5;

    const int64_t d = cfg.hidden_size, F = cfg.intermediate_size, D = cfg.head_dim;
    const int64_t qd = cfg.n_heads * D, kvd = cfg.n_kv_heads * D;
    const float sd = 1.0f / sqrtf((float)d), sf = 1.0f / sqrtf((float)F);

    double peak = sgemm_peak();

    double t_init = now();
    float *attn_norm = rand_f((size_t)d, 0.1f), *mlp_norm = rand_f((size_t)d, 0.1f);
    for (int64_t i = 0; i < d; i++)
        attn_norm[i] += 1.0f, mlp_norm[i] += 1.0f;
    wq_block_weights w = {
        .attn_norm = attn_norm,
        .wq = rand_f((size_t)(qd * d), sd),
        .wk = rand_f((size_t)(kvd * d), sd),
        .wv = rand_f((size_t)(kvd * d), sd),
        .wo = rand_f((size_t)(d * qd), sd),
        .mlp_norm = mlp_norm,
        .w_gate = rand_f((size_t)(F * d), sd),
        .w_up = rand_f((size_t)(F * d), sd),
        .w_down = rand_f((size_t)(d * F), sf),
    };
    float *x0 = rand_f((size_t)(T * d), 1.0f), *x = alloc_f((size_t)(T * d));
    float *rc = alloc_f((size_t)(T * D / 2)), *rs = alloc_f((size_t)(T * D / 2));
    size_t wsb = wq_kern_block_workspace_bytes(&cfg, T);
    void *ws = aligned_alloc(64, (wsb + 63) / 64 * 64);
    if (!ws) {
        fprintf(stderr, "bench_forward: out of memory (workspace %zu bytes)\n", wsb);
        return 1;
    }
    wq_kern_rope_tables(&cfg, T, rc, rs);
    t_init = now() - t_init;

    const double params = (double)(qd * d + 2 * kvd * d + d * qd + 3 * F * d);
    const double flops = 2.0 * (double)T * params +
                         4.0 * (double)cfg.n_heads * (double)D * (double)T * (double)(T + 1) / 2.0;
    double best = INFINITY, sum = 0.0;
    for (int r = 0; r < reps; r++) {
        memcpy(x, x0, (size_t)(T * d) * sizeof *x);
        double t = now();
        wq_kern_block_forward(&cfg, &w, x, T, rc, rs, ws, NULL);
        t = now() - t;
        sum += t;
        if (t < best)
            best = t;
    }
    double checksum = 0.0;
    for (int64_t i = 0; i < T * d; i++)
        checksum += x[i];

    double gflops = flops / best / 1e9;
    printf("bench_forward: block d=%lld F=%lld H=%lld Hkv=%lld D=%lld, 1 sequence x %lld tokens, "
           "%d OpenBLAS thread(s)\n",
           (long long)d, (long long)F, (long long)cfg.n_heads, (long long)cfg.n_kv_heads,
           (long long)D, (long long)T, threads);
    printf("  init %.2f s, workspace %.1f MiB, %.1f GFLOP per block\n", t_init,
           (double)wsb / 1048576.0, flops / 1e9);
    printf("  sgemm peak (2048^3)   %8.2f GFLOP/s\n", peak);
    printf("  block forward  best %.3f s, mean %.3f s over %d reps\n", best, sum / reps, reps);
    printf("  tokens/s              %8.1f\n", (double)T / best);
    printf("  GFLOP/s               %8.2f\n", gflops);
    printf("  ratio to sgemm peak   %8.3f   (target >= 0.6)\n", gflops / peak);
    printf("  checksum              %.6e\n", checksum);

    free(attn_norm), free(mlp_norm), free((void *)w.wq), free((void *)w.wk), free((void *)w.wv);
    free((void *)w.wo), free((void *)w.w_gate), free((void *)w.w_up), free((void *)w.w_down);
    free(x0), free(x), free(rc), free(rs), free(ws);
    return 0;
}
