/* wq_testutil.h: deterministic data and error metrics for the CMocka tests. */
#ifndef WQ_TESTUTIL_H
#define WQ_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define WQ_TEST_SEED 0x5eed1234abcdULL

/* splitmix64 stream; never rand(). */
typedef struct {
    uint64_t s;
} wq_test_rng;
uint64_t wq_test_next(wq_test_rng *r);
double wq_test_uniform01(wq_test_rng *r);
float wq_test_normal(wq_test_rng *r);
void wq_test_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed);
void wq_test_fill_normal(float *x, size_t n, float stddev, uint64_t seed);
double wq_test_rmse(const float *a, const float *b, size_t n);
double wq_test_max_rel_err(const float *ref, const float *got, size_t n, double floor);
/* Distance in units in the last place between two finite floats. */
int64_t wq_test_ulp_diff(float a, float b);
/* Writes bytes to path; returns 0 on success. */
int wq_test_write_file(const char *path, const void *data, size_t n);
/* Runs a shell command, returns its exit status (or -1). */
int wq_test_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* mkdtemp under $TMPDIR (or /tmp); returns a static buffer per call index (caller copies). */
const char *wq_test_tmpdir(char *buf, size_t n);

#endif
