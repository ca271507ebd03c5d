/* kern_backward.h: forward with stored activations and backward pass (gradients w.r.t. inputs and
 * weights) of a Llama-family decoder block and of its pieces (linear, RMSNorm, rotate-half RoPE,
 * causal GQA attention, SwiGLU), for a mini-batch of B sequences of T tokens. For training-style
 * calibration: AutoRound (numerics.md §8) and TEQ (§6). Layer: kernels (pure numerics: no
 * allocation, no logging, no I/O/MPI; all scratch comes from the caller).
 *
 * Two instantiations of the same source (kern_backward_impl.h, macro-templated over the element
 * type): `_f32` (float, cblas_sgemm: the production path) and `_f64` (double, cblas_dgemm: the
 * gradient-check path; central finite differences in double on the _f64 forward reach a relative
 * error ~1e-9, so the analytic gradients can be checked to < 1e-6, which fp32 cannot). Both use
 * the SAME formulas and operation order, so checking _f64 checks the algebra of _f32.
 *
 * Conventions: as kern_llama.h (row-major, W [out][in], y = x W^T + b, rows b*T + t, Q [.][H*D],
 * K/V [.][Hkv*D], head h reads KV head h / (H/Hkv)). The forward here is the block of kern_llama.h
 * (same math) but NOT bitwise equal to wq_kern_block_forward (different reductions, no chunking):
 * callers that tune against it must compute reference outputs with this forward too.
 *   a  = rmsnorm(x0, attn_norm)             r1 = 1/sqrt(mean x0^2 + eps)
 *   q  = rope(a Wq^T + bq), k = rope(a Wk^T + bk), v = a Wv^T + bv
 *   o  = causal_gqa_attention(q, k, v)     (scale 1/sqrt(D), softmax in double per row)
 *   x1 = x0 + o Wo^T
 *   m  = rmsnorm(x1, mlp_norm)             r2 likewise
 *   g  = m Wg^T, u = m Wu^T, h = silu(g) * u
 *   y  = x1 + h Wd^T
 *
 * Gradient conventions: every weight gradient is ACCUMULATED (+=) into the caller's buffer (so a
 * mini-batch can be processed in several calls, and several blocks' grads kept apart); input
 * gradients are OVERWRITTEN. A NULL gradient pointer means "not needed" (skipped).
 * Straight-through fake-quant: the block takes whatever (dequantized) weights the caller passes;
 * dL/dW_hat is returned and the caller chains it through its own qdq (STE: round' = 1).
 *
 * MEMORY RULE (store vs recompute). wq_kern_bwd_block_forward stores, per row of the call,
 * x0, a, q, k, v, o, x1, m (d, d, HD, KD, KD, HD, d, d floats), g, u, h (F each) and r1, r2:
 * wq_kern_bwd_block_act_bytes(cfg, B, T) bytes. The attention probabilities are NOT stored (they
 * are O(H*T^2)); the backward recomputes them per (sequence, head) from the stored q, k into a
 * [T][T] panel. Everything else is stored because recomputing it costs a full forward GEMM pass
 * (~1/3 of a training step). Since weight gradients accumulate and sequences are independent,
 * the caller bounds memory by choosing the number of sequences B per forward/backward pair: the
 * store-all rule applies within a call, and a "low-memory" caller calls with B = 1 (activations of
 * one sequence), recomputing the forward of each sequence right before its backward instead of
 * holding the whole mini-batch. Workspace (wq_kern_bwd_block_workspace_bytes) is the backward's
 * gradient buffers for B*T rows plus two [T][T] panels.
 *
 * Determinism: fixed operation order; results depend only on the inputs and (B, T) (the BLAS row
 * count M), with the same BLAS build and thread count bit-reproducible.
 * Thread-safety: reentrant; concurrent calls need distinct outputs and workspaces. */
#ifndef WQ_KERN_BACKWARD_H
#define WQ_KERN_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_model_cfg.h"
#include "kernels/kern_llama.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Weights of one block in double (same members and shapes as wq_block_weights). */
typedef struct {
    const double *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *mlp_norm, *w_gate, *w_up,
        *w_down;
} wq_block_weights_f64;

/* Gradient accumulators of one block (same shapes as the weights); any member may be NULL. The
 * bias members are used only when the weights have the bias. */
typedef struct {
    float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *mlp_norm, *w_gate, *w_up, *w_down;
} wq_block_grads;
typedef struct {
    double *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *mlp_norm, *w_gate, *w_up, *w_down;
} wq_block_grads_f64;

/* ---- pieces (each _f64 twin has the same signature with double for float) -------------------- */

/* Linear backward for y = x W^T + b over T rows: dx [T][in] = dy W (overwritten; dx may be NULL);
 * dw [out][in] += dy^T x; db [out] += sum_t dy[t] (each may be NULL). dy [T][out], x [T][in]. */
