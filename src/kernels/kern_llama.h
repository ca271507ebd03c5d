/* kern_llama.h: fp32 forward pass of a Llama-family decoder (llama, mistral, qwen2) for ONE sequence
 * of T tokens at a time: embedding, RMSNorm, rotate-half RoPE, causal GQA attention, SwiGLU MLP,
 * whole decoder block with capture of every linear's input (calibration), and the LM head (summed
 * NLL for perplexity, greedy argmax). Layer: kernels (pure numerics: return void or a value, never
 * allocate, log, or do I/O/MPI; preconditions are WQ_KERN_ASSERTed in debug builds).
 *
 * Conventions (llm.c style):
 *   - every matrix is row-major fp32, shapes are written (rows, cols) as [rows][cols];
 *   - a linear weight W is stored as in HF/PyTorch, [out][in], and applied as y = x W^T (+ b);
 *   - T = tokens of the sequence (T >= 1), d = hidden_size, H = n_heads, Hkv = n_kv_heads,
 *     D = head_dim, F = intermediate_size, V = vocab_size. Q rows are [T][H*D], K/V rows [T][Hkv*D],
 *     head h occupies columns [h*D, (h+1)*D).
 *   - matrix products go through cblas_sgemm (OpenBLAS, its own threading); everything else is plain
 *     C in a fixed order.
 *
 * Determinism contract: every function works on one sequence only, and the sequence of floating-point
 * operations it performs depends only on (cfg, T) and the data of that sequence: never on what other
 * sequences are processed, by which rank, or in which batch. With the same BLAS build and thread
 * count, the outputs for a sequence are therefore bit-identical whatever the batch composition.
 *
 * Precision: fp32 everywhere like HF's fp32 eager path, except where noted (RMSNorm sum of squares,
 * softmax normaliser and the LM head log-sum-exp are accumulated in double, then rounded).
 * Thread-safety: reentrant; concurrent calls must use distinct outputs and workspaces. */
#ifndef WQ_KERN_LLAMA_H
#define WQ_KERN_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_model_cfg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Types */

/* Borrowed weights of one decoder layer (HF names in brackets). Shapes:
 *   attn_norm [d]            (input_layernorm.weight)
 *   wq [H*D][d], wk [Hkv*D][d], wv [Hkv*D][d]   (self_attn.{q,k,v}_proj.weight)
 *   bq [H*D], bk [Hkv*D], bv [Hkv*D]            (…_proj.bias; each may be NULL = no bias, qwen2 has them)
 *   wo [d][H*D]              (self_attn.o_proj.weight, no bias)
 *   mlp_norm [d]             (post_attention_layernorm.weight)
 *   w_gate [F][d], w_up [F][d], w_down [d][F]   (mlp.{gate,up,down}_proj.weight, no bias) */
typedef struct {
    const float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *mlp_norm, *w_gate, *w_up, *w_down;
} wq_block_weights;

/* Captured inputs of the block's linears, caller-owned; any pointer may be NULL (= don't capture).
 *   x_attn [T][d]   input_layernorm output, the input of q/k/v_proj
 *   x_o    [T][H*D] attention output (heads concatenated), the input of o_proj
 *   x_mlp  [T][d]   post_attention_layernorm output, the input of gate/up_proj
 *   x_down [T][F]   silu(gate) * up, the input of down_proj
 * The values are exactly (bitwise) the operands the block multiplies by the weights. */
typedef struct {
    float *x_attn, *x_o, *x_mlp, *x_down;
} wq_block_capture;

/* Rows of the score panel the attention kernel processes at once (part of the determinism contract:
 * a constant, not a tuning knob that may depend on the run). */
#define WQ_ATTN_ROW_BLOCK 64
/* Positions whose logits the LM head materialises at once ([WQ_HEAD_ROW_BLOCK][V] floats). */
#define WQ_HEAD_ROW_BLOCK 32

/* ---------------------------------------------------------------------------------------------
 * Pieces (exposed for tests and for callers that compose their own passes) */

/* Embedding lookup: x[t][:] = embed[ids[t]][:] for t < T.
 * embed [V][d]; ids [T], each in [0, V) (asserted in debug); x [T][d], caller-owned. */
void wq_kern_embed(const float *restrict embed, const int32_t *restrict ids, int64_t T, int64_t d,
                   float *restrict x);

/* Linear layer: y[t][o] = sum_i x[t][i] * w[o][i] (+ bias[o]) for t < T, o < out.
 * y [T][out]; x [T][in]; w [out][in]; bias [out] or NULL. y must not alias x or w.
 * One cblas_sgemm (x · w^T), then the bias is added in fp32 (HF's addmm order up to rounding). */
