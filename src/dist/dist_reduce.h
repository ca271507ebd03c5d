/* dist_reduce.h: deterministic reductions of calibration statistics over ranks. Layer: dist.
 * Statistics are accumulated per rank in exact 128-bit fixed point (kernels/kern_exact.h) and summed
 * here with an integer MPI reduction, so the result is bit-identical for any number of ranks and any
 * assignment of samples to ranks. */
#ifndef WQ_DIST_REDUCE_H
#define WQ_DIST_REDUCE_H

#include <stdint.h>

#include "dist/dist.h"
#include "kernels/kern_exact.h"

#ifdef __cplusplus
extern "C" {
#endif

/* acc[0..n) summed over all ranks, result on every rank (in place). Collective. WQ_ERR_MPI. */
wq_status wq_dist_allreduce_exact(wq_dist *d, wq_exact *acc, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
