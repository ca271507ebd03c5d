/* cli_eval.h: perplexity evaluation shared by `wquant eval` and `wquant sweep`. Layer: cli. */
#ifndef WQ_CLI_EVAL_H
#define WQ_CLI_EVAL_H

#include <stdint.h>

#include "dist/dist.h"
#include "wq_status.h"

typedef struct {
    const char *model;     /* HF model directory (config, tokenizer, weights) */
    const char *quantized; /* container, or NULL for the fp weights */
    const char *text;
    const char *protocol;           /* "stories" or "windows" */
    int64_t range_begin, range_end; /* stories [begin, end); end -1 = all */
    int64_t windows, seqlen, stages;
    const char *dump_ids; /* rank 0 writes the evaluated token sequences here, or NULL */
} wq_cli_eval_req;

typedef struct {
    double ppl, mean_nll, seconds, peak_rss_mb;
    int64_t tokens, sequences;
} wq_cli_eval_res;

/* Perplexity of the model (or container) on the request's text. Collective; every rank returns
 * the same status and (on success) the same result. */
wq_status wq_cli_eval_ppl(wq_dist *d, const wq_cli_eval_req *rq, wq_cli_eval_res *res);

#endif
