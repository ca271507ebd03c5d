/* test_kern_backward.c: the block backward pass (src/kernels/kern_backward.c) against central
 * finite differences in double. For every piece (linear, RMSNorm, RoPE, causal GQA attention,
 * SwiGLU) and the whole block, L = sum(R .* f(inputs)) with a random R, so dL/dy = R; each analytic
 * gradient (the _f64 instantiation) is compared with (L(p + h) - L(p - h)) / 2h for EVERY element
 * of every input and weight, normwise: ||fd - an|| / ||an|| < 1e-6 (h = 1e-5: truncation ~h^2,
 * rounding ~1e-16/h, both far below). Shapes are small and random-ish, incl. GQA (4/2, 6/1), MHA,
 * ragged T (1, 3, 5, 7), odd widths, qkv biases. Then the _f32 instantiation against _f64 on the
 * same data (same formulas: agreement to fp32 rounding). The chain of n blocks (AutoRound n_blocks)
 * is checked the same way for every weight of every block, and a chain of one is the block bit for
 * bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern_backward.h"
#include "kernels/kern_llama.h"
#include "wq_testutil.h"

#define FD_H 1e-5
#define TOL_FD 1e-6
#define TOL_F32 2e-4

static double *rnd(size_t n, double sd, uint64_t seed)
{
    double *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    wq_test_rng r = {seed};
    for (size_t i = 0; i < n; i++)
        p[i] = sd * (double)wq_test_normal(&r);
    return p;
}

static double *zeros(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* L as a function of the current contents of the perturbed arrays. */
typedef double (*loss_fn)(void *ctx);

/* Normwise relative error of the analytic gradient `an` of L w.r.t. p[0..n) vs central FD. */
static double fd_check(loss_fn L, void *ctx, double *p, const double *an, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double v = p[i];
        p[i] = v + FD_H;
        const double lp = L(ctx);
        p[i] = v - FD_H;
        const double lm = L(ctx);
        p[i] = v;
        const double fd = (lp - lm) / (2 * FD_H);
        num += (fd - an[i]) * (fd - an[i]);
        den += an[i] * an[i];
    }
    /* a gradient that is exactly zero (q/k at T = 1: one softmax entry) is checked absolutely */
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#define CHECK(name, L, ctx, p, an, n)                                                              \
    do {                                                                                           \
        const double e_ = fd_check(L, ctx, p, an, n);                                              \
        if (!(e_ < TOL_FD)) print_error("%s: rel err %.3g\n", name, e_);                           \
        assert_true(e_ < TOL_FD);                                                                  \
    } while (0)

/* ---- linear -------------------------------------------------------------------------------- */
typedef struct {
    double *x, *w, *b, *R, *y;
    int64_t T, in, out;
} lin_ctx;

static double lin_loss(void *c_)
{
    lin_ctx *c = c_;
    for (int64_t t = 0; t < c->T; t++)
        for (int64_t o = 0; o < c->out; o++) {
            double s = c->b[o];
            for (int64_t i = 0; i < c->in; i++)
                s += c->x[t * c->in + i] * c->w[o * c->in + i];
            c->y[t * c->out + o] = s;
        }
    return dot(c->y, c->R, (size_t)(c->T * c->out));
}

static void test_linear(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{1, 3, 2}, {5, 7, 4}, {4, 16, 9}};
    for (int s = 0; s < 3; s++) {
        lin_ctx c = {.T = shapes[s][0], .in = shapes[s][1], .out = shapes[s][2]};
        const size_t nx = (size_t)(c.T * c.in), nw = (size_t)(c.out * c.in), ny = (size_t)(c.T * c.out);
        c.x = rnd(nx, 1, 11 + s);
        c.w = rnd(nw, 0.5, 12 + s);
        c.b = rnd((size_t)c.out, 0.5, 13 + s);
        c.R = rnd(ny, 1, 14 + s);
        c.y = zeros(ny);
        double *dx = zeros(nx), *dw = zeros(nw), *db = zeros((size_t)c.out);
        wq_kern_bwd_linear_f64(dx, dw, db, c.R, c.x, c.w, c.T, c.in, c.out);
        CHECK("linear dx", lin_loss, &c, c.x, dx, nx);
        CHECK("linear dw", lin_loss, &c, c.w, dw, nw);
        CHECK("linear db", lin_loss, &c, c.b, db, (size_t)c.out);
        free(c.x), free(c.w), free(c.b), free(c.R), free(c.y), free(dx), free(dw), free(db);
    }
}

