/* test_kern_quant.c: quantization kernels (src/kernels/kern_quant*.c) against hand-derived cases
 * (numerics.md §1.2 worked example, ties, 1-bit rule, GPTQ quirk), an independent float32
 * transcription of INC's formulas written here (inc_*), double-precision property checks, and
 * brute-force searches; plus fast == _ref bit-exactness for every instruction set this machine
 * runs (wq_kern_isa: ref, generic, sse2, avx2, avx512), not only the one the dispatcher picked. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_half.h"
#include "core/core_qtypes.h"
#include "kernels/kern_quant.h"
#include "kernels/kern_vec.h" /* internal per-ISA loops and drivers, checked against _ref too */
#include "wq_testutil.h"

static const wq_int_scheme k_schemes[4] = {WQ_SCHEME_ASYM, WQ_SCHEME_SYM, WQ_SCHEME_SYM_FULL,
                                           WQ_SCHEME_SYM_GPTQ};
static const wq_qdtype k_f4[3] = {WQ_QDTYPE_NF4, WQ_QDTYPE_FP4_BNB, WQ_QDTYPE_FP4_E2M1};

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
#define assert_float_bits_equal(a, b) assert_int_equal(bits_of(a), bits_of(b))

// ---- Independent transcription of INC (numerics §1.2, §4.4) in float32, one element at a time. --

static void inc_params(const float *x, int64_t n, int bits, wq_int_scheme sc, float q, float *s,
                       float *z)
{
    float mn = x[0], mx = x[0];
    for (int64_t i = 1; i < n; i++) {
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
    }
    if (sc != WQ_SCHEME_ASYM && bits == 1) sc = WQ_SCHEME_SYM_FULL; /* wquant's 1-bit rule */
    if (sc == WQ_SCHEME_ASYM) {
        float maxq = (float)(pow(2.0, bits) - 1.0);
        float wmin = fminf(mn, 0.0f) * q, wmax = fmaxf(mx, 0.0f) * q;
        if (wmin == 0.0f && wmax == 0.0f) wmin = -1.0f, wmax = 1.0f;
        *s = (wmax - wmin) / maxq;
        *z = nearbyintf(-wmin / *s);
        if (*z == 0.0f) *z = 0.0f; /* drop a -0 */
    } else if (sc == WQ_SCHEME_SYM || sc == WQ_SCHEME_SYM_FULL) {
        float amax = fmaxf(fabsf(mx), fabsf(mn)) * q;
        if (amax == 0.0f) amax = 1.0f;
        if (sc == WQ_SCHEME_SYM) {
            *s = amax / (float)(pow(2.0, bits - 1) - 1.0);
        } else {
            *s = amax / (float)pow(2.0, bits - 1);
            if (fabsf(mx) > fabsf(mn)) *s = -*s;
        }
        *z = (float)pow(2.0, bits - 1);
    } else {
        float maxq = (float)(pow(2.0, bits) - 1.0);
        float xmin = fminf(mn, 0.0f), xmax = fmaxf(mx, 0.0f);
        xmax = fmaxf(fabsf(xmin), xmax);
        if (xmin < 0.0f) xmin = -xmax;
        if (xmin == 0.0f && xmax == 0.0f) xmin = -1.0f, xmax = 1.0f;
        xmin *= q;
        xmax *= q;
        *s = (xmax - xmin) / maxq;
        *z = (float)pow(2.0, bits - 1);
    }
}

static uint8_t inc_code(float x, int bits, float s, float z)
{
    float maxq = (float)(pow(2.0, bits) - 1.0);
    float y = x / s;
    if (isnan(y)) return 0;
    float c = nearbyintf(y) + z;
    return (uint8_t)fminf(fmaxf(c, 0.0f), maxq);
}

/* Effective group size as numerics §1.3. */
static int64_t eff_gs(int64_t gs, int64_t cols)
{
    return (gs == -1 || cols < gs) ? cols : gs;
}

/* Property check in double: the code is the nearest grid point to x/s (clamped), allowing either
 * neighbour only when x/s is within 1e-4 of a half-integer (float32 rounding of the quotient). */
static void check_code_property(float x, float s, float z, int bits, uint8_t code)
{
    const double maxq = pow(2.0, bits) - 1.0;
    const double y = (double)x / (double)s;
    const double lo = floor(y), frac = y - lo;
    double want = (frac < 0.5 ? lo : lo + 1.0) + z;
    want = fmin(fmax(want, 0.0), maxq);
    if (fabs(frac - 0.5) < 1e-4) {
        double alt = fmin(fmax((frac < 0.5 ? lo + 1.0 : lo) + z, 0.0), maxq);
        if (code == (uint8_t)alt) return;
    }
    if (code != (uint8_t)want)
        fail_msg("x %.9g s %.9g z %g bits %d: code %d, nearest grid point %g", x, s, z, bits, code,
                 want);
}

static float *bf16_round(const float *x, int64_t n, uint16_t *h)
{
    float *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) {
        h[i] = wq_f32_to_bf16(x[i]);
        y[i] = wq_bf16_to_f32(h[i]);
    }
    return y;
}

// ---- Int: hand-derived cases --------------------------------------------------------------------

static void params_int_should_match_numerics_worked_example(void **state)
{
    (void)state;
    const float g[4] = {0.1f, -0.3f, 0.25f, 0.05f};
    float s, z;
    uint8_t c[4];
    /* sym default: scale 0.3/7, signed codes [2,-7,6,1] stored +8 */
    wq_kern_params_int(g, 4, 4, WQ_SCHEME_SYM, 1.0f, &s, &z);
    assert_float_bits_equal(s, 0.3f / 7.0f);
    assert_true(z == 8.0f);
    wq_kern_quant_int(g, 4, 4, s, z, c);
    assert_memory_equal(c, ((uint8_t[4]){10, 1, 14, 9}), 4);
    /* full range: |max| 0.25 < |min| 0.3 -> positive scale 0.3/8, codes [3,-8,7,1] */
    wq_kern_params_int(g, 4, 4, WQ_SCHEME_SYM_FULL, 1.0f, &s, &z);
    assert_float_bits_equal(s, 0.3f / 8.0f);
    wq_kern_quant_int(g, 4, 4, s, z, c);
    assert_memory_equal(c, ((uint8_t[4]){11, 0, 15, 9}), 4);
    /* asym: scale 0.55/15, zp round(8.18) = 8, codes [11,0,15,9] */
    wq_kern_params_int(g, 4, 4, WQ_SCHEME_ASYM, 1.0f, &s, &z);
    assert_float_bits_equal(s, (0.25f - -0.3f) / 15.0f);
    assert_true(fabs(s - 0.55 / 15) < 1e-8);
    assert_true(z == 8.0f);
    wq_kern_quant_int(g, 4, 4, s, z, c);
    assert_memory_equal(c, ((uint8_t[4]){11, 0, 15, 9}), 4);
    /* dequant of the sym case reproduces signed_code * scale exactly */
    float y[4];
    wq_kern_params_int(g, 4, 4, WQ_SCHEME_SYM, 1.0f, &s, &z);
    wq_kern_quant_int(g, 4, 4, s, z, c);
    wq_kern_dequant_int(c, 4, s, z, y);
    assert_float_bits_equal(y[1], -7.0f * s);
    assert_float_bits_equal(y[2], 6.0f * s);
}

