/* test_algo_awq.c: AWQ pieces against hand-derived cases and numerics.md 5: scale formula and
 * normalisation, the ratio grid, absorption leaving the fp block unchanged, fake quantization of
 * scaled weights, the layer loss, and a scale search that beats plain RTN on outlier channels. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "algos/algo_awq.h"
#include "core/core_alloc.h"
#include "core/core_qtypes.h"
#include "kernels/kern_llama.h"
#include "kernels/kern_quant.h"
#include "wq_testutil.h"

static void scales_should_follow_formula_and_normalise(void **state)
{
    (void)state;
    const float x[4] = {1.0f, 4.0f, 0.25f, 2.0f}, w[4] = {0.5f, 1.0f, 0.25f, 0.0f};
    float s[4];
    const float r = 0.5f;
    assert_int_equal(wq_algo_awq_scales(x, w, 4, r, s), WQ_OK);
    /* hand: raw = x^0.5 / w^0.5 with w=0 -> smallest positive w (0.25): [sqrt2, 2, 1, sqrt8] */
    double raw[4] = {sqrt(2.0), 2.0, 1.0, sqrt(8.0)};
    double norm = sqrt(sqrt(8.0) * 1.0);
    for (int i = 0; i < 4; i++) assert_true(fabs(s[i] - raw[i] / norm) < 1e-6 * raw[i] / norm);
    /* normalised: max * min == 1 */
    float mx = 0, mn = 1e30f;
    for (int i = 0; i < 4; i++) mx = fmaxf(mx, s[i]), mn = fminf(mn, s[i]);
    assert_true(fabsf(mx * mn - 1.0f) < 1e-5f);
    /* r = 0: s = 1 / w_mean normalised; clamp at 1e-4 before normalisation */
    const float xz[2] = {0.0f, 0.0f}, wz[2] = {1.0f, 1.0f};
    assert_int_equal(wq_algo_awq_scales(xz, wz, 2, 0.5f, s), WQ_OK);
    assert_true(fabsf(s[0] - 1.0f) < 1e-6f && fabsf(s[1] - 1.0f) < 1e-6f); /* 1e-4 each, normalised */
    const float xn[2] = {NAN, 1.0f};
    assert_int_equal(wq_algo_awq_scales(xn, wz, 2, 0.5f, s), WQ_ERR_NUMERIC);
}

static void w_mean_should_average_group_normalised_magnitudes(void **state)
{
    (void)state;
    /* 2 rows x 4 cols, group 2: row0 [1,-2 | 0,0] -> [0.5,1 | 0,0]; row1 [3,1 | -4,2] -> [1,1/3 | 1,0.5] */
    const float w[8] = {1, -2, 0, 0, 3, 1, -4, 2};
    const float *W[1] = {w};
    const int64_t rows[1] = {2};
    float m[4];
    wq_algo_awq_w_mean(W, rows, 1, 4, 2, m);
    const float want[4] = {0.75f, (1.0f + 1.0f / 3.0f) / 2.0f, 0.5f, 0.25f};
    for (int i = 0; i < 4; i++) assert_true(fabsf(m[i] - want[i]) < 1e-6f);
}

static void fakequant_should_equal_rtn_of_scaled_weights_divided(void **state)
{
    (void)state;
    enum { R = 6, C = 40 };
    float W[R * C], s[C], Wq[R * C], Ws[R * C], ref[R * C];
    wq_test_fill_normal(W, R * C, 1.0f, WQ_TEST_SEED);
    wq_test_fill_uniform(s, C, 0.5f, 2.0f, WQ_TEST_SEED + 1);
    wq_qspec sp = wq_qspec_default();
    sp.sym = false;
    sp.group_size = 16; /* ragged: 16 + 16 + 8 */
    assert_int_equal(wq_algo_awq_fakequant(&sp, 0.95f, W, R, C, s, Wq), WQ_OK);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) Ws[r * C + c] = W[r * C + c] * s[c];
    wq_qmatrix m;
    assert_int_equal(wq_qmatrix_init(&m, R, C, 16, WQ_QDTYPE_INT, 4), WQ_OK);
    wq_kern_quant_matrix(Ws, &sp, 0.95f, &m);
    wq_kern_dequant_matrix(&m, ref);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) assert_true(Wq[r * C + c] == ref[r * C + c] / s[c]);
    wq_qmatrix_free(&m);
}

