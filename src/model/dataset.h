/* dataset.h: text and token sources for evaluation and calibration: loaders (plain text,
 * <|endoftext|>-separated stories, JSONL "text" records, raw uint16/uint32 id files), the two
 * perplexity protocols of assets/README.md ("stories" and "windows"), and seeded calibration
 * windows. Layer: model. Nothing here is collective; every rank may build the same sets. */
#ifndef WQ_DATASET_H
#define WQ_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core_config.h"
#include "model/tok_sp.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- types (caller storage; the library fills them; *_free works on a zeroed struct, twice) -----
 */

/* A list of documents. texts[i] points into one owned buffer, is NUL-terminated and lens[i] bytes
 * long (the text itself may contain NUL bytes only if the source did). */
typedef struct {
    char **texts; /* [n_docs] */
    size_t *lens; /* [n_docs] */
    int64_t n_docs;
    int64_t first_index; /* index of texts[0] in the source (the range begin) */
    char *origin;        /* source file name, for messages */
    char *buf_;          /* owning buffer (internal) */
} wq_text_docs;

/* One token sequence: a view into the owning set. */
typedef struct {
    const int32_t *ids;
    int64_t len;
} wq_token_seq;

/* Evaluation sequences. For every sequence, positions 1..len-1 are predicted (position 0, BOS or
 * the first token of a window, is only context). */
typedef struct {
    wq_token_seq *seqs; /* [n_seqs] */
    int64_t n_seqs;
    int64_t n_tokens;    /* sum of len */
    int64_t n_predicted; /* sum of (len - 1) */
    int32_t *storage_;   /* owning buffer (internal) */
} wq_seq_set;

/* Calibration windows: sample s is ids[s * seqlen .. (s + 1) * seqlen), taken from the token stream
 * at starts[s]. */
typedef struct {
    int32_t *ids;    /* [n_samples * seqlen], contiguous, row-major */
    int64_t *starts; /* [n_samples] */
    int64_t n_samples;
    int64_t seqlen;
    int64_t stream_len; /* tokens in the stream the windows were drawn from */
} wq_calib_set;

/* ---- loaders ------------------------------------------------------------------------------------
 */

/* The whole file as one document; with crlf_to_lf every "\r\n" becomes "\n" (the WikiText-2
 * protocol). Errors: WQ_ERR_ARG (NULL), WQ_ERR_IO (cannot open/read, named), WQ_ERR_FORMAT (empty
 * file), WQ_ERR_NOMEM. Free with wq_data_docs_free. */
wq_status wq_data_load_text(const char *path, bool crlf_to_lf, wq_text_docs *out);

/* Stories separated by "<|endoftext|>", each stripped of surrounding ASCII whitespace; a last part
 * that is empty after stripping (text after the final separator) is not a story. Returns stories
 * [begin, end) (end == -1: to the last). Errors: WQ_ERR_ARG (range outside [0, n_stories] or empty,
 * message names the file and its story count), WQ_ERR_IO, WQ_ERR_FORMAT (empty file), WQ_ERR_NOMEM.
 */
wq_status wq_data_load_stories(const char *path, int64_t begin, int64_t end, wq_text_docs *out);

/* JSONL: one JSON object per line with a string field "text"; whitespace-only lines are skipped and
 * do not count as records. Returns records [begin, end) (end == -1: to the last). Only the lines of
 * the range are parsed. Errors: WQ_ERR_FORMAT (malformed line, not an object, no string "text":
 * message names file:line; empty file), WQ_ERR_ARG (range), WQ_ERR_IO, WQ_ERR_NOMEM. */
wq_status wq_data_load_jsonl(const char *path, int64_t begin, int64_t end, wq_text_docs *out);

void wq_data_docs_free(wq_text_docs *d);

/* Pre-tokenized ids: raw little-endian uint16 (width 2) or uint32 (width 4). Every id must be below
 * vocab_size. On success *ids is wq_malloc'd [*n] (caller frees with wq_free). Errors: WQ_ERR_ARG
 * (width not 2 or 4, vocab_size < 1), WQ_ERR_IO, WQ_ERR_FORMAT (empty file, size not a multiple of
 * width, an id >= vocab_size: message names the file, token index and byte offset), WQ_ERR_NOMEM.
 */
wq_status wq_data_load_ids(const char *path, int width, int64_t vocab_size, int32_t **ids,
                           int64_t *n);

/* ---- token streams and evaluation sets ----------------------------------------------------------
 */

/* The concatenation over documents of [BOS] + encode(doc). *ids is wq_malloc'd [*n], caller frees.
 * Errors: WQ_ERR_ARG (NULL, tokenizer without BOS), WQ_ERR_NOMEM. */
wq_status wq_data_encode_stream(const wq_tokenizer *t, const wq_text_docs *docs, int32_t **ids,
                                int64_t *n);

/* "stories" protocol: one sequence per document, [BOS] + encode(doc) cut to max_len tokens.
 * (TinyStories 400..499, max_len 512: 36,658 predicted tokens.) Errors: WQ_ERR_ARG (max_len < 2,
 * no documents, tokenizer without BOS), WQ_ERR_NOMEM. Free with wq_data_seqs_free. */
wq_status wq_data_eval_stories(const wq_tokenizer *t, const wq_text_docs *docs, int64_t max_len,
                               wq_seq_set *out);

/* "windows" protocol: the first n_windows non-overlapping windows of window_len tokens of a stream
 * (WikiText-2: stream = [BOS] + encode(whole text), 40 x 512 -> 20,440 predicted tokens).
 * n_windows <= 0 takes every full window. `origin` names the source in messages. Errors: WQ_ERR_ARG
 * (window_len < 2, fewer full windows in the stream than requested: message names origin and the
 * counts), WQ_ERR_NOMEM. */
wq_status wq_data_eval_windows(const int32_t *stream, int64_t n, const char *origin,
                               int64_t n_windows, int64_t window_len, wq_seq_set *out);

void wq_data_seqs_free(wq_seq_set *s);

/* ---- calibration --------------------------------------------------------------------------------
 */

/* n_samples windows of seqlen tokens at uniformly random starts in [0, n - seqlen - 1] (as GPTQ's
 * loaders draw them), from a splitmix64 stream seeded with `seed` alone: x_k = splitmix64 output k,
 * start = x mod (n - seqlen) after rejecting x < 2^64 mod (n - seqlen) (unbiased). The same stream
 * and seed give the same windows on every machine and rank count. Errors: WQ_ERR_ARG (seqlen < 2,
 * n_samples < 1, stream shorter than seqlen + 1 tokens: message names origin), WQ_ERR_NOMEM.
 * Free with wq_data_calib_free. */
wq_status wq_data_calib_sample(const int32_t *stream, int64_t n, const char *origin,
                               int64_t n_samples, int64_t seqlen, uint64_t seed, wq_calib_set *out);

/* The calibration set a config describes: the stream is [BOS]+encode(doc) over the documents of
 * cfg->text (text: one document, CRLF -> LF; stories / jsonl: documents [range_begin, range_end)),
 * or, for ids16 / ids32 files, the ids [range_begin, range_end) themselves (checked against the
 * tokenizer's vocabulary); then wq_data_calib_sample. Errors: WQ_ERR_ARG (no text configured, bad
 * range or sizes), and those of the loaders. */
wq_status wq_data_calib_load(const wq_calib_cfg *cfg, const wq_tokenizer *t, wq_calib_set *out);

void wq_data_calib_free(wq_calib_set *c);

#ifdef __cplusplus
}
#endif
#endif /* WQ_DATASET_H */
