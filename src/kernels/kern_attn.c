/* kern_attn.c: causal grouped-query attention with cblas_sgemm, whole sequence or a range of query
 * rows (chunked prefill). Formula and shapes in kern_llama.h. Layer: kernels. */
#include <cblas.h>
#include <limits.h>
#include <math.h>

#include "kernels/kern_llama.h"
#include "kernels/kern_llama_impl.h"

size_t wq_kern_attention_workspace_bytes(int64_t T)
{
    const int64_t rows = T < WQ_ATTN_ROW_BLOCK ? T : WQ_ATTN_ROW_BLOCK;
    return kl_pad(rows * T) * sizeof(float);
}

void wq_kern_attention_rows(float *restrict out, const float *restrict q, const float *restrict k,
                            const float *restrict v, int64_t t0, int64_t n, int64_t n_heads,
                            int64_t n_kv_heads, int64_t head_dim, void *restrict workspace)
{
    WQ_KERN_ASSERT(out && q && k && v && workspace && t0 >= 0 && n >= 0 && head_dim > 0);
    WQ_KERN_ASSERT(n_kv_heads > 0 && n_heads % n_kv_heads == 0);
    WQ_KERN_ASSERT(t0 + n <= INT_MAX && n_heads * head_dim <= INT_MAX);
    const int64_t group = n_heads / n_kv_heads, t1 = t0 + n;
    const int ldq = (int)(n_heads * head_dim), ldkv = (int)(n_kv_heads * head_dim);
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    float *S = workspace;
    for (int64_t h = 0; h < n_heads; h++) {
        const int64_t g = h / group;
        const float *qh = q + h * head_dim, *kg = k + g * head_dim, *vg = v + g * head_dim;
        float *oh = out + h * head_dim;
        /* Panels [r0, r1) of query positions end on multiples of WQ_ATTN_ROW_BLOCK (or at t1), so a
         * range starting on such a multiple issues exactly the whole-sequence calls. */
        for (int64_t r0 = t0; r0 < t1;) {
            int64_t r1 = (r0 / WQ_ATTN_ROW_BLOCK + 1) * WQ_ATTN_ROW_BLOCK;
            if (r1 > t1) r1 = t1;
            const int64_t nb = r1 - r0;
            const float *qp = qh + (r0 - t0) * ldq;
            /* S[nb][r1] = scale * Q_h[r0:r1] · K_g[0:r1]^T (keys past a row's own position are
             * computed but masked: a rectangle keeps it one sgemm) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)r1, (int)head_dim,
                        scale, qp, ldq, kg, ldkv, 0.0f, S, (int)r1);
            for (int64_t r = 0; r < nb; r++)
                kl_softmax_causal_row(S + r * r1, r0 + r, r1);
            /* O_h[r0:r1] = P[nb][r1] · V_g[0:r1] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)head_dim, (int)r1,
                        1.0f, S, (int)r1, vg, ldkv, 0.0f, oh + (r0 - t0) * ldq, ldq);
            r0 = r1;
        }
    }
}

void wq_kern_attention(float *restrict out, const float *restrict q, const float *restrict k,
                       const float *restrict v, int64_t T, int64_t n_heads, int64_t n_kv_heads,
                       int64_t head_dim, void *restrict workspace)
{
    wq_kern_attention_rows(out, q, k, v, 0, T, n_heads, n_kv_heads, head_dim, workspace);
}
