/* tok_json.c: HuggingFace tokenizer.json (BPE model) loader, encoder and decoder. The JSON tree is
 * read once with cJSON into flat tables (token pool + string hash, merge-pair hash, added-token
 * buckets by first byte) and deleted; encoding is added-token split -> normalizer -> pre-tokenizer
 * (hand-written matchers of the known split regexes, byte-to-unicode map, Metaspace) -> BPE by
 * merge rank with a min-heap over a linked list of symbols, as the `tokenizers` crate does. Layer:
 * model. */
#include "model/tok_json.h"

#include <cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core_alloc.h"
#include "core/core_heap.h"
#include "core/core_log.h"
#include "model/tok_unicode_tab.h"

#define MAX_TEXT_BYTES ((size_t)512 << 20)
#define MAX_NORM_STEPS 8
#define WS_SYM "\xE2\x96\x81" /* U+2581, the SentencePiece space */

enum { CLS_L = 1, CLS_N = 2, CLS_WS = 4, CLS_NFC_QC = 8, CLS_CCC = 16 };
/* The split regexes wquant recognises (exact strings of tokenizer.json files). */
enum { SPLIT_NONE = 0, SPLIT_GPT2, SPLIT_LLAMA3, SPLIT_QWEN2 };
static const char *const k_split_regex[] = {
    [SPLIT_GPT2] =
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    [SPLIT_LLAMA3] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    [SPLIT_QWEN2] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
enum { NORM_PREPEND = 1, NORM_REPLACE, NORM_NFC };
enum { META_NEVER = 0, META_ALWAYS, META_FIRST };
enum { DEC_NONE = 0, DEC_BYTELEVEL, DEC_SP };

typedef struct {
    int kind;
    char *a, *b; /* PREPEND: a; REPLACE: a -> b */
    size_t al, bl;
} norm_step;

typedef struct {
    int32_t id;
    bool lstrip, rstrip;
} added_tok;

struct wq_tok_json {
    char *origin;
    int32_t n; /* ids 0 .. n-1 */
    char *pool;
    uint32_t *off, *len;
    uint8_t *type;    /* [n] wq_tok_piece_type */
    int32_t *rank_of; /* [n] lowest merge rank producing the token, -1 if none */
    int32_t *htab;    /* token string -> id */
    uint64_t hmask;
    uint64_t *mkey; /* merge pair hash: key (a << 32 | b) + 1, 0 = empty */
    int32_t *mrank, *mnew;
    uint64_t mmask;
    int32_t n_added;
    added_tok *added;         /* sorted by first byte, then longest first */
    int32_t added_first[257]; /* added[added_first[b] .. added_first[b+1]) start with byte b */
    int n_norm;
    norm_step norm[MAX_NORM_STEPS];
    bool nfc;
    int split;          /* SPLIT_*: regex split of each segment */
    bool split_from_bl; /* the split is ByteLevel's own (add_prefix_space applies before it) */
    bool byte_level, bl_prefix_space;
    bool metaspace, meta_split;
    int meta_prepend;
    char meta_rep[8];
    size_t meta_rep_len;
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id, bos_id, eos_id, pad_id;
    int32_t byte_id[256];  /* <0xNN> tokens */
    char byte_enc[256][3]; /* GPT-2 byte -> UTF-8 of its printable code point */
    uint8_t byte_enc_len[256];
    int16_t byte_dec[324]; /* code point (< 324) -> byte, -1 if none */
    int dec_kind;
    bool dec_byte_fallback, dec_meta;
    int dec_strip_start, dec_strip_stop;
    int dec_meta_prepend;
};

// ---- Unicode
// --------------------------------------------------------------------------------------

static uint8_t uni_class(uint32_t cp)
{
    size_t lo = 0, hi = sizeof k_uni_ranges / sizeof *k_uni_ranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < k_uni_ranges[mid].lo)
            hi = mid;
        else if (cp > k_uni_ranges[mid].hi)
            lo = mid + 1;
        else
            return k_uni_ranges[mid].cls;
    }
    return 0;
}

/* Decodes the character at s[0..n) (n >= 1): its code point and byte length. A byte that does not
 * start a well-formed UTF-8 sequence is one character of its own with code point 0x110000 + byte
 * (outside Unicode: no class). */
static uint32_t utf8_next(const uint8_t *s, size_t n, size_t *clen)
{
    uint8_t c = s[0];
    *clen = 1;
    if (c < 0x80) return c;
    size_t need = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        cp = c & 0x07;
    }
    if (need == 0 || n < need) return 0x110000u + c;
    for (size_t k = 1; k < need; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0x110000u + c;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0x110000u + c;
    *clen = need;
    return cp;
}

/* Encodes cp (a byte that was not UTF-8, 0x110000 + byte, is written back as that byte). */
static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp >= 0x110000u) {
        out[0] = (char)(cp - 0x110000u);
        return 1;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// ---- NFC (UAX #15: canonical decomposition, canonical ordering, canonical composition) ----------

enum { H_SBASE = 0xAC00, H_LBASE = 0x1100, H_VBASE = 0x1161, H_TBASE = 0x11A7 };
enum { H_LCOUNT = 19, H_VCOUNT = 21, H_TCOUNT = 28, H_NCOUNT = 21 * 28, H_SCOUNT = 19 * 21 * 28 };

static uint8_t ccc_of(uint32_t cp)
{
    size_t lo = 0, hi = sizeof k_uni_ccc / sizeof *k_uni_ccc;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < k_uni_ccc[mid].lo)
            hi = mid;
        else if (cp > k_uni_ccc[mid].hi)
            lo = mid + 1;
        else
            return k_uni_ccc[mid].ccc;
    }
    return 0;
}

/* Writes the full canonical decomposition of cp to out[0..4) and returns its length. */
static size_t decompose(uint32_t cp, uint32_t *out)
{
    if (cp >= H_SBASE && cp < H_SBASE + H_SCOUNT) {
        const uint32_t si = cp - H_SBASE, t = si % H_TCOUNT;
        out[0] = H_LBASE + si / H_NCOUNT;
        out[1] = H_VBASE + (si % H_NCOUNT) / H_TCOUNT;
        if (!t) return 2;
        out[2] = H_TBASE + t;
        return 3;
    }
    size_t lo = 0, hi = sizeof k_uni_decomp / sizeof *k_uni_decomp;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < k_uni_decomp[mid].cp) {
            hi = mid;
        } else if (cp > k_uni_decomp[mid].cp) {
            lo = mid + 1;
        } else {
            size_t k = 0;
            while (k < 4 && k_uni_decomp[mid].to[k])
                out[k] = k_uni_decomp[mid].to[k], k++;
            return k;
        }
    }
    out[0] = cp;
    return 1;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 && b > H_TBASE &&
        b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    size_t lo = 0, hi = sizeof k_uni_comp / sizeof *k_uni_comp;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a < k_uni_comp[mid].a || (a == k_uni_comp[mid].a && b < k_uni_comp[mid].b))
            hi = mid;
        else if (a > k_uni_comp[mid].a || b > k_uni_comp[mid].b)
            lo = mid + 1;
        else
            return k_uni_comp[mid].c;
    }
    return 0;
}

/* NFC of s[0..n) into a wq_malloc'd buffer (*out, *on). Bytes that are not UTF-8 pass through. */
static wq_status nfc(const char *s, size_t n, char **out, size_t *on)
{
    uint32_t *d = wq_malloc((4 * n + 1) * sizeof *d);
    uint8_t *cc = wq_malloc(4 * n + 1);
    char *o = wq_malloc(4 * n + 1);
    if (!d || !cc || !o) {
        wq_free(d);
        wq_free(cc);
        wq_free(o);
        return WQ_ERR_NOMEM;
    }
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        size_t cl;
        const uint32_t cp = utf8_next((const uint8_t *)s + i, n - i, &cl);
        const size_t k = cp < 0x110000u ? decompose(cp, d + m) : (d[m] = cp, 1);
        for (size_t j = m; j < m + k; j++) {
            cc[j] = d[j] < 0x110000u ? ccc_of(d[j]) : 0;
            /* canonical ordering: a mark moves before marks of a higher class (stable) */
            for (size_t q = j; q > 0 && cc[q] && cc[q - 1] > cc[q]; q--) {
                const uint32_t td = d[q];
                const uint8_t tc = cc[q];
                d[q] = d[q - 1], cc[q] = cc[q - 1];
                d[q - 1] = td, cc[q - 1] = tc;
            }
        }
        m += k;
        i += cl;
    }
    size_t len = 0;
    if (m) { /* canonical composition */
        size_t starter = 0, w = 1;
        int last = cc[0] ? 256 : 0;
        for (size_t i = 1; i < m; i++) {
            const int c = cc[i];
            const uint32_t comp = compose_pair(d[starter], d[i]);
            if (comp && (last < c || last == 0)) {
                d[starter] = comp;
                continue;
            }
            if (c == 0) starter = w;
            last = c;
            d[w++] = d[i];
        }
        for (size_t i = 0; i < w; i++)
            len += utf8_put(d[i], o + len);
    }
    wq_free(d);
    wq_free(cc);
    *out = o;
    *on = len;
    return WQ_OK;
}

