/* tok_sp.c: SentencePiece BPE tokenizer. A minimal, bounds-checked protobuf wire reader loads the
 * ModelProto; encoding merges symbols of the normalized text through a max-heap of candidate pairs
 * over a doubly linked list, so a long text costs O(n log n). Layer: model. */
#include "model/tok_sp.h"

#include "model/tok_json.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core_alloc.h"
#include "core/core_heap.h"
#include "core/core_log.h"

#define WS_SYM "\xE2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's escaped space */
#define WS_SYM_LEN 3
#define UNK_SURFACE " \xE2\x81\x87 " /* " ⁇ ", SentencePiece's default unk surface */
#define UNK_SURFACE_LEN 5
#define MAX_TEXT_BYTES ((size_t)512 << 20) /* keeps every symbol index inside int32 */
#define MAX_USER_LENS 64

/* sentencepiece_model.proto field numbers (only the ones wquant reads). */
enum {
    PB_MODEL_PIECES = 1,
    PB_MODEL_TRAINER = 2,
    PB_MODEL_NORMALIZER = 3,
    PB_PIECE_PIECE = 1,
    PB_PIECE_SCORE = 2,
    PB_PIECE_TYPE = 3,
    PB_TRAINER_MODEL_TYPE = 3,
    PB_TRAINER_WS_SUFFIX = 24,
    PB_TRAINER_BYTE_FALLBACK = 35,
    PB_TRAINER_UNK_ID = 40,
    PB_TRAINER_BOS_ID = 41,
    PB_TRAINER_EOS_ID = 42,
    PB_TRAINER_PAD_ID = 43,
    PB_NORM_CHARSMAP = 2,
    PB_NORM_DUMMY_PREFIX = 3,
    PB_NORM_REMOVE_EXTRA_WS = 4,
    PB_NORM_ESCAPE_WS = 5,
};
enum { PB_WIRE_VARINT = 0, PB_WIRE_I64 = 1, PB_WIRE_LEN = 2, PB_WIRE_I32 = 5 };
enum { SP_MODEL_UNIGRAM = 1, SP_MODEL_BPE = 2 };

struct wq_tokenizer {
    wq_tok_json *json;    /* non-NULL: a tokenizer.json model; every function forwards to it */
    char *origin;         /* file name for messages */
    int32_t n;            /* pieces */
    char *pool;           /* piece bytes, each NUL-terminated */
    uint32_t *off;        /* [n] offset of piece i in pool */
    uint32_t *len;        /* [n] byte length of piece i */
    float *score;         /* [n] */
    uint8_t *type;        /* [n] wq_tok_piece_type */
    int32_t *htab;        /* open addressing over all pieces, -1 = empty slot */
    uint64_t hmask;       /* table size - 1 (power of two) */
    int32_t byte_id[256]; /* id of <0xXX>, -1 if absent */
    int32_t unk_id, bos_id, eos_id, pad_id;
    int model_type;
    bool byte_fallback, ws_suffix;
    bool add_dummy_prefix, remove_extra_ws, escape_ws;
    bool has_unused; /* unused pieces need the merge tree for resegmentation */
    int n_user_lens; /* distinct byte lengths of user-defined pieces, longest first */
    uint32_t user_lens[MAX_USER_LENS];
};

// ---- protobuf wire format
// --------------------------------------------------------------------------

typedef struct {
    const uint8_t *p, *end;
    const uint8_t *base; /* start of the whole file, for byte offsets in messages */
} pb_reader;

typedef struct {
    uint32_t field;
    int wire;
    uint64_t u;          /* varint / fixed value */
    const uint8_t *data; /* length-delimited payload */
    size_t size;
} pb_field;

