/* dataset.c: text/id loaders, the "stories" and "windows" evaluation protocols, and seeded
 * calibration windows. Documents share one owning buffer; sequence sets share one id buffer.
 * Layer: model. cJSON is used only inside wq_data_load_jsonl and never escapes it. */
#include "model/dataset.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "core/core_rng.h"

#define STORY_SEP "<|endoftext|>"
#define STORY_SEP_LEN (sizeof STORY_SEP - 1)

// ---- helpers
// ---------------------------------------------------------------------------------------

/* The whole file plus a terminating NUL; *buf is wq_malloc'd. */
static wq_status read_file(const char *path, char **buf, size_t *n)
{
    wq_status st = WQ_OK;
    FILE *fp = fopen(path, "rb");
    char *b = NULL;
    long sz = -1;
    WQ_CHECK_GOTO(fp, st, WQ_ERR_IO, done, "%s: cannot open: %s", path, strerror(errno));
    WQ_CHECK_GOTO(fseek(fp, 0, SEEK_END) == 0 && (sz = ftell(fp)) >= 0 &&
                      fseek(fp, 0, SEEK_SET) == 0,
                  st, WQ_ERR_IO, done, "%s: cannot determine the size (not a regular file?)", path);
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

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Resolves end == -1 and checks 0 <= begin < end <= count. */
static wq_status check_range(const char *path, const char *what, int64_t count, int64_t begin,
                             int64_t *end)
{
    int64_t e = *end == -1 ? count : *end;
    if (begin < 0 || e > count || begin >= e) {
        WQ_LOG_ERROR("%s: %s range [%lld, %lld) is empty or outside the file's %lld %s", path, what,
                     (long long)begin, (long long)*end, (long long)count, what);
        return WQ_ERR_ARG;
    }
    *end = e;
    return WQ_OK;
}

/* Allocates the per-document arrays and the origin of an empty wq_text_docs. */
static wq_status docs_alloc(wq_text_docs *d, const char *path, int64_t n_docs)
{
    d->texts = wq_calloc((size_t)n_docs, sizeof *d->texts);
    d->lens = wq_calloc((size_t)n_docs, sizeof *d->lens);
    d->origin = wq_strdup(path);
    d->n_docs = n_docs;
    if (d->texts && d->lens && d->origin) return WQ_OK;
    WQ_LOG_ERROR("%s: out of memory for %lld documents", path, (long long)n_docs);
    return WQ_ERR_NOMEM;
}

/* Appends n ids to a growable array. */
static bool ids_append(int32_t **a, int64_t *len, int64_t *cap, const int32_t *src, int64_t n)
{
    if (*len + n > *cap) {
        int64_t c = *cap ? *cap : 4096;
        while (c < *len + n)
            c *= 2;
        int32_t *b = wq_malloc((size_t)c * sizeof *b);
        if (!b) return false;
        if (*len) memcpy(b, *a, (size_t)*len * sizeof *b);
        wq_free(*a);
        *a = b;
        *cap = c;
    }
    if (n) memcpy(*a + *len, src, (size_t)n * sizeof *src);
    *len += n;
    return true;
}

// ---- loaders
// ---------------------------------------------------------------------------------------

void wq_data_docs_free(wq_text_docs *d)
{
    if (!d) return;
    wq_free(d->texts);
    wq_free(d->lens);
    wq_free(d->origin);
    wq_free(d->buf_);
    memset(d, 0, sizeof *d);
}

wq_status wq_data_load_text(const char *path, bool crlf_to_lf, wq_text_docs *out)
{
    wq_status st = WQ_OK;
    char *buf = NULL;
    size_t n = 0;
    if (!path || !out) return WQ_ERR_ARG;
    memset(out, 0, sizeof *out);
    WQ_TRY_GOTO(read_file(path, &buf, &n), st, done);
    WQ_CHECK_GOTO(n > 0, st, WQ_ERR_FORMAT, done, "%s: the text file is empty", path);
    if (crlf_to_lf) {
        size_t o = 0;
        for (size_t i = 0; i < n; i++)
            if (!(buf[i] == '\r' && i + 1 < n && buf[i + 1] == '\n')) buf[o++] = buf[i];
        buf[o] = '\0';
        n = o;
    }
    WQ_TRY_GOTO(docs_alloc(out, path, 1), st, done);
    out->texts[0] = buf;
    out->lens[0] = n;
    out->buf_ = buf;
    buf = NULL;
done:
    wq_free(buf);
    if (st != WQ_OK) wq_data_docs_free(out);
    return st;
}

/* Next separator at or after p, or NULL. */
static const char *find_sep(const char *p, const char *end)
{
    while ((size_t)(end - p) >= STORY_SEP_LEN) {
        const char *q = memchr(p, '<', (size_t)(end - p) - STORY_SEP_LEN + 1);
        if (!q) return NULL;
        if (memcmp(q, STORY_SEP, STORY_SEP_LEN) == 0) return q;
        p = q + 1;
    }
    return NULL;
}

wq_status wq_data_load_stories(const char *path, int64_t begin, int64_t end, wq_text_docs *out)
{
    wq_status st = WQ_OK;
    char *buf = NULL;
    size_t n = 0;
    if (!path || !out) return WQ_ERR_ARG;
    memset(out, 0, sizeof *out);
    WQ_TRY_GOTO(read_file(path, &buf, &n), st, done);
    WQ_CHECK_GOTO(n > 0, st, WQ_ERR_FORMAT, done, "%s: the stories file is empty", path);

    /* Count the parts, drop an empty tail part, then select the range. */
    const char *e = buf + n;
    int64_t parts = 1;
    const char *last = buf; /* start of the last part */
    for (const char *q = find_sep(buf, e); q; q = find_sep(q + STORY_SEP_LEN, e)) {
        parts++;
        last = q + STORY_SEP_LEN;
    }
    bool tail_empty = true;
    for (const char *p = last; p < e; p++)
        if (!is_space(*p)) tail_empty = false;
    const int64_t n_stories = parts - (tail_empty ? 1 : 0);
    WQ_CHECK_GOTO(n_stories > 0, st, WQ_ERR_FORMAT, done, "%s: contains no stories", path);
    WQ_TRY_GOTO(check_range(path, "stories", n_stories, begin, &end), st, done);
    WQ_TRY_GOTO(docs_alloc(out, path, end - begin), st, done);
    out->first_index = begin;

    const char *p = buf;
    for (int64_t k = 0; k < end; k++) {
        const char *q = find_sep(p, e);
        const char *qe = q ? q : e;
        if (k >= begin) {
            const char *a = p, *b = qe;
            while (a < b && is_space(*a))
                a++;
            while (b > a && is_space(b[-1]))
                b--;
            out->texts[k - begin] = (char *)a;
            out->lens[k - begin] = (size_t)(b - a);
        }
        p = q ? q + STORY_SEP_LEN : e;
    }
    /* NUL-terminate in place only now: the terminators overwrite separator or space bytes. */
    for (int64_t k = 0; k < out->n_docs; k++)
        out->texts[k][out->lens[k]] = '\0';
    out->buf_ = buf;
    buf = NULL;
done:
    wq_free(buf);
    if (st != WQ_OK) wq_data_docs_free(out);
    return st;
}

wq_status wq_data_load_jsonl(const char *path, int64_t begin, int64_t end, wq_text_docs *out)
{
    wq_status st = WQ_OK;
    char *buf = NULL, *dst = NULL;
    size_t n = 0;
    cJSON *root = NULL;
    if (!path || !out) return WQ_ERR_ARG;
    memset(out, 0, sizeof *out);
    WQ_TRY_GOTO(read_file(path, &buf, &n), st, done);
    WQ_CHECK_GOTO(n > 0, st, WQ_ERR_FORMAT, done, "%s: the JSONL file is empty", path);

    /* Records are the non-blank lines. */
    int64_t n_rec = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        bool blank = true;
        for (; j < n && buf[j] != '\n'; j++)
            if (!is_space(buf[j])) blank = false;
        if (!blank) n_rec++;
        i = j + 1;
    }
    WQ_CHECK_GOTO(n_rec > 0, st, WQ_ERR_FORMAT, done, "%s: contains no JSON lines", path);
    WQ_TRY_GOTO(check_range(path, "records", n_rec, begin, &end), st, done);
    WQ_TRY_GOTO(docs_alloc(out, path, end - begin), st, done);
    out->first_index = begin;
    /* Unescaped strings are never longer than their JSON lines. */
    dst = wq_malloc(n + (size_t)(end - begin) + 1);
    WQ_CHECK_GOTO(dst, st, WQ_ERR_NOMEM, done, "%s: out of memory", path);

    int64_t rec = 0, line = 0;
    size_t o = 0;
    for (size_t i = 0; i < n && rec < end;) {
        size_t j = i;
        bool blank = true;
        for (; j < n && buf[j] != '\n'; j++)
            if (!is_space(buf[j])) blank = false;
        line++;
        if (!blank && rec++ >= begin) {
            const char *parse_end = NULL;
            root = cJSON_ParseWithLengthOpts(buf + i, j - i, &parse_end, 0);
            WQ_CHECK_GOTO(root, st, WQ_ERR_FORMAT, done,
                          "%s:%lld: malformed JSON (near column %lld)", path, (long long)line,
                          (long long)(parse_end ? parse_end - (buf + i) + 1 : 0));
            for (const char *c = parse_end; c && c < buf + j; c++)
                WQ_CHECK_GOTO(is_space(*c), st, WQ_ERR_FORMAT, done,
                              "%s:%lld: unexpected text after the JSON value (column %lld)", path,
                              (long long)line, (long long)(c - (buf + i) + 1));
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text");
            WQ_CHECK_GOTO(cJSON_IsObject(root) && cJSON_IsString(text) && text->valuestring, st,
                          WQ_ERR_FORMAT, done, "%s:%lld: the record has no string field \"text\"",
                          path, (long long)line);
            size_t tl = strlen(text->valuestring);
            memcpy(dst + o, text->valuestring, tl + 1);
            out->texts[rec - 1 - begin] = dst + o;
            out->lens[rec - 1 - begin] = tl;
            o += tl + 1;
            cJSON_Delete(root);
            root = NULL;
        }
        i = j + 1;
    }
    out->buf_ = dst;
    dst = NULL;
done:
    cJSON_Delete(root);
    wq_free(buf);
    wq_free(dst);
    if (st != WQ_OK) wq_data_docs_free(out);
    return st;
}