static void quant_int_should_round_half_to_even_on_ties(void **state)
{
    (void)state;
    /* scale 1, zero 8: quotients are exact; x.5 goes to the even neighbour (never away from 0) */
    const float x[8] = {2.5f, -7.5f, 0.5f, -0.5f, 1.5f, 3.5f, -2.5f, 6.5f};
    const uint8_t want[8] = {10, 0, 8, 8, 10, 12, 6, 14};
    uint8_t c[8], r[8];
    wq_kern_quant_int(x, 8, 4, 1.0f, 8.0f, c);
    wq_kern_quant_int_ref(x, 8, 4, 1.0f, 8.0f, r);
    assert_memory_equal(c, want, 8);
    assert_memory_equal(r, want, 8);
    /* 16+ elements so the vector body is used too */
    float xl[32];
    uint8_t cl[32];
    for (int i = 0; i < 32; i++)
        xl[i] = x[i % 8];
    wq_kern_quant_int(xl, 32, 4, 1.0f, 8.0f, cl);
    for (int i = 0; i < 32; i++)
        assert_int_equal(cl[i], want[i % 8]);
    /* through GPTQ sym params: amax 7.5 -> scale 2*7.5/15 = 1: 2.5 -> 2, -7.5 -> -8, 7.5 -> clamp 7
     */
    const float g[3] = {2.5f, -7.5f, 7.5f};
    float s, z;
    wq_kern_params_int(g, 3, 4, WQ_SCHEME_SYM_GPTQ, 1.0f, &s, &z);
    assert_true(s == 1.0f && z == 8.0f);
    wq_kern_quant_int(g, 3, 4, s, z, c);
    assert_memory_equal(c, ((uint8_t[3]){10, 0, 15}), 3);
}

static void params_int_should_handle_all_zero_groups(void **state)
{
    (void)state;
    float x[40] = {0}, y[40];
    uint8_t c[40];
    x[3] = -0.0f;
    for (int bits = 1; bits <= 8; bits++) {
        const float half = (float)(1 << (bits - 1)), maxq = (float)((1 << bits) - 1);
        for (int k = 0; k < 4; k++) {
            float s, z;
            wq_kern_params_int(x, 40, bits, k_schemes[k], 1.0f, &s, &z);
            switch (k_schemes[k]) {
            case WQ_SCHEME_ASYM: /* (-1, +1) */
                assert_float_bits_equal(s, 2.0f / maxq);
                assert_float_bits_equal(z, nearbyintf(1.0f / (2.0f / maxq)));
                break;
            case WQ_SCHEME_SYM: /* amax = 1 */
                assert_float_bits_equal(s, bits == 1 ? 1.0f : 1.0f / (half - 1.0f));
                break;
            case WQ_SCHEME_SYM_FULL:
                assert_float_bits_equal(s, 1.0f / half);
                break;
            default: /* GPTQ: (-1, +1) */
                assert_float_bits_equal(s, bits == 1 ? 1.0f : 2.0f / maxq);
            }
            if (k_schemes[k] != WQ_SCHEME_ASYM) assert_true(z == half);
            wq_kern_quant_int(x, 40, bits, s, z, c);
            wq_kern_dequant_int(c, 40, s, z, y);
            for (int i = 0; i < 40; i++) {
                assert_int_equal(c[i], (int)z);
                assert_true(y[i] == 0.0f);
            }
        }
    }
}

/* gs = 1: every element is its own group. Documented consequences of INC's formulas. */
static void params_int_should_handle_single_element_groups(void **state)
{
    (void)state;
    const float v[4] = {0.75f, -0.75f, 3e-5f, -2.0f};
    for (int i = 0; i < 4; i++) {
        float s, z, y;
        uint8_t c;
        /* asym: range [min(x,0), max(x,0)] -> the element is an end point, reconstructed to ~1 ulp
         */
        wq_kern_params_int(&v[i], 1, 4, WQ_SCHEME_ASYM, 1.0f, &s, &z);
        wq_kern_quant_int(&v[i], 1, 4, s, z, &c);
        wq_kern_dequant_int(&c, 1, s, z, &y);
        assert_int_equal(c, v[i] > 0 ? 15 : 0);
        assert_true(wq_test_ulp_diff(y, v[i]) <= 2);
        /* sym: code +-7, reconstructed to ~1 ulp */
        wq_kern_params_int(&v[i], 1, 4, WQ_SCHEME_SYM, 1.0f, &s, &z);
        wq_kern_quant_int(&v[i], 1, 4, s, z, &c);
        wq_kern_dequant_int(&c, 1, s, z, &y);
        assert_int_equal(c, v[i] > 0 ? 15 : 1);
        assert_true(wq_test_ulp_diff(y, v[i]) <= 2);
        /* full range: |max| == |min| so no flip; a positive element lands on +8 -> clamped to 7 */
        wq_kern_params_int(&v[i], 1, 4, WQ_SCHEME_SYM_FULL, 1.0f, &s, &z);
        assert_true(s > 0.0f);
        wq_kern_quant_int(&v[i], 1, 4, s, z, &c);
        wq_kern_dequant_int(&c, 1, s, z, &y);
        if (v[i] > 0) {
            assert_int_equal(c, 15);
            assert_float_bits_equal(y, 7.0f * s);
        } else {
            assert_int_equal(c, 0);
            assert_float_bits_equal(y, -8.0f * s);
        }
    }
}

static void params_int_should_apply_one_bit_rule(void **state)
{
    (void)state;
    /* every symmetric scheme at 1 bit: full-range sign trick, zero 1 */
    const float a[2] = {0.3f, -0.1f}, b[3] = {-0.4f, 0.1f, 0.25f};
    for (int k = 1; k < 4; k++) {
        float s, z, y[3];
        uint8_t c[3];
        wq_kern_params_int(a, 2, 1, k_schemes[k], 1.0f, &s, &z);
        assert_float_bits_equal(s, -0.3f);
        assert_true(z == 1.0f);
        wq_kern_quant_int(a, 2, 1, s, z, c);
        wq_kern_dequant_int(c, 2, s, z, y);
        assert_memory_equal(c, ((uint8_t[2]){0, 1}), 2);
        assert_float_bits_equal(y[0], 0.3f);
        assert_true(y[1] == 0.0f);
        wq_kern_params_int(b, 3, 1, k_schemes[k], 1.0f, &s, &z);
        assert_float_bits_equal(s, 0.4f);
        wq_kern_quant_int(b, 3, 1, s, z, c);
        wq_kern_dequant_int(c, 3, s, z, y);
        assert_memory_equal(c, ((uint8_t[3]){0, 1, 1}), 3);
        assert_float_bits_equal(y[0], -0.4f);
    }
    /* asym 1 bit: maxq 1, scale 0.4, zp round(0.25) = 0 */
    float s, z;
    uint8_t c[2];
    wq_kern_params_int(a, 2, 1, WQ_SCHEME_ASYM, 1.0f, &s, &z);
    assert_float_bits_equal(s, 0.3f - -0.1f);
    assert_true(z == 0.0f);
    wq_kern_quant_int(a, 2, 1, s, z, c);
    assert_memory_equal(c, ((uint8_t[2]){1, 0}), 2);
}

