/* test_st.c: safetensors reader and writer. The bundled stories260K checkpoint is checked against
 * bytes located by a hand-rolled header scan (independent of the reader); the writer is checked by
 * round trips (F32/F16/BF16/F64, sharded with an index); every corrupt-input rule has its own test
 * on a file crafted in a per-test temp dir, asserting WQ_ERR_FORMAT and a message naming the
 * culprit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_half.h"
#include "core/core_log.h"
#include "model/st_reader.h"
#include "model/st_writer.h"
#include "wq_testutil.h"

#define STORIES_DIR WQ_ASSETS_DIR "/stories260K-hf"
#define STORIES_FILE STORIES_DIR "/model.safetensors"
#define STORIES_TENSORS 47 /* embed + 5 layers x 9 + final norm (tied lm_head) */
#define TOL_F16_REL 1e-3   /* binary16 has 11 significant bits: rel. error <= 2^-11 */
#define TOL_BF16_REL 8e-3  /* bfloat16 has 8 significant bits: rel. error <= 2^-8 */

typedef struct {
    char dir[256];
} fixture;

static int setup_tmp(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !wq_test_tmpdir(f->dir, sizeof f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    wq_log_clear_error();
    return 0;
}

static int teardown_tmp(void **state)
{
    fixture *f = *state;
    if (f) wq_test_system("rm -rf '%s'", f->dir);
    free(f);
    return 0;
}

static const char *tmp_path(void **state, const char *name, char *buf, size_t n)
{
    fixture *f = *state;
    snprintf(buf, n, "%s/%s", f->dir, name);
    return buf;
}

/* Writes <u64 LE len(header)><header><data_len bytes of a counting pattern> to path. */
static void craft(const char *path, const char *header, size_t data_len)
{
    size_t hl = strlen(header);
    size_t n = 8 + hl + data_len;
    unsigned char *b = malloc(n);
    assert_non_null(b);
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)(((uint64_t)hl >> (8 * k)) & 0xff);
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        b[8 + hl + i] = (unsigned char)(i * 7 + 1);
    assert_int_equal(wq_test_write_file(path, b, n), 0);
    free(b);
}

/* Crafts dir/bad.safetensors, opens it and expects WQ_ERR_FORMAT with `needle` in the message. */
static void expect_bad_header(void **state, const char *header, size_t data_len, const char *needle)
{
    char path[512];
    tmp_path(state, "bad.safetensors", path, sizeof path);
    craft(path, header, data_len);
    wq_st_model *m = (wq_st_model *)0x1;
    wq_log_clear_error();
    assert_int_equal(wq_st_open_file(path, &m), WQ_ERR_FORMAT);
    assert_null(m);
    const char *msg = wq_log_last_error();
    if (!strstr(msg, needle) || !strstr(msg, "bad.safetensors"))
        fail_msg("message '%s' does not name '%s' and the file", msg, needle);
}

// ---- the bundled model --------------------------------------------------------------------------

/* Independent locator: scans the raw header text for "<name>" then its "data_offsets":[b,e]. */
static uint64_t hand_offset(const char *name, uint64_t *nbytes)
{
    FILE *fp = fopen(STORIES_FILE, "rb");
    assert_non_null(fp);
    unsigned char lb[8];
    assert_int_equal(fread(lb, 1, 8, fp), 8);
    uint64_t hl = 0;
    for (int k = 7; k >= 0; k--)
        hl = (hl << 8) | lb[k];
    char *h = malloc(hl + 1);
    assert_non_null(h);
    assert_int_equal(fread(h, 1, hl, fp), hl);
    h[hl] = '\0';
    fclose(fp);
    char key[300];
    snprintf(key, sizeof key, "\"%s\"", name);
    const char *p = strstr(h, key);
    assert_non_null(p);
    p = strstr(p, "\"data_offsets\"");
    assert_non_null(p);
    p = strchr(p, '[');
    assert_non_null(p);
    char *e;
    uint64_t b = strtoull(p + 1, &e, 10);
    assert_true(*e == ',');
    uint64_t en = strtoull(e + 1, &e, 10);
    free(h);
    *nbytes = en - b;
    return 8 + hl + b;
}

static void hand_read(uint64_t off, void *dst, size_t n)
{
    FILE *fp = fopen(STORIES_FILE, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, (long)off, SEEK_SET), 0);
    assert_int_equal(fread(dst, 1, n, fp), n);
    fclose(fp);
}

static void st_open_should_list_stories260K_tensors_sorted(void **state)
{
    (void)state;
    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open(STORIES_DIR, &m), WQ_OK);
    assert_int_equal(wq_st_count(m), STORIES_TENSORS);
    assert_string_equal(wq_st_at(m, 0)->name, "model.embed_tokens.weight");
    assert_string_equal(wq_st_at(m, STORIES_TENSORS - 1)->name, "model.norm.weight");
    assert_null(wq_st_at(m, STORIES_TENSORS));
    assert_null(wq_st_at(m, -1));
    for (int64_t i = 1; i < wq_st_count(m); i++)
        assert_true(strcmp(wq_st_at(m, i - 1)->name, wq_st_at(m, i)->name) < 0);
    for (int64_t i = 0; i < wq_st_count(m); i++) {
        const wq_st_tensor *t = wq_st_at(m, i);
        assert_int_equal(t->dtype, WQ_DTYPE_F32);
        assert_int_equal(t->file_index, 0);
        assert_ptr_equal(wq_st_find(m, t->name), t);
    }
    assert_null(wq_st_find(m, "__metadata__"));
    assert_null(wq_st_find(m, "lm_head.weight"));
    assert_string_equal(wq_st_dir(m), STORIES_DIR);
    wq_st_close(m);
}

