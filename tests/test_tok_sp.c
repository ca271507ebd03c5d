/* test_tok_sp.c: SentencePiece BPE tokenizer: every reference case of tokenizer-cases.json, the
 * llama2.c greedy decode, hand-built models (tie order, unused resegmentation, user-defined pieces,
 * normalizer flags), corrupt/truncated files, allocation failures. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "model/tok_sp.h"
#include "wq_testutil.h"

#define TOK_MODEL WQ_ASSETS_DIR "/stories260K-hf/tokenizer.model"
#define TOK_CASES WQ_ASSETS_DIR "/stories260K-hf/tokenizer-cases.json"
#define GREEDY_IDS WQ_ASSETS_DIR "/stories260K-llama2c/greedy_t0_ids.txt"
#define GREEDY_TEXT WQ_ASSETS_DIR "/stories260K-llama2c/greedy_t0_text.txt"
#define SAMPLE_TEXT "Once upon a time, Lily saw a \xF0\x9F\x99\x82 and said \"Hi!\"\n"

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    if (b) b[sz] = '\0';
    fclose(f);
    if (n) *n = (size_t)sz;
    return b;
}

/* Thousands of expected error messages: send stderr to /dev/null meanwhile (ERROR is the lowest
 * log level, so the logger itself cannot be silenced). */
static int quiet_begin(void)
{
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
        dup2(devnull, 2);
        close(devnull);
    }
    return saved;
}
static void quiet_end(int saved)
{
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    }
}

static wq_tokenizer *load_ref(void)
{
    wq_tokenizer *t = NULL;
    assert_int_equal(wq_tok_load(TOK_MODEL, &t), WQ_OK);
    assert_non_null(t);
    return t;
}

