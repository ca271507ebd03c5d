/* test_kern_llama.c: the fp32 Llama decoder kernels
 * (src/kernels/kern_{llama,attn,block,llama_ref}.c) against naive double references written here
 * with plain loops, on random small shapes (GQA 8/4, 4/1, MHA, odd T, qkv bias, captures), the BLAS
 * paths against their scalar `_ref` kernels, the batched/chunked block against the per-sequence one
 * (every step plan, capture pointers and the streaming hook), then the real stories260K checkpoint:
 * greedy decode from BOS must reproduce llama2.c's ids exactly (step by step, and teacher-forced
 * through the batched chunked path), and TinyStories perplexity must match the PyTorch reference.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_model_cfg.h"
#include "kernels/kern_llama.h"
#include "model/dataset.h"
#include "model/st_reader.h"
#include "model/tok_sp.h"
#include "wq_testutil.h"

/* Error of an fp32 kernel against the double reference, relative to the largest |ref| of the
 * output (fp32 dot products of length <= 200 stay well below these). */
#define WQ_TOL_LLAMA_PIECE 2e-6
#define WQ_TOL_LLAMA_BLOCK 2e-5
#define WQ_TOL_LLAMA_CHUNK 1e-5    /* same math, only the BLAS row count M differs */
#define WQ_TOL_LLAMA_ROPE_ABS 2e-5 /* fp32 angle p * inv_freq for p < 100: ~100 * 1.5 ulp */
#define WQ_TOL_LLAMA_NLL 1e-4      /* absolute, per position (logits rounded to fp32) */
#define WQ_TOL_LLAMA_PPL_REL 5e-4  /* 0.05 % vs reference-ppl.json */

#define HF_DIR WQ_ASSETS_DIR "/stories260K-hf"
#define GREEDY_IDS WQ_ASSETS_DIR "/stories260K-llama2c/greedy_t0_ids.txt"
#define STORIES WQ_ASSETS_DIR "/text/tinystories-val-500.txt"
#define REF_PPL 4.961197378973241
#define REF_TOKENS 36658

/* ---------------------------------------------------------------------------------------------
 * helpers */

static void *xalloc(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    assert_non_null(p);
    return p;
}

/* Exactly `bytes` (no slack), so a sanitizer build catches any write past a workspace size query.
 */
static void *walloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    assert_non_null(p);
    return p;
}

static float *randf(size_t n, float stddev, uint64_t seed)
{
    float *p = xalloc(n * sizeof *p);
    wq_test_fill_normal(p, n, stddev, seed);
    return p;
}

static double *dalloc(size_t n)
{
    return xalloc(n * sizeof(double));
}

/* max |got - ref| / max |ref| (absolute when ref is all zero). */
static double rel_err(const double *ref, const float *got, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= num)) num = e; /* NaN propagates */
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return den > 0 ? num / den : num;
}

static void check_close(const char *what, const double *ref, const float *got, size_t n, double tol,
                        uint64_t seed)
{
    double e = rel_err(ref, got, n);
    if (!(e <= tol)) {
        print_error("%s: relative error %.3g > %.3g (seed 0x%llx)\n", what, e, tol,
                    (unsigned long long)seed);
        fail();
    }
}

static void widen(double *d, const float *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
}

static wq_model_cfg small_cfg(int64_t d, int64_t H, int64_t Hkv, int64_t D, int64_t F, int64_t V)
{
    wq_model_cfg c;
    memset(&c, 0, sizeof c);
    strcpy(c.model_type, "llama");
    c.hidden_size = d;
    c.intermediate_size = F;
    c.n_layers = 1;
    c.n_heads = H;
    c.n_kv_heads = Hkv;
    c.head_dim = D;
    c.vocab_size = V;
    c.max_position_embeddings = 4096;
    c.rope_theta = 10000.0;
    c.rms_norm_eps = 1e-5;
    return c;
}

/* ---------------------------------------------------------------------------------------------
 * naive double references */

static void ref_linear(double *y, const double *x, const float *w, const float *b, int64_t T,
                       int64_t in, int64_t out)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++)
                s += x[t * in + i] * (double)w[o * in + i];
            y[t * out + o] = s;
        }
}

static void ref_rmsnorm(double *y, const double *x, const float *w, int64_t T, int64_t d,
                        double eps)
{
    for (int64_t t = 0; t < T; t++) {
        double ss = 0.0;
        for (int64_t i = 0; i < d; i++)
            ss += x[t * d + i] * x[t * d + i];
        double r = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t i = 0; i < d; i++)
            y[t * d + i] = (double)w[i] * x[t * d + i] * r;
    }
}

/* rotate-half RoPE with exact double angles p * theta^(-2i/D). */
static void ref_rope(double *x, int64_t T, int64_t nh, int64_t D, double theta)
{
    int64_t half = D / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < half; i++) {
                double a = (double)t * pow(theta, -2.0 * (double)i / (double)D);
                double c = cos(a), s = sin(a);
                double *lo = x + t * nh * D + h * D;
                double u = lo[i], v = lo[i + half];
                lo[i] = u * c - v * s;
                lo[i + half] = v * c + u * s;
            }
}

static void ref_attention(double *out, const double *q, const double *k, const double *v, int64_t T,
                          int64_t H, int64_t Hkv, int64_t D)
{
    double *p = dalloc((size_t)T);
    for (int64_t h = 0; h < H; h++) {
        int64_t g = h / (H / Hkv);
        for (int64_t i = 0; i < T; i++) {
            double mx = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j <= i; j++) {
                double s = 0.0;
                for (int64_t e = 0; e < D; e++)
                    s += q[i * H * D + h * D + e] * k[j * Hkv * D + g * D + e];
                p[j] = s / sqrt((double)D);
                if (p[j] > mx) mx = p[j];
            }
            for (int64_t j = 0; j <= i; j++)
                sum += (p[j] = exp(p[j] - mx));
            for (int64_t e = 0; e < D; e++) {
                double o = 0.0;
                for (int64_t j = 0; j <= i; j++)
                    o += p[j] / sum * v[j * Hkv * D + g * D + e];
                out[i * H * D + h * D + e] = o;
            }
        }
    }
    free(p);
}

static double silu(double z)
{
    return z / (1.0 + exp(-z));
}

/* Intermediates of the reference block, for checking the captures. */
typedef struct {
    double *x_attn, *x_o, *x_mlp, *x_down, *x_out;
} ref_block_out;

