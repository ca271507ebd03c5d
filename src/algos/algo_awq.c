/* algo_awq.c: AWQ scale/clip search pieces (numerics.md 5.4, 5.6). Layer: algos. */
#include "algos/algo_awq.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "kernels/kern_quant.h"

void wq_algo_awq_w_mean(const float *const *W, const int64_t *rows, int n, int64_t cols, int64_t gs,
                        float *w_mean)
{
    if (gs <= 0 || gs > cols) gs = cols;
    double *acc = wq_calloc((size_t)cols, sizeof(double));
    int64_t total_rows = 0;
    for (int l = 0; l < n; l++) {
        for (int64_t r = 0; r < rows[l]; r++) {
            const float *w = W[l] + r * cols;
            for (int64_t g0 = 0; g0 < cols; g0 += gs) {
                int64_t g1 = g0 + gs < cols ? g0 + gs : cols;
                float mx = 0;
                for (int64_t c = g0; c < g1; c++) mx = fabsf(w[c]) > mx ? fabsf(w[c]) : mx;
                if (mx > 0)
                    for (int64_t c = g0; c < g1; c++) acc[c] += (double)(fabsf(w[c]) / mx);
            }
        }
        total_rows += rows[l];
    }
    for (int64_t c = 0; c < cols; c++) w_mean[c] = (float)(acc[c] / (double)(total_rows ? total_rows : 1));
    wq_free(acc);
}

wq_status wq_algo_awq_scales(const float *x_mean, const float *w_mean, int64_t cols, float r,
                             float *s)
{
    float wmin = INFINITY;
    for (int64_t c = 0; c < cols; c++)
        if (w_mean[c] > 0 && w_mean[c] < wmin) wmin = w_mean[c];
    if (!isfinite(wmin)) wmin = 1.0f;
    float mx = 0, mn = INFINITY;
    for (int64_t c = 0; c < cols; c++) {
        float wm = w_mean[c] > 0 ? w_mean[c] : wmin;
        float v = powf(x_mean[c], r) / powf(wm, 1.0f - r);
        if (!(v >= 1e-4f)) v = isnan(v) ? v : 1e-4f; /* clamp(min=1e-4); NaN stays NaN */
        s[c] = v;
        if (v > mx) mx = v;
        if (v < mn) mn = v;
    }
    float norm = sqrtf(mx * mn);
    for (int64_t c = 0; c < cols; c++) {
        s[c] /= norm;
        if (!isfinite(s[c])) {
            WQ_LOG_ERROR("AWQ: non-finite scale for input channel %lld (activation mean %g)",
                         (long long)c, (double)x_mean[c]);
            return WQ_ERR_NUMERIC;
        }
    }
    return WQ_OK;
}

wq_status wq_algo_awq_fakequant(const wq_qspec *spec, float quantile, const float *W, int64_t rows,
                                int64_t cols, const float *s, float *Wq)
{
    wq_qmatrix m;
    WQ_TRY(wq_qmatrix_init(&m, rows, cols, wq_qspec_group_size(spec, cols), spec->dtype, spec->bits));
    float *Ws = Wq; /* scaled weights staged in the output buffer */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) Ws[r * cols + c] = s ? W[r * cols + c] * s[c] : W[r * cols + c];
    wq_kern_quant_matrix(Ws, spec, quantile, &m);
    if (spec->double_quant)
        wq_kern_double_quant(m.scales, rows * m.ngroups, spec->dq_bits, spec->dq_sym, spec->dq_group_size);
    wq_kern_dequant_matrix(&m, Wq);
    if (s)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) Wq[r * cols + c] /= s[c];
    wq_qmatrix_free(&m);
    return WQ_OK;
}

double wq_algo_awq_layer_loss(const float *X, int64_t T, const float *W, const float *Wq,
                              int64_t rows, int64_t cols, float *scratch)
{
    float *D = scratch, *Y = scratch + rows * cols;
    for (int64_t i = 0; i < rows * cols; i++) D[i] = W[i] - Wq[i];
    /* Y[T][rows] = X[T][cols] . D[rows][cols]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)rows, (int)cols, 1.0f, X,
                (int)cols, D, (int)cols, 0.0f, Y, (int)rows);
    double acc = 0;
    for (int64_t i = 0; i < T * rows; i++) acc += (double)Y[i] * (double)Y[i];
    return acc / (double)(T * rows);
}
