/* cli_inspect.c: `wquant inspect` (layers, settings, sizes) and `wquant export`. Rank 0 does the
 * work (the reader is serial); other ranks just agree on the outcome. Layer: cli. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "core/core_alloc.h"
#include "core/core_half.h"
#include "core/core_log.h"
#include "cli/cli_source.h"
#include "io_hdf5/h5_container.h"
#include "model/st_writer.h"

static int64_t numel_of(const wq_h5_entry *e)
{
    int64_t n = 1;
    for (int k = 0; k < e->ndim; k++) n *= e->shape[k];
    return n;
}

static wq_status inspect(const char *path, int json)
{
    wq_h5_reader *r = NULL;
    WQ_TRY(wq_h5_open(path, &r));
    int64_t n = wq_h5_count(r);
    double orig_total = 0, stored_total = 0, qorig = 0, qstored = 0, qweights = 0;
    cJSON *root = json ? cJSON_CreateObject() : NULL, *layers = NULL, *tensors = NULL;
    if (json) {
        cJSON_AddStringToObject(root, "file", path);
        cJSON_AddStringToObject(root, "wquant_version", wq_h5_version(r));
        layers = cJSON_AddArrayToObject(root, "layers");
        tensors = cJSON_AddArrayToObject(root, "tensors");
    } else {
        printf("%-44s %-12s %-6s %4s %6s %6s %10s %7s\n", "layer", "shape", "dtype", "bits", "group",
               "scheme", "bytes", "bits/w");
    }
    for (int64_t i = 0; i < n; i++) {
        const wq_h5_entry *e = wq_h5_entry_at(r, i);
        double ob = (double)numel_of(e) * (double)wq_dtype_size(e->orig_dtype);
        double sb = (double)wq_h5_entry_bytes(r, e);
        orig_total += ob;
        stored_total += sb;
        if (e->kind != WQ_H5_QLINEAR) {
            if (json) {
                cJSON *t = cJSON_CreateObject();
                cJSON_AddStringToObject(t, "name", e->name);
                cJSON *sh = cJSON_AddArrayToObject(t, "shape");
                for (int k = 0; k < e->ndim; k++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e->shape[k]));
                cJSON_AddStringToObject(t, "dtype", wq_dtype_name(e->orig_dtype));
                cJSON_AddNumberToObject(t, "bytes", sb);
                cJSON_AddItemToArray(tensors, t);
            }
            continue;
        }
        qorig += ob;
        qstored += sb;
        qweights += (double)(e->rows * e->cols);
        double bpw = 8.0 * sb / (double)(e->rows * e->cols);
        const char *scheme = e->spec.dtype != WQ_QDTYPE_INT ? "table" : e->spec.sym ? "sym" : "asym";
        if (json) {
            cJSON *l = cJSON_CreateObject();
            cJSON_AddStringToObject(l, "name", e->name);
            cJSON *sh = cJSON_AddArrayToObject(l, "shape");
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e->rows));
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e->cols));
            cJSON_AddStringToObject(l, "algorithm", e->algorithm);
            cJSON_AddStringToObject(l, "dtype", wq_qdtype_name(e->spec.dtype));
            cJSON_AddNumberToObject(l, "bits", e->spec.bits);
            cJSON_AddNumberToObject(l, "group_size", (double)e->group_size_eff);
            cJSON_AddBoolToObject(l, "sym", e->spec.sym);
            cJSON_AddBoolToObject(l, "g_idx", e->has_gidx);
            cJSON_AddStringToObject(l, "orig_dtype", wq_dtype_name(e->orig_dtype));
            cJSON_AddNumberToObject(l, "bytes", sb);
            cJSON_AddNumberToObject(l, "bits_per_weight", bpw);
            cJSON_AddItemToArray(layers, l);
        } else {
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)e->rows, (long long)e->cols);
            printf("%-44s %-12s %-6s %4d %6lld %6s %10.0f %7.3f\n", e->name, shape,
                   wq_qdtype_name(e->spec.dtype), e->spec.bits, (long long)e->group_size_eff, scheme,
                   sb, bpw);
        }
    }
    if (json) {
        cJSON_AddNumberToObject(root, "original_bytes", orig_total);
        cJSON_AddNumberToObject(root, "stored_bytes", stored_total);
        cJSON_AddNumberToObject(root, "compression_ratio", stored_total > 0 ? orig_total / stored_total : 0);
        cJSON_AddNumberToObject(root, "quantized_layers_bits_per_weight",
                                qweights > 0 ? 8.0 * qstored / qweights : 0);
        char *s = cJSON_Print(root);
        if (s) puts(s);
        cJSON_free(s);
        cJSON_Delete(root);
    } else {
        printf("\n%lld entries; original %.0f bytes, stored %.0f bytes, compression %.2fx; "
               "quantized layers: %.0f -> %.0f bytes (%.2fx)\n",
               (long long)n, orig_total, stored_total, stored_total > 0 ? orig_total / stored_total : 0,
               qorig, qstored, qstored > 0 ? qorig / qstored : 0);
    }
    wq_h5_close(r);
    return WQ_OK;
}

int wq_cmd_inspect(int argc, char **argv, wq_dist *d)
{
    wq_opt opts[] = {
        {"json", WQ_OPT_FLAG, NULL, "print one JSON object"},
        {"help", WQ_OPT_FLAG, NULL, "this help"},
        {NULL},
    };
    const char *pos[1];
    int n_pos = 0;
    if (wq_cli_parse(argc, argv, 2, opts, pos, 1, &n_pos) != 0) return 2;
    if (wq_cli_opt(opts, "help")->count) {
        if (wq_dist_rank(d) == 0)
            wq_cli_print_help("wquant inspect FILE.h5 [--json]",
                              "Lists every layer of a container with its settings, stored bytes and "
                              "bits per weight.", opts);
        return 0;
    }
    if (n_pos != 1) {
        if (wq_dist_rank(d) == 0) fprintf(stderr, "wquant inspect: expected one FILE.h5\n");
        return 2;
    }
    wq_status st = wq_dist_rank(d) == 0 ? inspect(pos[0], wq_cli_opt(opts, "json")->count > 0) : WQ_OK;
    return wq_cli_exit_code(wq_dist_agree(d, st));
}

/* ---- export safetensors-fp16 ----------------------------------------------------------------- */

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
        WQ_CHECK_GOTO(cfg, st, WQ_ERR_FORMAT, done, "%s: the stored source config is not JSON", path);
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