static void ref_block(const wq_model_cfg *c, const wq_block_weights *w, const float *x_in,
                      int64_t T, ref_block_out *r)
{
    int64_t d = c->hidden_size, H = c->n_heads, Hkv = c->n_kv_heads, D = c->head_dim;
    int64_t F = c->intermediate_size;
    double *x = dalloc((size_t)(T * d)), *q = dalloc((size_t)(T * H * D));
    double *k = dalloc((size_t)(T * Hkv * D)), *v = dalloc((size_t)(T * Hkv * D));
    double *br = dalloc((size_t)(T * d)), *up = dalloc((size_t)(T * F));
    widen(x, x_in, (size_t)(T * d));
    ref_rmsnorm(r->x_attn, x, w->attn_norm, T, d, c->rms_norm_eps);
    ref_linear(q, r->x_attn, w->wq, w->bq, T, d, H * D);
    ref_linear(k, r->x_attn, w->wk, w->bk, T, d, Hkv * D);
    ref_linear(v, r->x_attn, w->wv, w->bv, T, d, Hkv * D);
    ref_rope(q, T, H, D, c->rope_theta);
    ref_rope(k, T, Hkv, D, c->rope_theta);
    ref_attention(r->x_o, q, k, v, T, H, Hkv, D);
    ref_linear(br, r->x_o, w->wo, NULL, T, H * D, d);
    for (int64_t i = 0; i < T * d; i++)
        x[i] += br[i];
    ref_rmsnorm(r->x_mlp, x, w->mlp_norm, T, d, c->rms_norm_eps);
    ref_linear(r->x_down, r->x_mlp, w->w_gate, NULL, T, d, F);
    ref_linear(up, r->x_mlp, w->w_up, NULL, T, d, F);
    for (int64_t i = 0; i < T * F; i++)
        r->x_down[i] = silu(r->x_down[i]) * up[i];
    ref_linear(br, r->x_down, w->w_down, NULL, T, F, d);
    for (int64_t i = 0; i < T * d; i++)
        r->x_out[i] = x[i] + br[i];
    free(x), free(q), free(k), free(v), free(br), free(up);
}

/* ---------------------------------------------------------------------------------------------
 * pieces */

static void linear_should_match_reference_with_and_without_bias(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{1, 5, 3}, {7, 64, 48}, {13, 172, 64}, {33, 31, 17}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t T = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        uint64_t seed = WQ_TEST_SEED + s;
        float *x = randf((size_t)(T * in), 1.0f, seed),
              *w = randf((size_t)(out * in), 0.2f, seed + 1);
        float *b = randf((size_t)out, 0.5f, seed + 2), *y = xalloc((size_t)(T * out) * sizeof *y);
        double *xd = dalloc((size_t)(T * in)), *yd = dalloc((size_t)(T * out));
        widen(xd, x, (size_t)(T * in));
        for (int bias = 0; bias < 2; bias++) {
            wq_kern_linear(y, x, w, bias ? b : NULL, T, in, out);
            ref_linear(yd, xd, w, bias ? b : NULL, T, in, out);
            check_close("linear", yd, y, (size_t)(T * out), WQ_TOL_LLAMA_PIECE, seed);
            wq_kern_linear_ref(y, x, w, bias ? b : NULL, T, in, out);
            check_close("linear_ref", yd, y, (size_t)(T * out), WQ_TOL_LLAMA_PIECE / 4, seed);
        }
        free(x), free(w), free(b), free(y), free(xd), free(yd);
    }
}

static void rmsnorm_should_match_reference_in_place_and_out_of_place(void **state)
{
    (void)state;
    const int64_t T = 9, d = 67;
    float *x = randf((size_t)(T * d), 3.0f, WQ_TEST_SEED),
          *w = randf((size_t)d, 1.0f, WQ_TEST_SEED + 1);
    float *y = xalloc((size_t)(T * d) * sizeof *y);
    double *xd = dalloc((size_t)(T * d)), *yd = dalloc((size_t)(T * d));
    widen(xd, x, (size_t)(T * d));
    ref_rmsnorm(yd, xd, w, T, d, 1e-5);
    wq_kern_rmsnorm(y, x, w, T, d, 1e-5);
    check_close("rmsnorm", yd, y, (size_t)(T * d), WQ_TOL_LLAMA_PIECE, WQ_TEST_SEED);
    wq_kern_rmsnorm(x, x, w, T, d, 1e-5);
    assert_memory_equal(x, y, (size_t)(T * d) * sizeof *x);
    /* an all-zero row stays finite (eps) and becomes zero */
    memset(x, 0, (size_t)d * sizeof *x);
    wq_kern_rmsnorm(y, x, w, 1, d, 1e-5);
    for (int64_t i = 0; i < d; i++)
        assert_true(y[i] == 0.0f);
    free(x), free(w), free(y), free(xd), free(yd);
}

static void rope_tables_should_follow_hf_fp32_procedure(void **state)
{
    (void)state;
    const int64_t T = 97, D = 16, half = D / 2;
    float *c = xalloc((size_t)(T * half) * sizeof *c), *s = xalloc((size_t)(T * half) * sizeof *s);
    wq_model_cfg cfg = small_cfg(64, 4, 4, D, 8, 8);
    wq_kern_rope_tables(&cfg, T, c, s);
    double *cd = dalloc((size_t)(T * half)), *sd = dalloc((size_t)(T * half));
    for (int64_t p = 0; p < T; p++)
        for (int64_t i = 0; i < half; i++) {
            /* the fp32 procedure, spelled out independently */
            float inv = 1.0f / powf(10000.0f, (float)(2 * i) / (float)D);
            float a = (float)p * inv;
            assert_true(c[p * half + i] == (float)cos((double)a));
            assert_true(s[p * half + i] == (float)sin((double)a));
            double ae = (double)p * pow(10000.0, -2.0 * (double)i / (double)D);
            cd[p * half + i] = cos(ae);
            sd[p * half + i] = sin(ae);
        }
    check_close("rope cos vs exact", cd, c, (size_t)(T * half), WQ_TOL_LLAMA_ROPE_ABS, 0);
    check_close("rope sin vs exact", sd, s, (size_t)(T * half), WQ_TOL_LLAMA_ROPE_ABS, 0);
    /* position 0 is the identity, and inv_freq[0] = 1 */
    for (int64_t i = 0; i < half; i++)
        assert_true(c[i] == 1.0f && s[i] == 0.0f);
    assert_true(s[1 * half] == (float)sin(1.0));
    free(c), free(s), free(cd), free(sd);
}

