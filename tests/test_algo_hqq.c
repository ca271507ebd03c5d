/* test_algo_hqq.c: HQQ (src/algos/algo_hqq.c, src/kernels/kern_hqq.c) against an independent
 * reference written here straight from numerics.md §7 (one group at a time, sequential double sums,
 * no lanes, no SIMD, no threshold shortcut, no row blocking), a hand-computed solver step, the stop
 * rule, reconstruction error against RTN, meta quantization, edge cases, and every SIMD kernel
 * against `_ref`. Serial, unit. */
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "algos/algo_hqq.h"
#include "algos/algo_rtn.h"
#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_log.h"
#include "kernels/kern_hqq.h"
#include "kernels/kern_quant.h"
#include "wq_testutil.h"

/* zeros/scales vs the reference: relative, with a floor of 1 code unit for zeros (a zero near 0
 * is compared absolutely, in units of the quantization step) */
#define WQ_TOL_HQQ_REL 1e-6
/* hand-computed step (double arithmetic vs the float kernel) */
#define WQ_TOL_HQQ_HAND 1e-6

/* ---------------------------------------------------------------------------------------------- */
/* data, helpers */
/* ---------------------------------------------------------------------------------------------- */

/* N(0, 0.02^2) with ~2% of the entries scaled by 10 (Llama-like weights with outliers). */
static float *make_w(int64_t rows, int64_t cols, uint64_t seed)
{
    float *W = malloc(sizeof(float) * (size_t)(rows * cols));
    wq_test_rng r = {seed};
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = 0.02f * wq_test_normal(&r);
        if (wq_test_uniform01(&r) < 0.02) v *= 10.0f;
        W[i] = v;
    }
    return W;
}

static wq_qspec spec_of(int bits, int64_t gs)
{
    wq_qspec sp = wq_qspec_default();
    sp.dtype = WQ_QDTYPE_INT;
    sp.bits = bits;
    sp.group_size = gs;
    sp.sym = false;
    return sp;
}

static wq_algo_params hqq_params(bool quant_zero, bool quant_scale, int64_t sqgs)
{
    wq_config cfg;
    wq_config_defaults(&cfg, WQ_ALGO_HQQ);
    wq_algo_params ap = cfg.ap;
    ap.quant_zero = quant_zero;
    ap.quant_scale = quant_scale;
    ap.scale_quant_group_size = sqgs;
    return ap;
}

/* mean |W - W^| of a quantized matrix */
static double mean_abs_err(const float *W, const wq_qmatrix *m)
{
    float *D = malloc(sizeof(float) * (size_t)(m->rows * m->cols));
    wq_kern_dequant_matrix(m, D);
    double s = 0.0;
    for (int64_t i = 0; i < m->rows * m->cols; i++)
        s += fabs((double)W[i] - (double)D[i]);
    free(D);
    return s / (double)(m->rows * m->cols);
}

static int quiet_begin(void)
{
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
        dup2(devnull, 2);
        close(devnull);
    }
    return saved;
}

static void quiet_end(int saved)
{
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* the independent reference (numerics.md §7) */
/* ---------------------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *codes;
    float *scales, *zeros; /* [rows][ngroups] */
    int64_t ngroups, iters_run;
    bool stopped;
} ref_result;

static void ref_free(ref_result *r)
{
    free(r->codes);
    free(r->scales);
    free(r->zeros);
}

/* §7.5 meta quantization of v[n] in contiguous groups of gs, 8 bit, zero not rounded. */
static void ref_meta_qdq(float *v, int64_t n, int64_t gs)
{
    if (gs <= 0 || gs > n) gs = n;
    for (int64_t off = 0; off < n; off += gs) {
        int64_t m = n - off < gs ? n - off : gs;
        float mn = v[off], mx = v[off];
        for (int64_t i = 1; i < m; i++) {
            if (v[off + i] < mn) mn = v[off + i];
            if (v[off + i] > mx) mx = v[off + i];
        }
        float s = 255.0f / (mx - mn);
        if (!(s <= 2e4f)) s = 2e4f;
        float z = -mn * s, scale = 1.0f / s;
        for (int64_t i = 0; i < m; i++) {
            float c = nearbyintf(v[off + i] * s + z);
            c = c < 0.0f ? 0.0f : (c > 255.0f ? 255.0f : c);
            v[off + i] = (c - z) * scale;
        }
    }
}

/* W[rows][cols], contiguous groups of gs (-1 / > cols: whole row) along each row, last one smaller.
 * §7.3 initial parameters, §7.4 solver with the stop rule, final codes, §7.5 meta quantization.
 * The z update is §7.4's group mean of q - (x - We)*s written as (sum q - s * sum(x - We)) / n
 * (s is constant over the group), in double, as kern_hqq.h documents. */