void wq_kern_bwd_linear_f32(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int64_t T, int64_t in, int64_t out);
void wq_kern_bwd_linear_f64(double *dx, double *dw, double *db, const double *dy, const double *x,
                            const double *w, int64_t T, int64_t in, int64_t out);

/* RMSNorm forward y = w * x * r, r = 1/sqrt(mean x^2 + eps) (sum of squares in double); r [T] out
 * (may be NULL). Backward: dx = r*(w.dy) - x * r^3/d * sum_i(w_i dy_i x_i) (overwritten; dx may
 * alias dy), dw [d] += sum_t dy*x*r (may be NULL); r from the forward. */
void wq_kern_bwd_rmsnorm_fwd_f32(float *y, float *r, const float *x, const float *w, int64_t T,
                                 int64_t d, double eps);
void wq_kern_bwd_rmsnorm_fwd_f64(double *y, double *r, const double *x, const double *w,
                                 int64_t T, int64_t d, double eps);
void wq_kern_bwd_rmsnorm_f32(float *dx, float *dw, const float *dy, const float *x,
                             const float *w, const float *r, int64_t T, int64_t d);
void wq_kern_bwd_rmsnorm_f64(double *dx, double *dw, const double *dy, const double *x,
                             const double *w, const double *r, int64_t T, int64_t d);

/* RoPE tables in double (the f32 path uses wq_kern_rope_tables_dim). cos, sin [T][D/2]. */
void wq_kern_bwd_rope_tables_f64(int64_t head_dim, double theta, int64_t T, double *cos,
                                 double *sin);
/* Rotate-half RoPE forward, in place (formula of wq_kern_rope_apply), and its backward (the
 * transpose rotation), in place on the gradient: da = dy1*c + dy2*s, db = dy2*c - dy1*s. */
void wq_kern_bwd_rope_fwd_f32(float *x, int64_t T, int64_t n_heads, int64_t head_dim,
                              const float *cos, const float *sin);
void wq_kern_bwd_rope_fwd_f64(double *x, int64_t T, int64_t n_heads, int64_t head_dim,
                              const double *cos, const double *sin);
void wq_kern_bwd_rope_f32(float *dx, int64_t T, int64_t n_heads, int64_t head_dim,
                          const float *cos, const float *sin);
void wq_kern_bwd_rope_f64(double *dx, int64_t T, int64_t n_heads, int64_t head_dim,
                          const double *cos, const double *sin);

/* Causal GQA attention of ONE sequence of T tokens, forward and backward. workspace >=
 * wq_kern_bwd_attention_workspace_bytes_*(T) (two [T][T] panels). Backward: dq [T][H*D], dk, dv
 * [T][Hkv*D] are overwritten (dk/dv sum over the query heads of the group); dout [T][H*D]. */
size_t wq_kern_bwd_attention_workspace_bytes_f32(int64_t T);
size_t wq_kern_bwd_attention_workspace_bytes_f64(int64_t T);
void wq_kern_bwd_attention_fwd_f32(float *out, const float *q, const float *k, const float *v,
                                   int64_t T, int64_t n_heads, int64_t n_kv_heads,
                                   int64_t head_dim, void *workspace);
void wq_kern_bwd_attention_fwd_f64(double *out, const double *q, const double *k,
                                   const double *v, int64_t T, int64_t n_heads,
                                   int64_t n_kv_heads, int64_t head_dim, void *workspace);
void wq_kern_bwd_attention_f32(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, int64_t T, int64_t n_heads,
                               int64_t n_kv_heads, int64_t head_dim, void *workspace);
void wq_kern_bwd_attention_f64(double *dq, double *dk, double *dv, const double *dout,
                               const double *q, const double *k, const double *v, int64_t T,
                               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                               void *workspace);

/* SwiGLU h = silu(g) * u over n elements (h may alias g) and its backward: dg = dh*u*silu'(g),
 * du = dh*silu(g), silu'(z) = s(z)(1 + z(1 - s(z))), s = logistic (dg may alias dh). */
void wq_kern_bwd_swiglu_fwd_f32(float *h, const float *g, const float *u, int64_t n);
void wq_kern_bwd_swiglu_fwd_f64(double *h, const double *g, const double *u, int64_t n);
void wq_kern_bwd_swiglu_f32(float *dg, float *du, const float *dh, const float *g, const float *u,
                            int64_t n);
void wq_kern_bwd_swiglu_f64(double *dg, double *du, const double *dh, const double *g,
                            const double *u, int64_t n);

/* ---- the whole block ------------------------------------------------------------------------ */

/* Bytes of stored activations for B sequences of T tokens (memory rule above) and of the
 * backward's workspace. elem = sizeof(float) or sizeof(double). */
