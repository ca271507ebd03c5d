/* core_plot.c: raster scatter plot into palette indices, then PNG (core_png). Text uses a 5x7
 * bitmap font drawn for this file (digits, capitals, a little punctuation; lower case prints as
 * capitals). Layer: core. */
#include "core/core_plot.h"

#include <ctype.h>
#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "core/core_png.h"

enum { C_BG = 0, C_INK = 1, C_GRID = 2, C_FRAME = 3, C_SERIES = 4 };

const uint8_t wq_plot_palette[3 * WQ_PLOT_N_COLORS] = {
    255, 255, 255, /* background */
    0,   0,   0,   /* ink */
    225, 225, 225, /* grid */
    150, 150, 150, /* legend frame */
    31,  119, 180, /* series 0: blue */
    214, 39,  40,  /* 1: red */
    44,  160, 44,  /* 2: green */
    255, 127, 14,  /* 3: orange */
    148, 103, 189, /* 4: purple */
    140, 86,  75,  /* 5: brown */
    227, 119, 194, /* 6: pink */
    23,  190, 207, /* 7: cyan */
};

/* ---- font: 7 rows of 5 pixels per glyph, '#' = ink ----------------------------------------- */

static const struct {
    char c;
    const char *rows;
} k_font[] = {
    {'0', ".###.#...##..###.#.###..##...#.###."}, {'1', "..#...##....#....#....#....#...###."},
    {'2', ".###.#...#....#...#...#...#...#####"}, {'3', "#####...#...#.....#.....##...#.###."},
    {'4', "...#...##..#.#.#..#.#####...#....#."}, {'5', "######....####.....#....##...#.###."},
    {'6', "..##..#...#....####.#...##...#.###."}, {'7', "#####....#...#...#...#....#....#..."},
    {'8', ".###.#...##...#.###.#...##...#.###."}, {'9', ".###.#...##...#.####....#...#..##.."},
    {'A', ".###.#...##...#######...##...##...#"}, {'B', "####.#...##...#####.#...##...#####."},
    {'C', ".###.#...##....#....#....#...#.###."}, {'D', "###..#..#.#...##...##...##..#.###.."},
    {'E', "######....#....####.#....#....#####"}, {'F', "######....#....####.#....#....#...."},
    {'G', ".###.#...##....#.####...##...#.####"}, {'H', "#...##...##...#######...##...##...#"},
    {'I', ".###...#....#....#....#....#...###."}, {'J', "..###...#....#....#....##..#..##..."},
    {'K', "#...##..#.#.#..##...#.#..#..#.#...#"}, {'L', "#....#....#....#....#....#....#####"},
    {'M', "#...###.###.#.##.#.##...##...##...#"}, {'N', "#...##...###..##.#.##..###...##...#"},
    {'O', ".###.#...##...##...##...##...#.###."}, {'P', "####.#...##...#####.#....#....#...."},
    {'Q', ".###.#...##...##...##.#.##..#..##.#"}, {'R', "####.#...##...#####.#.#..#..#.#...#"},
    {'S', ".#####....#.....###.....#....#####."}, {'T', "#####..#....#....#....#....#....#.."},
    {'U', "#...##...##...##...##...##...#.###."}, {'V', "#...##...##...##...##...#.#.#...#.."},
    {'W', "#...##...##...##.#.##.#.##.#..#.#.."}, {'X', "#...##...#.#.#...#...#.#.#...##...#"},
    {'Y', "#...##...#.#.#...#....#....#....#.."}, {'Z', "#####....#...#...#...#...#....#####"},
    {'.', ".........................##...##..."}, {'-', "...............#####..............."},
    {'_', "..............................#####"}, {'(', "...#...#...#....#....#.....#.....#."},
    {')', ".#.....#.....#....#....#...#...#..."}, {'/', ".........#...#...#...#...#........."},
    {':', "......##...##.........##...##......"}, {'=', "..........#####.....#####.........."},
    {',', "....................##....#...#...."}, {'+', ".......#....#..#####..#....#......."},
    {'[', ".###..#....#....#....#....#....###."}, {']', ".###....#....#....#....#....#..###."},
    {'?', ".###.#...#....#...#...#.........#.."}, {' ', "..................................."},
};

static const char *glyph(char c)
{
    c = (char)toupper((unsigned char)c);
    for (size_t i = 0; i < sizeof k_font / sizeof k_font[0]; i++)
        if (k_font[i].c == c) return k_font[i].rows;
    return glyph('?');
}

/* ---- canvas ---------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    int w, h;
} canvas;

static void px(canvas *c, int x, int y, int col)
{
    if (x >= 0 && y >= 0 && x < c->w && y < c->h)
        c->p[(size_t)y * (size_t)c->w + (size_t)x] = (uint8_t)col;
}

static void rect(canvas *c, int x0, int y0, int x1, int y1, int col) /* inclusive, filled */
{
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
            px(c, x, y, col);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, int col) /* Bresenham */
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        px(c, x0, y0, col);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

