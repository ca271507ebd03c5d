/* algo_teq.c: TEQ trainer pieces and the per-sequence model forward/backward (see algo_teq.h).
 * Layer: algos. */
#include "algos/algo_teq.h"

#include <math.h>
#include <string.h>

#include "algos/algo_awq.h"
#include "core/core_alloc.h"
#include "core/core_log.h"
#include "kernels/kern_backward.h"
#include "kernels/kern_loss.h"

void wq_algo_teq_clip(const float *alpha, int64_t n, float *out)
{
    for (int64_t c = 0; c < n; c++)
        out[c] = alpha[c] > WQ_TEQ_ALPHA_MIN ? alpha[c] : WQ_TEQ_ALPHA_MIN;
}

wq_status wq_algo_teq_weff(const wq_qspec *spec, const float *W, int64_t rows, int64_t cols,
                           const float *alpha, float *Weff)
{
    float *a = NULL;
    if (alpha) {
        a = wq_malloc((size_t)cols * sizeof(float));
        if (!a) return WQ_ERR_NOMEM;
        wq_algo_teq_clip(alpha, cols, a);
    }
    /* Q(W a') / a': the same fake quantization AWQ's search uses (numerics 5.4 / 6) */
    wq_status st = wq_algo_awq_fakequant(spec, 1.0f, W, rows, cols, a, Weff);
    wq_free(a);
    return st;
}

void wq_algo_teq_alpha_grad(const float *G, const float *W, const float *Weff, int64_t rows,
                            int64_t cols, const float *alpha, double *dalpha)
{
    for (int64_t c = 0; c < cols; c++) {
        if (!(alpha[c] >= WQ_TEQ_ALPHA_MIN)) continue; /* clamped: no gradient */
        double s = 0.0;
        for (int64_t o = 0; o < rows; o++)
            s += (double)G[o * cols + c] * ((double)W[o * cols + c] - (double)Weff[o * cols + c]);
        dalpha[c] += s / (double)alpha[c];
    }
}

double wq_algo_teq_lr(double base, int64_t k, int64_t warmup, int64_t total)
{
    if (k < warmup) return base * (double)k / (double)(warmup > 1 ? warmup : 1);
    double f = (double)(total - k) / (double)(total - warmup > 1 ? total - warmup : 1);
    return base * (f > 0.0 ? f : 0.0);
}

void wq_algo_teq_schedule(int64_t train_steps, double warmup_ratio, int64_t accum, int64_t *warmup,
                          int64_t *total)
{
    *warmup = (int64_t)((double)train_steps * warmup_ratio) / accum;
    *total = train_steps / accum;
}

void wq_algo_teq_batch(int64_t g, int64_t n, int64_t bs, int64_t *begin, int64_t *end)
{
    const int64_t per_epoch = (n + bs - 1) / bs;
    const int64_t p = g % per_epoch;
    *begin = p * bs;
    *end = *begin + bs < n ? *begin + bs : n;
}

wq_status wq_algo_teq_adam_init(wq_teq_adam *a, int64_t n)
{
    memset(a, 0, sizeof *a);
    a->m = wq_calloc((size_t)(n ? n : 1), sizeof(double));
    a->v = wq_calloc((size_t)(n ? n : 1), sizeof(double));
    if (!a->m || !a->v) {
        wq_algo_teq_adam_free(a);
        return WQ_ERR_NOMEM;
    }
    a->n = n;
    return WQ_OK;
}

void wq_algo_teq_adam_free(wq_teq_adam *a)
{
    wq_free(a->m);
    wq_free(a->v);
    memset(a, 0, sizeof *a);
}

