/* cli_scaled.h: final quantization of a block whose linears carry per-input-channel scales, shared
 * by AWQ (numerics.md 5.5, 5.7) and TEQ (6, "transform"): W[:, c] * s[c] is quantized, and 1/s is
 * either absorbed into the preceding RMSNorm or stored with the layer as its "input_scale" extra
 * (INC's MulLinear; readers compute linear(x * input_scale)). Layer: cli. */
#ifndef WQ_CLI_SCALED_H
#define WQ_CLI_SCALED_H

#include "cli/cli_block.h"
#include "cli/cli_gptq.h"

typedef struct {
    const float *s[WQ_BLK_N_LINEARS]; /* per linear: [in] scale, NULL = unscaled */
    int absorbed[WQ_BLK_N_LINEARS];   /* 1: 1/s is absorbed by a norm (norm_s); 0: input_scale */
    float quantile[WQ_BLK_N_LINEARS]; /* clip ratio; < 0: the spec's own (MSE search if set) */
    const float *norm_s[2];           /* attn_norm / mlp_norm are divided by these; NULL = kept */
} wq_blk_scaling;

/* Collective over sd (the stage's ranks). Linear l with idx[l] >= 0 is quantized by stage rank
 * l % size and written (with its input_scale extra if the entry declares one: 1/s[l] when s[l] is
 * set and not absorbed, else 1); the blocks' two norms, when the container has them as block-pass
 * tensors (lookup_raw), are written by stage rank 0. scratch: >= max(in) floats. Errors of the RTN
 * quantizer (naming the layer) and of the container. */
wq_status wq_cli_write_scaled_block(wq_dist *sd, const wq_model_cfg *mc, int64_t b,
                                    const wq_block_buf *bb, const wq_blk_scaling *sc, wq_h5_file *f,
                                    const wq_h5_entry *entries, const int64_t idx[WQ_BLK_N_LINEARS],
                                    wq_entry_lookup lookup_raw, void *lookup_ctx, float *scratch);

#endif
