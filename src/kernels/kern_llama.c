/* kern_llama.c: fp32 Llama-family decoder forward pass for one sequence (see kern_llama.h for the
 * math, the shapes and the determinism contract). Layer: kernels: no allocation, no logging, no I/O;
 * all scratch comes from the caller's workspace. */
#include "kernels/kern_llama.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/kern_vec.h"

/* Sub-buffers carved from a workspace start on 64-byte boundaries (16 floats). */
#define WS_ALIGN_FLOATS 16

static size_t pad_floats(int64_t n)
{
    return (size_t)((n + WS_ALIGN_FLOATS - 1) / WS_ALIGN_FLOATS) * WS_ALIGN_FLOATS;
}

/* Returns the next sub-buffer of n floats and advances *cur. The caller's base pointer decides the
 * absolute alignment; offsets between sub-buffers are multiples of 64 bytes. */
static float *carve(float **cur, int64_t n)
{
    float *p = *cur;
    *cur += pad_floats(n);
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Pieces */

void wq_kern_embed(const float *restrict embed, const int32_t *restrict ids, int64_t T, int64_t d,
                   float *restrict x)
{
    WQ_KERN_ASSERT(embed && ids && x && T >= 0 && d > 0);
    for (int64_t t = 0; t < T; t++) {
        WQ_KERN_ASSERT(ids[t] >= 0);
        memcpy(x + t * d, embed + (int64_t)ids[t] * d, (size_t)d * sizeof *x);
    }
}

void wq_kern_linear(float *restrict y, const float *restrict x, const float *restrict w,
                    const float *restrict bias, int64_t T, int64_t in, int64_t out)
{
    WQ_KERN_ASSERT(y && x && w && T >= 0 && in > 0 && out > 0);
    if (T == 0)
        return;
    /* y[T][out] = x[T][in] · w[out][in]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)out, (int)in, 1.0f, x,
                (int)in, w, (int)in, 0.0f, y, (int)out);
    if (bias) {
        for (int64_t t = 0; t < T; t++) {
            float *yr = y + t * out;
            for (int64_t o = 0; o < out; o++)
                yr[o] += bias[o];
        }
    }
}

void wq_kern_rmsnorm(float *y, const float *x, const float *restrict w, int64_t T, int64_t d,
                     double eps)
{
    WQ_KERN_ASSERT(y && x && w && T >= 0 && d > 0);
    const float epsf = (float)eps;
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * d;
        float *yr = y + t * d;
        double ss = 0.0;
        for (int64_t i = 0; i < d; i++)
            ss += (double)xr[i] * (double)xr[i];
        const float ms = (float)(ss / (double)d);
        const float r = (float)(1.0 / sqrt((double)(ms + epsf)));
        for (int64_t i = 0; i < d; i++) {
            const float n = xr[i] * r;
            yr[i] = w[i] * n;
        }
    }
}

void wq_kern_rope_tables_dim(int64_t head_dim, double theta, int64_t T, float *restrict cos_tab,
                             float *restrict sin_tab)
{
    WQ_KERN_ASSERT(cos_tab && sin_tab && head_dim > 0 && head_dim % 2 == 0 && T >= 0);
    const int64_t half = head_dim / 2;
    const float base = (float)theta;
    for (int64_t i = 0; i < half; i++) {
        /* HF: 1.0 / (base ** (arange(0, D, 2).float() / D)), every step in fp32. */
        const float expo = (float)(2 * i) / (float)head_dim;
        const float inv_freq = 1.0f / powf(base, expo);
        for (int64_t p = 0; p < T; p++) {
            const float a = (float)p * inv_freq;
            cos_tab[p * half + i] = (float)cos((double)a);
            sin_tab[p * half + i] = (float)sin((double)a);
        }
    }
}

void wq_kern_rope_tables(const wq_model_cfg *cfg, int64_t T, float *restrict cos_tab,
                         float *restrict sin_tab)
{
    WQ_KERN_ASSERT(cfg);
    wq_kern_rope_tables_dim(cfg->head_dim, cfg->rope_theta, T, cos_tab, sin_tab);
}

