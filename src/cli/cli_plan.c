/* cli_plan.c: `wquant plan`: predicted wall time, per-rank peak memory, bytes read and written,
 * container size and the P x D grid of a quantization run before it is started, plus a ready sbatch
 * header; `wquant plan --calibrate` measures the machine constants the predictions use. The
 * arithmetic is dist_cost.c; this file reads the inputs and prints. Layer: cli. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/cli_plan.h"
#include "core/core_alloc.h"
#include "core/core_log.h"
#include "model/hf_config.h"

/* Bytes per weight from config.json's torch_dtype (2 unless float32). */
static int src_bytes_of(const char *cfg_text)
{
    cJSON *root = cJSON_Parse(cfg_text);
    const cJSON *t = root ? cJSON_GetObjectItemCaseSensitive(root, "torch_dtype") : NULL;
    int b = cJSON_IsString(t) && strcmp(t->valuestring, "float32") == 0 ? 4 : 2;
    cJSON_Delete(root);
    return b;
}

static const char *fmt_time(double s, char *buf, size_t n)
{
    if (s < 120)
        snprintf(buf, n, "%.1f s", s);
    else if (s < 7200)
        snprintf(buf, n, "%.1f min", s / 60);
    else if (s < 3 * 86400)
        snprintf(buf, n, "%.1f h", s / 3600);
    else
        snprintf(buf, n, "%.1f days", s / 86400);
    return buf;
}

/* SLURM --time: predicted x 1.5 + 10 minutes, whole minutes. */
static void slurm_time(double s, char *buf, size_t n)
{
    long m = (long)ceil((s * 1.5 + 600.0) / 60.0);
    long d = m / 1440, h = (m % 1440) / 60, mm = m % 60;
    if (d > 0)
        snprintf(buf, n, "%ld-%02ld:%02ld:00", d, h, mm);
    else
        snprintf(buf, n, "%02ld:%02ld:00", h, mm);
}

static const char *algo_label(const wq_cost_job *j)
{
    static const char *names[] = {"RTN", "GPTQ", "AWQ", "HQQ", "AutoRound", "TEQ"};
    return names[j->algo];
}

static void print_text(const char *model, const wq_model_cfg *mc, const wq_cost_shape *s,
                       const wq_cost_job *j, const char *machine_note, int nodes, int cores,
                       double node_mem, int rpn, double budget, const wq_cost_plan *p,
                       const char *why)
{
    char a[32], b[32], c[32], e[32], f[32], g[32], t[32];
    const int calibrated = j->algo != WQ_COST_RTN && j->algo != WQ_COST_HQQ;
    printf("model     %s: %s, %.2f B parameters, %lld blocks (d %lld, F %lld, %lld/%lld heads, "
           "vocab %lld), "
           "%s in %s\n",
           model, mc->model_type, (double)wq_cost_model_params(s) / 1e9, (long long)s->n_layers,
           (long long)s->d, (long long)s->F, (long long)s->n_heads, (long long)s->n_kv_heads,
           (long long)s->vocab, wq_cost_fmt_bytes(p->model_bytes, a, sizeof a),
           s->src_bytes == 4 ? "f32" : "16-bit");
    printf("job       %s int%d group %lld", algo_label(j), j->bits, (long long)j->group_size);
    if (calibrated)
        printf(", calibration %lld x %lld tokens", (long long)j->n_samples, (long long)j->seqlen);
    printf("\nmachine   %s\n", machine_note);
    printf("nodes     %d x %d cores, %s; %d rank(s), %d per node, %d BLAS thread(s) per rank\n",
           nodes, cores, wq_cost_fmt_bytes(node_mem, a, sizeof a), p->ranks, rpn, p->threads);
    printf("grid      %s\n", why);
    printf(
        "memory    peak %s per rank (budget %s), at the %s: base %s, activations %s, weights %s, "
        "algorithm state %s, working buffers %s\n",
        wq_cost_fmt_bytes(p->mem.total, a, sizeof a), wq_cost_fmt_bytes(budget, b, sizeof b),
        p->mem.phase, wq_cost_fmt_bytes(p->mem.base, c, sizeof c),
        wq_cost_fmt_bytes(p->mem.acts, e, sizeof e), wq_cost_fmt_bytes(p->mem.weights, f, sizeof f),
        wq_cost_fmt_bytes(p->mem.algo, g, sizeof g),
        wq_cost_fmt_bytes(p->mem.transient, t, sizeof t));
    printf("time      %s (%.0f s): startup %.1f s, tensor rounds %.1f s, final fsync %.1f s",
           fmt_time(p->seconds, a, sizeof a), p->seconds, p->t_startup, p->t_rounds, p->t_flush);
    if (calibrated)
        printf(", embedding %.1f s, %lld blocks x %.1f s", p->t_embed, (long long)s->n_layers,
               p->t_block);
    printf("\n");
    if (calibrated) {
        const wq_cost_block *k = &p->block;
        printf("block     load %.2f s, forward %.2f s, Hessian %.2f s, reductions %.2f s, "
               "factorisation "
               "%.2f s, solve %.2f s, search grid %.2f s, quantize %.2f s, write %.2f s\n",
               k->t_load, k->t_fwd, k->t_hess, k->t_reduce, k->t_prep, k->t_solve, k->t_grid,
               k->t_quant, k->t_write);
        printf("flops     per block: forward %.3g (x%.0f passes), Hessian %.3g, factorisation %.3g "
               "per "
               "rank, solve %.3g, grid %.3g, tuning %.3g\n",
               k->flops_fwd1, k->flops_fwd1 > 0 ? k->flops_fwd / k->flops_fwd1 : 0, k->flops_hess,
               k->flops_prep, k->flops_solve, k->flops_grid, k->flops_ar);
    }
    printf("io        read %s, written %s (container %s)\n",
           wq_cost_fmt_bytes(p->bytes_read, a, sizeof a),
           wq_cost_fmt_bytes(p->bytes_written, b, sizeof b),
           wq_cost_fmt_bytes(p->container_bytes, c, sizeof c));
}

