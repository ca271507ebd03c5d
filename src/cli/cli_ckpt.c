/* cli_ckpt.c: checkpoint/resume files of `wquant quantize` (see cli_ckpt.h for the layout).
 * Layer: cli. */
#include "cli/cli_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_io.h"
#include "core/core_log.h"
#include "wq_version.h"

#define CK_MAGIC "WQCKPT1"

struct wq_ckpt {
    char dir[4096];
    int64_t n_entries, n_blocks;
    uint8_t *entry_done; /* [n_entries] */
    uint8_t *block_done; /* [n_blocks] */
};

/* Identity fields of the manifest, in file order. */
enum { ID_FORMAT, ID_VERSION, ID_CONFIG, ID_MODEL, ID_CALIB, ID_BLAS, ID_N };
static const char *const k_id_key[ID_N] = {"format", "version",     "config",
                                           "model",  "calibration", "openblas_threads"};

/* A fast 64-bit non-cryptographic hash, word at a time; chained calls must split data the same way
 * (they do: save and load hash the same arrays in the same order). */
static uint64_t ck_hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    const uint64_t P = 0x100000001b3ULL * 0x9E3779B97F4A7C15ULL | 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * P;
        h ^= h >> 29;
    }
    for (; i < n; i++) {
        h = (h ^ b[i]) * P;
        h ^= h >> 29;
    }
    return h ^ (uint64_t)n;
}

#define CK_SEED 0xcbf29ce484222325ULL

/* Model fingerprint: config.json, every tensor's name/dtype/shape, and sampled rows (first, middle,
 * last; whole tensor when small) of its data. Reading every byte of a 140 GB model would cost
 * minutes. */
static wq_status model_hash(const wq_st_model *m, const char *model_config_text, uint64_t *out)
{
    uint64_t h = ck_hash(CK_SEED, model_config_text, strlen(model_config_text));
    float *row = NULL;
    size_t row_cap = 0;
    for (int64_t i = 0; i < wq_st_count(m); i++) {
        const wq_st_tensor *t = wq_st_at(m, i);
        int32_t meta[2] = {(int32_t)t->dtype, t->ndim};
        h = ck_hash(h, t->name, strlen(t->name));
        h = ck_hash(h, meta, sizeof meta);
        h = ck_hash(h, t->shape, sizeof t->shape);
        int is_float = t->dtype == WQ_DTYPE_F32 || t->dtype == WQ_DTYPE_F16 ||
                       t->dtype == WQ_DTYPE_BF16 || t->dtype == WQ_DTYPE_F64;
        int whole = t->ndim < 2 || t->nbytes <= (1u << 16) || !is_float;
        if (whole && t->nbytes > (1u << 20)) continue; /* large 1-D or integer: metadata only */
        size_t need = whole ? t->nbytes : (size_t)(t->numel / t->shape[0]) * sizeof(float);
        if (need > row_cap) {
            wq_free(row);
            row = wq_malloc(need ? need : 1);
            row_cap = row ? need : 0;
            if (!row) return WQ_ERR_NOMEM;
        }
        if (whole) {
            wq_status st = wq_st_read_raw(m, t, row);
            if (st != WQ_OK) {
                wq_free(row);
                return st;
            }
            h = ck_hash(h, row, t->nbytes);
            continue;
        }
        int64_t picks[3] = {0, t->shape[0] / 2, t->shape[0] - 1};
        for (int k = 0; k < 3; k++) {
            wq_status st = wq_st_read_rows_f32(m, t, picks[k], 1, row);
            if (st != WQ_OK) {
                wq_free(row);
                return st;
            }
            h = ck_hash(h, row, need);
        }
    }
    wq_free(row);
    *out = h;
    return WQ_OK;
}

static wq_status file_hash(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        WQ_LOG_ERROR("cannot read '%s': %s", path, strerror(errno));
        return WQ_ERR_IO;
    }
    char buf[1 << 16];
    uint64_t h = CK_SEED;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        h = ck_hash(h, buf, n);
    fclose(f);
    *out = h;
    return WQ_OK;
}

