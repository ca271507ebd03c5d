/* cli_teq.c: TEQ training (data parallel over all ranks, exact gradient reduction) and conversion.
 * Layer: cli. */
#include "cli/cli_teq.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "algos/algo_teq.h"
#include "cli/cli_block.h"
#include "cli/cli_scaled.h"
#include "core/core_alloc.h"
#include "core/core_log.h"
#include "dist/dist_reduce.h"
#include "kernels/kern_exact.h"

enum { N_LIN = WQ_BLK_N_LINEARS };
_Static_assert(WQ_BLK_N_LINEARS == WQ_TEQ_N_LIN, "TEQ and the block layout list the same linears");

typedef struct {
    int64_t L;
    wq_block_buf *bb; /* [L] original weights */
    int64_t *idx;     /* [L][N_LIN] container entry or -1 */
    float *embed, *head, *norm;
    float *weff; /* every linear's effective weight */
    wq_block_weights *blocks;
    wq_teq_linear *lin;
    float *alpha;
    int64_t n_alpha;
    float *rope_cos, *rope_sin;
} teq_state;

static void state_free(teq_state *s)
{
    for (int64_t b = 0; s->bb && b < s->L; b++)
        wq_block_buf_free(&s->bb[b]);
    wq_free(s->bb);
    wq_free(s->idx);
    if (s->head != s->embed) wq_free(s->head);
    wq_free(s->embed);
    wq_free(s->norm);
    wq_free(s->weff);
    wq_free(s->blocks);
    wq_free(s->lin);
    wq_free(s->alpha);
    wq_free(s->rope_cos);
    wq_free(s->rope_sin);
    memset(s, 0, sizeof *s);
}

/* Loads the whole model and lays out the trainable scales: folding=true, one alpha per absorb
 * group (q/k/v -> input_layernorm, gate/up -> post_attention_layernorm; o_proj and down_proj keep
 * alpha = 1); folding=false, one alpha per quantized linear. */
