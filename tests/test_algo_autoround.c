/* test_algo_autoround.c: AutoRound per-linear math (src/algos/algo_autoround.c) on hand-checked
 * cases: the qdq of numerics.md §8.3 (asym and full-range sym on the §1.2 worked example group,
 * with and without offsets and min/max scales), the exported codes/scales/zeros dequantizing to
 * the qdq bit for bit, the STE gradient chain, the SignSGD step and linear lr decay, and the
 * seeded sampler against an independent Fisher-Yates over splitmix64 written here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "algos/algo_autoround.h"
#include "core/core_qtypes.h"
#include "kernels/kern_quant.h"
#include "wq_testutil.h"

static const float k_grp[4] = {0.1f, -0.3f, 0.25f, 0.05f};

static wq_qspec spec_of(int bits, int64_t gs, bool sym)
{
    wq_qspec s = wq_qspec_default();
    s.dtype = WQ_QDTYPE_INT, s.bits = bits, s.group_size = gs, s.sym = sym;
    s.scale_dtype = WQ_SCALE_F32;
    return s;
}

static void qdq_asym_should_match_hand_example(void **state)
{
    (void)state;
    const wq_qspec sp = spec_of(4, 4, false);
    wq_ar_layer L;
    assert_int_equal(wq_algo_ar_init(&sp, "t", k_grp, 1, 4, &L), WQ_OK);
    float y[4];
    wq_algo_ar_qdq(&L, k_grp, y);
    const float s = (0.25f - -0.3f) / 15.0f; /* zp = round(0.3 / s) = round(8.18) = 8 */
    const float codes[4] = {11, 0, 15, 9};   /* numerics.md §1.2 worked example */
    for (int i = 0; i < 4; i++)
        assert_true(y[i] == s * (codes[i] - 8));
    /* v pushes 0.05 / s = 1.36 over the half: code 10 */
    L.v[3] = 0.5f;
    wq_algo_ar_qdq(&L, k_grp, y);
    assert_true(y[3] == s * 2);
    /* beta = 0.5 halves the upper end: s' = (0.125 + 0.3) / 15, 0.25 clamps to code 15 */
    L.v[3] = 0;
    L.beta[0] = 0.5f;
    wq_algo_ar_qdq(&L, k_grp, y);
    const float s2 = (0.25f * 0.5f - -0.3f) / 15.0f, zp2 = nearbyintf(0.3f / s2);
    assert_true(y[2] == s2 * (15 - zp2));
    /* export dequantizes to the qdq bit for bit */
    wq_qmatrix m;
    assert_int_equal(wq_algo_ar_export(&L, k_grp, &m), WQ_OK);
    float dq[4];
    wq_kern_dequant_matrix(&m, dq);
    assert_memory_equal(dq, y, sizeof dq);
    assert_true(m.zeros[0] == zp2 && m.scales[0] == s2);
    wq_qmatrix_free(&m);
    wq_algo_ar_free(&L);
}

static void qdq_sym_should_put_dominant_side_on_minus_M(void **state)
{
    (void)state;
    const wq_qspec sp = spec_of(4, -1, true);
    wq_ar_layer L;
    assert_int_equal(wq_algo_ar_init(&sp, "t", k_grp, 1, 4, &L), WQ_OK);
    float y[4];
    wq_algo_ar_qdq(&L, k_grp, y);
    const float s = 0.3f / 8; /* |min| > |max|: sign +1; codes 3, -8, 7, 1 */
    const float q[4] = {3, -8, 7, 1};
    for (int i = 0; i < 4; i++)
        assert_true(y[i] == s * q[i]);
    wq_qmatrix m;
    assert_int_equal(wq_algo_ar_export(&L, k_grp, &m), WQ_OK);
    assert_true(m.zeros[0] == 8);
    assert_int_equal(m.codes[1], 0);
    float dq[4];
    wq_kern_dequant_matrix(&m, dq);
    assert_memory_equal(dq, y, sizeof dq);
    wq_qmatrix_free(&m);
    /* the positive side dominant: negative scale, 1.0 lands on -8 */
    const float g2[3] = {1.0f, -0.5f, 0.2f};
    wq_ar_layer L2;
    assert_int_equal(wq_algo_ar_init(&sp, "t", g2, 1, 3, &L2), WQ_OK);
    wq_algo_ar_qdq(&L2, g2, y);
    assert_true(y[0] == (-1.0f / 8) * -8);
    wq_algo_ar_free(&L2);
    wq_algo_ar_free(&L);
}

