/* h5_write.c: the collective container writer. Creation, the `complete` flag and closing are
 * collective (every rank issues the same HDF5 metadata calls with the same arguments); the data of
 * each entry is written independently by whichever rank quantized it, into datasets that are
 * contiguous, allocated at creation and unfiltered, through handles opened collectively at
 * creation, so no rank ever creates, opens or closes an object alone. Layer: io_hdf5. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_io.h"
#include "core/core_log.h"
#include "dist/dist_comm.h"
#include "io_hdf5/h5_internal.h"
#include "kernels/kern_pack.h"
#include "wq_version.h"

/* Per-entry write counters: [0] rows written (qlinear) or times written (raw), [1 + k] extra k. */
enum { WCOLS = 1 + WQ_H5_MAX_EXTRA };

/* Datasets of at least this size start at a multiple of it, so ranks writing neighbouring large
 * datasets do not share file-system pages / stripes (cheap: at most 64 KiB padding each). */
#define ALIGN_BYTES 65536

struct wq_h5_file {
    wq_dist *d;
    hid_t file, t_f16, t_bf16;
    char path[4096], tmp[4104];
    wq_h5_entry *entries; /* copy of the declarations */
    int64_t n;
    hid_t *ds;        /* [n][WQ__H5_SLOTS]; H5I_INVALID_HID where the entry has no such dataset */
    int64_t *written; /* [n][WCOLS], this rank's writes */
    wq_io_behind wb;  /* write-behind on a plain descriptor of the file (core_io.h); fd -1: none */
};

/* ---- declaration checks -----------------------------------------------------------------------
 */