static void params_int_should_keep_gptq_xmin_zero_quirk(void **state)
{
    (void)state;
    const float pos[3] = {0.0f, 0.5f, 1.0f}, mixed[2] = {-0.2f, 1.0f};
    float s, z;
    uint8_t c[3];
    wq_kern_params_int(pos, 3, 4, WQ_SCHEME_SYM_GPTQ, 1.0f, &s, &z);
    assert_float_bits_equal(s, 1.0f / 15.0f); /* xmin stays 0: half the usual scale */
    assert_true(z == 8.0f);
    wq_kern_quant_int(pos, 3, 4, s, z, c);
    assert_memory_equal(c, ((uint8_t[3]){8, 15, 15}), 3); /* 0.5 -> 7.5 -> 8 (+8) clamps */
    wq_kern_params_int(mixed, 2, 4, WQ_SCHEME_SYM_GPTQ, 1.0f, &s, &z);
    assert_float_bits_equal(s, 2.0f / 15.0f);
    /* quantile multiplies both ends after the sym adjustment */
    wq_kern_params_int(mixed, 2, 4, WQ_SCHEME_SYM_GPTQ, 0.5f, &s, &z);
    assert_float_bits_equal(s, (0.5f - -0.5f) / 15.0f);
}

static void quant_int_should_map_nan_quotient_to_zero_and_inf_to_ends(void **state)
{
    (void)state;
    float x[20] = {0};
    x[1] = 1.0f;
    x[2] = -1.0f;
    x[17] = 1.0f;
    x[18] = -1.0f;
    uint8_t c[20], r[20];
    wq_kern_quant_int(x, 20, 4, 0.0f, 8.0f, c); /* scale 0: 0/0 NaN -> 0, +-inf -> ends */
    wq_kern_quant_int_ref(x, 20, 4, 0.0f, 8.0f, r);
    assert_memory_equal(c, r, 20);
    assert_int_equal(c[0], 0);
    assert_int_equal(c[1], 15);
    assert_int_equal(c[2], 0);
    assert_int_equal(c[17], 15);
    assert_int_equal(c[18], 0);
    /* huge quotients clamp */
    const float big[17] = {3e38f,  -3e38f, 1e10f,  -1e10f, 5e6f,  -5e6f,  300.0f,  -300.0f, 3e38f,
                           -3e38f, 1e10f,  -1e10f, 5e6f,   -5e6f, 300.0f, -300.0f, 1e30f};
    wq_kern_quant_int(big, 17, 8, 1e-3f, 128.0f, c);
    wq_kern_quant_int_ref(big, 17, 8, 1e-3f, 128.0f, r);
    assert_memory_equal(c, r, 17);
    for (int i = 0; i < 16; i++)
        assert_int_equal(c[i], i % 2 ? 0 : 255);
}

// ---- Int: sweeps --------------------------------------------------------------------------------

/* Every available ISA: the f32 row kernel on x and the fused bf16 row kernel on h (xb = h widened)
 * equal the `_ref` row bit for bit (codes, scales, zeros). */
static void check_rows_every_isa(const float *x, const uint16_t *h, const float *xb, int64_t cols,
                                 int64_t gs, int bits, wq_int_scheme sc, float q, uint64_t seed)
{
    const int64_t ng = (cols + gs - 1) / gs;
    uint8_t *cr = malloc((size_t)cols), *cbr = malloc((size_t)cols), *c = malloc((size_t)cols);
    float *sr = malloc((size_t)ng * 4), *zr = malloc((size_t)ng * 4), *sbr = malloc((size_t)ng * 4),
          *zbr = malloc((size_t)ng * 4), *s = malloc((size_t)ng * 4), *z = malloc((size_t)ng * 4);
    wq_kern_quant_row_int_ref(x, cols, gs, bits, sc, q, cr, sr, zr);
    wq_kern_quant_row_int_ref(xb, cols, gs, bits, sc, q, cbr, sbr, zbr);
    for (int isa = 0; isa < WQ_KERN_ISA_COUNT; isa++) {
        const wq__kern_ops *ops = wq__kern_ops_for((wq_kern_isa)isa);
        if (!ops) continue;
        for (int bf = 0; bf <= 1; bf++) {
            memset(c, 0xAA, (size_t)cols);
            if (bf)
                wq__kern_quant_row_int_bf16_ops(ops, h, cols, gs, bits, sc, q, c, s, z);
            else
                wq__kern_quant_row_int_ops(ops, x, cols, gs, bits, sc, q, c, s, z);
            const uint8_t *wc = bf ? cbr : cr;
            const float *ws = bf ? sbr : sr, *wz = bf ? zbr : zr;
            int bad = memcmp(c, wc, (size_t)cols) != 0;
            for (int64_t g = 0; g < ng; g++)
                bad |= bits_of(s[g]) != bits_of(ws[g]) || bits_of(z[g]) != bits_of(wz[g]);
            if (bad)
                fail_msg("%s %s row != _ref: bits %d scheme %d gs %lld cols %lld seed %llx",
                         wq_kern_isa_name((wq_kern_isa)isa), bf ? "bf16" : "f32", bits, (int)sc,
                         (long long)gs, (long long)cols, (unsigned long long)seed);
        }
    }
    free(cr);
    free(cbr);
    free(c);
    free(sr);
    free(zr);
    free(sbr);
    free(zbr);
    free(s);
    free(z);
}

/* Every bits 1..8 x scheme x group size {-1, 1, 32, 64, 128, 172} x cols {172, 256} (172/32 and
 * 256/172 give ragged last groups) x quantile {1, 0.9}: fast row == _ref row == INC transcription,
 * bf16 fused row == f32 row on the widened data, group scales as in a standalone group call, and
 * the codes are the nearest grid points (double check); and the same rows through every available
 * ISA equal _ref bit for bit (check_rows_every_isa). */
static void quant_row_int_should_match_ref_and_inc_everywhere(void **state)
{
    (void)state;
    static const int64_t gss[] = {-1, 1, 32, 64, 128, 172};
    static const int64_t colss[] = {172, 256};
    static const float qs[] = {1.0f, 0.9f};
    for (size_t ci = 0; ci < 2; ci++) {
        const int64_t cols = colss[ci];
        float *x = malloc((size_t)cols * sizeof *x);
        uint16_t *h = malloc((size_t)cols * 2);
        uint8_t *cf = malloc((size_t)cols), *cr = malloc((size_t)cols), *cb = malloc((size_t)cols);
        for (int bits = 1; bits <= 8; bits++)
            for (int k = 0; k < 4; k++)
                for (size_t gi = 0; gi < sizeof gss / sizeof *gss; gi++)
                    for (int qi = 0; qi < 2; qi++) {
                        const uint64_t seed = WQ_TEST_SEED + (uint64_t)(bits * 7919 + k * 131 +
                                                                        gi * 17 + ci * 3 + qi);
                        wq_test_fill_normal(x, (size_t)cols, 0.02f, seed);
                        if (gi == 2) x[5] = 0.5f; /* an outlier in one group */
                        if (k == 3 && gi == 3)
                            for (int64_t i = 0; i < 64; i++)
                                x[i] = fabsf(x[i]);
                        float *xb = bf16_round(x, cols, h);
                        const int64_t gs = eff_gs(gss[gi], cols), ng = (cols + gs - 1) / gs;
                        float sf[256], zf[256], sr[256], zr[256], sb[256], zb[256];
                        wq_kern_quant_row_int(x, cols, gs, bits, k_schemes[k], qs[qi], cf, sf, zf);
                        wq_kern_quant_row_int_ref(x, cols, gs, bits, k_schemes[k], qs[qi], cr, sr,
                                                  zr);
                        for (int64_t g = 0; g < ng; g++) {
                            const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs;
                            float si, zi;
                            inc_params(x + off, n, bits, k_schemes[k], qs[qi], &si, &zi);
                            if (bits_of(sf[g]) != bits_of(si) || bits_of(sr[g]) != bits_of(si) ||
                                zf[g] != zi || zr[g] != zi)
                                fail_msg("params: bits %d scheme %d gs %lld g %lld seed %llx", bits,
                                         k, (long long)gs, (long long)g, (unsigned long long)seed);
                            float s1, z1;
                            wq_kern_params_int(x + off, n, bits, k_schemes[k], qs[qi], &s1, &z1);
                            assert_float_bits_equal(s1, sf[g]);
                            for (int64_t i = off; i < off + n; i++) {
                                if (cf[i] != cr[i] || cf[i] != inc_code(x[i], bits, si, zi))
                                    fail_msg("codes: bits %d scheme %d gs %lld i %lld seed %llx",
                                             bits, k, (long long)gs, (long long)i,
                                             (unsigned long long)seed);
                                check_code_property(x[i], sf[g], zf[g], bits, cf[i]);
                            }
                        }
                        /* bf16 fused row == f32 kernels on the widened values */
                        wq_kern_quant_row_int_bf16(h, cols, gs, bits, k_schemes[k], qs[qi], cb, sb,
                                                   zb);
                        wq_kern_quant_row_int_ref(xb, cols, gs, bits, k_schemes[k], qs[qi], cr, sr,
                                                  zr);
                        assert_memory_equal(cb, cr, (size_t)cols);
                        for (int64_t g = 0; g < ng; g++) {
                            assert_float_bits_equal(sb[g], sr[g]);
                            assert_float_bits_equal(zb[g], zr[g]);
                        }
                        check_rows_every_isa(x, h, xb, cols, gs, bits, k_schemes[k], qs[qi], seed);
                        free(xb);
                    }
        free(x);
        free(h);
        free(cf);
        free(cr);
        free(cb);
    }
}

