/* cli_autoround.h: AutoRound over the distributed engine (numerics.md §8): groups of n_blocks
 * consecutive blocks tuned jointly. Layer: cli. */
#ifndef WQ_CLI_AUTOROUND_H
#define WQ_CLI_AUTOROUND_H

#include "cli/cli_gptq.h"

/* Collective over the world. Tunes and quantizes every configured linear of every block with
 * AutoRound and writes it to the container (one writer per linear). Arguments as
 * wq_cli_gptq_run. With enable_quanted_input: one pipeline stage (all ranks data-parallel;
 * WQ_ERR_ARG otherwise); without it, the engine's P stages tune their blocks concurrently. The
 * container is the same for any rank and stage count. */
wq_status wq_cli_autoround_run(wq_dist *world, wq_engine *e, const wq_model_cfg *mc,
                               const wq_weight_source *src, const wq_config *cfg,
                               int64_t total_seqs, wq_h5_file *f, const wq_h5_entry *entries,
                               wq_entry_lookup lookup, void *lookup_ctx, int progress);

#endif
