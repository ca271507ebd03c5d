/* test_export_gguf.c: `wquant export --format gguf` end to end with the real CLI, read back by an
 * independent GGUF reader written here from the GGUF v3 spec (ggml docs/gguf.md) and ggml's block
 * layouts (Q4_0: fp16 d + 16 bytes, element j in the low nibble of byte j and element j+16 in its
 * high nibble, value (q-8)*d; Q4_1: fp16 d, fp16 m, same nibbles, value q*d+m; Q8_0: fp16 d +
 * 32 int8, value q*d). Checked: header, every metadata key the llama loader reads, the tokenizer
 * arrays against tokenizer.model, tensor names/shapes/types, offsets (aligned, in bounds, not
 * overlapping), and that every tensor dequantizes to the container's weights with q/k rows in
 * llama.cpp's RoPE order:
 *   block types: |gguf - W| <= 2^-11 |code - zero| |scale| (Q4_1: + 2^-11 |zero| |scale|), plus
 *                f32 rounding: the documented fp16 rounding of d (and m); Q4_0 bit for bit when the
 *                container stores fp16 scales
 *   F16 fallback: fp16(W) (within half an fp16 ulp); F32: W bit for bit.
 * Models: stories260K (down_proj in_features 172: no ggml block fits) and a synthetic model with
 * its widths but intermediate_size 192 (every layer maps). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io_hdf5/h5_container.h"
#include "model/tok_sp.h"
#include "wq_e2e.h"
#include "wq_testutil.h"

#define STORIES WQ_ASSETS_DIR "/stories260K-hf"

static char g_dir[256];
static char g_syn[300];

/* ---- independent GGUF reader ---------------------------------------------------------------- */

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 };
enum { G_F32 = 0, G_F16 = 1, G_Q4_0 = 2, G_Q4_1 = 3, G_Q8_0 = 8 };

typedef struct {
    char key[128];
    uint32_t type, arr_type;
    uint64_t arr_n;
    size_t at; /* offset of the value (arrays: of the first element) */
} gkv;

typedef struct {
    char name[96];
    uint32_t ndim, type;
    uint64_t ne[4], off;
} gtensor;

typedef struct {
    unsigned char *b;
    size_t n, pos, data;
    uint32_t version, align;
    uint64_t n_t, n_kv;
    gkv *kv;
    gtensor *t;
} gguf;

static uint64_t rd(gguf *g, size_t k)
{
    assert_true(g->pos + k <= g->n);
    uint64_t v = 0;
    memcpy(&v, g->b + g->pos, k);
    g->pos += k;
    return v;
}

static void rd_str(gguf *g, char *dst, size_t cap)
{
    uint64_t len = rd(g, 8);
    assert_true(len < cap && g->pos + len <= g->n);
    memcpy(dst, g->b + g->pos, len);
    dst[len] = 0;
    g->pos += len;
}

static size_t scalar_size(uint32_t t)
{
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    assert_true(t <= T_F64 && t != T_STR && t != T_ARR);
    return sz[t];
}

static void skip_value(gguf *g, uint32_t t)
{
    if (t == T_STR) {
        uint64_t len = rd(g, 8);
        assert_true(g->pos + len <= g->n);
        g->pos += len;
    } else {
        g->pos += scalar_size(t);
        assert_true(g->pos <= g->n);
    }
}