/* ---- RMSNorm ------------------------------------------------------------------------------- */
typedef struct {
    double *x, *w, *R, *y;
    int64_t T, d;
} rms_ctx;

static double rms_loss(void *c_)
{
    rms_ctx *c = c_;
    /* independent formula: y = w x / sqrt(mean x^2 + eps) */
    for (int64_t t = 0; t < c->T; t++) {
        double ss = 0;
        for (int64_t i = 0; i < c->d; i++)
            ss += c->x[t * c->d + i] * c->x[t * c->d + i];
        const double r = 1 / sqrt(ss / (double)c->d + 1e-5);
        for (int64_t i = 0; i < c->d; i++)
            c->y[t * c->d + i] = c->w[i] * c->x[t * c->d + i] * r;
    }
    return dot(c->y, c->R, (size_t)(c->T * c->d));
}

static void test_rmsnorm(void **state)
{
    (void)state;
    const int64_t shapes[][2] = {{1, 2}, {3, 5}, {6, 17}};
    for (int s = 0; s < 3; s++) {
        rms_ctx c = {.T = shapes[s][0], .d = shapes[s][1]};
        const size_t n = (size_t)(c.T * c.d);
        c.x = rnd(n, 1, 21 + s);
        c.w = rnd((size_t)c.d, 1, 22 + s);
        c.R = rnd(n, 1, 23 + s);
        c.y = zeros(n);
        double *r = zeros((size_t)c.T), *y = zeros(n), *dx = zeros(n), *dw = zeros((size_t)c.d);
        wq_kern_bwd_rmsnorm_fwd_f64(y, r, c.x, c.w, c.T, c.d, 1e-5);
        rms_loss(&c);
        for (size_t i = 0; i < n; i++)
            assert_true(fabs(y[i] - c.y[i]) < 1e-12 * (1 + fabs(c.y[i])));
        wq_kern_bwd_rmsnorm_f64(dx, dw, c.R, c.x, c.w, r, c.T, c.d);
        CHECK("rmsnorm dx", rms_loss, &c, c.x, dx, n);
        CHECK("rmsnorm dw", rms_loss, &c, c.w, dw, (size_t)c.d);
        free(c.x), free(c.w), free(c.R), free(c.y), free(r), free(y), free(dx), free(dw);
    }
}

/* ---- RoPE ---------------------------------------------------------------------------------- */
typedef struct {
    double *x, *R, *y, *cs, *sn;
    int64_t T, H, D;
} rope_ctx;

static double rope_loss(void *c_)
{
    rope_ctx *c = c_;
    const size_t n = (size_t)(c->T * c->H * c->D);
    memcpy(c->y, c->x, n * sizeof *c->y);
    wq_kern_bwd_rope_fwd_f64(c->y, c->T, c->H, c->D, c->cs, c->sn);
    return dot(c->y, c->R, n);
}

static void test_rope(void **state)
{
    (void)state;
    rope_ctx c = {.T = 7, .H = 3, .D = 6};
    const size_t n = (size_t)(c.T * c.H * c.D);
    c.x = rnd(n, 1, 31);
    c.R = rnd(n, 1, 32);
    c.y = zeros(n);
    c.cs = zeros((size_t)(c.T * c.D / 2));
    c.sn = zeros((size_t)(c.T * c.D / 2));
    wq_kern_bwd_rope_tables_f64(c.D, 100.0, c.T, c.cs, c.sn);
    /* table spot check: position 3, i = 1 -> angle 3 * 100^(-2/6) */
    assert_true(fabs(c.cs[3 * 3 + 1] - cos(3 * pow(100.0, -2.0 / 6))) < 1e-15);
    double *dx = zeros(n);
    memcpy(dx, c.R, n * sizeof *dx);
    wq_kern_bwd_rope_f64(dx, c.T, c.H, c.D, c.cs, c.sn);
    CHECK("rope dx", rope_loss, &c, c.x, dx, n);
    free(c.x), free(c.R), free(c.y), free(c.cs), free(c.sn), free(dx);
}

/* ---- attention ----------------------------------------------------------------------------- */
typedef struct {
    double *q, *k, *v, *R, *y;
    int64_t T, H, Hk, D;
} att_ctx;

