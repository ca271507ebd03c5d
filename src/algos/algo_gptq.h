/* algo_gptq.h: the GPTQ layer solver (Frantar et al. 2022, "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers", arXiv:2210.17323) as INC runs it
 * (numerics.md 4), with the corrections wquant makes where INC is wrong. Layer: algos (no MPI, no
 * HDF5).
 *
 * Split into two phases so the rows of W can be distributed over ranks:
 *   1. wq_algo_gptq_prepare (every rank, same H, same result): dead columns, column order
 *      (act_order / hybrid_order), group segmentation, damping with retry, and the upper Cholesky
 *      factor of H^-1.
 *   2. wq_algo_gptq_solve_rows (any row range, tile aligned): the lazy-batch GPTQ loop on those
 *      rows.
 * Rows are independent given H, and rows are processed in fixed tiles of wq_algo_gptq_row_tile()
 * rows whose BLAS calls have shapes independent of the rank split, so any tile-aligned split gives
 * bit-identical codes, scales and Q (same BLAS build and thread count on every rank assumed).
 *
 * Output conventions (core_qtypes.h wq_qmatrix): unsigned codes with float zeros (int; sym stored
 * with zero 2^(bits-1)), scales/zeros [rows][ngroups] in ORIGINAL group order, and for act_order
 * (without static_groups) g_idx[c] = group of original column c (HF convention inv_perm[c] /
 * group_size). For hybrid_order and static_groups every column keeps its original group, g_idx
 * would be c / group_size and is not allocated. dequant(qmatrix) == Q bit for bit (codes are
 * recorded while quantizing, never re-derived from Q). With fp8_aware the dequantization is the DPQ
 * one, see wq_algo_gptq_dequant.
 *
 * Decisions where wquant differs from INC (numerics.md 4.3, 13):
 *  - Group parameters at a group boundary are computed, by default, like the reference and INC:
 *    from W as updated at the last block boundary. With wq_algo_params.fresh_group_params they are
 *    computed from the FULLY updated weights (all error feedback of the preceding columns applied),
 *    so block_size becomes a pure performance knob (the result equals the unblocked GPTQ up to
 *    rounding). Measured on stories260K (3 calibration seeds, TinyStories ppl): block-boundary
 *    int3 g32 act_order 6.86 vs fresh 6.98; int2 97.9 vs 128.6; int4 equal within noise — so the
 *    reference behaviour is the default.
 *  - hybrid_order keeps a ragged tail group (INC drops it, producing a matrix with fewer columns).
 *  - The inverse Hessian factor is computed as U = L1^-1 where Hd = L1 L1^T, L1 upper: one Cholesky
 *    of the reversed matrix in double (dpotrf: the positive-definiteness decision) and one
 *    triangular inverse in float (strtri; U is consumed in float anyway and the inversion adds
 *    ~2e-7..1e-6 relative error on LLM-like Hessians) instead of INC's float32 chol ->
 *    cholesky_inverse -> chol(upper): the same matrix in exact arithmetic, 2/3 n^3 instead of 4/3
 *    n^3 flops, and only one factorisation that can fail. H is first scaled by a power of two
 *    (exact; GPTQ is invariant to the scale of H) so the float factor cannot under- or overflow.
 *  - Not positive definite after damping: retried with damping x10 (up to WQ_GPTQ_MAX_RETRIES
 *    times, warning each time) before WQ_ERR_NUMERIC; INC raises at once.
 *  - group_size -1: the single group's parameters come from W after dead columns were zeroed (INC:
 *    before; reproduced under inc_parity).
 *  - fp8_aware: group parameters come from the updated weights mapped into the FP8 domain (INC:
 *    from the initial W_8, never updated; reproduced under inc_parity); static groups are also
 *    computed in the FP8 domain (INC computes them from the unscaled weights and applies them to
 *    scaled ones).
 *  - A zero scale (double quantization can round a tiny scale to 0) gives finite codes (kern_quant:
 *    NaN quotient -> code 0, +-inf -> clamp) that dequantize to 0, never NaN (INC: NaN codes).
 *  - int bits 1 with sym: kern_quant's 1-bit rule (sign trick, codes {0, 1} -> {0, +-amax}); the
 *    GPTQ formula would round every weight to 0. The MSE grid is skipped for that case.
 *  - spec->full_range is ignored (INC's GPTQ quantizer has none); spec->sym selects the GPTQ
 *    symmetric scheme 2*amax/(2^b-1) with zero 2^(b-1) (numerics.md 4.4 [DIFF]).
 * Option combinations: act_order + hybrid_order -> WQ_ERR_ARG. act_order + static_groups: valid
 * (static parameters per original group, computed before the permutation). hybrid_order +
 * static_groups: valid (GAR never mixes groups, so each group simply uses its precomputed
 * parameters). static_groups with a single group (group_size -1 or >= cols) is the same as
 * dynamic. */
