/* test_kern_loss.c: the causal-LM loss gradient at the last hidden state (kernels/kern_loss.h):
 * softmax cross-entropy and RMSNorm backward against central finite differences in double
 * (relative error < 1e-6), the composed head gradient (float path) against an independent double
 * implementation written here, and its loss value against wq_kern_head_nll (what `eval` sums). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern_llama.h"
#include "kernels/kern_loss.h"
#include "wq_testutil.h"

#define FD_H 1e-6
#define FD_TOL 1e-6

/* ||a - b|| / ||b|| */
static double rel_err(const double *a, const double *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++)
        num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return sqrt(num / den);
}

static void fill(double *x, int64_t n, double sd, uint64_t seed)
{
    wq_test_rng r = {seed};
    for (int64_t i = 0; i < n; i++)
        x[i] = sd * (double)wq_test_normal(&r);
}

static void ce_backward_should_match_finite_differences(void **state)
{
    (void)state;
    enum { V = 57 };
    double l[V], dl[V], fd[V];
    fill(l, V, 3.0, WQ_TEST_SEED);
    const int32_t tgt = 11;
    const double scale = 0.37;
    double nll = wq_kern_ce_backward_f64(l, V, tgt, scale, dl);
    /* nll by hand: log sum exp - l[tgt] */
    double z = 0;
    for (int v = 0; v < V; v++)
        z += exp(l[v]);
    assert_true(fabs(nll - (log(z) - l[tgt])) < 1e-12 * fabs(nll));
    for (int v = 0; v < V; v++) {
        double lp[V], lm[V];
        memcpy(lp, l, sizeof l), memcpy(lm, l, sizeof l);
        lp[v] += FD_H, lm[v] -= FD_H;
        fd[v] = scale *
                (wq_kern_ce_backward_f64(lp, V, tgt, 1, NULL) -
                 wq_kern_ce_backward_f64(lm, V, tgt, 1, NULL)) /
                (2 * FD_H);
    }
    double e = rel_err(dl, fd, V);
    print_message("ce: rel err %.3g\n", e);
    assert_true(e < FD_TOL);
    /* sum of the gradient is 0 (softmax minus one-hot) */
    double s = 0;
    for (int v = 0; v < V; v++)
        s += dl[v];
    assert_true(fabs(s) < 1e-14);
}

/* f(x) = sum c . rmsnorm(x, w): its gradient is the RMSNorm backward of dy = c. */
static double rms_obj(const double *x, const double *w, const double *c, int64_t T, int64_t d,
                      double eps)
{
    double *y = malloc((size_t)(T * d) * sizeof *y), s = 0;
    wq_kern_rmsnorm_f64(y, x, w, T, d, eps);
    for (int64_t i = 0; i < T * d; i++)
        s += c[i] * y[i];
    free(y);
    return s;
}

static void rmsnorm_backward_should_match_finite_differences(void **state)
{
    (void)state;
    enum { T = 3, D = 24 };
    const double eps = 1e-5;
    double x[T * D], w[D], c[T * D], dx[T * D], fd[T * D];
    fill(x, T * D, 1.0, 1), fill(w, D, 1.0, 2), fill(c, T * D, 1.0, 3);
    x[5] = 1e-3; /* a small entry */
    wq_kern_rmsnorm_backward_f64(dx, c, x, w, T, D, eps);
    for (int i = 0; i < T * D; i++) {
        double xp[T * D], xm[T * D];
        memcpy(xp, x, sizeof x), memcpy(xm, x, sizeof x);
        xp[i] += FD_H, xm[i] -= FD_H;
        fd[i] = (rms_obj(xp, w, c, T, D, eps) - rms_obj(xm, w, c, T, D, eps)) / (2 * FD_H);
    }
    double e = rel_err(dx, fd, T * D);
    print_message("rmsnorm: rel err %.3g\n", e);
    assert_true(e < FD_TOL);
    /* in place (dx aliasing dy) gives the same numbers */
    double g[T * D];
    memcpy(g, c, sizeof c);
    wq_kern_rmsnorm_backward_f64(g, g, x, w, T, D, eps);
    assert_memory_equal(g, dx, sizeof dx);
}

/* Independent double reference of the whole head: L(x) = scale * sum_t CE(rmsnorm(x_t) W^T, tgt).
 */
