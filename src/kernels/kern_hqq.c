/* kern_hqq.c: HQQ numerics (numerics.md §7; formulas and conventions in kern_hqq.h): initial
 * parameters, the proximal zero-point step (scalar `_ref`, SSE2, AVX2, AVX-512F), final codes and
 * meta quantization. Layer: kernels. The SIMD steps live here rather than in per-ISA files because
 * they share the lane layout, the chunked driver and the run-time dispatch (function-level
 * targets, so no build flag is involved).
 *
 * Why the SIMD steps equal `_ref` bit for bit:
 *  - rounding: clamp(rne(v), 0, max_v) == rne(clamp(v, 0, max_v)) because rne is monotone and both
 *    bounds are integers; after the clamp v is in [0, 255], where (v + 1.5*2^23) - 1.5*2^23 is an
 *    exact half-to-even rounding (kern_vec.h KV_MAGIC), and the bit pattern of v + 1.5*2^23 minus
 *    that of 1.5*2^23 is the integer q (same exponent). v is finite by the callers' contract, so
 *    min/max see no NaN. Only the sign of a zero q can differ from `_ref`, and q enters only
 * through q - z and the integer sum, whose values do not depend on it.
 *  - r = (q - z) / s: AVX-512 with bits <= 4 looks it up in a per-group table of the 16 values
 *    (j - z) / s made with the same float operations; otherwise a correctly rounded division.
 *  - sums follow the lane layout of kern_hqq.h exactly (float error lanes flushed to double lanes
 *    every 4 blocks, double X lanes, the fixed reduction tree); Q is an exact integer sum. Padded
 *    lanes of a last partial block contribute +0.0, which leaves a lane sum unchanged.
 *  - We = 0 for every element of a group whose |e| are all <= thr (wq_kern_hqq_shrink); the SIMD
 *    loops assume it, use the precomputed X, and check it through their float error lanes (each
 *    lane sum bounds its non-negative terms), so they compute exactly what `_ref` computes; any
 *    other group is recomputed by `_ref`.
 *  - The matrix error total is the same sum of the groups' errors (err_total) in every
 *    implementation, and a group skipped through the memo contributes the error it had when it was
 *    last computed, which is exactly what computing it again would give. */
#include "kernels/kern_hqq.h"

#include <math.h>

/* x*s + z is two roundings everywhere (INC's float32 evaluation, and `_ref` = SIMD). GCC in ISO
 * mode never contracts; clang would, inside the AVX-512 functions (EVEX FMA), without this. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "kernels/kern_vec.h"

#if WQ_KERN_HAVE_SSE2
#include <emmintrin.h>
#endif
#if WQ_KERN_HAVE_SSE2 && defined(__x86_64__) && defined(__GNUC__)
#define HQQ_HAVE_X86_TARGETS 1
#include <immintrin.h>
#define HQQ_AVX2_FN __attribute__((target("avx2")))
#define HQQ_AVX512_FN __attribute__((target("avx512f")))
#else
#define HQQ_HAVE_X86_TARGETS 0
#endif

/* Groups to compute that the AVX-512 driver prefetches ahead of the one it batches. */
#define HQQ_PF_AHEAD 48

enum {
    LANES = WQ_KERN_HQQ_LANES, /* elements per block = sum lanes */
    FLUSH = WQ_KERN_HQQ_FLUSH, /* blocks between float -> double flushes of the error lanes */
    CHUNK = 32                 /* groups per driver batch */
};

typedef enum { ISA_REF = 0, ISA_SSE2 = 1, ISA_AVX2 = 2, ISA_AVX512 = 3 } hqq_isa;

static hqq_isa best_isa(void)
{
#if HQQ_HAVE_X86_TARGETS
    if (__builtin_cpu_supports("avx512f")) return ISA_AVX512;
    if (__builtin_cpu_supports("avx2")) return ISA_AVX2;
#endif
    return WQ_KERN_HAVE_SSE2 ? ISA_SSE2 : ISA_REF;
}

static inline float max_code(int bits)
{
    return (float)((1 << bits) - 1);
}

static inline void group_minmax(const float *x, int64_t n, float *mn, float *mx)
{
#if WQ_KERN_HAVE_SSE2
    wq__kern_minmax_f32_sse2(x, n, mn, mx);
#else
    wq__kern_minmax_f32_generic(x, n, mn, mx);
#endif
}

/* The reduction tree of kern_hqq.h: halve the lanes by adding lane k + h to lane k, h = 8, 4, 2, 1
 * (what SIMD halving of one 16-lane vector does). */
