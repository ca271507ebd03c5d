/* cli_autoround.c: block-sequential AutoRound (numerics.md §8.4) over the distributed engine.
 *
 * Per block: reference outputs y_ref = block_fp(x_fp) of every local calibration sequence; then
 * `iters` SignSGD iterations on (v, alpha, beta) of the block's linears: the seeded sampler (same
 * on every rank) picks batch_size * gradient_accumulate_steps sequence indices; each rank runs the
 * forward (kern_backward.h, qdq weights) and backward of the picked sequences it holds, ONE
 * sequence per call (the low-memory rule of kern_backward.h: activations of one sequence), with
 * dL/dy = 2 (y - y_ref); the per-sequence dL/dŴ and squared errors are summed in exact 128-bit fixed
 * point (kern_exact.h) and all-reduced (dist_reduce.h), so every rank sees the same gradient sum for
 * any rank count and applies the same sign update: containers are bit-identical for any np. The
 * loss is that exact sum / element count (MSE mean), the best-loss snapshot is kept (taken before
 * the iteration's update), the lr decays linearly. iters = 0: RTN. After tuning: export codes /
 * scales / zeros, replace the weights by qdq(W), and advance the inputs: with
 * enable_quanted_input the engine's activations go through the quantized block and a separate fp
 * chain x_fp through the original one; without it both are the fp chain.
 * Distributed: one pipeline stage (P = 1), the mini-batch of each step split across all ranks by
 * sequence ownership (sequence j on rank j mod D). Layer: cli. */
#include "cli/cli_autoround.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "algos/algo_autoround.h"
#include "algos/algo_rtn.h"
#include "cli/cli.h"
#include "cli/cli_block.h"
#include "core/core_alloc.h"
#include "core/core_log.h"
#include "dist/dist_reduce.h"
#include "kernels/kern_backward.h"
#include "kernels/kern_exact.h"
#include "kernels/kern_quant.h"

typedef struct {
    int64_t idx;        /* container entry, -1 = kept in fp */
    wq_ar_layer L;
    float *w0;          /* original weights */
    float *gw;          /* per-sequence dL/dŴ (float, from the backward) */
    double *da, *db;    /* min/max scale gradients */
    float *best_v, *best_a, *best_b;
    int64_t off;        /* offset in the exact accumulator */
} ar_lin;

static void lin_free(ar_lin *l)
{
    wq_algo_ar_free(&l->L);
    wq_free(l->w0), wq_free(l->gw), wq_free(l->da), wq_free(l->db);
    wq_free(l->best_v), wq_free(l->best_a), wq_free(l->best_b);
    memset(l, 0, sizeof *l);
}

static void snapshot(ar_lin *l, int save)
{
    const size_t nv = (size_t)(l->L.rows * l->L.cols) * sizeof(float),
                 ng = (size_t)(l->L.rows * l->L.ng) * sizeof(float);
    if (save) {
        memcpy(l->best_v, l->L.v, nv), memcpy(l->best_a, l->L.alpha, ng);
        memcpy(l->best_b, l->L.beta, ng);
    } else {
        memcpy(l->L.v, l->best_v, nv), memcpy(l->L.alpha, l->best_a, ng);
        memcpy(l->L.beta, l->best_b, ng);
    }
}

typedef struct {
    const wq_model_cfg *mc;
    int64_t T, d;
    const float *cs, *sn;
    void *act, *ws;
    float *y, *dy;
} fwd_ctx;

/* The tuning loop of one block. w: the block's weight views (replaced by qdq during tuning).
 * xq[k], yref[k]: inputs and reference outputs of local sequence k. */