static void path_in(const wq_ckpt *ck, char *p, size_t n, const char *fmt, long long x)
{
    char name[64];
    snprintf(name, sizeof name, fmt, x);
    snprintf(p, n, "%s/%s", ck->dir, name);
}

/* Writes bytes to `path` atomically: temporary name, fsync, rename. */
static wq_status write_atomic(const char *path, const void *const *parts, const size_t *sizes,
                              int n)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f != NULL;
    for (int k = 0; ok && k < n; k++)
        if (sizes[k] && fwrite(parts[k], 1, sizes[k], f) != sizes[k]) ok = 0;
    if (f) {
        /* durable before the rename; its pages are dropped for the next writes (core_io.h) */
        if (fflush(f) != 0 || wq_io_write_behind(fileno(f), tmp) != WQ_OK) ok = 0;
        if (fclose(f) != 0) ok = 0;
    }
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) {
        WQ_LOG_ERROR("cannot write checkpoint file '%s': %s", path, strerror(errno));
        remove(tmp);
        return WQ_ERR_IO;
    }
    return WQ_OK;
}

/* The manifest lines of this run. */
static wq_status identity(const char *config_json, const wq_st_model *m,
                          const char *model_config_text, const char *calib_path, char id[ID_N][80])
{
    uint64_t hm = 0, hc = 0;
    WQ_TRY(model_hash(m, model_config_text, &hm));
    if (calib_path && calib_path[0]) WQ_TRY(file_hash(calib_path, &hc));
    const char *blas = getenv("OPENBLAS_NUM_THREADS");
    snprintf(id[ID_FORMAT], 80, "1");
    snprintf(id[ID_VERSION], 80, "%s", WQ_VERSION_STRING);
    snprintf(id[ID_CONFIG], 80, "%016llx",
             (unsigned long long)ck_hash(CK_SEED, config_json, strlen(config_json)));
    snprintf(id[ID_MODEL], 80, "%016llx", (unsigned long long)hm);
    snprintf(id[ID_CALIB], 80, "%016llx", (unsigned long long)hc);
    snprintf(id[ID_BLAS], 80, "%s", blas && atoi(blas) > 0 ? blas : "1");
    return WQ_OK;
}

/* Compares an existing manifest with this run's identity; logs every difference. */
static wq_status check_manifest(const char *path, const char *dir, char id[ID_N][80])
{
    FILE *f = fopen(path, "r");
    if (!f) {
        WQ_LOG_ERROR("cannot read checkpoint manifest '%s': %s", path, strerror(errno));
        return WQ_ERR_IO;
    }
    char line[256];
    int seen[ID_N] = {0}, bad = 0;
    while (fgets(line, sizeof line, f)) {
        char key[64], val[96];
        if (sscanf(line, "%63s %95s", key, val) != 2) continue;
        for (int k = 0; k < ID_N; k++) {
            if (strcmp(key, k_id_key[k]) != 0) continue;
            seen[k] = 1;
            if (strcmp(val, id[k]) != 0) {
                WQ_LOG_ERROR("checkpoint '%s' was written by a different run: its %s is %s, this "
                             "run's is %s",
                             dir, k_id_key[k], val, id[k]);
                bad = 1;
            }
        }
    }
    fclose(f);
    for (int k = 0; k < ID_N; k++)
        if (!seen[k]) {
            WQ_LOG_ERROR("checkpoint manifest '%s' lacks '%s'", path, k_id_key[k]);
            bad = 1;
        }
    if (bad) {
        WQ_LOG_ERROR("refusing to resume from '%s' (config, model, calibration data or OpenBLAS "
                     "threads changed): rerun with the original settings, or delete the directory "
                     "to start over",
                     dir);
        return WQ_ERR_ARG;
    }
    return WQ_OK;
}