/* The loops of every available ISA (ref, portable, SSE2, AVX2, AVX-512) equal _ref on random data
 * with every length 1..200 (64/32/16-wide bodies, scalar and masked tails). */
static void isa_loops_should_equal_ref(void **state)
{
    (void)state;
    enum { N = 200 };
    float x[N], y[N];
    uint16_t h[N];
    uint8_t a[N], b[N];
    for (int n = 1; n <= N; n++) {
        wq_test_fill_normal(x, N, 1.0f, WQ_TEST_SEED + (uint64_t)n);
        if (n % 5 == 0) x[n - 1] = -0.0f;
        if (n % 7 == 0) x[n / 2] = 0.0f;
        for (int i = 0; i < N; i++) {
            h[i] = wq_f32_to_bf16(x[i]);
            y[i] = wq_bf16_to_f32(h[i]);
        }
        float mn = x[0], mx = x[0], bmn = y[0], bmx = y[0];
        for (int i = 1; i < n; i++) {
            mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
            bmn = fminf(bmn, y[i]), bmx = fmaxf(bmx, y[i]);
        }
        for (int isa = 0; isa < WQ_KERN_ISA_COUNT; isa++) {
            const wq__kern_ops *ops = wq__kern_ops_for((wq_kern_isa)isa);
            if (!ops) continue;
            const char *name = wq_kern_isa_name((wq_kern_isa)isa);
            float m1, m2;
            ops->minmax_f32(x, n, &m1, &m2);
            if (!(m1 == mn && m2 == mx)) fail_msg("%s minmax_f32 n %d", name, n);
            ops->minmax_bf16(h, n, &m1, &m2);
            if (!(m1 == bmn && m2 == bmx)) fail_msg("%s minmax_bf16 n %d", name, n);
            for (int bits = 1; bits <= 8; bits++) {
                const float s = 2.5f / (float)(1 << bits), z = (float)(1 << (bits - 1));
                wq_kern_quant_int_ref(x, n, bits, s, z, a);
                memset(b, 0xAA, sizeof b);
                ops->quant_f32(x, n, bits, s, z, b);
                if (memcmp(a, b, (size_t)n) != 0 || (n < N && b[n] != 0xAA))
                    fail_msg("%s quant_f32 n %d bits %d", name, n, bits);
                wq_kern_quant_int_ref(y, n, bits, s, z, a);
                memset(b, 0xAA, sizeof b);
                ops->quant_bf16(h, n, bits, s, z, b);
                if (memcmp(a, b, (size_t)n) != 0 || (n < N && b[n] != 0xAA))
                    fail_msg("%s quant_bf16 n %d bits %d", name, n, bits);
            }
        }
    }
}

/* Ties and special quotients through every ISA: x = (m + 1/2) * s exactly (s a power of two), x
 * rounded to a near-tie for s = 0.3 (fl(x/s) may or may not be a tie), signed zeros, huge values,
 * +-inf quotients and NaN quotients (scale 0): codes equal _ref, for every length 1..130. */
static void isa_loops_should_equal_ref_on_ties_and_specials(void **state)
{
    (void)state;
    enum { N = 130 };
    float x[N], y[N];
    uint16_t h[N];
    uint8_t a[N], b[N];
    wq_test_rng r = {WQ_TEST_SEED};
    static const float scales[4] = {0.25f, 0.3f, 1e-3f, 0.0f};
    for (int si = 0; si < 4; si++)
        for (int bits = 1; bits <= 8; bits++) {
            const float s = scales[si], z = (float)((1 << bits) / 2);
            const int span = 1 << bits;
            for (int i = 0; i < N; i++) {
                const int m = (int)(wq_test_next(&r) % (uint64_t)(2 * span + 1)) - span;
                switch (i % 8) {
                case 6:
                    x[i] = i % 16 == 6 ? -0.0f : 0.0f;
                    break;
                case 7:
                    x[i] = i % 3 == 0 ? 3e38f : (i % 3 == 1 ? -1e30f : 70000.0f);
                    break;
                default:
                    x[i] = ((float)m + 0.5f) * (si == 1 ? 0.3f : 0.25f);
                }
                h[i] = (uint16_t)(kv_f2u(x[i]) >> 16); /* truncate: keeps small ties exact */
                y[i] = kv_u2f((uint32_t)h[i] << 16);
            }
            for (int n = 1; n <= N; n++)
                for (int isa = 0; isa < WQ_KERN_ISA_COUNT; isa++) {
                    const wq__kern_ops *ops = wq__kern_ops_for((wq_kern_isa)isa);
                    if (!ops) continue;
                    wq_kern_quant_int_ref(x, n, bits, s, z, a);
                    ops->quant_f32(x, n, bits, s, z, b);
                    if (memcmp(a, b, (size_t)n) != 0)
                        fail_msg("%s quant_f32 ties: s %g bits %d n %d",
                                 wq_kern_isa_name((wq_kern_isa)isa), s, bits, n);
                    wq_kern_quant_int_ref(y, n, bits, s, z, a);
                    ops->quant_bf16(h, n, bits, s, z, b);
                    if (memcmp(a, b, (size_t)n) != 0)
                        fail_msg("%s quant_bf16 ties: s %g bits %d n %d",
                                 wq_kern_isa_name((wq_kern_isa)isa), s, bits, n);
                }
        }
}

/* The dispatcher: ref/generic always exist, names round-trip, and the active set is the one the
 * rule in kern_quant.h gives for this CPU and WQ_KERNEL_ISA (ctest also runs this binary once per
 * set name through the environment, tests/kernels.cmake). */