static void rope_apply_should_rotate_halves_not_interleaved(void **state)
{
    (void)state;
    const int64_t T = 11, nh = 3, D = 8, half = D / 2;
    float *x = randf((size_t)(T * nh * D), 1.0f, WQ_TEST_SEED + 7);
    float *c = xalloc((size_t)(T * half) * sizeof *c), *s = xalloc((size_t)(T * half) * sizeof *s);
    double *xd = dalloc((size_t)(T * nh * D));
    widen(xd, x, (size_t)(T * nh * D));
    wq_kern_rope_tables_dim(D, 10000.0, T, c, s);
    wq_kern_rope_apply(x, T, nh, D, c, s);
    ref_rope(xd, T, nh, D, 10000.0);
    check_close("rope apply", xd, x, (size_t)(T * nh * D), WQ_TOL_LLAMA_ROPE_ABS, WQ_TEST_SEED + 7);
    /* hand-worked: x = e_0 at position 1 rotates into (cos 1, 0,.., sin 1 at index D/2) */
    float e[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    wq_kern_rope_apply(e, 1, 1, D, c + half, s + half);
    assert_true(e[0] == (float)cos(1.0) && e[half] == (float)sin(1.0));
    assert_true(e[1] == 0.0f && e[half - 1] == 0.0f && e[half + 1] == 0.0f);
    free(x), free(c), free(s), free(xd);
}

static void attention_should_match_reference_for_gqa_shapes(void **state)
{
    (void)state;
    /* {T, H, Hkv, D}: GQA 8/4 and 4/1, MHA, odd T, T crossing the WQ_ATTN_ROW_BLOCK panel */
    const int64_t cases[][4] = {{1, 8, 4, 8},
                                {7, 8, 4, 8},
                                {13, 4, 1, 16},
                                {5, 2, 2, 4},
                                {WQ_ATTN_ROW_BLOCK + 7, 8, 4, 8},
                                {2 * WQ_ATTN_ROW_BLOCK + 1, 4, 1, 6}};
    for (size_t cs = 0; cs < sizeof cases / sizeof cases[0]; cs++) {
        int64_t T = cases[cs][0], H = cases[cs][1], Hkv = cases[cs][2], D = cases[cs][3];
        uint64_t seed = WQ_TEST_SEED + 100 + cs;
        size_t nq = (size_t)(T * H * D), nk = (size_t)(T * Hkv * D);
        float *q = randf(nq, 1.5f, seed), *k = randf(nk, 1.5f, seed + 1),
              *v = randf(nk, 1.0f, seed + 2);
        float *o = xalloc(nq * sizeof *o);
        void *ws = walloc(wq_kern_attention_workspace_bytes(T));
        memset(ws, 0xff, wq_kern_attention_workspace_bytes(T)); /* NaN garbage must not leak */
        double *qd = dalloc(nq), *kd = dalloc(nk), *vd = dalloc(nk), *od = dalloc(nq);
        widen(qd, q, nq), widen(kd, k, nk), widen(vd, v, nk);
        wq_kern_attention(o, q, k, v, T, H, Hkv, D, ws);
        ref_attention(od, qd, kd, vd, T, H, Hkv, D);
        check_close("attention", od, o, nq, WQ_TOL_LLAMA_PIECE * 4, seed);
        /* row 0 attends only to itself: exactly v[0] of its kv head */
        for (int64_t h = 0; h < H; h++)
            for (int64_t e = 0; e < D; e++)
                assert_true(o[h * D + e] == v[(h / (H / Hkv)) * D + e]);
        /* the scalar reference kernel */
        float *o2 = xalloc(nq * sizeof *o2);
        memset(ws, 0xff, wq_kern_attention_workspace_bytes(T));
        wq_kern_attention_ref(o2, q, k, v, T, H, Hkv, D, ws);
        check_close("attention_ref", od, o2, nq, WQ_TOL_LLAMA_PIECE, seed);
        /* query row ranges (chunked prefill): bitwise when both ends are panel boundaries (or the
         * sequence end), close otherwise */
        const int64_t B0 = WQ_ATTN_ROW_BLOCK;
        const int64_t ranges[][2] = {{0, T},
                                     {0, T < B0 ? T : B0},
                                     {T / 3, T - T / 3},
                                     {T > B0 ? B0 : T / 2, T > B0 ? T - B0 : T - T / 2},
                                     {T / 2, (T - T / 2 + 1) / 2},
                                     {T - 1, 1}};
        for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
            int64_t t0 = ranges[i][0], n = ranges[i][1], qd1 = H * D;
            memset(o2, 0xff, nq * sizeof *o2);
            wq_kern_attention_rows(o2, q + t0 * qd1, k, v, t0, n, H, Hkv, D, ws);
            if (t0 % B0 == 0 && ((t0 + n) % B0 == 0 || t0 + n == T))
                assert_memory_equal(o2, o + t0 * qd1, (size_t)(n * qd1) * sizeof *o2);
            else
                check_close("attention_rows", od + t0 * qd1, o2, (size_t)(n * qd1),
                            WQ_TOL_LLAMA_PIECE * 4, seed);
        }
        free(o2);
        free(q), free(k), free(v), free(o), free(ws), free(qd), free(kd), free(vd), free(od);
    }
}

static void mlp_should_match_reference(void **state)
{
    (void)state;
    const int64_t T = 5, d = 24, F = 43;
    uint64_t seed = WQ_TEST_SEED + 200;
    float *x = randf((size_t)(T * d), 1.0f, seed), *wg = randf((size_t)(F * d), 0.3f, seed + 1);
    float *wu = randf((size_t)(F * d), 0.3f, seed + 2),
          *wd = randf((size_t)(d * F), 0.3f, seed + 3);
    float *g = xalloc((size_t)(T * F) * 4), *u = xalloc((size_t)(T * F) * 4),
          *y = xalloc((size_t)(T * d) * 4);
    double *xd = dalloc((size_t)(T * d)), *gd = dalloc((size_t)(T * F)),
           *ud = dalloc((size_t)(T * F));
    double *yd = dalloc((size_t)(T * d));
    widen(xd, x, (size_t)(T * d));
    wq_kern_mlp(y, x, wg, wu, wd, T, d, F, g, u);
    ref_linear(gd, xd, wg, NULL, T, d, F);
    ref_linear(ud, xd, wu, NULL, T, d, F);
    for (int64_t i = 0; i < T * F; i++)
        gd[i] = silu(gd[i]) * ud[i];
    ref_linear(yd, gd, wd, NULL, T, F, d);
    check_close("mlp hidden", gd, g, (size_t)(T * F), WQ_TOL_LLAMA_PIECE, seed);
    check_close("mlp", yd, y, (size_t)(T * d), WQ_TOL_LLAMA_PIECE * 4, seed);
    /* silu saturation: large negative -> -0, large positive -> identity */
    float gg[3] = {-200.0f, 200.0f, 0.0f}, uu[3] = {1.0f, 1.0f, 5.0f};
    wq_kern_swiglu(gg, uu, 3);
    assert_true(gg[0] == 0.0f && gg[1] == 200.0f && gg[2] == 0.0f);
    free(x), free(wg), free(wu), free(wd), free(g), free(u), free(y), free(xd), free(gd), free(ud);
    free(yd);
}

/* ---------------------------------------------------------------------------------------------
 * block */

typedef struct {
    float *p[12];
} rand_block;

