/* test_tok_json.c: HF tokenizer.json (BPE) tokenizers through the common wq_tokenizer interface:
 * ids of every case of tests/data/tok_json/cases.json (produced by Tokenizers.js, see gen.mjs) for
 * byte-level (GPT-2, Llama-3, Qwen2 shapes) and SentencePiece-style files; the converted
 * stories260K tokenizer.json against tok_sp on the asset texts and against the SentencePiece
 * reference cases; directory precedence; bad input naming the file and key; allocation failures. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "model/dataset.h"
#include "model/tok_json.h"
#include "model/tok_sp.h"
#include "wq_testutil.h"

#define DATA_DIR WQ_SOURCE_DIR "/tests/data/tok_json"
#define CASES DATA_DIR "/cases.json"
#define SP_DIR WQ_ASSETS_DIR "/stories260K-hf"
#define SP_CASES SP_DIR "/tokenizer-cases.json"
#define STORIES WQ_ASSETS_DIR "/text/tinystories-val-500.txt"
#define WIKITEXT WQ_ASSETS_DIR "/text/wikitext2-test.raw"
#define C4 WQ_ASSETS_DIR "/text/c4-sample-1000.jsonl"

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

/* stderr goes to a file while expected errors are logged; the text is returned (caller frees). */
static char g_errfile[512];
static int capture_begin(void)
{
    char dir[256];
    snprintf(g_errfile, sizeof g_errfile, "%s/stderr.txt", wq_test_tmpdir(dir, sizeof dir));
    fflush(stderr);
    int saved = dup(2), fd = open(g_errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
    }
    return saved;
}
static char *capture_end(int saved)
{
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    }
    char *s = slurp(g_errfile, NULL);
    unlink(g_errfile);
    return s ? s : calloc(1, 1);
}

static bool ids_equal(const char *label, const int32_t *got, int64_t n, const cJSON *want)
{
    bool ok = n == cJSON_GetArraySize(want);
    for (int64_t i = 0; ok && i < n; i++)
        ok = got[i] == (int32_t)cJSON_GetArrayItem(want, (int)i)->valuedouble;
    if (!ok) {
        fprintf(stderr, "%s: got %lld ids:", label, (long long)n);
        for (int64_t i = 0; i < n && i < 60; i++)
            fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n  expected %d:", cJSON_GetArraySize(want));
        for (int i = 0; i < cJSON_GetArraySize(want) && i < 60; i++)
            fprintf(stderr, " %d", (int)cJSON_GetArrayItem(want, i)->valuedouble);
        fprintf(stderr, "\n");
    }
    return ok;
}

/* The asset text a case refers to (gen.mjs takes the same slices); caller frees. */
static char *case_text(const cJSON *c, size_t *len)
{
    const cJSON *text = cJSON_GetObjectItem(c, "text");
    if (cJSON_IsString(text)) {
        *len = strlen(text->valuestring);
        return strdup(text->valuestring);
    }
    const char *src = cJSON_GetObjectItem(c, "source")->valuestring;
    wq_text_docs d = {0};
    char *s = NULL;
    if (strcmp(src, "wikitext") == 0) {
        assert_int_equal(wq_data_load_text(WIKITEXT, true, &d), WQ_OK);
        int lines = (int)cJSON_GetObjectItem(c, "lines")->valuedouble;
        const char *p = d.texts[0];
        for (int k = 0; k < lines; k++)
            p = strchr(p, '\n') + 1;
        *len = (size_t)(p - d.texts[0]);
        s = strndup(d.texts[0], *len);
    } else {
        const int64_t i = (int64_t)cJSON_GetObjectItem(c, "index")->valuedouble;
        if (strcmp(src, "story") == 0)
            assert_int_equal(wq_data_load_stories(STORIES, i, i + 1, &d), WQ_OK);
        else
            assert_int_equal(wq_data_load_jsonl(C4, i, i + 1, &d), WQ_OK);
        *len = d.lens[0];
        s = strndup(d.texts[0], *len);
    }
    wq_data_docs_free(&d);
    return s;
}

