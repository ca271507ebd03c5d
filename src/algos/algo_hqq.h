/* algo_hqq.h: HQQ, calibration-free half-quadratic quantization of one weight matrix
 * (numerics.md §7; Badri & Shaji 2023, "Half-Quadratic Quantization of Large Machine Learning
 * Models"). Layer: algos (no MPI, no HDF5). Pure function of its inputs; single-threaded.
 *
 * Decisions (where wquant differs from INC, and why):
 *  - Groups are gs consecutive elements along the INPUT dimension of each row (the reference
 *    hqq's axis=1), which is exactly wq_qmatrix's layout: scales/zeros [rows][ngroups]. INC fixes
 *    axis=0, i.e. strided groups over the flattened tensor (§7.2: element k of group j is
 *    flat[j + k*numel/gs], which for out % gs == 0 is one input column and gs output rows spread
 *    out/gs apart). wquant's packed layouts (optimum/GPTQ/AWQ) and exports are per-row groups along
 *    the input dimension, which INC's axis-0 groups cannot be stored in, so results are not
 *    bit-comparable with INC's HQQ (same algorithm, different grouping).
 *  - cols % group_size != 0 gives a smaller last group per row with its own parameters (INC
 *    requires numel % group_size == 0); group_size -1 (or > cols) is one group per row.
 *  - int bits 1..8 (INC: 8/4/3/2). The zero is rounded before the solver when bits == 4 (INC's
 *    round_zero rule); the solver then moves it off the integers.
 *  - Zero-range groups: inverse scale 2e4 (INC's clamp of max_v/0), zero -min*2e4. The group
 *    is then reproduced to within 1/(2*2e4) even with a rounded zero (the reference's s = 1 would
 *    not be), but its zero is large (e.g. -400 for a constant 0.02); with quant_zero that widens
 *    the 8-bit zero range of the whole tensor, as in INC.
 *  - The spec's sym / full_range / mse_search / double_quant / group_dim fields are not used (HQQ
 *    is always asymmetric with a float zero and has its own meta quantization).
 *  - Precision (kern_hqq.h): per-element arithmetic is float32 in INC's order; the zero update
 *    mean(q - (W - We)*s) is evaluated as (sum q - s * sum(W - We)) / n in double (exact in real
 *    arithmetic, more accurate than INC's float32 mean), and the stop rule's mean error is
 *    accumulated in double. Meta quantization is float32 (INC dequantizes it in fp16 by default;
 *    wquant keeps the container's scale dtype as the only storage rounding).
 *  - Speed without changing a bit of the result (algo_hqq.c, kern_hqq.h): two solver steps per walk
 *    over L2-sized row blocks, and a per-group memo that skips groups whose zero reached its fixed
 *    point (most do within a few iterations).
 * Not collective; no global state (thread-safe for distinct outputs); the result is a pure function
 * of the inputs and the same on every CPU (the SIMD paths are bit-identical to the scalar ones).
 *
 * Output (wq_qmatrix, dtype INT): codes in 0..2^bits-1, scales = 1/s (float32 of HQQ's inverse
 * scale s), zeros = z, a float that may be fractional and may lie outside [0, 2^bits-1]; dequant
 * (code - zero) * scale, which is HQQ's own dequantization (W_q - z) * (1/s). */
#ifndef WQ_ALGO_HQQ_H
#define WQ_ALGO_HQQ_H

#include <stdint.h>

#include "core/core_config.h"
#include "core/core_qtypes.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the solver did (for logs and tests). */
typedef struct {
    int64_t iters_run; /* solver iterations executed (<= ap->hqq_iters) */
    int stopped_early; /* 1 when the stop rule fired (err >= best), even on the last iteration */
    double err_init;   /* mean |W - W^| with the initial parameters (NaN when hqq_iters == 0) */
    double err_best;   /* smallest mean |W - W^| the stop rule saw (1e4 when hqq_iters == 0) */
} wq_algo_hqq_stats;

/* Quantizes W[rows][cols] (f32, row-major, borrowed) with HQQ into *out, allocated here with
 * wq_qmatrix_init(out, rows, cols, effective group size, WQ_QDTYPE_INT, spec->bits); the caller
 * frees it with wq_qmatrix_free (also on error nothing is left allocated).
 *  1. rejects non-finite weights (WQ_ERR_NUMERIC; the message names `name` and the first bad
 *     element), and groups whose initial zero exceeds 1e37 in magnitude (|w| beyond ~5e32 with
 *     the 2e4 clamp, where w*s + z would approach float overflow);
 *  2. initial parameters per group (§7.3): s = min(max_v/(max-min), 2e4), z = -min*s (rounded
 *     when bits == 4);
 *  3. proximal solver (§7.4) with ap->hqq_lp_norm, hqq_beta, hqq_kappa, hqq_iters: each
 *     iteration updates every group's zero (shrinkage of the residual, group mean) and measures
 *     err = mean |W - (q - z)/s| with the previous zeros; the loop stops at the first err >= best
 *     (best starts at 1e4, INC) keeping the zeros already updated by that iteration (one step past
 *     the best, as INC and the reference do); beta *= kappa after every iteration;
 *  4. codes recomputed from W with the final s, z; scales = 1/s;
 *  5. ap->quant_zero: zeros replaced by their 8-bit per-tensor HQQ fake quantization (§7.5);
 *     ap->quant_scale: scales replaced by their 8-bit fake quantization in contiguous groups of
 *     ap->scale_quant_group_size over the flattened [rows*ngroups] vector (smaller last group;
 *     <= 0: one group). Codes are NOT recomputed after this meta quantization (as INC), so
 *     dequantization uses the original codes with the dequantized meta.
 * spec: dtype WQ_QDTYPE_INT, bits 1..8, group_size -1 or >= 1. ap must not be NULL. Scratch: 24
 * bytes per group besides the output.
 * Errors: WQ_ERR_ARG (bad spec/params/shape, message names `name`), WQ_ERR_NOMEM, WQ_ERR_NUMERIC.
 */
wq_status wq_algo_hqq_quantize(const wq_qspec *spec, const wq_algo_params *ap, const char *name,
                               const float *W, int64_t rows, int64_t cols, wq_qmatrix *out);

/* Same, also reporting the solver's statistics in *stats (may be NULL). */
wq_status wq_algo_hqq_quantize_stats(const wq_qspec *spec, const wq_algo_params *ap,
                                     const char *name, const float *W, int64_t rows, int64_t cols,
                                     wq_qmatrix *out, wq_algo_hqq_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
