/* test_algo_gptq.c: the GPTQ Hessian kernel and layer solver against independent references written
 * here (direct X^T X in double; column-by-column GPTQ with the explicit inverse-Hessian update in
 * double, no blocking, no Cholesky). Serial, unit. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algos/algo_gptq.h"
#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_log.h"
#include "kernels/kern_hessian.h"
#include "wq_testutil.h"

/* Q of the solver vs the double-precision reference: float rounding of the error feedback only. */
#define WQ_TOL_GPTQ_Q_REL 2e-5
#define WQ_TOL_HESS_F64_REL 1e-13
/* Rows allowed to diverge from the double reference after a rounding near-tie (the reference sees
 * double values, the solver float ones). 0 happen with OpenBLAS's AVX-512 kernels here; other
 * kernels (OPENBLAS_CORETYPE=Haswell) flip one tie in a few cases. */
#define WQ_MAX_TIE_ROWS 1
#define WQ_TOL_HESS_F32_REL 1e-5

/* ---------------------------------------------------------------------------------------------- */
/* data */
/* ---------------------------------------------------------------------------------------------- */

/* Correlated activations: X = Z A + 0.1 N, with a few channels scaled up (outliers) so that the
 * diagonal of H is spread (act_order then matters). */
static float *make_x(int64_t tokens, int64_t in, uint64_t seed)
{
    int64_t k = in / 2 + 1;
    float *Z = malloc(sizeof(float) * tokens * k), *A = malloc(sizeof(float) * k * in);
    float *N = malloc(sizeof(float) * tokens * in), *X = malloc(sizeof(float) * tokens * in);
    wq_test_fill_normal(Z, tokens * k, 1.0f, seed);
    wq_test_fill_normal(A, k * in, 1.0f, seed + 1);
    wq_test_fill_normal(N, tokens * in, 0.1f, seed + 2);
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t i = 0; i < in; i++) {
            double s = N[t * in + i];
            for (int64_t j = 0; j < k; j++)
                s += (double)Z[t * k + j] * A[j * in + i];
            X[t * in + i] = (float)(s * (1.0 + (double)(i % 5 == 0) * 2.0 + 0.1 * (double)(i % 3)));
        }
    free(Z);
    free(A);
    free(N);
    return X;
}

/* H = 2/nseq X^T X in double, directly */
static double *direct_h(const float *X, int64_t tokens, int64_t in, int64_t nseq)
{
    double *H = calloc((size_t)(in * in), sizeof(double));
    for (int64_t i = 0; i < in; i++)
        for (int64_t j = 0; j < in; j++) {
            double s = 0.0;
            for (int64_t t = 0; t < tokens; t++)
                s += (double)X[t * in + i] * X[t * in + j];
            H[i * in + j] = 2.0 * s / (double)nseq;
        }
    return H;
}

static double *dup_d(const double *a, int64_t n)
{
    double *b = malloc(sizeof(double) * n);
    memcpy(b, a, sizeof(double) * n);
    return b;
}

typedef struct {
    int64_t rows, cols;
    float *W;
    double *H;
} layer_case;

static layer_case make_case(int64_t rows, int64_t cols, uint64_t seed)
{
    layer_case lc = {rows, cols, malloc(sizeof(float) * rows * cols), NULL};
    wq_test_fill_normal(lc.W, (size_t)(rows * cols), 0.05f, seed);
    int64_t tokens = 3 * cols + 7;
    float *X = make_x(tokens, cols, seed + 10);
    lc.H = direct_h(X, tokens, cols, 4);
    free(X);
    return lc;
}

static void free_case(layer_case *lc)
{
    free(lc->W);
    free(lc->H);
}

static wq_algo_params gptq_params(void)
{
    wq_config cfg;
    wq_config_defaults(&cfg, WQ_ALGO_GPTQ);
    wq_algo_params ap = cfg.ap;
    wq_config_free(&cfg);
    /* most tests compare against the unblocked column-by-column reference, which the fresh-parameter
     * mode equals for every block size; the block-boundary mode (the default) has its own test */
    ap.fresh_group_params = true;
    return ap;
}

static wq_qspec int_spec(int bits, bool sym, int64_t gs)
{
    wq_qspec s = wq_qspec_default();
    s.dtype = WQ_QDTYPE_INT;
    s.bits = bits;
    s.sym = sym;
    s.group_size = gs;
    return s;
}

/* ---------------------------------------------------------------------------------------------- */
/* independent reference GPTQ */
/* ---------------------------------------------------------------------------------------------- */

static const float ref_nf4[16] = {-1.0f,
                                  -0.6961928009986877f,
                                  -0.5250730514526367f,
                                  -0.39491748809814453f,
                                  -0.28444138169288635f,
                                  -0.18477343022823334f,
                                  -0.09105003625154495f,
                                  0.0f,
                                  0.07958029955625534f,
                                  0.16093020141124725f,
                                  0.24611230194568634f,
                                  0.33791524171829224f,
                                  0.44070982933044434f,
                                  0.5626170039176941f,
                                  0.7229568362236023f,
                                  1.0f};
static const uint8_t ref_nf4_nib[16] = {7, 1, 2, 3, 4, 5, 6, 0, 8, 9, 10, 11, 12, 13, 14, 15};

typedef struct {
    wq_qspec spec;
    wq_algo_params ap;
} ref_opts;