static inline double lane_tree(const double a[LANES])
{
    double p[8], q[4];
    for (int k = 0; k < 8; k++)
        p[k] = a[k] + a[k + 8];
    for (int k = 0; k < 4; k++)
        q[k] = p[k] + p[k + 4];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

/* (Q - s*X) / n rounded to float: the zero-point update of kern_hqq.h. */
static inline float zero_update(int64_t qsum, float s, double xsum, int64_t n)
{
    return (float)(((double)qsum - (double)s * xsum) / (double)n);
}

/* The error total of a step over groups 0..: group k's error goes to lane k mod 8 (in order), then
 * ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)). Interleaved lanes keep the sum off one serial chain
 * of dependent additions (it runs over every group of every iteration, converged or not). */
static inline double err_total(const double a[8])
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* x[n] from block `full` on (the last partial block) copied into buf[LANES], zero padded; returns
 * the number of real elements in it. */
static inline int pad_tail(const float *x, int64_t n, int64_t full, float buf[LANES])
{
    const int64_t base = full * LANES;
    for (int k = 0; k < LANES; k++)
        buf[k] = base + k < n ? x[base + k] : 0.0f;
    return (int)(n - base);
}

// ---- Shrinkage ----------------------------------------------------------------------------------

void wq_kern_hqq_shrink_init(double p, double beta, wq_kern_hqq_shrink *sh)
{
    WQ_KERN_ASSERT(p > 0.0 && beta > 0.0);
    sh->pm1 = (float)(p - 1.0);
    sh->inv_beta = (float)(1.0 / beta);
    sh->thr = -1.0f;
    /* Threshold from the float constants actually used (kern_hqq.h): t = ib^(1/(1-pm1)). */
    const double one_m = 1.0 - (double)sh->pm1, ib = (double)sh->inv_beta;
    if (!(one_m > 0.0) || !(ib > 0.0) || !isfinite(ib)) return;
    const double delta = fmin(0.5, 1e-5 / one_m);
    const double t = pow(ib, 1.0 / one_m) * (1.0 - delta);
    if (!(t >= 0.0)) return;
    float tf = (float)t;
    if ((double)tf > t) tf = nextafterf(tf, 0.0f); /* round toward zero: stay on the safe side */
    sh->thr = tf;
}

float wq_kern_hqq_shrink_apply(float e, const wq_kern_hqq_shrink *sh)
{
    const float a = fabsf(e);
    const float d = a - sh->inv_beta * powf(a, sh->pm1);
    return d > 0.0f ? copysignf(d, e) : 0.0f; /* NaN d (0 * inf, beta = inf) -> 0 */
}

// ---- Initial parameters and group sums ----------------------------------------------------------

static inline void params_from_minmax(float mn, float mx, int bits, bool round_zero, float *s,
                                      float *z)
{
    /* max_v / 0 = +inf for a zero-range group, clamped to 2e4 like torch clamp(max=2e4). */
    float inv = max_code(bits) / (mx - mn);
    inv = inv < WQ_KERN_HQQ_MAX_INV_SCALE ? inv : WQ_KERN_HQQ_MAX_INV_SCALE;
    /* + 0.0f turns -0 into +0: SIMD min/max may return either zero for a group holding both */
    float zz = -mn * inv + 0.0f;
    if (round_zero) zz = nearbyintf(zz) + 0.0f;
    *s = inv;
    *z = zz;
}

void wq_kern_hqq_params(const float *x, int64_t n, int bits, bool round_zero, float *s, float *z)
{
    WQ_KERN_ASSERT(n >= 1 && bits >= 1 && bits <= 8);
    float mn, mx;
    group_minmax(x, n, &mn, &mx);
    params_from_minmax(mn, mx, bits, round_zero, s, z);
}

double wq_kern_hqq_sum(const float *x, int64_t n)
{
    /* Independent lanes: GCC vectorizes the block loop without reassociating anything. */
    double a[LANES] = {0};
    const int64_t nf = n - n % LANES;
    for (int64_t i = 0; i < nf; i += LANES)
        for (int k = 0; k < LANES; k++)
            a[k] += (double)x[i + k];
    for (int64_t i = nf; i < n; i++)
        a[i - nf] += (double)x[i];
    return lane_tree(a);
}

/* One pass over a group for min, max and the X lane sum (AVX-512F); same results as
 * wq__kern_minmax + wq_kern_hqq_sum up to the sign of a zero extreme, which params_from_minmax
 * canonicalizes. Masked/padded lanes of a last partial block add +0.0 to their X lane. */
#if HQQ_HAVE_X86_TARGETS
HQQ_AVX512_FN static void minmax_sum_avx512(const float *x, int64_t n, float *mn, float *mx,
                                            double *xs)
{
    __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
    __m512d a0 = _mm512_setzero_pd(), a1 = a0; /* lanes 0-7, 8-15 */
    const int64_t full = n / LANES;
    for (int64_t b = 0; b < full; b++) {
        const __m512 v = _mm512_loadu_ps(x + b * LANES);
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        a1 = _mm512_add_pd(
            a1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    if (full * LANES < n) {
        const __mmask16 k = (__mmask16)((1u << (n - full * LANES)) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(k, x + full * LANES);
        lo = _mm512_mask_min_ps(lo, k, lo, v);
        hi = _mm512_mask_max_ps(hi, k, hi, v);
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        a1 = _mm512_add_pd(
            a1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    *mn = _mm512_reduce_min_ps(lo);
    *mx = _mm512_reduce_max_ps(hi);
    const __m512d p = _mm512_add_pd(a0, a1);
    const __m256d q = _mm256_add_pd(_mm512_castpd512_pd256(p), _mm512_extractf64x4_pd(p, 1));
    const __m128d u = _mm_add_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd(q, 1));
    *xs = _mm_cvtsd_f64(_mm_add_sd(u, _mm_unpackhi_pd(u, u)));
}

#endif

void wq_kern_hqq_params_rows(const float *W, int64_t rows, int64_t cols, int64_t gs, int bits,
                             bool round_zero, float *s, float *z, double *xsum)
{
    WQ_KERN_ASSERT(gs >= 1 && gs <= cols);
    const hqq_isa isa = best_isa();
    (void)isa;
    const int64_t ng = (cols + gs - 1) / gs;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs, k = r * ng + g;
            const float *x = W + r * cols + off;
#if HQQ_HAVE_X86_TARGETS
            if (xsum && isa == ISA_AVX512) {
                float mn, mx;
                minmax_sum_avx512(x, n, &mn, &mx, &xsum[k]);
                params_from_minmax(mn, mx, bits, round_zero, &s[k], &z[k]);
                continue;
            }
#endif
            wq_kern_hqq_params(x, n, bits, round_zero, &s[k], &z[k]);
            if (xsum) xsum[k] = wq_kern_hqq_sum(x, n);
        }
}

// ---- Proximal step: reference -------------------------------------------------------------------

/* One group, §7.4 steps 1-3 exactly as written; dl[] receives the group's double error lanes and
 * *maxlane the largest float error lane seen at a flush. */
static void step_ref_lanes(const float *x, int64_t n, int bits, float s, float *z,
                           const wq_kern_hqq_shrink *sh, double dl[LANES], float *maxlane)
{
    WQ_KERN_ASSERT(n >= 1 && bits >= 1 && bits <= 8);
    const float maxv = max_code(bits), z0 = *z;
    float fl[LANES] = {0}, ml = 0.0f;
    double xl[LANES] = {0};
    int64_t qsum = 0;
    for (int k = 0; k < LANES; k++)
        dl[k] = 0.0;
    const int64_t nb = (n + LANES - 1) / LANES;
    for (int64_t b = 0; b < nb; b++) {
        for (int k = 0; k < LANES && b * LANES + k < n; k++) {
            const float xi = x[b * LANES + k];
            float q = nearbyintf(xi * s + z0); /* step 1 */
            if (q < 0.0f) q = 0.0f;
            if (q > maxv) q = maxv;
            const float r = (q - z0) / s;
            const float e = xi - r;
            const float we = wq_kern_hqq_shrink_apply(e, sh); /* step 2 */
            fl[k] += fabsf(e);
            xl[k] += (double)(xi - we);
            qsum += (int64_t)q;
        }
        if ((b + 1) % FLUSH == 0 || b + 1 == nb)
            for (int k = 0; k < LANES; k++) {
                ml = kv_max(fl[k], ml);
                dl[k] += (double)fl[k];
                fl[k] = 0.0f;
            }
    }
    *z = zero_update(qsum, s, lane_tree(xl), n); /* step 3 */
    *maxlane = ml;
}

double wq_kern_hqq_step_ref(const float *x, int64_t n, int bits, float s, float *z,
                            const wq_kern_hqq_shrink *sh)
{
    double dl[LANES];
    float ml;
    step_ref_lanes(x, n, bits, s, z, sh, dl, &ml);
    return lane_tree(dl);
}

/* Memo bookkeeping shared by every driver, for group k after a computed step: the group's error
 * and, when the step took the We = 0 path and left the zero unchanged, the largest float error
 * lane (the next step repeats exactly this one as long as that lane stays <= thr). */
static inline void memo_store(wq_kern_hqq_memo *memo, int64_t k, double err, int fixed,
                              float maxlane)
{
    if (!memo) return;
    memo->err[k] = err;
    memo->lim[k] = fixed ? maxlane : INFINITY;
}

static inline int memo_skip(const wq_kern_hqq_memo *memo, int64_t k, float thr)
{
    return memo && memo->lim[k] <= thr;
}

double wq_kern_hqq_step_rows_ref(const float *W, int64_t rows, int64_t cols, int64_t gs, int bits,
                                 const float *s, float *z, const wq_kern_hqq_shrink *sh,
                                 wq_kern_hqq_memo *memo)
{
    WQ_KERN_ASSERT(gs >= 1 && gs <= cols);
    const int64_t ng = (cols + gs - 1) / gs;
    double acc[8] = {0}, dl[LANES];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs, k = r * ng + g;
            if (memo_skip(memo, k, sh->thr)) {
                acc[k & 7] += memo->err[k];
                continue;
            }
            const float z0 = z[k];
            float ml;
            step_ref_lanes(W + r * cols + off, n, bits, s[k], &z[k], sh, dl, &ml);
            const double e = lane_tree(dl);
            memo_store(memo, k, e, kv_f2u(z[k]) == kv_f2u(z0) && ml <= sh->thr, ml);
            acc[k & 7] += e;
        }
    return err_total(acc);
}

// ---- Proximal step: SIMD group kernels ----------------------------------------------------------
//
// Each computes, for one group and assuming every We is 0, the group's double error lanes (the
// float lanes flushed exactly as in `_ref`), Q, and the largest float error lane at a flush. A
// float lane sum (of non-negative terms) is at least each of its terms, so "largest lane <= thr"
// implies "every |e| <= thr", i.e. the assumption held; otherwise the group is bad and recomputed
// by `_ref` (false alarms cost time, never accuracy).
//
// Q is summed from the bit patterns of v + 1.5*2^23 (= bits(1.5*2^23) + q) in wrapping 32-bit
// lanes and corrected by n * bits(1.5*2^23) at the end: exact modulo 2^32, and Q < 2^31.

typedef struct {
    double dl[LANES]; /* error lanes of the group */
    int64_t qsum;     /* sum q */
    float maxlane;    /* largest float error lane */
} grp_part;

static inline int64_t q_from_bits(uint32_t bits_sum, int64_t n)
{
    return (int64_t)(uint32_t)(bits_sum - (uint32_t)n * kv_f2u(KV_MAGIC));
}

#if WQ_KERN_HAVE_SSE2
/* A block is 4 vectors (lanes 0-3, 4-7, 8-11, 12-15). */
typedef struct {
    __m128 S, Z, MX, M, ZERO, SIGN;
} sse2_c;

static inline void sse2_quad(const sse2_c *c, __m128 xv, __m128 keep, __m128 *fl, __m128i *qacc)
{
    const __m128 v = _mm_min_ps(_mm_max_ps(_mm_add_ps(_mm_mul_ps(xv, c->S), c->Z), c->ZERO), c->MX);
    const __m128 vm = _mm_add_ps(v, c->M);
    const __m128 r = _mm_div_ps(_mm_sub_ps(_mm_sub_ps(vm, c->M), c->Z), c->S);
    *fl = _mm_add_ps(*fl, _mm_and_ps(keep, _mm_andnot_ps(c->SIGN, _mm_sub_ps(xv, r))));
    *qacc = _mm_add_epi32(*qacc, _mm_and_si128(_mm_castps_si128(keep), _mm_castps_si128(vm)));
}

static inline void sse2_flush(const sse2_c *c, __m128 fl[4], __m128d dl[8], __m128 *mv)
{
    for (int h = 0; h < 4; h++) {
        *mv = _mm_max_ps(*mv, fl[h]);
        dl[2 * h] = _mm_add_pd(dl[2 * h], _mm_cvtps_pd(fl[h]));
        dl[2 * h + 1] = _mm_add_pd(dl[2 * h + 1], _mm_cvtps_pd(_mm_movehl_ps(fl[h], fl[h])));
        fl[h] = c->ZERO;
    }
}

static inline void group_sse2(const float *x, int64_t n, int bits, float s, float z, grp_part *out)
{
    const sse2_c c = {_mm_set1_ps(s),        _mm_set1_ps(z),   _mm_set1_ps(max_code(bits)),
                      _mm_set1_ps(KV_MAGIC), _mm_setzero_ps(), _mm_set1_ps(-0.0f)};
    const __m128 ALL = _mm_castsi128_ps(_mm_set1_epi32(-1));
    __m128 fl[4] = {c.ZERO, c.ZERO, c.ZERO, c.ZERO}, mv = c.ZERO;
    __m128d dl[8];
    for (int h = 0; h < 8; h++)
        dl[h] = _mm_setzero_pd();
    __m128i qacc = _mm_setzero_si128();
    const int64_t full = n / LANES;
    for (int64_t b = 0; b < full; b++) {
        for (int h = 0; h < 4; h++)
            sse2_quad(&c, _mm_loadu_ps(x + b * LANES + 4 * h), ALL, &fl[h], &qacc);
        if ((b + 1) % FLUSH == 0) sse2_flush(&c, fl, dl, &mv);
    }
    if (full * LANES < n) {
        float buf[LANES];
        const __m128i rem = _mm_set1_epi32(pad_tail(x, n, full, buf));
        for (int h = 0; h < 4; h++) {
            const __m128i k = _mm_set_epi32(4 * h + 3, 4 * h + 2, 4 * h + 1, 4 * h);
            sse2_quad(&c, _mm_loadu_ps(buf + 4 * h), _mm_castsi128_ps(_mm_cmplt_epi32(k, rem)),
                      &fl[h], &qacc);
        }
    }
    if (full % FLUSH != 0 || full * LANES < n) sse2_flush(&c, fl, dl, &mv);
    for (int h = 0; h < 8; h++)
        _mm_storeu_pd(out->dl + 2 * h, dl[h]);
    qacc = _mm_add_epi32(qacc, _mm_shuffle_epi32(qacc, _MM_SHUFFLE(1, 0, 3, 2)));
    qacc = _mm_add_epi32(qacc, _mm_shuffle_epi32(qacc, _MM_SHUFFLE(2, 3, 0, 1)));
    out->qsum = q_from_bits((uint32_t)_mm_cvtsi128_si32(qacc), n);
    mv = _mm_max_ps(mv, _mm_movehl_ps(mv, mv));
    mv = _mm_max_ps(mv, _mm_shuffle_ps(mv, mv, _MM_SHUFFLE(1, 1, 1, 1)));
    out->maxlane = _mm_cvtss_f32(mv);
}
#endif

#if HQQ_HAVE_X86_TARGETS
/* A block is 2 vectors (lanes 0-7, 8-15); double lanes in 4 accumulators (0-3, 4-7, 8-11, 12-15).
 * The division does not bound this loop, so no table. */
#define HQQ_AVX2_HALF(xv, keep, fl)                                                                \
    do {                                                                                           \
        const __m256 v_ =                                                                          \
            _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(_mm256_mul_ps((xv), S), Z), ZERO), MX);      \
        const __m256 vm_ = _mm256_add_ps(v_, M);                                                   \
        const __m256 r_ = _mm256_div_ps(_mm256_sub_ps(_mm256_sub_ps(vm_, M), Z), S);               \
        (fl) = _mm256_add_ps(                                                                      \
            (fl), _mm256_and_ps((keep), _mm256_andnot_ps(SIGN, _mm256_sub_ps((xv), r_))));         \
        qacc = _mm256_add_epi32(                                                                   \
            qacc, _mm256_and_si256(_mm256_castps_si256(keep), _mm256_castps_si256(vm_)));          \
    } while (0)
#define HQQ_AVX2_FLUSH()                                                                           \
    do {                                                                                           \
        mv = _mm256_max_ps(mv, _mm256_max_ps(f0, f1));                                             \
        d0 = _mm256_add_pd(d0, _mm256_cvtps_pd(_mm256_castps256_ps128(f0)));                       \
        d1 = _mm256_add_pd(d1, _mm256_cvtps_pd(_mm256_extractf128_ps(f0, 1)));                     \
        d2 = _mm256_add_pd(d2, _mm256_cvtps_pd(_mm256_castps256_ps128(f1)));                       \
        d3 = _mm256_add_pd(d3, _mm256_cvtps_pd(_mm256_extractf128_ps(f1, 1)));                     \
        f0 = f1 = ZERO;                                                                            \
    } while (0)

HQQ_AVX2_FN static inline void group_avx2(const float *x, int64_t n, int bits, float s, float z,
                                          grp_part *out)
{
    const __m256 S = _mm256_set1_ps(s), Z = _mm256_set1_ps(z);
    const __m256 MX = _mm256_set1_ps(max_code(bits)), M = _mm256_set1_ps(KV_MAGIC);
    const __m256 ZERO = _mm256_setzero_ps(), SIGN = _mm256_set1_ps(-0.0f);
    const __m256 ALL = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    __m256 f0 = ZERO, f1 = ZERO, mv = ZERO;
    __m256d d0 = _mm256_setzero_pd(), d1 = d0, d2 = d0, d3 = d0;
    __m256i qacc = _mm256_setzero_si256();
    const int64_t full = n / LANES;
    for (int64_t b = 0; b < full; b++) {
        HQQ_AVX2_HALF(_mm256_loadu_ps(x + b * LANES), ALL, f0);
        HQQ_AVX2_HALF(_mm256_loadu_ps(x + b * LANES + 8), ALL, f1);
        if ((b + 1) % FLUSH == 0) HQQ_AVX2_FLUSH();
    }
    if (full * LANES < n) {
        float buf[LANES];
        const __m256i rem = _mm256_set1_epi32(pad_tail(x, n, full, buf));
        const __m256i k0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i k1 = _mm256_add_epi32(k0, _mm256_set1_epi32(8));
        HQQ_AVX2_HALF(_mm256_loadu_ps(buf), _mm256_castsi256_ps(_mm256_cmpgt_epi32(rem, k0)), f0);
        HQQ_AVX2_HALF(_mm256_loadu_ps(buf + 8), _mm256_castsi256_ps(_mm256_cmpgt_epi32(rem, k1)),
                      f1);
    }
    if (full % FLUSH != 0 || full * LANES < n) HQQ_AVX2_FLUSH(); /* else f0, f1 are 0 */
    _mm256_storeu_pd(out->dl + 0, d0);
    _mm256_storeu_pd(out->dl + 4, d1);
    _mm256_storeu_pd(out->dl + 8, d2);
    _mm256_storeu_pd(out->dl + 12, d3);
    __m128i qq = _mm_add_epi32(_mm256_castsi256_si128(qacc), _mm256_extracti128_si256(qacc, 1));
    qq = _mm_add_epi32(qq, _mm_shuffle_epi32(qq, _MM_SHUFFLE(1, 0, 3, 2)));
    qq = _mm_add_epi32(qq, _mm_shuffle_epi32(qq, _MM_SHUFFLE(2, 3, 0, 1)));
    out->qsum = q_from_bits((uint32_t)_mm_cvtsi128_si32(qq), n);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ps(m4, _mm_shuffle_ps(m4, m4, _MM_SHUFFLE(1, 1, 1, 1)));
    out->maxlane = _mm_cvtss_f32(m4);
}
#undef HQQ_AVX2_HALF
#undef HQQ_AVX2_FLUSH

/* A block is one vector. For bits <= 4, r = T[q] with T[j] = (j - z) / s (one vpermps over 16
 * entries indexed by the low 4 bits of bits(v + 1.5*2^23), which are those of q; entries above
 * max_v are never selected); otherwise a division. The clamp is done on the bit patterns
 * (non-negative floats order like their patterns, negative ones fall below 0). The last partial
 * block is a masked load; masked lanes give |e| = 0 and add nothing to Q. */
#define HQQ_AVX512_BLOCK(xv, k, tab)                                                               \
    do {                                                                                           \
        const __m512i vi_ =                                                                        \
            _mm512_max_epi32(_mm512_castps_si512(_mm512_add_ps(_mm512_mul_ps((xv), S), Z)),        \
                             _mm512_setzero_si512());                                              \
        const __m512 vm_ = _mm512_add_ps(_mm512_castsi512_ps(_mm512_min_epi32(vi_, MXI)), M);      \
        const __m512 r_ = (tab) ? _mm512_permutexvar_ps(_mm512_castps_si512(vm_), T)               \
                                : _mm512_div_ps(_mm512_sub_ps(_mm512_sub_ps(vm_, M), Z), S);       \
        fl = _mm512_add_ps(fl, _mm512_mask_abs_ps(ZERO, (k), _mm512_sub_ps((xv), r_)));            \
        qacc = _mm512_mask_add_epi32(qacc, (k), qacc, _mm512_castps_si512(vm_));                   \
    } while (0)
#define HQQ_AVX512_FLUSH()                                                                         \
    do {                                                                                           \
        mv = _mm512_max_ps(mv, fl);                                                                \
        dlo = _mm512_add_pd(dlo, _mm512_cvtps_pd(_mm512_castps512_ps256(fl)));                     \
        dhi = _mm512_add_pd(dhi, _mm512_cvtps_pd(_mm256_castpd_ps(                                 \
                                     _mm512_extractf64x4_pd(_mm512_castps_pd(fl), 1))));           \
        fl = ZERO;                                                                                 \
    } while (0)
#define HQQ_AVX512_LOOP(tab)                                                                       \
    do {                                                                                           \
        int64_t b = 0;                                                                             \
        for (; b + FLUSH <= full; b += FLUSH) {                                                    \
            for (int j = 0; j < FLUSH; j++) {                                                      \
                const __m512 xv = _mm512_loadu_ps(x + (b + j) * LANES);                            \
                HQQ_AVX512_BLOCK(xv, ALL, tab);                                                    \
            }                                                                                      \
            HQQ_AVX512_FLUSH();                                                                    \
        }                                                                                          \
        for (; b < full; b++) {                                                                    \
            const __m512 xv = _mm512_loadu_ps(x + b * LANES);                                      \
            HQQ_AVX512_BLOCK(xv, ALL, tab);                                                        \
        }                                                                                          \
        if (full * LANES < n) {                                                                    \
            const __mmask16 k = (__mmask16)((1u << (n - full * LANES)) - 1u);                      \
            const __m512 xv = _mm512_maskz_loadu_ps(k, x + full * LANES);                          \
            HQQ_AVX512_BLOCK(xv, k, tab);                                                          \
        }                                                                                          \
        if (full % FLUSH != 0 || full * LANES < n) HQQ_AVX512_FLUSH(); /* else fl is 0 */          \
    } while (0)

/* One group: p = the sum of its two halves of double error lanes (lane k + lane k+8: the first
 * level of the tree), the per-lane bit sums of Q, and the per-lane maxima of the float lanes. */
HQQ_AVX512_FN static inline void group_avx512(const float *x, int64_t n, int bits, float s, float z,
                                              __m512d *p_out, __m512i *qacc_out, __m512 *mv_out)
{
    const __m512 S = _mm512_set1_ps(s), Z = _mm512_set1_ps(z);
    const __m512 M = _mm512_set1_ps(KV_MAGIC), ZERO = _mm512_setzero_ps();
    const __m512i MXI = _mm512_castps_si512(_mm512_set1_ps(max_code(bits)));
    const __m512i IOTA = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __mmask16 ALL = 0xffff;
    __m512 fl = ZERO, mv = ZERO;
    __m512d dlo = _mm512_setzero_pd(), dhi = dlo;
    __m512i qacc = _mm512_setzero_si512();
    const int64_t full = n / LANES;
    if (bits <= 4) {
        const __m512 T = _mm512_div_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(IOTA), Z), S);
        HQQ_AVX512_LOOP(1);
    } else {
        const __m512 T = ZERO;
        HQQ_AVX512_LOOP(0);
    }
    *p_out = _mm512_add_pd(dlo, dhi);
    *qacc_out = qacc;
    *mv_out = mv;
}
#undef HQQ_AVX512_BLOCK
#undef HQQ_AVX512_FLUSH
#undef HQQ_AVX512_LOOP