static void isa_dispatch_should_follow_cpu_and_env(void **state)
{
    (void)state;
    assert_true(wq_kern_isa_available(WQ_KERN_ISA_REF));
    assert_true(wq_kern_isa_available(WQ_KERN_ISA_GENERIC));
    assert_false(wq_kern_isa_available(WQ_KERN_ISA_COUNT));
    assert_string_equal(wq_kern_isa_name(WQ_KERN_ISA_AVX512), "avx512");
    int want = WQ_KERN_ISA_COUNT - 1;
    const char *env = getenv("WQ_KERNEL_ISA");
    for (int i = 0; env && i < WQ_KERN_ISA_COUNT; i++)
        if (strcmp(env, wq_kern_isa_name((wq_kern_isa)i)) == 0) want = i;
    while (want > WQ_KERN_ISA_GENERIC && !wq_kern_isa_available((wq_kern_isa)want))
        want--;
    const wq_kern_isa got = wq_kern_isa_active();
    if ((int)got != want)
        fail_msg("active ISA %s, expected %s (WQ_KERNEL_ISA=%s)", wq_kern_isa_name(got),
                 wq_kern_isa_name((wq_kern_isa)want), env ? env : "");
    assert_ptr_equal(wq__kern_ops_active(), wq__kern_ops_for(got));
    assert_int_equal(wq__kern_ops_active()->isa, got);
#if WQ_KERN_HAVE_SSE2
    assert_true(wq_kern_isa_available(WQ_KERN_ISA_SSE2));
#endif
}

static void quant_row_should_make_smaller_last_group(void **state)
{
    (void)state;
    enum { COLS = 172, GS = 32 };
    float x[COLS], s[6], z[6];
    uint8_t c[COLS];
    wq_test_fill_normal(x, COLS, 1.0f, WQ_TEST_SEED);
    x[170] = 50.0f; /* only the tail group sees it */
    wq_kern_quant_row_int(x, COLS, GS, 4, WQ_SCHEME_ASYM, 1.0f, c, s, z);
    float st, zt;
    inc_params(x + 160, 12, 4, WQ_SCHEME_ASYM, 1.0f, &st, &zt);
    assert_float_bits_equal(s[5], st);
    assert_true(z[5] == zt);
    assert_true(s[4] < s[5] / 2.0f); /* the outlier did not leak into group 4 */
    /* a matrix of that shape has 6 groups per row */
    wq_qspec spec = wq_qspec_default();
    spec.group_size = GS;
    wq_qmatrix m = {0};
    assert_int_equal(wq_qmatrix_init(&m, 1, COLS, wq_qspec_group_size(&spec, COLS), spec.dtype, 4),
                     WQ_OK);
    assert_int_equal(m.ngroups, 6);
    wq_qmatrix_free(&m);
}

// ---- nf4 / fp4 ----------------------------------------------------------------------------------

/* Tables as numerics §2.1 lists them: ascending float64 values and the INC code of each. */
static const double k_nf4_v[16] = {-1.0,
                                   -0.6961928009986877,
                                   -0.5250730514526367,
                                   -0.39491748809814453,
                                   -0.28444138169288635,
                                   -0.18477343022823334,
                                   -0.09105003625154495,
                                   0.0,
                                   0.07958029955625534,
                                   0.16093020141124725,
                                   0.24611230194568634,
                                   0.33791524171829224,
                                   0.44070982933044434,
                                   0.5626170039176941,
                                   0.7229568362236023,
                                   1.0};
static const int k_nf4_code[16] = {7, 1, 2, 3, 4, 5, 6, 0, -8, -7, -6, -5, -4, -3, -2, -1};
static const double k_bnb_v[15] = {-12, -8, -6, -4, -3, -2, -0.0625, 0, 0.0625, 2, 3, 4, 6, 8, 12};
static const int k_bnb_code[15] = {-5, -6, -3, -4, -1, -2, -7, 0, 1, 6, 7, 4, 5, 2, 3};
static const double k_e2m1_v[15] = {-1.0,     -2.0 / 3,  -0.5, -1.0 / 3, -0.25,
                                    -1.0 / 6, -1.0 / 96, 0.0,  1.0 / 96, 1.0 / 6,
                                    0.25,     1.0 / 3,   0.5,  2.0 / 3,  1.0};
static const int k_e2m1_code[15] = {-1, -2, -3, -4, -5, -6, -7, 0, 1, 2, 3, 4, 5, 6, 7};

static void table_of(wq_qdtype t, const double **v, const int **code, int *n, double *tmax)
{
    if (t == WQ_QDTYPE_NF4)
        *v = k_nf4_v, *code = k_nf4_code, *n = 16, *tmax = 1.0;
    else if (t == WQ_QDTYPE_FP4_BNB)
        *v = k_bnb_v, *code = k_bnb_code, *n = 15, *tmax = 12.0;
    else
        *v = k_e2m1_v, *code = k_e2m1_code, *n = 15, *tmax = 1.0;
}

static void f4_should_map_table_values_to_inc_nibbles(void **state)
{
    (void)state;
    for (int t = 0; t < 3; t++) {
        const double *v;
        const int *code;
        int n;
        double tmax;
        table_of(k_f4[t], &v, &code, &n, &tmax);
        assert_true(wq_kern_f4_max(k_f4[t]) == (float)tmax);
        const float *lut = wq_kern_f4_table(k_f4[t]);
        for (int k = 0; k < n; k++) {
            const float x = (float)v[k];
            const uint8_t want = (uint8_t)(code[k] & 15);
            uint8_t c, r;
            wq_kern_quant_f4(&x, 1, k_f4[t], 1.0f, &c);
            wq_kern_quant_f4_ref(&x, 1, k_f4[t], 1.0f, &r);
            assert_int_equal(c, want);
            assert_int_equal(r, want);
            assert_int_equal(wq_kern_code_f4(x, k_f4[t], 1.0f), want);
            assert_float_bits_equal(lut[want], x == 0.0f ? 0.0f : x);
        }
    }
    /* spot values from the numerics table */
    assert_true(wq_kern_f4_table(WQ_QDTYPE_NF4)[0x7] == -1.0f);
    assert_true(wq_kern_f4_table(WQ_QDTYPE_NF4)[0x0] == 0.0f);
    assert_true(wq_kern_f4_table(WQ_QDTYPE_FP4_BNB)[0xB] == -12.0f);
    assert_true(wq_kern_f4_table(WQ_QDTYPE_FP4_BNB)[0x2] == 8.0f);
    assert_true(wq_kern_f4_table(WQ_QDTYPE_FP4_E2M1)[0x9] == (float)(-1.0 / 96));
    assert_true(wq_kern_f4_table(WQ_QDTYPE_FP4_BNB)[0x8] == 0.0f);
}

/* y exactly on a float32 midpoint goes to the lower value; the next float up to the upper one. */
static void f4_should_send_midpoint_ties_to_lower_value(void **state)
{
    (void)state;
    for (int t = 0; t < 3; t++) {
        const double *v;
        const int *code;
        int n;
        double tmax;
        table_of(k_f4[t], &v, &code, &n, &tmax);
        float xs[64];
        uint8_t want[64], c[64], r[64];
        int m = 0;
        for (int k = 0; k + 1 < n; k++) {
            const float mid = (float)((v[k] + v[k + 1]) / 2.0);
            xs[m] = mid, want[m++] = (uint8_t)(code[k] & 15);
            xs[m] = nextafterf(mid, INFINITY), want[m++] = (uint8_t)(code[k + 1] & 15);
            xs[m] = nextafterf(mid, -INFINITY), want[m++] = (uint8_t)(code[k] & 15);
        }
        xs[m] = (float)(v[0] * 3), want[m++] = (uint8_t)(code[0] & 15);         /* below all */
        xs[m] = (float)(v[n - 1] * 3), want[m++] = (uint8_t)(code[n - 1] & 15); /* above all */
        wq_kern_quant_f4(xs, m, k_f4[t], 1.0f, c);
        wq_kern_quant_f4_ref(xs, m, k_f4[t], 1.0f, r);
        assert_memory_equal(c, want, (size_t)m);
        assert_memory_equal(r, want, (size_t)m);
    }
}

