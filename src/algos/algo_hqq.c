/* algo_hqq.c: HQQ (numerics.md §7) on top of kern_hqq: initial parameters, the half-quadratic
 * proximal solver for the zero points, final codes, meta quantization. Layer: algos.
 *
 * Memory: besides the output, 24 bytes per group (~9% of W's float bytes at g64): the sums X of
 * kern_hqq.h (they do not change between iterations), the solver memo of kern_hqq.h (which skips
 * groups that reached their fixed point) and the saved zeros of the schedule below. While the
 * solver runs, out->scales holds HQQ's inverse scales s and out->zeros the current zeros z; every
 * solver step is one pass over the groups that measures the error of the current zeros and updates
 * them in place (so the stop rule's "previous z" error and the one-step-past update come out of the
 * same pass); the inverse scales are turned into scales 1/s at the end.
 *
 * Schedule: W is walked in blocks of rows (~256 KiB, so a block is still in L2 when it is touched
 * again), and each walk does up to two solver steps per block: the first walk also computes the
 * initial parameters of the block, and the walk that runs the last iteration also writes the
 * block's codes. W therefore streams from memory ceil(iters/2) times instead of iters + 2. This
 * only reorders independent work: a group's step k+1 needs nothing but that group's zero after step
 * k, the two steps' error totals are kept apart (each summed over the blocks in order), and when
 * the stop rule fires on the first step of a pair, that step's zeros (saved before the second step)
 * are restored and the codes are recomputed from them, so the result is exactly that of one pass
 * per iteration; the extra step is wasted work. */
#include "algos/algo_hqq.h"

#include <math.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "kernels/kern_hqq.h"
#include "kernels/kern_quant.h"

/* INC's initial "best" error (the reference uses +inf): a layer whose first mean error is already
 * >= 1e4 runs a single iteration. */
#define HQQ_BEST_INIT 1e4
/* |z| bound after the initial parameters: with s <= maxv / (max - min), |w*s| <= |z| + maxv for
 * every w of the group, so |z| <= 1e37 keeps w*s + z and every solver quantity finite. With the 2e4
 * clamp it is reached by |w| ~ 5e32 (no real model comes near). */
#define HQQ_MAX_ABS_ZERO 1e37f
/* Bytes of W per block of the schedule (the block is still in a 512 KiB - 1 MiB L2 for its second
 * touch). Only the speed depends on it: results are identical for any block size except for the
 * order in which the per-block error totals are added (double, ~1e-16). */
#define HQQ_BLOCK_BYTES (256 * 1024)

static wq_status check_args(const wq_qspec *spec, const wq_algo_params *ap, const char *name,
                            const float *W, int64_t rows, int64_t cols, wq_qmatrix *out)
{
    if (!spec || !ap || !W || !out || rows < 1 || cols < 1) {
        WQ_LOG_ERROR("%s: HQQ needs a spec, parameters and a non-empty weight (got %lld x %lld)",
                     name, (long long)rows, (long long)cols);
        return WQ_ERR_ARG;
    }
    if (spec->dtype != WQ_QDTYPE_INT || spec->bits < 1 || spec->bits > 8) {
        WQ_LOG_ERROR("%s: HQQ supports dtype int with bits 1..8 (got dtype %s, bits %d)", name,
                     wq_qdtype_name(spec->dtype), spec->bits);
        return WQ_ERR_ARG;
    }
    if (spec->group_size != -1 && spec->group_size < 1) {
        WQ_LOG_ERROR("%s: HQQ group_size must be -1 or >= 1 (got %lld)", name,
                     (long long)spec->group_size);
        return WQ_ERR_ARG;
    }
    /* The config parser enforces tighter ranges; these are the ones the maths needs. */
    if (!(ap->hqq_lp_norm > 0.0) || !isfinite(ap->hqq_lp_norm) || !(ap->hqq_beta > 0.0) ||
        !isfinite(ap->hqq_beta) || !(ap->hqq_kappa > 0.0) || !isfinite(ap->hqq_kappa) ||
        ap->hqq_iters < 0) {
        WQ_LOG_ERROR("%s: HQQ needs lp_norm > 0, beta > 0, kappa > 0 (finite) and iters >= 0 "
                     "(got %g, %g, %g, %lld)",
                     name, ap->hqq_lp_norm, ap->hqq_beta, ap->hqq_kappa, (long long)ap->hqq_iters);
        return WQ_ERR_ARG;
    }
    return WQ_OK;
}

