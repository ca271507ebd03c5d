/* dist_cost.c: the cost model (see dist_cost.h and docs/planning.md for the derivation of every
 * term). Layer: dist. Pure arithmetic. */
#include "dist/dist_cost.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "algos/algo_awq.h"
#include "algos/algo_gptq.h"
#include "algos/algo_rtn.h"
#include "core/core_alloc.h"
#include "core/core_io.h"
#include "core/core_log.h"
#include "dist/dist_plan.h"
#include "kernels/kern_hessian.h"
#include "kernels/kern_llama.h"

/* BLAS efficiency per extra thread (OpenBLAS on one socket: measured 0.8-0.9). */
#define WQ_COST_THREAD_EFF 0.85
/* malloc arenas, HDF5 metadata cache, MPI buffers growing during a run. */
#define WQ_COST_SLACK_BYTES (24.0 * 1048576.0)

void wq_cost_machine_defaults(wq_machine *m)
{
    /* a 2020s server core with AVX2/AVX-512 and one BLAS thread; see docs/planning.md */
    *m = (wq_machine){.gemm_flops = 60e9,
                      .dgemm_flops = 30e9,
                      .fwd_flops = 45e9,
                      .chol_flops = 25e9,
                      .solve_flops = 20e9,
                      .exact_rate = 150e6,
                      .quant_rate = 300e6,
                      .hqq_rate = 20e6,
                      .mem_bw = 8e9,
                      .touch_bw = 4e9,
                      .fs_read_bw = 2e9,
                      .fs_write_bw = 1e9,
                      .fs_node_bw = 4e9,
                      .fs_sync_bw = 1e9,
                      .net_bw = 5e9,
                      .net_lat = 5e-6,
                      .base_rss = 40.0 * 1048576.0,
                      .startup = 0.3,
                      .cores_per_node = 2,
                      .mem_per_node = 16.0 * 1073741824.0};
}

typedef struct {
    int64_t rows, cols;
    int input; /* 0 attn, 1 o, 2 mlp, 3 down */
} lin;

static void linears(const wq_cost_shape *s, lin out[7], int64_t in_of[4])
{
    const int64_t qd = s->n_heads * s->head_dim, kvd = s->n_kv_heads * s->head_dim;
    out[0] = (lin){qd, s->d, 0};
    out[1] = (lin){kvd, s->d, 0};
    out[2] = (lin){kvd, s->d, 0};
    out[3] = (lin){s->d, qd, 1};
    out[4] = (lin){s->F, s->d, 2};
    out[5] = (lin){s->F, s->d, 2};
    out[6] = (lin){s->d, s->F, 3};
    in_of[0] = s->d, in_of[1] = qd, in_of[2] = s->d, in_of[3] = s->F;
}

int64_t wq_cost_block_linear_params(const wq_cost_shape *s)
{
    lin L[7];
    int64_t in_of[4], n = 0;
    linears(s, L, in_of);
    for (int i = 0; i < 7; i++)
        n += L[i].rows * L[i].cols;
    return n;
}

int64_t wq_cost_block_params(const wq_cost_shape *s)
{
    const int64_t qd = s->n_heads * s->head_dim, kvd = s->n_kv_heads * s->head_dim;
    return wq_cost_block_linear_params(s) + 2 * s->d + (s->qkv_bias ? qd + 2 * kvd : 0);
}

int64_t wq_cost_model_params(const wq_cost_shape *s)
{
    return s->n_layers * wq_cost_block_params(s) + s->vocab * s->d * (s->tied ? 1 : 2) + s->d;
}

double wq_cost_forward_flops(const wq_cost_shape *s, int64_t n_seq, int64_t T)
{
    const double qd = (double)(s->n_heads * s->head_dim);
    return (double)n_seq * (2.0 * (double)T * (double)wq_cost_block_linear_params(s) +
                            2.0 * qd * (double)T * (double)(T + 1));
}

static int64_t ngroups_of(int64_t cols, const wq_cost_job *j)
{
    int64_t g = j->group_size > 0 && j->group_size < cols ? j->group_size : cols;
    return (cols + g - 1) / g;
}

double wq_cost_qlinear_bytes(int64_t rows, int64_t cols, const wq_cost_job *j)
{
    const int npw = 32 / (j->bits > 0 ? j->bits : 4); /* codes per packed int32 (3 bits: 10) */
    const int64_t ng = ngroups_of(cols, j);
    double b = (double)rows * (double)((cols + npw - 1) / npw) * 4.0; /* qweight */
    b += (double)(ng * rows) * 4.0;                                   /* scales (f32) */
    b += (double)ng * (double)((rows + npw - 1) / npw) * 4.0;         /* qzeros */
    if (j->algo == WQ_COST_HQQ) b += (double)(ng * rows) * 4.0;       /* real zero points */
    return b;
}