static void json_should_match_every_reference_case(void **state)
{
    (void)state;
    char *doc = slurp(CASES, NULL);
    assert_non_null(doc);
    cJSON *root = cJSON_Parse(doc);
    assert_non_null(root);
    int n_tok = 0, n_strings = 0, n_decoded = 0, failed = 0;
    long n_ids = 0;
    const cJSON *tk;
    cJSON_ArrayForEach(tk, cJSON_GetObjectItem(root, "tokenizers"))
    {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", DATA_DIR,
                 cJSON_GetObjectItem(tk, "file")->valuestring);
        wq_tokenizer *t = NULL;
        assert_int_equal(wq_tok_load(path, &t), WQ_OK);
        n_tok++;
        int k = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(tk, "cases"))
        {
            size_t len = 0;
            char *text = case_text(c, &len);
            int32_t *ids = NULL;
            int64_t n = 0;
            assert_int_equal(wq_tok_encode(t, text, len, &ids, &n), WQ_OK);
            char label[600];
            snprintf(label, sizeof label, "%s case %d", path, k++);
            const cJSON *want = cJSON_GetObjectItem(c, "ids");
            failed += !ids_equal(label, ids, n, want);
            n_strings++;
            n_ids += cJSON_GetArraySize(want);
            const cJSON *dec = cJSON_GetObjectItem(c, "decoded");
            if (cJSON_IsString(dec)) {
                char *s = NULL;
                size_t sl = 0;
                assert_int_equal(wq_tok_decode(t, ids, n, &s, &sl), WQ_OK);
                if (sl != strlen(dec->valuestring) || memcmp(s, dec->valuestring, sl) != 0) {
                    fprintf(stderr, "%s: decoded '%s', expected '%s'\n", label, s,
                            dec->valuestring);
                    failed++;
                }
                n_decoded++;
                wq_free(s);
            }
            wq_free(ids);
            free(text);
        }
        wq_tok_free(t);
    }
    printf("tok_json: %d tokenizers, %d strings, %ld reference ids compared, %d decodes; %d "
           "mismatches\n",
           n_tok, n_strings, n_ids, n_decoded, failed);
    assert_int_equal(failed, 0);
    assert_int_equal(n_tok, 5);
    cJSON_Delete(root);
    free(doc);
}

/* stories260K's tokenizer.model has remove_extra_whitespaces, which HF's Llama conversion (and so
 * sp-legacy.json) does not carry: SentencePiece drops leading and trailing spaces and collapses
 * runs of spaces before encoding. Applied here by hand to the text the JSON tokenizer gets. */
static char *sp_collapse_spaces(const char *s, size_t n, size_t *out_n)
{
    char *o = malloc(n + 1);
    size_t k = 0;
    bool prev_space = true;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ' && prev_space) continue;
        prev_space = s[i] == ' ';
        o[k++] = s[i];
    }
    while (k > 0 && o[k - 1] == ' ')
        k--;
    o[k] = '\0';
    *out_n = k;
    return o;
}

/* Same ids from the SentencePiece model and its tokenizer.json conversion on asset texts: all 500
 * stories, the whole WikiText-2 test split, 200 C4 records. */
static void json_sp_conversion_should_equal_tok_sp(void **state)
{
    (void)state;
    wq_tokenizer *sp = NULL, *js = NULL;
    assert_int_equal(wq_tok_load(SP_DIR, &sp), WQ_OK);
    assert_int_equal(wq_tok_load(DATA_DIR "/sp-legacy.json", &js), WQ_OK);
    assert_int_equal(wq_tok_vocab_size(js), wq_tok_vocab_size(sp));
    wq_text_docs sets[3] = {{0}};
    assert_int_equal(wq_data_load_stories(STORIES, 0, -1, &sets[0]), WQ_OK);
    assert_int_equal(wq_data_load_text(WIKITEXT, true, &sets[1]), WQ_OK);
    assert_int_equal(wq_data_load_jsonl(C4, 0, 200, &sets[2]), WQ_OK);
    long docs = 0, ids_total = 0, bad = 0;
    for (int s = 0; s < 3; s++) {
        for (int64_t d = 0; d < sets[s].n_docs; d++) {
            int32_t *a = NULL, *b = NULL;
            int64_t na = 0, nb = 0;
            assert_int_equal(wq_tok_encode(sp, sets[s].texts[d], sets[s].lens[d], &a, &na), WQ_OK);
            size_t cl = 0;
            char *c = sp_collapse_spaces(sets[s].texts[d], sets[s].lens[d], &cl);
            assert_int_equal(wq_tok_encode(js, c, cl, &b, &nb), WQ_OK);
            free(c);
            bool eq = na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
            if (!eq && bad++ < 3)
                fprintf(stderr, "%s doc %lld differs\n", sets[s].origin, (long long)d);
            docs++;
            ids_total += na;
            /* decoding agrees too */
            char *ta = NULL, *tb = NULL;
            size_t la = 0, lb = 0;
            assert_int_equal(wq_tok_decode(sp, a, na, &ta, &la), WQ_OK);
            assert_int_equal(wq_tok_decode(js, a, na, &tb, &lb), WQ_OK);
            assert_true(la == lb && memcmp(ta, tb, la) == 0);
            wq_free(ta);
            wq_free(tb);
            wq_free(a);
            wq_free(b);
        }
        wq_data_docs_free(&sets[s]);
    }
    printf("tok_json: sp-legacy.json vs tokenizer.model: %ld documents, %ld ids, %ld differ\n",
           docs, ids_total, bad);
    assert_int_equal(bad, 0);
    assert_int_equal(wq_tok_bos(js), wq_tok_bos(sp));
    assert_int_equal(wq_tok_unk(js), wq_tok_unk(sp));
    wq_tok_free(sp);
    wq_tok_free(js);
}

