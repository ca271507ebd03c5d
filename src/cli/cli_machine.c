#define _GNU_SOURCE
/* cli_machine.c: the machine file of the planner: measuring the constants of dist_cost.h with the
 * real kernels (`wquant plan --calibrate`), saving and loading them, and translating model and
 * wquant configs into the cost model's inputs. Layer: cli. */
#include <cJSON.h>
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "algos/algo_gptq.h"
#include "algos/algo_hqq.h"
#include "algos/algo_rtn.h"
#include "cli/cli.h"
#include "cli/cli_plan.h"
#include "core/core_alloc.h"
#include "core/core_io.h"
#include "core/core_log.h"
#include "dist/dist_reduce.h"
#include "kernels/kern_exact.h"
#include "kernels/kern_llama.h"
#include "model/hf_config.h"

/* key, offset of the double (or int) field */
static const struct {
    const char *key;
    size_t off;
    int is_int;
} k_fields[] = {
#define F(name)                                                                                    \
    {                                                                                              \
#name, offsetof(wq_machine, name), 0                                                       \
    }
    F(gemm_flops),   F(dgemm_flops), F(fwd_flops),
    F(chol_flops),   F(chol_elem_s), F(solve_flops),
    F(solve_col_s),  F(exact_rate),  F(quant_rate),
    F(hqq_rate),     F(mem_bw),      F(touch_bw),
    F(fs_read_bw),   F(fs_write_bw), F(fs_node_bw),
    F(fs_sync_bw),   F(net_bw),      F(net_lat),
    F(base_rss),     F(startup),     {"cores_per_node", offsetof(wq_machine, cores_per_node), 1},
    F(mem_per_node),
#undef F
};
#define N_FIELDS (int)(sizeof k_fields / sizeof k_fields[0])

void wq_cli_machine_default_path(char *buf, size_t n)
{
    const char *e = getenv("WQ_MACHINE_FILE"), *x = getenv("XDG_CONFIG_HOME"), *h = getenv("HOME");
    if (e && *e)
        snprintf(buf, n, "%s", e);
    else if (x && *x)
        snprintf(buf, n, "%s/wquant/machine.json", x);
    else
        snprintf(buf, n, "%s/.config/wquant/machine.json", h && *h ? h : ".");
}

double wq_cli_mem_total(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024.0;
}

static wq_status machine_parse(const char *text, const char *path, wq_machine *m)
{
    wq_status st = WQ_OK;
    cJSON *root = cJSON_Parse(text);
    WQ_CHECK_GOTO(root && cJSON_IsObject(root), st, WQ_ERR_FORMAT, done, "%s: not a JSON object",
                  path);
    for (cJSON *it = root->child; it; it = it->next) {
        int k = 0;
        while (k < N_FIELDS && strcmp(k_fields[k].key, it->string) != 0)
            k++;
        if (k == N_FIELDS) {
            if (strcmp(it->string, "comment") == 0 || strcmp(it->string, "measured") == 0) continue;
            WQ_LOG_ERROR("%s: unknown key '%s' (see docs/planning.md for the machine file keys)",
                         path, it->string);
            st = WQ_ERR_FORMAT;
            goto done;
        }
        WQ_CHECK_GOTO(cJSON_IsNumber(it) && it->valuedouble > 0 && isfinite(it->valuedouble), st,
                      WQ_ERR_FORMAT, done, "%s: key '%s' must be a positive number", path,
                      it->string);
        char *p = (char *)m + k_fields[k].off;
        if (k_fields[k].is_int)
            *(int *)p = (int)it->valuedouble;
        else
            *(double *)p = it->valuedouble;
    }
done:
    cJSON_Delete(root);
    return st;
}

