/* h5_qconfig.c: qconfig.json beside the container, in INC's form (numerics.md §10): one key
 * "('<layer>', 'Linear')" per linear layer, in entry order, written with 4-space indentation like
 * Python's json.dump(indent=4). cJSON trees stay inside this file. Layer: io_hdf5. */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "io_hdf5/h5_container.h"

void wq_h5_qconfig_path(const char *container_path, char *buf, size_t n)
{
    const char *slash = strrchr(container_path, '/');
    if (slash)
        snprintf(buf, n, "%.*s/qconfig.json", (int)(slash - container_path), container_path);
    else
        snprintf(buf, n, "qconfig.json");
}

/* A raw tensor that is the weight of a linear layer kept in full precision: flagged by the caller,
 * or a 2-D "<layer>.weight" whose resolved spec for op type Linear is fp32 (lm_head by default). */
static int kept_linear(const wq_config *cfg, const wq_h5_entry *e, char *layer, size_t n)
{
    size_t len = strnlen(e->name, sizeof e->name);
    int is_weight = len > 7 && strcmp(e->name + len - 7, ".weight") == 0;
    if (e->kind != WQ_H5_RAW || !is_weight) return 0;
    snprintf(layer, n, "%.*s", (int)(len - 7), e->name);
    if (e->linear) return 1;
    if (e->ndim != 2) return 0;
    wq_qspec spec;
    wq_config_resolve(cfg, layer, "Linear", &spec);
    return spec.dtype == WQ_QDTYPE_FP32;
}

/* cJSON_Print indents with tabs and separates keys with ":\t"; Python writes 4 spaces and ": ".
 * Tabs inside strings are escaped by cJSON, so every raw tab is formatting. wq_malloc'd. */
static char *python_indent(const char *s)
{
    size_t tabs = 0, len = strlen(s);
    for (size_t i = 0; i < len; i++)
        tabs += s[i] == '\t';
    char *o = wq_malloc(len + 3 * tabs + 2);
    if (!o) return NULL;
    char *p = o;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\t') {
            *p++ = s[i];
        } else if (i > 0 && s[i - 1] == ':') {
            *p++ = ' ';
        } else {
            memcpy(p, "    ", 4);
            p += 4;
        }
    }
    *p++ = '\n';
    *p = '\0';
    return o;
}

static cJSON *build(const wq_config *cfg, const wq_h5_entry *entries, int64_t n)
{
    cJSON *root = cJSON_CreateObject();
    for (int64_t i = 0; root && i < n; i++) {
        const wq_h5_entry *e = &entries[i];
        char key[320], layer[256];
        cJSON *val = NULL;
        if (e->kind == WQ_H5_QLINEAR) {
            snprintf(layer, sizeof layer, "%s", e->name);
            char *js = wq_config_layer_json(cfg, &e->spec);
            cJSON *params = js ? cJSON_Parse(js) : NULL;
            wq_free(js);
            val = cJSON_CreateObject();
            if (!params || !val ||
                !cJSON_AddItemToObject(
                    val, e->algorithm[0] ? e->algorithm : wq_algo_name(cfg->algo), params)) {
                cJSON_Delete(params);
                cJSON_Delete(val);
                val = NULL;
            }
        } else if (kept_linear(cfg, e, layer, sizeof layer)) {
            val = cJSON_CreateObject();
            if (val && !cJSON_AddStringToObject(val, "dtype", "fp32")) {
                cJSON_Delete(val);
                val = NULL;
            }
        } else {
            continue;
        }
        snprintf(key, sizeof key, "('%s', 'Linear')", layer);
        if (!val || !cJSON_AddItemToObject(root, key, val)) {
            cJSON_Delete(val);
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

wq_status wq_h5_write_qconfig(const char *container_path, const wq_config *cfg,
                              const wq_h5_entry *entries, int64_t n)
{
    char path[4200], tmp[4300];
    wq_h5_qconfig_path(container_path, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cJSON *root = build(cfg, entries, n);
    char *raw = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    char *text = raw ? python_indent(raw) : NULL;
    cJSON_free(raw);
    if (!text) {
        WQ_LOG_ERROR("out of memory building '%s'", path);
        return WQ_ERR_NOMEM;
    }
    wq_status st = WQ_OK;
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        WQ_LOG_ERROR("cannot write '%s': %s", tmp, strerror(errno));
        st = WQ_ERR_IO;
    } else {
        int ok = fputs(text, fp) >= 0 && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
        ok = fclose(fp) == 0 && ok;
        if (!ok || rename(tmp, path) != 0) {
            WQ_LOG_ERROR("cannot write '%s': %s", path, strerror(errno));
            unlink(tmp);
            st = WQ_ERR_IO;
        }
    }
    wq_free(text);
    return st;
}