/* v[16] (16 x 32-bit lanes each) -> lane g = sum (int, wrapping) or max (float) of the lanes of
 * v[g]: a butterfly of 45 shuffles/ops instead of 16 separate horizontal reductions. */
#define HQQ_TRANSPOSE_REDUCE16(name, T, OP, CAST_IN, CAST_OUT)                                     \
    HQQ_AVX512_FN static inline T name(const T v[16])                                              \
    {                                                                                              \
        __m512 t[8], u[4], w[2];                                                                   \
        for (int i = 0; i < 8; i++) { /* [v2i: 8 partials | v2i+1: 8 partials] */                  \
            const __m512 a = CAST_IN(v[2 * i]), b = CAST_IN(v[2 * i + 1]);                         \
            t[i] = OP(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));         \
        }                                                                                          \
        for (int m = 0; m < 4; m++) /* 128-bit block j = 4 partials of group 4m + j */             \
            u[m] = OP(_mm512_shuffle_f32x4(t[2 * m], t[2 * m + 1], 0x88),                          \
                      _mm512_shuffle_f32x4(t[2 * m], t[2 * m + 1], 0xDD));                         \
        for (int h = 0; h < 2; h++) { /* block j = 2 partials of groups 8h + j, 8h + 4 + j */      \
            const __m512d a = _mm512_castps_pd(u[2 * h]), b = _mm512_castps_pd(u[2 * h + 1]);      \
            w[h] = OP(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),                                  \
                      _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));                                 \
        }                                                                                          \
        const __m512 f =                                                                           \
            OP(_mm512_shuffle_ps(w[0], w[1], 0x88), _mm512_shuffle_ps(w[0], w[1], 0xDD));          \
        /* lane 4j + m holds group j + 4m */                                                       \
        const __m512i idx =                                                                        \
            _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);               \
        return CAST_OUT(_mm512_permutexvar_ps(idx, f));                                            \
    }
