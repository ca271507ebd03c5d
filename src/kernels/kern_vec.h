/* kern_vec.h: private branch-free scalar helpers that GCC/Clang auto-vectorize at plain -O3 with
 * the SSE2 baseline (no -march). Layer: kernels (internal to src/kernels, not part of the API).
 *
 * Why not `a < b ? a : b`: with the default -ftrapping-math GCC refuses to if-convert a float
 * comparison inside a loop ("control flow in loop") and the loop stays scalar. Selecting through an
 * all-ones/all-zeros integer mask has no control flow and becomes cmpltps + and/andn/or. */
#ifndef WQ_KERN_VEC_H
#define WQ_KERN_VEC_H

#include <stdint.h>
#include <string.h>

#include "core/core_log.h"
#include "kernels/kern_quant.h" /* wq_kern_isa */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "wquant kernels assume a little-endian host"
#endif

/* Kernel preconditions: checked in debug builds, compiled out with NDEBUG (Release). */
#ifdef NDEBUG
#define WQ_KERN_ASSERT(x) ((void)0)
#else
#define WQ_KERN_ASSERT(x) WQ_ASSERT(x)
#endif

static inline uint32_t kv_f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float kv_u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* a > b ? a : b, b when unordered (same as x86 maxss b-operand rule). */
static inline float kv_max(float a, float b)
{
    uint32_t m = 0u - (uint32_t)(a > b);
    return kv_u2f((kv_f2u(a) & m) | (kv_f2u(b) & ~m));
}

/* a < b ? a : b, b when unordered. */
static inline float kv_min(float a, float b)
{
    uint32_t m = 0u - (uint32_t)(a < b);
    return kv_u2f((kv_f2u(a) & m) | (kv_f2u(b) & ~m));
}

/* 1.5 * 2^23. For |v| < 2^22, v + KV_MAGIC lies in [2^23, 2^24) where the float spacing is 1, so
 * the addition rounds v to an integer half-to-even and subtracting KV_MAGIC is exact. */
#define KV_MAGIC 0x1.8p23f

// ---- internal kernels shared across kern_*.c (wq__ prefix: not public API) ----------------------

#if defined(__SSE2__)
#define WQ_KERN_HAVE_SSE2 1
#else
#define WQ_KERN_HAVE_SSE2 0
#endif

/* Group min/max and group codes (formulas in kern_quant.h). `_generic` is portable C; `_sse2` uses
 * SSE2 intrinsics (x86-64 baseline) and exists only when WQ_KERN_HAVE_SSE2; `_avx2` / `_avx512`
 * below. All are bit-identical to the `_ref` kernels; the public fast kernels reach them through
 * the runtime-selected wq__kern_ops table. The bf16 forms read raw bfloat16 bits (value = bits <<
 * 16 as float32). */
void wq__kern_minmax_f32_generic(const float *x, int64_t n, float *mn, float *mx);
void wq__kern_minmax_bf16_generic(const uint16_t *x, int64_t n, float *mn, float *mx);
void wq__kern_quant_f32_generic(const float *x, int64_t n, int bits, float scale, float zero,
                                uint8_t *codes);
void wq__kern_quant_bf16_generic(const uint16_t *x, int64_t n, int bits, float scale, float zero,
                                 uint8_t *codes);
#if WQ_KERN_HAVE_SSE2
void wq__kern_minmax_f32_sse2(const float *x, int64_t n, float *mn, float *mx);
void wq__kern_minmax_bf16_sse2(const uint16_t *x, int64_t n, float *mn, float *mx);
void wq__kern_quant_f32_sse2(const float *x, int64_t n, int bits, float scale, float zero,
                             uint8_t *codes);
void wq__kern_quant_bf16_sse2(const uint16_t *x, int64_t n, int bits, float scale, float zero,
                              uint8_t *codes);
/* 4-bit optimum packing of a tile of 16 rows (codes[16][cols]): words [j][0..15] at qweight[j*ld]
 * for j < 4*floor(cols/32); the remaining words are left to the caller. */
void wq__kern_pack4_optimum_rows16_sse2(const uint8_t *codes, int64_t cols, int64_t ld,
                                        int32_t *qweight);
