/* dist_plan.h: how work is split across ranks: whole tensors (RTN/HQQ), rows of a matrix (GPTQ),
 * contiguous block ranges (pipeline stages). Layer: dist. Pure arithmetic, no MPI: unit-testable
 * serially. Every function is deterministic, so rank 0's plan equals what any rank would compute. */
#ifndef WQ_DIST_PLAN_H
#define WQ_DIST_PLAN_H

#include <stdint.h>

#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows [row_begin, row_begin + row_count) belong to one rank. row_count may be 0. */
typedef struct {
    int64_t row_begin;
    int64_t row_count;
} wq_row_span;

/* Balanced contiguous split; spans are rank-ordered and differ by at most one row.
 * WQ_ERR_ARG if size < 1, rank outside [0, size) or rows_total < 0. */
wq_status wq_dist_plan_rows(int64_t rows_total, int size, int rank, wq_row_span *out);

/* Assigns n items of the given costs (>= 0) to `size` ranks, longest-processing-time first: items
 * in decreasing cost (ties: lower index first) go to the least-loaded rank (ties: lower rank).
 * owner[n] receives the rank of each item. The makespan is at most 4/3 of the optimum + max item.
 * order[n] (may be NULL) receives the item indices in that decreasing-cost order: a rank that works
 * through its items in this order does its k-th largest item in round k, so ranks that meet after
 * each item wait for one of similar cost rather than for the largest item of the round.
 * WQ_ERR_ARG on bad sizes, WQ_ERR_NOMEM. */
wq_status wq_dist_plan_items(const int64_t *cost, int64_t n, int size, int *owner, int64_t *order);

/* Splits n blocks with costs into P contiguous stages minimising the most expensive stage
 * (exact, by binary search over the bottleneck). first[P+1]: stage s owns blocks
 * [first[s], first[s+1]); a stage may be empty only when P > n. WQ_ERR_ARG if P < 1 or n < 0. */
wq_status wq_dist_plan_stages(const double *cost, int64_t n, int P, int64_t *first);

#ifdef __cplusplus
}
#endif
#endif
