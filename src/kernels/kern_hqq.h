/* kern_hqq.h: the numerics of HQQ, half-quadratic quantization (numerics.md §7): per-group initial
 * parameters with an inverse scale, one step of the proximal zero-point solver, the final codes,
 * and the 8-bit meta quantization of zeros and scales. Layer: kernels: pure numerics, no
 * allocation, logging, I/O or MPI; preconditions are asserted in debug builds only.
 *
 * Conventions shared by every function here:
 *  - x/W are float32, row-major; a group is n consecutive elements of one row (the reference hqq's
 *    axis=1; algo_hqq.h explains why not INC's axis 0).
 *  - HQQ works with an INVERSE scale s (a multiplier) and a float zero z that may be fractional and
 *    may lie outside [0, 2^bits-1]:   q = clamp(rne(x*s + z), 0, 2^bits-1),   x^ = (q - z) / s.
 *    Per-element arithmetic is float32 in that order (x*s rounded, then + z; q - z rounded, then a
 *    true division by s), as INC evaluates it on CPU; no FMA contraction (the build is -std=c11,
 *    which implies -ffp-contract=off). rne is round-half-to-even (torch.round).
 *  - Group sums use 16 lanes: block b holds elements 16b..16b+15, element 16b+k goes to lane k
 *    (a last partial block fills lanes 0.. only). A sum is reduced by the tree "add lane k+h to
 *    lane k" for h = 8, 4, 2, 1 (what halving one 16-lane vector does). The error sum sum|e|
 *    accumulates |e| in float lanes that are added into double lanes after every 4 blocks and
 *    after the last one (float additions are what make the loop fast; flushing bounds the float
 *    part to 4 terms, ~2e-7 relative, whatever the group size). The x sum X of the zero update is
 *    double lanes throughout, and the code sum Q is an exact integer. The fixed layout makes `_ref`
 *    and every SIMD version bit-identical; double makes the zero update agree with a plain
 *    sequential implementation to ~1e-16 relative before its final float rounding (INC's
 *    float32 torch.mean has no defined order at all).
 *  - Inputs must be finite and |x*s| + |z| must stay finite (algo_hqq guarantees |z| <= 1e37).
 *  - Fast versions dispatch at run time: AVX-512F, else AVX2 when the CPU has them (x86-64,
 *    GCC/Clang function targets, no build flag needed), else SSE2 (the x86-64 baseline), else
 *    `_ref`. All are bit-identical to `_ref`, so results never depend on the machine. */
#ifndef WQ_KERN_HQQ_H
#define WQ_KERN_HQQ_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Lane layout of the group sums (above). */
#define WQ_KERN_HQQ_LANES 16
#define WQ_KERN_HQQ_FLUSH 4

/* Upper clamp of every inverse scale (INC and the reference hqq): a zero-range group gives
 * max_v / 0 = inf -> 2e4. */
#define WQ_KERN_HQQ_MAX_INV_SCALE 2e4f

/* Constants of the generalized soft-thresholding (shrinkage) operator of one solver iteration,
 * numerics §7.4 step 2:  We = sign(e) * max(|e| - |e|^(p-1) / beta, 0).
 * Evaluated in float32 as  d = |e| - inv_beta * powf(|e|, pm1);  We = d > 0 ? copysignf(d, e) : 0
 * with pm1 = float(p - 1) and inv_beta = float(1 / beta) (beta is a double that grows by kappa per
 * iteration). p = 1 needs no special case: powf(|e|, 0) = 1. d is NaN only for e = 0 with
 * beta = inf (0 * inf); the d > 0 test maps it to We = 0 = e, the limit value.
 *
 * thr is a float with the property  |e| <= thr  =>  We = 0 exactly, so a group whose largest |e|
 * is at most thr needs no powf at all (Llama-scale weights, std ~0.02, have |e| < 0.01 while
 * thr ~ 0.17 at beta = 10, p = 0.7: the common case). In exact arithmetic d > 0 <=> |e| > t with
 * t = inv_beta^(1/(1-pm1)) (p < 2); thr = t * (1 - delta), delta = min(0.5, 1e-5 / (1 - pm1)),
 * leaves a margin of about (1 - pm1) * delta = 1e-5 relative between |e| and inv_beta*|e|^pm1,
 * far above the ~3e-7 relative error of the float evaluation (powf <= 1 ulp, one product), so
 * the computed d is <= 0 below thr. p >= 2, beta = inf or a NaN gives thr = -1 (always exact). */