/* Independent naive causal GQA attention (plain loops). */
static double att_loss(void *c_)
{
    att_ctx *c = c_;
    const int64_t qd = c->H * c->D, kd = c->Hk * c->D, grp = c->H / c->Hk;
    double p[16];
    for (int64_t h = 0; h < c->H; h++) {
        const int64_t g = h / grp;
        for (int64_t i = 0; i < c->T; i++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j <= i; j++) {
                double s = 0;
                for (int64_t e = 0; e < c->D; e++)
                    s += c->q[i * qd + h * c->D + e] * c->k[j * kd + g * c->D + e];
                p[j] = s / sqrt((double)c->D);
                mx = fmax(mx, p[j]);
            }
            for (int64_t j = 0; j <= i; j++)
                sum += (p[j] = exp(p[j] - mx));
            for (int64_t e = 0; e < c->D; e++) {
                double o = 0;
                for (int64_t j = 0; j <= i; j++)
                    o += p[j] / sum * c->v[j * kd + g * c->D + e];
                c->y[i * qd + h * c->D + e] = o;
            }
        }
    }
    return dot(c->y, c->R, (size_t)(c->T * qd));
}

static void test_attention(void **state)
{
    (void)state;
    const int64_t shapes[][4] = {{1, 2, 1, 4}, {5, 4, 2, 4}, {7, 6, 1, 2}, {3, 3, 3, 8}};
    for (int s = 0; s < 4; s++) {
        att_ctx c = {.T = shapes[s][0], .H = shapes[s][1], .Hk = shapes[s][2], .D = shapes[s][3]};
        const size_t nq = (size_t)(c.T * c.H * c.D), nk = (size_t)(c.T * c.Hk * c.D);
        c.q = rnd(nq, 1, 41 + s);
        c.k = rnd(nk, 1, 42 + s);
        c.v = rnd(nk, 1, 43 + s);
        c.R = rnd(nq, 1, 44 + s);
        c.y = zeros(nq);
        double *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk), *o = zeros(nq);
        void *ws = malloc(wq_kern_bwd_attention_workspace_bytes_f64(c.T));
        assert_non_null(ws);
        wq_kern_bwd_attention_fwd_f64(o, c.q, c.k, c.v, c.T, c.H, c.Hk, c.D, ws);
        att_loss(&c);
        for (size_t i = 0; i < nq; i++)
            assert_true(fabs(o[i] - c.y[i]) < 1e-12);
        wq_kern_bwd_attention_f64(dq, dk, dv, c.R, c.q, c.k, c.v, c.T, c.H, c.Hk, c.D, ws);
        CHECK("attention dq", att_loss, &c, c.q, dq, nq);
        CHECK("attention dk", att_loss, &c, c.k, dk, nk);
        CHECK("attention dv", att_loss, &c, c.v, dv, nk);
        free(c.q), free(c.k), free(c.v), free(c.R), free(c.y), free(dq), free(dk), free(dv);
        free(o), free(ws);
    }
}

/* ---- SwiGLU -------------------------------------------------------------------------------- */
typedef struct {
    double *g, *u, *R;
    int64_t n;
} swi_ctx;

static double swi_loss(void *c_)
{
    swi_ctx *c = c_;
    double s = 0;
    for (int64_t i = 0; i < c->n; i++)
        s += c->R[i] * c->g[i] / (1 + exp(-c->g[i])) * c->u[i];
    return s;
}

static void test_swiglu(void **state)
{
    (void)state;
    swi_ctx c = {.n = 37};
    c.g = rnd(37, 3, 51);
    c.u = rnd(37, 1, 52);
    c.R = rnd(37, 1, 53);
    double *dg = zeros(37), *du = zeros(37);
    wq_kern_bwd_swiglu_f64(dg, du, c.R, c.g, c.u, 37);
    CHECK("swiglu dg", swi_loss, &c, c.g, dg, 37);
    CHECK("swiglu du", swi_loss, &c, c.u, du, 37);
    free(c.g), free(c.u), free(c.R), free(dg), free(du);
}

/* ---- whole block --------------------------------------------------------------------------- */
enum { P_AN, P_WQ, P_WK, P_WV, P_WO, P_BQ, P_BK, P_BV, P_MN, P_WG, P_WU, P_WD, P_COUNT };

typedef struct {
    wq_model_cfg cfg;
    int64_t B, T;
    double *p[P_COUNT];
    size_t n[P_COUNT];
    double *x, *y, *R, *cs, *sn;
    void *act, *ws;
} blk_ctx;

