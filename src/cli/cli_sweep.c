/* cli_sweep.c: `wquant sweep FILE.json`: every combination of the sweep file's axes is quantized
 * and evaluated in this process (the quantize and eval code paths of the CLI, run collectively on
 * all ranks), each finished point leaves OUT/points/<name>/result.json (written atomically after
 * the container is complete and evaluated), and the collect step turns the results into
 * OUT/results.csv, OUT/results.md and OUT/ppl_vs_bpw.png. A rerun skips points whose result holds
 * the same definition (canonical config, model, evaluations). Layer: cli. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/cli_eval.h"
#include "core/core_alloc.h"
#include "core/core_log.h"
#include "core/core_plot.h"
#include "core/core_sweep.h"
#include "io_hdf5/h5_container.h"
#include "model/hf_config.h"
#include "wq_version.h"

#define PATH_LEN 4096

/* mkdir -p. Not collective. */
static wq_status make_dirs(const char *path)
{
    char buf[PATH_LEN];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            WQ_LOG_ERROR("cannot create directory '%s': %s", buf, strerror(errno));
            return WQ_ERR_IO;
        }
        *p = c;
        if (!c) break;
    }
    return WQ_OK;
}

/* Writes text to path via path.tmp and a rename (never half-written). Not collective. */
static wq_status write_atomic(const char *path, const char *text)
{
    char tmp[PATH_LEN + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    size_t n = strlen(text);
    int ok = f && fwrite(text, 1, n, f) == n;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) {
        WQ_LOG_ERROR("cannot write '%s': %s", path, strerror(errno));
        remove(tmp);
        return WQ_ERR_IO;
    }
    return WQ_OK;
}

typedef struct {
    wq_sweep *sw;
    char out[PATH_LEN];
} sweep_ctx;

static void point_paths(const sweep_ctx *c, const wq_sweep_point *p, char *dir, char *h5,
                        char *result)
{
    snprintf(dir, PATH_LEN, "%.3600s/points/%s", c->out, p->name);
    if (h5) snprintf(h5, PATH_LEN, "%.4000s/model.h5", dir);
    if (result) snprintf(result, PATH_LEN, "%.4000s/result.json", dir);
}

/* The result of a finished point, or NULL when there is none or it has another definition (a
 * changed point is not reused). Not collective. */
