/* cli_scaled.c: quantize and write a block with per-input-channel scales (see cli_scaled.h).
 * Layer: cli. */
#include "cli/cli_scaled.h"

#include <stdio.h>
#include <string.h>

#include "algos/algo_rtn.h"
#include "core/core_alloc.h"
#include "core/core_half.h"

wq_status wq_cli_write_scaled_block(wq_dist *sd, const wq_model_cfg *mc, int64_t b,
                                    const wq_block_buf *bb, const wq_blk_scaling *sc, wq_h5_file *f,
                                    const wq_h5_entry *entries, const int64_t idx[WQ_BLK_N_LINEARS],
                                    wq_entry_lookup lookup_raw, void *lookup_ctx, float *scratch)
{
    const wq_blk_dims dims = wq_blk_dims_of(mc);
    const int64_t d = mc->hidden_size;
    float *W[WQ_BLK_N_LINEARS];
    wq_blk_weights(bb, W);
    wq_status st = WQ_OK;
    for (int l = 0; l < WQ_BLK_N_LINEARS && st == WQ_OK; l++) {
        if (idx[l] < 0) continue;
        const int64_t rows = dims.rows[l], cols = dims.in[wq_blk_linears[l].input];
        const float *s = sc->s[l];
        wq_status ws = WQ_OK;
        if (wq_dist_rank(sd) == l % wq_dist_size(sd)) {
            float *Ws = wq_malloc((size_t)(rows * cols) * sizeof(float));
            wq_qmatrix m = {0};
            char layer[256];
            snprintf(layer, sizeof layer, "model.layers.%lld.%s", (long long)b,
                     wq_blk_linears[l].sub);
            if (!Ws) ws = WQ_ERR_NOMEM;
            for (int64_t r = 0; ws == WQ_OK && r < rows; r++)
                for (int64_t c = 0; c < cols; c++)
                    Ws[r * cols + c] = s ? W[l][r * cols + c] * s[c] : W[l][r * cols + c];
            if (ws == WQ_OK && sc->quantile[l] < 0) {
                ws = wq_algo_rtn_quantize(&entries[idx[l]].spec, layer, Ws, rows, cols, &m, NULL);
            } else if (ws == WQ_OK) {
                wq_qspec sq = entries[idx[l]].spec;
                sq.mse_search = false;
                ws = wq_algo_rtn_quantize_quantile(&sq, layer, Ws, rows, cols, sc->quantile[l], &m);
            }
            if (ws == WQ_OK) ws = wq_h5_write_qlinear(f, idx[l], &m);
            if (ws == WQ_OK && entries[idx[l]].n_extra > 0) {
                for (int64_t c = 0; c < cols; c++)
                    scratch[c] = s && !sc->absorbed[l] ? 1.0f / s[c] : 1.0f;
                ws = wq_h5_write_extra(f, idx[l], "input_scale", scratch);
            }
            wq_qmatrix_free(&m);
            wq_free(Ws);
        }
        st = wq_dist_agree(sd, ws);
    }
    static const char *const norm_name[2] = {"input_layernorm.weight",
                                             "post_attention_layernorm.weight"};
    for (int k = 0; k < 2 && st == WQ_OK; k++) {
        char name[256];
        snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)b, norm_name[k]);
        int64_t ridx = lookup_raw(lookup_ctx, name);
        wq_status ws = WQ_OK;
        if (ridx >= 0 && wq_dist_rank(sd) == 0) {
            const float *nw = k == 0 ? bb->w.attn_norm : bb->w.mlp_norm, *s = sc->norm_s[k];
            for (int64_t i = 0; i < d; i++)
                scratch[i] = s ? nw[i] / s[i] : nw[i];
            void *raw = wq_malloc((size_t)d * 8);
            if (!raw) {
                ws = WQ_ERR_NOMEM;
            } else {
                wq_convert_from_f32(entries[ridx].orig_dtype, scratch, raw, (size_t)d);
                ws = wq_h5_write_raw(f, ridx, raw);
                wq_free(raw);
            }
        }
        st = wq_dist_agree(sd, ws);
    }
    return st;
}