#define HQQ_ADD_EPI32_PS(a, b)                                                                     \
    _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define HQQ_ID(x) (x)
HQQ_TRANSPOSE_REDUCE16(hsum16_epi32, __m512i, HQQ_ADD_EPI32_PS, _mm512_castsi512_ps,
                       _mm512_castps_si512)
HQQ_TRANSPOSE_REDUCE16(hmax16_ps, __m512, _mm512_max_ps, HQQ_ID, HQQ_ID)
#undef HQQ_TRANSPOSE_REDUCE16
#undef HQQ_ADD_EPI32_PS
#undef HQQ_ID

/* p[16] (8 double lanes each, already level 1 of the tree) -> out[g] = the rest of the tree of
 * p[g] (h = 4, 2, 1), the same additions as lane_tree, batched. */
HQQ_AVX512_FN static inline void tree16_pd(const __m512d p[16], double out[16])
{
    __m512d t[8], u[4], w[2];
    for (int i = 0; i < 8; i++) /* [p2i: k + k+4 | p2i+1: k + k+4] */
        t[i] = _mm512_add_pd(_mm512_shuffle_f64x2(p[2 * i], p[2 * i + 1], 0x44),
                             _mm512_shuffle_f64x2(p[2 * i], p[2 * i + 1], 0xEE));
    for (int m = 0; m < 4; m++) /* 128-bit block j = (k + k+2) pair of group 4m + j */
        u[m] = _mm512_add_pd(_mm512_shuffle_f64x2(t[2 * m], t[2 * m + 1], 0x88),
                             _mm512_shuffle_f64x2(t[2 * m], t[2 * m + 1], 0xDD));
    for (int h = 0; h < 2; h++) /* block j = totals of groups 8h + j, 8h + 4 + j */
        w[h] = _mm512_add_pd(_mm512_unpacklo_pd(u[2 * h], u[2 * h + 1]),
                             _mm512_unpackhi_pd(u[2 * h], u[2 * h + 1]));
    for (int h = 0; h < 2; h++) {
        double v[8];
        _mm512_storeu_pd(v, w[h]);
        for (int j = 0; j < 4; j++) {
            out[8 * h + j] = v[2 * j];
            out[8 * h + 4 + j] = v[2 * j + 1];
        }
    }
}

