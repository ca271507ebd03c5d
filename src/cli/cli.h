/* cli.h: the wquant subcommands. Each returns the process exit code (0 ok, 1 runtime failure,
 * 2 bad input/usage) and is called on every rank. Layer: cli. */
#ifndef WQ_CLI_H
#define WQ_CLI_H

#include "dist/dist.h"
#include "model/tok_sp.h"
#include "wq_status.h"

int wq_cmd_quantize(int argc, char **argv, wq_dist *d);
int wq_cmd_inspect(int argc, char **argv, wq_dist *d);
int wq_cmd_export(int argc, char **argv, wq_dist *d);
int wq_cmd_synth(int argc, char **argv, wq_dist *d);
int wq_cmd_plan(int argc, char **argv, wq_dist *d);
int wq_cmd_eval(int argc, char **argv, wq_dist *d);
int wq_cmd_generate(int argc, char **argv, wq_dist *d);
int wq_cmd_sweep(int argc, char **argv, wq_dist *d);

/* Exit code for a status: 0 for OK, 2 for bad input (ARG/FORMAT/UNSUPPORTED), 1 otherwise. */
int wq_cli_exit_code(wq_status st);
/* Bits per weight of a container's quantized layers (stored bytes x 8 / weights), as `inspect`
 * reports it. Not collective. */
struct wq_h5_reader;
double wq_cli_bits_per_weight(const struct wq_h5_reader *r);
/* Monotonic wall-clock seconds (progress lines and timings). */
double wq_cli_now(void);
/* Rank 0 reads a whole file and broadcasts it; every rank gets a NUL-terminated wq_malloc'd copy.
 * Collective; all ranks agree on failure (message names the path). */
wq_status wq_cli_read_bcast(wq_dist *d, const char *path, char **text, size_t *len);
/* The tokenizer of a model directory (wq_tok_load: tokenizer.model, else tokenizer.json), checked
 * to fit the model's embedding table: WQ_ERR_FORMAT (logged with the directory and both sizes)
 * when it has more ids than vocab_size. Not collective. *out: wq_tok_free. */
wq_status wq_cli_load_tokenizer(const char *model_dir, int64_t vocab_size, wq_tokenizer **out);

#endif
