/* test_export_hf.c: `wquant export --format gptq|awq` end to end with the real CLI.
 * Each export is read back by an independent reader written here from the published layouts
 * (numerics.md 9.5 GPTQ incl. the AutoGPTQ 3-bit words, 9.6 AutoAWQ GEMM interleave): the
 * safetensors header is parsed with cJSON, bits are unpacked by hand, and
 *   W[o,c] = scale[g_idx[c], o] * (q[c,o] - zp[g_idx[c], o])   (v1: zp = stored + 1, unmasked)
 * must equal, bit for bit, the container's weights read through wquant's reader with the scales
 * rounded to fp16 as the formats store them. Refusals (bits, dtype, mixed settings, ragged groups,
 * AWQ sym / input_scale, lossy --gptq-v1) are checked for a clear message and no output.
 * Models: stories260K (in_features 64 and 172) and a synthetic model with its widths but
 * intermediate_size 192, so 2/3/4-bit layouts (in, out multiples of 32) are expressible. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_half.h"
#include "io_hdf5/h5_container.h"
#include "wq_e2e.h"
#include "wq_testutil.h"

#define A WQ_ASSETS_DIR
#define STORIES A "/stories260K-hf"

static char g_dir[256];
static char g_syn[300]; /* synthetic model dir */

/* ---- independent safetensors reader --------------------------------------------------------- */

typedef struct {
    int n;
    cJSON *hdr[16];
    unsigned char *data[16];
} hf_dir;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    b[got] = 0;
    if (len) *len = got;
    return b;
}

static void hf_load_shard(hf_dir *h, const char *path)
{
    size_t len;
    char *b = slurp(path, &len);
    assert_non_null(b);
    uint64_t hl;
    memcpy(&hl, b, 8);
    assert_true(8 + hl <= len);
    char *txt = malloc(hl + 1);
    memcpy(txt, b + 8, hl);
    txt[hl] = 0;
    assert_true(h->n < 16);
    h->hdr[h->n] = cJSON_Parse(txt);
    assert_non_null(h->hdr[h->n]);
    free(txt);
    h->data[h->n] = (unsigned char *)b + 8 + hl; /* leaked with b: test process */
    h->n++;
}

/* model.safetensors, or the shards listed by model.safetensors.index.json */
static void hf_open(hf_dir *h, const char *dir, int expect_shards)
{
    char p[600];
    memset(h, 0, sizeof *h);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    char *idx = slurp(p, NULL);
    if (!idx) {
        assert_int_equal(expect_shards, 1);
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        hf_load_shard(h, p);
        return;
    }
    cJSON *root = cJSON_Parse(idx), *it;
    cJSON *map = cJSON_GetObjectItem(root, "weight_map");
    assert_non_null(map);
    const char *seen[16];
    int n = 0;
    cJSON_ArrayForEach(it, map)
    {
        int k = 0;
        while (k < n && strcmp(seen[k], it->valuestring) != 0)
            k++;
        if (k == n) {
            seen[n++] = it->valuestring;
            snprintf(p, sizeof p, "%s/%s", dir, it->valuestring);
            hf_load_shard(h, p);
        }
    }
    assert_true(n > 1);
    if (expect_shards > 0) assert_int_equal(n, expect_shards);
    free(idx);
}

/* Data of tensor `name` (dtype checked); d[0], d[1] get the shape (d[1] = 1 for 1-D). */
static const void *hf_tensor(const hf_dir *h, const char *name, const char *dtype, int64_t d[2])
{
    for (int s = 0; s < h->n; s++) {
        cJSON *t = cJSON_GetObjectItem(h->hdr[s], name);
        if (!t) continue;
        assert_string_equal(cJSON_GetObjectItem(t, "dtype")->valuestring, dtype);
        cJSON *sh = cJSON_GetObjectItem(t, "shape");
        d[0] = cJSON_GetArraySize(sh) > 0 ? (int64_t)cJSON_GetArrayItem(sh, 0)->valuedouble : 1;
        d[1] = cJSON_GetArraySize(sh) > 1 ? (int64_t)cJSON_GetArrayItem(sh, 1)->valuedouble : 1;
        return h->data[s] +
               (int64_t)cJSON_GetArrayItem(cJSON_GetObjectItem(t, "data_offsets"), 0)->valuedouble;
    }
    print_error("tensor '%s' not in the export\n", name);
    fail();
    return NULL;
}