static void expect_shape2(const wq_st_model *m, const char *name, int64_t d0, int64_t d1)
{
    const wq_st_tensor *t = wq_st_find(m, name);
    assert_non_null(t);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], d0);
    assert_int_equal(t->shape[1], d1);
    assert_int_equal(t->numel, d0 * d1);
    assert_int_equal(t->nbytes, (size_t)(d0 * d1) * 4);
}

static void st_open_should_report_stories260K_shapes(void **state)
{
    (void)state;
    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open_file(STORIES_FILE, &m), WQ_OK);
    expect_shape2(m, "model.embed_tokens.weight", 512, 64);
    expect_shape2(m, "model.layers.0.self_attn.q_proj.weight", 64, 64);
    expect_shape2(m, "model.layers.3.self_attn.k_proj.weight", 32, 64);
    expect_shape2(m, "model.layers.4.mlp.down_proj.weight", 64, 172);
    expect_shape2(m, "model.layers.4.mlp.gate_proj.weight", 172, 64);
    const wq_st_tensor *n = wq_st_find(m, "model.norm.weight");
    assert_non_null(n);
    assert_int_equal(n->ndim, 1);
    assert_int_equal(n->shape[0], 64);
    wq_st_close(m);
}

static void st_read_should_match_bytes_located_by_hand(void **state)
{
    (void)state;
    const char *names[] = {"model.embed_tokens.weight", "model.layers.0.self_attn.k_proj.weight",
                           "model.layers.4.mlp.down_proj.weight", "model.norm.weight"};
    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open(STORIES_DIR, &m), WQ_OK);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const wq_st_tensor *t = wq_st_find(m, names[i]);
        assert_non_null(t);
        uint64_t nbytes = 0;
        uint64_t off = hand_offset(names[i], &nbytes);
        assert_int_equal(t->offset, off);
        assert_int_equal(t->nbytes, nbytes);
        float *ref = malloc(nbytes), *got = malloc(nbytes), *raw = malloc(nbytes);
        assert_non_null(ref);
        assert_non_null(got);
        assert_non_null(raw);
        hand_read(off, ref, nbytes);
        assert_int_equal(wq_st_read_f32(m, t, got), WQ_OK);
        assert_memory_equal(ref, got, nbytes);
        assert_int_equal(wq_st_read_raw(m, t, raw), WQ_OK);
        assert_memory_equal(ref, raw, nbytes);
        /* Values must be finite and not all zero (a real trained checkpoint). */
        double sum = 0;
        for (int64_t k = 0; k < t->numel; k++) {
            assert_true(isfinite(got[k]));
            sum += fabs(got[k]);
        }
        assert_true(sum > 0);
        /* Row ranges: rows [r0, r0 + nr) are a contiguous slice. */
        int64_t rows = t->shape[0], cols = t->numel / rows;
        int64_t r0 = rows / 3, nr = rows - r0 - 1;
        memset(got, 0, nbytes);
        assert_int_equal(wq_st_read_rows_f32(m, t, r0, nr, got), WQ_OK);
        assert_memory_equal(ref + r0 * cols, got, (size_t)(nr * cols) * sizeof(float));
        free(ref);
        free(got);
        free(raw);
    }
    wq_st_close(m);
}

static void st_read_rows_should_reject_out_of_range(void **state)
{
    (void)state;
    wq_st_model *m = NULL;
    float buf[64];
    assert_int_equal(wq_st_open(STORIES_DIR, &m), WQ_OK);
    const wq_st_tensor *t = wq_st_find(m, "model.layers.0.self_attn.q_proj.weight");
    assert_int_equal(wq_st_read_rows_f32(m, t, 64, 1, buf), WQ_ERR_ARG);
    assert_int_equal(wq_st_read_rows_f32(m, t, -1, 1, buf), WQ_ERR_ARG);
    assert_int_equal(wq_st_read_rows_f32(m, t, 63, 2, buf), WQ_ERR_ARG);
    assert_int_equal(wq_st_read_rows_f32(m, t, 64, 0, buf), WQ_OK);
    assert_int_equal(wq_st_read_rows_f32(m, t, 63, 1, buf), WQ_OK);
    wq_st_tensor fake = *t; /* not owned by m */
    assert_int_equal(wq_st_read_f32(m, &fake, buf), WQ_ERR_ARG);
    wq_st_close(m);
    wq_st_close(NULL);
}

static void st_open_should_fail_with_io_on_missing_paths(void **state)
{
    wq_st_model *m = NULL;
    char p[512];
    assert_int_equal(wq_st_open(((fixture *)*state)->dir, &m), WQ_ERR_IO);
    assert_null(m);
    assert_int_equal(wq_st_open_file(tmp_path(state, "nope.safetensors", p, sizeof p), &m),
                     WQ_ERR_IO);
    assert_null(m);
    assert_int_equal(wq_st_open(NULL, &m), WQ_ERR_ARG);
}

// ---- writer -------------------------------------------------------------------------------------