static wq_block_weights make_block(const wq_model_cfg *c, bool bias, uint64_t seed, rand_block *own)
{
    int64_t d = c->hidden_size, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int64_t F = c->intermediate_size;
    float sd = 1.0f / sqrtf((float)d);
    wq_block_weights w;
    memset(own, 0, sizeof *own);
    own->p[0] = randf((size_t)d, 0.3f, seed);
    for (int64_t i = 0; i < d; i++)
        own->p[0][i] += 1.0f;
    own->p[1] = randf((size_t)(qd * d), sd, seed + 1);
    own->p[2] = randf((size_t)(kvd * d), sd, seed + 2);
    own->p[3] = randf((size_t)(kvd * d), sd, seed + 3);
    own->p[4] = randf((size_t)(d * qd), 1.0f / sqrtf((float)qd), seed + 4);
    own->p[5] = randf((size_t)d, 0.3f, seed + 5);
    for (int64_t i = 0; i < d; i++)
        own->p[5][i] += 1.0f;
    own->p[6] = randf((size_t)(F * d), sd, seed + 6);
    own->p[7] = randf((size_t)(F * d), sd, seed + 7);
    own->p[8] = randf((size_t)(d * F), 1.0f / sqrtf((float)F), seed + 8);
    if (bias) {
        own->p[9] = randf((size_t)qd, 0.5f, seed + 9);
        own->p[10] = randf((size_t)kvd, 0.5f, seed + 10);
        own->p[11] = randf((size_t)kvd, 0.5f, seed + 11);
    }
    w = (wq_block_weights){.attn_norm = own->p[0],
                           .wq = own->p[1],
                           .wk = own->p[2],
                           .wv = own->p[3],
                           .wo = own->p[4],
                           .mlp_norm = own->p[5],
                           .w_gate = own->p[6],
                           .w_up = own->p[7],
                           .w_down = own->p[8],
                           .bq = own->p[9],
                           .bk = own->p[10],
                           .bv = own->p[11]};
    return w;
}

static void free_block(rand_block *own)
{
    for (int i = 0; i < 12; i++)
        free(own->p[i]);
}

static void block_should_match_reference_and_capture_exact_operands(void **state)
{
    (void)state;
    /* {d, H, Hkv, D, F, T, bias} */
    const int64_t cases[][7] = {{32, 8, 4, 4, 40, 7, 0},
                                {48, 4, 1, 12, 100, 13, 1},
                                {24, 2, 2, 12, 33, 1, 0},
                                {64, 8, 4, 8, 172, 70, 1},
                                {40, 4, 2, 10, 50, 5, 1}};
    for (size_t cs = 0; cs < sizeof cases / sizeof cases[0]; cs++) {
        const int64_t *k = cases[cs];
        wq_model_cfg c = small_cfg(k[0], k[1], k[2], k[3], k[4], 16);
        if (k[6]) strcpy(c.model_type, "qwen2"), c.attention_bias = true;
        int64_t T = k[5], d = c.hidden_size, qd = c.n_heads * c.head_dim, F = c.intermediate_size;
        uint64_t seed = WQ_TEST_SEED + 300 + 20 * cs;
        rand_block own;
        wq_block_weights w = make_block(&c, k[6] != 0, seed, &own);
        float *x0 = randf((size_t)(T * d), 1.0f, seed + 15);
        float *x = xalloc((size_t)(T * d) * 4), *x2 = xalloc((size_t)(T * d) * 4);
        float *rc = xalloc((size_t)(T * c.head_dim / 2) * 4),
              *rs = xalloc((size_t)(T * c.head_dim / 2) * 4);
        size_t wsb = wq_kern_block_workspace_bytes(&c, T);
        void *ws = walloc(wsb);
        wq_block_capture cap = {xalloc((size_t)(T * d) * 4), xalloc((size_t)(T * qd) * 4),
                                xalloc((size_t)(T * d) * 4), xalloc((size_t)(T * F) * 4)};
        ref_block_out r = {dalloc((size_t)(T * d)), dalloc((size_t)(T * qd)),
                           dalloc((size_t)(T * d)), dalloc((size_t)(T * F)),
                           dalloc((size_t)(T * d))};

        wq_kern_rope_tables(&c, T, rc, rs);
        memcpy(x, x0, (size_t)(T * d) * 4);
        memset(ws, 0xff, wsb);
        wq_kern_block_forward(&c, &w, x, T, rc, rs, ws, &cap);
        ref_block(&c, &w, x0, T, &r);
        check_close("block x_attn", r.x_attn, cap.x_attn, (size_t)(T * d), WQ_TOL_LLAMA_BLOCK,
                    seed);
        check_close("block x_o", r.x_o, cap.x_o, (size_t)(T * qd), WQ_TOL_LLAMA_BLOCK, seed);
        check_close("block x_mlp", r.x_mlp, cap.x_mlp, (size_t)(T * d), WQ_TOL_LLAMA_BLOCK, seed);
        check_close("block x_down", r.x_down, cap.x_down, (size_t)(T * F), WQ_TOL_LLAMA_BLOCK,
                    seed);
        check_close("block out", r.x_out, x, (size_t)(T * d), WQ_TOL_LLAMA_BLOCK, seed);

        /* captures are bitwise the operands: rebuild the block output from them */
        float *t1 = xalloc((size_t)(T * d) * 4), *t2 = xalloc((size_t)(T * d) * 4);
        wq_kern_rmsnorm(t1, x0, w.attn_norm, T, d, c.rms_norm_eps);
        assert_memory_equal(t1, cap.x_attn, (size_t)(T * d) * 4);
        wq_kern_linear(t2, cap.x_o, w.wo, NULL, T, qd, d);
        for (int64_t i = 0; i < T * d; i++)
            t2[i] += x0[i]; /* residual after attention */
        wq_kern_rmsnorm(t1, t2, w.mlp_norm, T, d, c.rms_norm_eps);
        assert_memory_equal(t1, cap.x_mlp, (size_t)(T * d) * 4);
        wq_kern_linear(t1, cap.x_down, w.w_down, NULL, T, F, d);
        for (int64_t i = 0; i < T * d; i++)
            t1[i] += t2[i];
        assert_memory_equal(t1, x, (size_t)(T * d) * 4);

        /* NULL captures (and a partial set) change nothing; garbage workspace does not matter */
        memcpy(x2, x0, (size_t)(T * d) * 4);
        memset(ws, 0x00, wsb);
        wq_kern_block_forward(&c, &w, x2, T, rc, rs, ws, NULL);
        assert_memory_equal(x2, x, (size_t)(T * d) * 4);
        float *down2 = xalloc((size_t)(T * F) * 4);
        wq_block_capture part = {.x_down = down2};
        memcpy(x2, x0, (size_t)(T * d) * 4);
        wq_kern_block_forward(&c, &w, x2, T, rc, rs, ws, &part);
        assert_memory_equal(x2, x, (size_t)(T * d) * 4);
        assert_memory_equal(down2, cap.x_down, (size_t)(T * F) * 4);
        free(down2);

        /* the scalar reference block (no BLAS) agrees with the double reference too */
        size_t rwsb = wq_kern_block_ref_workspace_bytes(&c, T);
        void *rws = walloc(rwsb);
        memset(rws, 0xff, rwsb);
        memcpy(x2, x0, (size_t)(T * d) * 4);
        wq_kern_block_forward_ref(&c, &w, x2, T, rc, rs, rws, &cap);
        check_close("block_ref x_o", r.x_o, cap.x_o, (size_t)(T * qd), WQ_TOL_LLAMA_BLOCK / 4,
                    seed);
        check_close("block_ref x_down", r.x_down, cap.x_down, (size_t)(T * F),
                    WQ_TOL_LLAMA_BLOCK / 4, seed);
        check_close("block_ref out", r.x_out, x2, (size_t)(T * d), WQ_TOL_LLAMA_BLOCK / 4, seed);
        free(rws);

        free(t1), free(t2), free(x0), free(x), free(x2), free(rc), free(rs), free(ws);
        free(cap.x_attn), free(cap.x_o), free(cap.x_mlp), free(cap.x_down);
        free(r.x_attn), free(r.x_o), free(r.x_mlp), free(r.x_down), free(r.x_out);
        free_block(&own);
    }
}