static wq_status state_load(teq_state *s, const wq_model_cfg *mc, const wq_weight_source *src,
                            const wq_config *cfg, const wq_h5_entry *entries,
                            wq_entry_lookup lookup, void *lookup_ctx, int64_t Tmax)
{
    const int64_t L = mc->n_layers, d = mc->hidden_size, V = mc->vocab_size;
    const wq_blk_dims dims = wq_blk_dims_of(mc);
    memset(s, 0, sizeof *s);
    s->L = L;
    s->bb = wq_calloc((size_t)L, sizeof *s->bb);
    s->idx = wq_calloc((size_t)(L * N_LIN), sizeof *s->idx);
    s->blocks = wq_calloc((size_t)L, sizeof *s->blocks);
    s->lin = wq_calloc((size_t)(L * N_LIN), sizeof *s->lin);
    s->embed = wq_malloc((size_t)(V * d) * sizeof(float));
    s->norm = wq_malloc((size_t)d * sizeof(float));
    s->rope_cos = wq_malloc((size_t)(Tmax * mc->head_dim / 2) * sizeof(float));
    s->rope_sin = wq_malloc((size_t)(Tmax * mc->head_dim / 2) * sizeof(float));
    int64_t wtotal = 0;
    for (int l = 0; l < N_LIN; l++)
        wtotal += dims.rows[l] * dims.in[wq_blk_linears[l].input];
    s->weff = wq_malloc((size_t)(L * wtotal) * sizeof(float));
    if (!s->bb || !s->idx || !s->blocks || !s->lin || !s->embed || !s->norm || !s->weff ||
        !s->rope_cos || !s->rope_sin) {
        WQ_LOG_ERROR("TEQ: out of memory for the whole model (%lld blocks)", (long long)L);
        return WQ_ERR_NOMEM;
    }
    wq_kern_rope_tables(mc, Tmax, s->rope_cos, s->rope_sin);
    WQ_TRY(src->read_f32(src->ctx, "model.embed_tokens.weight", s->embed, V * d));
    WQ_TRY(src->read_f32(src->ctx, "model.norm.weight", s->norm, d));
    if (src->has(src->ctx, "lm_head.weight")) {
        s->head = wq_malloc((size_t)(V * d) * sizeof(float));
        if (!s->head) return WQ_ERR_NOMEM;
        WQ_TRY(src->read_f32(src->ctx, "lm_head.weight", s->head, V * d));
    } else {
        s->head = s->embed; /* tied embeddings */
    }
    /* alpha layout */
    int64_t n_alpha = 0;
    float *wp = s->weff;
    for (int64_t b = 0; b < L; b++) {
        WQ_TRY(wq_block_load(mc, src, b, &s->bb[b]));
        float *W[N_LIN];
        wq_blk_weights(&s->bb[b], W);
        int64_t group_off[WQ_BLK_N_INPUTS] = {-1, -1, -1, -1};
        for (int l = 0; l < N_LIN; l++) {
            char layer[256];
            snprintf(layer, sizeof layer, "model.layers.%lld.%s", (long long)b,
                     wq_blk_linears[l].sub);
            int64_t i = s->idx[b * N_LIN + l] = lookup(lookup_ctx, layer);
            int kind = wq_blk_linears[l].input;
            wq_teq_linear *li = &s->lin[b * N_LIN + l];
            *li = (wq_teq_linear){.W = W[l],
                                  .Weff = wp,
                                  .rows = dims.rows[l],
                                  .cols = dims.in[kind],
                                  .spec = i >= 0 ? &entries[i].spec : NULL,
                                  .off = -1};
            wp += li->rows * li->cols;
            if (i < 0) continue;
            const wq_qspec *sp = &entries[i].spec;
            if (cfg->ap.teq_exact_grad &&
                (sp->dtype != WQ_QDTYPE_INT || sp->full_range || sp->double_quant)) {
                WQ_LOG_ERROR("TEQ: %s: 'exact_gradient' needs plain int quantization (no "
                             "use_full_range, no use_double_quant, dtype int)",
                             layer);
                return WQ_ERR_ARG;
            }
            if (!cfg->ap.folding) {
                li->off = n_alpha;
                n_alpha += li->cols;
            } else if (wq_blk_tuples[kind].absorber) {
                if (group_off[kind] < 0) {
                    group_off[kind] = n_alpha;
                    n_alpha += li->cols;
                }
                li->off = group_off[kind];
            }
        }
        wq_teq_linear *li = &s->lin[b * N_LIN];
        s->blocks[b] = s->bb[b].w;
        s->blocks[b].wq = li[0].Weff, s->blocks[b].wk = li[1].Weff, s->blocks[b].wv = li[2].Weff;
        s->blocks[b].wo = li[3].Weff, s->blocks[b].w_gate = li[4].Weff,
        s->blocks[b].w_up = li[5].Weff;
        s->blocks[b].w_down = li[6].Weff;
    }
    s->n_alpha = n_alpha;
    s->alpha = wq_malloc((size_t)(n_alpha ? n_alpha : 1) * sizeof(float));
    if (!s->alpha) return WQ_ERR_NOMEM;
    for (int64_t i = 0; i < n_alpha; i++)
        s->alpha[i] = 1.0f; /* INC's init */
    return WQ_OK;
}

/* Mean next-token NLL of the whole calibration set under the current Weff (sequence j on rank
 * j mod size, the sums added exactly and all-reduced, so every rank gets the same value for any
 * rank count). A non-finite sequence loss makes it +inf (never the best). */
