/* export_gguf.c: GGUF v3 writer for llama.cpp (spec: ggml docs/gguf.md). Pass 1 names every tensor
 * the llama.cpp way, decides its ggml type (validating the quantized data against the block
 * mapping) and lays out the offsets; pass 2 writes header, metadata, tensor infos and the aligned
 * tensor data. Layer: model. */
#include "model/export_gguf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "model/hf_config.h"
#include "model/tok_sp.h"

/* GGUF metadata value types (spec) */
enum { GT_U32 = 4, GT_I32 = 5, GT_F32 = 6, GT_BOOL = 7, GT_STR = 8, GT_ARR = 9 };

/* llama.cpp's llama_ftype values for general.file_type */
enum { FT_ALL_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_BF16 = 32 };

#define F16_MIN_NORMAL 6.103515625e-05f /* 2^-14 */

uint64_t wq_ggml_row_bytes(wq_ggml_type t, int64_t ne0)
{
    switch (t) {
    case WQ_GGML_F32:
        return (uint64_t)ne0 * 4;
    case WQ_GGML_F16:
    case WQ_GGML_BF16:
        return (uint64_t)ne0 * 2;
    case WQ_GGML_Q4_0:
        return (uint64_t)(ne0 / WQ_GGML_QK) * 18; /* fp16 d + 16 nibble bytes */
    case WQ_GGML_Q4_1:
        return (uint64_t)(ne0 / WQ_GGML_QK) * 20; /* fp16 d, fp16 m + 16 bytes */
    case WQ_GGML_Q8_0:
        return (uint64_t)(ne0 / WQ_GGML_QK) * 34; /* fp16 d + 32 int8 */
    }
    return 0;
}

const char *wq_ggml_type_name(wq_ggml_type t)
{
    switch (t) {
    case WQ_GGML_F32:
        return "F32";
    case WQ_GGML_F16:
        return "F16";
    case WQ_GGML_BF16:
        return "BF16";
    case WQ_GGML_Q4_0:
        return "Q4_0";
    case WQ_GGML_Q4_1:
        return "Q4_1";
    case WQ_GGML_Q8_0:
        return "Q8_0";
    }
    return "?";
}

/* ---- names ----------------------------------------------------------------------------------- */

typedef enum { ROLE_OTHER = 0, ROLE_NORM, ROLE_Q, ROLE_K } tensor_role;

/* HF name (quantized linears without ".weight") -> llama.cpp name. Returns 1 and fills out/role,
 * 0 to skip the tensor (rotary buffers), -1 when it has no GGUF name. */
static int gguf_name(const char *hf, char *out, size_t n, tensor_role *role)
{
    static const struct {
        const char *hf, *gg;
        tensor_role role;
    } blk[] = {
        {"input_layernorm", "attn_norm", ROLE_NORM},
        {"post_attention_layernorm", "ffn_norm", ROLE_NORM},
        {"self_attn.q_proj", "attn_q", ROLE_Q},
        {"self_attn.k_proj", "attn_k", ROLE_K},
        {"self_attn.v_proj", "attn_v", ROLE_OTHER},
        {"self_attn.o_proj", "attn_output", ROLE_OTHER},
        {"mlp.gate_proj", "ffn_gate", ROLE_OTHER},
        {"mlp.up_proj", "ffn_up", ROLE_OTHER},
        {"mlp.down_proj", "ffn_down", ROLE_OTHER},
    };
    char base[300];
    size_t k = strlen(hf);
    if (k > 7 && strcmp(hf + k - 7, ".weight") == 0) k -= 7;
    if (k >= sizeof base) return -1;
    memcpy(base, hf, k);
    base[k] = 0;
    if (strstr(base, "rotary_emb.inv_freq")) return 0;
    *role = ROLE_OTHER;
    if (strcmp(base, "model.embed_tokens") == 0) {
        snprintf(out, n, "token_embd.weight");
        return 1;
    }
    if (strcmp(base, "model.norm") == 0) {
        *role = ROLE_NORM;
        snprintf(out, n, "output_norm.weight");
        return 1;
    }
    if (strcmp(base, "lm_head") == 0) {
        snprintf(out, n, "output.weight");
        return 1;
    }
    const char *pre = "model.layers.";
    if (strncmp(base, pre, strlen(pre)) != 0) return -1;
    char *end = NULL;
    long layer = strtol(base + strlen(pre), &end, 10);
    if (end == base + strlen(pre) || *end != '.' || layer < 0) return -1;
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++)
        if (strcmp(end + 1, blk[i].hf) == 0) {
            snprintf(out, n, "blk.%ld.%s.weight", layer, blk[i].gg);
            *role = blk[i].role;
            return 1;
        }
    return -1;
}

