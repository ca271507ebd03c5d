/* h5_read.c: the serial container reader. Opens with the default (POSIX) driver, so it needs no MPI
 * and works on any rank or in a non-MPI program. Every entry's attributes and dataset shapes are
 * validated at open, so later reads only fail on I/O. Layer: io_hdf5. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "io_hdf5/h5_internal.h"
#include "kernels/kern_pack.h"
#include "kernels/kern_quant.h"
#include "wq_version.h"

struct wq_h5_reader {
    hid_t file, t_f16, t_bf16;
    char path[4096];
    int64_t n;
    wq_h5_entry *entries;        /* [n], declaration order */
    wq_h5_dsinfo *info;          /* [n][WQ__H5_SLOTS]; ndim < 0 where absent */
    const wq_h5_entry **by_name; /* [n], sorted by name */
    char *source_config, *wquant_config, *version, *algorithm;
};

/* ---- open-time validation ---------------------------------------------------------------------
 */

typedef struct {
    char **names;
    int64_t n, cap;
} name_list;

static herr_t collect(hid_t grp, const char *name, const H5L_info_t *info, void *op)
{
    (void)grp;
    (void)info;
    name_list *l = op;
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 64;
        char **grown = wq_malloc((size_t)cap * sizeof *grown);
        if (!grown) return -1;
        if (l->n) memcpy(grown, l->names, (size_t)l->n * sizeof *grown);
        wq_free(l->names);
        l->names = grown;
        l->cap = cap;
    }
    if (!(l->names[l->n] = wq_strdup(name))) return -1;
    l->n++;
    return 0;
}

static void name_list_free(name_list *l)
{
    for (int64_t i = 0; i < l->n; i++)
        wq_free(l->names[i]);
    wq_free(l->names);
    memset(l, 0, sizeof *l);
}

static int parse_qdtype(const char *s, wq_qdtype *out)
{
    for (int t = 0; t < WQ_QDTYPE_COUNT; t++)
        if (strcmp(s, wq_qdtype_name((wq_qdtype)t)) == 0) {
            *out = (wq_qdtype)t;
            return 1;
        }
    return 0;
}

/* Fills *info from an open dataset; checks its element class and size, and that the file stores
 * exactly dims x elem bytes for it, within the file: the writer allocates every dataset early,
 * contiguous and unfiltered, and callers size buffers by info->bytes (fuzz/regressions/h5:
 * an unallocated dataset stored 0 bytes while H5Dread filled its whole extent). Returns 1 on
 * success. */
static int dataset_info(hid_t ds, H5T_class_t cls, size_t elem, wq_dtype dt, wq_h5_dsinfo *info)
{
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == cls && H5Tget_size(t) == elem;
    int nd = ok ? H5Sget_simple_extent_ndims(sp) : -1;
    ok = ok && nd >= 0 && nd <= 4;
    if (ok) {
        hsize_t dims[4] = {0}, need = elem, fsize = 0;
        H5Sget_simple_extent_dims(sp, dims, NULL);
        for (int k = 0; k < nd && ok; k++)
            ok = dims[k] <= INT64_MAX && !__builtin_mul_overflow(need, dims[k], &need);
        hid_t fid = H5Iget_file_id(ds);
        ok = ok && fid >= 0 && H5Fget_filesize(fid, &fsize) >= 0 &&
             H5Dget_storage_size(ds) == need && need <= fsize;
        if (fid >= 0) H5Fclose(fid);
        info->ndim = nd;
        for (int k = 0; k < 4; k++)
            info->dims[k] = k < nd ? (int64_t)dims[k] : 0;
        info->bytes = (size_t)need;
        info->dtype = dt;
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    return ok;
}

static int dims_are(const wq_h5_dsinfo *info, int ndim, int64_t d0, int64_t d1)
{
    return info->ndim == ndim && info->dims[0] == d0 && (ndim < 2 || info->dims[1] == d1);
}

/* Opens dataset `name` in g and validates its type and 2-D/1-D shape. */
static int packed_dataset(hid_t g, const char *name, H5T_class_t cls, size_t elem, wq_dtype dt,
                          int ndim, int64_t d0, int64_t d1, wq_h5_dsinfo *info)
{
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0) return 0;
    int ok = dataset_info(ds, cls, elem, dt, info) && dims_are(info, ndim, d0, d1);
    H5Dclose(ds);
    return ok;
}