static wq_block_weights_f64 blk_w(const blk_ctx *c)
{
    wq_block_weights_f64 w = {c->p[P_AN], c->p[P_WQ], c->p[P_WK], c->p[P_WV], c->p[P_WO],
                              c->p[P_BQ], c->p[P_BK], c->p[P_BV], c->p[P_MN], c->p[P_WG],
                              c->p[P_WU], c->p[P_WD]};
    return w;
}

static double blk_loss(void *c_)
{
    blk_ctx *c = c_;
    const wq_block_weights_f64 w = blk_w(c);
    wq_kern_bwd_block_forward_f64(&c->cfg, &w, c->x, c->y, c->B, c->T, c->cs, c->sn, c->act,
                                  c->ws);
    return dot(c->y, c->R, (size_t)(c->B * c->T * c->cfg.hidden_size));
}

static void blk_setup(blk_ctx *c, int64_t B, int64_t T, int64_t d, int64_t H, int64_t Hk,
                      int64_t D, int64_t F, bool bias, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->cfg.hidden_size = d, c->cfg.n_heads = H, c->cfg.n_kv_heads = Hk, c->cfg.head_dim = D;
    c->cfg.intermediate_size = F, c->cfg.rms_norm_eps = 1e-5, c->cfg.rope_theta = 10000;
    c->B = B, c->T = T;
    const size_t qd = (size_t)(H * D), kd = (size_t)(Hk * D), ud = (size_t)d, uF = (size_t)F;
    const size_t n[P_COUNT] = {ud,      qd * ud, kd * ud, kd * ud, ud * qd, qd,
                               kd,      kd,      ud,      uF * ud, uF * ud, ud * uF};
    for (int i = 0; i < P_COUNT; i++) {
        c->n[i] = n[i];
        const bool is_bias = i == P_BQ || i == P_BK || i == P_BV;
        if (is_bias && !bias) continue;
        const bool is_norm = i == P_AN || i == P_MN;
        c->p[i] = rnd(n[i], is_norm ? 0.3 : 0.4, seed + (uint64_t)i);
        if (is_norm)
            for (size_t j = 0; j < n[i]; j++)
                c->p[i][j] += 1;
    }
    const size_t nx = (size_t)(B * T * d);
    c->x = rnd(nx, 1, seed + 100);
    c->R = rnd(nx, 1, seed + 101);
    c->y = zeros(nx);
    c->cs = zeros((size_t)(T * D / 2));
    c->sn = zeros((size_t)(T * D / 2));
    wq_kern_bwd_rope_tables_f64(D, 10000.0, T, c->cs, c->sn);
    c->act = malloc(wq_kern_bwd_block_act_bytes(&c->cfg, B, T, sizeof(double)));
    c->ws = malloc(wq_kern_bwd_block_workspace_bytes(&c->cfg, B, T, sizeof(double)));
    assert_non_null(c->act);
    assert_non_null(c->ws);
}

static void blk_free(blk_ctx *c)
{
    for (int i = 0; i < P_COUNT; i++)
        free(c->p[i]);
    free(c->x), free(c->y), free(c->R), free(c->cs), free(c->sn), free(c->act), free(c->ws);
}