typedef struct {
    float pm1;      /* p - 1 */
    float inv_beta; /* 1 / beta */
    float thr;      /* |e| <= thr gives We = 0 */
} wq_kern_hqq_shrink;

/* Fills *sh for lp-norm p > 0 and the current beta > 0. */
void wq_kern_hqq_shrink_init(double p, double beta, wq_kern_hqq_shrink *sh);
/* We for one residual e (the formula above). */
float wq_kern_hqq_shrink_apply(float e, const wq_kern_hqq_shrink *sh);

/* Initial parameters of one group x[n] (n >= 1), numerics §7.3, float32:
 *   s = min(max_v / (max - min), 2e4),  max_v = 2^bits - 1;  z = -min * s, z = rne(z) if
 * round_zero. A zero-range group gets s = 2e4 (inf clamped, INC; the reference hqq would use s = 1
 * below a 1e-4 range, which with a rounded zero can move a constant group by up to 0.5). A range
 * that overflows float gives s = 0 (the caller rejects such layers). bits 1..8. */
void wq_kern_hqq_params(const float *x, int64_t n, int bits, bool round_zero, float *s, float *z);

/* Double 16-lane sum of x[n] (the X of wq_kern_hqq_step). */
double wq_kern_hqq_sum(const float *x, int64_t n);

/* One proximal step on one group x[n] (n <= 2^26), numerics §7.4 steps 1-3 and 5, with inverse
 * scale s and the current zero *z:
 *   q_i  = clamp(rne(x_i*s + z), 0, max_v),  r_i = (q_i - z) / s,  e_i = x_i - r_i,
 *   We_i = shrink(e_i),
 *   *z  <- float( (Q - s * X) / n ),  Q = sum_i q_i (exact),  X = sum_i float(x_i - We_i) (double
 *   lanes)
 * which is §7.4's group mean of q_i - (x_i - We_i)*s with the per-group constant s taken out of the
 * sum (exact in real arithmetic) and the rest in double: more accurate than INC's float32 mean,
 * and cheap, because X is the same every iteration whenever all We_i are 0. The fast version
 * therefore takes xsum = wq_kern_hqq_sum(x, n) (precomputed once per group) and uses it when its
 * float error lanes show every |e_i| <= sh->thr; otherwise it recomputes the group with `_ref`.
 * Returns sum_i |e_i| (error lanes, then the tree): the error of the INCOMING z; the caller
 * averages it over the whole tensor for the stop rule. */
double wq_kern_hqq_step(const float *x, int64_t n, int bits, float s, double xsum, float *z,
                        const wq_kern_hqq_shrink *sh);
double wq_kern_hqq_step_ref(const float *x, int64_t n, int bits, float s, float *z,
                            const wq_kern_hqq_shrink *sh);

/* codes[i] = clamp(rne(x[i]*s + z), 0, 2^bits - 1), i < n. */
void wq_kern_hqq_codes(const float *x, int64_t n, int bits, float s, float z, uint8_t *codes);
void wq_kern_hqq_codes_ref(const float *x, int64_t n, int bits, float s, float z, uint8_t *codes);

// ---- Matrices: groups of gs along each row of W[rows][cols], the last one smaller when gs does
// ---- not divide cols; per-group arrays are [rows][ngroups], ngroups = ceil(cols/gs).

