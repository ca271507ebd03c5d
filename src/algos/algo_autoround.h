/* algo_autoround.h: AutoRound / SignRound per-linear math (numerics.md §8): the trainable rounding
 * offsets v and min/max scales (alpha, beta) of one weight matrix, the quantize-dequantize of §8.3
 * (int asym and full-range sym), its straight-through gradient, the SignSGD step with linear lr
 * decay, the seeded mini-batch sampler, and the export to a wq_qmatrix. The block loop (forward,
 * backward, reductions over ranks) is cli/cli_autoround.c. Layer: algos.
 *
 * Gradients (STE: round' = 1, the value of round kept; torch autograd of auto-round's qdq): with
 * s the scale, u = w/s + v, r = round(u), for an element whose code is not clamped
 *   dŵ/dv = s,  dŵ/ds = r - w/s;
 * for a clamped element (code qc)
 *   asym: dŵ/ds = (qc - zp) - lo/s, dŵ/dlo = 1 (through zp = round(-lo/s)); sym: dŵ/ds = qc.
 * Then s = (hi - lo)/maxq (asym; lo = wmin*alpha, hi = wmax*beta) or s = sign*max(a, b)/M (sym;
 * a = -wmin*alpha, b = wmax*beta; the larger side gets the gradient, b on ties); the fp16 rounding
 * of s is an identity for the gradient, a scale held at its lower clamp has zero gradient.
 * All group math in float; gradients in double. */
#ifndef WQ_ALGO_AUTOROUND_H
#define WQ_ALGO_AUTOROUND_H

#include <stdint.h>

#include "core/core_qtypes.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int64_t rows, cols, gs, ng; /* ng = ceil(cols / gs) groups per row */
    int bits;
    bool sym;
    bool fp16_scale;            /* scale_dtype fp16: scales rounded to fp16, clamp 1e-5 (else 1e-8) */
    float *wmin, *wmax;         /* [rows*ng] min(min W_g, 0), max(max W_g, 0) of the original W */
    float *v;                   /* [rows*cols] rounding offsets, init 0 */
    float *alpha, *beta;        /* [rows*ng] min/max scales, init 1, clamped to [0, 1] before use */
} wq_ar_layer;

/* Sets up the trainable state of W [rows][cols] for spec (int only, bits 1..8). WQ_ERR_ARG (message
 * names `name`), WQ_ERR_NOMEM. Free with wq_algo_ar_free (safe on a zeroed struct). */
wq_status wq_algo_ar_init(const wq_qspec *spec, const char *name, const float *W, int64_t rows,
                          int64_t cols, wq_ar_layer *L);
void wq_algo_ar_free(wq_ar_layer *L);

/* Clamps alpha, beta to [0, 1] in place (done before every use, as auto-round's clamp_). */
void wq_algo_ar_clamp(wq_ar_layer *L);

/* What [rows][cols] = qdq(W) with the current v, alpha, beta (§8.3). Call wq_algo_ar_clamp first. */
void wq_algo_ar_qdq(const wq_ar_layer *L, const float *W, float *What);

/* dv [rows*cols], dalpha, dbeta [rows*ng] = the chain of dWhat (dL/dŴ) through the qdq (header
 * comment). dalpha/dbeta may be NULL (min-max tuning off). Overwrites its outputs. */
void wq_algo_ar_grad(const wq_ar_layer *L, const float *W, const double *dWhat, double *dv,
                     double *dalpha, double *dbeta);

/* lr_t of iteration t (linear decay: lr * (1 - t/iters); "constant": lr). */
double wq_algo_ar_lr_at(double lr, int64_t t, int64_t iters, bool linear);

/* SignSGD: p -= lr * sign(g) for n parameters (sign(0) = 0). */
void wq_algo_ar_sign_step(float *p, const double *g, int64_t n, double lr);

/* The export of §8.4/8.5: codes, scales and zeros of qdq(W) with the current parameters
 * (asym: code q, zero zp; sym: code q + M, zero M), so dequant (code - zero) * scale == qdq(W)
 * bit for bit. out is initialised here (wq_qmatrix_free). */
wq_status wq_algo_ar_export(const wq_ar_layer *L, const float *W, wq_qmatrix *out);

/* Mini-batch sampler (§8.4): a seeded Fisher-Yates permutation of [0, n) drawn with
 * wq_rng_uniform_below (core_rng.h, the calibration sampler's stream) — for i = n-1 .. 1 swap
 * perm[i] with perm[uniform_below(i+1)] — handed out `per_iter` indices at a time; when fewer than
 * per_iter remain, the rest is dropped and the array is reshuffled with the same stream. */
typedef struct {
    int64_t n, per_iter, pos;
    int64_t *perm;
    uint64_t state;
} wq_ar_sampler;
wq_status wq_algo_ar_sampler_init(wq_ar_sampler *s, int64_t n, int64_t per_iter, uint64_t seed);
/* The next per_iter indices (borrowed pointer into the permutation, valid until the next call). */
const int64_t *wq_algo_ar_sampler_next(wq_ar_sampler *s);
void wq_algo_ar_sampler_free(wq_ar_sampler *s);

#ifdef __cplusplus
}
#endif
#endif
