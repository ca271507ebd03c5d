/* cli_export.c: `wquant export`: a container as a HuggingFace directory, dequantized
 * (safetensors-fp16), packed for GPTQ / AutoAWQ loaders (model/export_hf.h) or as a llama.cpp GGUF
 * file (model/export_gguf.h). This file is the glue between the container reader (io_hdf5) and the
 * exporters, which see plain data only. Rank 0 does the work (the reader is serial); the other
 * ranks agree on the outcome. Layer: cli. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/cli_source.h"
#include "core/core_alloc.h"
#include "core/core_half.h"
#include "core/core_log.h"
#include "io_hdf5/h5_container.h"
#include "model/export_gguf.h"
#include "model/export_hf.h"
#include "model/st_writer.h"

static int64_t numel_of(const wq_h5_entry *e)
{
    int64_t n = 1;
    for (int k = 0; k < e->ndim; k++)
        n *= e->shape[k];
    return n;
}

/* ---- safetensors-fp16 ------------------------------------------------------------------------ */

static wq_status write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        WQ_LOG_ERROR("cannot write '%s': %s", path, strerror(errno));
        return WQ_ERR_IO;
    }
    int ok = fputs(text, f) >= 0;
    ok = fclose(f) == 0 && ok;
    return ok ? WQ_OK : WQ_ERR_IO;
}

/* Dequantized HF directory: config.json (torch_dtype float16) + model.safetensors (F16). */
static wq_status export_fp16(const char *path, const char *outdir)
{
    wq_status st = WQ_OK;
    wq_h5_reader *r = NULL;
    wq_st_writer *w = NULL;
    float *buf = NULL;
    uint16_t *half = NULL;
    WQ_TRY(wq_h5_open(path, &r));
    wq_weight_source src = wq_source_container(r);
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        WQ_LOG_ERROR("cannot create the output directory '%s': %s", outdir, strerror(errno));
        wq_h5_close(r);
        return WQ_ERR_IO;
    }
    char p[4200];
    int64_t n = wq_h5_count(r), maxn = 1;
    snprintf(p, sizeof p, "%s/model.safetensors", outdir);
    WQ_TRY_GOTO(wq_st_writer_create(p, &w), st, done);
    for (int64_t i = 0; i < n; i++) {
        const wq_h5_entry *e = wq_h5_entry_at(r, i);
        char name[300];
        snprintf(name, sizeof name, "%s%s", e->name, e->kind == WQ_H5_QLINEAR ? ".weight" : "");
        wq_dtype t = (e->orig_dtype == WQ_DTYPE_F32 || e->orig_dtype == WQ_DTYPE_F16 ||
                      e->orig_dtype == WQ_DTYPE_BF16 || e->kind == WQ_H5_QLINEAR)
                         ? WQ_DTYPE_F16
                         : e->orig_dtype;
        WQ_CHECK_GOTO(t == WQ_DTYPE_F16, st, WQ_ERR_UNSUPPORTED, done,
                      "export: tensor '%s' has non-float dtype %s", e->name, wq_dtype_name(t));
        WQ_TRY_GOTO(wq_st_writer_declare(w, name, t, e->ndim, e->shape), st, done);
        if (numel_of(e) > maxn) maxn = numel_of(e);
    }
    WQ_TRY_GOTO(wq_st_writer_begin_data(w), st, done);
    buf = wq_malloc((size_t)maxn * sizeof(float));
    half = wq_malloc((size_t)maxn * sizeof(uint16_t));
    WQ_CHECK_GOTO(buf && half, st, WQ_ERR_NOMEM, done, "out of memory exporting '%s'", path);
    for (int64_t i = 0; i < n; i++) {
        const wq_h5_entry *e = wq_h5_entry_at(r, i);
        /* through the weight source, so algorithm extras (AWQ input scales) are applied */
        char tname[300];
        snprintf(tname, sizeof tname, "%s%s", e->name, e->kind == WQ_H5_QLINEAR ? ".weight" : "");
        WQ_TRY_GOTO(src.read_f32(src.ctx, tname, buf, numel_of(e)), st, done);
        wq_convert_from_f32(WQ_DTYPE_F16, buf, half, (size_t)numel_of(e));
        WQ_TRY_GOTO(wq_st_writer_write(w, half, (size_t)numel_of(e) * 2), st, done);
    }
    st = wq_st_writer_finish(w);
    w = NULL;
    if (st == WQ_OK) {
        cJSON *cfg = cJSON_Parse(wq_h5_source_config(r));
        WQ_CHECK_GOTO(cfg, st, WQ_ERR_FORMAT, done, "%s: the stored source config is not JSON",
                      path);
        cJSON_DeleteItemFromObject(cfg, "torch_dtype");
        cJSON_AddStringToObject(cfg, "torch_dtype", "float16");
        char *s = cJSON_Print(cfg);
        cJSON_Delete(cfg);
        snprintf(p, sizeof p, "%s/config.json", outdir);
        st = s ? write_text(p, s) : WQ_ERR_NOMEM;
        cJSON_free(s);
    }