/* Random groups: scale = absmax*q/max(table); fast == ref; the chosen value is the nearest table
 * value to x/scale (double brute force) whenever that nearest value is unique by a margin;
 * dequant = table * scale. */
static void f4_should_pick_nearest_value_and_match_ref(void **state)
{
    (void)state;
    enum { N = 333 };
    float x[N], y[N];
    uint8_t c[N], r[N];
    for (int t = 0; t < 3; t++) {
        const double *v;
        const int *code;
        int n;
        double tmax;
        table_of(k_f4[t], &v, &code, &n, &tmax);
        for (int qi = 0; qi < 2; qi++) {
            const float q = qi ? 0.9f : 1.0f;
            wq_test_fill_normal(x, N, 0.05f, WQ_TEST_SEED + (uint64_t)(t * 2 + qi));
            float s;
            wq_kern_params_f4(x, N, k_f4[t], q, &s);
            float amax = 0;
            for (int i = 0; i < N; i++)
                amax = fmaxf(amax, fabsf(x[i]));
            assert_float_bits_equal(s, amax * q / (float)tmax);
            wq_kern_quant_f4(x, N, k_f4[t], s, c);
            wq_kern_quant_f4_ref(x, N, k_f4[t], s, r);
            assert_memory_equal(c, r, N);
            wq_kern_dequant_f4(c, N, k_f4[t], s, y);
            for (int i = 0; i < N; i++) {
                const double yy = (double)x[i] / s;
                int best = 0, second = -1;
                for (int k = 1; k < n; k++) {
                    if (fabs(yy - v[k]) < fabs(yy - v[best]))
                        second = best, best = k;
                    else if (second < 0 || fabs(yy - v[k]) < fabs(yy - v[second]))
                        second = k;
                }
                if (fabs(fabs(yy - v[best]) - fabs(yy - v[second])) > 1e-5 * (1.0 + fabs(yy)))
                    assert_int_equal(c[i], code[best] & 15);
                assert_float_bits_equal(y[i], wq_kern_f4_table(k_f4[t])[c[i]] * s);
            }
        }
    }
}

static void f4_should_zero_all_zero_group(void **state)
{
    (void)state;
    float x[40] = {0}, y[40];
    uint8_t c[40], r[40];
    x[7] = -0.0f;
    for (int t = 0; t < 3; t++) {
        float s = 1.0f;
        wq_kern_params_f4(x, 40, k_f4[t], 1.0f, &s);
        assert_true(s == 0.0f);
        memset(c, 0xFF, sizeof c);
        wq_kern_quant_f4(x, 40, k_f4[t], s, c);
        wq_kern_quant_f4_ref(x, 40, k_f4[t], s, r);
        wq_kern_dequant_f4(c, 40, k_f4[t], s, y);
        for (int i = 0; i < 40; i++) {
            assert_int_equal(c[i], 0);
            assert_int_equal(r[i], 0);
            assert_true(y[i] == 0.0f);
        }
    }
}

// ---- Matrices -----------------------------------------------------------------------------------

static void quant_matrix_should_match_ref_and_bound_error(void **state)
{
    (void)state;
    enum { ROWS = 5, COLS = 172 };
    float W[ROWS * COLS], D[ROWS * COLS];
    wq_test_fill_normal(W, ROWS * COLS, 0.02f, WQ_TEST_SEED);
    const wq_qdtype dts[4] = {WQ_QDTYPE_INT, WQ_QDTYPE_NF4, WQ_QDTYPE_FP4_BNB, WQ_QDTYPE_FP4_E2M1};
    static const int64_t gss[] = {-1, 1, 32, 64, 128};
    for (int d = 0; d < 4; d++)
        for (int variant = 0; variant < 3; variant++) /* int: asym, sym, sym full range */
            for (size_t gi = 0; gi < sizeof gss / sizeof *gss; gi++) {
                if (d > 0 && variant > 0) continue;
                wq_qspec spec = wq_qspec_default();
                spec.dtype = dts[d];
                spec.bits = 4;
                spec.group_size = gss[gi];
                spec.sym = variant != 0;
                spec.full_range = variant == 2;
                const int64_t gs = wq_qspec_group_size(&spec, COLS);
                wq_qmatrix a = {0}, b = {0};
                assert_int_equal(wq_qmatrix_init(&a, ROWS, COLS, gs, spec.dtype, 4), WQ_OK);
                assert_int_equal(wq_qmatrix_init(&b, ROWS, COLS, gs, spec.dtype, 4), WQ_OK);
                wq_kern_quant_matrix(W, &spec, 1.0f, &a);
                wq_kern_quant_matrix_ref(W, &spec, 1.0f, &b);
                assert_memory_equal(a.codes, b.codes, ROWS * COLS);
                assert_memory_equal(a.scales, b.scales, (size_t)(ROWS * a.ngroups) * 4);
                if (d == 0) assert_memory_equal(a.zeros, b.zeros, (size_t)(ROWS * a.ngroups) * 4);
                wq_kern_dequant_matrix(&a, D);
                for (int64_t o = 0; o < ROWS; o++)
                    for (int64_t c = 0; c < COLS; c++) {
                        const float s = fabsf(a.scales[o * a.ngroups + c / gs]);
                        const double err = fabs((double)W[o * COLS + c] - D[o * COLS + c]);
                        /* int: half a step (full range: a positive max may clamp by one step);
                         * nf4/fp4: half the largest gap between table values, in scale units */
                        double bound = (variant == 2 ? 1.0 : 0.5) * s;
                        if (d > 0) {
                            const double *v;
                            const int *code;
                            int n;
                            double tmax, gap = 0;
                            table_of(dts[d], &v, &code, &n, &tmax);
                            for (int k = 0; k + 1 < n; k++)
                                gap = fmax(gap, v[k + 1] - v[k]);
                            bound = gap / 2 * s;
                        }
                        if (err > bound * (1 + 1e-5) + 1e-12)
                            fail_msg("dtype %d variant %d gs %lld [%lld,%lld]: err %g > %g", d,
                                     variant, (long long)gs, (long long)o, (long long)c, err,
                                     bound);
                    }
                wq_qmatrix_free(&a);
                wq_qmatrix_free(&b);
            }
}

