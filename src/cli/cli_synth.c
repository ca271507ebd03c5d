/* cli_synth.c: `wquant synth`: a HuggingFace Llama directory with a real model's widths and N blocks
 * of seeded random weights (N(0, 0.02); 1% outlier input channels x8, the same hidden channels in
 * every tensor reading the hidden state; norms 1), so every code path (sharding, BF16, GQA, biases)
 * can be exercised and measured at real widths on a small machine. Rank 0 writes; the output is
 * identical for the same arguments. Layer: cli. */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "core/core_alloc.h"
#include "core/core_half.h"
#include "core/core_log.h"
#include "model/export_hf.h"
#include "model/hf_config.h"
#include "model/st_writer.h"

typedef struct {
    char name[200];
    int ndim;
    int64_t shape[2];
    int kind; /* 0 linear/embedding (gaussian), 1 norm (ones), 2 bias (zeros) */
} synth_tensor;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (double)((splitmix(s) >> 11) + 1) * 0x1.0p-53; }

/* Fills rows [0, rows) of a tensor: seed depends on the tensor index only. */
static void fill(const synth_tensor *t, uint64_t seed, int64_t idx, float *x)
{
    int64_t rows = t->shape[0], cols = t->ndim > 1 ? t->shape[1] : 1, n = rows * cols;
    if (t->kind == 1) {
        for (int64_t i = 0; i < n; i++) x[i] = 1.0f;
        return;
    }
    if (t->kind == 2) {
        memset(x, 0, (size_t)n * sizeof(float));
        return;
    }
    uint64_t s = seed * 0x100000001b3ULL + (uint64_t)idx * 0x9e3779b97f4a7c15ULL;
    for (int64_t i = 0; i + 1 < n; i += 2) { /* Box-Muller pairs */
        double r = sqrt(-2.0 * log(unif(&s))), a = 6.283185307179586 * unif(&s);
        x[i] = (float)(0.02 * r * cos(a));
        x[i + 1] = (float)(0.02 * r * sin(a));
    }
    if (n % 2) x[n - 1] = 0.0f;
    /* per-channel outliers: ~1% of the input channels scaled by 8, as trained LLMs show. Tensors
     * whose columns are the hidden state (embedding, q/k/v, gate/up, lm_head) share the same
     * channels, so the activations carry them too; o_proj and down_proj get their own. */
    uint64_t hs = seed * 0x2545f4914f6cdd1dULL + 0x5851f42d4c957f2dULL;
    uint64_t *pick = strstr(t->name, "o_proj") || strstr(t->name, "down_proj") ? &s : &hs;
    if (t->ndim == 2)
        for (int64_t c = 0; c < cols; c++)
            if (splitmix(pick) % 100 == 0)
                for (int64_t r = 0; r < rows; r++) x[r * cols + c] *= 8.0f;
}

