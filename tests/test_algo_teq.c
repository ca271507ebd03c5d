/* test_algo_teq.c: TEQ pieces against numerics.md 6 and hand computations: the effective weight
 * Q(W a') / a' (hand-quantized case, clamp at 1e-5), the straight-through alpha gradient, the
 * training forward equal to the forward of the converted (absorbed, quantized) block, Adam steps
 * computed by hand, the linear warm-up schedule, the dataloader batches, the model backward
 * (alpha gradient) against finite differences of the loss, the forward-only loss bitwise equal to
 * the training loss, and the best-snapshot rule on a hand-made loss sequence. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "algos/algo_rtn.h"
#include "algos/algo_teq.h"
#include "core/core_qtypes.h"
#include "kernels/kern_llama.h"
#include "kernels/kern_quant.h"
#include "wq_testutil.h"

/* numerics 1.2 worked example: group [0.1, -0.3, 0.25, 0.05], 4-bit sym: scale 0.3/7, codes
 * [2, -7, 6, 1]. With a = [2, 1, 1, 1]: W a = [0.2, -0.3, 0.25, 0.05], same scale, codes
 * [5, -7, 6, 1] (0.2 * 7 / 0.3 = 4.67 -> 5); Weff = codes * scale / a. */
static void weff_should_be_quantized_scaled_weight_divided_by_alpha(void **state)
{
    (void)state;
    wq_qspec sp = wq_qspec_default(); /* int4 sym */
    sp.group_size = 4;
    const float W[4] = {0.1f, -0.3f, 0.25f, 0.05f};
    float Weff[4];
    const double s = 0.3 / 7;
    assert_int_equal(wq_algo_teq_weff(&sp, W, 1, 4, NULL, Weff), WQ_OK);
    const double e1[4] = {2 * s, -7 * s, 6 * s, 1 * s};
    for (int i = 0; i < 4; i++)
        assert_true(fabs(Weff[i] - e1[i]) < 1e-6);
    const float a[4] = {2.0f, 1.0f, 1.0f, 1.0f};
    assert_int_equal(wq_algo_teq_weff(&sp, W, 1, 4, a, Weff), WQ_OK);
    const double e2[4] = {5 * s / 2, -7 * s, 6 * s, 1 * s};
    for (int i = 0; i < 4; i++)
        assert_true(fabs(Weff[i] - e2[i]) < 1e-6);
    /* a <= 0 is clamped to 1e-5: W a' = [1e-6, -0.3, ...]: code 0, Weff[0] = 0 */
    const float an[4] = {-3.0f, 1.0f, 1.0f, 1.0f};
    float clip[4];
    wq_algo_teq_clip(an, 4, clip);
    assert_true(clip[0] == 1e-5f && clip[1] == 1.0f);
    assert_int_equal(wq_algo_teq_weff(&sp, W, 1, 4, an, Weff), WQ_OK);
    assert_true(Weff[0] == 0.0f);
}

/* y = (x / a) Q(W a)^T: with the STE dL/da[c] = sum_o G[o][c] (W[o][c] - Weff[o][c]) / a[c]. */
static void alpha_grad_should_follow_the_straight_through_formula(void **state)
{
    (void)state;
    const float G[4] = {1.0f, -2.0f, 0.5f, 4.0f}; /* [2][2] */
    const float W[4] = {0.3f, 0.2f, -0.1f, 0.7f};
    const float Weff[4] = {0.25f, 0.25f, -0.125f, 0.5f};
    const float a[2] = {2.0f, 1e-6f}; /* the second is clamped: no gradient */
    double g[2] = {10.0, 20.0};       /* accumulates */
    wq_algo_teq_alpha_grad(G, W, Weff, 2, 2, a, g);
    const double e0 = (1.0 * (0.3 - 0.25) + 0.5 * (-0.1 + 0.125)) / 2.0;
    assert_true(fabs(g[0] - (10.0 + e0)) < 1e-7);
    assert_true(g[1] == 20.0);
}

/* The training forward (Weff = Q(W a')/a', original norms) equals the forward of the converted
 * block: norms / a', W[:, c] a'[c] quantized (numerics 6 "transform"), computed here directly. */
