/* algo_rtn.c: RTN (numerics.md §1-3) on top of the quantization kernels. Layer: algos. */
#include "algos/algo_rtn.h"

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "kernels/kern_quant.h"

static wq_status rtn(const wq_qspec *spec, const char *name, const float *W, int64_t rows,
                     int64_t cols, int search, float quantile, wq_qmatrix *out, float *quantile_out)
{
    if (spec->dtype == WQ_QDTYPE_FP32 || rows < 1 || cols < 1) {
        WQ_LOG_ERROR("%s: RTN called on a layer that is not to be quantized", name);
        return WQ_ERR_ARG;
    }
    int64_t bad = wq_kern_find_nonfinite(W, rows * cols);
    if (bad >= 0) {
        WQ_LOG_ERROR("%s: weight [%lld, %lld] is %s; wquant does not quantize non-finite weights "
                     "(fix or exclude the layer with a local {\"dtype\": \"fp32\"} rule)",
                     name, (long long)(bad / cols), (long long)(bad % cols),
                     W[bad] != W[bad] ? "NaN" : "infinite");
        return WQ_ERR_NUMERIC;
    }
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
    wq_kern_quant_matrix(W, spec, quantile, out);
    if (spec->double_quant)
        wq_kern_double_quant(out->scales, rows * out->ngroups, spec->dq_bits, spec->dq_sym,
                             spec->dq_group_size);
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