double wq_cost_ckpt_bytes(int64_t rows, int64_t cols, const wq_cost_job *j)
{
    if (j->no_checkpoint ||
        (j->algo != WQ_COST_RTN && j->algo != WQ_COST_HQQ && j->algo != WQ_COST_GPTQ))
        return 0.0;
    const double codes = (double)rows * (double)cols * (j->bits <= 4 ? 0.5 : 1.0);
    return codes + 8.0 * (double)(rows * ngroups_of(cols, j)); /* + f32 scales and zero points */
}

/* Seconds to write n bytes and fsync them (a checkpoint entry): with write-behind (core_io.h)
 * fs_write_bw is calibrated durable already, without it the flush follows the writes. */
static double durable_s(const wq_machine *m, double n)
{
    return n / m->fs_write_bw + (wq_io_write_behind_bytes() > 0 ? 0.0 : n / m->fs_sync_bw);
}

static double blas_rate(double r, int threads)
{
    return threads > 1 ? r * (double)threads * WQ_COST_THREAD_EFF : r;
}

/* How many of `ranks` ranks share one node when nodes hold ranks_per_node (< 1: one) each. */
static int ranks_on_node(int ranks, int ranks_per_node)
{
    const int rpn = ranks_per_node < 1 ? 1 : ranks_per_node;
    return ranks < rpn ? ranks : rpn;
}

/* Per-rank file-system rate when `sharing` ranks of a node read or write at once. */
static double fs_rate(const wq_machine *m, double per_rank, int sharing)
{
    return fmin(per_rank, m->fs_node_bw / (sharing > 1 ? sharing : 1));
}

/* allreduce over D ranks of n bytes per rank: reduce-scatter + allgather volume plus latency */
static double allreduce_s(const wq_machine *m, double bytes, int D)
{
    if (D <= 1) return 0.0;
    return 2.0 * bytes * (double)(D - 1) / (double)D / m->net_bw +
           ceil(log2((double)D)) * m->net_lat;
}

static double quant_s(const wq_cost_job *j, const wq_machine *m, double weights)
{
    double r = weights / m->quant_rate;
    return j->mse_search ? 40.0 * r : r;
}