static herr_t collect_names(hid_t g, name_list *l)
{
    hsize_t idx = 0;
    return H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect, l);
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        char why_[800];                                                                            \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                                  \
        WQ_LOG_ERROR("'%s': malformed container: %s", r->path, why_);                              \
        st = WQ_ERR_FORMAT;                                                                        \
        goto done;                                                                                 \
    } while (0)

/* Reads /layers/<name> into e and info[WQ__H5_SLOTS]; *index gets the declaration index. */
static wq_status read_qlinear(wq_h5_reader *r, const char *name, wq_h5_entry *e, wq_h5_dsinfo *info,
                              int64_t *index)
{
    wq_status st = WQ_OK;
    char p[300];
    name_list members = {0};
    char *dt = NULL, *alg = NULL, *od = NULL, *sd = NULL, *pk = NULL, *dqd = NULL;
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->kind = WQ_H5_QLINEAR;
    wq__h5_entry_path(e, p, sizeof p);
    hid_t g = H5Gopen2(r->file, p, H5P_DEFAULT);
    if (g < 0) BAD("'%s' is not a group", p);
    int64_t bits = 0, gs = 0, sym = 0, in = 0, out = 0;
    dt = wq__h5_attr_read_str(g, "dtype");
    alg = wq__h5_attr_read_str(g, "algorithm");
    od = wq__h5_attr_read_str(g, "orig_dtype");
    sd = wq__h5_attr_read_str(g, "scale_dtype");
    pk = wq__h5_attr_read_str(g, "packing");
    if (!dt || !alg || !od || !sd || !pk || !wq__h5_attr_read_i64(g, "index", index) ||
        !wq__h5_attr_read_i64(g, "bits", &bits) || !wq__h5_attr_read_i64(g, "group_size", &gs) ||
        !wq__h5_attr_read_i64(g, "sym", &sym) || !wq__h5_attr_read_i64(g, "in_features", &in) ||
        !wq__h5_attr_read_i64(g, "out_features", &out))
        BAD("layer '%s' lacks a required attribute (index, algorithm, dtype, bits, group_size, "
            "sym, "
            "packing, in_features, out_features, orig_dtype, scale_dtype)",
            name);
    wq_qspec *s = &e->spec;
    *s = wq_qspec_default();
    if (!parse_qdtype(dt, &s->dtype) || s->dtype == WQ_QDTYPE_FP32)
        BAD("layer '%s': unknown dtype '%s'", name, dt);
    if (bits < 1 || bits > 8 || (s->dtype != WQ_QDTYPE_INT && bits != 4))
        BAD("layer '%s': %s with %lld bits", name, dt, (long long)bits);
    if (in < 1 || out < 1 || gs < 1 || gs > in)
        BAD("layer '%s': shape %lld x %lld with group size %lld", name, (long long)out,
            (long long)in, (long long)gs);
    if (strcmp(pk, s->dtype == WQ_QDTYPE_INT ? "optimum" : "inc_native") != 0)
        BAD("layer '%s': packing '%s' is not the one this version writes for %s", name, pk, dt);
    e->orig_dtype = wq_dtype_from_name(od);
    if (!wq__h5_valid_dtype(e->orig_dtype)) BAD("layer '%s': unknown orig_dtype '%s'", name, od);
    if (strcmp(sd, "F16") != 0 && strcmp(sd, "F32") != 0)
        BAD("layer '%s': unknown scale_dtype '%s'", name, sd);
    s->bits = (int)bits;
    s->sym = sym != 0;
    s->scale_dtype = strcmp(sd, "F16") == 0 ? WQ_SCALE_F16 : WQ_SCALE_F32;
    int64_t v;
    s->group_size = wq__h5_attr_read_i64(g, "config_group_size", &v) ? v : gs;
    if (wq__h5_attr_read_i64(g, "full_range", &v)) s->full_range = v != 0;
    if (wq__h5_attr_read_i64(g, "mse_search", &v)) s->mse_search = v != 0;
    if (wq__h5_attr_read_i64(g, "group_dim", &v)) s->group_dim = (int)v;
    if (wq__h5_attr_read_i64(g, "double_quant", &v)) s->double_quant = v != 0;
    if (wq__h5_attr_read_i64(g, "double_quant_bits", &v)) s->dq_bits = (int)v;
    if (wq__h5_attr_read_i64(g, "double_quant_sym", &v)) s->dq_sym = v != 0;
    if (wq__h5_attr_read_i64(g, "double_quant_group_size", &v)) s->dq_group_size = v;
    dqd = wq__h5_attr_read_str(g, "double_quant_dtype");
    if (dqd && !parse_qdtype(dqd, &s->dq_dtype))
        BAD("layer '%s': unknown double_quant_dtype", name);
    e->rows = out;
    e->cols = in;
    e->ndim = 2;
    e->shape[0] = out;
    e->shape[1] = in;
    e->group_size_eff = gs;
    snprintf(e->algorithm, sizeof e->algorithm, "%s", alg);

    wq__h5_shapes sh = wq__h5_shapes_of(e);
    if (!packed_dataset(g, "qweight", H5T_INTEGER, 4, WQ_DTYPE_I32, 2, sh.qweight[0], sh.qweight[1],
                        &info[WQ__H5_QWEIGHT]))
        BAD("layer '%s': qweight missing or not int32 [%lld, %lld]", name, (long long)sh.qweight[0],
            (long long)sh.qweight[1]);
    if (!sh.native && !packed_dataset(g, "qzeros", H5T_INTEGER, 4, WQ_DTYPE_I32, 2, sh.qzeros[0],
                                      sh.qzeros[1], &info[WQ__H5_QZEROS]))
        BAD("layer '%s': qzeros missing or not int32 [%lld, %lld]", name, (long long)sh.qzeros[0],
            (long long)sh.qzeros[1]);
    const int f16 = s->scale_dtype == WQ_SCALE_F16;
    if (!packed_dataset(g, "scales", H5T_FLOAT, f16 ? 2 : 4, f16 ? WQ_DTYPE_F16 : WQ_DTYPE_F32, 2,
                        sh.scales[0], sh.scales[1], &info[WQ__H5_SCALES]))
        BAD("layer '%s': scales missing or not %s [%lld, %lld]", name, sd, (long long)sh.scales[0],
            (long long)sh.scales[1]);
    /* the remaining members are g_idx and the extras */
    if (collect_names(g, &members) < 0) BAD("layer '%s': cannot list its datasets", name);
    for (int64_t i = 0; i < members.n; i++) {
        const char *m = members.names[i];
        if (strcmp(m, "qweight") == 0 || strcmp(m, "scales") == 0 ||
            (!sh.native && strcmp(m, "qzeros") == 0))
            continue;
        if (strcmp(m, "g_idx") == 0) {
            if (!packed_dataset(g, m, H5T_INTEGER, 4, WQ_DTYPE_I32, 1, in, 0, &info[WQ__H5_GIDX]))
                BAD("layer '%s': g_idx is not int32 [%lld]", name, (long long)in);
            e->has_gidx = 1;
            continue;
        }
        if (!wq__h5_valid_extra_name(m) || e->n_extra == WQ_H5_MAX_EXTRA)
            BAD("layer '%s': unexpected member '%s'", name, m);
        wq_h5_dsinfo *xi = &info[WQ__H5_EXTRA0 + e->n_extra];
        hid_t ds = H5Dopen2(g, m, H5P_DEFAULT);
        int ok = ds >= 0 && dataset_info(ds, H5T_FLOAT, 4, WQ_DTYPE_F32, xi) && xi->ndim == 1 &&
                 xi->dims[0] >= 1;
        if (ds >= 0) H5Dclose(ds);
        if (!ok) BAD("layer '%s': extra '%s' is not a 1-D float32 dataset", name, m);
        snprintf(e->extra[e->n_extra].name, sizeof e->extra[0].name, "%s", m);
        e->extra[e->n_extra].len = xi->dims[0];
        e->n_extra++;
    }
done:
    name_list_free(&members);
    wq_free(dt), wq_free(alg), wq_free(od), wq_free(sd), wq_free(pk), wq_free(dqd);
    if (g >= 0) H5Gclose(g);
    return st;
}