wq_status wq_data_load_ids(const char *path, int width, int64_t vocab_size, int32_t **ids,
                           int64_t *n)
{
    wq_status st = WQ_OK;
    char *buf = NULL;
    int32_t *v = NULL;
    size_t sz = 0;
    if (!path || !ids || !n || (width != 2 && width != 4) || vocab_size < 1) return WQ_ERR_ARG;
    *ids = NULL;
    *n = 0;
    WQ_TRY_GOTO(read_file(path, &buf, &sz), st, done);
    WQ_CHECK_GOTO(sz > 0, st, WQ_ERR_FORMAT, done, "%s: the id file is empty", path);
    WQ_CHECK_GOTO(sz % (size_t)width == 0, st, WQ_ERR_FORMAT, done,
                  "%s: %zu bytes is not a whole number of uint%d ids", path, sz, 8 * width);
    const int64_t cnt = (int64_t)(sz / (size_t)width);
    v = wq_malloc((size_t)cnt * sizeof *v);
    WQ_CHECK_GOTO(v, st, WQ_ERR_NOMEM, done, "%s: out of memory", path);
    const uint8_t *b = (const uint8_t *)buf;
    for (int64_t i = 0; i < cnt; i++) {
        const uint8_t *p = b + i * width;
        uint32_t x = width == 2 ? (uint32_t)p[0] | (uint32_t)p[1] << 8
                                : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                      (uint32_t)p[3] << 24;
        WQ_CHECK_GOTO((int64_t)x < vocab_size, st, WQ_ERR_FORMAT, done,
                      "%s: id %u at token %lld (byte offset %lld) is outside the vocabulary "
                      "[0, %lld)",
                      path, x, (long long)i, (long long)(i * width), (long long)vocab_size);
        v[i] = (int32_t)x;
    }
    *ids = v;
    *n = cnt;
    v = NULL;
done:
    wq_free(buf);
    wq_free(v);
    return st;
}