/* Text with its top-left corner at (x, y), each font pixel a s x s square; vertical = rotated 90
 * degrees counter-clockwise (reads bottom to top, (x, y) is then the bottom-left corner). */
static void text(canvas *c, int x, int y, const char *t, int s, int col, int vertical)
{
    for (int k = 0; t[k]; k++) {
        const char *g = glyph(t[k]);
        for (int r = 0; r < 7; r++)
            for (int q = 0; q < 5; q++) {
                if (g[r * 5 + q] != '#') continue;
                int gx = k * 6 + q, gy = r; /* glyph cell 6 pixels wide */
                if (!vertical)
                    rect(c, x + gx * s, y + gy * s, x + gx * s + s - 1, y + gy * s + s - 1, col);
                else
                    rect(c, x + gy * s, y - gx * s - s + 1, x + gy * s + s - 1, y - gx * s, col);
            }
    }
}

static int text_w(const char *t, int s)
{
    return (int)strlen(t) * 6 * s - s;
}

/* Marker `shape` (0..7) of radius r centred at (x, y). */
static void marker(canvas *c, int x, int y, int shape, int col)
{
    const int r = 5;
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++) {
            int ax = abs(dx), ay = abs(dy), on = 0;
            switch (shape % 8) {
            case 0:
                on = dx * dx + dy * dy <= r * r;
                break; /* disc */
            case 1:
                on = ax <= r - 1 && ay <= r - 1;
                break; /* square */
            case 2:
                on = dy >= -r && 2 * ax <= dy + r;
                break; /* triangle up */
            case 3:
                on = ax + ay <= r;
                break; /* diamond */
            case 4:
                on = dy <= r && 2 * ax <= r - dy;
                break; /* triangle down */
            case 5:
                on = abs(ax - ay) <= 1;
                break; /* x */
            case 6:
                on = ax <= 1 || ay <= 1;
                break; /* plus */
            default:
                on =
                    dx * dx + dy * dy <= r * r && dx * dx + dy * dy >= (r - 2) * (r - 2); /* ring */
            }
            if (on) px(c, x + dx, y + dy, col);
        }
}

/* ---- ticks ------------------------------------------------------------------------------------
 */

int wq_plot_nice_ticks(double lo, double hi, int target, double *ticks, int *decimals)
{
    if (!(hi > lo) || target < 1) {
        ticks[0] = lo;
        *decimals = 2;
        return 1;
    }
    double raw = (hi - lo) / target, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    int d = (int)-floor(log10(step) + 1e-9);
    *decimals = d > 0 ? d : 0;
    int n = 0;
    for (double t = ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9 && n < 32; t += step)
        ticks[n++] = fabs(t) < step * 1e-9 ? 0.0 : t;
    return n;
}

/* Log-axis ticks: 1, 2, 5 x 10^k inside [lo, hi] (lo > 0), falling back to linear ticks when fewer
 * than two fit. */
static int log_ticks(double lo, double hi, double *ticks, int *decimals)
{
    int n = 0, dmax = 0;
    for (int k = (int)floor(log10(lo)) - 1; k <= (int)ceil(log10(hi)) && n < 32; k++)
        for (int m = 0; m < 3 && n < 32; m++) {
            double t = (m == 0 ? 1 : m == 1 ? 2 : 5) * pow(10.0, k);
            if (t < lo * (1 - 1e-12) || t > hi * (1 + 1e-12)) continue;
            ticks[n++] = t;
            if (-k > dmax) dmax = -k;
        }
    if (n < 2) return wq_plot_nice_ticks(lo, hi, 5, ticks, decimals);
    *decimals = dmax;
    return n;
}

/* ---- plot -------------------------------------------------------------------------------------
 */

static void upper(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s ? s : "");
    for (char *p = dst; *p; p++)
        *p = (char)toupper((unsigned char)*p);
}

wq_status wq_plot_render(const wq_plot_spec *s, uint8_t **pix, int *w_out, int *h_out)
{
    *pix = NULL;
    int W = s->width ? s->width : 800, H = s->height ? s->height : 560;
    if (W < 200 || H < 150 || W > 8192 || H > 8192 || s->n_series < 0 ||
        s->n_series > WQ_PLOT_MAX_SERIES) {
        WQ_LOG_ERROR("plot: bad size %dx%d or series count %d", W, H, s->n_series);
        return WQ_ERR_ARG;
    }
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < s->n_pts; i++) {
        const wq_plot_point *p = &s->pts[i];
        if (!isfinite(p->x) || !isfinite(p->y) || p->series < 0 || p->series >= s->n_series) {
            WQ_LOG_ERROR("plot: point %d (%g, %g, series %d) is not finite or has no series", i,
                         p->x, p->y, p->series);
            return WQ_ERR_ARG;
        }
        xmin = fmin(xmin, p->x), xmax = fmax(xmax, p->x);
        ymin = fmin(ymin, p->y), ymax = fmax(ymax, p->y);
    }
    if (s->n_pts == 0) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    int ylog = s->y_log > 0 || (s->y_log < 0 && ymin > 0 && ymax / ymin > 20);
    if (ylog && !(ymin > 0)) {
        WQ_LOG_ERROR("plot: a logarithmic y axis needs positive values (min %g)", ymin);
        return WQ_ERR_ARG;
    }
    /* data ranges with 6% padding (a single value gets a unit-wide range around it) */
    double xpad = xmax > xmin ? 0.06 * (xmax - xmin) : 0.5;
    xmin -= xpad, xmax += xpad;
    double ty0, ty1; /* y range in axis units (log10 when ylog) */
    if (ylog) {
        double a = log10(ymin), b = log10(ymax), pad = b > a ? 0.06 * (b - a) : 0.1;
        ty0 = a - pad, ty1 = b + pad;
    } else {
        double pad = ymax > ymin ? 0.06 * (ymax - ymin) : 0.5;
        ty0 = ymin - pad, ty1 = ymax + pad;
    }
    canvas c = {wq_calloc((size_t)W * (size_t)H, 1), W, H};
    if (!c.p) return WQ_ERR_NOMEM;
    const int L = 100, R = W - 190, T = 50, B = H - 70; /* plot area */