static float ref_clamp(float x, float lo, float hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* numerics 4.4 find_params for one row slice (float arithmetic, as INC does in float32) */
static void ref_find_params(const ref_opts *o, const float *x, int64_t n, float *scale, float *zero)
{
    if (o->spec.dtype == WQ_QDTYPE_NF4) {
        float a = 0;
        for (int64_t i = 0; i < n; i++)
            a = fabsf(x[i]) > a ? fabsf(x[i]) : a;
        *scale = a;
        *zero = 0;
        return;
    }
    float maxq = (float)((1 << o->spec.bits) - 1);
    if (o->spec.sym && o->spec.bits == 1) {
        /* wquant's 1-bit symmetric rule (kern_quant.h): sign trick, codes {0, 1} -> {0, +-amax} */
        float mn = x[0], mx = x[0];
        for (int64_t i = 1; i < n; i++) {
            mn = x[i] < mn ? x[i] : mn;
            mx = x[i] > mx ? x[i] : mx;
        }
        float amax = fabsf(mx) > fabsf(mn) ? fabsf(mx) : fabsf(mn);
        if (amax == 0) amax = 1;
        *scale = fabsf(mx) > fabsf(mn) ? -amax : amax;
        *zero = 1;
        return;
    }
    float xmin = 0, xmax = 0;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] < xmin) xmin = x[i];
        if (x[i] > xmax) xmax = x[i];
    }
    if (o->spec.sym) {
        if (-xmin > xmax) xmax = -xmin;
        if (xmin < 0) xmin = -xmax;
    }
    if (xmin == 0 && xmax == 0) {
        xmin = -1;
        xmax = 1;
    }
    *scale = (xmax - xmin) / maxq;
    *zero = o->spec.sym ? (maxq + 1) / 2 : nearbyintf(-xmin / *scale);
    if (!o->spec.mse_search) return;
    double best = INFINITY;
    for (int i = 0; i < 80; i++) {
        float p = (float)(1.0 - i / 100.0);
        float lo = p * xmin, hi = p * xmax, s = (hi - lo) / maxq;
        float z = o->spec.sym ? (maxq + 1) / 2 : nearbyintf(-lo / s);
        double e = 0;
        for (int64_t k = 0; k < n; k++) {
            float qv = s * (ref_clamp(nearbyintf(x[k] / s) + z, 0, maxq) - z);
            e += powf(fabsf(qv - x[k]), 2.4f);
        }
        if (e < best) {
            best = e;
            *scale = s;
            *zero = z;
        }
    }
}

static uint8_t ref_code(const ref_opts *o, float x, float s, float z)
{
    if (o->spec.dtype == WQ_QDTYPE_NF4) {
        float y = x / s;
        int k = 0;
        while (k < 15 && y > (float)(((double)ref_nf4[k] + ref_nf4[k + 1]) / 2))
            k++;
        return ref_nf4_nib[k];
    }
    float maxq = (float)((1 << o->spec.bits) - 1);
    return (uint8_t)ref_clamp(nearbyintf(x / s) + z, 0, maxq);
}

static float ref_deq(const ref_opts *o, uint8_t c, float s, float z)
{
    if (o->spec.dtype == WQ_QDTYPE_NF4) {
        for (int k = 0; k < 16; k++)
            if (ref_nf4_nib[k] == c) return ref_nf4[k] * s;
    }
    return ((float)c - z) * s;
}

