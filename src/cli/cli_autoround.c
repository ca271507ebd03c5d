/* cli_autoround.c: AutoRound (numerics.md §8.4) over the distributed engine.
 *
 * Blocks are tuned in groups of n_blocks consecutive blocks [g, g + n) (g = 0, n, 2n, ...; the last
 * group may be shorter); n = 1 is the classic block-by-block tuning. Per group: reference outputs
 * y_ref = chain_fp(x_fp) of every local calibration sequence (the fp blocks g..g+n-1 one after the
 * other); then `iters` SignSGD iterations on (v, alpha, beta) of ALL linears of the group's blocks:
 * the seeded sampler (same on every rank) picks batch_size * gradient_accumulate_steps sequence
 * indices; each rank runs the chain forward (kern_backward.h, qdq weights, n blocks) and the chain
 * backward (the block backward chained from the last block to the first) of the picked sequences it
 * holds, ONE sequence per call (the low-memory rule of kern_backward.h: activations of one sequence
 * per block of the group), with dL/dy = 2 (y - y_ref) on the output of the group's last block; the
 * per-sequence dL/dŴ and squared errors are summed in exact 128-bit fixed point (kern_exact.h) and
 * all-reduced (dist_reduce.h), so every rank sees the same gradient sum for any rank count and
 * applies the same sign update: containers are bit-identical for any np. The loss is that exact sum
 * / element count (MSE mean), the best-loss snapshot is kept (taken before the iteration's update),
 * the lr decays linearly. iters = 0: RTN. After tuning: export codes / scales / zeros, replace the
 * weights by qdq(W), and advance the inputs: with enable_quanted_input the engine's activations go
 * through the group's quantized blocks and a separate fp chain x_fp through the original ones;
 * without it the tuning inputs are the fp chain x_fp.
 *
 * Distributed: with enable_quanted_input the groups are sequential (one pipeline stage, P = 1; the
 * mini-batch of each step split across all ranks by sequence ownership, sequence j on rank j mod
 * D). Without it a group's inputs depend on the fp chain only, so P stages tune concurrently: first
 * a pipelined fp pass (stage s keeps a copy of its input x_fp(begin(s)), runs the fp blocks of its
 * range and hands the result to stage s+1), then every stage tunes, on its own D_s ranks, the
 * groups that START in its block range (a group may reach into the next stage's range: its blocks
 * are loaded from the source like any other). Every number of a group depends only on the
 * calibration data and the fp weights, never on the rank or stage layout: containers are
 * bit-identical for any rank count and any stage count. Layer: cli. */
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

/* One block of a group: its weights (replaced by qdq during tuning) and its linears' state. */
typedef struct {
    int64_t b;
    wq_block_buf bb;
    ar_lin lin[WQ_BLK_N_LINEARS];
    float *wptr[WQ_BLK_N_LINEARS];
    char layer[WQ_BLK_N_LINEARS][256];
} ar_blk;

typedef struct {
    const wq_model_cfg *mc;
    int64_t T, d;
    const float *cs, *sn;
    void *act, *ws; /* chain activations (n_blocks slots) and chain workspace, one sequence */
    float *y, *dy;
} fwd_ctx;

/* Linear q (0 .. nb*7-1) of a group. */
static ar_lin *lin_at(ar_blk *blk, int64_t q)
{
    return &blk[q / WQ_BLK_N_LINEARS].lin[q % WQ_BLK_N_LINEARS];
}

/* The tuning loop of one group of nb blocks. w[nb]: the blocks' weight views (the linears replaced
 * by qdq during tuning). xq[k], yref[k]: inputs and reference outputs of local sequence k. */