static bool pb_varint(pb_reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return false;
        uint8_t c = *r->p++;
        if (i == 9 && c > 1) return false; /* more than 64 bits */
        x |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

static uint64_t pb_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Reads one key and its value. Returns NULL or the reason the bytes are not valid protobuf. */
static const char *pb_next(pb_reader *r, pb_field *f)
{
    uint64_t key, n;
    if (!pb_varint(r, &key)) return "truncated or overlong field key";
    if ((key >> 3) == 0 || (key >> 3) > 0x1fffffffu) return "invalid field number";
    f->field = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    f->u = 0;
    f->data = NULL;
    f->size = 0;
    switch (f->wire) {
    case PB_WIRE_VARINT:
        if (!pb_varint(r, &f->u)) return "truncated or overlong varint";
        break;
    case PB_WIRE_I64:
        if (r->end - r->p < 8) return "truncated fixed64";
        f->u = pb_le(r->p, 8);
        r->p += 8;
        break;
    case PB_WIRE_LEN:
        if (!pb_varint(r, &n)) return "truncated length";
        if (n > (uint64_t)(r->end - r->p)) return "length-delimited field runs past its end";
        f->data = r->p;
        f->size = (size_t)n;
        r->p += n;
        break;
    case PB_WIRE_I32:
        if (r->end - r->p < 4) return "truncated fixed32";
        f->u = pb_le(r->p, 4);
        r->p += 4;
        break;
    default:
        return "unsupported wire type (group or invalid)";
    }
    return NULL;
}

static wq_status pb_fail(const char *origin, const pb_reader *r, const char *what)
{
    WQ_LOG_ERROR("%s: corrupt SentencePiece model: %s (near byte %zu)", origin, what,
                 (size_t)(r->p - r->base));
    return WQ_ERR_FORMAT;
}

static wq_status pb_want(const char *origin, const pb_reader *r, const pb_field *f, int wire,
                         const char *msg)
{
    if (f->wire == wire) return WQ_OK;
    WQ_LOG_ERROR("%s: corrupt SentencePiece model: %s field %u has wire type %d, expected %d "
                 "(near byte %zu)",
                 origin, msg, f->field, f->wire, wire, (size_t)(r->p - r->base));
    return WQ_ERR_FORMAT;
}

static pb_reader pb_sub(const pb_reader *parent, const pb_field *f)
{
    pb_reader s = {f->data, f->data + f->size, parent->base};
    return s;
}

// ---- piece table
// -----------------------------------------------------------------------------------

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int32_t lookup(const wq_tokenizer *t, const char *s, size_t n)
{
    for (uint64_t h = hash_bytes(s, n) & t->hmask;; h = (h + 1) & t->hmask) {
        int32_t id = t->htab[h];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->pool + t->off[id], s, n) == 0) return id;
    }
}

/* Pieces that BPE may produce by merging (SentencePiece keeps control, unknown and byte pieces out
 * of the merge vocabulary). */