// ---- split regexes
// --------------------------------------------------------------------------------- Each matcher
// returns the byte length of the regex match that starts at s[i] (the patterns match at every
// position, so find-all is a sequence of adjacent matches). Alternatives are tried in the pattern's
// order with backtracking semantics worked out per alternative.

typedef struct {
    const uint8_t *s;
    size_t n;
} text_view;

typedef struct {
    uint32_t cp;
    size_t len;
    uint8_t cls;
} uchar;

static uchar char_at(const text_view *v, size_t i)
{
    uchar c = {0, 0, 0};
    if (i >= v->n) return c;
    c.cp = utf8_next(v->s + i, v->n - i, &c.len);
    c.cls = c.cp < 0x110000u ? uni_class(c.cp) : 0;
    return c;
}

static bool is_other(uchar c) /* [^\s\p{L}\p{N}] */
{
    return c.len && !(c.cls & (CLS_L | CLS_N | CLS_WS));
}
static bool is_crlf(uchar c)
{
    return c.cp == '\r' || c.cp == '\n';
}

/* End of the run of characters of class bits `cls` (or `other` when cls == 0) starting at i. */
static size_t run_end(const text_view *v, size_t i, uint8_t cls, size_t max_chars)
{
    size_t k = 0;
    while (i < v->n && k < max_chars) {
        uchar c = char_at(v, i);
        if (cls ? !(c.cls & cls) : !is_other(c)) break;
        i += c.len;
        k++;
    }
    return i;
}

static size_t match_contraction(const text_view *v, size_t i, bool ci)
{
    static const char *const k_suffix[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (v->s[i] != '\'') return 0;
    for (size_t k = 0; k < sizeof k_suffix / sizeof *k_suffix; k++) {
        size_t sl = strlen(k_suffix[k]);
        if (i + 1 + sl > v->n) continue;
        size_t j = 0;
        for (; j < sl; j++) {
            char c = (char)v->s[i + 1 + j];
            if (ci && c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            if (c != k_suffix[k][j]) break;
        }
        if (j == sl) return 1 + sl;
    }
    return 0;
}

/* \s+(?!\S) then \s+ at a whitespace character. */
static size_t match_ws_tail(const text_view *v, size_t i)
{
    size_t j = i, last = i;
    while (j < v->n) {
        uchar c = char_at(v, j);
        if (!(c.cls & CLS_WS)) break;
        last = j;
        j += c.len;
    }
    if (j == v->n || last == i) return j - i; /* at the end, or a single space before \S */
    return last - i;                          /* give back the last space: it precedes \S */
}

static size_t match_gpt2(const text_view *v, size_t i)
{
    size_t m = match_contraction(v, i, false);
    if (m) return m;
    const uchar c0 = char_at(v, i);
    const uint8_t classes[3] = {CLS_L, CLS_N, 0};
    for (int k = 0; k < 3; k++) { /* ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+` */
        const uint8_t cl = classes[k];
        size_t start = SIZE_MAX;
        if (c0.cp == ' ') {
            uchar c1 = char_at(v, i + 1);
            if (cl ? (c1.cls & cl) != 0 : is_other(c1)) start = i + 1;
        }
        if (start == SIZE_MAX && (cl ? (c0.cls & cl) != 0 : is_other(c0))) start = i;
        if (start != SIZE_MAX) return run_end(v, start, cl, SIZE_MAX) - i;
    }
    return match_ws_tail(v, i);
}

static size_t match_llama3(const text_view *v, size_t i, size_t max_digits)
{
    size_t m = match_contraction(v, i, true);
    if (m) return m;
    const uchar c0 = char_at(v, i);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (!is_crlf(c0) && !(c0.cls & (CLS_L | CLS_N))) {
        uchar c1 = char_at(v, i + c0.len);
        if (c1.cls & CLS_L) return run_end(v, i + c0.len, CLS_L, SIZE_MAX) - i;
    }
    if (c0.cls & CLS_L) return run_end(v, i, CLS_L, SIZE_MAX) - i;
    if (c0.cls & CLS_N) return run_end(v, i, CLS_N, max_digits) - i; /* \p{N}{1,3} or \p{N} */
    /* ` ?[^\s\p{L}\p{N}]+[\r\n]*` */
    size_t start = SIZE_MAX;
    if (c0.cp == ' ' && is_other(char_at(v, i + 1))) start = i + 1;
    if (start == SIZE_MAX && is_other(c0)) start = i;
    if (start != SIZE_MAX) {
        size_t j = run_end(v, start, 0, SIZE_MAX);
        while (j < v->n && (v->s[j] == '\r' || v->s[j] == '\n'))
            j++;
        return j - i;
    }
    /* \s*[\r\n]+ : up to and including the last CR/LF of the whitespace run */
    size_t j = i, end = 0;
    while (j < v->n) {
        uchar c = char_at(v, j);
        if (!(c.cls & CLS_WS)) break;
        j += c.len;
        if (is_crlf(c)) end = j;
    }
    if (end) return end - i;
    return match_ws_tail(v, i);
}

static size_t split_match(int kind, const text_view *v, size_t i)
{
    size_t m;
    switch (kind) {
    case SPLIT_GPT2:
        m = match_gpt2(v, i);
        break;
    case SPLIT_LLAMA3:
        m = match_llama3(v, i, 3);
        break;
    default:
        m = match_llama3(v, i, 1);
        break;
    }
    if (m == 0) { /* every character is L, N, whitespace or other: cannot happen; stay total */
        size_t cl;
        (void)utf8_next(v->s + i, v->n - i, &cl);
        m = cl;
    }
    return m;
}

// ---- token table
// ------------------------------------------------------------------------------------

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int32_t lookup(const wq_tok_json *t, const char *s, size_t n)
{
    for (uint64_t h = hash_bytes(s, n) & t->hmask;; h = (h + 1) & t->hmask) {
        int32_t id = t->htab[h];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->pool + t->off[id], s, n) == 0) return id;
    }
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* Merge of the pair (a, b): its rank and the merged id, or false. */
static bool merge_lookup(const wq_tok_json *t, int32_t a, int32_t b, int32_t *rank, int32_t *id)
{
    if (!t->mkey) return false;
    const uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (uint64_t h = mix64(key) & t->mmask;; h = (h + 1) & t->mmask) {
        if (t->mkey[h] == 0) return false;
        if (t->mkey[h] == key) {
            *rank = t->mrank[h];
            *id = t->mnew[h];
            return true;
        }
    }
}

// ---- loading
// ------------------------------------------------------------------------------------------

typedef struct {
    wq_tok_json *t;
    const char **str; /* [n] token text (borrowed from the cJSON tree) */
    int32_t cap;
} load_ctx;

static wq_status fmt_err(const wq_tok_json *t, const char *key, const char *what)
{
    WQ_LOG_ERROR("%s: key '%s': %s", t->origin, key, what);
    return WQ_ERR_FORMAT;
}

static wq_status unsup(const wq_tok_json *t, const char *key, const char *what)
{
    WQ_LOG_ERROR(
        "%s: key '%s': %s is not supported (wquant handles BPE tokenizer.json files of "
        "the GPT-2 / Llama-3 / Qwen2 byte-level and Llama-2 / Mistral SentencePiece kinds)",
        t->origin, key, what);
    return WQ_ERR_UNSUPPORTED;
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Optional boolean: absent or null -> dflt; anything but a boolean -> error. */
static wq_status json_bool(const wq_tok_json *t, const cJSON *o, const char *key, const char *path,
                           bool dflt, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = dflt;
    if (!v || cJSON_IsNull(v)) return WQ_OK;
    if (!cJSON_IsBool(v)) {
        char k[160];
        snprintf(k, sizeof k, "%s.%s", path, key);
        return fmt_err(t, k, "must be true or false");
    }
    *out = cJSON_IsTrue(v);
    return WQ_OK;
}

/* A JSON number that is an integer id in [0, INT32_MAX) (checked before any conversion). */
static bool json_id(const cJSON *v, int32_t *id)
{
    if (!cJSON_IsNumber(v)) return false;
    const double d = v->valuedouble;
    if (!(d >= 0.0 && d < 2147483647.0) || d != (double)(int32_t)d) return false;
    *id = (int32_t)d;
    return true;
}

static wq_status set_token(load_ctx *c, int32_t id, const char *s, const char *key)
{
    wq_tok_json *t = c->t;
    if (id < 0 || id >= c->cap) return fmt_err(t, key, "token id out of range");
    if (c->str[id] && strcmp(c->str[id], s) != 0) {
        WQ_LOG_ERROR("%s: key '%s': id %d is both '%s' and '%s'", t->origin, key, (int)id,
                     c->str[id], s);
        return WQ_ERR_FORMAT;
    }
    if (s[0] == '\0') return fmt_err(t, key, "empty token");
    c->str[id] = s;
    if (id >= t->n) t->n = id + 1;
    return WQ_OK;
}

static wq_status build_pool(load_ctx *c)
{
    wq_tok_json *t = c->t;
    size_t bytes = 0;
    for (int32_t i = 0; i < t->n; i++) {
        if (!c->str[i]) {
            WQ_LOG_ERROR("%s: key 'model.vocab': id %d has no token (ids must be 0..%d without "
                         "gaps, counting added_tokens)",
                         t->origin, (int)i, (int)t->n - 1);
            return WQ_ERR_FORMAT;
        }
        bytes += strlen(c->str[i]) + 1;
    }
    if (bytes >= UINT32_MAX) return fmt_err(t, "model.vocab", "vocabulary too large");
    t->pool = wq_malloc(bytes);
    t->off = wq_malloc((size_t)t->n * sizeof *t->off);
    t->len = wq_malloc((size_t)t->n * sizeof *t->len);
    t->type = wq_malloc((size_t)t->n);
    t->rank_of = wq_malloc((size_t)t->n * sizeof *t->rank_of);
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)t->n)
        cap <<= 1;
    t->htab = wq_malloc(cap * sizeof *t->htab);
    if (!t->pool || !t->off || !t->len || !t->type || !t->rank_of || !t->htab) {
        WQ_LOG_ERROR("%s: out of memory for %d tokens", t->origin, (int)t->n);
        return WQ_ERR_NOMEM;
    }
    memset(t->htab, 0xff, cap * sizeof *t->htab);
    t->hmask = cap - 1;
    size_t o = 0;
    for (int32_t i = 0; i < t->n; i++) {
        size_t l = strlen(c->str[i]);
        memcpy(t->pool + o, c->str[i], l + 1);
        t->off[i] = (uint32_t)o;
        t->len[i] = (uint32_t)l;
        t->type[i] = WQ_TOK_NORMAL;
        t->rank_of[i] = -1;
        o += l + 1;
        uint64_t h = hash_bytes(c->str[i], l) & t->hmask;
        for (; t->htab[h] >= 0; h = (h + 1) & t->hmask) {
            if (t->len[t->htab[h]] == l &&
                memcmp(t->pool + t->off[t->htab[h]], c->str[i], l) == 0) {
                WQ_LOG_ERROR("%s: key 'model.vocab': token '%s' has two ids (%d, %d)", t->origin,
                             c->str[i], (int)t->htab[h], (int)i);
                return WQ_ERR_FORMAT;
            }
        }
        t->htab[h] = i;
    }
    return WQ_OK;
}