wq_status wq_cost_block_eval(const wq_cost_shape *s, const wq_cost_job *j, const wq_machine *m,
                             int D, int threads, int ranks_per_node, wq_cost_block *o)
{
    memset(o, 0, sizeof *o);
    if (D < 1 || threads < 1 || s->d < 1 || s->F < 1 || s->n_heads < 1 || s->head_dim < 1 ||
        s->n_kv_heads < 1 || s->n_layers < 1) {
        WQ_LOG_ERROR("cost model: bad shape or grid (D %d, threads %d)", D, threads);
        return WQ_ERR_ARG;
    }
    lin L[7];
    int64_t in_of[4];
    linears(s, L, in_of);
    const int64_t n = j->n_samples > 0 ? j->n_samples : 1, T = j->seqlen > 0 ? j->seqlen : 1;
    const int64_t nl = (n + D - 1) / D; /* sequences on the busiest rank */
    const double fwd_rate = blas_rate(m->fwd_flops, threads);
    const double pb_lin = (double)wq_cost_block_linear_params(s);
    const int sharing = ranks_on_node(D, ranks_per_node);
    o->flops_fwd1 = wq_cost_forward_flops(s, n, T);
    const double fwd_local = wq_cost_forward_flops(s, nl, T);
    /* every stage rank loads the whole block (converted to f32) */
    o->bytes_read = (double)wq_cost_block_params(s) * s->src_bytes;
    o->t_load = o->bytes_read / fs_rate(m, m->fs_read_bw, sharing) +
                (double)wq_cost_block_params(s) * 4.0 / m->touch_bw;
    double ckpt = 0;
    for (int i = 0; i < 7; i++) {
        o->bytes_written += wq_cost_qlinear_bytes(L[i].rows, L[i].cols, j);
        ckpt += wq_cost_ckpt_bytes(L[i].rows, L[i].cols, j);
    }
    o->t_write = o->bytes_written / m->fs_write_bw + durable_s(m, ckpt);

    switch (j->algo) {
    case WQ_COST_RTN:
    case WQ_COST_HQQ:
        /* no block pass: tensors are balanced over all ranks (wq_cost_run) */
        o->t_load = o->t_write = 0;
        o->bytes_read = 0;
        break;
    case WQ_COST_GPTQ: {
        const int groups = j->true_sequential ? 4 : 1;
        o->flops_fwd = (groups + 1) * o->flops_fwd1;
        o->t_fwd = (groups + 1) * fwd_local / fwd_rate;
        for (int k = 0; k < 4; k++) {
            const double in = (double)in_of[k],
                         pan = (double)(in_of[k] < WQ_HESS_PANEL ? in_of[k] : WQ_HESS_PANEL);
            const double tri = in * (in + 1) / 2;
            o->flops_hess += (double)(n * T) * in * (in + pan);
            o->exact_values += (double)n * tri;
            o->t_hess += (double)(nl * T) * in * (in + pan) / blas_rate(m->dgemm_flops, threads) +
                         (double)nl * tri / m->exact_rate + (double)(nl * T) * in * 8.0 / m->mem_bw;
            o->t_hess += 16.0 * tri / m->touch_bw; /* fresh accumulators */
            o->bytes_reduced += 16.0 * tri;
            o->t_reduce += allreduce_s(m, 16.0 * tri, D) + (D > 1 ? 48.0 * tri / m->mem_bw : 0.0) /* 128-bit adds */;
        }
        const double tile = (double)WQ_GPTQ_ROW_TILE;
        for (int i = 0; i < 7; i++) {
            const double r = (double)L[i].rows, c = (double)L[i].cols;
            const double ntiles = ceil(r / tile), rl = fmin(r, ceil(ntiles / D) * tile);
            o->flops_prep += 2.0 * c * c * c / 3.0;
            /* decode of the exact triangle, H and its inverse factor every rank builds */
            o->t_prep += 2.0 * c * c * c / 3.0 / blas_rate(m->chol_flops, threads) +
                         c * c * m->chol_elem_s + c * c / 2.0 / m->exact_rate +
                         12.0 * c * c / m->touch_bw;
            o->flops_solve += 2.0 * r * c * c;
            o->t_solve +=
                2.0 * rl * c * c / blas_rate(m->solve_flops, threads) + rl * c * m->solve_col_s;
            /* assembly: codes (1 B) + Q (4 B) + scales/zeros, then Q copied back into the block */
            const double asm_b = r * c * 5.0 + 8.0 * r * (double)ngroups_of(L[i].cols, j);
            if (D > 1) o->bytes_reduced += asm_b;
            o->t_reduce += allreduce_s(m, asm_b, D);
            o->t_quant += 2.0 * r * c * 4.0 / m->mem_bw + 5.0 * r * c / m->touch_bw;
        }
        break;
    }
    case WQ_COST_AWQ: {
        /* captures + update forward; 20 block forwards per absorbable tuple (q/k/v and gate/up) */
        int n_fwd = 2 + (j->awq_scale ? 2 * WQ_AWQ_N_SCALE_RATIOS : 0);
        o->flops_fwd = n_fwd * o->flops_fwd1;
        o->t_fwd = n_fwd * fwd_local / fwd_rate;
        double fq = 0, loss_local = 0, loss = 0; /* fake-quant weights; layer-loss flops */
        if (j->awq_scale) {
            fq +=
                WQ_AWQ_N_SCALE_RATIOS * (double)(L[0].rows * L[0].cols + L[1].rows * L[1].cols +
                                                 L[2].rows * L[2].cols + 2 * L[4].rows * L[4].cols);
            if (!j->awq_folding) /* self tuples o_proj and down_proj: layer-output losses */
                for (int i = 3; i < 7; i += 3) {
                    fq += WQ_AWQ_N_SCALE_RATIOS * (double)(L[i].rows * L[i].cols);
                    loss += WQ_AWQ_N_SCALE_RATIOS * 2.0 * (double)(n * T * L[i].rows * L[i].cols);
                    loss_local +=
                        WQ_AWQ_N_SCALE_RATIOS * 2.0 * (double)(nl * T * L[i].rows * L[i].cols);
                }
        }
        if (j->awq_clip)
            for (int i = 0; i < 7; i++) {
                fq += WQ_AWQ_N_CLIP_RATIOS * (double)(L[i].rows * L[i].cols);
                loss += WQ_AWQ_N_CLIP_RATIOS * 2.0 * (double)(n * T * L[i].rows * L[i].cols);
                loss_local += WQ_AWQ_N_CLIP_RATIOS * 2.0 * (double)(nl * T * L[i].rows * L[i].cols);
            }
        o->flops_grid = loss;
        o->quant_weights = fq + pb_lin;
        /* fake quantization is repeated on every rank; the final quantization is split by linear */
        o->t_grid = loss_local / blas_rate(m->gemm_flops, threads) + 2.0 * fq / m->quant_rate;
        o->t_quant = quant_s(j, m, pb_lin) / (D < 7 ? D : 7);
        o->exact_values = (double)n * T * (double)(in_of[0] * 2 + in_of[1] + in_of[3]);
        for (int k = 0; k < 4; k++)
            o->t_reduce += allreduce_s(m, 16.0 * (double)in_of[k], D);
        break;
    }
    case WQ_COST_AUTOROUND:
    case WQ_COST_TEQ: {
        /* per iteration forward + backward ~ 3 x the forward FLOPs of the block over batch x seqlen
         * tokens; the batch is split over the stage's ranks and gradients are all-reduced */
        const int64_t it = j->algo == WQ_COST_AUTOROUND ? j->ar_iters : j->teq_steps;
        const int64_t bs = j->ar_batch > 0 ? j->ar_batch : 8, bl = (bs + D - 1) / D;
        o->flops_ar = (double)it * 3.0 * wq_cost_forward_flops(s, bs, T);
        o->flops_fwd = 2.0 * o->flops_fwd1; /* fp inputs/targets + quantized outputs */
        o->t_fwd = 2.0 * fwd_local / fwd_rate +
                   (double)it * 3.0 * wq_cost_forward_flops(s, bl, T) / fwd_rate;
        o->t_reduce = (double)it * allreduce_s(m, 16.0 * pb_lin, D);
        o->quant_weights = (double)it * pb_lin + pb_lin;
        o->t_quant = ((double)it * pb_lin + pb_lin) / m->quant_rate;
        if (j->algo == WQ_COST_TEQ && j->teq_snapshot_every > 0 && it > 0) {
            /* best-snapshot rule: a forward over the whole calibration set before training,
             * every teq_snapshot_every steps and after the last */
            const double ev = (double)(it / j->teq_snapshot_every + 2);
            o->flops_fwd += ev * o->flops_fwd1;
            o->t_fwd += ev * fwd_local / fwd_rate;
        }
        break;
    }
    }
    o->t_total = o->t_load + o->t_fwd + o->t_hess + o->t_reduce + o->t_prep + o->t_solve +
                 o->t_grid + o->t_quant + o->t_write;
    return WQ_OK;
}

