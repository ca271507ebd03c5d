/* kern_hessian.c: exact accumulation of the GPTQ Hessian X^T X (see kern_hessian.h). Layer:
 * kernels.
 *
 * One chunk X[tokens][in] is processed in row panels of the upper triangle:
 *     P[i - p0][j - p0] = sum_t X[t][i] X[t][j]     i in [p0, p1), j in [p0, in)      (one xGEMM)
 * then row i's part j >= i is rounded into the fixed-point accumulator. The few products below the
 * diagonal of the panel's leading square are computed and dropped (waste <= WQ_HESS_PANEL / in). */
#include "kernels/kern_hessian.h"

#include <assert.h>
#include <cblas.h>

size_t wq_kern_hessian_scratch_bytes(int64_t tokens, int64_t in, wq_hess_prec prec)
{
    int64_t panel = (in < WQ_HESS_PANEL ? in : WQ_HESS_PANEL) * in;
    if (prec == WQ_HESS_F32) return (size_t)panel * sizeof(float);
    return (size_t)(tokens * in + panel) * sizeof(double);
}

int64_t wq_kern_hessian_add_chunk(wq_exact *restrict acc, const float *restrict X, int64_t tokens,
                                  int64_t in, wq_hess_prec prec, void *restrict scratch)
{
    assert(acc && scratch && in >= 1 && tokens >= 0);
    if (tokens == 0) return 0;
    int64_t bad = 0;
    if (prec == WQ_HESS_F32) {
        float *panel = (float *)scratch; /* [p1 - p0][in - p0] */
        for (int64_t p0 = 0; p0 < in; p0 += WQ_HESS_PANEL) {
            int64_t p1 = p0 + WQ_HESS_PANEL < in ? p0 + WQ_HESS_PANEL : in;
            int64_t m = p1 - p0, n = in - p0;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)n, (int)tokens, 1.0f,
                        X + p0, (int)in, X + p0, (int)in, 0.0f, panel, (int)n);
            for (int64_t i = p0; i < p1; i++)
                bad += wq_kern_exact_add_f32(acc + wq_kern_hessian_packed_index(in, i, i),
                                             panel + (i - p0) * n + (i - p0), in - i);
        }
        return bad;
    }
    double *Xd = (double *)scratch;             /* [tokens][in] */
    double *panel = Xd + (size_t)(tokens * in); /* [p1 - p0][in - p0] */
    for (int64_t k = 0; k < tokens * in; k++)
        Xd[k] = (double)X[k];
    for (int64_t p0 = 0; p0 < in; p0 += WQ_HESS_PANEL) {
        int64_t p1 = p0 + WQ_HESS_PANEL < in ? p0 + WQ_HESS_PANEL : in;
        int64_t m = p1 - p0, n = in - p0;
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)n, (int)tokens, 1.0,
                    Xd + p0, (int)in, Xd + p0, (int)in, 0.0, panel, (int)n);
        for (int64_t i = p0; i < p1; i++)
            bad += wq_kern_exact_add_f64(acc + wq_kern_hessian_packed_index(in, i, i),
                                         panel + (i - p0) * n + (i - p0), in - i);
    }
    return bad;
}

int64_t wq_kern_hessian_add_chunk_ref(wq_exact *restrict acc, const float *restrict X,
                                      int64_t tokens, int64_t in)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < in; i++) {
        for (int64_t j = i; j < in; j++) {
            double s = 0.0;
            for (int64_t t = 0; t < tokens; t++)
                s += (double)X[t * in + i] * (double)X[t * in + j];
            bad += wq_kern_exact_add_f64(acc + wq_kern_hessian_packed_index(in, i, j), &s, 1);
        }
    }
    return bad;
}

void wq_kern_hessian_finalize(const wq_exact *restrict acc, int64_t in, int64_t nseq,
                              double *restrict H)
{
    assert(acc && H && in >= 1 && nseq >= 1);
    const double n = (double)nseq;
    for (int64_t i = 0; i < in; i++) {
        double *row = H + i * in;
        /* decode row i of the triangle (j >= i), then scale: 2*v is exact, so (2v)/n is the only
         * rounding after the decode */
        wq_kern_exact_to_f64(acc + wq_kern_hessian_packed_index(in, i, i), row + i, in - i);
        for (int64_t j = i; j < in; j++)
            row[j] = (2.0 * row[j]) / n;
        for (int64_t j = i + 1; j < in; j++)
            H[j * in + i] = row[j];
    }
}
