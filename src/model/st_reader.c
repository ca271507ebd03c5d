/* st_reader.c: safetensors reader. A file is <u64 LE header length><JSON header><data>; the header
 * maps tensor names to {dtype, shape, data_offsets relative to the data section}. Everything in the
 * header (and in a sharded checkpoint's index) is validated at open, so reads later only pread
 * known-good ranges. cJSON trees never leave this file. Layer: model. */
#include "model/st_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "core/core_alloc.h"
#include "core/core_log.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* a sane header is a few hundred KiB */
#define ST_MAX_INDEX ((off_t)64 << 20)
#define ST_CONVERT_CHUNK ((size_t)1 << 20)  /* scratch bytes for non-F32 conversion */
#define ST_MAX_EXACT_INT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact in cJSON */
#define ST_SINGLE "model.safetensors"
#define ST_INDEX "model.safetensors.index.json"

struct wq_st_model {
    char *dir; /* wq_malloc'd */
    int n_files;
    int *fds;     /* [n_files], -1 when closed */
    char **paths; /* [n_files], wq_malloc'd strings, for error messages */
    int64_t n;    /* tensors */
    int64_t cap;
    wq_st_tensor *tensors; /* [n], sorted by name after open */
};

// ---- small helpers ------------------------------------------------------------------------------

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = wq_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return wq_strdup(".");
    if (slash == path) return wq_strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = wq_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* pread until n bytes or error; a short file is an I/O error here because ranges were validated. */
static wq_status pread_all(int fd, void *dst, size_t n, uint64_t off, const char *path)
{
    unsigned char *p = dst;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            WQ_LOG_ERROR("safetensors %s: read of %zu bytes at offset %llu failed: %s", path, n,
                         (unsigned long long)off,
                         r < 0 ? strerror(errno) : "unexpected end of file");
            return WQ_ERR_IO;
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return WQ_OK;
}

/* A non-negative integral JSON number below 2^53. */
static bool json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d >= ST_MAX_EXACT_INT || d != floor(d)) return false;
    *out = (uint64_t)d;
    return true;
}

static wq_status model_alloc(wq_st_model **out)
{
    wq_st_model *m = wq_calloc(1, sizeof *m);
    if (!m) return WQ_ERR_NOMEM;
    *out = m;
    return WQ_OK;
}

static wq_status model_add_file(wq_st_model *m, const char *path, int fd)
{
    int *fds = wq_malloc(sizeof(int) * (size_t)(m->n_files + 1));
    char **paths = wq_malloc(sizeof(char *) * (size_t)(m->n_files + 1));
    char *copy = wq_strdup(path);
    if (!fds || !paths || !copy) {
        wq_free(fds);
        wq_free(paths);
        wq_free(copy);
        return WQ_ERR_NOMEM;
    }
    if (m->n_files) {
        memcpy(fds, m->fds, sizeof(int) * (size_t)m->n_files);
        memcpy(paths, m->paths, sizeof(char *) * (size_t)m->n_files);
    }
    fds[m->n_files] = fd;
    paths[m->n_files] = copy;
    wq_free(m->fds);
    wq_free(m->paths);
    m->fds = fds;
    m->paths = paths;
    m->n_files++;
    return WQ_OK;
}

static wq_st_tensor *model_push_tensor(wq_st_model *m)
{
    if (m->n == m->cap) {
        int64_t cap = m->cap ? m->cap * 2 : 64;
        wq_st_tensor *t = wq_malloc(sizeof *t * (size_t)cap);
        if (!t) return NULL;
        if (m->n) memcpy(t, m->tensors, sizeof *t * (size_t)m->n);
        wq_free(m->tensors);
        m->tensors = t;
        m->cap = cap;
    }
    wq_st_tensor *t = &m->tensors[m->n++];
    memset(t, 0, sizeof *t);
    return t;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const wq_st_tensor *)a)->name, ((const wq_st_tensor *)b)->name);
}