static uint32_t word(const void *base, int64_t i)
{
    uint32_t w;
    memcpy(&w, (const unsigned char *)base + 4 * i, 4);
    return w;
}

/* IEEE binary16 -> float, written out from the format (not core_half). */
static float half_to_float(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : ldexpf((float)(m | 1024), e - 25);
    assert_true(e != 31);
    return (h & 0x8000) ? -v : v;
}

/* Value k of a GPTQ run packed along a dimension (stride between consecutive words). */
static uint32_t gptq_get(const void *w, int64_t stride, int64_t off, int64_t k, int bits)
{
    if (bits != 3) {
        int pack = 32 / bits;
        return (word(w, (k / pack) * stride + off) >> (bits * (k % pack))) & ((1u << bits) - 1);
    }
    /* AutoGPTQ: 32 values in 3 words (numerics 9.5) */
    int64_t b = k / 32;
    int i = (int)(k % 32);
    uint32_t w0 = word(w, (3 * b) * stride + off), w1 = word(w, (3 * b + 1) * stride + off),
             w2 = word(w, (3 * b + 2) * stride + off);
    if (i < 10) return (w0 >> (3 * i)) & 7;
    if (i == 10) return ((w0 >> 30) & 3) | ((w1 & 1) << 2);
    if (i < 21) return (w1 >> (3 * (i - 11) + 1)) & 7;
    if (i == 21) return ((w1 >> 31) & 1) | ((w2 & 3) << 1);
    return (w2 >> (3 * (i - 22) + 2)) & 7;
}

/* ---- the container side: weights through wquant's reader, scales rounded to fp16 ------------- */

/* ref[o*cols + c]; returns 1 if some zero point is 0 */
static int container_ref(const wq_h5_reader *r, const wq_h5_entry *e, float *ref)
{
    wq_qmatrix m;
    assert_int_equal(wq_h5_read_qmatrix(r, e, &m), WQ_OK);
    int z0 = 0;
    for (int64_t o = 0; o < m.rows; o++)
        for (int64_t c = 0; c < m.cols; c++) {
            int64_t g = m.g_idx ? m.g_idx[c] : c / m.group_size;
            float s = wq_f16_to_f32(wq_f32_to_f16(m.scales[o * m.ngroups + g]));
            float z = m.zeros[o * m.ngroups + g];
            z0 |= z == 0;
            ref[o * m.cols + c] = s * ((float)m.codes[o * m.cols + c] - z);
        }
    wq_qmatrix_free(&m);
    return z0;
}

static cJSON *read_json(const char *path)
{
    char *t = slurp(path, NULL);
    assert_non_null(t);
    cJSON *j = cJSON_Parse(t);
    free(t);
    assert_non_null(j);
    return j;
}

/* Checks config.json's quantization_config (and quantize_config.json) against what transformers'
 * GPTQ loader requires; returns the checkpoint_format's v1-ness. */
static int check_gptq_config(const char *dir, int bits, int64_t gs, int sym, int desc_act)
{
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    cJSON *cfg = read_json(p);
    cJSON *q = cJSON_GetObjectItem(cfg, "quantization_config");
    assert_non_null(q);
    assert_string_equal(cJSON_GetObjectItem(q, "quant_method")->valuestring, "gptq");
    assert_int_equal((int)cJSON_GetObjectItem(q, "bits")->valuedouble, bits);
    assert_int_equal((int64_t)cJSON_GetObjectItem(q, "group_size")->valuedouble, gs);
    assert_true(cJSON_IsBool(cJSON_GetObjectItem(q, "desc_act")));
    assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(q, "desc_act")), desc_act);
    assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(q, "sym")), sym);
    double damp = cJSON_GetObjectItem(q, "damp_percent")->valuedouble;
    assert_true(damp > 0 && damp < 1); /* transformers' GPTQConfig validates this */
    assert_true(cJSON_IsBool(cJSON_GetObjectItem(q, "true_sequential")));
    assert_true(cJSON_IsBool(cJSON_GetObjectItem(q, "static_groups")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(q, "model_name_or_path")));
    assert_string_equal(cJSON_GetObjectItem(q, "model_file_base_name")->valuestring, "model");
    assert_string_equal(cJSON_GetObjectItem(cfg, "torch_dtype")->valuestring, "float16");
    assert_non_null(cJSON_GetObjectItem(cfg, "hidden_size")); /* the source config is kept */
    const char *cf = cJSON_GetObjectItem(q, "checkpoint_format")->valuestring;
    assert_true(strcmp(cf, "gptq") == 0 || strcmp(cf, "gptq_v2") == 0);
    int v1 = strcmp(cf, "gptq") == 0;
    snprintf(p, sizeof p, "%s/quantize_config.json", dir);
    cJSON *qc = read_json(p);
    assert_true(cJSON_Compare(q, qc, 1));
    cJSON_Delete(qc);
    cJSON_Delete(cfg);
    return v1;
}

