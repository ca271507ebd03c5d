/* core_qtypes.c: qspec defaults and qmatrix lifetime. Layer: core. */
#include "core/core_qtypes.h"

#include <string.h>

#include "core/core_alloc.h"

int64_t wq_qspec_group_size(const wq_qspec *spec, int64_t cols)
{
    if (spec->group_size == -1 || cols < spec->group_size) return cols;
    return spec->group_size;
}

wq_qspec wq_qspec_default(void)
{
    return (wq_qspec){.dtype = WQ_QDTYPE_INT,
                      .bits = 4,
                      .group_size = 32,
                      .sym = true,
                      .full_range = false,
                      .mse_search = false,
                      .group_dim = 1,
                      .double_quant = false,
                      .dq_dtype = WQ_QDTYPE_INT,
                      .dq_bits = 8,
                      .dq_sym = false,
                      .dq_group_size = 256,
                      .scale_dtype = WQ_SCALE_F32};
}

const char *wq_qdtype_name(wq_qdtype t)
{
    static const char *names[WQ_QDTYPE_COUNT] = {"fp32", "int", "nf4", "fp4_e2m1_bnb", "fp4_e2m1"};
    return (unsigned)t < WQ_QDTYPE_COUNT ? names[t] : "?";
}

wq_status wq_qmatrix_init(wq_qmatrix *m, int64_t rows, int64_t cols, int64_t group_size,
                          wq_qdtype dtype, int bits)
{
    memset(m, 0, sizeof *m);
    if (rows < 0 || cols < 1 || group_size < 1 || group_size > cols || bits < 1 || bits > 8)
        return WQ_ERR_ARG;
    m->rows = rows;
    m->cols = cols;
    m->group_size = group_size;
    m->ngroups = (cols + group_size - 1) / group_size;
    m->dtype = dtype;
    m->bits = bits;
    m->codes = wq_calloc((size_t)(rows * cols), 1);
    m->scales = wq_calloc((size_t)(rows * m->ngroups), sizeof(float));
    if (dtype == WQ_QDTYPE_INT) m->zeros = wq_calloc((size_t)(rows * m->ngroups), sizeof(float));
    if (!m->codes || !m->scales || (dtype == WQ_QDTYPE_INT && !m->zeros)) {
        wq_qmatrix_free(m);
        return WQ_ERR_NOMEM;
    }
    return WQ_OK;
}

wq_status wq_qmatrix_alloc_gidx(wq_qmatrix *m)
{
    wq_free(m->g_idx);
    m->g_idx = wq_calloc((size_t)m->cols, sizeof(int32_t));
    return m->g_idx ? WQ_OK : WQ_ERR_NOMEM;
}

void wq_qmatrix_free(wq_qmatrix *m)
{
    wq_free(m->codes);
    wq_free(m->scales);
    wq_free(m->zeros);
    wq_free(m->g_idx);
    memset(m, 0, sizeof *m);
}
