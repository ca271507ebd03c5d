/* kern_quant.c: integer group kernels (numerics §1.2, §4.4), row/matrix drivers, matrix dequant,
 * non-finite scan and bf16 widening. See kern_quant.h for the formulas. Layer: kernels.
 *
 * The public fast kernels run their inner loops through the implementation set chosen at run time
 * (kern_quant_isa.c: kern_quant_avx512.c, kern_quant_avx2.c, kern_quant_sse2.c on x86-64, no
 * -march; the portable `_generic` loops below elsewhere). The portable loops are branch-free
 * (kern_vec.h selects, integer-ordered min/max, the 1.5*2^23 rounding trick) so they vectorize at
 * plain -O3. All of them produce the same bits as the `_ref` twins (scalar, nearbyintf, plain
 * if/else), which the tests check for every set the machine runs. */
#include "kernels/kern_quant.h"

#include <math.h>

#include "kernels/kern_vec.h"

// ---- Parameters ---------------------------------------------------------------------------------

wq_int_scheme wq_kern_int_scheme_rtn(const wq_qspec *spec)
{
    if (!spec->sym) return WQ_SCHEME_ASYM;
    return spec->full_range ? WQ_SCHEME_SYM_FULL : WQ_SCHEME_SYM;
}

/* (scale, zero) from the group's min mn and max mx; float32 in INC's evaluation order. Shared by
 * the fast and reference paths: the min/max of a set is order independent (up to the sign of a
 * zero, which every branch below canonicalizes through comparisons with 0 or fabsf). */
static void params_from_minmax(float mn, float mx, int bits, wq_int_scheme scheme, float q,
                               float *scale, float *zero)
{
    const float half = (float)(1 << (bits - 1)); /* 2^(b-1): symmetric zero point */
    if (scheme != WQ_SCHEME_ASYM && bits == 1)
        scheme = WQ_SCHEME_SYM_FULL; /* 1-bit rule (header) */

    switch (scheme) {
    case WQ_SCHEME_ASYM: {
        const float maxq = (float)((1 << bits) - 1);
        float wmin = (mn < 0.0f ? mn : 0.0f) * q;
        float wmax = (mx > 0.0f ? mx : 0.0f) * q;
        if (wmin == 0.0f && wmax == 0.0f) {
            wmin = -1.0f;
            wmax = 1.0f;
        }
        float s = (wmax - wmin) / maxq;
        *scale = s;
        *zero = wq_kern_rne(-wmin / s) + 0.0f; /* + 0 turns a -0 into +0 */
        return;
    }
    case WQ_SCHEME_SYM:
    case WQ_SCHEME_SYM_FULL: {
        float amx = fabsf(mx), amn = fabsf(mn);
        float amax = (amx > amn ? amx : amn) * q;
        if (amax == 0.0f) amax = 1.0f;
        if (scheme == WQ_SCHEME_SYM) {
            *scale = amax / (half - 1.0f);
        } else {
            float s = amax / half;
            *scale = amx > amn ? -s : s; /* largest magnitude maps to code -2^(b-1) exactly */
        }
        *zero = half;
        return;
    }
    case WQ_SCHEME_SYM_GPTQ: {
        const float maxq = (float)((1 << bits) - 1);
        float xmin = mn < 0.0f ? mn : 0.0f;
        float xmax = mx > 0.0f ? mx : 0.0f;
        float axmin = fabsf(xmin);
        xmax = axmin > xmax ? axmin : xmax;
        if (xmin < 0.0f) xmin = -xmax; /* all entries >= 0: xmin stays 0 (reference quirk) */
        if (xmin == 0.0f && xmax == 0.0f) {
            xmin = -1.0f;
            xmax = 1.0f;
        }
        xmin *= q;
        xmax *= q;
        *scale = (xmax - xmin) / maxq;
        *zero = half;
        return;
    }
    default:
        WQ_KERN_ASSERT(!"unknown wq_int_scheme");
        *scale = 1.0f;
        *zero = half;
        return;
    }
}

/* Order-preserving map of a float's bits to a signed integer (finite inputs): negative floats have
 * their magnitude bits flipped, so integer order = float order (-0 sorts just below +0). Integer
 * min/max reductions vectorize at plain -O3 without fast-math, unlike float ones. */
static inline int32_t ord32(float f)
{
    int32_t i = (int32_t)kv_f2u(f);
    return i ^ ((i >> 31) & 0x7fffffff);
}
static inline float unord32(int32_t i)
{
    return kv_u2f((uint32_t)(i ^ ((i >> 31) & 0x7fffffff)));
}

