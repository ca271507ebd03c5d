/* cli_quantize.c: `wquant quantize`: read a HF model, quantize every configured linear, write the
 * container collectively. Rank 0 builds the plan (which rank quantizes which tensor, balanced by size)
 * and broadcasts it; ranks work in rounds so every rank learns of a failure within one tensor's time
 * and rank 0 can print progress. Layer: cli. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "algos/algo_hqq.h"
#include "algos/algo_rtn.h"
#include "cli/cli_awq.h"
#include "cli/cli_autoround.h"
#include "cli/cli_ckpt.h"
#include "cli/cli_teq.h"
#include "cli/cli_gptq.h"
#include "cli/cli_plan.h"
#include "cli/cli_source.h"
#include "dist/dist_engine.h"
#include "model/dataset.h"
#include "model/tok_sp.h"
#include "cli/cli.h"
#include "cli/cli_args.h"
#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_log.h"
#include "dist/dist_plan.h"
#include "io_hdf5/h5_container.h"
#include "model/hf_config.h"
#include "model/st_reader.h"
#include "core/core_half.h"
#include <sys/resource.h>
#include "wq_version.h"

/* A 2-D "<name>.weight" tensor that is a linear layer (projection or lm_head), not an embedding. */
/* Algorithms that need calibration data and write their blocks' linears in the calibrated pass. */
static int wq_cli_calibrated_algo(wq_algo a)
{
    return a == WQ_ALGO_GPTQ || a == WQ_ALGO_AWQ || a == WQ_ALGO_TEQ || a == WQ_ALGO_AUTOROUND;
}

static int is_linear_weight(const wq_st_tensor *t, char *layer, size_t n)
{
    size_t len = strlen(t->name);
    if (t->ndim != 2 || len < 8 || strcmp(t->name + len - 7, ".weight") != 0) return 0;
    if (strstr(t->name, "embed_tokens") || strstr(t->name, "wte") || strstr(t->name, "norm"))
        return 0;
    snprintf(layer, n, "%.*s", (int)(len - 7), t->name);
    return 1;
}

/* Applies --algo/--dtype/--bits/--group-size/--sym/--asym/--set overrides. */
static wq_status apply_overrides(wq_config *cfg, wq_opt *opts)
{
    wq_opt *o;
    if ((o = wq_cli_opt(opts, "dtype"))->value) WQ_TRY(wq_config_set(cfg, "dtype", o->value));
    if ((o = wq_cli_opt(opts, "bits"))->value) WQ_TRY(wq_config_set(cfg, "bits", o->value));
    if ((o = wq_cli_opt(opts, "group-size"))->value)
        WQ_TRY(wq_config_set(cfg, "group_size", o->value));
    if (wq_cli_opt(opts, "sym")->count) WQ_TRY(wq_config_set(cfg, "use_sym", "true"));
    if (wq_cli_opt(opts, "asym")->count) WQ_TRY(wq_config_set(cfg, "use_sym", "false"));
    if ((o = wq_cli_opt(opts, "set"))->value) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", o->value);
        for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            if (!eq) {
                WQ_LOG_ERROR("--set expects key=value[,key=value...], got '%s'", kv);
                return WQ_ERR_ARG;
            }
            *eq = '\0';
            WQ_TRY(wq_config_set(cfg, kv, eq + 1));
        }
    }
    return wq_config_validate(cfg);
}

/* Loads the config (rank 0 reads, all parse) and applies the overrides. Collective. */
static wq_status load_config(wq_dist *d, wq_opt *opts, wq_config *cfg)
{
    wq_status st = WQ_OK;
    const char *path = wq_cli_opt(opts, "config")->value;
    const char *algo = wq_cli_opt(opts, "algo")->value;
    if (path) {
        char *text = NULL;
        WQ_TRY(wq_cli_read_bcast(d, path, &text, NULL));
        st = wq_config_parse(text, path, cfg);
        wq_free(text);
        if (st == WQ_OK && algo && strcmp(algo, wq_algo_name(cfg->algo)) != 0) {
            WQ_LOG_ERROR("--algo %s contradicts the config file '%s' (algorithm '%s')", algo, path,
                         wq_algo_name(cfg->algo));
            wq_config_free(cfg);
            st = WQ_ERR_ARG;
        }
    } else {
        char js[64];
        snprintf(js, sizeof js, "{\"%s\": {}}", algo ? algo : "rtn");
        st = wq_config_parse(js, "--algo", cfg);
    }
    const char *ct = wq_cli_opt(opts, "calib-text")->value;
    if (st == WQ_OK && ct) snprintf(cfg->calib.text, sizeof cfg->calib.text, "%s", ct);
    if (st == WQ_OK) {
        st = apply_overrides(cfg, opts);
        if (st != WQ_OK) wq_config_free(cfg);
    }
    return wq_dist_agree(d, st);
}

