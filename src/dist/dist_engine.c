/* dist_engine.c: pipeline-stage x data-parallel forward engine (see dist_engine.h). Layer: dist. */
#include "dist/dist_engine.h"

#include <stdio.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "dist/dist_plan.h"
#include "dist/dist_reduce.h"
#include "kernels/kern_exact.h"

struct wq_engine {
    wq_dist *world, *stage_dist;
    const wq_model_cfg *mc;
    int P, stage;
    int *stage_first_rank;  /* [P+1] */
    int64_t *block_first;   /* [P+1] */
    const int32_t *const *ids;
    const int64_t *lens;
    int64_t n_seq, max_len;
    int64_t n_local;
    int64_t *local;         /* [n_local] global sequence indices */
    float **act;            /* [n_local] activations [len][d] */
    float *rope_cos, *rope_sin;
};

int wq_engine_n_stages(const wq_engine *e) { return e->P; }
int wq_engine_stage(const wq_engine *e) { return e->stage; }
int64_t wq_engine_block_begin(const wq_engine *e, int s) { return e->block_first[s]; }
int64_t wq_engine_block_end(const wq_engine *e, int s) { return e->block_first[s + 1]; }
wq_dist *wq_engine_stage_dist(wq_engine *e) { return e->stage_dist; }
wq_dist *wq_engine_world(wq_engine *e) { return e->world; }
int64_t wq_engine_n_local(const wq_engine *e) { return e->n_local; }
int64_t wq_engine_local_seq(const wq_engine *e, int64_t k) { return e->local[k]; }
int64_t wq_engine_seq_len(const wq_engine *e, int64_t j) { return e->lens[j]; }
float *wq_engine_local_act(wq_engine *e, int64_t k) { return e->act[k]; }
const float *wq_engine_rope_cos(const wq_engine *e) { return e->rope_cos; }
const float *wq_engine_rope_sin(const wq_engine *e) { return e->rope_sin; }

static int stage_size(const wq_engine *e, int s) { return e->stage_first_rank[s + 1] - e->stage_first_rank[s]; }
/* World rank holding sequence j in stage s. */
static int owner_rank(const wq_engine *e, int s, int64_t j)
{
    return e->stage_first_rank[s] + (int)(j % stage_size(e, s));
}

/* ---- block weights --------------------------------------------------------------------------- */

void wq_block_buf_free(wq_block_buf *bb)
{
    wq_free(bb->buf);
    memset(bb, 0, sizeof *bb);
}

wq_status wq_block_load(const wq_model_cfg *mc, const wq_weight_source *src, int64_t b,
                        wq_block_buf *out)
{
    memset(out, 0, sizeof *out);
    const int64_t d = mc->hidden_size, f = mc->intermediate_size;
    const int64_t qd = mc->n_heads * mc->head_dim, kd = mc->n_kv_heads * mc->head_dim;
    struct {
        const char *suffix;
        int64_t numel;
        int optional;
    } parts[] = {
        {"input_layernorm.weight", d, 0},      {"self_attn.q_proj.weight", qd * d, 0},
        {"self_attn.k_proj.weight", kd * d, 0}, {"self_attn.v_proj.weight", kd * d, 0},
        {"self_attn.o_proj.weight", d * qd, 0}, {"self_attn.q_proj.bias", qd, 1},
        {"self_attn.k_proj.bias", kd, 1},       {"self_attn.v_proj.bias", kd, 1},
        {"post_attention_layernorm.weight", d, 0}, {"mlp.gate_proj.weight", f * d, 0},
        {"mlp.up_proj.weight", f * d, 0},       {"mlp.down_proj.weight", d * f, 0},
    };
    enum { NP = sizeof parts / sizeof parts[0] };
    int64_t total = 0;
    for (int i = 0; i < NP; i++) total += parts[i].numel;
    out->buf = wq_malloc((size_t)total * sizeof(float));
    if (!out->buf) {
        WQ_LOG_ERROR("out of memory loading block %lld (%lld floats)", (long long)b, (long long)total);
        return WQ_ERR_NOMEM;
    }
    float *ptr[NP];
    float *p = out->buf;
    for (int i = 0; i < NP; i++) {
        char name[256];
        snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)b, parts[i].suffix);
        ptr[i] = p;
        p += parts[i].numel;
        if (parts[i].optional && !src->has(src->ctx, name)) {
            ptr[i] = NULL;
            continue;
        }
        wq_status st = src->read_f32(src->ctx, name, ptr[i], parts[i].numel);
        if (st != WQ_OK) {
            wq_block_buf_free(out);
            return st;
        }
    }
    out->w = (wq_block_weights){.attn_norm = ptr[0], .wq = ptr[1], .wk = ptr[2], .wv = ptr[3],
                                .wo = ptr[4], .bq = ptr[5], .bk = ptr[6], .bv = ptr[7],
                                .mlp_norm = ptr[8], .w_gate = ptr[9], .w_up = ptr[10],
                                .w_down = ptr[11]};
    out->wq = ptr[1], out->wk = ptr[2], out->wv = ptr[3], out->wo = ptr[4];
    out->w_gate = ptr[9], out->w_up = ptr[10], out->w_down = ptr[11];
    return WQ_OK;
}