/* Reads /tensors/<name> into e and info[0]. */
static wq_status read_raw_entry(wq_h5_reader *r, const char *name, wq_h5_entry *e,
                                wq_h5_dsinfo *info, int64_t *index)
{
    wq_status st = WQ_OK;
    char p[300], *dt = NULL;
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->kind = WQ_H5_RAW;
    wq__h5_entry_path(e, p, sizeof p);
    hid_t ds = H5Dopen2(r->file, p, H5P_DEFAULT);
    if (ds < 0) BAD("'%s' is not a dataset", p);
    dt = wq__h5_attr_read_str(ds, "dtype");
    if (!dt || !wq__h5_attr_read_i64(ds, "index", index))
        BAD("tensor '%s' lacks its dtype or index attribute", name);
    e->orig_dtype = wq_dtype_from_name(dt);
    if (!wq__h5_valid_dtype(e->orig_dtype)) BAD("tensor '%s': unknown dtype '%s'", name, dt);
    int64_t lin = 0;
    if (wq__h5_attr_read_i64(ds, "linear", &lin)) e->linear = lin != 0;
    const wq_dtype t = e->orig_dtype;
    const H5T_class_t cls =
        t == WQ_DTYPE_F32 || t == WQ_DTYPE_F16 || t == WQ_DTYPE_BF16 || t == WQ_DTYPE_F64
            ? H5T_FLOAT
            : H5T_INTEGER;
    if (!dataset_info(ds, cls, wq_dtype_size(t), t, info))
        BAD("tensor '%s': stored type, rank (<= 4) or size does not match its dtype %s and shape",
            name, dt);
    e->ndim = info->ndim;
    for (int k = 0; k < 4; k++)
        e->shape[k] = info->dims[k];
done:
    wq_free(dt);
    if (ds >= 0) H5Dclose(ds);
    return st;
}