static wq_status parse_vocab(load_ctx *c, const cJSON *model, const cJSON *added)
{
    wq_tok_json *t = c->t;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!vocab) return fmt_err(t, "model.vocab", "missing");
    if (!cJSON_IsObject(vocab)) return fmt_err(t, "model.vocab", "must be an object {token: id}");
    const int nv = cJSON_GetArraySize(vocab),
              na = cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0;
    if (nv < 1) return fmt_err(t, "model.vocab", "empty vocabulary");
    c->cap = nv + na;
    c->str = wq_calloc((size_t)c->cap, sizeof *c->str);
    if (!c->str) return WQ_ERR_NOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        char key[96];
        snprintf(key, sizeof key, "model.vocab[\"%.60s\"]", e->string ? e->string : "");
        int32_t id;
        if (!json_id(e, &id)) return fmt_err(t, key, "id must be a non-negative integer");
        WQ_TRY(set_token(c, id, e->string, key));
    }
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return fmt_err(t, "added_tokens", "must be an array");
    t->added = wq_calloc((size_t)(na ? na : 1), sizeof *t->added);
    if (!t->added) return WQ_ERR_NOMEM;
    int k = 0;
    cJSON_ArrayForEach(e, added)
    {
        char key[64];
        snprintf(key, sizeof key, "added_tokens[%d]", k++);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const char *content = json_str(e, "content");
        int32_t idv;
        if (!json_id(id, &idv) || !content)
            return fmt_err(t, key, "needs a non-negative integer 'id' and a string 'content'");
        WQ_TRY(set_token(c, idv, content, key));
        added_tok *a = &t->added[t->n_added++];
        a->id = idv;
        bool special, single_word;
        WQ_TRY(json_bool(t, e, "special", key, false, &special));
        WQ_TRY(json_bool(t, e, "lstrip", key, false, &a->lstrip));
        WQ_TRY(json_bool(t, e, "rstrip", key, false, &a->rstrip));
        WQ_TRY(json_bool(t, e, "single_word", key, false, &single_word));
        if (single_word) return unsup(t, key, "single_word = true");
        (void)special; /* types are set after the pool exists */
    }
    return WQ_OK;
}

static wq_status finish_added(wq_tok_json *t, const cJSON *added)
{
    const cJSON *e;
    int k = 0;
    cJSON_ArrayForEach(e, added)
    {
        bool special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
        int32_t id = t->added[k++].id;
        t->type[id] = special ? WQ_TOK_CONTROL : WQ_TOK_USER_DEFINED;
    }
    /* insertion sort by (first byte, length desc): a few hundred entries at most in practice */
    for (int32_t i = 1; i < t->n_added; i++) {
        added_tok x = t->added[i];
        const uint8_t fx = (uint8_t)t->pool[t->off[x.id]];
        int32_t j = i - 1;
        while (j >= 0) {
            const added_tok *y = &t->added[j];
            const uint8_t fy = (uint8_t)t->pool[t->off[y->id]];
            if (fy < fx || (fy == fx && t->len[y->id] >= t->len[x.id])) break;
            t->added[j + 1] = t->added[j];
            j--;
        }
        t->added[j + 1] = x;
    }
    int32_t i = 0;
    for (int b = 0; b <= 256; b++) {
        while (i < t->n_added && (uint8_t)t->pool[t->off[t->added[i].id]] < b)
            i++;
        t->added_first[b] = b == 256 ? t->n_added : i;
    }
    return WQ_OK;
}

