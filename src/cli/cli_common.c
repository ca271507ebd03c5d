/* cli_common.c: helpers shared by the subcommands. Layer: cli. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/core_alloc.h"
#include "core/core_log.h"

wq_status wq_cli_read_bcast(wq_dist *d, const char *path, char **text, size_t *len)
{
    wq_status st = WQ_OK;
    char *buf = NULL;
    size_t n = 0;
    *text = NULL;
    if (wq_dist_rank(d) == 0) {
        FILE *f = fopen(path, "rb");
        if (!f) {
            WQ_LOG_ERROR("cannot read '%s': %s", path, strerror(errno));
            st = WQ_ERR_ARG;
        } else {
            fseek(f, 0, SEEK_END);
            long sz = ftell(f);
            fseek(f, 0, SEEK_SET);
            if (sz < 0 || sz > (64L << 20)) {
                WQ_LOG_ERROR("'%s' is not a readable file of at most 64 MiB", path);
                st = WQ_ERR_ARG;
            } else {
                buf = wq_malloc((size_t)sz + 1);
                if (!buf) {
                    st = WQ_ERR_NOMEM;
                } else if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
                    WQ_LOG_ERROR("short read on '%s'", path);
                    st = WQ_ERR_IO;
                } else {
                    buf[sz] = '\0';
                    n = (size_t)sz;
                }
            }
            fclose(f);
        }
    }
    st = wq_dist_agree(d, st);
    if (st != WQ_OK) {
        wq_free(buf);
        return st;
    }
    void *p = buf;
    st = wq_dist_bcast_bytes(d, 0, &p, &n);
    st = wq_dist_agree(d, st);
    if (st != WQ_OK) {
        if (wq_dist_rank(d) != 0) wq_free(p);
        wq_free(buf);
        return st;
    }
    *text = p;
    if (len) *len = n;
    return WQ_OK;
}

double wq_cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

wq_status wq_cli_load_tokenizer(const char *model_dir, int64_t vocab_size, wq_tokenizer **out)
{
    *out = NULL;
    wq_tokenizer *tok = NULL;
    WQ_TRY(wq_tok_load(model_dir, &tok));
    if (wq_tok_vocab_size(tok) > vocab_size) {
        WQ_LOG_ERROR("%s: tokenizer has %lld pieces but the model only %lld embeddings", model_dir,
                     (long long)wq_tok_vocab_size(tok), (long long)vocab_size);
        wq_tok_free(tok);
        return WQ_ERR_FORMAT;
    }
    *out = tok;
    return WQ_OK;
}