static void st_writer_should_roundtrip_f32_f16_bf16_f64(void **state)
{
    char path[512], tmp[520];
    tmp_path(state, "rt.safetensors", path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    enum { NA = 3 * 5, NB = 4 * 7, NC = 2 * 3 * 4, ND = 6 };
    float a[NA], b[NB], c[NC], d[ND], s = 3.25f;
    wq_test_fill_uniform(a, NA, -2.0f, 2.0f, WQ_TEST_SEED);
    wq_test_fill_uniform(b, NB, -100.0f, 100.0f, WQ_TEST_SEED + 1);
    wq_test_fill_normal(c, NC, 0.5f, WQ_TEST_SEED + 2);
    wq_test_fill_normal(d, ND, 1.0f, WQ_TEST_SEED + 3);
    uint16_t bh[NB], ch[NC];
    double dd[ND];
    wq_convert_from_f32(WQ_DTYPE_F16, b, bh, NB);
    wq_convert_from_f32(WQ_DTYPE_BF16, c, ch, NC);
    for (int i = 0; i < ND; i++)
        dd[i] = (double)d[i];

    const int64_t sa[] = {3, 5}, sb[] = {4, 7}, sc[] = {2, 3, 4}, sd[] = {ND}, se[] = {0, 9};
    wq_st_writer *w = NULL;
    assert_int_equal(wq_st_writer_create(path, &w), WQ_OK);
    /* Declared out of name order on purpose: the reader sorts. */
    assert_int_equal(wq_st_writer_declare(w, "z.f32", WQ_DTYPE_F32, 2, sa), WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "b.f16", WQ_DTYPE_F16, 2, sb), WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "c.bf16", WQ_DTYPE_BF16, 3, sc), WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "d.f64", WQ_DTYPE_F64, 1, sd), WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "e.empty", WQ_DTYPE_F32, 2, se), WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "s.scalar \"quoted\"", WQ_DTYPE_F32, 0, NULL), WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "b.f16", WQ_DTYPE_F32, 2, sa), WQ_ERR_ARG);
    assert_int_equal(wq_st_writer_write(w, a, 4), WQ_ERR_ARG); /* before begin_data */
    assert_int_equal(wq_st_writer_begin_data(w), WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "late", WQ_DTYPE_F32, 2, sa), WQ_ERR_ARG);
    /* Chunks need not align with tensors. */
    assert_int_equal(wq_st_writer_write(w, a, 10), WQ_OK);
    assert_int_equal(wq_st_writer_write(w, (const char *)a + 10, sizeof a - 10), WQ_OK);
    assert_int_equal(wq_st_writer_write(w, bh, sizeof bh), WQ_OK);
    assert_int_equal(wq_st_writer_write(w, ch, sizeof ch), WQ_OK);
    assert_int_equal(wq_st_writer_write(w, dd, sizeof dd), WQ_OK);
    assert_int_equal(wq_st_writer_write(w, &s, sizeof s), WQ_OK);
    assert_int_equal(access(tmp, F_OK), 0);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(wq_st_writer_finish(w), WQ_OK);
    assert_int_not_equal(access(tmp, F_OK), 0);

    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open_file(path, &m), WQ_OK);
    assert_int_equal(wq_st_count(m), 6);
    assert_string_equal(wq_st_at(m, 0)->name, "b.f16");
    assert_string_equal(wq_st_at(m, 5)->name, "z.f32");
    float got[32]; /* >= max(NA, NB, NC) */

    const wq_st_tensor *t = wq_st_find(m, "z.f32");
    assert_int_equal(t->dtype, WQ_DTYPE_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(wq_st_read_f32(m, t, got), WQ_OK);
    assert_memory_equal(got, a, sizeof a);

    t = wq_st_find(m, "b.f16");
    assert_int_equal(t->dtype, WQ_DTYPE_F16);
    assert_int_equal(t->nbytes, sizeof bh);
    uint16_t raw[NB > NC ? NB : NC]; /* holds b.f16 (NB) and c.bf16 (NC) */
    assert_int_equal(wq_st_read_raw(m, t, raw), WQ_OK);
    assert_memory_equal(raw, bh, sizeof bh);
    assert_int_equal(wq_st_read_f32(m, t, got), WQ_OK);
    for (int i = 0; i < NB; i++)
        assert_true(got[i] == wq_f16_to_f32(bh[i]));
    assert_true(wq_test_max_rel_err(b, got, NB, 1e-3) < TOL_F16_REL);
    assert_int_equal(wq_st_read_rows_f32(m, t, 1, 2, got), WQ_OK);
    for (int i = 0; i < 14; i++)
        assert_true(got[i] == wq_f16_to_f32(bh[7 + i]));

    t = wq_st_find(m, "c.bf16");
    assert_int_equal(t->dtype, WQ_DTYPE_BF16);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(t->shape[2], 4);
    assert_int_equal(wq_st_read_f32(m, t, got), WQ_OK);
    for (int i = 0; i < NC; i++)
        assert_true(got[i] == wq_bf16_to_f32(ch[i]));
    assert_true(wq_test_max_rel_err(c, got, NC, 1e-3) < TOL_BF16_REL);
    /* rows of a 3-D tensor are shape[0] slabs of 12 elements */
    assert_int_equal(wq_st_read_rows_f32(m, t, 1, 1, got), WQ_OK);
    for (int i = 0; i < 12; i++)
        assert_true(got[i] == wq_bf16_to_f32(ch[12 + i]));

    t = wq_st_find(m, "d.f64");
    assert_int_equal(t->dtype, WQ_DTYPE_F64);
    assert_int_equal(wq_st_read_f32(m, t, got), WQ_OK);
    assert_memory_equal(got, d, sizeof d);

    t = wq_st_find(m, "e.empty");
    assert_int_equal(t->numel, 0);
    assert_int_equal(t->nbytes, 0);
    assert_int_equal(wq_st_read_f32(m, t, got), WQ_OK);

    t = wq_st_find(m, "s.scalar \"quoted\"");
    assert_non_null(t);
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->numel, 1);
    assert_int_equal(wq_st_read_f32(m, t, got), WQ_OK);
    assert_true(got[0] == 3.25f);
    assert_int_equal(wq_st_read_rows_f32(m, t, 0, 1, got), WQ_ERR_ARG);
    wq_st_close(m);
}

