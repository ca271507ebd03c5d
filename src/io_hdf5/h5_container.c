/* h5_container.c: collective container writer, serial reader, qconfig.json. Layer: io_hdf5.
 * Layout (docs/container.md): root attributes; /layers/<name>/{qweight,qzeros,scales,g_idx} with
 * attributes per quantized linear; /tensors/<name> for tensors kept in original precision. */
#include "io_hdf5/h5_container.h"

#include <cJSON.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "dist/dist_comm.h"
#include "kernels/kern_pack.h"
#include "kernels/kern_quant.h"
#include "wq_version.h"

struct wq_h5_file {
    wq_dist *d;
    hid_t file;
    char path[4096], tmp[4200];
    const wq_h5_entry *entries; /* borrowed from the caller for the file's lifetime */
    int64_t n;
};

struct wq_h5_reader {
    hid_t file;
    char path[4096];
    wq_h5_entry *entries;
    int64_t n;
    char *source_config, *wquant_config, *version;
};

static const char *scheme_name(const wq_qspec *s)
{
    if (s->dtype != WQ_QDTYPE_INT) return "table";
    if (!s->sym) return "asym";
    return s->full_range || s->bits == 1 ? "sym_full" : "sym";
}

/* ---- small HDF5 helpers ---------------------------------------------------------------------- */

static int attr_write(hid_t obj, const char *name, hid_t type, const void *val)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, type, val) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return ok;
}
static int attr_int(hid_t obj, const char *name, int64_t v)
{
    return attr_write(obj, name, H5T_NATIVE_INT64, &v);
}
static int attr_str(hid_t obj, const char *name, const char *s)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    int ok = attr_write(obj, name, t, s);
    H5Tclose(t);
    return ok;
}
static int attr_read_int(hid_t obj, const char *name, int64_t *v)
{
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    int ok = a >= 0 && H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
    if (a >= 0) H5Aclose(a);
    return ok;
}
/* Returns a wq_malloc'd string or NULL. */
static char *attr_read_str(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a);
    char *s = NULL;
    if (H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) {
        size_t sz = H5Tget_size(t);
        s = wq_calloc(sz + 1, 1);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz);
        if (s && H5Aread(a, mt, s) < 0) {
            wq_free(s);
            s = NULL;
        }
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
    return s;
}

static hid_t dset_create(hid_t loc, const char *name, hid_t type, int ndim, const int64_t *dims)
{
    hsize_t hd[4];
    for (int i = 0; i < ndim; i++) hd[i] = (hsize_t)dims[i];
    hid_t sp = ndim ? H5Screate_simple(ndim, hd, NULL) : H5Screate(H5S_SCALAR);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_layout(pl, H5D_CONTIGUOUS);
    H5Pset_alloc_time(pl, H5D_ALLOC_TIME_EARLY);
    H5Pset_fill_time(pl, H5D_FILL_TIME_NEVER);
    hid_t ds = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    H5Pclose(pl);
    H5Sclose(sp);
    return ds;
}

static hid_t storage_type(wq_dtype t)
{
    switch (t) {
    case WQ_DTYPE_F32:
        return H5T_IEEE_F32LE;
    case WQ_DTYPE_F64:
        return H5T_IEEE_F64LE;
    case WQ_DTYPE_F16:
    case WQ_DTYPE_BF16:
        return H5T_STD_U16LE; /* bits; the "dtype" attribute says which */
    case WQ_DTYPE_I32:
        return H5T_STD_I32LE;
    case WQ_DTYPE_I64:
        return H5T_STD_I64LE;
    case WQ_DTYPE_U8:
        return H5T_STD_U8LE;
    case WQ_DTYPE_I8:
        return H5T_STD_I8LE;
    default:
        return H5I_INVALID_HID;
    }
}
static hid_t memory_type(wq_dtype t)
{
    switch (t) {
    case WQ_DTYPE_F32:
        return H5T_NATIVE_FLOAT;
    case WQ_DTYPE_F64:
        return H5T_NATIVE_DOUBLE;
    case WQ_DTYPE_F16:
    case WQ_DTYPE_BF16:
        return H5T_NATIVE_UINT16;
    case WQ_DTYPE_I32:
        return H5T_NATIVE_INT32;
    case WQ_DTYPE_I64:
        return H5T_NATIVE_INT64;
    case WQ_DTYPE_U8:
        return H5T_NATIVE_UINT8;
    case WQ_DTYPE_I8:
        return H5T_NATIVE_INT8;
    default:
        return H5I_INVALID_HID;
    }
}

