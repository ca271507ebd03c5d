/* export_hf.c: GPTQ (numerics.md 9.5) and AutoAWQ GEMM (9.6) HuggingFace directories from unpacked
 * quantized matrices. Pass 1 validates every layer against what transformers / vLLM load and
 * decides the GPTQ zero-point convention; pass 2 packs and streams the shards. Layer: model. */
#include "model/export_hf.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "model/st_writer.h"

#define DEFAULT_SHARD_BYTES 4000e6 /* HF counts MB as 10^6 bytes */
#define MAX_OUT 4                  /* output tensors per entry */

static const char *fmt_name(wq_hf_format f)
{
    return f == WQ_HF_GPTQ ? "gptq" : "awq";
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Codes per whole number of int32 words: values k sit at bits [bits*k, bits*k + bits) of the
 * little-endian word stream, so a run must hold a multiple of 32/gcd(bits, 32) values (8 for 4-bit,
 * 32 for 3-bit: AutoGPTQ's 32 values in 3 words). */
static int64_t pack_unit(int bits)
{
    return 32 / gcd64(bits, 32);
}

static int is_float(wq_dtype t)
{
    return t == WQ_DTYPE_F32 || t == WQ_DTYPE_F16 || t == WQ_DTYPE_BF16 || t == WQ_DTYPE_F64;
}

static int64_t numel_of(const wq_hf_entry *e)
{
    int64_t n = 1;
    for (int k = 0; k < e->ndim; k++)
        n *= e->shape[k];
    return n;
}

/* INC's lm_head names (numerics.md 0): linears outside the decoder blocks, kept in F16. */
static int is_lm_head(const char *name)
{
    static const char *const sfx[] = {"lm_head", "output_layer", "embed_out"};
    size_t n = strlen(name);
    if (n > 7 && strcmp(name + n - 7, ".weight") == 0) n -= 7;
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        size_t k = strlen(sfx[i]);
        if (n >= k && strncmp(name + n - k, sfx[i], k) == 0 && (n == k || name[n - k - 1] == '.'))
            return 1;
    }
    return 0;
}

/* ---- output tensors of an entry -------------------------------------------------------------- */

typedef struct {
    char name[320];
    wq_dtype dtype;
    int ndim;
    int64_t shape[4];
} out_tensor;

static uint64_t out_bytes(const out_tensor *t)
{
    uint64_t n = wq_dtype_size(t->dtype);
    for (int k = 0; k < t->ndim; k++)
        n *= (uint64_t)t->shape[k];
    return n;
}

static void set2(out_tensor *t, const char *base, const char *sfx, wq_dtype dt, int64_t a,
                 int64_t b)
{
    snprintf(t->name, sizeof t->name, "%s.%s", base, sfx);
    t->dtype = dt;
    t->ndim = b < 0 ? 1 : 2;
    t->shape[0] = a;
    t->shape[1] = b < 0 ? 0 : b;
}

/* Fills out[] with the tensors entry e becomes (validated entries only); returns their count. */
static int entry_tensors(const wq_hf_entry *e, wq_hf_format f, out_tensor *out)
{
    if (!e->quantized) {
        snprintf(out[0].name, sizeof out[0].name, "%s", e->name);
        out[0].dtype = is_float(e->dtype) ? WQ_DTYPE_F16 : e->dtype;
        out[0].ndim = e->ndim;
        memcpy(out[0].shape, e->shape, sizeof e->shape);
        return 1;
    }
    int64_t ng = e->cols / e->group_size_eff, b = e->spec.bits;
    if (f == WQ_HF_GPTQ) {
        set2(&out[0], e->name, "qweight", WQ_DTYPE_I32, e->cols * b / 32, e->rows);
        set2(&out[1], e->name, "qzeros", WQ_DTYPE_I32, ng, e->rows * b / 32);
        set2(&out[2], e->name, "scales", WQ_DTYPE_F16, ng, e->rows);
        set2(&out[3], e->name, "g_idx", WQ_DTYPE_I32, e->cols, -1);
        return 4;
    }
    set2(&out[0], e->name, "qweight", WQ_DTYPE_I32, e->cols, e->rows / 8);
    set2(&out[1], e->name, "qzeros", WQ_DTYPE_I32, ng, e->rows / 8);
    set2(&out[2], e->name, "scales", WQ_DTYPE_F16, ng, e->rows);
    return 3;
}

/* ---- pass 1: static checks ------------------------------------------------------------------- */

/* Checks what the format can express from the declarations alone. `first` is the first quantized
 * layer (all must share its bits / group size / sym); gcd_in is the gcd of all in_features. */
static wq_status check_static(const wq_hf_entry *e, const wq_hf_entry *first, wq_hf_format f,
                              int64_t gcd_in)
{
    const char *F = f == WQ_HF_GPTQ ? "GPTQ" : "AWQ";
    if (!e->quantized) {
        if (e->linear && !is_lm_head(e->name)) {
            if (f == WQ_HF_GPTQ) {
                WQ_LOG_ERROR(
                    "export gptq: linear '%s' is kept unquantized; HF GPTQ loaders "
                    "(transformers, vLLM) replace every linear of the decoder blocks with a "
                    "quantized one. Quantize it too, or use --format safetensors-fp16",
                    e->name);
                return WQ_ERR_UNSUPPORTED;
            }
        }
        return WQ_OK;
    }
    if (e->spec.dtype != WQ_QDTYPE_INT) {
        WQ_LOG_ERROR(
            "export %s: layer '%s' is %s; the %s format holds only int layers (allowed: %s)",
            fmt_name(f), e->name, wq_qdtype_name(e->spec.dtype), F,
            f == WQ_HF_GPTQ ? "int2, int3, int4, int8" : "int4 asym");
        return WQ_ERR_UNSUPPORTED;
    }
    int b = e->spec.bits;
    if (f == WQ_HF_GPTQ && b != 2 && b != 3 && b != 4 && b != 8) {
        WQ_LOG_ERROR("export gptq: layer '%s' has %d bits; GPTQ kernels load 2, 3, 4 or 8 bits "
                     "(allowed: 2, 3, 4, 8)",
                     e->name, b);
        return WQ_ERR_UNSUPPORTED;
    }
    if (f == WQ_HF_AWQ && (b != 4 || e->spec.sym)) {
        WQ_LOG_ERROR("export awq: layer '%s' is int%d %s; the AutoAWQ GEMM format holds only int4 "
                     "asym (use_sym=false) layers (allowed: bits 4, asym)",
                     e->name, b, e->spec.sym ? "sym" : "asym");
        return WQ_ERR_UNSUPPORTED;
    }
    for (int k = 0; k < e->n_extra; k++) {
        if (strcmp(e->extra[k], "input_scale") == 0)
            WQ_LOG_ERROR(
                "export %s: layer '%s' carries an AWQ input_scale (a self tuple scaled at its "
                "input); the %s format has no place for it (AutoAWQ absorbs scales into the "
                "previous layer). Re-quantize with \"folding\": true",
                fmt_name(f), e->name, F);
        else
            WQ_LOG_ERROR(
                "export %s: layer '%s' carries the extra '%s' (e.g. GPTQ fp8_aware), which "
                "the %s format cannot express",
                fmt_name(f), e->name, e->extra[k], F);
        return WQ_ERR_UNSUPPORTED;
    }
    if (e != first &&
        (e->spec.bits != first->spec.bits || e->spec.group_size != first->spec.group_size ||
         e->spec.sym != first->spec.sym)) {
        WQ_LOG_ERROR("export %s: layer '%s' is bits %d group_size %lld %s but '%s' is bits %d "
                     "group_size %lld %s; HF %s checkpoints have one quantization_config, so every "
                     "layer must share bits, group_size and sym",
                     fmt_name(f), e->name, e->spec.bits, (long long)e->spec.group_size,
                     e->spec.sym ? "sym" : "asym", first->name, first->spec.bits,
                     (long long)first->spec.group_size, first->spec.sym ? "sym" : "asym", F);
        return WQ_ERR_UNSUPPORTED;
    }
    int64_t gs = e->spec.group_size;
    if (gs != -1 && (e->cols % gs != 0 || e->group_size_eff != gs)) {
        WQ_LOG_ERROR(
            "export %s: layer '%s' has in_features %lld, not a multiple of group_size %lld "
            "(its last group is ragged); transformers and vLLM require in_features %% "
            "group_size == 0 and cannot load it. Re-quantize with a group size dividing "
            "every in_features (divisors of %lld) or -1",
            fmt_name(f), e->name, (long long)e->cols, (long long)gs, (long long)gcd_in);
        return WQ_ERR_UNSUPPORTED;
    }
    if (e->cols % e->group_size_eff != 0) return WQ_ERR_UNSUPPORTED; /* declarations inconsistent */
    int64_t u = f == WQ_HF_GPTQ ? pack_unit(b) : 8;
    if (f == WQ_HF_GPTQ && e->cols % u != 0) {
        WQ_LOG_ERROR("export gptq: layer '%s' has in_features %lld, not a multiple of %lld: int%d "
                     "qweight packs %lld input rows per %s; transformers and vLLM cannot load it",
                     e->name, (long long)e->cols, (long long)u, b, (long long)u,
                     b == 3 ? "3 int32 words" : "int32 word");
        return WQ_ERR_UNSUPPORTED;
    }
    if (e->rows % u != 0) {
        WQ_LOG_ERROR(
            "export %s: layer '%s' has out_features %lld, not a multiple of %lld: %s packs "
            "%lld output columns per %s; vLLM requires out_features %% %lld == 0",
            fmt_name(f), e->name, (long long)e->rows, (long long)u,
            f == WQ_HF_GPTQ ? "qzeros" : "qweight/qzeros", (long long)u,
            b == 3 && f == WQ_HF_GPTQ ? "3 int32 words" : "int32 word", (long long)u);
        return WQ_ERR_UNSUPPORTED;
    }
    return WQ_OK;
}

/* ---- pass 1: data checks --------------------------------------------------------------------- */

static int gidx_trivial(const wq_qmatrix *m)
{
    if (!m->g_idx) return 1;
    for (int64_t c = 0; c < m->cols; c++)
        if (m->g_idx[c] != (int32_t)(c / m->group_size)) return 0;
    return 1;
}

/* Zero points and scales of one layer: counts zp == 0 groups (lossy in GPTQ v1), checks that scales
 * fit fp16 and that sym layers carry zp = 2^(bits-1). */
static wq_status check_data(const wq_hf_entry *e, const wq_qmatrix *m, wq_hf_format f,
                            int64_t *n_zero0, int *nontrivial_gidx)
{
    if (m->rows != e->rows || m->cols != e->cols || m->group_size != e->group_size_eff ||
        !m->zeros) {
        WQ_LOG_ERROR("export %s: layer '%s': the stored matrix does not match its declaration",
                     fmt_name(f), e->name);
        return WQ_ERR_FORMAT;
    }
    const float maxq = (float)((1 << e->spec.bits) - 1), mid = (float)(1 << (e->spec.bits - 1));
    for (int64_t i = 0; i < m->rows * m->ngroups; i++) {
        float z = m->zeros[i];
        if (!(z >= 0 && z <= maxq) || z != floorf(z) || (e->spec.sym && z != mid)) {
            WQ_LOG_ERROR(
                "export %s: layer '%s' has zero point %g (row %lld); expected an integer in "
                "[0, %g]%s",
                fmt_name(f), e->name, (double)z, (long long)(i / m->ngroups), (double)maxq,
                e->spec.sym ? " equal to 2^(bits-1) (sym)" : "");
            return WQ_ERR_FORMAT;
        }
        if (z == 0) (*n_zero0)++;
        uint16_t h = wq_f32_to_f16(m->scales[i]);
        if ((h & 0x7c00) == 0x7c00) {
            WQ_LOG_ERROR(
                "export %s: layer '%s' has scale %g (row %lld), which is not finite in the "
                "format's fp16 scales",
                fmt_name(f), e->name, (double)m->scales[i], (long long)(i / m->ngroups));
            return WQ_ERR_UNSUPPORTED;
        }
    }
    if (!gidx_trivial(m)) {
        if (f == WQ_HF_AWQ) {
            WQ_LOG_ERROR(
                "export awq: layer '%s' has an act-order g_idx; the AutoAWQ format has none "
                "(use --format gptq, or re-quantize without act_order)",
                e->name);
            return WQ_ERR_UNSUPPORTED;
        }
        *nontrivial_gidx = 1;
    }
    return WQ_OK;
}

/* ---- packing --------------------------------------------------------------------------------- */

/* Value k of a run at bits [bits*k, bits*k + bits) of words w[0], w[stride], w[2*stride], ...
 * (LSB first). For bits dividing 32 this is the per-word layout of numerics 9.1; for 3 bits it is
 * AutoGPTQ's 32-values-in-3-words layout of 9.5 (value 10 straddles words 0/1, value 21 words 1/2).
 */
static void put_bits(uint32_t *w, int64_t stride, int64_t k, int bits, uint32_t v)
{
    int64_t bit = k * bits, j = bit >> 5;
    int s = (int)(bit & 31);
    w[j * stride] |= v << s;
    if (s + bits > 32) w[(j + 1) * stride] |= v >> (32 - s);
}

/* GPTQ: qweight [in*b/32, out] along in; qzeros [ngroups, out*b/32] along out, zp - 1 for v1;
 * scales [ngroups, out] fp16; g_idx [in]. */
static void pack_gptq(const wq_qmatrix *m, int v1, uint32_t *qw, uint32_t *qz, uint16_t *sc,
                      int32_t *gi)
{
    const int b = m->bits;
    const uint32_t mask = (1u << b) - 1;
    const int64_t rows = m->rows, cols = m->cols, ng = m->ngroups, zw = rows * b / 32;
    memset(qw, 0, (size_t)(cols * b / 32 * rows) * 4);
    memset(qz, 0, (size_t)(ng * zw) * 4);
    for (int64_t o = 0; o < rows; o++)
        for (int64_t c = 0; c < cols; c++)
            put_bits(qw + o, rows, c, b, m->codes[o * cols + c] & mask);
    for (int64_t g = 0; g < ng; g++)
        for (int64_t o = 0; o < rows; o++) {
            uint32_t z = (uint32_t)(int32_t)m->zeros[o * ng + g];
            put_bits(qz + g * zw, 1, o, b, (v1 ? z - 1 : z) & mask);
            sc[g * rows + o] = wq_f32_to_f16(m->scales[o * ng + g]);
        }
    for (int64_t c = 0; c < cols; c++)
        gi[c] = m->g_idx ? m->g_idx[c] : (int32_t)(c / m->group_size);
}

/* AutoAWQ GEMM: nibble i of word [r, j] holds column 8j + order[i], order = {0,2,4,6,1,3,5,7};
 * slot[p] is the nibble of column 8j + p. qweight [in, out/8], qzeros [ngroups, out/8] (zp as is).
 */
static void pack_awq(const wq_qmatrix *m, uint32_t *qw, uint32_t *qz, uint16_t *sc)
{
    static const int slot[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    const int64_t rows = m->rows, cols = m->cols, ng = m->ngroups, ow = rows / 8;
    memset(qw, 0, (size_t)(cols * ow) * 4);
    memset(qz, 0, (size_t)(ng * ow) * 4);
    for (int64_t o = 0; o < rows; o++) {
        int sh = 4 * slot[o % 8];
        for (int64_t c = 0; c < cols; c++)
            qw[c * ow + o / 8] |= (uint32_t)(m->codes[o * cols + c] & 15) << sh;
        for (int64_t g = 0; g < ng; g++) {
            qz[g * ow + o / 8] |= ((uint32_t)(int32_t)m->zeros[o * ng + g] & 15) << sh;
            sc[g * rows + o] = wq_f32_to_f16(m->scales[o * ng + g]);
        }
    }
}

/* ---- files ----------------------------------------------------------------------------------- */

static wq_status write_text_atomic(const char *path, const char *text)
{
    char tmp[4224];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        WQ_LOG_ERROR("cannot write '%s': %s", tmp, strerror(errno));
        return WQ_ERR_IO;
    }
    int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        WQ_LOG_ERROR("cannot write '%s': %s", path, strerror(errno));
        remove(tmp);
        return WQ_ERR_IO;
    }
    return WQ_OK;
}