/* stable descending sort of idx by key (insertion sort: keeps ties in index order) */
static void ref_sort_desc(int32_t *idx, int64_t n, const double *key)
{
    for (int64_t i = 1; i < n; i++) {
        int32_t v = idx[i];
        int64_t j = i;
        while (j > 0 && key[idx[j - 1]] < key[v]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

/* Column-by-column GPTQ (OBS with the explicit inverse update, paper eq. 3 and the H^-1 downdate),
 * in double. Parameters are taken from the current (fully updated) weights at a group start, or
 * from the weights at the last multiple of block_size when inc_parity. */
static void ref_gptq(const layer_case *lc, const ref_opts *o, uint8_t *codes, float *Q,
                     float *scales, float *zeros, int32_t *gidx_out, double *loss)
{
    const int64_t R = lc->rows, n = lc->cols;
    const int64_t gs =
        (o->spec.group_size == -1 || o->spec.group_size > n) ? n : o->spec.group_size;
    const int64_t ng = (n + gs - 1) / gs;
    double *H = dup_d(lc->H, n * n);
    double *Wd = malloc(sizeof(double) * R * n), *Ws = malloc(sizeof(double) * R * n);
    double *diag = malloc(sizeof(double) * n);
    int32_t *perm = malloc(sizeof(int32_t) * n), *grp = malloc(sizeof(int32_t) * n);
    float *x = malloc(sizeof(float) * n), *sc = malloc(sizeof(float) * R),
          *zp = malloc(sizeof(float) * R);
    bool stat = o->ap.static_groups && ng > 1;
    for (int64_t c = 0; c < n; c++) {
        bool dead = H[c * n + c] == 0;
        if (dead) H[c * n + c] = 1;
        diag[c] = H[c * n + c];
        for (int64_t r = 0; r < R; r++)
            Wd[r * n + c] = dead ? 0 : lc->W[r * n + c];
        perm[c] = (int32_t)c;
    }
    if (o->ap.act_order) ref_sort_desc(perm, n, diag);
    if (o->ap.hybrid_order) {
        double *gm = malloc(sizeof(double) * ng);
        int32_t *go = malloc(sizeof(int32_t) * ng);
        for (int64_t g = 0; g < ng; g++) {
            gm[g] = -1;
            for (int64_t c = g * gs; c < n && c < (g + 1) * gs; c++)
                gm[g] = diag[c] > gm[g] ? diag[c] : gm[g];
            go[g] = (int32_t)g;
        }
        ref_sort_desc(go, ng, gm);
        int64_t p = 0;
        for (int64_t k = 0; k < ng; k++) {
            int64_t p0 = p;
            for (int64_t c = go[k] * gs; c < n && c < (go[k] + 1) * gs; c++)
                perm[p++] = (int32_t)c;
            ref_sort_desc(perm + p0, p - p0, diag);
        }
        free(gm);
        free(go);
    }
    /* static params on original groups */
    if (stat) {
        for (int64_t g = 0; g < ng; g++) {
            int64_t len = (g + 1) * gs <= n ? gs : n - g * gs;
            for (int64_t r = 0; r < R; r++) {
                for (int64_t k = 0; k < len; k++)
                    x[k] = (float)Wd[r * n + g * gs + k];
                ref_find_params(o, x, len, &scales[r * ng + g], &zeros[r * ng + g]);
            }
        }
    }
    /* permuted, damped inverse (Gauss-Jordan on the permuted matrix) */
    double mean = 0;
    for (int64_t c = 0; c < n; c++)
        mean += diag[c];
    mean /= (double)n;
    double *A = malloc(sizeof(double) * n * n), *Hi = calloc((size_t)(n * n), sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++)
            A[i * n + j] = H[perm[i] * n + perm[j]];
        A[i * n + i] += o->ap.percdamp * mean;
        Hi[i * n + i] = 1;
    }
    for (int64_t c = 0; c < n; c++) {
        double pv = A[c * n + c];
        for (int64_t j = 0; j < n; j++) {
            A[c * n + j] /= pv;
            Hi[c * n + j] /= pv;
        }
        for (int64_t i = 0; i < n; i++) {
            if (i == c) continue;
            double f = A[i * n + c];
            for (int64_t j = 0; j < n; j++) {
                A[i * n + j] -= f * A[c * n + j];
                Hi[i * n + j] -= f * Hi[c * n + j];
            }
        }
    }
    /* permuted weights */
    for (int64_t r = 0; r < R; r++)
        for (int64_t p = 0; p < n; p++)
            Ws[r * n + p] = Wd[r * n + perm[p]];
    memcpy(Wd, Ws, sizeof(double) * R * n); /* Wd: current, Ws: block-boundary snapshot */
    for (int64_t p = 0; p < n; p++)
        grp[p] = (int32_t)((o->ap.act_order && !stat ? p : perm[p]) / gs);
    for (int64_t r = 0; r < R; r++)
        loss[r] = 0;
    for (int64_t p = 0; p < n; p++) {
        if (o->ap.inc_parity && p % o->ap.block_size == 0) memcpy(Ws, Wd, sizeof(double) * R * n);
        if (!stat && (p == 0 || grp[p] != grp[p - 1])) {
            int64_t len = 1;
            while (p + len < n && grp[p + len] == grp[p])
                len++;
            const double *src = o->ap.inc_parity ? Ws : Wd;
            for (int64_t r = 0; r < R; r++) {
                for (int64_t k = 0; k < len; k++)
                    x[k] = (float)src[r * n + p + k];
                ref_find_params(o, x, len, &sc[r], &zp[r]);
                scales[r * ng + grp[p]] = sc[r];
                zeros[r * ng + grp[p]] = zp[r];
            }
        }
        double d = Hi[p * n + p];
        for (int64_t r = 0; r < R; r++) {
            float s = scales[r * ng + grp[p]], z = zeros[r * ng + grp[p]];
            double w = Wd[r * n + p];
            uint8_t c = ref_code(o, (float)w, s, z);
            float qv = ref_deq(o, c, s, z);
            codes[r * n + perm[p]] = c;
            Q[r * n + perm[p]] = qv;
            double e = w - qv;
            loss[r] += e * e / d;
            for (int64_t j = p + 1; j < n; j++)
                Wd[r * n + j] -= e * Hi[p * n + j] / d;
        }
        /* eliminate column p from the inverse (OBS downdate) */
        for (int64_t i = p + 1; i < n; i++)
            for (int64_t j = p + 1; j < n; j++)
                Hi[i * n + j] -= Hi[i * n + p] * Hi[p * n + j] / d;
    }
    if (gidx_out)
        for (int64_t p = 0; p < n; p++)
            gidx_out[perm[p]] = grp[p];
    free(H);
    free(Wd);
    free(Ws);
    free(diag);
    free(perm);
    free(grp);
    free(x);
    free(sc);
    free(zp);
    free(A);
    free(Hi);
}

/* ---------------------------------------------------------------------------------------------- */
/* comparison helpers */
/* ---------------------------------------------------------------------------------------------- */

typedef struct {
    wq_qmatrix qm;
    float *Q;
    double loss;
    float s8;
} gptq_out;

static wq_status run_gptq(const layer_case *lc, const wq_qspec *spec, const wq_algo_params *ap,
                          gptq_out *o)
{
    double *H = dup_d(lc->H, lc->cols * lc->cols);
    o->Q = malloc(sizeof(float) * lc->rows * lc->cols);
    wq_status st = wq_algo_gptq_quantize(lc->W, lc->rows, lc->cols, H, spec, ap, "test.layer",
                                         &o->qm, o->Q, &o->s8, &o->loss);
    free(H);
    return st;
}

static void free_out(gptq_out *o)
{
    wq_qmatrix_free(&o->qm);
    free(o->Q);
}

/* codes equal (count mismatches), Q within tolerance, loss close, g_idx equal */
static int64_t compare_to_ref(const layer_case *lc, const ref_opts *ro, const gptq_out *o,
                              double qtol)
{
    const int64_t R = lc->rows, n = lc->cols, ng = o->qm.ngroups;
    uint8_t *codes = malloc((size_t)(R * n));
    float *Q = malloc(sizeof(float) * R * n), *sc = calloc((size_t)(R * ng), sizeof(float));
    float *zp = calloc((size_t)(R * ng), sizeof(float));
    int32_t *gidx = malloc(sizeof(int32_t) * n);
    double *loss = malloc(sizeof(double) * R), lsum = 0;
    ref_gptq(lc, ro, codes, Q, sc, zp, gidx, loss);
    int64_t mism = 0;
    double qscale = 0;
    for (int64_t k = 0; k < R * n; k++)
        qscale = fmax(qscale, fabs(Q[k]));
    /* A row mismatches when any code or zero point differs. The solver updates in float and the
     * reference in double, so a near-tie can round the other way; that changes the error fed to the
     * rest of the row, so the whole row diverges afterwards (legitimately). Rows that match
     * everywhere must agree on Q within the float tolerance. Returns the number of such rows. */
    bool *rowbad = calloc((size_t)(R > 0 ? R : 1), sizeof(bool));
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < n; c++) {
            int64_t k = r * n + c, g = gidx[c];
            bool zsame = !o->qm.zeros || zp[r * ng + g] == o->qm.zeros[r * ng + g];
            if (codes[k] != o->qm.codes[k] || !zsame) rowbad[r] = true;
        }
    for (int64_t r = 0; r < R; r++) {
        mism += rowbad[r];
        if (rowbad[r]) continue;
        for (int64_t c = 0; c < n; c++)
            assert_true(fabs(Q[r * n + c] - o->Q[r * n + c]) <= qtol * qscale);
        for (int64_t g = 0; g < ng; g++)
            assert_true(fabs(sc[r * ng + g] - o->qm.scales[r * ng + g]) <=
                        qtol * fabs(sc[r * ng + g]) + 1e-12);
    }
    free(rowbad);
    if (o->qm.g_idx)
        for (int64_t c = 0; c < n; c++)
            assert_int_equal(o->qm.g_idx[c], gidx[c]);
    for (int64_t r = 0; r < R; r++)
        lsum += loss[r];
    if (mism == 0) assert_true(fabs(lsum - o->loss) <= 1e-3 * lsum);
    free(codes);
    free(Q);
    free(sc);
    free(zp);
    free(gidx);
    free(loss);
    return mism;
}

static void assert_dequant_equals_q(const gptq_out *o)
{
    int64_t N = o->qm.rows * o->qm.cols;
    float *D = malloc(sizeof(float) * N);
    wq_algo_gptq_dequant(&o->qm, o->s8, D);
    assert_memory_equal(D, o->Q, sizeof(float) * N);
    free(D);
}

/* ---------------------------------------------------------------------------------------------- */
/* Hessian */
/* ---------------------------------------------------------------------------------------------- */

static void hessian_should_match_direct_xtx(void **state)
{
    (void)state;
    const int64_t tokens = 37, in = 300; /* in > WQ_HESS_PANEL: two panels */
    float *X = make_x(tokens, in, WQ_TEST_SEED);
    double *Hd = direct_h(X, tokens, in, 3);
    for (int prec = 0; prec < 3; prec++) {
        wq_exact *acc = calloc((size_t)wq_kern_hessian_packed_len(in), sizeof(wq_exact));
        void *scr = malloc(wq_kern_hessian_scratch_bytes(tokens, in, WQ_HESS_F64));
        int64_t bad = prec == 2
                          ? wq_kern_hessian_add_chunk_ref(acc, X, tokens, in)
                          : wq_kern_hessian_add_chunk(acc, X, tokens, in, (wq_hess_prec)prec, scr);
        assert_int_equal(bad, 0);
        double *H = malloc(sizeof(double) * in * in);
        wq_kern_hessian_finalize(acc, in, 3, H);
        double tol = prec == WQ_HESS_F32 ? WQ_TOL_HESS_F32_REL : WQ_TOL_HESS_F64_REL;
        for (int64_t i = 0; i < in; i++)
            for (int64_t j = 0; j < in; j++) {
                double ref = Hd[i * in + j], got = H[i * in + j];
                double scale = sqrt(Hd[i * in + i] * Hd[j * in + j]);
                assert_true(fabs(got - ref) <= tol * scale);
                assert_true(H[i * in + j] == H[j * in + i]);
            }
        free(acc);
        free(scr);
        free(H);
    }
    free(X);
    free(Hd);
}

static void hessian_should_be_bit_identical_for_any_chunk_partition(void **state)
{
    (void)state;
    const int64_t in = 40, nchunks = 6;
    const int64_t len[6] = {11, 3, 17, 8, 1, 9};
    int64_t off[7] = {0};
    for (int k = 0; k < nchunks; k++)
        off[k + 1] = off[k] + len[k];
    float *X = make_x(off[nchunks], in, WQ_TEST_SEED + 5);
    const int64_t P = wq_kern_hessian_packed_len(in);
    void *scr = malloc(wq_kern_hessian_scratch_bytes(17, in, WQ_HESS_F64));
    double *ref = NULL;
    /* owner[k] for "ranks" = 1, 2, 3 (and a shuffled order of addition) */
    const int owners[4][6] = {
        {0, 0, 0, 0, 0, 0}, {0, 1, 0, 1, 1, 0}, {2, 0, 1, 1, 2, 0}, {1, 1, 1, 0, 0, 0}};
    const int nranks[4] = {1, 2, 3, 2};
    for (int prec = 0; prec < 2; prec++) {
        for (int v = 0; v < 4; v++) {
            wq_exact *acc[3];
            for (int r = 0; r < 3; r++)
                acc[r] = calloc((size_t)P, sizeof(wq_exact));
            for (int k0 = 0; k0 < nchunks; k0++) {
                int k = v == 3 ? nchunks - 1 - k0 : k0; /* reverse order in variant 3 */
                assert_int_equal(wq_kern_hessian_add_chunk(acc[owners[v][k]], X + off[k] * in,
                                                           len[k], in, (wq_hess_prec)prec, scr),
                                 0);
            }
            /* reduce in rank order 2 -> 1 -> 0 */
            for (int r = nranks[v] - 1; r > 0; r--)
                wq_kern_exact_merge(acc[r - 1], acc[r], P);
            double *H = malloc(sizeof(double) * in * in);
            wq_kern_hessian_finalize(acc[0], in, 6, H);
            if (v == 0)
                ref = H;
            else {
                assert_memory_equal(H, ref, sizeof(double) * in * in);
                free(H);
            }
            for (int r = 0; r < 3; r++)
                free(acc[r]);
        }
        free(ref);
    }
    free(scr);
    free(X);
}

/* ---------------------------------------------------------------------------------------------- */
/* GPTQ vs reference */
/* ---------------------------------------------------------------------------------------------- */

static void check_against_ref(int64_t rows, int64_t cols, wq_qspec spec, wq_algo_params ap,
                              uint64_t seed, int64_t max_mism)
{
    layer_case lc = make_case(rows, cols, seed);
    gptq_out o = {0};
    assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_OK);
    ref_opts ro = {spec, ap};
    int64_t mism = compare_to_ref(&lc, &ro, &o, WQ_TOL_GPTQ_Q_REL);
    if (mism > 0)
        fprintf(stderr, "seed %llx: %lld rows with a tie flip (allowed %lld)\n",
                (unsigned long long)seed, (long long)mism, (long long)max_mism);
    assert_true(mism <= max_mism);
    assert_dequant_equals_q(&o);
    free_out(&o);
    free_case(&lc);
}

