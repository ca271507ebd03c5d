/* cli_gptq.c: block-sequential GPTQ over the distributed engine (numerics.md 4.2-4.6).
 * Per block: capture the linears' inputs on every local calibration sequence (one sequence = one
 * fixed chunk), accumulate Hessians exactly, reduce them over the stage, solve the rows of each
 * linear tile-aligned across the stage's ranks, assemble codes/scales/Q on every rank (bitwise OR of
 * disjoint row blocks), write the layer, replace the block's weights by Q, and run the quantized
 * block to produce the next block's inputs ("quantized inputs", as the reference does; with
 * true_sequential the inputs advance once per block, not once per group as in INC). Layer: cli. */
#include "cli/cli_gptq.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "algos/algo_gptq.h"
#include "cli/cli.h"
#include "cli/cli_block.h"
#include "core/core_alloc.h"
#include "core/core_log.h"
#include "dist/dist_plan.h"
#include "dist/dist_reduce.h"
#include "kernels/kern_hessian.h"

/* Sequential groups (true_sequential, INC grouping for Llama: [q,k,v],[o],[gate],[up],[down] would
 * split gate/up; we keep the reference's [q,k,v],[o],[gate,up],[down], which share inputs). */
static const int k_groups_seq[4][4] = {{0, 1, 2, -1}, {3, -1}, {4, 5, -1}, {6, -1}};
static const int k_groups_all[1][8] = {{0, 1, 2, 3, 4, 5, 6, -1}};

typedef struct {
    wq_exact *acc[4]; /* packed upper Hessian accumulators per input kind (NULL: not needed) */
    int64_t in[4];
    void *scratch;
    int64_t bad;
} hess_ctx;

static wq_status hess_cb(void *ctx, int64_t seq, int64_t T, const wq_block_capture *cap,
                         const float *out)
{
    (void)out;
    (void)seq;
    hess_ctx *h = ctx;
    const float *x[4] = {cap->x_attn, cap->x_o, cap->x_mlp, cap->x_down};
    for (int k = 0; k < 4; k++)
        if (h->acc[k] && x[k])
            h->bad += wq_kern_hessian_add_chunk(h->acc[k], x[k], T, h->in[k], WQ_HESS_F64, h->scratch);
    if (h->bad) {
        WQ_LOG_ERROR("non-finite or out-of-range calibration activations in sequence %lld",
                     (long long)seq);
        return WQ_ERR_NUMERIC;
    }
    return WQ_OK;
}

/* GPTQ of one linear over the stage: every stage rank gets the full qmatrix and Q (into w). */
static wq_status quantize_linear(wq_dist *sd, const char *layer, const wq_qspec *spec,
                                 const wq_config *cfg, double *H, int64_t rows, int64_t cols,
                                 float *w, wq_qmatrix *m, float *s8_out)
{
    wq_status st = WQ_OK;
    wq_gptq_ctx *ctx = NULL;
    float *Q = NULL;
    memset(m, 0, sizeof *m);
    st = wq_algo_gptq_prepare(H, cols, spec, &cfg->ap, layer, &ctx);
    st = wq_dist_agree(sd, st); /* same H on every rank: they all fail or pass together */
    if (st != WQ_OK) goto done;
    int64_t tile = wq_algo_gptq_row_tile(spec, rows), ntiles = (rows + tile - 1) / tile;
    wq_row_span sp;
    wq_dist_plan_rows(ntiles, wq_dist_size(sd), wq_dist_rank(sd), &sp);
    int64_t r0 = sp.row_begin * tile, r1 = (sp.row_begin + sp.row_count) * tile;
    if (r1 > rows) r1 = rows;
    if (r0 > rows) r0 = rows;
    float s8 = 0;
    if (cfg->ap.fp8_aware) {
        double amax = r1 > r0 ? wq_algo_gptq_absmax_rows(ctx, w + r0 * cols, r1 - r0) : 0.0;
        WQ_TRY_GOTO(wq_dist_allreduce_max_f64(sd, &amax, 1), st, done);
        s8 = wq_algo_gptq_fp8_scale(ctx, (float)amax);
    }
    WQ_TRY_GOTO(wq_algo_gptq_qmatrix_init(ctx, rows, m), st, done);
    Q = wq_calloc((size_t)(rows * cols), sizeof(float));
    WQ_CHECK_GOTO(Q, st, WQ_ERR_NOMEM, done, "out of memory for %s", layer);
    if (r1 > r0) {
        wq_qmatrix view = *m;
        view.rows = r1 - r0;
        view.codes = m->codes + r0 * cols;
        view.scales = m->scales + r0 * m->ngroups;
        view.zeros = m->zeros ? m->zeros + r0 * m->ngroups : NULL;
        st = wq_algo_gptq_solve_rows(ctx, w + r0 * cols, r0, r1 - r0, rows, s8, &view,
                                     Q + r0 * cols, NULL);
    }
    st = wq_dist_agree(sd, st);
    if (st != WQ_OK) goto done;
    /* assemble: each rank filled a disjoint row block of zero-initialised buffers */
    WQ_TRY_GOTO(wq_dist_allreduce_bor(sd, m->codes, (size_t)(rows * cols)), st, done);
    WQ_TRY_GOTO(wq_dist_allreduce_bor(sd, m->scales, (size_t)(rows * m->ngroups) * sizeof(float)), st, done);
    if (m->zeros)
        WQ_TRY_GOTO(wq_dist_allreduce_bor(sd, m->zeros, (size_t)(rows * m->ngroups) * sizeof(float)), st, done);
    WQ_TRY_GOTO(wq_dist_allreduce_bor(sd, Q, (size_t)(rows * cols) * sizeof(float)), st, done);
    memcpy(w, Q, (size_t)(rows * cols) * sizeof(float));
    *s8_out = s8;
done:
    wq_free(Q);
    wq_algo_gptq_destroy(ctx);
    if (st != WQ_OK) wq_qmatrix_free(m);
    return st;
}