static void check_block(int64_t B, int64_t T, int64_t d, int64_t H, int64_t Hk, int64_t D,
                        int64_t F, bool bias, uint64_t seed)
{
    blk_ctx c;
    blk_setup(&c, B, T, d, H, Hk, D, F, bias, seed);
    double *g[P_COUNT] = {0};
    for (int i = 0; i < P_COUNT; i++)
        if (c.p[i]) g[i] = zeros(c.n[i]);
    wq_block_grads_f64 gr = {g[P_AN], g[P_WQ], g[P_WK], g[P_WV], g[P_WO], g[P_BQ],
                             g[P_BK], g[P_BV], g[P_MN], g[P_WG], g[P_WU], g[P_WD]};
    const size_t nx = (size_t)(B * T * d);
    double *dx = zeros(nx);
    blk_loss(&c);
    const wq_block_weights_f64 w = blk_w(&c);
    wq_kern_bwd_block_backward_f64(&c.cfg, &w, c.R, dx, &gr, B, T, c.cs, c.sn, c.act, c.ws);
    static const char *names[P_COUNT] = {"attn_norm", "wq", "wk", "wv", "wo", "bq",
                                         "bk", "bv", "mlp_norm", "w_gate", "w_up", "w_down"};
    CHECK("block dx", blk_loss, &c, c.x, dx, nx);
    for (int i = 0; i < P_COUNT; i++)
        if (c.p[i]) CHECK(names[i], blk_loss, &c, c.p[i], g[i], c.n[i]);

    /* f32 instantiation on the same data: same algebra, fp32 rounding */
    float *f[P_COUNT] = {0}, *gf[P_COUNT] = {0};
    for (int i = 0; i < P_COUNT; i++) {
        if (!c.p[i]) continue;
        f[i] = malloc(c.n[i] * sizeof(float));
        gf[i] = calloc(c.n[i], sizeof(float));
        for (size_t j = 0; j < c.n[i]; j++)
            f[i][j] = (float)c.p[i][j];
    }
    float *xf = malloc(nx * sizeof *xf), *yf = malloc(nx * sizeof *yf), *Rf = malloc(nx * 4);
    float *dxf = malloc(nx * sizeof *dxf), *csf = malloc((size_t)(T * D / 2) * 4),
          *snf = malloc((size_t)(T * D / 2) * 4);
    for (size_t j = 0; j < nx; j++)
        xf[j] = (float)c.x[j], Rf[j] = (float)c.R[j];
    wq_kern_rope_tables_dim(D, 10000.0, T, csf, snf);
    void *actf = malloc(wq_kern_bwd_block_act_bytes(&c.cfg, B, T, sizeof(float)));
    void *wsf = malloc(wq_kern_bwd_block_workspace_bytes(&c.cfg, B, T, sizeof(float)));
    const wq_block_weights wf = {f[P_AN], f[P_WQ], f[P_WK], f[P_WV], f[P_WO],    f[P_BQ],
                                 f[P_BK], f[P_BV], f[P_MN], f[P_WG], f[P_WU], f[P_WD]};
    const wq_block_grads grf = {gf[P_AN], gf[P_WQ], gf[P_WK], gf[P_WV], gf[P_WO], gf[P_BQ],
                                gf[P_BK], gf[P_BV], gf[P_MN], gf[P_WG], gf[P_WU], gf[P_WD]};
    wq_kern_bwd_block_forward_f32(&c.cfg, &wf, xf, yf, B, T, csf, snf, actf, wsf);
    wq_kern_bwd_block_backward_f32(&c.cfg, &wf, Rf, dxf, &grf, B, T, csf, snf, actf, wsf);
    blk_loss(&c); /* restore y at the unperturbed point */
    double e = 0, m = 0;
    for (size_t j = 0; j < nx; j++)
        e = fmax(e, fabs(yf[j] - c.y[j])), m = fmax(m, fabs(c.y[j]));
    assert_true(e <= TOL_F32 * m);
    e = m = 0;
    for (size_t j = 0; j < nx; j++)
        e = fmax(e, fabs(dxf[j] - dx[j])), m = fmax(m, fabs(dx[j]));
    assert_true(e <= TOL_F32 * m);
    for (int i = 0; i < P_COUNT; i++) {
        if (!c.p[i]) continue;
        e = m = 0;
        for (size_t j = 0; j < c.n[i]; j++)
            e = fmax(e, fabs(gf[i][j] - g[i][j])), m = fmax(m, fabs(g[i][j]));
        if (!(e <= TOL_F32 * m)) print_error("f32 %s: %.3g of %.3g\n", names[i], e, m);
        assert_true(e <= TOL_F32 * m);
        free(f[i]), free(gf[i]);
    }
    free(xf), free(yf), free(Rf), free(dxf), free(csf), free(snf), free(actf), free(wsf);
    for (int i = 0; i < P_COUNT; i++)
        free(g[i]);
    free(dx);
    blk_free(&c);
}

static void test_block_gqa(void **state)
{
    (void)state;
    check_block(2, 5, 8, 4, 2, 4, 12, false, 1000); /* GQA 4/2 */
}

static void test_block_ragged_bias(void **state)
{
    (void)state;
    check_block(1, 7, 6, 3, 1, 2, 5, true, 2000); /* GQA 3/1, odd widths, qkv bias */
    check_block(3, 1, 4, 2, 2, 2, 3, true, 3000); /* T = 1, MHA */
}