void wq__kern_minmax_f32_generic(const float *x, int64_t n, float *mn, float *mx)
{
    int32_t lo = ord32(x[0]), hi = lo;
    for (int64_t i = 1; i < n; i++) {
        const int32_t v = ord32(x[i]);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *mn = unord32(lo);
    *mx = unord32(hi);
}

void wq__kern_minmax_bf16_generic(const uint16_t *x, int64_t n, float *mn, float *mx)
{
    int16_t lo = 0, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        int16_t v = (int16_t)x[i];
        v = (int16_t)(v ^ ((v >> 15) & 0x7fff));
        lo = (i == 0 || v < lo) ? v : lo;
        hi = (i == 0 || v > hi) ? v : hi;
    }
    *mn = kv_u2f((uint32_t)(uint16_t)(lo ^ ((lo >> 15) & 0x7fff)) << 16);
    *mx = kv_u2f((uint32_t)(uint16_t)(hi ^ ((hi >> 15) & 0x7fff)) << 16);
}

void wq_kern_params_int(const float *x, int64_t n, int bits, wq_int_scheme scheme, float quantile,
                        float *scale, float *zero)
{
    WQ_KERN_ASSERT(n >= 1 && bits >= 1 && bits <= 8);
    float mn, mx;
    wq__kern_ops_active()->minmax_f32(x, n, &mn, &mx);
    params_from_minmax(mn, mx, bits, scheme, quantile, scale, zero);
}

