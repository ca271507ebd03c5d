/* algo_rtn.c: RTN (numerics.md §1-3) on top of the quantization kernels. Layer: algos. */
#include "algos/algo_rtn.h"

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "kernels/kern_quant.h"

/* Step 1: WQ_ERR_NUMERIC naming the first non-finite weight of rows [row0, row0 + nrows). */
static wq_status check_finite(const char *name, const float *W, int64_t row0, int64_t nrows,
                              int64_t cols)
{
    int64_t bad = wq_kern_find_nonfinite(W, nrows * cols);
    if (bad < 0) return WQ_OK;
    WQ_LOG_ERROR("%s: weight [%lld, %lld] is %s; wquant does not quantize non-finite weights "
                 "(fix or exclude the layer with a local {\"dtype\": \"fp32\"} rule)",
                 name, (long long)(row0 + bad / cols), (long long)(bad % cols),
                 W[bad] != W[bad] ? "NaN" : "infinite");
    return WQ_ERR_NUMERIC;
}

/* Step 3 on rows [row0, row0 + nrows) of out (W holds just those rows). */
static void quant_rows(const wq_qspec *spec, const float *W, int64_t row0, int64_t nrows,
                       float quantile, wq_qmatrix *out)
{
    wq_qmatrix v = *out; /* a view of the rows: quantization is row by row */
    v.rows = nrows;
    v.codes += row0 * out->cols;
    v.scales += row0 * out->ngroups;
    if (v.zeros) v.zeros += row0 * out->ngroups;
    wq_kern_quant_matrix(W, spec, quantile, &v);
}

static wq_status rtn(const wq_qspec *spec, const char *name, const float *W, int64_t rows,
                     int64_t cols, int search, float quantile, wq_qmatrix *out, float *quantile_out)
{
    if (spec->dtype == WQ_QDTYPE_FP32 || rows < 1 || cols < 1) {
        WQ_LOG_ERROR("%s: RTN called on a layer that is not to be quantized", name);
        return WQ_ERR_ARG;
    }
    WQ_TRY(check_finite(name, W, 0, rows, cols));
    int64_t gs = wq_qspec_group_size(spec, cols);
    WQ_TRY(wq_qmatrix_init(out, rows, cols, gs, spec->dtype, spec->bits));
    if (search && spec->mse_search) {
        void *ws = wq_malloc(wq_kern_mse_workspace_bytes(spec, cols));
        if (!ws) {
            wq_qmatrix_free(out);
            return WQ_ERR_NOMEM;
        }
        quantile = wq_kern_mse_search(W, rows, cols, spec, ws);
        wq_free(ws);
    }
    quant_rows(spec, W, 0, rows, quantile, out);
    wq_algo_rtn_finish(spec, out);
    if (quantile_out) *quantile_out = quantile;
    return WQ_OK;
}

wq_status wq_algo_rtn_quantize(const wq_qspec *spec, const char *name, const float *W, int64_t rows,
                               int64_t cols, wq_qmatrix *out, float *quantile_out)
{
    return rtn(spec, name, W, rows, cols, 1, 1.0f, out, quantile_out);
}

wq_status wq_algo_rtn_quantize_quantile(const wq_qspec *spec, const char *name, const float *W,
                                        int64_t rows, int64_t cols, float quantile, wq_qmatrix *out)
{
    return rtn(spec, name, W, rows, cols, 0, quantile, out, NULL);
}

wq_status wq_algo_rtn_quantize_rows(const wq_qspec *spec, const char *name, const float *W,
                                    int64_t row0, int64_t nrows, wq_qmatrix *out)
{
    if (spec->dtype == WQ_QDTYPE_FP32 || spec->mse_search || !out->codes || !out->scales ||
        spec->dtype != out->dtype || row0 < 0 || nrows < 1 || nrows > out->rows - row0 ||
        out->group_size != wq_qspec_group_size(spec, out->cols)) {
        WQ_LOG_ERROR("%s: RTN rows [%lld, +%lld) do not fit the layer's %lld x %lld matrix or its "
                     "spec (use_mse_search needs the whole layer)",
                     name, (long long)row0, (long long)nrows, (long long)out->rows,
                     (long long)out->cols);
        return WQ_ERR_ARG;
    }
    WQ_TRY(check_finite(name, W, row0, nrows, out->cols));
    quant_rows(spec, W, row0, nrows, 1.0f, out);
    return WQ_OK;
}

void wq_algo_rtn_finish(const wq_qspec *spec, wq_qmatrix *out)
{
    if (spec->double_quant)
        wq_kern_double_quant(out->scales, out->rows * out->ngroups, spec->dq_bits, spec->dq_sym,
                             spec->dq_group_size);
}