void wq_algo_teq_adam_step(wq_teq_adam *a, float *p, const double *g, double lr)
{
    a->t++;
    const double bc1 = 1.0 - pow(WQ_TEQ_BETA1, (double)a->t);
    const double bc2s = sqrt(1.0 - pow(WQ_TEQ_BETA2, (double)a->t));
    const double step = lr / bc1;
    for (int64_t i = 0; i < a->n; i++) {
        a->m[i] = WQ_TEQ_BETA1 * a->m[i] + (1.0 - WQ_TEQ_BETA1) * g[i];
        a->v[i] = WQ_TEQ_BETA2 * a->v[i] + (1.0 - WQ_TEQ_BETA2) * g[i] * g[i];
        const double denom = sqrt(a->v[i]) / bc2s + WQ_TEQ_EPS;
        p[i] = (float)((double)p[i] - step * a->m[i] / denom);
    }
}

wq_status wq_algo_teq_update_weights(wq_teq_net *net)
{
    const int64_t n = net->mc->n_layers * WQ_TEQ_N_LIN;
    for (int64_t i = 0; i < n; i++) {
        wq_teq_linear *l = &net->lin[i];
        if (!l->spec) {
            memcpy(l->Weff, l->W, (size_t)(l->rows * l->cols) * sizeof(float));
            continue;
        }
        WQ_TRY(wq_algo_teq_weff(l->spec, l->W, l->rows, l->cols,
                                l->off >= 0 ? net->alpha + l->off : NULL, l->Weff));
    }
    return WQ_OK;
}

/* ---- per-sequence forward / backward ----------------------------------------------------------
 */

struct wq_teq_work {
    int64_t Tmax;
    float *xs;       /* [(n_layers + 1)][Tmax][d]: input of every block, then the last output */
    float *dx, *dx2; /* [Tmax][d] */
    float *G[WQ_TEQ_N_LIN]; /* dL/dWeff of one block's linears */
    void *act;              /* stored activations of one block (kern_backward.h memory rule) */
    void *head_ws, *bwd_ws;
};

static void lin_dims(const wq_model_cfg *mc, int64_t rows[WQ_TEQ_N_LIN], int64_t cols[WQ_TEQ_N_LIN])
{
    const int64_t d = mc->hidden_size, F = mc->intermediate_size;
    const int64_t qd = mc->n_heads * mc->head_dim, kd = mc->n_kv_heads * mc->head_dim;
    const int64_t r[WQ_TEQ_N_LIN] = {qd, kd, kd, d, F, F, d},
                  c[WQ_TEQ_N_LIN] = {d, d, d, qd, d, d, F};
    memcpy(rows, r, sizeof r);
    memcpy(cols, c, sizeof c);
}

void wq_algo_teq_work_destroy(wq_teq_work *w)
{
    if (!w) return;
    wq_free(w->xs);
    wq_free(w->dx);
    wq_free(w->dx2);
    for (int l = 0; l < WQ_TEQ_N_LIN; l++)
        wq_free(w->G[l]);
    wq_free(w->act);
    wq_free(w->head_ws);
    wq_free(w->bwd_ws);
    wq_free(w);
}

wq_status wq_algo_teq_work_create(const wq_model_cfg *mc, int64_t Tmax, wq_teq_work **out)
{
    const int64_t d = mc->hidden_size, L = mc->n_layers;
    int64_t rows[WQ_TEQ_N_LIN], cols[WQ_TEQ_N_LIN];
    lin_dims(mc, rows, cols);
    wq_teq_work *w = wq_calloc(1, sizeof *w);
    *out = NULL;
    if (!w) return WQ_ERR_NOMEM;
    w->Tmax = Tmax;
    w->xs = wq_malloc((size_t)((L + 1) * Tmax * d) * sizeof(float));
    w->dx = wq_malloc((size_t)(Tmax * d) * sizeof(float));
    w->dx2 = wq_malloc((size_t)(Tmax * d) * sizeof(float));
    int ok = w->xs && w->dx && w->dx2;
    for (int l = 0; l < WQ_TEQ_N_LIN; l++)
        ok = ok && (w->G[l] = wq_malloc((size_t)(rows[l] * cols[l]) * sizeof(float)));
    w->act = wq_malloc(wq_kern_bwd_block_act_bytes(mc, 1, Tmax, sizeof(float)));
    w->head_ws = wq_malloc(wq_kern_head_backward_workspace_bytes(mc));
    w->bwd_ws = wq_malloc(wq_kern_bwd_block_workspace_bytes(mc, 1, Tmax, sizeof(float)));
    if (!ok || !w->act || !w->head_ws || !w->bwd_ws) {
        WQ_LOG_ERROR("TEQ: out of memory for the activations of a %lld-token sequence",
                     (long long)Tmax);
        wq_algo_teq_work_destroy(w);
        return WQ_ERR_NOMEM;
    }
    *out = w;
    return WQ_OK;
}

