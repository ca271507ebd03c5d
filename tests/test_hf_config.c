/* test_hf_config.c: HF config.json parsing (bundled stories260K config, defaults, every rejection
 * rule) and wq_hf_check_tensors on the bundled checkpoint and on synthetic checkpoints written with
 * the safetensors writer. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "model/hf_config.h"
#include "model/st_reader.h"
#include "model/st_writer.h"
#include "wq_testutil.h"

#define STORIES_DIR WQ_ASSETS_DIR "/stories260K-hf"

/* A complete valid llama config; tests derive bad variants by replacing one "key": value. */
#define BASE_JSON                                                                                  \
    "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 172, "                \
    "\"num_hidden_layers\": 5, \"num_attention_heads\": 8, \"num_key_value_heads\": 4, "           \
    "\"vocab_size\": 512, \"tie_word_embeddings\": true}"

static void expect_parse_error(const char *json, wq_status want, const char *needle)
{
    wq_model_cfg c;
    wq_log_clear_error();
    wq_status st = wq_hf_config_parse(json, "cfg/test.json", &c);
    if (st != want) fail_msg("status %d, want %d for %s", st, want, json);
    const char *msg = wq_log_last_error();
    if (!strstr(msg, needle) || !strstr(msg, "cfg/test.json"))
        fail_msg("message '%s' does not name the file and '%s'", msg, needle);
}

/* BASE_JSON with `"key": <old>` replaced by `"key": value` (value NULL: the pair removed). */
static char *base_with(const char *key, const char *value)
{
    static const char base[] = BASE_JSON;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(base, pat);
    assert_non_null(p);
    const char *e = p + strlen(pat);
    while (*e != ',' && *e != '}')
        e++;
    char *out = malloc(sizeof base + 64);
    assert_non_null(out);
    size_t head = (size_t)(p - base);
    memcpy(out, base, head);
    out[head] = '\0';
    if (value) {
        strcat(out, pat);
        strcat(out, value);
        strcat(out, e);
    } else {
        if (*e == ',')
            e += 2; /* drop ", " */
        else if (head >= 2)
            out[head - 2] = '\0'; /* last pair: drop the preceding ", " */
        strcat(out, e);
    }
    return out;
}

// ---- parsing ------------------------------------------------------------------------------------

static void hf_config_should_load_bundled_stories_config(void **state)
{
    (void)state;
    wq_model_cfg c;
    assert_int_equal(wq_hf_config_load(STORIES_DIR, &c), WQ_OK);
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.hidden_size, 64);
    assert_int_equal(c.intermediate_size, 172);
    assert_int_equal(c.n_layers, 5);
    assert_int_equal(c.n_heads, 8);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 8);
    assert_int_equal(c.vocab_size, 512);
    assert_int_equal(c.max_position_embeddings, 512);
    assert_true(c.rms_norm_eps == 1e-5);
    assert_true(c.rope_theta == 10000.0);
    assert_true(c.tie_word_embeddings);
    assert_false(c.attention_bias);
    assert_false(c.mlp_bias);
    assert_int_equal(c.bos_token_id, 1);
    assert_int_equal(c.eos_token_id, 2);

    wq_model_cfg f;
    assert_int_equal(wq_hf_config_load(STORIES_DIR "/config.json", &f), WQ_OK);
    assert_memory_equal(&c, &f, sizeof c);
    assert_int_equal(wq_hf_config_load(STORIES_DIR "/no-such.json", &f), WQ_ERR_IO);
}

static void hf_config_should_apply_defaults(void **state)
{
    (void)state;
    wq_model_cfg c;
    const char *js =
        "{\"model_type\": \"mistral\", \"hidden_size\": 96, \"intermediate_size\": 200,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 6, \"vocab_size\": 100,"
        " \"head_dim\": null, \"bos_token_id\": null}";
    assert_int_equal(wq_hf_config_parse(js, NULL, &c), WQ_OK);
    assert_string_equal(c.model_type, "mistral");
    assert_int_equal(c.n_kv_heads, 6);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_true(c.rope_theta == 10000.0);
    assert_true(c.rms_norm_eps == 1e-6);
    assert_false(c.tie_word_embeddings);
    assert_false(c.attention_bias);
    assert_false(c.mlp_bias);
    assert_int_equal(c.bos_token_id, -1);
    assert_int_equal(c.eos_token_id, -1);
}