/* Rank 0: everything of wq_ckpt_open that touches the file system. */
static wq_status open_root(wq_ckpt *ck, int resume, const char *config_json, const wq_st_model *m,
                           const char *model_config_text, const char *calib_path)
{
    char id[ID_N][80], manifest[4200];
    WQ_TRY(identity(config_json, m, model_config_text, calib_path, id));
    snprintf(manifest, sizeof manifest, "%s/manifest", ck->dir);
    struct stat sb;
    int exists = stat(manifest, &sb) == 0;
    if (exists && !resume) {
        WQ_LOG_ERROR("'%s' holds the checkpoint of an interrupted run: continue it with --resume, "
                     "or delete the directory to start over",
                     ck->dir);
        return WQ_ERR_ARG;
    }
    if (exists) {
        WQ_TRY(check_manifest(manifest, ck->dir, id));
        DIR *dp = opendir(ck->dir);
        if (!dp) {
            WQ_LOG_ERROR("cannot list checkpoint '%s': %s", ck->dir, strerror(errno));
            return WQ_ERR_IO;
        }
        struct dirent *de;
        while ((de = readdir(dp)) != NULL) {
            long long x;
            char tail[8];
            if (sscanf(de->d_name, "e%lld.%7s", &x, tail) == 2 && strcmp(tail, "q") == 0 &&
                x >= 0 && x < ck->n_entries)
                ck->entry_done[x] = 1;
            else if (sscanf(de->d_name, "block%lld.%7s", &x, tail) == 2 &&
                     strcmp(tail, "done") == 0 && x >= 0 && x < ck->n_blocks)
                ck->block_done[x] = 1;
        }
        closedir(dp);
        return WQ_OK;
    }
    if (mkdir(ck->dir, 0777) != 0 && errno != EEXIST) {
        WQ_LOG_ERROR("cannot create checkpoint directory '%s': %s", ck->dir, strerror(errno));
        return WQ_ERR_IO;
    }
    char text[1024];
    size_t len = 0;
    len += (size_t)snprintf(text + len, sizeof text - len, "# wquant quantize checkpoint\n");
    for (int k = 0; k < ID_N; k++)
        len += (size_t)snprintf(text + len, sizeof text - len, "%s %s\n", k_id_key[k], id[k]);
    const void *parts[1] = {text};
    size_t sizes[1] = {len};
    return write_atomic(manifest, parts, sizes, 1);
}

wq_status wq_ckpt_open(wq_dist *d, const char *out_path, int resume, const char *config_json,
                       const wq_st_model *m, const char *model_config_text, const char *calib_path,
                       int64_t n_entries, int64_t n_blocks, wq_ckpt **out)
{
    wq_status st = WQ_OK;
    *out = NULL;
    wq_ckpt *ck = wq_calloc(1, sizeof *ck);
    if (ck) {
        ck->n_entries = n_entries;
        ck->n_blocks = n_blocks;
        ck->entry_done = wq_calloc((size_t)(n_entries > 0 ? n_entries : 1), 1);
        ck->block_done = wq_calloc((size_t)(n_blocks > 0 ? n_blocks : 1), 1);
        snprintf(ck->dir, sizeof ck->dir, "%s.ckpt", out_path);
    }
    if (!ck || !ck->entry_done || !ck->block_done) st = WQ_ERR_NOMEM;
    if (st == WQ_OK && wq_dist_rank(d) == 0)
        st = open_root(ck, resume, config_json, m, model_config_text, calib_path);
    st = wq_dist_agree(d, st);
    if (st == WQ_OK)
        st = wq_dist_bcast(d, 0, ck->entry_done, (size_t)(n_entries > 0 ? n_entries : 1));
    if (st == WQ_OK)
        st = wq_dist_bcast(d, 0, ck->block_done, (size_t)(n_blocks > 0 ? n_blocks : 1));
    st = wq_dist_agree(d, st);
    if (st != WQ_OK) {
        wq_ckpt_close(ck);
        return st;
    }
    int64_t nb = 0, ne = wq_ckpt_n_done(ck, &nb);
    if (ne || nb)
        WQ_LOG_ROOT("resuming from %s: %lld finished tensors, %lld finished blocks", ck->dir,
                    (long long)ne, (long long)nb);
    *out = ck;
    return WQ_OK;
}

