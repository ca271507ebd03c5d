/* st_reader.h: read-only access to safetensors checkpoints (one file, or shards listed by
 * model.safetensors.index.json). Headers are parsed and fully validated at open; tensor data is
 * read on demand with pread, one tensor (or row range) at a time, never the whole model.
 * Layer: model. Not collective; no MPI. */
#ifndef WQ_ST_READER_H
#define WQ_ST_READER_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_half.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One tensor's metadata. Owned by its wq_st_model; valid until wq_st_close. */
typedef struct {
    char name[256];
    wq_dtype dtype;
    int ndim;         /* 0..4; a scalar has ndim 0 and numel 1 */
    int64_t shape[4]; /* unused dims are 0 */
    int64_t numel;
    size_t nbytes;   /* numel * wq_dtype_size(dtype) */
    int file_index;  /* shard index inside the model (0 for a single file) */
    uint64_t offset; /* absolute byte offset of the data in that shard */
} wq_st_tensor;

/* Opaque handle: open file descriptors plus the sorted tensor table. */
typedef struct wq_st_model wq_st_model;

/* Opens <dir>/model.safetensors, or, if that does not exist, <dir>/model.safetensors.index.json and
 * the shards it names. Every header and the index are validated before returning.
 * Ownership: *out is library-owned; release with wq_st_close. *out is NULL on failure.
 * Errors: WQ_ERR_ARG (NULL args), WQ_ERR_IO (missing/unreadable file), WQ_ERR_FORMAT (corrupt
 * header or index; the log names file and tensor/key), WQ_ERR_NOMEM. */
wq_status wq_st_open(const char *dir, wq_st_model **out);
/* Opens one .safetensors file. wq_st_dir() is then the directory containing it.
 * Same ownership and errors as wq_st_open. */
wq_status wq_st_open_file(const char *path, wq_st_model **out);
/* Closes all shard descriptors and frees the handle. Accepts NULL. */
void wq_st_close(wq_st_model *m);

/* Number of tensors (0 for NULL). */
int64_t wq_st_count(const wq_st_model *m);
/* i-th tensor in ascending strcmp order of names; NULL if i is out of range. Borrowed pointer. */
const wq_st_tensor *wq_st_at(const wq_st_model *m, int64_t i);
/* Binary search by exact name; NULL if absent. Borrowed pointer. */
const wq_st_tensor *wq_st_find(const wq_st_model *m, const char *name);

/* Reads the whole tensor converted to f32. dst: [t->numel] floats, caller-owned.
 * Supports F32/F16/BF16/F64. Errors: WQ_ERR_ARG, WQ_ERR_FORMAT (not a float dtype), WQ_ERR_IO
 * (short read), WQ_ERR_NOMEM (conversion scratch). Thread-safe for distinct dst buffers (pread). */
wq_status wq_st_read_f32(const wq_st_model *m, const wq_st_tensor *t, float *dst);
/* Reads rows [row0, row0 + nrows) of a tensor viewed as (shape[0], numel / shape[0]); a 1-D tensor
 * has one element per row. dst: [nrows * cols] floats, caller-owned. nrows == 0 is a no-op.
 * Errors: as wq_st_read_f32, plus WQ_ERR_ARG for a range outside the tensor or a 0-D tensor. */
wq_status wq_st_read_rows_f32(const wq_st_model *m, const wq_st_tensor *t, int64_t row0,
                              int64_t nrows, float *dst);
/* Reads the stored bytes unchanged. dst: [t->nbytes] bytes, caller-owned.
 * Errors: WQ_ERR_ARG, WQ_ERR_IO. */
wq_status wq_st_read_raw(const wq_st_model *m, const wq_st_tensor *t, void *dst);

/* Directory the model was opened from (borrowed; "" for NULL). */
const char *wq_st_dir(const wq_st_model *m);

#ifdef __cplusplus
}
#endif
#endif /* WQ_ST_READER_H */
