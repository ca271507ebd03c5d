/* kern_quant_f4.c: nf4 / fp4_e2m1_bnb / fp4_e2m1 group kernels (numerics §2.1, §2.2).
 * Layer: kernels.
 *
 * Each table is listed once, ascending, as the float64 values INC writes in Python, together with
 * the nibble INC stores for each value (its signed INT_MAPPING code & 0xF). Bucket midpoints are
 * the float64 means of neighbours rounded to float32, because PyTorch compares a float32 tensor
 * with a Python float in float32. Dequant values are the float32 roundings of the table entries. */
#include "kernels/kern_quant.h"

#include <math.h>

#include "kernels/kern_vec.h"

// ---- tables (ascending values, INC nibble of each) ----------------------------------------------

/* clang-format off */
static const double k_nf4_v[] = {
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0};
/* NF4_BIT: 7,1,2,3,4,5,6,0,-8,-7,...,-1 */
static const uint8_t k_nf4_nib[16] = {0x7, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x0,
                                      0x8, 0x9, 0xA, 0xB, 0xC, 0xD, 0xE, 0xF};

static const double k_fp4_bnb_v[] = {
    -12.0, -8.0, -6.0, -4.0, -3.0, -2.0, -0.0625, 0.0, 0.0625, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0};
/* FP4_BNB_BIT: -5,-6,-3,-4,-1,-2,-7,0,1,6,7,4,5,2,3 (= bitsandbytes' fp4 encoding) */
static const uint8_t k_fp4_bnb_nib[15] = {0xB, 0xA, 0xD, 0xC, 0xF, 0xE, 0x9, 0x0,
                                          0x1, 0x6, 0x7, 0x4, 0x5, 0x2, 0x3};

static const double k_fp4_e2m1_v[] = {
    -1.0, -0.6666666666666666, -0.5, -0.3333333333333333, -0.25, -0.16666666666666666,
    -0.010416666666666666, 0.0, 0.010416666666666666, 0.16666666666666666, 0.25,
    0.3333333333333333, 0.5, 0.6666666666666666, 1.0};
/* FP4_E2M1_BIT: -1..-7, 0, 1..7 (sign-magnitude) */
static const uint8_t k_fp4_e2m1_nib[15] = {0xF, 0xE, 0xD, 0xC, 0xB, 0xA, 0x9, 0x0,
                                           0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7};
/* clang-format on */

_Static_assert(sizeof k_nf4_v / sizeof(double) == 16, "nf4 has 16 values");
_Static_assert(sizeof k_fp4_bnb_v / sizeof(double) == 15, "fp4_bnb has 15 values");
_Static_assert(sizeof k_fp4_e2m1_v / sizeof(double) == 15, "fp4_e2m1 has 15 values");

/* Midpoints as compile-time constants: (float)((t_k + t_{k+1}) / 2). */
#define MID(a, b) (float)(((a) + (b)) / 2.0)
/* clang-format off */
static const float k_nf4_mid[15] = {
    MID(-1.0, -0.6961928009986877), MID(-0.6961928009986877, -0.5250730514526367),
    MID(-0.5250730514526367, -0.39491748809814453), MID(-0.39491748809814453, -0.28444138169288635),
    MID(-0.28444138169288635, -0.18477343022823334),
    MID(-0.18477343022823334, -0.09105003625154495),
    MID(-0.09105003625154495, 0.0), MID(0.0, 0.07958029955625534),
    MID(0.07958029955625534, 0.16093020141124725), MID(0.16093020141124725, 0.24611230194568634),
    MID(0.24611230194568634, 0.33791524171829224), MID(0.33791524171829224, 0.44070982933044434),
    MID(0.44070982933044434, 0.5626170039176941), MID(0.5626170039176941, 0.7229568362236023),
    MID(0.7229568362236023, 1.0)};
static const float k_fp4_bnb_mid[14] = {
    MID(-12.0, -8.0), MID(-8.0, -6.0), MID(-6.0, -4.0), MID(-4.0, -3.0), MID(-3.0, -2.0),
    MID(-2.0, -0.0625), MID(-0.0625, 0.0), MID(0.0, 0.0625), MID(0.0625, 2.0), MID(2.0, 3.0),
    MID(3.0, 4.0), MID(4.0, 6.0), MID(6.0, 8.0), MID(8.0, 12.0)};
static const float k_fp4_e2m1_mid[14] = {
    MID(-1.0, -0.6666666666666666), MID(-0.6666666666666666, -0.5),
    MID(-0.5, -0.3333333333333333), MID(-0.3333333333333333, -0.25),
    MID(-0.25, -0.16666666666666666), MID(-0.16666666666666666, -0.010416666666666666),
    MID(-0.010416666666666666, 0.0), MID(0.0, 0.010416666666666666),
    MID(0.010416666666666666, 0.16666666666666666), MID(0.16666666666666666, 0.25),
    MID(0.25, 0.3333333333333333), MID(0.3333333333333333, 0.5), MID(0.5, 0.6666666666666666),
    MID(0.6666666666666666, 1.0)};
/* clang-format on */
#undef MID

/* Nibble -> float32 value (dequantization LUT). fp4 nibble 0x8 (bnb -0) is never produced: 0. */
#define F(v) (float)(v)
static const float k_nf4_lut[16] = {F(0.0),
                                    F(-0.6961928009986877),
                                    F(-0.5250730514526367),
                                    F(-0.39491748809814453),
                                    F(-0.28444138169288635),
                                    F(-0.18477343022823334),
                                    F(-0.09105003625154495),
                                    F(-1.0),
                                    F(0.07958029955625534),
                                    F(0.16093020141124725),
                                    F(0.24611230194568634),
                                    F(0.33791524171829224),
                                    F(0.44070982933044434),
                                    F(0.5626170039176941),
                                    F(0.7229568362236023),
                                    F(1.0)};