/* A batch of up to 16 groups (any positions) for the AVX-512 driver. */
typedef struct {
    int cnt;
    int64_t k[16]; /* group index (row-major) */
    const float *x[16];
    int32_t n[16];
} hqq_batch;

/* Runs the group kernels of a batch (a bad group is recomputed by `_ref` on the spot), then batched
 * reductions (Q, error trees, largest lanes), the zero updates of the good groups (bit-identical
 * to zero_update: the same double operations, correctly rounded, and an RNE conversion to float)
 * and the memo; e[j] receives the error of the batch's j-th group. */
HQQ_AVX512_FN static void run_batch_avx512(const hqq_batch *B, int bits, const float *s,
                                           const double *xsum, float *z,
                                           const wq_kern_hqq_shrink *sh, wq_kern_hqq_memo *memo,
                                           double e[16])
{
    const float thr = sh->thr;
    __m512d pv[16];
    __m512i qv[16];
    __m512 mv[16];
    int32_t nv[16];
    float sv[16], zo[16], mref[16], mgood[16], zn[16];
    double xv[16], etree[16];
    unsigned good = 0;
    for (int j = 0; j < 16; j++) {
        if (j >= B->cnt) {
            pv[j] = _mm512_setzero_pd();
            qv[j] = _mm512_setzero_si512();
            mv[j] = _mm512_setzero_ps();
            nv[j] = 1;
            sv[j] = 1.0f;
            zo[j] = 0.0f;
            xv[j] = 0.0;
            continue;
        }
        const int64_t k = B->k[j], n = B->n[j];
        const float *x = B->x[j];
        nv[j] = (int32_t)n;
        sv[j] = s[k];
        zo[j] = z[k];
        xv[j] = xsum[k];
        group_avx512(x, n, bits, sv[j], zo[j], &pv[j], &qv[j], &mv[j]);
        if (_mm512_cmp_ps_mask(mv[j], _mm512_set1_ps(thr), _CMP_GT_OQ)) {
            double dl[LANES];
            step_ref_lanes(x, n, bits, sv[j], &z[k], sh, dl, &mref[j]);
            e[j] = lane_tree(dl);
            qv[j] = _mm512_setzero_si512();
        } else {
            good |= 1u << j;
        }
    }
    /* Q = bit sums - n * bits(1.5*2^23), exact mod 2^32 (q_from_bits) */
    const __m512i nn = _mm512_loadu_si512(nv);
    const __m512i q = _mm512_sub_epi32(
        hsum16_epi32(qv), _mm512_mullo_epi32(nn, _mm512_set1_epi32((int)kv_f2u(KV_MAGIC))));
    const __m512 s16 = _mm512_loadu_ps(sv);
    __m256 zh[2];
    for (int h = 0; h < 2; h++) {
        const __m512d qd =
            _mm512_cvtepi32_pd(h ? _mm512_extracti64x4_epi64(q, 1) : _mm512_castsi512_si256(q));
        const __m512d nd =
            _mm512_cvtepi32_pd(h ? _mm512_extracti64x4_epi64(nn, 1) : _mm512_castsi512_si256(nn));
        const __m512d sd =
            _mm512_cvtps_pd(_mm256_castpd_ps(h ? _mm512_extractf64x4_pd(_mm512_castps_pd(s16), 1)
                                               : _mm512_castpd512_pd256(_mm512_castps_pd(s16))));
        const __m512d xd = _mm512_loadu_pd(xv + 8 * h);
        zh[h] = _mm512_cvtpd_ps(_mm512_div_pd(_mm512_sub_pd(qd, _mm512_mul_pd(sd, xd)), nd));
    }
    const __m512 znew = _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castpd256_pd512(_mm256_castps_pd(zh[0])), _mm256_castps_pd(zh[1]), 1));
    _mm512_storeu_ps(zn, znew);
    tree16_pd(pv, etree);
    unsigned fixed = 0;
    if (memo) {
        _mm512_storeu_ps(mgood, hmax16_ps(mv));
        fixed = _mm512_cmpeq_epi32_mask(_mm512_castps_si512(znew),
                                        _mm512_castps_si512(_mm512_loadu_ps(zo)));
    }
    for (int j = 0; j < B->cnt; j++) {
        const int64_t k = B->k[j];
        if (good >> j & 1u) {
            z[k] = zn[j];
            e[j] = etree[j];
            memo_store(memo, k, e[j], (int)(fixed >> j & 1u), mgood[j]);
        } else { /* bad: `_ref` took the We != 0 path, or a false alarm */
            memo_store(memo, k, e[j], kv_f2u(z[k]) == kv_f2u(zo[j]) && mref[j] <= thr, mref[j]);
        }
    }
}