/* Reads every quantized layer of the GPTQ export and compares with the container bit for bit;
 * also checks the non-quantized tensors (F16 of the originals). Returns the number of layers. */
static int gptq_roundtrip(const char *h5, const char *dir, int bits, int64_t gs, int sym,
                          int desc_act, int shards)
{
    int v1 = check_gptq_config(dir, bits, gs, sym, desc_act);
    hf_dir h;
    hf_open(&h, dir, shards);
    wq_h5_reader *r;
    assert_int_equal(wq_h5_open(h5, &r), WQ_OK);
    int layers = 0, any_zero = 0, nontrivial = 0;
    for (int64_t i = 0; i < wq_h5_count(r); i++) {
        const wq_h5_entry *e = wq_h5_entry_at(r, i);
        char n[400];
        int64_t d[2];
        if (e->kind != WQ_H5_QLINEAR) {
            int64_t numel = 1;
            for (int k = 0; k < e->ndim; k++)
                numel *= e->shape[k];
            float *x = malloc((size_t)numel * 4);
            assert_int_equal(wq_h5_read_raw_f32(r, e, x), WQ_OK);
            const unsigned char *t = hf_tensor(&h, e->name, "F16", d);
            for (int64_t k = 0; k < numel; k++) {
                uint16_t hv;
                memcpy(&hv, t + 2 * k, 2);
                assert_true(half_to_float(hv) == wq_f16_to_f32(wq_f32_to_f16(x[k])));
            }
            free(x);
            continue;
        }
        const int64_t rows = e->rows, cols = e->cols;
        snprintf(n, sizeof n, "%s.qweight", e->name);
        const void *qw = hf_tensor(&h, n, "I32", d);
        assert_int_equal(d[0] * 32, cols * bits);
        assert_int_equal(d[1], rows);
        snprintf(n, sizeof n, "%s.g_idx", e->name);
        const void *gi = hf_tensor(&h, n, "I32", d);
        assert_int_equal(d[0], cols);
        snprintf(n, sizeof n, "%s.scales", e->name);
        const unsigned char *sc = hf_tensor(&h, n, "F16", d);
        int64_t ng = d[0];
        assert_int_equal(d[1], rows);
        assert_int_equal(ng, gs == -1 ? 1 : cols / gs);
        snprintf(n, sizeof n, "%s.qzeros", e->name);
        const void *qz = hf_tensor(&h, n, "I32", d);
        assert_int_equal(d[0], ng);
        assert_int_equal(d[1] * 32, rows * bits);
        int64_t zw = d[1];
        float *ref = malloc((size_t)(rows * cols) * 4);
        any_zero |= container_ref(r, e, ref);
        for (int64_t c = 0; c < cols; c++) {
            int32_t g = (int32_t)word(gi, c);
            assert_true(g >= 0 && g < ng);
            if (g != (int32_t)(c / (cols / ng))) nontrivial = 1;
            for (int64_t o = 0; o < rows; o++) {
                int64_t q = gptq_get(qw, rows, o, c, bits);
                int64_t zp =
                    gptq_get((const unsigned char *)qz + 4 * g * zw, 1, 0, o, bits) + (v1 ? 1 : 0);
                if (sym) assert_int_equal(zp, 1 << (bits - 1));
                uint16_t hv;
                memcpy(&hv, sc + 2 * (g * rows + o), 2);
                float w = half_to_float(hv) * (float)(q - zp);
                if (memcmp(&w, &ref[o * cols + c], 4) != 0) {
                    print_error("%s[%lld, %lld]: export %.9g container %.9g\n", e->name,
                                (long long)o, (long long)c, w, ref[o * cols + c]);
                    fail();
                }
            }
        }
        free(ref);
        layers++;
    }
    /* v1 exactly when lossless; g_idx nontrivial exactly with desc_act */
    assert_int_equal(v1, !any_zero);
    assert_int_equal(nontrivial, desc_act);
    wq_h5_close(r);
    return layers;
}