static ref_result ref_hqq(const float *W, int64_t rows, int64_t cols, int64_t gs_spec, int bits,
                          const wq_algo_params *ap)
{
    const int64_t gs = (gs_spec < 1 || gs_spec > cols) ? cols : gs_spec;
    const int64_t ng = (cols + gs - 1) / gs;
    const float maxv = (float)((1 << bits) - 1);
    ref_result R = {malloc((size_t)(rows * cols)),
                    malloc(sizeof(float) * (size_t)(rows * ng)),
                    malloc(sizeof(float) * (size_t)(rows * ng)),
                    ng,
                    0,
                    false};
    float *s = R.scales, *z = R.zeros;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const float *x = W + r * cols + g * gs;
            int64_t n = cols - g * gs < gs ? cols - g * gs : gs;
            float mn = x[0], mx = x[0];
            for (int64_t i = 1; i < n; i++) {
                mn = x[i] < mn ? x[i] : mn;
                mx = x[i] > mx ? x[i] : mx;
            }
            float inv = maxv / (mx - mn);
            if (!(inv <= 2e4f)) inv = 2e4f; /* zero range: inf -> 2e4 */
            float zz = -mn * inv;
            if (bits == 4) zz = nearbyintf(zz);
            s[r * ng + g] = inv;
            z[r * ng + g] = zz + 0.0f;
        }
    double beta = ap->hqq_beta, best = 1e4;
    for (int64_t it = 0; it < ap->hqq_iters; it++) {
        const float pm1 = (float)(ap->hqq_lp_norm - 1.0), ib = (float)(1.0 / beta);
        double err = 0.0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < ng; g++) {
                const float *x = W + r * cols + g * gs;
                int64_t n = cols - g * gs < gs ? cols - g * gs : gs;
                const float sg = s[r * ng + g], zg = z[r * ng + g];
                double qsum = 0.0, xsum = 0.0;
                for (int64_t i = 0; i < n; i++) {
                    float q = nearbyintf(x[i] * sg + zg);
                    q = q < 0.0f ? 0.0f : (q > maxv ? maxv : q);
                    float e = x[i] - (q - zg) / sg;
                    float a = fabsf(e), d = a - ib * powf(a, pm1);
                    float we = d > 0.0f ? copysignf(d, e) : 0.0f;
                    err += (double)a;
                    qsum += (double)q;
                    xsum += (double)(x[i] - we);
                }
                z[r * ng + g] = (float)((qsum - (double)sg * xsum) / (double)n);
            }
        beta *= ap->hqq_kappa;
        R.iters_run = it + 1;
        err /= (double)(rows * cols);
        if (err < best) {
            best = err;
        } else {
            R.stopped = true; /* the zeros just updated are kept */
            break;
        }
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t k = r * ng + c / gs;
            float q = nearbyintf(W[r * cols + c] * s[k] + z[k]);
            R.codes[r * cols + c] = (uint8_t)(q < 0.0f ? 0.0f : (q > maxv ? maxv : q));
        }
    for (int64_t k = 0; k < rows * ng; k++)
        s[k] = 1.0f / s[k];
    if (ap->quant_zero) ref_meta_qdq(z, rows * ng, rows * ng);
    if (ap->quant_scale) ref_meta_qdq(s, rows * ng, ap->scale_quant_group_size);
    return R;
}

static void expect_close(const float *ref, const float *got, int64_t n, double floor,
                         const char *what)
{
    double worst = wq_test_max_rel_err(ref, got, (size_t)n, floor);
    if (!(worst <= WQ_TOL_HQQ_REL)) printf("%s: max rel err %.3g\n", what, worst);
    assert_true(worst <= WQ_TOL_HQQ_REL);
}

static void expect_matches_ref(const float *W, int64_t rows, int64_t cols, int64_t gs, int bits,
                               const wq_algo_params *ap)
{
    wq_qspec sp = spec_of(bits, gs);
    wq_qmatrix m = {0};
    wq_algo_hqq_stats st;
    assert_int_equal(wq_algo_hqq_quantize_stats(&sp, ap, "t", W, rows, cols, &m, &st), WQ_OK);
    ref_result R = ref_hqq(W, rows, cols, gs, bits, ap);
    if (st.iters_run != R.iters_run || (st.stopped_early != 0) != R.stopped)
        printf("%lldx%lld g%lld b%d: iterations %lld%s vs reference %lld%s\n", (long long)rows,
               (long long)cols, (long long)gs, bits, (long long)st.iters_run,
               st.stopped_early ? " (stopped)" : "", (long long)R.iters_run,
               R.stopped ? " (stopped)" : "");
    assert_int_equal(st.iters_run, R.iters_run);
    assert_int_equal(st.stopped_early != 0, R.stopped);
    assert_int_equal(m.ngroups, R.ngroups);
    assert_memory_equal(m.codes, R.codes, (size_t)(rows * cols));
    expect_close(R.scales, m.scales, rows * m.ngroups, 0.0, "scales");
    expect_close(R.zeros, m.zeros, rows * m.ngroups, 1.0, "zeros");
    ref_free(&R);
    wq_qmatrix_free(&m);
}

/* ---------------------------------------------------------------------------------------------- */
/* tests */
/* ---------------------------------------------------------------------------------------------- */

