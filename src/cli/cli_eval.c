/* cli_eval.c: `wquant eval` (perplexity under the stories or windows protocol, distributed over the
 * engine's stage x data grid) and `wquant generate` (greedy decoding, a smoke test).
 * Layer: cli. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/cli_eval.h"
#include "cli/cli_source.h"
#include "core/core_alloc.h"
#include "core/core_log.h"
#include "dist/dist_engine.h"
#include "model/dataset.h"
#include "model/hf_config.h"
#include "model/tok_sp.h"

/* Opens the weights: the container when given (its stored config.json describes the model), else
 * the safetensors of model_dir. Not collective. */
typedef struct {
    wq_st_model *st;
    wq_h5_reader *h5;
    wq_weight_source src;
    wq_model_cfg mc;
} weights;

static void weights_close(weights *w)
{
    wq_st_close(w->st);
    wq_h5_close(w->h5);
    memset(w, 0, sizeof *w);
}

static wq_status weights_open(const char *model_dir, const char *quantized, weights *w)
{
    memset(w, 0, sizeof *w);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    WQ_TRY(wq_hf_config_load(path, &w->mc));
    if (quantized) {
        WQ_TRY(wq_h5_open(quantized, &w->h5));
        wq_model_cfg qc;
        wq_status st = wq_hf_config_parse(wq_h5_source_config(w->h5), quantized, &qc);
        if (st == WQ_OK && (qc.hidden_size != w->mc.hidden_size || qc.n_layers != w->mc.n_layers ||
                            qc.vocab_size != w->mc.vocab_size)) {
            WQ_LOG_ERROR("'%s' was quantized from a different model than '%s'", quantized, model_dir);
            st = WQ_ERR_ARG;
        }
        if (st != WQ_OK) {
            weights_close(w);
            return st;
        }
        w->src = wq_source_container(w->h5);
    } else {
        wq_status st = wq_st_open(model_dir, &w->st);
        if (st == WQ_OK) st = wq_hf_check_tensors(&w->mc, w->st);
        if (st != WQ_OK) {
            weights_close(w);
            return st;
        }
        w->src = wq_source_safetensors(w->st);
    }
    return WQ_OK;
}

/* Runs all blocks over the engine's sequences, stage after stage. Collective. */
wq_status wq_cli_run_blocks(wq_engine *e, const wq_model_cfg *mc, const wq_weight_source *src);
wq_status wq_cli_run_blocks(wq_engine *e, const wq_model_cfg *mc, const wq_weight_source *src)
{
    for (int s = 0; s < wq_engine_n_stages(e); s++) {
        wq_status st = WQ_OK;
        if (wq_engine_stage(e) == s) {
            for (int64_t b = wq_engine_block_begin(e, s); b < wq_engine_block_end(e, s) && st == WQ_OK; b++) {
                wq_dist_fault_point(wq_engine_world(e), "block", b);
                wq_block_buf bb;
                st = wq_block_load(mc, src, b, &bb);
                if (st == WQ_OK) st = wq_engine_forward(e, &bb.w, 1, 0, NULL, NULL);
                wq_block_buf_free(&bb);
            }
        }
        WQ_TRY(wq_engine_handoff(e, s, st)); /* agrees on the stage's status first */
    }
    return WQ_OK;
}

typedef struct {
    wq_seq_set seqs;
    const int32_t **ids;
    int64_t *lens;
} evalset;

static void evalset_free(evalset *s)
{
    wq_data_seqs_free(&s->seqs);
    wq_free(s->ids);
    wq_free(s->lens);
}