/* The groups to compute among the 16 from k0 (bit j = group k0 + j): all, or those the memo does
 * not skip (not lim <= thr: +inf and lim > thr are computed). */
HQQ_AVX512_FN static inline unsigned todo_mask(const wq_kern_hqq_memo *memo, int64_t tot,
                                               int64_t k0, __m512 THR)
{
    const int kn = (int)(tot - k0 < 16 ? tot - k0 : 16);
    const __mmask16 live = (__mmask16)((1u << kn) - 1u);
    if (!memo) return live;
    return _mm512_mask_cmp_ps_mask(live, _mm512_maskz_loadu_ps(live, memo->lim + k0), THR,
                                   _CMP_NLE_UQ);
}

/* The AVX-512 driver. Groups are taken in row-major order, 16 at a time; with a memo, the groups
 * it marks as repeating are dropped with one vector compare and the others are packed into full
 * batches (so a mostly converged matrix costs little more than reading its memo), their errors go
 * to the memo, and the total is summed from the memo at the end (err_total). Without a memo, every
 * group is computed and its error added batch by batch (batches hold consecutive groups, in order).
 * A software prefetch runs ahead of the sparse batches. */
HQQ_AVX512_FN static double step_rows_avx512(const float *W, int64_t rows, int64_t cols, int64_t gs,
                                             int bits, const float *s, const double *xsum, float *z,
                                             const wq_kern_hqq_shrink *sh, wq_kern_hqq_memo *memo)
{
    const int64_t ng = (cols + gs - 1) / gs, tot = rows * ng, last_n = cols - (ng - 1) * gs;
    const __m512 THR = _mm512_set1_ps(sh->thr);
    /* Two batches: one fills while the previous one runs. */
    hqq_batch B[2];
    B[0].cnt = B[1].cnt = 0;
    int cur = 0;
    double e[16], acc[8] = {0};
#define HQQ_RUN_BATCH(b)                                                                           \
    do {                                                                                           \
        run_batch_avx512(&(b), bits, s, xsum, z, sh, memo, e);                                     \
        for (int i = 0; i < (b).cnt && !memo; i++) /* batches are in group order */                \
            acc[(b).k[i] & 7] += e[i];                                                             \
        (b).cnt = 0;                                                                               \
    } while (0)
    /* Prefetch cursor: runs ahead of the groups being batched by about HQQ_PF_AHEAD groups to
     * compute, asking for their first lines. Once the memo skips most groups the rest are
     * scattered and the hardware prefetcher no longer sees a stream. */
    int64_t kp = 0, rp = 0, gp = 0, ahead = 0;
    int64_t r0 = 0, g0 = 0; /* row and group of k0 (no division per group) */
    for (int64_t k0 = 0; k0 < tot; k0 += 16) {
        for (; kp < tot && ahead < HQQ_PF_AHEAD; kp += 16) {
            unsigned pf = todo_mask(memo, tot, kp, THR);
            ahead += __builtin_popcount(pf);
            if (pf == todo_mask(NULL, tot, kp, THR)) pf = 0; /* dense: the hardware streams it */
            while (pf) {
                const int j = __builtin_ctz(pf);
                pf &= pf - 1u;
                int64_t r = rp, g = gp + j;
                while (g >= ng)
                    g -= ng, r++;
                const float *x = W + r * cols + g * gs;
                const int64_t n = g == ng - 1 ? last_n : gs;
                for (int64_t off = 0; off < n && off < 16 * 16; off += 16)
                    _mm_prefetch((const char *)(x + off), _MM_HINT_T0);
            }
            for (gp += 16; gp >= ng; rp++)
                gp -= ng;
        }
        unsigned todo = todo_mask(memo, tot, k0, THR);
        ahead -= __builtin_popcount(todo);
        while (todo) {
            const int j = __builtin_ctz(todo);
            todo &= todo - 1u;
            int64_t r = r0, g = g0 + j;
            while (g >= ng)
                g -= ng, r++;
            hqq_batch *b = &B[cur];
            b->k[b->cnt] = k0 + j;
            b->x[b->cnt] = W + r * cols + g * gs;
            b->n[b->cnt] = (int32_t)(g == ng - 1 ? last_n : gs);
            if (++b->cnt == 16) {
                if (B[cur ^ 1].cnt) HQQ_RUN_BATCH(B[cur ^ 1]);
                cur ^= 1;
            }
        }
        for (g0 += 16; g0 >= ng; r0++)
            g0 -= ng;
    }
    if (B[cur ^ 1].cnt) HQQ_RUN_BATCH(B[cur ^ 1]);
    if (B[cur].cnt) HQQ_RUN_BATCH(B[cur]);
#undef HQQ_RUN_BATCH
    if (memo) {
        int64_t k = 0;
        for (; k + 8 <= tot; k += 8)
            for (int l = 0; l < 8; l++)
                acc[l] += memo->err[k + l];
        for (; k < tot; k++)
            acc[k & 7] += memo->err[k];
    }
    return err_total(acc);
}
#endif

