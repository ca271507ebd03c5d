/* dist_engine.h: the calibration/evaluation engine. The ranks form a grid of P pipeline stages; stage s
 * owns a contiguous range of transformer blocks (balanced by cost), and its D_s ranks split the
 * sequences (sequence j belongs to stage-rank j mod D_s). Each rank keeps the activations of its own
 * sequences, loads one block's weights at a time (layer-wise: peak memory does not grow with the
 * number of layers), runs every local sequence through it one sequence at a time (so a sequence's
 * numbers never depend on which other sequences share the rank), and hands the activations to the
 * next stage point-to-point. Statistics are reduced exactly (dist_reduce.h): results are bit-identical
 * for any rank count and stage count. Layer: dist. */
#ifndef WQ_DIST_ENGINE_H
#define WQ_DIST_ENGINE_H

#include <stdint.h>

#include "core/core_model_cfg.h"
#include "dist/dist.h"
#include "kernels/kern_llama.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where fp32 tensors come from (the original safetensors, or a container's dequantized weights).
 * read_f32 fills numel floats of tensor `name` (HF naming, e.g. "model.layers.0.mlp.up_proj.weight");
 * has() says whether the tensor exists. Errors name the tensor. */
typedef struct {
    void *ctx;
    wq_status (*read_f32)(void *ctx, const char *name, float *dst, int64_t numel);
    int (*has)(void *ctx, const char *name);
} wq_weight_source;

/* The fp32 weights of one block in one allocation, and the pointer view the kernels take. */
typedef struct {
    float *buf;
    wq_block_weights w;
    float *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down; /* writable views (GPTQ replaces them) */
} wq_block_buf;

/* Loads block b. Not collective. WQ_ERR_NOMEM, errors of the source. */
wq_status wq_block_load(const wq_model_cfg *mc, const wq_weight_source *src, int64_t b,
                        wq_block_buf *out);
void wq_block_buf_free(wq_block_buf *bb);

typedef struct wq_engine wq_engine;

/* Collective over `world`. P stages (1 <= P <= min(size, n_layers)); the sequences (ids borrowed,
 * must outlive the engine) are identical on every rank. *out: wq_engine_destroy. WQ_ERR_ARG if P is
 * out of range (message says the valid range). */
wq_status wq_engine_create(wq_dist *world, const wq_model_cfg *mc, int P, const int32_t *const *ids,
                           const int64_t *lens, int64_t n_seq, wq_engine **out);
void wq_engine_destroy(wq_engine *e);

int wq_engine_n_stages(const wq_engine *e);
int wq_engine_stage(const wq_engine *e);           /* this rank's stage */
int64_t wq_engine_block_begin(const wq_engine *e, int stage);
int64_t wq_engine_block_end(const wq_engine *e, int stage);
wq_dist *wq_engine_stage_dist(wq_engine *e);       /* the ranks of this rank's stage */
wq_dist *wq_engine_world(wq_engine *e);
int64_t wq_engine_n_local(const wq_engine *e);     /* sequences held by this rank */
int64_t wq_engine_local_seq(const wq_engine *e, int64_t k); /* global index of local sequence k */
int64_t wq_engine_seq_len(const wq_engine *e, int64_t j);
/* The activations [len][d] of local sequence k (writable: AutoRound keeps and replaces them). */
float *wq_engine_local_act(wq_engine *e, int64_t k);
const float *wq_engine_rope_cos(const wq_engine *e); /* [max_len][D/2] */
const float *wq_engine_rope_sin(const wq_engine *e);

/* Stage 0 ranks: x = embedding of their sequences. Others: no-op. Not collective. */
wq_status wq_engine_embed(wq_engine *e, const wq_weight_source *src);

/* Called once per local sequence during a forward with a callback: cap holds the inputs of the
 * block's linears for that sequence ([T][in] each, only the requested ones non-NULL), out the
 * block's output [T][d]. The buffers are reused for the next sequence. */
typedef wq_status (*wq_capture_fn)(void *ctx, int64_t seq, int64_t T, const wq_block_capture *cap,
                                   const float *out);
/* Which inputs to capture (bit per wq_block_capture field). */
enum { WQ_CAP_ATTN = 1, WQ_CAP_O = 2, WQ_CAP_MLP = 4, WQ_CAP_DOWN = 8 };

/* Runs every local sequence through the block. update = 1: activations are replaced by the block's
 * output; update = 0: activations are left unchanged (a capture-only pass). Not collective. */
wq_status wq_engine_forward(wq_engine *e, const wq_block_weights *w, int update, unsigned cap_mask,
                            wq_capture_fn fn, void *ctx);

/* Collective over the world: first agrees on `local` (the status of this rank's work on stage
 * `from`); if every rank is fine, stage `from` sends its activations to stage from+1. */
wq_status wq_engine_handoff(wq_engine *e, int from, wq_status local);

/* Collective over the world: the last stage applies the final norm and lm_head and sums the NLL of
 * every predicted position (1..len-1) of every sequence; the exact sum and the token count are
 * returned on every rank. */
wq_status wq_engine_nll(wq_engine *e, const wq_weight_source *src, double *nll, int64_t *count);

#ifdef __cplusplus
}
#endif
#endif