/* Index sort key for the overlap check: (begin, end) of tensors of one shard. */
typedef struct {
    uint64_t begin, end;
    int64_t idx;
} span_key;

static int cmp_span(const void *a, const void *b)
{
    const span_key *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

// ---- one shard header ---------------------------------------------------------------------------

/* Validates one tensor entry of a header and appends it to m. data_len: data section bytes. */
static wq_status parse_entry(wq_st_model *m, const char *path, int file_index, uint64_t data_start,
                             uint64_t data_len, const cJSON *e)
{
    const char *name = e->string;
    if (strlen(name) >= sizeof(((wq_st_tensor *)0)->name)) {
        WQ_LOG_ERROR("safetensors %s: tensor name '%.64s...' is longer than 255 bytes", path, name);
        return WQ_ERR_FORMAT;
    }
    if (!cJSON_IsObject(e)) {
        WQ_LOG_ERROR("safetensors %s: tensor '%s': entry is not a JSON object", path, name);
        return WQ_ERR_FORMAT;
    }
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd)) {
        WQ_LOG_ERROR("safetensors %s: tensor '%s': 'dtype' missing or not a string", path, name);
        return WQ_ERR_FORMAT;
    }
    wq_dtype dt = wq_dtype_from_name(jd->valuestring);
    if (dt == WQ_DTYPE_COUNT) {
        WQ_LOG_ERROR("safetensors %s: tensor '%s': unknown dtype '%s'", path, name,
                     jd->valuestring);
        return WQ_ERR_FORMAT;
    }
    if (!cJSON_IsArray(js)) {
        WQ_LOG_ERROR("safetensors %s: tensor '%s': 'shape' missing or not a list", path, name);
        return WQ_ERR_FORMAT;
    }
    int ndim = cJSON_GetArraySize(js);
    if (ndim > 4) {
        WQ_LOG_ERROR("safetensors %s: tensor '%s': %d dimensions (at most 4 supported)", path, name,
                     ndim);
        return WQ_ERR_FORMAT;
    }
    int64_t shape[4] = {0, 0, 0, 0};
    uint64_t numel = 1;
    bool overflow = false;
    for (int d = 0; d < ndim; d++) {
        uint64_t v;
        if (!json_u64(cJSON_GetArrayItem(js, d), &v)) {
            WQ_LOG_ERROR("safetensors %s: tensor '%s': shape[%d] is not a non-negative integer",
                         path, name, d);
            return WQ_ERR_FORMAT;
        }
        shape[d] = (int64_t)v;
        if (v && numel > UINT64_MAX / v) overflow = true;
        numel *= v;
    }
    size_t esz = wq_dtype_size(dt);
    if (overflow || numel > (uint64_t)INT64_MAX / esz || numel * esz > SIZE_MAX) {
        WQ_LOG_ERROR("safetensors %s: tensor '%s': shape is too large", path, name);
        return WQ_ERR_FORMAT;
    }
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2) {
        WQ_LOG_ERROR("safetensors %s: tensor '%s': 'data_offsets' missing or not a list of 2", path,
                     name);
        return WQ_ERR_FORMAT;
    }
    uint64_t begin, end;
    if (!json_u64(cJSON_GetArrayItem(jo, 0), &begin) ||
        !json_u64(cJSON_GetArrayItem(jo, 1), &end)) {
        WQ_LOG_ERROR("safetensors %s: tensor '%s': data_offsets are not non-negative integers",
                     path, name);
        return WQ_ERR_FORMAT;
    }
    if (begin > end) {
        WQ_LOG_ERROR("safetensors %s: tensor '%s': data_offsets begin %llu > end %llu", path, name,
                     (unsigned long long)begin, (unsigned long long)end);
        return WQ_ERR_FORMAT;
    }
    if (end > data_len) {
        WQ_LOG_ERROR(
            "safetensors %s: tensor '%s': data_offsets [%llu, %llu) outside the data section "
            "of %llu bytes",
            path, name, (unsigned long long)begin, (unsigned long long)end,
            (unsigned long long)data_len);
        return WQ_ERR_FORMAT;
    }
    if (end - begin != numel * esz) {
        WQ_LOG_ERROR(
            "safetensors %s: tensor '%s': shape x %s needs %llu bytes but data_offsets span "
            "%llu",
            path, name, wq_dtype_name(dt), (unsigned long long)(numel * esz),
            (unsigned long long)(end - begin));
        return WQ_ERR_FORMAT;
    }
    wq_st_tensor *t = model_push_tensor(m);
    if (!t) return WQ_ERR_NOMEM;
    memcpy(t->name, name, strlen(name) + 1);
    t->dtype = dt;
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof shape);
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)(numel * esz);
    t->file_index = file_index;
    t->offset = data_start + begin;
    return WQ_OK;
}

