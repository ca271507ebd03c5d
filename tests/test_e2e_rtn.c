/* test_e2e_rtn.c: the real `wquant` on the real stories260K model.
 *  - RTN int4 g32 asym: every dequantized weight equals an independent fp32 implementation of the
 *    reference procedure (assets/README.md) to within 1 ulp; the safetensors bytes are parsed here
 *    by hand, not through the project's reader;
 *  - mpiexec -n 1..4 give containers whose datasets are identical (h5diff);
 *  - h5dump/h5ls read the container; inspect --json lists every linear with shapes and bits/weight;
 *  - the fp16 export loads back through the project's reader. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_half.h"
#include "io_hdf5/h5_container.h"
#include "model/st_reader.h"
#include "wq_e2e.h"
#include "wq_testutil.h"

#define MODEL WQ_ASSETS_DIR "/stories260K-hf"

static char g_dir[256];

/* Independent reference: numerics.md 1.2 asym, fp32 arithmetic, rint = half-to-even. */
static void ref_rtn_asym(const float *w, int64_t rows, int64_t cols, int64_t gs, int bits, float *out)
{
    const float maxq = (float)((1 << bits) - 1);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g0 = 0; g0 < cols; g0 += gs) {
            int64_t n = cols - g0 < gs ? cols - g0 : gs;
            const float *x = w + r * cols + g0;
            float mn = 0, mx = 0;
            for (int64_t i = 0; i < n; i++) {
                if (x[i] < mn) mn = x[i];
                if (x[i] > mx) mx = x[i];
            }
            if (mn == 0 && mx == 0) mn = -1, mx = 1;
            float scale = (mx - mn) / maxq;
            float zp = rintf(-mn / scale);
            for (int64_t i = 0; i < n; i++) {
                float q = rintf(x[i] / scale) + zp;
                q = q < 0 ? 0 : (q > maxq ? maxq : q);
                out[r * cols + g0 + i] = (q - zp) * scale;
            }
        }
}

/* Reads tensor `name` of a single-file F32 safetensors by hand. */
static float *read_tensor_by_hand(const char *path, const char *name, int64_t *rows, int64_t *cols)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint64_t hl;
    assert_int_equal(fread(&hl, 8, 1, f), 1);
    char *h = calloc(hl + 1, 1);
    assert_int_equal(fread(h, 1, hl, f), hl);
    cJSON *root = cJSON_Parse(h);
    cJSON *t = cJSON_GetObjectItem(root, name);
    assert_non_null(t);
    assert_string_equal(cJSON_GetObjectItem(t, "dtype")->valuestring, "F32");
    cJSON *sh = cJSON_GetObjectItem(t, "shape"), *off = cJSON_GetObjectItem(t, "data_offsets");
    *rows = (int64_t)cJSON_GetArrayItem(sh, 0)->valuedouble;
    *cols = cJSON_GetArraySize(sh) > 1 ? (int64_t)cJSON_GetArrayItem(sh, 1)->valuedouble : 1;
    int64_t b = (int64_t)cJSON_GetArrayItem(off, 0)->valuedouble;
    float *w = malloc((size_t)(*rows * *cols) * 4);
    fseek(f, (long)(8 + hl + (uint64_t)b), SEEK_SET);
    assert_int_equal(fread(w, 4, (size_t)(*rows * *cols), f), (size_t)(*rows * *cols));
    cJSON_Delete(root);
    free(h);
    fclose(f);
    return w;
}