static void st_writer_should_align_data_section_to_8_bytes(void **state)
{
    char path[512];
    tmp_path(state, "align.safetensors", path, sizeof path);
    const int64_t sh[] = {1};
    float x = 1.0f;
    wq_st_writer *w = NULL;
    assert_int_equal(wq_st_writer_create(path, &w), WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "x", WQ_DTYPE_F32, 1, sh), WQ_OK);
    assert_int_equal(wq_st_writer_begin_data(w), WQ_OK);
    assert_int_equal(wq_st_writer_write(w, &x, 4), WQ_OK);
    assert_int_equal(wq_st_writer_finish(w), WQ_OK);
    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open_file(path, &m), WQ_OK);
    assert_int_equal(wq_st_at(m, 0)->offset % 8, 0);
    wq_st_close(m);
}

static void st_writer_should_reject_wrong_byte_counts_and_clean_up(void **state)
{
    char path[512], tmp[520];
    tmp_path(state, "short.safetensors", path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const int64_t sh[] = {2, 2};
    float x[5] = {0};
    wq_st_writer *w = NULL;
    assert_int_equal(wq_st_writer_create(path, &w), WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "x", WQ_DTYPE_F32, 2, sh), WQ_OK);
    assert_int_equal(wq_st_writer_begin_data(w), WQ_OK);
    assert_int_equal(wq_st_writer_write(w, x, sizeof x), WQ_ERR_ARG); /* 20 > 16 declared */
    assert_int_equal(wq_st_writer_write(w, x, 12), WQ_OK);
    assert_int_equal(wq_st_writer_finish(w), WQ_ERR_ARG); /* 12 != 16: frees w, removes tmp */
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_not_equal(access(path, F_OK), 0);

    /* Bad declarations. */
    const int64_t neg[] = {2, -1}, five[] = {1, 1, 1, 1, 1};
    assert_int_equal(wq_st_writer_create(path, &w), WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "n", WQ_DTYPE_F32, 2, neg), WQ_ERR_ARG);
    assert_int_equal(wq_st_writer_declare(w, "n", WQ_DTYPE_F32, 5, five), WQ_ERR_ARG);
    assert_int_equal(wq_st_writer_declare(w, "n", WQ_DTYPE_COUNT, 2, sh), WQ_ERR_ARG);
    assert_int_equal(wq_st_writer_declare(w, "", WQ_DTYPE_F32, 2, sh), WQ_ERR_ARG);
    assert_int_equal(wq_st_writer_declare(w, "__metadata__", WQ_DTYPE_F32, 2, sh), WQ_ERR_ARG);
    wq_st_writer_abort(w);
    assert_int_not_equal(access(tmp, F_OK), 0);
    wq_st_writer_abort(NULL);
    assert_int_equal(wq_st_writer_create("/nonexistent-dir/x.safetensors", &w), WQ_ERR_IO);
    assert_null(w);
}

