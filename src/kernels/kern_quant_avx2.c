/* kern_quant_avx2.c: AVX2 versions of the hot int-quantization loops (group min/max, group codes,
 * 4-bit optimum packing). Compiled with per-function target("avx2") attributes, no -march: the
 * build still runs on any x86-64, and kern_quant_isa.c calls these only after
 * __builtin_cpu_supports("avx2"). Other targets compile this file empty. Layer: kernels.
 *
 * Exactness: the same argument as kern_quant_sse2.c, lane by lane (256-bit forms of the same
 * instructions: minps/maxps, pminsw/pmaxsw on order-mapped bf16, divps = IEEE division,
 * cvtps2dq = round half to even under the default MXCSR, saturating packs, pminub). The packs
 * work within 128-bit lanes; one cross-lane permute restores element order. Scalar tails use
 * wq_kern_code_int. For NaN inputs the f32 min/max follow the same per-lane minps/maxps rule as
 * SSE2 (deterministic, but which NaN-free value wins depends on the lane layout, as it already
 * does between sse2 and generic; inputs must be finite). */
#include "kernels/kern_quant.h"
#include "kernels/kern_vec.h"

#if WQ_KERN_HAVE_X86_DISPATCH
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

// ---- min / max ----------------------------------------------------------------------------------

AVX2 void wq__kern_minmax_f32_avx2(const float *x, int64_t n, float *mn, float *mx)
{
    WQ_KERN_ASSERT(n >= 1);
    float lo = x[0], hi = x[0];
    int64_t i = 1;
    if (n >= 16) {
        __m256 l0 = _mm256_loadu_ps(x), l1 = _mm256_loadu_ps(x + 8), h0 = l0, h1 = l1;
        for (i = 16; i + 16 <= n; i += 16) {
            const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
            l0 = _mm256_min_ps(l0, a);
            l1 = _mm256_min_ps(l1, b);
            h0 = _mm256_max_ps(h0, a);
            h1 = _mm256_max_ps(h1, b);
        }
        l0 = _mm256_min_ps(l0, l1);
        h0 = _mm256_max_ps(h0, h1);
        __m128 l = _mm_min_ps(_mm256_castps256_ps128(l0), _mm256_extractf128_ps(l0, 1));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(h0), _mm256_extractf128_ps(h0, 1));
        l = _mm_min_ps(l, _mm_shuffle_ps(l, l, _MM_SHUFFLE(1, 0, 3, 2)));
        h = _mm_max_ps(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(1, 0, 3, 2)));
        l = _mm_min_ps(l, _mm_shuffle_ps(l, l, _MM_SHUFFLE(2, 3, 0, 1)));
        h = _mm_max_ps(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(2, 3, 0, 1)));
        lo = _mm_cvtss_f32(l);
        hi = _mm_cvtss_f32(h);
    }
    for (; i < n; i++) {
        lo = kv_min(x[i], lo);
        hi = kv_max(x[i], hi);
    }
    *mn = lo;
    *mx = hi;
}

/* bf16 bits -> int16 ordered like the float values (see kern_quant_sse2.c). */
AVX2 static inline __m256i ord16(__m256i v)
{
    return _mm256_xor_si256(v,
                            _mm256_and_si256(_mm256_srai_epi16(v, 15), _mm256_set1_epi16(0x7fff)));
}

static inline int16_t ord16_1(uint16_t h)
{
    const int16_t v = (int16_t)h;
    return (int16_t)(v ^ ((v >> 15) & 0x7fff));
}

static inline float unord16_1(int16_t v)
{
    const uint16_t h = (uint16_t)(v ^ ((v >> 15) & 0x7fff));
    return kv_u2f((uint32_t)h << 16);
}

