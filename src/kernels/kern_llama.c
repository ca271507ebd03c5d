/* kern_llama.c: the pieces of the fp32 Llama-family forward pass (embedding, linear, RMSNorm, RoPE,
 * SwiGLU) and the LM head (see kern_llama.h for the math, the shapes and the determinism contract).
 * Layer: kernels: no allocation, no logging, no I/O; all scratch comes from the caller's workspace.
 */
#include "kernels/kern_llama.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "kernels/kern_llama_impl.h"

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
    WQ_KERN_ASSERT(T <= INT_MAX && in <= INT_MAX && out <= INT_MAX);
    if (T == 0) return;
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
        const float ms = (float)(kl_sumsq_f64(xr, d) / (double)d);
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
 * LM head */

size_t wq_kern_head_workspace_bytes(const wq_model_cfg *cfg)
{
    return (kl_pad(WQ_HEAD_ROW_BLOCK * cfg->vocab_size) + kl_pad(cfg->hidden_size)) * sizeof(float);
}

double wq_kern_head_nll(const wq_model_cfg *cfg, const float *final_norm, const float *lm_head,
                        float *x, int64_t T, const int32_t *targets, void *workspace,
                        double *nll_out, int64_t *n_counted)
{
    WQ_KERN_ASSERT(cfg && lm_head && x && workspace && T >= 0 && (T <= 1 || targets));
    const int64_t d = cfg->hidden_size, V = cfg->vocab_size;
    if (final_norm) wq_kern_rmsnorm(x, x, final_norm, T, d, cfg->rms_norm_eps);
    float *logits = workspace;
    double total = 0.0;
    int64_t counted = 0;
    for (int64_t t0 = 0; t0 < T - 1; t0 += WQ_HEAD_ROW_BLOCK) {
        const int64_t t1 = t0 + WQ_HEAD_ROW_BLOCK < T - 1 ? t0 + WQ_HEAD_ROW_BLOCK : T - 1;
        wq_kern_linear(logits, x + t0 * d, lm_head, NULL, t1 - t0, d, V);
        for (int64_t t = t0; t < t1; t++) {
            const int32_t tgt = targets[t];
            if (tgt < 0) {
                if (nll_out) nll_out[t] = 0.0;
                continue;
            }
            WQ_KERN_ASSERT(tgt < V);
            const float *l = logits + (t - t0) * V;
            const float mx = kl_max_f32(l, V);
            double sum = 0.0;
            for (int64_t j = 0; j < V; j++)
                sum += exp((double)l[j] - (double)mx);
            const double nll = log(sum) + (double)mx - (double)l[tgt];
            if (nll_out) nll_out[t] = nll;
            total += nll;
            counted++;
        }
    }
    if (n_counted) *n_counted = counted;
    return total;
}

int32_t wq_kern_head_argmax(const wq_model_cfg *cfg, const float *final_norm, const float *lm_head,
                            const float *x, int64_t T, void *workspace)
{
    WQ_KERN_ASSERT(cfg && lm_head && x && workspace && T >= 1);
    const int64_t d = cfg->hidden_size, V = cfg->vocab_size;
    float *cur = workspace;
    float *logits = kl_carve(&cur, WQ_HEAD_ROW_BLOCK * V);
    float *row = kl_carve(&cur, d);
    const float *last = x + (T - 1) * d;
    if (final_norm)
        wq_kern_rmsnorm(row, last, final_norm, 1, d, cfg->rms_norm_eps);
    else
        memcpy(row, last, (size_t)d * sizeof *row);
    wq_kern_linear(logits, row, lm_head, NULL, 1, d, V);
    int64_t best = 0;
    for (int64_t j = 1; j < V; j++)
        if (logits[j] > logits[best]) best = j;
    return (int32_t)best;
}