static wq_status parse_merges(wq_tok_json *t, const cJSON *model)
{
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!merges) return fmt_err(t, "model.merges", "missing");
    if (!cJSON_IsArray(merges)) return fmt_err(t, "model.merges", "must be an array");
    const int nm = cJSON_GetArraySize(merges);
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)nm)
        cap <<= 1;
    t->mkey = wq_calloc(cap, sizeof *t->mkey);
    t->mrank = wq_malloc(cap * sizeof *t->mrank);
    t->mnew = wq_malloc(cap * sizeof *t->mnew);
    if (!t->mkey || !t->mrank || !t->mnew) return WQ_ERR_NOMEM;
    t->mmask = cap - 1;
    char *cat = NULL;
    size_t cat_cap = 0;
    wq_status st = WQ_OK;
    int32_t rank = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges)
    {
        char key[64];
        snprintf(key, sizeof key, "model.merges[%d]", (int)rank);
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (cJSON_IsString(e)) { /* "a b": exactly one space */
            a = e->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = fmt_err(t, key, "a merge string must be two tokens separated by one space");
                goto done;
            }
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            al = strlen(a);
            bl = strlen(b);
        } else {
            st = fmt_err(t, key, "must be \"a b\" or [\"a\", \"b\"]");
            goto done;
        }
        const int32_t ia = lookup(t, a, al), ib = lookup(t, b, bl);
        if (al + bl + 1 > cat_cap) {
            wq_free(cat);
            cat_cap = 2 * (al + bl + 1);
            cat = wq_malloc(cat_cap);
            WQ_CHECK_GOTO(cat, st, WQ_ERR_NOMEM, done, "%s: out of memory", t->origin);
        }
        memcpy(cat, a, al);
        memcpy(cat + al, b, bl);
        const int32_t inew = ia >= 0 && ib >= 0 ? lookup(t, cat, al + bl) : -1;
        if (inew < 0) {
            WQ_LOG_ERROR("%s: key '%s': merge '%.*s' + '%.*s' names a token that is not in the "
                         "vocabulary",
                         t->origin, key, (int)al, a, (int)bl, b);
            st = WQ_ERR_FORMAT;
            goto done;
        }
        /* A repeated pair keeps its last rank (the tokenizers crate builds a map). */
        const uint64_t k = (((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib) + 1;
        uint64_t h = mix64(k) & t->mmask;
        while (t->mkey[h] != 0 && t->mkey[h] != k)
            h = (h + 1) & t->mmask;
        t->mkey[h] = k;
        t->mrank[h] = rank;
        t->mnew[h] = inew;
        if (t->rank_of[inew] < 0) t->rank_of[inew] = rank;
        rank++;
    }
done:
    wq_free(cat);
    return st;
}

static int byte_piece_value(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static wq_status parse_model(load_ctx *c, const cJSON *root)
{
    wq_tok_json *t = c->t;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!model) return fmt_err(t, "model", "missing");
    if (!cJSON_IsObject(model)) return fmt_err(t, "model", "must be an object");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !cJSON_IsString(type)) return fmt_err(t, "model.type", "must be a string");
    if (type && strcmp(type->valuestring, "BPE") != 0) {
        char what[96];
        snprintf(what, sizeof what, "model type '%.40s' (only BPE)", type->valuestring);
        return unsup(t, "model.type", what);
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    WQ_TRY(parse_vocab(c, model, added));
    WQ_TRY(build_pool(c));
    WQ_TRY(finish_added(t, added));
    WQ_TRY(parse_merges(t, model));
    WQ_TRY(json_bool(t, model, "byte_fallback", "model", false, &t->byte_fallback));
    WQ_TRY(json_bool(t, model, "fuse_unk", "model", false, &t->fuse_unk));
    WQ_TRY(json_bool(t, model, "ignore_merges", "model", false, &t->ignore_merges));
    static const char *const k_none[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, k_none[k]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && v->valuestring[0] == '\0')) {
            char key[64];
            snprintf(key, sizeof key, "model.%s", k_none[k]);
            return unsup(t, key, "a subword prefix/suffix");
        }
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) &&
        !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return unsup(t, "model.dropout", "BPE dropout");
    t->unk_id = -1;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (unk && !cJSON_IsNull(unk)) {
        if (!cJSON_IsString(unk)) return fmt_err(t, "model.unk_token", "must be a string or null");
        t->unk_id = lookup(t, unk->valuestring, strlen(unk->valuestring));
        if (t->unk_id < 0) return fmt_err(t, "model.unk_token", "not in the vocabulary");
        t->type[t->unk_id] = WQ_TOK_UNKNOWN;
    }
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    for (int32_t i = 0; i < t->n; i++) {
        int v = byte_piece_value(t->pool + t->off[i], t->len[i]);
        if (v >= 0) {
            t->byte_id[v] = i;
            if (t->byte_fallback && t->type[i] == WQ_TOK_NORMAL) t->type[i] = WQ_TOK_BYTE;
        }
    }
    return WQ_OK;
}

static wq_status parse_normalizer(wq_tok_json *t, const cJSON *n, const char *key)
{
    if (!n || cJSON_IsNull(n)) return WQ_OK;
    const char *type = json_str(n, "type");
    char k[96];
    if (!type) return fmt_err(t, key, "a normalizer needs a string 'type'");
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list)) {
            snprintf(k, sizeof k, "%s.normalizers", key);
            return fmt_err(t, k, "must be an array");
        }
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, list)
        {
            snprintf(k, sizeof k, "%s.normalizers[%d]", key, i++);
            WQ_TRY(parse_normalizer(t, e, k));
        }
        return WQ_OK;
    }
    if (strcmp(type, "NFC") == 0) {
        t->nfc = true; /* applied first, whatever its place in a Sequence */
        return WQ_OK;
    }
    if (t->n_norm == MAX_NORM_STEPS) return unsup(t, key, "more than 8 normalizer steps");
    norm_step *s = &t->norm[t->n_norm];
    if (strcmp(type, "Prepend") == 0) {
        const char *p = json_str(n, "prepend");
        snprintf(k, sizeof k, "%s.prepend", key);
        if (!p) return fmt_err(t, k, "must be a string");
        s->kind = NORM_PREPEND;
        s->a = wq_strdup(p);
        s->al = strlen(p);
    } else if (strcmp(type, "Replace") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *from = json_str(pat, "String"), *to = json_str(n, "content");
        snprintf(k, sizeof k, "%s.pattern", key);
        if (!from) return unsup(t, k, "a Replace pattern other than {\"String\": ...}");
        if (!to || from[0] == '\0')
            return fmt_err(t, key, "Replace needs a non-empty pattern and a content");
        s->kind = NORM_REPLACE;
        s->a = wq_strdup(from);
        s->al = strlen(from);
        s->b = wq_strdup(to);
        s->bl = strlen(to);
        if (!s->b) return WQ_ERR_NOMEM;
    } else {
        char what[96];
        snprintf(what, sizeof what, "normalizer '%.40s'", type);
        snprintf(k, sizeof k, "%s.type", key);
        return unsup(t, k, what);
    }
    if (!s->a) return WQ_ERR_NOMEM;
    t->n_norm++;
    return WQ_OK;
}

static wq_status parse_prepend_scheme(wq_tok_json *t, const cJSON *o, const char *key, int *out)
{
    const char *ps = json_str(o, "prepend_scheme");
    char k[96];
    snprintf(k, sizeof k, "%s.prepend_scheme", key);
    if (ps) {
        if (strcmp(ps, "always") == 0)
            *out = META_ALWAYS;
        else if (strcmp(ps, "first") == 0)
            *out = META_FIRST;
        else if (strcmp(ps, "never") == 0)
            *out = META_NEVER;
        else
            return fmt_err(t, k, "must be always, first or never");
        return WQ_OK;
    }
    bool add = true; /* the legacy form */
    WQ_TRY(json_bool(t, o, "add_prefix_space", key, true, &add));
    *out = add ? META_ALWAYS : META_NEVER;
    return WQ_OK;
}

static wq_status parse_replacement(wq_tok_json *t, const cJSON *o, const char *key, char *rep,
                                   size_t *rep_len)
{
    const char *r = json_str(o, "replacement");
    char k[96];
    snprintf(k, sizeof k, "%s.replacement", key);
    if (!r) return fmt_err(t, k, "must be a string");
    size_t cl = 0;
    if (r[0] == '\0' || (utf8_next((const uint8_t *)r, strlen(r), &cl), cl != strlen(r)))
        return fmt_err(t, k, "must be one character");
    memcpy(rep, r, cl);
    *rep_len = cl;
    return WQ_OK;
}