AVX2 void wq__kern_minmax_bf16_avx2(const uint16_t *x, int64_t n, float *mn, float *mx)
{
    WQ_KERN_ASSERT(n >= 1);
    int16_t lo = ord16_1(x[0]), hi = lo;
    int64_t i = 1;
    if (n >= 32) {
        __m256i l0 = ord16(_mm256_loadu_si256((const __m256i *)x));
        __m256i l1 = ord16(_mm256_loadu_si256((const __m256i *)(x + 16)));
        __m256i h0 = l0, h1 = l1;
        for (i = 32; i + 32 <= n; i += 32) {
            const __m256i a = ord16(_mm256_loadu_si256((const __m256i *)(x + i)));
            const __m256i b = ord16(_mm256_loadu_si256((const __m256i *)(x + i + 16)));
            l0 = _mm256_min_epi16(l0, a);
            l1 = _mm256_min_epi16(l1, b);
            h0 = _mm256_max_epi16(h0, a);
            h1 = _mm256_max_epi16(h1, b);
        }
        l0 = _mm256_min_epi16(l0, l1);
        h0 = _mm256_max_epi16(h0, h1);
        __m128i l = _mm_min_epi16(_mm256_castsi256_si128(l0), _mm256_extracti128_si256(l0, 1));
        __m128i h = _mm_max_epi16(_mm256_castsi256_si128(h0), _mm256_extracti128_si256(h0, 1));
        l = _mm_min_epi16(l, _mm_shuffle_epi32(l, _MM_SHUFFLE(1, 0, 3, 2)));
        h = _mm_max_epi16(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
        l = _mm_min_epi16(l, _mm_shuffle_epi32(l, _MM_SHUFFLE(2, 3, 0, 1)));
        h = _mm_max_epi16(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
        l = _mm_min_epi16(l, _mm_srli_epi32(l, 16));
        h = _mm_max_epi16(h, _mm_srli_epi32(h, 16));
        lo = (int16_t)_mm_cvtsi128_si32(l);
        hi = (int16_t)_mm_cvtsi128_si32(h);
    }
    for (; i < n; i++) {
        const int16_t v = ord16_1(x[i]);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *mn = unord16_1(lo);
    *mx = unord16_1(hi);
}

// ---- codes --------------------------------------------------------------------------------------

/* 8 quotients -> int32 rne(min(y, 1024)) (NaN and huge negatives -> INT_MIN). */
AVX2 static inline __m256i cvt8(__m256 y)
{
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_set1_ps(1024.0f), y));
}

/* int32 x 4 vectors (a0 a1 from one 16-element half, b0 b1 from the other) -> 32 codes, bytes in
 * in-lane pack order; the caller's permute fixes the order. */
AVX2 static inline __m256i pack_codes(__m256i a0, __m256i a1, __m256i b0, __m256i b1, __m256i z,
                                      __m256i maxq)
{
    const __m256i ka = _mm256_adds_epi16(_mm256_packs_epi32(a0, a1), z);
    const __m256i kb = _mm256_adds_epi16(_mm256_packs_epi32(b0, b1), z);
    return _mm256_min_epu8(_mm256_packus_epi16(ka, kb), maxq);
}

AVX2 void wq__kern_quant_f32_avx2(const float *x, int64_t n, int bits, float scale, float zero,
                                  uint8_t *codes)
{
    const __m256 s = _mm256_set1_ps(scale);
    const __m256i z = _mm256_set1_epi16((int16_t)zero);
    const __m256i maxq = _mm256_set1_epi8((char)((1 << bits) - 1));
    /* after the in-lane packs, dword k of lane L holds elements 8k + 4L .. +3 */
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i c0 = cvt8(_mm256_div_ps(_mm256_loadu_ps(x + i), s));
        const __m256i c1 = cvt8(_mm256_div_ps(_mm256_loadu_ps(x + i + 8), s));
        const __m256i c2 = cvt8(_mm256_div_ps(_mm256_loadu_ps(x + i + 16), s));
        const __m256i c3 = cvt8(_mm256_div_ps(_mm256_loadu_ps(x + i + 24), s));
        const __m256i c = pack_codes(c0, c1, c2, c3, z, maxq);
        _mm256_storeu_si256((__m256i *)(codes + i), _mm256_permutevar8x32_epi32(c, perm));
    }
    for (; i < n; i++)
        codes[i] = wq_kern_code_int(x[i], bits, scale, zero);
}

