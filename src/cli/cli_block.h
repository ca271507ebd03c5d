/* cli_block.h: a Llama block as the calibrated passes (GPTQ, AWQ) see it: its seven linears in
 * registration order, the captured input each one reads, and their shapes. Layer: cli. */
#ifndef WQ_CLI_BLOCK_H
#define WQ_CLI_BLOCK_H

#include <stdint.h>

#include "core/core_model_cfg.h"
#include "dist/dist_engine.h"

/* Captured inputs (same order as wq_block_capture and the WQ_CAP_* bits). */
enum { WQ_BLK_IN_ATTN = 0, WQ_BLK_IN_O = 1, WQ_BLK_IN_MLP = 2, WQ_BLK_IN_DOWN = 3, WQ_BLK_N_INPUTS = 4 };
#define WQ_BLK_N_LINEARS 7

typedef struct {
    const char *sub; /* name under model.layers.<b>., e.g. "self_attn.q_proj" */
    int input;       /* WQ_BLK_IN_* */
} wq_blk_linear;

/* q, k, v, o, gate, up, down. */
extern const wq_blk_linear wq_blk_linears[WQ_BLK_N_LINEARS];

/* Linears sharing one per-input-channel scale (INC's trace result for Llama, numerics 5.3):
 * tuple t = linears [first, first + n), all reading captured input t, and the norm that absorbs 1/s
 * ("input_layernorm.weight" / "post_attention_layernorm.weight"; NULL: no absorbable predecessor,
 * o_proj and down_proj). Used by AWQ (5.3) and TEQ (6) with folding. */
typedef struct {
    int first, n;
    const char *absorber;
} wq_blk_tuple;
extern const wq_blk_tuple wq_blk_tuples[WQ_BLK_N_INPUTS];

typedef struct {
    int64_t in[WQ_BLK_N_INPUTS];    /* width of each captured input */
    int64_t rows[WQ_BLK_N_LINEARS]; /* output features of each linear */
} wq_blk_dims;

wq_blk_dims wq_blk_dims_of(const wq_model_cfg *mc);
/* The writable weight matrices of a loaded block, in wq_blk_linears order. */
void wq_blk_weights(const wq_block_buf *bb, float *w[WQ_BLK_N_LINEARS]);
/* Longest sequence held by this rank (at least 1). */
int64_t wq_blk_max_local_len(const wq_engine *e);
/* Logs the measured time of block b next to the planner's prediction (info level, on the stage's
 * first rank; nothing when predicted <= 0). Not collective. */
void wq_blk_log_time(wq_dist *stage, int64_t b, double seconds, double predicted);

#endif