/* s/z[rows][ngroups] <- wq_kern_hqq_params of every group; xsum[rows][ngroups] (may be NULL) <-
 * wq_kern_hqq_sum of every group. */
void wq_kern_hqq_params_rows(const float *W, int64_t rows, int64_t cols, int64_t gs, int bits,
                             bool round_zero, float *s, float *z, double *xsum);
/* Optional per-group memo of the solver, arrays [rows][ngroups] owned by the caller. Once a group's
 * step leaves its zero unchanged with every |e| <= thr (We = 0), the next step of that group
 * would repeat it exactly (same codes, errors and zero) for as long as the largest float error
 * lane of that step stays <= thr; lim holds that lane (else +inf) and err the group's error, so
 * such steps are skipped and err is reused. With HQQ most groups reach this fixed point within a
 * few iterations (Llama-like weights: ~80% after 6, ~99% after 12), so later iterations cost a
 * fraction of a pass. The results are bit-identical with and without a memo. */
typedef struct {
    double *err; /* error sum of the group's last computed step */
    float *lim;  /* largest float error lane of a repeatable last step, or +inf */
} wq_kern_hqq_memo;

/* lim[k] = +inf, err[k] = 0, k < n: required before the first step and whenever z is changed by
 * anything but the steps. */
void wq_kern_hqq_memo_reset(wq_kern_hqq_memo *memo, int64_t n);

/* One solver iteration over every group (wq_kern_hqq_step), z updated in place; returns the error
 * total: the groups' errors (each the tree of its double error lanes), group k (row-major) added
 * to lane k mod 8 in order, then ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)). memo may be NULL.
 * Every implementation gives the same bits. */
double wq_kern_hqq_step_rows(const float *W, int64_t rows, int64_t cols, int64_t gs, int bits,
                             const float *s, const double *xsum, float *z,
                             const wq_kern_hqq_shrink *sh, wq_kern_hqq_memo *memo);
double wq_kern_hqq_step_rows_ref(const float *W, int64_t rows, int64_t cols, int64_t gs, int bits,
                                 const float *s, float *z, const wq_kern_hqq_shrink *sh,
                                 wq_kern_hqq_memo *memo);
/* Implementations usable on this CPU are isa = 0 .. wq_kern_hqq_isa_count()-1 (0 ref, 1 sse2,
 * 2 avx2, 3 avx512f); wq_kern_hqq_step_rows uses the last. For tests and benchmarks. */
int wq_kern_hqq_isa_count(void);
const char *wq_kern_hqq_isa_name(int isa);
double wq_kern_hqq_step_rows_isa(int isa, const float *W, int64_t rows, int64_t cols, int64_t gs,
                                 int bits, const float *s, const double *xsum, float *z,
                                 const wq_kern_hqq_shrink *sh, wq_kern_hqq_memo *memo);
/* codes[rows][cols] of every group with its s/z. */
void wq_kern_hqq_codes_rows(const float *W, int64_t rows, int64_t cols, int64_t gs, int bits,
                            const float *s, const float *z, uint8_t *codes);

// ---- Meta quantization (numerics §7.5) ----------------------------------------------------------

/* In-place 8-bit HQQ fake quantization of v[n] in contiguous groups of gs (gs <= 0 or gs >= n: one
 * group; a smaller last group otherwise), no optimisation, zero not rounded:
 *   s_m = min(255 / (max - min), 2e4),  z_m = -min * s_m,  c = clamp(rne(v*s_m + z_m), 0, 255),
 *   v <- (c - z_m) * (1/s_m)   (float32; HQQ dequantizes with the stored meta scale 1/s_m).
 * Used with gs = n for the zero points (quant_zero) and gs = scale_quant_group_size for the scales
 * (quant_scale). */
void wq_kern_hqq_meta_qdq(float *v, int64_t n, int64_t gs);

#ifdef __cplusplus
}
#endif
#endif /* WQ_KERN_HQQ_H */