/* Weight gradients accumulate: two calls of one sequence each == one call of both sequences. */
static void test_block_accumulates(void **state)
{
    (void)state;
    blk_ctx c;
    blk_setup(&c, 2, 3, 8, 2, 1, 4, 6, false, 4000);
    const wq_block_weights_f64 w = blk_w(&c);
    const size_t n = c.n[P_WD], nrow = (size_t)(c.T * 8);
    double *g2 = zeros(n), *g11 = zeros(n);
    wq_block_grads_f64 a = {0}, b = {0};
    a.w_down = g2, b.w_down = g11;
    blk_loss(&c);
    wq_kern_bwd_block_backward_f64(&c.cfg, &w, c.R, NULL, &a, 2, c.T, c.cs, c.sn, c.act, c.ws);
    for (int s = 0; s < 2; s++) {
        wq_kern_bwd_block_forward_f64(&c.cfg, &w, c.x + s * nrow, c.y, 1, c.T, c.cs, c.sn, c.act,
                                      c.ws);
        wq_kern_bwd_block_backward_f64(&c.cfg, &w, c.R + s * nrow, NULL, &b, 1, c.T, c.cs, c.sn,
                                       c.act, c.ws);
    }
    for (size_t j = 0; j < n; j++)
        assert_true(fabs(g2[j] - g11[j]) < 1e-12 * (1 + fabs(g2[j])));
    free(g2), free(g11);
    blk_free(&c);
}

/* ---- chain of n blocks (AutoRound n_blocks) -------------------------------------------------- */
#define CHAIN_MAX 3
typedef struct {
    int n;
    blk_ctx b[CHAIN_MAX]; /* b[0] holds x, R, the RoPE tables and y */
    void *act, *ws;
} chain_ctx;

static void chain_weights(const chain_ctx *c, wq_block_weights_f64 *w)
{
    for (int j = 0; j < c->n; j++)
        w[j] = blk_w(&c->b[j]);
}

static double chain_loss(void *c_)
{
    chain_ctx *c = c_;
    const blk_ctx *b = &c->b[0];
    wq_block_weights_f64 w[CHAIN_MAX] = {{0}};
    chain_weights(c, w);
    wq_kern_bwd_chain_forward_f64(&b->cfg, w, c->n, b->x, b->y, b->B, b->T, b->cs, b->sn, c->act,
                                  c->ws);
    return dot(b->y, b->R, (size_t)(b->B * b->T * b->cfg.hidden_size));
}

/* Independent reference of the chain forward: the blocks one after the other through
 * wq_kern_bwd_block_forward_f64 with a fresh buffer per step. */
static void chain_reference(const chain_ctx *c, double *y)
{
    const blk_ctx *b = &c->b[0];
    const size_t nx = (size_t)(b->B * b->T * b->cfg.hidden_size);
    double *t = zeros(nx);
    memcpy(y, b->x, nx * sizeof *y);
    for (int j = 0; j < c->n; j++) {
        const wq_block_weights_f64 w = blk_w(&c->b[j]);
        wq_kern_bwd_block_forward_f64(&b->cfg, &w, y, t, b->B, b->T, b->cs, b->sn, b->act, b->ws);
        memcpy(y, t, nx * sizeof *y);
    }
    free(t);
}

/* Gradients of every weight of every block and of x through a chain of n blocks vs central FD,
 * and the f32 chain vs the f64 one. */
