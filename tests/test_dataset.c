/* test_dataset.c: loaders, the evaluation protocols of assets/README.md (TinyStories 400..499 ->
 * 36,658 predicted tokens; WikiText-2 40 x 512 -> 20,440), calibration windows, and bad inputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_log.h"
#include "model/dataset.h"
#include "model/tok_sp.h"
#include "wq_testutil.h"

#define TOK_MODEL WQ_ASSETS_DIR "/stories260K-hf/tokenizer.model"
#define STORIES WQ_ASSETS_DIR "/text/tinystories-val-500.txt"
#define WIKITEXT WQ_ASSETS_DIR "/text/wikitext2-test.raw"
#define C4 WQ_ASSETS_DIR "/text/c4-sample-1000.jsonl"

typedef struct {
    wq_tokenizer *tok;
    char dir[256];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || wq_tok_load(TOK_MODEL, &f->tok) != WQ_OK) return -1;
    if (!wq_test_tmpdir(f->dir, sizeof f->dir)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    wq_tok_free(f->tok);
    wq_test_system("rm -rf '%s'", f->dir);
    free(f);
    return 0;
}

/* Writes a file in the fixture's temp dir and returns its path (static buffer per slot). */
static const char *tmpfile_with(const fixture *f, int slot, const char *name, const void *data,
                                size_t n)
{
    static char paths[4][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", f->dir, name);
    assert_int_equal(wq_test_write_file(paths[slot], data, n), 0);
    return paths[slot];
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// ---- evaluation protocols
// --------------------------------------------------------------------------

static void stories_should_give_reference_token_count(void **state)
{
    fixture *f = *state;
    wq_text_docs docs;
    assert_int_equal(wq_data_load_stories(STORIES, 400, 500, &docs), WQ_OK);
    assert_int_equal(docs.n_docs, 100);
    assert_int_equal(docs.first_index, 400);
    /* stripped: no surrounding whitespace, no separator */
    for (int64_t i = 0; i < docs.n_docs; i++) {
        assert_true(docs.lens[i] > 0);
        assert_int_equal(strlen(docs.texts[i]), docs.lens[i]);
        assert_true(docs.texts[i][0] != ' ' && docs.texts[i][0] != '\n');
        assert_true(docs.texts[i][docs.lens[i] - 1] != '\n');
        assert_null(strstr(docs.texts[i], "<|endoftext|>"));
    }
    wq_seq_set set;
    assert_int_equal(wq_data_eval_stories(f->tok, &docs, 512, &set), WQ_OK);
    assert_int_equal(set.n_seqs, 100);
    assert_int_equal(set.n_predicted, 36658);
    assert_int_equal(set.n_tokens, 36658 + 100);
    for (int64_t i = 0; i < set.n_seqs; i++) {
        assert_int_equal(set.seqs[i].ids[0], 1);
        assert_true(set.seqs[i].len >= 2 && set.seqs[i].len <= 512);
    }
    /* a shorter cut gives exactly min(len, max_len) - 1 per story */
    wq_seq_set cut;
    assert_int_equal(wq_data_eval_stories(f->tok, &docs, 64, &cut), WQ_OK);
    int64_t want = 0;
    for (int64_t i = 0; i < set.n_seqs; i++)
        want += (set.seqs[i].len < 64 ? set.seqs[i].len : 64) - 1;
    assert_int_equal(cut.n_predicted, want);
    assert_memory_equal(cut.seqs[7].ids, set.seqs[7].ids, (size_t)cut.seqs[7].len * 4);
    wq_data_seqs_free(&cut);
    wq_data_seqs_free(&set);
    wq_data_seqs_free(&set); /* twice is fine */
    /* all 500 stories: the empty tail after the final separator is not a story */
    wq_data_docs_free(&docs);
    assert_int_equal(wq_data_load_stories(STORIES, 0, -1, &docs), WQ_OK);
    assert_int_equal(docs.n_docs, 500);
    assert_memory_equal(docs.texts[0], "Spot. Spot saw", 14);
    wq_data_docs_free(&docs);
    wq_data_docs_free(&docs);
}

static void wikitext_should_give_reference_windows(void **state)
{
    fixture *f = *state;
    wq_text_docs docs;
    assert_int_equal(wq_data_load_text(WIKITEXT, true, &docs), WQ_OK);
    assert_int_equal(docs.n_docs, 1);
    assert_int_equal(docs.lens[0], 1290547 - 2891); /* every CRLF became LF */
    assert_null(memchr(docs.texts[0], '\r', docs.lens[0]));
    int32_t *stream = NULL;
    int64_t n = 0;
    double t0 = now_s();
    assert_int_equal(wq_data_encode_stream(f->tok, &docs, &stream, &n), WQ_OK);
    double dt = now_s() - t0;
    printf("[ info ] WikiText-2 test: %zu bytes -> %lld tokens in %.3f s (%.1f MB/s)\n",
           docs.lens[0], (long long)n, dt, docs.lens[0] / dt / 1e6);
    assert_true(dt < 10.0 * WQ_TEST_TIME_SCALE); /* generous for Debug/valgrind; Release: < 2 s */
    assert_int_equal(stream[0], 1);
    assert_true(n > 40 * 512);
    wq_seq_set set;
    assert_int_equal(wq_data_eval_windows(stream, n, WIKITEXT, 40, 512, &set), WQ_OK);
    assert_int_equal(set.n_seqs, 40);
    assert_int_equal(set.n_predicted, 20440);
    assert_int_equal(set.seqs[0].ids[0], 1);
    assert_int_equal(set.seqs[1].ids[0], stream[512]);
    assert_memory_equal(set.seqs[39].ids, stream + 39 * 512, 512 * sizeof *stream);
    wq_data_seqs_free(&set);
    /* n_windows <= 0: every full window */
    assert_int_equal(wq_data_eval_windows(stream, n, WIKITEXT, 0, 512, &set), WQ_OK);
    assert_int_equal(set.n_seqs, n / 512);
    wq_data_seqs_free(&set);
    /* too few tokens for the request */
    assert_int_equal(wq_data_eval_windows(stream, 1000, "short", 2, 512, &set), WQ_ERR_ARG);
    assert_non_null(strstr(wq_log_last_error(), "short"));
    assert_int_equal(wq_data_eval_windows(stream, n, "w", 4, 1, &set), WQ_ERR_ARG);
    wq_free(stream);
    wq_data_docs_free(&docs);
}

static void jsonl_should_load_c4_records(void **state)
{
    (void)state;
    wq_text_docs docs;
    assert_int_equal(wq_data_load_jsonl(C4, 0, -1, &docs), WQ_OK);
    assert_int_equal(docs.n_docs, 1000);
    assert_string_equal(docs.texts[0] + docs.lens[0] - 0, ""); /* NUL-terminated */
    assert_int_equal(docs.lens[0], 747);
    assert_memory_equal(docs.texts[0], "Beginners BBQ Class Taking Place in Missoula!\nDo you", 52);
    assert_memory_equal(docs.texts[999], "SBI Magnum Gilt Fund", 20);
    wq_data_docs_free(&docs);
    assert_int_equal(wq_data_load_jsonl(C4, 999, 1000, &docs), WQ_OK);
    assert_int_equal(docs.n_docs, 1);
    assert_int_equal(docs.first_index, 999);
    assert_memory_equal(docs.texts[0], "SBI Magnum Gilt Fund", 20);
    wq_data_docs_free(&docs);
}

// ---- calibration
// -----------------------------------------------------------------------------------

static void calib_should_be_deterministic_in_the_seed(void **state)
{
    fixture *f = *state;
    wq_text_docs docs;
    int32_t *stream = NULL;
    int64_t n = 0;
    assert_int_equal(wq_data_load_stories(STORIES, 0, 400, &docs), WQ_OK);
    assert_int_equal(wq_data_encode_stream(f->tok, &docs, &stream, &n), WQ_OK);
    wq_calib_set a, b, c;
    assert_int_equal(wq_data_calib_sample(stream, n, "s", 32, 128, 42, &a), WQ_OK);
    assert_int_equal(wq_data_calib_sample(stream, n, "s", 32, 128, 42, &b), WQ_OK);
    assert_int_equal(wq_data_calib_sample(stream, n, "s", 32, 128, 43, &c), WQ_OK);
    assert_int_equal(a.n_samples, 32);
    assert_int_equal(a.seqlen, 128);
    assert_int_equal(a.stream_len, n);
    assert_memory_equal(a.ids, b.ids, 32 * 128 * sizeof *a.ids);
    assert_memory_equal(a.starts, b.starts, 32 * sizeof *a.starts);
    assert_true(memcmp(a.starts, c.starts, 32 * sizeof *a.starts) != 0);
    for (int64_t s = 0; s < 32; s++) {
        assert_true(a.starts[s] >= 0 && a.starts[s] <= n - 128 - 1);
        assert_memory_equal(a.ids + s * 128, stream + a.starts[s], 128 * sizeof *stream);
    }
    /* pinned: the first start for seed 42 is a pure function of (seed, stream length) */
    uint64_t z = 42 + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const uint64_t range = (uint64_t)(n - 128);
    if (z >= (0 - range) % range) assert_int_equal(a.starts[0], (int64_t)(z % range));
    /* the config route gives the same windows from the same stories */
    wq_config cfg;
    wq_config_defaults(&cfg, WQ_ALGO_GPTQ);
    snprintf(cfg.calib.text, sizeof cfg.calib.text, "%s", STORIES);
    cfg.calib.format = WQ_TEXT_STORIES;
    cfg.calib.range_begin = 0;
    cfg.calib.range_end = 400;
    cfg.calib.n_samples = 32;
    cfg.calib.seqlen = 128;
    cfg.calib.seed = 42;
    wq_calib_set d;
    assert_int_equal(wq_data_calib_load(&cfg.calib, f->tok, &d), WQ_OK);
    assert_memory_equal(d.ids, a.ids, 32 * 128 * sizeof *a.ids);
    wq_data_calib_free(&d);
    /* C4 JSONL source */
    cfg.calib.format = WQ_TEXT_JSONL;
    snprintf(cfg.calib.text, sizeof cfg.calib.text, "%s", C4);
    cfg.calib.range_end = -1;
    cfg.calib.seqlen = 512;
    assert_int_equal(wq_data_calib_load(&cfg.calib, f->tok, &d), WQ_OK);
    assert_int_equal(d.n_samples, 32);
    wq_data_calib_free(&d);
    wq_data_calib_free(&d);
    wq_config_free(&cfg);
    wq_data_calib_free(&a);
    wq_data_calib_free(&b);
    wq_data_calib_free(&c);
    wq_free(stream);
    wq_data_docs_free(&docs);
}

static void calib_should_reject_short_streams_and_bad_sizes(void **state)
{
    fixture *f = *state;
    const int32_t s[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    wq_calib_set c;
    assert_int_equal(wq_data_calib_sample(s, 8, "tiny.txt", 4, 7, 1, &c), WQ_OK); /* 8 >= 7 + 1 */
    for (int64_t k = 0; k < 4; k++)
        assert_int_equal(c.starts[k], 0);
    wq_data_calib_free(&c);
    assert_int_equal(wq_data_calib_sample(s, 8, "tiny.txt", 4, 8, 1, &c), WQ_ERR_ARG);
    assert_non_null(strstr(wq_log_last_error(), "tiny.txt"));
    assert_null(c.ids);
    assert_int_equal(wq_data_calib_sample(s, 8, "x", 4, 1, 1, &c), WQ_ERR_ARG); /* seqlen <= 1 */
    assert_int_equal(wq_data_calib_sample(s, 8, "x", 0, 4, 1, &c), WQ_ERR_ARG);
    /* a configured source too short for seqlen names the file */
    const char *p = tmpfile_with(f, 0, "short.txt", "Once upon a time.", 17);
    wq_calib_cfg cc = {.format = WQ_TEXT_PLAIN,
                       .range_begin = 0,
                       .range_end = -1,
                       .n_samples = 2,
                       .seqlen = 64,
                       .seed = 1};
    snprintf(cc.text, sizeof cc.text, "%s", p);
    assert_int_equal(wq_data_calib_load(&cc, f->tok, &c), WQ_ERR_ARG);
    assert_non_null(strstr(wq_log_last_error(), "short.txt"));
    cc.text[0] = '\0';
    assert_int_equal(wq_data_calib_load(&cc, f->tok, &c), WQ_ERR_ARG);
}

// ---- bad input
// -------------------------------------------------------------------------------------

static void loaders_should_reject_bad_files(void **state)
{
    fixture *f = *state;
    wq_text_docs docs;
    /* empty text file */
    const char *empty = tmpfile_with(f, 0, "empty.txt", "", 0);
    assert_int_equal(wq_data_load_text(empty, true, &docs), WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "empty.txt"));
    assert_null(docs.texts);
    assert_int_equal(wq_data_load_stories(empty, 0, -1, &docs), WQ_ERR_FORMAT);
    assert_int_equal(wq_data_load_jsonl(empty, 0, -1, &docs), WQ_ERR_FORMAT);
    /* missing file */
    assert_int_equal(wq_data_load_text("/nonexistent/x.txt", false, &docs), WQ_ERR_IO);
    assert_non_null(strstr(wq_log_last_error(), "/nonexistent/x.txt"));
    assert_int_equal(wq_data_load_stories("/nonexistent/s.txt", 0, 1, &docs), WQ_ERR_IO);
    assert_int_equal(wq_data_load_jsonl("/nonexistent/c.jsonl", 0, 1, &docs), WQ_ERR_IO);
    /* story ranges */
    assert_int_equal(wq_data_load_stories(STORIES, 400, 501, &docs), WQ_ERR_ARG);
    assert_non_null(strstr(wq_log_last_error(), "500"));
    assert_int_equal(wq_data_load_stories(STORIES, 10, 10, &docs), WQ_ERR_ARG);
    assert_int_equal(wq_data_load_stories(STORIES, -1, 10, &docs), WQ_ERR_ARG);
    assert_int_equal(wq_data_load_stories(STORIES, 500, -1, &docs), WQ_ERR_ARG);
    /* stories: separators, stripping, and a story without a trailing separator */
    const char st[] = "  one \n<|endoftext|>\n\ntwo<|endoftext|><|endoftext|>three\r\n";
    const char *sp = tmpfile_with(f, 1, "st.txt", st, sizeof st - 1);
    assert_int_equal(wq_data_load_stories(sp, 0, -1, &docs), WQ_OK);
    assert_int_equal(docs.n_docs, 4);
    assert_string_equal(docs.texts[0], "one");
    assert_string_equal(docs.texts[1], "two");
    assert_string_equal(docs.texts[2], "");
    assert_string_equal(docs.texts[3], "three");
    wq_data_docs_free(&docs);
    /* JSONL: missing text, non-string text, malformed line, trailing garbage: file:line */
    const char j1[] = "{\"text\": \"a\"}\n\n{\"url\": \"x\"}\n";
    const char *jp = tmpfile_with(f, 2, "bad1.jsonl", j1, sizeof j1 - 1);
    assert_int_equal(wq_data_load_jsonl(jp, 0, -1, &docs), WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "bad1.jsonl:3"));
    assert_int_equal(wq_data_load_jsonl(jp, 0, 1, &docs), WQ_OK); /* only the range is parsed */
    assert_string_equal(docs.texts[0], "a");
    wq_data_docs_free(&docs);
    const char j2[] = "{\"text\": \"a\"}\n{\"text\": \"b\"\n";
    jp = tmpfile_with(f, 2, "bad2.jsonl", j2, sizeof j2 - 1);
    assert_int_equal(wq_data_load_jsonl(jp, 0, -1, &docs), WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "bad2.jsonl:2"));
    const char j3[] = "{\"text\": 5}\n";
    jp = tmpfile_with(f, 2, "bad3.jsonl", j3, sizeof j3 - 1);
    assert_int_equal(wq_data_load_jsonl(jp, 0, -1, &docs), WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "bad3.jsonl:1"));
    const char j4[] = "{\"text\": \"a\"} x\r\n";
    jp = tmpfile_with(f, 2, "bad4.jsonl", j4, sizeof j4 - 1);
    assert_int_equal(wq_data_load_jsonl(jp, 0, -1, &docs), WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "bad4.jsonl:1"));
    const char j5[] = "[\"text\"]\n";
    jp = tmpfile_with(f, 2, "bad5.jsonl", j5, sizeof j5 - 1);
    assert_int_equal(wq_data_load_jsonl(jp, 0, -1, &docs), WQ_ERR_FORMAT);
    const char j6[] = "{\"text\": \"x\\ny \\u00e9\"}\r\n";
    jp = tmpfile_with(f, 2, "ok.jsonl", j6, sizeof j6 - 1);
    assert_int_equal(wq_data_load_jsonl(jp, 0, -1, &docs), WQ_OK);
    assert_string_equal(docs.texts[0], "x\ny \xC3\xA9");
    wq_data_docs_free(&docs);
    assert_int_equal(wq_data_load_jsonl(C4, 0, 1001, &docs), WQ_ERR_ARG);
}

