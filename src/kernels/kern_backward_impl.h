/* kern_backward_impl.h: the block forward-with-activations and backward of kern_backward.h,
 * written once over an element type. Included by kern_backward.c twice, with
 *   KB_REAL   float | double          KB_SFX   f32 | f64 (function-name suffix)
 *   KB_GEMM   cblas_sgemm | cblas_dgemm
 *   KB_W, KB_G  the weight and gradient struct types.
 * Layer: kernels (internal). Not a public header: no include guard on purpose. */

#define KB_CAT2(a, b) a##_##b
#define KB_CAT(a, b) KB_CAT2(a, b)
#define KB_FN(name) KB_CAT(name, KB_SFX)

/* C[M][N] = alpha * op(A) op(B) + beta * C, row-major. */
static void KB_FN(kb_gemm)(bool ta, bool tb, int64_t M, int64_t N, int64_t K, KB_REAL alpha,
                           const KB_REAL *A, int64_t lda, const KB_REAL *B, int64_t ldb,
                           KB_REAL beta, KB_REAL *C, int64_t ldc)
{
    if (M == 0 || N == 0) return;
    WQ_KERN_ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX);
    KB_GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M,
            (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

static void KB_FN(kb_linear)(KB_REAL *y, const KB_REAL *x, const KB_REAL *w, const KB_REAL *b,
                             int64_t T, int64_t in, int64_t out)
{
    KB_FN(kb_gemm)(false, true, T, out, in, 1, x, in, w, in, 0, y, out);
    if (b)
        for (int64_t t = 0; t < T; t++)
            for (int64_t o = 0; o < out; o++)
                y[t * out + o] += b[o];
}

void KB_FN(wq_kern_bwd_linear)(KB_REAL *dx, KB_REAL *dw, KB_REAL *db, const KB_REAL *dy,
                               const KB_REAL *x, const KB_REAL *w, int64_t T, int64_t in,
                               int64_t out)
{
    WQ_KERN_ASSERT(dy && T >= 0 && in > 0 && out > 0);
    if (dx) KB_FN(kb_gemm)(false, false, T, in, out, 1, dy, out, w, in, 0, dx, in);
    if (dw && T > 0) KB_FN(kb_gemm)(true, false, out, in, T, 1, dy, out, x, in, 1, dw, in);
    if (db)
        for (int64_t t = 0; t < T; t++)
            for (int64_t o = 0; o < out; o++)
                db[o] += dy[t * out + o];
}

void KB_FN(wq_kern_bwd_rmsnorm_fwd)(KB_REAL *y, KB_REAL *r, const KB_REAL *x, const KB_REAL *w,
                                    int64_t T, int64_t d, double eps)
{
    for (int64_t t = 0; t < T; t++) {
        const KB_REAL *xr = x + t * d;
        double ss = 0;
        for (int64_t i = 0; i < d; i++)
            ss += (double)xr[i] * (double)xr[i];
        const KB_REAL rr = (KB_REAL)(1.0 / sqrt(ss / (double)d + eps));
        if (r) r[t] = rr;
        for (int64_t i = 0; i < d; i++)
            y[t * d + i] = w[i] * (xr[i] * rr);
    }
}

void KB_FN(wq_kern_bwd_rmsnorm)(KB_REAL *dx, KB_REAL *dw, const KB_REAL *dy, const KB_REAL *x,
                                const KB_REAL *w, const KB_REAL *r, int64_t T, int64_t d)
{
    for (int64_t t = 0; t < T; t++) {
        const KB_REAL *xr = x + t * d, *dyr = dy + t * d;
        const KB_REAL rr = r[t];
        double s = 0;
        for (int64_t i = 0; i < d; i++)
            s += (double)w[i] * (double)dyr[i] * (double)xr[i];
        if (dw)
            for (int64_t i = 0; i < d; i++)
                dw[i] += dyr[i] * xr[i] * rr;
        const KB_REAL c = (KB_REAL)(s * (double)rr * (double)rr * (double)rr / (double)d);
        for (int64_t i = 0; i < d; i++)
            dx[t * d + i] = rr * (w[i] * dyr[i]) - xr[i] * c;
    }
}

static void KB_FN(kb_rope)(KB_REAL *x, int64_t T, int64_t H, int64_t D, const KB_REAL *cs,
                           const KB_REAL *sn, KB_REAL dir)
{
    const int64_t h2 = D / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            KB_REAL *p = x + t * H * D + h * D;
            for (int64_t i = 0; i < h2; i++) {
                const KB_REAL a = p[i], b = p[i + h2], c = cs[t * h2 + i], s = dir * sn[t * h2 + i];
                p[i] = a * c - b * s;
                p[i + h2] = b * c + a * s;
            }
        }
}

