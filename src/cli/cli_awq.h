/* cli_awq.h: the calibrated AWQ pass over the engine (numerics.md 5). Layer: cli. */
#ifndef WQ_CLI_AWQ_H
#define WQ_CLI_AWQ_H

#include "cli/cli_gptq.h"

/* Collective over the world. For every block: activation statistics, scale search per layer tuple,
 * clip search per layer, absorption into the RMSNorms (q/k/v, gate/up) or an input scale stored
 * with the layer (o_proj, down_proj: no absorbable predecessor; only with folding=false, as INC),
 * final RTN with the chosen clip ratio; writes the linears and the blocks' norm tensors. The next
 * block's inputs are the fp block's outputs (INC). */
wq_status wq_cli_awq_run(wq_dist *world, wq_engine *e, const wq_model_cfg *mc,
                         const wq_weight_source *src, const wq_config *cfg, wq_h5_file *f,
                         const wq_h5_entry *entries, wq_entry_lookup lookup, void *lookup_ctx,
                         wq_entry_lookup lookup_raw, int progress,
                         double predicted_block_s);

#endif
