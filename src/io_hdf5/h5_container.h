/* h5_container.h: the wquant container: one parallel-HDF5 file holding every quantized linear
 * (packed codes, scales, zeros, g_idx, algorithm extras + attributes) and every unquantized tensor,
 * written collectively; the serial reader; and the INC-style qconfig.json written beside it.
 * The layout is specified, with its version (WQ_FORMAT_VERSION, wq_version.h), in
 * docs/container.md. Layer: io_hdf5 (the only layer that sees HDF5; hsize_t never crosses this
 * header).
 *
 * Errors: every function returns a wq_status and logs one message naming the file path and, for
 * data errors, the entry and dataset. HDF5's automatic error printing is switched off; at debug log
 * level the HDF5 error stack is printed after a failed HDF5 call.
 * Ownership: inputs are borrowed; the writer copies the entry declarations it is given; reader
 * results point into the reader and live until wq_h5_close. Not thread-safe (HDF5 is not). */
#ifndef WQ_H5_CONTAINER_H
#define WQ_H5_CONTAINER_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_config.h"
#include "core/core_half.h"
#include "core/core_qtypes.h"
#include "dist/dist.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Persisted through the object type (group = qlinear, dataset = raw): append only. */
typedef enum { WQ_H5_RAW = 0, WQ_H5_QLINEAR = 1 } wq_h5_kind;

/* Algorithm extras per quantized linear: small named 1-D float32 arrays (e.g. AWQ input scales). */
#define WQ_H5_MAX_EXTRA 4
typedef struct {
    char name[32]; /* [A-Za-z0-9_.-]+, not qweight/qzeros/scales/g_idx */
    int64_t len;   /* >= 1 elements */
} wq_h5_extra;

/* One container entry. The writer reads the fields marked (w); the reader fills every field.
 * Zero-initialise (calloc / {0}) and set what applies: new fields keep 0 as "absent". */
typedef struct {
    char name[256];      /* (w) qlinear: layer name "model.layers.0.self_attn.q_proj" (stored as
                            /layers/<name>); raw: tensor name "model.norm.weight" (stored as
                            /tensors/<name>). Exact, dots kept; no '/', not "." */
    wq_h5_kind kind;     /* (w) */
    int64_t rows, cols;  /* (w) qlinear: out, in features */
    int ndim;            /* (w) raw: 0..4 (0 = scalar); qlinear: the reader sets 2 */
    int64_t shape[4];    /* (w) raw: original tensor shape; qlinear: the reader sets {rows, cols} */
    wq_dtype orig_dtype; /* (w) dtype of the source tensor; raw tensors are stored in it */
    wq_qspec spec;       /* (w) qlinear: the resolved spec (dtype, bits, sym, scale_dtype, ...) */
    int64_t group_size_eff; /* (w) qlinear: effective group size, 1..cols */
    int has_gidx;           /* (w) qlinear: a g_idx dataset [cols] is stored (act_order) */
    char algorithm[16];     /* (w) qlinear: "rtn", "gptq", ... */
    int linear;             /* (w) raw: the weight of a linear layer kept unquantized (lm_head);
                               listed as {"dtype": "fp32"} in qconfig.json */
    int n_extra;            /* (w) qlinear: number of extras, 0..WQ_H5_MAX_EXTRA */
    wq_h5_extra extra[WQ_H5_MAX_EXTRA]; /* (w) the reader lists them sorted by name */
} wq_h5_entry;

/* Stored shape and size of one dataset. */
typedef struct {
    int ndim;
    int64_t dims[4];
    size_t bytes;   /* allocated bytes in the file */
    wq_dtype dtype; /* element type: I32 (qweight, qzeros, g_idx), F32 or F16 (scales, extras), or
                       the raw tensor's dtype */
} wq_h5_dsinfo;

/* ---- writer (collective create/finish, independent writes) ----------------------------------- */

typedef struct wq_h5_file wq_h5_file;

/* Collective; every rank passes identical arguments (checked: a hash of the declarations and texts
 * is compared with rank 0's). Validates the declarations, checks that the destination directory is
 * writable, creates `path`.tmp with the MPI-IO driver and in it every group, dataset (contiguous,
 * allocated early, no filters) and attribute; each dataset stays open until wq_h5_finish so the
 * independent writes below never open or close objects. Entries are copied. The config texts may
 * be NULL (stored as ""). On any failure every rank returns an error (the failing rank its cause,
 * the others WQ_ERR_PEER), *out is NULL and nothing is left on disk.
 * WQ_ERR_ARG (bad declaration, named), WQ_ERR_IO (message names the path), WQ_ERR_NOMEM. */