wq_status wq_cli_machine_load(wq_dist *d, const char *path, int required, wq_machine *m,
                              int *measured)
{
    char def[4096];
    if (!path) {
        wq_cli_machine_default_path(def, sizeof def);
        path = def;
    }
    wq_cost_machine_defaults(m);
    m->mem_per_node = wq_cli_mem_total() > 0 ? wq_cli_mem_total() : m->mem_per_node;
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    if (nc > 0) m->cores_per_node = (int)nc;
    *measured = 0;
    int exists = access(path, R_OK) == 0;
    double e = exists; /* rank 0 decides: it reads the file */
    WQ_TRY(wq_dist_bcast(d, 0, &e, sizeof e));
    int all_exist = e > 0;
    if (!all_exist) {
        if (required) {
            if (wq_dist_rank(d) == 0)
                WQ_LOG_ERROR("machine file '%s' does not exist (run `wquant plan --calibrate "
                             "--machine %s` first)",
                             path, path);
            return WQ_ERR_ARG; /* every rank knows: rank 0 broadcast the verdict */
        }
        return WQ_OK;
    }
    char *text = NULL;
    WQ_TRY(wq_cli_read_bcast(d, path, &text, NULL));
    wq_status st = machine_parse(text, path, m);
    wq_free(text);
    if (st == WQ_OK) *measured = 1;
    return wq_dist_agree(d, st);
}

wq_status wq_cli_machine_save(const char *path, const wq_machine *m)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) { /* mkdir -p of the parent */
        *slash = '\0';
        for (char *p = dir + 1; *p; p++)
            if (*p == '/') {
                *p = '\0';
                mkdir(dir, 0755);
                *p = '/';
            }
        mkdir(dir, 0755);
    }
    cJSON *root = cJSON_CreateObject();
    if (!root) return WQ_ERR_NOMEM;
    cJSON_AddStringToObject(root, "comment",
                            "wquant plan --calibrate: rates per rank with one BLAS thread (flop/s, "
                            "values/s, bytes/s), seconds, bytes; see docs/planning.md");
    for (int k = 0; k < N_FIELDS; k++) {
        const char *p = (const char *)m + k_fields[k].off;
        cJSON_AddNumberToObject(root, k_fields[k].key,
                                k_fields[k].is_int ? (double)*(const int *)p : *(const double *)p);
    }
    char *js = cJSON_Print(root);
    cJSON_Delete(root);
    if (!js) return WQ_ERR_NOMEM;
    FILE *f = fopen(path, "w");
    wq_status st = WQ_OK;
    if (!f || fputs(js, f) < 0 || fputc('\n', f) < 0) st = WQ_ERR_IO;
    if (f && fclose(f) != 0) st = WQ_ERR_IO;
    if (st != WQ_OK) WQ_LOG_ERROR("cannot write the machine file '%s': %s", path, strerror(errno));
    cJSON_free(js);
    return st;
}

/* ---- measurements ------------------------------------------------------------------------------
 */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void fill(float *x, int64_t n, uint64_t seed, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * ((float)(rng_next(&seed) >> 40) * 0x1.0p-24f - 0.5f);
}

/* Repeats fn until at least `min_s` seconds have passed (after one warm-up); returns seconds per
 * call (the fastest of the repetitions: the least disturbed by other processes). */
#define TIME_IT(min_s, out, body)                                                                  \
    do {                                                                                           \
        body;                                                                                      \
        double best_ = 1e30, start_ = wq_cli_now();                                                \
        int reps_ = 0;                                                                             \
        while (reps_ < 3 || wq_cli_now() - start_ < (min_s)) {                                     \
            double t0_ = wq_cli_now();                                                             \
            body;                                                                                  \
            double dt_ = wq_cli_now() - t0_;                                                       \
            if (dt_ < best_) best_ = dt_;                                                          \
            if (++reps_ > 1000) break;                                                             \
        }                                                                                          \
        (out) = best_ > 1e-9 ? best_ : 1e-9;                                                       \
    } while (0)