static void hqq_should_match_reference_on_random_matrices(void **state)
{
    (void)state;
    static const struct {
        int64_t rows, cols, gs;
        int bits;
    } cases[] = {
        {8, 256, 64, 4}, /* INC default shape */
        {5, 200, 64, 3}, /* ragged: 3 x 64 + 8 */
        {6, 96, -1, 2},  /* one group per row */
        {4, 128, 32, 8},    {3, 130, 16, 1},  {4, 100, 64, 5},
        {7, 77, 13, 6},     {2, 40, 128, 4},                 /* group larger than the row */
        {16, 512, 64, 4},   {9, 300, 128, 2}, {5, 64, 1, 3}, /* group of one */
        {40, 4096, 64, 4},  /* 3 row blocks of the two-step schedule (16, 16, 8 rows) */
        {33, 3000, 128, 3}, /* 2 blocks (21 + 12 rows), ragged groups */
    };
    int stopped = 0, full = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (uint64_t seed = 1; seed <= (cases[c].rows * cases[c].cols > 50000 ? 1u : 3u); seed++) {
            float *W = make_w(cases[c].rows, cases[c].cols, WQ_TEST_SEED + 97 * c + seed);
            wq_algo_params ap = hqq_params(false, false, 128);
            expect_matches_ref(W, cases[c].rows, cases[c].cols, cases[c].gs, cases[c].bits, &ap);
            ap.quant_zero = true; /* INC default */
            expect_matches_ref(W, cases[c].rows, cases[c].cols, cases[c].gs, cases[c].bits, &ap);
            ap.quant_scale = true;
            ap.scale_quant_group_size = 5; /* ragged meta groups */
            expect_matches_ref(W, cases[c].rows, cases[c].cols, cases[c].gs, cases[c].bits, &ap);
            ap.hqq_lp_norm = 1.0; /* p = 1 branch of the shrinkage */
            ap.hqq_beta = 3.0;
            expect_matches_ref(W, cases[c].rows, cases[c].cols, cases[c].gs, cases[c].bits, &ap);

            wq_qspec sp = spec_of(cases[c].bits, cases[c].gs);
            wq_qmatrix m = {0};
            wq_algo_hqq_stats st;
            ap = hqq_params(false, false, 128);
            assert_int_equal(
                wq_algo_hqq_quantize_stats(&sp, &ap, "t", W, cases[c].rows, cases[c].cols, &m, &st),
                WQ_OK);
            stopped += st.stopped_early;
            full += !st.stopped_early;
            wq_qmatrix_free(&m);
            free(W);
        }
    /* both outcomes of the stop rule were exercised */
    assert_true(stopped > 3);
    assert_true(full > 0);
}

/* Large residuals (shrinkage active, SIMD fallback to the exact path) and p >= 2 (no shortcut). */
static void hqq_should_match_reference_with_active_shrinkage(void **state)
{
    (void)state;
    float *W = make_w(6, 192, WQ_TEST_SEED + 5);
    for (int64_t i = 0; i < 6 * 192; i++)
        W[i] *= 40.0f; /* |e| ~ 0.1-1: above the threshold ~0.17 */
    wq_algo_params ap = hqq_params(false, false, 128);
    expect_matches_ref(W, 6, 192, 64, 4, &ap);
    expect_matches_ref(W, 6, 192, 32, 3, &ap);
    ap.hqq_lp_norm = 2.0;
    expect_matches_ref(W, 6, 192, 64, 4, &ap);
    ap.hqq_lp_norm = 1.5;
    ap.hqq_beta = 100.0;
    expect_matches_ref(W, 6, 192, 16, 2, &ap);
    free(W);
}

/* One solver step on x = [0, 0.25, 0.5, 1.5], 2 bits, p = 0.7, beta = 10, worked by hand:
 * s = 3 / 1.5 = 2, z = 0; q = rne(2x) = [0, rne(0.5) = 0, 1, 3]; r = q / 2 = [0, 0, 0.5, 1.5];
 * e = [0, 0.25, 0, 0], sum |e| = 0.25. Only e = 0.25 exceeds the threshold 10^(-1/1.3) = 0.170:
 * We = 0.25 - 0.1 * 0.25^(-0.3) = 0.25 - 0.1 * 1.5157166 = 0.0984283.
 * z' = mean(q - (x - We) * s) = (0 + (0 - (0.25 - 0.0984283) * 2) + 0 + 0) / 4 = -0.0757858. */
static void hqq_step_should_match_hand_computation(void **state)
{
    (void)state;
    const float x[4] = {0.0f, 0.25f, 0.5f, 1.5f};
    float s, z;
    wq_kern_hqq_params(x, 4, 2, false, &s, &z);
    assert_true(s == 2.0f && z == 0.0f);
    wq_kern_hqq_shrink sh;
    wq_kern_hqq_shrink_init(0.7, 10.0, &sh);
    assert_true(fabs(sh.thr - pow(10.0, -1.0 / 1.3)) < 1e-4);
    const double we = 0.25 - 0.1 * pow(0.25, -0.3);
    const double zexp = -(0.25 - we) * 2.0 / 4.0;
    assert_true(fabs(we - 0.0984283) < 1e-6);

    float zr = z, zf = z;
    double er = wq_kern_hqq_step_ref(x, 4, 2, s, &zr, &sh);
    double ef = wq_kern_hqq_step(x, 4, 2, s, wq_kern_hqq_sum(x, 4), &zf, &sh);
    assert_true(er == 0.25 && ef == 0.25);
    assert_true(fabs((double)zr - zexp) < WQ_TOL_HQQ_HAND);
    assert_true(zf == zr);
    /* the algorithm with one iteration reports the same zero; codes with it: rne(2x - 0.0758) */
    wq_algo_params ap = hqq_params(false, false, 128);
    ap.hqq_iters = 1;
    wq_qspec sp = spec_of(2, 4);
    wq_qmatrix m = {0};
    assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "hand", x, 1, 4, &m), WQ_OK);
    assert_true(m.zeros[0] == zr && m.scales[0] == 0.5f);
    const uint8_t codes[4] = {0, 0, 1, 3};
    assert_memory_equal(m.codes, codes, 4);
    wq_qmatrix_free(&m);
}

/* The stop rule: stopping after K iterations keeps the zeros of the K-th update, so running with
 * exactly K iterations, or with many more, gives the same result, and K - 1 a different one; and
 * the two-step schedule restores the first step's zeros when the pair's first step stops. */