// ---- Proximal step: drivers ---------------------------------------------------------------------

/* Groups of W in row-major order, CHUNK at a time: the SIMD pass of every group of the chunk (or a
 * memo skip), then the zero updates (or the `_ref` recomputation of a bad group), the memo, and the
 * error total in group order. One body per ISA so the group kernel inlines into its target. */
#define HQQ_DEFINE_STEP_ROWS(fname, attr, group_fn)                                                \
    attr static double fname(const float *W, int64_t rows, int64_t cols, int64_t gs, int bits,     \
                             const float *s, const double *xsum, float *z,                         \
                             const wq_kern_hqq_shrink *sh, wq_kern_hqq_memo *memo)                 \
    {                                                                                              \
        const int64_t ng = (cols + gs - 1) / gs, tot = rows * ng;                                  \
        grp_part part[CHUNK];                                                                      \
        double acc[8] = {0};                                                                       \
        int64_t r = 0, g = 0; /* first group of the chunk */                                       \
        for (int64_t k0 = 0; k0 < tot; k0 += CHUNK) {                                              \
            const int64_t kn = tot - k0 < CHUNK ? tot - k0 : CHUNK;                                \
            int64_t rr = r, gg = g;                                                                \
            for (int64_t j = 0; j < kn; j++) {                                                     \
                const int64_t off = gg * gs, n = cols - off < gs ? cols - off : gs;                \
                if (!memo_skip(memo, k0 + j, sh->thr))                                             \
                    group_fn(W + rr * cols + off, n, bits, s[k0 + j], z[k0 + j], &part[j]);        \
                if (++gg == ng) gg = 0, rr++;                                                      \
            }                                                                                      \
            for (int64_t j = 0; j < kn; j++) {                                                     \
                const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs, k = k0 + j;     \
                const float *x = W + r * cols + off;                                               \
                if (++g == ng) g = 0, r++;                                                         \
                if (memo_skip(memo, k, sh->thr)) {                                                 \
                    acc[k & 7] += memo->err[k];                                                    \
                    continue;                                                                      \
                }                                                                                  \
                const float z0 = z[k];                                                             \
                float ml = part[j].maxlane;                                                        \
                if (ml > sh->thr)                                                                  \
                    step_ref_lanes(x, n, bits, s[k], &z[k], sh, part[j].dl, &ml);                  \
                else                                                                               \
                    z[k] = zero_update(part[j].qsum, s[k], xsum[k], n);                            \
                const double e = lane_tree(part[j].dl);                                            \
                memo_store(memo, k, e, kv_f2u(z[k]) == kv_f2u(z0) && ml <= sh->thr, ml);           \
                acc[k & 7] += e;                                                                   \
            }                                                                                      \
        }                                                                                          \
        return err_total(acc);                                                                     \
    }

#if WQ_KERN_HAVE_SSE2
HQQ_DEFINE_STEP_ROWS(step_rows_sse2, , group_sse2)
#endif
#if HQQ_HAVE_X86_TARGETS
HQQ_DEFINE_STEP_ROWS(step_rows_avx2, HQQ_AVX2_FN, group_avx2)
#endif

static double step_rows_isa(hqq_isa isa, const float *W, int64_t rows, int64_t cols, int64_t gs,
                            int bits, const float *s, const double *xsum, float *z,
                            const wq_kern_hqq_shrink *sh, wq_kern_hqq_memo *memo)
{
    (void)isa;
    (void)xsum;
    if (sh->thr >= 0.0f) { /* else every group needs the exact shrinkage */
#if HQQ_HAVE_X86_TARGETS
        if (isa == ISA_AVX512)
            return step_rows_avx512(W, rows, cols, gs, bits, s, xsum, z, sh, memo);
        if (isa == ISA_AVX2) return step_rows_avx2(W, rows, cols, gs, bits, s, xsum, z, sh, memo);
#endif
#if WQ_KERN_HAVE_SSE2
        if (isa == ISA_SSE2) return step_rows_sse2(W, rows, cols, gs, bits, s, xsum, z, sh, memo);
#endif
    }
    return wq_kern_hqq_step_rows_ref(W, rows, cols, gs, bits, s, z, sh, memo);
}

int wq_kern_hqq_isa_count(void)
{
    return (int)best_isa() + 1;
}

const char *wq_kern_hqq_isa_name(int isa)
{
    static const char *const names[] = {"ref", "sse2", "avx2", "avx512f"};
    return isa >= 0 && isa < 4 ? names[isa] : "?";
}