static wq_status measure_compute(wq_machine *m)
{
    wq_status st = WQ_OK;
    const int64_t n = 768;
    float *a = wq_malloc((size_t)(n * n) * 4), *b = wq_malloc((size_t)(n * n) * 4),
          *c = wq_malloc((size_t)(n * n) * 4);
    double *da = wq_malloc((size_t)(n * n) * 8), *dc = wq_malloc((size_t)(256 * n) * 8);
    WQ_CHECK_GOTO(a && b && c && da && dc, st, WQ_ERR_NOMEM, done, "out of memory calibrating");
    fill(a, n * n, 1, 1.0f);
    fill(b, n * n, 2, 1.0f);
    for (int64_t i = 0; i < n * n; i++)
        da[i] = a[i];
    double t;
    TIME_IT(0.3, t,
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a,
                        (int)n, b, (int)n, 0.0f, c, (int)n));
    m->gemm_flops = 2.0 * n * n * n / t;
    /* the Hessian panel shape: 256 rows of X^T X over n tokens */
    TIME_IT(0.3, t,
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, 256, (int)n, (int)n, 1.0, da,
                        (int)n, da, (int)n, 0.0, dc, (int)n));
    m->dgemm_flops = 2.0 * 256 * n * n / t;
    /* exact accumulation */
    {
        wq_exact *acc = wq_calloc((size_t)(256 * n), sizeof *acc);
        WQ_CHECK_GOTO(acc, st, WQ_ERR_NOMEM, done, "out of memory calibrating");
        TIME_IT(0.2, t, wq_kern_exact_add_f64(acc, dc, 256 * n));
        m->exact_rate = 256.0 * n / t;
        wq_free(acc);
    }
    /* memory bandwidth: memcpy of 64 MiB (far beyond the caches), read + write counted */
    {
        const size_t nb = 64u << 20;
        char *s0 = wq_malloc(nb), *s1 = wq_malloc(nb);
        if (s0 && s1) {
            memset(s0, 1, nb);
            memset(s1, 2, nb);
            TIME_IT(0.3, t, memcpy(s1, s0, nb));
            m->mem_bw = 2.0 * (double)nb / t;
        }
        wq_free(s0);
        wq_free(s1);
    }
done:
    wq_free(a);
    wq_free(b);
    wq_free(c);
    wq_free(da);
    wq_free(dc);
    return st;
}

static wq_status measure_algos(wq_machine *m)
{
    wq_status st = WQ_OK;
    const int64_t qr = 2048, qc = 4096;
    float *w = wq_malloc((size_t)(qr * qc) * 4);
    wq_qmatrix q = {0};
    WQ_CHECK_GOTO(w, st, WQ_ERR_NOMEM, done, "out of memory calibrating");
    fill(w, qr * qc, 3, 0.04f);
    wq_qspec spec = wq_qspec_default();
    spec.bits = 4, spec.group_size = 128, spec.sym = true;
    double t;
    TIME_IT(
        0.2, t,
        (wq_qmatrix_free(&q), st = wq_algo_rtn_quantize(&spec, "calibrate", w, qr, qc, &q, NULL)));
    WQ_TRY_GOTO(st, st, done);
    m->quant_rate = (double)(qr * qc) / t;
    wq_config cfg;
    wq_config_defaults(&cfg, WQ_ALGO_HQQ);
    wq_qmatrix_free(&q);
    TIME_IT(0.2, t,
            (wq_qmatrix_free(&q),
             st = wq_algo_hqq_quantize(&spec, &cfg.ap, "calibrate", w, qr / 2, qc / 2, &q)));
    WQ_TRY_GOTO(st, st, done);
    m->hqq_rate = (double)(qr * qc / 4) / t * (double)cfg.ap.hqq_iters / 20.0;
    wq_qmatrix_free(&q);
done:
    wq_qmatrix_free(&q);
    wq_free(w);
    return st;
}

/* Seconds of GPTQ's preparation (tp) and of the solve of `rows` rows (ts) at n columns, on a
 * well-conditioned H (diagonally dominant: the times do not depend on the values). */