/* Writes one shard file holding tensors names[i] = i-filled [2, 3] F32. */
static void write_shard(const char *path, const char *const *names, int n, float base)
{
    const int64_t sh[] = {2, 3};
    wq_st_writer *w = NULL;
    assert_int_equal(wq_st_writer_create(path, &w), WQ_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(wq_st_writer_declare(w, names[i], WQ_DTYPE_F32, 2, sh), WQ_OK);
    assert_int_equal(wq_st_writer_begin_data(w), WQ_OK);
    for (int i = 0; i < n; i++) {
        float v[6];
        for (int k = 0; k < 6; k++)
            v[k] = base + (float)(10 * i + k);
        assert_int_equal(wq_st_writer_write(w, v, sizeof v), WQ_OK);
    }
    assert_int_equal(wq_st_writer_finish(w), WQ_OK);
}

static const char *const k_shard_files[] = {"model-00001-of-00002.safetensors",
                                            "model-00002-of-00002.safetensors"};

/* Shard 0: a, b; shard 1: c. Returns the index's total size. */
static void write_sharded_model(void **state)
{
    char p[512];
    const char *s0[] = {"a.weight", "b.weight"}, *s1[] = {"c.weight"};
    write_shard(tmp_path(state, k_shard_files[0], p, sizeof p), s0, 2, 0.0f);
    write_shard(tmp_path(state, k_shard_files[1], p, sizeof p), s1, 1, 100.0f);
}

static void write_index(void **state, const char *const *names, const int *shard_of, int n)
{
    fixture *f = *state;
    assert_int_equal(wq_st_write_index(f->dir, names, shard_of, n, k_shard_files, 2, 72), WQ_OK);
}

static void st_writer_should_roundtrip_sharded_model_with_index(void **state)
{
    fixture *f = *state;
    write_sharded_model(state);
    const char *names[] = {"c.weight", "a.weight", "b.weight"};
    const int shard_of[] = {1, 0, 0};
    write_index(state, names, shard_of, 3);

    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open(f->dir, &m), WQ_OK);
    assert_int_equal(wq_st_count(m), 3);
    assert_string_equal(wq_st_dir(m), f->dir);
    const wq_st_tensor *a = wq_st_find(m, "a.weight"), *b = wq_st_find(m, "b.weight"),
                       *c = wq_st_find(m, "c.weight");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(a->file_index, b->file_index);
    assert_int_not_equal(a->file_index, c->file_index);
    float v[6];
    assert_int_equal(wq_st_read_f32(m, b, v), WQ_OK);
    for (int k = 0; k < 6; k++)
        assert_true(v[k] == (float)(10 + k));
    assert_int_equal(wq_st_read_f32(m, c, v), WQ_OK);
    for (int k = 0; k < 6; k++)
        assert_true(v[k] == 100.0f + (float)k);
    assert_int_equal(wq_st_read_rows_f32(m, c, 1, 1, v), WQ_OK);
    assert_true(v[0] == 103.0f);
    wq_st_close(m);

    /* The index is plain JSON the way HF writes it. */
    char p[512];
    FILE *fp = fopen(tmp_path(state, "model.safetensors.index.json", p, sizeof p), "r");
    assert_non_null(fp);
    char text[1024] = {0};
    assert_true(fread(text, 1, sizeof text - 1, fp) > 0);
    fclose(fp);
    assert_non_null(strstr(text, "\"total_size\": 72"));
    assert_non_null(strstr(text, "\"c.weight\": \"model-00002-of-00002.safetensors\""));
}

// ---- corrupt single files -----------------------------------------------------------------------

static void st_open_should_reject_file_shorter_than_8_bytes(void **state)
{
    char path[512];
    tmp_path(state, "bad.safetensors", path, sizeof path);
    assert_int_equal(wq_test_write_file(path, "\x02\0\0", 3), 0);
    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open_file(path, &m), WQ_ERR_FORMAT);
    assert_null(m);
    assert_non_null(strstr(wq_log_last_error(), "too short"));
    assert_non_null(strstr(wq_log_last_error(), "bad.safetensors"));
}

static void st_open_should_reject_header_longer_than_file(void **state)
{
    char path[512];
    tmp_path(state, "bad.safetensors", path, sizeof path);
    unsigned char b[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(wq_test_write_file(path, b, sizeof b), 0);
    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open_file(path, &m), WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "exceeds the file size"));
}

static void st_open_should_reject_header_over_100MB(void **state)
{
    char path[512];
    tmp_path(state, "bad.safetensors", path, sizeof path);
    /* 0x10000000 = 256 MiB; the limit is checked before the size so no big file is needed. */
    unsigned char b[16] = {0, 0, 0, 0x10, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(wq_test_write_file(path, b, sizeof b), 0);
    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open_file(path, &m), WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "100 MB"));
}

static void st_open_should_reject_header_that_is_not_an_object(void **state)
{
    expect_bad_header(state, "[1, 2, 3]", 0, "not a JSON object");
    expect_bad_header(state, "{\"x\": {\"dtype\": \"F32\"", 0, "not a JSON object");
    expect_bad_header(state, "{} trailing", 0, "not a JSON object");
}

static void st_open_should_reject_unknown_dtype(void **state)
{
    expect_bad_header(state,
                      "{\"w1\": {\"dtype\": \"Q7\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2,
                      "'w1': unknown dtype 'Q7'");
}

static void st_open_should_reject_entry_that_is_not_an_object(void **state)
{
    expect_bad_header(state, "{\"w1\": [1, 2]}", 0, "'w1': entry is not a JSON object");
}

static void st_open_should_reject_shape_that_is_not_a_list(void **state)
{
    expect_bad_header(state,
                      "{\"w2\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}", 16,
                      "'w2': 'shape' missing or not a list");
}

static void st_open_should_reject_negative_dimension(void **state)
{
    expect_bad_header(
        state, "{\"w3\": {\"dtype\": \"F32\", \"shape\": [2, -2], \"data_offsets\": [0, 16]}}", 16,
        "'w3': shape[1] is not a non-negative integer");
    expect_bad_header(
        state, "{\"w3\": {\"dtype\": \"F32\", \"shape\": [2, 1.5], \"data_offsets\": [0, 12]}}", 16,
        "'w3': shape[1]");
}

static void st_open_should_reject_more_than_4_dims(void **state)
{
    expect_bad_header(state,
                      "{\"w4\": {\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 2], "
                      "\"data_offsets\": [0, 8]}}",
                      8, "'w4': 5 dimensions");
}

static void st_open_should_reject_missing_data_offsets(void **state)
{
    expect_bad_header(state, "{\"w5\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8,
                      "'w5': 'data_offsets' missing");
}

