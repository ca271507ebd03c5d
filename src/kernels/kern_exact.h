/* kern_exact.h: order-independent (exact) accumulation of doubles in 128-bit fixed point.
 * Layer: kernels.
 *
 * Why: wquant must produce bit-identical results for any number of ranks. Floating-point sums depend
 * on the order of the terms, so statistics reduced over ranks (Hessians, gradients, activation means)
 * are accumulated instead as integers on a fixed grid: value v is represented as round(v * 2^64) in a
 * signed 128-bit integer. Integer addition is associative, so any split of the terms over ranks and
 * any reduction order give the same bits. Range |v| < 2^62 (after summation), resolution 2^-64
 * (5.4e-20): ample for Hessians and gradients in fp32 models. Terms outside the range saturate and
 * set an overflow flag the caller checks. */
#ifndef WQ_KERN_EXACT_H
#define WQ_KERN_EXACT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One accumulator cell: two's-complement 128-bit integer as (lo, hi) words, so it can travel through
 * MPI as two uint64 and be summed with carry. */
typedef struct {
    uint64_t lo;
    int64_t hi;
} wq_exact;

/* acc[i] += round(x[i] * 2^64) for i < n. Returns the number of terms that were out of range
 * (|x| >= 2^62 or non-finite); those are not added. */
int64_t wq_kern_exact_add_f64(wq_exact *acc, const double *x, int64_t n);
int64_t wq_kern_exact_add_f32(wq_exact *acc, const float *x, int64_t n);
/* a[i] += b[i] (wrapping 128-bit add). */
void wq_kern_exact_merge(wq_exact *a, const wq_exact *b, int64_t n);
/* out[i] = acc[i] / 2^64 rounded to nearest double. */
void wq_kern_exact_to_f64(const wq_exact *acc, double *out, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
