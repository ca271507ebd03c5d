/* test_algo_rtn.c: the streaming RTN entry points (wq_algo_rtn_quantize_rows + wq_algo_rtn_finish,
 * used by `wquant quantize` so a layer is never held as f32 at once): byte-identical to the
 * whole-layer wq_algo_rtn_quantize in every dtype/scheme with ragged groups and double quant,
 * a hand-computed asym group placed by row0, and the refusals. Serial, unit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "algos/algo_rtn.h"
#include "core/core_log.h"
#include "core/core_qtypes.h"
#include "wq_testutil.h"

/* Quantizes W[rows][cols] in blocks of `chunk` rows into a fresh matrix. */
static wq_status streamed(const wq_qspec *spec, const float *W, int64_t rows, int64_t cols,
                          int64_t chunk, wq_qmatrix *q)
{
    wq_status st =
        wq_qmatrix_init(q, rows, cols, wq_qspec_group_size(spec, cols), spec->dtype, spec->bits);
    for (int64_t r = 0; st == WQ_OK && r < rows; r += chunk) {
        const int64_t n = rows - r < chunk ? rows - r : chunk;
        st = wq_algo_rtn_quantize_rows(spec, "test.layer", W + r * cols, r, n, q);
    }
    if (st == WQ_OK) wq_algo_rtn_finish(spec, q);
    return st;
}

static void assert_same_matrix(const wq_qmatrix *a, const wq_qmatrix *b)
{
    assert_int_equal(a->rows, b->rows);
    assert_int_equal(a->ngroups, b->ngroups);
    const size_t n = (size_t)(a->rows * a->cols), ng = (size_t)(a->rows * a->ngroups);
    assert_memory_equal(a->codes, b->codes, n);
    assert_memory_equal(a->scales, b->scales, ng * sizeof(float));
    assert_int_equal(a->zeros != NULL, b->zeros != NULL);
    if (a->zeros) assert_memory_equal(a->zeros, b->zeros, ng * sizeof(float));
}

static void rows_should_match_the_whole_layer_byte_for_byte(void **state)
{
    (void)state;
    const int64_t rows = 10, cols = 40; /* groups of 16: 16 + 16 + 8 (ragged) */
    float *W = malloc(sizeof(float) * (size_t)(rows * cols));
    wq_test_fill_normal(W, (size_t)(rows * cols), 0.02f, WQ_TEST_SEED);
    W[3 * cols + 5] = 0.5f; /* an outlier */
    wq_qspec specs[5];
    for (int k = 0; k < 5; k++) {
        specs[k] = wq_qspec_default();
        specs[k].group_size = 16;
    }
    specs[0].bits = 4, specs[0].sym = false;
    specs[1].bits = 3, specs[1].sym = true, specs[1].group_size = -1;
    specs[2].dtype = WQ_QDTYPE_NF4, specs[2].bits = 4;
    specs[3].bits = 4, specs[3].sym = true, specs[3].double_quant = true, specs[3].dq_bits = 6,
    specs[3].dq_sym = false, specs[3].dq_group_size = 7; /* dq groups straddle the row chunks */
    specs[4].bits = 8, specs[4].sym = true, specs[4].full_range = true;
    for (int k = 0; k < 5; k++)
        for (int64_t chunk = 1; chunk <= rows; chunk += 3) {
            wq_qmatrix whole = {0}, part = {0};
            assert_int_equal(
                wq_algo_rtn_quantize(&specs[k], "test.layer", W, rows, cols, &whole, NULL), WQ_OK);
            assert_int_equal(streamed(&specs[k], W, rows, cols, chunk, &part), WQ_OK);
            assert_same_matrix(&whole, &part);
            wq_qmatrix_free(&whole);
            wq_qmatrix_free(&part);
        }
    free(W);
}

static void rows_should_land_at_row0(void **state)
{
    (void)state;
    /* asym int4, one group of 4 (numerics 1.2): row 1 = {-1, 0, 0.6, 2}: scale = (2 - (-1)) / 15
     * = 0.2, zero = round(1 / 0.2) = 5, codes = round(w / 0.2) + 5 = 0, 5, 8, 15 */
    wq_qspec spec = wq_qspec_default();
    spec.bits = 4, spec.sym = false, spec.group_size = 4;
    wq_qmatrix q = {0};
    assert_int_equal(wq_qmatrix_init(&q, 2, 4, 4, WQ_QDTYPE_INT, 4), WQ_OK);
    memset(q.codes, 0xEE, 8);
    const float row1[4] = {-1.0f, 0.0f, 0.6f, 2.0f};
    assert_int_equal(wq_algo_rtn_quantize_rows(&spec, "test.layer", row1, 1, 1, &q), WQ_OK);
    const uint8_t want[4] = {0, 5, 8, 15};
    assert_memory_equal(q.codes + 4, want, 4);
    for (int c = 0; c < 4; c++)
        assert_int_equal(q.codes[c], 0xEE); /* row 0 untouched */
    assert_float_equal(q.scales[1], 0.2f, 1e-7);
    assert_float_equal(q.zeros[1], 5.0f, 0.0);
    wq_qmatrix_free(&q);
}

static void rows_should_refuse_bad_input(void **state)
{
    (void)state;
    wq_qspec spec = wq_qspec_default();
    spec.bits = 4, spec.group_size = 4;
    wq_qmatrix q = {0};
    assert_int_equal(wq_qmatrix_init(&q, 4, 4, 4, WQ_QDTYPE_INT, 4), WQ_OK);
    float w[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, NAN, 0.7f, 0.8f};
    /* a NaN in the second row of the block */
    assert_int_equal(wq_algo_rtn_quantize_rows(&spec, "test.layer", w, 2, 2, &q), WQ_ERR_NUMERIC);
    w[5] = 0.6f;
    assert_int_equal(wq_algo_rtn_quantize_rows(&spec, "test.layer", w, 3, 2, &q), WQ_ERR_ARG);
    assert_int_equal(wq_algo_rtn_quantize_rows(&spec, "test.layer", w, -1, 1, &q), WQ_ERR_ARG);
    assert_int_equal(wq_algo_rtn_quantize_rows(&spec, "test.layer", w, 0, 0, &q), WQ_ERR_ARG);
    spec.mse_search = true; /* the clip search needs the whole layer */
    assert_int_equal(wq_algo_rtn_quantize_rows(&spec, "test.layer", w, 0, 2, &q), WQ_ERR_ARG);
    spec.mse_search = false, spec.group_size = 2; /* not the matrix's groups */
    assert_int_equal(wq_algo_rtn_quantize_rows(&spec, "test.layer", w, 0, 2, &q), WQ_ERR_ARG);
    wq_qmatrix_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rows_should_match_the_whole_layer_byte_for_byte),
        cmocka_unit_test(rows_should_land_at_row0),
        cmocka_unit_test(rows_should_refuse_bad_input),
    };
    return cmocka_run_group_tests_name("algo_rtn", tests, NULL, NULL);
}