static wq_status time_gptq(int64_t n, int64_t rows, double *tp, double *ts)
{
    wq_status st = WQ_OK;
    double *H = wq_malloc((size_t)(n * n) * 8), *H0 = wq_malloc((size_t)(n * n) * 8);
    float *w = wq_malloc((size_t)(rows * n) * 4);
    wq_qmatrix q = {0};
    wq_gptq_ctx *ctx = NULL;
    wq_config cfg;
    wq_config_defaults(&cfg, WQ_ALGO_GPTQ);
    WQ_CHECK_GOTO(H && H0 && w, st, WQ_ERR_NOMEM, done, "out of memory calibrating");
    fill(w, rows * n, 5, 0.04f);
    for (int64_t i = 0; i < n; i++) /* |off-diagonal| <= 0.25 / n: positive definite */
        for (int64_t j = 0; j <= i; j++)
            H0[i * n + j] = H0[j * n + i] =
                i == j
                    ? 1.0
                    : 0.5 / (double)n * ((double)((i * 7919 + j * 104729) % 1000) / 1000.0 - 0.5);
    wq_qspec spec = wq_qspec_default();
    spec.bits = 4, spec.group_size = 128, spec.sym = true;
    TIME_IT(0.3, *tp,
            (wq_algo_gptq_destroy(ctx), ctx = NULL, memcpy(H, H0, (size_t)(n * n) * 8),
             st = wq_algo_gptq_prepare(H, n, &spec, &cfg.ap, "calibrate", &ctx)));
    WQ_TRY_GOTO(st, st, done);
    WQ_TRY_GOTO(wq_algo_gptq_qmatrix_init(ctx, rows, &q), st, done);
    TIME_IT(0.3, *ts, st = wq_algo_gptq_solve_rows(ctx, w, 0, rows, rows, 0.0f, &q, NULL, NULL));
done:
    wq_config_free(&cfg);
    wq_qmatrix_free(&q);
    wq_algo_gptq_destroy(ctx);
    wq_free(w);
    wq_free(H);
    wq_free(H0);
    return st;
}

/* GPTQ at n = 1024 and 4096: the rates rise with n (the n^2 parts, strided column passes, weigh
 * less), so each time is fitted as a cubic (resp. quadratic) term at a flop rate plus a per-element
 * term: prep(n) = (2 n^3 / 3) / chol_flops + n^2 chol_elem_s,
 * solve(r, n) = 2 r n^2 / solve_flops + r n solve_col_s (docs/planning.md). */
/* The line y = A n + B through (n1, y1) and (n2, y2); when noise makes A or B non-positive, the
 * line through the origin and (n2, y2) with B = 1e-15 (machine-file values must be positive). */
static void fit_line(double n1, double y1, double n2, double y2, double *A, double *B)
{
    *A = (y2 - y1) / (n2 - n1);
    *B = y1 - *A * n1;
    if (!(*A > 0) || !(*B > 0)) *A = y2 / n2, *B = 1e-15;
}

static wq_status measure_gptq(wq_machine *m)
{
    const double n1 = 1024, n2 = 4096, rows = 512;
    double p1, s1, p2, s2, A, B;
    WQ_TRY(time_gptq((int64_t)n1, (int64_t)rows, &p1, &s1));
    WQ_TRY(time_gptq((int64_t)n2, (int64_t)rows, &p2, &s2));
    fit_line(n1, p1 / (n1 * n1), n2, p2 / (n2 * n2), &A, &B); /* prep / n^2 = A n + B */
    m->chol_flops = 2.0 / (3.0 * A);
    m->chol_elem_s = B;
    fit_line(n1, s1 / (rows * n1), n2, s2 / (rows * n2), &A, &B); /* solve / (r n) = A n + B */
    m->solve_flops = 2.0 / A;
    m->solve_col_s = B;
    return WQ_OK;
}