static void gptq_should_match_reference_for_every_order(void **state)
{
    (void)state;
    for (int sym = 0; sym < 2; sym++)
        for (int mode = 0; mode < 5; mode++) {
            wq_algo_params ap = gptq_params();
            ap.act_order = mode == 1 || mode == 3;
            ap.static_groups = mode == 2 || mode == 3;
            ap.hybrid_order = mode == 4;
            /* 8 x 16 group 4, and a ragged 8 x 18 (tail group of 2) */
            check_against_ref(8, 16, int_spec(4, sym, 4), ap, WQ_TEST_SEED + mode, WQ_MAX_TIE_ROWS);
            check_against_ref(8, 18, int_spec(4, sym, 4), ap, WQ_TEST_SEED + 10 + mode,
                              WQ_MAX_TIE_ROWS);
            ap.static_groups = false;
            if (mode == 4) { /* hybrid + static_groups is accepted too */
                ap.static_groups = true;
                check_against_ref(8, 18, int_spec(3, sym, 4), ap, WQ_TEST_SEED + 20,
                                  WQ_MAX_TIE_ROWS);
            }
        }
}

static void gptq_should_match_reference_for_all_bits_and_group_sizes(void **state)
{
    (void)state;
    for (int bits = 1; bits <= 8; bits++)
        for (int sym = 0; sym < 2; sym++) {
            wq_algo_params ap = gptq_params();
            ap.act_order = bits % 2;
            check_against_ref(6, 20, int_spec(bits, sym, 8), ap, WQ_TEST_SEED + 31 * bits + sym,
                              WQ_MAX_TIE_ROWS);
            check_against_ref(6, 20, int_spec(bits, sym, -1), ap, WQ_TEST_SEED + 7 * bits + sym,
                              WQ_MAX_TIE_ROWS);
        }
    wq_qspec mse = int_spec(4, false, 4);
    mse.mse_search = true;
    check_against_ref(8, 16, mse, gptq_params(), WQ_TEST_SEED + 99, WQ_MAX_TIE_ROWS);
    mse.sym = true;
    check_against_ref(8, 16, mse, gptq_params(), WQ_TEST_SEED + 98, WQ_MAX_TIE_ROWS);
    wq_qspec nf4 = int_spec(4, true, 8);
    nf4.dtype = WQ_QDTYPE_NF4;
    check_against_ref(8, 24, nf4, gptq_params(), WQ_TEST_SEED + 97, WQ_MAX_TIE_ROWS);
}