static wq_status tune_block(wq_dist *sd, const wq_config *cfg, int64_t b, ar_lin *lin,
                            float *wptr[WQ_BLK_N_LINEARS], const wq_block_weights *w,
                            float *const *xq, float *const *yref, const int64_t *local_of,
                            int64_t total_seqs, fwd_ctx *fc, int progress)
{
    const wq_algo_params *ap = &cfg->ap;
    wq_status st = WQ_OK;
    int64_t n_acc = 1, max_n = 1; /* cell 0: the loss */
    for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
        if (lin[i].idx >= 0) {
            const int64_t n = lin[i].L.rows * lin[i].L.cols;
            lin[i].off = n_acc, n_acc += n, max_n = n > max_n ? n : max_n;
        }
    wq_exact *acc = wq_malloc((size_t)n_acc * sizeof *acc);
    /* summed dL/dŴ and dL/dv of one linear at a time (shared by the seven) */
    double *g = wq_malloc((size_t)max_n * sizeof *g), *dv = wq_malloc((size_t)max_n * sizeof *dv);
    wq_ar_sampler smp = {0};
    const int64_t per_iter = ap->batch_size * ap->gradient_accumulate_steps;
    WQ_CHECK_GOTO(acc && g && dv, st, WQ_ERR_NOMEM, done, "out of memory for autoround gradients");
    WQ_TRY_GOTO(wq_algo_ar_sampler_init(&smp, total_seqs, per_iter, cfg->calib.seed), st, done);
    double lr = ap->lr, mlr = ap->minmax_lr;
    if (lr <= 0) {
        int max_bits = 0;
        for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
            if (lin[i].idx >= 0 && lin[i].L.bits > max_bits) max_bits = lin[i].L.bits;
        lr = (ap->iters >= 1000 && max_bits <= 3 ? 2.0 : 1.0) / (double)ap->iters;
    }
    if (mlr <= 0) mlr = lr;
    const bool linear = strcmp(ap->lr_scheduler, "constant") != 0;
    const double n_elem = (double)per_iter * (double)fc->T * (double)fc->d;
    double best = INFINITY;
    int64_t last_best = 0, t = 0;
    wq_block_grads gr = {0};
    float **gp[WQ_BLK_N_LINEARS] = {&gr.wq, &gr.wk, &gr.wv, &gr.wo, &gr.w_gate, &gr.w_up, &gr.w_down};
    for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
        if (lin[i].idx >= 0) *gp[i] = lin[i].gw;
    for (t = 0; t < ap->iters; t++) {
        const int64_t *pick = wq_algo_ar_sampler_next(&smp);
        for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
            if (lin[i].idx >= 0) {
                wq_algo_ar_clamp(&lin[i].L);
                wq_algo_ar_qdq(&lin[i].L, lin[i].w0, wptr[i]);
            }
        memset(acc, 0, (size_t)n_acc * sizeof *acc);
        int64_t bad = 0;
        for (int64_t p = 0; p < per_iter; p++) {
            const int64_t k = local_of[pick[p]];
            if (k < 0) continue;
            const int64_t n = fc->T * fc->d;
            wq_kern_bwd_block_forward_f32(fc->mc, w, xq[k], fc->y, 1, fc->T, fc->cs, fc->sn,
                                          fc->act, fc->ws);
            double se = 0;
            for (int64_t i = 0; i < n; i++) {
                const double e = (double)fc->y[i] - (double)yref[k][i];
                se += e * e;
                fc->dy[i] = (float)(2 * e);
            }
            bad += wq_kern_exact_add_f64(acc, &se, 1);
            for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
                if (lin[i].idx >= 0)
                    memset(lin[i].gw, 0, (size_t)(lin[i].L.rows * lin[i].L.cols) * sizeof(float));
            wq_kern_bwd_block_backward_f32(fc->mc, w, fc->dy, NULL, &gr, 1, fc->T, fc->cs, fc->sn,
                                           fc->act, fc->ws);
            for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
                if (lin[i].idx >= 0)
                    bad += wq_kern_exact_add_f32(acc + lin[i].off, lin[i].gw,
                                                 lin[i].L.rows * lin[i].L.cols);
        }
        /* every rank learns whether any rank saw a non-finite value */
        double badd = (double)bad;
        WQ_TRY_GOTO(wq_dist_allreduce_max_f64(sd, &badd, 1), st, done);
        WQ_TRY_GOTO(wq_dist_allreduce_exact(sd, acc, n_acc), st, done);
        double loss;
        wq_kern_exact_to_f64(acc, &loss, 1);
        loss /= n_elem;
        if (badd > 0 || !isfinite(loss)) {
            WQ_LOG_ERROR("autoround: non-finite loss or gradient in block %lld (model.layers.%lld) "
                         "at iteration %lld",
                         (long long)b, (long long)b, (long long)t);
            st = WQ_ERR_NUMERIC;
            goto done;
        }
        if (progress && wq_dist_rank(sd) == 0 && (t == 0 || t + 1 == ap->iters))
            fprintf(stderr, "[autoround] block %lld iter %lld loss %.6g\n", (long long)b,
                    (long long)t, loss);
        if (loss < best) {
            best = loss, last_best = t;
            for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
                if (lin[i].idx >= 0) snapshot(&lin[i], 1);
        }
        if (ap->dynamic_max_gap > 0 && t - last_best >= ap->dynamic_max_gap) break;
        const double lr_t = wq_algo_ar_lr_at(lr, t, ap->iters, linear);
        const double mlr_t = wq_algo_ar_lr_at(mlr, t, ap->iters, linear);
        for (int i = 0; i < WQ_BLK_N_LINEARS; i++) {
            ar_lin *l = &lin[i];
            if (l->idx < 0) continue;
            const int64_t nv = l->L.rows * l->L.cols, ng = l->L.rows * l->L.ng;
            wq_kern_exact_to_f64(acc + l->off, g, nv);
            wq_algo_ar_grad(&l->L, l->w0, g, dv, ap->enable_minmax_tuning ? l->da : NULL,
                            ap->enable_minmax_tuning ? l->db : NULL);
            wq_algo_ar_sign_step(l->L.v, dv, nv, lr_t);
            if (ap->enable_minmax_tuning) {
                wq_algo_ar_sign_step(l->L.alpha, l->da, ng, mlr_t);
                wq_algo_ar_sign_step(l->L.beta, l->db, ng, mlr_t);
            }
        }
    }
    if (!ap->not_use_best_mse && isfinite(best))
        for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
            if (lin[i].idx >= 0) snapshot(&lin[i], 0);
    if (progress && wq_dist_rank(sd) == 0)
        fprintf(stderr, "[autoround] block %lld: best loss %.6g at iteration %lld of %lld\n",
                (long long)b, best, (long long)last_best, (long long)t);
done:
    wq_free(acc), wq_free(g), wq_free(dv);
    wq_algo_ar_sampler_free(&smp);
    return st;
}

