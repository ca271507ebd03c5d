/* cli_teq.h: the TEQ pass (numerics.md 6): data-parallel training of the per-input-channel scales
 * on the whole model's causal-LM loss, then the scaled weights are quantized and the scales folded
 * into the blocks' RMSNorms (folding=true) or stored as input scales (folding=false). Layer: cli.
 */
#ifndef WQ_CLI_TEQ_H
#define WQ_CLI_TEQ_H

#include "cli/cli_gptq.h"

/* Collective over the world. ids/lens: the calibration sequences (identical on every rank); each
 * training batch's sequences are split over all ranks, every rank holds the whole model, the
 * gradients are summed exactly (dist_reduce), so every rank applies the same Adam step and the
 * container is bit-identical for any rank count. Errors: WQ_ERR_ARG (token ids outside the
 * vocabulary), WQ_ERR_NUMERIC (non-finite training loss or gradient, naming the step),
 * WQ_ERR_NOMEM, and the container's. */
wq_status wq_cli_teq_run(wq_dist *world, const wq_model_cfg *mc, const wq_weight_source *src,
                         const wq_config *cfg, const int32_t *const *ids, const int64_t *lens,
                         int64_t n_seq, wq_h5_file *f, const wq_h5_entry *entries,
                         wq_entry_lookup lookup, wq_entry_lookup lookup_raw, void *lookup_ctx,
                         int progress);

#endif