/* Shapes of the packed datasets of a qlinear entry. */
typedef struct {
    int64_t qweight[2], qzeros[2], scales[2], ngroups;
    int native;
} qshapes;

static qshapes shapes_of(const wq_h5_entry *e)
{
    qshapes s;
    int npw = wq_kern_pack_per_word(e->spec.bits);
    s.ngroups = (e->cols + e->group_size_eff - 1) / e->group_size_eff;
    s.native = e->spec.dtype != WQ_QDTYPE_INT;
    if (s.native) {
        s.qweight[0] = e->rows;
        s.qweight[1] = (e->cols + npw - 1) / npw;
    } else {
        s.qweight[0] = (e->cols + npw - 1) / npw;
        s.qweight[1] = e->rows;
    }
    s.qzeros[0] = s.ngroups;
    s.qzeros[1] = (e->rows + npw - 1) / npw;
    s.scales[0] = s.ngroups;
    s.scales[1] = e->rows;
    return s;
}

static void name_to_path(const char *prefix, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "/%s/%s", prefix, name);
}

/* Creates the objects of one entry (collective: every rank runs this identically). */
static int create_entry(hid_t file, const wq_h5_entry *e)
{
    char p[400];
    int ok = 1;
    if (strchr(e->name, '/') || !e->name[0]) return 0;
    if (e->kind == WQ_H5_RAW) {
        name_to_path("tensors", e->name, p, sizeof p);
        hid_t t = storage_type(e->orig_dtype);
        if (t == H5I_INVALID_HID) return 0;
        hid_t ds = dset_create(file, p, t, e->ndim, e->shape);
        if (ds < 0) return 0;
        ok = attr_str(ds, "dtype", wq_dtype_name(e->orig_dtype));
        H5Dclose(ds);
        return ok;
    }
    name_to_path("layers", e->name, p, sizeof p);
    hid_t g = H5Gcreate2(file, p, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return 0;
    qshapes s = shapes_of(e);
    hid_t ds = dset_create(g, "qweight", H5T_STD_I32LE, 2, s.qweight);
    ok = ok && ds >= 0;
    if (ds >= 0) H5Dclose(ds);
    if (!s.native) {
        ds = dset_create(g, "qzeros", H5T_STD_I32LE, 2, s.qzeros);
        ok = ok && ds >= 0;
        if (ds >= 0) H5Dclose(ds);
    }
    ds = dset_create(g, "scales", e->spec.scale_dtype == WQ_SCALE_F16 ? H5T_STD_U16LE : H5T_IEEE_F32LE,
                     2, s.scales);
    ok = ok && ds >= 0;
    if (ds >= 0) H5Dclose(ds);
    if (e->has_gidx) {
        ds = dset_create(g, "g_idx", H5T_STD_I32LE, 1, &e->cols);
        ok = ok && ds >= 0;
        if (ds >= 0) H5Dclose(ds);
    }
    ok = ok && attr_str(g, "algorithm", e->algorithm) && attr_str(g, "dtype", wq_qdtype_name(e->spec.dtype)) &&
         attr_int(g, "bits", e->spec.bits) && attr_int(g, "group_size", e->group_size_eff) &&
         attr_int(g, "config_group_size", e->spec.group_size) && attr_int(g, "sym", e->spec.sym) &&
         attr_int(g, "full_range", e->spec.full_range) && attr_str(g, "scheme", scheme_name(&e->spec)) &&
         attr_str(g, "packing", s.native ? "inc_native" : "optimum") &&
         attr_int(g, "in_features", e->cols) && attr_int(g, "out_features", e->rows) &&
         attr_str(g, "orig_dtype", wq_dtype_name(e->orig_dtype)) &&
         attr_str(g, "scale_dtype", e->spec.scale_dtype == WQ_SCALE_F16 ? "F16" : "F32") &&
         attr_int(g, "double_quant", e->spec.double_quant) && attr_int(g, "mse_search", e->spec.mse_search);
    H5Gclose(g);
    return ok;
}

wq_status wq_h5_create(wq_dist *d, const char *path, const wq_h5_entry *entries, int64_t n,
                       const char *source_config_json, const char *wquant_config_json,
                       wq_h5_file **out)
{
    wq_status st = WQ_OK;
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    wq_h5_file *f = wq_calloc(1, sizeof *f);
    if (!f) return wq_dist_agree(d, WQ_ERR_NOMEM);
    f->d = d;
    f->file = H5I_INVALID_HID;
    f->entries = entries;
    f->n = n;
    snprintf(f->path, sizeof f->path, "%s", path);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", path);
    /* rank 0 checks the destination first so the message is about the user's path */
    if (wq_dist_rank(d) == 0) {
        FILE *probe = fopen(f->tmp, "wb");
        if (!probe) {
            WQ_LOG_ERROR("cannot write the output '%s': %s", path, strerror(errno));
            st = WQ_ERR_IO;
        } else {
            fclose(probe);
            unlink(f->tmp);
        }
    }
    st = wq_dist_agree(d, st);
    if (st != WQ_OK) {
        wq_free(f);
        return st;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, wq__dist_comm(d), MPI_INFO_NULL);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V110);
    f->file = H5Fcreate(f->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    int ok = f->file >= 0;
    if (!ok) WQ_LOG_ERROR("cannot create the HDF5 file '%s'", f->tmp);
    if (ok) {
        int32_t ver = WQ_FORMAT_VERSION;
        ok = attr_write(f->file, "wq_format_version", H5T_NATIVE_INT32, &ver) &&
             attr_str(f->file, "wquant_version", WQ_VERSION_STRING) &&
             attr_str(f->file, "source_config", source_config_json ? source_config_json : "") &&
             attr_str(f->file, "wquant_config", wquant_config_json ? wquant_config_json : "");
        hid_t g1 = H5Gcreate2(f->file, "/layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t g2 = H5Gcreate2(f->file, "/tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok = ok && g1 >= 0 && g2 >= 0;
        if (g1 >= 0) H5Gclose(g1);
        if (g2 >= 0) H5Gclose(g2);
        for (int64_t i = 0; ok && i < n; i++) {
            ok = create_entry(f->file, &entries[i]);
            if (!ok) WQ_LOG_ERROR("%s: cannot create the datasets of '%s'", f->tmp, entries[i].name);
        }
    }
    st = wq_dist_agree(d, ok ? WQ_OK : WQ_ERR_IO);
    if (st != WQ_OK) {
        if (f->file >= 0) H5Fclose(f->file);
        if (wq_dist_rank(d) == 0) unlink(f->tmp);
        wq_free(f);
        return st;
    }
    *out = f;
    return WQ_OK;
}

static wq_status write_dset(hid_t file, const char *tmp, const char *path, const char *ds_name,
                            hid_t memtype, const void *data)
{
    char p[600];
    snprintf(p, sizeof p, "%s%s%s", path, ds_name ? "/" : "", ds_name ? ds_name : "");
    hid_t ds = H5Dopen2(file, p, H5P_DEFAULT);
    herr_t rc = ds >= 0 ? H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : -1;
    if (ds >= 0) H5Dclose(ds);
    if (rc < 0) {
        WQ_LOG_ERROR("%s: writing dataset '%s' failed", tmp, p);
        return WQ_ERR_IO;
    }
    return WQ_OK;
}

wq_status wq_h5_write_qlinear(wq_h5_file *f, int64_t idx, const wq_qmatrix *m)
{
    const wq_h5_entry *e = &f->entries[idx];
    if (e->kind != WQ_H5_QLINEAR || m->rows != e->rows || m->cols != e->cols ||
        m->group_size != e->group_size_eff || m->bits != e->spec.bits || m->dtype != e->spec.dtype ||
        (e->has_gidx && !m->g_idx)) {
        WQ_LOG_ERROR("%s: quantized matrix does not match the declared entry '%s'", f->tmp, e->name);
        return WQ_ERR_ARG;
    }
    wq_status st = WQ_OK;
    qshapes s = shapes_of(e);
    char p[400];
    name_to_path("layers", e->name, p, sizeof p);
    int32_t *qw = wq_malloc((size_t)(s.qweight[0] * s.qweight[1]) * 4);
    int32_t *qz = wq_malloc((size_t)(s.qzeros[0] * s.qzeros[1]) * 4);
    void *sc = wq_malloc((size_t)(s.scales[0] * s.scales[1]) * 4);
    if (!qw || !qz || !sc) {
        st = WQ_ERR_NOMEM;
        goto done;
    }
    if (s.native)
        wq_kern_pack_qweight_native(m->codes, m->rows, m->cols, m->bits, qw);
    else
        wq_kern_pack_qweight_optimum(m->codes, m->rows, m->cols, m->bits, qw);
    WQ_TRY_GOTO(write_dset(f->file, f->tmp, p, "qweight", H5T_NATIVE_INT32, qw), st, done);
    if (!s.native) {
        wq_kern_pack_qzeros_optimum(m->zeros, m->rows, s.ngroups, m->bits, qz);
        WQ_TRY_GOTO(write_dset(f->file, f->tmp, p, "qzeros", H5T_NATIVE_INT32, qz), st, done);
    }
    /* scales are stored transposed, [ngroups][out], like the optimum/GPTQ layout */
    for (int64_t o = 0; o < m->rows; o++)
        for (int64_t g = 0; g < s.ngroups; g++) {
            float v = m->scales[o * s.ngroups + g];
            if (e->spec.scale_dtype == WQ_SCALE_F16)
                ((uint16_t *)sc)[g * m->rows + o] = wq_f32_to_f16(v);
            else
                ((float *)sc)[g * m->rows + o] = v;
        }
    WQ_TRY_GOTO(write_dset(f->file, f->tmp, p, "scales",
                           e->spec.scale_dtype == WQ_SCALE_F16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_FLOAT, sc),
                st, done);
    if (e->has_gidx) WQ_TRY_GOTO(write_dset(f->file, f->tmp, p, "g_idx", H5T_NATIVE_INT32, m->g_idx), st, done);
done:
    wq_free(qw);
    wq_free(qz);
    wq_free(sc);
    return st;
}

wq_status wq_h5_write_raw(wq_h5_file *f, int64_t idx, const void *data)
{
    const wq_h5_entry *e = &f->entries[idx];
    char p[400];
    if (e->kind != WQ_H5_RAW) return WQ_ERR_ARG;
    name_to_path("tensors", e->name, p, sizeof p);
    return write_dset(f->file, f->tmp, p, NULL, memory_type(e->orig_dtype), data);
}

wq_status wq_h5_finish(wq_h5_file *f, wq_status local)
{
    wq_dist *d = f->d;
    wq_status st = wq_dist_agree(d, local);
    if (st == WQ_OK) {
        /* complete is created last, collectively, only when every rank succeeded */
        int ok = attr_int(f->file, "complete", 1);
        st = wq_dist_agree(d, ok ? WQ_OK : WQ_ERR_IO);
    }
    herr_t rc = H5Fclose(f->file);
    if (st == WQ_OK && rc < 0) WQ_LOG_ERROR("%s: closing the file failed", f->tmp);
    st = wq_dist_agree(d, st == WQ_OK && rc < 0 ? WQ_ERR_IO : st);
    if (wq_dist_rank(d) == 0) {
        if (st == WQ_OK) {
            if (rename(f->tmp, f->path) != 0) {
                WQ_LOG_ERROR("cannot rename '%s' to '%s': %s", f->tmp, f->path, strerror(errno));
                unlink(f->tmp);
                st = WQ_ERR_IO;
            }
        } else {
            unlink(f->tmp);
        }
    }
    st = wq_dist_agree(d, st);
    wq_free(f);
    return st;
}

/* ---- qconfig.json ---------------------------------------------------------------------------- */

void wq_h5_qconfig_path(const char *container_path, char *buf, size_t n)
{
    const char *slash = strrchr(container_path, '/');
    if (slash)
        snprintf(buf, n, "%.*s/qconfig.json", (int)(slash - container_path), container_path);
    else
        snprintf(buf, n, "qconfig.json");
}

wq_status wq_h5_write_qconfig(const char *container_path, const wq_config *cfg,
                              const wq_h5_entry *entries, int64_t n)
{
    wq_status st = WQ_OK;
    cJSON *root = cJSON_CreateObject();
    char path[4200], tmp[4300];
    wq_h5_qconfig_path(container_path, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    for (int64_t i = 0; i < n && root; i++) {
        const wq_h5_entry *e = &entries[i];
        char key[400], layer[256];
        size_t len = strlen(e->name);
        if (e->kind == WQ_H5_QLINEAR) {
            snprintf(layer, sizeof layer, "%s", e->name);
        } else if (e->ndim == 2 && len > 7 && strcmp(e->name + len - 7, ".weight") == 0 &&
                   (strstr(e->name, "_proj") || strstr(e->name, "lm_head"))) {
            snprintf(layer, sizeof layer, "%.*s", (int)(len - 7), e->name); /* kept linear */
        } else {
            continue;
        }
        snprintf(key, sizeof key, "('%s', 'Linear')", layer);
        char *js = e->kind == WQ_H5_QLINEAR ? wq_config_layer_json(cfg, &e->spec) : NULL;
        cJSON *params = js ? cJSON_Parse(js) : NULL;
        wq_free(js);
        if (e->kind == WQ_H5_QLINEAR) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToObject(o, wq_algo_name(cfg->algo), params ? params : cJSON_CreateObject());
            cJSON_AddItemToObject(root, key, o);
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "dtype", "fp32");
            cJSON_AddItemToObject(root, key, o);
        }
    }
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    FILE *fp = text ? fopen(tmp, "wb") : NULL;
    if (!text) {
        st = WQ_ERR_NOMEM;
    } else if (!fp) {
        WQ_LOG_ERROR("cannot write '%s': %s", tmp, strerror(errno));
        st = WQ_ERR_IO;
    } else {
        int ok = fputs(text, fp) >= 0 && fputc('\n', fp) != EOF;
        ok = (fclose(fp) == 0) && ok;
        if (!ok || rename(tmp, path) != 0) {
            WQ_LOG_ERROR("cannot write '%s'", path);
            unlink(tmp);
            st = WQ_ERR_IO;
        }
    }
    if (text) cJSON_free(text);
    return st;
}

/* ---- reader ---------------------------------------------------------------------------------- */

static int parse_qdtype(const char *s, wq_qdtype *out)
{
    for (int t = 0; t < WQ_QDTYPE_COUNT; t++)
        if (strcmp(s, wq_qdtype_name((wq_qdtype)t)) == 0) {
            *out = (wq_qdtype)t;
            return 1;
        }
    return 0;
}

typedef struct {
    wq_h5_reader *r;
    int kind;
    int failed;
} iter_ctx;

static herr_t visit(hid_t grp, const char *name, const H5L_info_t *info, void *op)
{
    (void)info;
    iter_ctx *c = op;
    wq_h5_reader *r = c->r;
    wq_h5_entry *grown = wq_malloc((size_t)(r->n + 1) * sizeof *grown);
    if (!grown) return -1;
    if (r->n) memcpy(grown, r->entries, (size_t)r->n * sizeof *grown);
    wq_free(r->entries);
    r->entries = grown;
    wq_h5_entry *e = &r->entries[r->n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->kind = c->kind;
    if (c->kind == WQ_H5_RAW) {
        hid_t ds = H5Dopen2(grp, name, H5P_DEFAULT);
        if (ds < 0) return -1;
        char *dt = attr_read_str(ds, "dtype");
        e->orig_dtype = dt ? wq_dtype_from_name(dt) : WQ_DTYPE_COUNT;
        wq_free(dt);
        hid_t sp = H5Dget_space(ds);
        hsize_t dims[8];
        int nd = H5Sget_simple_extent_ndims(sp);
        if (nd < 0 || nd > 4 || e->orig_dtype == WQ_DTYPE_COUNT) {
            H5Sclose(sp);
            H5Dclose(ds);
            c->failed = 1;
            return -1;
        }
        H5Sget_simple_extent_dims(sp, dims, NULL);
        e->ndim = nd;
        for (int k = 0; k < nd; k++) e->shape[k] = (int64_t)dims[k];
        H5Sclose(sp);
        H5Dclose(ds);
    } else {
        hid_t g = H5Gopen2(grp, name, H5P_DEFAULT);
        if (g < 0) return -1;
        int64_t bits = 0, gs = 0, cgs = 0, sym = 0, fr = 0, in = 0, out = 0, dq = 0, mse = 0;
        char *dt = attr_read_str(g, "dtype"), *alg = attr_read_str(g, "algorithm");
        char *od = attr_read_str(g, "orig_dtype"), *sd = attr_read_str(g, "scale_dtype");
        int ok = dt && alg && od && sd && attr_read_int(g, "bits", &bits) &&
                 attr_read_int(g, "group_size", &gs) && attr_read_int(g, "sym", &sym) &&
                 attr_read_int(g, "in_features", &in) && attr_read_int(g, "out_features", &out);
        attr_read_int(g, "config_group_size", &cgs);
        attr_read_int(g, "full_range", &fr);
        attr_read_int(g, "double_quant", &dq);
        attr_read_int(g, "mse_search", &mse);
        e->spec = wq_qspec_default();
        ok = ok && parse_qdtype(dt, &e->spec.dtype) && bits >= 1 && bits <= 8 && gs >= 1 && in >= 1 &&
             out >= 1 && gs <= in;
        if (ok) {
            e->spec.bits = (int)bits;
            e->spec.group_size = cgs ? cgs : gs;
            e->spec.sym = sym != 0;
            e->spec.full_range = fr != 0;
            e->spec.double_quant = dq != 0;
            e->spec.mse_search = mse != 0;
            e->spec.scale_dtype = strcmp(sd, "F16") == 0 ? WQ_SCALE_F16 : WQ_SCALE_F32;
            e->group_size_eff = gs;
            e->rows = out;
            e->cols = in;
            e->ndim = 2;
            e->shape[0] = out;
            e->shape[1] = in;
            e->orig_dtype = wq_dtype_from_name(od);
            e->has_gidx = H5Lexists(g, "g_idx", H5P_DEFAULT) > 0;
            snprintf(e->algorithm, sizeof e->algorithm, "%s", alg);
        }
        wq_free(dt), wq_free(alg), wq_free(od), wq_free(sd);
        H5Gclose(g);
        if (!ok) {
            c->failed = 1;
            return -1;
        }
    }
    r->n++;
    return 0;
}

void wq_h5_close(wq_h5_reader *r)
{
    if (!r) return;
    if (r->file >= 0) H5Fclose(r->file);
    wq_free(r->entries);
    wq_free(r->source_config);
    wq_free(r->wquant_config);
    wq_free(r->version);
    wq_free(r);
}

wq_status wq_h5_open(const char *path, wq_h5_reader **out)
{
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (access(path, R_OK) != 0) {
        WQ_LOG_ERROR("cannot read container '%s': %s", path, strerror(errno));
        return WQ_ERR_IO;
    }
    if (H5Fis_hdf5(path) <= 0) {
        WQ_LOG_ERROR("'%s' is not an HDF5 file (truncated or not a wquant container)", path);
        return WQ_ERR_FORMAT;
    }
    wq_h5_reader *r = wq_calloc(1, sizeof *r);
    if (!r) return WQ_ERR_NOMEM;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->file < 0) {
        WQ_LOG_ERROR("cannot open HDF5 file '%s' (truncated or corrupt?)", path);
        wq_h5_close(r);
        return WQ_ERR_FORMAT;
    }
    int64_t ver = -1, complete = 0;
    if (!attr_read_int(r->file, "wq_format_version", &ver)) {
        WQ_LOG_ERROR("'%s' has no wq_format_version attribute: not a wquant container", path);
        wq_h5_close(r);
        return WQ_ERR_FORMAT;
    }
    if (ver != WQ_FORMAT_VERSION) {
        WQ_LOG_ERROR("'%s' has container format version %lld; this wquant reads version %d "
                     "(HINT: use the wquant version that wrote it, or re-quantize)",
                     path, (long long)ver, WQ_FORMAT_VERSION);
        wq_h5_close(r);
        return WQ_ERR_FORMAT;
    }
    if (!attr_read_int(r->file, "complete", &complete) || complete != 1) {
        WQ_LOG_ERROR("'%s' is not marked complete: the run that wrote it did not finish", path);
        wq_h5_close(r);
        return WQ_ERR_FORMAT;
    }
    r->source_config = attr_read_str(r->file, "source_config");
    r->wquant_config = attr_read_str(r->file, "wquant_config");
    r->version = attr_read_str(r->file, "wquant_version");
    iter_ctx c = {r, WQ_H5_QLINEAR, 0};
    hsize_t idx = 0;
    herr_t rc = H5Literate_by_name(r->file, "/layers", H5_INDEX_NAME, H5_ITER_INC, &idx, visit, &c,
                                   H5P_DEFAULT);
    c.kind = WQ_H5_RAW;
    idx = 0;
    if (rc >= 0)
        rc = H5Literate_by_name(r->file, "/tensors", H5_INDEX_NAME, H5_ITER_INC, &idx, visit, &c,
                                H5P_DEFAULT);
    if (rc < 0 || c.failed || !r->source_config || !r->wquant_config) {
        WQ_LOG_ERROR("'%s': malformed container (entry %lld has missing or invalid attributes)", path,
                     (long long)r->n);
        wq_h5_close(r);
        return WQ_ERR_FORMAT;
    }
    *out = r;
    return WQ_OK;
}

int64_t wq_h5_count(const wq_h5_reader *r) { return r->n; }
const wq_h5_entry *wq_h5_entry_at(const wq_h5_reader *r, int64_t i)
{
    return i >= 0 && i < r->n ? &r->entries[i] : NULL;
}
const wq_h5_entry *wq_h5_find(const wq_h5_reader *r, const char *name)
{
    for (int64_t i = 0; i < r->n; i++)
        if (strcmp(r->entries[i].name, name) == 0) return &r->entries[i];
    return NULL;
}
const char *wq_h5_source_config(const wq_h5_reader *r) { return r->source_config; }
const char *wq_h5_wquant_config(const wq_h5_reader *r) { return r->wquant_config; }
const char *wq_h5_version(const wq_h5_reader *r) { return r->version ? r->version : ""; }

/* Reads a whole dataset, checking its element count. */
static wq_status read_dset(const wq_h5_reader *r, const char *p, hid_t memtype, void *dst,
                           int64_t expect)
{
    hid_t ds = H5Dopen2(r->file, p, H5P_DEFAULT);
    if (ds < 0) {
        WQ_LOG_ERROR("%s: dataset '%s' is missing", r->path, p);
        return WQ_ERR_FORMAT;
    }
    hid_t sp = H5Dget_space(ds);
    int64_t npts = (int64_t)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    herr_t rc = npts == expect ? H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) : -1;
    H5Dclose(ds);
    if (rc < 0) {
        WQ_LOG_ERROR("%s: reading dataset '%s' failed (%lld elements, expected %lld)", r->path, p,
                     (long long)npts, (long long)expect);
        return WQ_ERR_FORMAT;
    }
    return WQ_OK;
}

