/* hf_config.h: Hugging Face config.json -> wq_model_cfg for the Llama family (llama, mistral,
 * qwen2), and a check that a safetensors checkpoint holds every tensor that config implies.
 * Layer: model. Not collective: in MPI runs rank 0 reads the text (wq_read_text_file), broadcasts
 * the bytes, and every rank calls wq_hf_config_parse so all ranks agree. */
#ifndef WQ_HF_CONFIG_H
#define WQ_HF_CONFIG_H

#include <stddef.h>

#include "core/core_model_cfg.h"
#include "model/st_reader.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads path_or_dir (a file, or a directory holding config.json) and parses it.
 * *out is caller storage, fully written on success (zeroed first). Errors: as wq_read_text_file and
 * wq_hf_config_parse. */
wq_status wq_hf_config_load(const char *path_or_dir, wq_model_cfg *out);
/* Parses config.json text; origin names the source in error messages (may be NULL).
 * Required: model_type (if absent, inferred from architectures[0], e.g. Qwen2ForCausalLM),
 * hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, vocab_size.
 * hidden_act, when present, must be "silu"; rope_scaling is ignored with a warning.
 * Defaults: num_key_value_heads = heads, head_dim = hidden/heads, max_position_embeddings 2048,
 * rope_theta 10000, rms_norm_eps 1e-6, tie_word_embeddings false, attention_bias false (true for
 * qwen2), mlp_bias false, bos/eos -1 when absent or null.
 * Errors: WQ_ERR_FORMAT (malformed JSON; missing, wrong-typed or non-positive key; heads not
 * dividing; the log names origin and key), WQ_ERR_UNSUPPORTED (model_type not in the Llama family,
 * or hidden_act not silu), WQ_ERR_ARG, WQ_ERR_NOMEM. */
wq_status wq_hf_config_parse(const char *json_text, const char *origin, wq_model_cfg *out);
/* Reads a whole file. Ownership: *out is a NUL-terminated wq_malloc'd buffer the caller frees with
 * wq_free; *len (optional, may be NULL) excludes the NUL. Files over 64 MiB are refused.
 * Errors: WQ_ERR_ARG, WQ_ERR_IO (open/read failure), WQ_ERR_FORMAT (too large), WQ_ERR_NOMEM. */
wq_status wq_read_text_file(const char *path, char **out, size_t *len);
/* Verifies that m holds every tensor cfg implies, with the right shape (HF [out, in] layout):
 * model.embed_tokens.weight [vocab, hidden]; per layer N: model.layers.N.input_layernorm.weight and
 * post_attention_layernorm.weight [hidden]; self_attn.q_proj [heads*head_dim, hidden],
 * k_proj/v_proj [kv_heads*head_dim, hidden], o_proj [hidden, heads*head_dim] (+ q/k/v .bias when
 * attention_bias); mlp.gate_proj/up_proj [inter, hidden], down_proj [hidden, inter] (+ biases when
 * mlp_bias); model.norm.weight [hidden]; lm_head.weight [vocab, hidden] unless tied.
 * Errors: WQ_ERR_FORMAT naming the first missing or mis-shaped tensor; WQ_ERR_ARG. */
wq_status wq_hf_check_tensors(const wq_model_cfg *cfg, const wq_st_model *m);

#ifdef __cplusplus
}
#endif
#endif /* WQ_HF_CONFIG_H */
