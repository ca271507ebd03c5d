/* test_e2e_teq.c: TEQ end to end on stories260K with a few training steps: bit-identical
 * containers for np = 1, 2, 4 (data-parallel training with exact gradient reduction), the trained
 * scales folded into the norms (folding=true: no extras, norms changed) or stored as input scales
 * on every linear (folding=false, with INC's straight-through gradient), the best-snapshot rule
 * (with restore_best) keeping alpha = 1 (the RTN tensors) when training only hurts, and bad input
 * (negative steps, lr <= 0, non-finite loss, exact_gradient with full range) failing
 * with a message naming the cause and no container left behind. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wq_e2e.h"
#include "wq_testutil.h"

#define A WQ_ASSETS_DIR
#define MODEL A "/stories260K-hf"

static char g_dir[256];

static void write_cfg(const char *path, const char *extra, int n_samples)
{
    FILE *f = fopen(path, "w");
    fprintf(
        f,
        "{\"teq\": {\"global\": {\"dtype\": \"int\", \"bits\": 4, \"group_size\": 32, \"use_sym\": "
        "true,"
        " \"train_steps\": 4, \"train_batch_size\": 3, \"gradient_accumulation_steps\": 2%s}},"
        " \"calibration\": {\"text\": \"%s/text/tinystories-val-500.txt\", \"format\": \"stories\","
        " \"range\": [0, 400], \"n_samples\": %d, \"seqlen\": 128, \"seed\": 42}}",
        extra, A, n_samples);
    fclose(f);
}

/* 0 when every dataset of the two containers in g_dir is equal (the file attributes hold the
 * configs, which differ by design). */
static int same_tensors(const char *a, const char *b)
{
    return wq_test_system("set -e; cd %s; for g in $(h5ls %s | cut -d' ' -f1); do "
                          "h5diff -q %s %s /$g /$g; done",
                          g_dir, b, a, b);
}

static void teq_should_be_identical_for_any_rank_count(void **state)
{
    (void)state;
    char cfg[400], *log;
    snprintf(cfg, sizeof cfg, "%s/fold.json", g_dir);
    write_cfg(cfg, ", \"train_lr\": 0.01, \"snapshot_every\": 1", 5);
    const int nps[] = {1, 2, 4};
    for (int i = 0; i < 3; i++) {
        int rc =
            wq_e2e_run(nps[i], &log, "quantize --model %s --config %s --out %s/np%d.h5 --quiet",
                       MODEL, cfg, g_dir, nps[i]);
        if (rc) print_error("%s\n", log);
        assert_int_equal(rc, 0);
        if (i)
            assert_int_equal(wq_test_system("h5diff %s/np1.h5 %s/np%d.h5", g_dir, g_dir, nps[i]),
                             0);
    }
    /* folding: the scales live in the norms (changed from the original), no input scales */
    assert_int_not_equal(
        wq_test_system(
            "h5ls %s/np1.h5/layers/model.layers.0.self_attn.q_proj | grep -q input_scale", g_dir),
        0);
    char p[400];
    snprintf(p, sizeof p, "%s/np1.h5", g_dir);
    double ppl = wq_e2e_tinystories_ppl(MODEL, p);
    printf("TEQ 4 steps (lr 0.01): int4 g32 sym ppl %.4f\n", ppl);
    assert_true(isfinite(ppl) && ppl < 8.0);
    /* the same config with 0 steps is RTN (alpha = 1); without the snapshot rule (INC's trainer:
     * the last alpha) the trained norms must differ from it */
    snprintf(cfg, sizeof cfg, "%s/last.json", g_dir);
    write_cfg(cfg, ", \"train_lr\": 0.01, \"snapshot_every\": 0", 5);
    assert_int_equal(wq_e2e_run(1, &log, "quantize --model %s --config %s --out %s/last.h5 --quiet",
                                MODEL, cfg, g_dir),
                     0);
    snprintf(cfg, sizeof cfg, "%s/zero.json", g_dir);
    FILE *f = fopen(cfg, "w");
    fprintf(
        f,
        "{\"teq\": {\"global\": {\"bits\": 4, \"group_size\": 32, \"use_sym\": true, "
        "\"train_steps\": 0}},"
        " \"calibration\": {\"text\": \"%s/text/tinystories-val-500.txt\", \"format\": \"stories\","
        " \"range\": [0, 400], \"n_samples\": 5, \"seqlen\": 128, \"seed\": 42}}",
        A);
    fclose(f);
    int rc = wq_e2e_run(1, &log, "quantize --model %s --config %s --out %s/zero.h5 --quiet", MODEL,
                        cfg, g_dir);
    assert_int_equal(rc, 0);
    assert_int_not_equal(same_tensors("last.h5", "zero.h5"), 0);
}