static int32_t lookup_mergeable(const wq_tokenizer *t, const char *s, size_t n)
{
    int32_t id = lookup(t, s, n);
    if (id < 0) return -1;
    uint8_t ty = t->type[id];
    return (ty == WQ_TOK_NORMAL || ty == WQ_TOK_USER_DEFINED || ty == WQ_TOK_UNUSED) ? id : -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "<0xHH>" -> HH, else -1. */
static int byte_piece_value(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

static wq_status parse_trainer(wq_tokenizer *t, const pb_reader *parent, const pb_field *msg)
{
    pb_reader r = pb_sub(parent, msg);
    pb_field f;
    while (r.p < r.end) {
        const char *why = pb_next(&r, &f);
        if (why) return pb_fail(t->origin, &r, why);
        int32_t *id = NULL;
        switch (f.field) {
        case PB_TRAINER_MODEL_TYPE:
            WQ_TRY(pb_want(t->origin, &r, &f, PB_WIRE_VARINT, "trainer_spec"));
            t->model_type = (int)(int32_t)(uint32_t)f.u;
            break;
        case PB_TRAINER_WS_SUFFIX:
            WQ_TRY(pb_want(t->origin, &r, &f, PB_WIRE_VARINT, "trainer_spec"));
            t->ws_suffix = f.u != 0;
            break;
        case PB_TRAINER_BYTE_FALLBACK:
            WQ_TRY(pb_want(t->origin, &r, &f, PB_WIRE_VARINT, "trainer_spec"));
            t->byte_fallback = f.u != 0;
            break;
        case PB_TRAINER_UNK_ID:
            id = &t->unk_id;
            break;
        case PB_TRAINER_BOS_ID:
            id = &t->bos_id;
            break;
        case PB_TRAINER_EOS_ID:
            id = &t->eos_id;
            break;
        case PB_TRAINER_PAD_ID:
            id = &t->pad_id;
            break;
        default:
            break; /* unknown or unused field: skipped */
        }
        if (id) {
            WQ_TRY(pb_want(t->origin, &r, &f, PB_WIRE_VARINT, "trainer_spec"));
            /* int32 fields: negative values are sign-extended 10-byte varints; the low 32 bits
             * are the two's complement value. */
            *id = (int32_t)(uint32_t)f.u;
        }
    }
    return WQ_OK;
}

static wq_status parse_normalizer(wq_tokenizer *t, const pb_reader *parent, const pb_field *msg)
{
    pb_reader r = pb_sub(parent, msg);
    pb_field f;
    while (r.p < r.end) {
        const char *why = pb_next(&r, &f);
        if (why) return pb_fail(t->origin, &r, why);
        bool *flag = NULL;
        switch (f.field) {
        case PB_NORM_CHARSMAP:
            WQ_TRY(pb_want(t->origin, &r, &f, PB_WIRE_LEN, "normalizer_spec"));
            if (f.size > 0) {
                WQ_LOG_ERROR("%s: SentencePiece normalization rules (precompiled_charsmap, e.g. "
                             "nmt_nfkc) are not supported; only the identity normalizer is",
                             t->origin);
                return WQ_ERR_UNSUPPORTED;
            }
            break;
        case PB_NORM_DUMMY_PREFIX:
            flag = &t->add_dummy_prefix;
            break;
        case PB_NORM_REMOVE_EXTRA_WS:
            flag = &t->remove_extra_ws;
            break;
        case PB_NORM_ESCAPE_WS:
            flag = &t->escape_ws;
            break;
        default:
            break;
        }
        if (flag) {
            WQ_TRY(pb_want(t->origin, &r, &f, PB_WIRE_VARINT, "normalizer_spec"));
            *flag = f.u != 0;
        }
    }
    return WQ_OK;
}

/* Parses one SentencePiece message into slot i; pool_used advances past its NUL-terminated text. */
static wq_status parse_piece(wq_tokenizer *t, const pb_reader *parent, const pb_field *msg,
                             int32_t i, size_t *pool_used)
{
    pb_reader r = pb_sub(parent, msg);
    pb_field f;
    const uint8_t *s = NULL;
    size_t slen = 0;
    uint64_t type = WQ_TOK_NORMAL;
    float score = 0.0f;
    while (r.p < r.end) {
        const char *why = pb_next(&r, &f);
        if (why) return pb_fail(t->origin, &r, why);
        if (f.field == PB_PIECE_PIECE) {
            WQ_TRY(pb_want(t->origin, &r, &f, PB_WIRE_LEN, "piece"));
            s = f.data;
            slen = f.size;
        } else if (f.field == PB_PIECE_SCORE) {
            WQ_TRY(pb_want(t->origin, &r, &f, PB_WIRE_I32, "piece"));
            uint32_t bits = (uint32_t)f.u;
            memcpy(&score, &bits, sizeof score);
        } else if (f.field == PB_PIECE_TYPE) {
            WQ_TRY(pb_want(t->origin, &r, &f, PB_WIRE_VARINT, "piece"));
            type = f.u;
        }
    }
    if (!s || slen == 0) return pb_fail(t->origin, &r, "piece with an empty or missing text");
    if (type < WQ_TOK_NORMAL || type > WQ_TOK_BYTE)
        return pb_fail(t->origin, &r, "piece type outside 1..6");
    if (!isfinite(score)) return pb_fail(t->origin, &r, "piece score is not finite");
    t->off[i] = (uint32_t)*pool_used;
    t->len[i] = (uint32_t)slen;
    memcpy(t->pool + *pool_used, s, slen);
    t->pool[*pool_used + slen] = '\0';
    *pool_used += slen + 1;
    t->score[i] = score;
    t->type[i] = (uint8_t)type;
    return WQ_OK;
}

static wq_status build_tables(wq_tokenizer *t)
{
    wq_status st = WQ_OK;
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)t->n)
        cap <<= 1;
    t->htab = wq_malloc(cap * sizeof *t->htab);
    if (!t->htab) return WQ_ERR_NOMEM;
    memset(t->htab, 0xff, cap * sizeof *t->htab);
    t->hmask = cap - 1;
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    for (int32_t i = 0; i < t->n; i++) {
        const char *s = t->pool + t->off[i];
        uint64_t h = hash_bytes(s, t->len[i]) & t->hmask;
        for (; t->htab[h] >= 0; h = (h + 1) & t->hmask) {
            int32_t j = t->htab[h];
            WQ_CHECK_GOTO(
                !(t->len[j] == t->len[i] && memcmp(t->pool + t->off[j], s, t->len[i]) == 0), st,
                WQ_ERR_FORMAT, done,
                "%s: corrupt SentencePiece model: piece '%s' is defined twice (ids %d, %d)",
                t->origin, s, (int)j, (int)i);
        }
        t->htab[h] = i;
        if (t->type[i] == WQ_TOK_BYTE) {
            int v = byte_piece_value(s, t->len[i]);
            WQ_CHECK_GOTO(v >= 0, st, WQ_ERR_FORMAT, done,
                          "%s: corrupt SentencePiece model: byte piece %d is '%s', not <0xXX>",
                          t->origin, (int)i, s);
            t->byte_id[v] = i;
        } else if (t->type[i] == WQ_TOK_UNUSED) {
            t->has_unused = true;
        } else if (t->type[i] == WQ_TOK_USER_DEFINED) {
            int k = 0;
            while (k < t->n_user_lens && t->user_lens[k] > t->len[i])
                k++;
            if (k < t->n_user_lens && t->user_lens[k] == t->len[i]) continue;
            WQ_CHECK_GOTO(t->n_user_lens < MAX_USER_LENS, st, WQ_ERR_UNSUPPORTED, done,
                          "%s: more than %d distinct lengths of user-defined pieces", t->origin,
                          MAX_USER_LENS);
            memmove(t->user_lens + k + 1, t->user_lens + k,
                    (size_t)(t->n_user_lens - k) * sizeof *t->user_lens);
            t->user_lens[k] = t->len[i];
            t->n_user_lens++;
        }
    }
done:
    return st;
}