static void check_chain(int n, int64_t B, int64_t T, int64_t d, int64_t H, int64_t Hk, int64_t D,
                        int64_t F, bool bias, uint64_t seed)
{
    chain_ctx c = {.n = n};
    for (int j = 0; j < n; j++)
        blk_setup(&c.b[j], B, T, d, H, Hk, D, F, bias, seed + 1000 * (uint64_t)j);
    const wq_model_cfg *cfg = &c.b[0].cfg;
    c.act = malloc(wq_kern_bwd_chain_act_bytes(cfg, n, B, T, sizeof(double)));
    c.ws = malloc(wq_kern_bwd_chain_workspace_bytes(cfg, B, T, sizeof(double)));
    assert_non_null(c.act);
    assert_non_null(c.ws);
    const size_t nx = (size_t)(B * T * d);
    /* the forward is the composition of the blocks */
    double *yref = zeros(nx);
    chain_reference(&c, yref);
    chain_loss(&c);
    for (size_t i = 0; i < nx; i++)
        assert_true(c.b[0].y[i] == yref[i]);
    double *g[CHAIN_MAX][P_COUNT] = {{0}};
    wq_block_grads_f64 gr[CHAIN_MAX] = {{0}};
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < P_COUNT; i++)
            if (c.b[j].p[i]) g[j][i] = zeros(c.b[j].n[i]);
        gr[j] = (wq_block_grads_f64){g[j][P_AN], g[j][P_WQ], g[j][P_WK], g[j][P_WV],
                                     g[j][P_WO], g[j][P_BQ], g[j][P_BK], g[j][P_BV],
                                     g[j][P_MN], g[j][P_WG], g[j][P_WU], g[j][P_WD]};
    }
    double *dx = zeros(nx);
    wq_block_weights_f64 w[CHAIN_MAX] = {{0}};
    chain_weights(&c, w);
    wq_kern_bwd_chain_backward_f64(cfg, w, n, c.b[0].R, dx, gr, B, T, c.b[0].cs, c.b[0].sn, c.act,
                                   c.ws);
    CHECK("chain dx", chain_loss, &c, c.b[0].x, dx, nx);
    static const char *names[P_COUNT] = {"attn_norm", "wq", "wk",       "wv",     "wo",   "bq",
                                         "bk",        "bv", "mlp_norm", "w_gate", "w_up", "w_down"};
    for (int j = 0; j < n; j++)
        for (int i = 0; i < P_COUNT; i++)
            if (c.b[j].p[i]) {
                char name[64];
                snprintf(name, sizeof name, "chain block %d %s", j, names[i]);
                CHECK(name, chain_loss, &c, c.b[j].p[i], g[j][i], c.b[j].n[i]);
            }

    /* f32 chain on the same data (no dx: the first block's input gradient is skipped) */
    float *f[CHAIN_MAX][P_COUNT] = {{0}}, *gf[CHAIN_MAX][P_COUNT] = {{0}};
    wq_block_weights wf[CHAIN_MAX] = {{0}};
    wq_block_grads grf[CHAIN_MAX] = {{0}};
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < P_COUNT; i++) {
            if (!c.b[j].p[i]) continue;
            f[j][i] = malloc(c.b[j].n[i] * sizeof(float));
            gf[j][i] = calloc(c.b[j].n[i], sizeof(float));
            for (size_t k = 0; k < c.b[j].n[i]; k++)
                f[j][i][k] = (float)c.b[j].p[i][k];
        }
        wf[j] = (wq_block_weights){f[j][P_AN], f[j][P_WQ], f[j][P_WK], f[j][P_WV],
                                   f[j][P_WO], f[j][P_BQ], f[j][P_BK], f[j][P_BV],
                                   f[j][P_MN], f[j][P_WG], f[j][P_WU], f[j][P_WD]};
        grf[j] = (wq_block_grads){gf[j][P_AN], gf[j][P_WQ], gf[j][P_WK], gf[j][P_WV],
                                  gf[j][P_WO], gf[j][P_BQ], gf[j][P_BK], gf[j][P_BV],
                                  gf[j][P_MN], gf[j][P_WG], gf[j][P_WU], gf[j][P_WD]};
    }
    float *xf = malloc(nx * 4), *yf = malloc(nx * 4), *Rf = malloc(nx * 4);
    float *csf = malloc((size_t)(T * D / 2) * 4), *snf = malloc((size_t)(T * D / 2) * 4);
    for (size_t k = 0; k < nx; k++)
        xf[k] = (float)c.b[0].x[k], Rf[k] = (float)c.b[0].R[k];
    wq_kern_rope_tables_dim(D, 10000.0, T, csf, snf);
    void *actf = malloc(wq_kern_bwd_chain_act_bytes(cfg, n, B, T, sizeof(float)));
    void *wsf = malloc(wq_kern_bwd_chain_workspace_bytes(cfg, B, T, sizeof(float)));
    wq_kern_bwd_chain_forward_f32(cfg, wf, n, xf, yf, B, T, csf, snf, actf, wsf);
    wq_kern_bwd_chain_backward_f32(cfg, wf, n, Rf, NULL, grf, B, T, csf, snf, actf, wsf);
    chain_loss(&c);
    double e = 0, m = 0;
    for (size_t k = 0; k < nx; k++)
        e = fmax(e, fabs(yf[k] - c.b[0].y[k])), m = fmax(m, fabs(c.b[0].y[k]));
    assert_true(e <= TOL_F32 * m);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < P_COUNT; i++) {
            if (!c.b[j].p[i]) continue;
            e = m = 0;
            for (size_t k = 0; k < c.b[j].n[i]; k++)
                e = fmax(e, fabs(gf[j][i][k] - g[j][i][k])), m = fmax(m, fabs(g[j][i][k]));
            if (!(e <= TOL_F32 * m))
                print_error("f32 chain %d %s: %.3g of %.3g\n", j, names[i], e, m);
            assert_true(e <= TOL_F32 * m);
            free(f[j][i]), free(gf[j][i]), free(g[j][i]);
        }
    free(xf), free(yf), free(Rf), free(csf), free(snf), free(actf), free(wsf);
    free(dx), free(yref), free(c.act), free(c.ws);
    for (int j = 0; j < n; j++)
        blk_free(&c.b[j]);
}