/* STE chain, derived by hand for the asym example with dL/dŴ = 1 everywhere (no clamped code):
 * dv = s; ds = sum_i (r_i - w_i/s); dalpha = -ds/15 * wmin, dbeta = ds/15 * wmax. */
static void grad_should_follow_ste_chain(void **state)
{
    (void)state;
    const wq_qspec sp = spec_of(4, 4, false);
    wq_ar_layer L;
    assert_int_equal(wq_algo_ar_init(&sp, "t", k_grp, 1, 4, &L), WQ_OK);
    const double g[4] = {1, 1, 1, 1};
    double dv[4], da, db;
    wq_algo_ar_grad(&L, k_grp, g, dv, &da, &db);
    const float s = 0.55f / 15.0f;
    const double r[4] = {3, -8, 7, 1};
    double ds = 0;
    for (int i = 0; i < 4; i++) {
        assert_true(fabs(dv[i] - s) < 1e-12);
        ds += r[i] - (double)k_grp[i] / s;
    }
    assert_true(fabs(da - (-ds / 15 * -0.3)) < 1e-9);
    assert_true(fabs(db - (ds / 15 * 0.25)) < 1e-9);
    wq_algo_ar_free(&L);
}

static void sign_step_and_lr_decay(void **state)
{
    (void)state;
    float p[3] = {1, 1, 1};
    const double g[3] = {2, -3, 0};
    wq_algo_ar_sign_step(p, g, 3, 0.125);
    assert_true(p[0] == 0.875f && p[1] == 1.125f && p[2] == 1.0f);
    assert_true(wq_algo_ar_lr_at(0.005, 100, 200, true) == 0.0025);
    assert_true(wq_algo_ar_lr_at(0.005, 100, 200, false) == 0.005);
    assert_true(wq_algo_ar_lr_at(0.005, 0, 200, true) == 0.005);
}

/* Independent splitmix64 + unbiased draw + Fisher-Yates. */
static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void shuffle_ref(int64_t *a, int64_t n, uint64_t *st)
{
    for (int64_t i = n - 1; i > 0; i--) {
        const uint64_t bound = (uint64_t)(i + 1), rej = (0 - bound) % bound;
        uint64_t x;
        do
            x = sm64(st);
        while (x < rej);
        const int64_t j = (int64_t)(x % bound), t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

static void sampler_should_shuffle_hand_out_and_reshuffle(void **state)
{
    (void)state;
    wq_ar_sampler s;
    assert_int_equal(wq_algo_ar_sampler_init(&s, 5, 2, 42), WQ_OK);
    int64_t ref[5] = {0, 1, 2, 3, 4};
    uint64_t st = 42;
    shuffle_ref(ref, 5, &st);
    const int64_t *b = wq_algo_ar_sampler_next(&s);
    assert_true(b[0] == ref[0] && b[1] == ref[1]);
    b = wq_algo_ar_sampler_next(&s);
    assert_true(b[0] == ref[2] && b[1] == ref[3]);
    shuffle_ref(ref, 5, &st); /* one left < 2: dropped, reshuffled */
    b = wq_algo_ar_sampler_next(&s);
    assert_true(b[0] == ref[0] && b[1] == ref[1]);
    wq_algo_ar_sampler_free(&s);
    assert_int_equal(wq_algo_ar_sampler_init(&s, 5, 6, 42), WQ_ERR_ARG); /* batch > n_samples */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(qdq_asym_should_match_hand_example),
        cmocka_unit_test(qdq_sym_should_put_dominant_side_on_minus_M),
        cmocka_unit_test(grad_should_follow_ste_chain),
        cmocka_unit_test(sign_step_and_lr_decay),
        cmocka_unit_test(sampler_should_shuffle_hand_out_and_reshuffle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