static wq_status synth(const char *like, int64_t layers, wq_dtype dt, uint64_t seed, double shard_mb,
                       const char *out)
{
    wq_status st = WQ_OK;
    char *text = NULL, path[4200];
    cJSON *cfg = NULL;
    synth_tensor *ts = NULL;
    float *buf = NULL;
    void *conv = NULL;
    wq_model_cfg mc;
    struct stat sb;
    int like_is_dir = stat(like, &sb) == 0 && S_ISDIR(sb.st_mode);
    snprintf(path, sizeof path, like_is_dir ? "%s/config.json" : "%s", like);
    WQ_TRY(wq_read_text_file(path, &text, NULL));
    cfg = cJSON_Parse(text);
    WQ_CHECK_GOTO(cfg && cJSON_IsObject(cfg), st, WQ_ERR_FORMAT, done, "%s: not a JSON object", path);
    cJSON_DeleteItemFromObject(cfg, "num_hidden_layers");
    cJSON_AddNumberToObject(cfg, "num_hidden_layers", (double)layers);
    cJSON_DeleteItemFromObject(cfg, "torch_dtype");
    cJSON_AddStringToObject(cfg, "torch_dtype", dt == WQ_DTYPE_BF16 ? "bfloat16" : dt == WQ_DTYPE_F16 ? "float16" : "float32");
    char *js = cJSON_Print(cfg);
    WQ_CHECK_GOTO(js, st, WQ_ERR_NOMEM, done, "out of memory");
    st = wq_hf_config_parse(js, path, &mc);
    if (st == WQ_OK) {
        if (mkdir(out, 0755) != 0 && errno != EEXIST) {
            WQ_LOG_ERROR("cannot create '%s': %s", out, strerror(errno));
            st = WQ_ERR_IO;
        } else {
            snprintf(path, sizeof path, "%s/config.json", out);
            FILE *f = fopen(path, "w");
            if (!f || fputs(js, f) < 0 || fclose(f) != 0) {
                WQ_LOG_ERROR("cannot write '%s'", path);
                st = WQ_ERR_IO;
            }
        }
    }
    cJSON_free(js);
    if (st != WQ_OK) goto done;
    /* tensor list */
    const int64_t d = mc.hidden_size, F = mc.intermediate_size, V = mc.vocab_size;
    const int64_t qd = mc.n_heads * mc.head_dim, kd = mc.n_kv_heads * mc.head_dim;
    int64_t n = 0, cap = 4 + layers * 12;
    ts = wq_calloc((size_t)cap, sizeof *ts);
    WQ_CHECK_GOTO(ts, st, WQ_ERR_NOMEM, done, "out of memory");
#define ADD(kind_, nd, r, c, ...)                                              \
    do {                                                                       \
        snprintf(ts[n].name, sizeof ts[n].name, __VA_ARGS__);                  \
        ts[n].ndim = nd, ts[n].shape[0] = r, ts[n].shape[1] = c, ts[n].kind = kind_; \
        n++;                                                                   \
    } while (0)
    ADD(0, 2, V, d, "model.embed_tokens.weight");
    for (int64_t b = 0; b < layers; b++) {
        ADD(1, 1, d, 0, "model.layers.%lld.input_layernorm.weight", (long long)b);
        ADD(0, 2, qd, d, "model.layers.%lld.self_attn.q_proj.weight", (long long)b);
        ADD(0, 2, kd, d, "model.layers.%lld.self_attn.k_proj.weight", (long long)b);
        ADD(0, 2, kd, d, "model.layers.%lld.self_attn.v_proj.weight", (long long)b);
        if (mc.attention_bias) {
            ADD(2, 1, qd, 0, "model.layers.%lld.self_attn.q_proj.bias", (long long)b);
            ADD(2, 1, kd, 0, "model.layers.%lld.self_attn.k_proj.bias", (long long)b);
            ADD(2, 1, kd, 0, "model.layers.%lld.self_attn.v_proj.bias", (long long)b);
        }
        ADD(0, 2, d, qd, "model.layers.%lld.self_attn.o_proj.weight", (long long)b);
        ADD(1, 1, d, 0, "model.layers.%lld.post_attention_layernorm.weight", (long long)b);
        ADD(0, 2, F, d, "model.layers.%lld.mlp.gate_proj.weight", (long long)b);
        ADD(0, 2, F, d, "model.layers.%lld.mlp.up_proj.weight", (long long)b);
        ADD(0, 2, d, F, "model.layers.%lld.mlp.down_proj.weight", (long long)b);
    }
    ADD(1, 1, d, 0, "model.norm.weight");
    if (!mc.tie_word_embeddings) ADD(0, 2, V, d, "lm_head.weight");
#undef ADD
    /* shards of at most shard_mb, in declaration order */
    int64_t maxn = 1;
    int *shard_of = wq_calloc((size_t)n, sizeof(int));
    const char **names = wq_calloc((size_t)n, sizeof(char *));
    WQ_CHECK_GOTO(shard_of && names, st, WQ_ERR_NOMEM, done, "out of memory");
    int n_shards = 1;
    double acc = 0, total = 0, esz = (double)wq_dtype_size(dt);
    for (int64_t i = 0; i < n; i++) {
        int64_t numel = ts[i].shape[0] * (ts[i].ndim > 1 ? ts[i].shape[1] : 1);
        if (numel > maxn) maxn = numel;
        double bytes = (double)numel * esz;
        if (acc > 0 && acc + bytes > shard_mb * 1e6) n_shards++, acc = 0;
        acc += bytes;
        total += bytes;
        shard_of[i] = n_shards - 1;
        names[i] = ts[i].name;
    }
    buf = wq_malloc((size_t)maxn * sizeof(float));
    conv = wq_malloc((size_t)maxn * esz);
    char **files = wq_calloc((size_t)n_shards, sizeof(char *));
    WQ_CHECK_GOTO(buf && conv && files, st, WQ_ERR_NOMEM, done, "out of memory");
    for (int s = 0; s < n_shards && st == WQ_OK; s++) {
        files[s] = wq_malloc(64);
        if (n_shards == 1)
            snprintf(files[s], 64, "model.safetensors");
        else
            snprintf(files[s], 64, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        snprintf(path, sizeof path, "%s/%s", out, files[s]);
        wq_st_writer *w = NULL;
        st = wq_st_writer_create(path, &w);
        for (int64_t i = 0; st == WQ_OK && i < n; i++)
            if (shard_of[i] == s) st = wq_st_writer_declare(w, ts[i].name, dt, ts[i].ndim, ts[i].shape);
        if (st == WQ_OK) st = wq_st_writer_begin_data(w);
        for (int64_t i = 0; st == WQ_OK && i < n; i++) {
            if (shard_of[i] != s) continue;
            int64_t numel = ts[i].shape[0] * (ts[i].ndim > 1 ? ts[i].shape[1] : 1);
            fill(&ts[i], seed, i, buf);
            wq_convert_from_f32(dt, buf, conv, (size_t)numel);
            st = wq_st_writer_write(w, conv, (size_t)((double)numel * esz));
        }
        if (st == WQ_OK)
            st = wq_st_writer_finish(w);
        else
            wq_st_writer_abort(w);
    }
    if (st == WQ_OK && n_shards > 1)
        st = wq_st_write_index(out, names, shard_of, n, (const char *const *)files, n_shards, (uint64_t)total);
    if (st == WQ_OK && like_is_dir) /* bring the tokenizer files along when there are some */
        st = wq_hf_copy_tokenizer(like, out);
    for (int s = 0; files && s < n_shards; s++) wq_free(files[s]);
    wq_free(files);
    wq_free(shard_of);
    wq_free(names);
    if (st == WQ_OK)
        WQ_LOG_INFO("wrote %s: %lld blocks, %lld tensors, %.1f MB in %d shard(s)", out,
                    (long long)layers, (long long)n, total / 1e6, n_shards);
done:
    cJSON_Delete(cfg);
    wq_free(text);
    wq_free(ts);
    wq_free(buf);
    wq_free(conv);
    return st;
}

int wq_cmd_synth(int argc, char **argv, wq_dist *d)
{
    wq_opt opts[] = {
        {"like", WQ_OPT_VALUE, "CONFIG", "config.json (or model dir) whose widths to copy"},
        {"layers", WQ_OPT_VALUE, "N", "number of blocks (default: as the config)"},
        {"dtype", WQ_OPT_VALUE, "T", "f32, f16 or bf16 (default bf16)"},
        {"seed", WQ_OPT_VALUE, "S", "weight seed (default 0)"},
        {"shard-mb", WQ_OPT_VALUE, "MB", "max shard size (default 2000)"},
        {"out", WQ_OPT_VALUE, "DIR", "output directory"},
        {"help", WQ_OPT_FLAG, NULL, "this help"},
        {NULL},
    };
    const char *pos[1];
    int n_pos = 0;
    if (wq_cli_parse(argc, argv, 2, opts, pos, 0, &n_pos) != 0) return 2;
    if (wq_cli_opt(opts, "help")->count) {
        if (wq_dist_rank(d) == 0)
            wq_cli_print_help("wquant synth --like CONFIG.json --layers N [--dtype bf16] --out DIR",
                              "Writes a synthetic HF Llama directory with real widths and seeded "
                              "random weights.", opts);
        return 0;
    }
    const char *like = wq_cli_opt(opts, "like")->value, *out = wq_cli_opt(opts, "out")->value;
    const char *dts = wq_cli_opt(opts, "dtype")->value;
    int64_t layers = -1, seed = 0, shard = 2000;
    if (!like || !out) {
        if (wq_dist_rank(d) == 0) fprintf(stderr, "wquant synth: --like and --out are required\n");
        return 2;
    }
    if (wq_cli_get_int(opts, "layers", 1, 1 << 20, &layers) || wq_cli_get_int(opts, "seed", 0, INT64_MAX, &seed) ||
        wq_cli_get_int(opts, "shard-mb", 1, 1 << 30, &shard))
        return 2;
    wq_dtype dt = WQ_DTYPE_BF16;
    if (dts && strcmp(dts, "f32") == 0) dt = WQ_DTYPE_F32;
    else if (dts && strcmp(dts, "f16") == 0) dt = WQ_DTYPE_F16;
    else if (dts && strcmp(dts, "bf16") != 0) {
        if (wq_dist_rank(d) == 0) fprintf(stderr, "wquant synth: --dtype must be f32, f16 or bf16\n");
        return 2;
    }
    wq_status st = WQ_OK;
    if (wq_dist_rank(d) == 0) {
        if (layers < 0) {
            wq_model_cfg mc;
            char p[4200];
            struct stat sb;
            snprintf(p, sizeof p, stat(like, &sb) == 0 && S_ISDIR(sb.st_mode) ? "%s/config.json" : "%s", like);
            st = wq_hf_config_load(p, &mc);
            layers = mc.n_layers;
        }
        if (st == WQ_OK) st = synth(like, layers, dt, (uint64_t)seed, (double)shard, out);
    }
    return wq_cli_exit_code(wq_dist_agree(d, st));
}