/* The SentencePiece library's own ids (assets/stories260K-hf/tokenizer-cases.json). */
static void json_sp_should_reproduce_sentencepiece_cases(void **state)
{
    (void)state;
    char *doc = slurp(SP_CASES, NULL);
    cJSON *root = cJSON_Parse(doc);
    assert_non_null(root);
    wq_tokenizer *js = NULL;
    assert_int_equal(wq_tok_load(DATA_DIR "/sp-legacy.json", &js), WQ_OK);
    int n = 0, failed = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, root)
    {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        int32_t *ids = NULL;
        int64_t ni = 0;
        size_t cl = 0;
        char *collapsed = sp_collapse_spaces(text, strlen(text), &cl);
        assert_int_equal(wq_tok_encode(js, collapsed, cl, &ids, &ni), WQ_OK);
        failed += !ids_equal(text, ids, ni, cJSON_GetObjectItem(c, "ids"));
        n++;
        wq_free(ids);
        free(collapsed);
    }
    printf("tok_json: %d SentencePiece reference cases, %d mismatches\n", n, failed);
    assert_int_equal(failed, 0);
    assert_true(n >= 10);
    wq_tok_free(js);
    cJSON_Delete(root);
    free(doc);
}

static void write_text(const char *path, const char *s)
{
    assert_int_equal(wq_test_write_file(path, s, strlen(s)), 0);
}

static void json_should_follow_directory_precedence(void **state)
{
    (void)state;
    char dir[256], p[512];
    wq_test_tmpdir(dir, sizeof dir);
    size_t n = 0;
    char *gpt2 = slurp(DATA_DIR "/gpt2.json", &n);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    assert_int_equal(wq_test_write_file(p, gpt2, n), 0);
    /* only tokenizer.json: it is used; BOS from tokenizer_config.json */
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    write_text(
        p, "{\"bos_token\": \"<|endoftext|>\", \"eos_token\": {\"content\": \"<|endoftext|>\"}}");
    wq_tokenizer *t = NULL;
    assert_int_equal(wq_tok_load(dir, &t), WQ_OK);
    assert_int_equal(wq_tok_vocab_size(t), 657);
    assert_int_equal(wq_tok_bos(t), 656);
    assert_int_equal(wq_tok_eos(t), 656);
    assert_int_equal(wq_tok_type(t, 656), WQ_TOK_CONTROL);
    wq_tok_free(t);
    /* both: tokenizer.model wins (stories260K behaviour unchanged) */
    size_t mn = 0;
    char *model = slurp(SP_DIR "/tokenizer.model", &mn);
    snprintf(p, sizeof p, "%s/tokenizer.model", dir);
    assert_int_equal(wq_test_write_file(p, model, mn), 0);
    assert_int_equal(wq_tok_load(dir, &t), WQ_OK);
    assert_int_equal(wq_tok_vocab_size(t), 512); /* gpt2.json has 657 */
    assert_int_equal(wq_tok_type(t, 3), WQ_TOK_BYTE);
    wq_tok_free(t);
    /* a config naming a token the vocabulary lacks: error names the config file and key */
    unlink(p);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    write_text(p, "{\"bos_token\": \"<s>\"}");
    int saved = capture_begin();
    assert_int_equal(wq_tok_load(dir, &t), WQ_ERR_FORMAT);
    char *err = capture_end(saved);
    assert_non_null(strstr(err, "tokenizer_config.json"));
    assert_non_null(strstr(err, "bos_token"));
    assert_null(t);
    free(err);
    unlink(p);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    unlink(p);
    /* neither */
    saved = capture_begin();
    assert_int_equal(wq_tok_load(dir, &t), WQ_ERR_IO);
    err = capture_end(saved);
    assert_non_null(strstr(err, "tokenizer.json"));
    free(err);
    rmdir(dir);
    free(model);
    free(gpt2);
}

