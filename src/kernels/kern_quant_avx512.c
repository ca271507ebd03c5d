/* kern_quant_avx512.c: AVX-512 (F + BW) versions of the hot int-quantization loops (group min/max,
 * group codes, 4-bit optimum packing). Compiled with per-function target("avx512f,avx512bw")
 * attributes, no -march; kern_quant_isa.c calls them only after __builtin_cpu_supports reports
 * both extensions. Other targets compile this file empty. Layer: kernels.
 *
 * Exactness: the argument of kern_quant_sse2.c lane by lane (vdivps = IEEE division, vcvtps2dq =
 * round half to even under the default MXCSR, min(1024, y) keeps NaN, saturating in-lane packs,
 * pminub), plus:
 *  - group tails use masked loads/stores instead of a scalar loop: masked-off code lanes are
 * computed from zeros and never stored; masked-off min/max lanes are filled with x[0], which is
 * already part of the group, so the extremes are unchanged.
 *  - f32 min/max: vminps/vmaxps with the accumulator first, as SSE2 (finite inputs: only the sign
 * of a zero can depend on the order, and the parameter formulas canonicalize it). */
#include "kernels/kern_quant.h"
#include "kernels/kern_vec.h"

#if WQ_KERN_HAVE_X86_DISPATCH
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw")))

/* Mask of the first r (0..16) of 16 lanes. */
static inline __mmask16 first16(int64_t r)
{
    return (__mmask16)(r >= 16 ? 0xffffu : (1u << (r > 0 ? r : 0)) - 1u);
}

static inline __mmask32 first32(int64_t r)
{
    return (__mmask32)(r >= 32 ? 0xffffffffu : (1u << (r > 0 ? r : 0)) - 1u);
}

// ---- min / max ----------------------------------------------------------------------------------

AVX512 void wq__kern_minmax_f32_avx512(const float *x, int64_t n, float *mn, float *mx)
{
    WQ_KERN_ASSERT(n >= 1);
    const __m512 x0 = _mm512_set1_ps(x[0]);
    __m512 l0 = x0, l1 = x0, h0 = x0, h1 = x0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        l0 = _mm512_min_ps(l0, a);
        l1 = _mm512_min_ps(l1, b);
        h0 = _mm512_max_ps(h0, a);
        h1 = _mm512_max_ps(h1, b);
    }
    if (i < n) { /* masked tail: missing lanes repeat x[0] */
        const __m512 a = _mm512_mask_loadu_ps(x0, first16(n - i), x + i);
        const __m512 b = _mm512_mask_loadu_ps(x0, first16(n - i - 16), x + i + 16);
        l0 = _mm512_min_ps(l0, a);
        l1 = _mm512_min_ps(l1, b);
        h0 = _mm512_max_ps(h0, a);
        h1 = _mm512_max_ps(h1, b);
    }
    l0 = _mm512_min_ps(l0, l1);
    h0 = _mm512_max_ps(h0, h1);
    __m256 l8 = _mm256_min_ps(_mm512_castps512_ps256(l0),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(l0), 1)));
    __m256 h8 = _mm256_max_ps(_mm512_castps512_ps256(h0),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(h0), 1)));
    __m128 l = _mm_min_ps(_mm256_castps256_ps128(l8), _mm256_extractf128_ps(l8, 1));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    l = _mm_min_ps(l, _mm_shuffle_ps(l, l, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_max_ps(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(1, 0, 3, 2)));
    l = _mm_min_ps(l, _mm_shuffle_ps(l, l, _MM_SHUFFLE(2, 3, 0, 1)));
    h = _mm_max_ps(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(2, 3, 0, 1)));
    *mn = _mm_cvtss_f32(l);
    *mx = _mm_cvtss_f32(h);
}

/* bf16 bits -> int16 ordered like the float values (see kern_quant_sse2.c). */
AVX512 static inline __m512i ord16(__m512i v)
{
    return _mm512_xor_si512(v,
                            _mm512_and_si512(_mm512_srai_epi16(v, 15), _mm512_set1_epi16(0x7fff)));
}

static inline float unord16_1(int16_t v)
{
    const uint16_t h = (uint16_t)(v ^ ((v >> 15) & 0x7fff));
    return kv_u2f((uint32_t)h << 16);
}