static wq_status validate(const wq_tokenizer *t)
{
    if (t->model_type != SP_MODEL_BPE) {
        WQ_LOG_ERROR("%s: SentencePiece model type %d is not supported (only BPE = 2; Unigram "
                     "models need a Viterbi encoder)",
                     t->origin, t->model_type);
        return WQ_ERR_UNSUPPORTED;
    }
    if (t->ws_suffix) {
        WQ_LOG_ERROR("%s: treat_whitespace_as_suffix is not supported", t->origin);
        return WQ_ERR_UNSUPPORTED;
    }
    if (t->unk_id < 0 || t->unk_id >= t->n || t->type[t->unk_id] != WQ_TOK_UNKNOWN) {
        WQ_LOG_ERROR("%s: corrupt SentencePiece model: unk_id %d is not an UNKNOWN piece of the "
                     "%d-piece vocabulary",
                     t->origin, (int)t->unk_id, (int)t->n);
        return WQ_ERR_FORMAT;
    }
    const int32_t ids[3] = {t->bos_id, t->eos_id, t->pad_id};
    static const char *names[3] = {"bos_id", "eos_id", "pad_id"};
    for (int k = 0; k < 3; k++) {
        if (ids[k] < -1 || ids[k] >= t->n) {
            WQ_LOG_ERROR("%s: corrupt SentencePiece model: %s %d outside [-1, %d)", t->origin,
                         names[k], (int)ids[k], (int)t->n);
            return WQ_ERR_FORMAT;
        }
    }
    return WQ_OK;
}

wq_status wq_tok_load_mem(const void *data, size_t size, const char *origin, wq_tokenizer **out)
{
    wq_status st = WQ_OK;
    wq_tokenizer *t = NULL;
    if (!out || (!data && size)) return WQ_ERR_ARG;
    *out = NULL;
    if (!origin) origin = "<memory>";
    if (!data) data = ""; /* size == 0: keeps the pointer arithmetic below defined */

    t = wq_calloc(1, sizeof *t);
    WQ_CHECK_GOTO(t, st, WQ_ERR_NOMEM, done, "%s: out of memory", origin);
    t->origin = wq_strdup(origin);
    WQ_CHECK_GOTO(t->origin, st, WQ_ERR_NOMEM, done, "%s: out of memory", origin);
    /* proto2 defaults of TrainerSpec / NormalizerSpec */
    t->model_type = SP_MODEL_UNIGRAM;
    t->unk_id = 0;
    t->bos_id = 1;
    t->eos_id = 2;
    t->pad_id = -1;
    t->add_dummy_prefix = t->remove_extra_ws = t->escape_ws = true;

    /* Pass 1: structure, specs, and the size of the piece table. */
    const pb_reader top = {data, (const uint8_t *)data + size, data};
    pb_reader r = top;
    pb_field f;
    uint64_t n_pieces = 0, pool_bytes = 0;
    while (r.p < r.end) {
        const char *why = pb_next(&r, &f);
        if (why) {
            st = pb_fail(origin, &r, why);
            goto done;
        }
        if (f.field == PB_MODEL_PIECES) {
            WQ_TRY_GOTO(pb_want(origin, &r, &f, PB_WIRE_LEN, "model"), st, done);
            n_pieces++;
            pool_bytes += f.size + 1; /* the piece text is no longer than its message */
        } else if (f.field == PB_MODEL_TRAINER) {
            WQ_TRY_GOTO(pb_want(origin, &r, &f, PB_WIRE_LEN, "model"), st, done);
            WQ_TRY_GOTO(parse_trainer(t, &r, &f), st, done);
        } else if (f.field == PB_MODEL_NORMALIZER) {
            WQ_TRY_GOTO(pb_want(origin, &r, &f, PB_WIRE_LEN, "model"), st, done);
            WQ_TRY_GOTO(parse_normalizer(t, &r, &f), st, done);
        }
    }
    WQ_CHECK_GOTO(n_pieces > 0, st, WQ_ERR_FORMAT, done,
                  "%s: not a SentencePiece model (no pieces in %zu bytes)", origin, size);
    WQ_CHECK_GOTO(n_pieces < INT32_MAX && pool_bytes < UINT32_MAX, st, WQ_ERR_FORMAT, done,
                  "%s: SentencePiece model too large", origin);
    t->n = (int32_t)n_pieces;
    t->pool = wq_malloc((size_t)pool_bytes);
    t->off = wq_malloc((size_t)n_pieces * sizeof *t->off);
    t->len = wq_malloc((size_t)n_pieces * sizeof *t->len);
    t->score = wq_malloc((size_t)n_pieces * sizeof *t->score);
    t->type = wq_malloc((size_t)n_pieces);
    WQ_CHECK_GOTO(t->pool && t->off && t->len && t->score && t->type, st, WQ_ERR_NOMEM, done,
                  "%s: out of memory for %d pieces", origin, (int)t->n);

    /* Pass 2: the pieces (the structure was validated by pass 1). */
    r = top;
    int32_t i = 0;
    size_t pool_used = 0;
    while (r.p < r.end) {
        const char *why = pb_next(&r, &f);
        WQ_ASSERT(why == NULL);
        if (f.field == PB_MODEL_PIECES) {
            WQ_TRY_GOTO(parse_piece(t, &r, &f, i, &pool_used), st, done);
            i++;
        }
    }
    WQ_TRY_GOTO(validate(t), st, done);
    WQ_TRY_GOTO(build_tables(t), st, done);
    *out = t;
    t = NULL;
done:
    wq_tok_free(t);
    return st;
}

