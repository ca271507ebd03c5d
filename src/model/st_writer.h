/* st_writer.h: streaming safetensors writer (exporters, synthetic test models) and the sharded
 * model.safetensors.index.json writer. Tensors are declared first, then the header is written, then
 * data is streamed in declaration order; the file appears atomically (path.tmp renamed on finish).
 * Layer: model. Not collective; no MPI. */
#ifndef WQ_ST_WRITER_H
#define WQ_ST_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_half.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handle: declared tensors, the open tmp file and a byte counter. */
typedef struct wq_st_writer wq_st_writer;

/* Creates "<path>.tmp" for writing. Ownership: *out is library-owned and released by exactly one of
 * wq_st_writer_finish or wq_st_writer_abort. Errors: WQ_ERR_ARG, WQ_ERR_IO, WQ_ERR_NOMEM. */
wq_status wq_st_writer_create(const char *path, wq_st_writer **out);
/* Declares the next tensor (name copied; shape[ndim] borrowed). ndim 0..4, dims >= 0, names unique,
 * < 256 bytes, no control characters. Only before begin_data.
 * Errors: WQ_ERR_ARG (bad name/dtype/shape, duplicate, after begin_data), WQ_ERR_NOMEM. */
wq_status wq_st_writer_declare(wq_st_writer *w, const char *name, wq_dtype dtype, int ndim,
                               const int64_t *shape);
/* Writes the 8-byte length and the JSON header (data offsets in declaration order).
 * Errors: WQ_ERR_ARG (called twice), WQ_ERR_IO, WQ_ERR_NOMEM. */
wq_status wq_st_writer_begin_data(wq_st_writer *w);
/* Appends raw tensor bytes; chunks may split or span tensors but the total may not exceed the
 * declared size. Errors: WQ_ERR_ARG (before begin_data, overflow), WQ_ERR_IO. */
wq_status wq_st_writer_write(wq_st_writer *w, const void *data, size_t nbytes);
/* Checks that exactly the declared bytes were written, fsyncs, closes, renames path.tmp to path and
 * frees w (always, also on error, in which case the tmp file is removed).
 * Errors: WQ_ERR_ARG (NULL, byte count mismatch), WQ_ERR_IO. */
wq_status wq_st_writer_finish(wq_st_writer *w);
/* Closes and removes the tmp file and frees w. Accepts NULL. */
void wq_st_writer_abort(wq_st_writer *w);

/* Writes "<dir>/model.safetensors.index.json" (through a tmp file + rename):
 *   {"metadata": {"total_size": total_size}, "weight_map": {names[i]: shard_files[shard_of[i]]}}
 * names[n_tensors], shard_of[n_tensors] (each in [0, n_shards)), shard_files[n_shards] (plain file
 * names relative to dir) are borrowed. Typical use: write each shard with a wq_st_writer, then call
 * this with total_size = the sum of all tensors' data bytes (HF semantics).
 * Errors: WQ_ERR_ARG (NULL or repeated name, shard index out of range, shard name with '/'),
 * WQ_ERR_IO, WQ_ERR_NOMEM. */
wq_status wq_st_write_index(const char *dir, const char *const *names, const int *shard_of,
                            int64_t n_tensors, const char *const *shard_files, int n_shards,
                            uint64_t total_size);

#ifdef __cplusplus
}
#endif
#endif /* WQ_ST_WRITER_H */