static void gptq_should_not_depend_on_block_size(void **state)
{
    (void)state;
    const int64_t bs[] = {1, 3, 16, 5, 128};
    for (int k = 0; k < 5; k++)
        for (int act = 0; act < 2; act++) {
            wq_algo_params ap = gptq_params();
            ap.block_size = bs[k];
            ap.act_order = act;
            check_against_ref(8, 16, int_spec(4, true, 4), ap, WQ_TEST_SEED + 40 + act,
                              WQ_MAX_TIE_ROWS);
            check_against_ref(8, 70, int_spec(3, false, 8), ap, WQ_TEST_SEED + 50 + act,
                              WQ_MAX_TIE_ROWS);
        }
}

static void gptq_segments_should_straddle_sub_blocks_and_blocks(void **state)
{
    (void)state;
    /* group 48 with 140 columns: groups start inside 32-column sub-blocks and cross sub-block
     * (block 128) and block (block 40) boundaries, in both parameter modes */
    const int64_t bs[] = {128, 40, 7};
    for (int k = 0; k < 3; k++)
        for (int parity = 0; parity < 2; parity++) {
            wq_algo_params ap = gptq_params();
            ap.block_size = bs[k];
            ap.inc_parity = parity;
            check_against_ref(8, 140, int_spec(4, false, 48), ap, WQ_TEST_SEED + 150 + k,
                              WQ_MAX_TIE_ROWS);
        }
}

static void gptq_inc_parity_should_use_block_boundary_weights(void **state)
{
    (void)state;
    const int64_t bs[] = {1, 3, 16};
    for (int k = 0; k < 3; k++) {
        wq_algo_params ap = gptq_params();
        ap.inc_parity = true;
        ap.block_size = bs[k];
        check_against_ref(8, 16, int_spec(4, true, 4), ap, WQ_TEST_SEED + 60, WQ_MAX_TIE_ROWS);
        ap.act_order = true;
        check_against_ref(8, 70, int_spec(4, false, 8), ap, WQ_TEST_SEED + 61, WQ_MAX_TIE_ROWS);
    }
    /* and parity really differs from the default when groups start inside a block */
    layer_case lc = make_case(8, 16, WQ_TEST_SEED + 62);
    wq_qspec spec = int_spec(4, true, 4);
    wq_algo_params ap = gptq_params();
    ap.block_size = 16;
    gptq_out a = {0}, b = {0};
    assert_int_equal(run_gptq(&lc, &spec, &ap, &a), WQ_OK);
    ap.inc_parity = true;
    assert_int_equal(run_gptq(&lc, &spec, &ap, &b), WQ_OK);
    assert_true(memcmp(a.qm.scales, b.qm.scales, sizeof(float) * 8 * 4) != 0);
    free_out(&a);
    free_out(&b);
    free_case(&lc);
}