static const float k_fp4_bnb_lut[16] = {0.0f, 0.0625f,  8.0f,  12.0f,  4.0f,  6.0f,  2.0f,  3.0f,
                                        0.0f, -0.0625f, -8.0f, -12.0f, -4.0f, -6.0f, -2.0f, -3.0f};
static const float k_fp4_e2m1_lut[16] = {0.0f,
                                         F(0.010416666666666666),
                                         F(0.16666666666666666),
                                         0.25f,
                                         F(0.3333333333333333),
                                         0.5f,
                                         F(0.6666666666666666),
                                         1.0f,
                                         0.0f,
                                         F(-0.010416666666666666),
                                         F(-0.16666666666666666),
                                         -0.25f,
                                         F(-0.3333333333333333),
                                         -0.5f,
                                         F(-0.6666666666666666),
                                         -1.0f};
#undef F

typedef struct {
    const double *v;    /* ascending values [nv] */
    const uint8_t *nib; /* nibble of v[k] [nv] */
    const float *mid;   /* [nv - 1] */
    const float *lut;   /* nibble -> value [16] */
    int nv;
    float tmax;
} f4_table;

static const f4_table k_tables[3] = {
    {k_nf4_v, k_nf4_nib, k_nf4_mid, k_nf4_lut, 16, 1.0f},
    {k_fp4_bnb_v, k_fp4_bnb_nib, k_fp4_bnb_mid, k_fp4_bnb_lut, 15, 12.0f},
    {k_fp4_e2m1_v, k_fp4_e2m1_nib, k_fp4_e2m1_mid, k_fp4_e2m1_lut, 15, 1.0f},
};

static const f4_table *table_of(wq_qdtype dtype)
{
    WQ_KERN_ASSERT(dtype == WQ_QDTYPE_NF4 || dtype == WQ_QDTYPE_FP4_BNB ||
                   dtype == WQ_QDTYPE_FP4_E2M1);
    switch (dtype) {
    case WQ_QDTYPE_FP4_BNB:
        return &k_tables[1];
    case WQ_QDTYPE_FP4_E2M1:
        return &k_tables[2];
    default:
        return &k_tables[0];
    }
}

const float *wq_kern_f4_table(wq_qdtype dtype)
{
    return table_of(dtype)->lut;
}

float wq_kern_f4_max(wq_qdtype dtype)
{
    return table_of(dtype)->tmax;
}

// ---- kernels ------------------------------------------------------------------------------------

void wq_kern_params_f4(const float *restrict x, int64_t n, wq_qdtype dtype, float quantile,
                       float *scale)
{
    enum { L = 8 };
    float a[L] = {0};
    int64_t i = 0;
    for (; i + L <= n; i += L)
        for (int k = 0; k < L; k++)
            a[k] = kv_max(fabsf(x[i + k]), a[k]);
    float amax = 0.0f;
    for (int k = 0; k < L; k++)
        amax = kv_max(a[k], amax);
    for (; i < n; i++)
        amax = kv_max(fabsf(x[i]), amax);
    *scale = amax * quantile / table_of(dtype)->tmax;
}

/* Bucket index k = #{j : y > mid_j} (so y == mid_j goes to the lower value); nm is a compile-time
 * constant after inlining, which lets the compiler unroll the count and vectorize over i. */
static inline void f4_index(const float *restrict x, int64_t n, float scale,
                            const float *restrict mid, int nm, uint8_t *restrict idx)
{
    for (int64_t i = 0; i < n; i++) {
        float y = x[i] / scale;
        int32_t k = 0;
        for (int j = 0; j < nm; j++)
            k += y > mid[j];
        idx[i] = (uint8_t)k;
    }
}

void wq_kern_quant_f4(const float *x, int64_t n, wq_qdtype dtype, float scale, uint8_t *codes)
{
    const f4_table *t = table_of(dtype);
    if (scale == 0.0f) { /* all-zero group: INC's NaN quotient matches no bucket -> value 0 */
        memset(codes, 0, (size_t)n);
        return;
    }
    if (t->nv == 16)
        f4_index(x, n, scale, t->mid, 15, codes);
    else
        f4_index(x, n, scale, t->mid, 14, codes);
    for (int64_t i = 0; i < n; i++)
        codes[i] = t->nib[codes[i]];
}

void wq_kern_quant_f4_ref(const float *x, int64_t n, wq_qdtype dtype, float scale, uint8_t *codes)
{
    const f4_table *t = table_of(dtype);
    const int last = t->nv - 1;
    for (int64_t i = 0; i < n; i++) {
        int k = 7; /* value 0.0 in every table: what a NaN quotient (scale 0) dequantizes to */
        if (scale != 0.0f) {
            float y = x[i] / scale;
            if (y <= t->mid[0]) {
                k = 0;
            } else if (y > t->mid[last - 1]) {
                k = last;
            } else {
                for (int j = 1; j < last; j++)
                    if (t->mid[j - 1] < y && y <= t->mid[j]) k = j;
            }
        }
        codes[i] = t->nib[k];
    }
}

uint8_t wq_kern_code_f4(float x, wq_qdtype dtype, float scale)
{
    uint8_t c;
    wq_kern_quant_f4_ref(&x, 1, dtype, scale, &c);
    return c;
}

void wq_kern_dequant_f4(const uint8_t *restrict codes, int64_t n, wq_qdtype dtype, float scale,
                        float *restrict y)
{
    const float *lut = table_of(dtype)->lut;
    for (int64_t i = 0; i < n; i++)
        y[i] = lut[codes[i] & 15] * scale;
}