typedef struct {
    wq_h5_entry *entries;
    const wq_st_tensor **tensors;
    int *owner;
    int64_t *order; /* processing order: decreasing cost (wq_dist_plan_items) */
    int64_t n;
} plan;

static void plan_free(plan *p)
{
    wq_free(p->entries);
    wq_free(p->tensors);
    wq_free(p->owner);
    wq_free(p->order);
    memset(p, 0, sizeof *p);
}

/* Every rank derives the same entry list from the same headers and config; rank 0 balances the
 * quantization work and broadcasts who does what. Collective. */
static wq_status build_plan(wq_dist *d, const wq_config *cfg, const wq_st_model *m, plan *p)
{
    wq_status st = WQ_OK;
    int64_t n = wq_st_count(m);
    memset(p, 0, sizeof *p);
    p->entries = wq_calloc((size_t)(n ? n : 1), sizeof *p->entries);
    p->tensors = wq_calloc((size_t)(n ? n : 1), sizeof *p->tensors);
    p->owner = wq_calloc((size_t)(n ? n : 1), sizeof *p->owner);
    p->order = wq_calloc((size_t)(n ? n : 1), sizeof *p->order);
    int64_t *cost = wq_calloc((size_t)(n ? n : 1), sizeof *cost);
    WQ_CHECK_GOTO(p->entries && p->tensors && p->owner && p->order && cost, st, WQ_ERR_NOMEM, done,
                  "out of memory planning %lld tensors", (long long)n);
    p->n = n;
    for (int64_t i = 0; i < n; i++) {
        const wq_st_tensor *t = wq_st_at(m, i);
        wq_h5_entry *e = &p->entries[i];
        char layer[256];
        p->tensors[i] = t;
        e->orig_dtype = t->dtype;
        e->ndim = t->ndim;
        for (int k = 0; k < t->ndim; k++) e->shape[k] = t->shape[k];
        snprintf(e->algorithm, sizeof e->algorithm, "%s", wq_algo_name(cfg->algo));
        wq_qspec spec = {0};
        if (is_linear_weight(t, layer, sizeof layer))
            wq_config_resolve(cfg, layer, "Linear", &spec);
        if (spec.dtype != WQ_QDTYPE_FP32 && is_linear_weight(t, layer, sizeof layer)) {
            e->kind = WQ_H5_QLINEAR;
            snprintf(e->name, sizeof e->name, "%s", layer);
            e->rows = t->shape[0];
            e->cols = t->shape[1];
            e->spec = spec;
            e->group_size_eff = wq_qspec_group_size(&spec, e->cols);
            e->has_gidx = cfg->algo == WQ_ALGO_GPTQ && cfg->ap.act_order && !cfg->ap.static_groups;
            cost[i] = t->numel * (spec.mse_search ? 40 : 1);
            /* calibrated algorithms quantize the blocks' linears in the block pass, not in rounds;
             * linears outside the blocks (lm_head with quant_lm_head) fall back to RTN */
            int in_block = strncmp(layer, "model.layers.", 13) == 0;
            if (wq_cli_calibrated_algo(cfg->algo) && in_block) {
                cost[i] = -1;
                /* AWQ: o_proj and down_proj have no absorbable predecessor; with folding=false
                 * (INC's MulLinear) their input scale is stored with the layer */
                if (cfg->algo == WQ_ALGO_GPTQ && cfg->ap.fp8_aware) {
                    e->n_extra = 1;
                    snprintf(e->extra[0].name, sizeof e->extra[0].name, "scale_bf16_to_fp8");
                    e->extra[0].len = 1;
                }
                if (cfg->algo == WQ_ALGO_AWQ && !cfg->ap.folding &&
                    (strstr(layer, "o_proj") || strstr(layer, "down_proj"))) {
                    e->n_extra = 1;
                    snprintf(e->extra[0].name, sizeof e->extra[0].name, "input_scale");
                    e->extra[0].len = e->cols;
                }
                /* TEQ folding=false: every linear has its own trained scale (numerics 6) */
                if (cfg->algo == WQ_ALGO_TEQ && !cfg->ap.folding) {
                    e->n_extra = 1;
                    snprintf(e->extra[0].name, sizeof e->extra[0].name, "input_scale");
                    e->extra[0].len = e->cols;
                }
            } else if (cfg->algo == WQ_ALGO_HQQ) {
                /* HQQ zero-points are real numbers (numerics 7.4): stored as an extra, the packed
                 * qzeros hold 0 (docs/container.md) */
                e->n_extra = 1;
                snprintf(e->extra[0].name, sizeof e->extra[0].name, "zero_point");
                e->extra[0].len = e->rows * ((e->cols + e->group_size_eff - 1) / e->group_size_eff);
                cost[i] = t->numel * 20; /* solver iterations */
            } else if (cfg->algo != WQ_ALGO_RTN) {
                e->has_gidx = 0;
                snprintf(e->algorithm, sizeof e->algorithm, "rtn");
            }
        } else {
            e->kind = WQ_H5_RAW;
            snprintf(e->name, sizeof e->name, "%s", t->name);
            e->linear = is_linear_weight(t, layer, sizeof layer);
            cost[i] = t->numel / 8; /* a copy is cheaper than quantizing */
            /* AWQ rescales the blocks' norms: written by the block pass */
            if ((cfg->algo == WQ_ALGO_AWQ || cfg->algo == WQ_ALGO_TEQ) && strncmp(t->name, "model.layers.", 13) == 0 &&
                strstr(t->name, "layernorm.weight"))
                cost[i] = -1;
        }
    }
    if (wq_dist_rank(d) == 0) st = wq_dist_plan_items(cost, n, wq_dist_size(d), p->owner, p->order);
    st = wq_dist_agree(d, st);
    if (st == WQ_OK) st = wq_dist_bcast(d, 0, p->owner, (size_t)n * sizeof *p->owner);
    if (st == WQ_OK) st = wq_dist_bcast(d, 0, p->order, (size_t)n * sizeof *p->order);
    for (int64_t i = 0; st == WQ_OK && i < n; i++)
        if (cost[i] < 0) p->owner[i] = -1; /* done by the calibrated block pass */
done:
    wq_free(cost);
    st = wq_dist_agree(d, st);
    if (st != WQ_OK) plan_free(p);
    return st;
}