/* A block the checkpoint holds: every stage rank loads its linears and replaces the block's weights
 * by their dequantization (== the Q the interrupted run fed forward, bit for bit); the layer's
 * writer copies it into the container. Collective over the stage. */
static wq_status restore_block(wq_dist *sd, wq_ckpt *ck, int64_t b, const wq_config *cfg,
                               wq_h5_file *f, const wq_h5_entry *entries, wq_entry_lookup lookup,
                               void *lookup_ctx, float *wptr[WQ_BLK_N_LINEARS])
{
    wq_status st = WQ_OK;
    for (int li = 0; li < WQ_BLK_N_LINEARS && st == WQ_OK; li++) {
        char layer[256];
        snprintf(layer, sizeof layer, "model.layers.%lld.%s", (long long)b, wq_blk_linears[li].sub);
        int64_t idx = lookup(lookup_ctx, layer);
        if (idx < 0) continue;
        const wq_h5_entry *en = &entries[idx];
        wq_qmatrix m;
        wq_ckpt_extra ex[WQ_CKPT_MAX_EXTRA];
        int n_ex = 0;
        st = wq_ckpt_load(ck, idx, en->rows, en->cols, en->group_size_eff, en->spec.dtype,
                          en->spec.bits, &m, ex, &n_ex);
        float s8 = n_ex > 0 && ex[0].len == 1 ? ex[0].data[0] : 0.0f;
        if (st == WQ_OK && cfg->ap.fp8_aware != (n_ex > 0)) {
            WQ_LOG_ERROR("checkpoint of %s does not match fp8_aware", layer);
            st = WQ_ERR_FORMAT;
        }
        if (st == WQ_OK) wq_algo_gptq_dequant(&m, s8, wptr[li]);
        if (st == WQ_OK && wq_dist_rank(sd) == li % wq_dist_size(sd)) {
            st = wq_h5_write_qlinear(f, idx, &m);
            if (st == WQ_OK && cfg->ap.fp8_aware)
                st = wq_h5_write_extra(f, idx, "scale_bf16_to_fp8", &s8);
        }
        wq_qmatrix_free(&m);
        wq_ckpt_extras_free(ex, n_ex);
        st = wq_dist_agree(sd, st);
    }
    return st;
}