static void gptq_act_order_should_dequantize_identically_through_g_idx(void **state)
{
    (void)state;
    layer_case lc = make_case(10, 20, WQ_TEST_SEED + 70);
    wq_qspec spec = int_spec(4, false, 8); /* groups 8, 8, 4 in processing order */
    wq_algo_params ap = gptq_params();
    ap.act_order = true;
    gptq_out o = {0};
    assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_OK);
    assert_non_null(o.qm.g_idx);
    /* g_idx = inv_perm / gs and every group has the right size */
    const int32_t *perm = NULL;
    {
        double *H = dup_d(lc.H, 400);
        wq_gptq_ctx *ctx = NULL;
        assert_int_equal(wq_algo_gptq_prepare(H, 20, &spec, &ap, "t", &ctx), WQ_OK);
        free(H);
        perm = wq_algo_gptq_perm(ctx);
        assert_non_null(perm);
        int count[3] = {0};
        for (int64_t p = 0; p < 20; p++) {
            assert_int_equal(o.qm.g_idx[perm[p]], p / 8);
            count[o.qm.g_idx[perm[p]]]++;
        }
        assert_int_equal(count[0], 8);
        assert_int_equal(count[1], 8);
        assert_int_equal(count[2], 4);
        /* recompute Q by walking the permuted order with consecutive groups (how INC exports) */
        for (int64_t r = 0; r < 10; r++)
            for (int64_t p = 0; p < 20; p++) {
                int64_t c = perm[p], g = p / 8;
                float v = ((float)o.qm.codes[r * 20 + c] - o.qm.zeros[r * 3 + g]) *
                          o.qm.scales[r * 3 + g];
                assert_memory_equal(&v, &o.Q[r * 20 + c], sizeof v);
            }
        wq_algo_gptq_destroy(ctx);
    }
    assert_dequant_equals_q(&o);
    /* static_groups: no g_idx needed, groups are c / gs */
    ap.static_groups = true;
    gptq_out s = {0};
    assert_int_equal(run_gptq(&lc, &spec, &ap, &s), WQ_OK);
    assert_null(s.qm.g_idx);
    assert_dequant_equals_q(&s);
    free_out(&s);
    free_out(&o);
    free_case(&lc);
}

/* ---------------------------------------------------------------------------------------------- */
/* distribution */
/* ---------------------------------------------------------------------------------------------- */

static void split_and_compare(const layer_case *lc, const wq_qspec *spec, const wq_algo_params *ap)
{
    const int64_t R = lc->rows, n = lc->cols;
    const int64_t T = wq_algo_gptq_row_tile(spec, R);
    double *H = dup_d(lc->H, n * n);
    wq_gptq_ctx *ctx = NULL;
    assert_int_equal(wq_algo_gptq_prepare(H, n, spec, ap, "split", &ctx), WQ_OK);
    free(H);
    float s8 =
        ap->fp8_aware ? wq_algo_gptq_fp8_scale(ctx, wq_algo_gptq_absmax_rows(ctx, lc->W, R)) : 0;
    wq_qmatrix ref = {0};
    float *Qref = malloc(sizeof(float) * R * n);
    double *lref = malloc(sizeof(double) * R);
    assert_int_equal(wq_algo_gptq_qmatrix_init(ctx, R, &ref), WQ_OK);
    assert_int_equal(wq_algo_gptq_solve_rows(ctx, lc->W, 0, R, R, s8, &ref, Qref, lref), WQ_OK);
    int64_t ntiles = (R + T - 1) / T;
    for (int nranks = 2; nranks <= 3; nranks++) {
        wq_qmatrix full = {0};
        float *Q = malloc(sizeof(float) * R * n);
        double *l = malloc(sizeof(double) * R);
        assert_int_equal(wq_algo_gptq_qmatrix_init(ctx, R, &full), WQ_OK);
        int64_t t0 = 0;
        for (int rank = 0; rank < nranks; rank++) {
            int64_t nt = ntiles / nranks + (rank < ntiles % nranks);
            int64_t r0 = t0 * T < R ? t0 * T : R, r1 = (t0 + nt) * T < R ? (t0 + nt) * T : R;
            t0 += nt;
            wq_qmatrix view = full; /* row view into the full result */
            view.rows = r1 - r0;
            view.codes = full.codes + r0 * n;
            view.scales = full.scales + r0 * full.ngroups;
            view.zeros = full.zeros ? full.zeros + r0 * full.ngroups : NULL;
            assert_int_equal(wq_algo_gptq_solve_rows(ctx, lc->W + r0 * n, r0, r1 - r0, R, s8, &view,
                                                     Q + r0 * n, l + r0),
                             WQ_OK);
        }
        assert_memory_equal(full.codes, ref.codes, (size_t)(R * n));
        assert_memory_equal(full.scales, ref.scales, sizeof(float) * R * ref.ngroups);
        if (ref.zeros) assert_memory_equal(full.zeros, ref.zeros, sizeof(float) * R * ref.ngroups);
        assert_memory_equal(Q, Qref, sizeof(float) * R * n);
        assert_memory_equal(l, lref, sizeof(double) * R);
        wq_qmatrix_free(&full);
        free(Q);
        free(l);
    }
    /* misaligned spans are refused */
    if (R > T) {
        wq_qmatrix bad = {0};
        assert_int_equal(wq_algo_gptq_qmatrix_init(ctx, 3, &bad), WQ_OK);
        assert_int_equal(wq_algo_gptq_solve_rows(ctx, lc->W + n, 1, 3, R, s8, &bad, NULL, NULL),
                         WQ_ERR_ARG);
        wq_qmatrix_free(&bad);
    }
    wq_qmatrix_free(&ref);
    free(Qref);
    free(lref);
    wq_algo_gptq_destroy(ctx);
}

static void gptq_row_split_should_be_bit_identical(void **state)
{
    (void)state;
    /* default tile T: tiles T, T, 44 (a short last tile); ranks of 1, 2, 3 */
    layer_case lc = make_case(2 * WQ_GPTQ_ROW_TILE + 44, 40, WQ_TEST_SEED + 80);
    wq_qspec spec = int_spec(4, true, 8);
    wq_algo_params ap = gptq_params();
    ap.block_size = 16;
    split_and_compare(&lc, &spec, &ap);
    ap.act_order = true;
    split_and_compare(&lc, &spec, &ap);
    ap.act_order = false;
    ap.hybrid_order = true;
    spec.double_quant = true; /* dq groups of 16 rows: tile stays 64 */
    spec.dq_group_size = 16;
    split_and_compare(&lc, &spec, &ap);
    spec.dq_group_size = 100; /* tile: the first multiple of 100 >= WQ_GPTQ_ROW_TILE */
    assert_int_equal(wq_algo_gptq_row_tile(&spec, lc.rows) % 100, 0);
    split_and_compare(&lc, &spec, &ap);
    ap.fp8_aware = true;
    split_and_compare(&lc, &spec, &ap);
    free_case(&lc);
}

