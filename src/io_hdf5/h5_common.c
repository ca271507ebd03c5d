/* h5_common.c: helpers shared by the container writer and reader: shapes, paths, element types,
 * scalar attributes, HDF5 error reporting. Layer: io_hdf5. */
#include <stdio.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "io_hdf5/h5_internal.h"
#include "kernels/kern_pack.h"

const char *const wq__h5_slot_names[4] = {"qweight", "qzeros", "scales", "g_idx"};

wq__h5_shapes wq__h5_shapes_of(const wq_h5_entry *e)
{
    wq__h5_shapes s;
    s.npw = wq_kern_pack_per_word(e->spec.bits);
    s.native = e->spec.dtype != WQ_QDTYPE_INT;
    s.ngroups = (e->cols + e->group_size_eff - 1) / e->group_size_eff;
    const int64_t words_in = (e->cols + s.npw - 1) / s.npw;
    if (s.native) {
        s.qweight[0] = e->rows;
        s.qweight[1] = words_in;
    } else {
        s.qweight[0] = words_in;
        s.qweight[1] = e->rows;
    }
    s.qzeros[0] = s.ngroups;
    s.qzeros[1] = (e->rows + s.npw - 1) / s.npw;
    s.scales[0] = s.ngroups;
    s.scales[1] = e->rows;
    return s;
}

void wq__h5_entry_path(const wq_h5_entry *e, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", e->kind == WQ_H5_QLINEAR ? WQ__H5_LAYERS : WQ__H5_TENSORS, e->name);
}

const char *wq__h5_scheme_name(const wq_h5_entry *e)
{
    const wq_qspec *s = &e->spec;
    if (s->dtype != WQ_QDTYPE_INT) return "table";
    if (!s->sym) return "asym";
    if (s->full_range || s->bits == 1)
        return "sym_full"; /* kern_quant.h: 1-bit sym is full range */
    if (strcmp(e->algorithm, "gptq") == 0) return "sym_gptq";
    return "sym";
}

int wq__h5_valid_extra_name(const char *s)
{
    size_t len = strnlen(s, 32);
    if (len == 0 || len >= 32) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
    for (int k = 0; k < 4; k++)
        if (strcmp(s, wq__h5_slot_names[k]) == 0) return 0;
    return 1;
}

int wq__h5_valid_dtype(wq_dtype t)
{
    return (unsigned)t < WQ_DTYPE_COUNT && wq_dtype_size(t) > 0;
}

/* A 16-bit float type derived from IEEE f32 by redefining its bit fields. */
static hid_t float16_type(size_t epos, size_t esize, size_t msize, size_t ebias)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return t;
    if (H5Tset_fields(t, 15, epos, esize, 0, msize) < 0 || H5Tset_precision(t, 16) < 0 ||
        H5Tset_offset(t, 0) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, ebias) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

hid_t wq__h5_type_f16(void)
{
    return float16_type(10, 5, 10, 15);
}
hid_t wq__h5_type_bf16(void)
{
    return float16_type(7, 8, 7, 127);
}

hid_t wq__h5_file_type(wq_dtype t, hid_t f16, hid_t bf16)
{
    switch (t) {
    case WQ_DTYPE_F32:
        return H5T_IEEE_F32LE;
    case WQ_DTYPE_F64:
        return H5T_IEEE_F64LE;
    case WQ_DTYPE_F16:
        return f16;
    case WQ_DTYPE_BF16:
        return bf16;
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

hid_t wq__h5_mem_type(wq_dtype t, hid_t f16, hid_t bf16)
{
    switch (t) {
    case WQ_DTYPE_F32:
        return H5T_NATIVE_FLOAT;
    case WQ_DTYPE_F64:
        return H5T_NATIVE_DOUBLE;
    case WQ_DTYPE_F16:
        return f16; /* little-endian host assumed (core_half.h) */
    case WQ_DTYPE_BF16:
        return bf16;
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

static int attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp >= 0 ? H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, mtype, val) >= 0;
    if (!ok) wq__h5_log_stack();
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return ok;
}

int wq__h5_attr_write_i64(hid_t obj, const char *name, int64_t v)
{
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

int wq__h5_attr_write_i32(hid_t obj, const char *name, int32_t v)
{
    return attr_write(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v);
}

int wq__h5_attr_write_str(hid_t obj, const char *name, const char *s)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return 0;
    /* fixed length incl. the NUL (h5dump prints it as a plain string); never size 0 */
    int ok = H5Tset_size(t, strlen(s) + 1) >= 0 && H5Tset_strpad(t, H5T_STR_NULLTERM) >= 0 &&
             H5Tset_cset(t, H5T_CSET_UTF8) >= 0 && attr_write(obj, name, t, t, s);
    H5Tclose(t);
    return ok;
}

int wq__h5_attr_read_i64(hid_t obj, const char *name, int64_t *v)
{
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return 0;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int ok = t >= 0 && H5Tget_class(t) == H5T_INTEGER && sp >= 0 &&
             H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return ok;
}

char *wq__h5_attr_read_str(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a);
    char *s = NULL;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) == 0) {
        size_t sz = H5Tget_size(t);
        hid_t mt = H5Tcopy(t); /* same size and character set: no conversion */
        s = wq_calloc(sz + 1, 1);
        if (s && (mt < 0 || H5Aread(a, mt, s) < 0)) {
            wq_free(s);
            s = NULL;
        }
        if (mt >= 0) H5Tclose(mt);
    }
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return s;
}

void wq__h5_log_stack(void)
{
    if (wq_log_get_level() >= WQ_LOG_LVL_DEBUG) H5Eprint2(H5E_DEFAULT, stderr);
}

void wq__h5_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