static wq_status parse_pretok(wq_tok_json *t, const cJSON *p, const char *key, int depth)
{
    if (!p || cJSON_IsNull(p)) return WQ_OK;
    const char *type = json_str(p, "type");
    char k[96];
    if (!type) return fmt_err(t, key, "a pre-tokenizer needs a string 'type'");
    if (strcmp(type, "Sequence") == 0 && depth == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list)) {
            snprintf(k, sizeof k, "%s.pretokenizers", key);
            return fmt_err(t, k, "must be an array");
        }
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, list)
        {
            snprintf(k, sizeof k, "%s.pretokenizers[%d]", key, i++);
            WQ_TRY(parse_pretok(t, e, k, depth + 1));
        }
        return WQ_OK;
    }
    if (strcmp(type, "Split") == 0) {
        if (t->split || t->byte_level || t->metaspace)
            return unsup(t, key, "a Split that is not the first pre-tokenizer");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *re = json_str(pat, "Regex"), *behavior = json_str(p, "behavior");
        bool invert = false;
        WQ_TRY(json_bool(t, p, "invert", key, false, &invert));
        snprintf(k, sizeof k, "%s.pattern.Regex", key);
        if (!re) return unsup(t, k, "a Split without a Regex pattern");
        for (int s = SPLIT_GPT2; s <= SPLIT_QWEN2; s++)
            if (strcmp(re, k_split_regex[s]) == 0) t->split = s;
        if (!t->split) {
            WQ_LOG_ERROR("%s: key '%s': unknown split regex \"%.200s\" (wquant matches only the "
                         "GPT-2, Llama-3 and Qwen2 patterns, by hand, without a regex engine)",
                         t->origin, k, re);
            return WQ_ERR_UNSUPPORTED;
        }
        snprintf(k, sizeof k, "%s.behavior", key);
        if (!behavior || strcmp(behavior, "Isolated") != 0 || invert)
            return unsup(t, k, "a Split behavior other than Isolated (or invert = true)");
        return WQ_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        if (t->byte_level || t->metaspace) return unsup(t, key, "a second word splitter");
        bool use_regex = true;
        WQ_TRY(json_bool(t, p, "add_prefix_space", key, false, &t->bl_prefix_space));
        WQ_TRY(json_bool(t, p, "use_regex", key, true, &use_regex));
        if (use_regex) {
            if (t->split) return unsup(t, key, "ByteLevel.use_regex after a Split");
            t->split = SPLIT_GPT2;
            t->split_from_bl = true;
        }
        t->byte_level = true;
        return WQ_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        if (t->byte_level || t->metaspace || t->split)
            return unsup(t, key, "Metaspace after another pre-tokenizer");
        WQ_TRY(parse_replacement(t, p, key, t->meta_rep, &t->meta_rep_len));
        WQ_TRY(parse_prepend_scheme(t, p, key, &t->meta_prepend));
        WQ_TRY(json_bool(t, p, "split", key, true, &t->meta_split));
        t->metaspace = true;
        return WQ_OK;
    }
    char what[96];
    snprintf(what, sizeof what, "pre-tokenizer '%.40s'", type);
    snprintf(k, sizeof k, "%s.type", key);
    return unsup(t, k, what);
}

static wq_status parse_decoder(wq_tok_json *t, const cJSON *d, const char *key, int depth)
{
    if (!d || cJSON_IsNull(d)) return WQ_OK;
    const char *type = json_str(d, "type");
    char k[96];
    if (!type) return fmt_err(t, key, "a decoder needs a string 'type'");
    if (strcmp(type, "Sequence") == 0 && depth == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders");
        if (!cJSON_IsArray(list)) {
            snprintf(k, sizeof k, "%s.decoders", key);
            return fmt_err(t, k, "must be an array");
        }
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, list)
        {
            snprintf(k, sizeof k, "%s.decoders[%d]", key, i++);
            WQ_TRY(parse_decoder(t, e, k, depth + 1));
        }
        return WQ_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        t->dec_kind = DEC_BYTELEVEL;
        return WQ_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        char rep[8];
        size_t rl = 0;
        WQ_TRY(parse_replacement(t, d, key, rep, &rl));
        if (rl != 3 || memcmp(rep, WS_SYM, 3) != 0)
            return unsup(t, key, "a Metaspace replacement other than U+2581");
        WQ_TRY(parse_prepend_scheme(t, d, key, &t->dec_meta_prepend));
        t->dec_kind = DEC_SP;
        t->dec_meta = true;
        return WQ_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(d, "pattern");
        const char *from = json_str(pat, "String"), *to = json_str(d, "content");
        if (!from || !to || strcmp(from, WS_SYM) != 0 || strcmp(to, " ") != 0)
            return unsup(t, key, "a Replace decoder other than \"\\u2581\" -> \" \"");
        t->dec_kind = DEC_SP;
        return WQ_OK;
    }
    if (strcmp(type, "ByteFallback") == 0) {
        t->dec_byte_fallback = true;
        return WQ_OK;
    }
    if (strcmp(type, "Fuse") == 0) return WQ_OK; /* decode always fuses */
    if (strcmp(type, "Strip") == 0) {
        const char *content = json_str(d, "content");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(d, "start"),
                    *b = cJSON_GetObjectItemCaseSensitive(d, "stop");
        if (!content || strcmp(content, " ") != 0 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
            a->valuedouble < 0 || a->valuedouble > 64 || b->valuedouble < 0 || b->valuedouble > 64)
            return unsup(t, key, "a Strip decoder other than of spaces (start, stop <= 64)");
        t->dec_strip_start = (int)a->valuedouble;
        t->dec_strip_stop = (int)b->valuedouble;
        return WQ_OK;
    }
    char what[96];
    snprintf(what, sizeof what, "decoder '%.40s'", type);
    snprintf(k, sizeof k, "%s.type", key);
    return unsup(t, k, what);
}

/* The id of a special-token name from tokenizer_config.json ("x" or {"content": "x"}). */
static wq_status config_token(wq_tok_json *t, const cJSON *cfg, const char *name, const char *file,
                              int32_t *id)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, name);
    if (!v || cJSON_IsNull(v)) return WQ_OK;
    const char *s = cJSON_IsString(v) ? v->valuestring : json_str(v, "content");
    if (!s) {
        WQ_LOG_ERROR("%s: key '%s': must be a string or {\"content\": string}", file, name);
        return WQ_ERR_FORMAT;
    }
    int32_t i = lookup(t, s, strlen(s));
    if (i < 0) {
        WQ_LOG_ERROR("%s: key '%s': token '%s' is not in %s", file, name, s, t->origin);
        return WQ_ERR_FORMAT;
    }
    *id = i;
    return WQ_OK;
}

/* BOS / EOS from a TemplateProcessing post-processor (the special tokens around $A). */
static void template_specials(wq_tok_json *t, const cJSON *pp)
{
    const char *type = json_str(pp, "type");
    if (!type) return;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(pp, "processors"))
        {
            template_specials(t, e);
        }
        return;
    }
    if (strcmp(type, "TemplateProcessing") != 0) return;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    const int n = cJSON_GetArraySize(single);
    for (int end = 0; end < 2 && n > 0; end++) {
        const cJSON *item = cJSON_GetArrayItem(single, end == 0 ? 0 : n - 1);
        const char *name = json_str(cJSON_GetObjectItemCaseSensitive(item, "SpecialToken"), "id");
        if (!name) continue;
        int32_t id = lookup(t, name, strlen(name));
        if (id < 0) continue;
        if (end == 0)
            t->bos_id = id;
        else
            t->eos_id = id;
    }
}

static void init_byte_map(wq_tok_json *t)
{
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
     * U+0100.. in byte order. */
    int next = 256;
    for (int i = 0; i < 324; i++)
        t->byte_dec[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int cp = keep ? b : next++;
        t->byte_enc_len[b] = (uint8_t)utf8_put((uint32_t)cp, t->byte_enc[b]);
        t->byte_dec[cp] = (int16_t)b;
    }
}

static wq_status parse_root(wq_tok_json *t, const cJSON *root)
{
    load_ctx c = {t, NULL, 0};
    wq_status st = WQ_OK;
    if (!cJSON_IsObject(root)) return fmt_err(t, "(root)", "not a JSON object");
    WQ_TRY_GOTO(parse_model(&c, root), st, done);
    WQ_TRY_GOTO(
        parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer"), st,
        done);
    WQ_TRY_GOTO(parse_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"),
                             "pre_tokenizer", 0),
                st, done);
    WQ_TRY_GOTO(parse_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), "decoder", 0),
                st, done);
    if (t->byte_level && t->dec_kind == DEC_SP) {
        st = unsup(t, "decoder", "a SentencePiece decoder on a byte-level model");
        goto done;
    }
    t->bos_id = t->eos_id = t->pad_id = -1;
    template_specials(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    init_byte_map(t);
done:
    wq_free(c.str);
    return st;
}

