/* kern_quant_sse2.c: SSE2 versions of the hot int-quantization loops (group min/max, group codes,
 * 4-bit optimum packing). SSE2 is the x86-64 baseline, so no -march flag is involved; other targets
 * compile this file empty and use the portable `_generic` loops. kern_quant_isa.c picks these, or
 * the AVX2 / AVX-512 versions when the CPU has them. Layer: kernels.
 *
 * Exactness (why these equal the `_ref` kernels bit for bit; tests check it):
 *  - minps/maxps return the same value as the scalar loop for finite inputs; only the sign of a
 * zero can differ, and the parameter formulas canonicalize it (comparisons with 0, fabsf).
 *  - bf16 min/max: a bf16 pattern h mapped to h ^ ((h >> 15) & 0x7fff) (arithmetic shift) is a
 *    signed 16-bit integer ordered like the float value (-0 just below +0), so pminsw/pmaxsw give
 *    the exact extremes.
 *  - codes: y = x / scale (divps, correctly rounded like the scalar division); cvtps2dq rounds half
 *    to even under the default MXCSR mode (the same FE_TONEAREST assumption as nearbyintf in _ref);
 *    y is first capped at 1024 with minps(cap, y), which keeps NaN as NaN; cvtps2dq maps NaN and
 *    |y| >= 2^31 to INT_MIN; packssdw saturates to int16 (rne(y) is kept exactly when it is in
 *    [-32768, 1024]); the zero point (0..255) is added with a saturating int16 add, exact in that
 *    range and pinned at -32768 below it; packuswb clamps below at 0 (so NaN and huge negatives
 * give code 0, as in _ref) and pminub clamps above at 2^bits - 1. */
#include "kernels/kern_quant.h"
#include "kernels/kern_vec.h"

#if WQ_KERN_HAVE_SSE2
#include <emmintrin.h>

// ---- min / max ----------------------------------------------------------------------------------

void wq__kern_minmax_f32_sse2(const float *x, int64_t n, float *mn, float *mx)
{
    WQ_KERN_ASSERT(n >= 1);
    float lo = x[0], hi = x[0];
    int64_t i = 1;
    if (n >= 8) {
        __m128 l0 = _mm_loadu_ps(x), l1 = _mm_loadu_ps(x + 4), h0 = l0, h1 = l1;
        for (i = 8; i + 8 <= n; i += 8) {
            const __m128 a = _mm_loadu_ps(x + i), b = _mm_loadu_ps(x + i + 4);
            l0 = _mm_min_ps(l0, a);
            l1 = _mm_min_ps(l1, b);
            h0 = _mm_max_ps(h0, a);
            h1 = _mm_max_ps(h1, b);
        }
        l0 = _mm_min_ps(l0, l1);
        h0 = _mm_max_ps(h0, h1);
        l0 = _mm_min_ps(l0, _mm_shuffle_ps(l0, l0, _MM_SHUFFLE(1, 0, 3, 2)));
        h0 = _mm_max_ps(h0, _mm_shuffle_ps(h0, h0, _MM_SHUFFLE(1, 0, 3, 2)));
        l0 = _mm_min_ps(l0, _mm_shuffle_ps(l0, l0, _MM_SHUFFLE(2, 3, 0, 1)));
        h0 = _mm_max_ps(h0, _mm_shuffle_ps(h0, h0, _MM_SHUFFLE(2, 3, 0, 1)));
        lo = _mm_cvtss_f32(l0);
        hi = _mm_cvtss_f32(h0);
    }
    for (; i < n; i++) {
        lo = kv_min(x[i], lo);
        hi = kv_max(x[i], hi);
    }
    *mn = lo;
    *mx = hi;
}

static inline __m128i ord16(__m128i v)
{
    return _mm_xor_si128(v, _mm_and_si128(_mm_srai_epi16(v, 15), _mm_set1_epi16(0x7fff)));
}

static inline int16_t ord16_1(uint16_t h)
{
    int16_t v = (int16_t)h;
    return (int16_t)(v ^ ((v >> 15) & 0x7fff));
}

static inline float unord16_1(int16_t v)
{
    uint16_t h = (uint16_t)(v ^ ((v >> 15) & 0x7fff));
    return kv_u2f((uint32_t)h << 16);
}