/* Hand-derived: byte-level decode is lossless, including invalid UTF-8 and NUL bytes; the GPT-2
 * byte map sends ' ' to U+0120 'Ġ' and '\n' to U+010A 'Ċ'. */
static void json_byte_level_should_roundtrip_any_bytes(void **state)
{
    (void)state;
    wq_tokenizer *t = NULL;
    assert_int_equal(wq_tok_load(DATA_DIR "/llama3.json", &t), WQ_OK);
    const char text[] = "a\xff\xfe b\0c \xe2\x82 \xf0\x9f\x98\x80\n\n";
    int32_t *ids = NULL;
    int64_t n = 0;
    assert_int_equal(wq_tok_encode(t, text, sizeof text - 1, &ids, &n), WQ_OK);
    char *s = NULL;
    size_t sl = 0;
    assert_int_equal(wq_tok_decode(t, ids, n, &s, &sl), WQ_OK);
    assert_int_equal(sl, sizeof text - 1);
    assert_memory_equal(s, text, sl);
    wq_free(s);
    wq_free(ids);
    /* gen.mjs lists the 256 byte tokens first, in byte order */
    assert_int_equal(wq_tok_piece_id(t, "\xc4\xa0", 2), ' ');
    assert_int_equal(wq_tok_piece_id(t, "\xc4\x8a", 2), '\n');
    assert_int_equal(wq_tok_bos(t), wq_tok_piece_id(t, "<|begin_of_text|>", 17));
    wq_tok_free(t);
}

typedef struct {
    const char *json;
    wq_status want;
    const char *key; /* must appear in the message */
} bad_case;

static void json_should_reject_bad_files_naming_file_and_key(void **state)
{
    (void)state;
    const char *V = "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}";
    char buf[8][512];
    snprintf(buf[0], sizeof buf[0], "{\"model\": {\"type\": \"BPE\", %s}}", V);
    snprintf(buf[1], sizeof buf[1], "{\"model\": {\"type\": \"WordPiece\", %s, \"merges\": []}}",
             V);
    snprintf(buf[2], sizeof buf[2], "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [\"a c\"]}}",
             V);
    snprintf(buf[3], sizeof buf[3],
             "{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": {\"type\": \"BPE\", "
             "%s, \"merges\": [\"a b\"]}}",
             V);
    snprintf(buf[4], sizeof buf[4],
             "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"}, "
             "\"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", %s, \"merges\": []}}",
             V);
    snprintf(buf[5], sizeof buf[5],
             "{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"type\": \"BPE\", %s, "
             "\"merges\": []}}",
             V);
    snprintf(buf[6], sizeof buf[6],
             "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}, \"merges\": []}}");
    snprintf(buf[7], sizeof buf[7],
             "{\"added_tokens\": [{\"id\": 1, \"content\": \"x\"}], \"model\": {\"type\": \"BPE\", "
             "%s, \"merges\": []}}",
             V);
    const bad_case cases[] = {
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {", WQ_ERR_FORMAT, "malformed JSON"},
        {"[1, 2]", WQ_ERR_FORMAT, "(root)"},
        {"{\"normalizer\": null}", WQ_ERR_FORMAT, "'model'"},
        {"{\"model\": {\"type\": \"BPE\", \"merges\": []}}", WQ_ERR_FORMAT, "model.vocab"},
        {buf[0], WQ_ERR_FORMAT, "model.merges"},
        {buf[1], WQ_ERR_UNSUPPORTED, "model.type"},
        {buf[2], WQ_ERR_FORMAT, "model.merges[0]"},
        {buf[3], WQ_ERR_UNSUPPORTED, "pre_tokenizer.type"},
        {buf[4], WQ_ERR_UNSUPPORTED, "pre_tokenizer.pattern.Regex"},
        {buf[5], WQ_ERR_UNSUPPORTED, "normalizer.type"},
        {buf[6], WQ_ERR_FORMAT, "model.vocab"},
        {buf[7], WQ_ERR_FORMAT, "added_tokens[0]"},
    };
    char dir[256], path[512];
    wq_test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad-tokenizer.json", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text(path, cases[i].json);
        wq_tokenizer *t = (wq_tokenizer *)&cases; /* must be reset to NULL */
        int saved = capture_begin();
        wq_status st = wq_tok_load(path, &t);
        char *err = capture_end(saved);
        if (st != cases[i].want || !strstr(err, path) || !strstr(err, cases[i].key)) {
            fprintf(stderr, "case %zu (%s): status %d, message: %s", i, cases[i].json, (int)st,
                    err);
            fail();
        }
        assert_null(t);
        free(err);
    }
    unlink(path);
    rmdir(dir);
}