/* ---- memory ---------------------------------------------------------------------------------- */

static void mem_take(wq_cost_mem *o, const char *phase, double acts, double weights, double algo,
                     double transient)
{
    const double tot = acts + weights + algo + transient;
    if (tot + o->base > o->total) {
        o->acts = acts, o->weights = weights, o->algo = algo, o->transient = transient;
        o->total = tot + o->base;
        o->phase = phase;
    }
}

/* RTN without use_mse_search reads and quantizes a layer in WQ_RTN_STREAM_ELEMS chunks (the
 * driver's rtn_streamed): no whole-layer f32 copy. */
static int rtn_streams(const wq_cost_job *j)
{
    return j->algo == WQ_COST_RTN && !j->mse_search;
}

/* One tensor through the rounds (RTN/HQQ quantize, or a raw copy). */
static double item_mem(const wq_cost_job *j, int64_t rows, int64_t cols, int quantized,
                       int src_bytes)
{
    const double numel = (double)rows * (double)cols;
    if (!quantized) return numel * src_bytes;
    const double ng = (double)ngroups_of(cols, j);
    const double f32 = rtn_streams(j) ? fmin(numel, (double)WQ_RTN_STREAM_ELEMS) * 4.0 +
                                            1048576.0 /* + bf16 scratch */
                                      : numel * 4.0;
    double b = f32 + numel + 8.0 * (double)rows * ng + numel * j->bits / 8.0;
    if (j->algo == WQ_COST_HQQ) b += 3.0 * numel * 4.0; /* solver: W_q, W_r, error buffers */
    return b;
}