/* Rejects overlapping byte ranges among tensors [first, m->n) (all from one shard). Empty tensors
 * occupy no bytes and never overlap. */
static wq_status check_overlaps(const wq_st_model *m, int64_t first, const char *path)
{
    wq_status st = WQ_OK;
    int64_t n = m->n - first;
    if (n < 2) return WQ_OK;
    span_key *k = wq_malloc(sizeof *k * (size_t)n);
    if (!k) return WQ_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) {
        const wq_st_tensor *t = &m->tensors[first + i];
        k[i] = (span_key){t->offset, t->offset + t->nbytes, first + i};
    }
    qsort(k, (size_t)n, sizeof *k, cmp_span);
    int64_t prev = -1;
    for (int64_t i = 0; i < n; i++) {
        if (k[i].begin == k[i].end) continue;
        if (prev >= 0 && k[i].begin < k[prev].end) {
            WQ_LOG_ERROR("safetensors %s: tensors '%s' and '%s' have overlapping data_offsets",
                         path, m->tensors[k[prev].idx].name, m->tensors[k[i].idx].name);
            st = WQ_ERR_FORMAT;
            break;
        }
        prev = i;
    }
    wq_free(k);
    return st;
}

/* Opens path, validates its header and appends its tensors to m as file m->n_files.
 * missing_code: status when the file does not exist (IO for a direct open, FORMAT for an index). */
