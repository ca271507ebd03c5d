/* kern_quant.h: weight-only quantization kernels (numerics.md §1, §2, §3, §13): integer groups for
 * every wq_int_scheme and bits 1..8, the 4-bit float tables (nf4, fp4_e2m1_bnb, fp4_e2m1), row and
 * matrix drivers (RTN), dequantization, MSE clip search, double quantization of scales, and the
 * non-finite scan. Layer: kernels: pure numerics, no allocation, logging, I/O or MPI; preconditions
 * are asserted in debug builds only.
 *
 * Conventions shared by every function here:
 *  - x/W are float32, row-major. A "group" is n consecutive elements of one row.
 *  - Rounding is round-half-to-even (torch.round); never roundf. The caller keeps the default
 *    FE_TONEAREST rounding mode (the SIMD conversion and nearbyintf both follow it).
 *  - All arithmetic that decides a code or a parameter is float32, in the order INC evaluates it,
 * so results match INC bit for bit (x / scale is a true division, never a multiply by 1/scale).
 *  - Int storage (core_qtypes.h): unsigned codes 0..2^bits-1 plus a float zero holding an integer,
 *        dequant  x^ = (code - zero) * scale.
 *    Symmetric schemes store zero = 2^(bits-1) and code = signed_code + 2^(bits-1), which is the
 * same value INC computes as signed_code * scale.
 *  - nf4/fp4 codes are INC nibbles (numerics 2.1 "INC code" & 0xF), dequant x^ = table[code] *
 * scale.
 *  - Inputs must be finite (check with wq_kern_find_nonfinite first); for NaN/Inf the outputs are
 *    deterministic but meaningless.
 *  - Each kernel with a fast path has a scalar `_ref` twin; they agree bit for bit (tested). */
#ifndef WQ_KERN_QUANT_H
#define WQ_KERN_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core_qtypes.h"
#include "kernels/kern_exact.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- Integer groups -----------------------------------------------------------------------------

/* The scheme RTN/AWQ use for a spec: asym -> ASYM, sym -> SYM, sym + full_range -> SYM_FULL.
 * (GPTQ passes WQ_SCHEME_SYM_GPTQ explicitly to the *_scheme / params functions.) */
wq_int_scheme wq_kern_int_scheme_rtn(const wq_qspec *spec);

/* Scale and zero of one group x[n] (n >= 1), bits in 1..8, quantile q > 0 (clip ratio, 1 = none).
 * float32 throughout; mn = min_i x_i, mx = max_i x_i:
 *  ASYM      wmin = min(mn,0)*q, wmax = max(mx,0)*q; both 0 -> (-1,+1);
 *            scale = (wmax-wmin)/(2^b-1), zero = rne(-wmin/scale)                       (§1.2)
 *  SYM       amax = max(|mx|,|mn|)*q (0 -> 1); scale = amax/(2^(b-1)-1), zero = 2^(b-1)      (§1.2)
 *  SYM_FULL  amax as SYM; scale = amax/2^(b-1), negated when |mx| > |mn|; zero = 2^(b-1)    (§1.2)
 *  SYM_GPTQ  xmin = min(mn,0), xmax = max(mx,0); xmax = max(|xmin|,xmax); xmin = -xmax only if
 *            xmin < 0 (no negative entry keeps xmin = 0: half-size scale, INC/reference quirk);
 *            both 0 -> (-1,+1); then xmin*=q, xmax*=q; scale = (xmax-xmin)/(2^b-1), zero = 2^(b-1)
 * (§4.4) bits == 1 with any symmetric scheme (wquant rule; INC's clamp {0,1} loses every negative
 * weight and GPTQ's formula rounds every weight to 0): full-range sign trick, scale = +-amax
 * (negated when |mx| > |mn|), zero = 1, so the two codes dequantize to {0, the largest-magnitude
 * value}. Codes are then clamp(rne(x/scale) + zero, 0, 2^b-1) for every scheme (wq_kern_quant_int).
 */
void wq_kern_params_int(const float *x, int64_t n, int bits, wq_int_scheme scheme, float quantile,
                        float *scale, float *zero);
void wq_kern_params_int_ref(const float *x, int64_t n, int bits, wq_int_scheme scheme,
                            float quantile, float *scale, float *zero);

/* codes[i] = clamp(rne(x[i] / scale) + zero, 0, 2^bits - 1), i < n. A NaN quotient (only possible
 * when scale underflowed to 0) gives code 0. x[n], codes[n]; zero is an integer in 0..255. */
void wq_kern_quant_int(const float *x, int64_t n, int bits, float scale, float zero,
                       uint8_t *codes);
void wq_kern_quant_int_ref(const float *x, int64_t n, int bits, float scale, float zero,
                           uint8_t *codes);

/* y[i] = (codes[i] - zero) * scale. */
void wq_kern_dequant_int(const uint8_t *codes, int64_t n, float scale, float zero, float *y);