/* Encodes and checks the ids against an expected list. */
static void expect_ids(const wq_tokenizer *t, const char *text, size_t len, const int32_t *want,
                       int64_t n_want, const char *label)
{
    int32_t *ids = NULL;
    int64_t n = -1;
    assert_int_equal(wq_tok_encode(t, text, len, &ids, &n), WQ_OK);
    int ok = n == n_want;
    for (int64_t i = 0; ok && i < n; i++)
        ok = ids[i] == want[i];
    if (!ok) {
        fprintf(stderr, "case %s: got %lld ids:", label, (long long)n);
        for (int64_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n  expected %lld:", (long long)n_want);
        for (int64_t i = 0; i < n_want; i++)
            fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
    wq_free(ids);
    assert_true(ok);
}

// ---- the bundled model
// -----------------------------------------------------------------------------

static void tok_should_load_bundled_model(void **state)
{
    (void)state;
    wq_tokenizer *t = load_ref();
    assert_int_equal(wq_tok_vocab_size(t), 512);
    assert_int_equal(wq_tok_bos(t), 1);
    assert_int_equal(wq_tok_eos(t), 2);
    assert_int_equal(wq_tok_unk(t), 0);
    assert_int_equal(wq_tok_pad(t), -1);
    assert_string_equal(wq_tok_piece(t, 1), "<s>");
    assert_string_equal(wq_tok_piece(t, 3 + 0x0A), "<0x0A>");
    assert_int_equal(wq_tok_type(t, 0), WQ_TOK_UNKNOWN);
    assert_int_equal(wq_tok_type(t, 2), WQ_TOK_CONTROL);
    assert_int_equal(wq_tok_type(t, 3), WQ_TOK_BYTE);
    assert_int_equal(wq_tok_type(t, 259), WQ_TOK_NORMAL);
    assert_null(wq_tok_piece(t, 512));
    assert_null(wq_tok_piece(t, -1));
    assert_int_equal(wq_tok_piece_id(t, "\xE2\x96\x81t", 4), 259); /* "▁t", highest merge */
    assert_true(wq_tok_score(t, 259) > wq_tok_score(t, 260));
    wq_tok_free(t);
    /* a model directory works too */
    assert_int_equal(wq_tok_load(WQ_ASSETS_DIR "/stories260K-hf", &t), WQ_OK);
    assert_int_equal(wq_tok_vocab_size(t), 512);
    wq_tok_free(t);
    wq_tok_free(NULL);
}

static void tok_should_reproduce_every_reference_case(void **state)
{
    (void)state;
    wq_tokenizer *t = load_ref();
    char *js = slurp(TOK_CASES, NULL);
    assert_non_null(js);
    cJSON *root = cJSON_Parse(js);
    assert_non_null(root);
    assert_true(cJSON_IsArray(root));
    int n_cases = cJSON_GetArraySize(root);
    assert_true(n_cases >= 12);
    for (int c = 0; c < n_cases; c++) {
        const cJSON *item = cJSON_GetArrayItem(root, c);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(item, "text");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(item, "ids");
        assert_true(cJSON_IsString(text) && cJSON_IsArray(ids));
        int nw = cJSON_GetArraySize(ids);
        int32_t *want = malloc(sizeof *want * (size_t)(nw + 1));
        for (int i = 0; i < nw; i++)
            want[i] = (int32_t)cJSON_GetArrayItem(ids, i)->valuedouble;
        char label[32];
        snprintf(label, sizeof label, "#%d", c);
        expect_ids(t, text->valuestring, strlen(text->valuestring), want, nw, label);
        free(want);
    }
    cJSON_Delete(root);
    free(js);
    wq_tok_free(t);
}

static void tok_should_decode_greedy_reference(void **state)
{
    (void)state;
    wq_tokenizer *t = load_ref();
    size_t tn = 0;
    char *want = slurp(GREEDY_TEXT, &tn);
    char *txt = slurp(GREEDY_IDS, NULL);
    assert_non_null(want);
    assert_non_null(txt);
    int32_t ids[256];
    int64_t n = 0;
    for (char *p = txt, *e; n < 256; p = e) {
        while (*p && !(*p >= '0' && *p <= '9'))
            p++;
        if (!*p) break;
        ids[n++] = (int32_t)strtol(p, &e, 10);
    }
    assert_int_equal(n, 81);
    assert_int_equal(ids[0], 1);
    if (tn && want[tn - 1] == '\n') want[--tn] = '\0'; /* the file ends with a newline */
    char *got = NULL;
    size_t gl = 0;
    assert_int_equal(wq_tok_decode(t, ids, n, &got, &gl), WQ_OK);
    assert_int_equal(gl, tn);
    assert_string_equal(got, want);
    wq_free(got);
    /* and encoding the decoded text gives the ids back (without BOS) */
    int32_t *re = NULL;
    int64_t rn = 0;
    assert_int_equal(wq_tok_encode(t, want, tn, &re, &rn), WQ_OK);
    assert_int_equal(rn, n - 1);
    assert_memory_equal(re, ids + 1, (size_t)rn * sizeof *re);
    wq_free(re);
    free(want);
    free(txt);
    wq_tok_free(t);
}

static void tok_should_roundtrip_text(void **state)
{
    (void)state;
    wq_tokenizer *t = load_ref();
    const char *texts[] = {SAMPLE_TEXT, "Hello, world! Ünïcödé 123", "tab\tand\nnewline", "x"};
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        int32_t *ids = NULL;
        int64_t n = 0;
        char *back = NULL;
        assert_int_equal(wq_tok_encode(t, texts[k], strlen(texts[k]), &ids, &n), WQ_OK);
        assert_int_equal(wq_tok_decode(t, ids, n, &back, NULL), WQ_OK);
        assert_string_equal(back, texts[k]);
        wq_free(ids);
        wq_free(back);
    }
    wq_tok_free(t);
}

static void tok_should_handle_edge_texts(void **state)
{
    (void)state;
    wq_tokenizer *t = load_ref();
    int32_t *ids = (int32_t *)1;
    int64_t n = -1;
    assert_int_equal(wq_tok_encode(t, "", 0, &ids, &n), WQ_OK);
    assert_int_equal(n, 0);
    assert_null(ids);
    assert_int_equal(wq_tok_encode(t, NULL, 0, &ids, &n), WQ_OK);
    assert_int_equal(n, 0);
    assert_int_equal(wq_tok_encode(t, "    ", 4, &ids, &n), WQ_OK); /* remove_extra_whitespaces */
    assert_int_equal(n, 0);
    /* surrounding and repeated spaces are normalized away */
    int32_t *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    assert_int_equal(wq_tok_encode(t, "  the  cat  ", 12, &a, &na), WQ_OK);
    assert_int_equal(wq_tok_encode(t, "the cat", 7, &b, &nb), WQ_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof *a);
    wq_free(a);
    wq_free(b);
    /* an ill-formed UTF-8 byte becomes U+FFFD, then byte fallback */
    const int32_t ws = wq_tok_piece_id(t, "\xE2\x96\x81", 3);
    assert_true(ws >= 0);
    const int32_t want_ff[] = {ws, 3 + 0xEF, 3 + 0xBF, 3 + 0xBD};
    expect_ids(t, "\xFF", 1, want_ff, 4, "invalid byte");
    /* an embedded NUL is an ordinary character (byte piece <0x00> = id 3) */
    const int32_t want_nul[] = {ws, 3};
    expect_ids(t, "\0", 1, want_nul, 2, "nul");
    /* NULL arguments */
    assert_int_equal(wq_tok_encode(NULL, "a", 1, &ids, &n), WQ_ERR_ARG);
    assert_int_equal(wq_tok_encode(t, NULL, 3, &ids, &n), WQ_ERR_ARG);
    /* decode: control pieces vanish, unk has a visible surface, bad ids are errors */
    const int32_t d1[] = {1, 0, 2};
    char *s = NULL;
    assert_int_equal(wq_tok_decode(t, d1, 3, &s, NULL), WQ_OK);
    assert_string_equal(s, " \xE2\x81\x87 ");
    wq_free(s);
    const int32_t d2[] = {259, 512};
    assert_int_equal(wq_tok_decode(t, d2, 2, &s, NULL), WQ_ERR_ARG);
    assert_null(s);
    assert_int_equal(wq_tok_decode(t, d2, 0, &s, NULL), WQ_OK);
    assert_string_equal(s, "");
    wq_free(s);
    wq_tok_free(t);
}

// ---- hand-built models (a protobuf writer just for the tests)
// --------------------------------------

typedef struct {
    uint8_t b[4096];
    size_t n;
} pbw;

static void pbw_varint(pbw *w, uint64_t v)
{
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        w->b[w->n++] = c | (v ? 0x80 : 0);
    } while (v);
}
static void pbw_key(pbw *w, unsigned field, unsigned wire)
{
    pbw_varint(w, field << 3 | wire);
}
static void pbw_bytes(pbw *w, unsigned field, const void *p, size_t n)
{
    pbw_key(w, field, 2);
    pbw_varint(w, n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void pbw_int(pbw *w, unsigned field, int64_t v)
{
    pbw_key(w, field, 0);
    pbw_varint(w, (uint64_t)v);
}
static void pbw_piece(pbw *w, const char *s, float score, int type)
{
    pbw m = {.n = 0};
    pbw_bytes(&m, 1, s, strlen(s));
    uint32_t bits;
    memcpy(&bits, &score, 4);
    pbw_key(&m, 2, 5);
    for (int i = 0; i < 4; i++)
        m.b[m.n++] = (uint8_t)(bits >> (8 * i));
    pbw_int(&m, 3, type);
    pbw_bytes(w, 1, m.b, m.n);
}

typedef struct {
    bool dummy, remove_ws, byte_fallback;
} mini_opts;

/* ids: 0 <unk> 1 <s> 2 </s> 3 ▁ 4 a 5 b 6 ab(unused) 7 ▁ab 8 <x>(user) 9 aa 10 c 11 <0x78> */
static wq_tokenizer *mini_model(mini_opts o)
{
    pbw w = {.n = 0};
    pbw_piece(&w, "<unk>", 0, WQ_TOK_UNKNOWN);
    pbw_piece(&w, "<s>", 0, WQ_TOK_CONTROL);
    pbw_piece(&w, "</s>", 0, WQ_TOK_CONTROL);
    pbw_piece(&w, "\xE2\x96\x81", -5, WQ_TOK_NORMAL);
    pbw_piece(&w, "a", -6, WQ_TOK_NORMAL);
    pbw_piece(&w, "b", -7, WQ_TOK_NORMAL);
    pbw_piece(&w, "ab", -1, WQ_TOK_UNUSED);
    pbw_piece(&w, "▁ab", -2, WQ_TOK_NORMAL);
    pbw_piece(&w, "<x>", 0, WQ_TOK_USER_DEFINED);
    pbw_piece(&w, "aa", -1, WQ_TOK_NORMAL);
    pbw_piece(&w, "c", -8, WQ_TOK_NORMAL);
    pbw_piece(&w, "<0x78>", 0, WQ_TOK_BYTE);
    pbw tr = {.n = 0};
    pbw_int(&tr, 3, 2); /* BPE */
    pbw_int(&tr, 35, o.byte_fallback);
    pbw_int(&tr, 43, -1); /* pad_id -1: a sign-extended 10-byte varint */
    pbw_bytes(&w, 2, tr.b, tr.n);
    pbw nm = {.n = 0};
    pbw_bytes(&nm, 1, "identity", 8);
    pbw_int(&nm, 3, o.dummy);
    pbw_int(&nm, 4, o.remove_ws);
    pbw_bytes(&w, 3, nm.b, nm.n);
    pbw_int(&w, 99, 12345); /* an unknown field is skipped */
    wq_tokenizer *t = NULL;
    assert_int_equal(wq_tok_load_mem(w.b, w.n, "mini", &t), WQ_OK);
    return t;
}

static void tok_should_merge_leftmost_on_equal_scores(void **state)
{
    (void)state;
    wq_tokenizer *t = mini_model((mini_opts){true, true, false});
    assert_int_equal(wq_tok_pad(t), -1);
    const int32_t want[] = {3, 9, 4}; /* ▁ aa a, not ▁ a aa */
    expect_ids(t, "aaa", 3, want, 3, "aaa");
    wq_tok_free(t);
}

static void tok_should_resegment_unused_pieces(void **state)
{
    (void)state;
    wq_tokenizer *t = mini_model((mini_opts){true, true, false});
    const int32_t w1[] = {7}; /* ab (unused) is a merge step towards ▁ab */
    expect_ids(t, "ab", 2, w1, 1, "ab");
    const int32_t w2[] = {3, 0, 4, 5}; /* ▁ x(unk) [ab -> a b] */
    expect_ids(t, "xab", 3, w2, 4, "xab");
    wq_tok_free(t);
}

static void tok_should_keep_user_defined_pieces_whole(void **state)
{
    (void)state;
    wq_tokenizer *t = mini_model((mini_opts){true, true, false});
    const int32_t w1[] = {3, 4, 8, 5};
    expect_ids(t, "a<x>b", 5, w1, 4, "a<x>b");
    const int32_t w2[] = {3, 4, 0, 0, 5}; /* "<y" is not user-defined: two unknown characters */
    expect_ids(t, "a<yb", 4, w2, 5, "a<yb");
    wq_tok_free(t);
}

static void tok_should_honour_normalizer_flags(void **state)
{
    (void)state;
    wq_tokenizer *t = mini_model((mini_opts){false, false, true});
    /* no dummy prefix, spaces kept; byte fallback: 'x' -> <0x78>, missing byte pieces -> unk */
    const int32_t w1[] = {4, 3, 3, 5, 3};
    expect_ids(t, "a  b ", 5, w1, 5, "no-remove");
    const int32_t w2[] = {11, 0};
    expect_ids(t, "xy", 2, w2, 2, "bytes");
    /* decode keeps the leading space when no dummy prefix was added */
    const int32_t d[] = {3, 4};
    char *s = NULL;
    assert_int_equal(wq_tok_decode(t, d, 2, &s, NULL), WQ_OK);
    assert_string_equal(s, " a");
    wq_free(s);
    wq_tok_free(t);
    t = mini_model((mini_opts){true, false, false});
    const int32_t w3[] = {3, 3, 3, 4};
    expect_ids(t, "  a", 3, w3, 4, "dummy+spaces");
    wq_tok_free(t);
}

// ---- corrupt input
// ---------------------------------------------------------------------------------

/* A load that must not crash; a tokenizer that loads must encode and decode. Returns 0 for a valid
 * tokenizer, 1 for a clean error, -1 (after printing why to stdout: stderr may be silenced) for
 * anything else. No CMocka asserts here, so a failure is never hidden by quiet_begin. */
static int try_load(const uint8_t *b, size_t n, const char *what, long arg)
{
    wq_tokenizer *t = NULL;
    wq_status st = wq_tok_load_mem(b, n, "corrupt", &t);
    if (st != WQ_OK) {
        if (t == NULL && (st == WQ_ERR_FORMAT || st == WQ_ERR_UNSUPPORTED)) return 1;
        printf("%s %ld: status %d, handle %p\n", what, arg, (int)st, (void *)t);
        return -1;
    }
    int32_t *ids = NULL;
    int64_t ni = 0;
    char *s = NULL;
    int rc = 0;
    if (wq_tok_encode(t, SAMPLE_TEXT, strlen(SAMPLE_TEXT), &ids, &ni) != WQ_OK) rc = -1;
    for (int64_t i = 0; rc == 0 && i < ni; i++)
        if (ids[i] < 0 || ids[i] >= wq_tok_vocab_size(t)) rc = -1;
    if (rc == 0 && wq_tok_decode(t, ids, ni, &s, NULL) != WQ_OK) rc = -1;
    if (rc) printf("%s %ld: loaded, but encode/decode failed\n", what, arg);
    wq_free(ids);
    wq_free(s);
    wq_tok_free(t);
    return rc;
}

static void tok_should_reject_truncated_and_corrupt_models(void **state)
{
    (void)state;
    size_t n = 0;
    uint8_t *orig = (uint8_t *)slurp(TOK_MODEL, &n);
    assert_non_null(orig);
    assert_int_equal(try_load(orig, n, "original", 0), 0);
    uint8_t *buf = malloc(n);
    int n_err = 0, n_bad = 0;
    int quiet = quiet_begin();
    for (size_t cut = 0; cut < n; cut++) {
        int rc = try_load(orig, cut, "truncated at", (long)cut);
        n_err += rc == 1;
        n_bad += rc < 0;
    }
    wq_test_rng rng = {WQ_TEST_SEED};
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(buf, orig, n);
        int flips = 1 + (int)(wq_test_next(&rng) % 4);
        for (int f = 0; f < flips; f++)
            buf[wq_test_next(&rng) % n] = (uint8_t)wq_test_next(&rng);
        n_bad += try_load(buf, n, "flip trial (seed WQ_TEST_SEED)", trial) < 0;
    }
    quiet_end(quiet);
    free(buf);
    free(orig);
    assert_int_equal(n_bad, 0);
    /* cuts at a field boundary near the end may still form a model; inside the piece table the
     * trainer spec is missing, so the model type defaults to Unigram and is refused */
    assert_true(n_err > (int)n - 16);
}

static void tok_should_reject_malformed_protobuf(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t n;
    } bad[] = {
        {"", 0},                                              /* no pieces */
        {"\x0a", 1},                                          /* key without value */
        {"\x0a\x05\x0a\x01", 4},                              /* length past the end */
        {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11}, /* varint over 64 bits */
        {"\x0b\x0c", 2},                                      /* group wire type */
        {"\x00\x00", 2},                                      /* field number 0 */
        {"\x0f", 1},                                          /* wire type 7 */
        {"\x0d\x00\x00", 3},                                  /* truncated fixed32 */
        {"\x09\x00\x00\x00\x00", 5},                          /* truncated fixed64 */
        {"\x08\x01", 2},                                      /* pieces as a varint */
        {"\x0a\x02\x18\x01", 4},                              /* piece without text */
        {"\x0a\x05\x0a\x01\x61\x18\x09", 7},                  /* piece type 9 */
        {"\x0a\x08\x0a\x01\x61\x15\x00\x00\xc0\x7f", 10},     /* NaN score */
    };
    int quiet = quiet_begin(), n_wrong = 0;
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        wq_tokenizer *t = (wq_tokenizer *)1;
        wq_status st = wq_tok_load_mem(bad[k].bytes, bad[k].n, "bad", &t);
        if (st != WQ_ERR_FORMAT || t != NULL) {
            printf("malformed case %zu: status %d\n", k, (int)st);
            n_wrong++;
        }
    }
    quiet_end(quiet);
    assert_int_equal(n_wrong, 0);
    /* the error names the file */
    assert_int_equal(wq_tok_load_mem("\x0a\x05", 2, "/x/tokenizer.model", &(wq_tokenizer *){0}),
                     WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "/x/tokenizer.model"));
    /* a Unigram model is refused clearly */
    pbw w = {.n = 0};
    pbw_piece(&w, "<unk>", 0, WQ_TOK_UNKNOWN);
    wq_tokenizer *t = NULL;
    assert_int_equal(wq_tok_load_mem(w.b, w.n, "unigram", &t), WQ_ERR_UNSUPPORTED);
    /* duplicate pieces */
    pbw tr = {.n = 0};
    pbw_int(&tr, 3, 2);
    pbw_piece(&w, "a", 0, WQ_TOK_NORMAL);
    pbw_piece(&w, "a", 0, WQ_TOK_NORMAL);
    pbw_bytes(&w, 2, tr.b, tr.n);
    assert_int_equal(wq_tok_load_mem(w.b, w.n, "dup", &t), WQ_ERR_FORMAT);
    assert_null(t);
}