static void ids_should_load_and_check_vocab(void **state)
{
    fixture *f = *state;
    const uint8_t u16[] = {0x01, 0x00, 0xff, 0x01, 0x03, 0x00}; /* 1, 511, 3 */
    const char *p16 = tmpfile_with(f, 0, "ids.u16", u16, sizeof u16);
    int32_t *ids = NULL;
    int64_t n = 0;
    assert_int_equal(wq_data_load_ids(p16, 2, 512, &ids, &n), WQ_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 511);
    assert_int_equal(ids[2], 3);
    wq_free(ids);
    /* 511 >= vocab 500: error naming file and position */
    assert_int_equal(wq_data_load_ids(p16, 2, 500, &ids, &n), WQ_ERR_FORMAT);
    assert_null(ids);
    assert_non_null(strstr(wq_log_last_error(), "ids.u16"));
    assert_non_null(strstr(wq_log_last_error(), "token 1 "));
    /* the same bytes as uint32: 6 bytes is not a whole number */
    assert_int_equal(wq_data_load_ids(p16, 4, 512, &ids, &n), WQ_ERR_FORMAT);
    const uint8_t u32[] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00}; /* 2, 65536 */
    const char *p32 = tmpfile_with(f, 1, "ids.u32", u32, sizeof u32);
    assert_int_equal(wq_data_load_ids(p32, 4, 70000, &ids, &n), WQ_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[1], 65536);
    wq_free(ids);
    assert_int_equal(wq_data_load_ids(p32, 4, 512, &ids, &n), WQ_ERR_FORMAT);
    assert_int_equal(wq_data_load_ids(p32, 3, 512, &ids, &n), WQ_ERR_ARG);
    const char *pe = tmpfile_with(f, 2, "empty.u16", "", 0);
    assert_int_equal(wq_data_load_ids(pe, 2, 512, &ids, &n), WQ_ERR_FORMAT);
    assert_int_equal(wq_data_load_ids("/nonexistent/ids", 2, 512, &ids, &n), WQ_ERR_IO);
    /* an ids16 calibration source: ids are the stream, the range selects tokens */
    uint8_t big[2 * 300];
    for (int i = 0; i < 300; i++) {
        big[2 * i] = (uint8_t)(i % 512);
        big[2 * i + 1] = (uint8_t)((i % 512) >> 8);
    }
    const char *pb = tmpfile_with(f, 3, "big.u16", big, sizeof big);
    wq_calib_cfg cc = {.format = WQ_TEXT_IDS16,
                       .range_begin = 100,
                       .range_end = 200,
                       .n_samples = 3,
                       .seqlen = 50,
                       .seed = 9};
    snprintf(cc.text, sizeof cc.text, "%s", pb);
    wq_calib_set c;
    assert_int_equal(wq_data_calib_load(&cc, f->tok, &c), WQ_OK);
    assert_int_equal(c.stream_len, 100);
    for (int64_t s = 0; s < 3; s++)
        assert_int_equal(c.ids[s * 50], 100 + c.starts[s]);
    wq_data_calib_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stories_should_give_reference_token_count),
        cmocka_unit_test(wikitext_should_give_reference_windows),
        cmocka_unit_test(jsonl_should_load_c4_records),
        cmocka_unit_test(calib_should_be_deterministic_in_the_seed),
        cmocka_unit_test(calib_should_reject_short_streams_and_bad_sizes),
        cmocka_unit_test(loaders_should_reject_bad_files),
        cmocka_unit_test(ids_should_load_and_check_vocab),
    };
    return cmocka_run_group_tests_name("dataset", tests, setup, teardown);
}