static double head_ref(const double *x, const double *nw, const double *W, const int32_t *tgt,
                       int64_t T, int64_t d, int64_t V, double eps, double scale)
{
    double s = 0, *xn = malloc((size_t)d * sizeof *xn), *l = malloc((size_t)V * sizeof *l);
    for (int64_t t = 0; t + 1 < T; t++) {
        if (tgt[t] < 0) continue;
        double ss = 0;
        for (int64_t i = 0; i < d; i++)
            ss += x[t * d + i] * x[t * d + i];
        double r = 1 / sqrt(ss / d + eps);
        for (int64_t i = 0; i < d; i++)
            xn[i] = nw[i] * x[t * d + i] * r;
        double m = -INFINITY, z = 0;
        for (int64_t v = 0; v < V; v++) {
            l[v] = 0;
            for (int64_t i = 0; i < d; i++)
                l[v] += xn[i] * W[v * d + i];
            m = l[v] > m ? l[v] : m;
        }
        for (int64_t v = 0; v < V; v++)
            z += exp(l[v] - m);
        s += log(z) + m - l[tgt[t]];
    }
    free(xn), free(l);
    return scale * s;
}

static void head_backward_should_match_reference_and_eval_nll(void **state)
{
    (void)state;
    enum { T = 41, D = 16, V = 37 }; /* T - 1 > WQ_HEAD_ROW_BLOCK: two panels */
    wq_model_cfg cfg = {.hidden_size = D, .vocab_size = V, .rms_norm_eps = 1e-5};
    float x[T * D], nw[D], W[V * D], dx[T * D];
    double xd[T * D], nwd[D], Wd[V * D], fd[T * D], got[T * D];
    int32_t tgt[T - 1];
    wq_test_fill_normal(x, T * D, 1.0f, 11);
    wq_test_fill_normal(nw, D, 1.0f, 12);
    wq_test_fill_normal(W, V * D, 0.5f, 13);
    for (int t = 0; t < T - 1; t++)
        tgt[t] = (int32_t)((t * 7 + 3) % V);
    tgt[4] = -1; /* skipped position */
    for (int i = 0; i < T * D; i++)
        xd[i] = x[i];
    for (int i = 0; i < D; i++)
        nwd[i] = nw[i];
    for (int i = 0; i < V * D; i++)
        Wd[i] = W[i];
    const double scale = 1.0 / 39.0, eps = (double)(float)cfg.rms_norm_eps;
    void *ws =
        malloc(wq_kern_head_backward_workspace_bytes(&cfg) + wq_kern_head_workspace_bytes(&cfg));
    int64_t n = 0;
    double nll = wq_kern_head_nll_backward(&cfg, nw, W, x, T, tgt, scale, dx, ws, &n);
    assert_int_equal(n, T - 2);
    /* the loss is exactly what eval sums */
    float xc[T * D];
    memcpy(xc, x, sizeof x);
    double nll_eval = wq_kern_head_nll(&cfg, nw, W, xc, T, tgt, ws, NULL, NULL);
    assert_true(nll == nll_eval);
    assert_true(fabs(nll * scale - head_ref(xd, nwd, Wd, tgt, T, D, V, eps, scale)) <
                1e-5 * nll * scale);
    /* gradient: the float path against finite differences of the double reference */
    for (int i = 0; i < T * D; i++) {
        double xp[T * D], xm[T * D];
        memcpy(xp, xd, sizeof xd), memcpy(xm, xd, sizeof xd);
        xp[i] += FD_H, xm[i] -= FD_H;
        fd[i] = (head_ref(xp, nwd, Wd, tgt, T, D, V, eps, scale) -
                 head_ref(xm, nwd, Wd, tgt, T, D, V, eps, scale)) /
                (2 * FD_H);
        got[i] = dx[i];
    }
    double e = rel_err(got, fd, T * D);
    print_message("head (float path): rel err %.3g\n", e);
    assert_true(e < 1e-4); /* fp32 logits, dlogits and products */
    /* the last position and the skipped one get no gradient from the loss */
    for (int i = 0; i < D; i++)
        assert_true(dx[(T - 1) * D + i] == 0.0f && dx[4 * D + i] == 0.0f);
    free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ce_backward_should_match_finite_differences),
        cmocka_unit_test(rmsnorm_backward_should_match_finite_differences),
        cmocka_unit_test(head_backward_should_match_reference_and_eval_nll),
    };
    return cmocka_run_group_tests_name("kern_loss", tests, NULL, NULL);
}
