/* fuzz_tokjson.c: libFuzzer harness for the HF tokenizer.json reader and BPE encoder (tok_json.c).
 * Input: tokenizer.json text, optionally followed by "\n#TEXT#\n" and a text to encode (arbitrary
 * bytes); without a text part a few fixed strings are encoded. An accepted tokenizer must give ids
 * inside the vocabulary, the same ids twice, decodable ids, and accessors that agree with the
 * vocabulary size; every token id decodes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "fuzz_util.h"
#include "model/tok_json.h"

#define TEXT_MARK "\n#TEXT#\n"
#define MAX_DECODE_IDS 4096 /* bounds the per-input work on large vocabularies */

static const struct {
    const char *s;
    size_t n;
} k_texts[] = {
    {"Hello world", 11},
    {"", 0},
    {"  I'm  sure\t\tit's 12345 <|endoftext|> caf\xc3\xa9\n\n\r\n x", 45},
    {"\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 \xe2\x96\x81\xe2\x96\x81 <s>a</s>", 24},
    {"\xff\xfe bad \xc3 utf8 \xe2\x82", 16},
    {"a\0b", 3},
};

static void check_encode(const wq_tok_json *t, int64_t vocab, const char *s, size_t n)
{
    int32_t *ids = NULL, *again = NULL;
    int64_t m = 0, m2 = 0;
    if (wq_tok_json_encode(t, s, n, &ids, &m) != WQ_OK) {
        WQ_FUZZ_CHECK(ids == NULL && m == 0);
        return;
    }
    WQ_FUZZ_CHECK(m >= 0 && (m == 0) == (ids == NULL));
    for (int64_t j = 0; j < m; j++)
        WQ_FUZZ_CHECK(ids[j] >= 0 && ids[j] < vocab);
    WQ_FUZZ_CHECK(wq_tok_json_encode(t, s, n, &again, &m2) == WQ_OK);
    WQ_FUZZ_CHECK(m2 == m && (m == 0 || memcmp(ids, again, (size_t)m * sizeof *ids) == 0));
    char *text = NULL;
    size_t len = 0;
    if (wq_tok_json_decode(t, ids, m, &text, &len) == WQ_OK) {
        WQ_FUZZ_CHECK(text != NULL && text[len] == '\0');
        wq_free(text);
    }
    wq_free(again);
    wq_free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wq_fuzz_quiet();
    size_t json_len = size;
    const char *text = NULL;
    size_t text_len = 0;
    const size_t ml = sizeof TEXT_MARK - 1;
    for (size_t i = 0; i + ml <= size; i++) {
        if (memcmp(data + i, TEXT_MARK, ml) == 0) {
            json_len = i;
            text = (const char *)data + i + ml;
            text_len = size - i - ml;
            break;
        }
    }
    wq_tok_json *t = NULL;
    if (wq_tok_json_load_mem(data, json_len, "fuzz", &t) != WQ_OK) {
        WQ_FUZZ_CHECK(t == NULL);
        return 0;
    }
    const int64_t vocab = wq_tok_json_vocab_size(t);
    WQ_FUZZ_CHECK(vocab >= 1);
    const int32_t special[4] = {wq_tok_json_bos(t), wq_tok_json_eos(t), wq_tok_json_unk(t),
                                wq_tok_json_pad(t)};
    for (int k = 0; k < 4; k++)
        WQ_FUZZ_CHECK(special[k] >= -1 && special[k] < vocab);
    if (text) {
        check_encode(t, vocab, text, text_len);
    } else {
        for (size_t i = 0; i < sizeof k_texts / sizeof *k_texts; i++)
            check_encode(t, vocab, k_texts[i].s, k_texts[i].n);
    }
    const int64_t m = vocab < MAX_DECODE_IDS ? vocab : MAX_DECODE_IDS;
    int32_t *all = malloc((size_t)m * sizeof *all);
    if (all) {
        for (int64_t i = 0; i < m; i++) {
            all[i] = (int32_t)i;
            const char *p = wq_tok_json_piece(t, (int32_t)i);
            WQ_FUZZ_CHECK(p != NULL);
            WQ_FUZZ_CHECK(wq_tok_json_piece_id(t, p, strlen(p)) == (int32_t)i);
            WQ_FUZZ_CHECK(wq_tok_json_type(t, (int32_t)i) != 0);
            (void)wq_tok_json_score(t, (int32_t)i);
        }
        char *s = NULL;
        size_t len = 0;
        if (wq_tok_json_decode(t, all, m, &s, &len) == WQ_OK) wq_free(s);
        free(all);
    }
    int32_t bad = (int32_t)vocab;
    char *s = NULL;
    WQ_FUZZ_CHECK(wq_tok_json_decode(t, &bad, 1, &s, NULL) != WQ_OK);
    WQ_FUZZ_CHECK(wq_tok_json_piece(t, (int32_t)vocab) == NULL && wq_tok_json_piece(t, -1) == NULL);
    wq_tok_json_free(t);
    return 0;
}
