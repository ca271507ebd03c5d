/* algo_gptq.c: GPTQ layer solver (see algo_gptq.h for the contract and the INC differences).
 * Layer: algos. Paper: Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ" (arXiv:2210.17323); equation
 * numbers below refer to it, "numerics" to /docs/numerics.md section 4.
 *
 * Notation. W is [rows][cols]; columns are processed in a permuted order p = 0..cols-1 (perm[p] =
 * the original column). Hd = P^T H P + damp*I is the damped Hessian in that order and U (upper,
 * float copy in ctx->hinv) is its "inverse Cholesky" factor, U^T U = Hd^-1 (paper Step 3, "Cholesky
 * reformulation"). Quantizing column p of a row w with error e_p = (w_p - q_p) / U[p][p] and
 * updating w_j -= e_p U[p][j] for j > p is OBS (eq. 2-3) restricted to the not yet quantized
 * columns; the errors satisfy (w0 - q) = U^T e, so the objective (w0 - q) Hd (w0 - q)^T (eq. 1)
 * equals sum e_p^2. Lazy batches (paper Step 2, eqs. 4-5): the update of columns beyond the current
 * block is deferred and applied as one GEMM, W[:, i2:] -= E[:, i1:i2] U[i1:i2, i2:]; inside a block
 * the same is done on sub-blocks of WQ_GPTQ_SUB_BLOCK columns, so only sub-block-local updates are
 * level-2 BLAS. */
#include "algos/algo_gptq.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_half.h"
#include "core/core_log.h"
#include "kernels/kern_quant.h"

/* LAPACK (Fortran ABI, column-major). The trailing size_t is the hidden length of the character
 * argument that gfortran-compiled LAPACK expects; OpenBLAS's C implementations ignore it. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t);
extern void strtri_(const char *uplo, const char *diag, const int *n, float *a, const int *lda,
                    int *info, size_t, size_t);

/* ---------------------------------------------------------------------------------------------- */
/* Per-element / per-group quantizer (numerics 4.4, 2.2, 3.2) */
/* ---------------------------------------------------------------------------------------------- */

typedef struct {
    wq_qdtype dtype;
    int bits;
    float maxq;           /* 2^bits - 1 */
    bool sym;             /* GPTQ symmetric scheme */
    wq_int_scheme scheme; /* WQ_SCHEME_SYM_GPTQ or WQ_SCHEME_ASYM */
    bool mse;             /* numerics 4.4 MSE grid search (int only) */
    const float *table;   /* nf4/fp4: value by INC nibble */
    /* double quantization of the scales over output rows (numerics 3.2) */
    bool dq;
    int dq_bits;
    bool dq_sym;
    int64_t dq_gs; /* -1 = all rows of the tile (tile = all rows then) */
    /* fp8_aware */
    bool fp8;
    float R; /* protective range 240 - 240/maxq */
} qz;

/* ---- FP8 E4M3FN rounding (DPQ; not a kern_quant format). Inputs are already clamped to +-R <= 240
 * < 448, so no overflow: normal numbers have 3 mantissa bits (spacing 2^(e-3)), subnormals below
 * 2^-6 have spacing 2^-9. Round half to even, like torch's cast to float8_e4m3fn. */
static inline float fp8_e4m3_round(float x)
{
    float a = fabsf(x);
    if (a == 0.0f || !isfinite(a)) return x;
    int e;
    frexpf(a, &e); /* a = m 2^e, m in [0.5, 1) -> leading bit 2^(e-1) */
    int lead = e - 1;
    if (lead < -6) lead = -6; /* subnormal range shares the 2^-6 binade's spacing */
    float step = ldexpf(1.0f, lead - 3);
    float r = nearbyintf(a / step) * step; /* a/step is exact (power-of-two divisor) */
    return copysignf(r, x);
}