/* One block forward at a mid-size width (d 1024, GQA 16/4 heads, F 2816, 256 tokens). */
static wq_status measure_forward(wq_machine *m)
{
    wq_status st = WQ_OK;
    wq_model_cfg mc = {.hidden_size = 1024,
                       .intermediate_size = 2816,
                       .n_layers = 1,
                       .n_heads = 16,
                       .n_kv_heads = 4,
                       .head_dim = 64,
                       .vocab_size = 256,
                       .max_position_embeddings = 4096,
                       .rope_theta = 10000,
                       .rms_norm_eps = 1e-5};
    snprintf(mc.model_type, sizeof mc.model_type, "llama");
    const int64_t T = 256, d = mc.hidden_size, F = mc.intermediate_size, kvd = 4 * 64;
    const int64_t nw = 2 * d * d + 2 * kvd * d + 3 * d * F + 2 * d;
    float *wb = wq_malloc((size_t)nw * 4), *x = wq_malloc((size_t)(T * d) * 4),
          *x0 = wq_malloc((size_t)(T * d) * 4);
    float *rc = wq_malloc((size_t)(T * 32) * 4), *rs = wq_malloc((size_t)(T * 32) * 4);
    void *ws = wq_malloc(wq_kern_block_workspace_bytes(&mc, T));
    WQ_CHECK_GOTO(wb && x && x0 && rc && rs && ws, st, WQ_ERR_NOMEM, done,
                  "out of memory calibrating");
    fill(wb, nw, 5, 0.04f);
    fill(x0, T * d, 6, 1.0f);
    float *p = wb;
    wq_block_weights w = {0};
    w.attn_norm = p, p += d;
    w.mlp_norm = p, p += d;
    for (int64_t i = 0; i < 2 * d; i++)
        wb[i] = 1.0f;
    w.wq = p, p += d * d;
    w.wk = p, p += kvd * d;
    w.wv = p, p += kvd * d;
    w.wo = p, p += d * d;
    w.w_gate = p, p += F * d;
    w.w_up = p, p += F * d;
    w.w_down = p;
    wq_kern_rope_tables(&mc, T, rc, rs);
    double t;
    TIME_IT(0.5, t,
            (memcpy(x, x0, (size_t)(T * d) * 4),
             wq_kern_block_forward(&mc, &w, x, T, rc, rs, ws, NULL)));
    wq_cost_shape s;
    wq_cli_cost_shape(&mc, 4, &s);
    m->fwd_flops = wq_cost_forward_flops(&s, 1, T) / t;
done:
    wq_free(wb);
    wq_free(x);
    wq_free(x0);
    wq_free(rc);
    wq_free(rs);
    wq_free(ws);
    return st;
}

/* Writes n bytes (chunk at a time from buf) into the new file `path` as the container writer does:
 * with write-behind every `window` bytes (core_io.h; 0: none), then an fsync. *wbw receives the
 * rate of the whole (bytes/s), *sbw the rate of its flushes alone. The file is left in place.
 * WQ_ERR_ARG when it cannot be created (logged), WQ_ERR_IO on a short write or a failed sync. */
static wq_status write_probe(const char *path, const char *buf, size_t n, size_t chunk,
                             size_t window, double *wbw, double *sbw)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0) {
        WQ_LOG_ERROR("cannot create the file-system probe '%s': %s (use --scratch DIR)", path,
                     strerror(errno));
        return WQ_ERR_ARG;
    }
    wq_status st = WQ_OK;
    wq_io_behind wb = {.fd = fd, .window = window, .path = path};
    double t_sync = 0, t;
    const double t0 = wq_cli_now();
    for (size_t off = 0; off < n && st == WQ_OK; off += chunk) {
        if (write(fd, buf, chunk) != (ssize_t)chunk) st = WQ_ERR_IO;
        t = wq_cli_now();
        if (st == WQ_OK) st = wq_io_behind_wrote(&wb, chunk);
        t_sync += wq_cli_now() - t;
    }
    t = wq_cli_now();
    if (st == WQ_OK && fsync(fd) != 0) st = WQ_ERR_IO;
    t_sync += wq_cli_now() - t;
    *wbw = (double)n / (wq_cli_now() - t0);
    *sbw = (double)n / (t_sync > 1e-9 ? t_sync : 1e-9);
    close(fd);
    return st;
}

typedef struct {
    int fd;
    size_t off, n, chunk;
    wq_status st;
} reader_job;