static wq_status read_whole_file(const char *path, uint8_t **buf, size_t *n)
{
    wq_status st = WQ_OK;
    FILE *fp = fopen(path, "rb");
    uint8_t *b = NULL;
    long sz = -1;
    WQ_CHECK_GOTO(fp, st, WQ_ERR_IO, done, "%s: cannot open: %s", path, strerror(errno));
    WQ_CHECK_GOTO(fseek(fp, 0, SEEK_END) == 0 && (sz = ftell(fp)) >= 0 &&
                      fseek(fp, 0, SEEK_SET) == 0,
                  st, WQ_ERR_IO, done, "%s: cannot determine the size: %s", path, strerror(errno));
    b = wq_malloc((size_t)sz + 1);
    WQ_CHECK_GOTO(b, st, WQ_ERR_NOMEM, done, "%s: out of memory for %ld bytes", path, sz);
    WQ_CHECK_GOTO(fread(b, 1, (size_t)sz, fp) == (size_t)sz, st, WQ_ERR_IO, done, "%s: read error",
                  path);
    *buf = b;
    *n = (size_t)sz;
    b = NULL;
done:
    if (fp) fclose(fp);
    wq_free(b);
    return st;
}

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A tokenizer.json wrapped in the common handle. */
static wq_status load_json(const char *file, wq_tokenizer **out)
{
    wq_tokenizer *t = wq_calloc(1, sizeof *t);
    if (!t) return WQ_ERR_NOMEM;
    wq_status st = wq_tok_json_load(file, &t->json);
    if (st != WQ_OK) {
        wq_free(t);
        return st;
    }
    *out = t;
    return WQ_OK;
}

wq_status wq_tok_load(const char *path, wq_tokenizer **out)
{
    wq_status st = WQ_OK;
    char *file = NULL;
    uint8_t *buf = NULL;
    size_t n = 0;
    if (!path || !out) return WQ_ERR_ARG;
    *out = NULL;
    struct stat sb;
    size_t plen = strlen(path);
    file = wq_malloc(plen + sizeof "/tokenizer.model");
    WQ_CHECK_GOTO(file, st, WQ_ERR_NOMEM, done, "out of memory");
    memcpy(file, path, plen + 1);
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        /* precedence: tokenizer.model (SentencePiece), then tokenizer.json */
        memcpy(file + plen, "/tokenizer.model", sizeof "/tokenizer.model");
        if (!is_file(file)) {
            memcpy(file + plen, "/tokenizer.json", sizeof "/tokenizer.json");
            WQ_CHECK_GOTO(is_file(file), st, WQ_ERR_IO, done,
                          "%s: no tokenizer.model or tokenizer.json in this directory", path);
        }
    }
    if (ends_with(file, ".json")) {
        st = load_json(file, out);
        goto done;
    }
    WQ_TRY_GOTO(read_whole_file(file, &buf, &n), st, done);
    WQ_TRY_GOTO(wq_tok_load_mem(buf, n, file, out), st, done);
    WQ_LOG_DEBUG("%s: %d pieces, bos %d eos %d unk %d, byte_fallback %d, dummy_prefix %d, "
                 "remove_extra_ws %d",
                 file, (int)(*out)->n, (*out)->bos_id, (*out)->eos_id, (*out)->unk_id,
                 (*out)->byte_fallback, (*out)->add_dummy_prefix, (*out)->remove_extra_ws);
done:
    wq_free(buf);
    wq_free(file);
    return st;
}

void wq_tok_free(wq_tokenizer *t)
{
    if (!t) return;
    wq_tok_json_free(t->json);
    wq_free(t->origin);
    wq_free(t->pool);
    wq_free(t->off);
    wq_free(t->len);
    wq_free(t->score);
    wq_free(t->type);
    wq_free(t->htab);
    wq_free(t);
}

// ---- queries
// ---------------------------------------------------------------------------------------

int64_t wq_tok_vocab_size(const wq_tokenizer *t)
{
    if (t->json) return wq_tok_json_vocab_size(t->json);
    return t->n;
}
int32_t wq_tok_bos(const wq_tokenizer *t)
{
    if (t->json) return wq_tok_json_bos(t->json);
    return t->bos_id;
}
int32_t wq_tok_eos(const wq_tokenizer *t)
{
    if (t->json) return wq_tok_json_eos(t->json);
    return t->eos_id;
}
int32_t wq_tok_unk(const wq_tokenizer *t)
{
    if (t->json) return wq_tok_json_unk(t->json);
    return t->unk_id;
}
int32_t wq_tok_pad(const wq_tokenizer *t)
{
    if (t->json) return wq_tok_json_pad(t->json);
    return t->pad_id;
}

