/* cli_awq.c: block-by-block AWQ over the distributed engine (numerics.md 5.2-5.7).
 * Losses are summed per calibration sequence in exact fixed point and reduced over the stage, so the
 * chosen scales and clip ratios are identical for any rank count. Layer: cli. */
#include "cli/cli_awq.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "algos/algo_awq.h"
#include "algos/algo_rtn.h"
#include "cli/cli.h"
#include "cli/cli_block.h"
#include "cli/cli_scaled.h"
#include "core/core_alloc.h"
#include "core/core_half.h"
#include "core/core_log.h"
#include "dist/dist_reduce.h"
#include "kernels/kern_exact.h"

enum { N_LIN = WQ_BLK_N_LINEARS };

typedef struct {
    int64_t n;             /* local sequences */
    int64_t *T;            /* [n] */
    float **x[4];          /* captured inputs per kind, per sequence */
    float **yref;          /* fp block outputs */
    wq_exact *absacc[4];   /* per kind: [in] sums of |x| */
    int64_t in[4];
    int64_t k;             /* next sequence slot */
    int64_t d;
} awq_cap;

static wq_status cap_cb(void *ctx, int64_t seq, int64_t T, const wq_block_capture *cap, const float *out)
{
    (void)seq;
    awq_cap *c = ctx;
    const float *src[4] = {cap->x_attn, cap->x_o, cap->x_mlp, cap->x_down};
    int64_t k = c->k++;
    c->T[k] = T;
    for (int q = 0; q < 4; q++) {
        int64_t in = c->in[q];
        c->x[q][k] = wq_malloc((size_t)(T * in) * sizeof(float));
        if (!c->x[q][k]) return WQ_ERR_NOMEM;
        memcpy(c->x[q][k], src[q], (size_t)(T * in) * sizeof(float));
        double *sum = wq_calloc((size_t)in, sizeof(double));
        if (!sum) return WQ_ERR_NOMEM;
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < in; i++) sum[i] += fabs((double)src[q][t * in + i]);
        int64_t bad = wq_kern_exact_add_f64(c->absacc[q], sum, in);
        wq_free(sum);
        if (bad) {
            WQ_LOG_ERROR("AWQ: non-finite calibration activations in sequence %lld", (long long)seq);
            return WQ_ERR_NUMERIC;
        }
    }
    c->yref[k] = wq_malloc((size_t)(T * c->d) * sizeof(float));
    if (!c->yref[k]) return WQ_ERR_NOMEM;
    memcpy(c->yref[k], out, (size_t)(T * c->d) * sizeof(float));
    return WQ_OK;
}

static void cap_free(awq_cap *c)
{
    for (int q = 0; q < 4; q++) {
        for (int64_t k = 0; c->x[q] && k < c->n; k++) wq_free(c->x[q][k]);
        wq_free(c->x[q]);
        wq_free(c->absacc[q]);
    }
    for (int64_t k = 0; c->yref && k < c->n; k++) wq_free(c->yref[k]);
    wq_free(c->yref);
    wq_free(c->T);
    memset(c, 0, sizeof *c);
}

/* Block-output loss with modified weights: sum over local sequences of mean((y - yref)^2). */
typedef struct {
    const awq_cap *c;
    wq_exact *acc;
    int64_t k;
} out_loss;

static wq_status out_cb(void *ctx, int64_t seq, int64_t T, const wq_block_capture *cap, const float *out)
{
    (void)seq;
    (void)cap;
    out_loss *o = ctx;
    const float *y = o->c->yref[o->k++];
    double s = 0;
    for (int64_t i = 0; i < T * o->c->d; i++) s += ((double)out[i] - y[i]) * ((double)out[i] - y[i]);
    s /= (double)(T * o->c->d);
    wq_kern_exact_add_f64(o->acc, &s, 1);
    return WQ_OK;
}

static int pick_min(const wq_exact *acc, int n)
{
    double v[32];
    wq_kern_exact_to_f64(acc, v, n);
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] < v[best]) best = i; /* first strictly smallest */
    return best;
}