/* Quantizes (or copies) entry i on this rank and writes it to the container. */
static int64_t lookup_entry(void *ctx, const char *layer)
{
    const plan *p = ctx;
    for (int64_t i = 0; i < p->n; i++)
        if (p->entries[i].kind == WQ_H5_QLINEAR && strcmp(p->entries[i].name, layer) == 0) return i;
    return -1;
}

/* A raw tensor written by the block pass (owner -1), e.g. AWQ's rescaled norms. */
static int64_t lookup_raw(void *ctx, const char *name)
{
    const plan *p = ctx;
    for (int64_t i = 0; i < p->n; i++)
        if (p->entries[i].kind == WQ_H5_RAW && p->owner[i] < 0 && strcmp(p->entries[i].name, name) == 0)
            return i;
    return -1;
}

/* The calibrated pass (GPTQ, AWQ, TEQ, AutoRound): calibration windows, then block-sequential
 * quantization (TEQ: whole-model training). Collective. */
static wq_status run_calibrated(wq_dist *d, const wq_config *cfg, const char *model_dir,
                                const wq_model_cfg *mc, const wq_st_model *m, const plan *p,
                                wq_h5_file *f, wq_ckpt *ck, int stages, int progress,
                                double predicted_block_s)
{
    wq_status st = WQ_OK;
    wq_tokenizer *tok = NULL;
    wq_calib_set cs = {0};
    const int32_t **ids = NULL;
    int64_t *lens = NULL;
    wq_engine *e = NULL;
    if (!cfg->calib.text[0]) {
        WQ_LOG_ERROR("%s needs calibration data: set \"calibration\": {\"text\": FILE, ...} in the "
                     "config (or --calib-text)",
                     wq_algo_name(cfg->algo));
        st = WQ_ERR_ARG;
    }
    if (st == WQ_OK) st = wq_cli_load_tokenizer(model_dir, mc->vocab_size, &tok);
    if (st == WQ_OK) st = wq_data_calib_load(&cfg->calib, tok, &cs);
    if (st == WQ_OK && cs.seqlen > mc->max_position_embeddings) {
        WQ_LOG_ERROR("calibration seqlen %lld exceeds max_position_embeddings %lld of the model",
                     (long long)cs.seqlen, (long long)mc->max_position_embeddings);
        st = WQ_ERR_ARG;
    }
    if (st == WQ_OK) {
        ids = wq_calloc((size_t)cs.n_samples + 1, sizeof *ids);
        lens = wq_calloc((size_t)cs.n_samples + 1, sizeof *lens);
        if (!ids || !lens) st = WQ_ERR_NOMEM;
        for (int64_t k = 0; st == WQ_OK && k < cs.n_samples; k++) {
            ids[k] = cs.ids + k * cs.seqlen;
            lens[k] = cs.seqlen;
        }
    }
    st = wq_dist_agree(d, st);
    wq_weight_source src = wq_source_safetensors(m);
    if (st == WQ_OK && cfg->algo == WQ_ALGO_TEQ) /* whole-model training, data parallel */
        st = wq_cli_teq_run(d, mc, &src, cfg, ids, lens, cs.n_samples, f, p->entries, lookup_entry,
                            lookup_raw, (void *)p, progress);
    else if (st == WQ_OK)
        st = wq_engine_create(d, mc, stages, ids, lens, cs.n_samples, &e);
    if (st == WQ_OK && e) st = wq_dist_agree(d, wq_engine_embed(e, &src));
    if (st == WQ_OK && e && cfg->algo == WQ_ALGO_GPTQ)
        st = wq_cli_gptq_run(d, e, mc, &src, cfg, cs.n_samples, f, ck, p->entries, lookup_entry,
                             (void *)p, progress, predicted_block_s);
    else if (st == WQ_OK && e && cfg->algo == WQ_ALGO_AWQ)
        st = wq_cli_awq_run(d, e, mc, &src, cfg, f, p->entries, lookup_entry, (void *)p, lookup_raw,
                            progress, predicted_block_s);
    else if (st == WQ_OK && e && cfg->algo == WQ_ALGO_AUTOROUND)
        st = wq_cli_autoround_run(d, e, mc, &src, cfg, cs.n_samples, f, p->entries, lookup_entry,
                                  (void *)p, progress);
    wq_engine_destroy(e);
    wq_free(ids);
    wq_free(lens);
    wq_data_calib_free(&cs);
    wq_tok_free(tok);
    return st;
}

