/* tok_json.h: HuggingFace `tokenizer.json` tokenizers with a BPE model, in the two shapes LLMs use:
 *   byte-level BPE (GPT-2, Llama-3, Qwen2): ByteLevel pre-tokenizer, optionally after a Split with
 *     the Llama-3 / Qwen2 regex, GPT-2 byte-to-unicode map, merges by rank, ignore_merges;
 *   SentencePiece-style BPE (Llama-2, Mistral): normalizer Prepend("▁") + Replace(" " -> "▁"), or a
 *     Metaspace pre-tokenizer; <0xNN> byte fallback; merges by rank.
 * Added tokens (special or not) are split off first. The known pre-tokenizer regexes are matched by
 * hand-written matchers over a compact Unicode table (tok_unicode_tab.h), not a regex engine; any
 * other pattern, component or option is refused with an error naming the file and the JSON key.
 * Callers normally use this through the common wq_tokenizer interface of tok_sp.h (wq_tok_load
 * picks the file); this header is the implementation's. Layer: model. No MPI. */
#ifndef WQ_TOK_JSON_H
#define WQ_TOK_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "model/tok_sp.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Immutable after loading: every function below is thread-safe on a shared tokenizer. */
typedef struct wq_tok_json wq_tok_json;

/* ---- lifecycle ----------------------------------------------------------------------------------
 */

/* Loads `path`, a tokenizer.json file. Special token ids (BOS/EOS/PAD/UNK) come from a
 * tokenizer_config.json next to it when there is one (bos_token, eos_token, pad_token as a string
 * or {"content": ...}), else BOS from the post_processor's TemplateProcessing (its leading special
 * token) and UNK from model.unk_token. Not collective. *out is heap-owned by the caller
 * (wq_tok_json_free). Errors: WQ_ERR_ARG (NULL), WQ_ERR_IO, WQ_ERR_FORMAT (malformed JSON, missing
 * or mistyped keys, merges naming tokens outside the vocabulary, duplicate or out-of-range ids),
 * WQ_ERR_UNSUPPORTED (model type other than BPE, unknown normalizer / pre-tokenizer / decoder /
 * regex / option), WQ_ERR_NOMEM; every message names the file and the key. */
wq_status wq_tok_json_load(const char *path, wq_tok_json **out);

/* Same from the JSON text in memory (no tokenizer_config.json). `origin` names the source in
 * messages (may be NULL). Errors as wq_tok_json_load minus WQ_ERR_IO. */
wq_status wq_tok_json_load_mem(const void *data, size_t size, const char *origin,
                               wq_tok_json **out);

/* Accepts NULL. */
void wq_tok_json_free(wq_tok_json *t);

/* ---- queries (same meaning as the wq_tok_* functions of tok_sp.h)
 * -------------------------------- */

int64_t wq_tok_json_vocab_size(const wq_tok_json *t); /* highest id + 1 */
int32_t wq_tok_json_bos(const wq_tok_json *t);        /* -1 when unknown */
int32_t wq_tok_json_eos(const wq_tok_json *t);
int32_t wq_tok_json_unk(const wq_tok_json *t);
int32_t wq_tok_json_pad(const wq_tok_json *t);
/* Token text as stored (byte-level tokens in their mapped form, e.g. "Ġthe"); NULL out of range. */
const char *wq_tok_json_piece(const wq_tok_json *t, int32_t id);
/* CONTROL for special added tokens, USER_DEFINED for other added tokens, UNKNOWN for unk, BYTE for
 * <0xNN> tokens of a byte-fallback model, NORMAL otherwise; 0 out of range. */
wq_tok_piece_type wq_tok_json_type(const wq_tok_json *t, int32_t id);
/* Minus the merge rank that creates the token (0 for tokens no merge creates), so higher is
 * earlier as with SentencePiece scores. 0 out of range. */
float wq_tok_json_score(const wq_tok_json *t, int32_t id);
int32_t wq_tok_json_piece_id(const wq_tok_json *t, const char *piece, size_t len);

/* ---- encode / decode
 * ----------------------------------------------------------------------------- */

/* Encodes len bytes of text as HF `tokenizer.encode(text, add_special_tokens=False)`: added tokens
 * split off (leftmost-longest, on the raw text, honouring lstrip/rstrip); each other segment is
 * normalized, pre-tokenized into words, and every word is BPE-merged by rank (lowest first,
 * leftmost on ties; with ignore_merges a word that is a token is emitted whole). A character
 * missing from the vocabulary becomes <0xNN> byte tokens (byte_fallback), else unk (consecutive
 * unks fused with fuse_unk), else is dropped. Bytes that are not valid UTF-8 are taken one byte at
 * a time (byte-level models map them like any byte). An NFC normalizer (Qwen2) is applied first
 * (UAX #15 with the tables of tok_unicode_tab.h; skipped when the quick check shows the text is
 * already NFC). On success *ids is wq_malloc'd [*n], owned by the caller, NULL when *n == 0.
 * Errors: WQ_ERR_ARG (NULL arguments, text longer than 512 MiB), WQ_ERR_NOMEM. */
wq_status wq_tok_json_encode(const wq_tok_json *t, const char *text, size_t len, int32_t **ids,
                             int64_t *n);

/* Decodes ids as HF `decode(ids, skip_special_tokens=True)`: special added tokens produce nothing;
 * the decoder of the file maps tokens back (ByteLevel: the inverse byte map; Metaspace or
 * Replace("▁" -> " ") + ByteFallback + Fuse + Strip: spaces, raw bytes of <0xNN> runs, the leading
 * space stripped). Byte runs are not validated as UTF-8. *text is wq_malloc'd, NUL-terminated,
 * caller-owned; *len (may be NULL) gets its length. Errors: WQ_ERR_ARG (NULL, n < 0, an id out of
 * range, logged with its position), WQ_ERR_NOMEM. */
wq_status wq_tok_json_decode(const wq_tok_json *t, const int32_t *ids, int64_t n, char **text,
                             size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* WQ_TOK_JSON_H */