wq_status wq_cli_awq_run(wq_dist *world, wq_engine *e, const wq_model_cfg *mc,
                         const wq_weight_source *src, const wq_config *cfg, wq_h5_file *f,
                         const wq_h5_entry *entries, wq_entry_lookup lookup, void *lookup_ctx,
                         wq_entry_lookup lookup_raw, int progress,
                         double predicted_block_s)
{
    const wq_blk_dims dims = wq_blk_dims_of(mc);
    const int64_t *in_of = dims.in, *rows_of = dims.rows;
    const int64_t d = mc->hidden_size;
    int64_t max_in = d; /* widest captured input */
    for (int q = 0; q < WQ_BLK_N_INPUTS; q++) max_in = in_of[q] > max_in ? in_of[q] : max_in;
    wq_dist *sd = wq_engine_stage_dist(e);
    for (int s = 0; s < wq_engine_n_stages(e); s++) {
        wq_status st = WQ_OK;
        for (int64_t b = wq_engine_block_begin(e, s); wq_engine_stage(e) == s && b < wq_engine_block_end(e, s) && st == WQ_OK; b++) {
            wq_dist_fault_point(world, "block", b);
            const double t_block = wq_cli_now();
            wq_block_buf bb = {0};
            awq_cap c = {0};
            float *wq_buf[N_LIN] = {0}, *scale[4] = {0}, *scratch = NULL, *xmean[4] = {0};
            float quant[N_LIN];
            int64_t idx[N_LIN];
            wq_qspec spec[N_LIN];
            st = wq_block_load(mc, src, b, &bb);
            float *Wm[N_LIN];
            wq_blk_weights(&bb, Wm);
            const float *W[N_LIN] = {Wm[0], Wm[1], Wm[2], Wm[3], Wm[4], Wm[5], Wm[6]};
            for (int l = 0; l < N_LIN; l++) {
                char layer[256];
                snprintf(layer, sizeof layer, "model.layers.%lld.%s", (long long)b, wq_blk_linears[l].sub);
                idx[l] = lookup(lookup_ctx, layer);
                spec[l] = idx[l] >= 0 ? entries[idx[l]].spec : (wq_qspec){0};
                quant[l] = 1.0f;
            }
            c.n = wq_engine_n_local(e);
            c.d = d;
            c.T = wq_calloc((size_t)c.n + 1, sizeof(int64_t));
            c.yref = wq_calloc((size_t)c.n + 1, sizeof(float *));
            for (int q = 0; q < 4; q++) {
                c.in[q] = in_of[q];
                c.x[q] = wq_calloc((size_t)c.n + 1, sizeof(float *));
                c.absacc[q] = wq_calloc((size_t)in_of[q], sizeof(wq_exact));
                xmean[q] = wq_malloc((size_t)in_of[q] * sizeof(float));
                scale[q] = wq_malloc((size_t)in_of[q] * sizeof(float));
                if (!c.x[q] || !c.absacc[q] || !xmean[q] || !scale[q]) st = WQ_ERR_NOMEM;
            }
            int64_t maxT = wq_blk_max_local_len(e);
            int64_t maxw = 0;
            for (int l = 0; l < N_LIN; l++) {
                if (rows_of[l] * in_of[wq_blk_linears[l].input] > maxw) maxw = rows_of[l] * in_of[wq_blk_linears[l].input];
                wq_buf[l] = wq_malloc((size_t)(rows_of[l] * in_of[wq_blk_linears[l].input]) * sizeof(float));
                if (!wq_buf[l]) st = WQ_ERR_NOMEM;
            }
            scratch = wq_malloc((size_t)(maxw + maxT * max_in) * sizeof(float));
            if (!c.T || !c.yref || !scratch) st = WQ_ERR_NOMEM;
            st = wq_dist_agree(sd, st);
            /* 1. captures, fp outputs, |x| statistics (5.2, 5.4) */
            if (st == WQ_OK) st = wq_dist_agree(sd, wq_engine_forward(e, &bb.w, 0, 15u, cap_cb, &c));
            int64_t ntok = 0;
            for (int64_t k = 0; k < c.n; k++) ntok += c.T[k];
            if (st == WQ_OK) st = wq_dist_allreduce_sum_i64(sd, &ntok, 1);
            for (int q = 0; q < 4 && st == WQ_OK; q++) {
                st = wq_dist_allreduce_exact(sd, c.absacc[q], in_of[q]);
                double *tmp = wq_malloc((size_t)in_of[q] * sizeof(double));
                if (!tmp) st = WQ_ERR_NOMEM;
                if (st == WQ_OK) {
                    wq_kern_exact_to_f64(c.absacc[q], tmp, in_of[q]);
                    for (int64_t i = 0; i < in_of[q]; i++) xmean[q][i] = (float)(tmp[i] / (double)(ntok ? ntok : 1));
                }
                wq_free(tmp);
            }
            /* 2. scale search per tuple (5.4) */
            int has_scale[4] = {0};
            for (int t = 0; t < 4 && st == WQ_OK; t++) {
                int first = wq_blk_tuples[t].first, n = wq_blk_tuples[t].n, kind = wq_blk_linears[first].input;
                int quantized = 0;
                for (int l = first; l < first + n; l++) quantized |= idx[l] >= 0;
                if (!cfg->ap.use_auto_scale || !quantized || (!wq_blk_tuples[t].absorber && cfg->ap.folding)) continue;
                int64_t cols = in_of[kind];
                const wq_qspec *sp = &spec[idx[first] >= 0 ? first : first + 1];
                float *wmean = wq_malloc((size_t)cols * sizeof(float));
                wq_exact acc[WQ_AWQ_N_SCALE_RATIOS] = {{0, 0}};
                if (!wmean) { st = WQ_ERR_NOMEM; break; }
                wq_algo_awq_w_mean(&W[first], &rows_of[first], n, cols, wq_qspec_group_size(sp, cols), wmean);
                for (int r = 0; r < WQ_AWQ_N_SCALE_RATIOS && st == WQ_OK; r++) {
                    st = wq_algo_awq_scales(xmean[kind], wmean, cols, (float)r / WQ_AWQ_N_SCALE_RATIOS, scale[t]);
                    for (int l = first; l < first + n && st == WQ_OK; l++)
                        st = idx[l] >= 0 ? wq_algo_awq_fakequant(&spec[l], 1.0f, W[l], rows_of[l], cols, scale[t], wq_buf[l])
                                         : WQ_OK;
                    if (st != WQ_OK) break;
                    if (n > 1) { /* whole block output (INC) */
                        wq_block_weights w2 = bb.w;
                        const float **slot[N_LIN] = {&w2.wq, &w2.wk, &w2.wv, &w2.wo, &w2.w_gate, &w2.w_up, &w2.w_down};
                        for (int l = first; l < first + n; l++)
                            if (idx[l] >= 0) *slot[l] = wq_buf[l];
                        out_loss ol = {&c, &acc[r], 0};
                        st = wq_engine_forward(e, &w2, 0, 0, out_cb, &ol);
                    } else { /* the layer's own output */
                        for (int64_t k = 0; k < c.n; k++) {
                            double v = wq_algo_awq_layer_loss(c.x[kind][k], c.T[k], W[first], wq_buf[first], rows_of[first], cols, scratch);
                            wq_kern_exact_add_f64(&acc[r], &v, 1);
                        }
                    }
                }
                st = wq_dist_agree(sd, st);
                if (st == WQ_OK) st = wq_dist_allreduce_exact(sd, acc, WQ_AWQ_N_SCALE_RATIOS);
                if (st == WQ_OK) {
                    int best = pick_min(acc, WQ_AWQ_N_SCALE_RATIOS);
                    st = wq_algo_awq_scales(xmean[kind], wmean, cols, (float)best / WQ_AWQ_N_SCALE_RATIOS, scale[t]);
                    has_scale[t] = 1;
                    if (progress && wq_dist_rank(sd) == 0)
                        fprintf(stderr, "[awq] block %lld tuple %s: ratio %.2f\n", (long long)b, wq_blk_linears[first].sub,
                                (double)best / WQ_AWQ_N_SCALE_RATIOS);
                }
                wq_free(wmean);
            }
            /* 3. clip search per layer (5.6), on the layer's recorded input, scale applied */
            for (int l = 0; l < N_LIN && st == WQ_OK && cfg->ap.use_auto_clip; l++) {
                if (idx[l] < 0) continue;
                int kind = wq_blk_linears[l].input, t = kind; /* tuple index equals the input kind */
                wq_exact acc[WQ_AWQ_N_CLIP_RATIOS] = {{0, 0}};
                for (int i = 0; i < WQ_AWQ_N_CLIP_RATIOS && st == WQ_OK; i++) {
                    st = wq_algo_awq_fakequant(&spec[l], 1.0f - (float)i / 100.0f, W[l], rows_of[l], in_of[kind],
                                               has_scale[t] ? scale[t] : NULL, wq_buf[l]);
                    for (int64_t k = 0; st == WQ_OK && k < c.n; k++) {
                        double v = wq_algo_awq_layer_loss(c.x[kind][k], c.T[k], W[l], wq_buf[l], rows_of[l], in_of[kind], scratch);
                        wq_kern_exact_add_f64(&acc[i], &v, 1);
                    }
                }
                st = wq_dist_agree(sd, st);
                if (st == WQ_OK) st = wq_dist_allreduce_exact(sd, acc, WQ_AWQ_N_CLIP_RATIOS);
                if (st == WQ_OK) quant[l] = 1.0f - (float)pick_min(acc, WQ_AWQ_N_CLIP_RATIOS) / 100.0f;
            }
            /* 4. final quantization of the scaled weights and the absorbed norms (5.5, 5.7) */
            wq_blk_scaling sc = {.norm_s = {has_scale[0] ? scale[0] : NULL, has_scale[2] ? scale[2] : NULL}};
            for (int l = 0; l < N_LIN; l++) {
                int t = wq_blk_linears[l].input; /* tuple index equals the input kind */
                sc.s[l] = has_scale[t] ? scale[t] : NULL;
                sc.absorbed[l] = wq_blk_tuples[t].absorber != NULL;
                sc.quantile[l] = quant[l];
            }
            if (st == WQ_OK)
                st = wq_cli_write_scaled_block(sd, mc, b, &bb, &sc, f, entries, idx, lookup_raw, lookup_ctx, scratch);
            /* 5. the fp block gives the next block's inputs (INC) */
            if (st == WQ_OK) st = wq_dist_agree(sd, wq_engine_forward(e, &bb.w, 1, 0, NULL, NULL));
            cap_free(&c);
            for (int l = 0; l < N_LIN; l++) wq_free(wq_buf[l]);
            for (int q = 0; q < 4; q++) wq_free(scale[q]), wq_free(xmean[q]);
            wq_free(scratch);
            wq_block_buf_free(&bb);
            if (st == WQ_OK) wq_blk_log_time(sd, b, wq_cli_now() - t_block, predicted_block_s);
        }
        wq_status hs = wq_engine_handoff(e, s, st);
        if (hs != WQ_OK) return hs;
    }
    return WQ_OK;
}
