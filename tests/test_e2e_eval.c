/* test_e2e_eval.c: the calibration/evaluation engine end to end on the real stories260K model:
 * reference perplexities, greedy decoding, identical results for any rank and stage count, bounded
 * memory for deeper models, bad input, and a dying rank. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wq_e2e.h"
#include "wq_testutil.h"

#define A WQ_ASSETS_DIR
#define MODEL A "/stories260K-hf"
#define STORIES "--text " A "/text/tinystories-val-500.txt --protocol stories --range 400:500"
#define WIKI "--text " A "/text/wikitext2-test.raw --protocol windows --windows 40 --seqlen 512"

static char g_dir[256];

static double json_num(const char *log, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(log, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

static double eval_ppl(int np, const char *extra, char *nll_text, size_t n)
{
    char *log;
    int rc = wq_e2e_run(np, &log, "eval --model %s %s --json", MODEL, extra);
    if (rc) print_error("%s\n", log);
    assert_int_equal(rc, 0);
    if (nll_text) {
        const char *p = strstr(log, "\"nll\": ");
        assert_non_null(p);
        snprintf(nll_text, n, "%.20s", p + 7);
    }
    return json_num(log, "ppl");
}

static void fp32_should_reproduce_reference_ppl(void **state)
{
    (void)state;
    double ts = eval_ppl(1, STORIES, NULL, 0), wk = eval_ppl(1, WIKI, NULL, 0);
    printf("fp32: TinyStories %.6f (ref 4.961197), WikiText-2 %.4f (ref 124.0212)\n", ts, wk);
    assert_true(fabs(ts / 4.961197378973241 - 1) < 5e-4);
    assert_true(fabs(wk / 124.02119405664205 - 1) < 5e-4);
}

static void rtn_int4_g32_asym_should_reproduce_reference_ppl(void **state)
{
    (void)state;
    char *log, out[400], extra[600];
    snprintf(out, sizeof out, "%s/rtn.h5", g_dir);
    int rc = wq_e2e_run(2, &log, "quantize --model %s --algo rtn --dtype int --bits 4 --group-size 32 "
                                 "--asym --out %s --quiet", MODEL, out);
    assert_int_equal(rc, 0);
    snprintf(extra, sizeof extra, "--quantized %s %s", out, STORIES);
    double ts = eval_ppl(1, extra, NULL, 0);
    snprintf(extra, sizeof extra, "--quantized %s %s", out, WIKI);
    double wk = eval_ppl(1, extra, NULL, 0);
    printf("rtn int4 g32 asym: TinyStories %.6f (ref 5.378027), WikiText-2 %.4f (ref 139.9501)\n", ts, wk);
    assert_true(fabs(ts / 5.378027081716765 - 1) < 2e-3);
    assert_true(fabs(wk / 139.95012166443848 - 1) < 2e-3);
}

static void generate_should_reproduce_greedy_ids(void **state)
{
    (void)state;
    char *log, want[2048] = {0};
    FILE *f = fopen(A "/stories260K-llama2c/greedy_t0_ids.txt", "r");
    assert_non_null(f);
    size_t n = fread(want, 1, sizeof want - 1, f);
    fclose(f);
    while (n && (want[n - 1] == '\n' || want[n - 1] == ' ')) want[--n] = '\0';
    int rc = wq_e2e_run(1, &log, "generate --model %s --steps 80", MODEL);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(log, want));
}

/* The same NLL to the last printed digit for np = 1..4 and 1 or 2 stages. */
static void eval_should_be_identical_for_any_grid(void **state)
{
    (void)state;
    char ref[64], got[64], extra[600];
    eval_ppl(1, STORIES, ref, sizeof ref);
    static const int grid[][2] = {{2, 1}, {2, 2}, {3, 1}, {3, 2}, {4, 1}, {4, 2}};
    for (size_t i = 0; i < sizeof grid / sizeof grid[0]; i++) {
        snprintf(extra, sizeof extra, "%s --stages %d", STORIES, grid[i][1]);
        eval_ppl(grid[i][0], extra, got, sizeof got);
        if (strcmp(ref, got)) print_error("np %d stages %d: nll %s vs %s\n", grid[i][0], grid[i][1], got, ref);
        assert_string_equal(ref, got);
    }
}

/* Layer-wise: peak RSS of a model with 4x the blocks (same width) stays within 1.2x. */
static void peak_rss_should_not_grow_with_depth(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan's quarantine and shadow memory make peak RSS meaningless */
#endif
    char *log;
    double rss[2];
    int layers[2] = {2, 8};
    for (int i = 0; i < 2; i++) {
        int rc = wq_e2e_run(0, &log, "synth --like %s/tests/data/synth_wide.json --layers %d --dtype bf16 --out %s/syn%d",
                            WQ_SOURCE_DIR, layers[i], g_dir, layers[i]);
        assert_int_equal(rc, 0);
        wq_test_system("cp %s/tokenizer.model %s/syn%d/", MODEL, g_dir, layers[i]);
        rc = wq_e2e_run(0, &log, "eval --model %s/syn%d --text %s/text/wikitext2-test.raw --windows 8 --seqlen 256 --json",
                        g_dir, layers[i], A);
        assert_int_equal(rc, 0);
        rss[i] = json_num(log, "peak_rss_mb");
        assert_true(isfinite(json_num(log, "ppl")));
    }
    printf("peak RSS: 2 blocks %.1f MB, 8 blocks %.1f MB (ratio %.3f)\n", rss[0], rss[1], rss[1] / rss[0]);
    assert_true(rss[1] <= 1.2 * rss[0]);
}

