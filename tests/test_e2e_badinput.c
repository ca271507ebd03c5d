/* test_e2e_badinput.c: bad input to `mpiexec -n 2 wquant quantize` gives a clear message naming the
 * file, tensor or key, a non-zero exit on every rank, and no file at the output path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wq_e2e.h"
#include "wq_testutil.h"

#define MODEL WQ_ASSETS_DIR "/stories260K-hf"

static char g_dir[256];

/* Runs quantize on model dir `model` with extra args; asserts failure, the message and no output. */
static void expect_failure(const char *model, const char *extra, const char *needle)
{
    char out[400], *log;
    snprintf(out, sizeof out, "%s/out.h5", g_dir);
    remove(out);
    int rc = wq_e2e_run(2, &log, "quantize --model %s --out %s --quiet %s", model, out, extra);
    if (rc == 0 || !strstr(log, needle))
        print_error("rc=%d, expected message containing '%s':\n%s\n", rc, needle, log);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, needle));
    assert_false(wq_e2e_file_exists(out));
    char tmp[420];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    assert_false(wq_e2e_file_exists(tmp));
    assert_null(strstr(log, "Segmentation"));
    assert_null(strstr(log, "signal"));
}

/* A model dir with the real config.json and the given safetensors content. */
static const char *model_with_st(const char *tag, const char *header, const void *data, size_t n,
                                 int64_t hl_override)
{
    static char dir[400];
    char p[500];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, tag);
    wq_test_system("mkdir -p %s && cp %s/config.json %s/", dir, MODEL, dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(wq_e2e_write_st(p, header, data, n, hl_override), 0);
    return dir;
}

static void truncated_safetensors_should_fail(void **state)
{
    (void)state;
    char dir[400];
    snprintf(dir, sizeof dir, "%s/trunc", g_dir);
    wq_test_system("mkdir -p %s && cp %s/config.json %s/ && head -c 600000 %s/model.safetensors > %s/model.safetensors",
                   dir, MODEL, dir, MODEL, dir);
    expect_failure(dir, "", "model.safetensors");
}

static void header_longer_than_file_should_fail(void **state)
{
    (void)state;
    float d[4] = {0};
    const char *m = model_with_st("hlen", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 16, 1 << 20);
    expect_failure(m, "", "model.safetensors");
}

static void overlapping_offsets_should_fail(void **state)
{
    (void)state;
    float d[8] = {0};
    const char *m = model_with_st("overlap",
                                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                                  "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                                  d, 32, -1);
    expect_failure(m, "", "model.safetensors");
}

static void out_of_range_offsets_should_fail(void **state)
{
    (void)state;
    float d[4] = {0};
    const char *m = model_with_st("range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", d, 16, -1);
    expect_failure(m, "", "model.safetensors");
}

static void unknown_dtype_should_fail(void **state)
{
    (void)state;
    float d[4] = {0};
    const char *m = model_with_st("dtype", "{\"a\":{\"dtype\":\"F8_E9M9\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 16, -1);
    expect_failure(m, "", "F8_E9M9");
}

static void shape_length_mismatch_should_fail(void **state)
{
    (void)state;
    float d[4] = {0};
    const char *m = model_with_st("shape", "{\"wrongshape\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", d, 16, -1);
    expect_failure(m, "", "wrongshape");
}

static void missing_indexed_tensor_should_fail(void **state)
{
    (void)state;
    char dir[400], p[500];
    snprintf(dir, sizeof dir, "%s/index", g_dir);
    wq_test_system("mkdir -p %s && cp %s/config.json %s/ && cp %s/model.safetensors %s/model-00001-of-00001.safetensors",
                   dir, MODEL, dir, MODEL, dir);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"metadata\": {}, \"weight_map\": {\"model.norm.weight\": \"model-00001-of-00001.safetensors\","
          " \"model.ghost.weight\": \"model-00001-of-00001.safetensors\"}}", f);
    fclose(f);
    expect_failure(dir, "", "model.ghost.weight");
}

static void malformed_model_config_should_fail(void **state)
{
    (void)state;
    char dir[400], p[500];
    snprintf(dir, sizeof dir, "%s/badcfg", g_dir);
    wq_test_system("mkdir -p %s && cp %s/model.safetensors %s/", dir, MODEL, dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"hidden_size\": 64, \"num_hidden_layers\": ", f);
    fclose(f);
    expect_failure(dir, "", "config.json");
}

static void bad_wquant_config_should_fail(void **state)
{
    (void)state;
    char cfg[400], extra[500];
    snprintf(cfg, sizeof cfg, "%s/unknown.json", g_dir);
    FILE *f = fopen(cfg, "w");
    fputs("{\"rtn\": {\"global\": {\"bits\": 4, \"gruop_size\": 32}}}", f);
    fclose(f);
    snprintf(extra, sizeof extra, "--config %s", cfg);
    expect_failure(MODEL, extra, "gruop_size");
    expect_failure(MODEL, "--bits 0", "bits");
    expect_failure(MODEL, "--bits 9", "bits");
    expect_failure(MODEL, "--group-size 0", "group_size");
    snprintf(extra, sizeof extra, "--config %s/does-not-exist.json", g_dir);
    expect_failure(MODEL, extra, "does-not-exist.json");
}

static void unwritable_output_should_fail(void **state)
{
    (void)state;
    char *log;
    int rc = wq_e2e_run(2, &log, "quantize --model %s --out /nonexistent-dir/x/out.h5 --quiet", MODEL);
    if (rc == 0 || !strstr(log, "/nonexistent-dir/x/out.h5")) print_error("%s\n", log);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(log, "/nonexistent-dir/x/out.h5"));
    assert_false(wq_e2e_file_exists("/nonexistent-dir/x/out.h5"));
}