AVX512 void wq__kern_minmax_bf16_avx512(const uint16_t *x, int64_t n, float *mn, float *mx)
{
    WQ_KERN_ASSERT(n >= 1);
    const __m512i x0 = _mm512_set1_epi16((short)x[0]);
    __m512i l0 = ord16(x0), l1 = l0, h0 = l0, h1 = l0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512i a = ord16(_mm512_loadu_si512(x + i));
        const __m512i b = ord16(_mm512_loadu_si512(x + i + 32));
        l0 = _mm512_min_epi16(l0, a);
        l1 = _mm512_min_epi16(l1, b);
        h0 = _mm512_max_epi16(h0, a);
        h1 = _mm512_max_epi16(h1, b);
    }
    if (i < n) { /* masked tail: missing lanes repeat x[0] */
        const __m512i a = ord16(_mm512_mask_loadu_epi16(x0, first32(n - i), x + i));
        const __m512i b = ord16(_mm512_mask_loadu_epi16(x0, first32(n - i - 32), x + i + 32));
        l0 = _mm512_min_epi16(l0, a);
        l1 = _mm512_min_epi16(l1, b);
        h0 = _mm512_max_epi16(h0, a);
        h1 = _mm512_max_epi16(h1, b);
    }
    l0 = _mm512_min_epi16(l0, l1);
    h0 = _mm512_max_epi16(h0, h1);
    __m256i l8 = _mm256_min_epi16(_mm512_castsi512_si256(l0), _mm512_extracti64x4_epi64(l0, 1));
    __m256i h8 = _mm256_max_epi16(_mm512_castsi512_si256(h0), _mm512_extracti64x4_epi64(h0, 1));
    __m128i l = _mm_min_epi16(_mm256_castsi256_si128(l8), _mm256_extracti128_si256(l8, 1));
    __m128i h = _mm_max_epi16(_mm256_castsi256_si128(h8), _mm256_extracti128_si256(h8, 1));
    l = _mm_min_epi16(l, _mm_shuffle_epi32(l, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_max_epi16(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
    l = _mm_min_epi16(l, _mm_shuffle_epi32(l, _MM_SHUFFLE(2, 3, 0, 1)));
    h = _mm_max_epi16(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    l = _mm_min_epi16(l, _mm_srli_epi32(l, 16));
    h = _mm_max_epi16(h, _mm_srli_epi32(h, 16));
    *mn = unord16_1((int16_t)_mm_cvtsi128_si32(l));
    *mx = unord16_1((int16_t)_mm_cvtsi128_si32(h));
}

// ---- codes --------------------------------------------------------------------------------------

/* 16 quotients -> int32 rne(min(y, 1024)) (NaN and huge negatives -> INT_MIN). */
AVX512 static inline __m512i cvt16(__m512 y)
{
    return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_set1_ps(1024.0f), y));
}

/* 4 x 16 int32 -> 64 codes in in-lane pack order (the caller permutes). */
AVX512 static inline __m512i pack_codes(__m512i a0, __m512i a1, __m512i b0, __m512i b1, __m512i z,
                                        __m512i maxq)
{
    const __m512i ka = _mm512_adds_epi16(_mm512_packs_epi32(a0, a1), z);
    const __m512i kb = _mm512_adds_epi16(_mm512_packs_epi32(b0, b1), z);
    return _mm512_min_epu8(_mm512_packus_epi16(ka, kb), maxq);
}

static inline __mmask64 first64(int64_t r)
{
    return r >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << r) - 1;
}

AVX512 void wq__kern_quant_f32_avx512(const float *x, int64_t n, int bits, float scale, float zero,
                                      uint8_t *codes)
{
    const __m512 s = _mm512_set1_ps(scale);
    const __m512i z = _mm512_set1_epi16((short)zero);
    const __m512i maxq = _mm512_set1_epi8((char)((1 << bits) - 1));
    /* after the in-lane packs, dword 4L + j holds elements 16j + 4L .. +3 */
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512i c0 = cvt16(_mm512_div_ps(_mm512_loadu_ps(x + i), s));
        const __m512i c1 = cvt16(_mm512_div_ps(_mm512_loadu_ps(x + i + 16), s));
        const __m512i c2 = cvt16(_mm512_div_ps(_mm512_loadu_ps(x + i + 32), s));
        const __m512i c3 = cvt16(_mm512_div_ps(_mm512_loadu_ps(x + i + 48), s));
        const __m512i c = pack_codes(c0, c1, c2, c3, z, maxq);
        _mm512_storeu_si512(codes + i, _mm512_permutexvar_epi32(perm, c));
    }
    if (i < n) { /* masked tail: lanes past n load 0 and are not stored */
        const int64_t r = n - i;
        const __m512i c0 = cvt16(_mm512_div_ps(_mm512_maskz_loadu_ps(first16(r), x + i), s));
        const __m512i c1 =
            cvt16(_mm512_div_ps(_mm512_maskz_loadu_ps(first16(r - 16), x + i + 16), s));
        const __m512i c2 =
            cvt16(_mm512_div_ps(_mm512_maskz_loadu_ps(first16(r - 32), x + i + 32), s));
        const __m512i c3 =
            cvt16(_mm512_div_ps(_mm512_maskz_loadu_ps(first16(r - 48), x + i + 48), s));
        const __m512i c = pack_codes(c0, c1, c2, c3, z, maxq);
        _mm512_mask_storeu_epi8(codes + i, first64(r), _mm512_permutexvar_epi32(perm, c));
    }
}