#undef BAD

static int cmp_entry_names(const void *a, const void *b)
{
    return strcmp((*(const wq_h5_entry *const *)a)->name, (*(const wq_h5_entry *const *)b)->name);
}

/* Reads every entry of /layers (qlinear) and /tensors (raw) into its declared index. */
static wq_status read_entries(wq_h5_reader *r, int64_t n_entries)
{
    wq_status st = WQ_OK;
    name_list names[2] = {{0}, {0}};
    const char *groups[2] = {WQ__H5_LAYERS, WQ__H5_TENSORS};
    for (int k = 0; k < 2; k++) {
        hid_t g = H5Gopen2(r->file, groups[k], H5P_DEFAULT);
        herr_t rc = g >= 0 ? collect_names(g, &names[k]) : -1;
        if (g >= 0) H5Gclose(g);
        if (rc < 0) {
            WQ_LOG_ERROR("'%s': malformed container: cannot list the group %s", r->path, groups[k]);
            st = WQ_ERR_FORMAT;
            goto done;
        }
    }
    if (names[0].n + names[1].n != n_entries) {
        WQ_LOG_ERROR("'%s': malformed container: n_entries is %lld but %s + %s hold %lld", r->path,
                     (long long)n_entries, groups[0], groups[1],
                     (long long)(names[0].n + names[1].n));
        st = WQ_ERR_FORMAT;
        goto done;
    }
    const size_t cnt = (size_t)(n_entries ? n_entries : 1);
    r->entries = wq_calloc(cnt, sizeof *r->entries);
    r->info = wq_malloc(cnt * WQ__H5_SLOTS * sizeof *r->info);
    r->by_name = wq_malloc(cnt * sizeof *r->by_name);
    char *seen = wq_calloc(cnt, 1);
    if (!r->entries || !r->info || !r->by_name || !seen) {
        wq_free(seen);
        WQ_LOG_ERROR("out of memory reading the %lld entries of '%s'", (long long)n_entries,
                     r->path);
        st = WQ_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < cnt * WQ__H5_SLOTS; i++)
        r->info[i].ndim = -1;
    for (int k = 0; k < 2 && st == WQ_OK; k++)
        for (int64_t j = 0; j < names[k].n && st == WQ_OK; j++) {
            wq_h5_entry e;
            wq_h5_dsinfo info[WQ__H5_SLOTS];
            for (int s = 0; s < WQ__H5_SLOTS; s++)
                info[s].ndim = -1;
            int64_t index = -1;
            st = k == 0 ? read_qlinear(r, names[k].names[j], &e, info, &index)
                        : read_raw_entry(r, names[k].names[j], &e, info, &index);
            if (st != WQ_OK) break;
            if (index < 0 || index >= n_entries || seen[index]) {
                WQ_LOG_ERROR("'%s': malformed container: entry '%s' has index %lld (duplicate or "
                             "outside 0..%lld)",
                             r->path, e.name, (long long)index, (long long)n_entries - 1);
                st = WQ_ERR_FORMAT;
                break;
            }
            seen[index] = 1;
            r->entries[index] = e;
            memcpy(&r->info[index * WQ__H5_SLOTS], info, sizeof info);
        }
    wq_free(seen);
    if (st != WQ_OK) goto done;
    r->n = n_entries;
    for (int64_t i = 0; i < r->n; i++)
        r->by_name[i] = &r->entries[i];
    qsort(r->by_name, (size_t)r->n, sizeof *r->by_name, cmp_entry_names);
    for (int64_t i = 1; i < r->n; i++)
        if (strcmp(r->by_name[i - 1]->name, r->by_name[i]->name) == 0) {
            WQ_LOG_ERROR("'%s': malformed container: name '%s' is both a layer and a tensor",
                         r->path, r->by_name[i]->name);
            st = WQ_ERR_FORMAT;
            goto done;
        }
done:
    name_list_free(&names[0]);
    name_list_free(&names[1]);
    return st;
}