/* One reader of the node probe: its share of the file into its own fresh memory. */
static void *reader_run(void *arg)
{
    reader_job *r = arg;
    char *dst = wq_malloc(r->n);
    r->st = dst ? WQ_OK : WQ_ERR_NOMEM;
    for (size_t o = 0; dst && o < r->n && r->st == WQ_OK; o += r->chunk) {
        const size_t c = r->n - o < r->chunk ? r->n - o : r->chunk;
        if (pread(r->fd, dst + o, c, (off_t)(r->off + o)) != (ssize_t)c) r->st = WQ_ERR_IO;
    }
    wq_free(dst);
    return NULL;
}

/* Reads of all ranks of a node together: `readers` threads each read 1/readers of the first n
 * bytes of fd (in the page cache) into fresh memory at once; *bw receives the aggregate rate. */
static wq_status node_read_probe(int fd, size_t n, size_t chunk, int readers, double *bw)
{
    if (readers > 64) readers = 64;
    reader_job job[64];
    pthread_t th[64];
    const size_t share = n / (size_t)readers / chunk * chunk;
    wq_status st = share > 0 ? WQ_OK : WQ_ERR_ARG;
    int started = 0;
    const double t0 = wq_cli_now();
    for (; st == WQ_OK && started < readers; started++) {
        job[started] = (reader_job){fd, (size_t)started * share, share, chunk, WQ_OK};
        if (pthread_create(&th[started], NULL, reader_run, &job[started]) != 0) st = WQ_ERR_IO;
    }
    if (st != WQ_OK) started--; /* the failed one was not started */
    for (int k = 0; k < started; k++) {
        pthread_join(th[k], NULL);
        if (job[k].st != WQ_OK && st == WQ_OK) st = job[k].st;
    }
    *bw = (double)share * (double)readers / (wq_cli_now() - t0);
    return st;
}

static double median3(const double v[3])
{
    return fmax(fmin(v[0], v[1]), fmin(fmax(v[0], v[1]), v[2]));
}

static wq_status measure_fs(const char *dir, wq_machine *m)
{
    char path[3][4200];
    for (int k = 0; k < 3; k++)
        snprintf(path[k], sizeof path[k], "%s/.wquant-calibrate-%ld-%d.tmp", dir, (long)getpid(),
                 k);
    const size_t n = 512u << 20, chunk = 8u << 20;
    char *buf = wq_malloc(chunk);
    if (!buf) return WQ_ERR_NOMEM;
    memset(buf, 0x5a, chunk);
    wq_status st = WQ_OK;
    /* Three new files written as the container is (write-behind, then fsync), all kept until the
     * end, so no write reuses the pages of an earlier probe file (rewriting one file would: up to
     * 8x faster on a virtual machine whose host takes freed memory back after about a second).
     * The pause first lets memory freed just before go back the same way, as memory freed by an
     * earlier job has. Medians of the three (the disk swings run to run). */
    nanosleep(&(struct timespec){.tv_sec = 2}, NULL);
    double wbw[3] = {0, 0, 0}, sbw[3] = {0, 0, 0};
    const size_t window = wq_io_write_behind_bytes();
    int made = 0;
    for (; made < 3 && st == WQ_OK; made++)
        st = write_probe(path[made], buf, n, chunk, window, &wbw[made], &sbw[made]);
    m->fs_write_bw = median3(wbw);
    m->fs_sync_bw = median3(sbw);
    /* read one back: the rate a process sees for a file in the page cache (what a model written or
     * read just before sees; on a cluster set fs_*_bw to the parallel file system's rates). The
     * write-behind dropped the file's pages: the first pass brings them back, the second counts */
    int fd = st == WQ_OK ? open(path[0], O_RDONLY) : -1;
    if (fd >= 0) {
        char *dst = wq_malloc(n);
        for (int pass = 0; pass < 2 && dst && st == WQ_OK; pass++) {
            if (pass == 1) { /* into fresh memory, as the reader does: page faults count */
                wq_free(dst);
                dst = wq_malloc(n);
            }
            const double t0 = wq_cli_now();
            for (size_t off = 0; dst && off < n && st == WQ_OK; off += chunk)
                if (pread(fd, dst + off, chunk, (off_t)off) != (ssize_t)chunk) st = WQ_ERR_IO;
            m->fs_read_bw = (double)n / (wq_cli_now() - t0);
        }
        if (!dst) st = WQ_ERR_NOMEM;
        wq_free(dst);
        /* first touch of fresh memory (page faults + zeroing) */
        const double t0 = wq_cli_now();
        dst = wq_malloc(n);
        if (dst) memset(dst, 1, n);
        m->touch_bw = (double)n / (wq_cli_now() - t0);
        /* every core reading at once (measured: page-cache copies into fresh memory need not
         * scale with the cores; 1.8-2.8 GB/s in single shots here): the median of three; on a
         * cluster set it to the parallel file system's node rate */
        cpu_set_t cpus;
        if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) < m->cores_per_node)
            WQ_LOG_WARN("calibrating on %d of %d cores (the process is bound: under mpiexec use "
                        "--bind-to none): fs_node_bw is what that many cores read",
                        CPU_COUNT(&cpus), m->cores_per_node);
        double nbw[3] = {0, 0, 0};
        for (int rep = 0; rep < 3 && st == WQ_OK; rep++)
            st = node_read_probe(fd, n, chunk, m->cores_per_node, &nbw[rep]);
        m->fs_node_bw = median3(nbw);
        wq_free(dst);
        close(fd);
    } else if (st == WQ_OK) {
        st = WQ_ERR_IO;
    }
    for (int k = 0; k < made; k++)
        unlink(path[k]);
    wq_free(buf);
    if (st == WQ_ERR_ARG) return WQ_ERR_IO; /* the probe could not be created: already reported */
    if (st != WQ_OK) WQ_LOG_ERROR("file-system probe in '%s' failed", dir);
    return st;
}

