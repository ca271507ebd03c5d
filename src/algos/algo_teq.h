/* algo_teq.h: TEQ, trainable equivalent transformation (Cheng et al. 2023, "TEQ: Trainable
 * Equivalent Transformation for Quantization of LLMs", arXiv:2310.10944) as INC runs it
 * (numerics.md 6): a per-input-channel scale alpha per absorb group, trained with Adam on the
 * model's causal-LM loss through fake-quantized weights (straight-through estimator), then folded
 * into the preceding norm (or stored as the layer's input scale) and the weights quantized.
 *
 * Training forward of one wrapped linear (6): a' = max(a, 1e-5); y = (x / a') Q(W a'[col])^T + b.
 * Since x / a' only rescales columns, y = x Weff^T + b with Weff[o][c] = Q(W a')[o][c] / a'[c], so
 * the training forward is the ordinary model forward with Weff in place of W, and, with
 * G = dL/dWeff = sum_t dy[t]^T x[t] and the STE (dQ(W')/dW' = identity):
 *   dL/da[c] = sum_o G[o][c] (W[o][c] - Weff[o][c]) / a'[c]   where a[c] >= 1e-5, else 0
 * (torch.clamp passes the gradient only inside the range).
 * The per-sequence model forward/backward and the trainer pieces (Adam, linear warm-up schedule,
 * dataloader batches) live here; the data-parallel driver with the exact gradient reduction is
 * cli/cli_teq.c. Layer: algos (no MPI, no HDF5). */
#ifndef WQ_ALGO_TEQ_H
#define WQ_ALGO_TEQ_H

#include <stdint.h>

#include "core/core_model_cfg.h"
#include "core/core_qtypes.h"
#include "kernels/kern_llama.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WQ_TEQ_ALPHA_MIN 1e-5f /* a' = max(a, 1e-5) */
#define WQ_TEQ_BETA1 0.9       /* INC 2.x trainer: Adam(betas=(0.9, 0.9)), torch's eps 1e-8 */
#define WQ_TEQ_BETA2 0.9
#define WQ_TEQ_EPS 1e-8
#define WQ_TEQ_N_LIN 7 /* linears per block: q, k, v, o, gate, up, down */

/* out[c] = max(alpha[c], 1e-5). */
void wq_algo_teq_clip(const float *alpha, int64_t n, float *out);

/* Weff = Q(W * a'[col]) / a'[col] with a' = max(alpha, 1e-5): RTN fake quantization (numerics 1,
 * the spec's bits / group / scheme / full range / double quant, quantile 1). W, Weff [rows][cols];
 * alpha [cols] or NULL (= 1). WQ_ERR_NOMEM. */
wq_status wq_algo_teq_weff(const wq_qspec *spec, const float *W, int64_t rows, int64_t cols,
                           const float *alpha, float *Weff);

/* dalpha[c] += sum_o G[o][c] * (W[o][c] - Weff[o][c]) / a'[c] for alpha[c] >= 1e-5 (summed in
 * double in ascending o). G, W, Weff [rows][cols]. */
void wq_algo_teq_alpha_grad(const float *G, const float *W, const float *Weff, int64_t rows,
                            int64_t cols, const float *alpha, double *dalpha);

/* The exact derivative of the fake-quantized loss between rounding changes (no straight-through
 * estimate; `gradient: "exact"`): with the codes and the zero point held, Weff[o][j] =
 * (q - z) * scale / a'[j], so dWeff[o][j]/da[j] = -Weff[o][j] / a'[j], plus, through the group's
 * scale, dWeff[o][j]/da[m] = Weff[o][j] * (dscale/da[m]) / scale for the channel m that sets it:
 * sym (non-full-range) the channel with the largest |W a'| (1 / a'[m]); asym the channels of
 * max(W a', 0) (+W[o][m] / range) and min(W a', 0) (-W[o][m] / range), range = max - min.
 * Accumulated into dalpha; clamped alphas get no gradient. For int without full range. */
void wq_algo_teq_alpha_grad_exact(const wq_qspec *spec, const float *G, const float *W,
                                  const float *Weff, int64_t rows, int64_t cols, const float *alpha,
                                  double *dalpha);

/* Learning rate of optimizer step k (0-based) under HF's "linear" schedule (get_scheduler as INC's
 * trainer calls it): base * k / max(1, warmup) for k < warmup, else
 * base * max(0, (total - k) / max(1, total - warmup)). The first step of a warm-up uses lr 0. */
double wq_algo_teq_lr(double base, int64_t k, int64_t warmup, int64_t total);

/* INC trainer step counts: warmup = (int)(train_steps * ratio) / accum, total = train_steps /
 * accum. */
void wq_algo_teq_schedule(int64_t train_steps, double warmup_ratio, int64_t accum, int64_t *warmup,
                          int64_t *total);