static wq_status build_evalset(const char *model_dir, const char *text, const char *protocol,
                               int64_t a, int64_t b, int64_t n_windows, int64_t seqlen,
                               const wq_model_cfg *mc, evalset *out)
{
    wq_status st = WQ_OK;
    memset(out, 0, sizeof *out);
    wq_tokenizer *tok = NULL;
    wq_text_docs docs = {0};
    int32_t *stream = NULL;
    int64_t n = 0;
    if (seqlen < 2 || seqlen > mc->max_position_embeddings) {
        WQ_LOG_ERROR("--seqlen %lld must be in [2, %lld] (max_position_embeddings of the model)",
                     (long long)seqlen, (long long)mc->max_position_embeddings);
        return WQ_ERR_ARG;
    }
    WQ_TRY(wq_cli_load_tokenizer(model_dir, mc->vocab_size, &tok));
    if (strcmp(protocol, "stories") == 0) {
        WQ_TRY_GOTO(wq_data_load_stories(text, a, b, &docs), st, done);
        WQ_TRY_GOTO(wq_data_eval_stories(tok, &docs, seqlen, &out->seqs), st, done);
    } else if (strcmp(protocol, "windows") == 0) {
        WQ_TRY_GOTO(wq_data_load_text(text, true, &docs), st, done);
        WQ_TRY_GOTO(wq_data_encode_stream(tok, &docs, &stream, &n), st, done);
        WQ_TRY_GOTO(wq_data_eval_windows(stream, n, text, n_windows, seqlen, &out->seqs), st, done);
    } else {
        WQ_LOG_ERROR("--protocol must be 'stories' or 'windows' (got '%s')", protocol);
        st = WQ_ERR_ARG;
        goto done;
    }
    out->ids = wq_calloc((size_t)out->seqs.n_seqs + 1, sizeof *out->ids);
    out->lens = wq_calloc((size_t)out->seqs.n_seqs + 1, sizeof *out->lens);
    WQ_CHECK_GOTO(out->ids && out->lens, st, WQ_ERR_NOMEM, done, "out of memory");
    for (int64_t i = 0; i < out->seqs.n_seqs; i++) {
        out->ids[i] = out->seqs.seqs[i].ids;
        out->lens[i] = out->seqs.seqs[i].len;
    }
done:
    wq_free(stream);
    wq_data_docs_free(&docs);
    wq_tok_free(tok);
    if (st != WQ_OK) evalset_free(out);
    return st;
}

/* The sequences as text, one per line, so other tools (llama.cpp in tests/gguf) evaluate exactly
 * the same tokens. */
static wq_status dump_ids(const char *path, const evalset *es)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        WQ_LOG_ERROR("cannot write '%s': %s", path, strerror(errno));
        return WQ_ERR_IO;
    }
    int ok = 1;
    for (int64_t i = 0; i < es->seqs.n_seqs && ok; i++) {
        for (int64_t j = 0; j < es->lens[i] && ok; j++)
            ok = fprintf(f, j ? " %d" : "%d", (int)es->ids[i][j]) > 0;
        ok = ok && fputc('\n', f) != EOF;
    }
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        WQ_LOG_ERROR("cannot write '%s'", path);
        return WQ_ERR_IO;
    }
    return WQ_OK;
}

/* "A:B" -> a, b (B may be empty or -1 for "to the end"). */
static int parse_range(const char *s, int64_t *a, int64_t *b)
{
    char *end;
    *a = strtoll(s, &end, 10);
    if (*end != ':' || *a < 0) return -1;
    const char *t = end + 1;
    if (!*t) {
        *b = -1;
        return 0;
    }
    *b = strtoll(t, &end, 10);
    return (*end || (*b != -1 && *b <= *a)) ? -1 : 0;
}

