/* kern_backward.c: instantiates kern_backward_impl.h for float (cblas_sgemm) and double
 * (cblas_dgemm); size queries and the double RoPE tables. API and memory rule in kern_backward.h.
 * Layer: kernels. */
#include "kernels/kern_backward.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/kern_llama_impl.h"

size_t wq_kern_bwd_block_act_bytes(const wq_model_cfg *cfg, int64_t B, int64_t T, size_t elem)
{
    const int64_t N = B * T, d = cfg->hidden_size, qd = cfg->n_heads * cfg->head_dim,
                  kd = cfg->n_kv_heads * cfg->head_dim, F = cfg->intermediate_size;
    const size_t n = 4 * kl_pad(N * d) + 2 * kl_pad(N * qd) + 2 * kl_pad(N * kd) +
                     3 * kl_pad(N * F) + 2 * kl_pad(N);
    return n * elem;
}

size_t wq_kern_bwd_block_workspace_bytes(const wq_model_cfg *cfg, int64_t B, int64_t T,
                                         size_t elem)
{
    const int64_t N = B * T, d = cfg->hidden_size, qd = cfg->n_heads * cfg->head_dim,
                  kd = cfg->n_kv_heads * cfg->head_dim, F = cfg->intermediate_size;
    const size_t n = 2 * kl_pad(N * F) + 2 * kl_pad(N * d) + 2 * kl_pad(N * qd) +
                     2 * kl_pad(N * kd) + 2 * kl_pad(T * T);
    return n * elem;
}

size_t wq_kern_bwd_chain_act_bytes(const wq_model_cfg *cfg, int n, int64_t B, int64_t T,
                                   size_t elem)
{
    return (size_t)n * wq_kern_bwd_block_act_bytes(cfg, B, T, elem);
}

size_t wq_kern_bwd_chain_workspace_bytes(const wq_model_cfg *cfg, int64_t B, int64_t T, size_t elem)
{
    return wq_kern_bwd_block_workspace_bytes(cfg, B, T, elem) +
           2 * kl_pad(B * T * cfg->hidden_size) * elem;
}

void wq_kern_bwd_rope_tables_f64(int64_t head_dim, double theta, int64_t T, double *cos_,
                                 double *sin_)
{
    const int64_t h2 = head_dim / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < h2; i++) {
            const double a = (double)t * pow(theta, -(double)(2 * i) / (double)head_dim);
            cos_[t * h2 + i] = cos(a);
            sin_[t * h2 + i] = sin(a);
        }
}

#define KB_REAL float
#define KB_SFX f32
#define KB_GEMM cblas_sgemm
#define KB_EXP expf
#define KB_W wq_block_weights
#define KB_G wq_block_grads
#include "kernels/kern_backward_impl.h"
#undef KB_REAL
#undef KB_SFX
#undef KB_GEMM
#undef KB_EXP
#undef KB_W
#undef KB_G

#define KB_REAL double
#define KB_SFX f64
#define KB_GEMM cblas_dgemm
#define KB_EXP exp
#define KB_W wq_block_weights_f64
#define KB_G wq_block_grads_f64
#include "kernels/kern_backward_impl.h"