/* Single-element forms of the two formulas above, for column-at-a-time callers (GPTQ). */
static inline float wq_kern_rne(float v)
{
    /* 1.5*2^23 trick: exact round-half-even for |v| < 2^22; larger |v| are already integers. */
    return (v < 0x1p22f && v > -0x1p22f) ? (v + 0x1.8p23f) - 0x1.8p23f : v;
}
static inline uint8_t wq_kern_code_int(float x, int bits, float scale, float zero)
{
    float maxq = (float)((1 << bits) - 1);
    float c = wq_kern_rne(x / scale) + zero;
    c = c > 0.0f ? c : 0.0f; /* NaN -> 0 */
    c = c < maxq ? c : maxq;
    return (uint8_t)c;
}
static inline float wq_kern_value_int(uint8_t code, float scale, float zero)
{
    return ((float)code - zero) * scale;
}

/* Fused fast path for one row: x[cols] -> codes[cols], scales[ngroups], zeros[ngroups] with
 * ngroups = ceil(cols/gs); groups of gs along the row, the last one smaller when gs does not divide
 * cols (§1.3). gs is the effective group size, 1 <= gs <= cols. */
void wq_kern_quant_row_int(const float *x, int64_t cols, int64_t gs, int bits, wq_int_scheme scheme,
                           float quantile, uint8_t *codes, float *scales, float *zeros);
void wq_kern_quant_row_int_ref(const float *x, int64_t cols, int64_t gs, int bits,
                               wq_int_scheme scheme, float quantile, uint8_t *codes, float *scales,
                               float *zeros);
/* Same from a bfloat16 row (raw bits; value = bits << 16 as float32): identical results to
 * wq_kern_quant_row_int on the widened row, without materializing it. */
void wq_kern_quant_row_int_bf16(const uint16_t *x, int64_t cols, int64_t gs, int bits,
                                wq_int_scheme scheme, float quantile, uint8_t *codes, float *scales,
                                float *zeros);

/* In-place fake quantization x[i] <- (code - zero) * scale of a flat vector x[n] in groups of gs
 * (gs <= 0 or gs > n: one group; smaller last group otherwise). quantile 1. Used for double quant
 * (§3.1) and GPTQ's scale quantization over rows (§3.2). */
void wq_kern_qdq_int(float *x, int64_t n, int64_t gs, int bits, wq_int_scheme scheme);

// ---- 4-bit float tables: nf4, fp4_e2m1_bnb ("fp4"), fp4_e2m1 (numerics 2.1, 2.2) ----------------

/* Dequantization table indexed by INC nibble: value = wq_kern_f4_table(t)[code]. fp4 nibble 0x8
 * (bnb's -0, never produced) maps to 0. dtype in {NF4, FP4_BNB, FP4_E2M1}; 16 entries. */
const float *wq_kern_f4_table(wq_qdtype dtype);
/* max(table): 1 for NF4 and FP4_E2M1, 12 for FP4_BNB. */
float wq_kern_f4_max(wq_qdtype dtype);

/* scale = absmax(x[n]) * quantile / max(table)  (float32, left to right). 0 for an all-zero group.
 */
void wq_kern_params_f4(const float *x, int64_t n, wq_qdtype dtype, float quantile, float *scale);

/* y = x / scale; code = nibble of table entry t_k with mid_{k-1} < y <= mid_k (mid_k = float32 of
 * the double midpoint (t_k + t_{k+1})/2): ties go to the lower value. scale == 0 (all-zero group):
 * y is NaN in INC, no bucket matches, dequant 0 -> code of value 0.0 (nibble 0x0). */
void wq_kern_quant_f4(const float *x, int64_t n, wq_qdtype dtype, float scale, uint8_t *codes);
void wq_kern_quant_f4_ref(const float *x, int64_t n, wq_qdtype dtype, float scale, uint8_t *codes);
/* One element of wq_kern_quant_f4 (for column-at-a-time callers). */
uint8_t wq_kern_code_f4(float x, wq_qdtype dtype, float scale);

/* y[i] = table[codes[i]] * scale. */
void wq_kern_dequant_f4(const uint8_t *codes, int64_t n, wq_qdtype dtype, float scale, float *y);

// ---- Matrices (RTN) -----------------------------------------------------------------------------

/* W[m->rows][m->cols] -> m->codes/scales/zeros. m was set up by the caller with
 * wq_qmatrix_init(m, rows, cols, wq_qspec_group_size(spec, cols), spec->dtype, spec->bits).
 * int: scheme wq_kern_int_scheme_rtn(spec); nf4/fp4: §2.2. quantile as in the group kernels.
 * m->g_idx is ignored (RTN groups are contiguous). Only m's shape and pointers are read, so m may
 * describe a block of rows of a larger matrix. */