// ---- streams and evaluation sets
// -------------------------------------------------------------------

static wq_status need_bos(const wq_tokenizer *t, const char *origin)
{
    if (wq_tok_bos(t) >= 0) return WQ_OK;
    WQ_LOG_ERROR("%s: the tokenizer has no BOS piece; the evaluation protocols need one",
                 origin ? origin : "dataset");
    return WQ_ERR_ARG;
}

wq_status wq_data_encode_stream(const wq_tokenizer *t, const wq_text_docs *docs, int32_t **ids,
                                int64_t *n)
{
    wq_status st = WQ_OK;
    int32_t *acc = NULL, *tok = NULL;
    int64_t len = 0, cap = 0, nt = 0;
    if (!t || !docs || !ids || !n) return WQ_ERR_ARG;
    *ids = NULL;
    *n = 0;
    WQ_TRY(need_bos(t, docs->origin));
    const int32_t bos = wq_tok_bos(t);
    for (int64_t d = 0; d < docs->n_docs; d++) {
        WQ_TRY_GOTO(wq_tok_encode(t, docs->texts[d], docs->lens[d], &tok, &nt), st, done);
        WQ_CHECK_GOTO(
            ids_append(&acc, &len, &cap, &bos, 1) && ids_append(&acc, &len, &cap, tok, nt), st,
            WQ_ERR_NOMEM, done, "%s: out of memory for the token stream", docs->origin);
        wq_free(tok);
        tok = NULL;
    }
    *ids = acc;
    *n = len;
    acc = NULL;
done:
    wq_free(tok);
    wq_free(acc);
    return st;
}