size_t wq_kern_bwd_block_act_bytes(const wq_model_cfg *cfg, int64_t B, int64_t T, size_t elem);
size_t wq_kern_bwd_block_workspace_bytes(const wq_model_cfg *cfg, int64_t B, int64_t T,
                                         size_t elem);

/* Forward of B sequences: x [B*T][d] in, y [B*T][d] out (y may equal x); act (required): >=
 * wq_kern_bwd_block_act_bytes bytes, receives the stored activations. rope_cos/sin [>= T][D/2]
 * (f32: wq_kern_rope_tables_dim; f64: wq_kern_bwd_rope_tables_f64). workspace >=
 * wq_kern_bwd_block_workspace_bytes (only its two attention panels are used here). */
void wq_kern_bwd_block_forward_f32(const wq_model_cfg *cfg, const wq_block_weights *w,
                                   const float *x, float *y, int64_t B, int64_t T,
                                   const float *rope_cos, const float *rope_sin, void *act,
                                   void *workspace);
void wq_kern_bwd_block_forward_f64(const wq_model_cfg *cfg, const wq_block_weights_f64 *w,
                                   const double *x, double *y, int64_t B, int64_t T,
                                   const double *rope_cos, const double *rope_sin, void *act,
                                   void *workspace);

/* Backward of the call whose activations are in act (same cfg, w, B, T): dy [B*T][d] = dL/dy;
 * dx [B*T][d] = dL/dx (overwritten; NULL = not needed); grads accumulated (NULL members skipped;
 * grads itself may be NULL). workspace >= wq_kern_bwd_block_workspace_bytes. */
void wq_kern_bwd_block_backward_f32(const wq_model_cfg *cfg, const wq_block_weights *w,
                                    const float *dy, float *dx, const wq_block_grads *grads,
                                    int64_t B, int64_t T, const float *rope_cos,
                                    const float *rope_sin, const void *act, void *workspace);
void wq_kern_bwd_block_backward_f64(const wq_model_cfg *cfg, const wq_block_weights_f64 *w,
                                    const double *dy, double *dx, const wq_block_grads_f64 *grads,
                                    int64_t B, int64_t T, const double *rope_cos,
                                    const double *rope_sin, const void *act, void *workspace);

/* ---- a chain of n consecutive blocks (AutoRound's joint tuning, numerics.md §8.4) ------------ */

/* The chain y = block_{n-1}(... block_0(x)) of B sequences, built from the block functions above
 * (n = 1 is exactly one wq_kern_bwd_block_forward / _backward call, bit for bit). act: n slots of
 * wq_kern_bwd_block_act_bytes(cfg, B, T, elem) bytes each, back to back (chain_act_bytes); slot j
 * receives block j's stored activations. The chain backward needs two [B*T][d] gradient buffers on
 * top of the block backward's workspace (chain_workspace_bytes; the forward uses the same
 * workspace). w [n]: the blocks' weights; grads [n] (NULL, or any element's members NULL: skipped).
 * dx may be NULL; every other convention is the block's (grads accumulate, dx is overwritten). */
size_t wq_kern_bwd_chain_act_bytes(const wq_model_cfg *cfg, int n, int64_t B, int64_t T,
                                   size_t elem);
size_t wq_kern_bwd_chain_workspace_bytes(const wq_model_cfg *cfg, int64_t B, int64_t T,
                                         size_t elem);
void wq_kern_bwd_chain_forward_f32(const wq_model_cfg *cfg, const wq_block_weights *w, int n,
                                   const float *x, float *y, int64_t B, int64_t T,
                                   const float *rope_cos, const float *rope_sin, void *act,
                                   void *workspace);
void wq_kern_bwd_chain_forward_f64(const wq_model_cfg *cfg, const wq_block_weights_f64 *w, int n,
                                   const double *x, double *y, int64_t B, int64_t T,
                                   const double *rope_cos, const double *rope_sin, void *act,
                                   void *workspace);
void wq_kern_bwd_chain_backward_f32(const wq_model_cfg *cfg, const wq_block_weights *w, int n,
                                    const float *dy, float *dx, const wq_block_grads *grads,
                                    int64_t B, int64_t T, const float *rope_cos,
                                    const float *rope_sin, const void *act, void *workspace);
void wq_kern_bwd_chain_backward_f64(const wq_model_cfg *cfg, const wq_block_weights_f64 *w, int n,
                                    const double *dy, double *dx, const wq_block_grads_f64 *grads,
                                    int64_t B, int64_t T, const double *rope_cos,
                                    const double *rope_sin, const void *act, void *workspace);

#ifdef __cplusplus
}
#endif
#endif /* WQ_KERN_BACKWARD_H */