AVX2 void wq__kern_quant_bf16_avx2(const uint16_t *x, int64_t n, int bits, float scale, float zero,
                                   uint8_t *codes)
{
    const __m256 s = _mm256_set1_ps(scale);
    const __m256i z = _mm256_set1_epi16((int16_t)zero);
    const __m256i maxq = _mm256_set1_epi8((char)((1 << bits) - 1));
    const __m256i zz = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(x + i + 16));
        /* bf16 -> f32 by interleaving with zeros (in-lane): lo = elements 0-3 | 8-11, hi = 4-7 |
         * 12-15, so packs(lo, hi) has elements 0-7 | 8-15 in order */
        const __m256i a0 =
            cvt8(_mm256_div_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(zz, a)), s));
        const __m256i a1 =
            cvt8(_mm256_div_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(zz, a)), s));
        const __m256i b0 =
            cvt8(_mm256_div_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(zz, b)), s));
        const __m256i b1 =
            cvt8(_mm256_div_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(zz, b)), s));
        /* qwords now: 0-7, 16-23 | 8-15, 24-31 */
        const __m256i c = pack_codes(a0, a1, b0, b1, z, maxq);
        _mm256_storeu_si256((__m256i *)(codes + i),
                            _mm256_permute4x64_epi64(c, _MM_SHUFFLE(3, 1, 2, 0)));
    }
    for (; i < n; i++)
        codes[i] = wq_kern_code_int(kv_u2f((uint32_t)x[i] << 16), bits, scale, zero);
}

// ---- 4-bit optimum packing ----------------------------------------------------------------------

/* 64 codes of one row -> 8 packed words in order: byte pairs (lo, hi) -> lo | hi << 4. */
AVX2 static inline __m256i nib64(const uint8_t *c)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), m8 = _mm256_set1_epi16(0x00ff);
    __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)c), m4);
    __m256i b = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(c + 32)), m4);
    a = _mm256_and_si256(_mm256_or_si256(a, _mm256_srli_epi16(a, 4)), m8);
    b = _mm256_and_si256(_mm256_or_si256(b, _mm256_srli_epi16(b, 4)), m8);
    /* in-lane pack: qwords a0 b0 | a1 b1 -> a0 a1 b0 b1 */
    return _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), _MM_SHUFFLE(3, 1, 2, 0));
}

/* 8x8 transpose of 32-bit elements: r[i] word j -> r[j] word i. */
AVX2 static inline void transpose8(__m256i r[8])
{
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
    }
}

AVX2 void wq__kern_pack4_optimum_rows16_avx2(const uint8_t *codes, int64_t cols, int64_t ld,
                                             int32_t *qweight)
{
    /* Per block of 64 codes (8 words) per row: 16 rows -> 8 output lines of 16 int32 each, written
     * back to back (see kern_quant_sse2.c for why; non-temporal when 64-byte aligned). */
    const int stream = (((uintptr_t)qweight | (uintptr_t)(ld * 4)) & 63) == 0;
    for (int64_t j = 0; 8 * j + 64 <= cols; j += 8) {
        for (int h = 0; h < 16; h += 8) {
            __m256i r[8];
            for (int k = 0; k < 8; k++)
                r[k] = nib64(codes + (h + k) * cols + 8 * j);
            transpose8(r);
            int32_t *q = qweight + j * ld + h;
            if (stream)
                for (int k = 0; k < 8; k++)
                    _mm256_stream_si256((__m256i *)(q + k * ld), r[k]);
            else
                for (int k = 0; k < 8; k++)
                    _mm256_storeu_si256((__m256i *)(q + k * ld), r[k]);
        }
    }
    if (stream) _mm_sfence();
}

#endif /* WQ_KERN_HAVE_X86_DISPATCH */