/* ---- lifetime -------------------------------------------------------------------------------- */

void wq_engine_destroy(wq_engine *e)
{
    if (!e) return;
    for (int64_t k = 0; k < e->n_local; k++) wq_free(e->act ? e->act[k] : NULL);
    wq_free(e->act);
    wq_free(e->local);
    wq_free(e->stage_first_rank);
    wq_free(e->block_first);
    wq_free(e->rope_cos);
    wq_free(e->rope_sin);
    wq_dist_destroy(e->stage_dist);
    wq_free(e);
}

wq_status wq_engine_create(wq_dist *world, const wq_model_cfg *mc, int P, const int32_t *const *ids,
                           const int64_t *lens, int64_t n_seq, wq_engine **out)
{
    wq_status st = WQ_OK;
    *out = NULL;
    int size = wq_dist_size(world), rank = wq_dist_rank(world);
    int64_t maxP = mc->n_layers < size ? mc->n_layers : size;
    if (P < 1 || P > maxP) {
        WQ_LOG_ERROR("--stages %d is out of range: with %d rank(s) and %lld blocks it must be in "
                     "[1, %lld]",
                     P, size, (long long)mc->n_layers, (long long)maxP);
        return wq_dist_agree(world, WQ_ERR_ARG);
    }
    wq_engine *e = wq_calloc(1, sizeof *e);
    if (!e) return wq_dist_agree(world, WQ_ERR_NOMEM);
    e->world = world;
    e->mc = mc;
    e->P = P;
    e->ids = ids;
    e->lens = lens;
    e->n_seq = n_seq;
    e->stage_first_rank = wq_calloc((size_t)P + 1, sizeof(int));
    e->block_first = wq_calloc((size_t)P + 1, sizeof(int64_t));
    double *cost = wq_calloc((size_t)mc->n_layers, sizeof(double));
    WQ_CHECK_GOTO(e->stage_first_rank && e->block_first && cost, st, WQ_ERR_NOMEM, done, "out of memory");
    for (int s = 0; s <= P; s++) e->stage_first_rank[s] = (int)((int64_t)s * size / P);
    for (int64_t b = 0; b < mc->n_layers; b++) cost[b] = 1.0; /* uniform blocks: equal cost */
    WQ_TRY_GOTO(wq_dist_plan_stages(cost, mc->n_layers, P, e->block_first), st, done);
    for (int s = 0; s < P; s++)
        if (rank >= e->stage_first_rank[s] && rank < e->stage_first_rank[s + 1]) e->stage = s;
    for (int64_t j = 0; j < n_seq; j++) {
        if (lens[j] > e->max_len) e->max_len = lens[j];
        if (owner_rank(e, e->stage, j) == rank) e->n_local++;
    }
    e->local = wq_calloc((size_t)(e->n_local + 1), sizeof(int64_t));
    e->act = wq_calloc((size_t)(e->n_local + 1), sizeof(float *));
    WQ_CHECK_GOTO(e->local && e->act, st, WQ_ERR_NOMEM, done, "out of memory");
    for (int64_t j = 0, k = 0; j < n_seq; j++)
        if (owner_rank(e, e->stage, j) == rank) e->local[k++] = j;
    for (int64_t k = 0; k < e->n_local; k++) {
        e->act[k] = wq_malloc((size_t)(lens[e->local[k]] * mc->hidden_size) * sizeof(float));
        WQ_CHECK_GOTO(e->act[k], st, WQ_ERR_NOMEM, done, "out of memory for activations");
    }
    int64_t half = mc->head_dim / 2, T = e->max_len > 0 ? e->max_len : 1;
    e->rope_cos = wq_malloc((size_t)(T * half) * sizeof(float));
    e->rope_sin = wq_malloc((size_t)(T * half) * sizeof(float));
    WQ_CHECK_GOTO(e->rope_cos && e->rope_sin, st, WQ_ERR_NOMEM, done, "out of memory");
    wq_kern_rope_tables(mc, T, e->rope_cos, e->rope_sin);
done:
    wq_free(cost);
    st = wq_dist_agree(world, st);
    if (st == WQ_OK) st = wq_dist_split(world, e->stage, rank, &e->stage_dist);
    st = wq_dist_agree(world, st);
    if (st != WQ_OK) {
        wq_engine_destroy(e);
        return st;
    }
    *out = e;
    return WQ_OK;
}

