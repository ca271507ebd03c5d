/* cli_inspect.c: `wquant inspect` (layers, settings, sizes; `wquant export` is in cli_export.c).
 * Rank 0 does the work (the reader is serial); other ranks just agree on the outcome. Layer: cli. */
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "core/core_half.h"
#include "core/core_log.h"
#include "io_hdf5/h5_container.h"

static int64_t numel_of(const wq_h5_entry *e)
{
    int64_t n = 1;
    for (int k = 0; k < e->ndim; k++) n *= e->shape[k];
    return n;
}

double wq_cli_bits_per_weight(const wq_h5_reader *r)
{
    double stored = 0, weights = 0;
    for (int64_t i = 0; i < wq_h5_count(r); i++) {
        const wq_h5_entry *e = wq_h5_entry_at(r, i);
        if (e->kind != WQ_H5_QLINEAR) continue;
        stored += (double)wq_h5_entry_bytes(r, e);
        weights += (double)(e->rows * e->cols);
    }
    return weights > 0 ? 8.0 * stored / weights : 0;
}

static wq_status inspect(const char *path, int json)
{
    wq_h5_reader *r = NULL;
    WQ_TRY(wq_h5_open(path, &r));
    int64_t n = wq_h5_count(r);
    double orig_total = 0, stored_total = 0, qorig = 0, qstored = 0;
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
        cJSON_AddNumberToObject(root, "quantized_layers_bits_per_weight", wq_cli_bits_per_weight(r));
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