void wq_h5_close(wq_h5_reader *r)
{
    if (!r) return;
    if (r->file >= 0) H5Fclose(r->file);
    if (r->t_f16 >= 0) H5Tclose(r->t_f16);
    if (r->t_bf16 >= 0) H5Tclose(r->t_bf16);
    wq_free(r->entries);
    wq_free(r->info);
    wq_free(r->by_name);
    wq_free(r->source_config);
    wq_free(r->wquant_config);
    wq_free(r->version);
    wq_free(r->algorithm);
    wq_free(r);
}

wq_status wq_h5_open(const char *path, wq_h5_reader **out)
{
    wq_status st = WQ_OK;
    *out = NULL;
    wq__h5_quiet();
    if (!path || access(path, R_OK) != 0) {
        WQ_LOG_ERROR("cannot read the container '%s': %s", path ? path : "(null)",
                     path ? strerror(errno) : "no path");
        return path ? WQ_ERR_IO : WQ_ERR_ARG;
    }
    if (H5Fis_hdf5(path) <= 0) {
        WQ_LOG_ERROR("'%s' is not an HDF5 file (not a wquant container, or truncated)", path);
        return WQ_ERR_FORMAT;
    }
    wq_h5_reader *r = wq_calloc(1, sizeof *r);
    if (!r) return WQ_ERR_NOMEM;
    r->file = r->t_f16 = r->t_bf16 = H5I_INVALID_HID;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->t_f16 = wq__h5_type_f16();
    r->t_bf16 = wq__h5_type_bf16();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* read-only opens take shared locks; on file systems without flock (some Lustre/NFS mounts)
     * carry on without them instead of failing */
    if (fapl >= 0 && H5Pset_file_locking(fapl, 1, 1) >= 0)
        r->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (r->file < 0 || r->t_f16 < 0 || r->t_bf16 < 0) {
        wq__h5_log_stack();
        WQ_LOG_ERROR("cannot open '%s' as HDF5 (truncated or corrupt file?)", path);
        st = WQ_ERR_FORMAT;
        goto done;
    }
    int64_t ver = -1, complete = 0, n_entries = -1;
    if (!wq__h5_attr_read_i64(r->file, "wq_format_version", &ver)) {
        WQ_LOG_ERROR("'%s' has no wq_format_version attribute: it is an HDF5 file but not a wquant "
                     "container (HINT: inspect it with h5dump -H)",
                     path);
        st = WQ_ERR_FORMAT;
        goto done;
    }
    if (ver != WQ_FORMAT_VERSION) {
        WQ_LOG_ERROR("'%s' has container format version %lld; this wquant %s reads version %d "
                     "(HINT: %s)",
                     path, (long long)ver, WQ_VERSION_STRING, WQ_FORMAT_VERSION,
                     ver > WQ_FORMAT_VERSION ? "use a newer wquant"
                                             : "re-quantize with this wquant, "
                                               "or use the version that wrote it");
        st = WQ_ERR_FORMAT;
        goto done;
    }
    if (!wq__h5_attr_read_i64(r->file, "complete", &complete) || complete != 1) {
        WQ_LOG_ERROR("'%s' is not marked complete: the run that wrote it failed or was killed "
                     "(HINT: re-run the quantization)",
                     path);
        st = WQ_ERR_FORMAT;
        goto done;
    }
    r->source_config = wq__h5_attr_read_str(r->file, "source_config");
    r->wquant_config = wq__h5_attr_read_str(r->file, "wquant_config");
    r->version = wq__h5_attr_read_str(r->file, "wquant_version");
    r->algorithm = wq__h5_attr_read_str(r->file, "algorithm");
    if (!r->source_config || !r->wquant_config || !r->version || !r->algorithm ||
        !wq__h5_attr_read_i64(r->file, "n_entries", &n_entries) || n_entries < 0) {
        WQ_LOG_ERROR("'%s': malformed container: a root attribute is missing (source_config, "
                     "wquant_config, wquant_version, algorithm, n_entries)",
                     path);
        st = WQ_ERR_FORMAT;
        goto done;
    }
    st = read_entries(r, n_entries);
done:
    if (st != WQ_OK) {
        wq_h5_close(r);
        return st;
    }
    *out = r;
    return WQ_OK;
}

