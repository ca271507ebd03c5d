/* algo_awq.h: the numerical pieces of AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight
 * Quantization", arXiv:2306.00978) as INC runs it (numerics.md 5): per-input-channel scale search
 * s = x_mean^r / w_mean^(1-r), fake quantization of scaled weights, output-error losses.
 * The block-level driver (captures, reductions over ranks, absorption) is cli/cli_awq.c.
 * Layer: algos (no MPI, no HDF5). */
#ifndef WQ_ALGO_AWQ_H
#define WQ_ALGO_AWQ_H

#include <stdint.h>

#include "core/core_qtypes.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WQ_AWQ_N_SCALE_RATIOS 20 /* r = k/20, k = 0..19 (1.0 is not tried, as INC) */
#define WQ_AWQ_N_CLIP_RATIOS 10  /* quantile = 1 - i/100, i = 0..9 */

/* w_mean[c] (numerics 5.4): the tuple's weights (n layers, each [rows[l]][cols]) viewed as groups
 * of gs along the input dimension (gs = cols when -1; a smaller last group when gs does not divide
 * cols), each element divided by its group's max |w| (0 for an all-zero group), averaged over every
 * output row of every layer. Accumulated in double. */
void wq_algo_awq_w_mean(const float *const *W, const int64_t *rows, int n, int64_t cols, int64_t gs,
                        float *w_mean);

/* s[c] = max(x_mean[c]^r / w_mean[c]^(1-r), 1e-4), then s /= sqrt(max(s) * min(s)).
 * A zero w_mean (an all-zero weight column, where INC produces inf/NaN) is treated as the smallest
 * positive w_mean of the layer, so the scale stays finite. Returns WQ_ERR_NUMERIC if a scale is
 * still non-finite (non-finite activations). */
wq_status wq_algo_awq_scales(const float *x_mean, const float *w_mean, int64_t cols, float r,
                             float *s);

/* Wq = Q(W * s[col]) / s[col]: RTN fake quantization (numerics 1, the layer's full spec, incl. the
 * configured bits — INC's search always uses 4-bit int, a [BUG?] wquant does not reproduce) of the
 * scaled weight with clip ratio `quantile`, scaled back. s == NULL means no scaling. W, Wq:
 * [rows][cols]. WQ_ERR_NOMEM. */
wq_status wq_algo_awq_fakequant(const wq_qspec *spec, float quantile, const float *W, int64_t rows,
                                int64_t cols, const float *s, float *Wq);

/* Output error of one layer on its input X [T][cols]: sum over (t, o) of (X (W - Wq)^T)[t][o]^2,
 * divided by T * rows (the mean squared error of the layer's output). scratch: [rows*cols + T*rows]
 * floats. */
double wq_algo_awq_layer_loss(const float *X, int64_t T, const float *W, const float *Wq,
                              int64_t rows, int64_t cols, float *scratch);

#ifdef __cplusplus
}
#endif
#endif