void wq_kern_rope_apply(float *restrict x, int64_t T, int64_t n_heads, int64_t head_dim,
                        const float *restrict cos_tab, const float *restrict sin_tab)
{
    WQ_KERN_ASSERT(x && cos_tab && sin_tab && head_dim % 2 == 0 && n_heads > 0 && T >= 0);
    const int64_t half = head_dim / 2;
    const int64_t row = n_heads * head_dim;
    for (int64_t t = 0; t < T; t++) {
        const float *c = cos_tab + t * half;
        const float *s = sin_tab + t * half;
        for (int64_t h = 0; h < n_heads; h++) {
            float *lo = x + t * row + h * head_dim;
            float *hi = lo + half;
            for (int64_t i = 0; i < half; i++) {
                const float a = lo[i], b = hi[i];
                const float ac = a * c[i], bs = b * s[i], bc = b * c[i], as = a * s[i];
                lo[i] = ac - bs;
                hi[i] = bc + as;
            }
        }
    }
}

size_t wq_kern_attention_workspace_bytes(int64_t T)
{
    const int64_t rows = T < WQ_ATTN_ROW_BLOCK ? T : WQ_ATTN_ROW_BLOCK;
    return pad_floats(rows * T) * sizeof(float);
}

/* Causal softmax of one score row in place: s[0..i] become probabilities, s[i+1..n) become 0. */
static void softmax_causal_row(float *s, int64_t i, int64_t n)
{
    float mx = s[0];
    for (int64_t j = 1; j <= i; j++)
        mx = kv_max(s[j], mx);
    double sum = 0.0;
    for (int64_t j = 0; j <= i; j++) {
        const float e = expf(s[j] - mx);
        s[j] = e;
        sum += (double)e;
    }
    const double inv = 1.0 / sum;
    for (int64_t j = 0; j <= i; j++)
        s[j] = (float)((double)s[j] * inv);
    for (int64_t j = i + 1; j < n; j++)
        s[j] = 0.0f;
}

