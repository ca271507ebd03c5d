/* bench_autoround.c: one AutoRound tuning iteration on a synthetic Llama block (default the 7B
 * shape: d 4096, 32 heads, 32 KV heads, head_dim 128, F 11008), as the tuning pass runs it
 * (cli_autoround.c): qdq of the seven linears (int4 g128 asym), then for each of `batch` sequences
 * of `seqlen` tokens the block forward with stored activations and the backward (B = 1 per call,
 * the low-memory rule), then the STE gradient chain and the sign step of every linear. Prints the
 * time per block per iteration and the FLOP rate as a ratio of the OpenBLAS sgemm peak measured in
 * the same process with the same thread count. The exact 128-bit gradient accumulation and the
 * MPI all-reduce of the distributed pass are not included.
 * FLOPs counted: per sequence 6*T*P for the linears (forward 2TP, backward dx + dW 4TP; P = the
 * block's linear parameters) and 14*T^2*H*D for attention (forward S and PV, backward recomputed S,
 * dV, dP, dQ, dK, each 2*T^2*D per head, full T x T rectangles as computed).
 * Usage: bench_autoround [--threads N] [--d D] [--heads H] [--kv-heads K] [--ffn F] [--seqlen T]
 *                        [--batch B] [--iters I]
 * Memory: about 28 bytes per weight (W, qdq W, v, float and double gradients) plus activations. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "algos/algo_autoround.h"
#include "core/core_log.h"
#include "core/core_qtypes.h"
#include "kernels/kern_backward.h"
#include "kernels/kern_llama.h"

#include "bench_util.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static float *rndv(size_t n, float sc)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = sc * bench_rnd();
    return p;
}

void openblas_set_num_threads(int);

int main(int argc, char **argv)
{
    int threads = 1;
    int64_t d = 4096, H = 32, Hk = 32, F = 11008, T = 256, batch = 8, iters = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        const long long v = atoll(argv[i + 1]);
        if (!strcmp(argv[i], "--threads")) threads = (int)v;
        else if (!strcmp(argv[i], "--d")) d = v;
        else if (!strcmp(argv[i], "--heads")) H = v;
        else if (!strcmp(argv[i], "--kv-heads")) Hk = v;
        else if (!strcmp(argv[i], "--ffn")) F = v;
        else if (!strcmp(argv[i], "--seqlen")) T = v;
        else if (!strcmp(argv[i], "--batch")) batch = v;
        else if (!strcmp(argv[i], "--iters")) iters = v;
    }
    wq_log_set_level(WQ_LOG_LVL_ERROR);
    openblas_set_num_threads(threads);
    const double peak = bench_sgemm_peak();
    printf("OpenBLAS sgemm peak (%d thread%s): %.1f GFLOP/s\n", threads, threads > 1 ? "s" : "",
           peak);
    wq_model_cfg mc = {0};
    mc.hidden_size = d, mc.n_heads = H, mc.n_kv_heads = Hk, mc.head_dim = d / H;
    mc.intermediate_size = F, mc.rms_norm_eps = 1e-5, mc.rope_theta = 10000;
    const int64_t D = d / H, qd = H * D, kd = Hk * D;
    const int64_t rows[7] = {qd, kd, kd, d, F, F, d}, cols[7] = {d, d, d, qd, d, d, F};
    float *w0[7], *wh[7], *gw[7];
    double *g = NULL, *dv = NULL, *da = NULL, *db = NULL;
    wq_ar_layer L[7];
    wq_qspec sp = wq_qspec_default();
    sp.dtype = WQ_QDTYPE_INT, sp.bits = 4, sp.group_size = 128, sp.sym = false;
    int64_t P = 0, maxn = 0;
    for (int i = 0; i < 7; i++) {
        const int64_t n = rows[i] * cols[i];
        P += n, maxn = n > maxn ? n : maxn;
        w0[i] = rndv((size_t)n, 0.02f);
        wh[i] = xmalloc((size_t)n * sizeof(float));
        gw[i] = xmalloc((size_t)n * sizeof(float));
        if (wq_algo_ar_init(&sp, "bench", w0[i], rows[i], cols[i], &L[i]) != WQ_OK) return 1;
    }
    g = xmalloc((size_t)maxn * sizeof *g), dv = xmalloc((size_t)maxn * sizeof *dv);
    da = xmalloc((size_t)maxn / 8 * sizeof *da), db = xmalloc((size_t)maxn / 8 * sizeof *db);
    float *an = rndv((size_t)d, 1), *mn = rndv((size_t)d, 1);
    const wq_block_weights w = {an, wh[0], wh[1], wh[2], wh[3], NULL, NULL, NULL,
                                mn, wh[4], wh[5], wh[6]};
    const wq_block_grads gr = {NULL, gw[0], gw[1], gw[2], gw[3], NULL, NULL, NULL,
                               NULL, gw[4], gw[5], gw[6]};
    float *x = rndv((size_t)(T * d), 1), *yref = rndv((size_t)(T * d), 1);
    float *y = xmalloc((size_t)(T * d) * sizeof *y), *dy = xmalloc((size_t)(T * d) * sizeof *dy);
    float *cs = xmalloc((size_t)(T * D / 2) * sizeof *cs), *sn = xmalloc((size_t)(T * D / 2) * 4);
    wq_kern_rope_tables_dim(D, 10000.0, T, cs, sn);
    void *act = xmalloc(wq_kern_bwd_block_act_bytes(&mc, 1, T, sizeof(float)));
    void *ws = xmalloc(wq_kern_bwd_block_workspace_bytes(&mc, 1, T, sizeof(float)));
    printf("block d %lld, heads %lld/%lld, ffn %lld: %.1f M weights; %lld sequences x %lld tokens "
           "per iteration\n",
           (long long)d, (long long)H, (long long)Hk, (long long)F, (double)P / 1e6,
           (long long)batch, (long long)T);
    double t_fb = 0, t_par = 0;
    for (int64_t it = 0; it < iters; it++) {
        double t0 = bench_now();
        for (int i = 0; i < 7; i++) {
            wq_algo_ar_clamp(&L[i]);
            wq_algo_ar_qdq(&L[i], w0[i], wh[i]);
            memset(gw[i], 0, (size_t)(rows[i] * cols[i]) * sizeof(float));
        }
        double t1 = bench_now();
        for (int64_t s = 0; s < batch; s++) {
            wq_kern_bwd_block_forward_f32(&mc, &w, x, y, 1, T, cs, sn, act, ws);
            for (int64_t i = 0; i < T * d; i++)
                dy[i] = 2 * (y[i] - yref[i]);
            wq_kern_bwd_block_backward_f32(&mc, &w, dy, NULL, &gr, 1, T, cs, sn, act, ws);
        }
        double t2 = bench_now();
        for (int i = 0; i < 7; i++) {
            const int64_t n = rows[i] * cols[i];
            for (int64_t j = 0; j < n; j++)
                g[j] = gw[i][j];
            wq_algo_ar_grad(&L[i], w0[i], g, dv, da, db);
            wq_algo_ar_sign_step(L[i].v, dv, n, 0.005);
            wq_algo_ar_sign_step(L[i].alpha, da, rows[i] * L[i].ng, 0.005);
            wq_algo_ar_sign_step(L[i].beta, db, rows[i] * L[i].ng, 0.005);
        }
        double t3 = bench_now();
        t_fb += t2 - t1, t_par += (t1 - t0) + (t3 - t2);
    }
    const double fl = (double)batch * (6.0 * (double)T * (double)P +
                                       14.0 * (double)T * (double)T * (double)H * (double)D);
    const double per = (t_fb + t_par) / (double)iters;
    printf("per block per iteration: %.3f s (forward+backward %.3f s, qdq+grad+step %.3f s)\n", per,
           t_fb / (double)iters, t_par / (double)iters);
    printf("FLOP rate %.1f GFLOP/s = %.2f of sgemm peak (forward+backward alone: %.2f)\n",
           fl / per / 1e9, fl / per / 1e9 / peak, fl / (t_fb / (double)iters) / 1e9 / peak);
    return 0;
}