static void quant_matrix_scheme_should_use_the_given_scheme(void **state)
{
    (void)state;
    enum { ROWS = 3, COLS = 100, GS = 32 };
    float W[ROWS * COLS];
    wq_test_fill_normal(W, ROWS * COLS, 1.0f, WQ_TEST_SEED);
    wq_qmatrix m = {0};
    assert_int_equal(wq_qmatrix_init(&m, ROWS, COLS, GS, WQ_QDTYPE_INT, 3), WQ_OK);
    wq_kern_quant_matrix_scheme(W, WQ_SCHEME_SYM_GPTQ, 1.0f, &m);
    uint8_t c[COLS];
    float s[4], z[4];
    for (int o = 0; o < ROWS; o++) {
        wq_kern_quant_row_int_ref(W + o * COLS, COLS, GS, 3, WQ_SCHEME_SYM_GPTQ, 1.0f, c, s, z);
        assert_memory_equal(m.codes + o * COLS, c, COLS);
        assert_memory_equal(m.scales + o * 4, s, sizeof s);
        for (int g = 0; g < 4; g++)
            assert_true(m.zeros[o * 4 + g] == 4.0f);
    }
    wq_qmatrix_free(&m);
}

static void dequant_matrix_should_honour_g_idx(void **state)
{
    (void)state;
    enum { ROWS = 2, COLS = 6, GS = 2 };
    wq_qmatrix m = {0};
    assert_int_equal(wq_qmatrix_init(&m, ROWS, COLS, GS, WQ_QDTYPE_INT, 4), WQ_OK);
    assert_int_equal(wq_qmatrix_alloc_gidx(&m), WQ_OK);
    const int32_t gidx[COLS] = {2, 0, 1, 2, 0, 1};
    memcpy(m.g_idx, gidx, sizeof gidx);
    for (int i = 0; i < ROWS * COLS; i++)
        m.codes[i] = (uint8_t)(i % 16);
    for (int i = 0; i < ROWS * 3; i++) {
        m.scales[i] = 0.5f * (float)(i + 1);
        m.zeros[i] = (float)(i + 3);
    }
    float W[ROWS * COLS];
    wq_kern_dequant_matrix(&m, W);
    for (int o = 0; o < ROWS; o++)
        for (int c = 0; c < COLS; c++) {
            const int g = gidx[c];
            assert_float_bits_equal(W[o * COLS + c],
                                    ((float)m.codes[o * COLS + c] - m.zeros[o * 3 + g]) *
                                        m.scales[o * 3 + g]);
        }
    /* nf4 through g_idx as well */
    wq_qmatrix f = {0};
    assert_int_equal(wq_qmatrix_init(&f, 1, COLS, GS, WQ_QDTYPE_NF4, 4), WQ_OK);
    assert_int_equal(wq_qmatrix_alloc_gidx(&f), WQ_OK);
    memcpy(f.g_idx, gidx, sizeof gidx);
    for (int c = 0; c < COLS; c++)
        f.codes[c] = (uint8_t)(c + 5);
    for (int g = 0; g < 3; g++)
        f.scales[g] = (float)(g + 1);
    wq_kern_dequant_matrix(&f, W);
    for (int c = 0; c < COLS; c++)
        assert_float_bits_equal(W[c],
                                wq_kern_f4_table(WQ_QDTYPE_NF4)[c + 5] * (float)(gidx[c] + 1));
    wq_qmatrix_free(&m);
    wq_qmatrix_free(&f);
}

// ---- MSE clip search ----------------------------------------------------------------------------

/* Brute force over the 40 ratios with the matrix kernels; loss in double; first strictly smallest.
 */
static float brute_force_ratio(const float *W, int64_t rows, int64_t cols, const wq_qspec *spec,
                               int *index)
{
    const int64_t gs = wq_qspec_group_size(spec, cols);
    float *D = malloc((size_t)(rows * cols) * sizeof *D);
    double best = INFINITY;
    int bi = -1;
    for (int i = 0; i < 40; i++) {
        const float ratio = (float)(1.0 - i / 200.0);
        wq_qmatrix m = {0};
        assert_int_equal(wq_qmatrix_init(&m, rows, cols, gs, spec->dtype, spec->bits), WQ_OK);
        wq_kern_quant_matrix_ref(W, spec, ratio, &m);
        wq_kern_dequant_matrix(&m, D);
        double loss = 0;
        for (int64_t k = 0; k < rows * cols; k++)
            loss += ((double)W[k] - D[k]) * ((double)W[k] - D[k]);
        loss /= (double)(rows * cols);
        if (loss < best) best = loss, bi = i;
        wq_qmatrix_free(&m);
    }
    free(D);
    *index = bi;
    return (float)(1.0 - bi / 200.0);
}

static void mse_ratio_should_follow_the_grid(void **state)
{
    (void)state;
    assert_true(wq_kern_mse_ratio(0) == 1.0f);
    assert_true(wq_kern_mse_ratio(39) == 0.805f);
    for (int i = 0; i < 40; i++)
        assert_true(wq_kern_mse_ratio(i) == (float)(1.0 - i / 200.0));
}

static void mse_search_should_pick_the_brute_force_argmin(void **state)
{
    (void)state;
    enum { ROWS = 6, COLS = 96 };
    float W[ROWS * COLS];
    int nontrivial = 0;
    for (int cfg = 0; cfg < 6; cfg++) {
        wq_qspec spec = wq_qspec_default();
        spec.mse_search = true;
        spec.group_size = cfg < 3 ? 32 : -1;
        spec.sym = cfg % 3 != 0;
        spec.full_range = cfg == 2;
        spec.bits = cfg == 5 ? 3 : 4;
        if (cfg == 4) spec.dtype = WQ_QDTYPE_NF4;
        wq_test_fill_normal(W, ROWS * COLS, 0.02f, WQ_TEST_SEED + (uint64_t)cfg);
        for (int k = 0; k < ROWS * COLS; k += 37)
            W[k] *= 6.0f; /* heavy tail: clipping pays */
        void *ws = wq_malloc(wq_kern_mse_workspace_bytes(&spec, COLS));
        const float got = wq_kern_mse_search(W, ROWS, COLS, &spec, ws);
        int bi;
        const float want = brute_force_ratio(W, ROWS, COLS, &spec, &bi);
        if (got != want) fail_msg("cfg %d: search %g, brute force %g", cfg, got, want);
        nontrivial += bi > 0;
        wq_free(ws);
    }
    assert_true(nontrivial >=
                3); /* the data makes clipping worthwhile, so ratio 1 is not the answer */
}

static void mse_search_should_return_first_of_equal_losses(void **state)
{
    (void)state;
    float W[4 * 64] = {0}; /* every ratio gives loss 0 */
    wq_qspec spec = wq_qspec_default();
    void *ws = wq_malloc(wq_kern_mse_workspace_bytes(&spec, 64));
    assert_true(wq_kern_mse_search(W, 4, 64, &spec, ws) == 1.0f);
    wq_exact sse[WQ_KERN_MSE_NRATIOS];
    memset(sse, 0, sizeof sse);
    for (int i = 0; i < WQ_KERN_MSE_NRATIOS; i++) {
        double v = i == 7 || i == 9 ? 1.0 : 2.0; /* tie between 7 and 9: first wins */
        wq_kern_exact_add_f64(&sse[i], &v, 1);
    }
    assert_int_equal(wq_kern_mse_pick(sse, 10), 7);
    wq_free(ws);
}

static void mse_sse_should_not_depend_on_the_row_split(void **state)
{
    (void)state;
    enum { ROWS = 7, COLS = 80 };
    float W[ROWS * COLS];
    wq_test_fill_normal(W, ROWS * COLS, 1.0f, WQ_TEST_SEED);
    wq_qspec spec = wq_qspec_default();
    spec.group_size = 32;
    void *ws = wq_malloc(wq_kern_mse_workspace_bytes(&spec, COLS));
    wq_exact all[40], a[40], b[40];
    memset(all, 0, sizeof all);
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    wq_kern_mse_sse(W, ROWS, COLS, &spec, ws, all);
    wq_kern_mse_sse(W, 3, COLS, &spec, ws, a);
    wq_kern_mse_sse(W + 3 * COLS, ROWS - 3, COLS, &spec, ws, b);
    wq_kern_exact_merge(a, b, 40);
    assert_memory_equal(all, a, sizeof all);
    wq_free(ws);
}

