/* st_writer.c: streaming safetensors writer and index.json writer. The JSON is produced by hand (a
 * tiny string builder) so offsets print as exact integers and all memory goes through wq_malloc.
 * Files are written to "<path>.tmp" and renamed only after a successful fsync, so a crash never
 * leaves a truncated checkpoint under the final name. Layer: model. */
#include "model/st_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_log.h"

#define ST_NAME_MAX 256

typedef struct {
    char name[ST_NAME_MAX];
    wq_dtype dtype;
    int ndim;
    int64_t shape[4];
    uint64_t nbytes;
} st_decl;

struct wq_st_writer {
    char *path; /* final name, wq_malloc'd */
    char *tmp;  /* path + ".tmp", wq_malloc'd */
    int fd;
    st_decl *decls; /* [n], declaration order */
    int64_t n, cap;
    bool began;
    uint64_t total;   /* declared data bytes */
    uint64_t written; /* data bytes written so far */
};

// ---- string builder -----------------------------------------------------------------------------

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_reserve(sbuf *b, size_t extra)
{
    if (b->oom || b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = wq_malloc(cap);
    if (!p) {
        b->oom = true;
        return;
    }
    if (b->len) memcpy(p, b->p, b->len);
    p[b->len] = '\0';
    wq_free(b->p);
    b->p = p;
    b->cap = cap;
}

static void sb_putn(sbuf *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    if (b->oom) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = true; /* only used for short numeric fragments */
        return;
    }
    sb_putn(b, tmp, (size_t)n);
}

/* A JSON string literal; control characters are escaped as \u00XX, UTF-8 passes through. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_putn(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            sb_putn(b, esc, 2);
        } else if (*p < 0x20) {
            sb_printf(b, "\\u%04x", *p);
        } else {
            sb_putn(b, (const char *)p, 1);
        }
    }
    sb_putn(b, "\"", 1);
}

// ---- file helpers -------------------------------------------------------------------------------

static wq_status write_all(int fd, const void *data, size_t n, const char *path)
{
    const unsigned char *p = data;
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            WQ_LOG_ERROR("safetensors writer %s: write failed: %s", path,
                         r < 0 ? strerror(errno) : "no progress");
            return WQ_ERR_IO;
        }
        p += r;
        n -= (size_t)r;
    }
    return WQ_OK;
}

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = wq_malloc(la + lb + 1);
    if (!p) return NULL;
    memcpy(p, a, la);
    memcpy(p + la, b, lb + 1);
    return p;
}

/* Writes text to path via path.tmp + fsync + rename. */
static wq_status write_file_atomic(const char *path, const char *text, size_t len)
{
    wq_status st = WQ_OK;
    char *tmp = concat(path, ".tmp");
    int fd = -1;
    WQ_CHECK_GOTO(tmp, st, WQ_ERR_NOMEM, done, "out of memory");
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    WQ_CHECK_GOTO(fd >= 0, st, WQ_ERR_IO, done, "cannot create %s: %s", tmp, strerror(errno));
    WQ_TRY_GOTO(write_all(fd, text, len, tmp), st, done);
    WQ_CHECK_GOTO(fsync(fd) == 0, st, WQ_ERR_IO, done, "fsync %s: %s", tmp, strerror(errno));
    int rc = close(fd);
    fd = -1;
    WQ_CHECK_GOTO(rc == 0, st, WQ_ERR_IO, done, "close %s: %s", tmp, strerror(errno));
    WQ_CHECK_GOTO(rename(tmp, path) == 0, st, WQ_ERR_IO, done, "rename %s -> %s: %s", tmp, path,
                  strerror(errno));
done:
    if (fd >= 0) close(fd);
    if (st != WQ_OK && tmp) unlink(tmp);
    wq_free(tmp);
    return st;
}

static void writer_free(wq_st_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    wq_free(w->decls);
    wq_free(w->path);
    wq_free(w->tmp);
    wq_free(w);
}

// ---- writer -------------------------------------------------------------------------------------

wq_status wq_st_writer_create(const char *path, wq_st_writer **out)
{
    wq_status st = WQ_OK;
    wq_st_writer *w = NULL;
    if (!path || !out || !*path) return WQ_ERR_ARG;
    *out = NULL;
    w = wq_calloc(1, sizeof *w);
    WQ_CHECK_GOTO(w, st, WQ_ERR_NOMEM, done, "safetensors writer: out of memory");
    w->fd = -1;
    w->path = wq_strdup(path);
    w->tmp = concat(path, ".tmp");
    WQ_CHECK_GOTO(w->path && w->tmp, st, WQ_ERR_NOMEM, done, "safetensors writer: out of memory");
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    WQ_CHECK_GOTO(w->fd >= 0, st, WQ_ERR_IO, done, "safetensors writer: cannot create %s: %s",
                  w->tmp, strerror(errno));
    *out = w;
    w = NULL;
done:
    writer_free(w);
    return st;
}