static void hf_config_should_honour_explicit_head_dim_and_eos_list(void **state)
{
    (void)state;
    wq_model_cfg c;
    /* hidden 100 is not a multiple of 8 heads, but head_dim is given (Mistral-Nemo style). */
    const char *js = "{\"model_type\": \"llama\", \"hidden_size\": 100, \"intermediate_size\": 64,"
                     " \"num_hidden_layers\": 1, \"num_attention_heads\": 8, \"head_dim\": 16,"
                     " \"num_key_value_heads\": 2, \"vocab_size\": 32, \"rope_theta\": 500000,"
                     " \"eos_token_id\": [7, 9], \"attention_bias\": true, \"mlp_bias\": true}";
    assert_int_equal(wq_hf_config_parse(js, "x", &c), WQ_OK);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.eos_token_id, 7);
    assert_true(c.rope_theta == 500000.0);
    assert_true(c.attention_bias);
    assert_true(c.mlp_bias);
}

static void hf_config_should_default_qwen2_attention_bias_to_true(void **state)
{
    (void)state;
    wq_model_cfg c;
    char *js = base_with("model_type", "\"qwen2\"");
    assert_int_equal(wq_hf_config_parse(js, "q", &c), WQ_OK);
    assert_string_equal(c.model_type, "qwen2");
    assert_true(c.attention_bias);
    assert_false(c.mlp_bias);
    free(js);
    /* Llama defaults to no bias. */
    assert_int_equal(wq_hf_config_parse(BASE_JSON, "l", &c), WQ_OK);
    assert_false(c.attention_bias);
}

static void hf_config_should_reject_malformed_json(void **state)
{
    (void)state;
    expect_parse_error("{\"model_type\": \"llama\", \"hidden_size\": 64,", WQ_ERR_FORMAT,
                       "malformed JSON");
    expect_parse_error("{\"model_type\": \"llama\"} extra", WQ_ERR_FORMAT, "malformed JSON");
    expect_parse_error("", WQ_ERR_FORMAT, "malformed JSON");
    expect_parse_error("[1, 2]", WQ_ERR_FORMAT, "not a JSON object");
}

static void hf_config_should_reject_each_missing_required_key(void **state)
{
    (void)state;
    const char *keys[] = {"hidden_size",         "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "vocab_size",        "model_type"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char *js = base_with(keys[i], NULL);
        char needle[96];
        snprintf(needle, sizeof needle, "missing required key '%s'", keys[i]);
        expect_parse_error(js, WQ_ERR_FORMAT, needle);
        free(js);
    }
}

static void hf_config_should_reject_wrong_types(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value, *needle;
    } cases[] = {
        {"hidden_size", "\"64\"", "key 'hidden_size' must be an integer"},
        {"vocab_size", "512.5", "key 'vocab_size' must be an integer"},
        {"num_key_value_heads", "[4]", "key 'num_key_value_heads' must be an integer"},
        {"tie_word_embeddings", "\"yes\"", "key 'tie_word_embeddings' must be true or false"},
        {"model_type", "3", "key 'model_type' must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *js = base_with(cases[i].key, cases[i].value);
        expect_parse_error(js, WQ_ERR_FORMAT, cases[i].needle);
        free(js);
    }
    expect_parse_error("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 1,"
                       " \"num_hidden_layers\": 1, \"num_attention_heads\": 8, \"vocab_size\": 5,"
                       " \"rope_theta\": \"big\"}",
                       WQ_ERR_FORMAT, "key 'rope_theta' must be a number");
    expect_parse_error("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 1,"
                       " \"num_hidden_layers\": 1, \"num_attention_heads\": 8, \"vocab_size\": 5,"
                       " \"eos_token_id\": \"</s>\"}",
                       WQ_ERR_FORMAT, "key 'eos_token_id'");
}

static void hf_config_should_reject_non_positive_values(void **state)
{
    (void)state;
    const char *keys[] = {"hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"};
    const char *vals[] = {"0", "-1"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        for (int v = 0; v < 2; v++) {
            char *js = base_with(keys[i], vals[v]);
            char needle[96];
            snprintf(needle, sizeof needle, "key '%s' = %s must be a positive integer", keys[i],
                     vals[v]);
            expect_parse_error(js, WQ_ERR_FORMAT, needle);
            free(js);
        }
    }
    expect_parse_error("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 1,"
                       " \"num_hidden_layers\": 1, \"num_attention_heads\": 8, \"vocab_size\": 5,"
                       " \"rms_norm_eps\": 0}",
                       WQ_ERR_FORMAT, "key 'rms_norm_eps'");
}