void wq_ckpt_close(wq_ckpt *ck)
{
    if (!ck) return;
    wq_free(ck->entry_done);
    wq_free(ck->block_done);
    wq_free(ck);
}

wq_status wq_ckpt_remove(wq_dist *d, wq_ckpt *ck)
{
    wq_status st = WQ_OK;
    if (wq_dist_rank(d) == 0) {
        DIR *dp = opendir(ck->dir);
        if (dp) {
            struct dirent *de;
            char p[4400];
            while ((de = readdir(dp)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
                snprintf(p, sizeof p, "%s/%s", ck->dir, de->d_name);
                remove(p);
            }
            closedir(dp);
        }
        if (rmdir(ck->dir) != 0 && errno != ENOENT) {
            WQ_LOG_WARN("could not remove checkpoint '%s': %s", ck->dir, strerror(errno));
        }
    }
    return wq_dist_agree(d, st);
}

int wq_ckpt_entry_done(const wq_ckpt *ck, int64_t i)
{
    return ck && i >= 0 && i < ck->n_entries && ck->entry_done[i];
}

int wq_ckpt_block_done(const wq_ckpt *ck, int64_t b)
{
    return ck && b >= 0 && b < ck->n_blocks && ck->block_done[b];
}

int64_t wq_ckpt_n_done(const wq_ckpt *ck, int64_t *blocks)
{
    int64_t ne = 0, nb = 0;
    for (int64_t i = 0; ck && i < ck->n_entries; i++)
        ne += ck->entry_done[i];
    for (int64_t b = 0; ck && b < ck->n_blocks; b++)
        nb += ck->block_done[b];
    if (blocks) *blocks = nb;
    return ne;
}

/* On-disk header of an entry file (native byte order: a checkpoint is resumed on the same cluster).
 */
typedef struct {
    char magic[8];
    int64_t index, rows, cols, group_size, ngroups;
    int32_t dtype, bits, has_zeros, has_gidx, n_extra;
    int32_t packed4; /* codes stored two per byte (low nibble first): every code < 16 */
} ck_head;

typedef struct {
    char name[32];
    int64_t len;
} ck_extra_head;

/* Bytes of the codes as stored. */
static size_t codes_bytes(const wq_qmatrix *q, int packed4)
{
    size_t n = (size_t)(q->rows * q->cols);
    return packed4 ? (n + 1) / 2 : n;
}

/* The arrays of an entry file in order (pointer, bytes); `codes` is q->codes or its packed form.
 * Returns the count. */
static int entry_parts(const wq_qmatrix *q, const void *codes, size_t ncodes,
                       const wq_ckpt_extra *extra, int n_extra, const void **p, size_t *s)
{
    int n = 0;
    p[n] = codes, s[n++] = ncodes;
    p[n] = q->scales, s[n++] = (size_t)(q->rows * q->ngroups) * sizeof(float);
    if (q->zeros) p[n] = q->zeros, s[n++] = (size_t)(q->rows * q->ngroups) * sizeof(float);
    if (q->g_idx) p[n] = q->g_idx, s[n++] = (size_t)q->cols * sizeof(int32_t);
    for (int k = 0; k < n_extra; k++)
        p[n] = extra[k].data, s[n++] = (size_t)extra[k].len * sizeof(float);
    return n;
}

/* Two codes per byte, the first in the low nibble. Eight codes at a time as one 64-bit word
 * (byte k of the word is codes[k] on this little-endian target): the pairs are merged in place,
 * then the even bytes are gathered into four. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pack_nibbles reads codes as LE words");
static void pack_nibbles(const uint8_t *codes, int64_t n, uint8_t *packed)
{
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t x;
        memcpy(&x, codes + k, 8);
        x &= 0x0F0F0F0F0F0F0F0FULL;
        x = (x | x >> 4) & 0x00FF00FF00FF00FFULL;
        x = (x | x >> 8) & 0x0000FFFF0000FFFFULL;
        x = (x | x >> 16) & 0x00000000FFFFFFFFULL;
        const uint32_t y = (uint32_t)x;
        memcpy(packed + k / 2, &y, 4);
    }
    for (; k < n; k++) {
        const uint8_t c = codes[k] & 15u;
        packed[k / 2] = (k & 1) ? (uint8_t)(packed[k / 2] | c << 4) : c;
    }
}

wq_status wq_ckpt_save(wq_ckpt *ck, int64_t i, const wq_qmatrix *q, const wq_ckpt_extra *extra,
                       int n_extra)
{
    if (!ck) return WQ_OK;
    if (n_extra > WQ_CKPT_MAX_EXTRA) return WQ_ERR_ARG;
    ck_head h = {.index = i,
                 .rows = q->rows,
                 .cols = q->cols,
                 .group_size = q->group_size,
                 .ngroups = q->ngroups,
                 .dtype = (int32_t)q->dtype,
                 .bits = q->bits,
                 .has_zeros = q->zeros != NULL,
                 .has_gidx = q->g_idx != NULL,
                 .n_extra = n_extra};
    h.packed4 = q->bits <= 4;
    uint8_t *packed = NULL;
    const size_t nc = codes_bytes(q, h.packed4);
    if (h.packed4) {
        packed = wq_malloc(nc ? nc : 1);
        if (!packed) return WQ_ERR_NOMEM;
        pack_nibbles(q->codes, q->rows * q->cols, packed);
    }
    memcpy(h.magic, CK_MAGIC, 8);
    ck_extra_head eh[WQ_CKPT_MAX_EXTRA];
    memset(eh, 0, sizeof eh);
    for (int k = 0; k < n_extra; k++) {
        snprintf(eh[k].name, sizeof eh[k].name, "%s", extra[k].name);
        eh[k].len = extra[k].len;
    }
    const void *p[4 + 2 * WQ_CKPT_MAX_EXTRA];
    size_t s[4 + 2 * WQ_CKPT_MAX_EXTRA];
    int n = 0;
    p[n] = &h, s[n++] = sizeof h;
    p[n] = eh, s[n++] = (size_t)n_extra * sizeof *eh;
    n += entry_parts(q, packed ? (const void *)packed : q->codes, nc, extra, n_extra, p + n, s + n);
    uint64_t sum = CK_SEED;
    for (int k = 0; k < n; k++)
        sum = ck_hash(sum, p[k], s[k]);
    p[n] = &sum, s[n++] = sizeof sum;
    char path[4200];
    path_in(ck, path, sizeof path, "e%lld.q", (long long)i);
    wq_status st = write_atomic(path, p, s, n);
    wq_free(packed);
    return st;
}

void wq_ckpt_extras_free(wq_ckpt_extra *extra, int n_extra)
{
    for (int k = 0; k < n_extra; k++) {
        wq_free(extra[k].data);
        extra[k].data = NULL;
    }
}

static wq_status read_exact(FILE *f, void *p, size_t n, const char *path)
{
    if (n && fread(p, 1, n, f) != n) {
        WQ_LOG_ERROR("checkpoint file '%s' is truncated: delete the checkpoint directory to start "
                     "over",
                     path);
        return WQ_ERR_FORMAT;
    }
    return WQ_OK;
}

wq_status wq_ckpt_load(const wq_ckpt *ck, int64_t i, int64_t rows, int64_t cols, int64_t group_size,
                       wq_qdtype dtype, int bits, wq_qmatrix *q, wq_ckpt_extra *extra, int *n_extra)
{
    wq_status st = WQ_OK;
    char path[4200];
    path_in(ck, path, sizeof path, "e%lld.q", (long long)i);
    memset(q, 0, sizeof *q);
    *n_extra = 0;
    uint8_t *packed = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        WQ_LOG_ERROR("cannot read checkpoint file '%s': %s", path, strerror(errno));
        return WQ_ERR_IO;
    }
    ck_head h;
    ck_extra_head eh[WQ_CKPT_MAX_EXTRA];
    WQ_TRY_GOTO(read_exact(f, &h, sizeof h, path), st, done);
    WQ_CHECK_GOTO(
        memcmp(h.magic, CK_MAGIC, 8) == 0 && h.index == i && h.rows == rows && h.cols == cols &&
            h.group_size == group_size && h.dtype == (int32_t)dtype && h.bits == bits &&
            h.n_extra >= 0 && h.n_extra <= WQ_CKPT_MAX_EXTRA,
        st, WQ_ERR_FORMAT, done,
        "checkpoint file '%s' does not hold entry %lld as planned (%lld x %lld, group %lld, "
        "%d bits): delete the checkpoint directory to start over",
        path, (long long)i, (long long)rows, (long long)cols, (long long)group_size, bits);
    WQ_TRY_GOTO(read_exact(f, eh, (size_t)h.n_extra * sizeof *eh, path), st, done);
    WQ_TRY_GOTO(wq_qmatrix_init(q, rows, cols, group_size, dtype, bits), st, done);
    WQ_CHECK_GOTO((q->zeros != NULL) == (h.has_zeros != 0) && q->ngroups == h.ngroups, st,
                  WQ_ERR_FORMAT, done, "checkpoint file '%s': inconsistent header", path);
    if (h.has_gidx) WQ_TRY_GOTO(wq_qmatrix_alloc_gidx(q), st, done);
    for (int k = 0; k < h.n_extra; k++) {
        WQ_CHECK_GOTO(eh[k].len >= 0 && eh[k].len <= rows * cols + cols, st, WQ_ERR_FORMAT, done,
                      "checkpoint file '%s': bad extra length", path);
        snprintf(extra[k].name, sizeof extra[k].name, "%.31s", eh[k].name);
        extra[k].len = eh[k].len;
        extra[k].data = wq_malloc((size_t)(eh[k].len ? eh[k].len : 1) * sizeof(float));
        *n_extra = k + 1;
        WQ_CHECK_GOTO(extra[k].data, st, WQ_ERR_NOMEM, done, "out of memory reading '%s'", path);
    }
    const void *p[4 + 2 * WQ_CKPT_MAX_EXTRA];
    size_t s[4 + 2 * WQ_CKPT_MAX_EXTRA];
    int n = 0;
    p[n] = &h, s[n++] = sizeof h;
    p[n] = eh, s[n++] = (size_t)h.n_extra * sizeof *eh;
    int first = n;
    const size_t nc = codes_bytes(q, h.packed4 != 0);
    if (h.packed4) {
        packed = wq_malloc(nc ? nc : 1);
        WQ_CHECK_GOTO(packed, st, WQ_ERR_NOMEM, done, "out of memory reading '%s'", path);
    }
    n +=
        entry_parts(q, packed ? (const void *)packed : q->codes, nc, extra, *n_extra, p + n, s + n);
    for (int k = first; k < n; k++)
        WQ_TRY_GOTO(read_exact(f, (void *)p[k], s[k], path), st, done);
    uint64_t sum = CK_SEED, stored;
    for (int k = 0; k < n; k++)
        sum = ck_hash(sum, p[k], s[k]);
    WQ_TRY_GOTO(read_exact(f, &stored, sizeof stored, path), st, done);
    WQ_CHECK_GOTO(sum == stored && fgetc(f) == EOF, st, WQ_ERR_FORMAT, done,
                  "checkpoint file '%s' is corrupt (checksum): delete the checkpoint directory to "
                  "start over",
                  path);
    for (int64_t k = 0; packed && k < rows * cols; k++)
        q->codes[k] = (uint8_t)((packed[k >> 1] >> (4 * (k & 1))) & 15u);
done:
    fclose(f);
    wq_free(packed);
    if (st != WQ_OK) {
        wq_qmatrix_free(q);
        wq_ckpt_extras_free(extra, *n_extra);
        *n_extra = 0;
    }
    return st;
}

wq_status wq_ckpt_mark_block(wq_ckpt *ck, int64_t b)
{
    if (!ck) return WQ_OK;
    char path[4200];
    path_in(ck, path, sizeof path, "block%lld.done", (long long)b);
    const void *parts[1] = {""};
    size_t sizes[1] = {0};
    return write_atomic(path, parts, sizes, 1);
}