wq_status wq_algo_teq_seq_grad(const wq_teq_net *net, const int32_t *ids, int64_t T,
                               const float *rope_cos, const float *rope_sin, double scale,
                               wq_teq_work *work, double *dalpha, double *nll)
{
    const wq_model_cfg *mc = net->mc;
    const int64_t d = mc->hidden_size, L = mc->n_layers;
    if (T > work->Tmax) return WQ_ERR_ARG;
    memset(dalpha, 0, (size_t)net->n_alpha * sizeof *dalpha);
    /* forward with the backward's own block forward (so the gradient is that of the loss
     * computed), keeping every block's input; the activations of one block at a time */
    wq_kern_embed(net->embed, ids, T, d, work->xs);
    for (int64_t b = 0; b < L; b++)
        wq_kern_bwd_block_forward_f32(mc, &net->blocks[b], work->xs + b * T * d,
                                      work->xs + (b + 1) * T * d, 1, T, rope_cos, rope_sin,
                                      work->act, work->bwd_ws);
    /* loss and its gradient at the last hidden state */
    *nll = wq_kern_head_nll_backward(mc, net->final_norm, net->lm_head, work->xs + L * T * d, T,
                                     ids + 1, scale, work->dx, work->head_ws, NULL);
    /* backward through the blocks; per linear dL/dWeff, then dL/dalpha */
    for (int64_t b = L - 1; b >= 0; b--) {
        /* the last block's activations are still stored; the others are recomputed from the
         * stored block input (one extra block forward each instead of L blocks' activations) */
        if (b < L - 1)
            wq_kern_bwd_block_forward_f32(mc, &net->blocks[b], work->xs + b * T * d,
                                          work->xs + (b + 1) * T * d, 1, T, rope_cos, rope_sin,
                                          work->act, work->bwd_ws);
        for (int l = 0; l < WQ_TEQ_N_LIN; l++) /* the kernel accumulates: one block's G only */
            memset(work->G[l], 0,
                   (size_t)(net->lin[b * WQ_TEQ_N_LIN + l].rows *
                            net->lin[b * WQ_TEQ_N_LIN + l].cols) *
                       sizeof(float));
        const wq_block_grads g = {.wq = work->G[0],
                                  .wk = work->G[1],
                                  .wv = work->G[2],
                                  .wo = work->G[3],
                                  .w_gate = work->G[4],
                                  .w_up = work->G[5],
                                  .w_down = work->G[6]};
        wq_kern_bwd_block_backward_f32(mc, &net->blocks[b], work->dx, b > 0 ? work->dx2 : NULL, &g,
                                       1, T, rope_cos, rope_sin, work->act, work->bwd_ws);
        float *t = work->dx;
        work->dx = work->dx2;
        work->dx2 = t;
        for (int l = 0; l < WQ_TEQ_N_LIN; l++) {
            const wq_teq_linear *li = &net->lin[b * WQ_TEQ_N_LIN + l];
            if (li->off < 0 || !li->spec) continue;
            if (net->exact_grad)
                wq_algo_teq_alpha_grad_exact(li->spec, work->G[l], li->W, li->Weff, li->rows,
                                             li->cols, net->alpha + li->off, dalpha + li->off);
            else
                wq_algo_teq_alpha_grad(work->G[l], li->W, li->Weff, li->rows, li->cols,
                                       net->alpha + li->off, dalpha + li->off);
        }
    }
    return WQ_OK;
}