static int awq_roundtrip(const char *h5, const char *dir, int64_t gs, int shards)
{
    static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    cJSON *cfg = read_json(p), *q = cJSON_GetObjectItem(cfg, "quantization_config");
    assert_string_equal(cJSON_GetObjectItem(q, "quant_method")->valuestring, "awq");
    assert_int_equal((int)cJSON_GetObjectItem(q, "bits")->valuedouble, 4);
    assert_int_equal((int64_t)cJSON_GetObjectItem(q, "group_size")->valuedouble, gs);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(q, "zero_point")));
    assert_string_equal(cJSON_GetObjectItem(q, "version")->valuestring, "gemm");
    assert_non_null(cJSON_GetObjectItem(q, "modules_to_not_convert"));
    cJSON_Delete(cfg);
    hf_dir h;
    hf_open(&h, dir, shards);
    wq_h5_reader *r;
    assert_int_equal(wq_h5_open(h5, &r), WQ_OK);
    int layers = 0;
    for (int64_t i = 0; i < wq_h5_count(r); i++) {
        const wq_h5_entry *e = wq_h5_entry_at(r, i);
        if (e->kind != WQ_H5_QLINEAR) continue;
        const int64_t rows = e->rows, cols = e->cols;
        char n[400];
        int64_t d[2];
        snprintf(n, sizeof n, "%s.qweight", e->name);
        const void *qw = hf_tensor(&h, n, "I32", d);
        assert_int_equal(d[0], cols);
        assert_int_equal(d[1] * 8, rows);
        snprintf(n, sizeof n, "%s.scales", e->name);
        const unsigned char *sc = hf_tensor(&h, n, "F16", d);
        int64_t ng = d[0];
        assert_int_equal(ng, cols / gs);
        snprintf(n, sizeof n, "%s.qzeros", e->name);
        const void *qz = hf_tensor(&h, n, "I32", d);
        assert_int_equal(d[0], ng);
        assert_int_equal(d[1] * 8, rows);
        float *ref = malloc((size_t)(rows * cols) * 4);
        container_ref(r, e, ref);
        for (int64_t c = 0; c < cols; c++)
            for (int64_t o = 0; o < rows; o++) {
                int nib = 0;
                while (order[nib] != o % 8)
                    nib++;
                int64_t g = c / gs;
                int64_t qv = (word(qw, c * (rows / 8) + o / 8) >> (4 * nib)) & 15;
                int64_t zp = (word(qz, g * (rows / 8) + o / 8) >> (4 * nib)) & 15;
                uint16_t hv;
                memcpy(&hv, sc + 2 * (g * rows + o), 2);
                float w = half_to_float(hv) * (float)(qv - zp);
                if (memcmp(&w, &ref[o * cols + c], 4) != 0) {
                    print_error("%s[%lld, %lld]: export %.9g container %.9g\n", e->name,
                                (long long)o, (long long)c, w, ref[o * cols + c]);
                    fail();
                }
            }
        free(ref);
        layers++;
    }
    wq_h5_close(r);
    return layers;
}

/* ---- helpers running the CLI ------------------------------------------------------------------
 */

static void quantize(const char *model, const char *out, const char *args)
{
    char *log;
    int rc =
        wq_e2e_run(0, &log, "quantize --model %s --out %s/%s --quiet %s", model, g_dir, out, args);
    if (rc) print_error("%s\n", log);
    assert_int_equal(rc, 0);
}