wq_status wq_st_writer_declare(wq_st_writer *w, const char *name, wq_dtype dtype, int ndim,
                               const int64_t *shape)
{
    if (!w || !name) return WQ_ERR_ARG;
    if (w->began) {
        WQ_LOG_ERROR("safetensors writer %s: declare('%s') after begin_data", w->path, name);
        return WQ_ERR_ARG;
    }
    size_t len = strlen(name);
    if (len == 0 || len >= ST_NAME_MAX || strcmp(name, "__metadata__") == 0) {
        WQ_LOG_ERROR("safetensors writer %s: invalid tensor name '%.64s'", w->path, name);
        return WQ_ERR_ARG;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)name[i] < 0x20) {
            WQ_LOG_ERROR("safetensors writer %s: tensor name has a control character", w->path);
            return WQ_ERR_ARG;
        }
    }
    size_t esz = wq_dtype_size(dtype);
    if (esz == 0 || ndim < 0 || ndim > 4 || (ndim > 0 && !shape)) {
        WQ_LOG_ERROR("safetensors writer %s: tensor '%s': bad dtype or ndim %d", w->path, name,
                     ndim);
        return WQ_ERR_ARG;
    }
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && numel > (UINT64_MAX / esz) / (uint64_t)shape[d])) {
            WQ_LOG_ERROR("safetensors writer %s: tensor '%s': bad shape[%d] = %lld", w->path, name,
                         d, (long long)shape[d]);
            return WQ_ERR_ARG;
        }
        numel *= (uint64_t)shape[d];
    }
    for (int64_t i = 0; i < w->n; i++) {
        if (strcmp(w->decls[i].name, name) == 0) {
            WQ_LOG_ERROR("safetensors writer %s: tensor '%s' declared twice", w->path, name);
            return WQ_ERR_ARG;
        }
    }
    if (w->n == w->cap) {
        int64_t cap = w->cap ? 2 * w->cap : 32;
        st_decl *d = wq_malloc(sizeof *d * (size_t)cap);
        if (!d) return WQ_ERR_NOMEM;
        if (w->n) memcpy(d, w->decls, sizeof *d * (size_t)w->n);
        wq_free(w->decls);
        w->decls = d;
        w->cap = cap;
    }
    st_decl *d = &w->decls[w->n++];
    memset(d, 0, sizeof *d);
    memcpy(d->name, name, len + 1);
    d->dtype = dtype;
    d->ndim = ndim;
    for (int k = 0; k < ndim; k++)
        d->shape[k] = shape[k];
    d->nbytes = numel * esz;
    w->total += d->nbytes;
    return WQ_OK;
}

wq_status wq_st_writer_begin_data(wq_st_writer *w)
{
    wq_status st = WQ_OK;
    sbuf b = {0};
    if (!w || w->began) return WQ_ERR_ARG;
    uint64_t off = 0;
    sb_puts(&b, "{");
    for (int64_t i = 0; i < w->n; i++) {
        const st_decl *d = &w->decls[i];
        if (i) sb_puts(&b, ",");
        sb_json_str(&b, d->name);
        sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", wq_dtype_name(d->dtype));
        for (int k = 0; k < d->ndim; k++)
            sb_printf(&b, "%s%" PRId64, k ? "," : "", d->shape[k]);
        sb_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + d->nbytes);
        off += d->nbytes;
    }
    sb_puts(&b, "}");
    /* Pad with spaces so the data section starts 8-byte aligned (what other writers do). */
    while (!b.oom && (b.len % 8) != 0)
        sb_puts(&b, " ");
    WQ_CHECK_GOTO(!b.oom, st, WQ_ERR_NOMEM, done, "safetensors writer %s: out of memory", w->path);
    unsigned char lenb[8];
    for (int k = 0; k < 8; k++)
        lenb[k] = (unsigned char)(((uint64_t)b.len >> (8 * k)) & 0xff);
    WQ_TRY_GOTO(write_all(w->fd, lenb, 8, w->tmp), st, done);
    WQ_TRY_GOTO(write_all(w->fd, b.p, b.len, w->tmp), st, done);
    w->began = true;
done:
    wq_free(b.p);
    return st;
}

wq_status wq_st_writer_write(wq_st_writer *w, const void *data, size_t nbytes)
{
    if (!w || (!data && nbytes)) return WQ_ERR_ARG;
    if (!w->began) {
        WQ_LOG_ERROR("safetensors writer %s: write before begin_data", w->path);
        return WQ_ERR_ARG;
    }
    if (nbytes > w->total - w->written) {
        WQ_LOG_ERROR("safetensors writer %s: %zu more bytes exceed the declared %" PRIu64
                     " (already wrote %" PRIu64 ")",
                     w->path, nbytes, w->total, w->written);
        return WQ_ERR_ARG;
    }
    WQ_TRY(write_all(w->fd, data, nbytes, w->tmp));
    w->written += nbytes;
    return WQ_OK;
}