static void training_forward_should_equal_converted_block(void **state)
{
    (void)state;
    wq_model_cfg c = {.hidden_size = 32,
                      .intermediate_size = 64,
                      .n_layers = 1,
                      .n_heads = 4,
                      .n_kv_heads = 2,
                      .head_dim = 8,
                      .vocab_size = 16,
                      .max_position_embeddings = 64,
                      .rope_theta = 10000,
                      .rms_norm_eps = 1e-5};
    enum { T = 12, d = 32, F = 64, QD = 32, KD = 16 };
    const int64_t rows[7] = {QD, KD, KD, d, F, F, d}, cols[7] = {d, d, d, QD, d, d, F};
    float *W[7], *Weff[7], *Wconv[7], an[d], mn[d], an_c[d], mn_c[d], aA[d], aM[d];
    wq_qspec sp = wq_qspec_default(); /* int4 sym */
    sp.group_size = 8;
    wq_test_fill_uniform(aA, d, 0.5f, 2.0f, 21);
    wq_test_fill_uniform(aM, d, 0.5f, 2.0f, 22);
    wq_test_fill_uniform(an, d, 0.8f, 1.2f, 23);
    wq_test_fill_uniform(mn, d, 0.8f, 1.2f, 24);
    for (int l = 0; l < 7; l++) {
        W[l] = malloc((size_t)(rows[l] * cols[l]) * sizeof(float));
        Weff[l] = malloc((size_t)(rows[l] * cols[l]) * sizeof(float));
        Wconv[l] = malloc((size_t)(rows[l] * cols[l]) * sizeof(float));
        wq_test_fill_normal(W[l], (size_t)(rows[l] * cols[l]), 0.2f, 30 + (uint64_t)l);
        const float *a = l < 3 ? aA : l == 4 || l == 5 ? aM : NULL; /* o/down: a = 1 */
        assert_int_equal(wq_algo_teq_weff(&sp, W[l], rows[l], cols[l], a, Weff[l]), WQ_OK);
        /* converted: RTN of W a (the container's weights) */
        float *Ws = malloc((size_t)(rows[l] * cols[l]) * sizeof(float));
        for (int64_t o = 0; o < rows[l]; o++)
            for (int64_t i = 0; i < cols[l]; i++)
                Ws[o * cols[l] + i] = W[l][o * cols[l] + i] * (a ? a[i] : 1.0f);
        wq_qmatrix m;
        assert_int_equal(wq_algo_rtn_quantize(&sp, "t", Ws, rows[l], cols[l], &m, NULL), WQ_OK);
        wq_kern_dequant_matrix(&m, Wconv[l]);
        wq_qmatrix_free(&m);
        free(Ws);
    }
    for (int i = 0; i < d; i++)
        an_c[i] = an[i] / aA[i], mn_c[i] = mn[i] / aM[i];
    wq_block_weights wt = {.attn_norm = an,
                           .wq = Weff[0],
                           .wk = Weff[1],
                           .wv = Weff[2],
                           .wo = Weff[3],
                           .mlp_norm = mn,
                           .w_gate = Weff[4],
                           .w_up = Weff[5],
                           .w_down = Weff[6]};
    wq_block_weights wc = {.attn_norm = an_c,
                           .wq = Wconv[0],
                           .wk = Wconv[1],
                           .wv = Wconv[2],
                           .wo = Wconv[3],
                           .mlp_norm = mn_c,
                           .w_gate = Wconv[4],
                           .w_up = Wconv[5],
                           .w_down = Wconv[6]};
    float x1[T * d], x2[T * d], cs[T * 4], sn[T * 4];
    wq_test_fill_normal(x1, T * d, 1.0f, 40);
    memcpy(x2, x1, sizeof x1);
    wq_kern_rope_tables(&c, T, cs, sn);
    void *ws = malloc(wq_kern_block_workspace_bytes(&c, T));
    wq_kern_block_forward(&c, &wt, x1, T, cs, sn, ws, NULL);
    wq_kern_block_forward(&c, &wc, x2, T, cs, sn, ws, NULL);
    double e = wq_test_max_rel_err(x2, x1, T * d, 1e-2);
    print_message("training vs converted block: max rel err %.3g\n", e);
    assert_true(e < 5e-4); /* fp32 rounding only: a wrong absorption is O(1) */
    free(ws);
    for (int l = 0; l < 7; l++)
        free(W[l]), free(Weff[l]), free(Wconv[l]);
}