wq_status wq_algo_hqq_quantize_stats(const wq_qspec *spec, const wq_algo_params *ap,
                                     const char *name, const float *W, int64_t rows, int64_t cols,
                                     wq_qmatrix *out, wq_algo_hqq_stats *stats)
{
    if (!name) name = "(unnamed)";
    WQ_TRY(check_args(spec, ap, name, W, rows, cols, out));
    const int64_t bad = wq_kern_find_nonfinite(W, rows * cols);
    if (bad >= 0) {
        WQ_LOG_ERROR("%s: weight [%lld, %lld] is %s; wquant does not quantize non-finite weights "
                     "(fix or exclude the layer with a local {\"dtype\": \"fp32\"} rule)",
                     name, (long long)(bad / cols), (long long)(bad % cols),
                     W[bad] != W[bad] ? "NaN" : "infinite");
        return WQ_ERR_NUMERIC;
    }
    const int bits = spec->bits;
    const int64_t gs = wq_qspec_group_size(spec, cols), iters = ap->hqq_iters;
    WQ_TRY(wq_qmatrix_init(out, rows, cols, gs, WQ_QDTYPE_INT, bits));
    const int64_t ng = out->ngroups, nmeta = rows * ng;
    float *s = out->scales, *z = out->zeros; /* s: inverse scales until the end */
    /* per group: X (double), the memo (double + float), the saved zero (float): 24 bytes */
    double *xsum = wq_malloc((size_t)nmeta * (2 * sizeof(double) + 2 * sizeof(float)));
    if (!xsum) {
        WQ_LOG_ERROR("%s: out of memory for HQQ's per-group scratch (%lld groups)", name,
                     (long long)nmeta);
        wq_qmatrix_free(out);
        return WQ_ERR_NOMEM;
    }
    wq_kern_hqq_memo memo = {xsum + nmeta, (float *)(xsum + 2 * nmeta)};
    float *zsave = memo.lim + nmeta;
    wq_kern_hqq_memo_reset(&memo, nmeta);

    const double count = (double)rows * (double)cols;
    int64_t brows = (int64_t)(HQQ_BLOCK_BYTES / sizeof(float)) / cols;
    brows = brows < 1 ? 1 : brows;
    /* §7.4: beta grows in double (a Python float in INC); err is the mean |W - W^| over the whole
     * tensor with the zeros before the step, accumulated in double (kern_hqq.h), block totals in
     * block order (the blocks depend only on cols, so the order is fixed). */
    double beta = ap->hqq_beta, best = HQQ_BEST_INIT, err_init = NAN;
    int64_t it = 0;
    int stopped = 0, codes_done = 0;
    for (int walk = 0;; walk++) {
        const int nsteps = iters - it >= 2 ? 2 : (int)(iters - it); /* 0 only if iters == 0 */
        const int last = it + nsteps >= iters; /* this walk runs the last iteration */
        wq_kern_hqq_shrink sh[2];
        wq_kern_hqq_shrink_init(ap->hqq_lp_norm, beta, &sh[0]);
        wq_kern_hqq_shrink_init(ap->hqq_lp_norm, beta * ap->hqq_kappa, &sh[1]);
        double e[2] = {0.0, 0.0};
        for (int64_t r0 = 0; r0 < rows; r0 += brows) {
            const int64_t nr = rows - r0 < brows ? rows - r0 : brows, m0 = r0 * ng;
            const float *Wb = W + r0 * cols;
            if (walk == 0) {
                /* §7.3; round_zero is INC's rule (bits == 4), the reference leaves it to the
                 * caller */
                wq_kern_hqq_params_rows(Wb, nr, cols, gs, bits, bits == 4, s + m0, z + m0,
                                        xsum + m0);
                for (int64_t i = m0; i < m0 + nr * ng; i++)
                    if (!(s[i] > 0.0f) || !(fabsf(z[i]) <= HQQ_MAX_ABS_ZERO)) {
                        WQ_LOG_ERROR("%s: group [%lld, %lld]: weights too large for HQQ (range "
                                     "overflows float or |w| * 2e4 approaches it; |w| must stay "
                                     "below ~5e32)",
                                     name, (long long)(i / ng), (long long)(i % ng));
                        wq_free(xsum);
                        wq_qmatrix_free(out);
                        return WQ_ERR_NUMERIC;
                    }
            }
            for (int h = 0; h < nsteps; h++) {
                if (h == 1) memcpy(zsave + m0, z + m0, (size_t)(nr * ng) * sizeof(float));
                wq_kern_hqq_memo mb = {memo.err + m0, memo.lim + m0};
                e[h] += wq_kern_hqq_step_rows(Wb, nr, cols, gs, bits, s + m0, xsum + m0, z + m0,
                                              &sh[h], &mb);
            }
            if (last)
                wq_kern_hqq_codes_rows(Wb, nr, cols, gs, bits, s + m0, z + m0,
                                       out->codes + r0 * cols);
        }
        codes_done = last;
        for (int h = 0; h < nsteps; h++) {
            const double err = e[h] / count;
            beta *= ap->hqq_kappa;
            it++;
            if (it == 1) err_init = err;
            if (err < best) {
                best = err;
                continue;
            }
            /* Stop. The zeros were already updated by this step and are kept (INC, reference:
             * one step past the best); after the first step of a pair they are in zsave. */
            if (h == 0 && nsteps == 2) {
                memcpy(z, zsave, (size_t)nmeta * sizeof(float));
                codes_done = 0;
            }
            stopped = 1;
            break;
        }
        if (stopped || it >= iters) break;
    }
    wq_free(xsum);
    WQ_LOG_DEBUG("%s: HQQ %lld iteration(s)%s, mean |W - W^| %.6g -> %.6g", name, (long long)it,
                 stopped ? " (stopped: no improvement)" : "", err_init, best);

    if (!codes_done) wq_kern_hqq_codes_rows(W, rows, cols, gs, bits, s, z, out->codes);
    for (int64_t i = 0; i < nmeta; i++)
        s[i] = 1.0f / s[i]; /* stored scale = 1/s (s >= 255/FLT_MAX: finite, > 0) */

    /* §7.5: simulated meta quantization, codes kept. */
    if (ap->quant_zero) wq_kern_hqq_meta_qdq(z, nmeta, nmeta);
    if (ap->quant_scale) wq_kern_hqq_meta_qdq(s, nmeta, ap->scale_quant_group_size);

    if (stats) {
        stats->iters_run = it;
        stats->stopped_early = stopped;
        stats->err_init = err_init;
        stats->err_best = best;
    }
    return WQ_OK;
}

wq_status wq_algo_hqq_quantize(const wq_qspec *spec, const wq_algo_params *ap, const char *name,
                               const float *W, int64_t rows, int64_t cols, wq_qmatrix *out)
{
    return wq_algo_hqq_quantize_stats(spec, ap, name, W, rows, cols, out, NULL);
}