void wq_cost_peak_memory(const wq_cost_shape *s, const wq_cost_job *j, const wq_machine *m, int D,
                         wq_cost_mem *o)
{
    memset(o, 0, sizeof *o);
    o->base = m->base_rss + WQ_COST_SLACK_BYTES;
    o->total = o->base;
    o->phase = "start";
    lin L[7];
    int64_t in_of[4];
    linears(s, L, in_of);
    if (D < 1) D = 1;
    const int calibrated = j->algo != WQ_COST_RTN && j->algo != WQ_COST_HQQ;
    /* tensor rounds: the largest tensor any rank handles */
    const int in_rounds = !calibrated;
    double big = item_mem(j, s->vocab, s->d, 0, s->src_bytes); /* embedding copy */
    if (!s->tied) {
        double lm = item_mem(j, s->vocab, s->d, j->quant_lm_head, s->src_bytes);
        if (lm > big) big = lm;
    }
    for (int i = 0; in_rounds && i < 7; i++) {
        double b = item_mem(j, L[i].rows, L[i].cols, 1, s->src_bytes);
        if (b > big) big = b;
    }
    mem_take(o, "tensor rounds", 0, 0, 0, big);
    if (!calibrated) return;

    const int64_t n = j->n_samples > 0 ? j->n_samples : 1, T = j->seqlen > 0 ? j->seqlen : 1;
    const int64_t nl = (n + D - 1) / D;
    const double acts = (double)(nl * T * s->d) * 4.0;
    mem_take(o, "embedding", acts, 0, 0, (double)(s->vocab * s->d) * 4.0);
    const double wblock = (double)wq_cost_block_params(s) * 4.0;
    wq_model_cfg mc = {.hidden_size = s->d,
                       .intermediate_size = s->F,
                       .n_heads = s->n_heads,
                       .n_kv_heads = s->n_kv_heads,
                       .head_dim = s->head_dim,
                       .vocab_size = s->vocab,
                       .n_layers = s->n_layers};
    const double fws = (double)wq_kern_block_workspace_bytes(&mc, T) + (double)(T * s->d) * 4.0;
    const double cap_all = (double)(T * (in_of[0] + in_of[1] + in_of[2] + in_of[3])) * 4.0;

    if (j->algo == WQ_COST_GPTQ) {
        const int seq = j->true_sequential;
        const int grp_first[4] = {0, 3, 4, 6}, grp_end[4] = {3, 4, 6, 7};
        double acc_all = 0;
        for (int k = 0; k < 4; k++)
            acc_all += 16.0 * (double)in_of[k] * (double)(in_of[k] + 1) / 2.0;
        const double tile = (double)WQ_GPTQ_ROW_TILE;
        for (int g = 0; g < (seq ? 4 : 1); g++) {
            int k = seq ? L[grp_first[g]].input : 3;
            double acc = seq ? 16.0 * (double)in_of[k] * (double)(in_of[k] + 1) / 2.0 : acc_all;
            double max_in = seq ? (double)in_of[k] : (double)s->F;
            double pan = fmin(max_in, WQ_HESS_PANEL);
            double cap = seq ? (double)(T * in_of[k]) * 4.0 : cap_all;
            /* capture forward with the Hessian accumulation running */
            mem_take(o, "block pass (capture + Hessian)", acts, wblock, acc,
                     fws + cap + ((double)T * max_in + pan * max_in) * 8.0);
            int i0 = seq ? grp_first[g] : 0, i1 = seq ? grp_end[g] : 7;
            for (int i = i0; i < i1; i++) {
                const double r = (double)L[i].rows, c = (double)L[i].cols;
                const double ng = (double)ngroups_of(L[i].cols, j);
                const double rl = fmin(r, ceil(ceil(r / tile) / D) * tile), tm = fmin(tile, rl);
                double st = 8.0 * c * c + 4.0 * c * c;                  /* H (double) + U (float) */
                st += 4.0 * r * c + r * c + 8.0 * r * ng;               /* Q, codes, scales+zeros */
                st += 3.0 * 4.0 * c * tm + c * tm + 2.0 * 4.0 * c * tm; /* solve workspace */
                st += r * c * j->bits / 8.0 + 4.0 * r * ng;             /* container packing */
                mem_take(o, "block pass (GPTQ solve)", acts, wblock, acc, st);
            }
        }
    } else if (j->algo == WQ_COST_AWQ) {
        /* captured inputs and fp outputs of every local sequence, a second copy of the linears */
        const double keep = (double)nl * (cap_all + (double)(T * s->d) * 4.0);
        double maxw = 0;
        for (int i = 0; i < 7; i++)
            maxw = fmax(maxw, (double)(L[i].rows * L[i].cols));
        const double scratch = (maxw + (double)T * (double)s->F) * 4.0;
        mem_take(o, "block pass (AWQ search)", acts,
                 wblock + 4.0 * (double)wq_cost_block_linear_params(s), keep,
                 fws + cap_all + scratch);
    } else {
        /* AutoRound/TEQ: fp inputs and targets kept, weights + gradients + Adam state (x4) */
        const double keep = 2.0 * acts;
        mem_take(o, "block pass (tuning)", acts, 4.0 * wblock, keep,
                 fws * (double)(j->ar_batch > 0 ? j->ar_batch : 8) * 3.0);
    }
}