static void hf_config_should_reject_kv_heads_not_dividing_heads(void **state)
{
    (void)state;
    char *js = base_with("num_key_value_heads", "3");
    expect_parse_error(js, WQ_ERR_FORMAT,
                       "num_attention_heads 8 is not a multiple of num_key_value_heads 3");
    free(js);
    js = base_with("hidden_size", "60");
    expect_parse_error(js, WQ_ERR_FORMAT,
                       "hidden_size 60 is not a multiple of num_attention_heads");
    free(js);
}

static void hf_config_should_reject_unsupported_model_type(void **state)
{
    (void)state;
    char *js = base_with("model_type", "\"gpt2\"");
    expect_parse_error(js, WQ_ERR_UNSUPPORTED, "model_type 'gpt2' is not supported");
    free(js);
}

static void hf_config_should_infer_model_type_from_architectures(void **state)
{
    (void)state;
    wq_model_cfg c;
#define NO_TYPE(arch)                                                                              \
    "{\"architectures\": [" arch "], \"hidden_size\": 64, \"intermediate_size\": 172,"             \
    " \"num_hidden_layers\": 5, \"num_attention_heads\": 8, \"vocab_size\": 512}"
    /* Early Llama conversions spelled the class "LLaMAForCausalLM". */
    assert_int_equal(wq_hf_config_parse(NO_TYPE("\"LLaMAForCausalLM\""), "old", &c), WQ_OK);
    assert_string_equal(c.model_type, "llama");
    assert_false(c.attention_bias);
    assert_int_equal(wq_hf_config_parse(NO_TYPE("\"Qwen2ForCausalLM\""), "q", &c), WQ_OK);
    assert_string_equal(c.model_type, "qwen2");
    assert_true(c.attention_bias);
    expect_parse_error(NO_TYPE("\"GPT2LMHeadModel\""), WQ_ERR_FORMAT,
                       "missing required key 'model_type'");
    expect_parse_error(NO_TYPE("3"), WQ_ERR_FORMAT, "missing required key 'model_type'");
#undef NO_TYPE
}

static void hf_config_should_reject_non_silu_activation(void **state)
{
    (void)state;
    char *js = base_with("model_type", "\"llama\", \"hidden_act\": \"gelu\"");
    expect_parse_error(js, WQ_ERR_UNSUPPORTED, "hidden_act 'gelu' is not supported");
    free(js);
    js = base_with("model_type", "\"llama\", \"hidden_act\": 1");
    expect_parse_error(js, WQ_ERR_FORMAT, "key 'hidden_act' must be a string");
    free(js);
}

// ---- text files ---------------------------------------------------------------------------------

static void read_text_file_should_return_nul_terminated_contents(void **state)
{
    (void)state;
    char dir[256], path[300];
    assert_non_null(wq_test_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/t.txt", dir);
    assert_int_equal(wq_test_write_file(path, "abc\0def", 7), 0);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(wq_read_text_file(path, &text, &len), WQ_OK);
    assert_int_equal(len, 7);
    assert_memory_equal(text, "abc\0def", 8);
    wq_free(text);

    /* Over the 64 MiB limit: a sparse file costs no disk. */
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, ((off_t)64 << 20) + 1), 0);
    close(fd);
    text = (char *)0x1;
    assert_int_equal(wq_read_text_file(path, &text, &len), WQ_ERR_FORMAT);
    assert_null(text);
    assert_int_equal(wq_read_text_file(dir, &text, NULL), WQ_ERR_IO);
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    assert_int_equal(wq_read_text_file(path, &text, NULL), WQ_ERR_IO);
    wq_test_system("rm -rf '%s'", dir);
}

// ---- tensor check -------------------------------------------------------------------------------