static wq_status tune_group(wq_dist *sd, const wq_config *cfg, const char *label, ar_blk *blk,
                            int nb, const wq_block_weights *w, float *const *xq, float *const *yref,
                            const int64_t *local_of, int64_t total_seqs, fwd_ctx *fc, int progress)
{
    const wq_algo_params *ap = &cfg->ap;
    const int64_t nq = (int64_t)nb * WQ_BLK_N_LINEARS;
    wq_status st = WQ_OK;
    int64_t n_acc = 1, max_n = 1; /* cell 0: the loss */
    for (int64_t q = 0; q < nq; q++) {
        ar_lin *l = lin_at(blk, q);
        if (l->idx < 0) continue;
        const int64_t n = l->L.rows * l->L.cols;
        l->off = n_acc, n_acc += n, max_n = n > max_n ? n : max_n;
    }
    wq_exact *acc = wq_malloc((size_t)n_acc * sizeof *acc);
    /* summed dL/dŴ and dL/dv of one linear at a time (shared by all of the group's linears) */
    double *g = wq_malloc((size_t)max_n * sizeof *g), *dv = wq_malloc((size_t)max_n * sizeof *dv);
    wq_block_grads *gr = wq_calloc((size_t)nb, sizeof *gr);
    wq_ar_sampler smp = {0};
    const int64_t per_iter = ap->batch_size * ap->gradient_accumulate_steps;
    WQ_CHECK_GOTO(acc && g && dv && gr, st, WQ_ERR_NOMEM, done,
                  "out of memory for autoround gradients");
    WQ_TRY_GOTO(wq_algo_ar_sampler_init(&smp, total_seqs, per_iter, cfg->calib.seed), st, done);
    double lr = ap->lr, mlr = ap->minmax_lr;
    if (lr <= 0) {
        int max_bits = 0;
        for (int64_t q = 0; q < nq; q++)
            if (lin_at(blk, q)->idx >= 0 && lin_at(blk, q)->L.bits > max_bits)
                max_bits = lin_at(blk, q)->L.bits;
        lr = (ap->iters >= 1000 && max_bits <= 3 ? 2.0 : 1.0) / (double)ap->iters;
    }
    if (mlr <= 0) mlr = lr;
    const bool linear = strcmp(ap->lr_scheduler, "constant") != 0;
    const double n_elem = (double)per_iter * (double)fc->T * (double)fc->d;
    double best = INFINITY;
    int64_t last_best = 0, t = 0;
    for (int j = 0; j < nb; j++) {
        float **gp[WQ_BLK_N_LINEARS] = {&gr[j].wq,     &gr[j].wk,   &gr[j].wv,    &gr[j].wo,
                                        &gr[j].w_gate, &gr[j].w_up, &gr[j].w_down};
        for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
            if (blk[j].lin[i].idx >= 0) *gp[i] = blk[j].lin[i].gw;
    }
    for (t = 0; t < ap->iters; t++) {
        const int64_t *pick = wq_algo_ar_sampler_next(&smp);
        for (int64_t q = 0; q < nq; q++) {
            ar_lin *l = lin_at(blk, q);
            if (l->idx < 0) continue;
            wq_algo_ar_clamp(&l->L);
            wq_algo_ar_qdq(&l->L, l->w0, blk[q / WQ_BLK_N_LINEARS].wptr[q % WQ_BLK_N_LINEARS]);
        }
        memset(acc, 0, (size_t)n_acc * sizeof *acc);
        int64_t bad = 0;
        for (int64_t p = 0; p < per_iter; p++) {
            const int64_t k = local_of[pick[p]];
            if (k < 0) continue;
            const int64_t n = fc->T * fc->d;
            wq_kern_bwd_chain_forward_f32(fc->mc, w, nb, xq[k], fc->y, 1, fc->T, fc->cs, fc->sn,
                                          fc->act, fc->ws);
            double se = 0;
            for (int64_t i = 0; i < n; i++) {
                const double e = (double)fc->y[i] - (double)yref[k][i];
                se += e * e;
                fc->dy[i] = (float)(2 * e);
            }
            bad += wq_kern_exact_add_f64(acc, &se, 1);
            for (int64_t q = 0; q < nq; q++) {
                ar_lin *l = lin_at(blk, q);
                if (l->idx >= 0) memset(l->gw, 0, (size_t)(l->L.rows * l->L.cols) * sizeof(float));
            }
            wq_kern_bwd_chain_backward_f32(fc->mc, w, nb, fc->dy, NULL, gr, 1, fc->T, fc->cs,
                                           fc->sn, fc->act, fc->ws);
            for (int64_t q = 0; q < nq; q++) {
                ar_lin *l = lin_at(blk, q);
                if (l->idx >= 0)
                    bad += wq_kern_exact_add_f32(acc + l->off, l->gw, l->L.rows * l->L.cols);
            }
        }
        /* every rank learns whether any rank saw a non-finite value */
        double badd = (double)bad;
        WQ_TRY_GOTO(wq_dist_allreduce_max_f64(sd, &badd, 1), st, done);
        WQ_TRY_GOTO(wq_dist_allreduce_exact(sd, acc, n_acc), st, done);
        double loss;
        wq_kern_exact_to_f64(acc, &loss, 1);
        loss /= n_elem;
        if (badd > 0 || !isfinite(loss)) {
            WQ_LOG_ERROR("autoround: non-finite loss or gradient in %s at iteration %lld", label,
                         (long long)t);
            st = WQ_ERR_NUMERIC;
            goto done;
        }
        if (progress && wq_dist_rank(sd) == 0 && (t == 0 || t + 1 == ap->iters))
            fprintf(stderr, "[autoround] %s iter %lld loss %.6g\n", label, (long long)t, loss);
        if (loss < best) {
            best = loss, last_best = t;
            for (int64_t q = 0; q < nq; q++)
                if (lin_at(blk, q)->idx >= 0) snapshot(lin_at(blk, q), 1);
        }
        if (ap->dynamic_max_gap > 0 && t - last_best >= ap->dynamic_max_gap) break;
        const double lr_t = wq_algo_ar_lr_at(lr, t, ap->iters, linear);
        const double mlr_t = wq_algo_ar_lr_at(mlr, t, ap->iters, linear);
        for (int64_t q = 0; q < nq; q++) {
            ar_lin *l = lin_at(blk, q);
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
        for (int64_t q = 0; q < nq; q++)
            if (lin_at(blk, q)->idx >= 0) snapshot(lin_at(blk, q), 0);
    if (progress && wq_dist_rank(sd) == 0)
        fprintf(stderr, "[autoround] %s: best loss %.6g at iteration %lld of %lld\n", label, best,
                (long long)last_best, (long long)t);
done:
    wq_free(acc), wq_free(g), wq_free(dv), wq_free(gr);
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

static void blk_free(ar_blk *a)
{
    for (int i = 0; i < WQ_BLK_N_LINEARS; i++)
        lin_free(&a->lin[i]);
    wq_block_buf_free(&a->bb);
}

/* x[k] <- the fp blocks [b0, b1) applied to x[k] for the nl local sequences (the forward of
 * kern_backward.h, one sequence at a time, as the reference outputs). Not collective. */
static wq_status fp_advance(const wq_model_cfg *mc, const wq_weight_source *src, int64_t b0,
                            int64_t b1, float *const *x, int64_t nl, fwd_ctx *fc)
{
    for (int64_t b = b0; b < b1; b++) {
        wq_block_buf bb;
        WQ_TRY(wq_block_load(mc, src, b, &bb));
        for (int64_t k = 0; k < nl; k++)
            wq_kern_bwd_block_forward_f32(mc, &bb.w, x[k], x[k], 1, fc->T, fc->cs, fc->sn, fc->act,
                                          fc->ws);
        wq_block_buf_free(&bb);
    }
    return WQ_OK;
}

/* One group [g, g + nb): load, reference outputs, tuning, export and write, next inputs.
 * Collective over sd. */
static wq_status run_group(wq_dist *sd, wq_engine *e, const wq_model_cfg *mc,
                           const wq_weight_source *src, const wq_config *cfg, int64_t total_seqs,
                           wq_h5_file *f, const wq_h5_entry *entries, wq_entry_lookup lookup,
                           void *lookup_ctx, int progress, int64_t g, int nb, const char *label,
                           float *const *xfp, float *const *xq, float *const *yref,
                           const int64_t *local_of, fwd_ctx *fc)
{
    const wq_algo_params *ap = &cfg->ap;
    const wq_blk_dims dims = wq_blk_dims_of(mc);
    const int64_t nl = wq_engine_n_local(e), T = fc->T, d = fc->d;
    wq_status st = WQ_OK;
    ar_blk *blk = wq_calloc((size_t)nb, sizeof *blk);
    wq_block_weights *w = wq_calloc((size_t)nb, sizeof *w);
    if (!blk || !w) {
        WQ_LOG_ERROR("out of memory for autoround %s", label);
        st = WQ_ERR_NOMEM;
    }
    st = wq_dist_agree(sd, st);
    for (int j = 0; st == WQ_OK && j < nb; j++) {
        ar_blk *a = &blk[j];
        a->b = g + j;
        st = wq_dist_agree(sd, wq_block_load(mc, src, a->b, &a->bb));
        if (st != WQ_OK) break;
        w[j] = a->bb.w;
        wq_blk_weights(&a->bb, a->wptr);
        for (int i = 0; i < WQ_BLK_N_LINEARS && st == WQ_OK; i++) {
            snprintf(a->layer[i], sizeof a->layer[i], "model.layers.%lld.%s", (long long)a->b,
                     wq_blk_linears[i].sub);
            a->lin[i].idx = lookup(lookup_ctx, a->layer[i]);
            if (a->lin[i].idx >= 0)
                st = lin_setup(&a->lin[i], &entries[a->lin[i].idx].spec, a->layer[i], a->wptr[i],
                               dims.rows[i], dims.in[wq_blk_linears[i].input]);
        }
        st = wq_dist_agree(sd, st);
    }
    /* reference outputs of the fp blocks on the fp inputs */
    for (int64_t k = 0; st == WQ_OK && k < nl; k++)
        wq_kern_bwd_chain_forward_f32(mc, w, nb, xfp[k], yref[k], 1, T, fc->cs, fc->sn, fc->act,
                                      fc->ws);
    if (st == WQ_OK && ap->iters > 0)
        st = tune_group(sd, cfg, label, blk, nb, w, xq, yref, local_of, total_seqs, fc, progress);
    st = wq_dist_agree(sd, st);
    /* export, write, and put qdq(W) (or RTN's dequantized W for iters = 0) into the blocks */
    for (int64_t q = 0; st == WQ_OK && q < (int64_t)nb * WQ_BLK_N_LINEARS; q++) {
        ar_lin *l = lin_at(blk, q);
        const int i = (int)(q % WQ_BLK_N_LINEARS);
        ar_blk *a = &blk[q / WQ_BLK_N_LINEARS];
        if (l->idx < 0) continue;
        wq_qmatrix m = {0};
        if (ap->iters > 0) {
            wq_algo_ar_clamp(&l->L);
            st = wq_algo_ar_export(&l->L, l->w0, &m);
        } else {
            st = wq_algo_rtn_quantize(&entries[l->idx].spec, a->layer[i], l->w0, l->L.rows,
                                      l->L.cols, &m, NULL);
        }
        if (st == WQ_OK) wq_kern_dequant_matrix(&m, a->wptr[i]);
        wq_status ws = st;
        if (st == WQ_OK && wq_dist_rank(sd) == q % wq_dist_size(sd))
            ws = wq_h5_write_qlinear(f, l->idx, &m);
        wq_qmatrix_free(&m);
        st = wq_dist_agree(sd, ws);
    }
    /* next inputs: the fp chain, and with enable_quanted_input the quantized one */
    if (st == WQ_OK) {
        for (int64_t k = 0; k < nl; k++)
            memcpy(xfp[k], yref[k], (size_t)(T * d) * sizeof(float));
        for (int j = 0; ap->enable_quanted_input && j < nb && st == WQ_OK; j++)
            st = wq_engine_forward(e, &w[j], 1, 0, NULL, NULL); /* x_q through block_q */
    }
    st = wq_dist_agree(sd, st);
    for (int j = 0; blk && j < nb; j++)
        blk_free(&blk[j]);
    wq_free(blk), wq_free(w);
    return st;
}

wq_status wq_cli_autoround_run(wq_dist *world, wq_engine *e, const wq_model_cfg *mc,
                               const wq_weight_source *src, const wq_config *cfg,
                               int64_t total_seqs, wq_h5_file *f, const wq_h5_entry *entries,
                               wq_entry_lookup lookup, void *lookup_ctx, int progress)
{
    wq_status st = WQ_OK;
    wq_dist *sd = wq_engine_stage_dist(e);
    const wq_algo_params *ap = &cfg->ap;
    const int64_t d = mc->hidden_size, nl = wq_engine_n_local(e);
    const int64_t T = total_seqs > 0 ? wq_engine_seq_len(e, 0) : 0;
    const int P = wq_engine_n_stages(e), stage = wq_engine_stage(e);
    const int64_t nbk = ap->n_blocks > 1 ? ap->n_blocks : 1;
    /* the fp chain has its own buffers unless it IS the engine's activations (P = 1, no quanted) */
    const int own_xfp = ap->enable_quanted_input || P > 1;
    int64_t *local_of = NULL;
    float **xfp = NULL, **yref = NULL, **xq = NULL, **eact = NULL;
    fwd_ctx fc = {mc, T, d, wq_engine_rope_cos(e), wq_engine_rope_sin(e), NULL, NULL, NULL, NULL};
    if (P != 1 && ap->enable_quanted_input) {
        WQ_LOG_ERROR(
            "autoround with enable_quanted_input tunes the blocks one after the other "
            "(one pipeline stage, all ranks data-parallel); got %d stages: use --stages 1, "
            "or enable_quanted_input = false (stages then tune concurrently)",
            P);
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
    const int nbmax = (int)(nbk < mc->n_layers ? nbk : (mc->n_layers > 0 ? mc->n_layers : 1));
    local_of = wq_malloc((size_t)(total_seqs + 1) * sizeof *local_of);
    xfp = wq_calloc((size_t)nl + 1, sizeof *xfp);
    yref = wq_calloc((size_t)nl + 1, sizeof *yref);
    xq = wq_calloc((size_t)nl + 1, sizeof *xq);
    eact = wq_calloc((size_t)nl + 1, sizeof *eact);
    fc.act = wq_malloc(wq_kern_bwd_chain_act_bytes(mc, nbmax, 1, T, sizeof(float)));
    fc.ws = wq_malloc(wq_kern_bwd_chain_workspace_bytes(mc, 1, T, sizeof(float)));
    fc.y = wq_malloc((size_t)(T * d) * sizeof(float));
    fc.dy = wq_malloc((size_t)(T * d) * sizeof(float));
    int ok = local_of && xfp && yref && xq && eact && fc.act && fc.ws && fc.y && fc.dy;
    for (int64_t j = 0; ok && j < total_seqs; j++)
        local_of[j] = -1;
    for (int64_t k = 0; ok && k < nl; k++) {
        local_of[wq_engine_local_seq(e, k)] = k;
        eact[k] = wq_engine_local_act(e, k);
        yref[k] = wq_malloc((size_t)(T * d) * sizeof(float));
        xfp[k] = own_xfp ? wq_malloc((size_t)(T * d) * sizeof(float)) : wq_engine_local_act(e, k);
        xq[k] = ap->enable_quanted_input ? wq_engine_local_act(e, k) : xfp[k];
        ok = yref[k] && xfp[k];
    }
    if (!ok) {
        WQ_LOG_ERROR("out of memory for autoround activations (%lld sequences of %lld tokens)",
                     (long long)nl, (long long)T);
        st = WQ_ERR_NOMEM;
    }
    st = wq_dist_agree(world, st);
    /* the fp inputs of every stage: stage s copies what it received and (P > 1) runs the fp blocks
     * of its range for stage s+1 (a forward only: cheap next to the tuning) */
    for (int s = 0; st == WQ_OK && s < P; s++) {
        wq_status ls = WQ_OK;
        if (stage == s) {
            for (int64_t k = 0; own_xfp && k < nl; k++)
                memcpy(xfp[k], wq_engine_local_act(e, k), (size_t)(T * d) * sizeof(float));
            if (s + 1 < P)
                ls = fp_advance(mc, src, wq_engine_block_begin(e, s), wq_engine_block_end(e, s),
                                eact, nl, &fc);
        }
        if (s + 1 < P) st = wq_engine_handoff(e, s, ls);
    }
    const int64_t b_begin = wq_engine_block_begin(e, stage), b_end = wq_engine_block_end(e, stage);
    int64_t g = (b_begin + nbk - 1) / nbk * nbk; /* the first group starting in this range */
    /* a stage that starts inside a group: its fp inputs at the first group it owns */
    if (st == WQ_OK && g > b_begin && g < b_end) st = fp_advance(mc, src, b_begin, g, xfp, nl, &fc);
    st = wq_dist_agree(sd, st);
    for (; st == WQ_OK && g < b_end; g += nbk) {
        wq_dist_fault_point(world, "block", g);
        const double t0 = wq_cli_now();
        const int nb = (int)(g + nbk <= mc->n_layers ? nbk : mc->n_layers - g);
        char label[160];
        if (nb == 1)
            snprintf(label, sizeof label, "block %lld (model.layers.%lld)", (long long)g,
                     (long long)g);
        else
            snprintf(label, sizeof label,
                     "blocks %lld..%lld (model.layers.%lld .. model.layers.%lld)", (long long)g,
                     (long long)(g + nb - 1), (long long)g, (long long)(g + nb - 1));
        st = run_group(sd, e, mc, src, cfg, total_seqs, f, entries, lookup, lookup_ctx, progress, g,
                       nb, label, xfp, xq, yref, local_of, &fc);
        if (progress && wq_dist_rank(sd) == 0)
            fprintf(stderr, "[autoround] %s done in %.2f s\n", label, wq_cli_now() - t0);
    }
    for (int64_t k = 0; k < nl && yref; k++) {
        wq_free(yref[k]);
        if (own_xfp && xfp) wq_free(xfp[k]);
    }
    wq_free(local_of), wq_free(xfp), wq_free(yref), wq_free(xq), wq_free(eact);
    wq_free(fc.act), wq_free(fc.ws), wq_free(fc.y), wq_free(fc.dy);
    return wq_dist_agree(world, st);
}