static void hqq_should_stop_when_error_stops_improving(void **state)
{
    (void)state;
    int parity[2] = {0, 0}, past = 0, stops = 0, multi_parity[2] = {0, 0};
    for (int scaled = 0; scaled < 2; scaled++)
        for (uint64_t seed = 1; seed <= 12; seed++) {
            /* std 0.02: the stop is usually a fixed point (codes settle, zeros repeat); std 0.2:
             * the shrinkage is active and the step past the best moves the zeros */
            const int64_t rows = 8, cols = 128;
            float *W = make_w(rows, cols, WQ_TEST_SEED + 1000 + seed);
            for (int64_t i = 0; i < rows * cols && scaled; i++)
                W[i] *= 10.0f;
            wq_qspec sp = spec_of((int)(seed % 4) + 2, seed % 2 ? 32 : 64);
            wq_algo_params ap = hqq_params(false, false, 128);
            ap.hqq_iters = 200;
            wq_qmatrix a = {0}, b = {0}, c = {0};
            wq_algo_hqq_stats st;
            assert_int_equal(wq_algo_hqq_quantize_stats(&sp, &ap, "t", W, rows, cols, &a, &st),
                             WQ_OK);
            const int64_t K = st.iters_run, nm = rows * a.ngroups;
            if (st.stopped_early) {
                assert_true(K >= 2 && K < 200);
                stops++;
                parity[K % 2]++;
                ap.hqq_iters = K;
                assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "t", W, rows, cols, &b), WQ_OK);
                assert_memory_equal(a.zeros, b.zeros, sizeof(float) * (size_t)nm);
                assert_memory_equal(a.codes, b.codes, (size_t)(rows * cols));
                /* K - 1 iterations all improved; the K-th update is either a fixed point (zeros
                 * unchanged, error equal: that is what stopped it) or a real step past the best */
                ap.hqq_iters = K - 1;
                assert_int_equal(wq_algo_hqq_quantize_stats(&sp, &ap, "t", W, rows, cols, &c, &st),
                                 WQ_OK);
                assert_true(st.iters_run == K - 1 && !st.stopped_early);
                past += memcmp(a.zeros, c.zeros, sizeof(float) * (size_t)nm) != 0;
                ap.hqq_iters = 200;
                expect_matches_ref(W, rows, cols, sp.group_size, sp.bits, &ap);
            }
            wq_qmatrix_free(&a);
            wq_qmatrix_free(&b);
            wq_qmatrix_free(&c);
            free(W);
        }
    /* early stops with several row blocks: both steps of a pair, saved zeros restored */
    for (uint64_t seed = 1; seed <= 4; seed++) {
        float *W = make_w(70, 1024, WQ_TEST_SEED + 2000 + seed); /* blocks of 64 + 6 rows */
        wq_algo_params ap = hqq_params(seed % 2 == 0, false, 128);
        ap.hqq_iters = 60;
        expect_matches_ref(W, 70, 1024, seed % 2 ? 32 : 64, (int)(seed % 3) + 2, &ap);
        wq_qspec sp = spec_of((int)(seed % 3) + 2, seed % 2 ? 32 : 64);
        wq_qmatrix m = {0};
        wq_algo_hqq_stats st;
        assert_int_equal(wq_algo_hqq_quantize_stats(&sp, &ap, "t", W, 70, 1024, &m, &st), WQ_OK);
        multi_parity[st.iters_run % 2] += st.stopped_early;
        wq_qmatrix_free(&m);
        free(W);
    }
    assert_true(multi_parity[0] > 0 && multi_parity[1] > 0);
    assert_true(stops >= 12);
    assert_true(parity[0] > 0 && parity[1] > 0); /* stops on both steps of a pair */
    assert_true(past > 0);

    /* Exact-grid data: error 0 from the start, so the second iteration does not improve. */
    float g[64];
    for (int i = 0; i < 64; i++)
        g[i] = (float)(i % 16) * 0.125f;
    wq_qspec sp = spec_of(4, 64);
    wq_algo_params ap = hqq_params(false, false, 128);
    wq_qmatrix m = {0};
    wq_algo_hqq_stats st;
    assert_int_equal(wq_algo_hqq_quantize_stats(&sp, &ap, "grid", g, 1, 64, &m, &st), WQ_OK);
    assert_true(st.stopped_early && st.iters_run == 2 && st.err_init == 0.0);
    assert_true(mean_abs_err(g, &m) == 0.0);
    wq_qmatrix_free(&m);

    /* INC's best = 1e4: a first error >= 1e4 stops after one iteration (first step of a pair). */
    float *H = make_w(4, 64, WQ_TEST_SEED + 7);
    for (int i = 0; i < 256; i++)
        H[i] *= 1e7f;
    assert_int_equal(wq_algo_hqq_quantize_stats(&sp, &ap, "huge", H, 4, 64, &m, &st), WQ_OK);
    assert_true(st.stopped_early && st.iters_run == 1 && st.err_init >= 1e4);
    wq_qmatrix_free(&m);
    ap.hqq_iters = 1;
    expect_matches_ref(H, 4, 64, 64, 4, &ap);
    ap.hqq_iters = 20;
    expect_matches_ref(H, 4, 64, 64, 4, &ap);
    free(H);
}

/* HQQ minimises an lp norm of W - W^ with p < 1, so mean |W - W^| is the fair measure; it must beat
 * plain RTN asym (same bits, same groups) on outlier-heavy data. */
