/* bench_rtn.c: single-thread RTN int4 g128 asym throughput on a Llama-7B-shaped layer set
 * (4096x4096, 11008x4096, 4096x11008; random normal bf16 weights, fixed seed):
 *   bf16 -> f32 (wq_kern_bf16_to_f32) -> codes/scales/zeros (wq_kern_quant_row_int)
 *        -> packed optimum qweight (wq_kern_pack_qweight_optimum_ld) and qzeros.
 * Reported as input GB/s (bf16 bytes read per second) and as a ratio to a memcpy of the same input
 * bytes measured in the same process (the memory-bandwidth ceiling of a read+write pass).
 * Each figure is the best of `reps` runs (default 5), timed both as wall time and as thread CPU
 * time (steadier when other processes share the cores). The kernels' instruction set is chosen at
 * run time (wq_kern_isa; WQ_KERNEL_ISA=ref|generic|sse2|avx2|avx512 forces one): the main tables
 * use the active one, then every available set except ref is timed the same way (per-ISA table;
 * all must produce the same checksum). Usage: bench_rtn [reps] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core_alloc.h"
#include "core/core_half.h"
#include "kernels/kern_pack.h"
#include "kernels/kern_quant.h"
#include "kernels/kern_vec.h" /* wq__kern_ops_for and the *_ops drivers: per-ISA timings */

enum { BITS = 4, GS = 128, ROW_BLOCK = 16, NMAT = 3 };