/* torch.optim.Adam (betas 0.9/0.9, eps 1e-8, no weight decay), two steps by hand. */
static void adam_should_match_hand_computation(void **state)
{
    (void)state;
    wq_teq_adam a;
    assert_int_equal(wq_algo_teq_adam_init(&a, 2), WQ_OK);
    float p[2] = {1.0f, 1.0f};
    const double g1[2] = {0.5, -2.0}, g2[2] = {0.5, 1.0}, lr = 1e-3;
    wq_algo_teq_adam_step(&a, p, g1, lr);
    /* step 1: m = 0.1 g, v = 0.1 g^2, bias corrections 0.1 / sqrt(0.1): update = lr g / (|g| + eps)
     */
    assert_true(fabs(p[0] - (1.0 - 1e-3 * 0.5 / (0.5 + 1e-8))) < 1e-7);
    assert_true(fabs(p[1] - (1.0 + 1e-3 * 2.0 / (2.0 + 1e-8))) < 1e-7);
    const double p0 = p[0], p1 = p[1];
    wq_algo_teq_adam_step(&a, p, g2, lr);
    /* step 2, element 1: m = 0.9(-0.2) + 0.1(1) = -0.08, v = 0.9(0.4) + 0.1(1) = 0.46,
     * bc1 = bc2 = 1 - 0.81 = 0.19: p -= lr (m / 0.19) / (sqrt(v / 0.19) + eps) */
    const double u1 = 1e-3 * (-0.08 / 0.19) / (sqrt(0.46 / 0.19) + 1e-8);
    assert_true(fabs(p[1] - (float)(p1 - u1)) < 1e-7);
    assert_true(fabs(u1 + 2.7060e-4) < 1e-7); /* the number worked out on paper */
    /* element 0: m = 0.095, v = 0.0475 -> m^ = 0.5, v^ = 0.25: the same step as before */
    assert_true(fabs(p[0] - (float)(p0 - 1e-3 * 0.5 / (0.5 + 1e-8))) < 1e-7);
    assert_int_equal(a.t, 2);
    wq_algo_teq_adam_free(&a);
}

/* HF get_scheduler("linear"): warm-up from 0, then linear decay to 0; INC's step counts. */
static void schedule_should_warm_up_then_decay(void **state)
{
    (void)state;
    int64_t w, t;
    wq_algo_teq_schedule(1000, 0.05, 1, &w, &t);
    assert_int_equal(w, 50);
    assert_int_equal(t, 1000);
    wq_algo_teq_schedule(100, 0.05, 4, &w, &t); /* int(5) // 4 = 1, 100 // 4 = 25 */
    assert_int_equal(w, 1);
    assert_int_equal(t, 25);
    const double b = 1e-3;
    assert_true(wq_algo_teq_lr(b, 0, 5, 100) == 0.0);
    assert_true(fabs(wq_algo_teq_lr(b, 1, 5, 100) - 2e-4) < 1e-15);
    assert_true(fabs(wq_algo_teq_lr(b, 4, 5, 100) - 8e-4) < 1e-15);
    assert_true(fabs(wq_algo_teq_lr(b, 5, 5, 100) - 1e-3) < 1e-15);
    assert_true(fabs(wq_algo_teq_lr(b, 50, 5, 100) - 1e-3 * 50.0 / 95.0) < 1e-15);
    assert_true(wq_algo_teq_lr(b, 100, 5, 100) == 0.0);
    assert_true(fabs(wq_algo_teq_lr(b, 0, 0, 10) - 1e-3) < 1e-15); /* no warm-up */
}

static void batches_should_cycle_like_an_unshuffled_dataloader(void **state)
{
    (void)state;
    int64_t b, e;
    const int64_t want[5][2] = {{0, 4}, {4, 8}, {8, 10}, {0, 4}, {4, 8}};
    for (int g = 0; g < 5; g++) {
        wq_algo_teq_batch(g, 10, 4, &b, &e);
        assert_int_equal(b, want[g][0]);
        assert_int_equal(e, want[g][1]);
    }
}