void wq_kern_params_int_ref(const float *x, int64_t n, int bits, wq_int_scheme scheme,
                            float quantile, float *scale, float *zero)
{
    WQ_KERN_ASSERT(n >= 1 && bits >= 1 && bits <= 8);
    float mn = x[0], mx = x[0];
    for (int64_t i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    params_from_minmax(mn, mx, bits, scheme, quantile, scale, zero);
}

// ---- Codes --------------------------------------------------------------------------------------

/* Portable code loop. c = (y + M) - (M - zero) = rne(y) + zero exactly for |y| < 2^22 (both
 * operands are integers below 2^24). For |y| >= 2^22 the result keeps y's sign and magnitude
 * >= 2^22, so the clamp still gives 0 or maxq; +-inf stay inf; NaN fails the comparison in kv_max
 * and becomes 0. Hence no clamp of y is needed before rounding. */
void wq__kern_quant_f32_generic(const float *restrict x, int64_t n, int bits, float scale,
                                float zero, uint8_t *restrict codes)
{
    const float maxq = (float)((1 << bits) - 1);
    const float mz = KV_MAGIC - zero;
    for (int64_t i = 0; i < n; i++) {
        float c = (x[i] / scale + KV_MAGIC) - mz;
        c = kv_max(c, 0.0f);
        c = kv_min(c, maxq);
        codes[i] = (uint8_t)(int32_t)c;
    }
}

void wq__kern_quant_bf16_generic(const uint16_t *restrict x, int64_t n, int bits, float scale,
                                 float zero, uint8_t *restrict codes)
{
    const float maxq = (float)((1 << bits) - 1);
    const float mz = KV_MAGIC - zero;
    for (int64_t i = 0; i < n; i++) {
        float c = (kv_u2f((uint32_t)x[i] << 16) / scale + KV_MAGIC) - mz;
        c = kv_max(c, 0.0f);
        c = kv_min(c, maxq);
        codes[i] = (uint8_t)(int32_t)c;
    }
}

void wq_kern_quant_int(const float *x, int64_t n, int bits, float scale, float zero, uint8_t *codes)
{
    WQ_KERN_ASSERT(bits >= 1 && bits <= 8 && zero >= 0.0f && zero <= 255.0f);
    wq__kern_ops_active()->quant_f32(x, n, bits, scale, zero, codes);
}

void wq_kern_quant_int_ref(const float *x, int64_t n, int bits, float scale, float zero,
                           uint8_t *codes)
{
    const float maxq = (float)((1 << bits) - 1);
    for (int64_t i = 0; i < n; i++) {
        float y = x[i] / scale;
        float c = 0.0f;
        if (!isnan(y)) {
            c = nearbyintf(y) + zero;
            if (c < 0.0f) c = 0.0f;
            if (c > maxq) c = maxq;
        }
        codes[i] = (uint8_t)c;
    }
}

void wq_kern_dequant_int(const uint8_t *restrict codes, int64_t n, float scale, float zero,
                         float *restrict y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = ((float)codes[i] - zero) * scale;
}

// ---- Rows, vectors, matrices --------------------------------------------------------------------

void wq__kern_quant_row_int_ops(const wq__kern_ops *ops, const float *x, int64_t cols, int64_t gs,
                                int bits, wq_int_scheme scheme, float quantile, uint8_t *codes,
                                float *scales, float *zeros)
{
    WQ_KERN_ASSERT(gs >= 1 && gs <= cols && bits >= 1 && bits <= 8);
    /* Three passes (see wq__kern_quant_row_int_bf16_ops): extremes, parameters, codes. */
    const int64_t ng = (cols + gs - 1) / gs;
    for (int64_t g = 0; g < ng; g++) {
        const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs;
        ops->minmax_f32(x + off, n, &scales[g], &zeros[g]);
    }
    for (int64_t g = 0; g < ng; g++)
        params_from_minmax(scales[g], zeros[g], bits, scheme, quantile, &scales[g], &zeros[g]);
    for (int64_t g = 0; g < ng; g++) {
        const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs;
        ops->quant_f32(x + off, n, bits, scales[g], zeros[g], codes + off);
    }
}

void wq_kern_quant_row_int(const float *x, int64_t cols, int64_t gs, int bits, wq_int_scheme scheme,
                           float quantile, uint8_t *codes, float *scales, float *zeros)
{
    wq__kern_quant_row_int_ops(wq__kern_ops_active(), x, cols, gs, bits, scheme, quantile, codes,
                               scales, zeros);
}

void wq__kern_quant_row_int_bf16_ops(const wq__kern_ops *ops, const uint16_t *x, int64_t cols,
                                     int64_t gs, int bits, wq_int_scheme scheme, float quantile,
                                     uint8_t *codes, float *scales, float *zeros)
{
    WQ_KERN_ASSERT(gs >= 1 && gs <= cols && bits >= 1 && bits <= 8);
    /* Three passes over the row (it stays in L1): all group extremes, then all parameters (their
     * divisions are independent and pipeline), then all codes. scales/zeros hold min/max between
     * the first two passes. */
    const int64_t ng = (cols + gs - 1) / gs;
    for (int64_t g = 0; g < ng; g++) {
        const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs;
        ops->minmax_bf16(x + off, n, &scales[g], &zeros[g]);
    }
    for (int64_t g = 0; g < ng; g++)
        params_from_minmax(scales[g], zeros[g], bits, scheme, quantile, &scales[g], &zeros[g]);
    for (int64_t g = 0; g < ng; g++) {
        const int64_t off = g * gs, n = cols - off < gs ? cols - off : gs;
        ops->quant_bf16(x + off, n, bits, scales[g], zeros[g], codes + off);
    }
}

void wq_kern_quant_row_int_bf16(const uint16_t *x, int64_t cols, int64_t gs, int bits,
                                wq_int_scheme scheme, float quantile, uint8_t *codes, float *scales,
                                float *zeros)
{
    wq__kern_quant_row_int_bf16_ops(wq__kern_ops_active(), x, cols, gs, bits, scheme, quantile,
                                    codes, scales, zeros);
}

void wq_kern_quant_row_int_ref(const float *x, int64_t cols, int64_t gs, int bits,
                               wq_int_scheme scheme, float quantile, uint8_t *codes, float *scales,
                               float *zeros)
{
    WQ_KERN_ASSERT(gs >= 1 && gs <= cols);
    for (int64_t g = 0, off = 0; off < cols; g++, off += gs) {
        int64_t n = cols - off < gs ? cols - off : gs;
        wq_kern_params_int_ref(x + off, n, bits, scheme, quantile, &scales[g], &zeros[g]);
        wq_kern_quant_int_ref(x + off, n, bits, scales[g], zeros[g], codes + off);
    }
}

void wq_kern_qdq_int(float *x, int64_t n, int64_t gs, int bits, wq_int_scheme scheme)
{
    if (n <= 0) return;
    if (gs <= 0 || gs > n) gs = n;
    for (int64_t off = 0; off < n; off += gs) {
        int64_t m = n - off < gs ? n - off : gs;
        float s, z;
        wq_kern_params_int(x + off, m, bits, scheme, 1.0f, &s, &z);
        for (int64_t i = 0; i < m; i++)
            x[off + i] = wq_kern_value_int(wq_kern_code_int(x[off + i], bits, s, z), s, z);
    }
}

static void check_matrix(const wq_qspec *spec, const wq_qmatrix *m)
{
    (void)spec;
    (void)m;
    WQ_KERN_ASSERT(m->codes && m->scales && m->rows >= 0 && m->cols >= 1);
    WQ_KERN_ASSERT(m->group_size == wq_qspec_group_size(spec, m->cols));
    WQ_KERN_ASSERT(m->ngroups == (m->cols + m->group_size - 1) / m->group_size);
    WQ_KERN_ASSERT(m->dtype == spec->dtype && m->dtype != WQ_QDTYPE_FP32);
    WQ_KERN_ASSERT(m->dtype != WQ_QDTYPE_INT || (m->bits == spec->bits && m->zeros));
}

/* nf4/fp4 rows: per group scale (§2.2) then table codes. */
static void quant_row_f4(const float *x, int64_t cols, int64_t gs, wq_qdtype dt, float quantile,
                         uint8_t *codes, float *scales, bool ref)
{
    for (int64_t g = 0, off = 0; off < cols; g++, off += gs) {
        int64_t n = cols - off < gs ? cols - off : gs;
        wq_kern_params_f4(x + off, n, dt, quantile, &scales[g]);
        if (ref)
            wq_kern_quant_f4_ref(x + off, n, dt, scales[g], codes + off);
        else
            wq_kern_quant_f4(x + off, n, dt, scales[g], codes + off);
    }
}

static void quant_matrix(const float *W, const wq_qspec *spec, float quantile, wq_qmatrix *m,
                         bool ref)
{
    check_matrix(spec, m);
    const int64_t cols = m->cols, gs = m->group_size, ng = m->ngroups;
    const wq_int_scheme scheme = wq_kern_int_scheme_rtn(spec);
    for (int64_t r = 0; r < m->rows; r++) {
        const float *x = W + r * cols;
        uint8_t *c = m->codes + r * cols;
        float *s = m->scales + r * ng;
        if (m->dtype != WQ_QDTYPE_INT)
            quant_row_f4(x, cols, gs, m->dtype, quantile, c, s, ref);
        else if (ref)
            wq_kern_quant_row_int_ref(x, cols, gs, m->bits, scheme, quantile, c, s,
                                      m->zeros + r * ng);
        else
            wq_kern_quant_row_int(x, cols, gs, m->bits, scheme, quantile, c, s, m->zeros + r * ng);
    }
}

void wq_kern_quant_matrix(const float *W, const wq_qspec *spec, float quantile, wq_qmatrix *m)
{
    quant_matrix(W, spec, quantile, m, false);
}

void wq_kern_quant_matrix_ref(const float *W, const wq_qspec *spec, float quantile, wq_qmatrix *m)
{
    quant_matrix(W, spec, quantile, m, true);
}

void wq_kern_quant_matrix_scheme(const float *W, wq_int_scheme scheme, float quantile,
                                 wq_qmatrix *m)
{
    WQ_KERN_ASSERT(m->dtype == WQ_QDTYPE_INT && m->zeros && m->group_size >= 1);
    const int64_t cols = m->cols, ng = m->ngroups;
    for (int64_t r = 0; r < m->rows; r++)
        wq_kern_quant_row_int(W + r * cols, cols, m->group_size, m->bits, scheme, quantile,
                              m->codes + r * cols, m->scales + r * ng, m->zeros + r * ng);
}

void wq_kern_dequant_matrix(const wq_qmatrix *m, float *W)
{
    const int64_t cols = m->cols, gs = m->group_size, ng = m->ngroups;
    const bool is_int = m->dtype == WQ_QDTYPE_INT;
    const float *tab = is_int ? NULL : wq_kern_f4_table(m->dtype);
    for (int64_t r = 0; r < m->rows; r++) {
        const uint8_t *c = m->codes + r * cols;
        const float *s = m->scales + r * ng;
        const float *z = is_int ? m->zeros + r * ng : NULL;
        float *w = W + r * cols;
        if (m->g_idx) {
            for (int64_t j = 0; j < cols; j++) {
                int64_t g = m->g_idx[j];
                WQ_KERN_ASSERT(g >= 0 && g < ng);
                w[j] = is_int ? ((float)c[j] - z[g]) * s[g] : tab[c[j] & 15] * s[g];
            }
            continue;
        }
        for (int64_t g = 0, off = 0; off < cols; g++, off += gs) {
            int64_t n = cols - off < gs ? cols - off : gs;
            if (is_int)
                wq_kern_dequant_int(c + off, n, s[g], z[g], w + off);
            else
                wq_kern_dequant_f4(c + off, n, m->dtype, s[g], w + off);
        }
    }
}

// ---- Utilities ----------------------------------------------------------------------------------

int64_t wq_kern_find_nonfinite(const float *x, int64_t n)
{
    enum { BLK = 64 };
    int64_t i = 0;
    /* Block screen: exponent all ones <=> NaN or Inf. OR of 0/1 flags vectorizes. */
    for (; i + BLK <= n; i += BLK) {
        uint32_t bad = 0;
        for (int k = 0; k < BLK; k++)
            bad |= (kv_f2u(x[i + k]) & 0x7f800000u) == 0x7f800000u;
        if (bad) break;
    }
    for (; i < n; i++)
        if ((kv_f2u(x[i]) & 0x7f800000u) == 0x7f800000u) return i;
    return -1;
}

void wq_kern_bf16_to_f32(const uint16_t *restrict src, float *restrict dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = kv_u2f((uint32_t)src[i] << 16);
}