static int name_ok(const char *s, size_t cap)
{
    size_t len = strnlen(s, cap);
    return len > 0 && len < cap && !memchr(s, '/', len) && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

static wq_status validate_entry(const wq_h5_entry *e, int64_t i)
{
    if (!name_ok(e->name, sizeof e->name)) {
        WQ_LOG_ERROR(
            "container entry %lld: invalid name '%.*s' (1..255 characters, no '/', not '.')",
            (long long)i, (int)strnlen(e->name, sizeof e->name), e->name);
        return WQ_ERR_ARG;
    }
#define BAD(...)                                                                                   \
    do {                                                                                           \
        char why_[256];                                                                            \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                                  \
        WQ_LOG_ERROR("container entry %lld '%s': %s", (long long)i, e->name, why_);                \
        return WQ_ERR_ARG;                                                                         \
    } while (0)
    if (!wq__h5_valid_dtype(e->orig_dtype)) BAD("invalid orig_dtype %d", (int)e->orig_dtype);
    if (e->kind == WQ_H5_RAW) {
        if (e->ndim < 0 || e->ndim > 4) BAD("ndim %d outside 0..4", e->ndim);
        double bytes = (double)wq_dtype_size(e->orig_dtype);
        for (int k = 0; k < e->ndim; k++) {
            if (e->shape[k] < 0) BAD("negative dimension %lld", (long long)e->shape[k]);
            bytes *= (double)e->shape[k];
        }
        if (bytes > 0x1p62) BAD("tensor too large");
        if (e->n_extra != 0 || e->has_gidx) BAD("raw tensors have no extras or g_idx");
        return WQ_OK;
    }
    if (e->kind != WQ_H5_QLINEAR) BAD("invalid kind %d", (int)e->kind);
    const wq_qspec *s = &e->spec;
    if (e->rows < 1 || e->cols < 1 || e->rows > (1LL << 31) || e->cols > (1LL << 31))
        BAD("shape %lld x %lld outside 1..2^31", (long long)e->rows, (long long)e->cols);
    if (s->dtype == WQ_QDTYPE_INT) {
        if (s->bits < 1 || s->bits > 8) BAD("int bits %d outside 1..8", s->bits);
    } else if (s->dtype == WQ_QDTYPE_NF4 || s->dtype == WQ_QDTYPE_FP4_BNB ||
               s->dtype == WQ_QDTYPE_FP4_E2M1) {
        if (s->bits != 4) BAD("%s needs bits 4, got %d", wq_qdtype_name(s->dtype), s->bits);
    } else {
        BAD("dtype %s cannot be packed (keep it as a raw tensor)", wq_qdtype_name(s->dtype));
    }
    if (e->group_size_eff < 1 || e->group_size_eff > e->cols)
        BAD("group_size_eff %lld outside 1..%lld", (long long)e->group_size_eff,
            (long long)e->cols);
    if (s->scale_dtype != WQ_SCALE_F32 && s->scale_dtype != WQ_SCALE_F16)
        BAD("invalid scale_dtype %d", (int)s->scale_dtype);
    if (e->has_gidx != 0 && e->has_gidx != 1) BAD("has_gidx must be 0 or 1");
    size_t alen = strnlen(e->algorithm, sizeof e->algorithm);
    if (alen == 0 || alen == sizeof e->algorithm) BAD("algorithm name missing or unterminated");
    if (e->n_extra < 0 || e->n_extra > WQ_H5_MAX_EXTRA)
        BAD("n_extra %d outside 0..%d", e->n_extra, WQ_H5_MAX_EXTRA);
    for (int k = 0; k < e->n_extra; k++) {
        const wq_h5_extra *x = &e->extra[k];
        if (!wq__h5_valid_extra_name(x->name))
            BAD("extra %d: invalid name (1..31 of [A-Za-z0-9_.-], not a packed dataset's name)", k);
        if (x->len < 1 || x->len > (1LL << 31))
            BAD("extra '%s': length %lld", x->name, (long long)x->len);
        for (int j = 0; j < k; j++)
            if (strcmp(e->extra[j].name, x->name) == 0) BAD("extra '%s' declared twice", x->name);
    }
#undef BAD
    return WQ_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every entry valid and every name unique (wq_h5_find looks names up across both kinds). */
static wq_status validate_entries(const wq_h5_entry *entries, int64_t n)
{
    if (n < 0 || (n > 0 && !entries)) {
        WQ_LOG_ERROR("wq_h5_create: %lld entries%s", (long long)n, n > 0 ? " but no array" : "");
        return WQ_ERR_ARG;
    }
    for (int64_t i = 0; i < n; i++)
        WQ_TRY(validate_entry(&entries[i], i));
    if (n < 2) return WQ_OK;
    const char **names = wq_malloc((size_t)n * sizeof *names);
    if (!names) return WQ_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++)
        names[i] = entries[i].name;
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    wq_status st = WQ_OK;
    for (int64_t i = 1; i < n && st == WQ_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            WQ_LOG_ERROR("container entry name '%s' is declared twice", names[i]);
            st = WQ_ERR_ARG;
        }
    wq_free(names);
    return st;
}

/* FNV-1a over the fields that define the file (never over struct padding or unused slots). */
typedef struct {
    uint64_t h;
} fnv;
static void fnv_bytes(fnv *f, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        f->h = (f->h ^ b[i]) * 1099511628211ULL;
}
static void fnv_i64(fnv *f, int64_t v)
{
    fnv_bytes(f, &v, sizeof v);
}
static void fnv_str(fnv *f, const char *s, size_t cap)
{
    size_t len = s ? strnlen(s, cap) : 0;
    fnv_i64(f, s ? (int64_t)len : -1);
    if (s) fnv_bytes(f, s, len);
}

static uint64_t declaration_hash(const char *path, const wq_h5_entry *entries, int64_t n,
                                 const char *src, const char *wqc)
{
    fnv f = {1469598103934665603ULL};
    fnv_str(&f, path, (size_t)-1);
    fnv_str(&f, src, (size_t)-1);
    fnv_str(&f, wqc, (size_t)-1);
    fnv_i64(&f, n);
    for (int64_t i = 0; i < n; i++) {
        const wq_h5_entry *e = &entries[i];
        fnv_str(&f, e->name, sizeof e->name);
        fnv_i64(&f, e->kind);
        fnv_i64(&f, e->orig_dtype);
        if (e->kind == WQ_H5_RAW) {
            fnv_i64(&f, e->ndim);
            for (int k = 0; k < e->ndim && k < 4; k++)
                fnv_i64(&f, e->shape[k]);
            fnv_i64(&f, e->linear);
            continue;
        }
        const wq_qspec *s = &e->spec;
        int64_t v[] = {e->rows,        e->cols,       e->group_size_eff, e->has_gidx,
                       s->dtype,       s->bits,       s->group_size,     s->sym,
                       s->full_range,  s->mse_search, s->group_dim,      s->double_quant,
                       s->dq_dtype,    s->dq_bits,    s->dq_sym,         s->dq_group_size,
                       s->scale_dtype, e->n_extra};
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
            fnv_i64(&f, v[k]);
        fnv_str(&f, e->algorithm, sizeof e->algorithm);
        for (int k = 0; k < e->n_extra && k < WQ_H5_MAX_EXTRA; k++) {
            fnv_str(&f, e->extra[k].name, sizeof e->extra[k].name);
            fnv_i64(&f, e->extra[k].len);
        }
    }
    return f.h;
}

/* Rank 0: the destination directory exists and is writable and `path` is not a directory, so the
 * user gets a message about their path rather than an MPI-IO error about path.tmp. */
static wq_status check_destination(const char *path, const char *tmp)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        WQ_LOG_ERROR("cannot write the output '%s': it is a directory", path);
        return WQ_ERR_IO;
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        WQ_LOG_ERROR("cannot write the output '%s': directory '%s' %s", path, dir,
                     errno == ENOENT || errno == ENOTDIR ? "does not exist" : "is not accessible");
        return WQ_ERR_IO;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        WQ_LOG_ERROR("cannot write the output '%s': directory '%s' is not writable (%s)", path, dir,
                     strerror(errno));
        return WQ_ERR_IO;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        WQ_LOG_ERROR("cannot write the output '%s': creating '%s' failed (%s)", path, tmp,
                     strerror(errno));
        return WQ_ERR_IO;
    }
    close(fd);
    unlink(tmp);
    return WQ_OK;
}

/* ---- object creation (collective) -------------------------------------------------------------
 */

