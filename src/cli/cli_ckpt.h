/* cli_ckpt.h: checkpoint/resume of `wquant quantize` (RTN, HQQ, GPTQ).
 * A checkpoint is the directory OUT.ckpt/ next to the output container:
 *   manifest       identity of the run: format, wquant version, hashes of the effective config,
 *                  the model (config.json, every tensor's header and sampled data), the
 *                  calibration text, and the OpenBLAS thread count (results depend on it)
 *   e<index>.q     one finished quantized entry: the qmatrix (codes two per byte when
 *                  bits <= 4) + extras, with a checksum
 *   block<b>.done  GPTQ: block b and its linears are final; the next block's inputs are
 *                  recomputed on resume by running the embeddings through the finished
 *                  (dequantized) blocks
 * Files are written under a temporary name, fsync'ed and renamed, so a killed run leaves only
 * whole files. The rank count is not part of the identity: a run may resume with another rank
 * count and still produce the same container. Requires a file system shared by all ranks (as
 * the parallel container does). Layer: cli (plain POSIX files; no MPI, no HDF5 here). */
#ifndef WQ_CLI_CKPT_H
#define WQ_CLI_CKPT_H

#include <stdint.h>

#include "core/core_qtypes.h"
#include "dist/dist.h"
#include "model/st_reader.h"
#include "wq_status.h"

typedef struct wq_ckpt wq_ckpt;

/* Up to this many named float extras travel with an entry (GPTQ fp8 scale). */
#define WQ_CKPT_MAX_EXTRA 2

typedef struct {
    char name[32];
    int64_t len;
    float *
        data; /* owned by whoever filled the struct (wq_ckpt_load: free with wq_ckpt_extras_free) */
} wq_ckpt_extra;

/* Collective. Computes the run's identity on rank 0 (model fingerprint reads a few rows of every
 * tensor) and opens or creates <out>.ckpt:
 *   - resume = 0: refuses (WQ_ERR_ARG) if a checkpoint exists (never silently reused or discarded);
 *     otherwise creates the directory and the manifest.
 *   - resume = 1: if none exists, starts a fresh one (a requeued job's first attempt); if one
 * exists, its manifest must match (else WQ_ERR_ARG naming what differs: config, model, calibration,
 *     version, BLAS threads); then the finished entries and blocks are read (rank 0 lists, all get
 *     the same view).
 * n_entries / n_blocks size the done maps. calib_path: calibration text hashed into the identity
 * (NULL or "" for none). *out: wq_ckpt_close. */
wq_status wq_ckpt_open(wq_dist *d, const char *out_path, int resume, const char *config_json,
                       const wq_st_model *m, const char *model_config_text, const char *calib_path,
                       int64_t n_entries, int64_t n_blocks, wq_ckpt **out);
/* Frees the handle. Accepts NULL. */
void wq_ckpt_close(wq_ckpt *ck);
/* Collective (rank 0 acts): removes the checkpoint directory after the container is complete. */
wq_status wq_ckpt_remove(wq_dist *d, wq_ckpt *ck);

/* Whether entry i / block b was finished when the run started (same answer on every rank). */
int wq_ckpt_entry_done(const wq_ckpt *ck, int64_t i);
int wq_ckpt_block_done(const wq_ckpt *ck, int64_t b);
/* Number of entries / blocks found finished at start. */
int64_t wq_ckpt_n_done(const wq_ckpt *ck, int64_t *blocks);

/* Not collective (the rank that produced the entry). Persists entry i atomically. WQ_ERR_IO names
 * the file. */
wq_status wq_ckpt_save(wq_ckpt *ck, int64_t i, const wq_qmatrix *q, const wq_ckpt_extra *extra,
                       int n_extra);
/* Not collective. Loads entry i into q (allocated here, wq_qmatrix_free) and extras (up to
 * WQ_CKPT_MAX_EXTRA; *n_extra set; free with wq_ckpt_extras_free). The stored shape must equal
 * rows x cols, group size, dtype and bits given; a mismatch or a bad checksum is WQ_ERR_FORMAT
 * naming the file. */
wq_status wq_ckpt_load(const wq_ckpt *ck, int64_t i, int64_t rows, int64_t cols, int64_t group_size,
                       wq_qdtype dtype, int bits, wq_qmatrix *q, wq_ckpt_extra *extra,
                       int *n_extra);
void wq_ckpt_extras_free(wq_ckpt_extra *extra, int n_extra);
/* Not collective: marks GPTQ block b finished (call on one rank, after every linear of the block
 * was saved and the stage agreed). */
wq_status wq_ckpt_mark_block(wq_ckpt *ck, int64_t b);

#endif