/* ---- a growable byte buffer for the header -------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
    int oom;
    uint64_t n_kv;
} bytes;

static void put(bytes *b, const void *src, size_t n)
{
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        unsigned char *q = wq_malloc(cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        if (b->n) memcpy(q, b->p, b->n);
        wq_free(b->p);
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
/* little-endian host, as core_half assumes */
static void put_u32(bytes *b, uint32_t v)
{
    put(b, &v, 4);
}
static void put_u64(bytes *b, uint64_t v)
{
    put(b, &v, 8);
}
static void put_str(bytes *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}
static void kv_key(bytes *b, const char *key, uint32_t type)
{
    put_str(b, key, strlen(key));
    put_u32(b, type);
    b->n_kv++;
}
static void kv_u32(bytes *b, const char *key, uint32_t v)
{
    kv_key(b, key, GT_U32);
    put_u32(b, v);
}
static void kv_f32(bytes *b, const char *key, float v)
{
    kv_key(b, key, GT_F32);
    put(b, &v, 4);
}
static void kv_bool(bytes *b, const char *key, int v)
{
    unsigned char c = v ? 1 : 0;
    kv_key(b, key, GT_BOOL);
    put(b, &c, 1);
}
static void kv_str(bytes *b, const char *key, const char *s)
{
    kv_key(b, key, GT_STR);
    put_str(b, s, strlen(s));
}
static void kv_arr(bytes *b, const char *key, uint32_t elem_type, uint64_t count)
{
    kv_key(b, key, GT_ARR);
    put_u32(b, elem_type);
    put_u64(b, count);
}

/* ---- plan ------------------------------------------------------------------------------------ */

typedef struct {
    int64_t entry;
    char name[64];
    tensor_role role;
    wq_ggml_type type;
    int fallback;     /* quantized entry written dequantized */
    int ndim;         /* 1 or 2 */
    int64_t ne0, ne1; /* ne0 = fastest (in_features), ne1 = rows */
    uint64_t offset, size;
} gg_tensor;

static int is_float(wq_dtype t)
{
    return t == WQ_DTYPE_F32 || t == WQ_DTYPE_F16 || t == WQ_DTYPE_BF16 || t == WQ_DTYPE_F64;
}

/* The ggml block type a quantized entry maps onto from its declaration, or -1 with the reason. */
static int block_type(const wq_hf_entry *e, char *why, size_t n)
{
    if (e->spec.dtype != WQ_QDTYPE_INT) {
        snprintf(why, n, "dtype %s has no ggml block type with the same values",
                 wq_qdtype_name(e->spec.dtype));
        return -1;
    }
    int t = e->spec.bits == 4                  ? (e->spec.sym ? WQ_GGML_Q4_0 : WQ_GGML_Q4_1)
            : e->spec.bits == 8 && e->spec.sym ? WQ_GGML_Q8_0
                                               : -1;
    if (t < 0) {
        snprintf(why, n, "int%d %s (ggml blocks: int4 sym Q4_0, int4 asym Q4_1, int8 sym Q8_0)",
                 e->spec.bits, e->spec.sym ? "sym" : "asym");
        return -1;
    }
    if (e->cols % WQ_GGML_QK != 0) {
        snprintf(why, n, "in_features %lld is not a multiple of the ggml block size 32",
                 (long long)e->cols);
        return -1;
    }
    if (e->group_size_eff % WQ_GGML_QK != 0) {
        snprintf(why, n,
                 "group size %lld is not a multiple of 32, so a ggml block of 32 would "
                 "need more than one scale",
                 (long long)e->group_size_eff);
        return -1;
    }
    if (e->n_extra > 0) {
        snprintf(why, n, "its extra '%s' has no place in a ggml block", e->extra[0]);
        return -1;
    }
    return t;
}