void KB_FN(wq_kern_bwd_rope_fwd)(KB_REAL *x, int64_t T, int64_t n_heads, int64_t head_dim,
                                 const KB_REAL *cos, const KB_REAL *sin)
{
    KB_FN(kb_rope)(x, T, n_heads, head_dim, cos, sin, 1);
}

void KB_FN(wq_kern_bwd_rope)(KB_REAL *dx, int64_t T, int64_t n_heads, int64_t head_dim,
                             const KB_REAL *cos, const KB_REAL *sin)
{
    KB_FN(kb_rope)(dx, T, n_heads, head_dim, cos, sin, -1); /* transpose = inverse rotation */
}

size_t KB_FN(wq_kern_bwd_attention_workspace_bytes)(int64_t T)
{
    return 2 * kl_pad(T * T) * sizeof(KB_REAL);
}

/* P[T][T] = causal softmax(scale * Q_h K_g^T) of one head. */
static void KB_FN(kb_probs)(KB_REAL *P, const KB_REAL *qh, const KB_REAL *kg, int64_t T,
                            int64_t ldq, int64_t ldkv, int64_t D)
{
    const KB_REAL scale = (KB_REAL)(1.0 / sqrt((double)D));
    KB_FN(kb_gemm)(false, true, T, T, D, scale, qh, ldq, kg, ldkv, 0, P, T);
    for (int64_t i = 0; i < T; i++) {
        KB_REAL *s = P + i * T;
        KB_REAL mx = s[0];
        for (int64_t j = 1; j <= i; j++)
            mx = s[j] > mx ? s[j] : mx;
        double sum = 0;
        for (int64_t j = 0; j <= i; j++) {
            s[j] = (KB_REAL)exp((double)(s[j] - mx));
            sum += (double)s[j];
        }
        const double inv = 1.0 / sum;
        for (int64_t j = 0; j <= i; j++)
            s[j] = (KB_REAL)((double)s[j] * inv);
        for (int64_t j = i + 1; j < T; j++)
            s[j] = 0;
    }
}

void KB_FN(wq_kern_bwd_attention_fwd)(KB_REAL *out, const KB_REAL *q, const KB_REAL *k,
                                      const KB_REAL *v, int64_t T, int64_t n_heads,
                                      int64_t n_kv_heads, int64_t head_dim, void *workspace)
{
    WQ_KERN_ASSERT(n_kv_heads > 0 && n_heads % n_kv_heads == 0);
    const int64_t grp = n_heads / n_kv_heads, ldq = n_heads * head_dim,
                  ldkv = n_kv_heads * head_dim;
    KB_REAL *P = workspace;
    for (int64_t h = 0; h < n_heads; h++) {
        const int64_t g = h / grp;
        KB_FN(kb_probs)(P, q + h * head_dim, k + g * head_dim, T, ldq, ldkv, head_dim);
        KB_FN(kb_gemm)(false, false, T, head_dim, T, 1, P, T, v + g * head_dim, ldkv, 0,
                       out + h * head_dim, ldq);
    }
}