static double vm_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024.0;
}

/* Seconds since this process started (MPI init included). */
static double process_age(void)
{
    FILE *f = fopen("/proc/self/stat", "r");
    double up = 0;
    unsigned long long start = 0;
    if (f) {
        char buf[2048];
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        buf[k] = '\0';
        fclose(f);
        char *p = strrchr(buf, ')');
        for (int field = 2; p && field < 22; field++)
            p = strchr(p + 1, ' ');
        if (p) start = strtoull(p + 1, NULL, 10);
    }
    f = fopen("/proc/uptime", "r");
    if (f) {
        if (fscanf(f, "%lf", &up) != 1) up = 0;
        fclose(f);
    }
    double age = up - (double)start / (double)sysconf(_SC_CLK_TCK);
    return age > 0 && age < 60 ? age : 0.3;
}

wq_status wq_cli_calibrate(wq_dist *d, const char *scratch_dir, wq_machine *m)
{
    wq_cost_machine_defaults(m);
    m->base_rss = vm_rss_bytes();
    m->startup = process_age();
    m->mem_per_node = wq_cli_mem_total();
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    m->cores_per_node = nc > 0 ? (int)nc : 1;
    wq_status st = WQ_OK;
    if (wq_dist_rank(d) == 0) {
        st = measure_compute(m);
        if (st == WQ_OK) st = measure_forward(m);
        if (st == WQ_OK) st = measure_algos(m);
        if (st == WQ_OK) st = measure_gptq(m);
        if (st == WQ_OK) st = measure_fs(scratch_dir, m);
    }
    /* the other ranks sleep meanwhile: spinning in a collective would take a core from the probes
     * (the node read probe uses every core) */
    WQ_TRY(wq_dist_barrier_idle(d));
    WQ_TRY(wq_dist_agree(d, st));
    /* network: the exact allreduce wquant uses, 64 MiB per rank */
    if (wq_dist_size(d) > 1) {
        const int64_t cells = 4 << 20;
        wq_exact *acc = wq_calloc((size_t)cells, sizeof *acc);
        st = acc ? WQ_OK : WQ_ERR_NOMEM;
        WQ_TRY(wq_dist_agree(d, st));
        double best = 1e30;
        for (int rep = 0; rep < 3 && st == WQ_OK; rep++) {
            st = wq_dist_barrier(d);
            double t0 = wq_cli_now();
            if (st == WQ_OK) st = wq_dist_allreduce_exact(d, acc, cells);
            double dt = wq_cli_now() - t0;
            if (dt < best) best = dt;
        }
        wq_free(acc);
        WQ_TRY(wq_dist_agree(d, st));
        const int D = wq_dist_size(d);
        m->net_bw = 2.0 * (double)cells * 16.0 * (D - 1) / D / best;
        st = wq_dist_barrier(d);
        double t0 = wq_cli_now();
        for (int rep = 0; rep < 100 && st == WQ_OK; rep++)
            st = wq_dist_barrier(d);
        m->net_lat = (wq_cli_now() - t0) / 100.0 > 1e-7 ? (wq_cli_now() - t0) / 100.0 : 1e-7;
        WQ_TRY(wq_dist_agree(d, st));
    } else {
        m->net_bw = m->mem_bw / 2.0; /* not measured: shared memory between two ranks */
    }
    /* rank 0's compute numbers, the network numbers agreed */
    double nb[2] = {m->net_bw, m->net_lat};
    WQ_TRY(wq_dist_bcast(d, 0, m, sizeof *m));
    m->net_bw = nb[0], m->net_lat = nb[1];
    return WQ_OK;
}

