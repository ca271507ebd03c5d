/* dist_plan.c: deterministic partitioning of tensors, rows and blocks. Layer: dist (pure). */
#include "dist/dist_plan.h"

#include <stdlib.h>

#include "core/core_alloc.h"

wq_status wq_dist_plan_rows(int64_t rows_total, int size, int rank, wq_row_span *out)
{
    if (size < 1 || rank < 0 || rank >= size || rows_total < 0) return WQ_ERR_ARG;
    int64_t base = rows_total / size, extra = rows_total % size;
    out->row_begin = rank * base + (rank < extra ? rank : extra);
    out->row_count = base + (rank < extra ? 1 : 0);
    return WQ_OK;
}

typedef struct {
    int64_t cost, index;
} item;

static int cmp_item_desc(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

wq_status wq_dist_plan_items(const int64_t *cost, int64_t n, int size, int *owner, int64_t *order)
{
    if (n < 0 || size < 1) return WQ_ERR_ARG;
    if (n == 0) return WQ_OK;
    item *it = wq_malloc((size_t)n * sizeof *it);
    int64_t *load = wq_calloc((size_t)size, sizeof *load);
    if (!it || !load) {
        wq_free(it);
        wq_free(load);
        return WQ_ERR_NOMEM;
    }
    for (int64_t i = 0; i < n; i++) it[i] = (item){cost[i] < 0 ? 0 : cost[i], i};
    qsort(it, (size_t)n, sizeof *it, cmp_item_desc);
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        for (int r = 1; r < size; r++)
            if (load[r] < load[best]) best = r;
        owner[it[i].index] = best;
        load[best] += it[i].cost;
        if (order) order[i] = it[i].index;
    }
    wq_free(it);
    wq_free(load);
    return WQ_OK;
}

/* Greedy check: can the blocks be cut into <= P contiguous stages of cost <= cap? */
static int fits(const double *cost, int64_t n, int P, double cap, int64_t *first)
{
    int s = 0;
    double acc = 0;
    if (first) first[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        if (cost[i] > cap) return 0;
        if (acc + cost[i] > cap) {
            if (++s >= P) return 0;
            if (first) first[s] = i;
            acc = 0;
        }
        acc += cost[i];
    }
    if (first)
        for (int k = s + 1; k <= P; k++) first[k] = n;
    return 1;
}

wq_status wq_dist_plan_stages(const double *cost, int64_t n, int P, int64_t *first)
{
    if (P < 1 || n < 0) return WQ_ERR_ARG;
    double lo = 0, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        hi += cost[i];
        if (cost[i] > lo) lo = cost[i];
    }
    if (n == 0 || hi <= 0) {
        /* no cost information: equal block counts */
        for (int s = 0; s <= P; s++) first[s] = (int64_t)((double)n * s / P);
        return WQ_OK;
    }
    for (int iter = 0; iter < 100 && hi - lo > 1e-12 * hi; iter++) {
        double mid = 0.5 * (lo + hi);
        if (fits(cost, n, P, mid, NULL))
            hi = mid;
        else
            lo = mid;
    }
    fits(cost, n, P, hi, first);
    /* Spread trailing empty stages: move cuts so that every stage has >= 1 block when P <= n
     * (a stage with no block wastes its ranks). Greedy filling left empty stages at the end. */
    for (int s = P - 1; s >= 1; s--) {
        int64_t need = P - s; /* stages s..P-1 need at least this many blocks */
        if (n - first[s] < need && n >= P) first[s] = n - need;
        if (first[s] <= first[s - 1] && n >= P) first[s - 1] = first[s] - 1;
    }
    return WQ_OK;
}