const char *wq_tok_piece(const wq_tokenizer *t, int32_t id)
{
    if (t->json) return wq_tok_json_piece(t->json, id);
    return (id >= 0 && id < t->n) ? t->pool + t->off[id] : NULL;
}

wq_tok_piece_type wq_tok_type(const wq_tokenizer *t, int32_t id)
{
    if (t->json) return wq_tok_json_type(t->json, id);
    return (id >= 0 && id < t->n) ? (wq_tok_piece_type)t->type[id] : (wq_tok_piece_type)0;
}

float wq_tok_score(const wq_tokenizer *t, int32_t id)
{
    if (t->json) return wq_tok_json_score(t->json, id);
    return (id >= 0 && id < t->n) ? t->score[id] : 0.0f;
}

int32_t wq_tok_piece_id(const wq_tokenizer *t, const char *piece, size_t len)
{
    if (t->json) return wq_tok_json_piece_id(t->json, piece, len);
    return piece ? lookup(t, piece, len) : -1;
}

// ---- normalization
// ---------------------------------------------------------------------------------

/* Length of the well-formed UTF-8 character at s (Unicode table 3-7), 0 if ill-formed. */
static size_t utf8_char_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2 || c > 0xF4) return 0;
    size_t need = c < 0xE0 ? 2 : (c < 0xF0 ? 3 : 4);
    if (n < need) return 0;
    for (size_t k = 1; k < need; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return need;
}

/* Writes the normalized text into out (capacity 3 * len + 3) and returns its length. */
static size_t normalize(const wq_tokenizer *t, const uint8_t *in, size_t len, char *out)
{
    const char *ws = t->escape_ws ? WS_SYM : " ";
    const size_t ws_len = t->escape_ws ? WS_SYM_LEN : 1;
    size_t i = 0, o = 0;
    if (t->remove_extra_ws)
        while (i < len && in[i] == ' ')
            i++;
    if (i == len) return 0;
    if (t->add_dummy_prefix) {
        memcpy(out, ws, ws_len);
        o = ws_len;
    }
    bool prev_space = t->remove_extra_ws;
    while (i < len) {
        if (in[i] == ' ') {
            if (!(t->remove_extra_ws && prev_space)) {
                memcpy(out + o, ws, ws_len);
                o += ws_len;
            }
            prev_space = true;
            i++;
            continue;
        }
        size_t cl = utf8_char_len(in + i, len - i);
        if (cl == 0) { /* one ill-formed byte becomes U+FFFD, as SentencePiece does */
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, in + i, cl);
            o += cl;
            i += cl;
        }
        prev_space = false;
    }
    if (t->remove_extra_ws)
        while (o >= ws_len && memcmp(out + o - ws_len, ws, ws_len) == 0)
            o -= ws_len;
    return o;
}

// ---- BPE merging
// -----------------------------------------------------------------------------------

typedef struct {
    int32_t start, len; /* bytes of the normalized text; len 0 = merged into its left neighbour */
    int32_t prev, next; /* linked list of live symbols, -1 at the ends */
} bpe_sym;

typedef struct {
    float score;
    int32_t left, right;         /* symbol indices */
    int32_t left_len, right_len; /* lengths when queued: a changed length marks the entry stale */
} bpe_cand;