/* ---- queries ----------------------------------------------------------------------------------
 */

int64_t wq_h5_count(const wq_h5_reader *r)
{
    return r->n;
}

const wq_h5_entry *wq_h5_entry_at(const wq_h5_reader *r, int64_t i)
{
    return i >= 0 && i < r->n ? &r->entries[i] : NULL;
}

const wq_h5_entry *wq_h5_find(const wq_h5_reader *r, const char *name)
{
    int64_t lo = 0, hi = r->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->by_name[mid]->name, name);
        if (c == 0) return r->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *wq_h5_source_config(const wq_h5_reader *r)
{
    return r->source_config;
}
const char *wq_h5_wquant_config(const wq_h5_reader *r)
{
    return r->wquant_config;
}
const char *wq_h5_version(const wq_h5_reader *r)
{
    return r->version;
}
const char *wq_h5_algorithm(const wq_h5_reader *r)
{
    return r->algorithm;
}

/* Index of an entry of this reader (also accepts a copy: looked up by name); -1 if unknown. */
static int64_t index_of(const wq_h5_reader *r, const wq_h5_entry *e)
{
    if (!e) return -1;
    if (e >= r->entries && e < r->entries + r->n) return e - r->entries;
    const wq_h5_entry *f = wq_h5_find(r, e->name);
    return f ? f - r->entries : -1;
}

/* Slot of a dataset name of entry i, or -1. */
static int slot_of(const wq_h5_reader *r, int64_t i, const char *dataset)
{
    const wq_h5_entry *e = &r->entries[i];
    if (e->kind == WQ_H5_RAW) return !dataset || !dataset[0] ? 0 : -1;
    if (!dataset) return -1;
    for (int k = 0; k < 4; k++)
        if (strcmp(dataset, wq__h5_slot_names[k]) == 0)
            return r->info[i * WQ__H5_SLOTS + k].ndim >= 0 ? k : -1;
    for (int k = 0; k < e->n_extra; k++)
        if (strcmp(dataset, e->extra[k].name) == 0) return WQ__H5_EXTRA0 + k;
    return -1;
}

size_t wq_h5_entry_bytes(const wq_h5_reader *r, const wq_h5_entry *e)
{
    int64_t i = index_of(r, e);
    size_t total = 0;
    for (int k = 0; i >= 0 && k < WQ__H5_SLOTS; k++)
        if (r->info[i * WQ__H5_SLOTS + k].ndim >= 0) total += r->info[i * WQ__H5_SLOTS + k].bytes;
    return total;
}

double wq_h5_entry_bits_per_weight(const wq_h5_reader *r, const wq_h5_entry *e)
{
    double numel = 1;
    if (e->kind == WQ_H5_QLINEAR)
        numel = (double)e->rows * (double)e->cols;
    else
        for (int k = 0; k < e->ndim; k++)
            numel *= (double)e->shape[k];
    return numel > 0 ? 8.0 * (double)wq_h5_entry_bytes(r, e) / numel : 0.0;
}

wq_status wq_h5_dataset_info(const wq_h5_reader *r, const wq_h5_entry *e, const char *dataset,
                             wq_h5_dsinfo *out)
{
    int64_t i = index_of(r, e);
    int s = i >= 0 ? slot_of(r, i, dataset) : -1;
    if (s < 0) { /* a query: absent datasets (qzeros of nf4, g_idx) are normal, so no error log */
        WQ_LOG_DEBUG("'%s': entry '%s' has no dataset '%s'", r->path, e ? e->name : "?",
                     dataset ? dataset : "");
        return WQ_ERR_ARG;
    }
    *out = r->info[i * WQ__H5_SLOTS + s];
    return WQ_OK;
}

/* ---- data -------------------------------------------------------------------------------------
 */