static void print_json(const char *model, const wq_cost_shape *s, const wq_cost_job *j,
                       int measured, int nodes, int rpn, double budget, const wq_cost_plan *p,
                       const char *why, const char *sb_time, double sb_mem)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "model", model);
    cJSON_AddStringToObject(r, "algorithm", algo_label(j));
    cJSON_AddNumberToObject(r, "parameters", (double)wq_cost_model_params(s));
    cJSON_AddBoolToObject(r, "machine_measured", measured);
    cJSON_AddNumberToObject(r, "nodes", nodes);
    cJSON_AddNumberToObject(r, "ranks", p->ranks);
    cJSON_AddNumberToObject(r, "ranks_per_node", rpn);
    cJSON_AddNumberToObject(r, "threads", p->threads);
    cJSON_AddNumberToObject(r, "stages", p->P);
    cJSON_AddNumberToObject(r, "ranks_per_stage", p->D);
    cJSON_AddNumberToObject(r, "useful_ranks", (double)p->useful_ranks);
    cJSON_AddStringToObject(r, "why", why);
    cJSON_AddNumberToObject(r, "seconds", p->seconds);
    cJSON_AddNumberToObject(r, "seconds_per_block", p->t_block);
    cJSON_AddNumberToObject(r, "seconds_rounds", p->t_rounds);
    cJSON_AddNumberToObject(r, "seconds_startup", p->t_startup);
    cJSON_AddNumberToObject(r, "seconds_flush", p->t_flush);
    cJSON_AddNumberToObject(r, "peak_bytes_per_rank", p->mem.total);
    cJSON_AddNumberToObject(r, "peak_rss_mb", p->mem.total / 1048576.0);
    cJSON_AddStringToObject(r, "peak_phase", p->mem.phase);
    cJSON_AddNumberToObject(r, "budget_bytes_per_rank", budget);
    cJSON_AddNumberToObject(r, "bytes_read", p->bytes_read);
    cJSON_AddNumberToObject(r, "bytes_written", p->bytes_written);
    cJSON_AddNumberToObject(r, "container_bytes", p->container_bytes);
    cJSON_AddStringToObject(r, "sbatch_time", sb_time);
    cJSON_AddNumberToObject(r, "sbatch_mem_gb", sb_mem);
    char *js = cJSON_PrintUnformatted(r);
    if (js) printf("%s\n", js);
    cJSON_free(js);
    cJSON_Delete(r);
}