void wq__kern_minmax_bf16_sse2(const uint16_t *x, int64_t n, float *mn, float *mx)
{
    WQ_KERN_ASSERT(n >= 1);
    int16_t lo = ord16_1(x[0]), hi = lo;
    int64_t i = 1;
    if (n >= 16) {
        __m128i l0 = ord16(_mm_loadu_si128((const __m128i *)x));
        __m128i l1 = ord16(_mm_loadu_si128((const __m128i *)(x + 8)));
        __m128i h0 = l0, h1 = l1;
        for (i = 16; i + 16 <= n; i += 16) {
            const __m128i a = ord16(_mm_loadu_si128((const __m128i *)(x + i)));
            const __m128i b = ord16(_mm_loadu_si128((const __m128i *)(x + i + 8)));
            l0 = _mm_min_epi16(l0, a);
            l1 = _mm_min_epi16(l1, b);
            h0 = _mm_max_epi16(h0, a);
            h1 = _mm_max_epi16(h1, b);
        }
        l0 = _mm_min_epi16(l0, l1);
        h0 = _mm_max_epi16(h0, h1);
        l0 = _mm_min_epi16(l0, _mm_shuffle_epi32(l0, _MM_SHUFFLE(1, 0, 3, 2)));
        h0 = _mm_max_epi16(h0, _mm_shuffle_epi32(h0, _MM_SHUFFLE(1, 0, 3, 2)));
        l0 = _mm_min_epi16(l0, _mm_shuffle_epi32(l0, _MM_SHUFFLE(2, 3, 0, 1)));
        h0 = _mm_max_epi16(h0, _mm_shuffle_epi32(h0, _MM_SHUFFLE(2, 3, 0, 1)));
        l0 = _mm_min_epi16(l0, _mm_srli_epi32(l0, 16));
        h0 = _mm_max_epi16(h0, _mm_srli_epi32(h0, 16));
        lo = (int16_t)_mm_cvtsi128_si32(l0);
        hi = (int16_t)_mm_cvtsi128_si32(h0);
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

/* 16 quotients -> 16 codes (see the file comment for why this equals the scalar formula). z holds
 * the zero point as int16; the saturating int16 add keeps INT_MIN/large lanes pinned at the ends.
 */
static inline __m128i codes16(__m128 y0, __m128 y1, __m128 y2, __m128 y3, __m128i z, __m128i maxq)
{
    const __m128 cap = _mm_set1_ps(1024.0f);
    const __m128i k01 =
        _mm_packs_epi32(_mm_cvtps_epi32(_mm_min_ps(cap, y0)), _mm_cvtps_epi32(_mm_min_ps(cap, y1)));
    const __m128i k23 =
        _mm_packs_epi32(_mm_cvtps_epi32(_mm_min_ps(cap, y2)), _mm_cvtps_epi32(_mm_min_ps(cap, y3)));
    const __m128i c = _mm_packus_epi16(_mm_adds_epi16(k01, z), _mm_adds_epi16(k23, z));
    return _mm_min_epu8(c, maxq);
}

void wq__kern_quant_f32_sse2(const float *x, int64_t n, int bits, float scale, float zero,
                             uint8_t *codes)
{
    const __m128 s = _mm_set1_ps(scale);
    const __m128i z = _mm_set1_epi16((int16_t)zero);
    const __m128i maxq = _mm_set1_epi8((char)((1 << bits) - 1));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128 y0 = _mm_div_ps(_mm_loadu_ps(x + i), s);
        const __m128 y1 = _mm_div_ps(_mm_loadu_ps(x + i + 4), s);
        const __m128 y2 = _mm_div_ps(_mm_loadu_ps(x + i + 8), s);
        const __m128 y3 = _mm_div_ps(_mm_loadu_ps(x + i + 12), s);
        _mm_storeu_si128((__m128i *)(codes + i), codes16(y0, y1, y2, y3, z, maxq));
    }
    for (; i < n; i++)
        codes[i] = wq_kern_code_int(x[i], bits, scale, zero);
}

void wq__kern_quant_bf16_sse2(const uint16_t *x, int64_t n, int bits, float scale, float zero,
                              uint8_t *codes)
{
    const __m128 s = _mm_set1_ps(scale);
    const __m128i z = _mm_set1_epi16((int16_t)zero);
    const __m128i maxq = _mm_set1_epi8((char)((1 << bits) - 1));
    const __m128i zz = _mm_setzero_si128();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(x + i));
        const __m128i b = _mm_loadu_si128((const __m128i *)(x + i + 8));
        /* bf16 -> f32: the 16 bits become the high half of the float (interleave with zeros) */
        const __m128 y0 = _mm_div_ps(_mm_castsi128_ps(_mm_unpacklo_epi16(zz, a)), s);
        const __m128 y1 = _mm_div_ps(_mm_castsi128_ps(_mm_unpackhi_epi16(zz, a)), s);
        const __m128 y2 = _mm_div_ps(_mm_castsi128_ps(_mm_unpacklo_epi16(zz, b)), s);
        const __m128 y3 = _mm_div_ps(_mm_castsi128_ps(_mm_unpackhi_epi16(zz, b)), s);
        _mm_storeu_si128((__m128i *)(codes + i), codes16(y0, y1, y2, y3, z, maxq));
    }
    for (; i < n; i++)
        codes[i] = wq_kern_code_int(kv_u2f((uint32_t)x[i] << 16), bits, scale, zero);
}