#endif

/* AVX2 and AVX-512 (F+BW) versions live in kern_quant_avx2.c / kern_quant_avx512.c, compiled with
 * per-function target attributes (no -march), and are only called after a runtime CPU check. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WQ_KERN_HAVE_X86_DISPATCH 1
#else
#define WQ_KERN_HAVE_X86_DISPATCH 0
#endif

#if WQ_KERN_HAVE_X86_DISPATCH
void wq__kern_minmax_f32_avx2(const float *x, int64_t n, float *mn, float *mx);
void wq__kern_minmax_bf16_avx2(const uint16_t *x, int64_t n, float *mn, float *mx);
void wq__kern_quant_f32_avx2(const float *x, int64_t n, int bits, float scale, float zero,
                             uint8_t *codes);
void wq__kern_quant_bf16_avx2(const uint16_t *x, int64_t n, int bits, float scale, float zero,
                              uint8_t *codes);
/* words [j][0..15] for j < 8*floor(cols/64) (same contract as the sse2 form otherwise) */
void wq__kern_pack4_optimum_rows16_avx2(const uint8_t *codes, int64_t cols, int64_t ld,
                                        int32_t *qweight);
void wq__kern_minmax_f32_avx512(const float *x, int64_t n, float *mn, float *mx);
void wq__kern_minmax_bf16_avx512(const uint16_t *x, int64_t n, float *mn, float *mx);
void wq__kern_quant_f32_avx512(const float *x, int64_t n, int bits, float scale, float zero,
                               uint8_t *codes);
void wq__kern_quant_bf16_avx512(const uint16_t *x, int64_t n, int bits, float scale, float zero,
                                uint8_t *codes);
void wq__kern_pack4_optimum_rows16_avx512(const uint8_t *codes, int64_t cols, int64_t ld,
                                          int32_t *qweight);
#endif

// ---- runtime ISA dispatch (kern_quant_isa.c) ----------------------------------------------------

/* One implementation set of the hot loops. Every member is bit-identical to the `_ref` kernels
 * (for finite inputs; see kern_quant.h). pack4_rows16 packs words [j][0..15] of a 16-row tile
 * for j < pack4_words(cols) and leaves the rest to the caller; NULL means "portable loop only". */
typedef struct wq__kern_ops {
    wq_kern_isa isa;
    void (*minmax_f32)(const float *x, int64_t n, float *mn, float *mx);
    void (*minmax_bf16)(const uint16_t *x, int64_t n, float *mn, float *mx);
    void (*quant_f32)(const float *x, int64_t n, int bits, float scale, float zero, uint8_t *codes);
    void (*quant_bf16)(const uint16_t *x, int64_t n, int bits, float scale, float zero,
                       uint8_t *codes);
    void (*pack4_rows16)(const uint8_t *codes, int64_t cols, int64_t ld, int32_t *qweight);
    int64_t pack4_block; /* pack4_rows16 covers floor(cols / pack4_block) * pack4_block / 8 words */
} wq__kern_ops;

/* The table for `isa`, or NULL when it is not compiled in or the CPU lacks it. */
const wq__kern_ops *wq__kern_ops_for(wq_kern_isa isa);
/* The table the public fast kernels use: chosen once (first call), see kern_quant_isa.c. */
const wq__kern_ops *wq__kern_ops_active(void);

/* Public fast kernels with an explicit implementation set (tests and benchmarks compare ISAs). */
void wq__kern_quant_row_int_ops(const wq__kern_ops *ops, const float *x, int64_t cols, int64_t gs,
                                int bits, wq_int_scheme scheme, float quantile, uint8_t *codes,
                                float *scales, float *zeros);
void wq__kern_quant_row_int_bf16_ops(const wq__kern_ops *ops, const uint16_t *x, int64_t cols,
                                     int64_t gs, int bits, wq_int_scheme scheme, float quantile,
                                     uint8_t *codes, float *scales, float *zeros);
void wq__kern_pack_qweight_optimum_ld_ops(const wq__kern_ops *ops, const uint8_t *codes,
                                          int64_t rows, int64_t cols, int bits, int64_t ld,
                                          int32_t *qweight);

#endif
