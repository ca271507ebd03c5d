/* hf_config.c: Hugging Face config.json -> wq_model_cfg for Llama-family decoders, and the check
 * that a checkpoint holds the tensors that config implies. Every rejection names the origin and the
 * key or tensor, so a bad checkpoint fails at load rather than deep inside a layer. The cJSON tree
 * never leaves this file. Layer: model. */
#include "model/hf_config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "core/core_alloc.h"
#include "core/core_log.h"

#define HF_MAX_TEXT ((size_t)64 << 20)
#define HF_MAX_DIM 2147483647.0 /* keeps products of two dims inside int64 */

// ---- text files ---------------------------------------------------------------------------------

wq_status wq_read_text_file(const char *path, char **out, size_t *len)
{
    wq_status st = WQ_OK;
    char *buf = NULL;
    int fd = -1;
    if (!path || !out) return WQ_ERR_ARG;
    *out = NULL;
    if (len) *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    WQ_CHECK_GOTO(fd >= 0, st, WQ_ERR_IO, done, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    WQ_CHECK_GOTO(fstat(fd, &sb) == 0, st, WQ_ERR_IO, done, "%s: fstat: %s", path, strerror(errno));
    WQ_CHECK_GOTO(S_ISREG(sb.st_mode), st, WQ_ERR_IO, done, "%s: not a regular file", path);
    WQ_CHECK_GOTO((uint64_t)sb.st_size <= HF_MAX_TEXT, st, WQ_ERR_FORMAT, done,
                  "%s: %lld bytes exceeds the 64 MiB limit for text files", path,
                  (long long)sb.st_size);
    size_t n = (size_t)sb.st_size;
    buf = wq_malloc(n + 1);
    WQ_CHECK_GOTO(buf, st, WQ_ERR_NOMEM, done, "%s: out of memory", path);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        WQ_CHECK_GOTO(r > 0, st, WQ_ERR_IO, done, "%s: read failed: %s", path,
                      r < 0 ? strerror(errno) : "file shrank while reading");
        got += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    buf = NULL;
done:
    wq_free(buf);
    if (fd >= 0) close(fd);
    return st;
}

// ---- typed key access ---------------------------------------------------------------------------

/* Absent or JSON null: use the default. */
static bool absent(const cJSON *v)
{
    return !v || cJSON_IsNull(v);
}

/* A positive integer key. required: absence is an error; otherwise *out keeps its default. */
static wq_status get_pos_int(const cJSON *root, const char *key, bool required, const char *origin,
                             int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (absent(v)) {
        if (!required) return WQ_OK;
        WQ_LOG_ERROR("%s: missing required key '%s'", origin, key);
        return WQ_ERR_FORMAT;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) {
        WQ_LOG_ERROR("%s: key '%s' must be an integer", origin, key);
        return WQ_ERR_FORMAT;
    }
    if (!(v->valuedouble > 0.0) || v->valuedouble > HF_MAX_DIM) {
        WQ_LOG_ERROR("%s: key '%s' = %.17g must be a positive integer below 2^31", origin, key,
                     v->valuedouble);
        return WQ_ERR_FORMAT;
    }
    *out = (int64_t)v->valuedouble;
    return WQ_OK;
}

static wq_status get_pos_double(const cJSON *root, const char *key, const char *origin, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (absent(v)) return WQ_OK;
    if (!cJSON_IsNumber(v)) {
        WQ_LOG_ERROR("%s: key '%s' must be a number", origin, key);
        return WQ_ERR_FORMAT;
    }
    if (!(v->valuedouble > 0.0) || !isfinite(v->valuedouble)) {
        WQ_LOG_ERROR("%s: key '%s' = %.17g must be positive and finite", origin, key,
                     v->valuedouble);
        return WQ_ERR_FORMAT;
    }
    *out = v->valuedouble;
    return WQ_OK;
}

static wq_status get_bool(const cJSON *root, const char *key, const char *origin, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (absent(v)) return WQ_OK;
    if (!cJSON_IsBool(v)) {
        WQ_LOG_ERROR("%s: key '%s' must be true or false", origin, key);
        return WQ_ERR_FORMAT;
    }
    *out = cJSON_IsTrue(v);
    return WQ_OK;
}

/* A token id: a non-negative integer, a list of them (the first is used), or null/absent (-1). */
static wq_status get_token_id(const cJSON *root, const char *key, const char *origin, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = -1;
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0); /* e.g. Llama 3 lists several eos ids */
    if (absent(v)) return WQ_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0.0 ||
        v->valuedouble > HF_MAX_DIM) {
        WQ_LOG_ERROR("%s: key '%s' must be a non-negative integer token id", origin, key);
        return WQ_ERR_FORMAT;
    }
    *out = (int64_t)v->valuedouble;
    return WQ_OK;
}