/* Reads slot s of entry i whole, with memory type mtype. */
static wq_status read_slot(const wq_h5_reader *r, int64_t i, int s, hid_t mtype, void *dst)
{
    const wq_h5_entry *e = &r->entries[i];
    char p[400];
    wq__h5_entry_path(e, p, sizeof p);
    if (e->kind == WQ_H5_QLINEAR) {
        size_t len = strlen(p);
        snprintf(p + len, sizeof p - len, "/%s",
                 s < WQ__H5_EXTRA0 ? wq__h5_slot_names[s] : e->extra[s - WQ__H5_EXTRA0].name);
    }
    const wq_h5_dsinfo *info = &r->info[i * WQ__H5_SLOTS + s];
    int64_t npts = 1;
    for (int k = 0; k < info->ndim; k++)
        npts *= info->dims[k];
    if (npts == 0) return WQ_OK;
    hid_t ds = H5Dopen2(r->file, p, H5P_DEFAULT);
    herr_t rc = ds >= 0 ? H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) : -1;
    if (rc < 0) wq__h5_log_stack();
    if (ds >= 0) H5Dclose(ds);
    if (rc < 0) {
        WQ_LOG_ERROR("'%s': reading dataset '%s' failed", r->path, p);
        return WQ_ERR_IO;
    }
    return WQ_OK;
}

/* Memory type that reads slot s in its stored representation. */
static hid_t stored_mem_type(const wq_h5_reader *r, int64_t i, int s)
{
    const wq_h5_entry *e = &r->entries[i];
    if (e->kind == WQ_H5_RAW) return wq__h5_mem_type(e->orig_dtype, r->t_f16, r->t_bf16);
    if (s == WQ__H5_SCALES)
        return e->spec.scale_dtype == WQ_SCALE_F16 ? r->t_f16 : H5T_NATIVE_FLOAT;
    return s >= WQ__H5_EXTRA0 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32;
}

static wq_status lookup(const wq_h5_reader *r, const wq_h5_entry *e, wq_h5_kind kind,
                        const char *fn, int64_t *i)
{
    *i = index_of(r, e);
    if (*i < 0 || r->entries[*i].kind != kind) {
        WQ_LOG_ERROR("%s('%s'): '%s' is not a %s of this container", fn, r->path, e ? e->name : "?",
                     kind == WQ_H5_QLINEAR ? "quantized linear" : "raw tensor");
        return WQ_ERR_ARG;
    }
    return WQ_OK;
}

wq_status wq_h5_read_dataset(const wq_h5_reader *r, const wq_h5_entry *e, const char *dataset,
                             void *dst)
{
    int64_t i = index_of(r, e);
    int s = i >= 0 ? slot_of(r, i, dataset) : -1;
    if (s < 0) {
        WQ_LOG_ERROR("'%s': entry '%s' has no dataset '%s'", r->path, e ? e->name : "?",
                     dataset ? dataset : "");
        return WQ_ERR_ARG;
    }
    return read_slot(r, i, s, stored_mem_type(r, i, s), dst);
}