/* The model backward (wq_algo_teq_seq_grad) against central differences of the loss it returns:
 * dL/da[c] (STE) is the derivative of L along Weff[:, c] += h (W - Weff)[:, c] / a'[c], so moving
 * the effective weights of one column of one linear by +-h times that direction and re-running the
 * forward must reproduce it. Two blocks, GQA, every linear of both blocks sampled. */
static void seq_grad_should_match_finite_differences_of_the_loss(void **state)
{
    (void)state;
    enum { T = 10, d = 16, F = 24, H = 2, HK = 1, D = 8, V = 11, L = 2, NL = L * 7 };
    wq_model_cfg c = {.hidden_size = d,
                      .intermediate_size = F,
                      .n_layers = L,
                      .n_heads = H,
                      .n_kv_heads = HK,
                      .head_dim = D,
                      .vocab_size = V,
                      .max_position_embeddings = 64,
                      .rope_theta = 10000,
                      .rms_norm_eps = 1e-5};
    const int64_t rows[7] = {H * D, HK * D, HK * D, d, F, F, d},
                  cols[7] = {d, d, d, H * D, d, d, F};
    wq_qspec sp = wq_qspec_default(); /* int4 sym */
    sp.group_size = 8;
    float embed[V * d], fnorm[d], head[V * d], norms[L][2][d];
    wq_test_fill_normal(embed, V * d, 1.0f, 50);
    wq_test_fill_uniform(fnorm, d, 0.8f, 1.2f, 51);
    wq_test_fill_normal(head, V * d, 0.5f, 52);
    wq_test_fill_uniform(&norms[0][0][0], L * 2 * d, 0.8f, 1.2f, 53);
    wq_teq_linear lin[NL];
    wq_block_weights blocks[L];
    int64_t n_alpha = 0;
    for (int i = 0; i < NL; i++) {
        const int l = i % 7;
        float *W = malloc((size_t)(rows[l] * cols[l]) * sizeof(float));
        wq_test_fill_normal(W, (size_t)(rows[l] * cols[l]), 0.4f, 60 + (uint64_t)i);
        lin[i] = (wq_teq_linear){.W = W,
                                 .Weff = malloc((size_t)(rows[l] * cols[l]) * sizeof(float)),
                                 .rows = rows[l],
                                 .cols = cols[l],
                                 .spec = &sp,
                                 .off = n_alpha};
        n_alpha += cols[l];
    }
    for (int b = 0; b < L; b++) {
        wq_teq_linear *li = lin + b * 7;
        blocks[b] = (wq_block_weights){.attn_norm = norms[b][0],
                                       .wq = li[0].Weff,
                                       .wk = li[1].Weff,
                                       .wv = li[2].Weff,
                                       .wo = li[3].Weff,
                                       .mlp_norm = norms[b][1],
                                       .w_gate = li[4].Weff,
                                       .w_up = li[5].Weff,
                                       .w_down = li[6].Weff};
    }
    float *alpha = malloc((size_t)n_alpha * sizeof(float));
    wq_test_fill_uniform(alpha, (size_t)n_alpha, 0.5f, 2.0f, 70);
    wq_teq_net net = {.mc = &c,
                      .embed = embed,
                      .final_norm = fnorm,
                      .lm_head = head,
                      .blocks = blocks,
                      .lin = lin,
                      .alpha = alpha,
                      .n_alpha = n_alpha};
    assert_int_equal(wq_algo_teq_update_weights(&net), WQ_OK);
    int32_t ids[T];
    wq_test_rng r = {80};
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)(wq_test_next(&r) % V);
    float cs[T * D / 2], sn[T * D / 2];
    wq_kern_rope_tables(&c, T, cs, sn);
    wq_teq_work *work;
    assert_int_equal(wq_algo_teq_work_create(&c, T, &work), WQ_OK);
    double *g = malloc((size_t)n_alpha * sizeof(double)),
           *scratch = malloc((size_t)n_alpha * sizeof(double)), nll, np, nm;
    assert_int_equal(wq_algo_teq_seq_grad(&net, ids, T, cs, sn, 1.0, work, g, &nll), WQ_OK);
    /* two columns of every linear of both blocks */
    double got[2 * NL], fd[2 * NL];
    const double h = 0.03;
    for (int i = 0; i < NL; i++)
        for (int k = 0; k < 2; k++) {
            wq_teq_linear *li = &lin[i];
            const int64_t col = k == 0 ? 1 : li->cols - 2;
            const float a = alpha[li->off + col];
            float *v = malloc((size_t)li->rows * sizeof(float)),
                  *keep = malloc((size_t)li->rows * sizeof(float));
            for (int64_t o = 0; o < li->rows; o++) {
                keep[o] = li->Weff[o * li->cols + col];
                v[o] = (li->W[o * li->cols + col] - keep[o]) / a;
            }
            for (int64_t o = 0; o < li->rows; o++)
                li->Weff[o * li->cols + col] = (float)(keep[o] + h * v[o]);
            assert_int_equal(wq_algo_teq_seq_grad(&net, ids, T, cs, sn, 1.0, work, scratch, &np),
                             WQ_OK);
            for (int64_t o = 0; o < li->rows; o++)
                li->Weff[o * li->cols + col] = (float)(keep[o] - h * v[o]);
            assert_int_equal(wq_algo_teq_seq_grad(&net, ids, T, cs, sn, 1.0, work, scratch, &nm),
                             WQ_OK);
            for (int64_t o = 0; o < li->rows; o++)
                li->Weff[o * li->cols + col] = keep[o];
            got[2 * i + k] = g[li->off + col];
            fd[2 * i + k] = (np - nm) / (2 * h);
            free(v), free(keep);
        }
    /* the forward-only loss (the snapshot rule's) is bitwise the training loss */
    double nll_fwd = 0;
    assert_int_equal(wq_algo_teq_seq_nll(&net, ids, T, cs, sn, work, &nll_fwd), WQ_OK);
    assert_true(nll_fwd == nll);
    double num = 0, den = 0;
    for (int i = 0; i < 2 * NL; i++)
        num += (got[i] - fd[i]) * (got[i] - fd[i]), den += fd[i] * fd[i];
    print_message("seq_grad: loss %.6f, %d directional derivatives, normwise rel err %.3g\n", nll,
                  2 * NL, sqrt(num / den));
    assert_true(den > 0 && sqrt(num / den) < 5e-3); /* O(h^2) and fp32 noise: ~1e-3 */
    wq_algo_teq_work_destroy(work);
    for (int i = 0; i < NL; i++)
        free((void *)lin[i].W), free(lin[i].Weff);
    free(alpha), free(g), free(scratch);
}