static void tok_should_fail_cleanly_on_missing_file(void **state)
{
    (void)state;
    wq_tokenizer *t = (wq_tokenizer *)1;
    assert_int_equal(wq_tok_load("/nonexistent/tokenizer.model", &t), WQ_ERR_IO);
    assert_null(t);
    assert_non_null(strstr(wq_log_last_error(), "/nonexistent/tokenizer.model"));
    /* a directory without tokenizer.model */
    assert_int_equal(wq_tok_load(WQ_ASSETS_DIR "/text", &t), WQ_ERR_IO);
    assert_int_equal(wq_tok_load(NULL, &t), WQ_ERR_ARG);
}

// ---- allocation failures
// ---------------------------------------------------------------------------

typedef struct {
    long live, count, fail_at;
} alloc_probe;
static alloc_probe g_probe; /* test-only: the hook signature has no user pointer */

static void *probe_malloc(size_t n)
{
    if (g_probe.count++ == g_probe.fail_at) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 1) != 0) return NULL;
    g_probe.live++;
    return p;
}
static void probe_free(void *p)
{
    g_probe.live--;
    free(p);
}

static void tok_should_return_nomem_without_leaking(void **state)
{
    (void)state;
    size_t n = 0;
    uint8_t *model = (uint8_t *)slurp(TOK_MODEL, &n);
    const wq_alloc_hooks hooks = {probe_malloc, probe_free};
    int quiet = quiet_begin();
    int failures = 0;
    long leak_at = -1, wrong_at = -1;
    for (long k = 0; k < 100000; k++) {
        g_probe = (alloc_probe){0, 0, k};
        wq_alloc_set_hooks(&hooks);
        wq_tokenizer *t = NULL;
        wq_status st = wq_tok_load_mem(model, n, "probe", &t);
        int32_t *ids = NULL;
        int64_t ni = 0;
        char *s = NULL;
        if (st == WQ_OK) st = wq_tok_encode(t, SAMPLE_TEXT, strlen(SAMPLE_TEXT), &ids, &ni);
        if (st == WQ_OK) st = wq_tok_decode(t, ids, ni, &s, NULL);
        wq_free(s);
        wq_free(ids);
        wq_tok_free(t);
        long live = g_probe.live;
        wq_alloc_set_hooks(NULL);
        if (live != 0 && leak_at < 0) leak_at = k;
        if (st == WQ_OK) break;
        if (st != WQ_ERR_NOMEM && wrong_at < 0) wrong_at = k;
        failures++;
    }
    quiet_end(quiet);
    assert_int_equal(leak_at, -1);
    assert_int_equal(wrong_at, -1);
    assert_true(failures > 5);
    free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tok_should_load_bundled_model),
        cmocka_unit_test(tok_should_reproduce_every_reference_case),
        cmocka_unit_test(tok_should_decode_greedy_reference),
        cmocka_unit_test(tok_should_roundtrip_text),
        cmocka_unit_test(tok_should_handle_edge_texts),
        cmocka_unit_test(tok_should_merge_leftmost_on_equal_scores),
        cmocka_unit_test(tok_should_resegment_unused_pieces),
        cmocka_unit_test(tok_should_keep_user_defined_pieces_whole),
        cmocka_unit_test(tok_should_honour_normalizer_flags),
        cmocka_unit_test(tok_should_reject_truncated_and_corrupt_models),
        cmocka_unit_test(tok_should_reject_malformed_protobuf),
        cmocka_unit_test(tok_should_fail_cleanly_on_missing_file),
        cmocka_unit_test(tok_should_return_nomem_without_leaking),
    };
    return cmocka_run_group_tests_name("tok_sp", tests, NULL, NULL);
}