done:
    wq_st_writer_abort(w);
    wq_free(buf);
    wq_free(half);
    wq_h5_close(r);
    return st;
}

/* ---- gptq / awq: the reader behind the exporter's plain-data callbacks ------------------------
 */

static wq_status io_qmatrix(void *ctx, int64_t i, wq_qmatrix *out)
{
    const wq_h5_reader *r = ctx;
    return wq_h5_read_qmatrix(r, wq_h5_entry_at(r, i), out);
}

static wq_status io_raw(void *ctx, int64_t i, void *dst)
{
    const wq_h5_reader *r = ctx;
    return wq_h5_read_raw(r, wq_h5_entry_at(r, i), dst);
}

/* The container's entries as the exporters' plain descriptions (names borrowed from r). With
 * fold_hqq, HQQ's zero_point extra is left out of the list: io_qmatrix_folded applies it. */
static wq_hf_entry *list_entries(const wq_h5_reader *r, int fold_hqq)
{
    int64_t n = wq_h5_count(r);
    wq_hf_entry *es = wq_calloc((size_t)n + 1, sizeof *es);
    if (!es) return NULL;
    for (int64_t i = 0; i < n; i++) {
        const wq_h5_entry *e = wq_h5_entry_at(r, i);
        wq_hf_entry *x = &es[i];
        x->name = e->name;
        x->quantized = e->kind == WQ_H5_QLINEAR;
        x->linear = e->linear;
        x->ndim = e->ndim;
        memcpy(x->shape, e->shape, sizeof x->shape);
        x->dtype = e->orig_dtype;
        x->rows = e->rows;
        x->cols = e->cols;
        x->spec = e->spec;
        x->group_size_eff = e->group_size_eff;
        x->has_gidx = e->has_gidx;
        for (int k = 0; k < e->n_extra && x->n_extra < WQ_HF_MAX_EXTRA; k++)
            if (!fold_hqq || strcmp(e->extra[k].name, "zero_point") != 0)
                x->extra[x->n_extra++] = e->extra[k].name;
    }
    return es;
}

static wq_status export_packed(const char *path, const char *outdir, const wq_hf_export_opts *o)
{
    wq_h5_reader *r = NULL;
    WQ_TRY(wq_h5_open(path, &r));
    wq_hf_entry *es = list_entries(r, 0);
    if (!es) {
        wq_h5_close(r);
        return WQ_ERR_NOMEM;
    }
    wq_hf_io io = {(void *)r, io_qmatrix, io_raw};
    wq_status st = wq_hf_export(outdir, es, wq_h5_count(r), &io, wq_h5_source_config(r),
                                wq_h5_wquant_config(r), o);
    wq_free(es);
    wq_h5_close(r);
    return st;
}

/* ---- gguf ------------------------------------------------------------------------------------ */

/* The qmatrix with HQQ's real-valued zero points in place of the packed (zero) qzeros, so its
 * generic dequantization is the model's weights (as the weight source computes them). */
