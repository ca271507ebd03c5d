/* core_half.c: fp16/bf16 <-> fp32 conversion with round-to-nearest-even. Layer: core. */
#include "core/core_half.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} k_dtypes[WQ_DTYPE_COUNT] = {
    [WQ_DTYPE_F32] = {"F32", 4}, [WQ_DTYPE_F16] = {"F16", 2}, [WQ_DTYPE_BF16] = {"BF16", 2},
    [WQ_DTYPE_I32] = {"I32", 4}, [WQ_DTYPE_U8] = {"U8", 1},   [WQ_DTYPE_I8] = {"I8", 1},
    [WQ_DTYPE_I64] = {"I64", 8}, [WQ_DTYPE_F64] = {"F64", 8},
};

size_t wq_dtype_size(wq_dtype t) { return (unsigned)t < WQ_DTYPE_COUNT ? k_dtypes[t].size : 0; }
const char *wq_dtype_name(wq_dtype t) { return (unsigned)t < WQ_DTYPE_COUNT ? k_dtypes[t].name : "?"; }

wq_dtype wq_dtype_from_name(const char *s)
{
    for (int t = 0; t < WQ_DTYPE_COUNT; t++)
        if (strcmp(s, k_dtypes[t].name) == 0) return (wq_dtype)t;
    return WQ_DTYPE_COUNT;
}

static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float wq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return u2f(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t wq_f32_to_f16(float f)
{
    uint32_t u = f2u(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t au = u & 0x7fffffffu;
    if (au >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (au > 0x7f800000u ? 0x200 | ((au >> 13) & 0x3ff) : 0));
    if (au >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: overflow */
    if (au < 0x38800000u) {                                  /* below the smallest normal 2^-14 */
        /* subnormal: round(|f| * 2^24) with RNE, done in float (exact: power-of-two scaling) */
        float a = u2f(au) * 16777216.0f;
        uint32_t m = (uint32_t)a;
        float rem = a - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t mant_round = au + 0xfffu + ((au >> 13) & 1); /* RNE at bit 13 */
    return (uint16_t)(sign | ((mant_round - 0x38000000u) >> 13));
}

float wq_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t wq_f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

void wq_convert_to_f32(wq_dtype src_type, const void *src, float *dst, size_t n)
{
    switch (src_type) {
    case WQ_DTYPE_F32:
        memcpy(dst, src, n * 4);
        break;
    case WQ_DTYPE_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = wq_f16_to_f32(s[i]);
        break;
    }
    case WQ_DTYPE_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = u2f((uint32_t)s[i] << 16);
        break;
    }
    case WQ_DTYPE_F64: {
        const double *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        break;
    }
    default:
        memset(dst, 0, n * 4);
        break;
    }
}

void wq_convert_from_f32(wq_dtype dst_type, const float *src, void *dst, size_t n)
{
    switch (dst_type) {
    case WQ_DTYPE_F32:
        memcpy(dst, src, n * 4);
        break;
    case WQ_DTYPE_F16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = wq_f32_to_f16(src[i]);
        break;
    }
    case WQ_DTYPE_BF16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = wq_f32_to_bf16(src[i]);
        break;
    }
    default:
        break;
    }
}