static void hqq_should_beat_rtn_asym_on_outlier_data(void **state)
{
    (void)state;
    const int64_t rows = 64, cols = 512;
    float *W = make_w(rows, cols, WQ_TEST_SEED + 77);
    static const struct {
        int bits;
        int64_t gs;
    } cfgs[] = {{4, 64}, {3, 32}};
    for (size_t c = 0; c < 2; c++) {
        wq_qspec sp = spec_of(cfgs[c].bits, cfgs[c].gs);
        wq_qmatrix rtn = {0}, h0 = {0}, h1 = {0};
        assert_int_equal(wq_algo_rtn_quantize(&sp, "t", W, rows, cols, &rtn, NULL), WQ_OK);
        wq_algo_params ap = hqq_params(false, false, 128);
        assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "t", W, rows, cols, &h0), WQ_OK);
        ap.quant_zero = true; /* INC default */
        assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "t", W, rows, cols, &h1), WQ_OK);
        const double er = mean_abs_err(W, &rtn), e0 = mean_abs_err(W, &h0);
        const double e1 = mean_abs_err(W, &h1);
        printf(
            "int%d g%lld: mean |W - W^| RTN asym %.4g, HQQ %.4g (-%.1f%%), HQQ quant_zero %.4g\n",
            cfgs[c].bits, (long long)cfgs[c].gs, er, e0, 100.0 * (1.0 - e0 / er), e1);
        assert_true(e0 < er);
        assert_true(e1 < er);
        wq_qmatrix_free(&rtn);
        wq_qmatrix_free(&h0);
        wq_qmatrix_free(&h1);
    }
    free(W);
}

/* quant_zero / quant_scale replace the meta by its 8-bit fake quantization and keep the codes. */
static void hqq_meta_quantization_should_keep_codes(void **state)
{
    (void)state;
    const int64_t rows = 12, cols = 200, gs = 32; /* 7 groups per row, ragged */
    float *W = make_w(rows, cols, WQ_TEST_SEED + 3);
    wq_qspec sp = spec_of(4, gs);
    wq_algo_params ap = hqq_params(false, false, 10);
    wq_qmatrix raw = {0}, qz = {0}, qs = {0};
    assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "t", W, rows, cols, &raw), WQ_OK);
    const int64_t nm = rows * raw.ngroups;
    ap.quant_zero = true;
    assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "t", W, rows, cols, &qz), WQ_OK);
    ap.quant_zero = false;
    ap.quant_scale = true;
    assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "t", W, rows, cols, &qs), WQ_OK);

    /* codes are not recomputed; the other meta is untouched */
    assert_memory_equal(raw.codes, qz.codes, (size_t)(rows * cols));
    assert_memory_equal(raw.codes, qs.codes, (size_t)(rows * cols));
    assert_memory_equal(raw.scales, qz.scales, sizeof(float) * (size_t)nm);
    assert_memory_equal(raw.zeros, qs.zeros, sizeof(float) * (size_t)nm);

    /* zeros: one 8-bit grid for the whole tensor */
    float *ez = malloc(sizeof(float) * (size_t)nm), *es = malloc(sizeof(float) * (size_t)nm);
    memcpy(ez, raw.zeros, sizeof(float) * (size_t)nm);
    ref_meta_qdq(ez, nm, nm);
    assert_memory_equal(ez, qz.zeros, sizeof(float) * (size_t)nm);
    float zmn = raw.zeros[0], zmx = raw.zeros[0];
    for (int64_t i = 0; i < nm; i++) {
        zmn = fminf(zmn, raw.zeros[i]);
        zmx = fmaxf(zmx, raw.zeros[i]);
    }
    bool changed = false;
    for (int64_t i = 0; i < nm; i++) { /* within half an 8-bit step of the tensor's zero range */
        changed |= qz.zeros[i] != raw.zeros[i];
        assert_true(fabsf(qz.zeros[i] - raw.zeros[i]) <= (zmx - zmn) / 255.0f * 0.5001f);
    }
    assert_true(changed);
    /* scales: groups of 10 over the flattened [rows * ngroups] = 84 vector (last group 4) */
    memcpy(es, raw.scales, sizeof(float) * (size_t)nm);
    ref_meta_qdq(es, nm, 10);
    assert_memory_equal(es, qs.scales, sizeof(float) * (size_t)nm);
    for (int64_t off = 0; off < nm; off += 10) {
        float mn = raw.scales[off], mx = mn;
        for (int64_t i = off; i < off + 10 && i < nm; i++) {
            mn = fminf(mn, raw.scales[i]);
            mx = fmaxf(mx, raw.scales[i]);
        }
        /* within half a step; the step is (max - min) / 255, or 1 / 2e4 when the inverse scale
         * 255 / (max - min) hits the clamp */
        const float step = fmaxf((mx - mn) / 255.0f, 1.0f / 2e4f);
        for (int64_t i = off; i < off + 10 && i < nm; i++)
            assert_true(fabsf(qs.scales[i] - raw.scales[i]) <= step * 0.5001f);
    }
    free(ez);
    free(es);
    wq_qmatrix_free(&raw);
    wq_qmatrix_free(&qz);
    wq_qmatrix_free(&qs);
    free(W);
}

/* cols % gs != 0: the last group of each row has its own parameters from its own elements. */
static void hqq_should_quantize_ragged_last_group_on_its_own(void **state)
{
    (void)state;
    const int64_t rows = 3, cols = 100, gs = 32; /* groups 32, 32, 32, 4 */
    float *W = make_w(rows, cols, WQ_TEST_SEED + 11);
    wq_qspec sp = spec_of(3, gs);
    wq_algo_params ap = hqq_params(false, false, 128);
    wq_qmatrix m = {0};
    assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "t", W, rows, cols, &m), WQ_OK);
    assert_int_equal(m.ngroups, 4);
    assert_int_equal(m.group_size, 32);
    for (int64_t r = 0; r < rows; r++) {
        const float *x = W + r * cols + 96;
        float mn = x[0], mx = x[0];
        for (int i = 1; i < 4; i++) {
            mn = fminf(mn, x[i]);
            mx = fmaxf(mx, x[i]);
        }
        /* the solver only moves zeros: the scale is 1 / (7 / (max - min)) of the 4 elements */
        assert_true(m.scales[r * 4 + 3] == 1.0f / (7.0f / (mx - mn)));
        for (int i = 0; i < 4; i++) /* 4 elements, 8 levels: each within half a step */
            assert_true(fabsf(((float)m.codes[r * cols + 96 + i] - m.zeros[r * 4 + 3]) *
                                  m.scales[r * 4 + 3] -
                              x[i]) <= 0.5f * m.scales[r * 4 + 3] * 1.001f);
    }
    wq_qmatrix_free(&m);
    expect_matches_ref(W, rows, cols, gs, 3, &ap);
    free(W);
}