/* With an absurd learning rate every trained alpha is worse than alpha = 1 on the full calibration
 * loss, so the snapshot rule keeps alpha = 1 (restore_best: every step restarts from it): every
 * tensor equals the train_steps = 0 (RTN) container's; the log names the kept step. */
static void snapshot_should_keep_rtn_when_training_only_hurts(void **state)
{
    (void)state;
    char cfg[400], *log;
    snprintf(cfg, sizeof cfg, "%s/hurt.json", g_dir);
    write_cfg(cfg, ", \"train_lr\": 5, \"snapshot_every\": 1, \"restore_best\": true", 5);
    int rc =
        wq_e2e_run(2, &log, "quantize --model %s --config %s --out %s/hurt.h5", MODEL, cfg, g_dir);
    if (rc || !strstr(log, "kept the scales of optimizer step 0 of 2")) print_error("%s\n", log);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(log, "kept the scales of optimizer step 0 of 2"));
    /* zero.h5: written by the rank-count test above (train_steps 0, same calibration) */
    assert_int_equal(same_tensors("hurt.h5", "zero.h5"), 0);
}

static void no_folding_should_store_input_scales_on_every_linear(void **state)
{
    (void)state;
    char cfg[400], *log;
    snprintf(cfg, sizeof cfg, "%s/nofold.json", g_dir);
    write_cfg(cfg, ", \"folding\": false, \"train_lr\": 0.01, \"exact_gradient\": false", 4);
    int rc = wq_e2e_run(2, &log, "quantize --model %s --config %s --out %s/nofold.h5 --quiet",
                        MODEL, cfg, g_dir);
    if (rc) print_error("%s\n", log);
    assert_int_equal(rc, 0);
    const char *subs[] = {"self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            wq_test_system("h5ls %s/nofold.h5/layers/model.layers.1.%s | grep -q input_scale",
                           g_dir, subs[i]),
            0);
    char p[400];
    snprintf(p, sizeof p, "%s/nofold.h5", g_dir);
    double ppl = wq_e2e_tinystories_ppl(MODEL, p);
    assert_true(isfinite(ppl) && ppl < 8.0);
}

/* Negative steps, lr <= 0, and a model whose embeddings are NaN (the training loss is non-finite at
 * the first step). */
static void bad_training_input_should_fail_cleanly(void **state)
{
    (void)state;
    char nan_model[400];
    snprintf(nan_model, sizeof nan_model, "%s/nanemb", g_dir);
    assert_int_equal(wq_e2e_nan_embedding_model(MODEL, nan_model), 0);
    const struct {
        const char *extra, *model, *needle;
    } cases[] = {{", \"train_steps\": -1", MODEL, "train_steps"},
                 {", \"train_lr\": 0", MODEL, "train_lr"},
                 {", \"train_lr\": -0.5", MODEL, "train_lr"},
                 {"", nan_model, "non-finite training loss"},
                 {", \"use_full_range\": true", MODEL, "'exact_gradient' needs plain int"}};
    for (int i = 0; i < 5; i++) {
        char cfg[400], out[400], *log;
        snprintf(cfg, sizeof cfg, "%s/bad%d.json", g_dir, i);
        snprintf(out, sizeof out, "%s/bad%d.h5", g_dir, i);
        write_cfg(cfg, cases[i].extra, 4);
        int rc = wq_e2e_run(2, &log, "quantize --model %s --config %s --out %s --quiet",
                            cases[i].model, cfg, out);
        if (rc == 0 || !strstr(log, cases[i].needle)) print_error("%s\n", log);
        assert_int_not_equal(rc, 0);
        assert_non_null(strstr(log, cases[i].needle));
        assert_false(wq_e2e_file_exists(out));
    }
}

int main(void)
{
    if (!wq_test_tmpdir(g_dir, sizeof g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(teq_should_be_identical_for_any_rank_count),
        cmocka_unit_test(snapshot_should_keep_rtn_when_training_only_hurts),
        cmocka_unit_test(no_folding_should_store_input_scales_on_every_linear),
        cmocka_unit_test(bad_training_input_should_fail_cleanly),
    };
    int failed = cmocka_run_group_tests_name("e2e_teq", tests, NULL, NULL);
    if (!failed) wq_test_system("rm -rf %s", g_dir);
    return failed;
}