static cJSON *load_result(const char *path, const wq_sweep_point *p)
{
    char *text = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0 || wq_read_text_file(path, &text, NULL) != WQ_OK) return NULL;
    cJSON *r = cJSON_Parse(text);
    wq_free(text);
    const cJSON *def = cJSON_GetObjectItemCaseSensitive(r, "definition");
    char *printed = def ? cJSON_PrintUnformatted(def) : NULL;
    int same = printed && strcmp(printed, p->definition) == 0;
    cJSON_free(printed);
    if (!same) {
        if (r) WQ_LOG_INFO("%s: stale result (the point's definition changed): recomputing", path);
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

/* Quantizes and evaluates point `index` unless it is finished. Collective. */
static wq_status run_point(wq_dist *d, const sweep_ctx *c, int64_t index)
{
    const int rank = wq_dist_rank(d);
    wq_sweep_point p;
    WQ_TRY(wq_dist_agree(d, wq_sweep_point_make(c->sw, index, &p)));
    char dir[PATH_LEN], h5[PATH_LEN], result[PATH_LEN], cfg_path[PATH_LEN + 16];
    point_paths(c, &p, dir, h5, result);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    int skip = 0;
    wq_status st = WQ_OK;
    if (rank == 0) {
        cJSON *r = load_result(result, &p);
        skip = r != NULL;
        cJSON_Delete(r);
        if (!skip) {
            st = make_dirs(dir);
            if (st == WQ_OK) st = write_atomic(cfg_path, p.config_json);
            if (st == WQ_OK && remove(result) != 0 && errno != ENOENT) st = WQ_ERR_IO;
        }
    }
    st = wq_dist_agree(d, st);
    if (st == WQ_OK) st = wq_dist_bcast(d, 0, &skip, sizeof skip);
    if (st != WQ_OK || skip) {
        if (skip)
            WQ_LOG_ROOT("sweep point %lld/%lld %s: finished, skipping", (long long)index + 1,
                        (long long)wq_sweep_count(c->sw), p.name);
        wq_sweep_point_free(&p);
        return st;
    }
    WQ_LOG_ROOT("sweep point %lld/%lld %s: quantizing", (long long)index + 1,
                (long long)wq_sweep_count(c->sw), p.name);
    char stages[32];
    snprintf(stages, sizeof stages, "%lld", (long long)wq_sweep_stages(c->sw));
    char *qargv[] = {"wquant",   "quantize", "--model", (char *)wq_sweep_model(c->sw),
                     "--config", cfg_path,   "--out",   h5,
                     "--stages", stages,     "--quiet", NULL};
    double t0 = wq_cli_now();
    int rc = wq_cmd_quantize((int)(sizeof qargv / sizeof qargv[0]) - 1, qargv, d);
    double tq = wq_cli_now() - t0;
    if (rc != 0) { /* wq_cmd_quantize agreed on it and said why */
        WQ_LOG_ROOT("sweep point %lld %s: quantization failed", (long long)index, p.name);
        wq_sweep_point_free(&p);
        return rc == 2 ? WQ_ERR_ARG : WQ_ERR_IO;
    }
    double bpw = 0;
    if (rank == 0) {
        wq_h5_reader *r = NULL;
        st = wq_h5_open(h5, &r);
        if (st == WQ_OK) bpw = wq_cli_bits_per_weight(r);
        wq_h5_close(r);
    }
    st = wq_dist_agree(d, st);
    double ppl[WQ_SWEEP_MAX_EVALS] = {0}, te = 0;
    for (int i = 0; st == WQ_OK && i < wq_sweep_n_evals(c->sw); i++) {
        const wq_sweep_eval *e = wq_sweep_eval_at(c->sw, i);
        wq_cli_eval_req rq = {wq_sweep_model(c->sw), h5,           e->text,    e->protocol,
                              e->range_begin,        e->range_end, e->windows, e->seqlen,
                              wq_sweep_stages(c->sw)};
        wq_cli_eval_res res;
        st = wq_cli_eval_ppl(d, &rq, &res);
        ppl[i] = res.ppl;
        te += res.seconds;
        if (st == WQ_OK)
            WQ_LOG_ROOT("sweep point %lld %s: %s ppl %.10g", (long long)index, p.name, e->name,
                        res.ppl);
    }
    if (st == WQ_OK && rank == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", (double)index);
        cJSON_AddStringToObject(o, "name", p.name);
        cJSON_AddStringToObject(o, "container", h5);
        cJSON_AddNumberToObject(o, "bits_per_weight", bpw);
        cJSON *po = cJSON_AddObjectToObject(o, "ppl");
        for (int i = 0; i < wq_sweep_n_evals(c->sw); i++)
            cJSON_AddNumberToObject(po, wq_sweep_eval_at(c->sw, i)->name, ppl[i]);
        cJSON_AddNumberToObject(o, "quantize_seconds", tq);
        cJSON_AddNumberToObject(o, "eval_seconds", te);
        cJSON_AddNumberToObject(o, "ranks", wq_dist_size(d));
        cJSON_AddStringToObject(o, "wquant_version", WQ_VERSION_STRING);
        cJSON_AddItemToObject(o, "definition", cJSON_Parse(p.definition));
        char *text = cJSON_Print(o);
        cJSON_Delete(o);
        st = text ? write_atomic(result, text) : WQ_ERR_NOMEM;
        cJSON_free(text);
    }
    st = wq_dist_agree(d, st);
    wq_sweep_point_free(&p);
    return st;
}

/* ---- collect ----------------------------------------------------------------------------------
 */

/* Axes shown in their own columns (the fixed columns already show algorithm, dtype, bits, group
 * size and sym). */
static int extra_axis(const char *key)
{
    static const char *const fixed[] = {"algorithm",  "algo",    "dtype", "bits",
                                        "group_size", "use_sym", "sym"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strcmp(key, fixed[i]) == 0) return 0;
    return 1;
}

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->buf && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *nb = wq_malloc(cap);
        if (!nb) {
            b->oom = 1;
            return;
        }
        if (b->buf) memcpy(nb, b->buf, b->len + 1);
        wq_free(b->buf);
        b->buf = nb;
        b->cap = cap;
        if (!b->len) b->buf[0] = '\0';
    }
}

