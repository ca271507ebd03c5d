/* bench_forward.c: throughput of one fp32 Llama decoder block (wq_kern_block_forward_batch) on a
 * synthetic Llama-2-7B-shaped layer with GQA (d 4096, FFN 11008, 32 heads, 8 KV heads, head_dim
 * 128, seeded random weights), B sequences of T tokens (default 1 x 512), unchunked and in token
 * chunks, as a ratio to the OpenBLAS sgemm peak (2048^3, NoTrans x NoTrans) measured in the same
 * process with the same thread count (1 by default).
 *
 * Usage: bench_forward [--threads N] [--tokens T] [--batch B] [--chunk C] [--kv-heads K] [--reps R]
 * Defaults: 1 thread, 1 x 512 tokens, chunk 256, 8 KV heads, 2 rounds (~20 s on a busy core).
 *
 * Measurement: the peak sgemm and the block runs are interleaved, R rounds, and the best time of
 * each is kept, so a neighbour process that steals the core for a while biases both sides alike.
 * With one thread the figures are also given in thread CPU time (CLOCK_THREAD_CPUTIME_ID: time this
 * thread actually ran), which is what to trust on a shared machine.
 *
 * FLOPs counted: 2 * B*T * (params of the 7 linears) + causal attention 2 * 2 * H * D * T(T+1)/2
 * per sequence (QK^T and PV over the kept lower triangle); norms, RoPE, softmax and SwiGLU are not
 * counted (and the masked upper part of each attention panel is computed but not counted). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "core/core_model_cfg.h"
#include "kernels/kern_llama.h"

void openblas_set_num_threads(int);

typedef struct {
    double wall, cpu;
} stamp;

static stamp now(void)
{
    struct timespec w, c;
    clock_gettime(CLOCK_MONOTONIC, &w);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c);
    return (stamp){(double)w.tv_sec + 1e-9 * (double)w.tv_nsec,
                   (double)c.tv_sec + 1e-9 * (double)c.tv_nsec};
}

static stamp since(stamp t0)
{
    stamp t = now();
    return (stamp){t.wall - t0.wall, t.cpu - t0.cpu};
}

static void keep_best(stamp *best, stamp t)
{
    if (t.wall < best->wall) best->wall = t.wall;
    if (t.cpu < best->cpu) best->cpu = t.cpu;
}

/* splitmix64 -> uniform [-1, 1) */
static uint64_t rng_state = 0x5eed1234abcdULL;
static float rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * 0x1.0p-52 - 1.0);
}