/* ---- the whole run -----------------------------------------------------------------------------
 */

/* One tensor of the rounds: seconds on the rank that owns it, bytes it reads from the model and
 * writes into the container (the node's reads and container writes are shared: rounds_seconds). */
typedef struct {
    double sec, rbytes, wbytes;
} round_item;

static round_item item_seconds(const wq_cost_job *j, const wq_machine *m, double numel,
                               int64_t rows, int64_t cols, int quantized, int src_bytes,
                               int sharing)
{
    round_item it = {.rbytes = numel * src_bytes};
    it.wbytes = quantized ? wq_cost_qlinear_bytes(rows, cols, j) : numel * src_bytes;
    const double rd = it.rbytes / fs_rate(m, m->fs_read_bw, sharing);
    const double wsec = it.wbytes / m->fs_write_bw;
    it.sec = rd + wsec;
    if (!quantized) return it;
    /* freshly touched: codes and packing, and the whole-layer f32 W unless RTN streams it through
     * the cache; that W also makes one pass to memory and back */
    const double w32 = rtn_streams(j) ? 0.0 : numel * 4.0;
    const double fresh = (w32 + numel + numel * 0.5) / m->touch_bw;
    double q = j->algo == WQ_COST_HQQ
                   ? numel / m->hqq_rate * (double)(j->hqq_iters > 0 ? j->hqq_iters : 20) / 20.0
                   : quant_s(j, m, numel);
    it.sec += fresh + w32 / m->mem_bw + q + durable_s(m, wq_cost_ckpt_bytes(rows, cols, j));
    return it;
}

/* Tensor rounds: the same longest-processing-time assignment and order the driver uses, then
 * round k lasts as long as the slowest k-th item over the ranks, or as one node's reads and
 * container writes in that round at the node's rates (ranks fill nodes in order; writes into the
 * one file serialise on it). */
static wq_status rounds_seconds(const wq_cost_shape *s, const wq_cost_job *j, const wq_machine *m,
                                int ranks, int ranks_per_node, double *out, int64_t *n_items)
{
    lin L[7];
    int64_t in_of[4];
    linears(s, L, in_of);
    const int calibrated = j->algo != WQ_COST_RTN && j->algo != WQ_COST_HQQ;
    const int rpn = ranks_per_node < 1 ? 1 : ranks_per_node;
    const int sharing = ranks_on_node(ranks, rpn);
    const int64_t per_block = 2 + 7 + (s->qkv_bias ? 3 : 0);
    const int64_t n = 3 + s->n_layers * per_block;
    round_item *item = wq_calloc((size_t)n, sizeof *item);
    int64_t *cost = wq_calloc((size_t)n, sizeof *cost);
    int *owner = wq_calloc((size_t)n, sizeof *owner);
    int64_t *order = wq_calloc((size_t)n, sizeof *order);
    int64_t *next = wq_calloc((size_t)ranks, sizeof *next);
    const int nodes = (ranks + rpn - 1) / rpn;
    double *node_s = wq_calloc((size_t)nodes, sizeof *node_s);
    wq_status st = WQ_OK;
    WQ_CHECK_GOTO(item && cost && owner && order && next && node_s, st, WQ_ERR_NOMEM, done,
                  "out of memory");
    for (int64_t i = 0; i < n; i++)
        item[i].sec = -1.0; /* not in the rounds */
    const int sb = s->src_bytes;
    const double vd = (double)(s->vocab * s->d);
    item[0] = item_seconds(j, m, vd, s->vocab, s->d, 0, sb, sharing);
    item[1] = item_seconds(j, m, (double)s->d, 1, s->d, 0, sb, sharing);
    if (!s->tied) /* else there is no lm_head tensor */
        item[2] = item_seconds(j, m, vd, s->vocab, s->d, j->quant_lm_head, sb, sharing);
    int64_t k = 3;
    for (int64_t b = 0; b < s->n_layers; b++) {
        for (int i = 0; i < 2; i++, k++)
            item[k] = item_seconds(j, m, (double)s->d, 1, s->d, 0, sb, sharing);
        for (int i = 0; i < 7; i++, k++)
            if (!calibrated)
                item[k] = item_seconds(j, m, (double)(L[i].rows * L[i].cols), L[i].rows,
                                       L[i].cols, 1, sb, sharing);
        for (int i = 0; s->qkv_bias && i < 3; i++, k++)
            item[k] = item_seconds(j, m, (double)L[i].rows, 1, L[i].rows, 0, sb, sharing);
    }
    for (int64_t i = 0; i < n; i++)
        cost[i] = item[i].sec < 0 ? -1 : (int64_t)(item[i].sec * 1e9) + 1;
    *n_items = 0;
    for (int64_t i = 0; i < n; i++)
        *n_items += cost[i] > 0;
    WQ_TRY_GOTO(wq_dist_plan_items(cost, n, ranks, owner, order), st, done);
    double total = 0;
    for (;;) { /* round r: every rank's r-th item */
        double worst = -1;
        for (int r = 0; r < ranks; r++) {
            while (next[r] < n && (owner[order[next[r]]] != r || cost[order[next[r]]] < 0))
                next[r]++;
            if (next[r] < n) {
                const round_item *it = &item[order[next[r]++]];
                worst = fmax(worst, it->sec);
                node_s[r / rpn] += it->rbytes / m->fs_node_bw + it->wbytes / m->fs_write_bw;
            }
        }
        if (worst < 0) break;
        for (int nd = 0; nd < nodes; nd++) {
            worst = fmax(worst, node_s[nd]);
            node_s[nd] = 0;
        }
        total += worst + (ranks > 1 ? 2.0 * m->net_lat * ceil(log2((double)ranks)) : 0.0);
    }
    *out = total;
done:
    wq_free(item);
    wq_free(cost);
    wq_free(owner);
    wq_free(order);
    wq_free(next);
    wq_free(node_s);
    return st;
}

