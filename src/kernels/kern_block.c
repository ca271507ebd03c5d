/* kern_block.c: one pre-norm Llama decoder block over a batch of sequences, streamed in token steps
 * (step plan, formulas and shapes in kern_llama.h), with capture of the linears' inputs.
 * Layer: kernels: all scratch comes from the caller's workspace. */
#include <string.h>

#include "kernels/kern_llama.h"
#include "kernels/kern_llama_impl.h"

/* The step plan of kern_llama.h: a step is `rows` positions of one sequence (seqs == 1) or `seqs`
 * whole sequences (rows == seqs * T); K/V hold kv_rows = seqs * T rows. */
typedef struct {
    int64_t rows; /* S: rows of the largest step */
    int64_t seqs; /* G: sequences per step (1 when a sequence is split) */
} step_plan;

static step_plan plan_steps(int64_t T, int64_t token_chunk)
{
    step_plan p = {0, 1};
    const int64_t c = token_chunk <= 0 ? T : token_chunk;
    if (T <= 0) {
        return p; /* empty sequences: nothing to hold */
    } else if (c < T) {
        const int64_t s = (c + WQ_ATTN_ROW_BLOCK - 1) / WQ_ATTN_ROW_BLOCK * WQ_ATTN_ROW_BLOCK;
        p.rows = s < T ? s : T;
        p.seqs = 1;
    } else {
        p.seqs = c / T;
        p.rows = p.seqs * T;
    }
    return p;
}

int64_t wq_kern_block_step_rows(int64_t T, int64_t token_chunk)
{
    return plan_steps(T, token_chunk).rows;
}

/* Workspace layout (floats, 64-byte offsets): K, V [G*T][kvd]; xn [S][d]; a region of
 * max(2 [S][qd], 2 [S][F]) holding q, att during attention and gate, up during the MLP; the
 * attention panel. */
typedef struct {
    float *k, *v, *xn, *q, *att, *gate, *up;
    void *attn_ws;
} block_ws;

static size_t region_floats(int64_t S, int64_t qd, int64_t F)
{
    const size_t a = 2 * kl_pad(S * qd), m = 2 * kl_pad(S * F);
    return a > m ? a : m;
}

size_t wq_kern_block_workspace_bytes_chunked(const wq_model_cfg *cfg, int64_t T,
                                             int64_t token_chunk)
{
    WQ_KERN_ASSERT(cfg && T >= 0);
    const int64_t d = cfg->hidden_size, qd = cfg->n_heads * cfg->head_dim;
    const int64_t kvd = cfg->n_kv_heads * cfg->head_dim, F = cfg->intermediate_size;
    const step_plan p = plan_steps(T, token_chunk);
    const size_t n =
        2 * kl_pad(p.seqs * T * kvd) + kl_pad(p.rows * d) + region_floats(p.rows, qd, F);
    return n * sizeof(float) + wq_kern_attention_workspace_bytes(T);
}

size_t wq_kern_block_workspace_bytes(const wq_model_cfg *cfg, int64_t T)
{
    return wq_kern_block_workspace_bytes_chunked(cfg, T, 0);
}

static block_ws carve_ws(const wq_model_cfg *cfg, int64_t T, step_plan p, void *workspace)
{
    const int64_t d = cfg->hidden_size, qd = cfg->n_heads * cfg->head_dim;
    const int64_t kvd = cfg->n_kv_heads * cfg->head_dim, F = cfg->intermediate_size;
    block_ws ws;
    float *cur = workspace;
    ws.k = kl_carve(&cur, p.seqs * T * kvd);
    ws.v = kl_carve(&cur, p.seqs * T * kvd);
    ws.xn = kl_carve(&cur, p.rows * d);
    float *region = cur;
    ws.q = region;
    ws.att = region + kl_pad(p.rows * qd);
    ws.gate = region;
    ws.up = region + kl_pad(p.rows * F);
    ws.attn_ws = region + region_floats(p.rows, qd, F);
    return ws;
}

static void add_inplace(float *restrict x, const float *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
}

static void capture(const wq_block_capture *cap, wq_block_site site, float *dst, int64_t row0,
                    int64_t rows, int64_t cols, const float *src)
{
    if (dst) memcpy(dst + row0 * cols, src, (size_t)(rows * cols) * sizeof *dst);
    if (cap->fn) cap->fn(cap->ctx, site, row0, rows, cols, src);
}

/* One step: sequences [b0, b0 + ns) of the batch, positions [p0, p0 + len) of each (ns > 1 only
 * with p0 == 0 and len == T). x points at the step's first row. */