void wq_data_seqs_free(wq_seq_set *s)
{
    if (!s) return;
    wq_free(s->seqs);
    wq_free(s->storage_);
    memset(s, 0, sizeof *s);
}

wq_status wq_data_eval_stories(const wq_tokenizer *t, const wq_text_docs *docs, int64_t max_len,
                               wq_seq_set *out)
{
    wq_status st = WQ_OK;
    int32_t *tok = NULL;
    int64_t *offs = NULL; /* sequence starts: storage_ moves while it grows */
    int64_t nt = 0, len = 0, cap = 0;
    if (!t || !docs || !out) return WQ_ERR_ARG;
    memset(out, 0, sizeof *out);
    const char *origin = docs->origin ? docs->origin : "stories";
    WQ_CHECK_GOTO(max_len >= 2, st, WQ_ERR_ARG, done,
                  "%s: max_len %lld: a sequence needs at least 2 tokens", origin,
                  (long long)max_len);
    WQ_CHECK_GOTO(docs->n_docs > 0, st, WQ_ERR_ARG, done, "%s: no documents", origin);
    WQ_TRY_GOTO(need_bos(t, origin), st, done);
    out->seqs = wq_calloc((size_t)docs->n_docs, sizeof *out->seqs);
    offs = wq_malloc((size_t)docs->n_docs * sizeof *offs);
    WQ_CHECK_GOTO(out->seqs && offs, st, WQ_ERR_NOMEM, done, "%s: out of memory", origin);
    const int32_t bos = wq_tok_bos(t);
    for (int64_t d = 0; d < docs->n_docs; d++) {
        WQ_TRY_GOTO(wq_tok_encode(t, docs->texts[d], docs->lens[d], &tok, &nt), st, done);
        const int64_t keep = nt + 1 < max_len ? nt : max_len - 1;
        offs[d] = len;
        out->seqs[d].len = keep + 1;
        WQ_CHECK_GOTO(ids_append(&out->storage_, &len, &cap, &bos, 1) &&
                          ids_append(&out->storage_, &len, &cap, tok, keep),
                      st, WQ_ERR_NOMEM, done, "%s: out of memory", origin);
        out->n_predicted += keep;
        wq_free(tok);
        tok = NULL;
    }
    for (int64_t d = 0; d < docs->n_docs; d++)
        out->seqs[d].ids = out->storage_ + offs[d];
    out->n_seqs = docs->n_docs;
    out->n_tokens = len;
done:
    wq_free(tok);
    wq_free(offs);
    if (st != WQ_OK) wq_data_seqs_free(out);
    return st;
}