/* Checks the data of a quantized layer against its block type: contiguous groups, the implicit
 * zero of sym blocks, and d (and m) that fp16 represents up to rounding. 0 or -1 with the reason.
 */
static int check_blocks(const wq_qmatrix *m, wq_ggml_type t, char *why, size_t n)
{
    if (m->g_idx)
        for (int64_t c = 0; c < m->cols; c++)
            if (m->g_idx[c] != (int32_t)(c / m->group_size)) {
                snprintf(why, n,
                         "act-order g_idx (column %lld is in group %d): ggml blocks hold "
                         "contiguous columns",
                         (long long)c, (int)m->g_idx[c]);
                return -1;
            }
    const float mid = t == WQ_GGML_Q8_0 ? 128.0f : 8.0f;
    for (int64_t i = 0; i < m->rows * m->ngroups; i++) {
        float s = m->scales[i], z = m->zeros[i];
        if (t != WQ_GGML_Q4_1 && z != mid) {
            snprintf(why, n, "zero point %g (row %lld) is not the implicit %g of %s", (double)z,
                     (long long)(i / m->ngroups), (double)mid, wq_ggml_type_name(t));
            return -1;
        }
        float d = wq_f16_to_f32(wq_f32_to_f16(s));
        if (!isfinite(s) || !isfinite(d) || (s != 0 && fabsf(d) < F16_MIN_NORMAL)) {
            snprintf(why, n,
                     "scale %g (row %lld) is outside fp16's normal range: the fp16 d of "
                     "ggml blocks would change the weights by more than fp16 rounding",
                     (double)s, (long long)(i / m->ngroups));
            return -1;
        }
        if (t == WQ_GGML_Q4_1 && !(isfinite(z) && isfinite(wq_f16_to_f32(wq_f32_to_f16(-z * d))))) {
            snprintf(why, n, "min -zero*d = %g (row %lld) is not finite in fp16", (double)(-z * d),
                     (long long)(i / m->ngroups));
            return -1;
        }
    }
    return 0;
}

/* ---- block encoding (ggml-common.h layouts) -------------------------------------------------- */

/* Row o of m as ggml blocks into dst (row_bytes). Block b covers columns [32b, 32b + 32), all in
 * group 32b / group_size. Q4_0/Q4_1: byte j holds column j (low nibble) and j + 16 (high nibble);
 * the container's unsigned codes are the nibbles (Q4_0: value (q - 8) * d; Q4_1: q * d + m).
 * Q8_0: int8 q - 128, value q * d. */
static void encode_row(const wq_qmatrix *m, int64_t o, wq_ggml_type t, unsigned char *dst)
{
    const uint8_t *c = m->codes + o * m->cols;
    for (int64_t b = 0; b < m->cols / WQ_GGML_QK; b++, c += WQ_GGML_QK) {
        int64_t g = o * m->ngroups + b * WQ_GGML_QK / m->group_size;
        uint16_t d = wq_f32_to_f16(m->scales[g]);
        memcpy(dst, &d, 2);
        dst += 2;
        if (t == WQ_GGML_Q8_0) {
            for (int j = 0; j < WQ_GGML_QK; j++)
                dst[j] = (unsigned char)(int8_t)((int)c[j] - 128);
            dst += WQ_GGML_QK;
            continue;
        }
        if (t == WQ_GGML_Q4_1) {
            /* m = -zero * d with the rounded d: a weight at the zero point (q = zero) stays
             * q * d + m = 0 up to m's rounding, and the error of the others is
             * (q - zero) * (d - scale) + that rounding, as for Q4_0 */
            uint16_t mn = wq_f32_to_f16(-m->zeros[g] * wq_f16_to_f32(d));
            memcpy(dst, &mn, 2);
            dst += 2;
        }
        for (int j = 0; j < WQ_GGML_QK / 2; j++)
            dst[j] = (unsigned char)((c[j] & 15) | (c[j + WQ_GGML_QK / 2] & 15) << 4);
        dst += WQ_GGML_QK / 2;
    }
}