static void layer_loss_should_match_direct_evaluation(void **state)
{
    (void)state;
    enum { T = 5, R = 3, C = 7 };
    float X[T * C], W[R * C], Wq[R * C], scratch[R * C + T * R];
    wq_test_fill_normal(X, T * C, 1.0f, 1);
    wq_test_fill_normal(W, R * C, 1.0f, 2);
    wq_test_fill_normal(Wq, R * C, 1.0f, 3);
    double want = 0;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < R; o++) {
            double y = 0;
            for (int c = 0; c < C; c++) y += (double)X[t * C + c] * ((double)W[o * C + c] - Wq[o * C + c]);
            want += y * y;
        }
    want /= T * R;
    double got = wq_algo_awq_layer_loss(X, T, W, Wq, R, C, scratch);
    assert_true(fabs(got - want) < 1e-5 * want);
}

/* Absorbing s into the RMSNorm (norm.w / s) and the q/k/v and gate/up columns (W * s) leaves the
 * fp block's output unchanged (relative 1e-5), as numerics 5.5 requires before quantization. */
static void absorption_should_leave_fp_block_unchanged(void **state)
{
    (void)state;
    wq_model_cfg cfg = {.hidden_size = 16, .intermediate_size = 24, .n_layers = 1, .n_heads = 4,
                        .n_kv_heads = 2, .head_dim = 4, .vocab_size = 8, .max_position_embeddings = 32,
                        .rope_theta = 10000.0, .rms_norm_eps = 1e-5};
    const int64_t d = 16, F = 24, qd = 16, kd = 8, T = 9;
    float *buf = wq_malloc(sizeof(float) * (size_t)(2 * d + qd * d + 2 * kd * d + d * qd + 3 * F * d) * 2);
    float *p = buf;
    float *an = p; p += d; float *wq = p; p += qd * d; float *wk = p; p += kd * d; float *wv = p; p += kd * d;
    float *wo = p; p += d * qd; float *mn = p; p += d; float *wg = p; p += F * d; float *wu = p; p += F * d;
    float *wd = p; p += d * F;
    wq_test_fill_normal(buf, (size_t)(p - buf), 0.3f, 7);
    for (int i = 0; i < d; i++) an[i] = 1.0f + 0.1f * (float)i, mn[i] = 0.8f + 0.05f * (float)i;
    wq_block_weights w = {an, wq, wk, wv, wo, NULL, NULL, NULL, mn, wg, wu, wd};
    float x[T * 16], y0[T * 16], y1[T * 16], s1[16], s2[16];
    wq_test_fill_normal(x, (size_t)(T * d), 1.0f, 8);
    wq_test_fill_uniform(s1, 16, 0.3f, 3.0f, 9);
    wq_test_fill_uniform(s2, 16, 0.3f, 3.0f, 10);
    float cs[T * 2], sn[T * 2];
    wq_kern_rope_tables(&cfg, T, cs, sn);
    void *ws = wq_malloc(wq_kern_block_workspace_bytes(&cfg, T));
    memcpy(y0, x, sizeof x);
    wq_kern_block_forward(&cfg, &w, y0, T, cs, sn, ws, NULL);
    /* absorbed copy */
    float *b2 = p, *q = b2;
    memcpy(b2, buf, sizeof(float) * (size_t)(p - buf));
    float *an2 = q; q += d; float *wq2 = q; q += qd * d; float *wk2 = q; q += kd * d; float *wv2 = q; q += kd * d;
    float *wo2 = q; q += d * qd; float *mn2 = q; q += d; float *wg2 = q; q += F * d; float *wu2 = q; q += F * d;
    float *wd2 = q;
    for (int c = 0; c < d; c++) {
        an2[c] /= s1[c];
        mn2[c] /= s2[c];
        for (int r = 0; r < qd; r++) wq2[r * d + c] *= s1[c];
        for (int r = 0; r < kd; r++) wk2[r * d + c] *= s1[c], wv2[r * d + c] *= s1[c];
        for (int r = 0; r < F; r++) wg2[r * d + c] *= s2[c], wu2[r * d + c] *= s2[c];
    }
    wq_block_weights w2 = {an2, wq2, wk2, wv2, wo2, NULL, NULL, NULL, mn2, wg2, wu2, wd2};
    memcpy(y1, x, sizeof x);
    wq_kern_block_forward(&cfg, &w2, y1, T, cs, sn, ws, NULL);
    assert_true(wq_test_max_rel_err(y0, y1, (size_t)(T * d), 1e-2) < 1e-5);
    wq_free(ws);
    wq_free(buf);
}