static void *alloc_bytes(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_forward: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static float *alloc_f(size_t n)
{
    return alloc_bytes(n * sizeof(float));
}

/* Uniform in [-s, s): with s ~ 1/sqrt(fan_in) activations stay O(1) through the block. */
static float *rand_f(size_t n, float s)
{
    float *p = alloc_f(n);
    for (size_t i = 0; i < n; i++)
        p[i] = s * rnd();
    return p;
}

int main(int argc, char **argv)
{
    int threads = 1, reps = 2;
    int64_t T = 512, B = 1, chunk = 256, kv_heads = 8;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
            T = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            B = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
            chunk = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--kv-heads") && i + 1 < argc)
            kv_heads = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--threads N] [--tokens T] [--batch B] [--chunk C] "
                    "[--kv-heads K] [--reps R]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads < 1 || T < 1 || B < 1 || chunk < 1 || reps < 1 || kv_heads < 1 || 32 % kv_heads) {
        fprintf(stderr, "bench_forward: --threads, --tokens, --batch, --chunk, --reps must be >= 1 "
                        "and --kv-heads must divide 32\n");
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
    cfg.n_kv_heads = kv_heads;
    cfg.head_dim = 128;
    cfg.vocab_size = 32000;
    cfg.max_position_embeddings = 4096;
    cfg.rope_theta = 10000.0;
    cfg.rms_norm_eps = 1e-5;

    const int64_t d = cfg.hidden_size, F = cfg.intermediate_size, D = cfg.head_dim;
    const int64_t qd = cfg.n_heads * D, kvd = cfg.n_kv_heads * D, n = B * T;
    const float sd = 1.0f / sqrtf((float)d), sf = 1.0f / sqrtf((float)F);

    stamp t_init = now();
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
    float *x0 = rand_f((size_t)(n * d), 1.0f), *x = alloc_f((size_t)(n * d));
    float *x_full = alloc_f((size_t)(n * d));
    float *rc = alloc_f((size_t)(T * D / 2)), *rs = alloc_f((size_t)(T * D / 2));
    const int64_t plans[2] = {0, chunk};
    size_t wsb[2];
    void *ws[2];
    for (int p = 0; p < 2; p++) {
        wsb[p] = wq_kern_block_workspace_bytes_chunked(&cfg, T, plans[p]);
        ws[p] = alloc_bytes(wsb[p]);
        memset(ws[p], 0, wsb[p]); /* fault the pages in outside the timed region */
    }
    wq_kern_rope_tables(&cfg, T, rc, rs);
    const int pn = 2048;
    float *pa = rand_f((size_t)pn * pn, 1.0f), *pb = rand_f((size_t)pn * pn, 1.0f);
    float *pc = alloc_f((size_t)pn * pn);
    memset(pc, 0, (size_t)pn * pn * sizeof *pc);
    const double init_s = since(t_init).wall;

    const double params = (double)(qd * d + 2 * kvd * d + d * qd + 3 * F * d);
    const double flops = 2.0 * (double)n * params + (double)B * 4.0 * (double)cfg.n_heads *
                                                        (double)D * (double)T * (double)(T + 1) /
                                                        2.0;
    const double peak_flops = 2.0 * (double)pn * pn * pn;
    stamp best_peak = {INFINITY, INFINITY}, best[2] = {{INFINITY, INFINITY}, {INFINITY, INFINITY}};
    stamp bench_t0 = now();
    for (int r = 0; r < reps; r++) {
        stamp t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, pn, pn, pn, 1.0f, pa, pn, pb, pn,
                    0.0f, pc, pn);
        keep_best(&best_peak, since(t));
        for (int p = 0; p < 2; p++) {
            memcpy(x, x0, (size_t)(n * d) * sizeof *x);
            t = now();
            wq_kern_block_forward_batch(&cfg, &w, x, B, T, plans[p], rc, rs, ws[p], NULL);
            keep_best(&best[p], since(t));
            if (p == 0) memcpy(x_full, x, (size_t)(n * d) * sizeof *x);
        }
    }
    const double bench_s = since(bench_t0).wall;
    /* the chunked result must agree with the unchunked one to fp32 rounding */
    double maxdiff = 0.0, maxabs = 0.0;
    for (int64_t i = 0; i < n * d; i++) {
        maxdiff = fmax(maxdiff, fabs((double)x[i] - (double)x_full[i]));
        maxabs = fmax(maxabs, fabs((double)x_full[i]));
    }

    printf("bench_forward: block d=%lld F=%lld H=%lld Hkv=%lld D=%lld, %lld sequence(s) x %lld "
           "tokens, %d OpenBLAS thread(s), %d rounds (best kept)\n",
           (long long)d, (long long)F, (long long)cfg.n_heads, (long long)cfg.n_kv_heads,
           (long long)D, (long long)B, (long long)T, threads, reps);
    printf("  init %.1f s, timed rounds %.1f s, %.1f GFLOP per block forward\n", init_s, bench_s,
           flops / 1e9);
    const int cpu_ok = threads == 1;
    printf("  sgemm peak (2048^3)        wall %7.2f GFLOP/s", peak_flops / best_peak.wall / 1e9);
    if (cpu_ok) printf("   cpu %7.2f GFLOP/s", peak_flops / best_peak.cpu / 1e9);
    printf("\n");
    for (int p = 0; p < 2; p++) {
        char name[64];
        if (plans[p] == 0)
            snprintf(name, sizeof name, "unchunked");
        else
            snprintf(name, sizeof name, "chunk %lld (step %lld rows)", (long long)plans[p],
                     (long long)wq_kern_block_step_rows(T, plans[p]));
        const double gw = flops / best[p].wall / 1e9, gc = flops / best[p].cpu / 1e9;
        printf("  block %-26s workspace %7.1f MiB\n", name, (double)wsb[p] / 1048576.0);
        printf("    wall: %.3f s  %8.1f tokens/s  %7.2f GFLOP/s  ratio to peak %.3f\n",
               best[p].wall, (double)n / best[p].wall, gw,
               gw / (peak_flops / best_peak.wall / 1e9));
        if (cpu_ok)
            printf("    cpu:  %.3f s  %8.1f tokens/s  %7.2f GFLOP/s  ratio to peak %.3f\n",
                   best[p].cpu, (double)n / best[p].cpu, gc,
                   gc / (peak_flops / best_peak.cpu / 1e9));
    }
    printf("  target: ratio >= 0.6; chunked vs unchunked max |diff| %.3g (max |x| %.3g)\n", maxdiff,
           maxabs);

    free(attn_norm), free(mlp_norm), free((void *)w.wq), free((void *)w.wk), free((void *)w.wv);
    free((void *)w.wo), free((void *)w.w_gate), free((void *)w.w_up), free((void *)w.w_down);
    free(x0), free(x), free(x_full), free(rc), free(rs), free(ws[0]), free(ws[1]);
    free(pa), free(pb), free(pc);
    return 0;
}
