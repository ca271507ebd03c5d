/* kern_llama.h: fp32 forward pass of a Llama-family decoder (llama, mistral, qwen2): embedding,
 * RMSNorm, rotate-half RoPE, causal GQA attention, SwiGLU MLP, the whole decoder block over a batch
 * of sequences streamed in token chunks (with capture of every linear's input for calibration), and
 * the LM head (summed NLL for perplexity, greedy argmax). Layer: kernels (pure numerics: return
 * void or a value, never allocate, log, or do I/O/MPI; preconditions are WQ_KERN_ASSERTed in debug
 * builds). Sources: kern_llama.c (pieces, head), kern_attn.c (attention), kern_block.c (block),
 * kern_llama_ref.c (scalar `_ref` versions of everything that uses BLAS).
 *
 * Conventions (llm.c style):
 *   - every matrix is row-major fp32, shapes are written (rows, cols) as [rows][cols];
 *   - a linear weight W is stored as in HF/PyTorch, [out][in], and applied as y = x W^T (+ b);
 *   - B = sequences in a batch, T = tokens per sequence (T >= 1), d = hidden_size, H = n_heads,
 *     Hkv = n_kv_heads, D = head_dim, F = intermediate_size, V = vocab_size. Q rows are [T][H*D],
 *     K/V rows [T][Hkv*D], head h occupies columns [h*D, (h+1)*D). A batch is stored sequence after
 *     sequence: row b*T + t is token t of sequence b;
 *   - matrix products go through cblas_sgemm (OpenBLAS, threads as configured by its environment);
 *     everything else is single-threaded plain C in a fixed order.
 *
 * Determinism: the floating-point operations applied to a sequence depend only on (cfg, T, the step
 * plan of wq_kern_block_forward_batch) and that sequence's data, never on other sequences, ranks or
 * timing; with the same BLAS build and thread count, outputs are bit-reproducible. Different step
 * plans (token_chunk) agree to fp32 rounding; they are bitwise equal only when the BLAS computes
 * each output element in an order that does not depend on the number of rows M (OpenBLAS's "small
 * matrix" kernels on AVX-512 targets do depend on M), so callers that need bitwise reproducibility
 * across runs must fix token_chunk (the engine does: it uses wq_kern_block_forward).
 *
 * Precision: fp32 like HF's fp32 eager path, except where noted (RMSNorm sum of squares, softmax
 * normaliser and the LM head log-sum-exp are accumulated in double, then rounded).
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

/* Borrowed weights of one decoder layer (HF names in brackets), original or dequantized. Shapes:
 *   attn_norm [d]            (input_layernorm.weight)
 *   wq [H*D][d], wk [Hkv*D][d], wv [Hkv*D][d]   (self_attn.{q,k,v}_proj.weight)
 *   bq [H*D], bk [Hkv*D], bv [Hkv*D]            (…_proj.bias; each may be NULL = no bias; qwen2)
 *   wo [d][H*D]              (self_attn.o_proj.weight, no bias)
 *   mlp_norm [d]             (post_attention_layernorm.weight)
 *   w_gate [F][d], w_up [F][d], w_down [d][F]   (mlp.{gate,up,down}_proj.weight, no bias) */
typedef struct {
    const float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *mlp_norm, *w_gate, *w_up, *w_down;
} wq_block_weights;

/* The four activation sites of a block: the input of each group of linears (what GPTQ/AWQ need). */
typedef enum wq_block_site {
    WQ_BLOCK_SITE_ATTN = 0, /* input_layernorm output, the input of q/k/v_proj      [rows][d]   */
    WQ_BLOCK_SITE_O = 1,    /* attention output (heads concatenated), input of o_proj [rows][H*D] */
    WQ_BLOCK_SITE_MLP = 2,  /* post_attention_layernorm output, input of gate/up_proj [rows][d]   */
    WQ_BLOCK_SITE_DOWN = 3, /* silu(gate) * up, the input of down_proj               [rows][F]   */
    WQ_BLOCK_SITE_COUNT
} wq_block_site;