static hid_t dataset_create(hid_t loc, const char *name, hid_t type, int ndim, const int64_t *dims)
{
    hsize_t hd[4] = {0};
    for (int i = 0; i < ndim; i++)
        hd[i] = (hsize_t)dims[i];
    hid_t sp = ndim ? H5Screate_simple(ndim, hd, NULL) : H5Screate(H5S_SCALAR);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t ds = H5I_INVALID_HID;
    /* contiguous + early allocation + no fill: independent raw-data writes are legal in parallel
     * HDF5; no timestamps: the file is reproducible byte for byte */
    if (sp >= 0 && pl >= 0 && H5Pset_layout(pl, H5D_CONTIGUOUS) >= 0 &&
        H5Pset_alloc_time(pl, H5D_ALLOC_TIME_EARLY) >= 0 &&
        H5Pset_fill_time(pl, H5D_FILL_TIME_NEVER) >= 0 && H5Pset_obj_track_times(pl, 0) >= 0)
        ds = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    if (ds < 0) wq__h5_log_stack();
    if (pl >= 0) H5Pclose(pl);
    if (sp >= 0) H5Sclose(sp);
    return ds;
}

static hid_t group_create(hid_t loc, const char *name)
{
    hid_t pl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = pl >= 0 && H5Pset_obj_track_times(pl, 0) >= 0
                  ? H5Gcreate2(loc, name, H5P_DEFAULT, pl, H5P_DEFAULT)
                  : H5I_INVALID_HID;
    if (g < 0) wq__h5_log_stack();
    if (pl >= 0) H5Pclose(pl);
    return g;
}

static int qlinear_attrs(hid_t g, const wq_h5_entry *e, int64_t i, int native)
{
    const wq_qspec *s = &e->spec;
    return wq__h5_attr_write_i64(g, "index", i) &&
           wq__h5_attr_write_str(g, "algorithm", e->algorithm) &&
           wq__h5_attr_write_str(g, "dtype", wq_qdtype_name(s->dtype)) &&
           wq__h5_attr_write_i64(g, "bits", s->bits) &&
           wq__h5_attr_write_i64(g, "group_size", e->group_size_eff) &&
           wq__h5_attr_write_i64(g, "config_group_size", s->group_size) &&
           wq__h5_attr_write_i64(g, "sym", s->sym) &&
           wq__h5_attr_write_i64(g, "full_range", s->full_range) &&
           wq__h5_attr_write_str(g, "scheme", wq__h5_scheme_name(e)) &&
           wq__h5_attr_write_str(g, "packing", native ? "inc_native" : "optimum") &&
           wq__h5_attr_write_i64(g, "in_features", e->cols) &&
           wq__h5_attr_write_i64(g, "out_features", e->rows) &&
           wq__h5_attr_write_str(g, "orig_dtype", wq_dtype_name(e->orig_dtype)) &&
           wq__h5_attr_write_str(g, "scale_dtype",
                                 s->scale_dtype == WQ_SCALE_F16 ? "F16" : "F32") &&
           wq__h5_attr_write_i64(g, "mse_search", s->mse_search) &&
           wq__h5_attr_write_i64(g, "group_dim", s->group_dim) &&
           wq__h5_attr_write_i64(g, "double_quant", s->double_quant) &&
           wq__h5_attr_write_str(g, "double_quant_dtype", wq_qdtype_name(s->dq_dtype)) &&
           wq__h5_attr_write_i64(g, "double_quant_bits", s->dq_bits) &&
           wq__h5_attr_write_i64(g, "double_quant_sym", s->dq_sym) &&
           wq__h5_attr_write_i64(g, "double_quant_group_size", s->dq_group_size);
}

/* Creates entry i's objects and keeps its dataset handles. Returns 1 on success. */
static int create_entry(wq_h5_file *f, int64_t i)
{
    const wq_h5_entry *e = &f->entries[i];
    hid_t *ds = &f->ds[i * WQ__H5_SLOTS];
    char p[300];
    wq__h5_entry_path(e, p, sizeof p);
    if (e->kind == WQ_H5_RAW) {
        ds[0] = dataset_create(f->file, p, wq__h5_file_type(e->orig_dtype, f->t_f16, f->t_bf16),
                               e->ndim, e->shape);
        return ds[0] >= 0 && wq__h5_attr_write_i64(ds[0], "index", i) &&
               wq__h5_attr_write_str(ds[0], "dtype", wq_dtype_name(e->orig_dtype)) &&
               wq__h5_attr_write_i64(ds[0], "linear", e->linear != 0);
    }
    hid_t g = group_create(f->file, p);
    if (g < 0) return 0;
    wq__h5_shapes s = wq__h5_shapes_of(e);
    int ok = (ds[WQ__H5_QWEIGHT] = dataset_create(g, "qweight", H5T_STD_I32LE, 2, s.qweight)) >= 0;
    if (ok && !s.native)
        ok = (ds[WQ__H5_QZEROS] = dataset_create(g, "qzeros", H5T_STD_I32LE, 2, s.qzeros)) >= 0;
    if (ok)
        ok = (ds[WQ__H5_SCALES] = dataset_create(
                  g, "scales", e->spec.scale_dtype == WQ_SCALE_F16 ? f->t_f16 : H5T_IEEE_F32LE, 2,
                  s.scales)) >= 0;
    if (ok && e->has_gidx)
        ok = (ds[WQ__H5_GIDX] = dataset_create(g, "g_idx", H5T_STD_I32LE, 1, &e->cols)) >= 0;
    for (int k = 0; ok && k < e->n_extra; k++)
        ok = (ds[WQ__H5_EXTRA0 + k] =
                  dataset_create(g, e->extra[k].name, H5T_IEEE_F32LE, 1, &e->extra[k].len)) >= 0;
    ok = ok && qlinear_attrs(g, e, i, s.native);
    H5Gclose(g);
    return ok;
}