// ---- 4-bit optimum packing ----------------------------------------------------------------------

/* 32 codes of one row -> 4 packed words (16 bytes): byte pairs (lo, hi) -> lo | hi << 4. */
static inline __m128i nib32(const uint8_t *c)
{
    const __m128i m4 = _mm_set1_epi8(0x0f), m8 = _mm_set1_epi16(0x00ff);
    __m128i a = _mm_and_si128(_mm_loadu_si128((const __m128i *)c), m4);
    __m128i b = _mm_and_si128(_mm_loadu_si128((const __m128i *)(c + 16)), m4);
    a = _mm_and_si128(_mm_or_si128(a, _mm_srli_epi16(a, 4)), m8);
    b = _mm_and_si128(_mm_or_si128(b, _mm_srli_epi16(b, 4)), m8);
    return _mm_packus_epi16(a, b);
}

void wq__kern_pack4_optimum_rows16_sse2(const uint8_t *codes, int64_t cols, int64_t ld,
                                        int32_t *qweight)
{
    /* For each group of 4 words j..j+3, all 16 rows are packed before moving on, so every touched
     * 64-byte line of qweight (16 consecutive rows of one word column) is completed by 4
     * back-to-back stores instead of being revisited after thousands of other lines (which, with
     * the power-of-two strides of real layers, all map to the same cache sets). When the lines are
     * 64-byte aligned they are written with non-temporal stores: qweight is write-once output, so
     * this skips reading every line from memory before overwriting it. */
    const int stream = (((uintptr_t)qweight | (uintptr_t)(ld * 4)) & 63) == 0;
    for (int64_t j = 0; 8 * j + 32 <= cols; j += 4) {
        for (int r = 0; r < 16; r += 4) {
            const uint8_t *c = codes + r * cols + 8 * j;
            const __m128i p0 = nib32(c), p1 = nib32(c + cols);
            const __m128i p2 = nib32(c + 2 * cols), p3 = nib32(c + 3 * cols);
            /* 4x4 transpose of 32-bit words: row r+i word q -> qweight[(j+q)*ld + r+i] */
            const __m128i t0 = _mm_unpacklo_epi32(p0, p1), t1 = _mm_unpacklo_epi32(p2, p3);
            const __m128i t2 = _mm_unpackhi_epi32(p0, p1), t3 = _mm_unpackhi_epi32(p2, p3);
            int32_t *q = qweight + j * ld + r;
            if (stream) {
                _mm_stream_si128((__m128i *)q, _mm_unpacklo_epi64(t0, t1));
                _mm_stream_si128((__m128i *)(q + ld), _mm_unpackhi_epi64(t0, t1));
                _mm_stream_si128((__m128i *)(q + 2 * ld), _mm_unpacklo_epi64(t2, t3));
                _mm_stream_si128((__m128i *)(q + 3 * ld), _mm_unpackhi_epi64(t2, t3));
            } else {
                _mm_storeu_si128((__m128i *)q, _mm_unpacklo_epi64(t0, t1));
                _mm_storeu_si128((__m128i *)(q + ld), _mm_unpackhi_epi64(t0, t1));
                _mm_storeu_si128((__m128i *)(q + 2 * ld), _mm_unpacklo_epi64(t2, t3));
                _mm_storeu_si128((__m128i *)(q + 3 * ld), _mm_unpackhi_epi64(t2, t3));
            }
        }
    }
    if (stream) _mm_sfence(); /* order the streaming stores before any later ordinary access */
}

#endif /* WQ_KERN_HAVE_SSE2 */