/* ---------------------------------------------------------------------------------------------
 * batched, chunked block and the capture hook */

/* Records what the streaming hook sees and checks the contract of wq_block_capture_fn. */
typedef struct {
    float *dst[WQ_BLOCK_SITE_COUNT];
    int64_t cols[WQ_BLOCK_SITE_COUNT], next_row[WQ_BLOCK_SITE_COUNT];
    int64_t T, step_rows, calls;
    int last_site, bad;
} hook_rec;

static void hook_rec_init(hook_rec *h, const wq_model_cfg *c, int64_t B, int64_t T, int64_t chunk)
{
    memset(h, 0, sizeof *h);
    h->cols[WQ_BLOCK_SITE_ATTN] = h->cols[WQ_BLOCK_SITE_MLP] = c->hidden_size;
    h->cols[WQ_BLOCK_SITE_O] = c->n_heads * c->head_dim;
    h->cols[WQ_BLOCK_SITE_DOWN] = c->intermediate_size;
    for (int s = 0; s < WQ_BLOCK_SITE_COUNT; s++)
        h->dst[s] = xalloc((size_t)(B * T * h->cols[s]) * sizeof(float));
    h->T = T;
    h->step_rows = wq_kern_block_step_rows(T, chunk);
    h->last_site = WQ_BLOCK_SITE_COUNT - 1;
}

static void hook_rec_free(hook_rec *h)
{
    for (int s = 0; s < WQ_BLOCK_SITE_COUNT; s++)
        free(h->dst[s]);
}

static void hook_collect(void *ctx, wq_block_site site, int64_t row0, int64_t rows, int64_t cols,
                         const float *x)
{
    hook_rec *h = ctx;
    h->calls++;
    if ((int)site < 0 || site >= WQ_BLOCK_SITE_COUNT) {
        h->bad++;
        return;
    }
    /* ATTN, O, MLP, DOWN per step; ascending rows; each row once; right width */
    if ((int)site != (h->last_site + 1) % WQ_BLOCK_SITE_COUNT) h->bad++;
    if (row0 != h->next_row[site] || rows < 1 || rows > h->step_rows || cols != h->cols[site])
        h->bad++;
    /* a step is part of one sequence, or whole sequences */
    bool one_seq = row0 / h->T == (row0 + rows - 1) / h->T;
    bool whole = row0 % h->T == 0 && rows % h->T == 0;
    if (!one_seq && !whole) h->bad++;
    h->last_site = (int)site;
    h->next_row[site] = row0 + rows;
    memcpy(h->dst[site] + row0 * cols, x, (size_t)(rows * cols) * sizeof *x);
}