static const char *algorithm_of(const wq_h5_entry *entries, int64_t n)
{
    const char *a = NULL;
    for (int64_t i = 0; i < n; i++) {
        if (entries[i].kind != WQ_H5_QLINEAR) continue;
        if (!a)
            a = entries[i].algorithm;
        else if (strcmp(a, entries[i].algorithm) != 0)
            return "mixed";
    }
    return a ? a : "none";
}

static wq_status create_objects(wq_h5_file *f, const char *src, const char *wqc)
{
    int ok = wq__h5_attr_write_i32(f->file, "wq_format_version", WQ_FORMAT_VERSION) &&
             wq__h5_attr_write_str(f->file, "wquant_version", WQ_VERSION_STRING) &&
             wq__h5_attr_write_str(f->file, "algorithm", algorithm_of(f->entries, f->n)) &&
             wq__h5_attr_write_i64(f->file, "n_entries", f->n) &&
             wq__h5_attr_write_i32(f->file, "complete", 0) &&
             wq__h5_attr_write_str(f->file, "source_config", src ? src : "") &&
             wq__h5_attr_write_str(f->file, "wquant_config", wqc ? wqc : "");
    if (!ok) {
        WQ_LOG_ERROR("'%s': cannot write the root attributes", f->path);
        return WQ_ERR_IO;
    }
    hid_t g1 = group_create(f->file, WQ__H5_LAYERS), g2 = group_create(f->file, WQ__H5_TENSORS);
    ok = g1 >= 0 && g2 >= 0;
    if (g1 >= 0) H5Gclose(g1);
    if (g2 >= 0) H5Gclose(g2);
    if (!ok) {
        WQ_LOG_ERROR("'%s': cannot create the groups %s and %s", f->path, WQ__H5_LAYERS,
                     WQ__H5_TENSORS);
        return WQ_ERR_IO;
    }
    for (int64_t i = 0; i < f->n; i++)
        if (!create_entry(f, i)) {
            char p[300];
            wq__h5_entry_path(&f->entries[i], p, sizeof p);
            WQ_LOG_ERROR("'%s': cannot create '%s' (file system full?)", f->path, p);
            return WQ_ERR_IO;
        }
    return WQ_OK;
}

/* Closes every handle (collective: each is the last reference on every rank). 0 on success. */
static int close_all(wq_h5_file *f)
{
    int bad = 0;
    for (int64_t i = 0; f->ds && i < f->n * WQ__H5_SLOTS; i++)
        if (f->ds[i] >= 0) bad |= H5Dclose(f->ds[i]) < 0;
    if (f->t_f16 >= 0) H5Tclose(f->t_f16);
    if (f->t_bf16 >= 0) H5Tclose(f->t_bf16);
    if (f->file >= 0) bad |= H5Fclose(f->file) < 0;
    if (bad) wq__h5_log_stack();
    f->file = f->t_f16 = f->t_bf16 = H5I_INVALID_HID;
    if (f->wb.fd >= 0) close(f->wb.fd);
    f->wb.fd = -1;
    return bad;
}

static void file_free(wq_h5_file *f)
{
    if (!f) return;
    wq_free(f->entries);
    wq_free(f->ds);
    wq_free(f->written);
    wq_free(f);
}

static wq_status file_alloc(wq_dist *d, const char *path, const wq_h5_entry *entries, int64_t n,
                            wq_h5_file **out)
{
    wq_h5_file *f = wq_calloc(1, sizeof *f);
    if (!f) return WQ_ERR_NOMEM;
    f->d = d;
    f->file = f->t_f16 = f->t_bf16 = H5I_INVALID_HID;
    f->wb.fd = -1;
    f->n = n;
    snprintf(f->path, sizeof f->path, "%s", path);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", path);
    size_t cnt = (size_t)(n ? n : 1);
    f->entries = wq_calloc(cnt, sizeof *f->entries);
    f->ds = wq_malloc(cnt * WQ__H5_SLOTS * sizeof *f->ds);
    f->written = wq_calloc(cnt * WCOLS, sizeof *f->written);
    if (!f->entries || !f->ds || !f->written) {
        file_free(f);
        WQ_LOG_ERROR("out of memory declaring %lld container entries", (long long)n);
        return WQ_ERR_NOMEM;
    }
    if (n) memcpy(f->entries, entries, (size_t)n * sizeof *entries);
    for (size_t i = 0; i < cnt * WQ__H5_SLOTS; i++)
        f->ds[i] = H5I_INVALID_HID;
    *out = f;
    return WQ_OK;
}

/* Collective cleanup after a failed creation: close what exists, remove path.tmp. */
static void abandon(wq_h5_file *f)
{
    close_all(f);
    if (wq_dist_rank(f->d) == 0) unlink(f->tmp);
    file_free(f);
}