/* A constant group gets s = 2e4 (INC's clamp of max_v / 0) and is reproduced to within
 * 1 / (2 * 2e4) even with the rounded zero of 4 bits; an all-zero group is exact. */
static void hqq_should_handle_zero_range_groups(void **state)
{
    (void)state;
    float W[3 * 64];
    for (int i = 0; i < 64; i++) {
        W[i] = 0.3f;         /* constant */
        W[64 + i] = 0.0f;    /* all zero */
        W[128 + i] = -0.02f; /* constant, negative */
    }
    for (int bits = 2; bits <= 4; bits++) {
        wq_qspec sp = spec_of(bits, 64);
        wq_algo_params ap = hqq_params(false, false, 128);
        wq_qmatrix m = {0};
        assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "const", W, 3, 64, &m), WQ_OK);
        float D[3 * 64];
        wq_kern_dequant_matrix(&m, D);
        for (int r = 0; r < 3; r++) {
            assert_true(m.scales[r] == 1.0f / 2e4f);
            for (int i = 0; i < 64; i++)
                assert_true(fabsf(D[r * 64 + i] - W[r * 64 + i]) <= 0.5f / 2e4f * 1.001f);
        }
        for (int i = 0; i < 64; i++)
            assert_true(D[64 + i] == 0.0f);
        expect_matches_ref(W, 3, 64, 64, bits, &ap);
        wq_qmatrix_free(&m);
    }
}

static void hqq_should_reject_nonfinite_weights(void **state)
{
    (void)state;
    float *W = make_w(4, 64, WQ_TEST_SEED);
    wq_qspec sp = spec_of(4, 64);
    wq_algo_params ap = hqq_params(true, false, 128);
    const float bad[2] = {NAN, -INFINITY};
    for (int b = 0; b < 2; b++) {
        float keep = W[2 * 64 + 5];
        W[2 * 64 + 5] = bad[b];
        wq_qmatrix m = {0};
        wq_log_clear_error();
        int q = quiet_begin();
        wq_status st = wq_algo_hqq_quantize(&sp, &ap, "model.layers.3.mlp.up_proj", W, 4, 64, &m);
        quiet_end(q);
        assert_int_equal(st, WQ_ERR_NUMERIC);
        assert_non_null(strstr(wq_log_last_error(), "model.layers.3.mlp.up_proj"));
        assert_non_null(strstr(wq_log_last_error(), "[2, 5]"));
        assert_null(m.codes);
        assert_null(m.scales);
        W[2 * 64 + 5] = keep;
    }
    /* finite, but a constant group of 1e34 gets s = 2e4 and a zero of -2e38: rejected */
    for (int i = 0; i < 64; i++)
        W[64 + i] = 1e34f;
    wq_qmatrix m = {0};
    int q = quiet_begin();
    wq_status st = wq_algo_hqq_quantize(&sp, &ap, "huge", W, 4, 64, &m);
    quiet_end(q);
    assert_int_equal(st, WQ_ERR_NUMERIC);
    assert_null(m.codes);
    free(W);
}

static void hqq_should_reject_bad_arguments(void **state)
{
    (void)state;
    float W[64] = {0};
    wq_algo_params ap = hqq_params(false, false, 128);
    wq_qmatrix m = {0};
    wq_status st[8];
    int q = quiet_begin(); /* no asserts while stderr is silenced */
    wq_qspec sp = spec_of(4, 64);
    sp.dtype = WQ_QDTYPE_NF4;
    st[0] = wq_algo_hqq_quantize(&sp, &ap, "t", W, 1, 64, &m);
    sp = spec_of(0, 64);
    st[1] = wq_algo_hqq_quantize(&sp, &ap, "t", W, 1, 64, &m);
    sp = spec_of(9, 64);
    st[2] = wq_algo_hqq_quantize(&sp, &ap, "t", W, 1, 64, &m);
    sp = spec_of(4, 0);
    st[3] = wq_algo_hqq_quantize(&sp, &ap, "t", W, 1, 64, &m);
    sp = spec_of(4, 64);
    st[4] = wq_algo_hqq_quantize(&sp, NULL, "t", W, 1, 64, &m);
    st[5] = wq_algo_hqq_quantize(&sp, &ap, "t", W, 0, 64, &m);
    ap.hqq_lp_norm = 0.0;
    st[6] = wq_algo_hqq_quantize(&sp, &ap, "t", W, 1, 64, &m);
    ap = hqq_params(false, false, 128);
    ap.hqq_iters = -1;
    st[7] = wq_algo_hqq_quantize(&sp, &ap, "t", W, 1, 64, &m);
    quiet_end(q);
    for (int i = 0; i < 8; i++)
        assert_int_equal(st[i], WQ_ERR_ARG);
    assert_null(m.codes);
    /* iters = 0: initial parameters only */
    ap = hqq_params(false, false, 128);
    ap.hqq_iters = 0;
    float *R = make_w(2, 64, WQ_TEST_SEED + 9);
    wq_algo_hqq_stats hs;
    assert_int_equal(wq_algo_hqq_quantize_stats(&sp, &ap, "t", R, 2, 64, &m, &hs), WQ_OK);
    assert_int_equal(hs.iters_run, 0);
    wq_qmatrix_free(&m);
    expect_matches_ref(R, 2, 64, 64, 4, &ap);
    free(R);
}