/* Streaming capture hook: x [rows][cols] holds the site's activations of batch rows
 * [row0, row0 + rows) (row b*T + t = token t of sequence b). x is borrowed scratch, valid only
 * during the call; the hook must not write it or call back into the block. For each step of the
 * forward the hook sees ATTN, O, MLP, DOWN in that order, and over the whole call every row of
 * every site is delivered exactly once, in ascending row order. A kernel cannot fail: a hook that
 * fails must record it in ctx and the caller checks after the forward. */
typedef void (*wq_block_capture_fn)(void *ctx, wq_block_site site, int64_t row0, int64_t rows,
                                    int64_t cols, const float *x);

/* Captures of the block's linear inputs; every member may be NULL/0 (= don't capture).
 *   x_attn [B*T][d], x_o [B*T][H*D], x_mlp [B*T][d], x_down [B*T][F]: caller-owned full copies
 *   (the sites above); fn/ctx: the streaming hook, for callers that reduce the activations per step
 *   (e.g. H += X^T X) and so never hold [B*T][F] floats.
 * The values are exactly (bitwise) the operands the block multiplies by the weights. */
typedef struct {
    float *x_attn, *x_o, *x_mlp, *x_down;
    wq_block_capture_fn fn;
    void *ctx;
} wq_block_capture;

/* Rows of the score panel the attention kernel processes at once; also the granularity of token
 * chunks (part of the determinism contract: a constant, not a tuning knob). */
#define WQ_ATTN_ROW_BLOCK 64
/* Positions whose logits the LM head materialises at once ([WQ_HEAD_ROW_BLOCK][V] floats). */
#define WQ_HEAD_ROW_BLOCK 32

/* ---------------------------------------------------------------------------------------------
 * Pieces (exposed for tests and for callers that compose their own passes) */

/* Embedding lookup: x[t][:] = embed[ids[t]][:] for t < T.
 * embed [V][d]; ids [T], each in [0, V) (>= 0 asserted in debug, < V is the caller's check);
 * x [T][d]. */
void wq_kern_embed(const float *restrict embed, const int32_t *restrict ids, int64_t T, int64_t d,
                   float *restrict x);

/* Linear layer: y[t][o] = sum_i x[t][i] * w[o][i] (+ bias[o]) for t < T, o < out.
 * y [T][out]; x [T][in]; w [out][in]; bias [out] or NULL. y must not alias x or w.
 * One cblas_sgemm (x · w^T, fp32 accumulation in the BLAS's order), then the bias is added in fp32
 * (HF's addmm order up to rounding). T, in, out < 2^31. */
void wq_kern_linear(float *restrict y, const float *restrict x, const float *restrict w,
                    const float *restrict bias, int64_t T, int64_t in, int64_t out);
/* Scalar reference of wq_kern_linear, no BLAS: each dot product accumulated in double in ascending
 * i (products of two floats are exact in double), rounded once to float, then + bias[o] in fp32. */
void wq_kern_linear_ref(float *restrict y, const float *restrict x, const float *restrict w,
                        const float *restrict bias, int64_t T, int64_t in, int64_t out);

/* RMSNorm (HF LlamaRMSNorm, fp32): for each row t,
 *   ms = mean_i x[t][i]^2   (squares summed in double in 8 interleaved partial sums combined in a
 *                            fixed order, divided by d, rounded once to float),
 *   r  = 1 / sqrt(ms + (float)eps)   (the sum in fp32 as HF; the reciprocal root rounded to float),
 *   y[t][i] = w[i] * (x[t][i] * r)   (two fp32 products, in HF's order).
 * y, x [T][d]; w [d]. y may equal x (in place); no other overlap. */
void wq_kern_rmsnorm(float *y, const float *x, const float *restrict w, int64_t T, int64_t d,
                     double eps);

/* RoPE tables for positions p = 0 .. T-1, HF's fp32 procedure (LlamaRotaryEmbedding, default type):
 *   inv_freq[i] = 1 / powf((float)theta, (float)(2i) / (float)D)   for i < D/2 (every step fp32),
 *   a = (float)p * inv_freq[i]   (one fp32 product, as HF's fp32 inv_freq ⊗ positions matmul),
 *   cos[p][i] = cos(a), sin[p][i] = sin(a)   (evaluated in double, rounded to float; torch's fp32
 *                                             cos/sin may differ by 1 ulp).
 * cos, sin [T][D/2], caller-owned. D = cfg->head_dim (even), theta = cfg->rope_theta.
 * Only the default (unscaled) RoPE is implemented; scaled variants (llama3, yarn, …) are not. */