static wq_status lin_setup(ar_lin *l, const wq_qspec *spec, const char *layer, const float *w,
                           int64_t rows, int64_t cols)
{
    wq_status st = wq_algo_ar_init(spec, layer, w, rows, cols, &l->L);
    if (st != WQ_OK) return st;
    const size_t nv = (size_t)(rows * cols), ng = (size_t)(rows * l->L.ng);
    l->w0 = wq_malloc(nv * sizeof(float));
    l->gw = wq_malloc(nv * sizeof(float));
    l->da = wq_malloc(ng * sizeof(double));
    l->db = wq_malloc(ng * sizeof(double));
    l->best_v = wq_malloc(nv * sizeof(float));
    l->best_a = wq_malloc(ng * sizeof(float));
    l->best_b = wq_malloc(ng * sizeof(float));
    if (!l->w0 || !l->gw || !l->da || !l->db || !l->best_v || !l->best_a ||
        !l->best_b) {
        WQ_LOG_ERROR("%s: out of memory for autoround state", layer);
        return WQ_ERR_NOMEM;
    }
    memcpy(l->w0, w, nv * sizeof(float));
    snapshot(l, 1);
    return WQ_OK;
}

wq_status wq_cli_autoround_run(wq_dist *world, wq_engine *e, const wq_model_cfg *mc,
                               const wq_weight_source *src, const wq_config *cfg,
                               int64_t total_seqs, wq_h5_file *f, const wq_h5_entry *entries,
                               wq_entry_lookup lookup, void *lookup_ctx, int progress)
{
    wq_status st = WQ_OK;
    wq_dist *sd = wq_engine_stage_dist(e);
    const wq_algo_params *ap = &cfg->ap;
    const wq_blk_dims dims = wq_blk_dims_of(mc);
    const int64_t d = mc->hidden_size, nl = wq_engine_n_local(e);
    const int64_t T = total_seqs > 0 ? wq_engine_seq_len(e, 0) : 0;
    int64_t *local_of = NULL;
    float **xfp = NULL, **yref = NULL, **xq = NULL;
    fwd_ctx fc = {mc, T, d, wq_engine_rope_cos(e), wq_engine_rope_sin(e), NULL, NULL, NULL, NULL};
    if (wq_engine_n_stages(e) != 1) {
        WQ_LOG_ERROR("autoround runs with one pipeline stage (all ranks data-parallel); got %d: "
                     "use --stages 1",
                     wq_engine_n_stages(e));
        st = WQ_ERR_ARG;
    }
    if (st == WQ_OK && ap->iters > 0 && ap->batch_size * ap->gradient_accumulate_steps > total_seqs) {
        WQ_LOG_ERROR("autoround: batch_size (%lld) * gradient_accumulate_steps (%lld) exceeds "
                     "n_samples (%lld)",
                     (long long)ap->batch_size, (long long)ap->gradient_accumulate_steps,
                     (long long)total_seqs);
        st = WQ_ERR_ARG;
    }
    for (int64_t j = 1; st == WQ_OK && j < total_seqs; j++)
        if (wq_engine_seq_len(e, j) != T) st = WQ_ERR_ARG; /* calibration windows are equal */
    st = wq_dist_agree(world, st);
    if (st != WQ_OK) return st;
    local_of = wq_malloc((size_t)(total_seqs + 1) * sizeof *local_of);
    xfp = wq_calloc((size_t)nl + 1, sizeof *xfp);
    yref = wq_calloc((size_t)nl + 1, sizeof *yref);
    xq = wq_calloc((size_t)nl + 1, sizeof *xq);
    fc.act = wq_malloc(wq_kern_bwd_block_act_bytes(mc, 1, T, sizeof(float)));
    fc.ws = wq_malloc(wq_kern_bwd_block_workspace_bytes(mc, 1, T, sizeof(float)));
    fc.y = wq_malloc((size_t)(T * d) * sizeof(float));
    fc.dy = wq_malloc((size_t)(T * d) * sizeof(float));
    int ok = local_of && xfp && yref && xq && fc.act && fc.ws && fc.y && fc.dy;
    for (int64_t j = 0; ok && j < total_seqs; j++)
        local_of[j] = -1;
    for (int64_t k = 0; ok && k < nl; k++) {
        local_of[wq_engine_local_seq(e, k)] = k;
        xq[k] = wq_engine_local_act(e, k);
        yref[k] = wq_malloc((size_t)(T * d) * sizeof(float));
        xfp[k] = ap->enable_quanted_input ? wq_malloc((size_t)(T * d) * sizeof(float)) : xq[k];
        ok = yref[k] && xfp[k];
        if (ok && ap->enable_quanted_input) memcpy(xfp[k], xq[k], (size_t)(T * d) * sizeof(float));
    }
    if (!ok) {
        WQ_LOG_ERROR("out of memory for autoround activations (%lld sequences of %lld tokens)",
                     (long long)nl, (long long)T);
        st = WQ_ERR_NOMEM;
    }
    st = wq_dist_agree(world, st);
    void *kws = NULL;
    if (st == WQ_OK) {
        kws = wq_malloc(wq_kern_block_workspace_bytes(mc, T));
        st = wq_dist_agree(world, kws ? WQ_OK : WQ_ERR_NOMEM);
    }
    for (int64_t b = 0; st == WQ_OK && b < mc->n_layers; b++) {
        wq_dist_fault_point(world, "block", b);
        double t0 = wq_cli_now();
        wq_block_buf bb;
        ar_lin lin[WQ_BLK_N_LINEARS];
        memset(lin, 0, sizeof lin);
        st = wq_dist_agree(sd, wq_block_load(mc, src, b, &bb));
        if (st != WQ_OK) break;
        float *wptr[WQ_BLK_N_LINEARS];
        wq_blk_weights(&bb, wptr);
        char layer[WQ_BLK_N_LINEARS][256];
        for (int i = 0; i < WQ_BLK_N_LINEARS && st == WQ_OK; i++) {
            snprintf(layer[i], sizeof layer[i], "model.layers.%lld.%s", (long long)b,
                     wq_blk_linears[i].sub);
            lin[i].idx = lookup(lookup_ctx, layer[i]);
            if (lin[i].idx >= 0)
                st = lin_setup(&lin[i], &entries[lin[i].idx].spec, layer[i], wptr[i],
                               dims.rows[i], dims.in[wq_blk_linears[i].input]);
        }
        st = wq_dist_agree(sd, st);
        /* reference outputs of the fp block on the fp inputs */
        for (int64_t k = 0; st == WQ_OK && k < nl; k++)
            wq_kern_bwd_block_forward_f32(mc, &bb.w, xfp[k], yref[k], 1, T, fc.cs, fc.sn, fc.act,
                                          fc.ws);
        if (st == WQ_OK && ap->iters > 0)
            st = tune_block(sd, cfg, b, lin, wptr, &bb.w, xq, yref, local_of, total_seqs, &fc,
                            progress);
        st = wq_dist_agree(sd, st);
        /* export, write, and put qdq(W) (or RTN's dequantized W for iters = 0) into the block */
        for (int i = 0; i < WQ_BLK_N_LINEARS && st == WQ_OK; i++) {
            if (lin[i].idx < 0) continue;
            wq_qmatrix m = {0};
            if (ap->iters > 0) {
                wq_algo_ar_clamp(&lin[i].L);
                st = wq_algo_ar_export(&lin[i].L, lin[i].w0, &m);
            } else {
                st = wq_algo_rtn_quantize(&entries[lin[i].idx].spec, layer[i], lin[i].w0,
                                          lin[i].L.rows, lin[i].L.cols, &m, NULL);
            }
            if (st == WQ_OK) wq_kern_dequant_matrix(&m, wptr[i]);
            wq_status ws = st;
            if (st == WQ_OK && wq_dist_rank(sd) == i % wq_dist_size(sd))
                ws = wq_h5_write_qlinear(f, lin[i].idx, &m);
            wq_qmatrix_free(&m);
            st = wq_dist_agree(sd, ws);
        }
        /* next inputs */
        if (st == WQ_OK) {
            if (ap->enable_quanted_input) {
                st = wq_engine_forward(e, &bb.w, 1, 0, NULL, NULL); /* x_q through block_q */
                for (int64_t k = 0; k < nl; k++)
                    memcpy(xfp[k], yref[k], (size_t)(T * d) * sizeof(float));
            } else {
                for (int64_t k = 0; k < nl; k++)
                    memcpy(xq[k], yref[k], (size_t)(T * d) * sizeof(float));
            }
        }
        st = wq_dist_agree(sd, st);
        if (progress && wq_dist_rank(sd) == 0)
            fprintf(stderr, "[autoround] block %lld done in %.2f s\n", (long long)b,
                    wq_cli_now() - t0);
        for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
            lin_free(&lin[i]);
        wq_block_buf_free(&bb);
    }
    wq_free(kws);
    for (int64_t k = 0; k < nl && yref; k++) {
        wq_free(yref[k]);
        if (ap->enable_quanted_input && xfp) wq_free(xfp[k]);
    }
    wq_free(local_of), wq_free(xfp), wq_free(yref), wq_free(xq);
    wq_free(fc.act), wq_free(fc.ws), wq_free(fc.y), wq_free(fc.dy);
    return wq_dist_agree(world, st);
}