/* Every SIMD step/params/codes kernel equals `_ref` bit for bit, over group sizes that exercise
 * partial blocks, flush boundaries, ragged rows, all bit widths (table and division), groups with
 * large residuals (fallback), and p >= 2 (no shortcut). */
static void hqq_kernels_should_match_ref_bit_for_bit(void **state)
{
    (void)state;
    static const int64_t gss[] = {1, 5, 15, 16, 17, 31, 48, 63, 64, 65, 100, 128, 200};
    const int nisa = wq_kern_hqq_isa_count();
    printf("kernels: %d implementation(s), best %s\n", nisa, wq_kern_hqq_isa_name(nisa - 1));
    for (size_t gi = 0; gi < sizeof gss / sizeof gss[0]; gi++)
        for (int bits = 1; bits <= 8; bits++) {
            const int64_t gs = gss[gi], rows = 5, cols = 3 * gs + (gs > 1 ? gs / 2 : 0) + 1;
            float *W = make_w(rows, cols, WQ_TEST_SEED + 13 * gi + bits);
            for (int64_t c = 0; c < cols; c++) /* row 1: large residuals (exact path) */
                W[cols + c] *= 60.0f;
            const int64_t ng = (cols + gs - 1) / gs, nm = rows * ng;
            float *s = malloc(sizeof(float) * nm), *z0 = malloc(sizeof(float) * nm);
            float *s2 = malloc(sizeof(float) * nm), *z2 = malloc(sizeof(float) * nm);
            float *zr = malloc(sizeof(float) * nm), *zi = malloc(sizeof(float) * nm);
            double *xs = malloc(sizeof(double) * nm);
            wq_kern_hqq_params_rows(W, rows, cols, gs, bits, bits == 4, s, z0, xs);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t g = 0; g < ng; g++) {
                    const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs;
                    wq_kern_hqq_params(W + r * cols + off, n, bits, bits == 4, &s2[r * ng + g],
                                       &z2[r * ng + g]);
                    assert_true(xs[r * ng + g] == wq_kern_hqq_sum(W + r * cols + off, n));
                }
            assert_memory_equal(s, s2, sizeof(float) * nm);
            assert_memory_equal(z0, z2, sizeof(float) * nm);
            /* several iterations (beta growing), so the memo skips groups at their fixed point:
             * ref without memo vs every implementation with and without one */
            static const double ps[] = {0.7, 1.0, 2.0};
            double *merr = malloc(sizeof(double) * nm);
            float *mlim = malloc(sizeof(float) * nm), *zm = malloc(sizeof(float) * nm);
            for (int pi = 0; pi < 3; pi++)
                for (int isa = 0; isa < nisa; isa++) {
                    wq_kern_hqq_memo memo = {merr, mlim};
                    wq_kern_hqq_memo_reset(&memo, nm);
                    memcpy(zr, z0, sizeof(float) * nm);
                    memcpy(zi, z0, sizeof(float) * nm);
                    memcpy(zm, z0, sizeof(float) * nm);
                    double beta = 10.0 * (1 + pi);
                    for (int it = 0; it < 12; it++, beta *= 1.05) {
                        wq_kern_hqq_shrink sh;
                        wq_kern_hqq_shrink_init(ps[pi], beta, &sh);
                        const double er =
                            wq_kern_hqq_step_rows_ref(W, rows, cols, gs, bits, s, zr, &sh, NULL);
                        const double ei = wq_kern_hqq_step_rows_isa(isa, W, rows, cols, gs, bits, s,
                                                                    xs, zi, &sh, NULL);
                        const double em = wq_kern_hqq_step_rows_isa(isa, W, rows, cols, gs, bits, s,
                                                                    xs, zm, &sh, &memo);
                        if (ei != er || em != er || memcmp(zi, zr, sizeof(float) * nm) != 0 ||
                            memcmp(zm, zr, sizeof(float) * nm) != 0)
                            printf(
                                "isa %s gs %lld bits %d p %g it %d: err %.17g / %.17g vs %.17g\n",
                                wq_kern_hqq_isa_name(isa), (long long)gs, bits, ps[pi], it, ei, em,
                                er);
                        assert_true(ei == er && em == er);
                        assert_memory_equal(zi, zr, sizeof(float) * nm);
                        assert_memory_equal(zm, zr, sizeof(float) * nm);
                    }
                }
            free(merr);
            free(mlim);
            free(zm);
            uint8_t *c1 = malloc((size_t)(rows * cols)), *c2 = malloc((size_t)(rows * cols));
            wq_kern_hqq_codes_rows(W, rows, cols, gs, bits, s, zr, c1);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t g = 0; g < ng; g++) {
                    const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs;
                    wq_kern_hqq_codes_ref(W + r * cols + off, n, bits, s[r * ng + g],
                                          zr[r * ng + g], c2 + r * cols + off);
                    uint8_t c3[256];
                    wq_kern_hqq_codes(W + r * cols + off, n, bits, s[r * ng + g], zr[r * ng + g],
                                      c3);
                    assert_memory_equal(c3, c2 + r * cols + off, (size_t)n);
                }
            assert_memory_equal(c1, c2, (size_t)(rows * cols));
            free(c1);
            free(c2);
            free(s);
            free(z0);
            free(s2);
            free(z2);
            free(zr);
            free(zi);
            free(xs);
            free(W);
        }
}