static wq_status copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb");
    if (!in) {
        WQ_LOG_ERROR("cannot read '%s': %s", src, strerror(errno));
        return WQ_ERR_IO;
    }
    char tmp[4224];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        WQ_LOG_ERROR("cannot write '%s': %s", tmp, strerror(errno));
        fclose(in);
        return WQ_ERR_IO;
    }
    char buf[1 << 16];
    size_t n;
    int ok = 1;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    fclose(in);
    ok = fclose(out) == 0 && ok;
    if (!ok || rename(tmp, dst) != 0) {
        WQ_LOG_ERROR("cannot copy '%s' to '%s'", src, dst);
        remove(tmp);
        return WQ_ERR_IO;
    }
    return WQ_OK;
}

wq_status wq_hf_copy_tokenizer(const char *src_dir, const char *dst_dir)
{
    static const char *const files[] = {"tokenizer.model", "tokenizer.json",
                                        "tokenizer_config.json", "special_tokens_map.json"};
    int copied = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char s[4200], d[4200];
        struct stat sb;
        snprintf(s, sizeof s, "%s/%s", src_dir, files[i]);
        if (stat(s, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        snprintf(d, sizeof d, "%s/%s", dst_dir, files[i]);
        WQ_TRY(copy_file(s, d));
        copied++;
    }
    if (!copied)
        WQ_LOG_WARN("export: no tokenizer file (tokenizer.model, tokenizer.json, ...) in '%s'",
                    src_dir);
    return WQ_OK;
}

/* ---- quantization_config --------------------------------------------------------------------- */

typedef struct {
    int bits;
    int64_t group_size; /* configured: -1 = per output channel */
    int sym, desc_act, static_groups, true_sequential, v1, lm_head;
    double damp;
} gptq_meta;

/* GPTQ parameters from the effective wquant config ({"gptq": {"global": {...}}}); other
 * algorithms get the GPTQ defaults (loaders require 0 < damp_percent < 1; it is unused at load). */
static void read_algo_params(const char *wquant_json, gptq_meta *g)
{
    g->damp = 0.01;
    cJSON *root = wquant_json ? cJSON_Parse(wquant_json) : NULL;
    cJSON *glob =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "gptq"), "global");
    cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(glob, "percdamp")) && cJSON_IsNumber(v) &&
        v->valuedouble > 0 && v->valuedouble < 1)
        g->damp = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(glob, "act_order")) && cJSON_IsTrue(v))
        g->desc_act = 1;
    if ((v = cJSON_GetObjectItemCaseSensitive(glob, "static_groups")) && cJSON_IsTrue(v))
        g->static_groups = 1;
    if ((v = cJSON_GetObjectItemCaseSensitive(glob, "true_sequential")) && cJSON_IsTrue(v))
        g->true_sequential = 1;
    cJSON_Delete(root);
}

