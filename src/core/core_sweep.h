/* core_sweep.h: the sweep file of `wquant sweep`: a base config (INC dict form, inline or a path),
 * the model, evaluation sets and axes; every combination of axis values is one point with its own
 * config. Enumeration order is that of nested loops over the axes in file order, the last axis
 * fastest. Layer: core. Pure (no file or MPI access): the caller reads files and passes their text.
 *
 *   {"base": "configs/rtn_w4g32_asym.json" | {"rtn": {...}, "calibration": {...}},
 *    "model": "assets/stories260K-hf", "out": "runs/my-sweep", "stages": 1,
 *    "calibration": {...},                        merged into every point's calibration section
 *    "algorithm_params": {"gptq": {"act_order": true}},   global keys for that algorithm only
 *    "eval": {"name": "tinystories", "text": FILE, "protocol": "stories", "range": "400:500",
 *             "seqlen": 512, "windows": 40}       or a list of such objects (one ppl column each)
 *    "axes": {"algorithm": ["rtn", "gptq"], "bits": [4, 3], "group_size": [32, 64],
 *             "use_sym": [true, false], "dtype": ["int", "nf4"], "calibration.n_samples": [32]}}
 *
 * Axis keys: "algorithm" renames the algorithm section; "calibration.K" sets calibration key K;
 * any other key is set in the algorithm's "global" section (any key the config accepts there). */
#ifndef WQ_CORE_SWEEP_H
#define WQ_CORE_SWEEP_H

#include <stdint.h>

#include "core/core_config.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WQ_SWEEP_MAX_AXES 16
#define WQ_SWEEP_MAX_EVALS 4
#define WQ_SWEEP_MAX_POINTS 100000

typedef struct wq_sweep wq_sweep;

typedef struct {
    char name[64];     /* column label, default: the text file's base name without extension */
    char text[1024];   /* evaluation text path */
    char protocol[16]; /* "stories" or "windows" */
    int64_t range_begin, range_end; /* stories [begin, end); end -1 = all */
    int64_t seqlen, windows;
} wq_sweep_eval;

typedef struct {
    int64_t index;
    char name[192];    /* "<index>_<axis values>", safe as a directory name */
    char *config_json; /* the point's config (base + calibration + algorithm_params + axes) */
    char *definition;  /* one-line JSON of everything that determines the result: canonical
                          config, model, evaluations; a changed definition is not resumed */
    wq_config cfg;     /* parsed config_json (validated) */
    char values[WQ_SWEEP_MAX_AXES][64]; /* each axis's value, as printed in the table */
} wq_sweep_point;

/* Parses a sweep file. Unknown keys, wrong types, empty or repeated axis values are WQ_ERR_ARG with
 * a message naming `origin` and the key. The base config is not parsed yet when given as a path:
 * then wq_sweep_base_path is non-NULL and the caller passes its text to wq_sweep_set_base.
 * Owns heap memory: wq_sweep_destroy. */
wq_status wq_sweep_parse(const char *text, const char *origin, wq_sweep **out);
void wq_sweep_destroy(wq_sweep *s);
const char *wq_sweep_base_path(const wq_sweep *s);
wq_status wq_sweep_set_base(wq_sweep *s, const char *text, const char *origin);

int64_t wq_sweep_count(const wq_sweep *s);
int wq_sweep_n_axes(const wq_sweep *s);
const char *wq_sweep_axis_key(const wq_sweep *s, int axis);
const char *wq_sweep_model(const wq_sweep *s);
const char *wq_sweep_out(const wq_sweep *s); /* NULL when the file has no "out" */
int64_t wq_sweep_stages(const wq_sweep *s);
int wq_sweep_n_evals(const wq_sweep *s);
const wq_sweep_eval *wq_sweep_eval_at(const wq_sweep *s, int i);

/* The value index of each axis for point `index` (mixed radix, last axis fastest). */
void wq_sweep_coords(const wq_sweep *s, int64_t index, int *coords);

/* Builds and validates point `index` (0 <= index < count). The message of an invalid combination
 * names the point and its axis values. Free with wq_sweep_point_free. */
wq_status wq_sweep_point_make(const wq_sweep *s, int64_t index, wq_sweep_point *p);
void wq_sweep_point_free(wq_sweep_point *p);

#ifdef __cplusplus
}
#endif
#endif