static inline float clampf(float x, float lo, float hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* c ? a : b through an integer mask: GCC keeps float ?: in a loop as control flow (it may trap
 * under -ftrapping-math), which blocks vectorisation; this form becomes compare + and/andnot/or. */
static inline float selectf(int c, float a, float b)
{
    uint32_t ua, ub, m = 0u - (uint32_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, sizeof a);
    return a;
}
static inline float maxf(float a, float b)
{
    return b > a ? b : a;
}

/* GPTQ find_params with the MSE grid (numerics 4.4: grid 100, maxshrink 0.8, norm 2.4; the first
 * strictly better candidate wins). Not in kern_quant (whose MSE search is RTN's per-layer ratio,
 * numerics 1.4); candidates are evaluated with the kern_quant element formulas. */
static void mse_params_int(const qz *q, const float *x, int64_t n, float *scale_out,
                           float *zero_out)
{
    float xmin = 0.0f, xmax = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        xmin = x[i] < xmin ? x[i] : xmin;
        xmax = x[i] > xmax ? x[i] : xmax;
    }
    if (q->sym) {
        xmax = maxf(fabsf(xmin), xmax);
        if (xmin < 0.0f) xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    const float symzero = (q->maxq + 1.0f) * 0.5f;
    double best = INFINITY;
    for (int i = 0; i < 80; i++) {
        float p = (float)(1.0 - (double)i / 100.0);
        float xmin1 = p * xmin, xmax1 = p * xmax;
        float s1 = (xmax1 - xmin1) / q->maxq;
        float z1 = q->sym ? symzero : wq_kern_rne(-xmin1 / s1);
        double err = 0.0;
        for (int64_t k = 0; k < n; k++) {
            float v = wq_kern_value_int(wq_kern_code_int(x[k], q->bits, s1, z1), s1, z1);
            err += (double)powf(fabsf(v - x[k]), 2.4f);
        }
        if (err < best) {
            best = err;
            *scale_out = s1;
            *zero_out = z1;
        }
    }
}

/* find_params for one row slice x[0..n) (numerics 4.4; nf4/fp4: 2.2 with quantile 1, zero 0) */
static void qz_params(const qz *q, const float *x, int64_t n, float *s, float *z)
{
    if (q->dtype == WQ_QDTYPE_INT) {
        /* bits 1 sym follows kern_quant's wquant rule (sign trick), which has no shrink grid */
        if (q->mse && !(q->sym && q->bits == 1))
            mse_params_int(q, x, n, s, z);
        else
            wq_kern_params_int(x, n, q->bits, q->scheme, 1.0f, s, z);
        return;
    }
    wq_kern_params_f4(x, n, q->dtype, 1.0f, s);
    *z = 0.0f;
}

static inline uint8_t qz_code(const qz *q, float x, float s, float z)
{
    return q->dtype == WQ_QDTYPE_INT ? wq_kern_code_int(x, q->bits, s, z)
                                     : wq_kern_code_f4(x, q->dtype, s);
}

static inline float qz_deq(const qz *q, uint8_t c, float s, float z)
{
    return q->dtype == WQ_QDTYPE_INT ? wq_kern_value_int(c, s, z) : q->table[c] * s;
}

/* Double quantization of one group column's scales over the rows of a tile: int path numerics 3.2
 * (plain sym/asym RTN over rows, no mean subtraction); nf4/fp4 path 3.1 (asym = mean-subtract +
 * sym). */
static void qz_double_quant(const qz *q, float *scales, int64_t n)
{
    if (!q->dq || n == 0) return;
    if (q->dtype == WQ_QDTYPE_INT)
        wq_kern_qdq_int(scales, n, q->dq_gs, q->dq_bits,
                        q->dq_sym ? WQ_SCHEME_SYM : WQ_SCHEME_ASYM);
    else
        wq_kern_double_quant(scales, n, q->dq_bits, q->dq_sym, q->dq_gs);
}

/* ---------------------------------------------------------------------------------------------- */
/* Context */
/* ---------------------------------------------------------------------------------------------- */

struct wq_gptq_ctx {
    int64_t cols, gs, ngroups;
    int64_t block; /* lazy-batch width (min(block_size, cols)) */
    wq_qspec spec;
    qz q;
    bool act_order, hybrid, static_groups, inc_parity, fp8;
    bool fresh; /* group parameters from fully updated W (else: W at the last block boundary) */
    bool whole_row_orig; /* inc_parity, group_size -1: parameters from W before dead zeroing */
    int32_t *perm;       /* [cols] position -> original column, NULL if natural */
    int32_t *inv_perm;   /* [cols] original column -> position, NULL if natural */
    uint8_t *dead;       /* [cols] by original column */
    int64_t ndead;
    int32_t *pos_group; /* [cols] scale column used at position p */
    uint8_t *seg_start; /* [cols] 1 where a dynamic parameter segment starts (none if static) */
    int32_t *seg_len;   /* [cols] length of the segment starting at p */
    int64_t max_seg;
    float *hinv; /* [cols][cols] row-major, upper triangle = U (permuted order) */
    double damp; /* in units of the caller's H */
    int hexp;    /* H was scaled by 2^-hexp before factorising */
    int retries;
    char layer[160];
};

static const char *lname(const char *layer)
{
    return layer && *layer ? layer : "<unnamed>";
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

int64_t wq_algo_gptq_row_tile(const wq_qspec *spec, int64_t rows_total)
{
    int64_t t = WQ_GPTQ_ROW_TILE;
    if (spec && spec->double_quant) {
        bool float4 = spec->dtype != WQ_QDTYPE_INT;
        if (spec->dq_group_size <= 0 || (float4 && !spec->dq_sym)) {
            t = rows_total; /* all rows coupled */
        } else {
            int64_t g = spec->dq_group_size;
            t = g * ceil_div(WQ_GPTQ_ROW_TILE, g);
        }
    }
    return t < 1 ? 1 : t;
}

/* Stable descending order of idx[0..n) by key (ties keep ascending index), merge sort. */
static void sort_desc_stable(int32_t *idx, int32_t *tmp, int64_t n, const double *key)
{
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi)
                tmp[k++] = key[idx[b]] > key[idx[a]] ? idx[b++] : idx[a++];
            while (a < mid)
                tmp[k++] = idx[a++];
            while (b < hi)
                tmp[k++] = idx[b++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
}

/* Copies the row-major strict upper triangle of the n x n matrix M onto its strict lower triangle
 * (blocked so both sides stay in cache). */
static void mirror_upper(double *M, int64_t n)
{
    enum { BLK = 64 };
    for (int64_t i0 = 0; i0 < n; i0 += BLK)
        for (int64_t j0 = i0; j0 < n; j0 += BLK) {
            int64_t i1 = i0 + BLK < n ? i0 + BLK : n, j1 = j0 + BLK < n ? j0 + BLK : n;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = (j0 > i + 1 ? j0 : i + 1); j < j1; j++)
                    M[j * n + i] = M[i * n + j];
        }
}

/* M := hs * M for the upper triangle, mirrored onto the lower one (one blocked pass). */
static void scale_mirror_upper(double *M, int64_t n, double hs)
{
    enum { BLK = 64 };
    for (int64_t i0 = 0; i0 < n; i0 += BLK)
        for (int64_t j0 = i0; j0 < n; j0 += BLK) {
            int64_t i1 = i0 + BLK < n ? i0 + BLK : n, j1 = j0 + BLK < n ? j0 + BLK : n;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = (j0 > i ? j0 : i); j < j1; j++) {
                    double v = M[i * n + j] * hs;
                    M[i * n + j] = v;
                    M[j * n + i] = v;
                }
        }
}

/* M := Q^T M Q in place for the symmetric n x n matrix M, with Q the permutation matrix of q
 * (result[i][j] = M[q[i]][q[j]]): rows by cycle following, then columns inside each row.
 * buf: n doubles; seen: n bytes. O(n^2) moves, all row-contiguous. */
