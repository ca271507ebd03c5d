/* core_plot.h: a minimal raster scatter plotter (axes, "nice" ticks, grid, labels in a built-in
 * 5x7 bitmap font, one marker shape and colour per series, legend) that writes an indexed PNG
 * through core_png. Used by `wquant sweep` for perplexity against bits per weight.
 * Layer: core. Deterministic: the same spec gives the same bytes. */
#ifndef WQ_CORE_PLOT_H
#define WQ_CORE_PLOT_H

#include <stdint.h>

#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WQ_PLOT_MAX_SERIES 8

typedef struct {
    double x, y;
    int series; /* index into wq_plot_spec.series_names: picks the marker and the colour */
} wq_plot_point;

typedef struct {
    const char *title, *xlabel, *ylabel; /* printed in capitals (the font has no lower case) */
    const char *series_names[WQ_PLOT_MAX_SERIES]; /* legend lists the series that have points */
    int n_series;
    const wq_plot_point *pts;
    int n_pts;
    int width, height; /* 0 = 800 x 560 */
    int y_log;         /* 1 = logarithmic y axis, 0 = linear, -1 = log when max/min > 20 */
} wq_plot_spec;

/* Palette of the rendered images: index 0 background (white), 1 ink (black), 2 grid, 3 frame of
 * the legend, then WQ_PLOT_MAX_SERIES series colours. */
#define WQ_PLOT_N_COLORS (4 + WQ_PLOT_MAX_SERIES)
extern const uint8_t wq_plot_palette[3 * WQ_PLOT_N_COLORS];

/* Renders the plot into a wq_malloc'd w x h array of palette indices. WQ_ERR_ARG when a point is
 * not finite, a series index is out of range or the size is below 200 x 150. */
wq_status wq_plot_render(const wq_plot_spec *s, uint8_t **pix, int *w, int *h);
/* Renders and writes an indexed PNG to path (atomically). */
wq_status wq_plot_write_png(const wq_plot_spec *s, const char *path);

/* Tick positions for [lo, hi]: step 1, 2 or 5 x 10^k giving about `target` ticks; returns the count
 * (at most 32) written to ticks and the number of decimals a label needs in *decimals. */
int wq_plot_nice_ticks(double lo, double hi, int target, double *ticks, int *decimals);

#ifdef __cplusplus
}
#endif
#endif