/* Does entry e go through RTN chunk by chunk? (HQQ and use_mse_search need the whole layer.) */
static int streams(const wq_config *cfg, const wq_h5_entry *e)
{
    return e->kind == WQ_H5_QLINEAR && cfg->algo != WQ_ALGO_HQQ && !e->spec.mse_search;
}

/* f32 scratch elements entry e needs (0: none). */
static int64_t scratch_elems(const wq_config *cfg, const plan *p, int64_t i)
{
    const wq_h5_entry *e = &p->entries[i];
    if (e->kind != WQ_H5_QLINEAR) return 0;
    if (!streams(cfg, e)) return p->tensors[i]->numel;
    const int64_t rows = wq_algo_rtn_stream_rows(e->cols);
    return (rows < e->rows ? rows : e->rows) * e->cols;
}

/* RTN of entry i, WQ_RTN_STREAM_ELEMS at a time through w (a whole-layer f32 copy went to memory
 * and back three times). */
static wq_status rtn_streamed(const wq_st_model *m, const plan *p, int64_t i, float *w,
                              wq_qmatrix *q)
{
    const wq_st_tensor *t = p->tensors[i];
    const wq_h5_entry *e = &p->entries[i];
    const int64_t chunk = wq_algo_rtn_stream_rows(e->cols);
    WQ_TRY(wq_qmatrix_init(q, e->rows, e->cols, e->group_size_eff, e->spec.dtype, e->spec.bits));
    wq_status st = WQ_OK;
    for (int64_t r = 0; st == WQ_OK && r < e->rows; r += chunk) {
        const int64_t n = e->rows - r < chunk ? e->rows - r : chunk;
        st = wq_st_read_rows_f32(m, t, r, n, w);
        if (st == WQ_OK) st = wq_algo_rtn_quantize_rows(&e->spec, e->name, w, r, n, q);
    }
    if (st == WQ_OK) wq_algo_rtn_finish(&e->spec, q);
    if (st != WQ_OK) wq_qmatrix_free(q);
    return st;
}

/* w: this rank's f32 scratch (the largest scratch_elems), reused from tensor to tensor: a fresh
 * allocation per tensor would page-fault and zero it each time. */