wq_status wq_st_writer_finish(wq_st_writer *w)
{
    wq_status st = WQ_OK;
    if (!w) return WQ_ERR_ARG;
    WQ_CHECK_GOTO(w->began, st, WQ_ERR_ARG, done, "safetensors writer %s: finish before begin_data",
                  w->path);
    WQ_CHECK_GOTO(w->written == w->total, st, WQ_ERR_ARG, done,
                  "safetensors writer %s: wrote %" PRIu64 " data bytes, declared %" PRIu64, w->path,
                  w->written, w->total);
    WQ_CHECK_GOTO(fsync(w->fd) == 0, st, WQ_ERR_IO, done, "safetensors writer %s: fsync: %s",
                  w->tmp, strerror(errno));
    int rc = close(w->fd);
    w->fd = -1;
    WQ_CHECK_GOTO(rc == 0, st, WQ_ERR_IO, done, "safetensors writer %s: close: %s", w->tmp,
                  strerror(errno));
    WQ_CHECK_GOTO(rename(w->tmp, w->path) == 0, st, WQ_ERR_IO, done,
                  "safetensors writer: rename %s -> %s: %s", w->tmp, w->path, strerror(errno));
done:
    if (st != WQ_OK) {
        wq_st_writer_abort(w);
        return st;
    }
    writer_free(w);
    return st;
}

void wq_st_writer_abort(wq_st_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    if (w->tmp) unlink(w->tmp);
    writer_free(w);
}

// ---- index --------------------------------------------------------------------------------------

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

wq_status wq_st_write_index(const char *dir, const char *const *names, const int *shard_of,
                            int64_t n_tensors, const char *const *shard_files, int n_shards,
                            uint64_t total_size)
{
    wq_status st = WQ_OK;
    sbuf b = {0};
    char *path = NULL;
    const char **sorted = NULL;
    if (!dir || n_tensors < 0 || n_shards < 1 || !shard_files ||
        (n_tensors > 0 && (!names || !shard_of)))
        return WQ_ERR_ARG;
    for (int s = 0; s < n_shards; s++) {
        if (!shard_files[s] || !shard_files[s][0] || strchr(shard_files[s], '/')) {
            WQ_LOG_ERROR("safetensors index: shard %d name is not a plain file name", s);
            return WQ_ERR_ARG;
        }
    }
    /* A repeated name would produce a JSON object with a duplicate key, which readers reject. */
    if (n_tensors > 1) {
        sorted = wq_malloc(sizeof *sorted * (size_t)n_tensors);
        WQ_CHECK_GOTO(sorted, st, WQ_ERR_NOMEM, done, "safetensors index: out of memory");
        for (int64_t i = 0; i < n_tensors; i++) {
            WQ_CHECK_GOTO(names[i], st, WQ_ERR_ARG, done,
                          "safetensors index: entry %lld has no name", (long long)i);
            sorted[i] = names[i];
        }
        qsort(sorted, (size_t)n_tensors, sizeof *sorted, cmp_str);
        for (int64_t i = 1; i < n_tensors; i++)
            WQ_CHECK_GOTO(strcmp(sorted[i - 1], sorted[i]) != 0, st, WQ_ERR_ARG, done,
                          "safetensors index: tensor '%s' is listed twice", sorted[i]);
    }
    sb_printf(&b, "{\n  \"metadata\": {\"total_size\": %" PRIu64 "},\n  \"weight_map\": {",
              total_size);
    for (int64_t i = 0; i < n_tensors; i++) {
        WQ_CHECK_GOTO(names[i] && shard_of[i] >= 0 && shard_of[i] < n_shards, st, WQ_ERR_ARG, done,
                      "safetensors index: entry %lld has no name or a bad shard index",
                      (long long)i);
        sb_puts(&b, i ? ",\n    " : "\n    ");
        sb_json_str(&b, names[i]);
        sb_puts(&b, ": ");
        sb_json_str(&b, shard_files[shard_of[i]]);
    }
    sb_puts(&b, "\n  }\n}\n");
    WQ_CHECK_GOTO(!b.oom, st, WQ_ERR_NOMEM, done, "safetensors index: out of memory");
    path = concat(dir, "/model.safetensors.index.json");
    WQ_CHECK_GOTO(path, st, WQ_ERR_NOMEM, done, "safetensors index: out of memory");
    WQ_TRY_GOTO(write_file_atomic(path, b.p, b.len), st, done);
done:
    wq_free(sorted);
    wq_free(path);
    wq_free(b.p);
    return st;
}
