/* kern_loss.h: gradient of the causal-LM loss with respect to the last hidden state: softmax
 * cross-entropy backward, lm_head (linear) backward and the final RMSNorm backward, composed the
 * way `wquant eval` computes the NLL (wq_kern_head_nll: final RMSNorm, logits = x lm_head^T,
 * nll[t] = logsumexp(l) - l[target[t]] with target[t] = ids[t+1]). Layer: kernels (pure numerics:
 * no allocation, no I/O, no MPI; scratch comes from the caller).
 *
 * Precision: the forward pieces (RMSNorm, logits) are exactly those of wq_kern_head_nll, so the
 * loss this returns is bitwise the NLL `eval` reports; the softmax, cross-entropy gradient and the
 * RMSNorm backward run in double; the [T][V] x [V][d] product dlogits . lm_head is one cblas_sgemm
 * per WQ_HEAD_ROW_BLOCK rows. The _f64 pieces are the exact math in double (used by the float
 * path, and checked against finite differences by the tests). */
#ifndef WQ_KERN_LOSS_H
#define WQ_KERN_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_model_cfg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Softmax cross-entropy of one row of logits l [V] against `target` (0 <= target < V):
 *   m = max l, Z = sum_v exp(l[v] - m), nll = log Z + m - l[target]   (returned),
 *   dl[v] = scale * (exp(l[v] - m) / Z - [v == target])               (dl may be NULL). */
double wq_kern_ce_backward_f64(const double *l, int64_t V, int32_t target, double scale,
                               double *dl);

/* RMSNorm in double: y[t][i] = w[i] * x[t][i] * r_t, r_t = 1 / sqrt(mean_i x[t][i]^2 + eps).
 * y, x [T][d]; w [d]. */
void wq_kern_rmsnorm_f64(double *y, const double *x, const double *w, int64_t T, int64_t d,
                         double eps);

/* RMSNorm backward (input gradient; the norm weight is not trained): for each row t,
 *   g_i = w[i] * dy[t][i],  dx[t][i] = r_t * g_i - x[t][i] * r_t^3 * (sum_j g_j x[t][j]) / d.
 * dx, dy, x [T][d]; w [d]. dx may alias dy. */
void wq_kern_rmsnorm_backward_f64(double *dx, const double *dy, const double *x, const double *w,
                                  int64_t T, int64_t d, double eps);

/* Scratch for wq_kern_head_nll_backward: a [WQ_HEAD_ROW_BLOCK][V] float panel, a
 * [WQ_HEAD_ROW_BLOCK][d] float panel, and four [V or d] double rows. */
size_t wq_kern_head_backward_workspace_bytes(const wq_model_cfg *cfg);

/* Loss and its gradient for one sequence: L = scale * sum_t nll[t] over t < T-1 with
 * targets[t] >= 0 (nll as wq_kern_head_nll with final_norm), and dx = dL/dx.
 * x [T][d] (the last block's output, NOT modified); final_norm [d]; lm_head [V][d]; targets [T-1]
 * (ids + 1; negative = skipped); dx [T][d] (overwritten; rows without a counted target get the
 * gradient 0 except through nothing: the head is per position). Returns sum_t nll[t] (unscaled,
 * added in ascending t, bitwise wq_kern_head_nll's value); *n_counted (may be NULL) gets the number
 * of counted positions. workspace >= wq_kern_head_backward_workspace_bytes(cfg). */
double wq_kern_head_nll_backward(const wq_model_cfg *cfg, const float *final_norm,
                                 const float *lm_head, const float *x, int64_t T,
                                 const int32_t *targets, double scale, float *dx, void *workspace,
                                 int64_t *n_counted);

#ifdef __cplusplus
}
#endif
#endif
