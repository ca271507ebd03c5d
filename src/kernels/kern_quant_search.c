/* kern_quant_search.c: MSE clip-ratio search (numerics §1.4) and double quantization of scales
 * (numerics §3.1). Layer: kernels. */
#include <math.h>

#include "kernels/kern_quant.h"
#include "kernels/kern_vec.h"

// ---- MSE clip search ----------------------------------------------------------------------------

float wq_kern_mse_ratio(int i)
{
    WQ_KERN_ASSERT(i >= 0 && i < WQ_KERN_MSE_NRATIOS);
    return (float)(1.0 - (double)i / 200.0); /* Python `1 - i/200` then float32 when it meets W */
}

static size_t round16(size_t b)
{
    return (b + 15u) & ~(size_t)15u;
}

/* Layout: codes[gs] (uint8, padded to 16 bytes) | deq[gs] (float). */
size_t wq_kern_mse_workspace_bytes(const wq_qspec *spec, int64_t cols)
{
    int64_t gs = wq_qspec_group_size(spec, cols);
    return round16((size_t)gs) + (size_t)gs * sizeof(float);
}

enum { SSE_LANES = 4 };

/* sum (x - xh)^2 over one group into the lane accumulators acc[SSE_LANES] (fixed order). */
static void acc_sq_err(const float *restrict x, const float *restrict xh, int64_t n,
                       double *restrict acc)
{
    int64_t i = 0;
    for (; i + SSE_LANES <= n; i += SSE_LANES)
        for (int k = 0; k < SSE_LANES; k++) {
            double d = (double)x[i + k] - (double)xh[i + k];
            acc[k] += d * d;
        }
    for (int k = 0; i < n; i++, k++) {
        double d = (double)x[i] - (double)xh[i];
        acc[k] += d * d;
    }
}

/* Squared error of one row fake-quantized with quantile q. */
static double row_sse(const float *x, int64_t cols, int64_t gs, const wq_qspec *spec,
                      wq_int_scheme scheme, float q, uint8_t *codes, float *deq)
{
    double acc[SSE_LANES] = {0};
    for (int64_t off = 0; off < cols; off += gs) {
        int64_t n = cols - off < gs ? cols - off : gs;
        if (spec->dtype == WQ_QDTYPE_INT) {
            float s, z;
            wq_kern_params_int(x + off, n, spec->bits, scheme, q, &s, &z);
            wq_kern_quant_int(x + off, n, spec->bits, s, z, codes);
            wq_kern_dequant_int(codes, n, s, z, deq);
        } else {
            float s;
            wq_kern_params_f4(x + off, n, spec->dtype, q, &s);
            wq_kern_quant_f4(x + off, n, spec->dtype, s, codes);
            wq_kern_dequant_f4(codes, n, spec->dtype, s, deq);
        }
        acc_sq_err(x + off, deq, n, acc);
    }
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

void wq_kern_mse_sse(const float *W, int64_t rows, int64_t cols, const wq_qspec *spec,
                     void *workspace, wq_exact sse[WQ_KERN_MSE_NRATIOS])
{
    WQ_KERN_ASSERT(spec->dtype != WQ_QDTYPE_FP32 && cols >= 1 && workspace);
    const int64_t gs = wq_qspec_group_size(spec, cols);
    uint8_t *codes = (uint8_t *)workspace;
    float *deq = (float *)((char *)workspace + round16((size_t)gs));
    const wq_int_scheme scheme = wq_kern_int_scheme_rtn(spec);
    for (int64_t r = 0; r < rows; r++) {
        const float *x = W + r * cols;
        for (int i = 0; i < WQ_KERN_MSE_NRATIOS; i++) {
            double e = row_sse(x, cols, gs, spec, scheme, wq_kern_mse_ratio(i), codes, deq);
            wq_kern_exact_add_f64(&sse[i], &e, 1);
        }
    }
}

int wq_kern_mse_pick(const wq_exact sse[WQ_KERN_MSE_NRATIOS], int64_t count)
{
    double tot[WQ_KERN_MSE_NRATIOS];
    wq_kern_exact_to_f64(sse, tot, WQ_KERN_MSE_NRATIOS);
    int best = 0;
    double best_loss = INFINITY;
    for (int i = 0; i < WQ_KERN_MSE_NRATIOS; i++) {
        double loss = tot[i] / (double)(count > 0 ? count : 1);
        if (loss < best_loss) { /* strictly smaller: the first of equal losses wins */
            best_loss = loss;
            best = i;
        }
    }
    return best;
}

float wq_kern_mse_search(const float *W, int64_t rows, int64_t cols, const wq_qspec *spec,
                         void *workspace)
{
    wq_exact sse[WQ_KERN_MSE_NRATIOS];
    memset(sse, 0, sizeof sse);
    wq_kern_mse_sse(W, rows, cols, spec, workspace, sse);
    return wq_kern_mse_ratio(wq_kern_mse_pick(sse, rows * cols));
}

// ---- Double quantization ------------------------------------------------------------------------

void wq_kern_double_quant(float *scales, int64_t n, int dq_bits, bool dq_sym, int64_t dq_group_size)
{
    WQ_KERN_ASSERT(dq_bits >= 1 && dq_bits <= 8);
    if (n <= 0) return;
    if (dq_sym) {
        wq_kern_qdq_int(scales, n, dq_group_size, dq_bits, WQ_SCHEME_SYM);
        return;
    }
    /* "asym": centre on the mean, quantize symmetrically, shift back (INC quant_tensor). The mean
     * is summed in double in index order (deterministic; torch sums float32 in an unspecified
     * order, so the last bit of the mean may differ from INC). */
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++)
        acc += scales[i];
    const float mean = (float)(acc / (double)n);
    for (int64_t i = 0; i < n; i++)
        scales[i] -= mean;
    wq_kern_qdq_int(scales, n, dq_group_size, dq_bits, WQ_SCHEME_SYM);
    for (int64_t i = 0; i < n; i++)
        scales[i] += mean;
}