static cJSON *gptq_config_json(const gptq_meta *g)
{
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "quant_method", "gptq");
    cJSON_AddNumberToObject(q, "bits", g->bits);
    cJSON_AddNumberToObject(q, "group_size", (double)g->group_size);
    cJSON_AddBoolToObject(q, "desc_act", g->desc_act);
    cJSON_AddBoolToObject(q, "sym", g->sym);
    cJSON_AddNumberToObject(q, "damp_percent", g->damp);
    cJSON_AddBoolToObject(q, "true_sequential", g->true_sequential);
    cJSON_AddBoolToObject(q, "static_groups", g->static_groups);
    cJSON_AddStringToObject(q, "checkpoint_format", g->v1 ? "gptq" : "gptq_v2");
    cJSON_AddBoolToObject(q, "lm_head", g->lm_head);
    cJSON_AddNullToObject(q, "model_name_or_path");
    cJSON_AddStringToObject(q, "model_file_base_name", "model");
    return q;
}

static cJSON *awq_config_json(int64_t group_size, const wq_hf_entry *entries, int64_t n)
{
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "quant_method", "awq");
    cJSON_AddNumberToObject(q, "bits", 4);
    cJSON_AddNumberToObject(q, "group_size", (double)group_size);
    cJSON_AddBoolToObject(q, "zero_point", 1);
    cJSON_AddStringToObject(q, "version", "gemm");
    /* linears kept in full precision (lm_head included): AutoAWQ / vLLM match these as substrings
     * of module names and leave the modules unconverted */
    cJSON *skip = NULL;
    for (int64_t i = 0; i < n; i++) {
        const wq_hf_entry *e = &entries[i];
        if (e->quantized || !e->linear) continue;
        char mod[320];
        size_t k = strlen(e->name);
        if (k > 7 && strcmp(e->name + k - 7, ".weight") == 0) k -= 7;
        snprintf(mod, sizeof mod, "%.*s", (int)k, e->name);
        if (!skip) skip = cJSON_CreateArray();
        cJSON_AddItemToArray(skip, cJSON_CreateString(mod));
    }
    if (skip)
        cJSON_AddItemToObject(q, "modules_to_not_convert", skip);
    else
        cJSON_AddNullToObject(q, "modules_to_not_convert");
    return q;
}