int wq_cmd_eval(int argc, char **argv, wq_dist *d)
{
    wq_opt opts[] = {
        {"model", WQ_OPT_VALUE, "DIR", "HuggingFace model directory (config, tokenizer, weights)"},
        {"quantized", WQ_OPT_VALUE, "FILE.h5", "evaluate this container instead of the fp weights"},
        {"text", WQ_OPT_VALUE, "FILE", "evaluation text"},
        {"protocol", WQ_OPT_VALUE, "P", "stories (<|endoftext|>-separated) or windows (default)"},
        {"range", WQ_OPT_VALUE, "A:B", "stories protocol: story indices [A, B) (default all)"},
        {"windows", WQ_OPT_VALUE, "N", "windows protocol: first N windows (default 40; 0 = all)"},
        {"seqlen", WQ_OPT_VALUE, "L", "window length / story cut (default 512)"},
        {"stages", WQ_OPT_VALUE, "P", "pipeline stages (default 1)"},
        {"json", WQ_OPT_FLAG, NULL, "print one JSON object {ppl, nll, tokens, ...}"},
        {"dump-ids", WQ_OPT_VALUE, "FILE",
         "also write the evaluated sequences, one per line (space-separated ids)"},
        {"help", WQ_OPT_FLAG, NULL, "this help"},
        {NULL},
    };
    const char *pos[1];
    int n_pos = 0, rank = wq_dist_rank(d);
    if (wq_cli_parse(argc, argv, 2, opts, pos, 0, &n_pos) != 0) return 2;
    if (wq_cli_opt(opts, "help")->count) {
        if (rank == 0)
            wq_cli_print_help("wquant eval --model DIR [--quantized FILE.h5] --text FILE "
                              "[--protocol stories|windows] [--range A:B] [--windows N] [--seqlen L] "
                              "[--stages P] [--json]",
                              "Perplexity of the fp32 or quantized model, identical for any rank and "
                              "stage count.", opts);
        return 0;
    }
    const char *model = wq_cli_opt(opts, "model")->value, *text = wq_cli_opt(opts, "text")->value;
    const char *protocol = wq_cli_opt(opts, "protocol")->value;
    const char *range = wq_cli_opt(opts, "range")->value;
    int64_t a = 0, b = -1, n_windows = 40, seqlen = 512, stages = 1;
    if (!model || !text) {
        if (rank == 0) fprintf(stderr, "wquant eval: --model and --text are required\n");
        return 2;
    }
    if (!protocol) protocol = "windows";
    if ((range && parse_range(range, &a, &b) != 0)) {
        if (rank == 0) fprintf(stderr, "wquant eval: --range must be A:B with 0 <= A < B\n");
        return 2;
    }
    if (wq_cli_get_int(opts, "windows", 0, 1 << 30, &n_windows) || wq_cli_get_int(opts, "seqlen", -(1 << 30), 1 << 30, &seqlen) ||
        wq_cli_get_int(opts, "stages", 1, 1 << 20, &stages))
        return 2;
    wq_cli_eval_req rq = {model, wq_cli_opt(opts, "quantized")->value, text, protocol, a, b,
                          n_windows, seqlen, stages, wq_cli_opt(opts, "dump-ids")->value};
    wq_cli_eval_res r;
    wq_status st = wq_cli_eval_ppl(d, &rq, &r);
    if (st == WQ_OK && rank == 0) {
        if (wq_cli_opt(opts, "json")->count)
            printf("{\"ppl\": %.10g, \"nll\": %.12g, \"tokens\": %lld, \"sequences\": %lld, "
                   "\"protocol\": \"%s\", \"quantized\": %s%s%s, \"ranks\": %d, \"stages\": %lld, "
                   "\"seconds\": %.3f, \"peak_rss_mb\": %.1f}\n",
                   r.ppl, r.mean_nll, (long long)r.tokens, (long long)r.sequences, protocol,
                   rq.quantized ? "\"" : "", rq.quantized ? rq.quantized : "null",
                   rq.quantized ? "\"" : "", wq_dist_size(d), (long long)stages, r.seconds,
                   r.peak_rss_mb);
        else
            printf("ppl %.4f  (mean nll %.6f over %lld tokens, %lld sequences, %s protocol, %.2f s)\n",
                   r.ppl, r.mean_nll, (long long)r.tokens, (long long)r.sequences, protocol, r.seconds);
    }
    return wq_cli_exit_code(st);
}