static int export_(const char *fmt, const char *h5, const char *outdir, const char *args,
                   char **log)
{
    return wq_e2e_run(0, log, "export --format %s %s/%s %s/%s %s", fmt, g_dir, h5, g_dir, outdir,
                      args);
}

static void export_ok(const char *fmt, const char *h5, const char *outdir, const char *args)
{
    char *log;
    int rc = export_(fmt, h5, outdir, args, &log);
    if (rc) print_error("%s\n", log);
    assert_int_equal(rc, 0);
}

/* The export must fail with exit code 2, mention every needle, and leave no directory behind. */
static void export_refused(const char *fmt, const char *h5, const char *outdir, const char *args,
                           const char *const *needles)
{
    char *log, p[600];
    int rc = export_(fmt, h5, outdir, args, &log);
    if (rc != 2) print_error("rc %d\n%s\n", rc, log);
    assert_int_equal(rc, 2);
    for (int i = 0; needles[i]; i++) {
        if (!strstr(log, needles[i])) print_error("'%s' missing in:\n%s\n", needles[i], log);
        assert_non_null(strstr(log, needles[i]));
    }
    snprintf(p, sizeof p, "%s/%s", g_dir, outdir);
    assert_false(wq_e2e_file_exists(p));
}

static void path_of(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void gptq_rtn_should_roundtrip_bitwise_for_2_3_4_8_bits(void **state)
{
    (void)state;
    static const int bits[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++)
        for (int sym = 0; sym < 2; sym++) {
            char h5[64], out[64], args[128], hp[600], op[600];
            snprintf(h5, sizeof h5, "r%d%s.h5", bits[b], sym ? "s" : "a");
            snprintf(out, sizeof out, "gptq_r%d%s", bits[b], sym ? "s" : "a");
            snprintf(args, sizeof args, "--dtype int%d --group-size 64 %s", bits[b],
                     sym ? "--sym" : "--asym");
            quantize(g_syn, h5, args);
            export_ok("gptq", h5, out, "");
            path_of(hp, sizeof hp, h5);
            path_of(op, sizeof op, out);
            int layers = gptq_roundtrip(hp, op, bits[b], 64, sym, 0, 1);
            assert_int_equal(layers, 14);
            printf("gptq int%d g64 %s: 14 layers bit-exact\n", bits[b], sym ? "sym" : "asym");
        }
}

/* int2 asym has groups with zero point 0 on this model: v2 with a warning, --gptq-v1 refused. */
static void gptq_should_write_v2_when_v1_is_lossy_and_refuse_forced_v1(void **state)
{
    (void)state;
    char *log, hp[600], op[600];
    int rc = export_("gptq", "r2a.h5", "gptq_v2", "", &log);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(log, "gptq_v2"));
    assert_non_null(strstr(log, "zero point 0"));
    path_of(hp, sizeof hp, "r2a.h5");
    path_of(op, sizeof op, "gptq_v2");
    assert_int_equal(check_gptq_config(op, 2, 64, 0, 0), 0);
    static const char *const need[] = {"--gptq-v1", "lossy", "zero point 0", NULL};
    export_refused("gptq", "r2a.h5", "gptq_v1_refused", "--gptq-v1", need);
    /* sym is lossless in v1: --gptq-v1 accepted */
    export_ok("gptq", "r4s.h5", "gptq_v1_forced", "--gptq-v1");
    path_of(op, sizeof op, "gptq_v1_forced");
    assert_int_equal(check_gptq_config(op, 4, 64, 1, 0), 1);
}

static void gptq_act_order_should_write_desc_act_and_gidx(void **state)
{
    (void)state;
    char cfg[600], hp[600], op[600];
    path_of(cfg, sizeof cfg, "gptq_act.json");
    FILE *f = fopen(cfg, "w");
    fprintf(f, "{\"gptq\": {\"global\": {\"dtype\": \"int\", \"bits\": 4, \"group_size\": 64, "
               "\"use_sym\": false, \"act_order\": true, \"percdamp\": 0.01, \"block_size\": 128}},"
               " \"calibration\": {\"format\": \"stories\", \"range\": [0, 400], \"n_samples\": 16,"
               " \"seqlen\": 128, \"seed\": 0}}");
    fclose(f);
    char args[900];
    snprintf(args, sizeof args, "--config %s --calib-text %s/text/tinystories-val-500.txt", cfg, A);
    quantize(g_syn, "gact.h5", args);
    export_ok("gptq", "gact.h5", "gptq_act", "--max-shard-mb 0.03");
    path_of(hp, sizeof hp, "gact.h5");
    path_of(op, sizeof op, "gptq_act");
    assert_int_equal(gptq_roundtrip(hp, op, 4, 64, 0, 1, 0), 14);
}