static void gptq_double_quant_should_put_scales_on_a_grid(void **state)
{
    (void)state;
    layer_case lc = make_case(24, 32, WQ_TEST_SEED + 90);
    wq_qspec spec = int_spec(4, false, 8);
    spec.double_quant = true;
    spec.dq_bits = 3;
    spec.dq_sym = false;
    spec.dq_group_size = 8;
    gptq_out o = {0};
    wq_algo_params ap = gptq_params();
    assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_OK);
    /* per group column and per 8-row dq group: at most 2^3 distinct scale values */
    for (int64_t g = 0; g < 4; g++)
        for (int64_t r0 = 0; r0 < 24; r0 += 8) {
            float vals[8];
            int nv = 0;
            for (int64_t r = r0; r < r0 + 8; r++) {
                float v = o.qm.scales[r * 4 + g];
                int k = 0;
                while (k < nv && vals[k] != v)
                    k++;
                if (k == nv) vals[nv++] = v;
            }
            assert_true(nv <= 8);
        }
    assert_dequant_equals_q(&o);
    ref_opts ro = {spec, ap};
    (void)ro; /* the reference has no double quant; consistency + grid are checked instead */
    free_out(&o);
    spec.dtype = WQ_QDTYPE_NF4; /* nf4 with mean-subtracting double quant: rows coupled */
    assert_int_equal(wq_algo_gptq_row_tile(&spec, 24), 24);
    assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_OK);
    assert_dequant_equals_q(&o);
    free_out(&o);
    free_case(&lc);
}

/* ---------------------------------------------------------------------------------------------- */
/* edge cases and errors */
/* ---------------------------------------------------------------------------------------------- */

static void gptq_should_zero_dead_columns(void **state)
{
    (void)state;
    layer_case lc = make_case(8, 16, WQ_TEST_SEED + 100);
    const int64_t n = 16, deadc[2] = {3, 10};
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < n; i++)
            lc.H[deadc[k] * n + i] = lc.H[i * n + deadc[k]] = 0;
    wq_qspec spec = int_spec(4, false, 4);
    for (int act = 0; act < 2; act++) {
        wq_algo_params ap = gptq_params();
        ap.act_order = act;
        gptq_out o = {0};
        assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_OK);
        for (int64_t r = 0; r < 8; r++)
            for (int k = 0; k < 2; k++)
                assert_true(o.Q[r * n + deadc[k]] == 0.0f);
        ref_opts ro = {spec, ap};
        assert_int_equal(compare_to_ref(&lc, &ro, &o, WQ_TOL_GPTQ_Q_REL), 0);
        free_out(&o);
    }
    free_case(&lc);
}

static void gptq_should_retry_damping_then_fail_on_indefinite_hessian(void **state)
{
    (void)state;
    const int64_t n = 4, rows = 3;
    float W[12];
    wq_test_fill_normal(W, 12, 1.0f, WQ_TEST_SEED);
    wq_qspec spec = int_spec(4, true, -1);
    wq_algo_params ap = gptq_params();
    /* eigenvalues of [[1,a],[a,1]] are 1 +- a: a = 2.5 needs damping > 1.5 x mean diag (1) */
    for (int k = 0; k < 2; k++) {
        double a = k == 0 ? 2.5 : 1000.0;
        double H[16] = {0};
        for (int i = 0; i < 4; i++)
            H[i * 4 + i] = 1;
        H[0 * 4 + 1] = H[1 * 4 + 0] = a;
        wq_gptq_ctx *ctx = NULL;
        wq_status st = wq_algo_gptq_prepare(H, n, &spec, &ap, "model.layers.0.mlp.down_proj", &ctx);
        if (k == 0) {
            assert_int_equal(st, WQ_OK);
            assert_int_equal(wq_algo_gptq_retries(ctx), 3); /* 0.01 -> 0.1 -> 1 (fails) -> 10 */
            wq_qmatrix qm = {0};
            assert_int_equal(wq_algo_gptq_qmatrix_init(ctx, rows, &qm), WQ_OK);
            assert_int_equal(wq_algo_gptq_solve_rows(ctx, W, 0, rows, rows, 0, &qm, NULL, NULL),
                             WQ_OK);
            wq_qmatrix_free(&qm);
        } else {
            assert_int_equal(st, WQ_ERR_NUMERIC);
            assert_null(ctx);
            assert_non_null(strstr(wq_log_last_error(), "model.layers.0.mlp.down_proj"));
        }
        wq_algo_gptq_destroy(ctx);
    }
}

static void gptq_should_reject_bad_arguments(void **state)
{
    (void)state;
    layer_case lc = make_case(4, 8, WQ_TEST_SEED + 110);
    wq_qspec spec = int_spec(4, true, 4);
    wq_algo_params ap = gptq_params();
    gptq_out o = {0};
    ap.block_size = 0;
    assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_ERR_ARG);
    free(o.Q);
    ap = gptq_params();
    ap.percdamp = -0.1;
    assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_ERR_ARG);
    free(o.Q);
    ap = gptq_params();
    ap.act_order = ap.hybrid_order = true;
    assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_ERR_ARG);
    free(o.Q);
    ap = gptq_params();
    lc.W[5] = NAN;
    assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_ERR_NUMERIC);
    assert_non_null(strstr(wq_log_last_error(), "test.layer"));
    free(o.Q);
    lc.W[5] = 0;
    lc.H[9] = INFINITY;
    assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_ERR_NUMERIC);
    free(o.Q);
    free_case(&lc);
}

/* tr((W - Q) H (W - Q)^T) with the undamped H */
static double hess_err(const layer_case *lc, const float *Q)
{
    const int64_t n = lc->cols;
    double tot = 0;
    double *d = malloc(sizeof(double) * n);
    for (int64_t r = 0; r < lc->rows; r++) {
        for (int64_t c = 0; c < n; c++)
            d[c] = (double)lc->W[r * n + c] - Q[r * n + c];
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                tot += d[i] * lc->H[i * n + j] * d[j];
    }
    free(d);
    return tot;
}