void wq_kern_attention(float *restrict out, const float *restrict q, const float *restrict k,
                       const float *restrict v, int64_t T, int64_t n_heads, int64_t n_kv_heads,
                       int64_t head_dim, void *restrict workspace)
{
    WQ_KERN_ASSERT(out && q && k && v && workspace && T >= 0 && head_dim > 0);
    WQ_KERN_ASSERT(n_kv_heads > 0 && n_heads % n_kv_heads == 0);
    const int64_t group = n_heads / n_kv_heads;
    const int ldq = (int)(n_heads * head_dim), ldkv = (int)(n_kv_heads * head_dim);
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    float *S = workspace;
    for (int64_t h = 0; h < n_heads; h++) {
        const int64_t g = h / group;
        const float *qh = q + h * head_dim, *kg = k + g * head_dim, *vg = v + g * head_dim;
        float *oh = out + h * head_dim;
        for (int64_t r0 = 0; r0 < T; r0 += WQ_ATTN_ROW_BLOCK) {
            const int64_t r1 = r0 + WQ_ATTN_ROW_BLOCK < T ? r0 + WQ_ATTN_ROW_BLOCK : T;
            const int64_t nb = r1 - r0;
            /* S[nb][r1] = scale * Q_h[r0:r1] · K_g[0:r1]^T  (keys beyond r1-1 are masked anyway) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)r1, (int)head_dim,
                        scale, qh + r0 * ldq, ldq, kg, ldkv, 0.0f, S, (int)r1);
            for (int64_t r = 0; r < nb; r++)
                softmax_causal_row(S + r * r1, r0 + r, r1);
            /* O_h[r0:r1] = P[nb][r1] · V_g[0:r1] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)head_dim, (int)r1,
                        1.0f, S, (int)r1, vg, ldkv, 0.0f, oh + r0 * ldq, ldq);
        }
    }
}

void wq_kern_swiglu(float *restrict g, const float *restrict u, int64_t n)
{
    WQ_KERN_ASSERT(g && u && n >= 0);
    for (int64_t i = 0; i < n; i++) {
        const float z = g[i];
        const float silu = z / (1.0f + expf(-z));
        g[i] = silu * u[i];
    }
}

void wq_kern_mlp(float *restrict y, const float *restrict x, const float *restrict w_gate,
                 const float *restrict w_up, const float *restrict w_down, int64_t T, int64_t d,
                 int64_t F, float *restrict gate, float *restrict up)
{
    wq_kern_linear(gate, x, w_gate, NULL, T, d, F);
    wq_kern_linear(up, x, w_up, NULL, T, d, F);
    wq_kern_swiglu(gate, up, T * F);
    wq_kern_linear(y, gate, w_down, NULL, T, F, d);
}

/* ---------------------------------------------------------------------------------------------
 * Decoder block */

size_t wq_kern_block_workspace_bytes(const wq_model_cfg *cfg, int64_t T)
{
    const int64_t d = cfg->hidden_size, qd = cfg->n_heads * cfg->head_dim;
    const int64_t kvd = cfg->n_kv_heads * cfg->head_dim, F = cfg->intermediate_size;
    size_t n = 0;
    n += pad_floats(T * d);   /* xn */
    n += pad_floats(T * qd);  /* q */
    n += pad_floats(T * kvd); /* k */
    n += pad_floats(T * kvd); /* v */
    n += pad_floats(T * qd);  /* att */
    n += pad_floats(T * F);   /* gate */
    n += pad_floats(T * F);   /* up */
    n += pad_floats(T * d);   /* branch */
    return n * sizeof(float) + wq_kern_attention_workspace_bytes(T);
}

static void add_inplace(float *restrict x, const float *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
}

static void capture(float *dst, const float *src, int64_t n)
{
    if (dst)
        memcpy(dst, src, (size_t)n * sizeof *dst);
}

void wq_kern_block_forward(const wq_model_cfg *cfg, const wq_block_weights *w, float *x, int64_t T,
                           const float *rope_cos, const float *rope_sin, void *workspace,
                           const wq_block_capture *cap)
{
    WQ_KERN_ASSERT(cfg && w && x && rope_cos && rope_sin && workspace && T >= 0);
    WQ_KERN_ASSERT(w->attn_norm && w->wq && w->wk && w->wv && w->wo && w->mlp_norm && w->w_gate &&
                   w->w_up && w->w_down);
    if (T == 0)
        return;
    const int64_t d = cfg->hidden_size, H = cfg->n_heads, Hkv = cfg->n_kv_heads;
    const int64_t D = cfg->head_dim, F = cfg->intermediate_size;
    const int64_t qd = H * D, kvd = Hkv * D;
    const wq_block_capture none = {0};
    if (!cap)
        cap = &none;

    float *cur = workspace;
    float *xn = carve(&cur, T * d);
    float *q = carve(&cur, T * qd);
    float *k = carve(&cur, T * kvd);
    float *v = carve(&cur, T * kvd);
    float *att = carve(&cur, T * qd);
    float *gate = carve(&cur, T * F);
    float *up = carve(&cur, T * F);
    float *branch = carve(&cur, T * d);
    void *attn_ws = cur;

    /* attention sub-block */
    wq_kern_rmsnorm(xn, x, w->attn_norm, T, d, cfg->rms_norm_eps);
    capture(cap->x_attn, xn, T * d);
    wq_kern_linear(q, xn, w->wq, w->bq, T, d, qd);
    wq_kern_linear(k, xn, w->wk, w->bk, T, d, kvd);
    wq_kern_linear(v, xn, w->wv, w->bv, T, d, kvd);
    wq_kern_rope_apply(q, T, H, D, rope_cos, rope_sin);
    wq_kern_rope_apply(k, T, Hkv, D, rope_cos, rope_sin);
    wq_kern_attention(att, q, k, v, T, H, Hkv, D, attn_ws);
    capture(cap->x_o, att, T * qd);
    wq_kern_linear(branch, att, w->wo, NULL, T, qd, d);
    add_inplace(x, branch, T * d);

    /* MLP sub-block */
    wq_kern_rmsnorm(xn, x, w->mlp_norm, T, d, cfg->rms_norm_eps);
    capture(cap->x_mlp, xn, T * d);
    wq_kern_linear(gate, xn, w->w_gate, NULL, T, d, F);
    wq_kern_linear(up, xn, w->w_up, NULL, T, d, F);
    wq_kern_swiglu(gate, up, T * F);
    capture(cap->x_down, gate, T * F);
    wq_kern_linear(branch, gate, w->w_down, NULL, T, F, d);
    add_inplace(x, branch, T * d);
}

/* ---------------------------------------------------------------------------------------------
 * LM head */

size_t wq_kern_head_workspace_bytes(const wq_model_cfg *cfg)
{
    return (pad_floats(WQ_HEAD_ROW_BLOCK * cfg->vocab_size) + pad_floats(cfg->hidden_size)) *
           sizeof(float);
}

double wq_kern_head_nll(const wq_model_cfg *cfg, const float *final_norm, const float *lm_head,
                        float *x, int64_t T, const int32_t *targets, void *workspace,
                        double *nll_out, int64_t *n_counted)
{
    WQ_KERN_ASSERT(cfg && lm_head && x && workspace && T >= 0 && (T <= 1 || targets));
    const int64_t d = cfg->hidden_size, V = cfg->vocab_size;
    if (final_norm)
        wq_kern_rmsnorm(x, x, final_norm, T, d, cfg->rms_norm_eps);
    float *logits = workspace;
    double total = 0.0;
    int64_t counted = 0;
    for (int64_t t0 = 0; t0 < T - 1; t0 += WQ_HEAD_ROW_BLOCK) {
        const int64_t t1 = t0 + WQ_HEAD_ROW_BLOCK < T - 1 ? t0 + WQ_HEAD_ROW_BLOCK : T - 1;
        wq_kern_linear(logits, x + t0 * d, lm_head, NULL, t1 - t0, d, V);
        for (int64_t t = t0; t < t1; t++) {
            const int32_t tgt = targets[t];
            if (tgt < 0) {
                if (nll_out)
                    nll_out[t] = 0.0;
                continue;
            }
            WQ_KERN_ASSERT(tgt < V);
            const float *l = logits + (t - t0) * V;
            float mx = l[0];
            for (int64_t j = 1; j < V; j++)
                mx = kv_max(l[j], mx);
            double sum = 0.0;
            for (int64_t j = 0; j < V; j++)
                sum += exp((double)l[j] - (double)mx);
            const double nll = log(sum) + (double)mx - (double)l[tgt];
            if (nll_out)
                nll_out[t] = nll;
            total += nll;
            counted++;
        }
    }
    if (n_counted)
        *n_counted = counted;
    return total;
}

int32_t wq_kern_head_argmax(const wq_model_cfg *cfg, const float *final_norm, const float *lm_head,
                            const float *x, int64_t T, void *workspace)
{
    WQ_KERN_ASSERT(cfg && lm_head && x && workspace && T >= 1);
    const int64_t d = cfg->hidden_size, V = cfg->vocab_size;
    float *cur = workspace;
    float *logits = carve(&cur, WQ_HEAD_ROW_BLOCK * V);
    float *row = carve(&cur, d);
    const float *last = x + (T - 1) * d;
    if (final_norm)
        wq_kern_rmsnorm(row, last, final_norm, 1, d, cfg->rms_norm_eps);
    else
        memcpy(row, last, (size_t)d * sizeof *row);
    wq_kern_linear(logits, row, lm_head, NULL, 1, d, V);
    int64_t best = 0;
    for (int64_t j = 1; j < V; j++)
        if (logits[j] > logits[best])
            best = j;
    return (int32_t)best;
}