/* The threshold shortcut: |e| <= thr gives We = 0 exactly, just below thr over many magnitudes. */
static void hqq_shrink_threshold_should_be_safe(void **state)
{
    (void)state;
    static const double ps[] = {0.01, 0.3, 0.7, 1.0, 1.5, 1.9, 1.999};
    static const double betas[] = {1e-6, 0.5, 10.0, 1e3, 1e12};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        for (size_t j = 0; j < sizeof betas / sizeof betas[0]; j++) {
            wq_kern_hqq_shrink sh;
            wq_kern_hqq_shrink_init(ps[i], betas[j], &sh);
            if (sh.thr < 0.0f) continue;
            float e = sh.thr;
            for (int k = 0; k < 2000 && e > 0.0f; k++) {
                assert_true(wq_kern_hqq_shrink_apply(e, &sh) == 0.0f);
                assert_true(wq_kern_hqq_shrink_apply(-e, &sh) == 0.0f);
                e = nextafterf(e, 0.0f);
            }
            /* and well above it the shrinkage is active */
            const float big = sh.thr * 4.0f + 1e-30f;
            assert_true(wq_kern_hqq_shrink_apply(big, &sh) > 0.0f || !(isfinite(big)));
        }
    wq_kern_hqq_shrink sh;
    wq_kern_hqq_shrink_init(2.0, 10.0, &sh);
    assert_true(sh.thr < 0.0f); /* p >= 2: no shortcut */
    wq_kern_hqq_shrink_init(0.7, INFINITY, &sh);
    assert_true(sh.thr < 0.0f);
    assert_true(wq_kern_hqq_shrink_apply(0.0f, &sh) == 0.0f); /* 0 * inf guarded */
}

typedef struct {
    long live, calls, fail_at;
} alloc_probe;
static alloc_probe g_probe;
static void *probe_malloc(size_t n)
{
    if (g_probe.calls++ == g_probe.fail_at) return NULL;
    void *p = malloc(n ? n : 1);
    if (p) g_probe.live++;
    return p;
}
static void probe_free(void *p)
{
    g_probe.live--;
    free(p);
}

static void hqq_should_return_nomem_without_leaking(void **state)
{
    (void)state;
    float *W = make_w(4, 96, WQ_TEST_SEED + 21);
    wq_qspec sp = spec_of(4, 32);
    wq_algo_params ap = hqq_params(true, true, 4);
    const wq_alloc_hooks hooks = {probe_malloc, probe_free};
    int failures = 0, leaked = 0, wrong = 0, ok = 0;
    int q = quiet_begin(); /* no asserts while stderr is silenced */
    for (long k = 0; k < 100; k++) {
        g_probe = (alloc_probe){0, 0, k};
        wq_alloc_set_hooks(&hooks);
        wq_qmatrix m = {0};
        wq_status st = wq_algo_hqq_quantize(&sp, &ap, "t", W, 4, 96, &m);
        wq_qmatrix_free(&m);
        long live = g_probe.live;
        wq_alloc_set_hooks(NULL);
        leaked += live != 0;
        if (st == WQ_OK) {
            ok = 1;
            break;
        }
        wrong += st != WQ_ERR_NOMEM;
        failures++;
    }
    quiet_end(q);
    assert_int_equal(leaked, 0);
    assert_int_equal(wrong, 0);
    assert_true(ok);
    assert_true(failures >= 2);
    free(W);
}

static void hqq_should_be_deterministic(void **state)
{
    (void)state;
    float *W = make_w(33, 257, WQ_TEST_SEED + 31);
    wq_qspec sp = spec_of(4, 64);
    wq_algo_params ap = hqq_params(true, true, 128);
    wq_qmatrix a = {0}, b = {0};
    assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "t", W, 33, 257, &a), WQ_OK);
    assert_int_equal(wq_algo_hqq_quantize(&sp, &ap, "t", W, 33, 257, &b), WQ_OK);
    assert_memory_equal(a.codes, b.codes, 33 * 257);
    assert_memory_equal(a.zeros, b.zeros, sizeof(float) * 33 * a.ngroups);
    assert_memory_equal(a.scales, b.scales, sizeof(float) * 33 * a.ngroups);
    wq_qmatrix_free(&a);
    wq_qmatrix_free(&b);
    free(W);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hqq_should_match_reference_on_random_matrices),
        cmocka_unit_test(hqq_should_match_reference_with_active_shrinkage),
        cmocka_unit_test(hqq_step_should_match_hand_computation),
        cmocka_unit_test(hqq_should_stop_when_error_stops_improving),
        cmocka_unit_test(hqq_should_beat_rtn_asym_on_outlier_data),
        cmocka_unit_test(hqq_meta_quantization_should_keep_codes),
        cmocka_unit_test(hqq_should_quantize_ragged_last_group_on_its_own),
        cmocka_unit_test(hqq_should_handle_zero_range_groups),
        cmocka_unit_test(hqq_should_reject_nonfinite_weights),
        cmocka_unit_test(hqq_should_reject_bad_arguments),
        cmocka_unit_test(hqq_kernels_should_match_ref_bit_for_bit),
        cmocka_unit_test(hqq_shrink_threshold_should_be_safe),
        cmocka_unit_test(hqq_should_return_nomem_without_leaking),
        cmocka_unit_test(hqq_should_be_deterministic),
    };
    return cmocka_run_group_tests_name("algo_hqq", tests, NULL, NULL);
}