/* Higher score first; on ties the leftmost pair (SentencePiece's order). */
static bool cand_before(const bpe_cand *x, const bpe_cand *y)
{
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

WQ_HEAP_DEFINE(bpe_heap, bpe_cand, cand_before)

typedef struct {
    const wq_tokenizer *t;
    const char *norm;
    bpe_sym *sym;
    const uint8_t *frozen; /* [nsym] user-defined symbols never merge; NULL if none */
    bpe_heap heap;
    /* merge tree for resegmenting unused pieces (only when the model has some) */
    int32_t *node_of;       /* [nsym] current node of each live symbol */
    int32_t *kid;           /* [2 * nodes] children of a node, -1 for a leaf */
    int32_t *nstart, *nlen; /* [nodes] text span of a node */
    int32_t n_nodes;
} bpe_state;

static bool maybe_push(bpe_state *b, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return true;
    if (b->frozen && (b->frozen[l] || b->frozen[r])) return true;
    const bpe_sym *L = &b->sym[l], *R = &b->sym[r];
    int32_t id = lookup_mergeable(b->t, b->norm + L->start, (size_t)L->len + (size_t)R->len);
    if (id < 0) return true;
    bpe_cand c = {b->t->score[id], l, r, L->len, R->len};
    return bpe_heap_push(&b->heap, c);
}

/* Appends the ids of one symbol (given by its node when resegmenting, else by its span). */
static void emit_span(const wq_tokenizer *t, const char *s, int32_t len, int32_t *out, int64_t *n)
{
    int32_t id = lookup_mergeable(t, s, (size_t)len);
    if (id >= 0) {
        out[(*n)++] = id;
    } else if (t->byte_fallback) {
        for (int32_t k = 0; k < len; k++) {
            int32_t bid = t->byte_id[(uint8_t)s[k]];
            out[(*n)++] = bid >= 0 ? bid : t->unk_id;
        }
    } else {
        out[(*n)++] = t->unk_id;
    }
}

/* Unused pieces may be produced by merges but never emitted: split them back along the merge tree.
 */
static void emit_node(const bpe_state *b, int32_t node, int32_t *stack, int32_t *out, int64_t *n)
{
    int32_t sp = 0;
    stack[sp++] = node;
    while (sp > 0) {
        int32_t k = stack[--sp];
        const char *s = b->norm + b->nstart[k];
        int32_t id = lookup_mergeable(b->t, s, (size_t)b->nlen[k]);
        if (id >= 0 && b->t->type[id] == WQ_TOK_UNUSED && b->kid[2 * k] >= 0) {
            stack[sp++] = b->kid[2 * k + 1]; /* right pushed first: left is emitted first */
            stack[sp++] = b->kid[2 * k];
        } else {
            emit_span(b->t, s, b->nlen[k], out, n);
        }
    }
}

wq_status wq_tok_encode(const wq_tokenizer *t, const char *text, size_t len, int32_t **ids,
                        int64_t *n)
{
    wq_status st = WQ_OK;
    char *norm = NULL;
    uint8_t *frozen = NULL;
    int32_t *out = NULL, *stack = NULL;
    bpe_state b = {0};
    if (!t || !ids || !n || (!text && len)) return WQ_ERR_ARG;
    if (t->json) return wq_tok_json_encode(t->json, text, len, ids, n);
    *ids = NULL;
    *n = 0;
    WQ_CHECK_GOTO(len <= MAX_TEXT_BYTES, st, WQ_ERR_ARG, done,
                  "tokenizer: text of %zu bytes exceeds the %zu-byte limit of one encode call", len,
                  MAX_TEXT_BYTES);
    if (len == 0) return WQ_OK;

    norm = wq_malloc(3 * len + 3);
    WQ_CHECK_GOTO(norm, st, WQ_ERR_NOMEM, done, "tokenizer: out of memory (%zu bytes)", len);
    const size_t nlen = normalize(t, (const uint8_t *)text, len, norm);
    if (nlen == 0) goto done;

    /* Split into characters; user-defined pieces (longest match) become frozen symbols. */
    b.t = t;
    b.norm = norm;
    b.sym = wq_malloc(nlen * sizeof *b.sym);
    WQ_CHECK_GOTO(b.sym, st, WQ_ERR_NOMEM, done, "tokenizer: out of memory");
    if (t->n_user_lens) {
        frozen = wq_calloc(nlen, 1);
        WQ_CHECK_GOTO(frozen, st, WQ_ERR_NOMEM, done, "tokenizer: out of memory");
        b.frozen = frozen;
    }
    int32_t nsym = 0;
    for (size_t p = 0; p < nlen;) {
        size_t cl = 0;
        for (int k = 0; k < t->n_user_lens && !cl; k++) {
            size_t ul = t->user_lens[k];
            if (p + ul <= nlen) {
                int32_t id = lookup(t, norm + p, ul);
                if (id >= 0 && t->type[id] == WQ_TOK_USER_DEFINED) {
                    cl = ul;
                    frozen[nsym] = 1;
                }
            }
        }
        if (!cl) {
            uint8_t c = (uint8_t)norm[p];
            cl = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            if (cl > nlen - p) cl = nlen - p;
        }
        b.sym[nsym] = (bpe_sym){(int32_t)p, (int32_t)cl, nsym - 1, nsym + 1};
        nsym++;
        p += cl;
    }
    b.sym[nsym - 1].next = -1;

    if (t->has_unused) {
        b.node_of = wq_malloc((size_t)nsym * sizeof *b.node_of);
        b.kid = wq_malloc((size_t)nsym * 4 * sizeof *b.kid);
        b.nstart = wq_malloc((size_t)nsym * 2 * sizeof *b.nstart);
        b.nlen = wq_malloc((size_t)nsym * 2 * sizeof *b.nlen);
        stack = wq_malloc((size_t)nsym * 2 * sizeof *stack);
        WQ_CHECK_GOTO(b.node_of && b.kid && b.nstart && b.nlen && stack, st, WQ_ERR_NOMEM, done,
                      "tokenizer: out of memory");
        for (int32_t i = 0; i < nsym; i++) {
            b.node_of[i] = i;
            b.kid[2 * i] = b.kid[2 * i + 1] = -1;
            b.nstart[i] = b.sym[i].start;
            b.nlen[i] = b.sym[i].len;
        }
        b.n_nodes = nsym;
    }

    for (int32_t i = 0; i + 1 < nsym; i++)
        WQ_CHECK_GOTO(maybe_push(&b, i, i + 1), st, WQ_ERR_NOMEM, done, "tokenizer: out of memory");
    while (b.heap.n > 0) {
        bpe_cand c = bpe_heap_pop(&b.heap);
        bpe_sym *L = &b.sym[c.left], *R = &b.sym[c.right];
        if (L->len != c.left_len || R->len != c.right_len || L->next != c.right)
            continue; /* stale */
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) b.sym[R->next].prev = c.left;
        if (t->has_unused) {
            int32_t k = b.n_nodes++;
            b.kid[2 * k] = b.node_of[c.left];
            b.kid[2 * k + 1] = b.node_of[c.right];
            b.nstart[k] = L->start;
            b.nlen[k] = L->len;
            b.node_of[c.left] = k;
        }
        WQ_CHECK_GOTO(maybe_push(&b, L->prev, c.left) && maybe_push(&b, c.left, L->next), st,
                      WQ_ERR_NOMEM, done, "tokenizer: out of memory");
    }

    /* Every symbol emits at most one id per byte, so nlen ids always suffice. */
    out = wq_malloc(nlen * sizeof *out);
    WQ_CHECK_GOTO(out, st, WQ_ERR_NOMEM, done, "tokenizer: out of memory");
    int64_t cnt = 0;
    for (int32_t i = 0; i >= 0; i = b.sym[i].next) {
        if (t->has_unused)
            emit_node(&b, b.node_of[i], stack, out, &cnt);
        else
            emit_span(t, norm + b.sym[i].start, b.sym[i].len, out, &cnt);
    }
    *ids = wq_malloc((size_t)cnt * sizeof **ids);
    WQ_CHECK_GOTO(*ids, st, WQ_ERR_NOMEM, done, "tokenizer: out of memory");
    memcpy(*ids, out, (size_t)cnt * sizeof *out);
    *n = cnt;
done:
    wq_free(b.heap.a);
    wq_free(b.sym);
    wq_free(b.node_of);
    wq_free(b.kid);
    wq_free(b.nstart);
    wq_free(b.nlen);
    wq_free(stack);
    wq_free(frozen);
    wq_free(norm);
    wq_free(out);
    return st;
}