/* ---- passes ---------------------------------------------------------------------------------- */

wq_status wq_engine_embed(wq_engine *e, const wq_weight_source *src)
{
    if (e->stage != 0 || e->n_local == 0) return WQ_OK;
    const int64_t V = e->mc->vocab_size, d = e->mc->hidden_size;
    float *emb = wq_malloc((size_t)(V * d) * sizeof(float));
    if (!emb) return WQ_ERR_NOMEM;
    wq_status st = src->read_f32(src->ctx, "model.embed_tokens.weight", emb, V * d);
    for (int64_t k = 0; st == WQ_OK && k < e->n_local; k++) {
        int64_t j = e->local[k];
        for (int64_t t = 0; t < e->lens[j]; t++)
            if (e->ids[j][t] < 0 || e->ids[j][t] >= V) {
                WQ_LOG_ERROR("token id %d at position %lld of sequence %lld is outside the "
                             "vocabulary [0, %lld)",
                             e->ids[j][t], (long long)t, (long long)j, (long long)V);
                st = WQ_ERR_ARG;
                break;
            }
        if (st == WQ_OK) wq_kern_embed(emb, e->ids[j], e->lens[j], d, e->act[k]);
    }
    wq_free(emb);
    return st;
}

wq_status wq_engine_forward(wq_engine *e, const wq_block_weights *w, int update, unsigned cap_mask,
                            wq_capture_fn fn, void *ctx)
{
    wq_status st = WQ_OK;
    const wq_model_cfg *mc = e->mc;
    const int64_t T = e->max_len, d = mc->hidden_size;
    if (e->n_local == 0) return WQ_OK;
    void *ws = wq_malloc(wq_kern_block_workspace_bytes(mc, T));
    float *tmp = update ? NULL : wq_malloc((size_t)(T * d) * sizeof(float));
    wq_block_capture cap = {0};
    if (cap_mask & WQ_CAP_ATTN) cap.x_attn = wq_malloc((size_t)(T * d) * sizeof(float));
    if (cap_mask & WQ_CAP_O) cap.x_o = wq_malloc((size_t)(T * mc->n_heads * mc->head_dim) * sizeof(float));
    if (cap_mask & WQ_CAP_MLP) cap.x_mlp = wq_malloc((size_t)(T * d) * sizeof(float));
    if (cap_mask & WQ_CAP_DOWN) cap.x_down = wq_malloc((size_t)(T * mc->intermediate_size) * sizeof(float));
    int ok = ws && (update || tmp) && (!(cap_mask & WQ_CAP_ATTN) || cap.x_attn) &&
             (!(cap_mask & WQ_CAP_O) || cap.x_o) && (!(cap_mask & WQ_CAP_MLP) || cap.x_mlp) &&
             (!(cap_mask & WQ_CAP_DOWN) || cap.x_down);
    WQ_CHECK_GOTO(ok, st, WQ_ERR_NOMEM, done, "out of memory for a block forward of %lld tokens",
                  (long long)T);
    for (int64_t k = 0; k < e->n_local; k++) {
        int64_t j = e->local[k], L = e->lens[j];
        float *x = e->act[k];
        if (!update) {
            memcpy(tmp, x, (size_t)(L * d) * sizeof(float));
            x = tmp;
        }
        wq_kern_block_forward(mc, w, x, L, e->rope_cos, e->rope_sin, ws, cap_mask ? &cap : NULL);
        if (fn) WQ_TRY_GOTO(fn(ctx, j, L, &cap, x), st, done);
    }
done:
    wq_free(ws);
    wq_free(tmp);
    wq_free(cap.x_attn);
    wq_free(cap.x_o);
    wq_free(cap.x_mlp);
    wq_free(cap.x_down);
    return st;
}