/* HF -> GGUF rotary order: llama.cpp rotates adjacent pairs (2i, 2i+1) of each head, HF rotates
 * (i, i + hd/2). GGUF row h*hd + 2i + j is HF row h*hd + j*hd/2 + i (the inverse of the
 * permutation HF's Llama converter applies). Rows are whole, so quantized blocks move intact. */
static void permute_rows(unsigned char *buf, unsigned char *tmp, int64_t rows, size_t row_bytes,
                         int64_t n_head)
{
    const int64_t hd = rows / n_head;
    for (int64_t r = 0; r < rows; r++) {
        int64_t h = r / hd, w = r % hd, src = h * hd + (w % 2) * (hd / 2) + w / 2;
        memcpy(tmp + (size_t)r * row_bytes, buf + (size_t)src * row_bytes, row_bytes);
    }
    memcpy(buf, tmp, (size_t)rows * row_bytes);
}

/* ---- metadata -------------------------------------------------------------------------------- */

static void write_metadata(bytes *b, const wq_model_cfg *mc, const wq_tokenizer *tok,
                           const char *name, uint32_t file_type)
{
    const int64_t nv = wq_tok_vocab_size(tok), V = mc->vocab_size;
    kv_str(b, "general.architecture", "llama");
    kv_str(b, "general.name", name);
    kv_u32(b, "general.file_type", file_type);
    kv_u32(b, "general.quantization_version", 2);
    kv_u32(b, "general.alignment", WQ_GGUF_ALIGNMENT);
    kv_u32(b, "llama.vocab_size", (uint32_t)V);
    kv_u32(b, "llama.context_length", (uint32_t)mc->max_position_embeddings);
    kv_u32(b, "llama.embedding_length", (uint32_t)mc->hidden_size);
    kv_u32(b, "llama.block_count", (uint32_t)mc->n_layers);
    kv_u32(b, "llama.feed_forward_length", (uint32_t)mc->intermediate_size);
    kv_u32(b, "llama.rope.dimension_count", (uint32_t)mc->head_dim);
    kv_u32(b, "llama.attention.head_count", (uint32_t)mc->n_heads);
    kv_u32(b, "llama.attention.head_count_kv", (uint32_t)mc->n_kv_heads);
    if (mc->head_dim * mc->n_heads != mc->hidden_size) {
        kv_u32(b, "llama.attention.key_length", (uint32_t)mc->head_dim);
        kv_u32(b, "llama.attention.value_length", (uint32_t)mc->head_dim);
    }
    kv_f32(b, "llama.attention.layer_norm_rms_epsilon", (float)mc->rms_norm_eps);
    kv_f32(b, "llama.rope.freq_base", (float)mc->rope_theta);

    kv_str(b, "tokenizer.ggml.model", "llama");
    kv_arr(b, "tokenizer.ggml.tokens", GT_STR, (uint64_t)V);
    for (int64_t i = 0; i < V; i++) {
        char pad[32];
        const char *p = i < nv ? wq_tok_piece(tok, (int32_t)i) : pad;
        if (i >= nv) snprintf(pad, sizeof pad, "[PAD%lld]", (long long)i);
        put_str(b, p, strlen(p));
    }
    kv_arr(b, "tokenizer.ggml.scores", GT_F32, (uint64_t)V);
    for (int64_t i = 0; i < V; i++) {
        float s = i < nv ? wq_tok_score(tok, (int32_t)i) : -1000.0f;
        put(b, &s, 4);
    }
    /* llama.cpp's token types are SentencePiece's piece types (1 normal .. 6 byte) */
    kv_arr(b, "tokenizer.ggml.token_type", GT_I32, (uint64_t)V);
    for (int64_t i = 0; i < V; i++) {
        int32_t t = i < nv ? (int32_t)wq_tok_type(tok, (int32_t)i) : WQ_TOK_UNUSED;
        put(b, &t, 4);
    }
    if (wq_tok_bos(tok) >= 0) kv_u32(b, "tokenizer.ggml.bos_token_id", (uint32_t)wq_tok_bos(tok));
    if (wq_tok_eos(tok) >= 0) kv_u32(b, "tokenizer.ggml.eos_token_id", (uint32_t)wq_tok_eos(tok));
    if (wq_tok_unk(tok) >= 0)
        kv_u32(b, "tokenizer.ggml.unknown_token_id", (uint32_t)wq_tok_unk(tok));
    if (wq_tok_pad(tok) >= 0)
        kv_u32(b, "tokenizer.ggml.padding_token_id", (uint32_t)wq_tok_pad(tok));
    kv_bool(b, "tokenizer.ggml.add_bos_token", 1);
    kv_bool(b, "tokenizer.ggml.add_eos_token", 0);
}

