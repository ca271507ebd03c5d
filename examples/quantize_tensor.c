/* quantize_tensor.c: libwquant's public API in a few lines: RTN-quantize one fp32 tensor to int4
 * (groups of 32, asymmetric), dequantize it, print the scale and the largest error of every group
 * and the overall max abs error. Builds against an installed wquant (examples/CMakeLists.txt with
 * find_package, or examples/Makefile with pkg-config). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <wquant.h>

int main(void)
{
    enum { ROWS = 8, COLS = 64, BITS = 4, GROUP = 32 };
    const int64_t ng = wquant_groups_per_row(COLS, GROUP), nw = wquant_packed_words(COLS, BITS);
    float *w = malloc(sizeof(float) * ROWS * COLS), *back = malloc(sizeof(float) * ROWS * COLS);
    float *scales = malloc(sizeof(float) * ROWS * ng), *zeros = malloc(sizeof(float) * ROWS * ng);
    int32_t *q = malloc(sizeof(int32_t) * ROWS * nw);
    if (!w || !back || !scales || !zeros || !q) return 1;
    /* W[r][c] = sin(0.1 * (r * COLS + c)) * (1 + r): a deterministic tensor anyone can recompute */
    for (int i = 0; i < ROWS * COLS; i++)
        w[i] = (float)(sin(0.1 * i) * (1 + i / COLS));
    int st = wquant_rtn_quantize(w, ROWS, COLS, BITS, GROUP, 0, q, scales, zeros);
    if (st == 0) st = wquant_dequantize(q, scales, zeros, ROWS, COLS, BITS, GROUP, back);
    if (st != 0) {
        fprintf(stderr, "wquant: %s\n", wquant_status_string(st));
        return 1;
    }
    printf("wquant %s: %dx%d int%d g%d asym, %lld packed words per row\n", wquant_version(), ROWS,
           COLS, BITS, GROUP, (long long)nw);
    double max_err = 0;
    for (int r = 0; r < ROWS; r++)
        for (int g = 0; g < ng; g++) {
            double e = 0;
            for (int c = g * GROUP; c < (g + 1) * GROUP && c < COLS; c++)
                e = fmax(e, fabs((double)w[r * COLS + c] - back[r * COLS + c]));
            printf("group %d %d scale %.9g err %.9g\n", r, g, scales[r * ng + g], e);
            max_err = fmax(max_err, e);
        }
    printf("max_abs_err %.9g\n", max_err);
    free(w), free(back), free(scales), free(zeros), free(q);
    return 0;
}