/* The real model: per-channel int8 loads everywhere (172 % 4 == 0); tokenizer copied. */
static void gptq_stories_int8_per_channel_should_roundtrip_with_tokenizer(void **state)
{
    (void)state;
    char hp[600], op[600];
    quantize(STORIES, "s8.h5", "--dtype int8 --group-size -1 --asym");
    export_ok("gptq", "s8.h5", "gptq_s8", "--model " STORIES);
    path_of(hp, sizeof hp, "s8.h5");
    path_of(op, sizeof op, "gptq_s8");
    assert_int_equal(gptq_roundtrip(hp, op, 8, -1, 0, 0, 1), 35);
    assert_int_equal(
        wq_test_system("cmp -s %s/tokenizer.model %s/gptq_s8/tokenizer.model", STORIES, g_dir), 0);
}

static void awq_should_roundtrip_bitwise_sharded(void **state)
{
    (void)state;
    char hp[600], op[600];
    quantize(g_syn, "awq4.h5", "--dtype int4 --group-size 64 --asym");
    export_ok("awq", "awq4.h5", "awq4", "--max-shard-mb 0.03");
    path_of(hp, sizeof hp, "awq4.h5");
    path_of(op, sizeof op, "awq4");
    assert_int_equal(awq_roundtrip(hp, op, 64, 0), 14);
    /* stories260K with group 4 (divides 64 and 172) is refused anyway: out 172 % 8 != 0 */
    quantize(STORIES, "s4g4.h5", "--dtype int4 --group-size 4 --asym");
    static const char *const need[] = {"out_features 172", "mlp", NULL};
    export_refused("awq", "s4g4.h5", "awq_s4g4", "", need);
}

static void awq_with_folding_should_export_and_with_input_scale_refuse(void **state)
{
    (void)state;
    char cfg[600], args[900], hp[600], op[600];
    for (int fold = 0; fold < 2; fold++) {
        snprintf(cfg, sizeof cfg, "%s/awq%d.json", g_dir, fold);
        FILE *f = fopen(cfg, "w");
        fprintf(f,
                "{\"awq\": {\"global\": {\"dtype\": \"int\", \"bits\": 4, \"group_size\": 64, "
                "\"use_sym\": false, \"folding\": %s}}, \"calibration\": {\"format\": \"stories\","
                " \"range\": [0, 400], \"n_samples\": 8, \"seqlen\": 128, \"seed\": 0}}",
                fold ? "true" : "false");
        fclose(f);
        char h5[32];
        snprintf(h5, sizeof h5, "awqalgo%d.h5", fold);
        snprintf(args, sizeof args, "--config %s --calib-text %s/text/tinystories-val-500.txt", cfg,
                 A);
        quantize(g_syn, h5, args);
    }
    static const char *const need[] = {"input_scale", "folding", "model.layers.0.", NULL};
    export_refused("awq", "awqalgo0.h5", "awq_is", "", need);
    export_refused("gptq", "awqalgo0.h5", "gptq_is", "", need);
    export_ok("awq", "awqalgo1.h5", "awq_fold", "");
    path_of(hp, sizeof hp, "awqalgo1.h5");
    path_of(op, sizeof op, "awq_fold");
    assert_int_equal(awq_roundtrip(hp, op, 64, 1), 14);
}