wq_status wq_h5_create(wq_dist *d, const char *path, const wq_h5_entry *entries, int64_t n,
                       const char *source_config_json, const char *wquant_config_json,
                       wq_h5_file **out);

/* Independent: packs m (the whole matrix, m->rows == rows) and writes qweight, qzeros, scales and
 * g_idx of qlinear entry idx. m must match the declaration (shape, group size, dtype, bits, zeros
 * for int, g_idx if has_gidx; without has_gidx a g_idx must be the implicit c / group_size); codes
 * < 2^bits, int zeros integers in [0, 2^bits), g_idx in [0, ngroups), scales finite (also after
 * rounding to f16 when scale_dtype is F16). WQ_ERR_ARG (mismatch, named), WQ_ERR_NUMERIC
 * (non-finite scale), WQ_ERR_IO, WQ_ERR_NOMEM. */
wq_status wq_h5_write_qlinear(wq_h5_file *f, int64_t idx, const wq_qmatrix *m);
/* Independent: writes output rows [row0, row0 + m->rows) of qlinear entry idx (the design's row
 * split across the ranks of a stage). m holds just those rows (m->rows >= 1). For int dtypes qzeros
 * packs along rows, so row0 must be a multiple of npw = floor(32/bits) and the block must end at a
 * multiple of npw or at the last row. g_idx is written by the block with row0 == 0 (others may
 * pass NULL). Every row must be written exactly once over all ranks (checked by wq_h5_finish).
 * Errors as wq_h5_write_qlinear. */
wq_status wq_h5_write_qlinear_rows(wq_h5_file *f, int64_t idx, int64_t row0, const wq_qmatrix *m);
/* Independent: writes raw entry idx: numel elements of orig_dtype, little-endian, C order
 * (F16/BF16 as their 16-bit patterns). WQ_ERR_ARG, WQ_ERR_IO. */
wq_status wq_h5_write_raw(wq_h5_file *f, int64_t idx, const void *data);
/* Independent: writes the declared extra `name` (len floats) of qlinear entry idx.
 * WQ_ERR_ARG (undeclared name), WQ_ERR_NUMERIC (non-finite), WQ_ERR_IO. */
wq_status wq_h5_write_extra(wq_h5_file *f, int64_t idx, const char *name, const float *data);

/* Collective: agrees on `local`; then checks that every entry, row and extra was written exactly
 * once over all ranks (WQ_ERR_ARG naming the first gap), flushes, sets complete=1 last, closes, and
 * rank 0 renames path.tmp -> path (atomically replacing an older file). On failure it closes and
 * removes path.tmp; a file already at path is left untouched. Frees f (f must not be NULL).
 * Returns the agreed status (WQ_ERR_PEER on ranks that did not fail themselves). */
wq_status wq_h5_finish(wq_h5_file *f, wq_status local);

/* ---- qconfig.json --------------------------------------------------------------------------- */

/* Not collective (rank 0, after wq_h5_finish): writes qconfig.json (INC form, numerics.md §10) at
 * wq_h5_qconfig_path(container_path), atomically (temp file + rename). One key per linear, in entry
 * order, "('<layer>', 'Linear')": quantized linears {"<algorithm>": {<wq_config_layer_json>}},
 * kept linears {"dtype": "fp32"}. Kept linears are raw entries with `linear` set, or raw 2-D
 * "<layer>.weight" tensors whose resolved spec is fp32 (lm_head). Indent 4, like Python's
 * json.dump(indent=4). WQ_ERR_IO (names the path), WQ_ERR_NOMEM. */
wq_status wq_h5_write_qconfig(const char *container_path, const wq_config *cfg,
                              const wq_h5_entry *entries, int64_t n);
/* The qconfig.json path for a container: "qconfig.json" in the container's directory (INC's
 * output-directory convention: one container per directory). Truncates to n bytes. */
void wq_h5_qconfig_path(const char *container_path, char *buf, size_t n);

/* ---- reader (serial; needs no MPI; any rank or a non-MPI program) ---------------------------- */

typedef struct wq_h5_reader wq_h5_reader;