static void hf_check_tensors_should_accept_stories260K(void **state)
{
    (void)state;
    wq_model_cfg c;
    wq_st_model *m = NULL;
    assert_int_equal(wq_hf_config_load(STORIES_DIR, &c), WQ_OK);
    assert_int_equal(wq_st_open(STORIES_DIR, &m), WQ_OK);
    assert_int_equal(wq_hf_check_tensors(&c, m), WQ_OK);

    /* Untied: lm_head.weight is the first (and only) missing tensor. */
    wq_model_cfg u = c;
    u.tie_word_embeddings = false;
    wq_log_clear_error();
    assert_int_equal(wq_hf_check_tensors(&u, m), WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "'lm_head.weight' is missing"));

    /* Wrong kv heads: layer 0's k_proj is the first mis-shaped tensor. */
    u = c;
    u.n_kv_heads = 8;
    assert_int_equal(wq_hf_check_tensors(&u, m), WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "'model.layers.0.self_attn.k_proj.weight' has "
                                                "shape [32, 64], expected [64, 64]"));

    /* Biases demanded but absent. */
    u = c;
    u.attention_bias = true;
    assert_int_equal(wq_hf_check_tensors(&u, m), WQ_ERR_FORMAT);
    assert_non_null(
        strstr(wq_log_last_error(), "'model.layers.0.self_attn.q_proj.bias' is missing"));

    /* More layers than stored. */
    u = c;
    u.n_layers = 6;
    assert_int_equal(wq_hf_check_tensors(&u, m), WQ_ERR_FORMAT);
    assert_non_null(strstr(wq_log_last_error(), "'model.layers.5.input_layernorm.weight'"));
    assert_int_equal(wq_hf_check_tensors(NULL, m), WQ_ERR_ARG);
    wq_st_close(m);
}

/* Writes dir/model.safetensors with every tensor cfg implies (zero data), leaving out `skip`. */
static void write_synthetic(const char *dir, const wq_model_cfg *c, const char *skip)
{
    const int64_t h = c->hidden_size, ff = c->intermediate_size, v = c->vocab_size;
    const int64_t q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    struct {
        const char *suffix;
        int64_t d0, d1;
        int when; /* 0 always, 1 attention_bias, 2 mlp_bias */
    } per_layer[] = {
        {"input_layernorm.weight", h, -1, 0},  {"post_attention_layernorm.weight", h, -1, 0},
        {"self_attn.q_proj.weight", q, h, 0},  {"self_attn.k_proj.weight", kv, h, 0},
        {"self_attn.v_proj.weight", kv, h, 0}, {"self_attn.o_proj.weight", h, q, 0},
        {"self_attn.q_proj.bias", q, -1, 1},   {"self_attn.k_proj.bias", kv, -1, 1},
        {"self_attn.v_proj.bias", kv, -1, 1},  {"mlp.gate_proj.weight", ff, h, 0},
        {"mlp.up_proj.weight", ff, h, 0},      {"mlp.down_proj.weight", h, ff, 0},
        {"mlp.gate_proj.bias", ff, -1, 2},     {"mlp.up_proj.bias", ff, -1, 2},
        {"mlp.down_proj.bias", h, -1, 2},
    };
    char path[512], name[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    wq_st_writer *w = NULL;
    size_t total = 0;
    assert_int_equal(wq_st_writer_create(path, &w), WQ_OK);
#define DECL(nm, a, b)                                                                             \
    do {                                                                                           \
        if (!skip || strcmp(skip, (nm)) != 0) {                                                    \
            int64_t sh_[2] = {(a), (b)};                                                           \
            assert_int_equal(wq_st_writer_declare(w, (nm), WQ_DTYPE_F16, (b) < 0 ? 1 : 2, sh_),    \
                             WQ_OK);                                                               \
            total += (size_t)((a) * ((b) < 0 ? 1 : (b))) * 2;                                      \
        }                                                                                          \
    } while (0)
    DECL("model.embed_tokens.weight", v, h);
    for (int64_t l = 0; l < c->n_layers; l++) {
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++) {
            if ((per_layer[i].when == 1 && !c->attention_bias) ||
                (per_layer[i].when == 2 && !c->mlp_bias))
                continue;
            snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, per_layer[i].suffix);
            DECL(name, per_layer[i].d0, per_layer[i].d1);
        }
    }
    DECL("model.norm.weight", h, -1);
    if (!c->tie_word_embeddings) DECL("lm_head.weight", v, h);
#undef DECL
    assert_int_equal(wq_st_writer_begin_data(w), WQ_OK);
    void *zeros = calloc(1, total ? total : 1);
    assert_non_null(zeros);
    assert_int_equal(wq_st_writer_write(w, zeros, total), WQ_OK);
    free(zeros);
    assert_int_equal(wq_st_writer_finish(w), WQ_OK);
}