static void st_open_should_reject_data_offsets_not_two_ints(void **state)
{
    expect_bad_header(state,
                      "{\"w6\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 8,
                      "'w6': 'data_offsets' missing or not a list of 2");
    expect_bad_header(
        state, "{\"w6\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, \"8\"]}}", 8,
        "'w6': data_offsets are not non-negative integers");
    expect_bad_header(state,
                      "{\"w6\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}",
                      8, "'w6': data_offsets are not non-negative integers");
}

static void st_open_should_reject_begin_after_end(void **state)
{
    expect_bad_header(state,
                      "{\"w7\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 0]}}", 8,
                      "'w7': data_offsets begin 8 > end 0");
}

static void st_open_should_reject_offsets_outside_data_section(void **state)
{
    expect_bad_header(state,
                      "{\"w8\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [4, 20]}}",
                      16, "'w8': data_offsets [4, 20) outside the data section of 16 bytes");
}

static void st_open_should_reject_overlapping_tensors(void **state)
{
    expect_bad_header(state,
                      "{\"ov_a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                      " \"ov_b\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [8, 16]}}",
                      16, "'ov_a' and 'ov_b' have overlapping data_offsets");
}

static void st_open_should_reject_size_mismatch(void **state)
{
    expect_bad_header(
        state, "{\"w9\": {\"dtype\": \"BF16\", \"shape\": [3, 2], \"data_offsets\": [0, 16]}}", 16,
        "'w9': shape x BF16 needs 12 bytes but data_offsets span 16");
}

static void st_open_should_reject_duplicate_names(void **state)
{
    expect_bad_header(state,
                      "{\"dup\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"dup\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                      8, "'dup' is declared twice");
}

static void st_open_should_ignore_metadata(void **state)
{
    char path[512];
    tmp_path(state, "meta.safetensors", path, sizeof path);
    craft(path,
          "{\"__metadata__\": {\"format\": \"pt\", \"shape\": \"not a tensor\"},"
          " \"ok\": {\"dtype\": \"U8\", \"shape\": [2, 2], \"data_offsets\": [0, 4]}}",
          4);
    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open_file(path, &m), WQ_OK);
    assert_int_equal(wq_st_count(m), 1);
    const wq_st_tensor *t = wq_st_at(m, 0);
    assert_string_equal(t->name, "ok");
    assert_int_equal(t->dtype, WQ_DTYPE_U8);
    unsigned char raw[4];
    assert_int_equal(wq_st_read_raw(m, t, raw), WQ_OK);
    assert_int_equal(raw[0], 1);
    assert_int_equal(raw[1], 8);
    float f[4];
    assert_int_equal(wq_st_read_f32(m, t, f), WQ_ERR_FORMAT); /* integer data is raw-only */
    wq_st_close(m);
}

// ---- corrupt sharded checkpoints ----------------------------------------------------------------

static void expect_bad_sharded(void **state, const char *needle)
{
    fixture *f = *state;
    wq_st_model *m = (wq_st_model *)0x1;
    wq_log_clear_error();
    assert_int_equal(wq_st_open(f->dir, &m), WQ_ERR_FORMAT);
    assert_null(m);
    if (!strstr(wq_log_last_error(), needle))
        fail_msg("message '%s' does not contain '%s'", wq_log_last_error(), needle);
}

static void st_open_should_reject_malformed_index(void **state)
{
    char p[512];
    write_sharded_model(state);
    tmp_path(state, "model.safetensors.index.json", p, sizeof p);
    const char *bad = "{\"weight_map\": {\"a.weight\": ";
    assert_int_equal(wq_test_write_file(p, bad, strlen(bad)), 0);
    expect_bad_sharded(state, "index.json: not a JSON object");
    bad = "{\"metadata\": {}}";
    assert_int_equal(wq_test_write_file(p, bad, strlen(bad)), 0);
    expect_bad_sharded(state, "'weight_map' missing or not an object");
    bad = "{\"weight_map\": {\"a.weight\": 3}}";
    assert_int_equal(wq_test_write_file(p, bad, strlen(bad)), 0);
    expect_bad_sharded(state, "weight_map['a.weight'] is not a file name");
    bad = "{\"weight_map\": {\"a.weight\": \"../x.safetensors\"}}";
    assert_int_equal(wq_test_write_file(p, bad, strlen(bad)), 0);
    expect_bad_sharded(state, "is not a plain file name");
}

static void st_open_should_reject_index_tensor_missing_from_its_shard(void **state)
{
    write_sharded_model(state);
    const char *names[] = {"a.weight", "b.weight", "c.weight", "ghost.weight"};
    const int shard_of[] = {0, 0, 1, 1};
    write_index(state, names, shard_of, 4);
    expect_bad_sharded(state, "'ghost.weight' is mapped to model-00002-of-00002.safetensors but");
}

static void st_open_should_reject_index_pointing_at_wrong_shard(void **state)
{
    write_sharded_model(state);
    const char *names[] = {"a.weight", "b.weight", "c.weight"};
    const int shard_of[] = {0, 1, 1};
    write_index(state, names, shard_of, 3);
    expect_bad_sharded(state, "'b.weight' is mapped to model-00002-of-00002.safetensors");
}