wq_status wq_cli_eval_ppl(wq_dist *d, const wq_cli_eval_req *rq, wq_cli_eval_res *res)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(res, 0, sizeof *res);
    weights w;
    evalset es = {0};
    wq_engine *e = NULL;
    wq_status st = weights_open(rq->model, rq->quantized, &w);
    if (st == WQ_OK)
        st = build_evalset(rq->model, rq->text, rq->protocol, rq->range_begin, rq->range_end,
                           rq->windows, rq->seqlen, &w.mc, &es);
    if (st == WQ_OK && rq->dump_ids && wq_dist_rank(d) == 0) st = dump_ids(rq->dump_ids, &es);
    st = wq_dist_agree(d, st);
    if (st == WQ_OK) st = wq_engine_create(d, &w.mc, (int)rq->stages, es.ids, es.lens, es.seqs.n_seqs, &e);
    if (st == WQ_OK) st = wq_dist_agree(d, wq_engine_embed(e, &w.src));
    if (st == WQ_OK) st = wq_cli_run_blocks(e, &w.mc, &w.src);
    double nll = 0;
    int64_t count = 0;
    if (st == WQ_OK) st = wq_engine_nll(e, &w.src, &nll, &count);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak_mb = (double)ru.ru_maxrss / 1024.0; /* max over ranks */
    if (st == WQ_OK) st = wq_dist_allreduce_max_f64(d, &peak_mb, 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st == WQ_OK) {
        res->mean_nll = count ? nll / (double)count : 0;
        res->ppl = exp(res->mean_nll);
        res->tokens = count;
        res->sequences = es.seqs.n_seqs;
        res->peak_rss_mb = peak_mb;
        res->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    }
    wq_engine_destroy(e);
    evalset_free(&es);
    weights_close(&w);
    return st;
}

/* Runs ids[0..n) through the model on this process alone and returns the argmax next token. */
static wq_status wq_cli_greedy_next(const wq_model_cfg *mc, const wq_weight_source *src,
                                    const int32_t *ids, int64_t n, int32_t *next)
{
    wq_status st = WQ_OK;
    const int64_t d = mc->hidden_size, V = mc->vocab_size, half = mc->head_dim / 2;
    float *x = wq_malloc((size_t)(n * d) * sizeof(float)), *emb = wq_malloc((size_t)(V * d) * sizeof(float));
    float *norm = wq_malloc((size_t)d * sizeof(float));
    float *rc = wq_malloc((size_t)(n * half) * sizeof(float)), *rs = wq_malloc((size_t)(n * half) * sizeof(float));
    size_t wsb = wq_kern_block_workspace_bytes(mc, n), hb = wq_kern_head_workspace_bytes(mc);
    void *ws = wq_malloc(wsb > hb ? wsb : hb);
    WQ_CHECK_GOTO(x && emb && norm && rc && rs && ws, st, WQ_ERR_NOMEM, done, "out of memory");
    WQ_TRY_GOTO(src->read_f32(src->ctx, "model.embed_tokens.weight", emb, V * d), st, done);
    wq_kern_embed(emb, ids, n, d, x);
    wq_kern_rope_tables(mc, n, rc, rs);
    for (int64_t b = 0; b < mc->n_layers; b++) {
        wq_block_buf bb;
        WQ_TRY_GOTO(wq_block_load(mc, src, b, &bb), st, done);
        wq_kern_block_forward(mc, &bb.w, x, n, rc, rs, ws, NULL);
        wq_block_buf_free(&bb);
    }
    if (src->has(src->ctx, "lm_head.weight"))
        WQ_TRY_GOTO(src->read_f32(src->ctx, "lm_head.weight", emb, V * d), st, done);
    WQ_TRY_GOTO(src->read_f32(src->ctx, "model.norm.weight", norm, d), st, done);
    *next = wq_kern_head_argmax(mc, norm, emb, x, n, ws);
done:
    wq_free(x), wq_free(emb), wq_free(norm), wq_free(rc), wq_free(rs), wq_free(ws);
    return st;
}