static wq_status process_entry(const wq_config *cfg, const wq_st_model *m, const plan *p, int64_t i,
                               wq_h5_file *f, wq_ckpt *ck, float *w)
{
    wq_status st = WQ_OK;
    const wq_st_tensor *t = p->tensors[i];
    const wq_h5_entry *e = &p->entries[i];
    if (e->kind == WQ_H5_RAW) {
        void *buf = wq_malloc(t->nbytes ? t->nbytes : 1);
        if (!buf) return WQ_ERR_NOMEM;
        st = wq_st_read_raw(m, t, buf);
        if (st == WQ_OK) st = wq_h5_write_raw(f, i, buf);
        wq_free(buf);
        return st;
    }
    wq_qmatrix q = {0};
    int hqq = cfg->algo == WQ_ALGO_HQQ && e->n_extra == 1;
    if (wq_ckpt_entry_done(ck, i)) {
        wq_ckpt_extra ex[WQ_CKPT_MAX_EXTRA];
        int n_ex = 0;
        st = wq_ckpt_load(ck, i, e->rows, e->cols, e->group_size_eff, e->spec.dtype, e->spec.bits,
                          &q, ex, &n_ex);
        wq_ckpt_extras_free(ex, n_ex);
    } else if (streams(cfg, e)) {
        st = rtn_streamed(m, p, i, w, &q);
    } else {
        st = wq_st_read_f32(m, t, w);
        if (st == WQ_OK && hqq)
            st = wq_algo_hqq_quantize(&e->spec, &cfg->ap, e->name, w, e->rows, e->cols, &q);
        else if (st == WQ_OK)
            st = wq_algo_rtn_quantize(&e->spec, e->name, w, e->rows, e->cols, &q, NULL);
    }
    /* HQQ's real zero-points are still in q.zeros here: one checkpoint format for both */
    if (st == WQ_OK && !wq_ckpt_entry_done(ck, i)) st = wq_ckpt_save(ck, i, &q, NULL, 0);
    if (hqq) {
        if (st == WQ_OK) {
            float *z = wq_malloc((size_t)(q.rows * q.ngroups) * sizeof(float));
            if (!z) {
                st = WQ_ERR_NOMEM;
            } else {
                memcpy(z, q.zeros, (size_t)(q.rows * q.ngroups) * sizeof(float));
                memset(q.zeros, 0, (size_t)(q.rows * q.ngroups) * sizeof(float));
                st = wq_h5_write_qlinear(f, i, &q);
                if (st == WQ_OK) st = wq_h5_write_extra(f, i, "zero_point", z);
                wq_free(z);
            }
        }
    } else if (st == WQ_OK) {
        st = wq_h5_write_qlinear(f, i, &q);
    }
    wq_qmatrix_free(&q);
    return st;
}

/* Runs the rounds: in round k every rank processes its k-th item in the planned order (its k-th
 * largest, so the ranks that meet after each round have done similar work); rank 0 prints one
 * progress line per tensor. Collective. */
static wq_status run_rounds(wq_dist *d, const wq_config *cfg, const wq_st_model *m, const plan *p,
                            wq_h5_file *f, wq_ckpt *ck, int progress)
{
    wq_status st = WQ_OK;
    int rank = wq_dist_rank(d), size = wq_dist_size(d);
    int64_t mine = 0, most = 1; /* the f32 scratch this rank needs */
    for (int64_t i = 0; i < p->n; i++) {
        mine += p->owner[i] == rank;
        const int64_t need = p->owner[i] == rank ? scratch_elems(cfg, p, i) : 0;
        if (need > most) most = need;
    }
    int64_t n_rounds_items = 0;
    for (int64_t i = 0; i < p->n; i++) n_rounds_items += p->owner[i] >= 0;
    double rmax = (double)mine;
    WQ_TRY(wq_dist_allreduce_max_f64(d, &rmax, 1));
    int64_t rounds = (int64_t)rmax;
    int64_t pos = 0, done_count = 0; /* position in p->order */
    double *info = wq_malloc((size_t)size * 3 * sizeof(double));
    float *w = wq_malloc((size_t)most * sizeof(float));
    if (!info || !w) st = WQ_ERR_NOMEM;
    st = wq_dist_agree(d, st);
    if (st != WQ_OK) rounds = 0;
    for (int64_t r = 0; r < rounds; r++) {
        while (pos < p->n && p->owner[p->order[pos]] != rank)
            pos++;
        double mine_info[3] = {-1, 0, 0}; /* entry index, seconds, bytes */
        if (pos < p->n && st == WQ_OK) {
            const int64_t next = p->order[pos++];
            double t0 = wq_cli_now();
            wq_dist_fault_point(d, "tensor", next);
            st = process_entry(cfg, m, p, next, f, ck, w);
            wq_alloc_release_free(); /* freed pieces of this tensor's buffers stay out of the RSS */
            mine_info[0] = (double)next;
            mine_info[1] = wq_cli_now() - t0;
            mine_info[2] = (double)p->tensors[next]->nbytes;
        }
        st = wq_dist_agree(d, st);
        if (st != WQ_OK) break;
        if (progress) {
            wq_status gs = wq_dist_allgather_bytes(d, mine_info, sizeof mine_info, info);
            if (gs != WQ_OK) {
                st = gs;
                break;
            }
            for (int k = 0; rank == 0 && k < size; k++) {
                if (info[3 * k] < 0) continue;
                const wq_h5_entry *e = &p->entries[(int64_t)info[3 * k]];
                done_count++;
                fprintf(stderr, "[%4lld/%lld] %-44s r%-3d %-5s %8.1f MB/s\n", (long long)done_count,
                        (long long)n_rounds_items, e->name, k,
                        e->kind == WQ_H5_QLINEAR ? wq_qdtype_name(e->spec.dtype) : "copy",
                        info[3 * k + 2] / 1e6 / (info[3 * k + 1] > 1e-9 ? info[3 * k + 1] : 1e-9));
            }
        }
    }
    wq_free(info);
    wq_free(w);
    return st;
}

