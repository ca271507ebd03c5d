/* cli_main.c: the wquant command-line driver: MPI setup, subcommand dispatch, exit codes.
 * Layer: cli. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core_alloc.h"
#include "core/core_log.h"
#include "wq_version.h"

/* OpenBLAS: results of some BLAS calls depend on the thread count, and OpenBLAS picks its default
 * from the CPU affinity mpiexec gives each rank. wquant therefore fixes it: OPENBLAS_NUM_THREADS when
 * set, else 1 per rank. Containers are bit-identical for any rank count at a fixed thread count. */
void openblas_set_num_threads(int n);

static const struct {
    const char *name;
    int (*fn)(int, char **, wq_dist *);
    const char *summary;
} k_cmds[] = {
    {"quantize", wq_cmd_quantize, "quantize a HuggingFace model into a parallel-HDF5 container"},
    {"eval", wq_cmd_eval, "perplexity of the fp or quantized model (stories / windows protocols)"},
    {"generate", wq_cmd_generate, "greedy decoding from token ids (smoke test)"},
    {"synth", wq_cmd_synth, "write a synthetic HF model with a real model's widths"},
    {"plan", wq_cmd_plan, "predict time, memory and the rank grid of a run; --calibrate the machine"},
    {"inspect", wq_cmd_inspect, "list the layers, settings and sizes of a container"},
    {"export", wq_cmd_export, "write a container as another format (safetensors-fp16, ...)"},
    {"sweep", wq_cmd_sweep, "quantize + evaluate every point of a config sweep; table and plot"},
};
#define N_CMDS (int)(sizeof k_cmds / sizeof k_cmds[0])

static void usage(FILE *f)
{
    fprintf(f, "wquant %s: weight-only quantization of transformer LLMs on CPU clusters (MPI)\n\n"
               "usage: [mpiexec -n N] wquant <command> [options]   (wquant <command> --help)\n\n"
               "commands:\n",
            WQ_VERSION_STRING);
    for (int i = 0; i < N_CMDS; i++) fprintf(f, "  %-10s %s\n", k_cmds[i].name, k_cmds[i].summary);
    fprintf(f, "\n  --version  print the version\n");
}

int wq_cli_exit_code(wq_status st)
{
    switch (st) {
    case WQ_OK:
        return 0;
    case WQ_ERR_ARG:
    case WQ_ERR_FORMAT:
    case WQ_ERR_UNSUPPORTED:
        return 2;
    default:
        return 1;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("wquant %s (container format %d)\n", WQ_VERSION_STRING, WQ_FORMAT_VERSION);
        return 0;
    }
    int cmd = -1;
    for (int i = 0; i < N_CMDS; i++)
        if (strcmp(argv[1], k_cmds[i].name) == 0) cmd = i;
    if (cmd < 0) {
        fprintf(stderr, "wquant: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    const char *lvl = getenv("WQ_LOG_LEVEL");
    if (lvl) wq_log_set_level((wq_log_level)atoi(lvl));
    const char *nt = getenv("OPENBLAS_NUM_THREADS");
    int threads = nt && atoi(nt) > 0 ? atoi(nt) : 1;
    openblas_set_num_threads(threads);
    wq_dist *d = NULL;
    if (wq_dist_create(&argc, &argv, &d) != WQ_OK) {
        fprintf(stderr, "wquant: MPI initialisation failed\n");
        return 1;
    }
    int rc = k_cmds[cmd].fn(argc, argv, d);
    /* Commands agree on failure before returning, but the failing rank returns its own status
     * (exit 2 for bad input) while its peers return "another rank failed" (exit 1), and mpiexec
     * reports whichever exits first: every rank exits with the largest code instead. */
    double worst = rc;
    if (wq_dist_allreduce_max_f64(d, &worst, 1) == WQ_OK) rc = (int)worst;
    wq_dist_destroy(d);
    return rc;
}