static void permute_sym(double *M, int64_t n, const int32_t *q, double *buf, uint8_t *seen)
{
    memset(seen, 0, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        if (seen[i] || q[i] == i) continue;
        memcpy(buf, M + i * n, (size_t)n * sizeof *buf);
        int64_t j = i;
        for (;;) {
            seen[j] = 1;
            int64_t k = q[j];
            if (k == i) {
                memcpy(M + j * n, buf, (size_t)n * sizeof *buf);
                break;
            }
            memcpy(M + j * n, M + k * n, (size_t)n * sizeof *buf);
            j = k;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        double *row = M + i * n;
        for (int64_t j = 0; j < n; j++)
            buf[j] = row[q[j]];
        memcpy(row, buf, (size_t)n * sizeof *buf);
    }
}

void wq_algo_gptq_destroy(wq_gptq_ctx *ctx)
{
    if (!ctx) return;
    wq_free(ctx->perm);
    wq_free(ctx->inv_perm);
    wq_free(ctx->dead);
    wq_free(ctx->pos_group);
    wq_free(ctx->seg_start);
    wq_free(ctx->seg_len);
    wq_free(ctx->hinv);
    wq_free(ctx);
}

static wq_status check_spec(const wq_qspec *spec, const char *layer)
{
    switch (spec->dtype) {
    case WQ_QDTYPE_INT:
        if (spec->bits < 1 || spec->bits > 8) {
            WQ_LOG_ERROR("gptq %s: bits %d outside 1..8", lname(layer), spec->bits);
            return WQ_ERR_ARG;
        }
        break;
    case WQ_QDTYPE_NF4:
    case WQ_QDTYPE_FP4_BNB:
    case WQ_QDTYPE_FP4_E2M1:
        break;
    default:
        WQ_LOG_ERROR("gptq %s: dtype %s cannot be GPTQ-quantized", lname(layer),
                     wq_qdtype_name(spec->dtype));
        return WQ_ERR_UNSUPPORTED;
    }
    if (spec->group_size == 0 || spec->group_size < -1) {
        WQ_LOG_ERROR("gptq %s: group_size %lld (use -1 or >= 1)", lname(layer),
                     (long long)spec->group_size);
        return WQ_ERR_ARG;
    }
    if (spec->group_dim == 0) {
        WQ_LOG_ERROR("gptq %s: group_dim 0 is not supported by GPTQ", lname(layer));
        return WQ_ERR_UNSUPPORTED;
    }
    if (spec->double_quant) {
        if (spec->dq_dtype != WQ_QDTYPE_INT || spec->dq_bits < 1 || spec->dq_bits > 8 ||
            spec->dq_group_size == 0 || spec->dq_group_size < -1) {
            WQ_LOG_ERROR("gptq %s: double quant needs int, 1..8 bits and group size -1 or >= 1",
                         lname(layer));
            return WQ_ERR_ARG;
        }
    }
    return WQ_OK;
}

static void qz_init(qz *q, const wq_qspec *spec, bool fp8)
{
    memset(q, 0, sizeof *q);
    q->dtype = spec->dtype;
    q->bits = spec->dtype == WQ_QDTYPE_INT ? spec->bits : 4;
    q->maxq = (float)((1 << q->bits) - 1);
    q->sym = spec->sym;
    q->scheme = spec->sym ? WQ_SCHEME_SYM_GPTQ : WQ_SCHEME_ASYM;
    q->mse = spec->mse_search && spec->dtype == WQ_QDTYPE_INT; /* INC: mse only in the int path */
    q->table = spec->dtype == WQ_QDTYPE_INT ? NULL : wq_kern_f4_table(spec->dtype);
    q->dq = spec->double_quant;
    q->dq_bits = spec->dq_bits;
    q->dq_sym = spec->dq_sym;
    q->dq_gs = spec->dq_group_size;
    q->fp8 = fp8;
    q->R = (float)(240.0 - 240.0 / (double)q->maxq);
}

/* GAR (hybrid_order, numerics 4.3 step 4) with the ragged tail kept: groups ordered by their
 * largest diagonal entry (descending, stable), columns inside a group by diagonal (descending,
 * stable). */
static void gar_perm(int32_t *perm, int32_t *tmp, const double *d, int64_t n, int64_t gs)
{
    int64_t ng = ceil_div(n, gs);
    double *metric = wq_malloc((size_t)ng * sizeof *metric);
    int32_t *gorder = wq_malloc((size_t)ng * 2 * sizeof *gorder);
    if (!metric || !gorder) { /* caller checks perm[0] == -1 */
        perm[0] = -1;
        wq_free(metric);
        wq_free(gorder);
        return;
    }
    for (int64_t g = 0; g < ng; g++) {
        int64_t lo = g * gs, hi = lo + gs < n ? lo + gs : n;
        double m = -INFINITY;
        for (int64_t c = lo; c < hi; c++)
            m = d[c] > m ? d[c] : m;
        metric[g] = m;
        gorder[g] = (int32_t)g;
    }
    sort_desc_stable(gorder, gorder + ng, ng, metric);
    int64_t p = 0;
    for (int64_t k = 0; k < ng; k++) {
        int64_t g = gorder[k], lo = g * gs, hi = lo + gs < n ? lo + gs : n;
        for (int64_t c = lo; c < hi; c++)
            perm[p + c - lo] = (int32_t)c;
        sort_desc_stable(perm + p, tmp, hi - lo, d);
        p += hi - lo;
    }
    wq_free(metric);
    wq_free(gorder);
}

wq_status wq_algo_gptq_prepare(double *H, int64_t cols, const wq_qspec *spec,
                               const wq_algo_params *ap, const char *layer, wq_gptq_ctx **out)
{
    wq_status st = WQ_OK;
    double *d0 = NULL, *dA = NULL, *rowbuf = NULL;
    int32_t *tmp = NULL;
    uint8_t *seen = NULL;
    wq_gptq_ctx *ctx = NULL;
    if (!out) return WQ_ERR_ARG;
    *out = NULL;
    if (!H || !spec || !ap || cols < 1 || cols > INT32_MAX / 2) {
        WQ_LOG_ERROR("gptq %s: invalid arguments (cols %lld)", lname(layer), (long long)cols);
        return WQ_ERR_ARG;
    }
    WQ_TRY(check_spec(spec, layer));
    if (ap->block_size <= 0) {
        WQ_LOG_ERROR("gptq %s: block_size must be > 0 (got %lld)", lname(layer),
                     (long long)ap->block_size);
        return WQ_ERR_ARG;
    }
    if (!(ap->percdamp >= 0.0) || !isfinite(ap->percdamp)) {
        WQ_LOG_ERROR("gptq %s: percdamp must be a finite value >= 0 (got %g)", lname(layer),
                     ap->percdamp);
        return WQ_ERR_ARG;
    }
    if (ap->act_order && ap->hybrid_order) {
        WQ_LOG_ERROR("gptq %s: act_order and hybrid_order are mutually exclusive", lname(layer));
        return WQ_ERR_ARG;
    }
    const int64_t n = cols;
    /* only the upper triangle is read: it must be finite (a NaN would make the Cholesky "succeed"
     * with garbage); mirroring it makes H exactly symmetric, so the permuted matrix below does not
     * depend on which triangle an entry was taken from */
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = i; j < n; j++) {
            if (!isfinite(H[i * n + j])) {
                WQ_LOG_ERROR("gptq %s: Hessian has a non-finite entry at (%lld, %lld)",
                             lname(layer), (long long)i, (long long)j);
                return WQ_ERR_NUMERIC;
            }
        }
    }

    ctx = wq_calloc(1, sizeof *ctx);
    if (!ctx) return WQ_ERR_NOMEM;
    snprintf(ctx->layer, sizeof ctx->layer, "%s", lname(layer));
    ctx->cols = n;
    ctx->spec = *spec;
    ctx->gs = wq_qspec_group_size(spec, n);
    ctx->ngroups = ceil_div(n, ctx->gs);
    ctx->block = ap->block_size < n ? ap->block_size : n;
    ctx->act_order = ap->act_order;
    ctx->hybrid = ap->hybrid_order;
    ctx->static_groups = ap->static_groups && ctx->ngroups > 1;
    ctx->inc_parity = ap->inc_parity;
    ctx->fresh = ap->fresh_group_params && !ap->inc_parity;
    ctx->fp8 = ap->fp8_aware;
    ctx->whole_row_orig = ap->inc_parity && ctx->ngroups == 1 && spec->group_size == -1;
    qz_init(&ctx->q, spec, ap->fp8_aware);

    d0 = wq_malloc((size_t)n * sizeof *d0);
    dA = wq_malloc((size_t)n * sizeof *dA);
    rowbuf = wq_malloc((size_t)n * sizeof *rowbuf);
    seen = wq_malloc((size_t)n);
    tmp = wq_malloc((size_t)n * sizeof *tmp);
    ctx->dead = wq_calloc((size_t)n, 1);
    ctx->pos_group = wq_malloc((size_t)n * sizeof *ctx->pos_group);
    ctx->seg_start = wq_calloc((size_t)n, 1);
    ctx->seg_len = wq_calloc((size_t)n, sizeof *ctx->seg_len);
    if (!d0 || !dA || !rowbuf || !seen || !tmp || !ctx->dead || !ctx->pos_group ||
        !ctx->seg_start || !ctx->seg_len) {
        st = WQ_ERR_NOMEM;
        goto fail;
    }

    /* dead columns (numerics 4.3 step 2): an input channel that is always 0 has H[d][d] = 0; its
     * weight cannot influence the output, so it is zeroed and its diagonal set to 1 to keep H
     * invertible (the row/column is otherwise zero). A negative diagonal (not a Gram matrix, or
     * rounding in a user-supplied H) is left to the Cholesky/retry path below. */
    double dsum = 0.0;
    for (int64_t c = 0; c < n; c++) {
        double d = H[c * n + c];
        if (d == 0.0) {
            ctx->dead[c] = 1;
            ctx->ndead++;
            d = 1.0;
            H[c * n + c] = 1.0;
        }
        d0[c] = d;
        dsum += d;
    }
    double mean_diag = dsum / (double)n;
    /* Scale H by a power of two (exact) so that its mean diagonal is in [0.5, 1): GPTQ is invariant
     * to a global scale of H (the damping is relative and the updates use ratios U[p][j] /
     * U[p][p]), and the float copy of the inverse factor then neither underflows nor overflows
     * whatever the activation magnitudes. Losses are scaled back (ctx->hexp). */
    frexp(mean_diag, &ctx->hexp);
    const double hs = ldexp(1.0, -ctx->hexp); /* exact power of two */
    scale_mirror_upper(H, n, hs);
    for (int64_t c = 0; c < n; c++)
        d0[c] *= hs;
    mean_diag *= hs;

    /* column order (numerics 4.3 steps 4-5) */
    if (ap->act_order || ap->hybrid_order) {
        ctx->perm = wq_malloc((size_t)n * sizeof *ctx->perm);
        ctx->inv_perm = wq_malloc((size_t)n * sizeof *ctx->inv_perm);
        if (!ctx->perm || !ctx->inv_perm) {
            st = WQ_ERR_NOMEM;
            goto fail;
        }
        if (ap->act_order) {
            for (int64_t c = 0; c < n; c++)
                ctx->perm[c] = (int32_t)c;
            sort_desc_stable(ctx->perm, tmp, n, d0);
        } else {
            gar_perm(ctx->perm, tmp, d0, n, ctx->gs);
            if (ctx->perm[0] < 0) {
                st = WQ_ERR_NOMEM;
                goto fail;
            }
        }
        for (int64_t p = 0; p < n; p++)
            ctx->inv_perm[ctx->perm[p]] = (int32_t)p;
    }

    /* groups: the scale column used at each position, and the dynamic segments (maximal runs of
     * equal group in processing order; parameters are found at a segment's first column) */
    for (int64_t p = 0; p < n; p++) {
        int64_t orig = ctx->perm ? ctx->perm[p] : p;
        bool by_position = ctx->act_order && !ctx->static_groups;
        ctx->pos_group[p] = (int32_t)((by_position ? p : orig) / ctx->gs);
    }
    if (!ctx->static_groups && !ctx->whole_row_orig) {
        int64_t start = 0;
        for (int64_t p = 1; p <= n; p++) {
            if (p == n || ctx->pos_group[p] != ctx->pos_group[start]) {
                ctx->seg_start[start] = 1;
                ctx->seg_len[start] = (int32_t)(p - start);
                if (p - start > ctx->max_seg) ctx->max_seg = p - start;
                start = p;
            }
        }
    }

    /* A = J P^T H P J: the permuted matrix in reversed order (J = exchange matrix), in place. Its
     * row-major strict upper triangle is never written again (LAPACK below works on the
     * column-major upper = row-major lower triangle), so a failed factorisation can be rebuilt from
     * it. */
    for (int64_t i = 0; i < n; i++)
        tmp[i] = ctx->perm ? ctx->perm[n - 1 - i] : (int32_t)(n - 1 - i);
    if (ctx->perm) {
        permute_sym(H, n, tmp, rowbuf, seen);
    } else { /* J H J of a row-major matrix is the buffer reversed */
        for (int64_t k = 0, l = n * n - 1; k < l; k++, l--) {
            double v = H[k];
            H[k] = H[l];
            H[l] = v;
        }
    }
    for (int64_t i = 0; i < n; i++)
        dA[i] = d0[tmp[i]];

    /* damping + inverse Cholesky factor (numerics 4.3 steps 6-7), retried with 10x more damping
     * when the damped matrix is still not numerically positive definite */
    ctx->hinv = wq_malloc((size_t)(n * n) * sizeof *ctx->hinv);
    if (!ctx->hinv) {
        st = WQ_ERR_NOMEM;
        goto fail;
    }
    {
        const int ni = (int)n;
        int info = 0;
        double rel = ap->percdamp;
        for (int attempt = 0; attempt <= WQ_GPTQ_MAX_RETRIES; attempt++) {
            if (attempt > 0) {
                /* x10 per retry; with percdamp 0 start from 1e-2 */
                double next = ap->percdamp > 0.0 ? rel * 10.0 : pow(10.0, attempt - 3);
                WQ_LOG_WARN("gptq %s: damped Hessian not positive definite with damping %g x mean "
                            "diagonal; retrying with %g (retry %d of %d)",
                            ctx->layer, rel, next, attempt, WQ_GPTQ_MAX_RETRIES);
                rel = next;
            }
            const double damp = rel * mean_diag;
            ctx->damp = ldexp(damp, ctx->hexp);
            ctx->retries = attempt;
            if (attempt > 0) mirror_upper(H, n);
            for (int64_t i = 0; i < n; i++)
                H[i * n + i] = dA[i] + damp;
            /* A = Uc^T Uc (column-major upper), in double: the positive-definiteness decision and
             * the factor are the numerically delicate part */
            dpotrf_("U", &ni, H, &ni, &info, 1);
            if (info == 0) {
                /* Hd = J A J = L1 L1^T with L1 = J Uc^T J (upper). Row-major, L1[i][j] =
                 * Uc(n-1-j, n-1-i) = M[n*n-1 - (i*n+j)]: the buffer read backwards. The inverse
                 * U = L1^-1 is formed in float (strtri on the column-major lower = row-major
                 * upper triangle): U is consumed in float anyway, and the inversion error of a
                 * triangular factor, ~cond(L1) * 2^-24 (measured 2e-7 .. 1e-6 relative Frobenius
                 * on LLM-like Hessians), is far below INC's float32 cholesky_inverse path; it
                 * halves the double-precision work of the preparation. */
                for (int64_t i = 0; i < n; i++) {
                    float *row = ctx->hinv + i * n;
                    const double *src = H + (n * n - 1 - i * n);
                    for (int64_t j = 0; j < i; j++)
                        row[j] = 0.0f;
                    for (int64_t j = i; j < n; j++)
                        row[j] = (float)src[-j];
                }
                strtri_("L", "N", &ni, ctx->hinv, &ni, &info, 1, 1);
            }
            if (info == 0) break;
        }
        if (info != 0) {
            WQ_LOG_ERROR("gptq %s: Hessian is not positive definite even with damping %g x mean "
                         "diagonal (%d retries); check the calibration data of this layer",
                         ctx->layer, rel, WQ_GPTQ_MAX_RETRIES);
            st = WQ_ERR_NUMERIC;
            goto fail;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const float *row = ctx->hinv + i * n;
        if (!(row[i] > 0.0f) || !isfinite(row[i])) {
            WQ_LOG_ERROR(
                "gptq %s: inverse Hessian factor has a non-positive or non-finite diagonal "
                "in float (entry %lld); the Hessian is too ill-conditioned",
                ctx->layer, (long long)i);
            st = WQ_ERR_NUMERIC;
            goto fail;
        }
    }
    wq_free(d0);
    wq_free(dA);
    wq_free(rowbuf);
    wq_free(seen);
    wq_free(tmp);
    *out = ctx;
    return WQ_OK;
fail:
    wq_free(d0);
    wq_free(dA);
    wq_free(rowbuf);
    wq_free(seen);
    wq_free(tmp);
    wq_algo_gptq_destroy(ctx);
    return st;
}