static uint32_t file_type_of(const gg_tensor *ts, int64_t nt)
{
    /* the type holding most elements among the linears, as llama.cpp guesses it */
    static const wq_ggml_type types[] = {WQ_GGML_Q4_0, WQ_GGML_Q4_1, WQ_GGML_Q8_0,
                                         WQ_GGML_F16,  WQ_GGML_BF16, WQ_GGML_F32};
    static const uint32_t ft[] = {FT_Q4_0, FT_Q4_1, FT_Q8_0, FT_F16, FT_BF16, FT_ALL_F32};
    int64_t best = -1;
    uint32_t res = FT_ALL_F32;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        int64_t cnt = 0;
        for (int64_t i = 0; i < nt; i++)
            if (ts[i].type == types[k] && ts[i].ndim == 2 &&
                strcmp(ts[i].name, "token_embd.weight") != 0)
                cnt += ts[i].ne0 * ts[i].ne1;
        if (cnt > best) best = cnt, res = ft[k];
    }
    return res;
}

/* ---- pass 1 ---------------------------------------------------------------------------------- */

static wq_status plan_entry(const wq_hf_entry *e, int64_t i, const wq_gguf_io *io,
                            const wq_gguf_opts *o, gg_tensor *t, int *skip)
{
    memset(t, 0, sizeof *t);
    t->entry = i;
    int r = gguf_name(e->name, t->name, sizeof t->name, &t->role);
    *skip = r == 0;
    if (r == 0) return WQ_OK;
    if (r < 0) {
        WQ_LOG_ERROR("export gguf: tensor '%s' has no llama.cpp GGUF name (supported: embeddings, "
                     "norms, q/k/v/o and gate/up/down projections, lm_head; no biases)",
                     e->name);
        return WQ_ERR_UNSUPPORTED;
    }
    if (!e->quantized) {
        if (!is_float(e->dtype) || e->ndim < 1 || e->ndim > 2) {
            WQ_LOG_ERROR("export gguf: tensor '%s' is %s with %d dimensions; GGUF weights here "
                         "are float vectors or matrices",
                         e->name, wq_dtype_name(e->dtype), e->ndim);
            return WQ_ERR_UNSUPPORTED;
        }
        t->ndim = e->ndim;
        t->ne0 = e->shape[e->ndim - 1];
        t->ne1 = e->ndim == 2 ? e->shape[0] : 1;
        /* original precision; llama.cpp wants norms in F32 */
        t->type = t->role == ROLE_NORM || e->dtype == WQ_DTYPE_F32 || e->dtype == WQ_DTYPE_F64
                      ? WQ_GGML_F32
                  : e->dtype == WQ_DTYPE_F16 ? WQ_GGML_F16
                                             : WQ_GGML_BF16;
        return WQ_OK;
    }
    t->ndim = 2;
    t->ne0 = e->cols;
    t->ne1 = e->rows;
    char why[300];
    int bt = block_type(e, why, sizeof why);
    if (bt >= 0) {
        wq_qmatrix m = {0};
        WQ_TRY(io->read_qmatrix(io->ctx, i, &m));
        int bad = m.rows != e->rows || m.cols != e->cols || m.group_size != e->group_size_eff ||
                  !m.zeros || !m.scales || !m.codes;
        if (bad) {
            wq_qmatrix_free(&m);
            WQ_LOG_ERROR("export gguf: layer '%s': the stored matrix does not match its "
                         "declaration",
                         e->name);
            return WQ_ERR_FORMAT;
        }
        if (check_blocks(&m, (wq_ggml_type)bt, why, sizeof why) != 0) bt = -1;
        wq_qmatrix_free(&m);
    }
    if (bt >= 0) {
        t->type = (wq_ggml_type)bt;
        return WQ_OK;
    }
    if (o->strict) {
        WQ_LOG_ERROR("export gguf: layer '%s' does not map exactly onto a ggml block type: %s "
                     "(without --strict it is written dequantized)",
                     e->name, why);
        return WQ_ERR_UNSUPPORTED;
    }
    t->fallback = 1;
    t->type = o->fallback_f32 ? WQ_GGML_F32 : WQ_GGML_F16;
    WQ_LOG_WARN("export gguf: layer '%s' written dequantized as %s: %s", e->name,
                wq_ggml_type_name(t->type), why);
    return WQ_OK;
}