/* Batch g (0-based, counting over epochs) of an unshuffled dataloader over n samples with batch
 * size bs (the last batch of an epoch is smaller, drop_last=False): samples [*begin, *end). */
void wq_algo_teq_batch(int64_t g, int64_t n, int64_t bs, int64_t *begin, int64_t *end);

/* Adam (torch.optim.Adam, weight_decay 0, eps 1e-8, betas (0.9, 0.9)), moments in double. */
typedef struct {
    int64_t n, t;
    double *m, *v;
} wq_teq_adam;
wq_status wq_algo_teq_adam_init(wq_teq_adam *a, int64_t n); /* WQ_ERR_NOMEM */
void wq_algo_teq_adam_free(wq_teq_adam *a);
/* t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)   (in double, p rounded to float)
 */
void wq_algo_teq_adam_step(wq_teq_adam *a, float *p, const double *g, double lr);

/* One linear of the network being trained. */
typedef struct {
    const float *W; /* original weight [rows][cols] */
    float *Weff;    /* effective weight used by the training forward [rows][cols] */
    int64_t rows, cols;
    const wq_qspec *spec; /* NULL: not quantized (Weff = W) */
    int64_t off;          /* offset of its alpha in the flat alpha vector; -1: fixed alpha = 1 */
} wq_teq_linear;

/* The whole model as TEQ trains it (every weight in memory, like INC). */
typedef struct {
    const wq_model_cfg *mc;
    const float *embed, *final_norm, *lm_head; /* [V][d], [d], [V][d] */
    wq_block_weights *blocks; /* [n_layers]: norms original, linears = lin[].Weff */
    wq_teq_linear *lin;       /* [n_layers][WQ_TEQ_N_LIN] */
    float *alpha;             /* [n_alpha] trainable scales (groups share entries) */
    int64_t n_alpha;
    int exact_grad; /* 1: wq_algo_teq_alpha_grad_exact, 0: the straight-through estimate (INC) */
} wq_teq_net;

/* Recomputes every linear's Weff from the current alpha. WQ_ERR_NOMEM. */
wq_status wq_algo_teq_update_weights(wq_teq_net *net);

typedef struct wq_teq_work wq_teq_work;
/* Scratch for sequences of up to Tmax tokens (every block's input, one block's activations).
 * *out: wq_algo_teq_work_destroy. WQ_ERR_NOMEM. */
wq_status wq_algo_teq_work_create(const wq_model_cfg *mc, int64_t Tmax, wq_teq_work **out);
void wq_algo_teq_work_destroy(wq_teq_work *w);

/* Forward and backward of one sequence: L = scale * sum of the next-token NLL (positions
 * 1..T-1, as `wquant eval`); *nll receives the unscaled sum; dalpha[0..n_alpha) receives (is
 * overwritten with) dL/dalpha. ids [T] (validated by the caller), rope tables for >= T positions.
 */
wq_status wq_algo_teq_seq_grad(const wq_teq_net *net, const int32_t *ids, int64_t T,
                               const float *rope_cos, const float *rope_sin, double scale,
                               wq_teq_work *work, double *dalpha, double *nll);

/* Forward only: *nll = the unscaled next-token NLL sum of one sequence, bitwise the *nll that
 * wq_algo_teq_seq_grad returns for the same net and ids (same block forward, same head).
 * WQ_ERR_ARG when T > the work's Tmax. */
wq_status wq_algo_teq_seq_nll(const wq_teq_net *net, const int32_t *ids, int64_t T,
                              const float *rope_cos, const float *rope_sin, wq_teq_work *work,
                              double *nll);

/* Best-snapshot rule (wquant's addition to INC's trainer, `snapshot_every`, docs/algorithms.md):
 * the full-calibration loss is evaluated before the first optimizer step (alpha = 1, i.e. RTN)
 * and after every `every`-th optimizer step and the last one; the alpha with the smallest loss is
 * kept (strictly smaller replaces, so among equal losses the earliest wins, alpha = 1 first). */
typedef struct {
    double loss;  /* best loss so far (+inf before the first offer) */
    int64_t step; /* optimizer steps taken when it was measured; -1 before the first offer */
} wq_teq_best;
void wq_algo_teq_best_init(wq_teq_best *b);
/* Offers the loss measured after `step` optimizer steps: returns 1 (and records it) when it is
 * finite and strictly below the best so far, else 0. */
int wq_algo_teq_best_offer(wq_teq_best *b, double loss, int64_t step);
/* 1 when the loss is to be evaluated after `taken` optimizer steps out of `total`: taken == 0,
 * taken % every == 0, or taken == total (every >= 1). */
int wq_algo_teq_snapshot_due(int64_t taken, int64_t every, int64_t total);

#ifdef __cplusplus
}
#endif
#endif