wq_status wq_h5_create(wq_dist *d, const char *path, const wq_h5_entry *entries, int64_t n,
                       const char *source_config_json, const char *wquant_config_json,
                       wq_h5_file **out)
{
    wq_status st = WQ_OK;
    const int rank = wq_dist_rank(d);
    *out = NULL;
    wq__h5_quiet();
    if (!path || !path[0] || strlen(path) >= 4096 - 8) {
        WQ_LOG_ERROR("wq_h5_create: output path %s", path && path[0] ? "too long" : "missing");
        st = WQ_ERR_ARG;
    }
    if (st == WQ_OK) st = validate_entries(entries, n);
    /* every rank must issue identical metadata calls: compare the declarations with rank 0's */
    uint64_t h = st == WQ_OK
                     ? declaration_hash(path, entries, n, source_config_json, wquant_config_json)
                     : 0,
             h0 = h;
    wq_status bs = wq_dist_bcast(d, 0, &h0, sizeof h0);
    if (st == WQ_OK && bs != WQ_OK) st = bs;
    if (st == WQ_OK && h != h0) {
        WQ_LOG_ERROR("wq_h5_create('%s'): rank %d declared different entries or config texts than "
                     "rank 0; every rank must pass identical arguments",
                     path, rank);
        st = WQ_ERR_ARG;
    }
    wq_h5_file *f = NULL;
    if (st == WQ_OK && rank == 0) {
        char tmp[4104];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        st = check_destination(path, tmp);
    }
    if (st == WQ_OK) st = file_alloc(d, path, entries, n, &f);
    st = wq_dist_agree(d, st);
    if (st != WQ_OK) {
        file_free(f);
        return st;
    }

    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = H5Pcreate(H5P_FILE_CREATE);
    int ok = fapl >= 0 && fcpl >= 0 &&
             H5Pset_fapl_mpio(fapl, wq__dist_comm(d), MPI_INFO_NULL) >= 0 &&
             H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V110) >= 0 && /* large attrs */
             H5Pset_coll_metadata_write(fapl, 1) >= 0 &&
             H5Pset_alignment(fapl, ALIGN_BYTES, ALIGN_BYTES) >= 0 &&
             H5Pset_obj_track_times(fcpl, 0) >= 0;
    f->t_f16 = wq__h5_type_f16();
    f->t_bf16 = wq__h5_type_bf16();
    ok = ok && f->t_f16 >= 0 && f->t_bf16 >= 0;
    if (ok) f->file = H5Fcreate(f->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    f->wb.window = wq_io_write_behind_bytes();
    f->wb.path = f->tmp;
    if (f->file >= 0 && f->wb.window > 0) /* best effort: without it the final flush does it all */
        f->wb.fd = open(f->tmp, O_RDONLY | O_CLOEXEC);
    if (f->file < 0) {
        wq__h5_log_stack();
        WQ_LOG_ERROR("cannot create the HDF5 file '%s' (for the output '%s')", f->tmp, f->path);
        st = WQ_ERR_IO;
    }
    st = wq_dist_agree(d, st);
    if (st == WQ_OK)
        st = wq_dist_agree(d, create_objects(f, source_config_json, wquant_config_json));
    if (st != WQ_OK) {
        abandon(f);
        return st;
    }
    *out = f;
    return WQ_OK;
}

/* ---- independent data writes ------------------------------------------------------------------
 */

/* Writes a block [start, start + count) of slot `slot` of entry idx (start NULL: the whole
 * dataset). */
static wq_status write_block(wq_h5_file *f, int64_t idx, int slot, hid_t mtype, int ndim,
                             const int64_t *start, const int64_t *count, const void *data)
{
    hid_t ds = f->ds[idx * WQ__H5_SLOTS + slot];
    hid_t fs = H5I_INVALID_HID, ms = H5I_INVALID_HID;
    herr_t rc = -1;
    if (!start) {
        rc = H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    } else {
        hsize_t st[4], ct[4];
        for (int k = 0; k < ndim; k++)
            st[k] = (hsize_t)start[k], ct[k] = (hsize_t)count[k];
        fs = H5Dget_space(ds);
        ms = H5Screate_simple(ndim, ct, NULL);
        if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, ct, NULL) >= 0)
            rc = H5Dwrite(ds, mtype, ms, fs, H5P_DEFAULT, data);
    }
    if (rc < 0) wq__h5_log_stack();
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (rc >= 0 && f->wb.fd >= 0) {
        hssize_t npts = 1;
        if (start) {
            for (int k = 0; k < ndim; k++)
                npts *= (hssize_t)count[k];
        } else {
            hid_t sp = H5Dget_space(ds);
            npts = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : 0;
            if (sp >= 0) H5Sclose(sp);
        }
        WQ_TRY(wq_io_behind_wrote(&f->wb, (size_t)(npts > 0 ? npts : 0) * H5Tget_size(mtype)));
    }
    if (rc < 0) {
        const wq_h5_entry *e = &f->entries[idx];
        char p[300];
        wq__h5_entry_path(e, p, sizeof p);
        const char *sn = e->kind == WQ_H5_RAW   ? ""
                         : slot < WQ__H5_EXTRA0 ? wq__h5_slot_names[slot]
                                                : e->extra[slot - WQ__H5_EXTRA0].name;
        WQ_LOG_ERROR("'%s': writing dataset '%s%s%s' failed", f->tmp, p, sn[0] ? "/" : "", sn);
        return WQ_ERR_IO;
    }
    return WQ_OK;
}

