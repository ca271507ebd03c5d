/* test_dist_reduce_mpi.c: the exact reduction gives bit-identical sums whatever the number of ranks
 * and whichever rank holds which terms (run at np = 1..4). */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/core_alloc.h"
#include "dist/dist.h"
#include "dist/dist_plan.h"
#include "dist/dist_reduce.h"
#include "wq_testutil.h"

static wq_dist *g_dist;

enum { N_TERMS = 97, LEN = 64 * 64 };

/* Term t: a random 64x64 matrix scaled over many orders of magnitude. */
static void term(int t, double *x)
{
    wq_test_rng r = {WQ_TEST_SEED + (uint64_t)t};
    double mag = pow(10.0, (double)(t % 13) - 6.0);
    for (int i = 0; i < LEN; i++) x[i] = mag * (2.0 * wq_test_uniform01(&r) - 1.0);
}

/* FNV-1a over the result bits: the same for every np (checked by the script that runs all np). */
static uint64_t fnv(const double *x, int64_t n)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p = (const unsigned char *)x;
    for (int64_t i = 0; i < n * 8; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void exact_reduce_should_match_serial_sum_bitwise(void **state)
{
    (void)state;
    int rank = wq_dist_rank(g_dist), size = wq_dist_size(g_dist);
    wq_exact *acc = wq_calloc(LEN, sizeof *acc), *ref = wq_calloc(LEN, sizeof *ref);
    double *x = wq_malloc(LEN * sizeof *x), *got = wq_malloc(LEN * sizeof *got),
           *want = wq_malloc(LEN * sizeof *want), *naive = wq_calloc(LEN, sizeof *naive),
           *absum = wq_calloc(LEN, sizeof *absum);
    /* this rank's terms: a contiguous span, in reverse order to vary the local order too */
    wq_row_span sp;
    wq_dist_plan_rows(N_TERMS, size, rank, &sp);
    int64_t bad = 0;
    for (int64_t t = sp.row_begin + sp.row_count - 1; t >= sp.row_begin; t--) {
        term((int)t, x);
        bad += wq_kern_exact_add_f64(acc, x, LEN);
    }
    wq_status st = wq_dist_allreduce_exact(g_dist, acc, LEN);
    /* serial reference on every rank: all terms in forward order */
    for (int t = 0; t < N_TERMS; t++) {
        term(t, x);
        wq_kern_exact_add_f64(ref, x, LEN);
        for (int i = 0; i < LEN; i++) naive[i] += x[i], absum[i] += fabs(x[i]);
    }
    wq_kern_exact_to_f64(acc, got, LEN);
    wq_kern_exact_to_f64(ref, want, LEN);
    uint64_t h = fnv(got, LEN), h0 = h;
    MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    assert_int_equal(st, WQ_OK);
    assert_int_equal(bad, 0);
    assert_memory_equal(got, want, LEN * sizeof(double));
    assert_true(h == h0);
    /* and it agrees with the naive sum within the naive sum's own rounding error bound */
    for (int i = 0; i < LEN; i++) assert_true(fabs(got[i] - naive[i]) <= N_TERMS * 0x1p-52 * absum[i]);
    if (rank == 0) printf("exact-sum hash %016llx\n", (unsigned long long)h);
    wq_free(acc), wq_free(ref), wq_free(x), wq_free(got), wq_free(want), wq_free(naive), wq_free(absum);
}

static void exact_add_should_flag_out_of_range_terms(void **state)
{
    (void)state;
    wq_exact a[3] = {{0, 0}};
    double x[3] = {1.0, INFINITY, 0x1p63};
    assert_int_equal(wq_kern_exact_add_f64(a, x, 3), 2);
    double y[3];
    wq_kern_exact_to_f64(a, y, 3);
    assert_true(y[0] == 1.0 && y[1] == 0.0 && y[2] == 0.0);
    double neg[2] = {-2.5, 0x1p-60};
    wq_exact b[2] = {{0, 0}};
    wq_kern_exact_add_f64(b, neg, 2);
    wq_kern_exact_add_f64(b, neg, 2);
    wq_kern_exact_to_f64(b, y, 2);
    assert_true(y[0] == -5.0 && y[1] == 0x1p-59);
}

static double cpu_seconds(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
           (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

static double wall_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The idle barrier waits for the last rank (rank 0 arrives 0.3 s late) and sleeps while it waits:
 * the early ranks use well under the 0.3 s of CPU a spinning wait would. */
static void idle_barrier_should_wait_without_spinning(void **state)
{
    (void)state;
    const int rank = wq_dist_rank(g_dist);
    assert_int_equal(wq_dist_barrier(g_dist), WQ_OK);
    const double w0 = wall_seconds(), c0 = cpu_seconds();
    if (rank == 0) nanosleep(&(struct timespec){.tv_nsec = 300000000}, NULL);
    assert_int_equal(wq_dist_barrier_idle(g_dist), WQ_OK);
    const double waited = wall_seconds() - w0, cpu = cpu_seconds() - c0;
    assert_true(waited >= 0.29);
    if (rank != 0) assert_true(cpu < 0.1);
}

int main(int argc, char **argv)
{
    if (wq_dist_create(&argc, &argv, &g_dist) != WQ_OK) return 1;
    char name[64];
    snprintf(name, sizeof name, "dist_reduce.r%d", wq_dist_rank(g_dist));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_reduce_should_match_serial_sum_bitwise),
        cmocka_unit_test(exact_add_should_flag_out_of_range_terms),
        cmocka_unit_test(idle_barrier_should_wait_without_spinning),
    };
    int failed = cmocka_run_group_tests_name(name, tests, NULL, NULL);
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    wq_dist_destroy(g_dist);
    return failed != 0;
}