static wq_status add_shard(wq_st_model *m, const char *path, wq_status missing_code)
{
    wq_status st = WQ_OK;
    char *hdr = NULL;
    cJSON *root = NULL;
    int64_t first = m->n;
    int file_index = m->n_files;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        WQ_LOG_ERROR("safetensors %s: cannot open: %s", path, strerror(errno));
        return errno == ENOENT ? missing_code : WQ_ERR_IO;
    }
    st = model_add_file(m, path, fd);
    if (st != WQ_OK) {
        close(fd);
        return st;
    }
    /* fd now belongs to m and is closed by wq_st_close. */
    struct stat sb;
    WQ_CHECK_GOTO(fstat(fd, &sb) == 0, st, WQ_ERR_IO, done, "safetensors %s: fstat failed: %s",
                  path, strerror(errno));
    uint64_t fsize = (uint64_t)sb.st_size;
    WQ_CHECK_GOTO(fsize >= 8, st, WQ_ERR_FORMAT, done,
                  "safetensors %s: file is %llu bytes, too short for the 8-byte header length",
                  path, (unsigned long long)fsize);
    unsigned char lenb[8];
    WQ_TRY_GOTO(pread_all(fd, lenb, 8, 0, path), st, done);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | lenb[i];
    WQ_CHECK_GOTO(hlen <= ST_MAX_HEADER, st, WQ_ERR_FORMAT, done,
                  "safetensors %s: header length %llu exceeds the 100 MB limit", path,
                  (unsigned long long)hlen);
    WQ_CHECK_GOTO(hlen <= fsize - 8, st, WQ_ERR_FORMAT, done,
                  "safetensors %s: header length %llu exceeds the file size %llu", path,
                  (unsigned long long)hlen, (unsigned long long)fsize);
    hdr = wq_malloc((size_t)hlen + 1);
    WQ_CHECK_GOTO(hdr, st, WQ_ERR_NOMEM, done, "safetensors %s: no memory for a %llu-byte header",
                  path, (unsigned long long)hlen);
    WQ_TRY_GOTO(pread_all(fd, hdr, (size_t)hlen, 8, path), st, done);
    hdr[hlen] = '\0';
    WQ_CHECK_GOTO(strlen(hdr) == hlen, st, WQ_ERR_FORMAT, done,
                  "safetensors %s: header contains a NUL byte", path);
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen + 1, &end, 1);
    WQ_CHECK_GOTO(root, st, WQ_ERR_FORMAT, done,
                  "safetensors %s: header is not a JSON object (malformed JSON near byte %lld)",
                  path, end ? (long long)(end - hdr) : -1LL);
    WQ_CHECK_GOTO(cJSON_IsObject(root), st, WQ_ERR_FORMAT, done,
                  "safetensors %s: header is not a JSON object", path);

    uint64_t data_start = 8 + hlen, data_len = fsize - data_start;
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        if (e->string && strcmp(e->string, "__metadata__") == 0) continue; /* free-form strings */
        WQ_TRY_GOTO(parse_entry(m, path, file_index, data_start, data_len, e), st, done);
    }
    WQ_TRY_GOTO(check_overlaps(m, first, path), st, done);
done:
    cJSON_Delete(root);
    wq_free(hdr);
    return st;
}

/* Sorts the table and rejects a name that occurs twice (in one header, or in two shards). */
static wq_status finalize_table(wq_st_model *m)
{
    if (m->n > 1) qsort(m->tensors, (size_t)m->n, sizeof *m->tensors, cmp_name);
    for (int64_t i = 1; i < m->n; i++) {
        const wq_st_tensor *a = &m->tensors[i - 1], *b = &m->tensors[i];
        if (strcmp(a->name, b->name) == 0) {
            if (a->file_index == b->file_index)
                WQ_LOG_ERROR("safetensors %s: tensor '%s' is declared twice",
                             m->paths[a->file_index], a->name);
            else
                WQ_LOG_ERROR("safetensors: tensor '%s' is in two shards: %s and %s", a->name,
                             m->paths[a->file_index], m->paths[b->file_index]);
            return WQ_ERR_FORMAT;
        }
    }
    return WQ_OK;
}

// ---- sharded checkpoints ------------------------------------------------------------------------

static wq_status read_small_file(const char *path, char **out, size_t *len)
{
    wq_status st = WQ_OK;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        WQ_LOG_ERROR("safetensors index %s: cannot open: %s", path, strerror(errno));
        return WQ_ERR_IO;
    }
    struct stat sb;
    WQ_CHECK_GOTO(fstat(fd, &sb) == 0, st, WQ_ERR_IO, done, "safetensors index %s: fstat failed",
                  path);
    WQ_CHECK_GOTO(sb.st_size <= ST_MAX_INDEX, st, WQ_ERR_FORMAT, done,
                  "safetensors index %s: larger than 64 MiB", path);
    buf = wq_malloc((size_t)sb.st_size + 1);
    WQ_CHECK_GOTO(buf, st, WQ_ERR_NOMEM, done, "safetensors index %s: out of memory", path);
    WQ_TRY_GOTO(pread_all(fd, buf, (size_t)sb.st_size, 0, path), st, done);
    buf[sb.st_size] = '\0';
    *len = (size_t)sb.st_size;
    *out = buf;
    buf = NULL;
done:
    wq_free(buf);
    close(fd);
    return st;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Position of shard file name s in names[0..n), or -1. */