/* Qwen2's NFC normalizer: decomposed text encodes as its composition. Expected compositions are
 * worked out by hand from the Unicode data (e + U+0301 -> U+00E9; A + U+030A and the singleton
 * U+212B ANGSTROM SIGN -> U+00C5; Hangul jamo U+1100 U+1161 U+11A8 -> U+AC01 by the algorithm;
 * q + U+0307 (class 230) + U+0323 (class 220) reorders to q U+0323 U+0307 and stays decomposed;
 * U+0958 is a composition exclusion: U+0915 U+093C stays as is). */
static void json_nfc_should_compose_decomposed_text(void **state)
{
    (void)state;
    wq_tokenizer *t = NULL;
    assert_int_equal(wq_tok_load(DATA_DIR "/qwen2.json", &t), WQ_OK);
    static const char *const pairs[][2] = {
        {"cafe\xcc\x81", "caf\xc3\xa9"},
        {"A\xcc\x8a \xe2\x84\xab", "\xc3\x85 \xc3\x85"},
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"},
        {"q\xcc\x87\xcc\xa3", "q\xcc\xa3\xcc\x87"},
        {"\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc"},
        {"x\xff\xcc\x81y", "x\xff\xcc\x81y"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        int32_t *a = NULL, *b = NULL;
        int64_t na = 0, nb = 0;
        assert_int_equal(wq_tok_encode(t, pairs[i][0], strlen(pairs[i][0]), &a, &na), WQ_OK);
        assert_int_equal(wq_tok_encode(t, pairs[i][1], strlen(pairs[i][1]), &b, &nb), WQ_OK);
        char *s = NULL;
        size_t sl = 0;
        assert_int_equal(wq_tok_decode(t, a, na, &s, &sl), WQ_OK);
        if (sl != strlen(pairs[i][1]) || memcmp(s, pairs[i][1], sl) != 0) {
            fprintf(stderr, "NFC case %zu: decoded '%s'\n", i, s);
            fail();
        }
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, (size_t)na * sizeof *a);
        wq_free(s);
        wq_free(a);
        wq_free(b);
    }
    wq_tok_free(t);
}

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

static void json_should_return_nomem_without_leaking(void **state)
{
    (void)state;
    static const char *const files[] = {DATA_DIR "/llama3.json", DATA_DIR "/sp-legacy.json"};
    const char *text = "Once upon a <|eot_id|> time \xf0\x9f\x98\x80 123456 I'm";
    const wq_alloc_hooks hooks = {probe_malloc, probe_free};
    for (int f = 0; f < 2; f++) {
        int failures = 0;
        long leak_at = -1, wrong_at = -1;
        int saved = capture_begin();
        for (long k = 0; k < 100000; k++) {
            g_probe = (alloc_probe){0, 0, k};
            wq_alloc_set_hooks(&hooks);
            wq_tokenizer *t = NULL;
            wq_status st = wq_tok_load(files[f], &t);
            int32_t *ids = NULL;
            int64_t ni = 0;
            char *s = NULL;
            if (st == WQ_OK) st = wq_tok_encode(t, text, strlen(text), &ids, &ni);
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
        free(capture_end(saved));
        assert_int_equal(leak_at, -1);
        assert_int_equal(wrong_at, -1);
        assert_true(failures > 10);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_should_match_every_reference_case),
        cmocka_unit_test(json_sp_conversion_should_equal_tok_sp),
        cmocka_unit_test(json_sp_should_reproduce_sentencepiece_cases),
        cmocka_unit_test(json_should_follow_directory_precedence),
        cmocka_unit_test(json_byte_level_should_roundtrip_any_bytes),
        cmocka_unit_test(json_should_reject_bad_files_naming_file_and_key),
        cmocka_unit_test(json_nfc_should_compose_decomposed_text),
        cmocka_unit_test(json_should_return_nomem_without_leaking),
    };
    return cmocka_run_group_tests_name("tok_json", tests, NULL, NULL);
}
