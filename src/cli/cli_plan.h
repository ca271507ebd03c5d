/* cli_plan.h: what `wquant plan` and `wquant quantize` share: the machine file (measured
 * constants), and the translation of a model config and a wquant config into the cost model's
 * inputs (dist_cost.h). Layer: cli. */
#ifndef WQ_CLI_PLAN_H
#define WQ_CLI_PLAN_H

#include <stddef.h>

#include "core/core_config.h"
#include "core/core_model_cfg.h"
#include "dist/dist.h"
#include "dist/dist_cost.h"

/* The default machine file: $WQ_MACHINE_FILE, else $XDG_CONFIG_HOME/wquant/machine.json, else
 * $HOME/.config/wquant/machine.json (docs/planning.md). */
void wq_cli_machine_default_path(char *buf, size_t n);

/* Rank 0 reads `path` (NULL: the default path) and broadcasts; every rank gets the same constants.
 * A missing file gives the defaults (*measured = 0) unless `required`; unknown keys and
 * non-positive values are errors naming the key. Collective. */
wq_status wq_cli_machine_load(wq_dist *d, const char *path, int required, wq_machine *m,
                              int *measured);
/* Writes the constants as JSON (creating the parent directory). Not collective. */
wq_status wq_cli_machine_save(const char *path, const wq_machine *m);

/* Measures the constants on this machine (every rank takes part in the network measurement; rank 0
 * measures the rest and broadcasts). scratch_dir: where to write the file-system probe. Collective.
 */
wq_status wq_cli_calibrate(wq_dist *d, const char *scratch_dir, wq_machine *m);

void wq_cli_cost_shape(const wq_model_cfg *mc, int src_bytes, wq_cost_shape *s);
void wq_cli_cost_job(const wq_config *cfg, wq_cost_job *j);

/* "512G", "1.5TiB", "800M", "4096K" or a plain number of GiB -> bytes. 0 on success, -1 if bad. */
int wq_cli_parse_bytes(const char *s, double *out);

/* MemTotal of this machine in bytes (0 if unknown). */
double wq_cli_mem_total(void);

#endif