/* 64 bf16 (two halves a, b) -> 64 codes in order. */
AVX512 static inline __m512i codes64_bf16(__m512i a, __m512i b, __m512 s, __m512i z, __m512i maxq)
{
    const __m512i zz = _mm512_setzero_si512();
    /* bf16 -> f32 by interleaving with zeros (in-lane): lane L of lo/hi = elements 8L..+3 /
     * 8L+4..+7, so packs(lo, hi) has all 32 elements in order */
    const __m512i a0 = cvt16(_mm512_div_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(zz, a)), s));
    const __m512i a1 = cvt16(_mm512_div_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(zz, a)), s));
    const __m512i b0 = cvt16(_mm512_div_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(zz, b)), s));
    const __m512i b1 = cvt16(_mm512_div_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(zz, b)), s));
    /* qword 2L = elements 8L..+7, qword 2L+1 = elements 32+8L..+7 */
    const __m512i c = pack_codes(a0, a1, b0, b1, z, maxq);
    return _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), c);
}

AVX512 void wq__kern_quant_bf16_avx512(const uint16_t *x, int64_t n, int bits, float scale,
                                       float zero, uint8_t *codes)
{
    const __m512 s = _mm512_set1_ps(scale);
    const __m512i z = _mm512_set1_epi16((short)zero);
    const __m512i maxq = _mm512_set1_epi8((char)((1 << bits) - 1));
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512i a = _mm512_loadu_si512(x + i), b = _mm512_loadu_si512(x + i + 32);
        _mm512_storeu_si512(codes + i, codes64_bf16(a, b, s, z, maxq));
    }
    if (i < n) { /* masked tail: lanes past n load 0 and are not stored */
        const int64_t r = n - i;
        const __m512i a = _mm512_maskz_loadu_epi16(first32(r), x + i);
        const __m512i b = _mm512_maskz_loadu_epi16(first32(r - 32), x + i + 32);
        _mm512_mask_storeu_epi8(codes + i, first64(r), codes64_bf16(a, b, s, z, maxq));
    }
}

// ---- 4-bit optimum packing ----------------------------------------------------------------------

/* 64 codes of one row -> 8 packed words in order: byte pairs (lo, hi) -> lo | hi << 4 (the word
 * truncation of vpmovwb drops the high byte, so one mask suffices). */
AVX512 static inline __m256i nib64(const uint8_t *c)
{
    const __m512i a = _mm512_and_si512(_mm512_loadu_si512(c), _mm512_set1_epi8(0x0f));
    return _mm512_cvtepi16_epi8(_mm512_or_si512(a, _mm512_srli_epi16(a, 4)));
}

AVX512 void wq__kern_pack4_optimum_rows16_avx512(const uint8_t *codes, int64_t cols, int64_t ld,
                                                 int32_t *qweight)
{
    /* Per block of 64 codes (8 words) per row: vector k holds rows k (low half) and k + 8 (high
     * half); an 8x8 transpose inside each half gives vector j = word j of rows 0..15, one full
     * 64-byte line of qweight (non-temporal when aligned; see kern_quant_sse2.c). */
    const int stream = (((uintptr_t)qweight | (uintptr_t)(ld * 4)) & 63) == 0;
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int64_t j = 0; 8 * j + 64 <= cols; j += 8) {
        __m512i r[8], t[8], u[8];
        for (int k = 0; k < 8; k++) {
            const uint8_t *c = codes + k * cols + 8 * j;
            r[k] = _mm512_inserti64x4(_mm512_castsi256_si512(nib64(c)), nib64(c + 8 * cols), 1);
        }
        for (int k = 0; k < 8; k += 2) {
            t[k] = _mm512_unpacklo_epi32(r[k], r[k + 1]);
            t[k + 1] = _mm512_unpackhi_epi32(r[k], r[k + 1]);
        }
        for (int k = 0; k < 8; k += 4) {
            u[k] = _mm512_unpacklo_epi64(t[k], t[k + 2]);
            u[k + 1] = _mm512_unpackhi_epi64(t[k], t[k + 2]);
            u[k + 2] = _mm512_unpacklo_epi64(t[k + 1], t[k + 3]);
            u[k + 3] = _mm512_unpackhi_epi64(t[k + 1], t[k + 3]);
        }
        for (int k = 0; k < 4; k++) {
            r[k] = _mm512_permutex2var_epi64(u[k], lo, u[k + 4]);
            r[k + 4] = _mm512_permutex2var_epi64(u[k], hi, u[k + 4]);
        }
        int32_t *q = qweight + j * ld;
        if (stream)
            for (int k = 0; k < 8; k++)
                _mm512_stream_si512((void *)(q + k * ld), r[k]);
        else
            for (int k = 0; k < 8; k++)
                _mm512_storeu_si512(q + k * ld, r[k]);
    }
    if (stream) _mm_sfence();
}

#endif /* WQ_KERN_HAVE_X86_DISPATCH */
