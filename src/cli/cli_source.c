/* cli_source.c: wq_weight_source over safetensors and over a container. Layer: cli. */
#include "cli/cli_source.h"

#include "algos/algo_gptq.h"
#include "kernels/kern_quant.h"

#include <stdio.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_log.h"

static wq_status st_read(void *ctx, const char *name, float *dst, int64_t numel)
{
    const wq_st_model *m = ctx;
    const wq_st_tensor *t = wq_st_find(m, name);
    if (!t) {
        WQ_LOG_ERROR("%s: tensor '%s' not found", wq_st_dir(m), name);
        return WQ_ERR_FORMAT;
    }
    if (t->numel != numel) {
        WQ_LOG_ERROR("%s: tensor '%s' has %lld elements, expected %lld", wq_st_dir(m), name,
                     (long long)t->numel, (long long)numel);
        return WQ_ERR_FORMAT;
    }
    return wq_st_read_f32(m, t, dst);
}
static int st_has(void *ctx, const char *name) { return wq_st_find(ctx, name) != NULL; }

wq_weight_source wq_source_safetensors(const wq_st_model *m)
{
    return (wq_weight_source){(void *)m, st_read, st_has};
}

/* A tensor "X.weight" is either the raw entry "X.weight" or the quantized linear "X". */
static const wq_h5_entry *h5_lookup(const wq_h5_reader *r, const char *name)
{
    const wq_h5_entry *e = wq_h5_find(r, name);
    if (e) return e;
    size_t n = strlen(name);
    if (n > 7 && strcmp(name + n - 7, ".weight") == 0) {
        char base[256];
        snprintf(base, sizeof base, "%.*s", (int)(n - 7), name);
        e = wq_h5_find(r, base);
        if (e && e->kind == WQ_H5_QLINEAR) return e;
    }
    return NULL;
}

static wq_status h5_read(void *ctx, const char *name, float *dst, int64_t numel)
{
    const wq_h5_reader *r = ctx;
    const wq_h5_entry *e = h5_lookup(r, name);
    if (!e) {
        WQ_LOG_ERROR("container: tensor '%s' not found", name);
        return WQ_ERR_FORMAT;
    }
    int64_t n = 1;
    for (int k = 0; k < e->ndim; k++) n *= e->shape[k];
    if (n != numel) {
        WQ_LOG_ERROR("container: tensor '%s' has %lld elements, expected %lld", name, (long long)n,
                     (long long)numel);
        return WQ_ERR_FORMAT;
    }
    if (e->kind != WQ_H5_QLINEAR) return wq_h5_read_raw_f32(r, e, dst);
    for (int k = 0; k < e->n_extra; k++) {
        /* GPTQ fp8_aware (DPQ): W = s8 * fp8_e4m3(clamp(dequant, +-R)) (numerics 4.6) */
        if (strcmp(e->extra[k].name, "scale_bf16_to_fp8") != 0 || e->extra[k].len != 1) continue;
        float s8 = 0;
        wq_qmatrix m;
        WQ_TRY(wq_h5_read_extra(r, e, "scale_bf16_to_fp8", &s8));
        WQ_TRY(wq_h5_read_qmatrix(r, e, &m));
        wq_algo_gptq_dequant(&m, s8, dst);
        wq_qmatrix_free(&m);
        return WQ_OK;
    }
    for (int k = 0; k < e->n_extra; k++) {
        /* HQQ: real-valued zero-points [rows][ngroups] replace the packed (zero) qzeros */
        if (strcmp(e->extra[k].name, "zero_point") != 0) continue;
        wq_qmatrix m;
        WQ_TRY(wq_h5_read_qmatrix(r, e, &m));
        wq_status st = e->extra[k].len == m.rows * m.ngroups && m.zeros
                           ? wq_h5_read_extra(r, e, "zero_point", m.zeros)
                           : WQ_ERR_FORMAT;
        if (st == WQ_OK) wq_kern_dequant_matrix(&m, dst);
        wq_qmatrix_free(&m);
        return st;
    }
    WQ_TRY(wq_h5_dequant(r, e, dst));
    /* AWQ self tuples (INC MulLinear): y = linear(x * input_scale) = x . (W diag(input_scale))^T */
    for (int k = 0; k < e->n_extra; k++) {
        if (strcmp(e->extra[k].name, "input_scale") != 0 || e->extra[k].len != e->cols) continue;
        float *sc = wq_malloc((size_t)e->cols * sizeof(float));
        if (!sc) return WQ_ERR_NOMEM;
        wq_status st = wq_h5_read_extra(r, e, "input_scale", sc);
        for (int64_t o = 0; st == WQ_OK && o < e->rows; o++)
            for (int64_t c = 0; c < e->cols; c++) dst[o * e->cols + c] *= sc[c];
        wq_free(sc);
        WQ_TRY(st);
    }
    return WQ_OK;
}
static int h5_has(void *ctx, const char *name) { return h5_lookup(ctx, name) != NULL; }

wq_weight_source wq_source_container(const wq_h5_reader *r)
{
    return (wq_weight_source){(void *)r, h5_read, h5_has};
}