/* Opens a container read-only and validates every entry's attributes and dataset shapes. Errors
 * name the path (and entry): unreadable file (WQ_ERR_IO); not HDF5 or truncated, no or another
 * wq_format_version (with a HINT), not marked complete, malformed entry (WQ_ERR_FORMAT);
 * WQ_ERR_NOMEM. *out is heap-owned: free with wq_h5_close. */
wq_status wq_h5_open(const char *path, wq_h5_reader **out);
/* Accepts NULL. */
void wq_h5_close(wq_h5_reader *r);

/* Entries in declaration order; entry_at returns NULL outside [0, count). find is O(log n) and
 * returns NULL for an unknown name. Pointers live until wq_h5_close. */
int64_t wq_h5_count(const wq_h5_reader *r);
const wq_h5_entry *wq_h5_entry_at(const wq_h5_reader *r, int64_t i);
const wq_h5_entry *wq_h5_find(const wq_h5_reader *r, const char *name);

/* Root attributes (never NULL; "" when empty). algorithm is the common algorithm of the quantized
 * linears, "mixed", or "none". */
const char *wq_h5_source_config(const wq_h5_reader *r);
const char *wq_h5_wquant_config(const wq_h5_reader *r);
const char *wq_h5_version(const wq_h5_reader *r);
const char *wq_h5_algorithm(const wq_h5_reader *r);

/* Bytes stored for an entry (all its datasets, extras included). */
size_t wq_h5_entry_bytes(const wq_h5_reader *r, const wq_h5_entry *e);
/* Stored bits per weight: 8 * entry_bytes / (rows * cols) for a qlinear (codes, scales, zeros,
 * g_idx and extras all count), 8 * bytes / numel for a raw tensor (0 when empty). */
double wq_h5_entry_bits_per_weight(const wq_h5_reader *r, const wq_h5_entry *e);
/* Shape, bytes and element type of one dataset of an entry: "qweight", "qzeros", "scales",
 * "g_idx" or an extra's name for a qlinear; NULL or "" for a raw tensor.
 * WQ_ERR_ARG if the entry has no such dataset. */
wq_status wq_h5_dataset_info(const wq_h5_reader *r, const wq_h5_entry *e, const char *dataset,
                             wq_h5_dsinfo *out);

/* Reads and unpacks a qlinear into *out (allocated here; free with wq_qmatrix_free; zeroed on
 * error): codes [rows][cols], scales [rows][ngroups] (f16-stored scales widened exactly), zeros
 * (int), g_idx (when stored). WQ_ERR_ARG (not a qlinear), WQ_ERR_FORMAT, WQ_ERR_IO, WQ_ERR_NOMEM.
 */
wq_status wq_h5_read_qmatrix(const wq_h5_reader *r, const wq_h5_entry *e, wq_qmatrix *out);
/* Dequantizes a qlinear into W[rows][cols] (caller-sized), as wq_kern_dequant_matrix. */
wq_status wq_h5_dequant(const wq_h5_reader *r, const wq_h5_entry *e, float *W);
/* Reads a dataset of an entry in its stored representation into dst (caller-sized to
 * wq_h5_dataset_info().bytes): int32 words for qweight/qzeros/g_idx, float32 or IEEE-half bit
 * patterns for scales, float32 for extras, the original bytes for a raw tensor (dataset NULL).
 * For exporters that copy packed data. WQ_ERR_ARG, WQ_ERR_IO. */
wq_status wq_h5_read_dataset(const wq_h5_reader *r, const wq_h5_entry *e, const char *dataset,
                             void *dst);
/* Reads a raw tensor's original bytes (numel * wq_dtype_size(orig_dtype)). */
wq_status wq_h5_read_raw(const wq_h5_reader *r, const wq_h5_entry *e, void *dst);
/* Reads a raw tensor as f32 (numel floats): F16/BF16/F64 converted exactly as core_half does,
 * integer dtypes converted by value. */
wq_status wq_h5_read_raw_f32(const wq_h5_reader *r, const wq_h5_entry *e, float *dst);
/* Reads extra `name` of a qlinear (extra.len floats). WQ_ERR_ARG if there is no such extra. */
wq_status wq_h5_read_extra(const wq_h5_reader *r, const wq_h5_entry *e, const char *name,
                           float *dst);

#ifdef __cplusplus
}
#endif
#endif /* WQ_H5_CONTAINER_H */