/* Writes results.csv, results.md and ppl_vs_bpw.png from every point's result. Rank 0 only. */
static wq_status collect(const sweep_ctx *c)
{
    const wq_sweep *sw = c->sw;
    const int64_t n = wq_sweep_count(sw);
    const int ne = wq_sweep_n_evals(sw), na = wq_sweep_n_axes(sw);
    wq_status st = WQ_OK;
    sbuf csv = {0}, md = {0}, missing = {0};
    int64_t n_missing = 0;
    wq_plot_point *pts = wq_calloc((size_t)n, sizeof *pts);
    if (!pts) return WQ_ERR_NOMEM;
    /* headers */
    sb_printf(&csv, "point,name,algorithm,dtype,bits,group_size,sym");
    sb_printf(&md, "| point | algorithm | dtype | bits | group size | sym");
    for (int a = 0; a < na; a++)
        if (extra_axis(wq_sweep_axis_key(sw, a))) {
            sb_printf(&csv, ",%s", wq_sweep_axis_key(sw, a));
            sb_printf(&md, " | %s", wq_sweep_axis_key(sw, a));
        }
    sb_printf(&csv, ",bits_per_weight");
    sb_printf(&md, " | bits/weight");
    for (int i = 0; i < ne; i++) {
        sb_printf(&csv, ",ppl_%s", wq_sweep_eval_at(sw, i)->name);
        sb_printf(&md, " | ppl %s", wq_sweep_eval_at(sw, i)->name);
    }
    sb_printf(&csv, ",quantize_seconds,eval_seconds,container\n");
    sb_printf(&md, " | quantize s | eval s | container |\n|");
    int ncols = 10 + ne;
    for (int a = 0; a < na; a++)
        ncols += extra_axis(wq_sweep_axis_key(sw, a));
    for (int k = 0; k < ncols; k++)
        sb_printf(&md, " --- |");
    sb_printf(&md, "\n");
    for (int64_t i = 0; i < n && st == WQ_OK; i++) {
        wq_sweep_point p;
        st = wq_sweep_point_make(sw, i, &p);
        if (st != WQ_OK) break;
        char dir[PATH_LEN], result[PATH_LEN];
        point_paths(c, &p, dir, NULL, result);
        cJSON *r = load_result(result, &p);
        if (!r) {
            sb_printf(&missing, "%s%s", n_missing ? ", " : "", p.name);
            n_missing++;
            wq_sweep_point_free(&p);
            continue;
        }
        const wq_qspec *g = &p.cfg.global;
        const char *algo = wq_algo_name(p.cfg.algo), *dt = wq_qdtype_name(g->dtype);
        const char *sym = g->dtype == WQ_QDTYPE_INT ? (g->sym ? "sym" : "asym") : "-";
        double bpw = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "bits_per_weight"));
        const char *h5 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "container"));
        sb_printf(&csv, "%lld,%s,%s,%s,%d,%lld,%s", (long long)i, p.name, algo, dt, g->bits,
                  (long long)g->group_size, sym);
        sb_printf(&md, "| %s | %s | %s | %d | %lld | %s", p.name, algo, dt, g->bits,
                  (long long)g->group_size, sym);
        for (int a = 0; a < na; a++)
            if (extra_axis(wq_sweep_axis_key(sw, a))) {
                sb_printf(&csv, ",%s", p.values[a]);
                sb_printf(&md, " | %s", p.values[a]);
            }
        sb_printf(&csv, ",%.6f", bpw);
        sb_printf(&md, " | %.4f", bpw);
        const cJSON *po = cJSON_GetObjectItemCaseSensitive(r, "ppl");
        for (int k = 0; k < ne; k++) {
            double v = cJSON_GetNumberValue(
                cJSON_GetObjectItemCaseSensitive(po, wq_sweep_eval_at(sw, k)->name));
            sb_printf(&csv, ",%.10g", v);
            sb_printf(&md, " | %.10g", v);
            if (k == 0) pts[i] = (wq_plot_point){bpw, v, (int)p.cfg.algo};
        }
        double tq = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "quantize_seconds"));
        double te = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "eval_seconds"));
        sb_printf(&csv, ",%.2f,%.2f,%s\n", tq, te, h5 ? h5 : "");
        sb_printf(&md, " | %.2f | %.2f | `%s` |\n", tq, te, h5 ? h5 : "");
        cJSON_Delete(r);
        wq_sweep_point_free(&p);
    }
    if (st == WQ_OK && (csv.oom || md.oom || missing.oom)) st = WQ_ERR_NOMEM;
    if (st == WQ_OK && n_missing) {
        WQ_LOG_ERROR("%lld of %lld sweep points have no result yet: %s (run `wquant sweep FILE` or "
                     "`--point I` for them first)",
                     (long long)n_missing, (long long)n, missing.buf);
        st = WQ_ERR_IO;
    }
    char path[PATH_LEN + 32];
    if (st == WQ_OK) {
        snprintf(path, sizeof path, "%s/results.csv", c->out);
        st = write_atomic(path, csv.buf);
    }
    if (st == WQ_OK) {
        snprintf(path, sizeof path, "%s/results.md", c->out);
        st = write_atomic(path, md.buf);
    }
    if (st == WQ_OK) {
        char ylabel[128], title[160];
        snprintf(ylabel, sizeof ylabel, "ppl %s", wq_sweep_eval_at(sw, 0)->name);
        snprintf(title, sizeof title, "perplexity vs bits per weight (%lld points)", (long long)n);
        wq_plot_spec ps = {.title = title,
                           .xlabel = "bits per weight",
                           .ylabel = ylabel,
                           .n_series = WQ_ALGO_COUNT,
                           .pts = pts,
                           .n_pts = (int)n,
                           .y_log = -1};
        for (int a = 0; a < WQ_ALGO_COUNT; a++)
            ps.series_names[a] = wq_algo_name((wq_algo)a);
        snprintf(path, sizeof path, "%s/ppl_vs_bpw.png", c->out);
        st = wq_plot_write_png(&ps, path);
    }
    if (st == WQ_OK)
        WQ_LOG_INFO("wrote %s/results.csv, results.md and ppl_vs_bpw.png (%lld points)", c->out,
                    (long long)n);
    if (st == WQ_OK && md.buf) fputs(md.buf, stdout);
    wq_free(csv.buf);
    wq_free(md.buf);
    wq_free(missing.buf);
    wq_free(pts);
    return st;
}