static wq_status io_qmatrix_folded(void *ctx, int64_t i, wq_qmatrix *out)
{
    const wq_h5_reader *r = ctx;
    const wq_h5_entry *e = wq_h5_entry_at(r, i);
    WQ_TRY(wq_h5_read_qmatrix(r, e, out));
    for (int k = 0; k < e->n_extra; k++) {
        if (strcmp(e->extra[k].name, "zero_point") != 0) continue;
        wq_status st = e->extra[k].len == out->rows * out->ngroups && out->zeros
                           ? wq_h5_read_extra(r, e, "zero_point", out->zeros)
                           : WQ_ERR_FORMAT;
        if (st != WQ_OK) {
            WQ_LOG_ERROR("export gguf: layer '%s': bad zero_point extra", e->name);
            wq_qmatrix_free(out);
            return st;
        }
    }
    return WQ_OK;
}

/* The weights as eval sees them: the container's weight source, every extra applied. */
static wq_status io_f32(void *ctx, int64_t i, float *dst)
{
    const wq_h5_reader *r = ctx;
    const wq_h5_entry *e = wq_h5_entry_at(r, i);
    wq_weight_source src = wq_source_container(r);
    char name[300];
    snprintf(name, sizeof name, "%s%s", e->name, e->kind == WQ_H5_QLINEAR ? ".weight" : "");
    return src.read_f32(src.ctx, name, dst, e->rows * e->cols);
}

/* OUT ending in ".gguf" is the file; anything else is a directory (created) holding model.gguf. */
static wq_status export_gguf(const char *path, const char *out, const wq_gguf_opts *o)
{
    char file[4200];
    size_t k = strlen(out);
    if (k > 5 && strcmp(out + k - 5, ".gguf") == 0) {
        snprintf(file, sizeof file, "%s", out);
    } else {
        if (mkdir(out, 0755) != 0 && errno != EEXIST) {
            WQ_LOG_ERROR("cannot create the output directory '%s': %s", out, strerror(errno));
            return WQ_ERR_IO;
        }
        snprintf(file, sizeof file, "%s/model.gguf", out);
    }
    wq_h5_reader *r = NULL;
    WQ_TRY(wq_h5_open(path, &r));
    wq_hf_entry *es = list_entries(r, 1);
    if (!es) {
        wq_h5_close(r);
        return WQ_ERR_NOMEM;
    }
    /* general.name: the container's file name without directory and ".h5" */
    char name[256];
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(name, sizeof name, "%s", base);
    k = strlen(name);
    if (k > 3 && strcmp(name + k - 3, ".h5") == 0) name[k - 3] = 0;
    wq_gguf_opts go = *o;
    go.name = name;
    wq_gguf_io io = {(void *)r, io_qmatrix_folded, io_raw, io_f32};
    wq_gguf_report rep = {0};
    wq_status st = wq_gguf_export(file, es, wq_h5_count(r), &io, wq_h5_source_config(r), &go, &rep);
    if (st == WQ_OK)
        WQ_LOG_INFO("export gguf: %lld linears as Q4_0, %lld as Q4_1, %lld as Q8_0, %lld "
                    "dequantized (%s)",
                    (long long)rep.n_q4_0, (long long)rep.n_q4_1, (long long)rep.n_q8_0,
                    (long long)rep.n_fallback, o->fallback_f32 ? "F32" : "F16");
    wq_free(es);
    wq_h5_close(r);
    return st;
}