int64_t wq_algo_gptq_cols(const wq_gptq_ctx *ctx)
{
    return ctx->cols;
}
int64_t wq_algo_gptq_group_size(const wq_gptq_ctx *ctx)
{
    return ctx->gs;
}
int64_t wq_algo_gptq_ngroups(const wq_gptq_ctx *ctx)
{
    return ctx->ngroups;
}
double wq_algo_gptq_damp(const wq_gptq_ctx *ctx)
{
    return ctx->damp;
}
int wq_algo_gptq_retries(const wq_gptq_ctx *ctx)
{
    return ctx->retries;
}
int64_t wq_algo_gptq_dead_cols(const wq_gptq_ctx *ctx)
{
    return ctx->ndead;
}
const int32_t *wq_algo_gptq_perm(const wq_gptq_ctx *ctx)
{
    return ctx->perm;
}

wq_status wq_algo_gptq_qmatrix_init(const wq_gptq_ctx *ctx, int64_t rows, wq_qmatrix *m)
{
    WQ_TRY(wq_qmatrix_init(m, rows, ctx->cols, ctx->gs, ctx->spec.dtype, ctx->q.bits));
    if (ctx->act_order && !ctx->static_groups) {
        wq_status st = wq_qmatrix_alloc_gidx(m);
        if (st != WQ_OK) {
            wq_qmatrix_free(m);
            return st;
        }
        for (int64_t c = 0; c < ctx->cols; c++)
            m->g_idx[c] = ctx->pos_group[ctx->inv_perm[c]];
    }
    return WQ_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* fp8_aware (DPQ) helpers */
/* ---------------------------------------------------------------------------------------------- */

float wq_algo_gptq_absmax_rows(const wq_gptq_ctx *ctx, const float *W, int64_t nr)
{
    float m = 0.0f;
    for (int64_t r = 0; r < nr; r++)
        for (int64_t c = 0; c < ctx->cols; c++)
            if (!ctx->dead[c]) m = maxf(m, fabsf(W[r * ctx->cols + c]));
    return m;
}

static float fp8_scale_for(float R, float absmax)
{
    /* s = max(absmax / R, 1 / (R * 512)); s8 = 2^ceil(log2 s) computed exactly with frexp (INC uses
     * float32 log2, which can round a value just above a power of two down onto it); stored as bf16
     * (exact for powers of two in the normal range) */
    float s = absmax / R;
    float smin = (float)(1.0 / ((double)R * 512.0));
    if (!(s >= smin)) s = smin;
    int e;
    float m = frexpf(s, &e); /* s = m 2^e, m in [0.5, 1) */
    float p2 = m == 0.5f ? s : ldexpf(1.0f, e);
    return wq_bf16_to_f32(wq_f32_to_bf16(p2));
}

float wq_algo_gptq_fp8_scale(const wq_gptq_ctx *ctx, float absmax)
{
    return fp8_scale_for(ctx->q.R, absmax);
}

static inline float fp8_domain(const qz *q, float x, float s8)
{
    return fp8_e4m3_round(clampf(x / s8, -q->R, q->R));
}

/* ---------------------------------------------------------------------------------------------- */
/* Row solve */
/* ---------------------------------------------------------------------------------------------- */

/* Columns per block of the tile transposes (load / scatter). */
#define TRANSPOSE_BLOCK 64

/* Quantize one int column of a tile (numerics 4.4 quantize) and its scaled OBS error, branch-free
 * so it vectorises: code = wq_kern_code_int(w, bits, s, z) = clamp(rne(w/s) + z, 0, maxq) (NaN ->
 * 0), q = (code - z) s, e = (w - q) / d. q equals the dequantization (code - zero) * scale of the
 * stored matrix exactly, because k below is an integer-valued float equal to (float)code. */
static void quant_col_int(float maxq, float d, int64_t t, const float *restrict w,
                          const float *restrict s, const float *restrict z, float *restrict e,
                          float *restrict qo, uint8_t *restrict co)
{
    for (int64_t r = 0; r < t; r++) {
        const float y = w[r] / s[r];
        /* wq_kern_rne and wq_kern_code_int's clamp (NaN -> 0), written with masks */
        float k = selectf(y < 0x1p22f && y > -0x1p22f, (y + 0x1.8p23f) - 0x1.8p23f, y) + z[r];
        k = selectf(k > 0.0f, k, 0.0f);
        k = selectf(k < maxq, k, maxq);
        const float qv = (k - z[r]) * s[r]; /* == wq_kern_value_int((uint8_t)k, s, z) */
        co[r] = (uint8_t)(int32_t)k;
        qo[r] = qv;
        e[r] = (w[r] - qv) / d;
    }
}

typedef struct {
    float *Wt;      /* [cols][t]: the tile transposed, in processing order (column p contiguous) */
    float *W0t;     /* [cols][t]: initial FP8-domain weights (inc_parity + fp8 only) */
    float *E;       /* [block][t]: scaled errors of the current lazy batch */
    float *G;       /* [max(max_seg, gs)][t]: a parameter segment's current values */
    float *x;       /* [max(max_seg, gs)]: one row of a segment */
    float *Qt;      /* [cols][t]: dequantized weights in processing order */
    uint8_t *Ct;    /* [cols][t]: codes in processing order */
    float *sc, *zp; /* [t]: parameters of the current dynamic segment */
    float *ssc, *szp; /* [t]: static parameters of the current column */
    double *loss;     /* [t] */
} gptq_ws;

/* G[0..len) rows (columns j = c0 + k of the tile) += alpha * U[k0:k1, j]^T E[k0-i1 : k1-i1] */
static void seg_correct(const wq_gptq_ctx *ctx, const gptq_ws *ws, int64_t t, int64_t i1,
                        int64_t c0, int64_t j0, int64_t j1, int64_t k0, int64_t k1, float alpha)
{
    if (j1 <= j0 || k1 <= k0) return;
    const int64_t n = ctx->cols;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(j1 - j0), (int)t, (int)(k1 - k0),
                alpha, ctx->hinv + k0 * n + j0, (int)n, ws->E + (k0 - i1) * t, (int)t, 1.0f,
                ws->G + (j0 - c0) * t, (int)t);
}