static const int64_t k_shapes[NMAT][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double now(void)
{
    return clock_s(CLOCK_MONOTONIC);
}
/* CPU time of this thread: unlike wall time it does not grow while other processes hold the core,
 * so on a shared machine it is the steadier of the two. */
static double now_cpu(void)
{
    return clock_s(CLOCK_THREAD_CPUTIME_ID);
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

typedef struct {
    int64_t rows, cols, ngroups;
    uint16_t *w;           /* [rows][cols] bf16 input */
    int32_t *qweight;      /* [ceil(cols/8)][rows] */
    int32_t *qzeros;       /* [ngroups][ceil(rows/8)] */
    float *scales, *zeros; /* [rows][ngroups] */
} layer;

/* The measured pipeline for one matrix with the kernels of `ops` (the public entry points run the
 * active set the same way). xf: [ROW_BLOCK][cols] f32, codes: [ROW_BLOCK][cols]. */
static void quantize_layer(const wq__kern_ops *ops, layer *L, float *xf, uint8_t *codes, int fused)
{
    const int64_t rows = L->rows, cols = L->cols, ng = L->ngroups;
    for (int64_t r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
        const int64_t nr = rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK;
        for (int64_t r = 0; r < nr; r++) {
            if (fused)
                wq__kern_quant_row_int_bf16_ops(
                    ops, L->w + (r0 + r) * cols, cols, GS, BITS, WQ_SCHEME_ASYM, 1.0f,
                    codes + r * cols, L->scales + (r0 + r) * ng, L->zeros + (r0 + r) * ng);
            else {
                wq_kern_bf16_to_f32(L->w + (r0 + r) * cols, xf, cols);
                wq__kern_quant_row_int_ops(ops, xf, cols, GS, BITS, WQ_SCHEME_ASYM, 1.0f,
                                           codes + r * cols, L->scales + (r0 + r) * ng,
                                           L->zeros + (r0 + r) * ng);
            }
        }
        wq__kern_pack_qweight_optimum_ld_ops(ops, codes, nr, cols, BITS, rows, L->qweight + r0);
    }
    wq_kern_pack_qzeros_optimum(L->zeros, rows, ng, BITS, L->qzeros);
}

int main(int argc, char **argv)
{
    const int reps = argc > 1 ? atoi(argv[1]) : 5;
    layer L[NMAT];
    int64_t max_cols = 0;
    double in_bytes[NMAT], tot_bytes = 0;
    double t0 = now();
    for (int m = 0; m < NMAT; m++) {
        layer *l = &L[m];
        l->rows = k_shapes[m][0];
        l->cols = k_shapes[m][1];
        l->ngroups = (l->cols + GS - 1) / GS;
        const int64_t n = l->rows * l->cols;
        l->w = wq_malloc((size_t)n * 2);
        l->qweight = wq_calloc((size_t)(wq_kern_pack_words(l->cols, BITS) * l->rows), 4);
        l->qzeros = wq_calloc((size_t)(l->ngroups * wq_kern_pack_words(l->rows, BITS)), 4);
        l->scales = wq_calloc((size_t)(l->rows * l->ngroups), 4);
        l->zeros = wq_calloc((size_t)(l->rows * l->ngroups), 4);
        if (!l->w || !l->qweight || !l->qzeros || !l->scales || !l->zeros) {
            fprintf(stderr, "bench_rtn: out of memory\n");
            return 1;
        }
        fill_bf16(l->w, n, 0x5eed0000ULL + (uint64_t)m);
        in_bytes[m] = (double)n * 2.0;
        tot_bytes += in_bytes[m];
        if (l->cols > max_cols) max_cols = l->cols;
    }
    float *xf = wq_malloc((size_t)(ROW_BLOCK * max_cols) * sizeof(float));
    uint8_t *codes = wq_malloc((size_t)(ROW_BLOCK * max_cols));
    uint16_t *copy = wq_malloc((size_t)(k_shapes[1][0] * k_shapes[1][1]) * 2); /* largest layer */
    if (!xf || !codes || !copy) {
        fprintf(stderr, "bench_rtn: out of memory\n");
        return 1;
    }
    memset(copy, 0, (size_t)(k_shapes[1][0] * k_shapes[1][1]) * 2); /* fault the pages in */
    const wq__kern_ops *active = wq__kern_ops_active();
    printf("bench_rtn: RTN int4 g128 asym, bf16 -> packed optimum, 1 thread, best of %d "
           "(setup %.1f s)\nkernel ISA: %s (WQ_KERNEL_ISA=%s)\n",
           reps, now() - t0, wq_kern_isa_name(active->isa),
           getenv("WQ_KERNEL_ISA") ? getenv("WQ_KERNEL_ISA") : "");

    /* variant 0: fused bf16 row kernel; variant 1: widen each row to f32, then the f32 kernel.
     * Clock 0: wall time; clock 1: thread CPU time. best[clock][job][m], job 0 = memcpy. */
    static const char *k_variant[2] = {"fused bf16 row kernel", "bf16->f32 row + f32 kernel"};
    double best[2][3][NMAT];
    uint64_t checksum[2] = {0, 0};
    for (int m = 0; m < NMAT; m++) {
        for (int c = 0; c < 2; c++)
            for (int j = 0; j < 3; j++)
                best[c][j][m] = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            for (int j = 0; j < 3; j++) {
                const double w0 = now(), c0 = now_cpu();
                if (j == 0)
                    memcpy(copy, L[m].w, (size_t)in_bytes[m]);
                else
                    quantize_layer(active, &L[m], xf, codes, j == 1);
                const double w = now() - w0, c = now_cpu() - c0;
                if (w < best[0][j][m]) best[0][j][m] = w;
                if (c < best[1][j][m]) best[1][j][m] = c;
                if (j > 0 && rep == 0)
                    for (int64_t i = 0; i < L[m].rows * 8; i++)
                        checksum[j - 1] = checksum[j - 1] * 31u + (uint32_t)L[m].qweight[i];
            }
        }
    }
    uint64_t last_sum = 0; /* qweight of the last matrix after the active set's runs */
    for (int64_t i = 0; i < L[NMAT - 1].rows * 8; i++)
        last_sum = last_sum * 31u + (uint32_t)L[NMAT - 1].qweight[i];
    if (checksum[0] != checksum[1] || copy[12345] != L[NMAT - 1].w[12345]) {
        fprintf(stderr, "bench_rtn: the two pipelines disagree\n");
        return 1;
    }

    double ratio[2] = {0, 0};
    for (int v = 0; v < 2; v++) {
        printf("\n[%s]  (wall time; ratio_cpu uses thread CPU time)\n%-12s %9s %10s %11s %12s "
               "%7s %9s\n",
               k_variant[v], "matrix", "quant ms", "memcpy ms", "quant GB/s", "memcpy GB/s",
               "ratio", "ratio_cpu");
        double tq[2] = {0, 0}, tc[2] = {0, 0};
        for (int m = 0; m <= NMAT; m++) {
            char name[32];
            double q[2], c[2], bytes = m < NMAT ? in_bytes[m] : tot_bytes;
            for (int k = 0; k < 2; k++) {
                q[k] = m < NMAT ? best[k][v + 1][m] : tq[k];
                c[k] = m < NMAT ? best[k][0][m] : tc[k];
            }
            if (m < NMAT)
                snprintf(name, sizeof name, "%lldx%lld", (long long)L[m].rows,
                         (long long)L[m].cols);
            else
                snprintf(name, sizeof name, "total");
            printf("%-12s %9.2f %10.2f %11.2f %12.2f %7.3f %9.3f\n", name, q[0] * 1e3, c[0] * 1e3,
                   bytes / q[0] / 1e9, bytes / c[0] / 1e9, c[0] / q[0], c[1] / q[1]);
            for (int k = 0; k < 2 && m < NMAT; k++) {
                tq[k] += q[k];
                tc[k] += c[k];
            }
            if (m == NMAT && v == 0) ratio[0] = c[0] / q[0], ratio[1] = c[1] / q[1];
        }
    }
    printf("\nratio to memcpy, fused pipeline, %s (target >= 0.5): %.3f wall, %.3f cpu   "
           "[checksum %016llx]\n",
           wq_kern_isa_name(active->isa), ratio[0], ratio[1], (unsigned long long)checksum[0]);

    /* Per ISA (ref skipped: scalar, slow): totals over the three matrices, same reps, against the
     * memcpy times above. */
    double tmem[2] = {0, 0};
    for (int m = 0; m < NMAT; m++)
        for (int k = 0; k < 2; k++)
            tmem[k] += best[k][0][m];
    printf("\n[per ISA, totals]  (ratio: wall, ratio_cpu: thread CPU time)\n%-8s %14s %7s %9s "
           "%14s %7s %9s\n",
           "isa", "fused ms", "ratio", "ratio_cpu", "bf16->f32 ms", "ratio", "ratio_cpu");
    for (int isa = WQ_KERN_ISA_GENERIC; isa < WQ_KERN_ISA_COUNT; isa++) {
        const wq__kern_ops *ops = wq__kern_ops_for((wq_kern_isa)isa);
        if (!ops) continue;
        double tot[2][2] = {{0, 0}, {0, 0}}; /* [variant][clock] */
        int mismatch = 0;
        for (int v = 0; v < 2; v++) {
            for (int m = 0; m < NMAT; m++) {
                double b[2] = {1e30, 1e30};
                for (int rep = 0; rep < reps; rep++) {
                    const double w0 = now(), c0 = now_cpu();
                    quantize_layer(ops, &L[m], xf, codes, v == 0);
                    const double w = now() - w0, c = now_cpu() - c0;
                    if (w < b[0]) b[0] = w;
                    if (c < b[1]) b[1] = c;
                }
                tot[v][0] += b[0];
                tot[v][1] += b[1];
            }
            uint64_t sum = 0; /* the last matrix's qweight, as after the active set's runs */
            for (int64_t i = 0; i < L[NMAT - 1].rows * 8; i++)
                sum = sum * 31u + (uint32_t)L[NMAT - 1].qweight[i];
            mismatch |= sum != last_sum;
        }
        printf("%-8s %14.2f %7.3f %9.3f %14.2f %7.3f %9.3f%s\n", wq_kern_isa_name(ops->isa),
               tot[0][0] * 1e3, tmem[0] / tot[0][0], tmem[1] / tot[0][1], tot[1][0] * 1e3,
               tmem[0] / tot[1][0], tmem[1] / tot[1][1], mismatch ? "  MISMATCH" : "");
        if (mismatch) {
            fprintf(stderr, "bench_rtn: %s disagrees with %s\n", wq_kern_isa_name(ops->isa),
                    wq_kern_isa_name(active->isa));
            return 1;
        }
    }

    for (int m = 0; m < NMAT; m++) {
        wq_free(L[m].w);
        wq_free(L[m].qweight);
        wq_free(L[m].qzeros);
        wq_free(L[m].scales);
        wq_free(L[m].zeros);
    }
    wq_free(xf);
    wq_free(codes);
    wq_free(copy);
    return 0;
}