static void st_open_should_reject_missing_shard_file(void **state)
{
    char p[512];
    write_sharded_model(state);
    const char *names[] = {"a.weight", "b.weight", "c.weight"};
    const int shard_of[] = {0, 0, 1};
    write_index(state, names, shard_of, 3);
    assert_int_equal(unlink(tmp_path(state, k_shard_files[1], p, sizeof p)), 0);
    expect_bad_sharded(state, "shard file");
    assert_non_null(strstr(wq_log_last_error(), "model-00002-of-00002.safetensors is missing"));
}

static void st_open_should_reject_tensor_in_two_shards(void **state)
{
    char p[512];
    const char *s0[] = {"a.weight", "b.weight"}, *s1[] = {"b.weight", "c.weight"};
    write_shard(tmp_path(state, k_shard_files[0], p, sizeof p), s0, 2, 0.0f);
    write_shard(tmp_path(state, k_shard_files[1], p, sizeof p), s1, 2, 0.0f);
    const char *names[] = {"a.weight", "b.weight", "c.weight"};
    const int shard_of[] = {0, 0, 1};
    write_index(state, names, shard_of, 3);
    expect_bad_sharded(state, "'b.weight' is in two shards");
}

static void st_open_should_reject_corrupt_shard(void **state)
{
    char p[512];
    write_sharded_model(state);
    craft(tmp_path(state, k_shard_files[1], p, sizeof p),
          "{\"c.weight\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}", 24);
    const char *names[] = {"a.weight", "b.weight", "c.weight"};
    const int shard_of[] = {0, 0, 1};
    write_index(state, names, shard_of, 3);
    expect_bad_sharded(state, "'c.weight': shape x F32 needs 24 bytes");
    assert_non_null(strstr(wq_log_last_error(), k_shard_files[1]));
}

// ---- allocation failure -------------------------------------------------------------------------

/* Fails every allocation after the first `budget` ones and counts live blocks, so each failure path
 * can be checked to return WQ_ERR_NOMEM and to leave nothing allocated. */
typedef struct {
    long budget;
    long live;
} fail_alloc;
static fail_alloc g_fail; /* test-only: the allocator hook has no user pointer */

static void *failing_malloc(size_t n)
{
    if (g_fail.budget-- <= 0) return NULL;
    void *p = malloc(n ? n : 1);
    if (p) g_fail.live++;
    return p;
}

static void counting_free(void *p)
{
    g_fail.live--;
    free(p);
}

/* Runs op with budgets 0, 1, 2, ... until it succeeds; every failing run must report NOMEM. */
static void sweep_allocation_failures(void **state, wq_status (*op)(void **state))
{
    const wq_alloc_hooks hooks = {failing_malloc, counting_free};
    for (long k = 0;; k++) {
        g_fail = (fail_alloc){k, 0};
        wq_alloc_set_hooks(&hooks);
        wq_status st = op(state);
        long live = g_fail.live;
        wq_alloc_set_hooks(NULL);
        if (live != 0) fail_msg("budget %ld: %ld blocks leaked (status %d)", k, live, st);
        if (st == WQ_OK) break;
        if (st != WQ_ERR_NOMEM) fail_msg("budget %ld: status %d, want NOMEM", k, st);
        assert_true(k < 10000);
    }
}

static wq_status open_stories_and_close(void **state)
{
    (void)state;
    wq_st_model *m = NULL;
    wq_status st = wq_st_open(STORIES_DIR, &m);
    if (st == WQ_OK) {
        float v[64];
        st = wq_st_read_f32(m, wq_st_find(m, "model.norm.weight"), v);
    }
    wq_st_close(m);
    return st;
}

static wq_status open_sharded_read_bf16_and_close(void **state)
{
    wq_st_model *m = NULL;
    wq_status st = wq_st_open(((fixture *)*state)->dir, &m);
    if (st == WQ_OK) {
        float v[6];
        st = wq_st_read_f32(m, wq_st_find(m, "h.bf16"), v); /* needs conversion scratch */
    }
    wq_st_close(m);
    return st;
}

static wq_status write_small_file(void **state)
{
    char path[512];
    tmp_path(state, "nomem.safetensors", path, sizeof path);
    const int64_t sh[] = {3};
    const uint16_t v[3] = {1, 2, 3};
    wq_st_writer *w = NULL;
    wq_status st = wq_st_writer_create(path, &w);
    if (st != WQ_OK) return st;
    for (int i = 0; i < 40 && st == WQ_OK; i++) { /* > 32: forces the declaration table to grow */
        char name[16];
        snprintf(name, sizeof name, "t%02d", i);
        st = wq_st_writer_declare(w, name, WQ_DTYPE_F16, 1, sh);
    }
    if (st == WQ_OK) st = wq_st_writer_begin_data(w);
    for (int i = 0; i < 40 && st == WQ_OK; i++)
        st = wq_st_writer_write(w, v, sizeof v);
    if (st != WQ_OK) {
        wq_st_writer_abort(w);
        return st;
    }
    return wq_st_writer_finish(w);
}