/* Best-snapshot rule on a hand-made sequence of full-calibration losses: evaluated at step 0
 * (alpha = 1), every 10 steps and at the last step (35); the strictly smallest finite loss wins,
 * the earliest among equal ones; when training only hurts, step 0 (RTN) is kept. */
static void snapshot_should_keep_the_earliest_strictly_best_finite_loss(void **state)
{
    (void)state;
    const int64_t due[] = {0, 10, 20, 30, 35};
    for (int64_t k = 0; k <= 35; k++) {
        int want = 0;
        for (int i = 0; i < 5; i++)
            want |= k == due[i];
        assert_int_equal(wq_algo_teq_snapshot_due(k, 10, 35), want);
    }
    assert_int_equal(wq_algo_teq_snapshot_due(7, 1, 35), 1);
    const double loss[] = {3.0, 3.1, 2.9, 2.9, NAN}; /* at the due steps */
    const int taken[] = {1, 0, 1, 0, 0};
    wq_teq_best b;
    wq_algo_teq_best_init(&b);
    assert_true(b.step == -1 && isinf(b.loss));
    for (int i = 0; i < 5; i++)
        assert_int_equal(wq_algo_teq_best_offer(&b, loss[i], due[i]), taken[i]);
    assert_true(b.step == 20 && b.loss == 2.9);
    const double worse[] = {4.25, 4.2501, INFINITY, 4.3};
    wq_algo_teq_best_init(&b);
    for (int i = 0; i < 4; i++)
        wq_algo_teq_best_offer(&b, worse[i], 10 * i);
    assert_true(b.step == 0 && b.loss == 4.25);
}