/* Store one group column of parameters for the tile rows (after double quantization). */
static void store_params(const wq_gptq_ctx *ctx, const gptq_ws *ws, int64_t t, int64_t grp,
                         wq_qmatrix *out)
{
    qz_double_quant(&ctx->q, ws->sc, t);
    const int64_t ng = ctx->ngroups;
    for (int64_t r = 0; r < t; r++) {
        out->scales[r * ng + grp] = ws->sc[r];
        if (out->zeros) out->zeros[r * ng + grp] = ws->zp[r];
    }
}

static wq_status solve_tile(const wq_gptq_ctx *ctx, const gptq_ws *ws, const float *W, int64_t t,
                            int64_t row0, float s8, wq_qmatrix *out, int64_t out_row, float *Q)
{
    const int64_t n = ctx->cols, B = ctx->block, ng = ctx->ngroups, gs = ctx->gs;
    const qz *q = &ctx->q;
    const bool fp8 = ctx->fp8;
    const float *U = ctx->hinv;
    uint8_t *codes = out->codes + out_row * n;
    wq_qmatrix view = *out; /* rows of this tile */
    view.scales = out->scales + out_row * ng;
    view.zeros = out->zeros ? out->zeros + out_row * ng : NULL;

    /* load (permuted, dead columns zeroed: numerics 4.3 step 2), transposing in column blocks so
     * the strided writes to Wt stay in cache */
    for (int64_t r = 0; r < t; r++) {
        const float *w = W + r * n;
        for (int64_t c = 0; c < n; c++) {
            if (!isfinite(w[c])) {
                WQ_LOG_ERROR("gptq %s: weight row %lld column %lld is not finite", ctx->layer,
                             (long long)(row0 + r), (long long)c);
                return WQ_ERR_NUMERIC;
            }
        }
        ws->loss[r] = 0.0;
    }
    for (int64_t p0 = 0; p0 < n; p0 += TRANSPOSE_BLOCK) {
        const int64_t p1 = p0 + TRANSPOSE_BLOCK < n ? p0 + TRANSPOSE_BLOCK : n;
        for (int64_t r = 0; r < t; r++) {
            const float *w = W + r * n;
            for (int64_t p = p0; p < p1; p++) {
                const int64_t c = ctx->perm ? ctx->perm[p] : p;
                ws->Wt[p * t + r] = ctx->dead[c] ? 0.0f : w[c];
            }
        }
    }

    /* static parameters: per ORIGINAL group from the initial weights (numerics 4.3 steps 1 and
     * 3) */
    if (ctx->static_groups || ctx->whole_row_orig) {
        for (int64_t g = 0; g < ng; g++) {
            int64_t lo = g * gs, len = lo + gs <= n ? gs : n - lo;
            for (int64_t r = 0; r < t; r++) {
                for (int64_t k = 0; k < len; k++) {
                    int64_t c = lo + k;
                    float v = (ctx->dead[c] && !ctx->whole_row_orig) ? 0.0f : W[r * n + c];
                    ws->x[k] = fp8 ? fp8_domain(q, v, s8) : v;
                }
                qz_params(q, ws->x, len, &ws->sc[r], &ws->zp[r]);
            }
            store_params(ctx, ws, t, g, &view);
        }
    }
    if (ws->W0t)
        for (int64_t k = 0; k < n * t; k++)
            ws->W0t[k] = fp8_domain(q, ws->Wt[k], s8);

    const int64_t SB = WQ_GPTQ_SUB_BLOCK < B ? WQ_GPTQ_SUB_BLOCK : B;
    for (int64_t i1 = 0; i1 < n; i1 += B) {
        const int64_t i2 = i1 + B < n ? i1 + B : n;
        for (int64_t s1 = i1; s1 < i2; s1 += SB) {
            const int64_t s2 = s1 + SB < i2 ? s1 + SB : i2;
            for (int64_t c = s1; c < s2; c++) {
                const int64_t grp = ctx->pos_group[c];
                if (ctx->seg_start[c]) {
                    /* group parameters at the first column of a group (numerics 4.3 step 8) */
                    const int64_t len = ctx->seg_len[c], e = c + len;
                    if (ws->W0t) { /* inc_parity + fp8: INC reads the initial W_8 */
                        memcpy(ws->G, ws->W0t + c * t, (size_t)(len * t) * sizeof(float));
                    } else {
                        memcpy(ws->G, ws->Wt + c * t, (size_t)(len * t) * sizeof(float));
                        /* Wt holds, for column j, the updates of columns k < a(j):
                         *   j in [c, s2): a = c;  j in [s2, i2): a = s1;  j >= i2: a = i1.
                         * Target: all k < c (fresh, default) or k < i1 (INC: W as of the last
                         * block boundary). Add or remove the difference E U. */
                        const int64_t b = ctx->fresh ? c : i1;
                        const int64_t ja0 = c, ja1 = e < s2 ? e : s2;
                        const int64_t jb0 = s2 > c ? s2 : c, jb1 = e < i2 ? e : i2;
                        const int64_t jc0 = i2 > c ? i2 : c, jc1 = e;
                        const int64_t lo[3] = {ja0, jb0, jc0}, hi[3] = {ja1, jb1, jc1};
                        const int64_t a[3] = {c, s1, i1};
                        for (int k = 0; k < 3; k++) {
                            if (a[k] > b)
                                seg_correct(ctx, ws, t, i1, c, lo[k], hi[k], b, a[k], 1.0f);
                            else if (a[k] < b)
                                seg_correct(ctx, ws, t, i1, c, lo[k], hi[k], a[k], b, -1.0f);
                        }
                        if (fp8)
                            for (int64_t k = 0; k < len * t; k++)
                                ws->G[k] = fp8_domain(q, ws->G[k], s8);
                    }
                    for (int64_t r = 0; r < t; r++) {
                        for (int64_t k = 0; k < len; k++)
                            ws->x[k] = ws->G[k * t + r];
                        qz_params(q, ws->x, len, &ws->sc[r], &ws->zp[r]);
                    }
                    store_params(ctx, ws, t, grp, &view);
                }

                /* quantize column c and compute the OBS error (paper eq. 3 with the Cholesky
                 * factor: delta = -(w_c - q_c) / U[c][c] * U[c, :]) */
                const float d = U[c * n + c];
                const float *wc = ws->Wt + c * t;
                float *ec = ws->E + (c - i1) * t;
                float *qc = ws->Qt + c * t;
                uint8_t *cc = ws->Ct + c * t;
                const float *sr = ws->sc, *zr = ws->zp; /* current dynamic segment */
                if (ctx->static_groups || ctx->whole_row_orig) {
                    /* static: this column's group varies with the column (act_order) */
                    for (int64_t r = 0; r < t; r++) {
                        ws->ssc[r] = view.scales[r * ng + grp];
                        ws->szp[r] = view.zeros ? view.zeros[r * ng + grp] : 0.0f;
                    }
                    sr = ws->ssc;
                    zr = ws->szp;
                }
                if (q->dtype == WQ_QDTYPE_INT && !fp8) {
                    quant_col_int(q->maxq, d, t, wc, sr, zr, ec, qc, cc);
                } else {
                    for (int64_t r = 0; r < t; r++) {
                        const float sv = sr[r], z = view.zeros ? zr[r] : 0.0f;
                        const float w = wc[r];
                        uint8_t code = qz_code(q, fp8 ? w / s8 : w, sv, z);
                        float qv = qz_deq(q, code, sv, z);
                        if (fp8) qv = s8 * fp8_e4m3_round(clampf(qv, -q->R, q->R));
                        ec[r] = (w - qv) / d;
                        qc[r] = qv;
                        cc[r] = code;
                    }
                }
                /* immediate update of the rest of the sub-block (level 2) */
                const float *urow = U + c * n;
                for (int64_t j = c + 1; j < s2; j++) {
                    const float u = urow[j];
                    float *wj = ws->Wt + j * t;
                    for (int64_t r = 0; r < t; r++)
                        wj[r] -= ec[r] * u;
                }
            }
            /* rest of the lazy batch: W[:, s2:i2] -= E[:, s1:s2] U[s1:s2, s2:i2] */
            if (s2 < i2)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(i2 - s2), (int)t,
                            (int)(s2 - s1), -1.0f, U + s1 * n + s2, (int)n, ws->E + (s1 - i1) * t,
                            (int)t, 1.0f, ws->Wt + s2 * t, (int)t);
        }
        /* objective: sum of e^2 over the batch (equals (w0 - q) Hd (w0 - q)^T, see top) */
        for (int64_t k = 0; k < i2 - i1; k++) {
            const float *ek = ws->E + k * t;
            for (int64_t r = 0; r < t; r++)
                ws->loss[r] += (double)ek[r] * (double)ek[r];
        }
        /* lazy-batch update of all later columns (paper Step 2): W[:, i2:] -= E U[i1:i2, i2:] */
        if (i2 < n)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(n - i2), (int)t,
                        (int)(i2 - i1), -1.0f, U + i1 * n + i2, (int)n, ws->E, (int)t, 1.0f,
                        ws->Wt + i2 * t, (int)t);
    }
    /* back to original column order, row-major (blocked like the load) */
    for (int64_t p0 = 0; p0 < n; p0 += TRANSPOSE_BLOCK) {
        const int64_t p1 = p0 + TRANSPOSE_BLOCK < n ? p0 + TRANSPOSE_BLOCK : n;
        for (int64_t r = 0; r < t; r++) {
            uint8_t *crow = codes + r * n;
            float *qrow = Q ? Q + r * n : NULL;
            for (int64_t p = p0; p < p1; p++) {
                const int64_t c = ctx->perm ? ctx->perm[p] : p;
                crow[c] = ws->Ct[p * t + r];
                if (qrow) qrow[c] = ws->Qt[p * t + r];
            }
        }
    }
    for (int64_t r = 0; r < t; r++) {
        if (!isfinite(ws->loss[r])) {
            WQ_LOG_ERROR("gptq %s: row %lld diverged (non-finite error); the Hessian is too "
                         "ill-conditioned for float32 updates",
                         ctx->layer, (long long)(row0 + r));
            return WQ_ERR_NUMERIC;
        }
    }
    return WQ_OK;
}

