/* cli_gptq.h: the calibrated, block-sequential GPTQ pass over the engine: Hessians from the
 * calibration activations (exact, reduced over the stage), rows of each linear solved across the
 * stage's ranks, quantized weights fed to the next block. Layer: cli (joins dist, algos, io_hdf5). */
#ifndef WQ_CLI_GPTQ_H
#define WQ_CLI_GPTQ_H

#include "cli/cli_ckpt.h"
#include "core/core_config.h"
#include "dist/dist_engine.h"
#include "io_hdf5/h5_container.h"

/* Entry index of the linear "model.layers.<b>.<sub>" or -1. */
typedef int64_t (*wq_entry_lookup)(void *ctx, const char *layer);

/* Collective over the world. Quantizes every configured linear of every block with GPTQ and writes
 * it to the container (one writer per linear). `total_seqs`: calibration sequences over all ranks.
 * ck (NULL: none) receives every linear and a marker per finished block; blocks it already holds
 * are not quantized again: their linears come from the checkpoint and the block runs forward once,
 * so the next block gets exactly the inputs the interrupted run computed. progress: print a line
 * per linear (on the stage's first rank). predicted_block_s: the planner's time per block,
 * logged next to the measured one (info, the stage's first rank). */
wq_status wq_cli_gptq_run(wq_dist *world, wq_engine *e, const wq_model_cfg *mc,
                          const wq_weight_source *src, const wq_config *cfg, int64_t total_seqs,
                          wq_h5_file *f, wq_ckpt *ck, const wq_h5_entry *entries,
                          wq_entry_lookup lookup, void *lookup_ctx, int progress,
                          double predicted_block_s);

#endif
