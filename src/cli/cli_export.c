/* cli_export.c: `wquant export`: a container as a HuggingFace directory, dequantized
 * (safetensors-fp16) or packed for GPTQ / AutoAWQ loaders (model/export_hf.h). This file is the
 * glue between the container reader (io_hdf5) and the exporters, which see plain data only. Rank 0
 * does the work (the reader is serial); the other ranks agree on the outcome. Layer: cli. */
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

static wq_status export_packed(const char *path, const char *outdir, const wq_hf_export_opts *o)
{
    wq_h5_reader *r = NULL;
    WQ_TRY(wq_h5_open(path, &r));
    int64_t n = wq_h5_count(r);
    wq_hf_entry *es = wq_calloc((size_t)n + 1, sizeof *es);
    if (!es) {
        wq_h5_close(r);
        return WQ_ERR_NOMEM;
    }
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
        x->n_extra = e->n_extra < WQ_HF_MAX_EXTRA ? e->n_extra : WQ_HF_MAX_EXTRA;
        for (int k = 0; k < x->n_extra; k++)
            x->extra[k] = e->extra[k].name;
    }
    wq_hf_io io = {(void *)r, io_qmatrix, io_raw};
    wq_status st =
        wq_hf_export(outdir, es, n, &io, wq_h5_source_config(r), wq_h5_wquant_config(r), o);
    wq_free(es);
    wq_h5_close(r);
    return st;
}

int wq_cmd_export(int argc, char **argv, wq_dist *d)
{
    wq_opt opts[] = {
        {"format", WQ_OPT_VALUE, "FMT",
         "safetensors-fp16 (dequantized), gptq (AutoGPTQ/GPTQModel/vLLM), awq (AutoAWQ GEMM)"},
        {"max-shard-mb", WQ_OPT_VALUE, "MB",
         "gptq/awq: shard size limit (default 4000; 10^6 bytes)"},
        {"gptq-v1", WQ_OPT_FLAG, NULL,
         "gptq: force checkpoint_format gptq (v1); refused if a zero point is 0 (lossy)"},
        {"model", WQ_OPT_VALUE, "DIR", "copy the tokenizer files from this HF model directory"},
        {"help", WQ_OPT_FLAG, NULL, "this help"},
        {NULL},
    };
    const char *pos[2];
    int n_pos = 0;
    if (wq_cli_parse(argc, argv, 2, opts, pos, 2, &n_pos) != 0) return 2;
    if (wq_cli_opt(opts, "help")->count) {
        if (wq_dist_rank(d) == 0)
            wq_cli_print_help(
                "wquant export --format FMT FILE.h5 OUTDIR [--model DIR]",
                "Writes a container as a HuggingFace directory. gptq: int 2/3/4/8-bit "
                "layers sharing bits, group size and sym, group size dividing every "
                "in_features; awq: int4 asym likewise, no input_scale extras.",
                opts);
        return 0;
    }
    const char *fmt = wq_cli_opt(opts, "format")->value,
               *mb = wq_cli_opt(opts, "max-shard-mb")->value;
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
    wq_status st = WQ_OK;
    int fp16 = strcmp(fmt, "safetensors-fp16") == 0;
    if (!fp16 && strcmp(fmt, "gptq") != 0 && strcmp(fmt, "awq") != 0) {
        if (wq_dist_rank(d) == 0)
            WQ_LOG_ERROR("export: unknown --format '%s'; available: safetensors-fp16, gptq, awq",
                         fmt);
        st = WQ_ERR_ARG;
    } else if (wq_dist_rank(d) == 0) {
        if (fp16) {
            st = export_fp16(pos[0], pos[1]);
            if (st == WQ_OK && o.tokenizer_dir) st = wq_hf_copy_tokenizer(o.tokenizer_dir, pos[1]);
        } else {
            o.format = strcmp(fmt, "gptq") == 0 ? WQ_HF_GPTQ : WQ_HF_AWQ;
            st = export_packed(pos[0], pos[1], &o);
        }
    }
    return wq_cli_exit_code(wq_dist_agree(d, st));
}