// ---- Double quant -------------------------------------------------------------------------------

/* Direct computation in the test: optional mean subtraction, then per group of gs (tail smaller):
 * amax/(2^(b-1)-1) scale, signed codes clamped, value code*scale (+ mean). */
static void direct_double_quant(const float *in, float *out, int64_t n, int bits, bool sym,
                                int64_t gs)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += in[i];
    const float mean = sym ? 0.0f : (float)(sum / (double)n);
    if (gs <= 0 || gs > n) gs = n;
    for (int64_t off = 0; off < n; off += gs) {
        const int64_t m = n - off < gs ? n - off : gs;
        float amax = 0;
        for (int64_t i = 0; i < m; i++)
            amax = fmaxf(amax, fabsf(in[off + i] - mean));
        if (amax == 0.0f) amax = 1.0f;
        const float s = amax / (float)((1 << (bits - 1)) - 1); /* bits >= 2 here */
        for (int64_t i = 0; i < m; i++) {
            float v = in[off + i] - mean;
            float c = nearbyintf(v / s);
            c = fminf(fmaxf(c, -(float)(1 << (bits - 1))), (float)((1 << (bits - 1)) - 1));
            out[off + i] = sym ? c * s : c * s + mean;
        }
    }
}

static void double_quant_should_match_direct_computation(void **state)
{
    (void)state;
    enum { N = 1000 }; /* 1000 = 3*256 + 232: ragged tail group */
    float s[N], a[N], want[N];
    wq_test_rng r = {WQ_TEST_SEED};
    for (int i = 0; i < N; i++)
        s[i] = 0.001f + 0.01f * (float)wq_test_uniform01(&r);
    s[500] = 0.2f; /* an outlier scale in group 1 */
    static const int bitss[] = {8, 6, 4, 2};
    static const int64_t gss[] = {256, 8, -1, 1000, 333};
    for (int sym = 0; sym <= 1; sym++)
        for (size_t bi = 0; bi < sizeof bitss / sizeof *bitss; bi++)
            for (size_t gi = 0; gi < sizeof gss / sizeof *gss; gi++) {
                memcpy(a, s, sizeof s);
                wq_kern_double_quant(a, N, bitss[bi], sym, gss[gi]);
                direct_double_quant(s, want, N, bitss[bi], sym, gss[gi]);
                for (int i = 0; i < N; i++)
                    if (bits_of(a[i]) != bits_of(want[i]))
                        fail_msg("sym %d bits %d gs %lld i %d: %.9g vs %.9g", sym, bitss[bi],
                                 (long long)gss[gi], i, a[i], want[i]);
            }
    /* the tail group (232 values) is quantized with its own amax: sym, gs 256 */
    memcpy(a, s, sizeof s);
    wq_kern_double_quant(a, N, 8, true, 256);
    float amax_tail = 0;
    for (int i = 768; i < N; i++)
        amax_tail = fmaxf(amax_tail, s[i]);
    for (int i = 768; i < N; i++)
        assert_true(fabs((double)a[i] - s[i]) <= 0.5 * amax_tail / 127 * (1 + 1e-6));
}

// ---- Utilities ----------------------------------------------------------------------------------

static void find_nonfinite_should_return_first_bad_index(void **state)
{
    (void)state;
    enum { N = 300 };
    float x[N];
    wq_test_fill_normal(x, N, 1.0f, WQ_TEST_SEED);
    assert_int_equal(wq_kern_find_nonfinite(x, N), -1);
    assert_int_equal(wq_kern_find_nonfinite(x, 0), -1);
    static const int pos[] = {0, 1, 63, 64, 65, 127, 128, 250, 299};
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (size_t p = 0; p < sizeof pos / sizeof *pos; p++)
        for (int b = 0; b < 3; b++) {
            float y[N];
            memcpy(y, x, sizeof x);
            y[pos[p]] = bad[b];
            if (pos[p] + 3 < N) y[pos[p] + 3] = NAN; /* a later one is ignored */
            assert_int_equal(wq_kern_find_nonfinite(y, N), pos[p]);
            assert_int_equal(wq_kern_find_nonfinite(y, pos[p]), -1);
        }
    /* largest finite and denormals are finite */
    float z[3] = {3.4028235e38f, -1e-45f, 0x1p-140f};
    assert_int_equal(wq_kern_find_nonfinite(z, 3), -1);
}

static void bf16_to_f32_should_widen_exactly(void **state)
{
    (void)state;
    uint16_t h[1000];
    float f[1000];
    wq_test_rng r = {WQ_TEST_SEED};
    for (int i = 0; i < 1000; i++)
        h[i] = (uint16_t)wq_test_next(&r);
    h[0] = 0x8000;
    h[1] = 0x3f80;
    wq_kern_bf16_to_f32(h, f, 1000);
    for (int i = 0; i < 1000; i++) {
        float w = wq_bf16_to_f32(h[i]);
        assert_int_equal(bits_of(f[i]), bits_of(w));
    }
    assert_true(f[1] == 1.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(params_int_should_match_numerics_worked_example),
        cmocka_unit_test(quant_int_should_round_half_to_even_on_ties),
        cmocka_unit_test(params_int_should_handle_all_zero_groups),
        cmocka_unit_test(params_int_should_handle_single_element_groups),
        cmocka_unit_test(params_int_should_apply_one_bit_rule),
        cmocka_unit_test(params_int_should_keep_gptq_xmin_zero_quirk),
        cmocka_unit_test(quant_int_should_map_nan_quotient_to_zero_and_inf_to_ends),
        cmocka_unit_test(quant_row_int_should_match_ref_and_inc_everywhere),
        cmocka_unit_test(isa_loops_should_equal_ref),
        cmocka_unit_test(isa_loops_should_equal_ref_on_ties_and_specials),
        cmocka_unit_test(isa_dispatch_should_follow_cpu_and_env),
        cmocka_unit_test(quant_row_should_make_smaller_last_group),
        cmocka_unit_test(f4_should_map_table_values_to_inc_nibbles),
        cmocka_unit_test(f4_should_send_midpoint_ties_to_lower_value),
        cmocka_unit_test(f4_should_pick_nearest_value_and_match_ref),
        cmocka_unit_test(f4_should_zero_all_zero_group),
        cmocka_unit_test(quant_matrix_should_match_ref_and_bound_error),
        cmocka_unit_test(quant_matrix_scheme_should_use_the_given_scheme),
        cmocka_unit_test(dequant_matrix_should_honour_g_idx),
        cmocka_unit_test(mse_ratio_should_follow_the_grid),
        cmocka_unit_test(mse_search_should_pick_the_brute_force_argmin),
        cmocka_unit_test(mse_search_should_return_first_of_equal_losses),
        cmocka_unit_test(mse_sse_should_not_depend_on_the_row_split),
        cmocka_unit_test(double_quant_should_match_direct_computation),
        cmocka_unit_test(find_nonfinite_should_return_first_bad_index),
        cmocka_unit_test(bf16_to_f32_should_widen_exactly),
    };
    return cmocka_run_group_tests_name("kern_quant", tests, NULL, NULL);
}