wq_status wq_algo_gptq_solve_rows(const wq_gptq_ctx *ctx, const float *W, int64_t r0, int64_t nr,
                                  int64_t rows_total, float s8, wq_qmatrix *out, float *Q,
                                  double *row_loss)
{
    if (!ctx || !out || (nr > 0 && !W) || r0 < 0 || nr < 0 || r0 + nr > rows_total) {
        WQ_LOG_ERROR("gptq %s: invalid row span [%lld, %lld) of %lld", ctx ? ctx->layer : "?",
                     (long long)r0, (long long)(r0 + nr), (long long)rows_total);
        return WQ_ERR_ARG;
    }
    const int64_t T = wq_algo_gptq_row_tile(&ctx->spec, rows_total);
    if (nr > 0 && (r0 % T != 0 || (nr % T != 0 && r0 + nr != rows_total))) {
        WQ_LOG_ERROR("gptq %s: row span [%lld, %lld) is not aligned to the row tile %lld",
                     ctx->layer, (long long)r0, (long long)(r0 + nr), (long long)T);
        return WQ_ERR_ARG;
    }
    if (out->rows != nr || out->cols != ctx->cols || out->group_size != ctx->gs ||
        out->ngroups != ctx->ngroups || out->dtype != ctx->spec.dtype ||
        (ctx->spec.dtype == WQ_QDTYPE_INT && !out->zeros) || !out->codes || !out->scales) {
        WQ_LOG_ERROR("gptq %s: output qmatrix does not match the layer (use "
                     "wq_algo_gptq_qmatrix_init)",
                     ctx->layer);
        return WQ_ERR_ARG;
    }
    if (ctx->fp8 && !(s8 > 0.0f && isfinite(s8))) {
        WQ_LOG_ERROR("gptq %s: fp8_aware needs the per-tensor scale s8 > 0 (got %g)", ctx->layer,
                     (double)s8);
        return WQ_ERR_ARG;
    }
    if (out->g_idx)
        for (int64_t c = 0; c < ctx->cols; c++)
            out->g_idx[c] = ctx->pos_group[ctx->inv_perm ? ctx->inv_perm[c] : c];
    if (nr == 0) return WQ_OK;

    const int64_t n = ctx->cols, t_max = T < nr ? T : nr;
    const int64_t seg = ctx->max_seg > ctx->gs ? ctx->max_seg : ctx->gs;
    gptq_ws ws = {0};
    wq_status st = WQ_OK;
    ws.Wt = wq_malloc((size_t)(n * t_max) * sizeof(float));
    ws.E = wq_malloc((size_t)(ctx->block * t_max) * sizeof(float));
    ws.G = wq_malloc((size_t)(seg * t_max) * sizeof(float));
    ws.x = wq_malloc((size_t)seg * sizeof(float));
    ws.sc = wq_malloc((size_t)t_max * sizeof(float));
    ws.zp = wq_malloc((size_t)t_max * sizeof(float));
    ws.ssc = wq_malloc((size_t)t_max * sizeof(float));
    ws.szp = wq_malloc((size_t)t_max * sizeof(float));
    ws.loss = wq_malloc((size_t)t_max * sizeof(double));
    ws.Qt = wq_malloc((size_t)(n * t_max) * sizeof(float));
    ws.Ct = wq_malloc((size_t)(n * t_max));
    if (ctx->fp8 && ctx->inc_parity && !ctx->static_groups)
        ws.W0t = wq_malloc((size_t)(n * t_max) * sizeof(float));
    if (!ws.Wt || !ws.E || !ws.G || !ws.x || !ws.sc || !ws.zp || !ws.loss || !ws.Qt || !ws.Ct ||
        !ws.ssc || !ws.szp || (ctx->fp8 && ctx->inc_parity && !ctx->static_groups && !ws.W0t)) {
        st = WQ_ERR_NOMEM;
        goto done;
    }
    for (int64_t r = 0; r < nr; r += T) {
        const int64_t t = r + T <= nr ? T : nr - r;
        st = solve_tile(ctx, &ws, W + r * n, t, r0 + r, s8, out, r, Q ? Q + r * n : NULL);
        if (st != WQ_OK) goto done;
        if (row_loss)
            for (int64_t k = 0; k < t; k++)
                row_loss[r + k] = ldexp(ws.loss[k], ctx->hexp);
    }
done:
    wq_free(ws.Wt);
    wq_free(ws.W0t);
    wq_free(ws.E);
    wq_free(ws.G);
    wq_free(ws.x);
    wq_free(ws.sc);
    wq_free(ws.zp);
    wq_free(ws.ssc);
    wq_free(ws.szp);
    wq_free(ws.loss);
    wq_free(ws.Qt);
    wq_free(ws.Ct);
    return st;
}