int wq_cmd_export(int argc, char **argv, wq_dist *d)
{
    wq_opt opts[] = {
        {"format", WQ_OPT_VALUE, "FMT", "safetensors-fp16 (dequantized HF directory)"},
        {"help", WQ_OPT_FLAG, NULL, "this help"},
        {NULL},
    };
    const char *pos[2];
    int n_pos = 0;
    if (wq_cli_parse(argc, argv, 2, opts, pos, 2, &n_pos) != 0) return 2;
    if (wq_cli_opt(opts, "help")->count) {
        if (wq_dist_rank(d) == 0)
            wq_cli_print_help("wquant export --format FMT FILE.h5 OUTDIR",
                              "Writes a container in another format.", opts);
        return 0;
    }
    const char *fmt = wq_cli_opt(opts, "format")->value;
    if (n_pos != 2 || !fmt) {
        if (wq_dist_rank(d) == 0) fprintf(stderr, "wquant export: expected --format FMT FILE.h5 OUTDIR\n");
        return 2;
    }
    wq_status st = WQ_OK;
    if (strcmp(fmt, "safetensors-fp16") != 0) {
        if (wq_dist_rank(d) == 0)
            WQ_LOG_ERROR("export: unknown --format '%s'; available: safetensors-fp16", fmt);
        st = WQ_ERR_ARG;
    } else if (wq_dist_rank(d) == 0) {
        st = export_fp16(pos[0], pos[1]);
    }
    return wq_cli_exit_code(wq_dist_agree(d, st));
}