static wq_status write_configs(const char *outdir, const char *source_json, cJSON *qcfg, int gptq)
{
    wq_status st = WQ_OK;
    char p[4200], *s = NULL;
    cJSON *cfg = cJSON_Parse(source_json ? source_json : "");
    WQ_CHECK_GOTO(cJSON_IsObject(cfg), st, WQ_ERR_FORMAT, done,
                  "export: the container's source config is not a JSON object");
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "torch_dtype");
    cJSON_AddStringToObject(cfg, "torch_dtype", "float16");
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
    cJSON_AddItemReferenceToObject(cfg, "quantization_config", qcfg);
    s = cJSON_Print(cfg);
    WQ_CHECK_GOTO(s, st, WQ_ERR_NOMEM, done, "export: out of memory");
    snprintf(p, sizeof p, "%s/config.json", outdir);
    WQ_TRY_GOTO(write_text_atomic(p, s), st, done);
    if (gptq) {
        cJSON_free(s);
        s = cJSON_Print(qcfg);
        WQ_CHECK_GOTO(s, st, WQ_ERR_NOMEM, done, "export: out of memory");
        snprintf(p, sizeof p, "%s/quantize_config.json", outdir);
        WQ_TRY_GOTO(write_text_atomic(p, s), st, done);
    }