void wq_tok_json_free(wq_tok_json *t)
{
    if (!t) return;
    for (int i = 0; i < MAX_NORM_STEPS; i++) {
        wq_free(t->norm[i].a);
        wq_free(t->norm[i].b);
    }
    wq_free(t->origin);
    wq_free(t->pool);
    wq_free(t->off);
    wq_free(t->len);
    wq_free(t->type);
    wq_free(t->rank_of);
    wq_free(t->htab);
    wq_free(t->mkey);
    wq_free(t->mrank);
    wq_free(t->mnew);
    wq_free(t->added);
    wq_free(t);
}

wq_status wq_tok_json_load_mem(const void *data, size_t size, const char *origin, wq_tok_json **out)
{
    wq_status st = WQ_OK;
    cJSON *root = NULL;
    wq_tok_json *t = NULL;
    if (!out || (!data && size)) return WQ_ERR_ARG;
    *out = NULL;
    if (!origin) origin = "<memory>";
    t = wq_calloc(1, sizeof *t);
    WQ_CHECK_GOTO(t, st, WQ_ERR_NOMEM, done, "%s: out of memory", origin);
    t->origin = wq_strdup(origin);
    WQ_CHECK_GOTO(t->origin, st, WQ_ERR_NOMEM, done, "%s: out of memory", origin);
    root = cJSON_ParseWithLength(data ? (const char *)data : "", size);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && data && at >= (const char *)data && at <= (const char *)data + size
                         ? (size_t)(at - (const char *)data)
                         : 0;
        WQ_LOG_ERROR("%s: malformed JSON near byte %zu", origin, off);
        st = WQ_ERR_FORMAT;
        goto done;
    }
    WQ_TRY_GOTO(parse_root(t, root), st, done);
    *out = t;
    t = NULL;
done:
    cJSON_Delete(root);
    wq_tok_json_free(t);
    return st;
}

static wq_status read_file(const char *path, char **buf, size_t *n)
{
    wq_status st = WQ_OK;
    FILE *fp = fopen(path, "rb");
    char *b = NULL;
    long sz = -1;
    WQ_CHECK_GOTO(fp, st, WQ_ERR_IO, done, "%s: cannot open: %s", path, strerror(errno));
    WQ_CHECK_GOTO(fseek(fp, 0, SEEK_END) == 0 && (sz = ftell(fp)) >= 0 &&
                      fseek(fp, 0, SEEK_SET) == 0,
                  st, WQ_ERR_IO, done, "%s: cannot determine the size: %s", path, strerror(errno));
    b = wq_malloc((size_t)sz + 1);
    WQ_CHECK_GOTO(b, st, WQ_ERR_NOMEM, done, "%s: out of memory for %ld bytes", path, sz);
    WQ_CHECK_GOTO(fread(b, 1, (size_t)sz, fp) == (size_t)sz, st, WQ_ERR_IO, done, "%s: read error",
                  path);
    b[sz] = '\0';
    *buf = b;
    *n = (size_t)sz;
    b = NULL;
done:
    if (fp) fclose(fp);
    wq_free(b);
    return st;
}

/* tokenizer_config.json beside the tokenizer.json, when there is one: the special token ids. */
static wq_status load_config(wq_tok_json *t, const char *path)
{
    wq_status st = WQ_OK;
    const char *slash = strrchr(path, '/');
    const size_t dl = slash ? (size_t)(slash - path + 1) : 0;
    char *file = wq_malloc(dl + sizeof "tokenizer_config.json");
    char *buf = NULL;
    size_t n = 0;
    cJSON *cfg = NULL;
    WQ_CHECK_GOTO(file, st, WQ_ERR_NOMEM, done, "out of memory");
    memcpy(file, path, dl);
    memcpy(file + dl, "tokenizer_config.json", sizeof "tokenizer_config.json");
    struct stat sb;
    if (stat(file, &sb) != 0) goto done;
    WQ_TRY_GOTO(read_file(file, &buf, &n), st, done);
    cfg = cJSON_ParseWithLength(buf, n);
    WQ_CHECK_GOTO(cJSON_IsObject(cfg), st, WQ_ERR_FORMAT, done,
                  "%s: malformed JSON (not an object)", file);
    WQ_TRY_GOTO(config_token(t, cfg, "bos_token", file, &t->bos_id), st, done);
    WQ_TRY_GOTO(config_token(t, cfg, "eos_token", file, &t->eos_id), st, done);
    WQ_TRY_GOTO(config_token(t, cfg, "pad_token", file, &t->pad_id), st, done);
done:
    cJSON_Delete(cfg);
    wq_free(buf);
    wq_free(file);
    return st;
}

wq_status wq_tok_json_load(const char *path, wq_tok_json **out)
{
    wq_status st = WQ_OK;
    char *buf = NULL;
    size_t n = 0;
    if (!path || !out) return WQ_ERR_ARG;
    *out = NULL;
    WQ_TRY_GOTO(read_file(path, &buf, &n), st, done);
    WQ_TRY_GOTO(wq_tok_json_load_mem(buf, n, path, out), st, done);
    WQ_TRY_GOTO(load_config(*out, path), st, done);
    WQ_LOG_DEBUG("%s: %d tokens, %d added, bos %d eos %d unk %d, byte_level %d, split %d, "
                 "metaspace %d, byte_fallback %d",
                 path, (int)(*out)->n, (int)(*out)->n_added, (*out)->bos_id, (*out)->eos_id,
                 (*out)->unk_id, (*out)->byte_level, (*out)->split, (*out)->metaspace,
                 (*out)->byte_fallback);
done:
    if (st != WQ_OK && out) {
        wq_tok_json_free(*out);
        *out = NULL;
    }
    wq_free(buf);
    return st;
}

// ---- queries
// ------------------------------------------------------------------------------------------

int64_t wq_tok_json_vocab_size(const wq_tok_json *t)
{
    return t->n;
}
int32_t wq_tok_json_bos(const wq_tok_json *t)
{
    return t->bos_id;
}
int32_t wq_tok_json_eos(const wq_tok_json *t)
{
    return t->eos_id;
}
int32_t wq_tok_json_unk(const wq_tok_json *t)
{
    return t->unk_id;
}
int32_t wq_tok_json_pad(const wq_tok_json *t)
{
    return t->pad_id;
}
const char *wq_tok_json_piece(const wq_tok_json *t, int32_t id)
{
    return id >= 0 && id < t->n ? t->pool + t->off[id] : NULL;
}
wq_tok_piece_type wq_tok_json_type(const wq_tok_json *t, int32_t id)
{
    return id >= 0 && id < t->n ? (wq_tok_piece_type)t->type[id] : (wq_tok_piece_type)0;
}
float wq_tok_json_score(const wq_tok_json *t, int32_t id)
{
    return id >= 0 && id < t->n && t->rank_of[id] >= 0 ? -(float)t->rank_of[id] : 0.0f;
}
int32_t wq_tok_json_piece_id(const wq_tok_json *t, const char *piece, size_t len)
{
    return piece ? lookup(t, piece, len) : -1;
}

// ---- encoding
// -------------------------------------------------------------------------------------------

typedef struct {
    int32_t *a;
    size_t n, cap;
} i32vec;

static bool vec_push(i32vec *v, int32_t x)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 256;
        int32_t *a = wq_malloc(cap * sizeof *a);
        if (!a) return false;
        if (v->n) memcpy(a, v->a, v->n * sizeof *a);
        wq_free(v->a);
        v->a = a;
        v->cap = cap;
    }
    v->a[v->n++] = x;
    return true;
}

typedef struct {
    int32_t id, len; /* len 0: merged into its left neighbour */
    int32_t prev, next;
} sym;

typedef struct {
    int32_t rank, pos, id;
} cand;

static bool cand_before(const cand *x, const cand *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

WQ_HEAP_DEFINE(cand_heap, cand, cand_before)

typedef struct {
    const wq_tok_json *t;
    i32vec *out;
    sym *s;
    size_t s_cap;
    cand_heap h;
    char *buf; /* byte-level mapped word */
    size_t buf_cap;
} enc_state;

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = wq_malloc(c * elem);
    if (!q) return false;
    wq_free(*p);
    *p = q;
    *cap = c;
    return true;
}