void wq_kern_linear(float *restrict y, const float *restrict x, const float *restrict w,
                    const float *restrict bias, int64_t T, int64_t in, int64_t out);

/* RMSNorm (HF LlamaRMSNorm, fp32): for each row t,
 *   ms = mean_i x[t][i]^2   (sum accumulated in double, rounded once to float),
 *   r  = 1 / sqrt(ms + (float)eps)   (rounded to float),
 *   y[t][i] = w[i] * (x[t][i] * r)   (two fp32 products, in HF's order).
 * y, x [T][d]; w [d]. y may equal x (in place); no other overlap. */
void wq_kern_rmsnorm(float *y, const float *x, const float *restrict w, int64_t T, int64_t d,
                     double eps);

/* RoPE tables for positions p = 0 .. T-1, HF's fp32 procedure (LlamaRotaryEmbedding, default type):
 *   inv_freq[i] = 1 / powf((float)theta, (float)(2i) / (float)D)   for i < D/2 (fp32),
 *   a = (float)p * inv_freq[i]   (one fp32 product),
 *   cos[p][i] = cos(a), sin[p][i] = sin(a)   (evaluated in double, rounded to float).
 * cos, sin [T][D/2], caller-owned. D = cfg->head_dim (even), theta = cfg->rope_theta.
 * Only the default (unscaled) RoPE is implemented; scaled variants (llama3, yarn, …) are not. */
void wq_kern_rope_tables(const wq_model_cfg *cfg, int64_t T, float *restrict cos,
                         float *restrict sin);
/* Same with explicit parameters. */
void wq_kern_rope_tables_dim(int64_t head_dim, double theta, int64_t T, float *restrict cos,
                             float *restrict sin);

/* Rotate-half RoPE (HF convention, NOT the interleaved llama2.c/Meta one), in place. For every row t,
 * head h < n_heads and i < D/2, with a = x[t][h*D + i], b = x[t][h*D + i + D/2], c = cos[t][i],
 * s = sin[t][i]:
 *   x[t][h*D + i]       = a*c - b*s
 *   x[t][h*D + i + D/2] = b*c + a*s        (each product rounded to fp32, then the sum: HF's
 *                                           q*cos + rotate_half(q)*sin)
 * x [T][n_heads*D]; cos, sin [T][D/2] from wq_kern_rope_tables (row t = position t). */
void wq_kern_rope_apply(float *restrict x, int64_t T, int64_t n_heads, int64_t head_dim,
                        const float *restrict cos, const float *restrict sin);

/* Bytes of scratch wq_kern_attention needs: a [min(T, WQ_ATTN_ROW_BLOCK)][T] float score panel. */
size_t wq_kern_attention_workspace_bytes(int64_t T);

/* Causal grouped-query attention for one sequence. Query head h reads KV head g = h / (H / Hkv)
 * (H must be a multiple of Hkv). For every head h and query row i:
 *   s[j] = (q_h[i] · k_g[j]) / sqrt(D)        for j <= i   (cblas_sgemm with alpha = 1/sqrt(D))
 *   p[j] = exp(s[j] - max_j s) / sum_j exp(s[j] - max_j s)   (fp32 exp; sum in double; j <= i)
 *   out_h[i] = sum_{j<=i} p[j] * v_g[j]       (cblas_sgemm)
 * Positions j > i get weight exactly 0 (they are never summed). Rows are processed in panels of
 * WQ_ATTN_ROW_BLOCK so the score scratch stays O(T).
 * out, q [T][H*D]; k, v [T][Hkv*D]; workspace >= wq_kern_attention_workspace_bytes(T) bytes.
 * out must not alias q, k, v or workspace. q and k must already carry RoPE. */
void wq_kern_attention(float *restrict out, const float *restrict q, const float *restrict k,
                       const float *restrict v, int64_t T, int64_t n_heads, int64_t n_kv_heads,
                       int64_t head_dim, void *restrict workspace);

/* SwiGLU gate, elementwise, in place: g[i] = silu(g[i]) * u[i], silu(z) = z / (1 + exp(-z)) (fp32).
 * g, u [n]. */
void wq_kern_swiglu(float *restrict g, const float *restrict u, int64_t n);

/* SwiGLU MLP: y = (silu(x w_gate^T) * (x w_up^T)) w_down^T.
 * y [T][d]; x [T][d]; w_gate, w_up [F][d]; w_down [d][F]; gate, up: scratch [T][F] each, on return
 * gate holds silu(gate)*up (the input of down_proj). y must not alias x. */