/* ---- command ----------------------------------------------------------------------------------
 */

/* Reads and parses the sweep file and its base config on every rank; validates every point.
 * Collective. */
static wq_status load_sweep(wq_dist *d, const char *path, const char *out_opt, sweep_ctx *c)
{
    char *text = NULL;
    memset(c, 0, sizeof *c);
    WQ_TRY(wq_cli_read_bcast(d, path, &text, NULL));
    wq_status st = wq_dist_agree(d, wq_sweep_parse(text, path, &c->sw));
    wq_free(text);
    if (st != WQ_OK) return st;
    const char *base = wq_sweep_base_path(c->sw);
    if (base) {
        st = wq_cli_read_bcast(d, base, &text, NULL);
        if (st == WQ_OK) st = wq_dist_agree(d, wq_sweep_set_base(c->sw, text, base));
        wq_free(text);
    }
    for (int64_t i = 0; st == WQ_OK && i < wq_sweep_count(c->sw); i++) {
        wq_sweep_point p;
        st = wq_sweep_point_make(c->sw, i, &p);
        if (st == WQ_OK) wq_sweep_point_free(&p);
    }
    st = wq_dist_agree(d, st);
    if (st == WQ_OK) {
        const char *o = out_opt ? out_opt : wq_sweep_out(c->sw);
        if (o) {
            snprintf(c->out, sizeof c->out, "%s", o);
        } else { /* runs/sweep-<file stem> */
            const char *b = strrchr(path, '/');
            snprintf(c->out, sizeof c->out, "runs/sweep-%s", b ? b + 1 : path);
            char *dot = strrchr(c->out, '.');
            if (dot && dot > c->out + 11) *dot = '\0';
        }
    }
    if (st != WQ_OK) {
        wq_sweep_destroy(c->sw);
        c->sw = NULL;
    }
    return st;
}