static void exports_should_refuse_what_the_formats_cannot_express(void **state)
{
    (void)state;
    /* ragged groups: stories260K down_proj has 172 inputs, 64 does not divide them */
    quantize(STORIES, "s4g64.h5", "--dtype int4 --group-size 64 --asym");
    static const char *const ragged[] = {"down_proj", "172", "group_size 64", "vLLM", NULL};
    export_refused("gptq", "s4g64.h5", "x_ragged", "", ragged);
    export_refused("awq", "s4g64.h5", "x_ragged_awq", "", ragged);
    /* per-channel int4 on stories260K: 172 is not a multiple of the 8 rows a word packs */
    quantize(STORIES, "s4pc.h5", "--dtype int4 --group-size -1 --asym");
    static const char *const pack[] = {"172", "not a multiple of 8", NULL};
    export_refused("gptq", "s4pc.h5", "x_pack", "", pack);
    /* 5-bit */
    quantize(g_syn, "r5.h5", "--dtype int5 --group-size 64 --asym");
    static const char *const b5[] = {"5 bits", "allowed: 2, 3, 4, 8", "model.layers.0.", NULL};
    export_refused("gptq", "r5.h5", "x_b5", "", b5);
    /* nf4 */
    quantize(g_syn, "nf4.h5", "--dtype nf4 --group-size 64");
    static const char *const nf4[] = {"nf4", "allowed", NULL};
    export_refused("gptq", "nf4.h5", "x_nf4", "", nf4);
    export_refused("awq", "nf4.h5", "x_nf4_awq", "", nf4);
    /* mixed bits through a local rule */
    char cfg[600], args[700];
    snprintf(cfg, sizeof cfg, "%s/mixed.json", g_dir);
    FILE *f = fopen(cfg, "w");
    fputs("{\"rtn\": {\"global\": {\"dtype\": \"int\", \"bits\": 4, \"group_size\": 64, "
          "\"use_sym\": false},"
          " \"local\": {\"re:.*down_proj\": {\"bits\": 8}}}}",
          f);
    fclose(f);
    snprintf(args, sizeof args, "--config %s", cfg);
    quantize(g_syn, "mixed.h5", args);
    static const char *const mixed[] = {"must share bits", "down_proj", "model.layers.0.", NULL};
    export_refused("gptq", "mixed.h5", "x_mixed", "", mixed);
    /* AWQ on sym */
    static const char *const sym[] = {"int4 sym", "asym", NULL};
    export_refused("awq", "r4s.h5", "x_awq_sym", "", sym);
    /* AWQ on 8 bits */
    static const char *const b8[] = {"int8", "bits 4", NULL};
    export_refused("awq", "r8a.h5", "x_awq_b8", "", b8);
    /* unknown format */
    char *log;
    assert_int_equal(export_("onnx", "r4a.h5", "x_onnx", "", &log), 2);
    assert_non_null(strstr(log, "available"));
}

static int setup(void **state)
{
    (void)state;
    if (!wq_test_tmpdir(g_dir, sizeof g_dir)) return -1;
    /* stories260K widths with intermediate_size 192: every in/out is a multiple of 32 */
    if (wq_test_system(
            "sed 's/\"intermediate_size\": 172/\"intermediate_size\": 192/' %s/config.json "
            "> %s/like.json",
            STORIES, g_dir))
        return -1;
    snprintf(g_syn, sizeof g_syn, "%s/syn", g_dir);
    char *log;
    if (wq_e2e_run(1, &log, "synth --like %s/like.json --layers 2 --dtype f32 --out %s", g_dir,
                   g_syn)) {
        fprintf(stderr, "%s\n", log);
        return -1;
    }
    return wq_test_system("cp %s/tokenizer.model %s/", STORIES, g_syn);
}

static int teardown(void **state)
{
    (void)state;
    if (!getenv("WQ_KEEP_TMP")) wq_test_system("rm -rf %s", g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gptq_rtn_should_roundtrip_bitwise_for_2_3_4_8_bits),
        cmocka_unit_test(gptq_should_write_v2_when_v1_is_lossy_and_refuse_forced_v1),
        cmocka_unit_test(gptq_act_order_should_write_desc_act_and_gidx),
        cmocka_unit_test(gptq_stories_int8_per_channel_should_roundtrip_with_tokenizer),
        cmocka_unit_test(awq_should_roundtrip_bitwise_sharded),
        cmocka_unit_test(awq_with_folding_should_export_and_with_input_scale_refuse),
        cmocka_unit_test(exports_should_refuse_what_the_formats_cannot_express),
    };
    return cmocka_run_group_tests_name("export_hf", tests, setup, teardown);
}