static bool push_pair(enc_state *e, int32_t pos)
{
    if (pos < 0 || e->s[pos].next < 0) return true;
    int32_t rank, id;
    if (!merge_lookup(e->t, e->s[pos].id, e->s[e->s[pos].next].id, &rank, &id)) return true;
    return cand_heap_push(&e->h, (cand){rank, pos, id});
}

/* BPE of one pre-tokenized word (already byte-mapped for byte-level models): the tokenizers
 * crate's BPE::merge_word + Word::merge_all. */
static wq_status bpe_word(enc_state *e, const char *w, size_t wl)
{
    const wq_tok_json *t = e->t;
    if (wl == 0) return WQ_OK;
    if (t->ignore_merges) {
        int32_t id = lookup(t, w, wl);
        if (id >= 0) return vec_push(e->out, id) ? WQ_OK : WQ_ERR_NOMEM;
    }
    if (!grow((void **)&e->s, &e->s_cap, wl, sizeof *e->s)) return WQ_ERR_NOMEM;
    int32_t ns = 0, unk_len = 0;
    int32_t unk = -1; /* pending unk symbol (fuse_unk extends it) */
#define ADD_SYM(ID, LEN) (e->s[ns] = (sym){(ID), (LEN), ns - 1, ns + 1}, ns++)
    for (size_t i = 0; i < wl;) {
        size_t cl;
        (void)utf8_next((const uint8_t *)w + i, wl - i, &cl);
        int32_t id = lookup(t, w + i, cl);
        if (id >= 0) {
            if (unk >= 0) {
                ADD_SYM(unk, unk_len);
                unk = -1;
            }
            ADD_SYM(id, (int32_t)cl);
            i += cl;
            continue;
        }
        if (t->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < cl; k++)
                all = all && t->byte_id[(uint8_t)w[i + k]] >= 0;
            if (all) { /* as the crate: a pending unk is not flushed before the bytes */
                for (size_t k = 0; k < cl; k++)
                    ADD_SYM(t->byte_id[(uint8_t)w[i + k]], 1);
                i += cl;
                continue;
            }
        }
        if (t->unk_id >= 0) {
            if (unk >= 0 && t->fuse_unk) {
                unk_len += (int32_t)cl;
            } else {
                if (unk >= 0) ADD_SYM(unk, unk_len);
                unk = t->unk_id;
                unk_len = (int32_t)cl;
            }
        }
        i += cl;
    }
    if (unk >= 0) ADD_SYM(unk, unk_len);
#undef ADD_SYM
    if (ns == 0) return WQ_OK;
    e->s[ns - 1].next = -1;
    e->h.n = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        if (!push_pair(e, i)) return WQ_ERR_NOMEM;
    while (e->h.n > 0) {
        cand c = cand_heap_pop(&e->h);
        sym *L = &e->s[c.pos];
        if (L->len == 0 || L->next < 0) continue;
        sym *R = &e->s[L->next];
        int32_t rank, id;
        if (!merge_lookup(t, L->id, R->id, &rank, &id) || id != c.id) continue; /* stale */
        L->id = c.id;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) e->s[R->next].prev = c.pos;
        if (!push_pair(e, L->prev) || !push_pair(e, c.pos)) return WQ_ERR_NOMEM;
    }
    for (int32_t i = 0; i >= 0; i = e->s[i].next)
        if (!vec_push(e->out, e->s[i].id)) return WQ_ERR_NOMEM;
    return WQ_OK;
}

/* A word after pre-tokenization: byte-mapped when the model is byte-level, then BPE. */
static wq_status emit_word(enc_state *e, const char *w, size_t wl)
{
    const wq_tok_json *t = e->t;
    if (!t->byte_level) return bpe_word(e, w, wl);
    if (!grow((void **)&e->buf, &e->buf_cap, 2 * wl + 1, 1)) return WQ_ERR_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < wl; i++) {
        const uint8_t b = (uint8_t)w[i];
        memcpy(e->buf + o, t->byte_enc[b], t->byte_enc_len[b]);
        o += t->byte_enc_len[b];
    }
    return bpe_word(e, e->buf, o);
}

/* Splits s by the regex matcher; with prefix, each word starts with a space (ByteLevel's
 * add_prefix_space applied after an earlier Split). */
static wq_status split_words(enc_state *e, const char *s, size_t n, bool prefix_each)
{
    const wq_tok_json *t = e->t;
    const text_view v = {(const uint8_t *)s, n};
    char *tmp = NULL;
    size_t tmp_cap = 0;
    wq_status st = WQ_OK;
    for (size_t i = 0; i < n && st == WQ_OK;) {
        size_t m = t->split ? split_match(t->split, &v, i) : n - i;
        if (prefix_each && s[i] != ' ') {
            if (!grow((void **)&tmp, &tmp_cap, m + 1, 1)) {
                st = WQ_ERR_NOMEM;
                break;
            }
            tmp[0] = ' ';
            memcpy(tmp + 1, s + i, m);
            st = emit_word(e, tmp, m + 1);
        } else {
            st = emit_word(e, s + i, m);
        }
        i += m;
    }
    wq_free(tmp);
    return st;
}

/* Normalizer steps into a fresh buffer; *out is wq_malloc'd. */
static wq_status normalize(const wq_tok_json *t, const char *s, size_t n, char **out, size_t *on)
{
    char *cur = wq_malloc(n + 1);
    if (!cur) return WQ_ERR_NOMEM;
    memcpy(cur, s, n);
    size_t cn = n;
    for (int k = 0; k < t->n_norm; k++) {
        const norm_step *ns = &t->norm[k];
        if (cn == 0) break; /* Prepend leaves empty text empty; Replace has nothing to do */
        size_t hits = 0;
        if (ns->kind == NORM_REPLACE) {
            for (size_t i = 0; i + ns->al <= cn;) {
                if (memcmp(cur + i, ns->a, ns->al) == 0) {
                    hits++;
                    i += ns->al;
                } else {
                    i++;
                }
            }
        }
        const size_t nn =
            ns->kind == NORM_PREPEND ? cn + ns->al : cn - hits * ns->al + hits * ns->bl;
        char *nx = wq_malloc(nn + 1);
        if (!nx) {
            wq_free(cur);
            return WQ_ERR_NOMEM;
        }
        if (ns->kind == NORM_PREPEND) {
            memcpy(nx, ns->a, ns->al);
            memcpy(nx + ns->al, cur, cn);
        } else {
            size_t o = 0;
            for (size_t i = 0; i < cn;) {
                if (i + ns->al <= cn && memcmp(cur + i, ns->a, ns->al) == 0) {
                    memcpy(nx + o, ns->b, ns->bl);
                    o += ns->bl;
                    i += ns->al;
                } else {
                    nx[o++] = cur[i++];
                }
            }
        }
        wq_free(cur);
        cur = nx;
        cn = nn;
    }
    *out = cur;
    *on = cn;
    return WQ_OK;
}

/* False when NFC surely leaves the text unchanged: every character is NFC_Quick_Check=Yes and no
 * two combining marks are adjacent (a conservative form of the quick check's ordering rule). */
static bool needs_nfc(const char *s, size_t n)
{
    bool prev_ccc = false;
    for (size_t i = 0; i < n;) {
        size_t cl;
        const uint32_t cp = utf8_next((const uint8_t *)s + i, n - i, &cl);
        const uint8_t c = cp < 0x80 || cp >= 0x110000u ? 0 : uni_class(cp);
        if ((c & CLS_NFC_QC) || ((c & CLS_CCC) && prev_ccc)) return true;
        prev_ccc = (c & CLS_CCC) != 0;
        i += cl;
    }
    return false;
}