static wq_status entry_of(wq_h5_file *f, int64_t idx, wq_h5_kind kind, const char *fn,
                          const wq_h5_entry **out)
{
    if (!f || idx < 0 || idx >= f->n) {
        WQ_LOG_ERROR("%s: entry index %lld outside 0..%lld", fn, (long long)idx,
                     f ? (long long)f->n - 1 : -1LL);
        return WQ_ERR_ARG;
    }
    *out = &f->entries[idx];
    if ((*out)->kind != kind) {
        WQ_LOG_ERROR("%s: entry '%s' is a %s", fn, (*out)->name,
                     (*out)->kind == WQ_H5_QLINEAR ? "quantized linear" : "raw tensor");
        return WQ_ERR_ARG;
    }
    return WQ_OK;
}

/* Checks the block m (rows [row0, row0 + m->rows)) against entry e: shapes and every value the
 * packing would otherwise silently truncate. */
static wq_status check_block(const wq_h5_file *f, const wq_h5_entry *e, int64_t row0,
                             const wq_qmatrix *m, const wq__h5_shapes *s)
{
#define BAD(code, ...)                                                                             \
    do {                                                                                           \
        char why_[256];                                                                            \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                                  \
        WQ_LOG_ERROR("'%s': layer '%s': %s", f->path, e->name, why_);                              \
        return code;                                                                               \
    } while (0)
    const int is_int = e->spec.dtype == WQ_QDTYPE_INT;
    if (!m || !m->codes || !m->scales || (is_int && !m->zeros))
        BAD(WQ_ERR_ARG, "matrix has no data");
    if (m->cols != e->cols || m->rows < 1 || row0 < 0 || row0 + m->rows > e->rows)
        BAD(WQ_ERR_ARG, "block of %lld x %lld at row %lld does not fit the declared %lld x %lld",
            (long long)m->rows, (long long)m->cols, (long long)row0, (long long)e->rows,
            (long long)e->cols);
    if (m->group_size != e->group_size_eff || m->ngroups != s->ngroups)
        BAD(WQ_ERR_ARG, "group size %lld (%lld groups), declared %lld (%lld groups)",
            (long long)m->group_size, (long long)m->ngroups, (long long)e->group_size_eff,
            (long long)s->ngroups);
    if (m->dtype != e->spec.dtype || m->bits != e->spec.bits)
        BAD(WQ_ERR_ARG, "matrix is %s %d-bit, declared %s %d-bit", wq_qdtype_name(m->dtype),
            m->bits, wq_qdtype_name(e->spec.dtype), e->spec.bits);
    if (e->has_gidx && row0 == 0 && !m->g_idx)
        BAD(WQ_ERR_ARG, "declared with g_idx, matrix has none");
    /* an undeclared g_idx may only be the implicit one (c / group_size): dropping any other
     * would change the dequantized weights */
    for (int64_t c = 0; !e->has_gidx && m->g_idx && c < m->cols; c++)
        if (m->g_idx[c] != c / e->group_size_eff)
            BAD(WQ_ERR_ARG,
                "matrix has a g_idx (act order) but the layer was declared without one");
    if (is_int && (row0 % s->npw != 0 || (m->rows % s->npw != 0 && row0 + m->rows != e->rows)))
        BAD(WQ_ERR_ARG,
            "row block [%lld, %lld) is not aligned to %d rows (qzeros packs along rows)",
            (long long)row0, (long long)(row0 + m->rows), s->npw);
    const int64_t n = m->rows * m->cols, nz = m->rows * s->ngroups;
    const unsigned maxc = (1u << e->spec.bits) - 1u;
    uint8_t top = 0; /* a branch-free scan first; the position only when a code is out of range */
    for (int64_t i = 0; i < n; i++)
        top = m->codes[i] > top ? m->codes[i] : top;
    for (int64_t i = 0; top > maxc && i < n; i++)
        if (m->codes[i] > maxc)
            BAD(WQ_ERR_ARG, "code %u at [%lld][%lld] exceeds %u", m->codes[i],
                (long long)(row0 + i / m->cols), (long long)(i % m->cols), maxc);
    for (int64_t i = 0; i < nz; i++) {
        float sc = m->scales[i];
        if (!isfinite(sc) ||
            (e->spec.scale_dtype == WQ_SCALE_F16 && !isfinite(wq_f16_to_f32(wq_f32_to_f16(sc)))))
            BAD(WQ_ERR_NUMERIC, "scale %g of row %lld group %lld is not finite%s", (double)sc,
                (long long)(row0 + i / s->ngroups), (long long)(i % s->ngroups),
                e->spec.scale_dtype == WQ_SCALE_F16 ? " in f16" : "");
        if (is_int) {
            float z = m->zeros[i];
            if (!(z >= 0.0f && z <= (float)maxc) || z != nearbyintf(z))
                BAD(WQ_ERR_ARG, "zero point %g of row %lld group %lld is not an integer in 0..%u",
                    (double)z, (long long)(row0 + i / s->ngroups), (long long)(i % s->ngroups),
                    maxc);
        }
    }
    if (row0 == 0 && m->g_idx)
        for (int64_t c = 0; c < m->cols; c++)
            if (m->g_idx[c] < 0 || m->g_idx[c] >= s->ngroups)
                BAD(WQ_ERR_ARG, "g_idx[%lld] = %d outside 0..%lld", (long long)c, (int)m->g_idx[c],
                    (long long)s->ngroups - 1);
#undef BAD
    return WQ_OK;
}