/* ---- pass 2 ---------------------------------------------------------------------------------- */

/* The tensor's bytes in GGUF order (rows permuted for q/k) into buf (t->size bytes). */
static wq_status tensor_bytes(const wq_hf_entry *e, const gg_tensor *t, const wq_gguf_io *io,
                              const wq_model_cfg *mc, unsigned char *buf, unsigned char *tmp)
{
    const int64_t numel = t->ne0 * t->ne1;
    if (e->quantized && !t->fallback) {
        wq_qmatrix m = {0};
        WQ_TRY(io->read_qmatrix(io->ctx, t->entry, &m));
        const size_t rb = (size_t)wq_ggml_row_bytes(t->type, t->ne0);
        for (int64_t o = 0; o < m.rows; o++)
            encode_row(&m, o, t->type, buf + (size_t)o * rb);
        wq_qmatrix_free(&m);
    } else {
        float *f = (float *)tmp; /* tmp holds numel floats */
        if (e->quantized) {
            WQ_TRY(io->read_f32(io->ctx, t->entry, f));
        } else {
            void *raw = buf; /* buf holds at least numel * 2 bytes; F64 / F32 go through tmp */
            if (e->dtype == WQ_DTYPE_F32) {
                WQ_TRY(io->read_raw(io->ctx, t->entry, f));
            } else if (e->dtype == WQ_DTYPE_F64) {
                double *dd = wq_malloc((size_t)numel * sizeof(double));
                if (!dd) return WQ_ERR_NOMEM;
                wq_status st = io->read_raw(io->ctx, t->entry, dd);
                if (st == WQ_OK) wq_convert_to_f32(WQ_DTYPE_F64, dd, f, (size_t)numel);
                wq_free(dd);
                WQ_TRY(st);
            } else {
                WQ_TRY(io->read_raw(io->ctx, t->entry, raw));
                if (t->type == WQ_GGML_F32) /* a F16/BF16 norm */
                    wq_convert_to_f32(e->dtype, raw, f, (size_t)numel);
                else
                    goto permute; /* F16 / BF16 kept bit for bit */
            }
        }
        if (t->type == WQ_GGML_F32)
            memcpy(buf, f, (size_t)numel * 4);
        else
            wq_convert_from_f32(t->type == WQ_GGML_F16 ? WQ_DTYPE_F16 : WQ_DTYPE_BF16, f, buf,
                                (size_t)numel);
    }
permute:
    if (t->role == ROLE_Q || t->role == ROLE_K)
        permute_rows(buf, tmp, t->ne1, (size_t)wq_ggml_row_bytes(t->type, t->ne0),
                     t->role == ROLE_Q ? mc->n_heads : mc->n_kv_heads);
    return WQ_OK;
}

static wq_status write_all(FILE *f, const void *p, size_t n, const char *path)
{
    if (n && fwrite(p, 1, n, f) != n) {
        WQ_LOG_ERROR("export gguf: cannot write '%s': %s", path, strerror(errno));
        return WQ_ERR_IO;
    }
    return WQ_OK;
}

static uint64_t align_up(uint64_t x)
{
    return (x + WQ_GGUF_ALIGNMENT - 1) / WQ_GGUF_ALIGNMENT * WQ_GGUF_ALIGNMENT;
}