static int find_shard(char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

static wq_status open_sharded(wq_st_model *m, const char *index_path)
{
    wq_status st = WQ_OK;
    char *text = NULL, *shard_path = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    char **shards = NULL;      /* borrowed from the cJSON tree; file index == position */
    const char **names = NULL; /* borrowed from the cJSON tree, sorted for the duplicate check */
    int n_shards = 0;

    WQ_TRY_GOTO(read_small_file(index_path, &text, &len), st, done);
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    WQ_CHECK_GOTO(root, st, WQ_ERR_FORMAT, done,
                  "safetensors index %s: not a JSON object (malformed JSON near byte %lld)",
                  index_path, end ? (long long)(end - text) : -1LL);
    WQ_CHECK_GOTO(cJSON_IsObject(root), st, WQ_ERR_FORMAT, done,
                  "safetensors index %s: not a JSON object", index_path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    WQ_CHECK_GOTO(cJSON_IsObject(wm), st, WQ_ERR_FORMAT, done,
                  "safetensors index %s: 'weight_map' missing or not an object", index_path);
    int n_entries = cJSON_GetArraySize(wm);
    WQ_CHECK_GOTO(n_entries > 0, st, WQ_ERR_FORMAT, done,
                  "safetensors index %s: 'weight_map' is empty", index_path);
    shards = wq_calloc((size_t)n_entries, sizeof *shards);
    WQ_CHECK_GOTO(shards, st, WQ_ERR_NOMEM, done, "safetensors index %s: out of memory",
                  index_path);

    const cJSON *e;
    cJSON_ArrayForEach(e, wm)
    {
        WQ_CHECK_GOTO(cJSON_IsString(e) && e->valuestring[0], st, WQ_ERR_FORMAT, done,
                      "safetensors index %s: weight_map['%s'] is not a file name", index_path,
                      e->string);
        WQ_CHECK_GOTO(!strchr(e->valuestring, '/'), st, WQ_ERR_FORMAT, done,
                      "safetensors index %s: weight_map['%s'] = '%s' is not a plain file name",
                      index_path, e->string, e->valuestring);
        if (find_shard(shards, n_shards, e->valuestring) < 0) shards[n_shards++] = e->valuestring;
    }
    /* cJSON keeps both copies of a repeated key: a tensor listed twice is a malformed index. */
    names = wq_malloc(sizeof *names * (size_t)n_entries);
    WQ_CHECK_GOTO(names, st, WQ_ERR_NOMEM, done, "safetensors index %s: out of memory", index_path);
    int k = 0;
    cJSON_ArrayForEach(e, wm) names[k++] = e->string;
    qsort(names, (size_t)n_entries, sizeof *names, cmp_str);
    for (k = 1; k < n_entries; k++)
        WQ_CHECK_GOTO(strcmp(names[k - 1], names[k]) != 0, st, WQ_ERR_FORMAT, done,
                      "safetensors index %s: tensor '%s' is listed twice in weight_map", index_path,
                      names[k]);
    for (int s = 0; s < n_shards; s++) {
        shard_path = join_path(m->dir, shards[s]);
        WQ_CHECK_GOTO(shard_path, st, WQ_ERR_NOMEM, done, "safetensors: out of memory");
        if (!file_exists(shard_path)) {
            WQ_LOG_ERROR("safetensors index %s: shard file %s is missing", index_path, shard_path);
            st = WQ_ERR_FORMAT;
            goto done;
        }
        WQ_TRY_GOTO(add_shard(m, shard_path, WQ_ERR_FORMAT), st, done);
        wq_free(shard_path);
        shard_path = NULL;
    }
    WQ_TRY_GOTO(finalize_table(m), st, done);

    /* Every weight_map entry must be found in the shard it names (this also catches a name mapped
     * twice to different shards, since a tensor lives in one shard only). */
    cJSON_ArrayForEach(e, wm)
    {
        const wq_st_tensor *t = wq_st_find(m, e->string);
        int want = find_shard(shards, n_shards, e->valuestring);
        WQ_CHECK_GOTO(t && t->file_index == want, st, WQ_ERR_FORMAT, done,
                      "safetensors index %s: tensor '%s' is mapped to %s but that shard does not "
                      "contain it",
                      index_path, e->string, e->valuestring);
    }
    if (m->n != n_entries)
        WQ_LOG_WARN("safetensors index %s: shards hold %lld tensors but weight_map lists %d",
                    index_path, (long long)m->n, n_entries);
done:
    wq_free(shard_path);
    wq_free(names);
    wq_free(shards);
    cJSON_Delete(root);
    wq_free(text);
    return st;
}

// ---- public API ---------------------------------------------------------------------------------

wq_status wq_st_open_file(const char *path, wq_st_model **out)
{
    wq_status st = WQ_OK;
    wq_st_model *m = NULL;
    if (!path || !out) return WQ_ERR_ARG;
    *out = NULL;
    WQ_TRY_GOTO(model_alloc(&m), st, done);
    m->dir = dir_of(path);
    WQ_CHECK_GOTO(m->dir, st, WQ_ERR_NOMEM, done, "safetensors %s: out of memory", path);
    WQ_TRY_GOTO(add_shard(m, path, WQ_ERR_IO), st, done);
    WQ_TRY_GOTO(finalize_table(m), st, done);
    *out = m;
    m = NULL;
done:
    wq_st_close(m);
    return st;
}

wq_status wq_st_open(const char *dir, wq_st_model **out)
{
    wq_status st = WQ_OK;
    wq_st_model *m = NULL;
    char *single = NULL, *index = NULL;
    if (!dir || !out) return WQ_ERR_ARG;
    *out = NULL;
    single = join_path(dir, ST_SINGLE);
    index = join_path(dir, ST_INDEX);
    WQ_CHECK_GOTO(single && index, st, WQ_ERR_NOMEM, done, "safetensors: out of memory");
    if (file_exists(single)) {
        WQ_TRY_GOTO(wq_st_open_file(single, out), st, done);
        goto done;
    }
    WQ_CHECK_GOTO(file_exists(index), st, WQ_ERR_IO, done,
                  "safetensors: %s holds neither %s nor %s", dir, ST_SINGLE, ST_INDEX);
    WQ_TRY_GOTO(model_alloc(&m), st, done);
    m->dir = wq_strdup(dir);
    WQ_CHECK_GOTO(m->dir, st, WQ_ERR_NOMEM, done, "safetensors: out of memory");
    WQ_TRY_GOTO(open_sharded(m, index), st, done);
    *out = m;
    m = NULL;
done:
    wq_st_close(m);
    wq_free(single);
    wq_free(index);
    return st;
}

void wq_st_close(wq_st_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_files; i++) {
        if (m->fds[i] >= 0) close(m->fds[i]);
        wq_free(m->paths[i]);
    }
    wq_free(m->fds);
    wq_free(m->paths);
    wq_free(m->tensors);
    wq_free(m->dir);
    wq_free(m);
}

int64_t wq_st_count(const wq_st_model *m)
{
    return m ? m->n : 0;
}

const wq_st_tensor *wq_st_at(const wq_st_model *m, int64_t i)
{
    if (!m || i < 0 || i >= m->n) return NULL;
    return &m->tensors[i];
}

const wq_st_tensor *wq_st_find(const wq_st_model *m, const char *name)
{
    if (!m || !name) return NULL;
    int64_t lo = 0, hi = m->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->tensors[mid].name, name);
        if (c == 0) return &m->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *wq_st_dir(const wq_st_model *m)
{
    return m && m->dir ? m->dir : "";
}

/* t must point into m's own table (a copied wq_st_tensor could carry any offset). Compared as
 * integers: relational comparison of pointers into different objects is undefined. */
static bool valid_tensor(const wq_st_model *m, const wq_st_tensor *t)
{
    if (!m || !t || m->n == 0) return false;
    uintptr_t p = (uintptr_t)t, lo = (uintptr_t)m->tensors, hi = (uintptr_t)(m->tensors + m->n);
    return p >= lo && p < hi && (p - lo) % sizeof *t == 0;
}

wq_status wq_st_read_raw(const wq_st_model *m, const wq_st_tensor *t, void *dst)
{
    if (!valid_tensor(m, t) || (!dst && t->nbytes)) return WQ_ERR_ARG;
    return pread_all(m->fds[t->file_index], dst, t->nbytes, t->offset, m->paths[t->file_index]);
}

/* Reads elements [elem0, elem0 + n) of t as f32. The F32 case reads straight into dst; other float
 * types go through a bounded scratch buffer so memory stays O(chunk), not O(tensor). */
static wq_status read_elems_f32(const wq_st_model *m, const wq_st_tensor *t, uint64_t elem0,
                                uint64_t n, float *dst)
{
    wq_status st = WQ_OK;
    int fd = m->fds[t->file_index];
    const char *path = m->paths[t->file_index];
    size_t esz = wq_dtype_size(t->dtype);
    uint64_t off = t->offset + elem0 * esz;
    unsigned char *scratch = NULL;

    switch (t->dtype) {
    case WQ_DTYPE_F32:
        return pread_all(fd, dst, (size_t)n * esz, off, path);
    case WQ_DTYPE_F16:
    case WQ_DTYPE_BF16:
    case WQ_DTYPE_F64:
        break;
    default:
        WQ_LOG_ERROR("safetensors %s: tensor '%s': dtype %s is not a float type (read it raw)",
                     path, t->name, wq_dtype_name(t->dtype));
        return WQ_ERR_FORMAT;
    }
    size_t chunk_elems = ST_CONVERT_CHUNK / esz;
    size_t scratch_elems = n < chunk_elems ? (size_t)n : chunk_elems;
    scratch = wq_malloc(scratch_elems * esz);
    WQ_CHECK_GOTO(scratch, st, WQ_ERR_NOMEM, done, "safetensors: out of memory for conversion");
    for (uint64_t done_n = 0; done_n < n;) {
        size_t k = (n - done_n) < scratch_elems ? (size_t)(n - done_n) : scratch_elems;
        WQ_TRY_GOTO(pread_all(fd, scratch, k * esz, off + done_n * esz, path), st, done);
        wq_convert_to_f32(t->dtype, scratch, dst + done_n, k);
        done_n += k;
    }
done:
    wq_free(scratch);
    return st;
}

wq_status wq_st_read_f32(const wq_st_model *m, const wq_st_tensor *t, float *dst)
{
    if (!valid_tensor(m, t) || (!dst && t->numel)) return WQ_ERR_ARG;
    if (t->numel == 0) return WQ_OK;
    return read_elems_f32(m, t, 0, (uint64_t)t->numel, dst);
}

wq_status wq_st_read_rows_f32(const wq_st_model *m, const wq_st_tensor *t, int64_t row0,
                              int64_t nrows, float *dst)
{
    if (!valid_tensor(m, t) || t->ndim < 1) return WQ_ERR_ARG;
    int64_t rows = t->shape[0];
    if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0) {
        WQ_LOG_ERROR("safetensors: tensor '%s': rows [%lld, %lld) outside [0, %lld)", t->name,
                     (long long)row0, (long long)(row0 + nrows), (long long)rows);
        return WQ_ERR_ARG;
    }
    if (nrows == 0) return WQ_OK;
    if (!dst) return WQ_ERR_ARG;
    uint64_t cols = (uint64_t)(t->numel / rows);
    return read_elems_f32(m, t, (uint64_t)row0 * cols, (uint64_t)nrows * cols, dst);
}
