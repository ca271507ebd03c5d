/* h5_internal.h: what the container writer, reader and qconfig writer share: object paths, dataset
 * shapes of a packed linear, HDF5 element types (including the 16-bit float types) and attribute
 * helpers. Layer: io_hdf5 (private to src/io_hdf5/). Layout: docs/container.md. */
#ifndef WQ_H5_INTERNAL_H
#define WQ_H5_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "io_hdf5/h5_container.h"

/* Dataset slots of one entry: a raw tensor uses slot 0; a qlinear the fixed four, then its extras
 * in declaration order. */
enum {
    WQ__H5_QWEIGHT = 0,
    WQ__H5_QZEROS = 1,
    WQ__H5_SCALES = 2,
    WQ__H5_GIDX = 3,
    WQ__H5_EXTRA0 = 4,
    WQ__H5_SLOTS = 4 + WQ_H5_MAX_EXTRA
};
extern const char *const wq__h5_slot_names[4]; /* "qweight", "qzeros", "scales", "g_idx" */

#define WQ__H5_LAYERS "/layers"
#define WQ__H5_TENSORS "/tensors"

/* Shapes of the packed datasets of a qlinear (docs/container.md "Quantized linear"). */
typedef struct {
    int npw;            /* codes per int32 word, floor(32 / bits) */
    int native;         /* 1: INC native layout (nf4/fp4), no qzeros */
    int64_t ngroups;    /* ceil(cols / group_size_eff) */
    int64_t qweight[2]; /* optimum [ceil(cols/npw), rows]; native [rows, ceil(cols/npw)] */
    int64_t qzeros[2];  /* [ngroups, ceil(rows/npw)] (int only) */
    int64_t scales[2];  /* [ngroups, rows] */
} wq__h5_shapes;

/* Requires a validated qlinear entry (bits 1..8, group_size_eff >= 1). */
wq__h5_shapes wq__h5_shapes_of(const wq_h5_entry *e);

/* "/layers/<name>" or "/tensors/<name>". */
void wq__h5_entry_path(const wq_h5_entry *e, char *buf, size_t n);
/* Scheme attribute value: "asym", "sym", "sym_full", "sym_gptq" (int) or "table" (nf4/fp4). */
const char *wq__h5_scheme_name(const wq_h5_entry *e);
/* 1 if s is a valid extra name ([A-Za-z0-9_.-]+, < 32 chars, not one of the fixed datasets). */
int wq__h5_valid_extra_name(const char *s);
/* 1 if t is a dtype a raw tensor may have. */
int wq__h5_valid_dtype(wq_dtype t);

/* The two 16-bit float element types, as transient HDF5 float types (IEEE binary16: sign 15,
 * exponent 10..14 bias 15, mantissa 0..9; bfloat16: sign 15, exponent 7..14 bias 127, mantissa
 * 0..6), so h5dump/h5ls/h5diff show values. Caller closes (H5Tclose). Negative on failure. */
hid_t wq__h5_type_f16(void);
hid_t wq__h5_type_bf16(void);
/* Element type of a wq_dtype in the file (little-endian) and in memory; for F16/BF16 both are the
 * 16-bit float type passed in (no conversion: the bit patterns are copied). */
hid_t wq__h5_file_type(wq_dtype t, hid_t f16, hid_t bf16);
hid_t wq__h5_mem_type(wq_dtype t, hid_t f16, hid_t bf16);

/* Scalar attributes. Writers return 1 on success (collective in a parallel file). */
int wq__h5_attr_write_i64(hid_t obj, const char *name, int64_t v);
int wq__h5_attr_write_i32(hid_t obj, const char *name, int32_t v);
int wq__h5_attr_write_str(hid_t obj, const char *name, const char *s);
/* Returns 1 and sets *v if the attribute exists and converts to int64; 0 otherwise. */
int wq__h5_attr_read_i64(hid_t obj, const char *name, int64_t *v);
/* A wq_malloc'd copy of a fixed-length string attribute, or NULL if absent / not a string. */
char *wq__h5_attr_read_str(hid_t obj, const char *name);

/* At debug log level prints HDF5's error stack of the last failed call to stderr. */
void wq__h5_log_stack(void);
/* Switches HDF5's automatic error printing off (idempotent; the I/O layer logs its own messages).
 */
void wq__h5_quiet(void);

#endif /* WQ_H5_INTERNAL_H */