static wq_status check_model(const wq_model_cfg *mc)
{
    if (strcmp(mc->model_type, "llama") != 0 && strcmp(mc->model_type, "mistral") != 0) {
        WQ_LOG_ERROR("export gguf: model_type '%s' is not supported (GGUF architecture 'llama' "
                     "covers model_type llama and mistral)",
                     mc->model_type);
        return WQ_ERR_UNSUPPORTED;
    }
    if (mc->attention_bias || mc->mlp_bias) {
        WQ_LOG_ERROR("export gguf: the model has %s biases; the exporter writes bias-free Llama "
                     "models only",
                     mc->attention_bias ? "attention" : "MLP");
        return WQ_ERR_UNSUPPORTED;
    }
    if (mc->head_dim % 2 != 0) {
        WQ_LOG_ERROR("export gguf: head_dim %lld is odd; RoPE needs pairs",
                     (long long)mc->head_dim);
        return WQ_ERR_UNSUPPORTED;
    }
    return WQ_OK;
}

wq_status wq_gguf_export(const char *path, const wq_hf_entry *entries, int64_t n,
                         const wq_gguf_io *io, const char *source_config_json,
                         const wq_gguf_opts *opts, wq_gguf_report *report)
{
    wq_status st = WQ_OK;
    wq_model_cfg mc;
    wq_tokenizer *tok = NULL;
    gg_tensor *ts = NULL;
    bytes hdr = {0};
    unsigned char *buf = NULL, *tmp = NULL;
    FILE *f = NULL;
    char tmp_path[4200];
    int64_t nt = 0;
    if (!path || !entries || !io || !opts || !opts->tokenizer || n < 0) {
        WQ_LOG_ERROR("export gguf: missing argument (a tokenizer.model is required)");
        return WQ_ERR_ARG;
    }
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path);
    WQ_TRY(
        wq_hf_config_parse(source_config_json ? source_config_json : "", "container config", &mc));
    WQ_TRY(check_model(&mc));
    WQ_TRY(wq_tok_load(opts->tokenizer, &tok));
    WQ_CHECK_GOTO(wq_tok_vocab_size(tok) <= mc.vocab_size, st, WQ_ERR_FORMAT, done,
                  "export gguf: tokenizer '%s' has %lld pieces but the model only %lld "
                  "embeddings",
                  opts->tokenizer, (long long)wq_tok_vocab_size(tok), (long long)mc.vocab_size);

    /* pass 1: names, types, offsets */
    ts = wq_calloc((size_t)n + 1, sizeof *ts);
    WQ_CHECK_GOTO(ts, st, WQ_ERR_NOMEM, done, "export gguf: out of memory");
    uint64_t off = 0, max_bytes = 0;
    int has_embd = 0;
    for (int64_t i = 0; i < n; i++) {
        int skip = 0;
        WQ_TRY_GOTO(plan_entry(&entries[i], i, io, opts, &ts[nt], &skip), st, done);
        if (skip) continue;
        gg_tensor *t = &ts[nt];
        for (int64_t k = 0; k < nt; k++)
            WQ_CHECK_GOTO(strcmp(ts[k].name, t->name) != 0, st, WQ_ERR_FORMAT, done,
                          "export gguf: '%s' and '%s' both map to GGUF tensor '%s'",
                          entries[ts[k].entry].name, entries[i].name, t->name);
        if ((t->role == ROLE_Q || t->role == ROLE_K) &&
            (t->ndim != 2 ||
             t->ne1 != (t->role == ROLE_Q ? mc.n_heads : mc.n_kv_heads) * mc.head_dim)) {
            WQ_LOG_ERROR(
                "export gguf: '%s' has %lld rows; expected heads x head_dim = %lld",
                entries[i].name, (long long)t->ne1,
                (long long)((t->role == ROLE_Q ? mc.n_heads : mc.n_kv_heads) * mc.head_dim));
            st = WQ_ERR_FORMAT;
            goto done;
        }
        has_embd |= strcmp(t->name, "token_embd.weight") == 0;
        t->size = wq_ggml_row_bytes(t->type, t->ne0) * (uint64_t)t->ne1;
        t->offset = off;
        off = align_up(off + t->size);
        uint64_t need = (uint64_t)(t->ne0 * t->ne1) * 4; /* f32 staging */
        if (t->size > max_bytes) max_bytes = t->size;
        if (need > max_bytes) max_bytes = need;
        if (report) {
            report->n_q4_0 += t->type == WQ_GGML_Q4_0;
            report->n_q4_1 += t->type == WQ_GGML_Q4_1;
            report->n_q8_0 += t->type == WQ_GGML_Q8_0;
            report->n_fallback += t->fallback;
        }
        nt++;
    }
    WQ_CHECK_GOTO(has_embd, st, WQ_ERR_FORMAT, done,
                  "export gguf: the model has no model.embed_tokens.weight");
    if (report) report->n_tensors = nt;

    /* header, metadata, tensor infos */
    static const char magic[4] = {'G', 'G', 'U', 'F'};
    bytes kv = {0};
    write_metadata(&kv, &mc, tok, opts->name ? opts->name : "wquant", file_type_of(ts, nt));
    put(&hdr, magic, 4);
    put_u32(&hdr, 3);
    put_u64(&hdr, (uint64_t)nt);
    put_u64(&hdr, kv.n_kv);
    put(&hdr, kv.p, kv.n);
    int kv_oom = kv.oom || (kv.n && !kv.p);
    wq_free(kv.p);
    for (int64_t k = 0; k < nt; k++) {
        put_str(&hdr, ts[k].name, strlen(ts[k].name));
        put_u32(&hdr, (uint32_t)ts[k].ndim);
        put_u64(&hdr, (uint64_t)ts[k].ne0);
        if (ts[k].ndim == 2) put_u64(&hdr, (uint64_t)ts[k].ne1);
        put_u32(&hdr, (uint32_t)ts[k].type);
        put_u64(&hdr, ts[k].offset);
    }
    WQ_CHECK_GOTO(!hdr.oom && !kv_oom, st, WQ_ERR_NOMEM, done, "export gguf: out of memory");
    size_t data_start = (size_t)align_up(hdr.n);
    static const unsigned char zeros[WQ_GGUF_ALIGNMENT] = {0};

    /* pass 2: data */
    buf = wq_malloc((size_t)max_bytes + 16);
    tmp = wq_malloc((size_t)max_bytes + 16);
    WQ_CHECK_GOTO(buf && tmp, st, WQ_ERR_NOMEM, done, "export gguf: out of memory");
    f = fopen(tmp_path, "wb");
    WQ_CHECK_GOTO(f, st, WQ_ERR_IO, done, "export gguf: cannot create '%s': %s", tmp_path,
                  strerror(errno));
    WQ_TRY_GOTO(write_all(f, hdr.p, hdr.n, tmp_path), st, done);
    WQ_TRY_GOTO(write_all(f, zeros, data_start - hdr.n, tmp_path), st, done);
    uint64_t pos = 0;
    for (int64_t k = 0; k < nt; k++) {
        WQ_TRY_GOTO(tensor_bytes(&entries[ts[k].entry], &ts[k], io, &mc, buf, tmp), st, done);
        WQ_TRY_GOTO(write_all(f, zeros, (size_t)(ts[k].offset - pos), tmp_path), st, done);
        WQ_TRY_GOTO(write_all(f, buf, (size_t)ts[k].size, tmp_path), st, done);
        pos = ts[k].offset + ts[k].size;
    }
    WQ_TRY_GOTO(write_all(f, zeros, (size_t)(align_up(pos) - pos), tmp_path), st, done);
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    f = NULL;
    WQ_CHECK_GOTO(ok && rename(tmp_path, path) == 0, st, WQ_ERR_IO, done,
                  "export gguf: cannot write '%s': %s", path, strerror(errno));
    WQ_LOG_INFO("export gguf: wrote %s: %lld tensors, %.2f MB", path, (long long)nt,
                (double)(data_start + pos) / 1e6);
done:
    if (f) fclose(f);
    if (st != WQ_OK) remove(tmp_path);
    wq_free(buf);
    wq_free(tmp);
    wq_free(hdr.p);
    wq_free(ts);
    wq_tok_free(tok);
    return st;
}