/* ---- config translation ------------------------------------------------------------------------
 */

void wq_cli_cost_shape(const wq_model_cfg *mc, int src_bytes, wq_cost_shape *s)
{
    *s = (wq_cost_shape){.d = mc->hidden_size,
                         .F = mc->intermediate_size,
                         .n_heads = mc->n_heads,
                         .n_kv_heads = mc->n_kv_heads,
                         .head_dim = mc->head_dim,
                         .vocab = mc->vocab_size,
                         .n_layers = mc->n_layers,
                         .tied = mc->tie_word_embeddings,
                         .qkv_bias = mc->attention_bias,
                         .src_bytes = src_bytes};
}

void wq_cli_cost_job(const wq_config *cfg, wq_cost_job *j)
{
    static const wq_cost_algo map[WQ_ALGO_COUNT] = {
        [WQ_ALGO_RTN] = WQ_COST_RTN, [WQ_ALGO_GPTQ] = WQ_COST_GPTQ,
        [WQ_ALGO_AWQ] = WQ_COST_AWQ, [WQ_ALGO_TEQ] = WQ_COST_TEQ,
        [WQ_ALGO_HQQ] = WQ_COST_HQQ, [WQ_ALGO_AUTOROUND] = WQ_COST_AUTOROUND};
    const wq_algo_params *ap = &cfg->ap;
    *j = (wq_cost_job){.algo = map[cfg->algo],
                       .bits = cfg->global.bits > 0 ? cfg->global.bits : 4,
                       .group_size = cfg->global.group_size,
                       .mse_search = cfg->global.mse_search,
                       .quant_lm_head = cfg->quant_lm_head,
                       .true_sequential = ap->true_sequential,
                       .awq_scale = ap->use_auto_scale,
                       .awq_clip = ap->use_auto_clip,
                       .awq_folding = ap->folding,
                       .hqq_iters = ap->hqq_iters,
                       .ar_iters = ap->iters,
                       .ar_batch = ap->batch_size,
                       .teq_steps = ap->teq_steps,
                       .teq_snapshot_every = ap->teq_snapshot_every,
                       .n_samples = cfg->calib.n_samples,
                       .seqlen = cfg->calib.seqlen};
    if (cfg->global.dtype != WQ_QDTYPE_INT) j->bits = 4;
}

int wq_cli_parse_bytes(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0) || !isfinite(v)) return -1;
    double mul = 1073741824.0; /* plain numbers are GiB */
    if (*end) {
        switch (*end == 'k' ? 'K' : *end) {
        case 'K':
            mul = 1024.0;
            break;
        case 'M':
            mul = 1048576.0;
            break;
        case 'G':
            mul = 1073741824.0;
            break;
        case 'T':
            mul = 1099511627776.0;
            break;
        default:
            return -1;
        }
        end++;
        if (strcmp(end, "") != 0 && strcmp(end, "B") != 0 && strcmp(end, "iB") != 0) return -1;
    }
    *out = v * mul;
    return 0;
}