static wq_status full_loss(wq_dist *world, const wq_teq_net *net, const teq_state *s,
                           const int32_t *const *ids, const int64_t *lens, int64_t n_seq,
                           wq_teq_work *work, double *out)
{
    const int rank = wq_dist_rank(world), size = wq_dist_size(world);
    wq_exact acc[2];
    memset(acc, 0, sizeof acc);
    int64_t count = 0;
    wq_status ls = WQ_OK;
    for (int64_t j = 0; j < n_seq; j++) {
        if (lens[j] < 2) continue;
        count += lens[j] - 1;
        if (j % size != rank || ls != WQ_OK) continue;
        double nll = 0, bad = 0;
        ls = wq_algo_teq_seq_nll(net, ids[j], lens[j], s->rope_cos, s->rope_sin, work, &nll);
        bad = (double)wq_kern_exact_add_f64(acc, &nll, 1);
        if (bad > 0) wq_kern_exact_add_f64(acc + 1, &bad, 1);
    }
    wq_status st = wq_dist_agree(world, ls);
    if (st == WQ_OK) st = wq_dist_allreduce_exact(world, acc, 2);
    if (st != WQ_OK) return st;
    double v[2];
    wq_kern_exact_to_f64(acc, v, 2);
    *out = v[1] > 0 ? INFINITY : v[0] / (double)(count ? count : 1);
    return WQ_OK;
}

/* The exact accumulator holds n_alpha gradient entries, then the scaled loss, then a count of
 * non-finite values. */