done:
    cJSON_free(s);
    cJSON_Delete(cfg);
    return st;
}

/* ---- the export ------------------------------------------------------------------------------ */

/* Writes the tensors of entries [b, e) into one safetensors file. */
static wq_status write_shard(const char *path, const wq_hf_entry *entries, int64_t b, int64_t e,
                             const wq_hf_io *io, wq_hf_format f, int v1)
{
    wq_status st = WQ_OK;
    wq_st_writer *w = NULL;
    void *raw = NULL;
    float *f32 = NULL;
    uint32_t *qw = NULL, *qz = NULL;
    uint16_t *sc = NULL;
    int32_t *gi = NULL;
    wq_qmatrix m = {0};
    out_tensor t[MAX_OUT];
    WQ_TRY(wq_st_writer_create(path, &w));
    for (int64_t i = b; i < e; i++) {
        int nt = entry_tensors(&entries[i], f, t);
        for (int k = 0; k < nt; k++)
            WQ_TRY_GOTO(wq_st_writer_declare(w, t[k].name, t[k].dtype, t[k].ndim, t[k].shape), st,
                        done);
    }
    WQ_TRY_GOTO(wq_st_writer_begin_data(w), st, done);
    for (int64_t i = b; i < e; i++) {
        const wq_hf_entry *x = &entries[i];
        int nt = entry_tensors(x, f, t);
        if (!x->quantized) {
            size_t n = (size_t)numel_of(x), es = wq_dtype_size(x->dtype);
            raw = wq_malloc(n * es + 1);
            WQ_CHECK_GOTO(raw, st, WQ_ERR_NOMEM, done, "export: out of memory at '%s'", x->name);
            WQ_TRY_GOTO(io->read_raw(io->ctx, i, raw), st, done);
            if (is_float(x->dtype) && x->dtype != WQ_DTYPE_F16) {
                f32 = wq_malloc(n * sizeof(float) + 1);
                WQ_CHECK_GOTO(f32, st, WQ_ERR_NOMEM, done, "export: out of memory at '%s'",
                              x->name);
                wq_convert_to_f32(x->dtype, raw, f32, n);
                wq_convert_from_f32(WQ_DTYPE_F16, f32, raw, n); /* in place: 2 <= es bytes each */
                es = 2;
                wq_free(f32);
                f32 = NULL;
            }
            WQ_TRY_GOTO(wq_st_writer_write(w, raw, n * es), st, done);
            wq_free(raw);
            raw = NULL;
            continue;
        }
        WQ_TRY_GOTO(io->read_qmatrix(io->ctx, i, &m), st, done);
        qw = wq_malloc(out_bytes(&t[0]) + 4);
        qz = wq_malloc(out_bytes(&t[1]) + 4);
        sc = wq_malloc(out_bytes(&t[2]) + 4);
        gi = nt > 3 ? wq_malloc(out_bytes(&t[3]) + 4) : NULL;
        WQ_CHECK_GOTO(qw && qz && sc && (gi || nt == 3), st, WQ_ERR_NOMEM, done,
                      "export: out of memory at '%s'", x->name);
        if (f == WQ_HF_GPTQ)
            pack_gptq(&m, v1, qw, qz, sc, gi);
        else
            pack_awq(&m, qw, qz, sc);
        WQ_TRY_GOTO(wq_st_writer_write(w, qw, out_bytes(&t[0])), st, done);
        WQ_TRY_GOTO(wq_st_writer_write(w, qz, out_bytes(&t[1])), st, done);
        WQ_TRY_GOTO(wq_st_writer_write(w, sc, out_bytes(&t[2])), st, done);
        if (gi) WQ_TRY_GOTO(wq_st_writer_write(w, gi, out_bytes(&t[3])), st, done);
        wq_qmatrix_free(&m);
        wq_free(qw), wq_free(qz), wq_free(sc), wq_free(gi);
        qw = qz = NULL, sc = NULL, gi = NULL;
    }
    st = wq_st_writer_finish(w);
    w = NULL;
done:
    wq_st_writer_abort(w);
    wq_qmatrix_free(&m);
    wq_free(raw), wq_free(f32), wq_free(qw), wq_free(qz), wq_free(sc), wq_free(gi);
    return st;
}

