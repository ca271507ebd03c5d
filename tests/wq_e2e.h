/* wq_e2e.h: helpers for end-to-end tests that run the real `wquant` binary under mpiexec. */
#ifndef WQ_E2E_H
#define WQ_E2E_H

#include <stddef.h>
#include <stdint.h>

/* Path of the built CLI and the mpiexec prefix ("mpiexec -n N --oversubscribe"). */
const char *wq_e2e_bin(void);
/* Runs `mpiexec -n np wquant <args>` with stdout+stderr captured into *log (static buffer);
 * returns the exit status. np = 0 runs the binary without mpiexec. */
int wq_e2e_run(int np, char **log, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int wq_e2e_file_exists(const char *path);
/* TinyStories perplexity (stories 400..499, the assets' protocol) of a container of the model in
 * model_dir, evaluated on one process; NAN when the run fails (its log is printed). */
double wq_e2e_tinystories_ppl(const char *model_dir, const char *h5);

/* Copies the model in model_dir (config.json, model.safetensors, tokenizer.model) to dir and sets
 * element 0 of every row of model.embed_tokens.weight (f32) to NaN, so any calibration window
 * yields non-finite activations. Returns 0 on success. */
int wq_e2e_nan_embedding_model(const char *model_dir, const char *dir);

/* A tiny safetensors writer for crafting (possibly broken) test files: header text and data given
 * verbatim; header_len_override >= 0 replaces the 8-byte length field. */
int wq_e2e_write_st(const char *path, const char *header, const void *data, size_t data_len,
                    int64_t header_len_override);

#endif