wq_status wq_h5_write_qlinear_rows(wq_h5_file *f, int64_t idx, int64_t row0, const wq_qmatrix *m)
{
    const wq_h5_entry *e = NULL;
    WQ_TRY(entry_of(f, idx, WQ_H5_QLINEAR, "wq_h5_write_qlinear", &e));
    const wq__h5_shapes s = wq__h5_shapes_of(e);
    WQ_TRY(check_block(f, e, row0, m, &s));
    wq_status st = WQ_OK;
    const int bits = e->spec.bits, f16 = e->spec.scale_dtype == WQ_SCALE_F16;
    const int64_t rows = m->rows, ng = s.ngroups;
    const int64_t words_in = (e->cols + s.npw - 1) / s.npw, words_rows = (rows + s.npw - 1) / s.npw;
    /* one scratch buffer, sized for the largest of the three packed blocks */
    size_t need = (size_t)(words_in * rows) * 4;
    if ((size_t)(ng * words_rows) * 4 > need) need = (size_t)(ng * words_rows) * 4;
    if ((size_t)(ng * rows) * 4 > need) need = (size_t)(ng * rows) * 4;
    void *buf = wq_malloc(need);
    if (!buf) {
        WQ_LOG_ERROR("'%s': out of memory packing layer '%s'", f->path, e->name);
        return WQ_ERR_NOMEM;
    }
    if (s.native) {
        wq_kern_pack_qweight_native(m->codes, rows, e->cols, bits, buf);
        const int64_t start[2] = {row0, 0}, count[2] = {rows, words_in};
        WQ_TRY_GOTO(write_block(f, idx, WQ__H5_QWEIGHT, H5T_NATIVE_INT32, 2, start, count, buf), st,
                    done);
    } else {
        wq_kern_pack_qweight_optimum(m->codes, rows, e->cols, bits, buf);
        const int64_t start[2] = {0, row0}, count[2] = {words_in, rows};
        WQ_TRY_GOTO(write_block(f, idx, WQ__H5_QWEIGHT, H5T_NATIVE_INT32, 2, start, count, buf), st,
                    done);
        wq_kern_pack_qzeros_optimum(m->zeros, rows, ng, bits, buf);
        const int64_t zstart[2] = {0, row0 / s.npw}, zcount[2] = {ng, words_rows};
        WQ_TRY_GOTO(write_block(f, idx, WQ__H5_QZEROS, H5T_NATIVE_INT32, 2, zstart, zcount, buf),
                    st, done);
    }
    /* scales [ngroups][rows] (transposed from the matrix's [rows][ngroups]) */
    for (int64_t o = 0; o < rows; o++)
        for (int64_t g = 0; g < ng; g++) {
            const float v = m->scales[o * ng + g];
            if (f16)
                ((uint16_t *)buf)[g * rows + o] = wq_f32_to_f16(v);
            else
                ((float *)buf)[g * rows + o] = v;
        }
    {
        const int64_t start[2] = {0, row0}, count[2] = {ng, rows};
        WQ_TRY_GOTO(write_block(f, idx, WQ__H5_SCALES, f16 ? f->t_f16 : H5T_NATIVE_FLOAT, 2, start,
                                count, buf),
                    st, done);
    }
    if (e->has_gidx && row0 == 0)
        WQ_TRY_GOTO(write_block(f, idx, WQ__H5_GIDX, H5T_NATIVE_INT32, 1, NULL, NULL, m->g_idx), st,
                    done);
    f->written[idx * WCOLS] += rows;
done:
    wq_free(buf);
    return st;
}

wq_status wq_h5_write_qlinear(wq_h5_file *f, int64_t idx, const wq_qmatrix *m)
{
    if (f && idx >= 0 && idx < f->n && m && m->rows != f->entries[idx].rows) {
        WQ_LOG_ERROR("'%s': layer '%s': matrix has %lld rows, declared %lld (use "
                     "wq_h5_write_qlinear_rows for a block)",
                     f->path, f->entries[idx].name, (long long)m->rows,
                     (long long)f->entries[idx].rows);
        return WQ_ERR_ARG;
    }
    return wq_h5_write_qlinear_rows(f, idx, 0, m);
}

wq_status wq_h5_write_raw(wq_h5_file *f, int64_t idx, const void *data)
{
    const wq_h5_entry *e = NULL;
    WQ_TRY(entry_of(f, idx, WQ_H5_RAW, "wq_h5_write_raw", &e));
    int64_t numel = 1;
    for (int k = 0; k < e->ndim; k++)
        numel *= e->shape[k];
    if (numel > 0) {
        if (!data) {
            WQ_LOG_ERROR("'%s': tensor '%s': no data", f->path, e->name);
            return WQ_ERR_ARG;
        }
        const hid_t mt = wq__h5_mem_type(e->orig_dtype, f->t_f16, f->t_bf16);
        const size_t esz = H5Tget_size(mt), bytes = (size_t)numel * esz;
        const int64_t rows = e->ndim > 0 ? e->shape[0] : 1;
        const size_t row = bytes / (size_t)(rows > 0 ? rows : 1);
        if (e->ndim < 1 || f->wb.fd < 0 || bytes <= f->wb.window || row == 0) {
            WQ_TRY(write_block(f, idx, 0, mt, 0, NULL, NULL, data));
        } else { /* slabs of whole rows of about one write-behind window */
            const int64_t step = (int64_t)(f->wb.window / row > 0 ? f->wb.window / row : 1);
            int64_t start[4] = {0}, count[4];
            for (int k = 0; k < e->ndim; k++)
                count[k] = e->shape[k];
            for (int64_t r = 0; r < rows; r += step) {
                start[0] = r;
                count[0] = rows - r < step ? rows - r : step;
                WQ_TRY(write_block(f, idx, 0, mt, e->ndim, start, count,
                                   (const char *)data + (size_t)r * row));
            }
        }
    }
    f->written[idx * WCOLS] += 1;
    return WQ_OK;
}