wq_status wq_cost_run(const wq_cost_shape *s, const wq_cost_job *j, const wq_machine *m, int ranks,
                      int P, int threads, int ranks_per_node, wq_cost_plan *o)
{
    memset(o, 0, sizeof *o);
    const int64_t maxP = s->n_layers < ranks ? s->n_layers : ranks;
    if (ranks < 1 || P < 1 || P > maxP) {
        WQ_LOG_ERROR("cost model: %d stage(s) is out of range [1, %lld] for %d rank(s)", P,
                     (long long)maxP, ranks);
        return WQ_ERR_ARG;
    }
    const int calibrated = j->algo != WQ_COST_RTN && j->algo != WQ_COST_HQQ;
    if (!calibrated) P = 1;
    o->ranks = ranks, o->P = P, o->threads = threads;
    o->D = ranks / P; /* the smallest stage (stages differ by at most one rank) */
    WQ_TRY(wq_cost_block_eval(s, j, m, o->D, threads, ranks_per_node, &o->block));
    wq_cost_peak_memory(s, j, m, o->D, &o->mem);
    int64_t n_items = 0;
    WQ_TRY(rounds_seconds(s, j, m, ranks, ranks_per_node, &o->t_rounds, &n_items));
    o->t_startup = m->startup;
    o->model_bytes = (double)wq_cost_model_params(s) * s->src_bytes;
    lin L[7];
    int64_t in_of[4];
    linears(s, L, in_of);
    double qblock = 0;
    for (int i = 0; i < 7; i++)
        qblock += wq_cost_qlinear_bytes(L[i].rows, L[i].cols, j);
    const double raw =
        o->model_bytes - (double)(s->n_layers * wq_cost_block_linear_params(s)) * s->src_bytes;
    o->container_bytes = (double)s->n_layers * qblock + raw;
    o->bytes_written = o->container_bytes;
    o->bytes_read = o->model_bytes;
    if (calibrated) {
        /* stage 0 reads the embedding; each stage rank reads every block of its stage */
        o->t_embed = (double)(s->vocab * s->d) * (s->src_bytes / m->fs_read_bw + 4.0 / m->mem_bw);
        o->t_block = o->block.t_total;
        o->t_blocks = (double)s->n_layers * o->t_block; /* stages run one after another */
        o->bytes_read += (double)(s->vocab * s->d) * s->src_bytes * ranks / P +
                         (double)s->n_layers * o->block.bytes_read * (o->D - 1);
        const int64_t n = j->n_samples > 0 ? j->n_samples : 1;
        int64_t max_tiles = 0;
        for (int i = 0; i < 7; i++) {
            int64_t t = (L[i].rows + WQ_GPTQ_ROW_TILE - 1) / WQ_GPTQ_ROW_TILE;
            if (t > max_tiles) max_tiles = t;
        }
        o->useful_ranks = j->algo == WQ_COST_GPTQ  ? (n > max_tiles ? n : max_tiles)
                          : j->algo == WQ_COST_AWQ ? (n > 7 ? n : 7)
                                                   : (j->ar_batch > 0 ? j->ar_batch : n);
        o->useful_ranks *= P;
    } else {
        o->useful_ranks = n_items;
    }
    /* every node fsyncs its share of the container after its last write: what write-behind left
     * dirty, at most one window per rank (core_io.h) */
    const int node_ranks = ranks_on_node(ranks, ranks_per_node);
    const double window = (double)wq_io_write_behind_bytes();
    double dirty = o->container_bytes * (double)node_ranks / (double)ranks;
    if (window > 0) dirty = fmin(dirty, window * node_ranks);
    o->t_flush = dirty / m->fs_sync_bw;
    o->seconds = o->t_startup + o->t_rounds + o->t_embed + o->t_blocks + o->t_flush;
    return WQ_OK;
}