void wq_kern_rope_tables(const wq_model_cfg *cfg, int64_t T, float *restrict cos,
                         float *restrict sin);
/* Same with explicit parameters. */
void wq_kern_rope_tables_dim(int64_t head_dim, double theta, int64_t T, float *restrict cos,
                             float *restrict sin);

/* Rotate-half RoPE (HF convention, NOT the interleaved llama2.c/Meta one), in place. For every
 * row t, head h < n_heads and i < D/2, with a = x[t][h*D + i], b = x[t][h*D + i + D/2],
 * c = cos[t][i], s = sin[t][i]:
 *   x[t][h*D + i]       = a*c - b*s
 *   x[t][h*D + i + D/2] = b*c + a*s        (each product rounded to fp32, then the sum: HF's
 *                                           q*cos + rotate_half(q)*sin, rotate_half = [-x2, x1])
 * x [T][n_heads*D]; cos, sin [T][D/2]: row t is the angle of x's row t (pass cos + p0*D/2 for rows
 * that start at position p0). */
void wq_kern_rope_apply(float *restrict x, int64_t T, int64_t n_heads, int64_t head_dim,
                        const float *restrict cos, const float *restrict sin);

/* Bytes of scratch wq_kern_attention / wq_kern_attention_rows / wq_kern_attention_ref need for a
 * sequence of T tokens: a [min(T, WQ_ATTN_ROW_BLOCK)][T] float score panel. */
size_t wq_kern_attention_workspace_bytes(int64_t T);

/* Causal grouped-query attention for one sequence. Query head h reads KV head g = h / (H / Hkv)
 * (H must be a multiple of Hkv). For every head h and query row i:
 *   s[j] = (q_h[i] · k_g[j]) / sqrt(D)   for j <= i   (cblas_sgemm, alpha = (float)(1/sqrt(D)))
 *   p[j] = exp(s[j] - max_j s) / sum_j exp(s[j] - max_j s)   (j <= i; max exact, fp32 expf, the
 *                                       sum in double in 8 partial sums, p rounded to float)
 *   out_h[i] = sum_{j<=i} p[j] * v_g[j]  (cblas_sgemm)
 * Positions j > i get weight exactly 0. Rows are processed in panels of WQ_ATTN_ROW_BLOCK rows
 * aligned to multiples of WQ_ATTN_ROW_BLOCK, so the score scratch stays O(T).
 * out, q [T][H*D]; k, v [T][Hkv*D]; workspace >= wq_kern_attention_workspace_bytes(T) bytes.
 * out must not alias q, k, v or workspace. q and k must already carry RoPE. */
void wq_kern_attention(float *restrict out, const float *restrict q, const float *restrict k,
                       const float *restrict v, int64_t T, int64_t n_heads, int64_t n_kv_heads,
                       int64_t head_dim, void *restrict workspace);
/* The same for query rows at positions [t0, t0 + n) only, against keys/values 0 .. t0+n-1 (chunked
 * prefill). q, out [n][H*D] (row r = position t0 + r); k, v [t0 + n][Hkv*D] (row j = position j);
 * workspace >= wq_kern_attention_workspace_bytes(t0 + n). When t0 is a multiple of
 * WQ_ATTN_ROW_BLOCK and t0 + n is one too (or the sequence's end), the panels, hence every BLAS
 * call, are those of wq_kern_attention over the whole sequence: the rows are bitwise the same. */
void wq_kern_attention_rows(float *restrict out, const float *restrict q, const float *restrict k,
                            const float *restrict v, int64_t t0, int64_t n, int64_t n_heads,
                            int64_t n_kv_heads, int64_t head_dim, void *restrict workspace);
/* Scalar reference of wq_kern_attention, no BLAS: dot products and the weighted sum of v in double
 * (rounded to float once per score and per output), scores scaled in double, same softmax formula.
 * workspace >= wq_kern_attention_workspace_bytes(T) bytes (uses T floats). */