/* Reference for the exact gradient: Weff(a) = (q - z) * scale(a) / a with the codes q and zero
 * z held at those of the base alpha, scale(a) recomputed from the group's max / min (numerics 1.2)
 * in double; L(a) = sum G * Weff(a); central differences in double. */
static double held_codes_loss(const wq_qspec *sp, const float *G, const float *W, int rows,
                              int cols, int gs, const double *a, const double *a0)
{
    const double maxq =
        sp->sym ? (double)((1 << (sp->bits - 1)) - 1) : (double)((1 << sp->bits) - 1);
    double L = 0;
    for (int o = 0; o < rows; o++)
        for (int c0 = 0; c0 < cols; c0 += gs) {
            double s = 0, s0 = 0, lo = 0, hi = 0, lo0 = 0, hi0 = 0;
            for (int c = c0; c < c0 + gs; c++) {
                const double x = W[o * cols + c] * a[c], x0 = W[o * cols + c] * a0[c];
                hi = fmax(hi, x), lo = fmin(lo, x), hi0 = fmax(hi0, x0), lo0 = fmin(lo0, x0);
            }
            s = sp->sym ? fmax(hi, -lo) / maxq : (hi - lo) / maxq;
            s0 = sp->sym ? fmax(hi0, -lo0) / maxq : (hi0 - lo0) / maxq;
            const double z = sp->sym ? 0 : nearbyint(-lo0 / s0);
            for (int c = c0; c < c0 + gs; c++) {
                double q = nearbyint(W[o * cols + c] * a0[c] / s0) + z;
                q = sp->sym ? fmin(fmax(q, -maxq - 1), maxq) : fmin(fmax(q, 0), maxq);
                L += G[o * cols + c] * (q - z) * s / a[c];
            }
        }
    return L;
}

static void exact_grad_should_match_differences_with_the_codes_held(void **state)
{
    (void)state;
    enum { R = 3, C = 8, GS = 4 };
    float W[R * C], G[R * C], Weff[R * C], alpha[C];
    wq_test_fill_normal(W, R * C, 0.5f, 90);
    wq_test_fill_normal(G, R * C, 1.0f, 91);
    wq_test_fill_uniform(alpha, C, 0.7f, 1.4f, 92);
    for (int sym = 0; sym < 2; sym++) {
        wq_qspec sp = wq_qspec_default();
        sp.bits = 3, sp.group_size = GS, sp.sym = sym;
        assert_int_equal(wq_algo_teq_weff(&sp, W, R, C, alpha, Weff), WQ_OK);
        double g[C] = {0}, a0[C], a[C];
        wq_algo_teq_alpha_grad_exact(&sp, G, W, Weff, R, C, alpha, g);
        for (int c = 0; c < C; c++)
            a0[c] = alpha[c];
        for (int c = 0; c < C; c++) {
            const double h = 1e-6;
            memcpy(a, a0, sizeof a);
            a[c] = a0[c] + h;
            const double lp = held_codes_loss(&sp, G, W, R, C, GS, a, a0);
            a[c] = a0[c] - h;
            const double lm = held_codes_loss(&sp, G, W, R, C, GS, a, a0);
            const double fd = (lp - lm) / (2 * h);
            print_message("%s c %d: exact %.6f, held-codes difference %.6f\n", sym ? "sym" : "asym",
                          c, g[c], fd);
            assert_true(fabs(g[c] - fd) < 1e-4 * (1 + fabs(fd)));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(weff_should_be_quantized_scaled_weight_divided_by_alpha),
        cmocka_unit_test(alpha_grad_should_follow_the_straight_through_formula),
        cmocka_unit_test(training_forward_should_equal_converted_block),
        cmocka_unit_test(adam_should_match_hand_computation),
        cmocka_unit_test(schedule_should_warm_up_then_decay),
        cmocka_unit_test(batches_should_cycle_like_an_unshuffled_dataloader),
        cmocka_unit_test(seq_grad_should_match_finite_differences_of_the_loss),
        cmocka_unit_test(snapshot_should_keep_the_earliest_strictly_best_finite_loss),
        cmocka_unit_test(exact_grad_should_match_differences_with_the_codes_held),
    };
    return cmocka_run_group_tests_name("algo_teq", tests, NULL, NULL);
}