static const char *k_proj[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                               "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

static void rtn_should_match_reference_within_one_ulp(void **state)
{
    (void)state;
    char cfg[400], out[400], *log;
    snprintf(cfg, sizeof cfg, "%s/cfg.json", g_dir);
    FILE *f = fopen(cfg, "w");
    fputs("{\"rtn\": {\"global\": {\"dtype\": \"int\", \"bits\": 4, \"group_size\": 32, \"use_sym\": false}}}", f);
    fclose(f);
    snprintf(out, sizeof out, "%s/np1.h5", g_dir);
    int rc = wq_e2e_run(1, &log, "quantize --model %s --config %s --out %s", MODEL, cfg, out);
    if (rc) print_error("%s\n", log);
    assert_int_equal(rc, 0);
    wq_h5_reader *r;
    assert_int_equal(wq_h5_open(out, &r), WQ_OK);
    int64_t checked = 0, worst = 0;
    for (int layer = 0; layer < 5; layer++)
        for (int p = 0; p < 7; p++) {
            char name[128], tname[160];
            snprintf(name, sizeof name, "model.layers.%d.%s", layer, k_proj[p]);
            snprintf(tname, sizeof tname, "%s.weight", name);
            int64_t rows, cols;
            float *w = read_tensor_by_hand(MODEL "/model.safetensors", tname, &rows, &cols);
            float *ref = malloc((size_t)(rows * cols) * 4), *got = malloc((size_t)(rows * cols) * 4);
            ref_rtn_asym(w, rows, cols, 32, 4, ref);
            const wq_h5_entry *e = wq_h5_find(r, name);
            assert_non_null(e);
            assert_int_equal(e->rows, rows);
            assert_int_equal(e->cols, cols);
            assert_int_equal(wq_h5_dequant(r, e, got), WQ_OK);
            for (int64_t i = 0; i < rows * cols; i++) {
                int64_t u = wq_test_ulp_diff(ref[i], got[i]);
                if (u > worst) worst = u;
                if (u > 1) print_error("%s[%lld]: ref %.9g got %.9g\n", name, (long long)i, ref[i], got[i]);
                assert_true(u <= 1);
            }
            checked += rows * cols;
            free(w), free(ref), free(got);
        }
    printf("checked %lld dequantized weights, worst %lld ulp\n", (long long)checked, (long long)worst);
    /* unquantized tensors are kept bit-exact */
    const wq_h5_entry *emb = wq_h5_find(r, "model.embed_tokens.weight");
    assert_non_null(emb);
    assert_int_equal(emb->kind, WQ_H5_RAW);
    int64_t rows, cols;
    float *w = read_tensor_by_hand(MODEL "/model.safetensors", "model.embed_tokens.weight", &rows, &cols);
    float *got = malloc((size_t)(rows * cols) * 4);
    assert_int_equal(wq_h5_read_raw_f32(r, emb, got), WQ_OK);
    assert_memory_equal(w, got, (size_t)(rows * cols) * 4);
    free(w), free(got);
    assert_null(wq_h5_find(r, "lm_head")); /* tied: no lm_head tensor, nothing invented */
    wq_h5_close(r);
    char qc[400];
    snprintf(qc, sizeof qc, "%s/qconfig.json", g_dir);
    assert_true(wq_e2e_file_exists(qc));
}

static void containers_should_be_identical_for_any_rank_count(void **state)
{
    (void)state;
    char *log;
    for (int np = 2; np <= 4; np++) {
        int rc = wq_e2e_run(np, &log, "quantize --model %s --config %s/cfg.json --out %s/np%d.h5 --quiet",
                            MODEL, g_dir, g_dir, np);
        if (rc) print_error("%s\n", log);
        assert_int_equal(rc, 0);
        rc = wq_test_system("h5diff %s/np1.h5 %s/np%d.h5", g_dir, g_dir, np);
        assert_int_equal(rc, 0);
    }
    /* a different config must differ (h5diff really compares data) */
    int rc = wq_e2e_run(2, &log, "quantize --model %s --config %s/cfg.json --bits 3 --out %s/b3.h5 --quiet",
                        MODEL, g_dir, g_dir);
    assert_int_equal(rc, 0);
    assert_int_not_equal(wq_test_system("h5diff -q %s/np1.h5 %s/b3.h5 >/dev/null 2>&1", g_dir, g_dir), 0);
    assert_int_equal(wq_test_system("h5dump -H %s/np1.h5 >/dev/null", g_dir), 0);
    assert_int_equal(wq_test_system("h5ls -r %s/np1.h5 >/dev/null", g_dir), 0);
}

static void inspect_json_should_list_every_linear(void **state)
{
    (void)state;
    char *log;
    int rc = wq_e2e_run(0, &log, "inspect --json %s/np1.h5", g_dir);
    assert_int_equal(rc, 0);
    cJSON *root = cJSON_Parse(log);
    assert_non_null(root);
    cJSON *layers = cJSON_GetObjectItem(root, "layers");
    assert_int_equal(cJSON_GetArraySize(layers), 35);
    cJSON *l;
    int seen_down = 0;
    cJSON_ArrayForEach(l, layers)
    {
        const char *name = cJSON_GetObjectItem(l, "name")->valuestring;
        cJSON *sh = cJSON_GetObjectItem(l, "shape");
        int64_t out = (int64_t)cJSON_GetArrayItem(sh, 0)->valuedouble;
        int64_t in = (int64_t)cJSON_GetArrayItem(sh, 1)->valuedouble;
        double bpw = cJSON_GetObjectItem(l, "bits_per_weight")->valuedouble;
        /* int4 codes + f32 scale + 4-bit zero per 32 weights: 4 + 32/32 + 4/32 = 5.125 bits,
         * plus packing overhead of ragged shapes (down_proj: 172 = 5*32 + 12 -> 6 groups) */
        double groups = ceil((double)in / 32.0);
        double expect = (32.0 * ceil(in / 8.0) * out + 32.0 * groups * out + 32.0 * groups * ceil(out / 8.0)) /
                        (double)(in * out);
        if (fabs(bpw - expect) > 1e-9) print_error("%s: %g bits/w, expected %g\n", name, bpw, expect);
        assert_true(fabs(bpw - expect) < 1e-9);
        if (strstr(name, "down_proj")) {
            seen_down++;
            assert_int_equal(out, 64);
            assert_int_equal(in, 172);
        } else if (strstr(name, "k_proj") || strstr(name, "v_proj")) {
            assert_int_equal(out, 32);
            assert_int_equal(in, 64);
        }
        assert_int_equal((int)cJSON_GetObjectItem(l, "bits")->valuedouble, 4);
    }
    assert_int_equal(seen_down, 5);
    cJSON_Delete(root);
}

static void fp16_export_should_load_back(void **state)
{
    (void)state;
    char *log, dir[400], st_path[400];
    snprintf(dir, sizeof dir, "%s/export", g_dir);
    int rc = wq_e2e_run(0, &log, "export --format safetensors-fp16 %s/np1.h5 %s", g_dir, dir);
    if (rc) print_error("%s\n", log);
    assert_int_equal(rc, 0);
    wq_st_model *m;
    assert_int_equal(wq_st_open(dir, &m), WQ_OK);
    snprintf(st_path, sizeof st_path, "%s/np1.h5", g_dir);
    wq_h5_reader *r;
    assert_int_equal(wq_h5_open(st_path, &r), WQ_OK);
    const wq_st_tensor *t = wq_st_find(m, "model.layers.2.mlp.down_proj.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, WQ_DTYPE_F16);
    float *a = malloc((size_t)t->numel * 4), *b = malloc((size_t)t->numel * 4);
    assert_int_equal(wq_st_read_f32(m, t, a), WQ_OK);
    assert_int_equal(wq_h5_dequant(r, wq_h5_find(r, "model.layers.2.mlp.down_proj"), b), WQ_OK);
    for (int64_t i = 0; i < t->numel; i++) assert_true(a[i] == wq_f16_to_f32(wq_f32_to_f16(b[i])));
    assert_int_equal(wq_st_count(m), wq_h5_count(r));
    free(a), free(b);
    wq_h5_close(r);
    wq_st_close(m);
}

int main(void)
{
    if (!wq_test_tmpdir(g_dir, sizeof g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rtn_should_match_reference_within_one_ulp),
        cmocka_unit_test(containers_should_be_identical_for_any_rank_count),
        cmocka_unit_test(inspect_json_should_list_every_linear),
        cmocka_unit_test(fp16_export_should_load_back),
    };
    int failed = cmocka_run_group_tests_name("e2e_rtn", tests, NULL, NULL);
    if (!failed) wq_test_system("rm -rf %s", g_dir);
    return failed;
}