static void expect_fail(int np, const char *needle, const char *fmt, const char *a1, const char *a2)
{
    char *log, args[2000];
    snprintf(args, sizeof args, fmt, a1, a2);
    int rc = wq_e2e_run(np, &log, "%s", args);
    if (rc == 0 || !strstr(log, needle)) print_error("rc %d, wanted '%s' in:\n%s\n", rc, needle, log);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, needle));
    assert_null(strstr(log, "Segmentation"));
}

static void bad_input_should_fail_clearly(void **state)
{
    (void)state;
    char dir[400], empty[400], cfg[400];
    /* corrupt / truncated tokenizer.model */
    snprintf(dir, sizeof dir, "%s/badtok", g_dir);
    wq_test_system("mkdir -p %s && cp %s/config.json %s/model.safetensors %s/ && head -c 3000 %s/tokenizer.model > %s/tokenizer.model",
                   dir, MODEL, MODEL, dir, MODEL, dir);
    expect_fail(2, "tokenizer.model", "eval --model %s --text %s/text/wikitext2-test.raw", dir, A);
    /* empty text */
    snprintf(empty, sizeof empty, "%s/empty.txt", g_dir);
    wq_test_system(": > %s", empty);
    expect_fail(2, "empty.txt", "eval --model %s --text %s", MODEL, empty);
    /* seqlen out of range */
    expect_fail(2, "seqlen", "eval --model %s --text %s/text/wikitext2-test.raw --seqlen 600", MODEL, A);
    expect_fail(2, "seqlen", "eval --model %s --text %s/text/wikitext2-test.raw --seqlen 1", MODEL, A);
    /* more windows than the text has */
    expect_fail(2, "windows", "eval --model %s --text %s/text/tinystories-val-500.txt --windows 100000", MODEL, A);
    /* ids out of the vocabulary */
    expect_fail(1, "9999", "generate --model %s --prompt-ids 1,9999%s", MODEL, "");
    /* calibration text too short for the windows */
    snprintf(cfg, sizeof cfg, "%s/short.json", g_dir);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "{\"gptq\": {\"global\": {\"bits\": 4}}, \"calibration\": {\"text\": \"%s/text/tinystories-val-500.txt\","
               " \"format\": \"stories\", \"range\": [0, 1], \"n_samples\": 8, \"seqlen\": 512}}", A);
    fclose(f);
    char out[400];
    snprintf(out, sizeof out, "%s/short.h5", g_dir);
    expect_fail(2, "tinystories-val-500.txt", "quantize --model " MODEL " --config %s --out %s --quiet", cfg, out);
    assert_false(wq_e2e_file_exists(out));
}

/* A rank that dies mid-run: every rank exits non-zero, quickly, and no container appears. */
static void dying_rank_should_stop_every_rank(void **state)
{
    (void)state;
    char *log;
    setenv("WQ_FAULT_POINT", "block", 1);
    setenv("WQ_FAULT_RANK", "1", 1);
    setenv("WQ_FAULT_INDEX", "3", 1);
    int rc = wq_e2e_run(2, &log, "eval --model %s %s --stages 2", MODEL, WIKI);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, "fault injection"));
    setenv("WQ_FAULT_SIGNAL", "1", 1);
    setenv("WQ_FAULT_INDEX", "1", 1);
    char out[400];
    snprintf(out, sizeof out, "%s/killed.h5", g_dir);
    rc = wq_e2e_run(3, &log, "quantize --model %s --algo gptq --calib-text %s/text/tinystories-val-500.txt --set bits=4 --out %s --quiet",
                    MODEL, A, out);
    assert_int_not_equal(rc, 0);
    assert_false(wq_e2e_file_exists(out));
    unsetenv("WQ_FAULT_POINT");
    unsetenv("WQ_FAULT_RANK");
    unsetenv("WQ_FAULT_INDEX");
    unsetenv("WQ_FAULT_SIGNAL");
}

int main(void)
{
    if (!wq_test_tmpdir(g_dir, sizeof g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fp32_should_reproduce_reference_ppl),
        cmocka_unit_test(rtn_int4_g32_asym_should_reproduce_reference_ppl),
        cmocka_unit_test(generate_should_reproduce_greedy_ids),
        cmocka_unit_test(eval_should_be_identical_for_any_grid),
        cmocka_unit_test(peak_rss_should_not_grow_with_depth),
        cmocka_unit_test(bad_input_should_fail_clearly),
        cmocka_unit_test(dying_rank_should_stop_every_rank),
    };
    int failed = cmocka_run_group_tests_name("e2e_eval", tests, NULL, NULL);
    if (!failed) wq_test_system("rm -rf %s", g_dir);
    return failed;
}