wq_status wq_h5_write_extra(wq_h5_file *f, int64_t idx, const char *name, const float *data)
{
    const wq_h5_entry *e = NULL;
    WQ_TRY(entry_of(f, idx, WQ_H5_QLINEAR, "wq_h5_write_extra", &e));
    int k = 0;
    while (k < e->n_extra && strcmp(e->extra[k].name, name ? name : "") != 0)
        k++;
    if (k == e->n_extra || !data) {
        WQ_LOG_ERROR("'%s': layer '%s' has no declared extra '%s'", f->path, e->name,
                     name ? name : "");
        return WQ_ERR_ARG;
    }
    for (int64_t i = 0; i < e->extra[k].len; i++)
        if (!isfinite(data[i])) {
            WQ_LOG_ERROR("'%s': layer '%s': extra '%s'[%lld] = %g is not finite", f->path, e->name,
                         name, (long long)i, (double)data[i]);
            return WQ_ERR_NUMERIC;
        }
    WQ_TRY(write_block(f, idx, WQ__H5_EXTRA0 + k, H5T_NATIVE_FLOAT, 1, NULL, NULL, data));
    f->written[idx * WCOLS + 1 + k] += 1;
    return WQ_OK;
}

/* ---- finish (collective) ----------------------------------------------------------------------
 */

/* Sums the write counters over the ranks; every rank reaches the same verdict (rank 0 logs it). */
static wq_status check_written(wq_h5_file *f)
{
    if (f->n == 0) return WQ_OK;
    WQ_TRY(wq_dist_allreduce_sum_i64(f->d, f->written, f->n * WCOLS));
    const int loud = wq_dist_rank(f->d) == 0;
    for (int64_t i = 0; i < f->n; i++) {
        const wq_h5_entry *e = &f->entries[i];
        const int64_t *w = &f->written[i * WCOLS];
        const int64_t want = e->kind == WQ_H5_QLINEAR ? e->rows : 1;
        if (w[0] != want) {
            if (loud && e->kind == WQ_H5_QLINEAR)
                WQ_LOG_ERROR("'%s': layer '%s': %lld row writes over all ranks for its %lld rows "
                             "(every row must be written exactly once)",
                             f->path, e->name, (long long)w[0], (long long)want);
            else if (loud)
                WQ_LOG_ERROR(
                    "'%s': tensor '%s' was written %lld times over all ranks (expected once)",
                    f->path, e->name, (long long)w[0]);
            return WQ_ERR_ARG;
        }
        for (int k = 0; k < e->n_extra; k++)
            if (w[1 + k] != 1) {
                if (loud)
                    WQ_LOG_ERROR(
                        "'%s': extra '%s' of layer '%s' was written %lld times, expected once",
                        f->path, e->extra[k].name, e->name, (long long)w[1 + k]);
                return WQ_ERR_ARG;
            }
    }
    return WQ_OK;
}

static int set_complete(wq_h5_file *f)
{
    int32_t one = 1;
    hid_t a = H5Aopen(f->file, "complete", H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT32, &one) >= 0;
    if (!ok) wq__h5_log_stack();
    if (a >= 0) ok = H5Aclose(a) >= 0 && ok;
    return ok;
}

wq_status wq_h5_finish(wq_h5_file *f, wq_status local)
{
    if (!f) return WQ_ERR_ARG;
    wq_dist *d = f->d;
    const int rank = wq_dist_rank(d);
    /* each agreement below runs only while everything so far succeeded, so a failing rank keeps
     * its own status and the others get WQ_ERR_PEER exactly once */
    wq_status st = wq_dist_agree(d, local);
    if (st == WQ_OK) st = check_written(f);
    if (st == WQ_OK) {
        /* data reaches the file before the flag that vouches for it */
        int ok = H5Fflush(f->file, H5F_SCOPE_GLOBAL) >= 0 && set_complete(f);
        if (!ok) WQ_LOG_ERROR("'%s': flushing and marking the file complete failed", f->tmp);
        st = wq_dist_agree(d, ok ? WQ_OK : WQ_ERR_IO);
    }
    const int close_bad = close_all(f);
    if (st == WQ_OK) {
        if (close_bad) WQ_LOG_ERROR("'%s': closing the file failed", f->tmp);
        st = wq_dist_agree(d, close_bad ? WQ_ERR_IO : WQ_OK);
    }
    if (st == WQ_OK) {
        wq_status rs = WQ_OK;
        if (rank == 0 && rename(f->tmp, f->path) != 0) {
            WQ_LOG_ERROR("cannot rename '%s' to '%s': %s", f->tmp, f->path, strerror(errno));
            rs = WQ_ERR_IO;
        }
        st = wq_dist_agree(d, rs);
    }
    if (st != WQ_OK && rank == 0) unlink(f->tmp);
    file_free(f);
    return st;
}
