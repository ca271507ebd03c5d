/* wq_e2e.c: run the CLI under mpiexec and capture its output. */
#include "wq_e2e.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "wq_testutil.h"

const char *wq_e2e_bin(void) { return WQ_BUILD_DIR "/wquant"; }

int wq_e2e_file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

int wq_e2e_run(int np, char **log, const char *fmt, ...)
{
    static char out[1 << 16];
    char args[8192], cmd[10000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (np > 0)
        snprintf(cmd, sizeof cmd, "mpiexec -n %d --oversubscribe %s %s 2>&1", np, wq_e2e_bin(), args);
    else
        snprintf(cmd, sizeof cmd, "%s %s 2>&1", wq_e2e_bin(), args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    if (log) *log = out;
    if (getenv("WQ_TEST_VERBOSE")) fprintf(stderr, "$ %s\n%s", cmd, out);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

int wq_e2e_write_st(const char *path, const char *header, const void *data, size_t data_len,
                    int64_t header_len_override)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t hl = header_len_override >= 0 ? (uint64_t)header_len_override : strlen(header);
    fwrite(&hl, 8, 1, f);
    fwrite(header, 1, strlen(header), f);
    if (data_len) fwrite(data, 1, data_len, f);
    return fclose(f);
}

double wq_e2e_tinystories_ppl(const char *model_dir, const char *h5)
{
    char *log;
    int rc = wq_e2e_run(1, &log, "eval --model %s --quantized %s --text %s/text/tinystories-val-500.txt "
                                 "--protocol stories --range 400:500 --json",
                        model_dir, h5, WQ_ASSETS_DIR);
    const char *p = rc == 0 ? strstr(log, "\"ppl\": ") : NULL;
    if (!p) {
        fprintf(stderr, "eval of %s failed:\n%s\n", h5, log);
        return NAN;
    }
    return strtod(p + 7, NULL);
}

int wq_e2e_nan_embedding_model(const char *model_dir, const char *dir)
{
    char p[1024];
    if (wq_test_system("mkdir -p %s && cp %s/config.json %s/model.safetensors %s/tokenizer.model %s/", dir,
                       model_dir, model_dir, model_dir, dir))
        return -1;
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "r+b");
    uint64_t hl;
    if (!f || fread(&hl, 8, 1, f) != 1) return -1;
    char *h = calloc(hl + 1, 1);
    int rc = h && fread(h, 1, hl, f) == hl ? 0 : -1;
    const char *t = rc == 0 ? strstr(h, "\"model.embed_tokens.weight\"") : NULL;
    const char *o = t ? strstr(t, "data_offsets") : NULL;
    const char *sh = t ? strstr(t, "shape") : NULL;
    if (!o || !sh) rc = -1;
    if (rc == 0) {
        long begin = strtol(strchr(o, '[') + 1, NULL, 10);
        long rows = strtol(strchr(sh, '[') + 1, NULL, 10), cols = strtol(strchr(sh, ',') + 1, NULL, 10);
        float nan = NAN;
        for (long r = 0; r < rows && rc == 0; r++) {
            fseek(f, (long)(8 + hl) + begin + r * cols * 4, SEEK_SET);
            rc = fwrite(&nan, 4, 1, f) == 1 ? 0 : -1;
        }
    }
    free(h);
    return fclose(f) == 0 ? rc : -1;
}
