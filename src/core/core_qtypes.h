/* core_qtypes.h: the vocabulary shared by config, kernels, algorithms and the container: what a layer
 * is quantized to (wq_qspec) and the unpacked result of quantizing one weight matrix (wq_qmatrix).
 * Layer: core. Enums here are persisted in containers: append only, never renumber. */
#ifndef WQ_CORE_QTYPES_H
#define WQ_CORE_QTYPES_H

#include <stdbool.h>
#include <stdint.h>

#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Weight dtype of a layer. FP32 means "not quantized, kept in its original precision". */
typedef enum wq_qdtype {
    WQ_QDTYPE_FP32 = 0,
    WQ_QDTYPE_INT = 1,
    WQ_QDTYPE_NF4 = 2,
    WQ_QDTYPE_FP4_BNB = 3,  /* "fp4" and "fp4_e2m1_bnb" */
    WQ_QDTYPE_FP4_E2M1 = 4, /* INC's "fp4_e2m1" table (not OCP E2M1, numerics.md 2.1) */
    WQ_QDTYPE_COUNT
} wq_qdtype;

/* How an int group's scale/zero are derived (numerics.md 13.1: three symmetric schemes exist). */
typedef enum wq_int_scheme {
    WQ_SCHEME_ASYM = 0,      /* scale=(max-min)/(2^b-1), zp=round(-min/scale)         (RTN/GPTQ asym) */
    WQ_SCHEME_SYM = 1,       /* scale=amax/(2^(b-1)-1), codes [-2^(b-1), 2^(b-1)-1]     (RTN sym)      */
    WQ_SCHEME_SYM_FULL = 2,  /* scale=+-amax/2^(b-1), sign trick                         (full range)  */
    WQ_SCHEME_SYM_GPTQ = 3,  /* scale=2*amax/(2^b-1), zero 2^(b-1)                        (GPTQ sym)    */
    WQ_SCHEME_COUNT
} wq_int_scheme;

/* Precision in which scales are stored in the container. */
typedef enum wq_scale_dtype { WQ_SCALE_F32 = 0, WQ_SCALE_F16 = 1 } wq_scale_dtype;

/* Fully resolved quantization settings of one layer (config global + local rules applied). */
typedef struct {
    wq_qdtype dtype;        /* FP32 = leave the layer alone */
    int bits;               /* 1..8 for int; 4 for nf4/fp4 */
    int64_t group_size;     /* -1 = one group per row; >= 1 otherwise */
    bool sym;               /* use_sym */
    bool full_range;        /* use_full_range (sym only) */
    bool mse_search;        /* use_mse_search */
    int group_dim;          /* 1 (default, along in) or 0 (along out) */
    bool double_quant;      /* use_double_quant */
    wq_qdtype dq_dtype;     /* double_quant_dtype (int only) */
    int dq_bits;            /* double_quant_bits */
    bool dq_sym;            /* double_quant_use_sym */
    int64_t dq_group_size;  /* double_quant_group_size */
    wq_scale_dtype scale_dtype;
} wq_qspec;

/* The unpacked result of quantizing W[rows=out][cols=in].
 * Dequantization: int    W[o,c] = (codes[o,c] - zeros[o,g]) * scales[o,g]
 *                 nf4/fp4 W[o,c] = table(codes[o,c]) * scales[o,g]     (codes = INC nibble, numerics 2.1)
 * with g = g_idx[c] if g_idx is set, else c / group_size. Every int scheme is stored with unsigned codes
 * 0..2^bits-1 and an explicit zero (sym: 2^(bits-1)), so packing and dequantization are uniform. */
typedef struct {
    int64_t rows, cols;
    int64_t group_size; /* effective: cols when the spec says -1 or cols < group_size */
    int64_t ngroups;    /* ceil(cols / group_size) */
    wq_qdtype dtype;
    int bits;
    uint8_t *codes;  /* [rows * cols] */
    float *scales;   /* [rows * ngroups] */
    float *zeros;    /* [rows * ngroups], int only (NULL for nf4/fp4) */
    int32_t *g_idx;  /* [cols] or NULL */
} wq_qmatrix;

/* Effective group size for a row of `cols` elements: cols if gs == -1 or cols < gs. */
int64_t wq_qspec_group_size(const wq_qspec *spec, int64_t cols);
/* Default spec (RTN defaults: int4 sym g32, numerics.md 1.1). */
wq_qspec wq_qspec_default(void);
const char *wq_qdtype_name(wq_qdtype t);

/* Allocates codes/scales/zeros (zeros only for int), g_idx not allocated. Caller frees with
 * wq_qmatrix_free (safe on a zeroed struct, twice). WQ_ERR_NOMEM, WQ_ERR_ARG. */
wq_status wq_qmatrix_init(wq_qmatrix *m, int64_t rows, int64_t cols, int64_t group_size,
                          wq_qdtype dtype, int bits);
/* Allocates g_idx [cols] (zero-filled). */
wq_status wq_qmatrix_alloc_gidx(wq_qmatrix *m);
void wq_qmatrix_free(wq_qmatrix *m);

#ifdef __cplusplus
}
#endif
#endif