void wq_kern_hqq_memo_reset(wq_kern_hqq_memo *memo, int64_t n)
{
    for (int64_t k = 0; k < n; k++) {
        memo->err[k] = 0.0;
        memo->lim[k] = INFINITY;
    }
}

double wq_kern_hqq_step(const float *x, int64_t n, int bits, float s, double xsum, float *z,
                        const wq_kern_hqq_shrink *sh)
{
    WQ_KERN_ASSERT(n >= 1 && n <= ((int64_t)1 << 26) && bits >= 1 && bits <= 8);
    return step_rows_isa(best_isa(), x, 1, n, n, bits, &s, &xsum, z, sh, NULL);
}

double wq_kern_hqq_step_rows_isa(int isa, const float *W, int64_t rows, int64_t cols, int64_t gs,
                                 int bits, const float *s, const double *xsum, float *z,
                                 const wq_kern_hqq_shrink *sh, wq_kern_hqq_memo *memo)
{
    WQ_KERN_ASSERT(gs >= 1 && gs <= cols && gs <= ((int64_t)1 << 26) && bits >= 1 && bits <= 8);
    WQ_KERN_ASSERT(isa >= 0 && isa <= (int)best_isa());
    return step_rows_isa((hqq_isa)isa, W, rows, cols, gs, bits, s, xsum, z, sh, memo);
}

double wq_kern_hqq_step_rows(const float *W, int64_t rows, int64_t cols, int64_t gs, int bits,
                             const float *s, const double *xsum, float *z,
                             const wq_kern_hqq_shrink *sh, wq_kern_hqq_memo *memo)
{
    WQ_KERN_ASSERT(gs >= 1 && gs <= cols && gs <= ((int64_t)1 << 26) && bits >= 1 && bits <= 8);
    return step_rows_isa(best_isa(), W, rows, cols, gs, bits, s, xsum, z, sh, memo);
}

// ---- Codes --------------------------------------------------------------------------------------

void wq_kern_hqq_codes(const float *x, int64_t n, int bits, float s, float z, uint8_t *codes)
{
    const float maxv = max_code(bits);
    int64_t i = 0;
#if WQ_KERN_HAVE_SSE2
    /* clamp, then the magic-number rne; the code is the low byte of v + 1.5*2^23 (file comment) */
    const __m128 S = _mm_set1_ps(s), Z = _mm_set1_ps(z), MX = _mm_set1_ps(maxv);
    const __m128 M = _mm_set1_ps(KV_MAGIC), ZERO = _mm_setzero_ps();
    const __m128i LOW8 = _mm_set1_epi32(0xff);
    for (; i + 16 <= n; i += 16) {
        __m128i c[4];
        for (int h = 0; h < 4; h++) {
            const __m128 xv = _mm_loadu_ps(x + i + 4 * h);
            const __m128 v = _mm_min_ps(_mm_max_ps(_mm_add_ps(_mm_mul_ps(xv, S), Z), ZERO), MX);
            c[h] = _mm_and_si128(_mm_castps_si128(_mm_add_ps(v, M)), LOW8);
        }
        const __m128i w =
            _mm_packus_epi16(_mm_packs_epi32(c[0], c[1]), _mm_packs_epi32(c[2], c[3]));
        _mm_storeu_si128((__m128i *)(codes + i), w);
    }
#endif
    for (; i < n; i++) {
        float c = kv_max(x[i] * s + z, 0.0f);
        c = kv_min(c, maxv);
        codes[i] = (uint8_t)(int32_t)((c + KV_MAGIC) - KV_MAGIC);
    }
}

void wq_kern_hqq_codes_ref(const float *x, int64_t n, int bits, float s, float z, uint8_t *codes)
{
    const float maxv = max_code(bits);
    for (int64_t i = 0; i < n; i++) {
        float q = nearbyintf(x[i] * s + z);
        if (q < 0.0f) q = 0.0f;
        if (q > maxv) q = maxv;
        codes[i] = (uint8_t)q;
    }
}

#if HQQ_HAVE_X86_TARGETS
/* AVX-512F form of wq_kern_hqq_codes (same clamp-then-rne, clamp in integer form as in the step:
 * non-negative floats order like their bit patterns, negative ones map below 0); the code is the
 * low byte of bits(v + 1.5*2^23), narrowed by vpmovdb. */
HQQ_AVX512_FN static void codes_rows_avx512(const float *W, int64_t rows, int64_t cols, int64_t gs,
                                            int bits, const float *s, const float *z,
                                            uint8_t *codes)
{
    const int64_t ng = (cols + gs - 1) / gs;
    const __m512 M = _mm512_set1_ps(KV_MAGIC);
    const __m512i MXI = _mm512_castps_si512(_mm512_set1_ps(max_code(bits)));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs;
            const float *x = W + r * cols + off;
            uint8_t *c = codes + r * cols + off;
            const __m512 S = _mm512_set1_ps(s[r * ng + g]), Z = _mm512_set1_ps(z[r * ng + g]);
            for (int64_t i = 0; i < n; i += 16) {
                const __mmask16 k =
                    n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
                const __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
                const __m512i vi =
                    _mm512_max_epi32(_mm512_castps_si512(_mm512_add_ps(_mm512_mul_ps(xv, S), Z)),
                                     _mm512_setzero_si512());
                const __m512 vm = _mm512_add_ps(_mm512_castsi512_ps(_mm512_min_epi32(vi, MXI)), M);
                _mm512_mask_cvtepi32_storeu_epi8(c + i, k, _mm512_castps_si512(vm));
            }
        }
}
#endif

void wq_kern_hqq_codes_rows(const float *W, int64_t rows, int64_t cols, int64_t gs, int bits,
                            const float *s, const float *z, uint8_t *codes)
{
    WQ_KERN_ASSERT(gs >= 1 && gs <= cols);
#if HQQ_HAVE_X86_TARGETS
    if (best_isa() == ISA_AVX512) {
        codes_rows_avx512(W, rows, cols, gs, bits, s, z, codes);
        return;
    }
#endif
    const int64_t ng = (cols + gs - 1) / gs;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs;
            wq_kern_hqq_codes(W + r * cols + off, n, bits, s[r * ng + g], z[r * ng + g],
                              codes + r * cols + off);
        }
}

// ---- Meta quantization --------------------------------------------------------------------------

void wq_kern_hqq_meta_qdq(float *v, int64_t n, int64_t gs)
{
    if (n <= 0) return;
    if (gs <= 0 || gs > n) gs = n;
    for (int64_t off = 0; off < n; off += gs) {
        const int64_t m = n - off < gs ? n - off : gs;
        float s, z;
        wq_kern_hqq_params(v + off, m, 8, false, &s, &z);
        const float scale = 1.0f / s; /* the stored meta scale */
        for (int64_t i = 0; i < m; i++) {
            float c = nearbyintf(v[off + i] * s + z);
            if (c < 0.0f) c = 0.0f;
            if (c > 255.0f) c = 255.0f;
            v[off + i] = (c - z) * scale;
        }
    }
}