static void block_step(const wq_model_cfg *cfg, const wq_block_weights *w, float *x, int64_t T,
                       int64_t b0, int64_t ns, int64_t p0, int64_t len, const float *rope_cos,
                       const float *rope_sin, const block_ws *ws, const wq_block_capture *cap)
{
    const int64_t d = cfg->hidden_size, H = cfg->n_heads, Hkv = cfg->n_kv_heads;
    const int64_t D = cfg->head_dim, F = cfg->intermediate_size, half = D / 2;
    const int64_t qd = H * D, kvd = Hkv * D, n = ns * len, row0 = b0 * T + p0;
    /* K/V rows of this step: sequence j of the step keeps positions 0..T-1 at rows j*T + t. */
    float *k_step = ws->k + p0 * kvd, *v_step = ws->v + p0 * kvd;

    /* attention sub-block */
    wq_kern_rmsnorm(ws->xn, x, w->attn_norm, n, d, cfg->rms_norm_eps);
    capture(cap, WQ_BLOCK_SITE_ATTN, cap->x_attn, row0, n, d, ws->xn);
    wq_kern_linear(ws->q, ws->xn, w->wq, w->bq, n, d, qd);
    wq_kern_linear(k_step, ws->xn, w->wk, w->bk, n, d, kvd);
    wq_kern_linear(v_step, ws->xn, w->wv, w->bv, n, d, kvd);
    for (int64_t j = 0; j < ns; j++) {
        float *qj = ws->q + j * len * qd;
        float *kj = ws->k + j * T * kvd; /* position 0 of sequence j */
        wq_kern_rope_apply(qj, len, H, D, rope_cos + p0 * half, rope_sin + p0 * half);
        wq_kern_rope_apply(kj + p0 * kvd, len, Hkv, D, rope_cos + p0 * half, rope_sin + p0 * half);
        wq_kern_attention_rows(ws->att + j * len * qd, qj, kj, ws->v + j * T * kvd, p0, len, H, Hkv,
                               D, ws->attn_ws);
    }
    capture(cap, WQ_BLOCK_SITE_O, cap->x_o, row0, n, qd, ws->att);
    wq_kern_linear(ws->xn, ws->att, w->wo, NULL, n, qd, d); /* xn is free after q/k/v */
    add_inplace(x, ws->xn, n * d);

    /* MLP sub-block (gate/up overwrite q/att, which are dead now) */
    wq_kern_rmsnorm(ws->xn, x, w->mlp_norm, n, d, cfg->rms_norm_eps);
    capture(cap, WQ_BLOCK_SITE_MLP, cap->x_mlp, row0, n, d, ws->xn);
    wq_kern_linear(ws->gate, ws->xn, w->w_gate, NULL, n, d, F);
    wq_kern_linear(ws->up, ws->xn, w->w_up, NULL, n, d, F);
    wq_kern_swiglu(ws->gate, ws->up, n * F);
    capture(cap, WQ_BLOCK_SITE_DOWN, cap->x_down, row0, n, F, ws->gate);
    wq_kern_linear(ws->xn, ws->gate, w->w_down, NULL, n, F, d);
    add_inplace(x, ws->xn, n * d);
}

void wq_kern_block_forward_batch(const wq_model_cfg *cfg, const wq_block_weights *w, float *x,
                                 int64_t B, int64_t T, int64_t token_chunk, const float *rope_cos,
                                 const float *rope_sin, void *workspace,
                                 const wq_block_capture *cap)
{
    WQ_KERN_ASSERT(cfg && w && x && rope_cos && rope_sin && workspace && B >= 0 && T >= 1);
    WQ_KERN_ASSERT(w->attn_norm && w->wq && w->wk && w->wv && w->wo && w->mlp_norm && w->w_gate &&
                   w->w_up && w->w_down);
    WQ_KERN_ASSERT(cfg->head_dim % 2 == 0 && cfg->n_kv_heads > 0 &&
                   cfg->n_heads % cfg->n_kv_heads == 0);
    const wq_block_capture none = {0};
    if (!cap) cap = &none;
    const int64_t d = cfg->hidden_size;
    const step_plan p = plan_steps(T, token_chunk);
    const block_ws ws = carve_ws(cfg, T, p, workspace);
    if (p.seqs > 1 || p.rows == T) {
        for (int64_t b0 = 0; b0 < B; b0 += p.seqs) {
            const int64_t ns = B - b0 < p.seqs ? B - b0 : p.seqs;
            block_step(cfg, w, x + b0 * T * d, T, b0, ns, 0, T, rope_cos, rope_sin, &ws, cap);
        }
    } else {
        for (int64_t b = 0; b < B; b++)
            for (int64_t p0 = 0; p0 < T; p0 += p.rows) {
                const int64_t len = T - p0 < p.rows ? T - p0 : p.rows;
                block_step(cfg, w, x + (b * T + p0) * d, T, b, 1, p0, len, rope_cos, rope_sin, &ws,
                           cap);
            }
    }
}

void wq_kern_block_forward(const wq_model_cfg *cfg, const wq_block_weights *w, float *x, int64_t T,
                           const float *rope_cos, const float *rope_sin, void *workspace,
                           const wq_block_capture *cap)
{
    if (T == 0) return; /* the historical contract allowed an empty sequence */
    wq_kern_block_forward_batch(cfg, w, x, 1, T, 0, rope_cos, rope_sin, workspace, cap);
}