static void gguf_load(gguf *g, const char *path)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) print_error("cannot open %s\n", path);
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    g->n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    g->b = malloc(g->n + 1);
    assert_int_equal(fread(g->b, 1, g->n, f), g->n);
    fclose(f);
    assert_memory_equal(g->b, "GGUF", 4);
    g->pos = 4;
    g->version = (uint32_t)rd(g, 4);
    g->n_t = rd(g, 8);
    g->n_kv = rd(g, 8);
    assert_int_equal(g->version, 3);
    assert_true(g->n_kv < 1000 && g->n_t < 100000);
    g->kv = calloc(g->n_kv + 1, sizeof *g->kv);
    g->t = calloc(g->n_t + 1, sizeof *g->t);
    g->align = 32; /* the spec's default when general.alignment is absent */
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gkv *k = &g->kv[i];
        rd_str(g, k->key, sizeof k->key);
        for (uint64_t j = 0; j < i; j++)
            assert_string_not_equal(g->kv[j].key, k->key);
        k->type = (uint32_t)rd(g, 4);
        if (k->type == T_ARR) {
            k->arr_type = (uint32_t)rd(g, 4);
            k->arr_n = rd(g, 8);
            k->at = g->pos;
            for (uint64_t e = 0; e < k->arr_n; e++)
                skip_value(g, k->arr_type);
        } else {
            k->at = g->pos;
            skip_value(g, k->type);
        }
        if (strcmp(k->key, "general.alignment") == 0) {
            assert_int_equal(k->type, T_U32);
            memcpy(&g->align, g->b + k->at, 4);
        }
    }
    for (uint64_t i = 0; i < g->n_t; i++) {
        gtensor *t = &g->t[i];
        rd_str(g, t->name, sizeof t->name);
        t->ndim = (uint32_t)rd(g, 4);
        assert_true(t->ndim >= 1 && t->ndim <= 4);
        for (uint32_t d = 0; d < t->ndim; d++)
            t->ne[d] = rd(g, 8);
        t->type = (uint32_t)rd(g, 4);
        t->off = rd(g, 8);
    }
    g->data = (g->pos + g->align - 1) / g->align * g->align;
    for (size_t p = g->pos; p < g->data; p++)
        assert_int_equal(g->b[p], 0); /* padding is zeros */
}

static void gguf_free(gguf *g)
{
    free(g->b);
    free(g->kv);
    free(g->t);
}

static const gkv *kv_find(const gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

static const gkv *kv_get(const gguf *g, const char *key, uint32_t type)
{
    const gkv *k = kv_find(g, key);
    if (!k) print_error("metadata key '%s' missing\n", key);
    assert_non_null(k);
    assert_int_equal(k->type, type);
    return k;
}

static uint32_t kv_u32(const gguf *g, const char *key)
{
    uint32_t v;
    memcpy(&v, g->b + kv_get(g, key, T_U32)->at, 4);
    return v;
}

static float kv_f32(const gguf *g, const char *key)
{
    float v;
    memcpy(&v, g->b + kv_get(g, key, T_F32)->at, 4);
    return v;
}

static void kv_str_eq(const gguf *g, const char *key, const char *want)
{
    const gkv *k = kv_get(g, key, T_STR);
    uint64_t len;
    memcpy(&len, g->b + k->at, 8);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(g->b + k->at + 8, want, len);
}

static const gtensor *tensor(const gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_t; i++)
        if (strcmp(g->t[i].name, name) == 0) return &g->t[i];
    print_error("tensor '%s' not in the GGUF file\n", name);
    fail();
    return NULL;
}