wq_status wq_h5_read_qmatrix(const wq_h5_reader *r, const wq_h5_entry *e, wq_qmatrix *out)
{
    wq_status st = WQ_OK;
    if (e->kind != WQ_H5_QLINEAR) return WQ_ERR_ARG;
    qshapes s = shapes_of(e);
    char base[400], p[500];
    name_to_path("layers", e->name, base, sizeof base);
    WQ_TRY(wq_qmatrix_init(out, e->rows, e->cols, e->group_size_eff, e->spec.dtype, e->spec.bits));
    int32_t *buf = wq_malloc((size_t)(s.qweight[0] * s.qweight[1] + s.qzeros[0] * s.qzeros[1]) * 4 + 4);
    void *sc = wq_malloc((size_t)(s.scales[0] * s.scales[1]) * 4);
    WQ_CHECK_GOTO(buf && sc, st, WQ_ERR_NOMEM, done, "out of memory reading '%s'", e->name);
    snprintf(p, sizeof p, "%s/qweight", base);
    WQ_TRY_GOTO(read_dset(r, p, H5T_NATIVE_INT32, buf, s.qweight[0] * s.qweight[1]), st, done);
    if (s.native)
        wq_kern_unpack_qweight_native(buf, e->rows, e->cols, e->spec.bits, out->codes);
    else
        wq_kern_unpack_qweight_optimum(buf, e->rows, e->cols, e->spec.bits, out->codes);
    if (!s.native) {
        snprintf(p, sizeof p, "%s/qzeros", base);
        WQ_TRY_GOTO(read_dset(r, p, H5T_NATIVE_INT32, buf, s.qzeros[0] * s.qzeros[1]), st, done);
        wq_kern_unpack_qzeros_optimum(buf, e->rows, s.ngroups, e->spec.bits, out->zeros);
    }
    snprintf(p, sizeof p, "%s/scales", base);
    int f16 = e->spec.scale_dtype == WQ_SCALE_F16;
    WQ_TRY_GOTO(read_dset(r, p, f16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_FLOAT, sc, s.scales[0] * s.scales[1]),
                st, done);
    for (int64_t g = 0; g < s.ngroups; g++)
        for (int64_t o = 0; o < e->rows; o++)
            out->scales[o * s.ngroups + g] =
                f16 ? wq_f16_to_f32(((uint16_t *)sc)[g * e->rows + o]) : ((float *)sc)[g * e->rows + o];
    if (e->has_gidx) {
        WQ_TRY_GOTO(wq_qmatrix_alloc_gidx(out), st, done);
        snprintf(p, sizeof p, "%s/g_idx", base);
        WQ_TRY_GOTO(read_dset(r, p, H5T_NATIVE_INT32, out->g_idx, e->cols), st, done);
        for (int64_t c = 0; c < e->cols; c++)
            WQ_CHECK_GOTO(out->g_idx[c] >= 0 && out->g_idx[c] < s.ngroups, st, WQ_ERR_FORMAT, done,
                          "%s: g_idx[%lld] of '%s' out of range", r->path, (long long)c, e->name);
    }
done:
    wq_free(buf);
    wq_free(sc);
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

wq_status wq_h5_read_raw_f32(const wq_h5_reader *r, const wq_h5_entry *e, float *dst)
{
    if (e->kind != WQ_H5_RAW) return WQ_ERR_ARG;
    int64_t numel = 1;
    for (int k = 0; k < e->ndim; k++) numel *= e->shape[k];
    char p[400];
    name_to_path("tensors", e->name, p, sizeof p);
    size_t esz = wq_dtype_size(e->orig_dtype);
    if (e->orig_dtype == WQ_DTYPE_F32) return read_dset(r, p, H5T_NATIVE_FLOAT, dst, numel);
    void *tmp = wq_malloc((size_t)numel * esz + 1);
    if (!tmp) return WQ_ERR_NOMEM;
    wq_status st = read_dset(r, p, memory_type(e->orig_dtype), tmp, numel);
    if (st == WQ_OK) wq_convert_to_f32(e->orig_dtype, tmp, dst, (size_t)numel);
    wq_free(tmp);
    return st;
}

size_t wq_h5_entry_bytes(const wq_h5_reader *r, const wq_h5_entry *e)
{
    char base[400];
    if (e->kind == WQ_H5_RAW) {
        name_to_path("tensors", e->name, base, sizeof base);
        hid_t ds = H5Dopen2(r->file, base, H5P_DEFAULT);
        size_t b = ds >= 0 ? (size_t)H5Dget_storage_size(ds) : 0;
        if (ds >= 0) H5Dclose(ds);
        return b;
    }
    static const char *const names[] = {"qweight", "qzeros", "scales", "g_idx"};
    size_t total = 0;
    name_to_path("layers", e->name, base, sizeof base);
    for (int i = 0; i < 4; i++) {
        char p[500];
        snprintf(p, sizeof p, "%s/%s", base, names[i]);
        if (H5Lexists(r->file, p, H5P_DEFAULT) <= 0) continue;
        hid_t ds = H5Dopen2(r->file, p, H5P_DEFAULT);
        if (ds >= 0) {
            total += (size_t)H5Dget_storage_size(ds);
            H5Dclose(ds);
        }
    }
    return total;
}