static wq_status train(wq_dist *world, const wq_model_cfg *mc, const wq_config *cfg, teq_state *s,
                       const int32_t *const *ids, const int64_t *lens, int64_t n_seq, int64_t Tmax,
                       int progress)
{
    const wq_algo_params *ap = &cfg->ap;
    const int64_t n_a = s->n_alpha, accum = ap->teq_grad_accum, bs = ap->teq_batch_size;
    const int rank = wq_dist_rank(world), size = wq_dist_size(world);
    wq_teq_net net = {.mc = mc,
                      .embed = s->embed,
                      .final_norm = s->norm,
                      .lm_head = s->head,
                      .blocks = s->blocks,
                      .lin = s->lin,
                      .alpha = s->alpha,
                      .n_alpha = n_a,
                      .exact_grad = ap->teq_exact_grad};
    int64_t warmup, total;
    wq_algo_teq_schedule(ap->teq_steps, ap->teq_warmup, accum, &warmup, &total);
    wq_teq_adam adam = {0};
    wq_teq_work *work = NULL;
    wq_exact *acc = wq_calloc((size_t)(n_a + 2), sizeof *acc);
    double *g = wq_malloc((size_t)(n_a + 2) * sizeof(double));
    wq_status st = acc && g ? WQ_OK : WQ_ERR_NOMEM;
    if (st == WQ_OK) st = wq_algo_teq_adam_init(&adam, n_a);
    if (st == WQ_OK) st = wq_algo_teq_work_create(mc, Tmax, &work);
    if (st == WQ_OK) st = wq_algo_teq_update_weights(&net);
    st = wq_dist_agree(world, st);
    /* best-snapshot rule (algo_teq.h): alpha = 1 is the first candidate */
    const int64_t every = total > 0 ? ap->teq_snapshot_every : 0; /* 0 steps: RTN anyway */
    wq_teq_best best;
    wq_algo_teq_best_init(&best);
    float *best_alpha = NULL;
    if (st == WQ_OK && every > 0) {
        best_alpha = wq_malloc((size_t)(n_a ? n_a : 1) * sizeof(float));
        if (!best_alpha) st = WQ_ERR_NOMEM;
    }
    st = wq_dist_agree(world, st);
    double loss0 = INFINITY;
    if (st == WQ_OK && every > 0) {
        st = full_loss(world, &net, s, ids, lens, n_seq, work, &loss0);
        if (st == WQ_OK && wq_algo_teq_best_offer(&best, loss0, 0))
            memcpy(best_alpha, s->alpha, (size_t)n_a * sizeof(float));
        if (st == WQ_OK && rank == 0)
            WQ_LOG_DEBUG("TEQ step 0/%lld: full calibration loss %.6f (alpha = 1)",
                         (long long)total, loss0);
        if (st == WQ_OK && progress && rank == 0)
            fprintf(stderr, "[teq] step 0/%lld full calibration loss %.6f\n", (long long)total,
                    loss0);
    }
    int64_t k = 0; /* optimizer steps taken */
    for (int64_t gstep = 0; st == WQ_OK && gstep < ap->teq_steps; gstep++) {
        wq_dist_fault_point(world, "teq_step", gstep);
        int64_t b0, b1, count = 0;
        wq_algo_teq_batch(gstep, n_seq, bs, &b0, &b1);
        for (int64_t j = b0; j < b1; j++)
            count += lens[j] > 1 ? lens[j] - 1 : 0;
        /* HF's loss: the mean over the batch's predicted tokens, divided by the accumulation steps
         */
        const double scale = 1.0 / ((double)(count ? count : 1) * (double)accum);
        wq_status ls = WQ_OK;
        for (int64_t j = b0; j < b1 && ls == WQ_OK; j++) {
            if ((j - b0) % size != rank || lens[j] < 2) continue;
            double nll = 0, bad = 0;
            ls = wq_algo_teq_seq_grad(&net, ids[j], lens[j], s->rope_cos, s->rope_sin, scale, work,
                                      g, &nll);
            g[n_a] = nll * scale;
            bad = (double)wq_kern_exact_add_f64(acc, g, n_a + 1);
            if (!isfinite(nll)) bad += 1;
            if (bad > 0) wq_kern_exact_add_f64(acc + n_a + 1, &bad, 1);
        }
        st = wq_dist_agree(world, ls);
        if (st != WQ_OK || (gstep + 1) % accum != 0) continue;
        st = wq_dist_allreduce_exact(world, acc, n_a + 2);
        if (st != WQ_OK) break;
        wq_kern_exact_to_f64(acc, g, n_a + 2);
        if (g[n_a + 1] > 0 || !isfinite(g[n_a])) {
            WQ_LOG_ROOT(
                "TEQ: non-finite training loss or gradient at optimizer step %lld (batch %lld, "
                "calibration sequences %lld..%lld); check the model weights and the "
                "calibration data",
                (long long)k, (long long)gstep, (long long)b0, (long long)(b1 - 1));
            st = WQ_ERR_NUMERIC;
            break;
        }
        const double lr = wq_algo_teq_lr(ap->teq_lr, k, warmup, total);
        wq_algo_teq_adam_step(&adam, s->alpha, g, lr);
        if (rank == 0)
            WQ_LOG_DEBUG("TEQ step %lld/%lld: batch loss %.6f, lr %.4g", (long long)k + 1,
                         (long long)total, g[n_a], lr);
        if (progress && rank == 0 && (k % 10 == 0 || gstep + 1 == ap->teq_steps))
            fprintf(stderr, "[teq] step %lld/%lld loss %.6f lr %.3g\n", (long long)k + 1,
                    (long long)total, g[n_a], lr);
        k++;
        memset(acc, 0, (size_t)(n_a + 2) * sizeof *acc);
        st = wq_dist_agree(world, wq_algo_teq_update_weights(&net));
        if (st == WQ_OK && every > 0 && wq_algo_teq_snapshot_due(k, every, total)) {
            double fl = INFINITY;
            st = full_loss(world, &net, s, ids, lens, n_seq, work, &fl);
            if (st == WQ_OK && wq_algo_teq_best_offer(&best, fl, k)) {
                memcpy(best_alpha, s->alpha, (size_t)n_a * sizeof(float));
            } else if (st == WQ_OK && ap->teq_restore_best) {
                /* continue from the best alpha (Adam's moments are kept) */
                memcpy(s->alpha, best_alpha, (size_t)n_a * sizeof(float));
                st = wq_dist_agree(world, wq_algo_teq_update_weights(&net));
            }
            if (st == WQ_OK && rank == 0)
                WQ_LOG_DEBUG("TEQ step %lld/%lld: full calibration loss %.6f (best %.6f at step "
                             "%lld)",
                             (long long)k, (long long)total, fl, best.loss, (long long)best.step);
            if (st == WQ_OK && progress && rank == 0)
                fprintf(
                    stderr,
                    "[teq] step %lld/%lld full calibration loss %.6f (best %.6f at step %lld)\n",
                    (long long)k, (long long)total, fl, best.loss, (long long)best.step);
        }
    }
    if (st == WQ_OK && every > 0 && best.step >= 0) {
        memcpy(s->alpha, best_alpha, (size_t)n_a * sizeof(float));
        if (rank == 0)
            WQ_LOG_INFO("TEQ: kept the scales of optimizer step %lld of %lld: full calibration "
                        "loss %.6f (alpha = 1, i.e. RTN: %.6f)",
                        (long long)best.step, (long long)k, best.loss, loss0);
    }
    wq_free(best_alpha);
    wq_algo_teq_work_destroy(work);
    wq_algo_teq_adam_free(&adam);
    wq_free(acc);
    wq_free(g);
    return st;
}

