/* kern_exact.c: 128-bit fixed-point accumulation (see kern_exact.h). Layer: kernels. */
#include "kern_exact.h"

#include <math.h>

typedef __int128 i128;

static inline i128 get(const wq_exact *e) { return (i128)(((unsigned __int128)(uint64_t)e->hi << 64) | e->lo); }
static inline void put(wq_exact *e, i128 v)
{
    e->lo = (uint64_t)v;
    e->hi = (int64_t)(v >> 64);
}

/* round(x * 2^64) as i128 for |x| < 2^62: split x into an integer part (exact in double) and a
 * fraction scaled by 2^64 (exact: power-of-two scaling of a value < 1 keeps its 53 bits). */
static inline i128 to_fixed(double x)
{
    double ip = trunc(x);
    double frac = ldexp(x - ip, 64); /* |frac| < 2^64, exact */
    double fr = nearbyint(frac);
    return (i128)(int64_t)ip * ((i128)1 << 64) + (i128)fr; /* multiply: shifting a negative value is UB */
}

/* Adds one term; returns 1 when it is out of range (and not added). */
static inline int add_one(wq_exact *acc, double v)
{
    if (!(fabs(v) < 0x1p62)) return 1;
    put(acc, get(acc) + to_fixed(v));
    return 0;
}

int64_t wq_kern_exact_add_f64(wq_exact *acc, const double *x, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += add_one(&acc[i], x[i]);
    return bad;
}

int64_t wq_kern_exact_add_f32(wq_exact *acc, const float *x, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += add_one(&acc[i], (double)x[i]);
    return bad;
}

void wq_kern_exact_merge(wq_exact *a, const wq_exact *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        unsigned __int128 s = (unsigned __int128)get(&a[i]) + (unsigned __int128)get(&b[i]);
        put(&a[i], (i128)s);
    }
}

void wq_kern_exact_to_f64(const wq_exact *acc, double *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        i128 v = get(&acc[i]);
        /* split into high and low parts, each converted exactly enough; hi*2^64 + lo */
        int64_t hi = (int64_t)(v >> 64);
        uint64_t lo = (uint64_t)v;
        out[i] = (double)hi + ldexp((double)lo, -64);
    }
}