/* model_type implied by an HF architecture class name, or NULL. Case-insensitive because early
 * Llama conversions spelled it "LLaMAForCausalLM". */
static const char *type_from_architecture(const char *arch)
{
    static const struct {
        const char *arch, *type;
    } known[] = {{"LlamaForCausalLM", "llama"},
                 {"MistralForCausalLM", "mistral"},
                 {"Qwen2ForCausalLM", "qwen2"}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcasecmp(arch, known[i].arch) == 0) return known[i].type;
    return NULL;
}

// ---- parse --------------------------------------------------------------------------------------

wq_status wq_hf_config_parse(const char *json_text, const char *origin, wq_model_cfg *out)
{
    wq_status st = WQ_OK;
    cJSON *root = NULL;
    if (!json_text || !out) return WQ_ERR_ARG;
    if (!origin) origin = "config.json";
    memset(out, 0, sizeof *out);
    wq_model_cfg c = {0};

    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(json_text, strlen(json_text) + 1, &end, 1);
    WQ_CHECK_GOTO(root, st, WQ_ERR_FORMAT, done, "%s: malformed JSON near byte %lld", origin,
                  end ? (long long)(end - json_text) : -1LL);
    WQ_CHECK_GOTO(cJSON_IsObject(root), st, WQ_ERR_FORMAT, done,
                  "%s: top level is not a JSON object", origin);

    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const char *type = NULL;
    if (absent(mt)) {
        /* Very old exports omit model_type; the architecture class names the family. */
        const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
        const cJSON *a0 = cJSON_IsArray(arch) ? cJSON_GetArrayItem(arch, 0) : NULL;
        type = cJSON_IsString(a0) ? type_from_architecture(a0->valuestring) : NULL;
        WQ_CHECK_GOTO(type, st, WQ_ERR_FORMAT, done,
                      "%s: missing required key 'model_type' (and no known 'architectures' entry)",
                      origin);
    } else {
        WQ_CHECK_GOTO(cJSON_IsString(mt), st, WQ_ERR_FORMAT, done,
                      "%s: key 'model_type' must be a string", origin);
        type = mt->valuestring;
    }
    bool is_qwen2 = strcmp(type, "qwen2") == 0;
    WQ_CHECK_GOTO(is_qwen2 || strcmp(type, "llama") == 0 || strcmp(type, "mistral") == 0, st,
                  WQ_ERR_UNSUPPORTED, done,
                  "%s: model_type '%.64s' is not supported (llama, mistral, qwen2)", origin, type);
    snprintf(c.model_type, sizeof c.model_type, "%s", type);

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (!absent(act)) {
        WQ_CHECK_GOTO(cJSON_IsString(act), st, WQ_ERR_FORMAT, done,
                      "%s: key 'hidden_act' must be a string", origin);
        WQ_CHECK_GOTO(strcmp(act->valuestring, "silu") == 0, st, WQ_ERR_UNSUPPORTED, done,
                      "%s: hidden_act '%.64s' is not supported (silu only)", origin,
                      act->valuestring);
    }

    WQ_TRY_GOTO(get_pos_int(root, "hidden_size", true, origin, &c.hidden_size), st, done);
    WQ_TRY_GOTO(get_pos_int(root, "intermediate_size", true, origin, &c.intermediate_size), st,
                done);
    WQ_TRY_GOTO(get_pos_int(root, "num_hidden_layers", true, origin, &c.n_layers), st, done);
    WQ_TRY_GOTO(get_pos_int(root, "num_attention_heads", true, origin, &c.n_heads), st, done);
    WQ_TRY_GOTO(get_pos_int(root, "vocab_size", true, origin, &c.vocab_size), st, done);
    c.n_kv_heads = c.n_heads;
    WQ_TRY_GOTO(get_pos_int(root, "num_key_value_heads", false, origin, &c.n_kv_heads), st, done);
    WQ_CHECK_GOTO(c.n_heads % c.n_kv_heads == 0, st, WQ_ERR_FORMAT, done,
                  "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                  origin, (long long)c.n_heads, (long long)c.n_kv_heads);
    c.head_dim = 0;
    WQ_TRY_GOTO(get_pos_int(root, "head_dim", false, origin, &c.head_dim), st, done);
    if (c.head_dim == 0) {
        WQ_CHECK_GOTO(c.hidden_size % c.n_heads == 0, st, WQ_ERR_FORMAT, done,
                      "%s: hidden_size %lld is not a multiple of num_attention_heads %lld (and no "
                      "head_dim is given)",
                      origin, (long long)c.hidden_size, (long long)c.n_heads);
        c.head_dim = c.hidden_size / c.n_heads;
    }
    c.max_position_embeddings = 2048;
    WQ_TRY_GOTO(
        get_pos_int(root, "max_position_embeddings", false, origin, &c.max_position_embeddings), st,
        done);
    c.rope_theta = 10000.0;
    WQ_TRY_GOTO(get_pos_double(root, "rope_theta", origin, &c.rope_theta), st, done);
    c.rms_norm_eps = 1e-6;
    WQ_TRY_GOTO(get_pos_double(root, "rms_norm_eps", origin, &c.rms_norm_eps), st, done);
    c.tie_word_embeddings = false;
    WQ_TRY_GOTO(get_bool(root, "tie_word_embeddings", origin, &c.tie_word_embeddings), st, done);
    /* Qwen2 always has q/k/v biases (its modeling code ignores the key); Llama/Mistral: off. */
    c.attention_bias = is_qwen2;
    WQ_TRY_GOTO(get_bool(root, "attention_bias", origin, &c.attention_bias), st, done);
    if (is_qwen2 && !c.attention_bias) {
        WQ_LOG_WARN("%s: qwen2 always has q/k/v biases; ignoring attention_bias=false", origin);
        c.attention_bias = true;
    }
    c.mlp_bias = false;
    WQ_TRY_GOTO(get_bool(root, "mlp_bias", origin, &c.mlp_bias), st, done);
    WQ_TRY_GOTO(get_token_id(root, "bos_token_id", origin, &c.bos_token_id), st, done);
    WQ_TRY_GOTO(get_token_id(root, "eos_token_id", origin, &c.eos_token_id), st, done);
    if (!absent(cJSON_GetObjectItemCaseSensitive(root, "rope_scaling")))
        WQ_LOG_WARN("%s: rope_scaling is present and ignored", origin);
    *out = c;
done:
    cJSON_Delete(root);
    return st;
}

wq_status wq_hf_config_load(const char *path_or_dir, wq_model_cfg *out)
{
    wq_status st = WQ_OK;
    char *text = NULL, *path = NULL;
    if (!path_or_dir || !out) return WQ_ERR_ARG;
    memset(out, 0, sizeof *out);
    struct stat sb;
    if (stat(path_or_dir, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path_or_dir);
        path = wq_malloc(n + sizeof "/config.json");
        WQ_CHECK_GOTO(path, st, WQ_ERR_NOMEM, done, "out of memory");
        memcpy(path, path_or_dir, n);
        memcpy(path + n, "/config.json", sizeof "/config.json");
    } else {
        path = wq_strdup(path_or_dir);
        WQ_CHECK_GOTO(path, st, WQ_ERR_NOMEM, done, "out of memory");
    }
    WQ_TRY_GOTO(wq_read_text_file(path, &text, NULL), st, done);
    WQ_TRY_GOTO(wq_hf_config_parse(text, path, out), st, done);
done:
    wq_free(text);
    wq_free(path);
    return st;
}

// ---- tensor check -------------------------------------------------------------------------------

/* One expected tensor; d1 < 0 means 1-D [d0]. */
static wq_status expect(const wq_st_model *m, const char *name, int64_t d0, int64_t d1)
{
    const wq_st_tensor *t = wq_st_find(m, name);
    int ndim = d1 < 0 ? 1 : 2;
    if (!t) {
        WQ_LOG_ERROR("safetensors %s: required tensor '%s' is missing", wq_st_dir(m), name);
        return WQ_ERR_FORMAT;
    }
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char got[96];
        int k = snprintf(got, sizeof got, "[");
        for (int d = 0; d < t->ndim && k < (int)sizeof got; d++)
            k += snprintf(got + k, sizeof got - (size_t)k, "%s%lld", d ? ", " : "",
                          (long long)t->shape[d]);
        if (k < (int)sizeof got) snprintf(got + k, sizeof got - (size_t)k, "]");
        if (ndim == 1)
            WQ_LOG_ERROR("safetensors %s: tensor '%s' has shape %s, expected [%lld]", wq_st_dir(m),
                         name, got, (long long)d0);
        else
            WQ_LOG_ERROR("safetensors %s: tensor '%s' has shape %s, expected [%lld, %lld]",
                         wq_st_dir(m), name, got, (long long)d0, (long long)d1);
        return WQ_ERR_FORMAT;
    }
    return WQ_OK;
}