wq_status wq_hf_export(const char *outdir, const wq_hf_entry *entries, int64_t n,
                       const wq_hf_io *io, const char *source_config_json,
                       const char *wquant_config_json, const wq_hf_export_opts *opts)
{
    if (!outdir || (!entries && n) || !io || !opts) return WQ_ERR_ARG;
    const wq_hf_format f = opts->format;
    wq_status st = WQ_OK;
    const wq_hf_entry *first = NULL;
    int64_t gcd_in = 0, n_zero0 = 0, zero_layers = 0, n_q = 0;
    const char *first_zero = NULL;
    gptq_meta g = {0};
    int *shard_of = NULL, n_shards = 0;
    const char **names = NULL, **files = NULL;
    char(*fnames)[64] = NULL;
    cJSON *qcfg = NULL;
    wq_qmatrix m = {0};

    /* pass 1: everything the format cannot express is refused before any file is touched */
    for (int64_t i = 0; i < n; i++)
        if (entries[i].quantized) {
            gcd_in = gcd64(gcd_in, entries[i].cols);
            if (!first) first = &entries[i];
        }
    if (!first) {
        WQ_LOG_ERROR("export %s: the container has no quantized layer", fmt_name(f));
        return WQ_ERR_UNSUPPORTED;
    }
    for (int64_t i = 0; i < n; i++)
        WQ_TRY(check_static(&entries[i], first, f, gcd_in));
    read_algo_params(wquant_config_json, &g);
    for (int64_t i = 0; i < n; i++) {
        const wq_hf_entry *e = &entries[i];
        if (!e->quantized) continue;
        int64_t z0 = 0;
        WQ_TRY_GOTO(io->read_qmatrix(io->ctx, i, &m), st, done);
        WQ_TRY_GOTO(check_data(e, &m, f, &z0, &g.desc_act), st, done);
        wq_qmatrix_free(&m);
        if (z0 && !first_zero) first_zero = e->name;
        n_zero0 += z0;
        zero_layers += z0 > 0;
        n_q++;
        if (is_lm_head(e->name)) g.lm_head = 1;
    }
    g.bits = first->spec.bits;
    g.group_size = first->spec.group_size;
    g.sym = first->spec.sym;
    g.v1 = n_zero0 == 0;
    if (f == WQ_HF_GPTQ && n_zero0) {
        if (opts->gptq_v1) {
            WQ_LOG_ERROR(
                "export gptq: --gptq-v1 would be lossy: %lld groups in %lld layers (first: "
                "'%s') have zero point 0, which v1 stores as zp - 1 and v1 loaders read back "
                "as %d. Drop --gptq-v1 (gptq_v2 keeps zero points exactly) or re-quantize "
                "with use_sym=true",
                (long long)n_zero0, (long long)zero_layers, first_zero, 1 << g.bits);
            st = WQ_ERR_UNSUPPORTED;
            goto done;
        }
        WQ_LOG_WARN(
            "export gptq: %lld groups in %lld layers (first: '%s') have zero point 0; GPTQ v1 "
            "stores zp - 1, which v1 loaders read back as %d (numerics 13.4), so this export "
            "writes checkpoint_format \"gptq_v2\" (zero points stored as is). Load it with a "
            "v2-aware loader (GPTQModel, transformers with gptqmodel); AutoGPTQ and v1-only "
            "kernels would misread those groups. Use --gptq-v1 to refuse instead",
            (long long)n_zero0, (long long)zero_layers, first_zero, 1 << g.bits);
    }

    /* shards: greedy in entry order; a layer's tensors stay together */
    double max_bytes = opts->max_shard_bytes > 0 ? opts->max_shard_bytes : DEFAULT_SHARD_BYTES;
    shard_of = wq_calloc((size_t)n + 1, sizeof(int));
    WQ_CHECK_GOTO(shard_of, st, WQ_ERR_NOMEM, done, "export: out of memory");
    uint64_t total = 0, cur = 0;
    int64_t n_tensors = 0;
    for (int64_t i = 0; i < n; i++) {
        out_tensor t[MAX_OUT];
        int nt = entry_tensors(&entries[i], f, t);
        uint64_t bytes = 0;
        for (int k = 0; k < nt; k++)
            bytes += out_bytes(&t[k]);
        if (n_shards == 0 || (cur > 0 && (double)(cur + bytes) > max_bytes)) n_shards++, cur = 0;
        shard_of[i] = n_shards - 1;
        cur += bytes;
        total += bytes;
        n_tensors += nt;
    }

    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        WQ_LOG_ERROR("cannot create the output directory '%s': %s", outdir, strerror(errno));
        st = WQ_ERR_IO;
        goto done;
    }
    fnames = wq_calloc((size_t)n_shards, sizeof *fnames);
    files = wq_calloc((size_t)n_shards, sizeof *files);
    WQ_CHECK_GOTO(fnames && files, st, WQ_ERR_NOMEM, done, "export: out of memory");
    for (int s = 0; s < n_shards; s++) {
        if (n_shards == 1)
            snprintf(fnames[s], sizeof fnames[s], "model.safetensors");
        else
            snprintf(fnames[s], sizeof fnames[s], "model-%05d-of-%05d.safetensors", s + 1,
                     n_shards);
        files[s] = fnames[s];
    }
    for (int64_t b = 0; b < n;) {
        int64_t e = b;
        while (e < n && shard_of[e] == shard_of[b])
            e++;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", outdir, fnames[shard_of[b]]);
        WQ_TRY_GOTO(write_shard(p, entries, b, e, io, f, g.v1), st, done);
        b = e;
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", outdir,
             n_shards == 1 ? "model.safetensors.index.json" : "model.safetensors");
    remove(p); /* a stale file of the other layout would confuse loaders */
    if (n_shards > 1) {
        int *tshard = wq_calloc((size_t)n_tensors, sizeof(int));
        names = wq_calloc((size_t)n_tensors, sizeof *names);
        char(*tn)[320] = wq_calloc((size_t)n_tensors, sizeof *tn);
        if (tshard && names && tn) {
            int64_t k = 0;
            for (int64_t i = 0; i < n; i++) {
                out_tensor t[MAX_OUT];
                int nt = entry_tensors(&entries[i], f, t);
                for (int j = 0; j < nt; j++, k++) {
                    memcpy(tn[k], t[j].name, sizeof tn[k]);
                    names[k] = tn[k];
                    tshard[k] = shard_of[i];
                }
            }
            st = wq_st_write_index(outdir, names, tshard, n_tensors, files, n_shards, total);
        } else {
            WQ_LOG_ERROR("export: out of memory");
            st = WQ_ERR_NOMEM;
        }
        wq_free(tshard);
        wq_free(tn);
        if (st != WQ_OK) goto done;
    }

    qcfg = f == WQ_HF_GPTQ ? gptq_config_json(&g) : awq_config_json(g.group_size, entries, n);
    WQ_CHECK_GOTO(qcfg, st, WQ_ERR_NOMEM, done, "export: out of memory");
    WQ_TRY_GOTO(write_configs(outdir, source_config_json, qcfg, f == WQ_HF_GPTQ), st, done);
    if (opts->tokenizer_dir)
        WQ_TRY_GOTO(wq_hf_copy_tokenizer(opts->tokenizer_dir, outdir), st, done);
    WQ_LOG_INFO(
        "export %s: wrote %s: %lld quantized layers, int%d group_size %lld %s%s, %d shard(s), "
        "%.1f MB",
        fmt_name(f), outdir, (long long)n_q, g.bits, (long long)g.group_size,
        g.sym ? "sym" : "asym",
        f == WQ_HF_GPTQ ? (g.v1 ? ", checkpoint_format gptq" : ", checkpoint_format gptq_v2") : "",
        n_shards, (double)total / 1e6);
done:
    wq_qmatrix_free(&m);
    cJSON_Delete(qcfg);
    wq_free(shard_of);
    wq_free(names);
    wq_free(files);
    wq_free(fnames);
    return st;
}
