/* fuzz_tok.c: libFuzzer harness for the tokenizer.model (protobuf ModelProto) reader. An accepted
 * model encodes and decodes a few fixed strings (ASCII, spaces, UTF-8, invalid UTF-8, NUL) and
 * decodes every piece id; the accessors must agree with the vocabulary size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "fuzz_util.h"
#include "model/tok_sp.h"

static const struct {
    const char *s;
    size_t n;
} k_texts[] = {
    {"Hello world", 11},
    {"", 0},
    {"   leading  and   trailing  ", 28},
    {"Once upon a time, a little girl\n\tsaid \"hi\".", 43},
    {"caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80 \xe4\xb8\xad", 17},
    {"\xff\xfe bad \xc3 utf8 \xe2\x82", 16},
    {"a\0b", 3},
};

#define MAX_DECODE_IDS 4096 /* bounds the per-input work on large vocabularies */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wq_fuzz_quiet();
    wq_tokenizer *t = NULL;
    if (wq_tok_load_mem(data, size, "fuzz", &t) != WQ_OK) {
        WQ_FUZZ_CHECK(t == NULL);
        return 0;
    }
    const int64_t vocab = wq_tok_vocab_size(t);
    WQ_FUZZ_CHECK(vocab >= 1);
    const int32_t special[4] = {wq_tok_bos(t), wq_tok_eos(t), wq_tok_unk(t), wq_tok_pad(t)};
    for (int k = 0; k < 4; k++)
        WQ_FUZZ_CHECK(special[k] >= -1 && special[k] < vocab);
    for (size_t i = 0; i < sizeof k_texts / sizeof *k_texts; i++) {
        int32_t *ids = NULL;
        int64_t n = 0;
        if (wq_tok_encode(t, k_texts[i].s, k_texts[i].n, &ids, &n) != WQ_OK) continue;
        WQ_FUZZ_CHECK(n >= 0 && (n == 0) == (ids == NULL));
        for (int64_t j = 0; j < n; j++)
            WQ_FUZZ_CHECK(ids[j] >= 0 && ids[j] < vocab);
        char *text = NULL;
        size_t len = 0;
        if (wq_tok_decode(t, ids, n, &text, &len) == WQ_OK) {
            WQ_FUZZ_CHECK(text != NULL && text[len] == '\0');
            wq_free(text);
        }
        wq_free(ids);
    }
    const int64_t m = vocab < MAX_DECODE_IDS ? vocab : MAX_DECODE_IDS;
    int32_t *all = malloc((size_t)m * sizeof *all);
    if (all) {
        for (int64_t i = 0; i < m; i++) {
            all[i] = (int32_t)i;
            const char *p = wq_tok_piece(t, (int32_t)i);
            WQ_FUZZ_CHECK(p != NULL);
            (void)wq_tok_type(t, (int32_t)i);
            (void)wq_tok_score(t, (int32_t)i);
            /* pieces are unique, so the lookup finds this piece; a piece may embed a NUL, and
             * then its C-string prefix can be another piece or none */
            const int32_t j = wq_tok_piece_id(t, p, strlen(p));
            WQ_FUZZ_CHECK(j == (int32_t)i || j == -1 ||
                          (j >= 0 && j < vocab && strcmp(wq_tok_piece(t, j), p) == 0));
        }
        char *text = NULL;
        size_t len = 0;
        if (wq_tok_decode(t, all, m, &text, &len) == WQ_OK) wq_free(text);
        free(all);
    }
    int32_t bad = (int32_t)vocab;
    char *text = NULL;
    WQ_FUZZ_CHECK(wq_tok_decode(t, &bad, 1, &text, NULL) != WQ_OK);
    WQ_FUZZ_CHECK(wq_tok_piece(t, (int32_t)vocab) == NULL && wq_tok_piece(t, -1) == NULL);
    wq_tok_free(t);
    return 0;
}