wq_status wq_cost_choose(const wq_cost_shape *s, const wq_cost_job *j, const wq_machine *m,
                         int ranks, int threads, int ranks_per_node, double mem_budget,
                         wq_cost_plan *out, char *why, size_t why_len)
{
    const int calibrated = j->algo != WQ_COST_RTN && j->algo != WQ_COST_HQQ;
    const int64_t maxP = calibrated ? (s->n_layers < ranks ? s->n_layers : ranks) : 1;
    wq_cost_plan best = {0}, p1 = {0};
    int have = 0;
    char b1[32], b2[32];
    for (int P = 1; P <= maxP; P++) {
        wq_cost_plan p;
        WQ_TRY(wq_cost_run(s, j, m, ranks, P, threads, ranks_per_node, &p));
        if (P == 1) p1 = p;
        if (mem_budget > 0 && p.mem.total > mem_budget) continue;
        if (!have || p.seconds < best.seconds * 0.999) best = p, have = 1;
    }
    if (!have) {
        /* the smallest per-rank need is at P = 1 (largest D): name its biggest part */
        const char *part = "resident base of a rank (MPI, HDF5, libraries)";
        double v = p1.mem.base;
        if (p1.mem.acts > v) part = "activations", v = p1.mem.acts;
        if (p1.mem.weights > v) part = "block weights (f32)", v = p1.mem.weights;
        if (p1.mem.algo > v)
            part = j->algo == WQ_COST_GPTQ ? "exact Hessian accumulators" : "algorithm state",
            v = p1.mem.algo;
        if (p1.mem.transient > v)
            part = "working buffers of the largest step", v = p1.mem.transient;
        snprintf(why, why_len,
                 "no grid fits the memory budget of %s per rank: the smallest need is %s per rank "
                 "(P=1, D=%d, at the %s), whose largest part is the %s (%s)",
                 wq_cost_fmt_bytes(mem_budget, b1, sizeof b1),
                 wq_cost_fmt_bytes(p1.mem.total, b2, sizeof b2), p1.D, p1.mem.phase, part,
                 wq_cost_fmt_bytes(v, (char[32]){0}, 32));
        *out = p1;
        return WQ_ERR_ARG;
    }
    if (!calibrated)
        snprintf(why, why_len,
                 "%s needs no calibration: whole tensors are balanced over all %d "
                 "rank(s) (longest first); no stages",
                 j->algo == WQ_COST_RTN ? "RTN" : "HQQ", ranks);
    else if (best.P == 1)
        snprintf(why, why_len,
                 "P=1 x D=%d: blocks are sequential in the calibrated pass (each "
                 "stage waits for the previous one), so extra stages only idle ranks, "
                 "and the largest D gives the fewest sequences (%s of activations) per rank",
                 best.D, wq_cost_fmt_bytes(best.mem.acts, b1, sizeof b1));
    else
        snprintf(why, why_len, "P=%d x D=%d: the fastest grid within the memory budget", best.P,
                 best.D);
    *out = best;
    return WQ_OK;
}

const char *wq_cost_fmt_bytes(double b, char *buf, size_t n)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    while (fabs(b) >= 1024.0 && i < 5)
        b /= 1024.0, i++;
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
    return buf;
}