/* The planner's grid (docs/planning.md). Rank 0's memory budget is broadcast so every rank decides
 * the same; the grid never changes the results, only time and memory. Refuses before anything is
 * written when no grid fits the budget. *stages: 0 = choose. Collective. */
static wq_status plan_grid(wq_dist *d, const wq_config *cfg, const wq_model_cfg *mc,
                           const wq_st_model *m, const char *machine_path, double budget,
                           int checkpoint, int64_t *stages, wq_cost_plan *out)
{
    wq_machine mach;
    int measured = 0;
    WQ_TRY(wq_cli_machine_load(d, machine_path, machine_path != NULL, &mach, &measured));
    int src_bytes = 2;
    for (int64_t i = 0; i < wq_st_count(m); i++)
        if (wq_st_at(m, i)->ndim == 2) {
            src_bytes = (int)wq_dtype_size(wq_st_at(m, i)->dtype);
            break;
        }
    wq_cost_shape s;
    wq_cost_job j;
    wq_cli_cost_shape(mc, src_bytes, &s);
    wq_cli_cost_job(cfg, &j);
    j.no_checkpoint = !checkpoint;
    const int size = wq_dist_size(d), rpn = wq_dist_node_size(d);
    const char *nt = getenv("OPENBLAS_NUM_THREADS");
    const int threads = nt && atoi(nt) > 0 ? atoi(nt) : 1;
    double b = budget > 0 ? budget : wq_cli_mem_total() / rpn;
    WQ_TRY(wq_dist_bcast(d, 0, &b, sizeof b));
    char why[512], b1[32], b2[32];
    wq_status st = WQ_OK;
    if (*stages > 0) { /* the user's grid; an out-of-range P is reported by the engine */
        const int64_t maxP = s.n_layers < size ? s.n_layers : size;
        st = wq_cost_run(&s, &j, &mach, size, (int)(*stages < maxP ? *stages : maxP), threads, rpn, out);
        snprintf(why, sizeof why, "P=%d x D=%d (--stages)", out->P, out->D);
        if (st == WQ_OK && out->mem.total > b) {
            snprintf(why, sizeof why, "--stages %lld needs %s per rank (at the %s), more than the budget of %s",
                     (long long)*stages, wq_cost_fmt_bytes(out->mem.total, b1, sizeof b1), out->mem.phase,
                     wq_cost_fmt_bytes(b, b2, sizeof b2));
            st = WQ_ERR_ARG;
        }
    } else {
        st = wq_cost_choose(&s, &j, &mach, size, threads, rpn, b, out, why, sizeof why);
        if (st == WQ_OK) *stages = out->P;
    }
    if (st == WQ_ERR_ARG) {
        if (wq_dist_rank(d) == 0)
            WQ_LOG_ERROR("memory budget cannot be met: %s. Raise --max-memory (default MemTotal / "
                         "ranks per node), run fewer ranks per node, or calibrate on fewer or "
                         "shorter samples",
                         why);
        return st; /* every rank decided the same from the same inputs: all exit 2 */
    }
    if (st == WQ_OK)
        WQ_LOG_ROOT("plan: %s; predicted %.1f s (%.2f s per block), peak %s per rank, budget %s (%s "
                    "machine constants)",
                    why, out->seconds, out->t_block, wq_cost_fmt_bytes(out->mem.total, b1, sizeof b1),
                    wq_cost_fmt_bytes(b, b2, sizeof b2), measured ? "machine-file" : "default");
    return wq_dist_agree(d, st);
}