wq_status wq_data_eval_windows(const int32_t *stream, int64_t n, const char *origin,
                               int64_t n_windows, int64_t window_len, wq_seq_set *out)
{
    wq_status st = WQ_OK;
    if (!out || n < 0 || (!stream && n > 0)) return WQ_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (!origin) origin = "token stream";
    WQ_CHECK_GOTO(window_len >= 2, st, WQ_ERR_ARG, done,
                  "%s: window length %lld: a window needs at least 2 tokens", origin,
                  (long long)window_len);
    const int64_t full = n / window_len;
    if (n_windows <= 0) n_windows = full;
    WQ_CHECK_GOTO(n_windows >= 1 && full >= n_windows, st, WQ_ERR_ARG, done,
                  "%s: %lld tokens hold %lld full windows of %lld, %lld requested", origin,
                  (long long)n, (long long)full, (long long)window_len, (long long)n_windows);
    out->storage_ = wq_malloc((size_t)(n_windows * window_len) * sizeof *out->storage_);
    out->seqs = wq_malloc((size_t)n_windows * sizeof *out->seqs);
    WQ_CHECK_GOTO(out->storage_ && out->seqs, st, WQ_ERR_NOMEM, done, "%s: out of memory", origin);
    memcpy(out->storage_, stream, (size_t)(n_windows * window_len) * sizeof *stream);
    for (int64_t w = 0; w < n_windows; w++) {
        out->seqs[w].ids = out->storage_ + w * window_len;
        out->seqs[w].len = window_len;
    }
    out->n_seqs = n_windows;
    out->n_tokens = n_windows * window_len;
    out->n_predicted = n_windows * (window_len - 1);
done:
    if (st != WQ_OK) wq_data_seqs_free(out);
    return st;
}

// ---- calibration
// -----------------------------------------------------------------------------------

void wq_data_calib_free(wq_calib_set *c)
{
    if (!c) return;
    wq_free(c->ids);
    wq_free(c->starts);
    memset(c, 0, sizeof *c);
}

wq_status wq_data_calib_sample(const int32_t *stream, int64_t n, const char *origin,
                               int64_t n_samples, int64_t seqlen, uint64_t seed, wq_calib_set *out)
{
    wq_status st = WQ_OK;
    if (!out || n < 0 || (!stream && n > 0)) return WQ_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (!origin) origin = "calibration stream";
    WQ_CHECK_GOTO(seqlen >= 2, st, WQ_ERR_ARG, done,
                  "%s: calibration seqlen %lld: must be at least 2", origin, (long long)seqlen);
    WQ_CHECK_GOTO(n_samples >= 1, st, WQ_ERR_ARG, done,
                  "%s: calibration n_samples %lld: must be at least 1", origin,
                  (long long)n_samples);
    WQ_CHECK_GOTO(n >= seqlen + 1, st, WQ_ERR_ARG, done,
                  "%s: the calibration stream has %lld tokens; seqlen %lld needs at least %lld",
                  origin, (long long)n, (long long)seqlen, (long long)(seqlen + 1));
    WQ_CHECK_GOTO(n_samples <= INT64_MAX / seqlen / (int64_t)sizeof(int32_t), st, WQ_ERR_ARG, done,
                  "%s: %lld x %lld calibration tokens is too many", origin, (long long)n_samples,
                  (long long)seqlen);
    out->ids = wq_malloc((size_t)(n_samples * seqlen) * sizeof *out->ids);
    out->starts = wq_malloc((size_t)n_samples * sizeof *out->starts);
    WQ_CHECK_GOTO(out->ids && out->starts, st, WQ_ERR_NOMEM, done,
                  "%s: out of memory for %lld x %lld calibration tokens", origin,
                  (long long)n_samples, (long long)seqlen);
    uint64_t rng = seed;
    const uint64_t n_starts = (uint64_t)(n - seqlen); /* starts 0 .. n - seqlen - 1 */
    for (int64_t s = 0; s < n_samples; s++) {
        const int64_t start = (int64_t)wq_rng_uniform_below(&rng, n_starts);
        out->starts[s] = start;
        memcpy(out->ids + s * seqlen, stream + start, (size_t)seqlen * sizeof *stream);
    }
    out->n_samples = n_samples;
    out->seqlen = seqlen;
    out->stream_len = n;
done:
    if (st != WQ_OK) wq_data_calib_free(out);
    return st;
}