wq_status wq_cli_gptq_run(wq_dist *world, wq_engine *e, const wq_model_cfg *mc,
                          const wq_weight_source *src, const wq_config *cfg, int64_t total_seqs,
                          wq_h5_file *f, wq_ckpt *ck, const wq_h5_entry *entries,
                          wq_entry_lookup lookup, void *lookup_ctx, int progress,
                          double predicted_block_s)
{
    const wq_blk_dims dims = wq_blk_dims_of(mc);
    const int64_t *in_of = dims.in, *rows_of = dims.rows;
    wq_dist *sd = wq_engine_stage_dist(e);
    for (int s = 0; s < wq_engine_n_stages(e); s++) {
        wq_status st = WQ_OK;
        if (wq_engine_stage(e) == s) {
            for (int64_t b = wq_engine_block_begin(e, s); b < wq_engine_block_end(e, s) && st == WQ_OK; b++) {
                wq_dist_fault_point(world, "block", b);
                const double t_block = wq_cli_now();
                wq_block_buf bb;
                st = wq_block_load(mc, src, b, &bb);
                st = wq_dist_agree(sd, st);
                if (st != WQ_OK) break;
                float *wptr[WQ_BLK_N_LINEARS];
                wq_blk_weights(&bb, wptr);
                int restored = wq_ckpt_block_done(ck, b);
                if (restored)
                    st = restore_block(sd, ck, b, cfg, f, entries, lookup, lookup_ctx, wptr);
                int n_groups = restored ? 0 : cfg->ap.true_sequential ? 4 : 1;
                for (int g = 0; g < n_groups && st == WQ_OK; g++) {
                    const int *grp = cfg->ap.true_sequential ? k_groups_seq[g] : k_groups_all[0];
                    hess_ctx h = {0};
                    unsigned mask = 0;
                    int64_t max_in = 0;
                    for (int i = 0; grp[i] >= 0; i++) {
                        int k = wq_blk_linears[grp[i]].input;
                        mask |= 1u << k;
                        h.in[k] = in_of[k];
                        if (in_of[k] > max_in) max_in = in_of[k];
                    }
                    for (int k = 0; k < 4 && st == WQ_OK; k++)
                        if (mask & (1u << k)) {
                            h.acc[k] = wq_calloc((size_t)wq_kern_hessian_packed_len(in_of[k]), sizeof(wq_exact));
                            if (!h.acc[k]) st = WQ_ERR_NOMEM;
                        }
                    h.scratch = wq_malloc(wq_kern_hessian_scratch_bytes(wq_blk_max_local_len(e), max_in, WQ_HESS_F64));
                    if (!h.scratch) st = WQ_ERR_NOMEM;
                    /* WQ_CAP_* bits follow the input kinds 0..3 */
                    if (st == WQ_OK) st = wq_engine_forward(e, &bb.w, 0, mask, hess_cb, &h);
                    st = wq_dist_agree(sd, st);
                    for (int k = 0; k < 4 && st == WQ_OK; k++)
                        if (h.acc[k]) st = wq_dist_allreduce_exact(sd, h.acc[k], wq_kern_hessian_packed_len(in_of[k]));
                    for (int i = 0; grp[i] >= 0 && st == WQ_OK; i++) {
                        int li = grp[i], k = wq_blk_linears[li].input;
                        char layer[256];
                        snprintf(layer, sizeof layer, "model.layers.%lld.%s", (long long)b, wq_blk_linears[li].sub);
                        int64_t idx = lookup(lookup_ctx, layer);
                        if (idx < 0) continue; /* kept in original precision */
                        double t0 = wq_cli_now();
                        double *H = wq_malloc((size_t)(in_of[k] * in_of[k]) * sizeof(double));
                        if (!H) {
                            st = WQ_ERR_NOMEM;
                            break;
                        }
                        wq_kern_hessian_finalize(h.acc[k], in_of[k], total_seqs, H);
                        wq_qmatrix m;
                        float s8 = 0;
                        st = quantize_linear(sd, layer, &entries[idx].spec, cfg, H, rows_of[li], in_of[k], wptr[li], &m, &s8);
                        wq_free(H);
                        if (st != WQ_OK) break;
                        wq_status ws = WQ_OK;
                        if (wq_dist_rank(sd) == li % wq_dist_size(sd)) {
                            ws = wq_h5_write_qlinear(f, idx, &m);
                            /* DPQ: the per-tensor FP8 scale travels with the layer (INC: scale_bf16_to_fp8) */
                            if (ws == WQ_OK && cfg->ap.fp8_aware) ws = wq_h5_write_extra(f, idx, "scale_bf16_to_fp8", &s8);
                            wq_ckpt_extra ex = {.name = "scale_bf16_to_fp8", .len = 1, .data = &s8};
                            if (ws == WQ_OK)
                                ws = wq_ckpt_save(ck, idx, &m, &ex, cfg->ap.fp8_aware ? 1 : 0);
                        }
                        wq_qmatrix_free(&m);
                        st = wq_dist_agree(sd, ws);
                        if (progress && wq_dist_rank(sd) == 0)
                            fprintf(stderr, "[gptq] %-40s stage %d  %6.2f s\n", layer, s, wq_cli_now() - t0);
                    }
                    for (int k = 0; k < 4; k++) wq_free(h.acc[k]);
                    wq_free(h.scratch);
                }
                /* the quantized block produces the next block's inputs */
                if (st == WQ_OK) st = wq_engine_forward(e, &bb.w, 1, 0, NULL, NULL);
                st = wq_dist_agree(sd, st);
                /* every linear of the block is saved: mark it final (resume recomputes its output)
                 */
                if (st == WQ_OK && ck && !restored)
                    st = wq_dist_agree(sd,
                                       wq_dist_rank(sd) == 0 ? wq_ckpt_mark_block(ck, b) : WQ_OK);
                wq_block_buf_free(&bb);
                if (st == WQ_OK) wq_blk_log_time(sd, b, wq_cli_now() - t_block, predicted_block_s);
            }
        }
        /* handoff agrees over the world, so a failing stage stops every rank */
        wq_status hs = wq_engine_handoff(e, s, st);
        if (hs != WQ_OK) return hs;
    }
    return WQ_OK;
}
