/* test_e2e_awq.c: AWQ end to end on stories260K: lower perplexity than RTN at int4/int3 g32 asym,
 * bit-identical containers for np = 1, 2, 4, stored input scales for o/down_proj with folding=false
 * (none with folding=true), and bad input (no calibration data, non-finite activations). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wq_e2e.h"
#include "wq_testutil.h"

#define A WQ_ASSETS_DIR
#define MODEL A "/stories260K-hf"

static char g_dir[256];

static void write_cfg(const char *path, int bits, const char *extra, int n_samples)
{
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"awq\": {\"global\": {\"dtype\": \"int\", \"bits\": %d, \"group_size\": 32, \"use_sym\": false%s}},"
            " \"calibration\": {\"text\": \"%s/text/tinystories-val-500.txt\", \"format\": \"stories\","
            " \"range\": [0, 400], \"n_samples\": %d, \"seqlen\": 256, \"seed\": 42}}",
            bits, extra, A, n_samples);
    fclose(f);
}

static double ppl_of(const char *h5) { return wq_e2e_tinystories_ppl(MODEL, h5); }

static void awq_should_be_identical_for_any_rank_count_and_beat_rtn(void **state)
{
    (void)state;
    char cfg[400], *log;
    snprintf(cfg, sizeof cfg, "%s/w4.json", g_dir);
    write_cfg(cfg, 4, "", 16);
    const int nps[] = {1, 2, 4};
    for (int i = 0; i < 3; i++) {
        int rc = wq_e2e_run(nps[i], &log, "quantize --model %s --config %s --out %s/np%d.h5 --quiet", MODEL, cfg,
                            g_dir, nps[i]);
        if (rc) print_error("%s\n", log);
        assert_int_equal(rc, 0);
        if (i) assert_int_equal(wq_test_system("h5diff %s/np1.h5 %s/np%d.h5", g_dir, g_dir, nps[i]), 0);
    }
    char p[400];
    snprintf(p, sizeof p, "%s/np1.h5", g_dir);
    double p4 = ppl_of(p);
    /* folding=false (default): o_proj / down_proj carry their input scale; q/k/v do not */
    assert_int_equal(wq_test_system("h5ls %s/np1.h5/layers/model.layers.0.self_attn.o_proj | grep -q input_scale", g_dir), 0);
    assert_int_equal(wq_test_system("h5ls %s/np1.h5/layers/model.layers.0.mlp.down_proj | grep -q input_scale", g_dir), 0);
    assert_int_not_equal(wq_test_system("h5ls %s/np1.h5/layers/model.layers.0.self_attn.q_proj | grep -q input_scale", g_dir), 0);
    snprintf(cfg, sizeof cfg, "%s/w3.json", g_dir);
    write_cfg(cfg, 3, "", 16);
    int rc = wq_e2e_run(2, &log, "quantize --model %s --config %s --out %s/w3.h5 --quiet", MODEL, cfg, g_dir);
    assert_int_equal(rc, 0);
    snprintf(p, sizeof p, "%s/w3.h5", g_dir);
    double p3 = ppl_of(p);
    printf("AWQ (16 samples): int4 g32 asym %.4f (RTN 5.3780), int3 g32 asym %.4f (RTN 9.0717)\n", p4, p3);
    assert_true(p4 < 5.3780);
    assert_true(p3 < 9.0717);
}

static void folding_should_skip_unabsorbable_layers(void **state)
{
    (void)state;
    char cfg[400], *log;
    snprintf(cfg, sizeof cfg, "%s/fold.json", g_dir);
    write_cfg(cfg, 4, ", \"folding\": true", 8);
    int rc = wq_e2e_run(2, &log, "quantize --model %s --config %s --out %s/fold.h5 --quiet", MODEL, cfg, g_dir);
    assert_int_equal(rc, 0);
    assert_int_not_equal(wq_test_system("h5ls %s/fold.h5/layers/model.layers.0.self_attn.o_proj | grep -q input_scale", g_dir), 0);
    char p[400];
    snprintf(p, sizeof p, "%s/fold.h5", g_dir);
    assert_true(ppl_of(p) < 5.3780);
}

static void awq_without_calibration_should_fail(void **state)
{
    (void)state;
    char *log, out[400];
    snprintf(out, sizeof out, "%s/nocal.h5", g_dir);
    int rc = wq_e2e_run(2, &log, "quantize --model %s --algo awq --out %s --quiet", MODEL, out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, "calibration"));
    assert_false(wq_e2e_file_exists(out));
}

/* NaN in the embedding of a frequent token: the calibration activations are non-finite. */
static void non_finite_activations_should_fail(void **state)
{
    (void)state;
    char dir[400], cfg[400], *log, out[400];
    snprintf(dir, sizeof dir, "%s/nanemb", g_dir);
    assert_int_equal(wq_e2e_nan_embedding_model(MODEL, dir), 0);
    snprintf(cfg, sizeof cfg, "%s/nan.json", g_dir);
    write_cfg(cfg, 4, "", 4);
    snprintf(out, sizeof out, "%s/nan.h5", g_dir);
    int rc = wq_e2e_run(2, &log, "quantize --model %s --config %s --out %s --quiet", dir, cfg, out);
    if (rc == 0 || !strstr(log, "non-finite")) print_error("%s\n", log);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, "non-finite"));
    assert_false(wq_e2e_file_exists(out));
}

int main(void)
{
    if (!wq_test_tmpdir(g_dir, sizeof g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(awq_should_be_identical_for_any_rank_count_and_beat_rtn),
        cmocka_unit_test(folding_should_skip_unabsorbable_layers),
        cmocka_unit_test(awq_without_calibration_should_fail),
        cmocka_unit_test(non_finite_activations_should_fail),
    };
    int failed = cmocka_run_group_tests_name("e2e_awq", tests, NULL, NULL);
    if (!failed) wq_test_system("rm -rf %s", g_dir);
    return failed;
}
