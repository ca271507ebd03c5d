/* algo_public.c: the public C API of include/wquant.h, a thin layer over the RTN algorithm and the
 * packing kernels. Layer: algos (no MPI, no HDF5). */
#include "../../include/wquant.h"

#include <string.h>

#include "algos/algo_rtn.h"
#include "core/core_alloc.h"
#include "core/core_qtypes.h"
#include "kernels/kern_pack.h"
#include "wq_status.h"
#include "wq_version.h"

const char *wquant_version(void)
{
    return WQ_VERSION_STRING;
}

const char *wquant_status_string(int status)
{
    return wq_status_str((wq_status)status);
}

int64_t wquant_group_size(int64_t cols, int64_t group_size)
{
    if (cols < 1 || group_size == 0 || group_size < -1) return 0;
    return group_size == -1 || group_size > cols ? cols : group_size;
}

int64_t wquant_groups_per_row(int64_t cols, int64_t group_size)
{
    int64_t g = wquant_group_size(cols, group_size);
    return g ? (cols + g - 1) / g : 0;
}

int64_t wquant_packed_words(int64_t cols, int bits)
{
    return bits >= 1 && bits <= 8 && cols >= 1 ? wq_kern_pack_words(cols, bits) : 0;
}

static int bad_args(const void *a, const void *b, const void *c, const void *d, int64_t rows,
                    int64_t cols, int bits, int64_t group_size)
{
    return !a || !b || !c || !d || rows < 1 || cols < 1 || bits < 1 || bits > 8 ||
           wquant_group_size(cols, group_size) == 0;
}

int wquant_rtn_quantize(const float *W, int64_t rows, int64_t cols, int bits, int64_t group_size,
                        int sym, int32_t *qweight, float *scales, float *zeros)
{
    if (bad_args(W, qweight, scales, zeros, rows, cols, bits, group_size)) return WQ_ERR_ARG;
    wq_qspec spec = wq_qspec_default();
    spec.dtype = WQ_QDTYPE_INT;
    spec.bits = bits;
    spec.group_size = group_size;
    spec.sym = sym != 0;
    wq_qmatrix q = {0};
    wq_status st = wq_algo_rtn_quantize(&spec, "wquant_rtn_quantize", W, rows, cols, &q, NULL);
    if (st == WQ_OK) {
        const size_t ng = (size_t)(rows * q.ngroups);
        wq_kern_pack_qweight_native(q.codes, rows, cols, bits, qweight);
        memcpy(scales, q.scales, ng * sizeof(float));
        memcpy(zeros, q.zeros, ng * sizeof(float));
    }
    wq_qmatrix_free(&q);
    return st;
}

int wquant_dequantize(const int32_t *qweight, const float *scales, const float *zeros, int64_t rows,
                      int64_t cols, int bits, int64_t group_size, float *W)
{
    if (bad_args(qweight, scales, zeros, W, rows, cols, bits, group_size)) return WQ_ERR_ARG;
    uint8_t *codes = wq_malloc((size_t)(rows * cols));
    if (!codes) return WQ_ERR_NOMEM;
    wq_kern_unpack_qweight_native(qweight, rows, cols, bits, codes);
    const int64_t g = wquant_group_size(cols, group_size),
                  ng = wquant_groups_per_row(cols, group_size);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            const int64_t k = r * ng + c / g;
            W[r * cols + c] = ((float)codes[r * cols + c] - zeros[k]) * scales[k];
        }
    wq_free(codes);
    return WQ_OK;
}