void KB_FN(wq_kern_bwd_attention)(KB_REAL *dq, KB_REAL *dk, KB_REAL *dv, const KB_REAL *dout,
                                  const KB_REAL *q, const KB_REAL *k, const KB_REAL *v, int64_t T,
                                  int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                  void *workspace)
{
    WQ_KERN_ASSERT(n_kv_heads > 0 && n_heads % n_kv_heads == 0);
    const int64_t grp = n_heads / n_kv_heads, D = head_dim, ldq = n_heads * D,
                  ldkv = n_kv_heads * D;
    const KB_REAL scale = (KB_REAL)(1.0 / sqrt((double)D));
    KB_REAL *P = workspace, *dP = P + kl_pad(T * T);
    memset(dk, 0, (size_t)(T * ldkv) * sizeof *dk);
    memset(dv, 0, (size_t)(T * ldkv) * sizeof *dv);
    for (int64_t h = 0; h < n_heads; h++) {
        const int64_t g = h / grp;
        const KB_REAL *qh = q + h * D, *kg = k + g * D, *vg = v + g * D, *doh = dout + h * D;
        KB_FN(kb_probs)(P, qh, kg, T, ldq, ldkv, D);
        /* dV_g += P^T dO_h; dP = dO_h V_g^T */
        KB_FN(kb_gemm)(true, false, T, D, T, 1, P, T, doh, ldq, 1, dv + g * D, ldkv);
        KB_FN(kb_gemm)(false, true, T, T, D, 1, doh, ldq, vg, ldkv, 0, dP, T);
        /* dS = P .* (dP - rowsum(P .* dP)), in dP (masked entries have P = 0) */
        for (int64_t i = 0; i < T; i++) {
            KB_REAL *pr = P + i * T, *dr = dP + i * T;
            double s = 0;
            for (int64_t j = 0; j <= i; j++)
                s += (double)pr[j] * (double)dr[j];
            const KB_REAL sr = (KB_REAL)s;
            for (int64_t j = 0; j <= i; j++)
                dr[j] = pr[j] * (dr[j] - sr);
            for (int64_t j = i + 1; j < T; j++)
                dr[j] = 0;
        }
        /* dQ_h = scale dS K_g; dK_g += scale dS^T Q_h */
        KB_FN(kb_gemm)(false, false, T, D, T, scale, dP, T, kg, ldkv, 0, dq + h * D, ldq);
        KB_FN(kb_gemm)(true, false, T, D, T, scale, dP, T, qh, ldq, 1, dk + g * D, ldkv);
    }
}

void KB_FN(wq_kern_bwd_swiglu_fwd)(KB_REAL *h, const KB_REAL *g, const KB_REAL *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const KB_REAL z = g[i];
        h[i] = z / (1 + KB_EXP(-z)) * u[i];
    }
}

void KB_FN(wq_kern_bwd_swiglu)(KB_REAL *dg, KB_REAL *du, const KB_REAL *dh, const KB_REAL *g,
                               const KB_REAL *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const KB_REAL z = g[i], s = 1 / (1 + KB_EXP(-z)), d = dh[i];
        if (du) du[i] = d * (z * s);
        dg[i] = d * u[i] * (s * (1 + z * (1 - s)));
    }
}

/* ---- block ------------------------------------------------------------------------------------ */

typedef struct {
    KB_REAL *x0, *a, *q, *k, *v, *o, *x1, *m, *g, *u, *h, *r1, *r2;
} KB_FN(kb_act);

static KB_FN(kb_act) KB_FN(kb_carve_act)(const wq_model_cfg *cfg, int64_t N, KB_REAL *p)
{
    const int64_t d = cfg->hidden_size, qd = cfg->n_heads * cfg->head_dim,
                  kd = cfg->n_kv_heads * cfg->head_dim, F = cfg->intermediate_size;
    KB_FN(kb_act) s;
#define KB_TAKE(dst, n) (dst = p, p += kl_pad(n))
    KB_TAKE(s.x0, N * d);
    KB_TAKE(s.a, N * d);
    KB_TAKE(s.q, N * qd);
    KB_TAKE(s.k, N * kd);
    KB_TAKE(s.v, N * kd);
    KB_TAKE(s.o, N * qd);
    KB_TAKE(s.x1, N * d);
    KB_TAKE(s.m, N * d);
    KB_TAKE(s.g, N * F);
    KB_TAKE(s.u, N * F);
    KB_TAKE(s.h, N * F);
    KB_TAKE(s.r1, N);
    KB_TAKE(s.r2, N);
    return s;
}