int wq_cmd_quantize(int argc, char **argv, wq_dist *d)
{
    wq_opt opts[] = {
        {"model", WQ_OPT_VALUE, "DIR", "HuggingFace model directory (config.json + safetensors)"},
        {"config", WQ_OPT_VALUE, "FILE", "wquant config (INC dict form); default: --algo defaults"},
        {"out", WQ_OPT_VALUE, "FILE.h5", "output container (qconfig.json is written beside it)"},
        {"algo", WQ_OPT_VALUE, "NAME", "rtn (default without --config)"},
        {"dtype", WQ_OPT_VALUE, "T", "override: int, int2..int8, nf4, fp4, fp4_e2m1"},
        {"bits", WQ_OPT_VALUE, "N", "override: bits 1..8"},
        {"group-size", WQ_OPT_VALUE, "G", "override: group size (-1 = per output channel)"},
        {"sym", WQ_OPT_FLAG, NULL, "override: symmetric"},
        {"asym", WQ_OPT_FLAG, NULL, "override: asymmetric"},
        {"set", WQ_OPT_VALUE, "K=V,...", "override any global key, e.g. use_mse_search=true"},
        {"calib-text", WQ_OPT_VALUE, "FILE", "calibration text (sets calibration.text)"},
        {"stages", WQ_OPT_VALUE, "P", "pipeline stages for calibrated algorithms (default: the planner's)"},
        {"max-memory", WQ_OPT_VALUE, "SIZE", "memory budget per rank, e.g. 8G (default: MemTotal / ranks per node)"},
        {"machine", WQ_OPT_VALUE, "FILE", "planner constants (default: see docs/planning.md)"},
        {"resume", WQ_OPT_FLAG, NULL,
         "continue an interrupted run from its checkpoint OUT.ckpt/ (rtn, hqq, gptq)"},
        {"no-checkpoint", WQ_OPT_FLAG, NULL,
         "do not write the checkpoint (a killed run restarts from zero)"},
        {"quiet", WQ_OPT_FLAG, NULL, "no progress lines"},
        {"help", WQ_OPT_FLAG, NULL, "this help"},
        {NULL},
    };
    const char *pos[1];
    int n_pos = 0;
    if (wq_cli_parse(argc, argv, 2, opts, pos, 0, &n_pos) != 0) return 2;
    if (wq_cli_opt(opts, "help")->count) {
        if (wq_dist_rank(d) == 0)
            wq_cli_print_help("wquant quantize --model DIR [--config FILE] --out FILE.h5 [overrides]",
                              "Quantizes every linear layer the config selects and writes one "
                              "parallel-HDF5 container\n(plus qconfig.json). Run under mpiexec for "
                              "many ranks; the result is identical for any rank count.",
                              opts);
        return 0;
    }
    const char *model_dir = wq_cli_opt(opts, "model")->value;
    const char *out = wq_cli_opt(opts, "out")->value;
    if (!model_dir || !out) {
        if (wq_dist_rank(d) == 0) fprintf(stderr, "wquant quantize: --model and --out are required\n");
        return 2;
    }
    int progress = !wq_cli_opt(opts, "quiet")->count && isatty(2);
    int64_t stages = 0;
    if (wq_cli_get_int(opts, "stages", 1, 1 << 20, &stages)) return 2;
    double budget = 0;
    const char *mm = wq_cli_opt(opts, "max-memory")->value;
    if (mm && wq_cli_parse_bytes(mm, &budget)) {
        if (wq_dist_rank(d) == 0)
            fprintf(stderr, "wquant quantize: --max-memory '%s' is not a size (e.g. 8G, 800M)\n", mm);
        return 2;
    }
    int resume = wq_cli_opt(opts, "resume")->count > 0;
    int use_ckpt = !wq_cli_opt(opts, "no-checkpoint")->count;
    if (resume && !use_ckpt) {
        if (wq_dist_rank(d) == 0)
            fprintf(stderr, "wquant quantize: --resume contradicts --no-checkpoint\n");
        return 2;
    }
    wq_config cfg;
    wq_status st = load_config(d, opts, &cfg);
    if (st != WQ_OK) return wq_cli_exit_code(st);

    wq_st_model *m = NULL;
    plan p = {0};
    wq_h5_file *f = NULL;
    char *src_cfg = NULL, *cfg_json = NULL;
    wq_ckpt *ck = NULL;
    wq_model_cfg mc;
    double t0 = wq_cli_now();
    st = wq_st_open(model_dir, &m);
    if (st == WQ_OK) {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", model_dir);
        st = wq_hf_config_load(path, &mc);
        if (st == WQ_OK) st = wq_read_text_file(path, &src_cfg, NULL);
        if (st == WQ_OK) st = wq_hf_check_tensors(&mc, m);
    }
    st = wq_dist_agree(d, st);
    wq_cost_plan cp = {0};
    if (st == WQ_OK)
        st = plan_grid(d, &cfg, &mc, m, wq_cli_opt(opts, "machine")->value, budget, use_ckpt,
                       &stages, &cp);
    if (st == WQ_OK) st = build_plan(d, &cfg, m, &p);
    if (st == WQ_OK) {
        cfg_json = wq_config_to_json(&cfg);
        st = cfg_json ? WQ_OK : WQ_ERR_NOMEM;
        st = wq_dist_agree(d, st);
    }
    if (st == WQ_OK && cfg.algo != WQ_ALGO_RTN && cfg.algo != WQ_ALGO_HQQ &&
        cfg.algo != WQ_ALGO_GPTQ) {
        if (resume) {
            WQ_LOG_ERROR(
                "--resume is not supported for %s (no checkpoints; supported: rtn, hqq, gptq): "
                "rerun without --resume",
                wq_algo_name(cfg.algo));
            st = WQ_ERR_ARG;
        }
        use_ckpt = 0;
    }
    st = wq_dist_agree(d, st);
    if (st == WQ_OK) st = wq_h5_create(d, out, p.entries, p.n, src_cfg, cfg_json, &f);
    if (st == WQ_OK && use_ckpt) {
        int calibrated = cfg.algo == WQ_ALGO_GPTQ;
        st = wq_ckpt_open(d, out, resume, cfg_json, m, src_cfg, calibrated ? cfg.calib.text : NULL,
                          p.n, mc.n_layers, &ck);
        if (st != WQ_OK) {
            wq_h5_finish(f, st); /* removes the temporary container */
            f = NULL;
        }
    }
    if (st == WQ_OK) {
        WQ_LOG_ROOT("quantizing %lld tensors of %s with %s on %d rank(s)", (long long)p.n,
                    model_dir, wq_algo_name(cfg.algo), wq_dist_size(d));
        wq_status rs = run_rounds(d, &cfg, m, &p, f, ck, progress);
        if (rs == WQ_OK && wq_cli_calibrated_algo(cfg.algo))
            rs = run_calibrated(d, &cfg, model_dir, &mc, m, &p, f, ck, (int)stages, progress, cp.t_block);
        st = wq_h5_finish(f, rs); /* collective: marks complete or removes the temporary file */
        f = NULL;
    }
    if (st == WQ_OK && wq_dist_rank(d) == 0) st = wq_h5_write_qconfig(out, &cfg, p.entries, p.n);
    st = wq_dist_agree(d, st);
    if (st == WQ_OK && ck)
        st = wq_ckpt_remove(d, ck); /* the container is complete */
    else if (ck && wq_dist_rank(d) == 0)
        fprintf(
            stderr,
            "wquant quantize: finished work is kept in %s.ckpt: rerun with --resume to continue\n",
            out);
    if (st == WQ_OK) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double peak_mb = (double)ru.ru_maxrss / 1024.0; /* max over ranks */
        wq_dist_allreduce_max_f64(d, &peak_mb, 1);
        /* t0 starts after MPI init: the prediction without the startup term */
        WQ_LOG_ROOT("wrote %s in %.2f s (predicted %.2f s); peak RSS %.1f MiB per rank (max over "
                    "ranks; predicted %.1f MiB)",
                    out, wq_cli_now() - t0, cp.seconds - cp.t_startup, peak_mb, cp.mem.total / 1048576.0);
    } else if (wq_dist_rank(d) == 0)
        fprintf(stderr, "wquant quantize: failed (%s); no container written at %s\n",
                wq_status_str(st), out);
    wq_ckpt_close(ck);
    wq_free(cfg_json);
    wq_free(src_cfg);
    plan_free(&p);
    wq_st_close(m);
    wq_config_free(&cfg);
    return wq_cli_exit_code(st);
}