void wq_kern_attention_ref(float *restrict out, const float *restrict q, const float *restrict k,
                           const float *restrict v, int64_t T, int64_t n_heads, int64_t n_kv_heads,
                           int64_t head_dim, void *restrict workspace);

/* SwiGLU gate, elementwise, in place: g[i] = silu(g[i]) * u[i], silu(z) = z / (1 + expf(-z)) (fp32;
 * saturates to -0 for z -> -inf and to z for z -> +inf). g, u [n]. */
void wq_kern_swiglu(float *restrict g, const float *restrict u, int64_t n);

/* SwiGLU MLP: y = (silu(x w_gate^T) * (x w_up^T)) w_down^T.
 * y [T][d]; x [T][d]; w_gate, w_up [F][d]; w_down [d][F]; gate, up: scratch [T][F] each, on return
 * gate holds silu(gate)*up (the input of down_proj). y must not alias x. */
void wq_kern_mlp(float *restrict y, const float *restrict x, const float *restrict w_gate,
                 const float *restrict w_up, const float *restrict w_down, int64_t T, int64_t d,
                 int64_t F, float *restrict gate, float *restrict up);

/* ---------------------------------------------------------------------------------------------
 * Decoder block
 *
 * One pre-norm decoder layer on the residual stream x, in place, for every sequence (positions
 * 0 .. T-1 each):
 *   a   = rmsnorm(x, attn_norm)                       -> site ATTN
 *   q   = rope(a wq^T + bq), k = rope(a wk^T + bk), v = a wv^T + bv
 *   o   = causal_gqa_attention(q, k, v)               -> site O
 *   x  += o wo^T
 *   m   = rmsnorm(x, mlp_norm)                        -> site MLP
 *   g   = silu(m w_gate^T) * (m w_up^T)               -> site DOWN
 *   x  += g w_down^T
 *
 * Step plan (token streaming). Let c = token_chunk (c <= 0 means T). Rows are processed in steps:
 *   - c <  T: a step is S = min(T, roundup(c, WQ_ATTN_ROW_BLOCK)) consecutive positions of ONE
 *     sequence (the last step of a sequence may be shorter). Causality makes this exact: the
 *     queries of a step only need K/V of positions up to the step's end, which this and earlier
 *     steps have produced. Only K and V are kept for the whole sequence.
 *   - c >= T: a step is G = floor(c / T) whole sequences (fewer in the last step), so short
 *     sequences share the projections' sgemm calls (S = G*T rows).
 * Every linear of a step is one cblas_sgemm over the step's rows; attention runs per sequence.
 * Scratch: K, V [G*T][Hkv*D] plus per-step buffers of S rows (normed input [S][d], q and attention
 * output [S][H*D] x2 overlaid with gate/up [S][F] x2) and one attention panel: memory is linear in
 * T through K/V only, and bounded by the chunk for everything else. */

/* Rows of the largest step for (T, token_chunk) (S above), to size per-step buffers of a hook. */
int64_t wq_kern_block_step_rows(int64_t T, int64_t token_chunk);

/* Bytes of scratch wq_kern_block_forward_batch needs for sequences of T tokens with this
 * token_chunk (independent of B). Sub-buffers start on 64-byte offsets. */
size_t wq_kern_block_workspace_bytes_chunked(const wq_model_cfg *cfg, int64_t T,
                                             int64_t token_chunk);

/* The decoder block over B sequences of T tokens with the step plan above.
 * cfg: hidden_size, n_heads, n_kv_heads, head_dim, intermediate_size, rms_norm_eps are used.
 * w: all pointers non-NULL except the biases. x [B*T][d], in/out. rope_cos, rope_sin [>= T][D/2]
 * from wq_kern_rope_tables (row t = position t).
 * workspace: >= wq_kern_block_workspace_bytes_chunked(cfg, T, token_chunk) bytes, caller-owned,
 * 64-byte aligned is best (contents are garbage on return).
 * cap: NULL, or captures as documented at wq_block_capture (pointer captures [B*T][in] each; the
 * hook gets one call per site and step). B == 0 is a no-op. */
void wq_kern_block_forward_batch(const wq_model_cfg *cfg, const wq_block_weights *w, float *x,
                                 int64_t B, int64_t T, int64_t token_chunk, const float *rope_cos,
                                 const float *rope_sin, void *workspace,
                                 const wq_block_capture *cap);