wq_status wq_cli_teq_run(wq_dist *world, const wq_model_cfg *mc, const wq_weight_source *src,
                         const wq_config *cfg, const int32_t *const *ids, const int64_t *lens,
                         int64_t n_seq, wq_h5_file *f, const wq_h5_entry *entries,
                         wq_entry_lookup lookup, wq_entry_lookup lookup_raw, void *lookup_ctx,
                         int progress)
{
    wq_status st = WQ_OK;
    int64_t Tmax = 1;
    for (int64_t j = 0; j < n_seq; j++) {
        Tmax = lens[j] > Tmax ? lens[j] : Tmax;
        for (int64_t t = 0; t < lens[j] && st == WQ_OK; t++)
            if (ids[j][t] < 0 || ids[j][t] >= mc->vocab_size) {
                WQ_LOG_ROOT(
                    "TEQ: token id %d at position %lld of calibration sequence %lld is outside "
                    "the vocabulary [0, %lld)",
                    ids[j][t], (long long)t, (long long)j, (long long)mc->vocab_size);
                st = WQ_ERR_ARG;
            }
    }
    teq_state s;
    memset(&s, 0, sizeof s);
    if (st == WQ_OK) st = state_load(&s, mc, src, cfg, entries, lookup, lookup_ctx, Tmax);
    st = wq_dist_agree(world, st);
    if (st == WQ_OK) st = train(world, mc, cfg, &s, ids, lens, n_seq, Tmax, progress);
    /* transform (numerics 6): a' = max(a, 1e-5); norms / 1/a', W[:, c] * a'[c]; then quantize */
    float *clip =
        st == WQ_OK ? wq_malloc((size_t)(s.n_alpha ? s.n_alpha : 1) * sizeof(float)) : NULL;
    float *scratch =
        st == WQ_OK
            ? wq_malloc((size_t)(mc->intermediate_size > mc->hidden_size ? mc->intermediate_size
                                                                         : mc->hidden_size) *
                        4 * sizeof(float))
            : NULL;
    if (st == WQ_OK && (!clip || !scratch)) st = WQ_ERR_NOMEM;
    st = wq_dist_agree(world, st);
    if (st == WQ_OK) wq_algo_teq_clip(s.alpha, s.n_alpha, clip);
    for (int64_t b = 0; b < s.L && st == WQ_OK; b++) {
        wq_blk_scaling sc = {0};
        for (int l = 0; l < N_LIN; l++) {
            const wq_teq_linear *li = &s.lin[b * N_LIN + l];
            int kind = wq_blk_linears[l].input;
            sc.s[l] = li->off >= 0 ? clip + li->off : NULL;
            sc.absorbed[l] = cfg->ap.folding;
            sc.quantile[l] = -1.0f; /* the spec's own (MSE search when use_mse_search) */
            if (cfg->ap.folding && li->off >= 0)
                sc.norm_s[kind == WQ_BLK_IN_ATTN ? 0 : 1] = sc.s[l];
        }
        st = wq_cli_write_scaled_block(world, mc, b, &s.bb[b], &sc, f, entries, &s.idx[b * N_LIN],
                                       lookup_raw, lookup_ctx, scratch);
    }
    wq_free(clip);
    wq_free(scratch);
    state_free(&s);
    return st;
}