void KB_FN(wq_kern_bwd_block_forward)(const wq_model_cfg *cfg, const KB_W *w, const KB_REAL *x,
                                      KB_REAL *y, int64_t B, int64_t T, const KB_REAL *rope_cos,
                                      const KB_REAL *rope_sin, void *act, void *workspace)
{
    WQ_KERN_ASSERT(cfg && w && x && y && act && workspace && B >= 0 && T >= 1);
    const int64_t d = cfg->hidden_size, H = cfg->n_heads, Hk = cfg->n_kv_heads,
                  D = cfg->head_dim, qd = H * D, kd = Hk * D, F = cfg->intermediate_size,
                  N = B * T;
    if (N == 0) return;
    KB_FN(kb_act) s = KB_FN(kb_carve_act)(cfg, N, act);
    memcpy(s.x0, x, (size_t)(N * d) * sizeof *x);
    KB_FN(wq_kern_bwd_rmsnorm_fwd)(s.a, s.r1, s.x0, w->attn_norm, N, d, cfg->rms_norm_eps);
    KB_FN(kb_linear)(s.q, s.a, w->wq, w->bq, N, d, qd);
    KB_FN(kb_linear)(s.k, s.a, w->wk, w->bk, N, d, kd);
    KB_FN(kb_linear)(s.v, s.a, w->wv, w->bv, N, d, kd);
    for (int64_t b = 0; b < B; b++) {
        KB_FN(wq_kern_bwd_rope_fwd)(s.q + b * T * qd, T, H, D, rope_cos, rope_sin);
        KB_FN(wq_kern_bwd_rope_fwd)(s.k + b * T * kd, T, Hk, D, rope_cos, rope_sin);
        KB_FN(wq_kern_bwd_attention_fwd)(s.o + b * T * qd, s.q + b * T * qd, s.k + b * T * kd,
                                         s.v + b * T * kd, T, H, Hk, D, workspace);
    }
    memcpy(s.x1, s.x0, (size_t)(N * d) * sizeof *x);
    KB_FN(kb_gemm)(false, true, N, d, qd, 1, s.o, qd, w->wo, qd, 1, s.x1, d);
    KB_FN(wq_kern_bwd_rmsnorm_fwd)(s.m, s.r2, s.x1, w->mlp_norm, N, d, cfg->rms_norm_eps);
    KB_FN(kb_linear)(s.g, s.m, w->w_gate, NULL, N, d, F);
    KB_FN(kb_linear)(s.u, s.m, w->w_up, NULL, N, d, F);
    KB_FN(wq_kern_bwd_swiglu_fwd)(s.h, s.g, s.u, N * F);
    memcpy(y, s.x1, (size_t)(N * d) * sizeof *y); /* x was copied to s.x0: y may equal x */
    KB_FN(kb_gemm)(false, true, N, d, F, 1, s.h, F, w->w_down, F, 1, y, d);
}

void KB_FN(wq_kern_bwd_block_backward)(const wq_model_cfg *cfg, const KB_W *w, const KB_REAL *dy,
                                       KB_REAL *dx, const KB_G *grads, int64_t B, int64_t T,
                                       const KB_REAL *rope_cos, const KB_REAL *rope_sin,
                                       const void *act, void *workspace)
{
    WQ_KERN_ASSERT(cfg && w && dy && act && workspace && B >= 0 && T >= 1);
    const int64_t d = cfg->hidden_size, H = cfg->n_heads, Hk = cfg->n_kv_heads,
                  D = cfg->head_dim, qd = H * D, kd = Hk * D, F = cfg->intermediate_size,
                  N = B * T;
    if (N == 0) return;
    const KB_G none = {0};
    const KB_G *gr = grads ? grads : &none;
    KB_FN(kb_act) s = KB_FN(kb_carve_act)(cfg, N, (KB_REAL *)(uintptr_t)act);
    KB_REAL *p = workspace;
    KB_REAL *dg, *du, *dm, *dx1, *dop, *dq, *dk, *dv;
    KB_TAKE(dg, N * F);
    KB_TAKE(du, N * F);
    KB_TAKE(dm, N * d);
    KB_TAKE(dx1, N * d);
    KB_TAKE(dop, N * qd);
    KB_TAKE(dq, N * qd);
    KB_TAKE(dk, N * kd);
    KB_TAKE(dv, N * kd);
    void *attn_ws = p;
    /* MLP half: y = x1 + h Wd^T */
    KB_FN(wq_kern_bwd_linear)(dg, gr->w_down, NULL, dy, s.h, w->w_down, N, F, d); /* dg = dh */
    KB_FN(wq_kern_bwd_swiglu)(dg, du, dg, s.g, s.u, N * F);
    KB_FN(wq_kern_bwd_linear)(dm, gr->w_gate, NULL, dg, s.m, w->w_gate, N, d, F);
    KB_FN(wq_kern_bwd_linear)(dx1, gr->w_up, NULL, du, s.m, w->w_up, N, d, F);
    for (int64_t i = 0; i < N * d; i++)
        dm[i] += dx1[i];
    KB_FN(wq_kern_bwd_rmsnorm)(dx1, gr->mlp_norm, dm, s.x1, w->mlp_norm, s.r2, N, d);
    for (int64_t i = 0; i < N * d; i++)
        dx1[i] += dy[i];
    /* attention half: x1 = x0 + o Wo^T */
    KB_FN(wq_kern_bwd_linear)(dop, gr->wo, NULL, dx1, s.o, w->wo, N, qd, d);
    for (int64_t b = 0; b < B; b++) {
        KB_FN(wq_kern_bwd_attention)(dq + b * T * qd, dk + b * T * kd, dv + b * T * kd,
                                     dop + b * T * qd, s.q + b * T * qd, s.k + b * T * kd,
                                     s.v + b * T * kd, T, H, Hk, D, attn_ws);
        KB_FN(wq_kern_bwd_rope)(dq + b * T * qd, T, H, D, rope_cos, rope_sin);
        KB_FN(wq_kern_bwd_rope)(dk + b * T * kd, T, Hk, D, rope_cos, rope_sin);
    }
    /* da = dq Wq + dk Wk + dv Wv (into dm) */
    KB_FN(wq_kern_bwd_linear)(dm, gr->wq, w->bq ? gr->bq : NULL, dq, s.a, w->wq, N, d, qd);
    KB_FN(wq_kern_bwd_linear)(NULL, gr->wk, w->bk ? gr->bk : NULL, dk, s.a, w->wk, N, d, kd);
    KB_FN(wq_kern_bwd_linear)(NULL, gr->wv, w->bv ? gr->bv : NULL, dv, s.a, w->wv, N, d, kd);
    KB_FN(kb_gemm)(false, false, N, d, kd, 1, dk, kd, w->wk, d, 1, dm, d);
    KB_FN(kb_gemm)(false, false, N, d, kd, 1, dv, kd, w->wv, d, 1, dm, d);
    if (dx) {
        KB_FN(wq_kern_bwd_rmsnorm)(dx, gr->attn_norm, dm, s.x0, w->attn_norm, s.r1, N, d);
        for (int64_t i = 0; i < N * d; i++)
            dx[i] += dx1[i];
    } else if (gr->attn_norm) {
        KB_FN(wq_kern_bwd_rmsnorm)(dm, gr->attn_norm, dm, s.x0, w->attn_norm, s.r1, N, d);
    }
}
#undef KB_TAKE

