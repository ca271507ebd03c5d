/* kern_llama_impl.h: private helpers shared by kern_llama.c, kern_attn.c, kern_block.c and
 * kern_llama_ref.c: workspace carving and fixed-order lane reductions that GCC auto-vectorizes at
 * -O3 with the SSE2 baseline. Layer: kernels (internal, not part of the API).
 *
 * Why lanes: a plain `s += x[i]` loop is a serial dependency chain that the compiler may not
 * reorder (no -ffast-math), so it runs at one add per latency. Eight interleaved partial results,
 * combined in a fixed tree at the end, vectorize and keep the result a deterministic function of
 * the input (the order never depends on alignment, threads or the machine). */
#ifndef WQ_KERN_LLAMA_IMPL_H
#define WQ_KERN_LLAMA_IMPL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kern_vec.h"

/* Sub-buffers carved from a workspace start on 64-byte offsets (16 floats). */
#define KL_ALIGN_FLOATS 16
#define KL_LANES 8

static inline size_t kl_pad(int64_t n)
{
    return (size_t)((n + KL_ALIGN_FLOATS - 1) / KL_ALIGN_FLOATS) * KL_ALIGN_FLOATS;
}

/* Returns the next sub-buffer of n floats and advances *cur. */
static inline float *kl_carve(float **cur, int64_t n)
{
    float *p = *cur;
    *cur += kl_pad(n);
    return p;
}

static inline double kl_tree8(const double s[KL_LANES])
{
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* max_i x[i] for n >= 1. Exact, so the lane order does not change the value (NaNs are skipped
 * unless x[0] is NaN, like kv_max). */
static inline float kl_max_f32(const float *x, int64_t n)
{
    float m[KL_LANES];
    for (int l = 0; l < KL_LANES; l++)
        m[l] = x[0];
    int64_t i = 0;
    for (; i + KL_LANES <= n; i += KL_LANES)
        for (int l = 0; l < KL_LANES; l++)
            m[l] = kv_max(x[i + l], m[l]);
    for (int l = 0; i + l < n; l++)
        m[l] = kv_max(x[i + l], m[l]);
    float r = m[0];
    for (int l = 1; l < KL_LANES; l++)
        r = kv_max(m[l], r);
    return r;
}

/* sum_i (double)x[i]: lane l sums the elements i = l (mod 8) in ascending i, then kl_tree8. */
static inline double kl_sum_f64(const float *x, int64_t n)
{
    double s[KL_LANES] = {0};
    int64_t i = 0;
    for (; i + KL_LANES <= n; i += KL_LANES)
        for (int l = 0; l < KL_LANES; l++)
            s[l] += (double)x[i + l];
    for (int l = 0; i + l < n; l++)
        s[l] += (double)x[i + l];
    return kl_tree8(s);
}

/* sum_i x[i]^2 in double (each square exact), same lane order as kl_sum_f64. */
static inline double kl_sumsq_f64(const float *x, int64_t n)
{
    double s[KL_LANES] = {0};
    int64_t i = 0;
    for (; i + KL_LANES <= n; i += KL_LANES)
        for (int l = 0; l < KL_LANES; l++)
            s[l] += (double)x[i + l] * (double)x[i + l];
    for (int l = 0; i + l < n; l++)
        s[l] += (double)x[i + l] * (double)x[i + l];
    return kl_tree8(s);
}

/* Causal softmax of one score row in place (shared by wq_kern_attention and its _ref so both apply
 * the same formula): s[0..i] become p[j] = exp(s[j] - max) / sum, with max exact, fp32 expf, the
 * sum by kl_sum_f64, and the scaling in double rounded to float; s[i+1..n) become 0. */
static inline void kl_softmax_causal_row(float *s, int64_t i, int64_t n)
{
    const int64_t m = i + 1;
    const float mx = kl_max_f32(s, m);
    for (int64_t j = 0; j < m; j++)
        s[j] = expf(s[j] - mx);
    const double inv = 1.0 / kl_sum_f64(s, m);
    for (int64_t j = 0; j < m; j++)
        s[j] = (float)((double)s[j] * inv);
    if (n > m) memset(s + m, 0, (size_t)(n - m) * sizeof *s);
}

#endif /* WQ_KERN_LLAMA_IMPL_H */