static void block_step_plan_should_bound_rows_and_memory(void **state)
{
    (void)state;
    /* {T, chunk, rows}: split sequences round up to the attention panel, whole sequences group */
    const int64_t cases[][3] = {{130, 0, 130},   {130, 1, 64},    {130, 17, 64},   {130, 64, 64},
                                {130, 65, 128},  {130, 128, 128}, {130, 129, 130}, {130, 200, 130},
                                {130, 260, 260}, {130, 400, 390}, {7, 0, 7},       {7, 100, 98},
                                {1, 5, 5},       {70, 64, 64},    {70, 65, 70}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(wq_kern_block_step_rows(cases[i][0], cases[i][1]), cases[i][2]);
    /* a 4096-wide layer over 4096 tokens: chunking must cut the scratch by far (only K/V stay T) */
    wq_model_cfg c = small_cfg(4096, 32, 8, 128, 11008, 32000);
    size_t full = wq_kern_block_workspace_bytes(&c, 4096);
    size_t chunked = wq_kern_block_workspace_bytes_chunked(&c, 4096, 256);
    assert_true(full == wq_kern_block_workspace_bytes_chunked(&c, 4096, 0));
    assert_true(chunked * 7 < full); /* ~7.6x: K/V [4096][1024] x2 now dominate */
    assert_true(chunked < (size_t)(4096 * 1024 * 2 + 256 * (4096 + 2 * 11008)) * 4 + (16u << 20));
}

static void block_batch_should_match_per_sequence_for_every_chunking(void **state)
{
    (void)state;
    /* {d, H, Hkv, D, F, bias} x T x chunk; B = 3 sequences of different data */
    const int64_t cfgs[][6] = {{32, 8, 4, 4, 40, 0}, {48, 4, 1, 12, 100, 1}, {64, 8, 4, 8, 172, 0}};
    const int64_t Ts[] = {1, 7, 70, 130};
    const int64_t B = 3;
    int64_t runs = 0, bitwise = 0;
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        const int64_t *k = cfgs[ci];
        wq_model_cfg c = small_cfg(k[0], k[1], k[2], k[3], k[4], 16);
        if (k[5]) strcpy(c.model_type, "qwen2"), c.attention_bias = true;
        const int64_t d = c.hidden_size, qd = c.n_heads * c.head_dim, F = c.intermediate_size;
        const int64_t cols[4] = {d, qd, d, F};
        uint64_t seed = WQ_TEST_SEED + 700 + 40 * ci;
        rand_block own;
        wq_block_weights w = make_block(&c, k[5] != 0, seed, &own);
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
            const int64_t T = Ts[ti], n = B * T;
            float *x0 = randf((size_t)(n * d), 1.0f, seed + 20 + ti),
                  *want = xalloc((size_t)(n * d) * 4);
            float *x = xalloc((size_t)(n * d) * 4);
            float *rc = xalloc((size_t)(T * c.head_dim / 2) * 4),
                  *rs = xalloc((size_t)(T * c.head_dim / 2) * 4);
            float *wcap[4], *gcap[4];
            for (int s = 0; s < 4; s++) {
                wcap[s] = xalloc((size_t)(n * cols[s]) * 4);
                gcap[s] = xalloc((size_t)(n * cols[s]) * 4);
            }
            wq_kern_rope_tables(&c, T, rc, rs);

            /* per sequence, unchunked (the engine's path), checked against the double reference */
            void *ws1 = walloc(wq_kern_block_workspace_bytes(&c, T));
            memcpy(want, x0, (size_t)(n * d) * 4);
            ref_block_out r = {dalloc((size_t)(T * d)), dalloc((size_t)(T * qd)),
                               dalloc((size_t)(T * d)), dalloc((size_t)(T * F)),
                               dalloc((size_t)(T * d))};
            for (int64_t b = 0; b < B; b++) {
                wq_block_capture cap = {wcap[0] + b * T * d, wcap[1] + b * T * qd,
                                        wcap[2] + b * T * d, wcap[3] + b * T * F};
                wq_kern_block_forward(&c, &w, want + b * T * d, T, rc, rs, ws1, &cap);
                ref_block(&c, &w, x0 + b * T * d, T, &r);
                check_close("per-sequence block", r.x_out, want + b * T * d, (size_t)(T * d),
                            WQ_TOL_LLAMA_BLOCK, seed);
            }
            free(r.x_attn), free(r.x_o), free(r.x_mlp), free(r.x_down), free(r.x_out), free(ws1);

            const int64_t chunks[] = {0, 1, 17, 64, 65, 100, T, T + 1, 2 * T, 3 * T, 5 * T};
            for (size_t hi = 0; hi < sizeof chunks / sizeof chunks[0]; hi++) {
                const int64_t chunk = chunks[hi];
                size_t wsb = wq_kern_block_workspace_bytes_chunked(&c, T, chunk);
                void *ws = walloc(wsb);
                memset(ws, 0xff, wsb); /* NaN garbage must not leak */
                hook_rec h;
                hook_rec_init(&h, &c, B, T, chunk);
                wq_block_capture cap = {gcap[0], gcap[1], gcap[2], gcap[3], hook_collect, &h};
                memcpy(x, x0, (size_t)(n * d) * 4);
                wq_kern_block_forward_batch(&c, &w, x, B, T, chunk, rc, rs, ws, &cap);
                if (h.bad)
                    print_error("hook contract broken: T %lld chunk %lld\n", (long long)T,
                                (long long)chunk);
                assert_int_equal(h.bad, 0);
                for (int s = 0; s < 4; s++) {
                    assert_int_equal(h.next_row[s], n);
                    /* hook and pointers deliver the same operands */
                    assert_memory_equal(h.dst[s], gcap[s], (size_t)(n * cols[s]) * 4);
                }
                /* against the per-sequence path: fp32-rounding close, usually bitwise */
                int64_t widest = d > qd ? d : qd;
                widest = widest > F ? widest : F;
                double *wd = dalloc((size_t)(n * widest));
                bool same = !memcmp(x, want, (size_t)(n * d) * 4);
                widen(wd, want, (size_t)(n * d));
                check_close("chunked block out", wd, x, (size_t)(n * d), WQ_TOL_LLAMA_CHUNK, seed);
                for (int s = 0; s < 4; s++) {
                    widen(wd, wcap[s], (size_t)(n * cols[s]));
                    check_close("chunked capture", wd, gcap[s], (size_t)(n * cols[s]),
                                WQ_TOL_LLAMA_CHUNK, seed);
                    same = same && !memcmp(wcap[s], gcap[s], (size_t)(n * cols[s]) * 4);
                }
                runs++;
                bitwise += same;
                /* chunk 0 with B = 1 is the per-sequence path itself */
                if (chunk == 0) {
                    memcpy(x, x0, (size_t)(T * d) * 4);
                    wq_kern_block_forward_batch(&c, &w, x, 1, T, 0, rc, rs, ws, NULL);
                    assert_memory_equal(x, want, (size_t)(T * d) * 4);
                }
                free(wd), free(ws);
                hook_rec_free(&h);
            }
            for (int s = 0; s < 4; s++)
                free(wcap[s]), free(gcap[s]);
            free(x0), free(want), free(x), free(rc), free(rs);
        }
        free_block(&own);
    }
    print_message(
        "batched/chunked block: %lld of %lld step plans bitwise equal to the per-sequence "
        "path (the rest within %.0e)\n",
        (long long)bitwise, (long long)runs, WQ_TOL_LLAMA_CHUNK);
}

static void block_batch_should_be_a_noop_for_empty_batch(void **state)
{
    (void)state;
    wq_model_cfg c = small_cfg(16, 2, 1, 8, 24, 16);
    rand_block own;
    wq_block_weights w = make_block(&c, false, WQ_TEST_SEED + 800, &own);
    float x[16] = {1.0f}, rc[4 * 5], rs[4 * 5];
    void *ws = walloc(wq_kern_block_workspace_bytes_chunked(&c, 5, 3));
    wq_kern_rope_tables(&c, 5, rc, rs);
    wq_kern_block_forward_batch(&c, &w, x, 0, 5, 3, rc, rs, ws, NULL);
    assert_true(x[0] == 1.0f && x[1] == 0.0f);
    free(ws);
    free_block(&own);
}

/* ---------------------------------------------------------------------------------------------
 * head */