static void hf_check_tensors_should_check_qwen2_biases_on_synthetic_model(void **state)
{
    (void)state;
    char dir[256];
    assert_non_null(wq_test_tmpdir(dir, sizeof dir));
    const char *js =
        "{\"model_type\": \"qwen2\", \"hidden_size\": 8, \"intermediate_size\": 12,"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
        " \"vocab_size\": 16, \"tie_word_embeddings\": false, \"mlp_bias\": true}";
    wq_model_cfg c;
    assert_int_equal(wq_hf_config_parse(js, "synthetic", &c), WQ_OK);
    assert_true(c.attention_bias);

    wq_st_model *m = NULL;
    write_synthetic(dir, &c, NULL);
    assert_int_equal(wq_st_open(dir, &m), WQ_OK);
    assert_int_equal(wq_st_count(m), 1 + 2 * 15 + 1 + 1);
    assert_int_equal(wq_hf_check_tensors(&c, m), WQ_OK);
    wq_st_close(m);

    const char *skips[] = {"model.layers.1.self_attn.v_proj.bias",
                           "model.layers.0.mlp.down_proj.bias", "lm_head.weight",
                           "model.norm.weight"};
    for (size_t i = 0; i < sizeof skips / sizeof skips[0]; i++) {
        write_synthetic(dir, &c, skips[i]);
        assert_int_equal(wq_st_open(dir, &m), WQ_OK);
        wq_log_clear_error();
        assert_int_equal(wq_hf_check_tensors(&c, m), WQ_ERR_FORMAT);
        char needle[300];
        snprintf(needle, sizeof needle, "'%s' is missing", skips[i]);
        if (!strstr(wq_log_last_error(), needle))
            fail_msg("'%s' does not contain '%s'", wq_log_last_error(), needle);
        wq_st_close(m);
    }
    wq_test_system("rm -rf '%s'", dir);
}

// ---- allocation failure -------------------------------------------------------------------------

static long g_budget, g_live; /* test-only: the allocator hook has no user pointer */

static void *failing_malloc(size_t n)
{
    if (g_budget-- <= 0) return NULL;
    void *p = malloc(n ? n : 1);
    if (p) g_live++;
    return p;
}

static void counting_free(void *p)
{
    g_live--;
    free(p);
}

static void hf_config_load_should_return_nomem_without_leaks(void **state)
{
    (void)state;
    const wq_alloc_hooks hooks = {failing_malloc, counting_free};
    for (long k = 0;; k++) {
        assert_true(k < 1000);
        wq_model_cfg c;
        g_budget = k;
        g_live = 0;
        wq_alloc_set_hooks(&hooks);
        wq_status st = wq_hf_config_load(STORIES_DIR, &c);
        wq_alloc_set_hooks(NULL);
        if (g_live != 0) fail_msg("budget %ld: %ld blocks leaked", k, g_live);
        if (st == WQ_OK) {
            assert_int_equal(c.hidden_size, 64);
            assert_true(k >= 2); /* path and text buffers */
            break;
        }
        if (st != WQ_ERR_NOMEM) fail_msg("budget %ld: status %d, want NOMEM", k, st);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hf_config_should_load_bundled_stories_config),
        cmocka_unit_test(hf_config_should_apply_defaults),
        cmocka_unit_test(hf_config_should_honour_explicit_head_dim_and_eos_list),
        cmocka_unit_test(hf_config_should_default_qwen2_attention_bias_to_true),
        cmocka_unit_test(hf_config_should_reject_malformed_json),
        cmocka_unit_test(hf_config_should_reject_each_missing_required_key),
        cmocka_unit_test(hf_config_should_reject_wrong_types),
        cmocka_unit_test(hf_config_should_reject_non_positive_values),
        cmocka_unit_test(hf_config_should_reject_kv_heads_not_dividing_heads),
        cmocka_unit_test(hf_config_should_reject_unsupported_model_type),
        cmocka_unit_test(hf_config_should_infer_model_type_from_architectures),
        cmocka_unit_test(hf_config_should_reject_non_silu_activation),
        cmocka_unit_test(read_text_file_should_return_nul_terminated_contents),
        cmocka_unit_test(hf_check_tensors_should_accept_stories260K),
        cmocka_unit_test(hf_check_tensors_should_check_qwen2_biases_on_synthetic_model),
        cmocka_unit_test(hf_config_load_should_return_nomem_without_leaks),
    };
    return cmocka_run_group_tests_name("model_hf_config", tests, NULL, NULL);
}
