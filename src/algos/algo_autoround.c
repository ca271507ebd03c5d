/* algo_autoround.c: AutoRound per-linear math (numerics.md §8.2-8.4); see algo_autoround.h. */
#include "algos/algo_autoround.h"

#include <math.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_half.h"
#include "core/core_log.h"
#include "core/core_rng.h"

wq_status wq_algo_ar_init(const wq_qspec *spec, const char *name, const float *W, int64_t rows,
                          int64_t cols, wq_ar_layer *L)
{
    memset(L, 0, sizeof *L);
    if (spec->dtype != WQ_QDTYPE_INT || spec->bits < 1 || spec->bits > 8) {
        WQ_LOG_ERROR("%s: autoround supports int dtypes of 1..8 bits, not %s/%d bits", name,
                     wq_qdtype_name(spec->dtype), spec->bits);
        return WQ_ERR_ARG;
    }
    L->rows = rows, L->cols = cols, L->bits = spec->bits, L->sym = spec->sym;
    L->gs = wq_qspec_group_size(spec, cols);
    L->ng = (cols + L->gs - 1) / L->gs;
    L->fp16_scale = spec->scale_dtype == WQ_SCALE_F16;
    const size_t ng = (size_t)(rows * L->ng);
    L->wmin = wq_malloc(ng * sizeof(float));
    L->wmax = wq_malloc(ng * sizeof(float));
    L->alpha = wq_malloc(ng * sizeof(float));
    L->beta = wq_malloc(ng * sizeof(float));
    L->v = wq_calloc((size_t)(rows * cols), sizeof(float));
    if (!L->wmin || !L->wmax || !L->alpha || !L->beta || !L->v) {
        wq_algo_ar_free(L);
        WQ_LOG_ERROR("%s: out of memory for autoround parameters", name);
        return WQ_ERR_NOMEM;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < L->ng; g++) {
            const float *x = W + r * cols + g * L->gs;
            const int64_t n = (g + 1) * L->gs <= cols ? L->gs : cols - g * L->gs;
            float mn = 0, mx = 0; /* the range always includes 0 (and the zero padding) */
            for (int64_t i = 0; i < n; i++)
                mn = x[i] < mn ? x[i] : mn, mx = x[i] > mx ? x[i] : mx;
            L->wmin[r * L->ng + g] = mn, L->wmax[r * L->ng + g] = mx;
            L->alpha[r * L->ng + g] = 1, L->beta[r * L->ng + g] = 1;
        }
    return WQ_OK;
}

void wq_algo_ar_free(wq_ar_layer *L)
{
    wq_free(L->wmin), wq_free(L->wmax), wq_free(L->alpha), wq_free(L->beta), wq_free(L->v);
    memset(L, 0, sizeof *L);
}

static float clamp01(float x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }

void wq_algo_ar_clamp(wq_ar_layer *L)
{
    for (int64_t i = 0; i < L->rows * L->ng; i++)
        L->alpha[i] = clamp01(L->alpha[i]), L->beta[i] = clamp01(L->beta[i]);
}

/* Group parameters of §8.3. */
typedef struct {
    float s, zp, lo;     /* scale, zero point (asym) / 0, lo (asym) */
    int clamped;         /* scale held at its lower clamp */
    int upper_side;      /* sym: 1 if b (wmax side) is the max */
    float qmin, qmax;
} grp;

static grp group_params(const wq_ar_layer *L, int64_t gi)
{
    grp p = {0};
    const float smin = L->fp16_scale ? 1e-5f : 1e-8f;
    if (!L->sym) {
        const float maxq = (float)((1 << L->bits) - 1);
        const float lo = L->wmin[gi] * L->alpha[gi], hi = L->wmax[gi] * L->beta[gi];
        float s = (hi - lo) / maxq;
        if (L->fp16_scale) s = wq_f16_to_f32(wq_f32_to_f16(s));
        if (s < smin) s = smin, p.clamped = 1;
        p.s = s, p.lo = lo, p.zp = nearbyintf(-lo / s), p.qmin = 0, p.qmax = maxq;
    } else {
        const float M = (float)(1 << (L->bits - 1));
        const float a = -L->wmin[gi] * L->alpha[gi], b = L->wmax[gi] * L->beta[gi];
        const float m = a > b ? a : b;
        const float sign = b < a ? 1.0f : -1.0f;
        float s = sign * m / M;
        if (L->fp16_scale) s = wq_f16_to_f32(wq_f32_to_f16(s));
        if (fabsf(s) < smin) s = sign * smin, p.clamped = 1;
        p.s = s, p.upper_side = !(a > b), p.zp = 0, p.qmin = -M, p.qmax = M - 1;
    }
    return p;
}

/* Code of w under p (clamped), and whether it was clamped. */
static float code_of(const grp *p, float w, float v, int *clamped)
{
    float q = nearbyintf(w / p->s + v) + p->zp;
    *clamped = 0;
    if (q < p->qmin) q = p->qmin, *clamped = 1;
    if (q > p->qmax) q = p->qmax, *clamped = 1;
    return q;
}