void wq_kern_quant_matrix(const float *W, const wq_qspec *spec, float quantile, wq_qmatrix *m);
void wq_kern_quant_matrix_ref(const float *W, const wq_qspec *spec, float quantile, wq_qmatrix *m);
/* Int matrix with an explicit scheme (e.g. WQ_SCHEME_SYM_GPTQ); m->dtype must be WQ_QDTYPE_INT. */
void wq_kern_quant_matrix_scheme(const float *W, wq_int_scheme scheme, float quantile,
                                 wq_qmatrix *m);

/* W[rows][cols] = dequantized m; group of column c is m->g_idx[c] when g_idx is set, else
 * c / m->group_size. int: (code - zero) * scale; nf4/fp4: table[code] * scale. */
void wq_kern_dequant_matrix(const wq_qmatrix *m, float *W);

// ---- MSE clip search (numerics 1.4): one ratio per layer ----------------------------------------

#define WQ_KERN_MSE_NRATIOS 40

/* ratio_i = float32(1 - i/200), i = 0..39 (1.000, 0.995, ..., 0.805). */
float wq_kern_mse_ratio(int i);
/* Bytes of scratch the search functions need for rows of `cols` elements under spec. */
size_t wq_kern_mse_workspace_bytes(const wq_qspec *spec, int64_t cols);
/* For each ratio i: sse[i] += sum over rows of (sum_c (W[r][c] - fq_i(W)[r][c])^2), where fq_i is
 * the RTN fake quantization (wq_kern_quant_matrix + dequant) with quantile ratio_i. Each row's sum
 * is a double computed in a fixed order, added exactly (kern_exact), so splitting rows over ranks
 * and merging the accumulators gives bit-identical totals. workspace: wq_kern_mse_workspace_bytes
 * bytes, 16-byte aligned. sse[] must be initialized (zeroed) by the caller. */
void wq_kern_mse_sse(const float *W, int64_t rows, int64_t cols, const wq_qspec *spec,
                     void *workspace, wq_exact sse[WQ_KERN_MSE_NRATIOS]);
/* Index of the first strictly smallest loss_i = sse_i / count (double). */
int wq_kern_mse_pick(const wq_exact sse[WQ_KERN_MSE_NRATIOS], int64_t count);
/* Whole-layer convenience: wq_kern_mse_sse over W[rows][cols] + pick; returns the chosen ratio. */
float wq_kern_mse_search(const float *W, int64_t rows, int64_t cols, const wq_qspec *spec,
                         void *workspace);

// ---- Double quantization of scales (numerics 3.1) -----------------------------------------------

/* scales[n] is the flattened scale[out][ngroups] (row-major), replaced in place by its
 * fake-quantized values; first-level codes are not touched (dequant = (code - zero) * scale_dq).
 *  dq_sym:  wq_kern_qdq_int(scales, n, dq_group_size, dq_bits, SYM)
 *  !dq_sym: mean = float32(sum/n in double); s -= mean; SYM qdq as above; s += mean.
 * Applied whatever cols % group_size is (INC skips it for ragged layers: [BUG?] in §1.3, not kept).
 * dq_group_size <= 0 or > n: one group. */
void wq_kern_double_quant(float *scales, int64_t n, int dq_bits, bool dq_sym,
                          int64_t dq_group_size);

// ---- Utilities ----------------------------------------------------------------------------------

/* Instruction sets of the fast int kernels (codes, min/max, 4-bit packing). All produce the same
 * bits as the `_ref` kernels (tested). The set is chosen once per process, on first use:
 *  - the environment variable WQ_KERNEL_ISA = ref | generic | sse2 | avx2 | avx512, if set (meant
 *    for tests and benchmarks); a set the build or CPU lacks falls back to the best available one
 *    below it (generic if none), an unknown value is ignored;
 *  - otherwise the best the CPU supports: avx512 (F+BW), avx2, sse2 on x86-64; generic elsewhere.
 * REF runs the scalar `_ref` loops; GENERIC the portable branch-free C loops (the non-x86 path).
 * No -march flag is needed: AVX2/AVX-512 code is compiled per function and only run after a
 * runtime CPU check. */
typedef enum {
    WQ_KERN_ISA_REF,
    WQ_KERN_ISA_GENERIC,
    WQ_KERN_ISA_SSE2,
    WQ_KERN_ISA_AVX2,
    WQ_KERN_ISA_AVX512,
    WQ_KERN_ISA_COUNT
} wq_kern_isa;

/* The set in use (selects it on the first call). */
wq_kern_isa wq_kern_isa_active(void);
/* Whether `isa` is compiled in and supported by this CPU. */
bool wq_kern_isa_available(wq_kern_isa isa);
/* "ref", "generic", "sse2", "avx2", "avx512" ("?" for anything else). */
const char *wq_kern_isa_name(wq_kern_isa isa);

/* First index i < n with x[i] NaN or +-Inf, or -1. */
int64_t wq_kern_find_nonfinite(const float *x, int64_t n);
/* dst[i] = bf16 src[i] widened to float32 (exact: a 16-bit shift). */
void wq_kern_bf16_to_f32(const uint16_t *src, float *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* WQ_KERN_QUANT_H */