/* One sequence, unchunked: wq_kern_block_workspace_bytes_chunked(cfg, T, 0) and
 * wq_kern_block_forward_batch(cfg, w, x, 1, T, 0, ...). x [T][d]; captures [T][in]. This is the
 * fixed step plan the calibration/eval engine relies on for bitwise reproducibility. */
size_t wq_kern_block_workspace_bytes(const wq_model_cfg *cfg, int64_t T);
void wq_kern_block_forward(const wq_model_cfg *cfg, const wq_block_weights *w, float *x, int64_t T,
                           const float *rope_cos, const float *rope_sin, void *workspace,
                           const wq_block_capture *cap);

/* Scalar reference of the block for one sequence (no BLAS: wq_kern_linear_ref and
 * wq_kern_attention_ref; norms, RoPE and SwiGLU are the kernels above). Same arguments as
 * wq_kern_block_forward; workspace >= wq_kern_block_ref_workspace_bytes(cfg, T); the hook, if any,
 * gets each site once with all T rows. Slow: for tests and for checking other implementations. */
size_t wq_kern_block_ref_workspace_bytes(const wq_model_cfg *cfg, int64_t T);
void wq_kern_block_forward_ref(const wq_model_cfg *cfg, const wq_block_weights *w, float *x,
                               int64_t T, const float *rope_cos, const float *rope_sin,
                               void *workspace, const wq_block_capture *cap);

/* ---------------------------------------------------------------------------------------------
 * LM head. Logits of any rows are wq_kern_linear(logits, rmsnorm(x, final_norm), lm_head, NULL,
 * T, d, V); lm_head [V][d] is model.embed_tokens.weight when the embeddings are tied. */

/* Bytes of scratch for wq_kern_head_nll / wq_kern_head_argmax: a [WQ_HEAD_ROW_BLOCK][V] logits
 * panel plus one [d] row. Independent of T. */
size_t wq_kern_head_workspace_bytes(const wq_model_cfg *cfg);

/* Next-token negative log-likelihood of one sequence.
 * If final_norm != NULL, x [T][d] is first RMS-normalised IN PLACE (model.norm.weight, cfg eps);
 * pass NULL when x is already normalised. Then for each position t < T-1 with targets[t] >= 0:
 *   l = x[t] · lm_head^T            (fp32 logits [V]; cblas_sgemm, WQ_HEAD_ROW_BLOCK rows a call)
 *   m = max_v l[v]                  (exact)
 *   nll[t] = log(sum_v exp(l[v] - m)) + m - l[targets[t]]
 * where l[v] - m, exp, the sum (ascending v), log and the final subtraction are all in double: a
 * stable log-softmax whose error is far below the fp32 rounding of the logits themselves.
 * targets [T-1] (normally ids + 1); a negative target skips that position (nll_out[t] = 0).
 * lm_head [V][d]. nll_out: NULL or [T-1] doubles. n_counted: NULL or receives the number of
 * positions summed. workspace: >= wq_kern_head_workspace_bytes(cfg). Returns the sum of nll[t] over
 * counted positions, in double, added in ascending t. T == 1 returns 0. */
double wq_kern_head_nll(const wq_model_cfg *cfg, const float *final_norm, const float *lm_head,
                        float *x, int64_t T, const int32_t *targets, void *workspace,
                        double *nll_out, int64_t *n_counted);

/* Greedy next token after the LAST position: argmax_v (rmsnorm(x[T-1]) · lm_head^T)[v], the
 * smallest index among equal maxima. x [T][d] is NOT modified (the last row is normalised into the
 * workspace); final_norm == NULL means x is already normalised. lm_head [V][d]. workspace: >=
 * wq_kern_head_workspace_bytes(cfg). Since the block is causal, calling it with T' <= T on the
 * hidden states of a longer sequence gives the greedy token after position T'-1. */
int32_t wq_kern_head_argmax(const wq_model_cfg *cfg, const float *final_norm, const float *lm_head,
                            const float *x, int64_t T, void *workspace);

#ifdef __cplusplus
}
#endif
#endif /* WQ_KERN_LLAMA_H */