static void st_should_return_nomem_without_leaking_when_allocation_fails(void **state)
{
    sweep_allocation_failures(state, open_stories_and_close);
    sweep_allocation_failures(state, write_small_file);

    /* A sharded model with a BF16 tensor, for the index and conversion paths. */
    char p[512];
    const int64_t sh[] = {2, 3};
    const uint16_t v[6] = {0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0, 0x40c0}; /* 1..6 in bf16 */
    wq_st_writer *w = NULL;
    assert_int_equal(wq_st_writer_create(tmp_path(state, k_shard_files[0], p, sizeof p), &w),
                     WQ_OK);
    assert_int_equal(wq_st_writer_declare(w, "h.bf16", WQ_DTYPE_BF16, 2, sh), WQ_OK);
    assert_int_equal(wq_st_writer_begin_data(w), WQ_OK);
    assert_int_equal(wq_st_writer_write(w, v, sizeof v), WQ_OK);
    assert_int_equal(wq_st_writer_finish(w), WQ_OK);
    const char *s1[] = {"c.weight"};
    write_shard(tmp_path(state, k_shard_files[1], p, sizeof p), s1, 1, 0.0f);
    const char *names[] = {"h.bf16", "c.weight"};
    const int shard_of[] = {0, 1};
    write_index(state, names, shard_of, 2);
    sweep_allocation_failures(state, open_sharded_read_bf16_and_close);
    float got[6];
    wq_st_model *m = NULL;
    assert_int_equal(wq_st_open(((fixture *)*state)->dir, &m), WQ_OK);
    assert_int_equal(wq_st_read_f32(m, wq_st_find(m, "h.bf16"), got), WQ_OK);
    for (int i = 0; i < 6; i++)
        assert_true(got[i] == (float)(i + 1));
    wq_st_close(m);
}

static void st_open_should_reject_index_listing_a_tensor_twice(void **state)
{
    char p[512];
    write_sharded_model(state);
    tmp_path(state, "model.safetensors.index.json", p, sizeof p);
    const char *bad = "{\"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\","
                      " \"b.weight\": \"model-00001-of-00002.safetensors\","
                      " \"c.weight\": \"model-00002-of-00002.safetensors\","
                      " \"a.weight\": \"model-00002-of-00002.safetensors\"}}";
    assert_int_equal(wq_test_write_file(p, bad, strlen(bad)), 0);
    expect_bad_sharded(state, "'a.weight' is listed twice in weight_map");

    /* The index writer refuses to produce such a file in the first place. */
    fixture *f = *state;
    const char *names[] = {"a.weight", "c.weight", "a.weight"};
    const int shard_of[] = {0, 1, 1};
    assert_int_equal(wq_st_write_index(f->dir, names, shard_of, 3, k_shard_files, 2, 0),
                     WQ_ERR_ARG);
    const int bad_shard[] = {0, 2, 1};
    const char *ok_names[] = {"a.weight", "b.weight", "c.weight"};
    assert_int_equal(wq_st_write_index(f->dir, ok_names, bad_shard, 3, k_shard_files, 2, 0),
                     WQ_ERR_ARG);
}

#define TMP_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup_tmp, teardown_tmp)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(st_open_should_list_stories260K_tensors_sorted),
        cmocka_unit_test(st_open_should_report_stories260K_shapes),
        cmocka_unit_test(st_read_should_match_bytes_located_by_hand),
        cmocka_unit_test(st_read_rows_should_reject_out_of_range),
        TMP_TEST(st_open_should_fail_with_io_on_missing_paths),
        TMP_TEST(st_writer_should_roundtrip_f32_f16_bf16_f64),
        TMP_TEST(st_writer_should_align_data_section_to_8_bytes),
        TMP_TEST(st_writer_should_reject_wrong_byte_counts_and_clean_up),
        TMP_TEST(st_writer_should_roundtrip_sharded_model_with_index),
        TMP_TEST(st_open_should_reject_file_shorter_than_8_bytes),
        TMP_TEST(st_open_should_reject_header_longer_than_file),
        TMP_TEST(st_open_should_reject_header_over_100MB),
        TMP_TEST(st_open_should_reject_header_that_is_not_an_object),
        TMP_TEST(st_open_should_reject_unknown_dtype),
        TMP_TEST(st_open_should_reject_entry_that_is_not_an_object),
        TMP_TEST(st_open_should_reject_shape_that_is_not_a_list),
        TMP_TEST(st_open_should_reject_negative_dimension),
        TMP_TEST(st_open_should_reject_more_than_4_dims),
        TMP_TEST(st_open_should_reject_missing_data_offsets),
        TMP_TEST(st_open_should_reject_data_offsets_not_two_ints),
        TMP_TEST(st_open_should_reject_begin_after_end),
        TMP_TEST(st_open_should_reject_offsets_outside_data_section),
        TMP_TEST(st_open_should_reject_overlapping_tensors),
        TMP_TEST(st_open_should_reject_size_mismatch),
        TMP_TEST(st_open_should_reject_duplicate_names),
        TMP_TEST(st_open_should_ignore_metadata),
        TMP_TEST(st_open_should_reject_malformed_index),
        TMP_TEST(st_open_should_reject_index_tensor_missing_from_its_shard),
        TMP_TEST(st_open_should_reject_index_pointing_at_wrong_shard),
        TMP_TEST(st_open_should_reject_missing_shard_file),
        TMP_TEST(st_open_should_reject_tensor_in_two_shards),
        TMP_TEST(st_open_should_reject_corrupt_shard),
        TMP_TEST(st_open_should_reject_index_listing_a_tensor_twice),
        TMP_TEST(st_should_return_nomem_without_leaking_when_allocation_fails),
    };
    return cmocka_run_group_tests_name("model_st", tests, NULL, NULL);
}