int wq_cmd_export(int argc, char **argv, wq_dist *d)
{
    wq_opt opts[] = {
        {"format", WQ_OPT_VALUE, "FMT",
         "safetensors-fp16 (dequantized), gptq (AutoGPTQ/GPTQModel/vLLM), awq (AutoAWQ GEMM), "
         "gguf (llama.cpp)"},
        {"max-shard-mb", WQ_OPT_VALUE, "MB",
         "gptq/awq: shard size limit (default 4000; 10^6 bytes)"},
        {"gptq-v1", WQ_OPT_FLAG, NULL,
         "gptq: force checkpoint_format gptq (v1); refused if a zero point is 0 (lossy)"},
        {"model", WQ_OPT_VALUE, "DIR",
         "copy the tokenizer files from this HF model directory (gguf: required, its "
         "tokenizer.model is embedded)"},
        {"strict", WQ_OPT_FLAG, NULL,
         "gguf: refuse layers that do not map exactly onto Q4_0/Q4_1/Q8_0 instead of writing "
         "them dequantized"},
        {"fallback", WQ_OPT_VALUE, "T", "gguf: type of dequantized layers, f16 (default) or f32"},
        {"help", WQ_OPT_FLAG, NULL, "this help"},
        {NULL},
    };
    const char *pos[2];
    int n_pos = 0;
    if (wq_cli_parse(argc, argv, 2, opts, pos, 2, &n_pos) != 0) return 2;
    if (wq_cli_opt(opts, "help")->count) {
        if (wq_dist_rank(d) == 0)
            wq_cli_print_help(
                "wquant export --format FMT FILE.h5 OUT [--model DIR]",
                "Writes a container as a HuggingFace directory OUT. gptq: int 2/3/4/8-bit "
                "layers sharing bits, group size and sym, group size dividing every "
                "in_features; awq: int4 asym likewise, no input_scale extras. gguf: one "
                "llama.cpp file (OUT.gguf, or OUT/model.gguf); int4 sym -> Q4_0, int4 asym -> "
                "Q4_1, int8 sym -> Q8_0 when groups are multiples of 32, else dequantized "
                "(docs/export.md).",
                opts);
        return 0;
    }
    const char *fmt = wq_cli_opt(opts, "format")->value,
               *mb = wq_cli_opt(opts, "max-shard-mb")->value,
               *fb = wq_cli_opt(opts, "fallback")->value;
    if (n_pos != 2 || !fmt) {
        if (wq_dist_rank(d) == 0)
            fprintf(stderr, "wquant export: expected --format FMT FILE.h5 OUTDIR\n");
        return 2;
    }
    wq_hf_export_opts o = {0};
    o.gptq_v1 = wq_cli_opt(opts, "gptq-v1")->count > 0;
    o.tokenizer_dir = wq_cli_opt(opts, "model")->value;
    if (mb) {
        char *end = NULL;
        double v = strtod(mb, &end);
        if (end == mb || *end || !(v > 0)) {
            if (wq_dist_rank(d) == 0)
                fprintf(stderr, "wquant export: --max-shard-mb must be > 0\n");
            return 2;
        }
        o.max_shard_bytes = v * 1e6;
    }
    if (fb && strcmp(fb, "f16") != 0 && strcmp(fb, "f32") != 0) {
        if (wq_dist_rank(d) == 0)
            fprintf(stderr, "wquant export: --fallback must be f16 or f32 (got '%s')\n", fb);
        return 2;
    }
    wq_status st = WQ_OK;
    int fp16 = strcmp(fmt, "safetensors-fp16") == 0, gguf = strcmp(fmt, "gguf") == 0;
    if (!fp16 && !gguf && strcmp(fmt, "gptq") != 0 && strcmp(fmt, "awq") != 0) {
        if (wq_dist_rank(d) == 0)
            WQ_LOG_ERROR(
                "export: unknown --format '%s'; available: safetensors-fp16, gptq, awq, gguf", fmt);
        st = WQ_ERR_ARG;
    } else if (gguf && !o.tokenizer_dir) {
        if (wq_dist_rank(d) == 0)
            WQ_LOG_ERROR("export gguf: --model DIR is required (the GGUF file embeds the "
                         "tokenizer from DIR/tokenizer.model)");
        st = WQ_ERR_ARG;
    } else if (wq_dist_rank(d) == 0) {
        if (gguf) {
            wq_gguf_opts g = {0};
            g.tokenizer = o.tokenizer_dir;
            g.strict = wq_cli_opt(opts, "strict")->count > 0;
            g.fallback_f32 = fb && strcmp(fb, "f32") == 0;
            st = export_gguf(pos[0], pos[1], &g);
        } else if (fp16) {
            st = export_fp16(pos[0], pos[1]);
            if (st == WQ_OK && o.tokenizer_dir) st = wq_hf_copy_tokenizer(o.tokenizer_dir, pos[1]);
        } else {
            o.format = strcmp(fmt, "gptq") == 0 ? WQ_HF_GPTQ : WQ_HF_AWQ;
            st = export_packed(pos[0], pos[1], &o);
        }
    }
    return wq_cli_exit_code(wq_dist_agree(d, st));
}