/* Loads the model config (a directory or a file) on rank 0 and broadcasts it. Collective. */
static wq_status load_model_cfg(wq_dist *d, const char *model, wq_model_cfg *mc, int *src_bytes)
{
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path,
             stat(model, &sb) == 0 && S_ISDIR(sb.st_mode) ? "%s/config.json" : "%s", model);
    char *text = NULL;
    WQ_TRY(wq_cli_read_bcast(d, path, &text, NULL));
    wq_status st = wq_hf_config_parse(text, path, mc);
    if (st == WQ_OK) *src_bytes = src_bytes_of(text);
    wq_free(text);
    return wq_dist_agree(d, st);
}

int wq_cmd_plan(int argc, char **argv, wq_dist *d)
{
    wq_opt opts[] = {
        {"model", WQ_OPT_VALUE, "DIR|FILE", "HF model directory or its config.json (shapes only)"},
        {"config", WQ_OPT_VALUE, "FILE", "wquant config (algorithm, bits, calibration size)"},
        {"algo", WQ_OPT_VALUE, "NAME", "algorithm with its defaults when there is no --config"},
        {"ranks", WQ_OPT_VALUE, "R", "MPI ranks (default 1)"},
        {"nodes", WQ_OPT_VALUE, "M", "nodes (default 1)"},
        {"cores-per-node", WQ_OPT_VALUE, "C", "cores per node (default: the machine file's)"},
        {"mem-per-node", WQ_OPT_VALUE, "SIZE",
         "memory per node, e.g. 512G (default: the machine's)"},
        {"threads", WQ_OPT_VALUE, "T", "BLAS threads per rank (default: cores / ranks per node)"},
        {"max-memory", WQ_OPT_VALUE, "SIZE",
         "budget per rank (default: 95% of node memory / ranks per node)"},
        {"machine", WQ_OPT_VALUE, "FILE", "machine constants (default: see docs/planning.md)"},
        {"calibrate", WQ_OPT_FLAG, NULL,
         "measure the machine constants and write the machine file"},
        {"scratch", WQ_OPT_VALUE, "DIR",
         "--calibrate: directory for the file-system probe (default .)"},
        {"no-checkpoint", WQ_OPT_FLAG, NULL,
         "the run will use quantize --no-checkpoint (no checkpoint entries written)"},
        {"json", WQ_OPT_FLAG, NULL, "one JSON object instead of the text report"},
        {"help", WQ_OPT_FLAG, NULL, "this help"},
        {NULL},
    };
    const char *pos[1];
    int n_pos = 0, rank = wq_dist_rank(d);
    if (wq_cli_parse(argc, argv, 2, opts, pos, 0, &n_pos) != 0) return 2;
    if (wq_cli_opt(opts, "help")->count) {
        if (rank == 0)
            wq_cli_print_help(
                "wquant plan --model DIR|config.json [--config CFG.json] --ranks R [--nodes M "
                "--cores-per-node C --mem-per-node G] [--json]\n       wquant plan --calibrate "
                "[--machine FILE]",
                "Predicts wall time, per-rank peak memory, I/O and the P x D grid of a "
                "quantization run,\nand prints a SLURM header. Sizes take K/M/G/T suffixes "
                "(binary); a plain number is GiB.",
                opts);
        return 0;
    }
    const char *machine_path = wq_cli_opt(opts, "machine")->value;
    char def_path[4096];
    wq_cli_machine_default_path(def_path, sizeof def_path);
    if (wq_cli_opt(opts, "calibrate")->count) {
        wq_machine m;
        const char *scratch = wq_cli_opt(opts, "scratch")->value;
        wq_status st = wq_cli_calibrate(d, scratch ? scratch : ".", &m);
        const char *out = machine_path ? machine_path : def_path;
        if (st == WQ_OK && rank == 0) st = wq_cli_machine_save(out, &m);
        st = wq_dist_agree(d, st);
        if (st == WQ_OK && rank == 0)
            printf(
                "wrote %s: sgemm %.1f GF/s, dgemm %.1f GF/s, block forward %.1f GF/s, GPTQ "
                "factorisation "
                "%.1f GF/s, solve %.1f GF/s, exact adds %.0f M/s, RTN %.0f M weights/s, HQQ %.1f M "
                "weights/s, memcpy %.1f GB/s, first touch %.1f GB/s, fs read %.2f GB/s (node "
                "%.2f GB/s), write %.2f GB/s (flush %.2f GB/s), allreduce %.2f GB/s, base RSS %.0f "
                "MiB, %d cores, %.1f GiB\n",
                out, m.gemm_flops / 1e9, m.dgemm_flops / 1e9, m.fwd_flops / 1e9, m.chol_flops / 1e9,
                m.solve_flops / 1e9, m.exact_rate / 1e6, m.quant_rate / 1e6, m.hqq_rate / 1e6,
                m.mem_bw / 1e9, m.touch_bw / 1e9, m.fs_read_bw / 1e9, m.fs_node_bw / 1e9,
                m.fs_write_bw / 1e9, m.fs_sync_bw / 1e9, m.net_bw / 1e9, m.base_rss / 1048576.0, m.cores_per_node,
                m.mem_per_node / 1073741824.0);
        return wq_cli_exit_code(st);
    }
    const char *model = wq_cli_opt(opts, "model")->value;
    if (!model) {
        if (rank == 0) fprintf(stderr, "wquant plan: --model is required (or --calibrate)\n");
        return 2;
    }
    int64_t ranks = 1, nodes = 1, cores = 0, threads = 0;
    if (wq_cli_get_int(opts, "ranks", 1, 1 << 24, &ranks) ||
        wq_cli_get_int(opts, "nodes", 1, 1 << 20, &nodes) ||
        wq_cli_get_int(opts, "cores-per-node", 1, 1 << 16, &cores) ||
        wq_cli_get_int(opts, "threads", 1, 1 << 16, &threads))
        return 2;
    if (nodes > ranks) {
        if (rank == 0)
            fprintf(
                stderr,
                "wquant plan: --nodes %lld is more than --ranks %lld (every node needs a rank)\n",
                (long long)nodes, (long long)ranks);
        return 2;
    }
    double node_mem = 0, budget = 0;
    const char *nm = wq_cli_opt(opts, "mem-per-node")->value,
               *mm = wq_cli_opt(opts, "max-memory")->value;
    if ((nm && wq_cli_parse_bytes(nm, &node_mem)) || (mm && wq_cli_parse_bytes(mm, &budget))) {
        if (rank == 0)
            fprintf(stderr, "wquant plan: %s '%s' is not a size (e.g. 512G, 800M, 1.5T)\n",
                    nm && wq_cli_parse_bytes(nm, &node_mem) ? "--mem-per-node" : "--max-memory",
                    nm && wq_cli_parse_bytes(nm, &node_mem) ? nm : mm);
        return 2;
    }

    wq_machine m;
    int measured = 0;
    wq_status st = wq_cli_machine_load(d, machine_path, machine_path != NULL, &m, &measured);
    if (st != WQ_OK) return wq_cli_exit_code(st);
    if (cores > 0) m.cores_per_node = (int)cores;
    if (node_mem > 0) m.mem_per_node = node_mem;
    wq_model_cfg mc;
    int src_bytes = 2;
    st = load_model_cfg(d, model, &mc, &src_bytes);
    if (st != WQ_OK) return wq_cli_exit_code(st);
    wq_config cfg;
    const char *cpath = wq_cli_opt(opts, "config")->value, *algo = wq_cli_opt(opts, "algo")->value;
    if (cpath) {
        char *text = NULL;
        st = wq_cli_read_bcast(d, cpath, &text, NULL);
        if (st == WQ_OK) st = wq_config_parse(text, cpath, &cfg);
        wq_free(text);
    } else {
        char js[64];
        snprintf(js, sizeof js, "{\"%s\": {}}", algo ? algo : "rtn");
        st = wq_config_parse(js, "--algo", &cfg);
    }
    st = wq_dist_agree(d, st);
    if (st != WQ_OK) return wq_cli_exit_code(st);

    wq_cost_shape s;
    wq_cost_job j;
    wq_cli_cost_shape(&mc, src_bytes, &s);
    wq_cli_cost_job(&cfg, &j);
    j.no_checkpoint = wq_cli_opt(opts, "no-checkpoint")->count > 0;
    wq_config_free(&cfg);
    const int rpn = (int)((ranks + nodes - 1) / nodes);
    if (threads == 0) threads = m.cores_per_node / rpn > 0 ? m.cores_per_node / rpn : 1;
    const double node_budget = 0.95 * m.mem_per_node / rpn;
    if (budget <= 0) budget = node_budget;
    if (budget > node_budget) {
        char a[32], b[32];
        if (rank == 0)
            fprintf(stderr,
                    "wquant plan: --max-memory %s per rank exceeds 95%% of %s per node shared "
                    "by %d ranks (%s)\n",
                    wq_cost_fmt_bytes(budget, a, sizeof a),
                    wq_cost_fmt_bytes(m.mem_per_node, b, sizeof b), rpn,
                    wq_cost_fmt_bytes(node_budget, (char[32]){0}, 32));
        return 2;
    }
    wq_cost_plan p;
    char why[512];
    st = wq_cost_choose(&s, &j, &m, (int)ranks, (int)threads, rpn, budget, &p, why, sizeof why);
    if (st != WQ_OK) {
        if (rank == 0) {
            int fit = (int)floor(0.95 * m.mem_per_node / p.mem.total);
            fprintf(stderr, "wquant plan: %s.\n", why);
            if (fit >= 1)
                fprintf(stderr,
                        "  It fits with at most %d rank(s) per node (more threads per rank), e.g. "
                        "--ranks %lld --nodes %lld.\n",
                        fit, (long long)(fit * nodes), (long long)nodes);
            else
                fprintf(
                    stderr,
                    "  It does not fit one rank per node either: use nodes with more than %s.\n",
                    wq_cost_fmt_bytes(p.mem.total / 0.95, (char[32]){0}, 32));
        }
        return 2;
    }
    char machine_note[4400];
    snprintf(machine_note, sizeof machine_note,
             measured ? "measured (%s)"
                      : "defaults: no machine file at %s (run `wquant plan --calibrate`)",
             machine_path ? machine_path : def_path);
    char sb_time[32];
    slurm_time(p.seconds, sb_time, sizeof sb_time);
    double sb_mem = ceil(fmin(p.mem.total * rpn * 1.15, m.mem_per_node) / 1073741824.0);
    if (rank == 0) {
        if (wq_cli_opt(opts, "json")->count) {
            print_json(model, &s, &j, measured, (int)nodes, rpn, budget, &p, why, sb_time, sb_mem);
        } else {
            print_text(model, &mc, &s, &j, machine_note, (int)nodes, m.cores_per_node,
                       m.mem_per_node, rpn, budget, &p, why);
            if (ranks > p.useful_ranks) {
                wq_cost_plan q;
                int u = (int)p.useful_ranks;
                if (wq_cost_run(&s, &j, &m, u, 1, (int)threads, rpn < u ? rpn : u, &q) == WQ_OK)
                    printf(
                        "ranks     only %d of the %lld ranks are useful (%s); the rest would idle. "
                        "Predicted time with %d ranks: %.0f s\n",
                        u, (long long)ranks,
                        j.algo == WQ_COST_RTN || j.algo == WQ_COST_HQQ
                            ? "one tensor per rank at most"
                        : j.algo == WQ_COST_GPTQ
                            ? "calibration sequences or 128-row tiles of the widest linear"
                            : "calibration sequences or linears per block",
                        u, q.seconds);
            } else {
                printf("ranks     up to %lld ranks add parallelism\n", (long long)p.useful_ranks);
            }
            printf("\n#!/bin/bash\n");
            printf("#SBATCH --job-name=wq-%s          # %%x in log names\n", algo_label(&j));
            printf("#SBATCH --nodes=%lld                  # wquant plan: %lld rank(s) on %lld "
                   "node(s)\n",
                   (long long)nodes, (long long)ranks, (long long)nodes);
            printf("#SBATCH --ntasks-per-node=%d         # MPI ranks per node\n", rpn);
            printf("#SBATCH --cpus-per-task=%lld          # OpenBLAS threads per rank (results are "
                   "bit-identical at a fixed count)\n",
                   (long long)threads);
            printf("#SBATCH --mem=%.0fG                  # %d x peak %s per rank + 15%%\n", sb_mem,
                   rpn, wq_cost_fmt_bytes(p.mem.total, (char[32]){0}, 32));
            printf("#SBATCH --time=%s            # predicted %.0f s x 1.5 + 10 min\n", sb_time,
                   p.seconds);
            printf("#SBATCH --output=logs/%%x-%%j.out\n");
        }
    }
    return 0;
}
