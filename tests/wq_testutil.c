/* wq_testutil.c: seeded generators and metrics for tests. */
#include "wq_testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

uint64_t wq_test_next(wq_test_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double wq_test_uniform01(wq_test_rng *r) { return (double)(wq_test_next(r) >> 11) * 0x1.0p-53; }

float wq_test_normal(wq_test_rng *r)
{
    double u1 = wq_test_uniform01(r), u2 = wq_test_uniform01(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void wq_test_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed)
{
    wq_test_rng r = {seed};
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)wq_test_uniform01(&r);
}

void wq_test_fill_normal(float *x, size_t n, float stddev, uint64_t seed)
{
    wq_test_rng r = {seed};
    for (size_t i = 0; i < n; i++) x[i] = stddev * wq_test_normal(&r);
}

double wq_test_rmse(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return n ? sqrt(s / (double)n) : 0.0;
}

double wq_test_max_rel_err(const float *ref, const float *got, size_t n, double floor)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ref[i] - got[i]) / fmax(fabs((double)ref[i]), floor);
        if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

int64_t wq_test_ulp_diff(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia < 0) ia = (int32_t)(0x80000000u - (uint32_t)ia);
    if (ib < 0) ib = (int32_t)(0x80000000u - (uint32_t)ib);
    int64_t d = (int64_t)ia - ib;
    return d < 0 ? -d : d;
}

int wq_test_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int wq_test_system(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc == -1) return -1;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

const char *wq_test_tmpdir(char *buf, size_t n)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, n, "%s/wqtestXXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(buf);
}