wq_status wq_h5_read_qmatrix(const wq_h5_reader *r, const wq_h5_entry *e, wq_qmatrix *out)
{
    wq_status st = WQ_OK;
    int64_t i;
    memset(out, 0, sizeof *out);
    WQ_TRY(lookup(r, e, WQ_H5_QLINEAR, "wq_h5_read_qmatrix", &i));
    e = &r->entries[i];
    const wq__h5_shapes s = wq__h5_shapes_of(e);
    const int f16 = e->spec.scale_dtype == WQ_SCALE_F16;
    WQ_TRY(wq_qmatrix_init(out, e->rows, e->cols, e->group_size_eff, e->spec.dtype, e->spec.bits));
    size_t need = (size_t)(s.qweight[0] * s.qweight[1]) * 4;
    if ((size_t)(s.qzeros[0] * s.qzeros[1]) * 4 > need)
        need = (size_t)(s.qzeros[0] * s.qzeros[1]) * 4;
    if ((size_t)(s.scales[0] * s.scales[1]) * 4 > need)
        need = (size_t)(s.scales[0] * s.scales[1]) * 4;
    void *buf = wq_malloc(need);
    WQ_CHECK_GOTO(buf, st, WQ_ERR_NOMEM, done, "out of memory reading layer '%s' of '%s'", e->name,
                  r->path);
    WQ_TRY_GOTO(read_slot(r, i, WQ__H5_QWEIGHT, H5T_NATIVE_INT32, buf), st, done);
    if (s.native)
        wq_kern_unpack_qweight_native(buf, e->rows, e->cols, e->spec.bits, out->codes);
    else
        wq_kern_unpack_qweight_optimum(buf, e->rows, e->cols, e->spec.bits, out->codes);
    if (!s.native) {
        WQ_TRY_GOTO(read_slot(r, i, WQ__H5_QZEROS, H5T_NATIVE_INT32, buf), st, done);
        wq_kern_unpack_qzeros_optimum(buf, e->rows, s.ngroups, e->spec.bits, out->zeros);
    }
    WQ_TRY_GOTO(read_slot(r, i, WQ__H5_SCALES, f16 ? r->t_f16 : H5T_NATIVE_FLOAT, buf), st, done);
    for (int64_t g = 0; g < s.ngroups; g++)
        for (int64_t o = 0; o < e->rows; o++)
            out->scales[o * s.ngroups + g] =
                f16 ? wq_f16_to_f32(((const uint16_t *)buf)[g * e->rows + o])
                    : ((const float *)buf)[g * e->rows + o];
    if (e->has_gidx) {
        WQ_TRY_GOTO(wq_qmatrix_alloc_gidx(out), st, done);
        WQ_TRY_GOTO(read_slot(r, i, WQ__H5_GIDX, H5T_NATIVE_INT32, out->g_idx), st, done);
        for (int64_t c = 0; c < e->cols; c++)
            WQ_CHECK_GOTO(out->g_idx[c] >= 0 && out->g_idx[c] < s.ngroups, st, WQ_ERR_FORMAT, done,
                          "'%s': layer '%s': g_idx[%lld] = %d outside 0..%lld", r->path, e->name,
                          (long long)c, (int)out->g_idx[c], (long long)s.ngroups - 1);
    }
done:
    wq_free(buf);
    if (st != WQ_OK) wq_qmatrix_free(out);
    return st;
}

wq_status wq_h5_dequant(const wq_h5_reader *r, const wq_h5_entry *e, float *W)
{
    wq_qmatrix m;
    WQ_TRY(wq_h5_read_qmatrix(r, e, &m));
    wq_kern_dequant_matrix(&m, W);
    wq_qmatrix_free(&m);
    return WQ_OK;
}

wq_status wq_h5_read_raw(const wq_h5_reader *r, const wq_h5_entry *e, void *dst)
{
    int64_t i;
    WQ_TRY(lookup(r, e, WQ_H5_RAW, "wq_h5_read_raw", &i));
    return read_slot(r, i, 0, stored_mem_type(r, i, 0), dst);
}

wq_status wq_h5_read_raw_f32(const wq_h5_reader *r, const wq_h5_entry *e, float *dst)
{
    int64_t i;
    WQ_TRY(lookup(r, e, WQ_H5_RAW, "wq_h5_read_raw_f32", &i));
    e = &r->entries[i];
    const wq_dtype t = e->orig_dtype;
    if (t != WQ_DTYPE_F16 && t != WQ_DTYPE_BF16 && t != WQ_DTYPE_F64)
        return read_slot(r, i, 0, H5T_NATIVE_FLOAT, dst); /* f32, or integers by value */
    int64_t numel = 1;
    for (int k = 0; k < e->ndim; k++)
        numel *= e->shape[k];
    if (numel == 0) return WQ_OK;
    /* 16/64-bit floats: read the stored bits, convert with core_half's exact rules */
    void *tmp = wq_malloc((size_t)numel * wq_dtype_size(t));
    if (!tmp) {
        WQ_LOG_ERROR("out of memory reading tensor '%s' of '%s'", e->name, r->path);
        return WQ_ERR_NOMEM;
    }
    wq_status st = read_slot(r, i, 0, stored_mem_type(r, i, 0), tmp);
    if (st == WQ_OK) wq_convert_to_f32(t, tmp, dst, (size_t)numel);
    wq_free(tmp);
    return st;
}

wq_status wq_h5_read_extra(const wq_h5_reader *r, const wq_h5_entry *e, const char *name,
                           float *dst)
{
    int64_t i;
    WQ_TRY(lookup(r, e, WQ_H5_QLINEAR, "wq_h5_read_extra", &i));
    int s = name ? slot_of(r, i, name) : -1;
    if (s < WQ__H5_EXTRA0) {
        WQ_LOG_ERROR("'%s': layer '%s' has no extra '%s'", r->path, r->entries[i].name,
                     name ? name : "");
        return WQ_ERR_ARG;
    }
    return read_slot(r, i, s, H5T_NATIVE_FLOAT, dst);
}
