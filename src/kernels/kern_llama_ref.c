/* kern_llama_ref.c: scalar references (no BLAS) of the kernels in kern_llama.h that use
 * cblas_sgemm: linear, attention and the whole decoder block. Plain loops, dot products in double,
 * one sequence, no chunking. Used by the tests to check the BLAS/chunked paths. Layer: kernels. */
#include <math.h>
#include <string.h>

#include "kernels/kern_llama.h"
#include "kernels/kern_llama_impl.h"

void wq_kern_linear_ref(float *restrict y, const float *restrict x, const float *restrict w,
                        const float *restrict bias, int64_t T, int64_t in, int64_t out)
{
    WQ_KERN_ASSERT(y && x && w && T >= 0 && in > 0 && out > 0);
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * in;
        for (int64_t o = 0; o < out; o++) {
            const float *wr = w + o * in;
            double s = 0.0;
            for (int64_t i = 0; i < in; i++)
                s += (double)xr[i] * (double)wr[i];
            float r = (float)s;
            if (bias) r += bias[o];
            y[t * out + o] = r;
        }
    }
}

void wq_kern_attention_ref(float *restrict out, const float *restrict q, const float *restrict k,
                           const float *restrict v, int64_t T, int64_t n_heads, int64_t n_kv_heads,
                           int64_t head_dim, void *restrict workspace)
{
    WQ_KERN_ASSERT(out && q && k && v && workspace && T >= 0 && head_dim > 0);
    WQ_KERN_ASSERT(n_kv_heads > 0 && n_heads % n_kv_heads == 0);
    const int64_t group = n_heads / n_kv_heads, D = head_dim;
    const int64_t qd = n_heads * D, kvd = n_kv_heads * D;
    const double scale = 1.0 / sqrt((double)D);
    float *s = workspace; /* [T] */
    for (int64_t h = 0; h < n_heads; h++) {
        const int64_t g = h / group;
        for (int64_t i = 0; i < T; i++) {
            const float *qi = q + i * qd + h * D;
            for (int64_t j = 0; j <= i; j++) {
                const float *kj = k + j * kvd + g * D;
                double dot = 0.0;
                for (int64_t e = 0; e < D; e++)
                    dot += (double)qi[e] * (double)kj[e];
                s[j] = (float)(dot * scale);
            }
            kl_softmax_causal_row(s, i, i + 1);
            for (int64_t e = 0; e < D; e++) {
                double o = 0.0;
                for (int64_t j = 0; j <= i; j++)
                    o += (double)s[j] * (double)v[j * kvd + g * D + e];
                out[i * qd + h * D + e] = (float)o;
            }
        }
    }
}

size_t wq_kern_block_ref_workspace_bytes(const wq_model_cfg *cfg, int64_t T)
{
    const int64_t d = cfg->hidden_size, qd = cfg->n_heads * cfg->head_dim;
    const int64_t kvd = cfg->n_kv_heads * cfg->head_dim, F = cfg->intermediate_size;
    const size_t n = 2 * kl_pad(T * d) + 2 * kl_pad(T * qd) + 2 * kl_pad(T * kvd) +
                     2 * kl_pad(T * F) + kl_pad(T);
    return n * sizeof(float);
}

static void ref_capture(const wq_block_capture *cap, wq_block_site site, float *dst, int64_t T,
                        int64_t cols, const float *src)
{
    if (!cap) return;
    if (dst) memcpy(dst, src, (size_t)(T * cols) * sizeof *dst);
    if (cap->fn) cap->fn(cap->ctx, site, 0, T, cols, src);
}

void wq_kern_block_forward_ref(const wq_model_cfg *cfg, const wq_block_weights *w, float *x,
                               int64_t T, const float *rope_cos, const float *rope_sin,
                               void *workspace, const wq_block_capture *cap)
{
    WQ_KERN_ASSERT(cfg && w && x && rope_cos && rope_sin && workspace && T >= 0);
    if (T == 0) return;
    const int64_t d = cfg->hidden_size, H = cfg->n_heads, Hkv = cfg->n_kv_heads;
    const int64_t D = cfg->head_dim, F = cfg->intermediate_size, qd = H * D, kvd = Hkv * D;
    float *cur = workspace;
    float *xn = kl_carve(&cur, T * d), *br = kl_carve(&cur, T * d);
    float *q = kl_carve(&cur, T * qd), *att = kl_carve(&cur, T * qd);
    float *k = kl_carve(&cur, T * kvd), *v = kl_carve(&cur, T * kvd);
    float *gate = kl_carve(&cur, T * F), *up = kl_carve(&cur, T * F);
    float *scores = kl_carve(&cur, T);

    wq_kern_rmsnorm(xn, x, w->attn_norm, T, d, cfg->rms_norm_eps);
    ref_capture(cap, WQ_BLOCK_SITE_ATTN, cap ? cap->x_attn : NULL, T, d, xn);
    wq_kern_linear_ref(q, xn, w->wq, w->bq, T, d, qd);
    wq_kern_linear_ref(k, xn, w->wk, w->bk, T, d, kvd);
    wq_kern_linear_ref(v, xn, w->wv, w->bv, T, d, kvd);
    wq_kern_rope_apply(q, T, H, D, rope_cos, rope_sin);
    wq_kern_rope_apply(k, T, Hkv, D, rope_cos, rope_sin);
    wq_kern_attention_ref(att, q, k, v, T, H, Hkv, D, scores);
    ref_capture(cap, WQ_BLOCK_SITE_O, cap ? cap->x_o : NULL, T, qd, att);
    wq_kern_linear_ref(br, att, w->wo, NULL, T, qd, d);
    for (int64_t i = 0; i < T * d; i++)
        x[i] += br[i];

    wq_kern_rmsnorm(xn, x, w->mlp_norm, T, d, cfg->rms_norm_eps);
    ref_capture(cap, WQ_BLOCK_SITE_MLP, cap ? cap->x_mlp : NULL, T, d, xn);
    wq_kern_linear_ref(gate, xn, w->w_gate, NULL, T, d, F);
    wq_kern_linear_ref(up, xn, w->w_up, NULL, T, d, F);
    wq_kern_swiglu(gate, up, T * F);
    ref_capture(cap, WQ_BLOCK_SITE_DOWN, cap ? cap->x_down : NULL, T, F, gate);
    wq_kern_linear_ref(br, gate, w->w_down, NULL, T, F, d);
    for (int64_t i = 0; i < T * d; i++)
        x[i] += br[i];
}
