/* kern_loss.c: causal-LM loss gradient at the last hidden state (see kern_loss.h). Layer: kernels.
 */
#include "kernels/kern_loss.h"

#include <cblas.h>
#include <math.h>

#include "kernels/kern_llama.h"
#include "kernels/kern_llama_impl.h"

double wq_kern_ce_backward_f64(const double *l, int64_t V, int32_t target, double scale, double *dl)
{
    WQ_KERN_ASSERT(l && V >= 1 && target >= 0 && target < V);
    double m = l[0];
    for (int64_t v = 1; v < V; v++)
        if (l[v] > m) m = l[v];
    double z = 0.0;
    for (int64_t v = 0; v < V; v++)
        z += exp(l[v] - m);
    if (dl) {
        const double inv = 1.0 / z;
        for (int64_t v = 0; v < V; v++)
            dl[v] = scale * (exp(l[v] - m) * inv);
        dl[target] -= scale;
    }
    return log(z) + m - l[target];
}

void wq_kern_rmsnorm_f64(double *y, const double *x, const double *w, int64_t T, int64_t d,
                         double eps)
{
    for (int64_t t = 0; t < T; t++) {
        const double *xr = x + t * d;
        double ss = 0.0;
        for (int64_t i = 0; i < d; i++)
            ss += xr[i] * xr[i];
        const double r = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t i = 0; i < d; i++)
            y[t * d + i] = w[i] * (xr[i] * r);
    }
}

void wq_kern_rmsnorm_backward_f64(double *dx, const double *dy, const double *x, const double *w,
                                  int64_t T, int64_t d, double eps)
{
    for (int64_t t = 0; t < T; t++) {
        const double *xr = x + t * d, *gr = dy + t * d;
        double ss = 0.0, gx = 0.0;
        for (int64_t i = 0; i < d; i++) {
            ss += xr[i] * xr[i];
            gx += w[i] * gr[i] * xr[i];
        }
        const double r = 1.0 / sqrt(ss / (double)d + eps);
        const double c = r * r * r * gx / (double)d;
        for (int64_t i = 0; i < d; i++)
            dx[t * d + i] = r * (w[i] * gr[i]) - xr[i] * c;
    }
}

size_t wq_kern_head_backward_workspace_bytes(const wq_model_cfg *cfg)
{
    const int64_t d = cfg->hidden_size, V = cfg->vocab_size;
    return (kl_pad(WQ_HEAD_ROW_BLOCK * V) + kl_pad(WQ_HEAD_ROW_BLOCK * d)) * sizeof(float) +
           (size_t)(2 * V + 3 * d + 16) * sizeof(double);
}

double wq_kern_head_nll_backward(const wq_model_cfg *cfg, const float *final_norm,
                                 const float *lm_head, const float *x, int64_t T,
                                 const int32_t *targets, double scale, float *dx, void *workspace,
                                 int64_t *n_counted)
{
    WQ_KERN_ASSERT(cfg && final_norm && lm_head && x && dx && workspace && T >= 0);
    const int64_t d = cfg->hidden_size, V = cfg->vocab_size;
    float *cur = workspace;
    float *panel = kl_carve(&cur, WQ_HEAD_ROW_BLOCK * V); /* logits, then dlogits */
    float *xn = kl_carve(&cur, WQ_HEAD_ROW_BLOCK * d);    /* normed rows, then d(normed) */
    double *l64 = (double *)(void *)cur, *dl64 = l64 + V, *xr = dl64 + V, *gr = xr + d,
           *w64 = gr + d;
    for (int64_t i = 0; i < d; i++)
        w64[i] = final_norm[i];
    double total = 0.0;
    int64_t counted = 0;
    memset(dx, 0, (size_t)(T * d) * sizeof *dx);
    for (int64_t t0 = 0; t0 < T - 1; t0 += WQ_HEAD_ROW_BLOCK) {
        const int64_t t1 = t0 + WQ_HEAD_ROW_BLOCK < T - 1 ? t0 + WQ_HEAD_ROW_BLOCK : T - 1;
        const int64_t n = t1 - t0;
        /* forward exactly as wq_kern_head_nll: fp32 RMSNorm, one sgemm for the panel's logits */
        wq_kern_rmsnorm(xn, x + t0 * d, final_norm, n, d, cfg->rms_norm_eps);
        wq_kern_linear(panel, xn, lm_head, NULL, n, d, V);
        for (int64_t t = t0; t < t1; t++) {
            float *l = panel + (t - t0) * V;
            const int32_t tgt = targets[t];
            if (tgt < 0) {
                memset(l, 0, (size_t)V * sizeof *l);
                continue;
            }
            WQ_KERN_ASSERT(tgt < V);
            /* the loss value with wq_kern_head_nll's formula (fp32 max, exp of double differences)
             */
            const float mx = kl_max_f32(l, V);
            double sum = 0.0;
            for (int64_t j = 0; j < V; j++)
                sum += exp((double)l[j] - (double)mx);
            total += log(sum) + (double)mx - (double)l[tgt];
            counted++;
            for (int64_t j = 0; j < V; j++)
                l64[j] = l[j];
            (void)wq_kern_ce_backward_f64(l64, V, tgt, scale, dl64);
            for (int64_t j = 0; j < V; j++)
                l[j] = (float)dl64[j];
        }
        /* d(normed x) = dlogits . lm_head  ([n][V] x [V][d]) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)V, 1.0f, panel,
                    (int)V, lm_head, (int)d, 0.0f, xn, (int)d);
        for (int64_t t = t0; t < t1; t++) {
            for (int64_t i = 0; i < d; i++) {
                xr[i] = x[t * d + i];
                gr[i] = xn[(t - t0) * d + i];
            }
            wq_kern_rmsnorm_backward_f64(gr, gr, xr, w64, 1, d, (double)(float)cfg->rms_norm_eps);
            for (int64_t i = 0; i < d; i++)
                dx[t * d + i] = (float)gr[i];
        }
    }
    if (n_counted) *n_counted = counted;
    return total;
}