int wq_cmd_sweep(int argc, char **argv, wq_dist *d)
{
    wq_opt opts[] = {
        {"out", WQ_OPT_VALUE, "DIR",
         "output directory (default: the file's \"out\", else runs/sweep-<stem>)"},
        {"point", WQ_OPT_VALUE, "I",
         "run only point I (0-based; e.g. $SLURM_ARRAY_TASK_ID), no table"},
        {"collect", WQ_OPT_FLAG, NULL, "only build the table and plot from finished points"},
        {"list", WQ_OPT_FLAG, NULL, "print the points (index and name) and their count"},
        {"help", WQ_OPT_FLAG, NULL, "this help"},
        {NULL},
    };
    const char *pos[1];
    int n_pos = 0, rank = wq_dist_rank(d);
    if (wq_cli_parse(argc, argv, 2, opts, pos, 1, &n_pos) != 0) return 2;
    if (wq_cli_opt(opts, "help")->count) {
        if (rank == 0)
            wq_cli_print_help(
                "wquant sweep FILE.json [--out DIR] [--point I | --collect | --list]",
                "Quantizes and evaluates every combination of the sweep file's axes "
                "(docs/sweep.md), skipping\nfinished points, then writes results.csv, "
                "results.md and ppl_vs_bpw.png into the output directory.",
                opts);
        return 0;
    }
    int modes = (wq_cli_opt(opts, "point")->value != NULL) + wq_cli_opt(opts, "collect")->count +
                wq_cli_opt(opts, "list")->count;
    if (n_pos != 1 || modes > 1) {
        if (rank == 0)
            fprintf(stderr, "wquant sweep: expected one FILE.json and at most one of --point, "
                            "--collect, --list\n");
        return 2;
    }
    sweep_ctx c;
    wq_status st = load_sweep(d, pos[0], wq_cli_opt(opts, "out")->value, &c);
    if (st != WQ_OK) return wq_cli_exit_code(st);
    const int64_t n = wq_sweep_count(c.sw);
    int64_t only = -1;
    if (wq_cli_opt(opts, "point")->value) {
        if (wq_cli_get_int(opts, "point", 0, n - 1, &only)) {
            if (rank == 0)
                fprintf(stderr, "wquant sweep: %s has %lld points (--point 0..%lld)\n", pos[0],
                        (long long)n, (long long)n - 1);
            wq_sweep_destroy(c.sw);
            return 2;
        }
    }
    if (wq_cli_opt(opts, "list")->count) {
        for (int64_t i = 0; rank == 0 && i < n; i++) {
            wq_sweep_point p;
            if (wq_sweep_point_make(c.sw, i, &p) != WQ_OK) break;
            printf("%lld %s\n", (long long)i, p.name);
            wq_sweep_point_free(&p);
        }
        if (rank == 0) printf("%lld points; output in %s\n", (long long)n, c.out);
    } else if (wq_cli_opt(opts, "collect")->count) {
        st = wq_dist_agree(d, rank == 0 ? collect(&c) : WQ_OK);
    } else {
        st = wq_dist_agree(d, rank == 0 ? make_dirs(c.out) : WQ_OK);
        for (int64_t i = only >= 0 ? only : 0; st == WQ_OK && i < (only >= 0 ? only + 1 : n); i++)
            st = run_point(d, &c, i);
        if (st == WQ_OK && only < 0) st = wq_dist_agree(d, rank == 0 ? collect(&c) : WQ_OK);
    }
    if (st != WQ_OK && rank == 0) fprintf(stderr, "wquant sweep: failed (%s)\n", wq_status_str(st));
    wq_sweep_destroy(c.sw);
    return wq_cli_exit_code(st);
}