/* One segment between added tokens: normalize, pre-tokenize, BPE. */
static wq_status encode_segment(enc_state *e, const char *s, size_t n, size_t offset)
{
    const wq_tok_json *t = e->t;
    wq_status st = WQ_OK;
    char *norm = NULL, *ms = NULL, *composed = NULL;
    size_t nn = 0;
    if (t->nfc && needs_nfc(s, n)) {
        WQ_TRY(nfc(s, n, &composed, &n));
        s = composed;
    }
    WQ_TRY_GOTO(normalize(t, s, n, &norm, &nn), st, done);
    if (t->metaspace) {
        size_t spaces = 0;
        for (size_t i = 0; i < nn; i++)
            spaces += norm[i] == ' ';
        const size_t rl = t->meta_rep_len;
        ms = wq_malloc(nn + (spaces + 1) * rl + 1);
        WQ_CHECK_GOTO(ms, st, WQ_ERR_NOMEM, done, "%s: out of memory", t->origin);
        size_t o = 0;
        for (size_t i = 0; i < nn; i++) {
            if (norm[i] == ' ') {
                memcpy(ms + o, t->meta_rep, rl);
                o += rl;
            } else {
                ms[o++] = norm[i];
            }
        }
        const bool starts = o >= rl && memcmp(ms, t->meta_rep, rl) == 0;
        if (!starts && o > 0 &&
            (t->meta_prepend == META_ALWAYS || (t->meta_prepend == META_FIRST && offset == 0))) {
            memmove(ms + rl, ms, o);
            memcpy(ms, t->meta_rep, rl);
            o += rl;
        }
        if (!t->meta_split) {
            st = emit_word(e, ms, o);
            goto done;
        }
        size_t w0 = 0; /* MergedWithNext: every replacement character starts a word */
        for (size_t i = 0; i <= o; i++) {
            if (i == o || (i > w0 && i + rl <= o && memcmp(ms + i, t->meta_rep, rl) == 0)) {
                WQ_TRY_GOTO(emit_word(e, ms + w0, i - w0), st, done);
                w0 = i;
            }
        }
        goto done;
    }
    if (t->byte_level && t->bl_prefix_space && t->split_from_bl && nn > 0 && norm[0] != ' ') {
        char *p = wq_malloc(nn + 2);
        WQ_CHECK_GOTO(p, st, WQ_ERR_NOMEM, done, "%s: out of memory", t->origin);
        p[0] = ' ';
        memcpy(p + 1, norm, nn);
        wq_free(norm);
        norm = p;
        nn++;
    }
    st = split_words(e, norm, nn, t->byte_level && t->bl_prefix_space && !t->split_from_bl);
done:
    wq_free(composed);
    wq_free(ms);
    wq_free(norm);
    return st;
}

static bool is_space_at(const char *s, size_t n, size_t i, size_t *cl)
{
    uint32_t cp = utf8_next((const uint8_t *)s + i, n - i, cl);
    return cp < 0x110000u && (uni_class(cp) & CLS_WS);
}

/* The leftmost-longest added token at or after pos: its index in t->added and [*b, *e). */
static int32_t find_added(const wq_tok_json *t, const char *s, size_t n, size_t pos, size_t *b,
                          size_t *e)
{
    if (t->n_added == 0) return -1;
    for (size_t p = pos; p < n; p++) {
        const uint8_t c = (uint8_t)s[p];
        for (int32_t k = t->added_first[c]; k < t->added_first[c + 1]; k++) {
            const int32_t id = t->added[k].id;
            const size_t l = t->len[id];
            if (p + l <= n && memcmp(s + p, t->pool + t->off[id], l) == 0) {
                *b = p;
                *e = p + l;
                return k;
            }
        }
    }
    return -1;
}

wq_status wq_tok_json_encode(const wq_tok_json *t, const char *text, size_t len, int32_t **ids,
                             int64_t *n)
{
    wq_status st = WQ_OK;
    i32vec out = {0};
    enc_state e = {0};
    if (!t || !ids || !n || (!text && len)) return WQ_ERR_ARG;
    *ids = NULL;
    *n = 0;
    WQ_CHECK_GOTO(len <= MAX_TEXT_BYTES, st, WQ_ERR_ARG, done,
                  "%s: text of %zu bytes exceeds the %zu-byte limit of one encode call", t->origin,
                  len, MAX_TEXT_BYTES);
    e.t = t;
    e.out = &out;
    size_t pos = 0;
    while (pos < len) {
        size_t mb = len, me = len;
        const int32_t k = find_added(t, text, len, pos, &mb, &me);
        size_t seg_end = mb;
        if (k >= 0 && t->added[k].lstrip) { /* the token absorbs the whitespace before it */
            while (seg_end > pos) {
                size_t q = seg_end - 1, cl;
                while (q > pos && ((uint8_t)text[q] & 0xC0) == 0x80)
                    q--;
                if (!is_space_at(text, seg_end, q, &cl) || q + cl != seg_end) break;
                seg_end = q;
            }
        }
        if (seg_end > pos)
            WQ_TRY_GOTO(encode_segment(&e, text + pos, seg_end - pos, pos), st, done);
        if (k < 0) break;
        WQ_CHECK_GOTO(vec_push(&out, t->added[k].id), st, WQ_ERR_NOMEM, done, "%s: out of memory",
                      t->origin);
        pos = me;
        if (t->added[k].rstrip) {
            size_t cl;
            while (pos < len && is_space_at(text, len, pos, &cl))
                pos += cl;
        }
    }
    if (out.n) {
        *ids = out.a;
        *n = (int64_t)out.n;
        out.a = NULL;
    }
done:
    if (st == WQ_ERR_NOMEM) WQ_LOG_ERROR("%s: encode: out of memory", t->origin);
    wq_free(out.a);
    wq_free(e.s);
    wq_free(e.h.a);
    wq_free(e.buf);
    return st;
}

// ---- decoding
// -------------------------------------------------------------------------------------------

wq_status wq_tok_json_decode(const wq_tok_json *t, const int32_t *ids, int64_t n, char **text,
                             size_t *len)
{
    if (!t || !text || n < 0 || (!ids && n > 0)) return WQ_ERR_ARG;
    *text = NULL;
    if (len) *len = 0;
    size_t bound = 2;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n) {
            WQ_LOG_ERROR("%s: decode: id %d at position %lld is outside the vocabulary [0, %d)",
                         t->origin, (int)ids[i], (long long)i, (int)t->n);
            return WQ_ERR_ARG;
        }
        bound += t->len[ids[i]];
    }
    char *s = wq_malloc(bound);
    if (!s) {
        WQ_LOG_ERROR("%s: decode: out of memory", t->origin);
        return WQ_ERR_NOMEM;
    }
    size_t o = 0;
    bool first = true;
    for (int64_t i = 0; i < n; i++) {
        const int32_t id = ids[i];
        if (t->type[id] == WQ_TOK_CONTROL) continue;
        const char *p = t->pool + t->off[id];
        const size_t pl = t->len[id];
        const int bv = t->dec_byte_fallback ? byte_piece_value(p, pl) : -1;
        if (bv >= 0) {
            s[o++] = (char)bv;
        } else if (t->dec_kind == DEC_BYTELEVEL) {
            for (size_t k = 0; k < pl;) {
                size_t cl;
                uint32_t cp = utf8_next((const uint8_t *)p + k, pl - k, &cl);
                if (cp < 324 && t->byte_dec[cp] >= 0) {
                    s[o++] = (char)t->byte_dec[cp];
                } else {
                    memcpy(s + o, p + k, cl);
                    o += cl;
                }
                k += cl;
            }
        } else if (t->dec_kind == DEC_SP) {
            /* the Metaspace decoder drops every replacement character of the first token */
            const bool drop = first && t->dec_meta && t->dec_meta_prepend != META_NEVER;
            size_t k = 0;
            while (k < pl) {
                if (k + 3 <= pl && memcmp(p + k, WS_SYM, 3) == 0) {
                    if (!drop) s[o++] = ' ';
                    k += 3;
                } else {
                    s[o++] = p[k++];
                }
            }
        } else {
            memcpy(s + o, p, pl);
            o += pl;
        }
        first = false;
    }
    size_t b0 = 0;
    for (int k = 0; k < t->dec_strip_start && b0 < o && s[b0] == ' '; k++)
        b0++;
    for (int k = 0; k < t->dec_strip_stop && o > b0 && s[o - 1] == ' '; k++)
        o--;
    if (b0) memmove(s, s + b0, o - b0);
    o -= b0;
    s[o] = '\0';
    *text = s;
    if (len) *len = o;
    return WQ_OK;
}