/* NaN weights are rejected (documented rule) with the tensor's name. */
static void nan_weight_should_fail_naming_the_tensor(void **state)
{
    (void)state;
    char dir[400], p[500];
    snprintf(dir, sizeof dir, "%s/nan", g_dir);
    wq_test_system("mkdir -p %s && cp %s/config.json %s/model.safetensors %s/", dir, MODEL, MODEL, dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    /* find the data offset of model.layers.3.mlp.up_proj.weight by hand and poison element 7 */
    FILE *f = fopen(p, "r+b");
    uint64_t hl;
    assert_int_equal(fread(&hl, 8, 1, f), 1);
    char *h = calloc(hl + 1, 1);
    assert_int_equal(fread(h, 1, hl, f), hl);
    char *k = strstr(h, "\"model.layers.3.mlp.up_proj.weight\"");
    assert_non_null(k);
    char *o = strstr(k, "data_offsets");
    assert_non_null(o);
    long begin = strtol(strchr(o, '[') + 1, NULL, 10);
    float nan = NAN;
    fseek(f, (long)(8 + hl) + begin + 7 * 4, SEEK_SET);
    fwrite(&nan, 4, 1, f);
    fclose(f);
    free(h);
    expect_failure(dir, "", "model.layers.3.mlp.up_proj");
}

int main(void)
{
    if (!wq_test_tmpdir(g_dir, sizeof g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(truncated_safetensors_should_fail),
        cmocka_unit_test(header_longer_than_file_should_fail),
        cmocka_unit_test(overlapping_offsets_should_fail),
        cmocka_unit_test(out_of_range_offsets_should_fail),
        cmocka_unit_test(unknown_dtype_should_fail),
        cmocka_unit_test(shape_length_mismatch_should_fail),
        cmocka_unit_test(missing_indexed_tensor_should_fail),
        cmocka_unit_test(malformed_model_config_should_fail),
        cmocka_unit_test(bad_wquant_config_should_fail),
        cmocka_unit_test(unwritable_output_should_fail),
        cmocka_unit_test(nan_weight_should_fail_naming_the_tensor),
    };
    int failed = cmocka_run_group_tests_name("e2e_badinput", tests, NULL, NULL);
    if (!failed) wq_test_system("rm -rf %s", g_dir);
    return failed;
}