/* Expected tensor named "model.layers.<layer>.<suffix>". */
static wq_status expect_layer(const wq_st_model *m, int64_t layer, const char *suffix, int64_t d0,
                              int64_t d1)
{
    char name[256];
    snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)layer, suffix);
    return expect(m, name, d0, d1);
}

wq_status wq_hf_check_tensors(const wq_model_cfg *cfg, const wq_st_model *m)
{
    if (!cfg || !m) return WQ_ERR_ARG;
    const int64_t h = cfg->hidden_size, ff = cfg->intermediate_size, v = cfg->vocab_size;
    const int64_t q = cfg->n_heads * cfg->head_dim, kv = cfg->n_kv_heads * cfg->head_dim;
    if (h <= 0 || ff <= 0 || v <= 0 || q <= 0 || kv <= 0 || cfg->n_layers <= 0) return WQ_ERR_ARG;

    WQ_TRY(expect(m, "model.embed_tokens.weight", v, h));
    for (int64_t l = 0; l < cfg->n_layers; l++) {
        WQ_TRY(expect_layer(m, l, "input_layernorm.weight", h, -1));
        WQ_TRY(expect_layer(m, l, "post_attention_layernorm.weight", h, -1));
        WQ_TRY(expect_layer(m, l, "self_attn.q_proj.weight", q, h));
        WQ_TRY(expect_layer(m, l, "self_attn.k_proj.weight", kv, h));
        WQ_TRY(expect_layer(m, l, "self_attn.v_proj.weight", kv, h));
        WQ_TRY(expect_layer(m, l, "self_attn.o_proj.weight", h, q));
        if (cfg->attention_bias) {
            WQ_TRY(expect_layer(m, l, "self_attn.q_proj.bias", q, -1));
            WQ_TRY(expect_layer(m, l, "self_attn.k_proj.bias", kv, -1));
            WQ_TRY(expect_layer(m, l, "self_attn.v_proj.bias", kv, -1));
            /* Llama with attention_bias also biases o_proj, Qwen2 does not: check it only if
             * present. */
            char name[256];
            snprintf(name, sizeof name, "model.layers.%lld.self_attn.o_proj.bias", (long long)l);
            if (wq_st_find(m, name)) WQ_TRY(expect(m, name, h, -1));
        }
        WQ_TRY(expect_layer(m, l, "mlp.gate_proj.weight", ff, h));
        WQ_TRY(expect_layer(m, l, "mlp.up_proj.weight", ff, h));
        WQ_TRY(expect_layer(m, l, "mlp.down_proj.weight", h, ff));
        if (cfg->mlp_bias) {
            WQ_TRY(expect_layer(m, l, "mlp.gate_proj.bias", ff, -1));
            WQ_TRY(expect_layer(m, l, "mlp.up_proj.bias", ff, -1));
            WQ_TRY(expect_layer(m, l, "mlp.down_proj.bias", h, -1));
        }
    }
    WQ_TRY(expect(m, "model.norm.weight", h, -1));
    /* A tied checkpoint may still carry a copy of lm_head; if it does, its shape must match. */
    if (!cfg->tie_word_embeddings || wq_st_find(m, "lm_head.weight"))
        WQ_TRY(expect(m, "lm_head.weight", v, h));
    return WQ_OK;
}