wq_status wq_engine_handoff(wq_engine *e, int from, wq_status local)
{
    wq_status st = wq_dist_agree(e->world, local);
    if (st != WQ_OK || from < 0 || from + 1 >= e->P) return st;
    int rank = wq_dist_rank(e->world);
    const int64_t d = e->mc->hidden_size;
    if (e->stage == from) {
        for (int64_t k = 0; k < e->n_local && st == WQ_OK; k++) {
            int64_t j = e->local[k];
            st = wq_dist_send(e->world, owner_rank(e, from + 1, j), (int)(j % 32000), e->act[k],
                              (size_t)(e->lens[j] * d) * sizeof(float));
        }
    } else if (e->stage == from + 1) {
        for (int64_t k = 0; k < e->n_local && st == WQ_OK; k++) {
            int64_t j = e->local[k];
            st = wq_dist_recv(e->world, owner_rank(e, from, j), (int)(j % 32000), e->act[k],
                              (size_t)(e->lens[j] * d) * sizeof(float));
        }
    }
    (void)rank;
    return wq_dist_agree(e->world, st);
}

wq_status wq_engine_nll(wq_engine *e, const wq_weight_source *src, double *nll, int64_t *count)
{
    wq_status st = WQ_OK;
    const wq_model_cfg *mc = e->mc;
    const int64_t V = mc->vocab_size, d = mc->hidden_size;
    wq_exact acc = {0, 0};
    int64_t cnt = 0;
    float *head = NULL, *norm = NULL;
    void *ws = NULL;
    if (e->stage == e->P - 1 && e->n_local > 0) {
        head = wq_malloc((size_t)(V * d) * sizeof(float));
        norm = wq_malloc((size_t)d * sizeof(float));
        ws = wq_malloc(wq_kern_head_workspace_bytes(mc));
        WQ_CHECK_GOTO(head && norm && ws, st, WQ_ERR_NOMEM, done, "out of memory for the lm_head");
        const char *hname = src->has(src->ctx, "lm_head.weight") ? "lm_head.weight"
                                                                  : "model.embed_tokens.weight";
        WQ_TRY_GOTO(src->read_f32(src->ctx, hname, head, V * d), st, done);
        WQ_TRY_GOTO(src->read_f32(src->ctx, "model.norm.weight", norm, d), st, done);
        for (int64_t k = 0; k < e->n_local; k++) {
            int64_t j = e->local[k], L = e->lens[j];
            if (L < 2) continue;
            double s = wq_kern_head_nll(mc, norm, head, e->act[k], L, e->ids[j] + 1, ws, NULL, NULL);
            wq_kern_exact_add_f64(&acc, &s, 1);
            cnt += L - 1;
        }
    }
done:
    wq_free(head);
    wq_free(norm);
    wq_free(ws);
    st = wq_dist_agree(e->world, st);
    if (st != WQ_OK) return st;
    WQ_TRY(wq_dist_allreduce_exact(e->world, &acc, 1));
    WQ_TRY(wq_dist_allreduce_sum_i64(e->world, &cnt, 1));
    wq_kern_exact_to_f64(&acc, nll, 1);
    *count = cnt;
    return WQ_OK;
}