/* fp16 bits -> float, from the IEEE binary16 definition */
static float h2f(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0    ? ldexpf((float)m, -24)
              : e == 31 ? INFINITY
                        : ldexpf((float)(m + 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

static size_t row_bytes(uint32_t type, uint64_t ne0)
{
    switch (type) {
    case G_F32:
        return ne0 * 4;
    case G_F16:
        return ne0 * 2;
    case G_Q4_0:
        return ne0 / 32 * 18;
    case G_Q4_1:
        return ne0 / 32 * 20;
    case G_Q8_0:
        return ne0 / 32 * 34;
    }
    fail_msg("unexpected ggml type %u", type);
    return 0;
}

static uint64_t tensor_bytes(const gtensor *t)
{
    uint64_t rows = 1;
    for (uint32_t d = 1; d < t->ndim; d++)
        rows *= t->ne[d];
    return row_bytes(t->type, t->ne[0]) * rows;
}

/* Row r of a 2-D tensor (or the vector of a 1-D one) as floats. */
static void gguf_row(const gguf *g, const gtensor *t, uint64_t r, float *out)
{
    const size_t rb = row_bytes(t->type, t->ne[0]);
    const unsigned char *p = g->b + g->data + t->off + r * rb;
    const uint64_t n = t->ne[0];
    uint16_t h, m;
    for (uint64_t b = 0; b < (t->type >= G_Q4_0 ? n / 32 : 0); b++) {
        float *o = out + 32 * b;
        memcpy(&h, p, 2);
        float d = h2f(h), mn = 0;
        if (t->type == G_Q8_0) {
            for (int j = 0; j < 32; j++)
                o[j] = (float)(int8_t)p[2 + j] * d;
            p += 34;
            continue;
        }
        if (t->type == G_Q4_1) {
            memcpy(&m, p + 2, 2);
            mn = h2f(m);
            p += 2;
        }
        for (int j = 0; j < 16; j++) {
            int lo = p[2 + j] & 15, hi = p[2 + j] >> 4;
            if (t->type == G_Q4_0) {
                o[j] = (float)(lo - 8) * d;
                o[j + 16] = (float)(hi - 8) * d;
            } else {
                o[j] = (float)lo * d + mn;
                o[j + 16] = (float)hi * d + mn;
            }
        }
        p += 18;
    }
    if (t->type == G_F32) memcpy(out, p, n * 4);
    if (t->type == G_F16)
        for (uint64_t c = 0; c < n; c++) {
            memcpy(&h, p + 2 * c, 2);
            out[c] = h2f(h);
        }
}

/* Tensors lie in the data section, aligned, without overlaps; the file ends after the last. */
static void check_layout(const gguf *g)
{
    uint64_t end = 0;
    for (uint64_t i = 0; i < g->n_t; i++) {
        const gtensor *t = &g->t[i];
        assert_int_equal(t->off % g->align, 0);
        assert_true(g->data + t->off + tensor_bytes(t) <= g->n);
        for (uint64_t j = 0; j < g->n_t; j++) {
            if (j == i) continue;
            const gtensor *u = &g->t[j];
            assert_true(t->off + tensor_bytes(t) <= u->off || u->off + tensor_bytes(u) <= t->off);
            assert_string_not_equal(t->name, u->name);
        }
        if (t->off + tensor_bytes(t) > end) end = t->off + tensor_bytes(t);
    }
    assert_true(g->data + end <= g->n && g->n - (g->data + end) < g->align);
}

/* ---- expectations --------------------------------------------------------------------------- */

/* llama.cpp name of a container entry (the HF names, independently of the exporter's table). */
static int gguf_name_of(const char *hf, char *out, size_t n, int *qk)
{
    int layer;
    char rest[128];
    *qk = 0;
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, n, "token_embd.weight");
    if (!strcmp(hf, "model.norm.weight")) return snprintf(out, n, "output_norm.weight");
    if (!strcmp(hf, "lm_head") || !strcmp(hf, "lm_head.weight"))
        return snprintf(out, n, "output.weight");
    if (sscanf(hf, "model.layers.%d.%127s", &layer, rest) != 2) fail_msg("unexpected %s", hf);
    const char *m = NULL;
    if (!strcmp(rest, "input_layernorm.weight")) m = "attn_norm";
    if (!strcmp(rest, "post_attention_layernorm.weight")) m = "ffn_norm";
    if (!strcmp(rest, "self_attn.q_proj")) m = "attn_q", *qk = 1;
    if (!strcmp(rest, "self_attn.k_proj")) m = "attn_k", *qk = 2;
    if (!strcmp(rest, "self_attn.v_proj")) m = "attn_v";
    if (!strcmp(rest, "self_attn.o_proj")) m = "attn_output";
    if (!strcmp(rest, "mlp.gate_proj")) m = "ffn_gate";
    if (!strcmp(rest, "mlp.up_proj")) m = "ffn_up";
    if (!strcmp(rest, "mlp.down_proj")) m = "ffn_down";
    if (!m) fail_msg("unexpected %s", hf);
    return snprintf(out, n, "blk.%d.%s.weight", layer, m);
}

/* llama.cpp rotates pairs (2i, 2i+1) of a head, HF pairs (i, i + hd/2): HF row h*hd + j*hd/2 + i
 * is GGUF row h*hd + 2i + j. */
static int64_t gguf_row_of(int64_t hf_row, int64_t hd)
{
    int64_t h = hf_row / hd, w = hf_row % hd, j = w / (hd / 2), i = w % (hd / 2);
    return h * hd + 2 * i + j;
}

typedef struct {
    int n_block, n_f16, n_f32, n_exact; /* linears by GGUF type; block tensors equal bit for bit */
} tally;

/* Every tensor of the container against the GGUF file. want_block: the ggml type expected for
 * the linears that can map (in_features % 32 == 0), or G_F16/G_F32 when none should. */
static tally compare_all(const gguf *g, const char *h5, int64_t hd, uint32_t want_block,
                         uint32_t fallback)
{
    tally ty = {0};
    wq_h5_reader *r = NULL;
    assert_int_equal(wq_h5_open(h5, &r), WQ_OK);
    for (int64_t i = 0; i < wq_h5_count(r); i++) {
        const wq_h5_entry *e = wq_h5_entry_at(r, i);
        char nm[96];
        int qk;
        gguf_name_of(e->name, nm, sizeof nm, &qk);
        const gtensor *t = tensor(g, nm);
        const int64_t rows = e->ndim == 2 ? e->shape[0] : 1, cols = e->shape[e->ndim - 1];
        assert_int_equal(t->ndim, e->ndim);
        assert_int_equal(t->ne[0], cols);
        if (e->ndim == 2) assert_int_equal(t->ne[1], rows);
        float *W = malloc((size_t)(rows * cols) * sizeof(float));
        float *row = malloc((size_t)cols * sizeof(float));
        wq_qmatrix m = {0};
        float *zp = NULL;
        if (e->kind == WQ_H5_QLINEAR) {
            assert_int_equal(wq_h5_read_qmatrix(r, e, &m), WQ_OK);
            for (int k = 0; k < e->n_extra; k++)
                if (!strcmp(e->extra[k].name, "zero_point")) { /* HQQ: real zero points */
                    zp = malloc((size_t)e->extra[k].len * sizeof(float));
                    assert_int_equal(wq_h5_read_extra(r, e, "zero_point", zp), WQ_OK);
                    memcpy(m.zeros, zp, (size_t)e->extra[k].len * sizeof(float));
                }
            if (!m.zeros) /* nf4/fp4: the container reader's table dequantization */
                assert_int_equal(wq_h5_dequant(r, e, W), WQ_OK);
            for (int64_t o = 0; m.zeros && o < rows; o++) /* (code - zero) * scale, numerics 1.2 */
                for (int64_t c = 0; c < cols; c++) {
                    int64_t gi = o * m.ngroups + c / m.group_size;
                    W[o * cols + c] = ((float)m.codes[o * cols + c] - m.zeros[gi]) * m.scales[gi];
                }
            uint32_t want = cols % 32 == 0 ? want_block : fallback;
            if (t->type != want) print_error("%s: type %u, expected %u\n", nm, t->type, want);
            assert_int_equal(t->type, want);
        } else {
            assert_int_equal(e->orig_dtype, WQ_DTYPE_F32); /* stories260K / synth are F32 */
            assert_int_equal(wq_h5_read_raw_f32(r, e, W), WQ_OK);
            assert_int_equal(t->type, G_F32);
        }
        int exact = 1;
        for (int64_t o = 0; o < rows; o++) {
            int64_t gr = qk ? gguf_row_of(o, hd) : o;
            gguf_row(g, t, (uint64_t)gr, row);
            for (int64_t c = 0; c < cols; c++) {
                float w = W[o * cols + c], got = row[c];
                if (t->type == G_F32) {
                    assert_memory_equal(&got, &w, 4);
                } else if (t->type == G_F16) {
                    /* fp16(w) by value: |got - w| within half an fp16 ulp, and got is the
                     * nearest (checked with the neighbours) */
                    float err = fabsf(got - w), ulp = ldexpf(1.0f, ilogbf(fabsf(got)) - 10);
                    if (!(err <= 0.5f * ulp || (fabsf(w) < 6.2e-5f && err <= ldexpf(1.0f, -25))))
                        fail_msg("%s[%lld,%lld]: f16 %g for %g", nm, (long long)o, (long long)c,
                                 (double)got, (double)w);
                } else {
                    int64_t gi = o * m.ngroups + c / m.group_size;
                    /* Q4_0/Q8_0: (q - z)(d - s); Q4_1 adds the rounding of m = -z d */
                    double s = fabs(m.scales[gi]), z = m.zeros[gi];
                    double q_z = fabs((double)m.codes[o * cols + c] - z);
                    double bound =
                        ldexp((q_z + (t->type == G_Q4_1 ? fabs(z) : 0)) * s, -11) * (1 + 1e-3) +
                        ldexp(fabs(w), -20) + 1e-30;
                    if (!(fabs((double)got - w) <= bound))
                        fail_msg("%s[%lld,%lld]: %g vs container %g (bound %g)", nm, (long long)o,
                                 (long long)c, (double)got, (double)w, bound);
                    exact &= got == w;
                }
            }
        }
        if (e->kind == WQ_H5_QLINEAR) {
            ty.n_block += t->type >= G_Q4_0;
            ty.n_exact += t->type >= G_Q4_0 && exact;
            ty.n_f16 += t->type == G_F16;
            ty.n_f32 += t->type == G_F32;
        }
        wq_qmatrix_free(&m);
        free(zp);
        free(W);
        free(row);
    }
    wq_h5_close(r);
    return ty;
}

/* Header keys llama.cpp's llama loader reads, against the model's config.json values. */
static void check_metadata(const gguf *g, int64_t ffn, uint32_t file_type)
{
    kv_str_eq(g, "general.architecture", "llama");
    kv_str_eq(g, "general.name", "c"); /* every container here is <dir>/c.h5 */
    assert_int_equal(kv_u32(g, "general.alignment"), 32);
    assert_int_equal(kv_u32(g, "general.file_type"), file_type);
    assert_int_equal(kv_u32(g, "llama.context_length"), 512);
    assert_int_equal(kv_u32(g, "llama.embedding_length"), 64);
    assert_int_equal(kv_u32(g, "llama.block_count"), 5);
    assert_int_equal(kv_u32(g, "llama.feed_forward_length"), ffn);
    assert_int_equal(kv_u32(g, "llama.attention.head_count"), 8);
    assert_int_equal(kv_u32(g, "llama.attention.head_count_kv"), 4);
    assert_int_equal(kv_u32(g, "llama.rope.dimension_count"), 8);
    assert_int_equal(kv_u32(g, "llama.vocab_size"), 512);
    assert_true(kv_f32(g, "llama.attention.layer_norm_rms_epsilon") == 1e-5f);
    assert_true(kv_f32(g, "llama.rope.freq_base") == 10000.0f);
    kv_str_eq(g, "tokenizer.ggml.model", "llama");
    assert_int_equal(kv_u32(g, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(kv_u32(g, "tokenizer.ggml.eos_token_id"), 2);
    assert_int_equal(kv_u32(g, "tokenizer.ggml.unknown_token_id"), 0);
    /* vocabulary: tokenizer.model's pieces, scores and types, in id order */
    wq_tokenizer *tok = NULL;
    assert_int_equal(wq_tok_load(STORIES, &tok), WQ_OK);
    const gkv *tk = kv_get(g, "tokenizer.ggml.tokens", T_ARR), *sc, *ty;
    sc = kv_get(g, "tokenizer.ggml.scores", T_ARR);
    ty = kv_get(g, "tokenizer.ggml.token_type", T_ARR);
    assert_int_equal(tk->arr_type, T_STR);
    assert_int_equal(sc->arr_type, T_F32);
    assert_int_equal(ty->arr_type, T_I32);
    assert_int_equal(tk->arr_n, 512);
    assert_int_equal(sc->arr_n, 512);
    assert_int_equal(ty->arr_n, 512);
    size_t p = tk->at;
    for (int32_t id = 0; id < 512; id++) {
        uint64_t len;
        memcpy(&len, g->b + p, 8);
        const char *piece = wq_tok_piece(tok, id);
        assert_int_equal(len, strlen(piece));
        assert_memory_equal(g->b + p + 8, piece, len);
        p += 8 + len;
        float s;
        int32_t t;
        memcpy(&s, g->b + sc->at + 4 * (size_t)id, 4);
        memcpy(&t, g->b + ty->at + 4 * (size_t)id, 4);
        assert_true(s == wq_tok_score(tok, id));
        assert_int_equal(t, (int32_t)wq_tok_type(tok, id)); /* 1 normal .. 6 byte, both enums */
    }
    assert_int_equal(wq_tok_type(tok, 0), 2); /* <unk> */
    assert_int_equal(wq_tok_type(tok, 1), 3); /* <s> control */
    wq_tok_free(tok);
}

/* ---- CLI helpers ---------------------------------------------------------------------------- */

static void quantize(const char *model, const char *out, const char *args)
{
    char *log;
    int rc =
        wq_e2e_run(0, &log, "quantize --model %s --out %s/%s --quiet %s", model, g_dir, out, args);
    if (rc) print_error("%s\n", log);
    assert_int_equal(rc, 0);
}

static int export_gguf(const char *h5, const char *out, const char *args, char **log)
{
    return wq_e2e_run(0, log, "export --format gguf %s/%s %s/%s %s", g_dir, h5, g_dir, out, args);
}

static void export_ok(const char *h5, const char *out, const char *args, char **log)
{
    int rc = export_gguf(h5, out, args, log);
    if (rc) print_error("%s\n", *log);
    assert_int_equal(rc, 0);
}

static void load(gguf *g, const char *name)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    gguf_load(g, p);
    check_layout(g);
}

static const char *at(const char *name)
{
    static char p[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* int4 sym with fp16 scales on the synthetic model (every in_features a multiple of 32): all 35
 * linears Q4_0 and bit for bit; metadata, vocabulary and the tied output (no output.weight). */
static void q4_0_with_fp16_scales_should_be_bit_exact_and_complete(void **state)
{
    (void)state;
    char *log;
    quantize(g_syn, "s4/c.h5",
             "--algo rtn --dtype int --bits 4 --sym --group-size 32 "
             "--set scale_dtype=fp16");
    export_ok("s4/c.h5", "s4", "--model " STORIES, &log); /* a directory: s4/model.gguf */
    assert_non_null(strstr(log, "35 linears as Q4_0"));
    gguf g;
    load(&g, "s4/model.gguf");
    check_metadata(&g, 192, 2 /* MOSTLY_Q4_0 */);
    assert_int_equal(g.n_t, 2 + 5 * 9); /* token_embd, output_norm, 9 per block; output tied */
    assert_null(kv_find(&g, "llama.attention.key_length"));
    tally t = compare_all(&g, at("s4/c.h5"), 8, G_Q4_0, G_F16);
    assert_int_equal(t.n_block, 35);
    assert_int_equal(t.n_exact, 35);
    /* deterministic: a second export (to a file name this time) is byte-identical */
    export_ok("s4/c.h5", "s4b.gguf", "--model " STORIES, &log);
    gguf g2;
    load(&g2, "s4b.gguf");
    assert_int_equal(g2.n, g.n);
    assert_memory_equal(g2.b, g.b, g.n);
    gguf_free(&g2);
    gguf_free(&g);
}

/* int4 asym -> Q4_1, int8 sym with group 64 -> Q8_0 (two blocks per group), int4 sym with f32
 * scales -> Q4_0: within fp16 rounding of d and m; stories260K's down_proj (in 172) -> F16. */
static void q4_1_q8_0_should_match_within_fp16_rounding_and_ragged_layers_fall_back(void **state)
{
    (void)state;
    static const struct {
        const char *dir, *args;
        uint32_t type, ftype;
    } cases[] = {
        {"a4", "--bits 4 --asym --group-size 32", G_Q4_1, 3},
        {"s8", "--bits 8 --sym --group-size 64", G_Q8_0, 7},
        {"r4", "--bits 4 --sym --group-size 32", G_Q4_0, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char h5[64], out[64], args[200], *log;
        snprintf(h5, sizeof h5, "%s/c.h5", cases[i].dir);
        snprintf(out, sizeof out, "%s.gguf", cases[i].dir);
        snprintf(args, sizeof args, "--algo rtn --dtype int %s", cases[i].args);
        quantize(STORIES, h5, args);
        export_ok(h5, out, "--model " STORIES, &log);
        for (int l = 0; l < 5; l++) { /* one warning per ragged layer, naming it and why */
            char needle[160];
            snprintf(needle, sizeof needle,
                     "layer 'model.layers.%d.mlp.down_proj' written dequantized as F16: "
                     "in_features 172 is not a multiple",
                     l);
            if (!strstr(log, needle)) print_error("missing '%s' in\n%s\n", needle, log);
            assert_non_null(strstr(log, needle));
        }
        gguf g;
        load(&g, out);
        check_metadata(&g, 172, cases[i].ftype);
        tally t = compare_all(&g, at(h5), 8, cases[i].type, G_F16);
        assert_int_equal(t.n_block, 30);
        assert_int_equal(t.n_f16, 5);
        assert_true(t.n_exact < 30); /* f32 scales: fp16 d really rounds somewhere */
        gguf_free(&g);
    }
}

/* Group 128 on the synthetic model: down_proj (in 192) has a ragged last group of 64, gate/up
 * (in 64) one group per row; all are whole blocks of 32 sharing a group's d, so all map. */
static void groups_of_multiples_of_32_should_map_also_when_ragged(void **state)
{
    (void)state;
    char *log;
    quantize(g_syn, "g128/c.h5", "--algo rtn --dtype int --bits 4 --sym --group-size 128");
    export_ok("g128/c.h5", "g128.gguf", "--model " STORIES " --strict", &log);
    gguf g;
    load(&g, "g128.gguf");
    tally t = compare_all(&g, at("g128/c.h5"), 8, G_Q4_0, G_F16);
    assert_int_equal(t.n_block, 35);
    gguf_free(&g);
}

/* HQQ stores real-valued zero points as an extra: Q4_1 with m = -zero * d. */
static void hqq_real_zero_points_should_map_to_q4_1(void **state)
{
    (void)state;
    char *log;
    quantize(g_syn, "h4/c.h5", "--algo hqq --set bits=4,group_size=32");
    export_ok("h4/c.h5", "h4.gguf", "--model " STORIES, &log);
    gguf g;
    load(&g, "h4.gguf");
    tally t = compare_all(&g, at("h4/c.h5"), 8, G_Q4_1, G_F16);
    assert_int_equal(t.n_block, 35);
    gguf_free(&g);
}

/* nf4 has no ggml block type: F16 by default, F32 with --fallback f32 (bit for bit),
 * refused with --strict (exit 2, names the layer, no file and no .tmp left). Bad arguments. */
static void unmappable_layers_should_fall_back_or_be_refused_with_strict(void **state)
{
    (void)state;
    char *log;
    quantize(STORIES, "n4/c.h5", "--algo rtn --dtype nf4 --group-size 32");
    export_ok("n4/c.h5", "n4.gguf", "--model " STORIES, &log);
    assert_non_null(strstr(log, "layer 'model.layers.0.self_attn.q_proj' written dequantized as "
                                "F16: dtype nf4 has no ggml block type"));
    gguf g;
    load(&g, "n4.gguf");
    tally t = compare_all(&g, at("n4/c.h5"), 8, G_F16, G_F16);
    assert_int_equal(t.n_f16, 35);
    assert_int_equal(kv_u32(&g, "general.file_type"), 1);
    gguf_free(&g);

    export_ok("n4/c.h5", "n4f32.gguf", "--model " STORIES " --fallback f32", &log);
    load(&g, "n4f32.gguf");
    t = compare_all(&g, at("n4/c.h5"), 8, G_F32, G_F32);
    assert_int_equal(t.n_f32, 35);
    gguf_free(&g);

    int rc = export_gguf("n4/c.h5", "strict.gguf", "--model " STORIES " --strict", &log);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(log, "export gguf: layer 'model.layers."));
    assert_non_null(strstr(log, "' does not map exactly onto a ggml block type: dtype nf4"));
    assert_false(wq_e2e_file_exists(at("strict.gguf")));
    assert_false(wq_e2e_file_exists(at("strict.gguf.tmp")));

    /* --strict passes when everything maps */
    export_ok("s4/c.h5", "s4strict.gguf", "--model " STORIES " --strict", &log);

    /* GPTQ act_order: the g_idx scatters columns over groups, a ggml block holds 32 contiguous */
    FILE *f = fopen(at("ga.json"), "w");
    assert_non_null(f);
    fprintf(f,
            "{\"gptq\": {\"global\": {\"bits\": 4, \"group_size\": 32, \"use_sym\": true, "
            "\"act_order\": true}}, \"calibration\": {\"text\": \"%s\", \"format\": "
            "\"stories\", \"range\": [0, 40], \"n_samples\": 8, \"seqlen\": 64}}",
            WQ_ASSETS_DIR "/text/tinystories-val-500.txt");
    fclose(f);
    char args[700];
    snprintf(args, sizeof args, "--config %s", at("ga.json"));
    quantize(STORIES, "ga/c.h5", args);
    export_ok("ga/c.h5", "ga.gguf", "--model " STORIES, &log);
    assert_non_null(strstr(log, "written dequantized as F16: act-order g_idx (column "));
    assert_non_null(strstr(log, "0 linears as Q4_0, 0 as Q4_1, 0 as Q8_0, 35 dequantized"));

    assert_int_equal(export_gguf("n4/c.h5", "x.gguf", "", &log), 2); /* no tokenizer */
    assert_non_null(strstr(log, "--model DIR is required"));
    assert_int_equal(export_gguf("n4/c.h5", "x.gguf", "--model " STORIES " --fallback q8", &log),
                     2);
    assert_non_null(strstr(log, "--fallback must be f16 or f32"));
    assert_int_equal(export_gguf("n4/c.h5", "x.gguf", "--model /nonexistent", &log), 1);
    assert_non_null(strstr(log, "/nonexistent"));
    assert_false(wq_e2e_file_exists(at("x.gguf")));
}

/* A model with more embeddings than tokenizer pieces gets "[PAD<i>]" pieces of type unused (the
 * converter's convention), so llama.cpp's vocabulary matches token_embd; a qwen2 model (biases,
 * another GGUF architecture) is refused naming the model_type. */
static void vocab_should_be_padded_and_other_architectures_refused(void **state)
{
    (void)state;
    char *log;
    static const char *const edits[] = {
        "s/\"vocab_size\": 512/\"vocab_size\": 544/",
        "s/\"vocab_size\": 512/\"vocab_size\": 544/; s/\"model_type\": \"llama\"/"
        "\"model_type\": \"qwen2\"/; s/\"attention_bias\": false/\"attention_bias\": true/",
    };
    for (int k = 0; k < 2; k++) {
        assert_int_equal(
            wq_test_system("sed '%s' %s/config.json > %s/v%d.json", edits[k], STORIES, g_dir, k),
            0);
        assert_int_equal(wq_e2e_run(1, &log,
                                    "synth --like %s/v%d.json --layers 1 --dtype f32 "
                                    "--out %s/vsyn%d",
                                    g_dir, k, g_dir, k),
                         0);
        char model[300], h5[64];
        snprintf(model, sizeof model, "%s/vsyn%d", g_dir, k);
        snprintf(h5, sizeof h5, "v%d/c.h5", k);
        quantize(model, h5, "--algo rtn --dtype int --bits 8 --sym --group-size 32");
    }
    gguf g;
    export_ok("v0/c.h5", "v0.gguf", "--model " STORIES, &log);
    load(&g, "v0.gguf");
    assert_int_equal(kv_u32(&g, "llama.vocab_size"), 544);
    assert_int_equal(tensor(&g, "token_embd.weight")->ne[1], 544);
    const gkv *tk = kv_get(&g, "tokenizer.ggml.tokens", T_ARR);
    const gkv *ty = kv_get(&g, "tokenizer.ggml.token_type", T_ARR);
    assert_int_equal(tk->arr_n, 544);
    assert_int_equal(ty->arr_n, 544);
    size_t p = tk->at;
    for (int id = 0; id < 544; id++) {
        uint64_t len;
        memcpy(&len, g.b + p, 8);
        if (id >= 512) {
            char want[32];
            int32_t t;
            snprintf(want, sizeof want, "[PAD%d]", id);
            assert_int_equal(len, strlen(want));
            assert_memory_equal(g.b + p + 8, want, len);
            memcpy(&t, g.b + ty->at + 4 * (size_t)id, 4);
            assert_int_equal(t, 5);
        }
        p += 8 + len;
    }
    gguf_free(&g);
    assert_int_equal(export_gguf("v1/c.h5", "v1.gguf", "--model " STORIES, &log), 2);
    assert_non_null(strstr(log, "model_type 'qwen2' is not supported"));
    assert_false(wq_e2e_file_exists(at("v1.gguf")));
}

static int setup(void **state)
{
    (void)state;
    if (!wq_test_tmpdir(g_dir, sizeof g_dir)) return -1;
    if (wq_test_system("cd %s && mkdir s4 a4 s8 r4 h4 n4 v0 v1 ga g128", g_dir)) return -1;
    /* stories260K widths with intermediate_size 192: every in_features a multiple of 32 */
    if (wq_test_system(
            "sed 's/\"intermediate_size\": 172/\"intermediate_size\": 192/' %s/config.json "
            "> %s/like.json",
            STORIES, g_dir))
        return -1;
    snprintf(g_syn, sizeof g_syn, "%s/syn", g_dir);
    char *log;
    if (wq_e2e_run(1, &log, "synth --like %s/like.json --layers 5 --dtype f32 --out %s", g_dir,
                   g_syn)) {
        fprintf(stderr, "%s\n", log);
        return -1;
    }
    return 0;
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
        cmocka_unit_test(q4_0_with_fp16_scales_should_be_bit_exact_and_complete),
        cmocka_unit_test(q4_1_q8_0_should_match_within_fp16_rounding_and_ragged_layers_fall_back),
        cmocka_unit_test(groups_of_multiples_of_32_should_map_also_when_ragged),
        cmocka_unit_test(hqq_real_zero_points_should_map_to_q4_1),
        cmocka_unit_test(unmappable_layers_should_fall_back_or_be_refused_with_strict),
        cmocka_unit_test(vocab_should_be_padded_and_other_architectures_refused),
    };
    return cmocka_run_group_tests_name("export_gguf", tests, setup, teardown);
}