#ifndef WQ_ALGO_GPTQ_H
#define WQ_ALGO_GPTQ_H

#include <stdint.h>

#include "core/core_config.h"
#include "core/core_qtypes.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Row tile of solve_rows when no double quantization couples rows. Part of the determinism contract
 * (BLAS shapes); 128 rows keep the lazy-batch GEMM near sgemm peak (64: -15%) while still allowing
 * 32 ranks on a 4096-row layer. */
#define WQ_GPTQ_ROW_TILE 128
/* Column sub-block inside a lazy batch (level-2 work is confined to sub-blocks of this width). */
#define WQ_GPTQ_SUB_BLOCK 32
/* Damping retries (x10 each) when the damped Hessian is not positive definite. */
#define WQ_GPTQ_MAX_RETRIES 4

typedef struct wq_gptq_ctx wq_gptq_ctx;

/* Rows per tile for a layer with `rows_total` output rows: WQ_GPTQ_ROW_TILE, or the first multiple
 * of the double-quant group size >= it (int and nf4/fp4 sym double quant group the scales over
 * output rows, numerics.md 3.2), or rows_total when the double quantization couples all rows
 * (dq_group_size -1, or nf4/fp4 with asym double quant, which subtracts the mean over all rows).
 * Rank row spans must start at a multiple of the tile and cover whole tiles except at the end of
 * the matrix. Not collective; pure. */
int64_t wq_algo_gptq_row_tile(const wq_qspec *spec, int64_t rows_total);

/* Phase 1. H: [cols][cols] row-major full symmetric fp64 Hessian (e.g. wq_kern_hessian_finalize);
 * it is used as workspace and its contents are UNDEFINED on return (saves a cols^2 copy: 0.97 GB at
 * cols = 11008); the caller frees it. spec: the layer's resolved spec (dtype int/nf4/fp4). ap:
 * percdamp, block_size, act_order, hybrid_order, static_groups, fp8_aware, inc_parity are used.
 * layer: name used in log messages (may be NULL). Not collective: call it on every rank with the
 * same H to obtain the same context (deterministic). On success *out owns about 4*cols^2 bytes;
 * free with wq_algo_gptq_destroy.
 * Errors: WQ_ERR_ARG (block_size <= 0, percdamp < 0, act_order with hybrid_order, bad spec),
 * WQ_ERR_UNSUPPORTED (dtype fp32, group_dim 0), WQ_ERR_NUMERIC (non-finite entry in H, not positive
 * definite after WQ_GPTQ_MAX_RETRIES damping increases; the message names the layer), WQ_ERR_NOMEM.
 * Only the upper triangle of H is read (mirrored internally). Dead columns: diag(H) == 0 -> the
 * weight column is zeroed and H[d][d] = 1 (numerics 4.3 step 2). Damping: damp = percdamp *
 * mean(diag) after the dead fix; retry k (1..WQ_GPTQ_MAX_RETRIES) uses percdamp * 10^k (or 10^(k-3)
 * when percdamp == 0), with a warning naming the layer. */
wq_status wq_algo_gptq_prepare(double *H, int64_t cols, const wq_qspec *spec,
                               const wq_algo_params *ap, const char *layer, wq_gptq_ctx **out);
void wq_algo_gptq_destroy(wq_gptq_ctx *ctx); /* accepts NULL */

/* Diagnostics of a prepared context. */
int64_t wq_algo_gptq_cols(const wq_gptq_ctx *ctx);
int64_t wq_algo_gptq_group_size(const wq_gptq_ctx *ctx); /* effective (cols for -1) */
int64_t wq_algo_gptq_ngroups(const wq_gptq_ctx *ctx);
double wq_algo_gptq_damp(const wq_gptq_ctx *ctx); /* absolute damping finally added to diag(H) */
int wq_algo_gptq_retries(const wq_gptq_ctx *ctx); /* 0 .. WQ_GPTQ_MAX_RETRIES */
int64_t wq_algo_gptq_dead_cols(const wq_gptq_ctx *ctx);
/* Column order: perm[p] = original column quantized at position p; NULL when the order is
 * natural. */