void wq_algo_ar_qdq(const wq_ar_layer *L, const float *W, float *What)
{
    for (int64_t r = 0; r < L->rows; r++)
        for (int64_t g = 0; g < L->ng; g++) {
            const grp p = group_params(L, r * L->ng + g);
            const int64_t c1 = (g + 1) * L->gs < L->cols ? (g + 1) * L->gs : L->cols;
            for (int64_t c = g * L->gs; c < c1; c++) {
                int cl;
                const float q = code_of(&p, W[r * L->cols + c], L->v[r * L->cols + c], &cl);
                What[r * L->cols + c] = p.s * (q - p.zp);
            }
        }
}

void wq_algo_ar_grad(const wq_ar_layer *L, const float *W, const double *dWhat, double *dv,
                     double *dalpha, double *dbeta)
{
    for (int64_t r = 0; r < L->rows; r++)
        for (int64_t g = 0; g < L->ng; g++) {
            const int64_t gi = r * L->ng + g;
            const grp p = group_params(L, gi);
            const int64_t c1 = (g + 1) * L->gs < L->cols ? (g + 1) * L->gs : L->cols;
            double ds = 0, dlo = 0;
            for (int64_t c = g * L->gs; c < c1; c++) {
                const int64_t i = r * L->cols + c;
                const double gw = dWhat[i], s = p.s, w = W[i];
                int cl;
                const float q = code_of(&p, W[i], L->v[i], &cl);
                if (!cl) {
                    dv[i] = gw * s;
                    ds += gw * ((double)(q - p.zp) - w / s);
                } else {
                    dv[i] = 0;
                    if (!L->sym) {
                        ds += gw * ((double)(q - p.zp) - (double)p.lo / s);
                        dlo += gw;
                    } else {
                        ds += gw * (double)q;
                    }
                }
            }
            if (!dalpha) continue;
            if (p.clamped) ds = 0;
            if (!L->sym) {
                const double maxq = (double)((1 << L->bits) - 1);
                const double dlo_tot = dlo - ds / maxq, dhi = ds / maxq;
                dalpha[gi] = dlo_tot * L->wmin[gi];
                dbeta[gi] = dhi * L->wmax[gi];
            } else {
                const double M = (double)(1 << (L->bits - 1)), sign = p.upper_side ? -1 : 1;
                const double dm = ds * sign / M;
                dalpha[gi] = p.upper_side ? 0 : dm * -(double)L->wmin[gi];
                dbeta[gi] = p.upper_side ? dm * (double)L->wmax[gi] : 0;
            }
        }
}

double wq_algo_ar_lr_at(double lr, int64_t t, int64_t iters, bool linear)
{
    return linear && iters > 0 ? lr * (1.0 - (double)t / (double)iters) : lr;
}

void wq_algo_ar_sign_step(float *p, const double *g, int64_t n, double lr)
{
    const float l = (float)lr;
    for (int64_t i = 0; i < n; i++)
        p[i] -= g[i] > 0 ? l : (g[i] < 0 ? -l : 0.0f);
}

wq_status wq_algo_ar_export(const wq_ar_layer *L, const float *W, wq_qmatrix *out)
{
    wq_status st = wq_qmatrix_init(out, L->rows, L->cols, L->gs, WQ_QDTYPE_INT, L->bits);
    if (st != WQ_OK) return st;
    for (int64_t r = 0; r < L->rows; r++)
        for (int64_t g = 0; g < L->ng; g++) {
            const grp p = group_params(L, r * L->ng + g);
            const float zero = L->sym ? -p.qmin : p.zp;
            out->scales[r * L->ng + g] = p.s;
            out->zeros[r * L->ng + g] = zero;
            const int64_t c1 = (g + 1) * L->gs < L->cols ? (g + 1) * L->gs : L->cols;
            for (int64_t c = g * L->gs; c < c1; c++) {
                int cl;
                const float q = code_of(&p, W[r * L->cols + c], L->v[r * L->cols + c], &cl);
                out->codes[r * L->cols + c] = (uint8_t)(q + (L->sym ? zero : 0));
            }
        }
    return WQ_OK;
}

wq_status wq_algo_ar_sampler_init(wq_ar_sampler *s, int64_t n, int64_t per_iter, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    if (per_iter < 1 || per_iter > n) {
        WQ_LOG_ERROR("autoround: batch_size * gradient_accumulate_steps = %lld must be in [1, "
                     "n_samples = %lld]",
                     (long long)per_iter, (long long)n);
        return WQ_ERR_ARG;
    }
    s->perm = wq_malloc((size_t)n * sizeof *s->perm);
    if (!s->perm) return WQ_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++)
        s->perm[i] = i;
    s->n = n, s->per_iter = per_iter, s->state = seed, s->pos = n; /* shuffle on first use */
    return WQ_OK;
}

const int64_t *wq_algo_ar_sampler_next(wq_ar_sampler *s)
{
    if (s->n - s->pos < s->per_iter) {
        for (int64_t i = s->n - 1; i > 0; i--) {
            const int64_t j = (int64_t)wq_rng_uniform_below(&s->state, (uint64_t)(i + 1));
            const int64_t t = s->perm[i];
            s->perm[i] = s->perm[j], s->perm[j] = t;
        }
        s->pos = 0;
    }
    const int64_t *r = s->perm + s->pos;
    s->pos += s->per_iter;
    return r;
}

void wq_algo_ar_sampler_free(wq_ar_sampler *s)
{
    wq_free(s->perm);
    memset(s, 0, sizeof *s);
}
