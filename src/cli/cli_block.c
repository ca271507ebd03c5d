/* cli_block.c: the block layout shared by the calibrated passes. Layer: cli. */
#include "cli/cli_block.h"

#include "core/core_log.h"

const wq_blk_linear wq_blk_linears[WQ_BLK_N_LINEARS] = {
    {"self_attn.q_proj", WQ_BLK_IN_ATTN}, {"self_attn.k_proj", WQ_BLK_IN_ATTN},
    {"self_attn.v_proj", WQ_BLK_IN_ATTN}, {"self_attn.o_proj", WQ_BLK_IN_O},
    {"mlp.gate_proj", WQ_BLK_IN_MLP},     {"mlp.up_proj", WQ_BLK_IN_MLP},
    {"mlp.down_proj", WQ_BLK_IN_DOWN},
};

const wq_blk_tuple wq_blk_tuples[WQ_BLK_N_INPUTS] = {
    {0, 3, "input_layernorm.weight"}, {3, 1, NULL}, {4, 2, "post_attention_layernorm.weight"}, {6, 1, NULL}};

wq_blk_dims wq_blk_dims_of(const wq_model_cfg *mc)
{
    const int64_t d = mc->hidden_size, F = mc->intermediate_size;
    const int64_t qd = mc->n_heads * mc->head_dim, kd = mc->n_kv_heads * mc->head_dim;
    return (wq_blk_dims){.in = {d, qd, d, F}, .rows = {qd, kd, kd, d, F, F, d}};
}

void wq_blk_weights(const wq_block_buf *bb, float *w[WQ_BLK_N_LINEARS])
{
    float *v[WQ_BLK_N_LINEARS] = {bb->wq, bb->wk, bb->wv, bb->wo, bb->w_gate, bb->w_up, bb->w_down};
    for (int l = 0; l < WQ_BLK_N_LINEARS; l++) w[l] = v[l];
}

int64_t wq_blk_max_local_len(const wq_engine *e)
{
    int64_t m = 1;
    for (int64_t k = 0; k < wq_engine_n_local(e); k++) {
        int64_t L = wq_engine_seq_len(e, wq_engine_local_seq(e, k));
        if (L > m) m = L;
    }
    return m;
}

void wq_blk_log_time(wq_dist *stage, int64_t b, double seconds, double predicted)
{
    if (predicted > 0 && wq_dist_rank(stage) == 0)
        WQ_LOG_INFO("block %lld: %.2f s (predicted %.2f s, measured/predicted %.2f)", (long long)b,
                    seconds, predicted, seconds / predicted);
}
