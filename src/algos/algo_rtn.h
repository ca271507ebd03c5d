/* algo_rtn.h: round-to-nearest quantization of one weight matrix (numerics.md §1-3).
 * Layer: algos (no MPI, no HDF5). */
#ifndef WQ_ALGO_RTN_H
#define WQ_ALGO_RTN_H

#include <stdint.h>

#include "core/core_qtypes.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Quantizes W[rows][cols] (f32) with spec into *out (allocated here; free with wq_qmatrix_free):
 *  1. rejects non-finite weights: WQ_ERR_NUMERIC, message names `name` and the first bad element
 *     (documented rule: wquant never quantizes NaN/Inf silently);
 *  2. with use_mse_search, picks the layer's clip ratio (40-point grid, weight MSE, §1.4);
 *  3. per-group int/nf4/fp4 quantization (§1.2, §2.2) with the ratio as quantile;
 *  4. with use_double_quant, quantizes the scales (§3.1; also for ragged last groups, unlike INC).
 * *quantile_out (may be NULL) receives the ratio used. WQ_ERR_ARG, WQ_ERR_NOMEM, WQ_ERR_NUMERIC. */
wq_status wq_algo_rtn_quantize(const wq_qspec *spec, const char *name, const float *W, int64_t rows,
                               int64_t cols, wq_qmatrix *out, float *quantile_out);

/* Same with a given clip ratio (no MSE search): steps 1, 3 and 4 above. Used by AWQ, whose clip
 * search chooses the ratio on calibration data. */
wq_status wq_algo_rtn_quantize_quantile(const wq_qspec *spec, const char *name, const float *W,
                                        int64_t rows, int64_t cols, float quantile, wq_qmatrix *out);

/* Elements per chunk when a caller streams a layer through wq_algo_rtn_quantize_rows (256 KiB of
 * f32: the chunk stays in L2 from conversion to codes). `wquant quantize` and the planner's memory
 * model use it. */
#define WQ_RTN_STREAM_ELEMS ((int64_t)1 << 16)

/* Rows of a cols-wide layer per streamed chunk (at least 1). */
static inline int64_t wq_algo_rtn_stream_rows(int64_t cols)
{
    return WQ_RTN_STREAM_ELEMS / cols > 1 ? WQ_RTN_STREAM_ELEMS / cols : 1;
}

/* Streaming form of wq_algo_rtn_quantize for a layer without use_mse_search (whose clip ratio needs
 * the whole layer), so a layer never has to be in memory as f32 at once: `out` is set up by the
 * caller (wq_qmatrix_init with wq_qspec_group_size(spec, cols)); each call quantizes rows
 * [row0, row0 + nrows), given as W[nrows][cols] (steps 1 and 3; a non-finite weight is named by its
 * row in the layer); after the last rows, wq_algo_rtn_finish applies step 4. The result is
 * byte-identical to wq_algo_rtn_quantize. WQ_ERR_ARG (rows outside the matrix, spec mismatch),
 * WQ_ERR_NUMERIC. */
wq_status wq_algo_rtn_quantize_rows(const wq_qspec *spec, const char *name, const float *W,
                                    int64_t row0, int64_t nrows, wq_qmatrix *out);
void wq_algo_rtn_finish(const wq_qspec *spec, wq_qmatrix *out);

#ifdef __cplusplus
}
#endif
#endif