/* ---- chain of n blocks ----------------------------------------------------------------------- */

void KB_FN(wq_kern_bwd_chain_forward)(const wq_model_cfg *cfg, const KB_W *w, int n,
                                      const KB_REAL *x, KB_REAL *y, int64_t B, int64_t T,
                                      const KB_REAL *rope_cos, const KB_REAL *rope_sin, void *act,
                                      void *workspace)
{
    WQ_KERN_ASSERT(n >= 1 && w && act);
    const size_t slot = wq_kern_bwd_block_act_bytes(cfg, B, T, sizeof(KB_REAL));
    /* block j reads y in place (the block copies its input first) */
    for (int j = 0; j < n; j++)
        KB_FN(wq_kern_bwd_block_forward)
        (cfg, &w[j], j == 0 ? x : y, y, B, T, rope_cos, rope_sin, (char *)act + (size_t)j * slot,
         workspace);
}

void KB_FN(wq_kern_bwd_chain_backward)(const wq_model_cfg *cfg, const KB_W *w, int n,
                                       const KB_REAL *dy, KB_REAL *dx, const KB_G *grads, int64_t B,
                                       int64_t T, const KB_REAL *rope_cos, const KB_REAL *rope_sin,
                                       const void *act, void *workspace)
{
    WQ_KERN_ASSERT(n >= 1 && w && dy && act && workspace);
    const size_t slot = wq_kern_bwd_block_act_bytes(cfg, B, T, sizeof(KB_REAL));
    const size_t wsb = wq_kern_bwd_block_workspace_bytes(cfg, B, T, sizeof(KB_REAL));
    /* the two gradient buffers of dL/d(output of block j-1), after the block's workspace */
    KB_REAL *buf[2] = {(KB_REAL *)((char *)workspace + wsb), NULL};
    buf[1] = buf[0] + kl_pad(B * T * cfg->hidden_size);
    const KB_REAL *g_out = dy;
    for (int j = n - 1; j >= 0; j--) {
        KB_REAL *g_in = j == 0 ? dx : buf[j & 1];
        KB_FN(wq_kern_bwd_block_backward)
        (cfg, &w[j], g_out, g_in, grads ? &grads[j] : NULL, B, T, rope_cos, rope_sin,
         (const char *)act + (size_t)j * slot, workspace);
        g_out = g_in;
    }
}

#undef KB_FN
#undef KB_CAT
#undef KB_CAT2