int wq_cmd_generate(int argc, char **argv, wq_dist *d)
{
    wq_opt opts[] = {
        {"model", WQ_OPT_VALUE, "DIR", "HuggingFace model directory"},
        {"quantized", WQ_OPT_VALUE, "FILE.h5", "use this container's weights"},
        {"prompt-ids", WQ_OPT_VALUE, "I,J,..", "prompt token ids (default: BOS)"},
        {"prompt", WQ_OPT_VALUE, "TEXT", "prompt text: BOS + the model's tokenizer encoding"},
        {"decode", WQ_OPT_FLAG, NULL, "also print the decoded text (the model's tokenizer)"},
        {"steps", WQ_OPT_VALUE, "N", "tokens to generate (default 80)"},
        {"help", WQ_OPT_FLAG, NULL, "this help"},
        {NULL},
    };
    const char *pos[1];
    int n_pos = 0, rank = wq_dist_rank(d);
    if (wq_cli_parse(argc, argv, 2, opts, pos, 0, &n_pos) != 0) return 2;
    if (wq_cli_opt(opts, "help")->count) {
        if (rank == 0)
            wq_cli_print_help("wquant generate --model DIR [--quantized FILE.h5] [--prompt-ids 1,2 | "
                              "--prompt TEXT] [--steps N] [--decode]",
                              "Greedy decoding (a smoke test); prints the ids, prompt included.", opts);
        return 0;
    }
    const char *model = wq_cli_opt(opts, "model")->value;
    int64_t steps = 80;
    if (!model) {
        if (rank == 0) fprintf(stderr, "wquant generate: --model is required\n");
        return 2;
    }
    if (wq_cli_get_int(opts, "steps", 0, 1 << 20, &steps)) return 2;
    const char *prompt = wq_cli_opt(opts, "prompt")->value;
    const bool decode = wq_cli_opt(opts, "decode")->count > 0;
    if (prompt && wq_cli_opt(opts, "prompt-ids")->value) {
        if (rank == 0) fprintf(stderr, "wquant generate: --prompt and --prompt-ids exclude each other\n");
        return 2;
    }
    wq_status st = WQ_OK;
    if (rank == 0) {
        weights w;
        wq_tokenizer *tok = NULL;
        st = weights_open(model, wq_cli_opt(opts, "quantized")->value, &w);
        if (st == WQ_OK && (prompt || decode)) st = wq_cli_load_tokenizer(model, w.mc.vocab_size, &tok);
        int32_t *ids = NULL;
        int64_t n = 0;
        if (st == WQ_OK) {
            ids = wq_malloc((size_t)(steps + 4096) * sizeof(int32_t));
            const char *p = wq_cli_opt(opts, "prompt-ids")->value;
            if (prompt) {
                int32_t *pi = NULL;
                int64_t pn = 0;
                st = wq_tok_encode(tok, prompt, strlen(prompt), &pi, &pn);
                if (st == WQ_OK && pn > 4095) {
                    WQ_LOG_ERROR("--prompt: %lld tokens, more than 4095", (long long)pn);
                    st = WQ_ERR_ARG;
                }
                if (st == WQ_OK) {
                    ids[n++] = (int32_t)w.mc.bos_token_id;
                    if (pn) memcpy(ids + n, pi, (size_t)pn * sizeof *pi);
                    n += pn;
                }
                wq_free(pi);
            } else if (!p) {
                ids[n++] = (int32_t)w.mc.bos_token_id;
            } else {
                for (char *end; *p && n < 4096; p = *end ? end + 1 : end) {
                    long v = strtol(p, &end, 10);
                    if (end == p || v < 0 || v >= w.mc.vocab_size) {
                        WQ_LOG_ERROR("--prompt-ids: '%s' is not a token id in [0, %lld)", p,
                                     (long long)w.mc.vocab_size);
                        st = WQ_ERR_ARG;
                        break;
                    }
                    ids[n++] = (int32_t)v;
                }
            }
            if (n + steps > w.mc.max_position_embeddings) {
                WQ_LOG_ERROR("prompt + steps = %lld exceeds max_position_embeddings %lld",
                             (long long)(n + steps), (long long)w.mc.max_position_embeddings);
                st = WQ_ERR_ARG;
            }
        }
        /* greedy: recompute the whole sequence each step (no KV cache; a smoke test) */
        for (int64_t s = 0; st == WQ_OK && s < steps; s++) {
            st = wq_cli_greedy_next(&w.mc, &w.src, ids, n, &ids[n]);
            n++;
        }
        if (st == WQ_OK) {
            printf("[");
            for (int64_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
            printf("]\n");
        }
        if (st == WQ_OK && decode) {
            char *text = NULL;
            size_t len = 0;
            st = wq_tok_decode(tok, ids, n, &text, &len);
            if (st == WQ_OK) {
                fwrite(text, 1, len, stdout);
                printf("\n");
            }
            wq_free(text);
        }
        wq_tok_free(tok);
        wq_free(ids);
        if (w.st || w.h5) weights_close(&w);
    }
    return wq_cli_exit_code(wq_dist_agree(d, st));
}