/* On a layer whose inputs have a few large channels, the best AWQ scale (searched over the grid by
 * the layer loss) beats plain RTN (ratio 0 is not "no scaling"; RTN is the s = 1 baseline). */
static void scale_search_should_beat_rtn_on_outlier_channels(void **state)
{
    (void)state;
    enum { T = 64, R = 32, C = 64 };
    float *X = wq_malloc(sizeof(float) * T * C), *W = wq_malloc(sizeof(float) * R * C),
          *Wq = wq_malloc(sizeof(float) * R * C), *scr = wq_malloc(sizeof(float) * (R * C + T * R));
    wq_test_fill_normal(X, T * C, 1.0f, 11);
    wq_test_fill_normal(W, R * C, 0.05f, 12);
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c += 9) X[t * C + c] *= 20.0f; /* outlier channels */
    float xm[C], wm[C], s[C];
    for (int c = 0; c < C; c++) {
        double a = 0;
        for (int t = 0; t < T; t++) a += fabs(X[t * C + c]);
        xm[c] = (float)(a / T);
    }
    wq_qspec sp = wq_qspec_default();
    sp.bits = 3;
    sp.sym = false;
    const float *Wl[1] = {W};
    const int64_t rows[1] = {R};
    wq_algo_awq_w_mean(Wl, rows, 1, C, 32, wm);
    assert_int_equal(wq_algo_awq_fakequant(&sp, 1.0f, W, R, C, NULL, Wq), WQ_OK);
    double rtn = wq_algo_awq_layer_loss(X, T, W, Wq, R, C, scr), best = INFINITY;
    for (int k = 0; k < WQ_AWQ_N_SCALE_RATIOS; k++) {
        assert_int_equal(wq_algo_awq_scales(xm, wm, C, (float)k / 20, s), WQ_OK);
        assert_int_equal(wq_algo_awq_fakequant(&sp, 1.0f, W, R, C, s, Wq), WQ_OK);
        double l = wq_algo_awq_layer_loss(X, T, W, Wq, R, C, scr);
        if (l < best) best = l;
    }
    printf("layer loss: RTN %.4g, best AWQ scale %.4g\n", rtn, best);
    assert_true(best < 0.8 * rtn);
    wq_free(X), wq_free(W), wq_free(Wq), wq_free(scr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scales_should_follow_formula_and_normalise),
        cmocka_unit_test(w_mean_should_average_group_normalised_magnitudes),
        cmocka_unit_test(fakequant_should_equal_rtn_of_scaled_weights_divided),
        cmocka_unit_test(layer_loss_should_match_direct_evaluation),
        cmocka_unit_test(absorption_should_leave_fp_block_unchanged),
        cmocka_unit_test(scale_search_should_beat_rtn_on_outlier_channels),
    };
    return cmocka_run_group_tests_name("algo_awq", tests, NULL, NULL);
}