wq_status wq_algo_teq_seq_nll(const wq_teq_net *net, const int32_t *ids, int64_t T,
                              const float *rope_cos, const float *rope_sin, wq_teq_work *work,
                              double *nll)
{
    const wq_model_cfg *mc = net->mc;
    const int64_t d = mc->hidden_size, L = mc->n_layers;
    if (T > work->Tmax) return WQ_ERR_ARG;
    wq_kern_embed(net->embed, ids, T, d, work->xs);
    for (int64_t b = 0; b < L; b++)
        wq_kern_bwd_block_forward_f32(mc, &net->blocks[b], work->xs + b * T * d,
                                      work->xs + (b + 1) * T * d, 1, T, rope_cos, rope_sin,
                                      work->act, work->bwd_ws);
    /* the head's loss is bitwise wq_kern_head_nll_backward's (kern_loss.h); its workspace is the
     * larger one */
    *nll = wq_kern_head_nll(mc, net->final_norm, net->lm_head, work->xs + L * T * d, T, ids + 1,
                            work->head_ws, NULL, NULL);
    return WQ_OK;
}

void wq_algo_teq_best_init(wq_teq_best *b)
{
    b->loss = INFINITY;
    b->step = -1;
}

int wq_algo_teq_best_offer(wq_teq_best *b, double loss, int64_t step)
{
    if (!isfinite(loss) || !(loss < b->loss)) return 0;
    b->loss = loss;
    b->step = step;
    return 1;
}

int wq_algo_teq_snapshot_due(int64_t taken, int64_t every, int64_t total)
{
    return taken == 0 || taken == total || (every >= 1 && taken % every == 0);
}

void wq_algo_teq_alpha_grad_exact(const wq_qspec *spec, const float *G, const float *W,
                                  const float *Weff, int64_t rows, int64_t cols, const float *alpha,
                                  double *dalpha)
{
    const int64_t gs = wq_qspec_group_size(spec, cols);
    for (int64_t o = 0; o < rows; o++) {
        const float *w = W + o * cols, *we = Weff + o * cols, *g = G + o * cols;
        for (int64_t c0 = 0; c0 < cols; c0 += gs) {
            const int64_t c1 = c0 + gs < cols ? c0 + gs : cols;
            /* the group's scale: the channels that set it (a' as the fake quantizer sees it) */
            int64_t imax = -1, imin = -1;
            double xmax = 0, xmin = 0, sgw = 0;
            for (int64_t c = c0; c < c1; c++) {
                const double a = alpha[c] > WQ_TEQ_ALPHA_MIN ? alpha[c] : WQ_TEQ_ALPHA_MIN;
                const double x = (double)w[c] * a;
                if (x > xmax) xmax = x, imax = c;
                if (x < xmin) xmin = x, imin = c;
                sgw += (double)g[c] * (double)we[c];
                /* codes and zero point held: dWeff[c]/da[c] = -Weff[c] / a[c] */
                if (alpha[c] >= WQ_TEQ_ALPHA_MIN) dalpha[c] -= (double)g[c] * (double)we[c] / a;
            }
            /* scale coupling: dWeff[j]/da[m] = Weff[j] * (dscale/da[m]) / scale */
            if (spec->sym) {
                int64_t m = -xmin > xmax ? imin : imax; /* amax = max(|max x|, |min x|) */
                if (m >= 0 && alpha[m] >= WQ_TEQ_ALPHA_MIN) dalpha[m] += sgw / (double)alpha[m];
            } else if (xmax - xmin > 0) {
                const double range = xmax - xmin;
                if (imax >= 0 && alpha[imax] >= WQ_TEQ_ALPHA_MIN)
                    dalpha[imax] += sgw * (double)w[imax] / range;
                if (imin >= 0 && alpha[imin] >= WQ_TEQ_ALPHA_MIN)
                    dalpha[imin] -= sgw * (double)w[imin] / range;
            }
        }
    }
}