const int32_t *wq_algo_gptq_perm(const wq_gptq_ctx *ctx);

/* Allocates `m` for `rows` rows of this layer: codes/scales (+zeros for int) and g_idx when the
 * layer needs one (act_order without static_groups). Free with wq_qmatrix_free. WQ_ERR_NOMEM. */
wq_status wq_algo_gptq_qmatrix_init(const wq_gptq_ctx *ctx, int64_t rows, wq_qmatrix *m);

/* fp8_aware (DPQ, numerics.md 4.6): the per-tensor scale needs max |W| over ALL rows (dead columns
 * zeroed). absmax_rows returns this rank's part (W = its rows [nr][cols]); combine ranks with a MAX
 * reduction (exact), then fp8_scale gives s8 = bf16(2^ceil(log2(max(absmax / R, 1 / (R * 512)))))
 * with R = 240 - 240 / (2^bits - 1). The caller stores s8 in the container (INC:
 * scale_bf16_to_fp8). */
float wq_algo_gptq_absmax_rows(const wq_gptq_ctx *ctx, const float *W, int64_t nr);
float wq_algo_gptq_fp8_scale(const wq_gptq_ctx *ctx, float absmax);

/* Phase 2: GPTQ on rows [r0, r0 + nr) of a rows_total x cols layer.
 * W: those rows, [nr][cols] row-major f32 (not modified). s8: the fp8 scale when ap.fp8_aware (>
 * 0), ignored otherwise. out: a qmatrix of nr rows (wq_algo_gptq_qmatrix_init, or a row view into a
 * larger one with the same group layout); codes, scales, zeros and g_idx (if non-NULL) are filled.
 * Q: [nr][cols] dequantized weights (== dequant(out)), may be NULL. row_loss: [nr] or NULL,
 * receives sum_c err_c^2 = (w - q) Hd (w - q)^T per row (Hd = damped, dead-fixed H; the GPTQ
 * objective, equal to INC's reported error times 2). r0 must be a multiple of
 * wq_algo_gptq_row_tile(spec, rows_total), nr a multiple of it unless r0 + nr == rows_total (nr ==
 * 0 is accepted anywhere: ranks without rows). Not collective; ctx is read-only (several threads
 * may solve disjoint rows with one ctx, but BLAS threading then multiplies). Scratch: about 9 *
 * cols * tile bytes plus a parameter segment. Errors: WQ_ERR_ARG (misaligned span, mismatched out),
 * WQ_ERR_NUMERIC (non-finite W or result; message names the layer and row), WQ_ERR_NOMEM. */
wq_status wq_algo_gptq_solve_rows(const wq_gptq_ctx *ctx, const float *W, int64_t r0, int64_t nr,
                                  int64_t rows_total, float s8, wq_qmatrix *out, float *Q,
                                  double *row_loss);

/* One-shot convenience: prepare + (absmax, s8) + solve all rows. H is consumed as in prepare.
 * out is initialised here (free with wq_qmatrix_free). s8_out (may be NULL) receives s8 when
 * fp8_aware, else 0. loss (may be NULL) receives the summed row_loss. */
wq_status wq_algo_gptq_quantize(const float *W, int64_t rows, int64_t cols, double *H,
                                const wq_qspec *spec, const wq_algo_params *ap, const char *layer,
                                wq_qmatrix *out, float *Q, float *s8_out, double *loss);

/* Dequantizes a GPTQ qmatrix: W[o][c] = (codes - zero) * scale (int) or table(code) * scale
 * (nf4/fp4), group g = g_idx[c] if set, else c / group_size. With s8 > 0 (fp8_aware layers) the DPQ
 * reconstruction W = s8 * fp8_e4m3(clamp(that, -R, R)) is applied, R as in fp8_scale. Equals the Q
 * of solve_rows bit for bit. */
void wq_algo_gptq_dequant(const wq_qmatrix *m, float s8, float *W);

#ifdef __cplusplus
}
#endif
#endif
