/* core_model_cfg.h: hyperparameters of a Llama-family decoder (parsed from HF config.json by model/,
 * consumed by the forward pass in kernels/ and by the planner). Layer: core (plain data). */
#ifndef WQ_CORE_MODEL_CFG_H
#define WQ_CORE_MODEL_CFG_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char model_type[32];      /* "llama", "mistral", "qwen2" */
    int64_t hidden_size;      /* d */
    int64_t intermediate_size;/* FFN width */
    int64_t n_layers;         /* num_hidden_layers */
    int64_t n_heads;          /* num_attention_heads */
    int64_t n_kv_heads;       /* num_key_value_heads (defaults to n_heads) */
    int64_t head_dim;         /* hidden_size / n_heads unless config gives head_dim */
    int64_t vocab_size;
    int64_t max_position_embeddings;
    double rope_theta;        /* default 10000 */
    double rms_norm_eps;      /* default 1e-6 */
    bool tie_word_embeddings; /* lm_head shares model.embed_tokens.weight */
    bool attention_bias;      /* q/k/v (and o for some) carry a bias: qwen2 => true for q,k,v */
    bool mlp_bias;
    int64_t bos_token_id, eos_token_id;
} wq_model_cfg;

#ifdef __cplusplus
}
#endif
#endif
