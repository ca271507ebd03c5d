/* kern_hessian.h: the GPTQ Hessian H = (2/n) * sum over calibration tokens of x x^T (numerics.md
 * 4.2), accumulated exactly so that the result does not depend on how the token chunks are spread
 * over ranks. Layer: kernels (pure numerics: no allocation, no logging, no MPI).
 *
 * Storage: the accumulator holds only the UPPER triangle of the in x in matrix, packed row by row:
 *     acc[wq_kern_hessian_packed_index(in, i, j)] = sum x_i x_j     for 0 <= i <= j < in
 * i.e. row i contributes its in - i entries j = i .. in-1. That halves memory and reduction traffic
 * (in = 11008: 0.97 GB of wq_exact instead of 1.94 GB). The array is a plain wq_exact vector of
 * wq_kern_hessian_packed_len(in) cells: ranks reduce it element-wise (wq_kern_exact_merge / the
 * dist layer's exact allreduce) and any split of the chunks over ranks gives the same bits.
 *
 * Determinism contract: each chunk's product X^T X is computed by BLAS with shapes that depend only
 * on (tokens, in), then rounded onto the 2^-64 fixed-point grid and added with integer arithmetic.
 * So H is bit-identical for any assignment of chunks to ranks and any reduction order, provided
 * that (1) the chunking of the calibration tokens is fixed independently of the rank count (e.g.
 * one chunk = one sequence) and (2) every rank uses the same BLAS build and thread count. */
#ifndef WQ_KERN_HESSIAN_H
#define WQ_KERN_HESSIAN_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kern_exact.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Precision of one chunk's product before it is rounded into the exact accumulator.
 * F64: X is widened to double (every product x_i x_j is then exact) and multiplied with dgemm; the
 *      chunk sum carries one double rounding per token (relative error ~1e-16 * sqrt(tokens)).
 * F32: sgemm in float (about twice as fast; relative error ~1e-7 * sqrt(tokens)); still far more
 *      accurate than INC, which accumulates the whole H in float32 with a running rescale. */
typedef enum { WQ_HESS_F64 = 0, WQ_HESS_F32 = 1 } wq_hess_prec;

/* Row panel of the blocked product (a constant: part of the determinism contract). */
#define WQ_HESS_PANEL 256

/* Number of cells of the packed upper triangle: in * (in + 1) / 2. */
static inline int64_t wq_kern_hessian_packed_len(int64_t in)
{
    return in * (in + 1) / 2;
}
/* Cell of element (i, j), i <= j, in the packed upper triangle. */
static inline int64_t wq_kern_hessian_packed_index(int64_t in, int64_t i, int64_t j)
{
    return i * in - i * (i - 1) / 2 + (j - i);
}

/* Scratch bytes wq_kern_hessian_add_chunk needs for a chunk of `tokens` rows of width `in`
 * (F64: tokens*in doubles for the widened X + a WQ_HESS_PANEL x in double panel;
 *  F32: a WQ_HESS_PANEL x in float panel). */
size_t wq_kern_hessian_scratch_bytes(int64_t tokens, int64_t in, wq_hess_prec prec);

/* acc (packed upper, [packed_len(in)]) += upper triangle of X^T X, X = [tokens][in] row-major f32.
 * scratch: caller-owned, >= wq_kern_hessian_scratch_bytes(tokens, in, prec), 64-byte aligned is
 * best. Returns the number of products that could not be added (non-finite or |v| >= 2^62, see
 * kern_exact.h); the caller must treat a non-zero count as WQ_ERR_NUMERIC. tokens == 0 is a no-op.
 * BLAS is called with OpenBLAS's own threading; the kernel itself is not thread-safe on one acc. */
int64_t wq_kern_hessian_add_chunk(wq_exact *restrict acc, const float *restrict X, int64_t tokens,
                                  int64_t in, wq_hess_prec prec, void *restrict scratch);

/* Scalar reference of add_chunk (plain loops in double): acc += X^T X (upper triangle).
 * Used by tests; agrees with the F64 path up to the order of the token sum inside one chunk. */
int64_t wq_kern_hessian_add_chunk_ref(wq_exact *restrict acc, const float *restrict X,
                                      int64_t tokens, int64_t in);

/* H[in][in] (full symmetric, row-major, double) = (2 / nseq) * acc. nseq = total number of
 * calibration SEQUENCES summed into acc over all ranks (numerics.md 4.2: n counts sequences, not
 * tokens); the scale only affects rounding, GPTQ being invariant to a global scale of H. nseq >=
 * 1. */
void wq_kern_hessian_finalize(const wq_exact *restrict acc, int64_t in, int64_t nseq,
                              double *restrict H);

#ifdef __cplusplus
}
#endif
#endif