void wq_kern_mlp(float *restrict y, const float *restrict x, const float *restrict w_gate,
                 const float *restrict w_up, const float *restrict w_down, int64_t T, int64_t d,
                 int64_t F, float *restrict gate, float *restrict up);

/* ---------------------------------------------------------------------------------------------
 * Decoder block */

/* Bytes of scratch wq_kern_block_forward needs for T tokens (all fp32 arrays, 64-byte aligned
 * sub-buffers): xn [T][d], q [T][H*D], k, v [T][Hkv*D], att [T][H*D], gate, up [T][F], the attention
 * panel, and a [T][d] residual branch. Grows linearly in T (plus the attention panel). */
size_t wq_kern_block_workspace_bytes(const wq_model_cfg *cfg, int64_t T);

/* One pre-norm decoder layer, in place on the residual stream x [T][d] (positions 0 .. T-1):
 *   a   = rmsnorm(x, attn_norm)                       -> cap->x_attn
 *   q   = rope(a wq^T + bq), k = rope(a wk^T + bk), v = a wv^T + bv
 *   o   = causal_gqa_attention(q, k, v)               -> cap->x_o
 *   x  += o wo^T
 *   m   = rmsnorm(x, mlp_norm)                        -> cap->x_mlp
 *   g   = silu(m w_gate^T) * (m w_up^T)               -> cap->x_down
 *   x  += g w_down^T
 * cfg: hidden_size, n_heads, n_kv_heads, head_dim, intermediate_size, rms_norm_eps are used.
 * w: all pointers non-NULL except the biases. rope_cos, rope_sin [>= T][D/2] from
 * wq_kern_rope_tables (row t = position t). workspace: >= wq_kern_block_workspace_bytes(cfg, T)
 * bytes, caller-owned, 64-byte aligned is best (contents are garbage on return). cap: NULL, or
 * captures as documented at wq_block_capture (each [T][in], caller-owned). */
void wq_kern_block_forward(const wq_model_cfg *cfg, const wq_block_weights *w, float *x, int64_t T,
                           const float *rope_cos, const float *rope_sin, void *workspace,
                           const wq_block_capture *cap);

/* ---------------------------------------------------------------------------------------------
 * LM head */

/* Bytes of scratch for wq_kern_head_nll / wq_kern_head_argmax: a [WQ_HEAD_ROW_BLOCK][V] logits
 * panel plus one [d] row. Independent of T. */
size_t wq_kern_head_workspace_bytes(const wq_model_cfg *cfg);

/* Next-token negative log-likelihood of one sequence.
 * If final_norm != NULL, x [T][d] is first RMS-normalised IN PLACE (model.norm.weight, cfg eps);
 * pass NULL when x is already normalised. Then for each position t < T-1 with targets[t] >= 0:
 *   l = x[t] · lm_head^T            (fp32 logits [V], cblas_sgemm, panels of WQ_HEAD_ROW_BLOCK rows)
 *   nll[t] = log(sum_v exp(l[v] - max l)) + max l - l[targets[t]]
 * where exp(l[v] - max l) is evaluated and summed in double, and the log and the subtraction are in
 * double (a stable log-softmax; its error is far below the fp32 rounding of the logits themselves).
 * targets [T-1] (normally ids + 1); a negative target skips that position (nll_out[t] = 0).
 * lm_head [V][d] (model.embed_tokens.weight when tied). nll_out: NULL or [T-1] doubles.
 * n_counted: NULL or receives the number of positions summed. workspace: >=
 * wq_kern_head_workspace_bytes(cfg). Returns the sum of nll[t] over counted positions, in double,
 * added in ascending t. T == 1 returns 0. */
double wq_kern_head_nll(const wq_model_cfg *cfg, const float *final_norm, const float *lm_head,
                        float *x, int64_t T, const int32_t *targets, void *workspace,
                        double *nll_out, int64_t *n_counted);

/* Greedy next token after the LAST position: argmax_v (rmsnorm(x[T-1]) · lm_head^T)[v], the
 * smallest index among equal maxima. x [T][d] is NOT modified (the last row is normalised into the
 * workspace); final_norm == NULL means x is already normalised. lm_head [V][d]. */
int32_t wq_kern_head_argmax(const wq_model_cfg *cfg, const float *final_norm, const float *lm_head,
                            const float *x, int64_t T, void *workspace);

#ifdef __cplusplus
}
#endif
#endif /* WQ_KERN_LLAMA_H */