static void test_chain(void **state)
{
    (void)state;
    check_chain(2, 2, 4, 8, 4, 2, 4, 10, false, 5000); /* two blocks, GQA 4/2, B = 2 */
    check_chain(3, 1, 5, 6, 3, 1, 2, 5, true, 6000);   /* three blocks, qkv bias, odd widths */
}

/* A chain of one block is the block, bit for bit (f32: AutoRound n_blocks = 1 is unchanged). */
static void test_chain_of_one(void **state)
{
    (void)state;
    blk_ctx c;
    blk_setup(&c, 1, 6, 8, 2, 1, 4, 6, false, 7000);
    const wq_model_cfg *cfg = &c.cfg;
    const int64_t T = c.T, d = 8, D = 4, nx = T * d;
    float *p[P_COUNT] = {0}, *g1[P_COUNT] = {0}, *g2[P_COUNT] = {0};
    for (int i = 0; i < P_COUNT; i++) {
        if (!c.p[i]) continue;
        p[i] = malloc(c.n[i] * 4), g1[i] = calloc(c.n[i], 4), g2[i] = calloc(c.n[i], 4);
        for (size_t k = 0; k < c.n[i]; k++)
            p[i][k] = (float)c.p[i][k];
    }
    const wq_block_weights w = {p[P_AN], p[P_WQ], p[P_WK], p[P_WV], p[P_WO], p[P_BQ],
                                p[P_BK], p[P_BV], p[P_MN], p[P_WG], p[P_WU], p[P_WD]};
    const wq_block_grads a = {g1[P_AN], g1[P_WQ], g1[P_WK], g1[P_WV], g1[P_WO], g1[P_BQ],
                              g1[P_BK], g1[P_BV], g1[P_MN], g1[P_WG], g1[P_WU], g1[P_WD]};
    const wq_block_grads b = {g2[P_AN], g2[P_WQ], g2[P_WK], g2[P_WV], g2[P_WO], g2[P_BQ],
                              g2[P_BK], g2[P_BV], g2[P_MN], g2[P_WG], g2[P_WU], g2[P_WD]};
    float *x = malloc((size_t)nx * 4), *R = malloc((size_t)nx * 4), *y1 = malloc((size_t)nx * 4),
          *y2 = malloc((size_t)nx * 4), *dx1 = malloc((size_t)nx * 4),
          *dx2 = malloc((size_t)nx * 4), *cs = malloc((size_t)(T * D / 2) * 4),
          *sn = malloc((size_t)(T * D / 2) * 4);
    for (int64_t k = 0; k < nx; k++)
        x[k] = (float)c.x[k], R[k] = (float)c.R[k];
    wq_kern_rope_tables_dim(D, 10000.0, T, cs, sn);
    void *act = malloc(wq_kern_bwd_chain_act_bytes(cfg, 1, 1, T, 4));
    void *ws = malloc(wq_kern_bwd_chain_workspace_bytes(cfg, 1, T, 4));
    wq_kern_bwd_block_forward_f32(cfg, &w, x, y1, 1, T, cs, sn, act, ws);
    wq_kern_bwd_block_backward_f32(cfg, &w, R, dx1, &a, 1, T, cs, sn, act, ws);
    wq_kern_bwd_chain_forward_f32(cfg, &w, 1, x, y2, 1, T, cs, sn, act, ws);
    wq_kern_bwd_chain_backward_f32(cfg, &w, 1, R, dx2, &b, 1, T, cs, sn, act, ws);
    assert_memory_equal(y1, y2, (size_t)nx * 4);
    assert_memory_equal(dx1, dx2, (size_t)nx * 4);
    for (int i = 0; i < P_COUNT; i++)
        if (c.p[i]) {
            assert_memory_equal(g1[i], g2[i], c.n[i] * 4);
            free(p[i]), free(g1[i]), free(g2[i]);
        }
    free(x), free(R), free(y1), free(y2), free(dx1), free(dx2), free(cs), free(sn), free(act),
        free(ws);
    blk_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_block_gqa),
        cmocka_unit_test(test_block_ragged_bias),
        cmocka_unit_test(test_block_accumulates),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_chain_of_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