#define MAPX(v) (L + (int)lround(((v)-xmin) / (xmax - xmin) * (R - L)))
#define MAPY(v) (B - (int)lround(((ylog ? log10(v) : (v)) - ty0) / (ty1 - ty0) * (B - T)))
    double ticks[32];
    int dec, n;
    char lab[64], buf[256];
    /* grid and tick labels */
    n = wq_plot_nice_ticks(xmin, xmax, 6, ticks, &dec);
    for (int i = 0; i < n; i++) {
        int x = MAPX(ticks[i]);
        line(&c, x, T, x, B, C_GRID);
        line(&c, x, B, x, B + 5, C_INK);
        snprintf(lab, sizeof lab, "%.*f", dec, ticks[i]);
        text(&c, x - text_w(lab, 2) / 2, B + 10, lab, 2, C_INK, 0);
    }
    n = ylog ? log_ticks(pow(10, ty0), pow(10, ty1), ticks, &dec)
             : wq_plot_nice_ticks(ty0, ty1, 6, ticks, &dec);
    for (int i = 0; i < n; i++) {
        int y = MAPY(ticks[i]);
        line(&c, L, y, R, y, C_GRID);
        line(&c, L - 5, y, L, y, C_INK);
        snprintf(lab, sizeof lab, "%.*f", dec, ticks[i]);
        text(&c, L - 10 - text_w(lab, 2), y - 7, lab, 2, C_INK, 0);
    }
    /* frame, title, axis labels */
    line(&c, L, T, R, T, C_INK), line(&c, L, B, R, B, C_INK);
    line(&c, L, T, L, B, C_INK), line(&c, R, T, R, B, C_INK);
    upper(buf, sizeof buf, s->title);
    text(&c, (L + R) / 2 - text_w(buf, 2) / 2, 16, buf, 2, C_INK, 0);
    upper(buf, sizeof buf, s->xlabel);
    text(&c, (L + R) / 2 - text_w(buf, 2) / 2, H - 28, buf, 2, C_INK, 0);
    upper(buf, sizeof buf, s->ylabel);
    if (ylog) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " (LOG)");
    text(&c, 14, (T + B) / 2 + text_w(buf, 2) / 2, buf, 2, C_INK, 1);
    /* points, in order (later ones on top) */
    for (int i = 0; i < s->n_pts; i++)
        marker(&c, MAPX(s->pts[i].x), MAPY(s->pts[i].y), s->pts[i].series,
               C_SERIES + s->pts[i].series);
    /* legend: the series that have points */
    int ly = T + 12, lx = R + 16, rows = 0;
    for (int k = 0; k < s->n_series; k++) {
        int used = 0;
        for (int i = 0; i < s->n_pts && !used; i++)
            used = s->pts[i].series == k;
        if (!used) continue;
        marker(&c, lx + 10, ly + rows * 26 + 7, k, C_SERIES + k);
        upper(lab, sizeof lab, s->series_names[k]);
        lab[12] = '\0';
        text(&c, lx + 24, ly + rows * 26, lab, 2, C_INK, 0);
        rows++;
    }
    if (rows) {
        int x0 = lx - 6, y0 = T, x1 = W - 8, y1 = ly + rows * 26 + 2;
        line(&c, x0, y0, x1, y0, C_FRAME), line(&c, x0, y1, x1, y1, C_FRAME);
        line(&c, x0, y0, x0, y1, C_FRAME), line(&c, x1, y0, x1, y1, C_FRAME);
    }
#undef MAPX
#undef MAPY
    *pix = c.p;
    *w_out = W;
    *h_out = H;
    return WQ_OK;
}

wq_status wq_plot_write_png(const wq_plot_spec *s, const char *path)
{
    uint8_t *pix = NULL;
    int w = 0, h = 0;
    WQ_TRY(wq_plot_render(s, &pix, &w, &h));
    wq_status st = wq_png_write_file(path, pix, w, h, wq_plot_palette, WQ_PLOT_N_COLORS);
    wq_free(pix);
    return st;
}