static void head_should_match_reference_nll_and_argmax(void **state)
{
    (void)state;
    const int64_t d = 20, V = 53;
    const int64_t Ts[] = {1, 2, 9, WQ_HEAD_ROW_BLOCK + 6};
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        int64_t T = Ts[ti];
        uint64_t seed = WQ_TEST_SEED + 500 + ti;
        wq_model_cfg c = small_cfg(d, 4, 4, 5, 8, V);
        float *x = randf((size_t)(T * d), 2.0f, seed), *xc = xalloc((size_t)(T * d) * 4);
        float *lm = randf((size_t)(V * d), 1.0f, seed + 1), *nw = randf((size_t)d, 0.2f, seed + 2);
        for (int64_t i = 0; i < d; i++)
            nw[i] += 1.0f;
        int32_t *tg = xalloc((size_t)T * 4);
        wq_test_rng rng = {seed};
        for (int64_t t = 0; t < T - 1; t++)
            tg[t] = (int32_t)(wq_test_next(&rng) % (uint64_t)V);
        if (T > 3) tg[2] = -1; /* skipped position */
        void *ws = walloc(wq_kern_head_workspace_bytes(&c));
        double *nll = dalloc((size_t)T);

        /* reference: double rmsnorm, double logits, exact log-softmax */
        double *xd = dalloc((size_t)(T * d)), *xn = dalloc((size_t)(T * d)),
               *ld = dalloc((size_t)(T * V));
        widen(xd, x, (size_t)(T * d));
        ref_rmsnorm(xn, xd, nw, T, d, c.rms_norm_eps);
        ref_linear(ld, xn, lm, NULL, T, d, V);
        double want = 0.0;
        int64_t want_n = 0;

        memcpy(xc, x, (size_t)(T * d) * 4);
        int32_t am = wq_kern_head_argmax(&c, nw, lm, xc, T, ws);
        assert_memory_equal(xc, x, (size_t)(T * d) * 4); /* argmax leaves x alone */
        int64_t best = 0;
        for (int64_t j = 1; j < V; j++)
            if (ld[(T - 1) * V + j] > ld[(T - 1) * V + best]) best = j;
        assert_int_equal(am, best);

        int64_t n = -1;
        double got = wq_kern_head_nll(&c, nw, lm, xc, T, tg, ws, nll, &n);
        for (int64_t t = 0; t < T - 1; t++) {
            if (tg[t] < 0) {
                assert_true(nll[t] == 0.0);
                continue;
            }
            double mx = -INFINITY, s = 0.0;
            for (int64_t j = 0; j < V; j++)
                mx = fmax(mx, ld[t * V + j]);
            for (int64_t j = 0; j < V; j++)
                s += exp(ld[t * V + j] - mx);
            double e = log(s) + mx - ld[t * V + tg[t]];
            assert_true(fabs(nll[t] - e) < WQ_TOL_LLAMA_NLL);
            want += e;
            want_n++;
        }
        assert_int_equal(n, want_n);
        assert_true(fabs(got - want) < WQ_TOL_LLAMA_NLL * (double)(want_n + 1));
        /* x was normalised in place: argmax without final_norm gives the same token */
        assert_int_equal(wq_kern_head_argmax(&c, NULL, lm, xc, T, ws), am);
        free(x), free(xc), free(lm), free(nw), free(tg), free(ws), free(nll), free(xd), free(xn),
            free(ld);
    }
}

static void embed_should_copy_rows(void **state)
{
    (void)state;
    const int64_t V = 10, d = 6;
    float *e = randf((size_t)(V * d), 1.0f, WQ_TEST_SEED + 600), x[4 * 6];
    int32_t ids[4] = {3, 0, 9, 3};
    wq_kern_embed(e, ids, 4, d, x);
    for (int t = 0; t < 4; t++)
        assert_memory_equal(x + t * d, e + ids[t] * d, (size_t)d * 4);
    free(e);
}

/* ---------------------------------------------------------------------------------------------
 * real model: stories260K */

typedef struct {
    wq_model_cfg cfg;
    float *embed, *norm;
    wq_block_weights layers[5];
    float *buf[5][9];
} tiny_model;

static float *read_tensor(wq_st_model *m, const char *name, int64_t numel)
{
    const wq_st_tensor *t = wq_st_find(m, name);
    if (!t) print_error("missing tensor %s\n", name);
    assert_non_null(t);
    assert_int_equal(t->numel, numel);
    float *p = xalloc((size_t)numel * 4);
    assert_int_equal(wq_st_read_f32(m, t, p), WQ_OK);
    return p;
}

static int tiny_setup(void **state)
{
    tiny_model *tm = calloc(1, sizeof *tm);
    wq_model_cfg *c = &tm->cfg;
    *c = small_cfg(64, 8, 4, 8, 172, 512);
    c->n_layers = 5;
    c->max_position_embeddings = 512;
    c->tie_word_embeddings = true;
    c->bos_token_id = 1;
    c->eos_token_id = 2;
    wq_st_model *m = NULL;
    if (wq_st_open(HF_DIR, &m) != WQ_OK) return -1;
    int64_t d = 64, qd = 64, kvd = 32, F = 172;
    tm->embed = read_tensor(m, "model.embed_tokens.weight", 512 * d);
    tm->norm = read_tensor(m, "model.norm.weight", d);
    for (int l = 0; l < 5; l++) {
        char n[128];
        const char *names[9] = {"input_layernorm",  "self_attn.q_proj", "self_attn.k_proj",
                                "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
                                "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
        const int64_t sizes[9] = {d, qd * d, kvd * d, kvd * d, d * qd, d, F * d, F * d, d * F};
        for (int i = 0; i < 9; i++) {
            snprintf(n, sizeof n, "model.layers.%d.%s.weight", l, names[i]);
            tm->buf[l][i] = read_tensor(m, n, sizes[i]);
        }
        float **b = tm->buf[l];
        tm->layers[l] = (wq_block_weights){.attn_norm = b[0],
                                           .wq = b[1],
                                           .wk = b[2],
                                           .wv = b[3],
                                           .wo = b[4],
                                           .mlp_norm = b[5],
                                           .w_gate = b[6],
                                           .w_up = b[7],
                                           .w_down = b[8]};
    }
    wq_st_close(m);
    *state = tm;
    return 0;
}

static int tiny_teardown(void **state)
{
    tiny_model *tm = *state;
    if (!tm) return 0;
    free(tm->embed), free(tm->norm);
    for (int l = 0; l < 5; l++)
        for (int i = 0; i < 9; i++)
            free(tm->buf[l][i]);
    free(tm);
    return 0;
}

/* Runs the 5 blocks on ids[T]; x [T][d] receives the last hidden state (before the final norm). */
static void tiny_forward(const tiny_model *tm, const int32_t *ids, int64_t T, float *x, float *rc,
                         float *rs, void *ws)
{
    wq_kern_embed(tm->embed, ids, T, tm->cfg.hidden_size, x);
    wq_kern_rope_tables(&tm->cfg, T, rc, rs);
    for (int l = 0; l < 5; l++)
        wq_kern_block_forward(&tm->cfg, &tm->layers[l], x, T, rc, rs, ws, NULL);
}

/* llama2.c's greedy decode from BOS: "[1, 403, ...]", 81 ids including BOS. */
static int read_greedy_ids(int32_t *ids, int cap)
{
    int n = 0, ch;
    FILE *f = fopen(GREEDY_IDS, "r");
    assert_non_null(f);
    while ((ch = fgetc(f)) != EOF && ch != '[') {
    }
    while (n < cap && fscanf(f, " %d ,", &ids[n]) == 1)
        n++;
    fclose(f);
    return n;
}

static void stories260k_greedy_should_reproduce_llama2c(void **state)
{
    const tiny_model *tm = *state;
    int32_t want[128];
    assert_int_equal(read_greedy_ids(want, 128), 81);

    const int64_t Tmax = 81, d = tm->cfg.hidden_size;
    float *x = xalloc((size_t)(Tmax * d) * 4), *rc = xalloc((size_t)(Tmax * 4) * 4);
    float *rs = xalloc((size_t)(Tmax * 4) * 4);
    void *ws = walloc(wq_kern_block_workspace_bytes(&tm->cfg, Tmax));
    void *hws = walloc(wq_kern_head_workspace_bytes(&tm->cfg));
    int32_t ids[81] = {1};
    for (int64_t T = 1; T < Tmax; T++) {
        tiny_forward(tm, ids, T, x, rc, rs, ws);
        ids[T] = wq_kern_head_argmax(&tm->cfg, tm->norm, tm->embed, x, T, hws);
        if (ids[T] != want[T])
            print_error("greedy step %lld: got %d want %d\n", (long long)T, ids[T], want[T]);
        assert_int_equal(ids[T], want[T]);
    }
    free(x), free(rc), free(rs), free(ws), free(hws);
}

/* The same 80 greedy steps in ONE batched, chunked forward: the sequence is causal, so the argmax
 * after every prefix of llama2.c's ids must be the next id. Two copies of the sequence in the
 * batch, split in panel-sized steps (chunk 32 -> 64 rows), then grouped (chunk 200 -> both in one
 * step). */
static void stories260k_batched_chunked_forward_should_reproduce_greedy(void **state)
{
    const tiny_model *tm = *state;
    int32_t want[128];
    assert_int_equal(read_greedy_ids(want, 128), 81);
    const int64_t T = 80, B = 2, d = tm->cfg.hidden_size, chunks[] = {32, 200};
    int32_t ids[160];
    memcpy(ids, want, 80 * sizeof *ids);
    memcpy(ids + 80, want, 80 * sizeof *ids);
    float *x = xalloc((size_t)(B * T * d) * 4), *rc = xalloc((size_t)(T * 4) * 4);
    float *rs = xalloc((size_t)(T * 4) * 4);
    void *hws = walloc(wq_kern_head_workspace_bytes(&tm->cfg));
    wq_kern_rope_tables(&tm->cfg, T, rc, rs);
    for (size_t ci = 0; ci < 2; ci++) {
        void *ws = walloc(wq_kern_block_workspace_bytes_chunked(&tm->cfg, T, chunks[ci]));
        wq_kern_embed(tm->embed, ids, B * T, d, x);
        for (int l = 0; l < 5; l++)
            wq_kern_block_forward_batch(&tm->cfg, &tm->layers[l], x, B, T, chunks[ci], rc, rs, ws,
                                        NULL);
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) {
                int32_t got =
                    wq_kern_head_argmax(&tm->cfg, tm->norm, tm->embed, x + b * T * d, t + 1, hws);
                if (got != want[t + 1])
                    print_error("chunk %lld seq %lld position %lld: got %d want %d\n",
                                (long long)chunks[ci], (long long)b, (long long)t, got,
                                want[t + 1]);
                assert_int_equal(got, want[t + 1]);
            }
        free(ws);
    }
    free(x), free(rc), free(rs), free(hws);
}