wq_status wq_algo_gptq_quantize(const float *W, int64_t rows, int64_t cols, double *H,
                                const wq_qspec *spec, const wq_algo_params *ap, const char *layer,
                                wq_qmatrix *out, float *Q, float *s8_out, double *loss)
{
    wq_gptq_ctx *ctx = NULL;
    double *rl = NULL;
    wq_status st;
    float s8 = 0.0f;
    memset(out, 0, sizeof *out);
    if (!W || rows < 0) return WQ_ERR_ARG;
    WQ_TRY(wq_algo_gptq_prepare(H, cols, spec, ap, layer, &ctx));
    WQ_TRY_GOTO(wq_algo_gptq_qmatrix_init(ctx, rows, out), st, done);
    if (ap->fp8_aware) s8 = wq_algo_gptq_fp8_scale(ctx, wq_algo_gptq_absmax_rows(ctx, W, rows));
    rl = wq_malloc((size_t)(rows > 0 ? rows : 1) * sizeof *rl);
    if (!rl) {
        st = WQ_ERR_NOMEM;
        goto done;
    }
    WQ_TRY_GOTO(wq_algo_gptq_solve_rows(ctx, W, 0, rows, rows, s8, out, Q, rl), st, done);
    if (loss) {
        double s = 0.0;
        for (int64_t r = 0; r < rows; r++)
            s += rl[r];
        *loss = s;
    }
    if (s8_out) *s8_out = s8;
done:
    if (st != WQ_OK) wq_qmatrix_free(out);
    wq_free(rl);
    wq_algo_gptq_destroy(ctx);
    return st;
}

void wq_algo_gptq_dequant(const wq_qmatrix *m, float s8, float *W)
{
    wq_kern_dequant_matrix(m, W);
    if (!(s8 > 0.0f)) return;
    /* DPQ: the int/f4 value lives in the FP8 domain; W = s8 * fp8(clamp(v, -R, R)) */
    const float R =
        (float)(240.0 - 240.0 / (double)((1 << (m->dtype == WQ_QDTYPE_INT ? m->bits : 4)) - 1));
    for (int64_t k = 0; k < m->rows * m->cols; k++)
        W[k] = s8 * fp8_e4m3_round(clampf(W[k], -R, R));
}
