/* tok_sp.h: SentencePiece BPE tokenizer read from a `tokenizer.model` (protobuf ModelProto) with a
 * bounds-checked wire-format reader of our own; encode reproduces SentencePiece's BPE segmentation
 * (identity normalizer, dummy prefix, whitespace escaping, byte fallback). wq_tokenizer is also the
 * common handle of both tokenizer kinds: a handle loaded from a tokenizer.json forwards every call
 * below to tok_json.c (see wq_tok_load and docs/tokenizers.md). Layer: model. No MPI. */
#ifndef WQ_TOK_SP_H
#define WQ_TOK_SP_H

#include <stddef.h>
#include <stdint.h>

#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Piece types of sentencepiece_model.proto (values are the proto's). */
typedef enum wq_tok_piece_type {
    WQ_TOK_NORMAL = 1,
    WQ_TOK_UNKNOWN = 2,
    WQ_TOK_CONTROL = 3,
    WQ_TOK_USER_DEFINED = 4,
    WQ_TOK_UNUSED = 5,
    WQ_TOK_BYTE = 6,
} wq_tok_piece_type;

/* Immutable after loading: every function below is thread-safe on a shared tokenizer. */
typedef struct wq_tokenizer wq_tokenizer;

/* ---- lifecycle ----------------------------------------------------------------------------------
 */

/* Loads the tokenizer of a model: the common entry point for eval, generate and calibration.
 * `path` is a directory or a file. In a directory, `tokenizer.model` (SentencePiece) is used when
 * present, else `tokenizer.json` (HuggingFace, BPE; see tok_json.h); a file whose name ends in
 * ".json" is read as tokenizer.json, any other file as a SentencePiece model. Every function below
 * works on either kind. Not collective. On success *out is heap-owned by the caller: release with
 * wq_tok_free. A tokenizer.json adds the errors of wq_tok_json_load; a directory with neither file
 * gives WQ_ERR_IO.
 * Errors (each logged with the file name): WQ_ERR_ARG (NULL arguments), WQ_ERR_IO (cannot open or
 * read), WQ_ERR_FORMAT (truncated or corrupt protobuf, invalid piece table: empty or duplicate
 * pieces, bad type, malformed <0xXX> byte piece, non-finite score, unk/bos/eos/pad id out of
 * range), WQ_ERR_UNSUPPORTED (model type other than BPE, a non-empty precompiled normalization
 * charsmap, treat_whitespace_as_suffix), WQ_ERR_NOMEM. Never reads outside the file's bytes. */
wq_status wq_tok_load(const char *path, wq_tokenizer **out);

/* Same from bytes in memory (the serialized ModelProto). `origin` names the source in messages
 * (may be NULL). The bytes are not retained. Errors as wq_tok_load, minus WQ_ERR_IO. */
wq_status wq_tok_load_mem(const void *data, size_t size, const char *origin, wq_tokenizer **out);

/* Accepts NULL. */
void wq_tok_free(wq_tokenizer *t);

/* ---- queries ------------------------------------------------------------------------------------
 */

/* Number of pieces (ids are 0 .. vocab_size-1). */
int64_t wq_tok_vocab_size(const wq_tokenizer *t);
/* Special ids from the trainer spec; -1 when the model disables them. */
int32_t wq_tok_bos(const wq_tokenizer *t);
int32_t wq_tok_eos(const wq_tokenizer *t);
int32_t wq_tok_unk(const wq_tokenizer *t);
int32_t wq_tok_pad(const wq_tokenizer *t);
/* The piece text as stored (whitespace as U+2581), NUL-terminated and owned by t; NULL if the id is
 * out of range. */
const char *wq_tok_piece(const wq_tokenizer *t, int32_t id);
/* Piece type and score; 0 / 0.0f for an id out of range. */
wq_tok_piece_type wq_tok_type(const wq_tokenizer *t, int32_t id);
float wq_tok_score(const wq_tokenizer *t, int32_t id);
/* Id of an exact piece string (any type), or -1. */
int32_t wq_tok_piece_id(const wq_tokenizer *t, const char *piece, size_t len);

/* ---- encode / decode ----------------------------------------------------------------------------
 */

/* Encodes len bytes of text (need not be NUL-terminated; no BOS/EOS is added) exactly as the
 * SentencePiece BPE encoder does:
 *   1. normalize: invalid UTF-8 bytes -> U+FFFD; with remove_extra_whitespaces, leading and
 * trailing ASCII spaces are dropped and runs of spaces collapse to one; with add_dummy_prefix, "▁"
 * is prepended; with escape_whitespaces, ' ' -> "▁" (U+2581). Tabs and newlines are kept as is.
 *   2. split into UTF-8 characters (user-defined pieces are matched first, longest, and never
 * merged);
 *   3. repeatedly merge the adjacent pair whose concatenation is a piece (normal, user-defined or
 *      unused) with the highest score, leftmost on ties (a priority queue over a linked list of
 *      symbols: O(n log n), no pre-splitting on whitespace);
 *   4. unused pieces are split back into the pieces they were merged from; symbols that are not
 *      pieces become one <0xXX> byte piece per UTF-8 byte (byte_fallback) or unk.
 * On success *ids is wq_malloc'd [*n] and owned by the caller (wq_free); *ids is NULL when *n == 0
 * (empty or all-space text). Errors: WQ_ERR_ARG (NULL arguments, text longer than 512 MiB),
 * WQ_ERR_NOMEM. */
wq_status wq_tok_encode(const wq_tokenizer *t, const char *text, size_t len, int32_t **ids,
                        int64_t *n);

/* Decodes ids to UTF-8 text: "▁" -> ' '; the leading "▁" of the first non-control piece is dropped
 * when the model adds a dummy prefix; control pieces (BOS/EOS/...) produce nothing; runs of byte
 * pieces produce their raw bytes (not validated as UTF-8); unk produces " \u2047 ".
 * On success *text is wq_malloc'd, NUL-terminated, owned by the caller (wq_free); *len (may be
 * NULL) receives its byte length (byte pieces may embed NUL bytes). Errors: WQ_ERR_ARG (NULL
 * arguments, n < 0, an id outside [0, vocab_size), logged with its position), WQ_ERR_NOMEM. */
wq_status wq_tok_decode(const wq_tokenizer *t, const int32_t *ids, int64_t n, char **text,
                        size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* WQ_TOK_SP_H */