static void stories260k_tinystories_ppl_should_match_reference(void **state)
{
    const tiny_model *tm = *state;
    wq_tokenizer *tok = NULL;
    wq_text_docs docs;
    wq_seq_set set;
    memset(&docs, 0, sizeof docs);
    memset(&set, 0, sizeof set);
    assert_int_equal(wq_tok_load(HF_DIR "/tokenizer.model", &tok), WQ_OK);
    assert_int_equal(wq_data_load_stories(STORIES, 400, 500, &docs), WQ_OK);
    assert_int_equal(wq_data_eval_stories(tok, &docs, 512, &set), WQ_OK);
    /* through the streaming path: steps of 128 positions (stories are up to 512 tokens) */
    const int64_t Tmax = 512, d = tm->cfg.hidden_size, chunk = 128;
    size_t wsb = 0;
    for (int64_t s = 0; s < set.n_seqs; s++) {
        size_t b = wq_kern_block_workspace_bytes_chunked(&tm->cfg, set.seqs[s].len, chunk);
        wsb = b > wsb ? b : wsb;
    }
    float *x = xalloc((size_t)(Tmax * d) * 4), *rc = xalloc((size_t)(Tmax * 4) * 4);
    float *rs = xalloc((size_t)(Tmax * 4) * 4);
    void *ws = walloc(wsb);
    void *hws = walloc(wq_kern_head_workspace_bytes(&tm->cfg));
    double total = 0.0;
    int64_t count = 0;
    wq_kern_rope_tables(&tm->cfg, Tmax, rc, rs);
    for (int64_t s = 0; s < set.n_seqs; s++) {
        const wq_token_seq *q = &set.seqs[s];
        assert_true(q->len >= 2 && q->len <= Tmax);
        wq_kern_embed(tm->embed, q->ids, q->len, d, x);
        for (int l = 0; l < 5; l++)
            wq_kern_block_forward_batch(&tm->cfg, &tm->layers[l], x, 1, q->len, chunk, rc, rs, ws,
                                        NULL);
        int64_t n = 0;
        total +=
            wq_kern_head_nll(&tm->cfg, tm->norm, tm->embed, x, q->len, q->ids + 1, hws, NULL, &n);
        count += n;
    }
    double ppl = exp(total / (double)count);
    print_message("stories260K TinyStories 400..499: %lld tokens, nll %.10f, ppl %.6f (ref %.6f, "
                  "rel %.2e)\n",
                  (long long)count, total / (double)count, ppl, REF_PPL, fabs(ppl / REF_PPL - 1.0));
    assert_int_equal(count, REF_TOKENS);
    assert_true(fabs(ppl / REF_PPL - 1.0) < WQ_TOL_LLAMA_PPL_REL);
    wq_data_seqs_free(&set);
    wq_data_docs_free(&docs);
    wq_tok_free(tok);
    free(x), free(rc), free(rs), free(ws), free(hws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_should_match_reference_with_and_without_bias),
        cmocka_unit_test(rmsnorm_should_match_reference_in_place_and_out_of_place),
        cmocka_unit_test(rope_tables_should_follow_hf_fp32_procedure),
        cmocka_unit_test(rope_apply_should_rotate_halves_not_interleaved),
        cmocka_unit_test(attention_should_match_reference_for_gqa_shapes),
        cmocka_unit_test(mlp_should_match_reference),
        cmocka_unit_test(embed_should_copy_rows),
        cmocka_unit_test(block_should_match_reference_and_capture_exact_operands),
        cmocka_unit_test(block_step_plan_should_bound_rows_and_memory),
        cmocka_unit_test(block_batch_should_match_per_sequence_for_every_chunking),
        cmocka_unit_test(block_batch_should_be_a_noop_for_empty_batch),
        cmocka_unit_test(head_should_match_reference_nll_and_argmax),
        cmocka_unit_test_setup_teardown(stories260k_greedy_should_reproduce_llama2c, tiny_setup,
                                        tiny_teardown),
        cmocka_unit_test_setup_teardown(stories260k_batched_chunked_forward_should_reproduce_greedy,
                                        tiny_setup, tiny_teardown),
        cmocka_unit_test_setup_teardown(stories260k_tinystories_ppl_should_match_reference,
                                        tiny_setup, tiny_teardown),
    };
    return cmocka_run_group_tests_name("kern_llama", tests, NULL, NULL);
}