// ---- decoding
// --------------------------------------------------------------------------------------

wq_status wq_tok_decode(const wq_tokenizer *t, const int32_t *ids, int64_t n, char **text,
                        size_t *len)
{
    if (!t || !text || n < 0 || (!ids && n > 0)) return WQ_ERR_ARG;
    if (t->json) return wq_tok_json_decode(t->json, ids, n, text, len);
    *text = NULL;
    if (len) *len = 0;
    size_t bound = 1;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n) {
            WQ_LOG_ERROR("%s: decode: id %d at position %lld is outside the vocabulary [0, %d)",
                         t->origin, (int)ids[i], (long long)i, (int)t->n);
            return WQ_ERR_ARG;
        }
        bound += t->type[ids[i]] == WQ_TOK_UNKNOWN ? UNK_SURFACE_LEN : t->len[ids[i]];
    }
    char *s = wq_malloc(bound);
    if (!s) {
        WQ_LOG_ERROR("%s: decode: out of memory", t->origin);
        return WQ_ERR_NOMEM;
    }
    const bool strip_first = t->add_dummy_prefix || t->remove_extra_ws;
    bool at_start = true;
    size_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t id = ids[i];
        const char *p = t->pool + t->off[id];
        size_t pl = t->len[id];
        switch (t->type[id]) {
        case WQ_TOK_CONTROL:
            continue;
        case WQ_TOK_UNKNOWN:
            memcpy(s + o, UNK_SURFACE, UNK_SURFACE_LEN);
            o += UNK_SURFACE_LEN;
            break;
        case WQ_TOK_BYTE:
            s[o++] = (char)byte_piece_value(p, pl);
            break;
        default:
            if (at_start && strip_first && t->escape_ws && pl >= WS_SYM_LEN &&
                memcmp(p, WS_SYM, WS_SYM_LEN) == 0) {
                p += WS_SYM_LEN;
                pl -= WS_SYM_LEN;
            }
            for (size_t k = 0; k < pl;) {
                if (t->escape_ws && k + WS_SYM_LEN <= pl &&
                    memcmp(p + k, WS_SYM, WS_SYM_LEN) == 0) {
                    s[o++] = ' ';
                    k += WS_SYM_LEN;
                } else {
                    s[o++] = p[k++];
                }
            }
            break;
        }
        at_start = false;
    }
    s[o] = '\0';
    *text = s;
    if (len) *len = o;
    return WQ_OK;
}