wq_status wq_data_calib_load(const wq_calib_cfg *cfg, const wq_tokenizer *t, wq_calib_set *out)
{
    wq_status st = WQ_OK;
    wq_text_docs docs = {0};
    int32_t *stream = NULL;
    int64_t n = 0;
    char origin[1200];
    if (!cfg || !t || !out) return WQ_ERR_ARG;
    memset(out, 0, sizeof *out);
    WQ_CHECK_GOTO(cfg->text[0] != '\0', st, WQ_ERR_ARG, done,
                  "calibration: no text file configured (\"calibration\": {\"text\": ...})");
    int64_t b = cfg->range_begin, e = cfg->range_end;
    snprintf(origin, sizeof origin, "%s", cfg->text);
    switch (cfg->format) {
    case WQ_TEXT_PLAIN:
        WQ_CHECK_GOTO(b == 0 && (e == -1 || e == 1), st, WQ_ERR_ARG, done,
                      "%s: a range [%lld, %lld) does not apply to the plain-text format (one "
                      "document)",
                      cfg->text, (long long)b, (long long)e);
        WQ_TRY_GOTO(wq_data_load_text(cfg->text, true, &docs), st, done);
        break;
    case WQ_TEXT_STORIES:
        WQ_TRY_GOTO(wq_data_load_stories(cfg->text, b, e, &docs), st, done);
        break;
    case WQ_TEXT_JSONL:
        WQ_TRY_GOTO(wq_data_load_jsonl(cfg->text, b, e, &docs), st, done);
        break;
    case WQ_TEXT_IDS16:
    case WQ_TEXT_IDS32:
        WQ_TRY_GOTO(wq_data_load_ids(cfg->text, cfg->format == WQ_TEXT_IDS16 ? 2 : 4,
                                     wq_tok_vocab_size(t), &stream, &n),
                    st, done);
        WQ_TRY_GOTO(check_range(cfg->text, "tokens", n, b, &e), st, done);
        memmove(stream, stream + b, (size_t)(e - b) * sizeof *stream);
        n = e - b;
        break;
    default:
        WQ_CHECK_GOTO(0, st, WQ_ERR_ARG, done, "%s: unknown calibration format %d", cfg->text,
                      (int)cfg->format);
    }
    if (!stream) {
        WQ_TRY_GOTO(wq_data_encode_stream(t, &docs, &stream, &n), st, done);
        if (cfg->format != WQ_TEXT_PLAIN)
            snprintf(origin, sizeof origin, "%s [%lld, %lld)", cfg->text, (long long)b,
                     (long long)(b + docs.n_docs));
    }
    WQ_TRY_GOTO(
        wq_data_calib_sample(stream, n, origin, cfg->n_samples, cfg->seqlen, cfg->seed, out), st,
        done);
    WQ_LOG_DEBUG("calibration: %lld windows of %lld tokens from %s (%lld tokens, seed %llu)",
                 (long long)cfg->n_samples, (long long)cfg->seqlen, origin, (long long)n,
                 (unsigned long long)cfg->seed);
done:
    wq_data_docs_free(&docs);
    wq_free(stream);
    return st;
}