static void gptq_should_beat_rtn_on_hessian_weighted_error(void **state)
{
    (void)state;
    layer_case lc = make_case(32, 64, WQ_TEST_SEED + 120);
    for (int mode = 0; mode < 3; mode++) {
        wq_qspec spec = int_spec(mode == 2 ? 3 : 4, mode != 1, 16);
        wq_algo_params ap = gptq_params();
        ap.act_order = mode == 1;
        gptq_out o = {0};
        assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_OK);
        /* RTN with the same quantizer: parameters from W, round to nearest */
        ref_opts ro = {spec, ap};
        float *Qr = malloc(sizeof(float) * 32 * 64);
        for (int64_t r = 0; r < 32; r++)
            for (int64_t g = 0; g < 4; g++) {
                float s, z;
                ref_find_params(&ro, lc.W + r * 64 + g * 16, 16, &s, &z);
                for (int64_t k = 0; k < 16; k++) {
                    float w = lc.W[r * 64 + g * 16 + k];
                    Qr[r * 64 + g * 16 + k] = ref_deq(&ro, ref_code(&ro, w, s, z), s, z);
                }
            }
        double eg = hess_err(&lc, o.Q), er = hess_err(&lc, Qr);
        assert_true(eg < er);
        /* the reported loss is the same objective with the damped H */
        double *Hd = dup_d(lc.H, 64 * 64), mean = 0;
        for (int i = 0; i < 64; i++)
            mean += lc.H[i * 64 + i] / 64;
        layer_case damped = lc;
        damped.H = Hd;
        for (int i = 0; i < 64; i++)
            Hd[i * 64 + i] += ap.percdamp * mean;
        double ed = hess_err(&damped, o.Q);
        assert_true(fabs(ed - o.loss) <= 1e-3 * ed);
        free(Hd);
        free(Qr);
        free_out(&o);
    }
    free_case(&lc);
}

static void gptq_fp8_aware_should_dequantize_into_scaled_fp8(void **state)
{
    (void)state;
    layer_case lc = make_case(16, 32, WQ_TEST_SEED + 130);
    wq_qspec spec = int_spec(4, true, 8);
    for (int parity = 0; parity < 2; parity++) {
        wq_algo_params ap = gptq_params();
        ap.fp8_aware = true;
        ap.inc_parity = parity;
        ap.block_size = 8;
        gptq_out o = {0};
        assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_OK);
        float amax = 0;
        for (int64_t k = 0; k < 16 * 32; k++)
            amax = fmaxf(amax, fabsf(lc.W[k]));
        int e;
        assert_true(frexpf(o.s8, &e) == 0.5f); /* power of two */
        assert_true(amax / o.s8 <= 224.0f);    /* R = 240 - 240/15 */
        assert_true(amax / o.s8 > 112.0f);     /* and the smallest such power of two */
        for (int64_t k = 0; k < 16 * 32; k++) {
            float v = o.Q[k] / o.s8; /* exact: power-of-two scale */
            assert_true(fabsf(v) <= 224.0f);
            /* FP8 E4M3: at most 4 significant bits */
            float m = frexpf(fabsf(v), &e);
            float sig = ldexpf(m, 4);
            assert_true(v == 0.0f || sig == nearbyintf(sig) || e <= -6);
        }
        assert_dequant_equals_q(&o);
        free_out(&o);
    }
    free_case(&lc);
}

static void gptq_should_handle_degenerate_shapes(void **state)
{
    (void)state;
    /* one column, one row, zero rows, hybrid with a single group (= act_order without g_idx) */
    check_against_ref(1, 1, int_spec(4, true, -1), gptq_params(), WQ_TEST_SEED + 140,
                      WQ_MAX_TIE_ROWS);
    check_against_ref(5, 1, int_spec(2, false, 4), gptq_params(), WQ_TEST_SEED + 141,
                      WQ_MAX_TIE_ROWS);
    wq_algo_params ap = gptq_params();
    ap.hybrid_order = true;
    check_against_ref(6, 12, int_spec(4, true, -1), ap, WQ_TEST_SEED + 142, WQ_MAX_TIE_ROWS);
    ap.static_groups = true; /* ignored with a single group */
    check_against_ref(6, 12, int_spec(4, false, 32), ap, WQ_TEST_SEED + 143, WQ_MAX_TIE_ROWS);
    layer_case lc = make_case(0, 8, WQ_TEST_SEED + 144);
    wq_qspec spec = int_spec(4, true, 4);
    gptq_out o = {0};
    assert_int_equal(run_gptq(&lc, &spec, &ap, &o), WQ_OK);
    assert_int_equal(o.qm.rows, 0);
    free_out(&o);
    free_case(&lc);
}

int main(void)
{
    wq_log_set_level(WQ_LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hessian_should_match_direct_xtx),
        cmocka_unit_test(hessian_should_be_bit_identical_for_any_chunk_partition),
        cmocka_unit_test(gptq_should_match_reference_for_every_order),
        cmocka_unit_test(gptq_should_match_reference_for_all_bits_and_group_sizes),
        cmocka_unit_test(gptq_should_not_depend_on_block_size),
        cmocka_unit_test(gptq_segments_should_straddle_sub_blocks_and_blocks),
        cmocka_unit_test(gptq_inc_parity_should_use_block_boundary_weights),
        cmocka_unit_test(gptq_act_order_should_dequantize_identically_through_g_idx),
        cmocka_unit_test(gptq_row_split_should_be_bit_identical),
        cmocka_unit_test(gptq_double_quant_should_put_scales_on_a_grid),
        cmocka_unit_test(gptq_should_zero_dead_columns),
        cmocka_unit_test(gptq_should_retry_damping_then_fail_on_indefinite_hessian),
        cmocka_unit_test(gptq_should_reject_bad_arguments),
        cmocka_unit_test(gptq_should_beat_rtn_on_hessian_weighted_error),
        cmocka_unit_test(gptq_fp8_aware_should_dequantize_into_scaled_fp8),
        cmocka_unit_test(gptq_should_handle_degenerate_shapes),
    };
    return cmocka_run_group_tests_name("algo_gptq", tests, NULL, NULL);
}
