/* core_config.c: JSON config -> wq_config, validation with messages that name the key, rule
 * resolution, and serialisation of the effective config. Layer: core. */
#include "core/core_config.h"

#include <cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_log.h"

static const char *const k_algo_names[WQ_ALGO_COUNT] = {"rtn", "gptq", "awq", "teq", "hqq", "autoround"};

const char *wq_algo_name(wq_algo a) { return (unsigned)a < WQ_ALGO_COUNT ? k_algo_names[a] : "?"; }

/* ---- key tables ------------------------------------------------------------------------------ */

typedef enum { K_BOOL, K_INT, K_DOUBLE, K_DTYPE, K_SCALE_DTYPE, K_STRING } key_kind;

typedef struct {
    const char *name;
    key_kind kind;
    size_t offset; /* into wq_qspec (qspec keys) or wq_algo_params (algorithm keys) */
    double min, max;
    uint32_t flag;     /* WQ_QF_* for qspec keys */
    uint32_t algos;    /* bit per wq_algo for algorithm keys */
    const char *alias; /* accepted alternative spelling */
} key_desc;

#define QS(f) offsetof(wq_qspec, f)
#define AP(f) offsetof(wq_algo_params, f)
#define A(x) (1u << WQ_ALGO_##x)

static const key_desc k_qspec_keys[] = {
    {"dtype", K_DTYPE, QS(dtype), 0, 0, WQ_QF_DTYPE, 0, NULL},
    {"bits", K_INT, QS(bits), 1, 8, WQ_QF_BITS, 0, NULL},
    {"group_size", K_INT, QS(group_size), -1, 1 << 30, WQ_QF_GROUP_SIZE, 0, NULL},
    {"use_sym", K_BOOL, QS(sym), 0, 1, WQ_QF_SYM, 0, "sym"},
    {"use_full_range", K_BOOL, QS(full_range), 0, 1, WQ_QF_FULL_RANGE, 0, NULL},
    {"use_mse_search", K_BOOL, QS(mse_search), 0, 1, WQ_QF_MSE, 0, NULL},
    {"group_dim", K_INT, QS(group_dim), 0, 1, WQ_QF_GROUP_DIM, 0, NULL},
    {"use_double_quant", K_BOOL, QS(double_quant), 0, 1, WQ_QF_DQ, 0, NULL},
    {"double_quant_dtype", K_DTYPE, QS(dq_dtype), 0, 0, WQ_QF_DQ_DTYPE, 0, NULL},
    {"double_quant_bits", K_INT, QS(dq_bits), 1, 8, WQ_QF_DQ_BITS, 0, NULL},
    {"double_quant_use_sym", K_BOOL, QS(dq_sym), 0, 1, WQ_QF_DQ_SYM, 0, NULL},
    {"double_quant_group_size", K_INT, QS(dq_group_size), -1, 1 << 30, WQ_QF_DQ_GROUP, 0, NULL},
    {"scale_dtype", K_SCALE_DTYPE, QS(scale_dtype), 0, 0, WQ_QF_SCALE_DTYPE, 0, NULL},
};

static const key_desc k_algo_keys[] = {
    {"percdamp", K_DOUBLE, AP(percdamp), 0, 1e6, 0, A(GPTQ), NULL},
    {"block_size", K_INT, AP(block_size), 1, 1 << 30, 0, A(GPTQ), NULL},
    {"act_order", K_BOOL, AP(act_order), 0, 1, 0, A(GPTQ), "desc_act"},
    {"hybrid_order", K_BOOL, AP(hybrid_order), 0, 1, 0, A(GPTQ), "hybrid_act_order"},
    {"static_groups", K_BOOL, AP(static_groups), 0, 1, 0, A(GPTQ), NULL},
    {"true_sequential", K_BOOL, AP(true_sequential), 0, 1, 0, A(GPTQ), NULL},
    {"fp8_aware", K_BOOL, AP(fp8_aware), 0, 1, 0, A(GPTQ), NULL},
    {"use_block_wise", K_BOOL, AP(use_block_wise), 0, 1, 0, A(GPTQ), NULL},
    {"fresh_group_params", K_BOOL, AP(fresh_group_params), 0, 1, 0, A(GPTQ), NULL},
    {"use_auto_scale", K_BOOL, AP(use_auto_scale), 0, 1, 0, A(AWQ), NULL},
    {"use_auto_clip", K_BOOL, AP(use_auto_clip), 0, 1, 0, A(AWQ), NULL},
    {"folding", K_BOOL, AP(folding), 0, 1, 0, A(AWQ) | A(TEQ), NULL},
    {"inc_parity", K_BOOL, AP(inc_parity), 0, 1, 0, A(AWQ) | A(TEQ) | A(GPTQ) | A(RTN), NULL},
    {"lr", K_DOUBLE, AP(lr), 0, 1e3, 0, A(AUTOROUND), NULL},
    {"train_lr", K_DOUBLE, AP(teq_lr), 0, 1e3, 0, A(TEQ), NULL},
    {"train_steps", K_INT, AP(teq_steps), 0, 1 << 30, 0, A(TEQ), NULL},
    {"warmup_ratio", K_DOUBLE, AP(teq_warmup), 0, 1, 0, A(TEQ), NULL},
    {"train_batch_size", K_INT, AP(teq_batch_size), 1, 1 << 30, 0, A(TEQ), NULL},
    {"gradient_accumulation_steps", K_INT, AP(teq_grad_accum), 1, 1 << 30, 0, A(TEQ), NULL},
    {"snapshot_every", K_INT, AP(teq_snapshot_every), 0, 1 << 30, 0, A(TEQ), NULL},
    {"restore_best", K_BOOL, AP(teq_restore_best), 0, 1, 0, A(TEQ), NULL},
    {"exact_gradient", K_BOOL, AP(teq_exact_grad), 0, 1, 0, A(TEQ), NULL},
    {"quant_zero", K_BOOL, AP(quant_zero), 0, 1, 0, A(HQQ), NULL},
    {"quant_scale", K_BOOL, AP(quant_scale), 0, 1, 0, A(HQQ), NULL},
    {"scale_quant_group_size", K_INT, AP(scale_quant_group_size), 1, 1 << 30, 0, A(HQQ), NULL},
    {"hqq_iters", K_INT, AP(hqq_iters), 0, 100000, 0, A(HQQ), NULL},
    {"lp_norm", K_DOUBLE, AP(hqq_lp_norm), 0.01, 2, 0, A(HQQ), NULL},
    {"beta", K_DOUBLE, AP(hqq_beta), 1e-6, 1e12, 0, A(HQQ), NULL},
    {"kappa", K_DOUBLE, AP(hqq_kappa), 1, 100, 0, A(HQQ), NULL},
    {"iters", K_INT, AP(iters), 0, 1 << 30, 0, A(AUTOROUND), NULL},
    {"batch_size", K_INT, AP(batch_size), 1, 1 << 30, 0, A(AUTOROUND), NULL},
    {"gradient_accumulate_steps", K_INT, AP(gradient_accumulate_steps), 1, 1 << 30, 0, A(AUTOROUND), NULL},
    {"n_blocks", K_INT, AP(n_blocks), 1, 1 << 20, 0, A(AUTOROUND), "nblocks"},
    {"dynamic_max_gap", K_INT, AP(dynamic_max_gap), -1, 1 << 30, 0, A(AUTOROUND), NULL},
    {"minmax_lr", K_DOUBLE, AP(minmax_lr), 0, 1e3, 0, A(AUTOROUND), NULL},
    {"enable_minmax_tuning", K_BOOL, AP(enable_minmax_tuning), 0, 1, 0, A(AUTOROUND), NULL},
    {"enable_quanted_input", K_BOOL, AP(enable_quanted_input), 0, 1, 0, A(AUTOROUND), NULL},
    {"not_use_best_mse", K_BOOL, AP(not_use_best_mse), 0, 1, 0, A(AUTOROUND), NULL},
    {"enable_full_range", K_BOOL, AP(enable_full_range), 0, 1, 0, A(AUTOROUND), NULL},
    {"lr_scheduler", K_STRING, AP(lr_scheduler), 0, 0, 0, A(AUTOROUND), NULL},
    {"sampler", K_STRING, AP(sampler), 0, 0, 0, A(AUTOROUND), NULL},
    {"low_gpu_mem_usage", K_BOOL, AP(low_gpu_mem_usage), 0, 1, 0, A(AUTOROUND), "low_cpu_mem_usage"},
};
#define N_QKEYS (sizeof k_qspec_keys / sizeof k_qspec_keys[0])
#define N_AKEYS (sizeof k_algo_keys / sizeof k_algo_keys[0])

static const char *const k_dtype_choices = "int, int1..int8, nf4, fp4, fp4_e2m1_bnb, fp4_e2m1, fp32";

void wq_config_defaults(wq_config *cfg, wq_algo algo)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->algo = algo;
    cfg->global = wq_qspec_default();
    cfg->use_layer_wise = true;
    wq_algo_params *ap = &cfg->ap;
    ap->percdamp = 0.01;
    ap->block_size = 128; /* reference GPTQ; INC's config says 2048 (numerics 4.1 [DIFF]) */
    ap->use_auto_scale = ap->use_auto_clip = true;
    ap->folding = (algo == WQ_ALGO_TEQ);
    ap->teq_lr = 1e-4;    /* INC 1e-3; see docs/algorithms.md, TEQ */
    ap->teq_steps = 50;   /* INC 1000 */
    ap->teq_warmup = 0.05;
    ap->teq_batch_size = 8;
    ap->teq_grad_accum = 1;
    ap->teq_snapshot_every = 2;
    ap->teq_exact_grad = true;
    ap->quant_zero = true;
    ap->scale_quant_group_size = 128;
    ap->hqq_iters = 20;
    ap->hqq_lp_norm = 0.7;
    ap->hqq_beta = 10.0;
    ap->hqq_kappa = 1.01;
    ap->iters = 200;
    ap->batch_size = 8;
    ap->gradient_accumulate_steps = 1;
    ap->n_blocks = 1;
    ap->dynamic_max_gap = -1;
    ap->lr = 0; /* 0 => 1/iters */
    ap->minmax_lr = 0;
    ap->enable_minmax_tuning = true;
    ap->enable_quanted_input = true;
    snprintf(ap->lr_scheduler, sizeof ap->lr_scheduler, "linear");
    snprintf(ap->sampler, sizeof ap->sampler, "rand");
    if (algo == WQ_ALGO_HQQ) {
        cfg->global.sym = false;
        cfg->global.group_size = 64;
    }
    if (algo == WQ_ALGO_AUTOROUND) cfg->global.group_size = 128;
    if (algo == WQ_ALGO_AWQ || algo == WQ_ALGO_TEQ) cfg->global.dq_sym = true;
    cfg->calib.format = WQ_TEXT_STORIES;
    cfg->calib.range_begin = 0;
    cfg->calib.range_end = -1;
    cfg->calib.n_samples = 128;
    cfg->calib.seqlen = 256;
    cfg->calib.seed = 42;
}

/* ---- value parsing --------------------------------------------------------------------------- */

static int parse_dtype(const char *s, wq_qdtype *dt, int *bits)
{
    *bits = 0;
    if (strcmp(s, "int") == 0) {
        *dt = WQ_QDTYPE_INT;
    } else if (strncmp(s, "int", 3) == 0 && s[3] >= '1' && s[3] <= '8' && s[4] == '\0') {
        *dt = WQ_QDTYPE_INT;
        *bits = s[3] - '0';
    } else if (strcmp(s, "nf4") == 0) {
        *dt = WQ_QDTYPE_NF4;
    } else if (strcmp(s, "fp4") == 0 || strcmp(s, "fp4_e2m1_bnb") == 0) {
        *dt = WQ_QDTYPE_FP4_BNB;
    } else if (strcmp(s, "fp4_e2m1") == 0) {
        *dt = WQ_QDTYPE_FP4_E2M1;
    } else if (strcmp(s, "fp32") == 0 || strcmp(s, "fp16") == 0 || strcmp(s, "bf16") == 0) {
        *dt = WQ_QDTYPE_FP32; /* "keep original precision" */
    } else {
        return -1;
    }
    return 0;
}

/* Sets one key from a cJSON value. base points at the struct the key's offset refers to. */
static wq_status set_key(const key_desc *k, const cJSON *v, void *base, const char *where,
                         uint32_t *set_mask)
{
    char *p = (char *)base + k->offset;
    switch (k->kind) {
    case K_BOOL:
        if (!cJSON_IsBool(v)) {
            WQ_LOG_ERROR("%s: key '%s' must be true or false", where, k->name);
            return WQ_ERR_ARG;
        }
        *(bool *)p = cJSON_IsTrue(v);
        break;
    case K_INT: {
        double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        if (!cJSON_IsNumber(v) || d != floor(d) || d < k->min || d > k->max ||
            (k->min == -1 && d == 0)) {
            if (k->min == -1)
                WQ_LOG_ERROR("%s: key '%s' must be an integer, -1 or in [1, %.0f]", where, k->name,
                             k->max);
            else
                WQ_LOG_ERROR("%s: key '%s' must be an integer in [%.0f, %.0f]", where, k->name,
                             k->min, k->max);
            return WQ_ERR_ARG;
        }
        if (k->offset == QS(bits) || k->offset == QS(dq_bits) || k->offset == QS(group_dim))
            *(int *)p = (int)d;
        else
            *(int64_t *)p = (int64_t)d;
        break;
    }
    case K_DOUBLE:
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < k->min ||
            v->valuedouble > k->max) {
            WQ_LOG_ERROR("%s: key '%s' must be a number in [%g, %g]", where, k->name, k->min,
                         k->max);
            return WQ_ERR_ARG;
        }
        *(double *)p = v->valuedouble;
        break;
    case K_DTYPE: {
        wq_qdtype dt;
        int bits;
        if (!cJSON_IsString(v) || parse_dtype(v->valuestring, &dt, &bits) != 0) {
            WQ_LOG_ERROR("%s: key '%s' has an unknown value%s%s%s; allowed: %s", where, k->name,
                         cJSON_IsString(v) ? " '" : "", cJSON_IsString(v) ? v->valuestring : "",
                         cJSON_IsString(v) ? "'" : "", k_dtype_choices);
            return WQ_ERR_ARG;
        }
        *(wq_qdtype *)p = dt;
        if (bits && k->offset == QS(dtype)) {
            ((wq_qspec *)base)->bits = bits;
            if (set_mask) *set_mask |= WQ_QF_BITS;
        }
        if (k->offset == QS(dtype) && (dt == WQ_QDTYPE_NF4 || dt == WQ_QDTYPE_FP4_BNB ||
                                       dt == WQ_QDTYPE_FP4_E2M1)) {
            ((wq_qspec *)base)->bits = 4;
            if (set_mask) *set_mask |= WQ_QF_BITS;
        }
        break;
    }
    case K_SCALE_DTYPE:
        if (cJSON_IsString(v) && (strcmp(v->valuestring, "fp32") == 0 ||
                                  strcmp(v->valuestring, "float32") == 0)) {
            *(wq_scale_dtype *)p = WQ_SCALE_F32;
        } else if (cJSON_IsString(v) && (strcmp(v->valuestring, "fp16") == 0 ||
                                         strcmp(v->valuestring, "float16") == 0)) {
            *(wq_scale_dtype *)p = WQ_SCALE_F16;
        } else {
            WQ_LOG_ERROR("%s: key '%s' must be \"fp32\" or \"fp16\"", where, k->name);
            return WQ_ERR_ARG;
        }
        break;
    case K_STRING:
        if (!cJSON_IsString(v) || strlen(v->valuestring) >= 16) {
            WQ_LOG_ERROR("%s: key '%s' must be a short string", where, k->name);
            return WQ_ERR_ARG;
        }
        if (k->offset == AP(lr_scheduler) && strcmp(v->valuestring, "linear") != 0 &&
            strcmp(v->valuestring, "constant") != 0) {
            WQ_LOG_ERROR("%s: key '%s' must be \"linear\" or \"constant\"", where, k->name);
            return WQ_ERR_ARG;
        }
        if (k->offset == AP(sampler) && strcmp(v->valuestring, "rand") != 0) {
            WQ_LOG_ERROR("%s: key '%s' must be \"rand\"", where, k->name);
            return WQ_ERR_ARG;
        }
        snprintf(p, 16, "%s", v->valuestring);
        break;
    }
    if (set_mask) *set_mask |= k->flag;
    return WQ_OK;
}

static const key_desc *find_key(const key_desc *tab, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(tab[i].name, name) == 0 || (tab[i].alias && strcmp(tab[i].alias, name) == 0))
            return &tab[i];
    return NULL;
}

static void list_allowed(char *buf, size_t n, wq_algo algo, bool with_algo_keys, bool global)
{
    size_t off = 0;
    for (size_t i = 0; i < N_QKEYS && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%s", off ? ", " : "", k_qspec_keys[i].name);
    if (global && off < n)
        off += (size_t)snprintf(buf + off, n - off, ", quant_lm_head, use_layer_wise");
    for (size_t i = 0; with_algo_keys && i < N_AKEYS && off < n; i++)
        if (k_algo_keys[i].algos & (1u << algo))
            off += (size_t)snprintf(buf + off, n - off, ", %s", k_algo_keys[i].name);
}

/* Parses one section object (global or one local rule). */
static wq_status parse_section(wq_config *cfg, const cJSON *obj, const char *where, bool global,
                               wq_qspec *spec, uint32_t *set_mask)
{
    if (!cJSON_IsObject(obj)) {
        WQ_LOG_ERROR("%s must be a JSON object", where);
        return WQ_ERR_ARG;
    }
    const cJSON *it;
    /* AutoRound scheme presets (numerics.md 8.1) first, so explicit keys override them */
    const cJSON *scheme = global ? cJSON_GetObjectItemCaseSensitive(obj, "scheme") : NULL;
    if (scheme && cfg->algo == WQ_ALGO_AUTOROUND) {
        static const char *const names[] = {"W2A16", "W3A16", "W4A16", "W8A16"};
        static const int bits[] = {2, 3, 4, 8};
        int found = -1;
        for (int i = 0; i < 4 && cJSON_IsString(scheme); i++)
            if (strcmp(scheme->valuestring, names[i]) == 0) found = i;
        if (found < 0) {
            WQ_LOG_ERROR("%s: key 'scheme' must be one of \"W2A16\", \"W3A16\", \"W4A16\", "
                         "\"W8A16\"",
                         where);
            return WQ_ERR_ARG;
        }
        spec->dtype = WQ_QDTYPE_INT, spec->bits = bits[found], spec->group_size = 128;
        spec->sym = true;
    }
    cJSON_ArrayForEach(it, obj)
    {
        if (scheme && cfg->algo == WQ_ALGO_AUTOROUND && it == scheme) continue;
        const key_desc *k = find_key(k_qspec_keys, N_QKEYS, it->string);
        if (k) {
            WQ_TRY(set_key(k, it, spec, where, set_mask));
            continue;
        }
        if (global && strcmp(it->string, "quant_lm_head") == 0) {
            static const key_desc kq = {"quant_lm_head", K_BOOL, 0, 0, 1, 0, 0, NULL};
            WQ_TRY(set_key(&kq, it, &cfg->quant_lm_head, where, NULL));
            continue;
        }
        if (global && strcmp(it->string, "use_layer_wise") == 0) {
            static const key_desc kl = {"use_layer_wise", K_BOOL, 0, 0, 1, 0, 0, NULL};
            WQ_TRY(set_key(&kl, it, &cfg->use_layer_wise, where, NULL));
            continue;
        }
        k = find_key(k_algo_keys, N_AKEYS, it->string);
        if (global && k && (k->algos & (1u << cfg->algo))) {
            WQ_TRY(set_key(k, it, &cfg->ap, where, NULL));
            continue;
        }
        char allowed[2048];
        list_allowed(allowed, sizeof allowed, cfg->algo, global, global);
        if (k)
            WQ_LOG_ERROR("%s: key '%s' does not apply to algorithm '%s'%s; allowed keys: %s", where,
                         it->string, wq_algo_name(cfg->algo),
                         global ? "" : " (algorithm keys belong in \"global\")", allowed);
        else
            WQ_LOG_ERROR("%s: unknown key '%s'; allowed keys: %s", where, it->string, allowed);
        return WQ_ERR_ARG;
    }
    return WQ_OK;
}

static wq_status parse_calibration(wq_config *cfg, const cJSON *obj, const char *origin)
{
    char where[1100];
    snprintf(where, sizeof where, "%s: \"calibration\"", origin);
    if (!cJSON_IsObject(obj)) {
        WQ_LOG_ERROR("%s must be a JSON object", where);
        return WQ_ERR_ARG;
    }
    wq_calib_cfg *c = &cfg->calib;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        const char *k = it->string;
        if (strcmp(k, "text") == 0) {
            if (!cJSON_IsString(it) || strlen(it->valuestring) >= sizeof c->text) {
                WQ_LOG_ERROR("%s: key 'text' must be a file path string", where);
                return WQ_ERR_ARG;
            }
            snprintf(c->text, sizeof c->text, "%s", it->valuestring);
        } else if (strcmp(k, "format") == 0) {
            static const char *fm[] = {"text", "stories", "jsonl", "ids16", "ids32"};
            int found = -1;
            for (int i = 0; i < 5 && cJSON_IsString(it); i++)
                if (strcmp(it->valuestring, fm[i]) == 0) found = i;
            if (found < 0) {
                WQ_LOG_ERROR("%s: key 'format' must be one of text, stories, jsonl, ids16, ids32",
                             where);
                return WQ_ERR_ARG;
            }
            c->format = (wq_text_format)found;
        } else if (strcmp(k, "range") == 0) {
            /* integers only, and bounded like the other counts: a double outside int64 makes the
             * conversion below undefined (fuzz/regressions/config) */
            const int pair = cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2;
            const cJSON *jb = pair ? cJSON_GetArrayItem(it, 0) : NULL;
            const cJSON *je = pair ? cJSON_GetArrayItem(it, 1) : NULL;
            const double b = cJSON_IsNumber(jb) ? jb->valuedouble : -1;
            const double e = cJSON_IsNumber(je) ? je->valuedouble : -2;
            if (b < 0 || b > 9.0e15 || b != floor(b) ||
                (e != -1 && (e <= b || e > 9.0e15 || e != floor(e)))) {
                WQ_LOG_ERROR("%s: key 'range' must be [begin, end) with integers 0 <= begin < end, "
                             "or end -1",
                             where);
                return WQ_ERR_ARG;
            }
            c->range_begin = (int64_t)b;
            c->range_end = (int64_t)e;
        } else if (strcmp(k, "n_samples") == 0 || strcmp(k, "nsamples") == 0 ||
                   strcmp(k, "seqlen") == 0 || strcmp(k, "seed") == 0) {
            double d = cJSON_IsNumber(it) ? it->valuedouble : -1;
            double lo = strcmp(k, "seed") == 0 ? 0 : (strcmp(k, "seqlen") == 0 ? 2 : 1);
            if (!cJSON_IsNumber(it) || d != floor(d) || d < lo || d > 9.0e15) {
                WQ_LOG_ERROR("%s: key '%s' must be an integer >= %.0f", where, k, lo);
                return WQ_ERR_ARG;
            }
            if (k[0] == 'n')
                c->n_samples = (int64_t)d;
            else if (k[1] == 'e' && k[2] == 'q')
                c->seqlen = (int64_t)d;
            else
                c->seed = (uint64_t)d;
        } else {
            WQ_LOG_ERROR("%s: unknown key '%s'; allowed keys: text, format, range, n_samples, "
                         "seqlen, seed",
                         where, k);
            return WQ_ERR_ARG;
        }
    }
    return WQ_OK;
}

/* glibc's regcomp duplicates the parse tree for '+' and '{m,n}', so stacked repetitions grow
 * memory exponentially, and a quantifier applied to a quantifier ("m****", "a*+") makes its
 * epsilon closures explode in time (both fuzz/regressions/config). Layer-name patterns need little:
 * allow at most 8 '+' or '{m,n}' repetitions, interval bounds <= 64, at most 16 '*' or '?', and no
 * quantifier directly after another, ignoring escaped characters and bracket expressions. */
static int regex_is_tame(const char *p)
{
    int reps = 0, stars = 0, prev_quant = 0;
    for (size_t i = 0; p[i]; i++) {
        int quant = p[i] == '*' || p[i] == '+' || p[i] == '?' || p[i] == '{';
        if (quant && prev_quant) return 0;
        prev_quant = quant;
        if (p[i] == '\\' && p[i + 1]) {
            i++;
        } else if (p[i] == '*' || p[i] == '?') {
            if (++stars > 16) return 0;
        } else if (p[i] == '[') {
            size_t j = i + 1;
            if (p[j] == '^') j++;
            if (p[j] == ']') j++;
            while (p[j] && p[j] != ']') j++;
            if (!p[j]) return 1; /* unbalanced: regcomp reports it */
            i = j;
        } else if (p[i] == '+') {
            reps++;
        } else if (p[i] == '{') {
            reps++;
            for (size_t j = i + 1; p[j] && p[j] != '}'; j++) {
                if (p[j] >= '0' && p[j] <= '9') {
                    long v = strtol(p + j, NULL, 10);
                    if (v > 64) return 0;
                    while (p[j + 1] >= '0' && p[j + 1] <= '9') j++;
                }
            }
            while (p[i] && p[i] != '}')
                i++;             /* the interval is one quantifier */
            if (!p[i]) return 1; /* unbalanced: regcomp reports it */
        }
    }
    return reps <= 8;
}

static wq_status parse_local(wq_config *cfg, const cJSON *local, const char *origin)
{
    char where[1400];
    snprintf(where, sizeof where, "%s: \"local\"", origin);
    if (!cJSON_IsObject(local)) {
        WQ_LOG_ERROR("%s must be a JSON object {layer-name-or-re:regex: {...}}", where);
        return WQ_ERR_ARG;
    }
    int n = cJSON_GetArraySize(local);
    cfg->rules = wq_calloc((size_t)(n ? n : 1), sizeof(wq_rule));
    if (!cfg->rules) return WQ_ERR_NOMEM;
    const cJSON *it;
    cJSON_ArrayForEach(it, local)
    {
        wq_rule *r = &cfg->rules[cfg->n_rules];
        const char *key = it->string;
        snprintf(where, sizeof where, "%s: \"local\" entry \"%s\"", origin, key);
        if (strncmp(key, "re:", 3) == 0) {
            r->kind = WQ_RULE_REGEX;
            key += 3;
        } else if (strcmp(key, "Linear") == 0) {
            r->kind = WQ_RULE_OPTYPE;
        } else {
            r->kind = WQ_RULE_EXACT;
        }
        if (strlen(key) >= sizeof r->pattern || !*key) {
            WQ_LOG_ERROR("%s: pattern is empty or longer than %zu characters", where,
                         sizeof r->pattern - 1);
            return WQ_ERR_ARG;
        }
        snprintf(r->pattern, sizeof r->pattern, "%s", key);
        if (r->kind == WQ_RULE_REGEX && !regex_is_tame(key)) {
            WQ_LOG_ERROR("%s: regular expression too complex: at most 8 '+' or '{m,n}' repetitions "
                         "(bounds <= 64), 16 '*' or '?' and no quantifier after a quantifier are "
                         "allowed (glibc's regex copies the pattern per repetition and can "
                         "exhaust memory or time)",
                         where);
            return WQ_ERR_ARG;
        }
        if (r->kind == WQ_RULE_REGEX) {
            char anchored[300];
            snprintf(anchored, sizeof anchored, "^(%s)$", key);
            int rc = regcomp(&r->re, anchored, REG_EXTENDED | REG_NOSUB);
            if (rc != 0) {
                char eb[256];
                regerror(rc, &r->re, eb, sizeof eb);
                WQ_LOG_ERROR("%s: invalid regular expression: %s", where, eb);
                return WQ_ERR_ARG;
            }
        }
        cfg->n_rules++; /* counted before parsing the body so free releases the regex */
        r->spec = cfg->global;
        WQ_TRY(parse_section(cfg, it, where, false, &r->spec, &r->set));
    }
    return WQ_OK;
}

static wq_status validate_spec(const wq_qspec *s, const char *where)
{
    if (s->dtype == WQ_QDTYPE_FP32) return WQ_OK;
    if (s->dtype != WQ_QDTYPE_INT && s->bits != 4) {
        WQ_LOG_ERROR("%s: dtype '%s' is 4-bit; key 'bits' must be 4 (got %d)", where,
                     wq_qdtype_name(s->dtype), s->bits);
        return WQ_ERR_ARG;
    }
    if (s->group_dim == 0) {
        WQ_LOG_ERROR("%s: key 'group_dim' = 0 (groups along the output dimension) has no packed "
                     "layout (INC marks it unsupported too); allowed: 1",
                     where);
        return WQ_ERR_UNSUPPORTED;
    }
    if (s->full_range && !s->sym && s->dtype == WQ_QDTYPE_INT) {
        WQ_LOG_WARN("%s: use_full_range only affects symmetric quantization (use_sym=false)", where);
    }
    if (s->double_quant && s->dq_dtype != WQ_QDTYPE_INT) {
        WQ_LOG_ERROR("%s: key 'double_quant_dtype' must be \"int\"", where);
        return WQ_ERR_ARG;
    }
    return WQ_OK;
}

static wq_status validate_from(const wq_config *cfg, const char *origin)
{
    char where[1400];
    snprintf(where, sizeof where, "%s: \"global\"", origin);
    WQ_TRY(validate_spec(&cfg->global, where));
    for (int i = 0; i < cfg->n_rules; i++) {
        snprintf(where, sizeof where, "%s: \"local\" entry \"%s\"", origin, cfg->rules[i].pattern);
        WQ_TRY(validate_spec(&cfg->rules[i].spec, where));
    }
    if (cfg->algo == WQ_ALGO_GPTQ && cfg->ap.act_order && cfg->ap.hybrid_order) {
        WQ_LOG_ERROR("%s: keys 'act_order' and 'hybrid_order' are mutually exclusive", origin);
        return WQ_ERR_ARG;
    }
    if (cfg->algo == WQ_ALGO_TEQ && !(cfg->ap.teq_lr > 0)) {
        WQ_LOG_ERROR("%s: key 'train_lr' must be > 0 (got %g)", origin, cfg->ap.teq_lr);
        return WQ_ERR_ARG;
    }
    return WQ_OK;
}

wq_status wq_config_validate(const wq_config *cfg) { return validate_from(cfg, "config"); }

wq_status wq_config_parse(const char *json_text, const char *origin, wq_config *cfg)
{
    wq_status st = WQ_OK;
    wq_config_defaults(cfg, WQ_ALGO_RTN);
    cJSON *root = cJSON_Parse(json_text);
    char where[1200];
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        WQ_LOG_ERROR("%s: malformed JSON near '%.20s'", origin, e ? e : "?");
        return WQ_ERR_ARG;
    }
    WQ_CHECK_GOTO(cJSON_IsObject(root), st, WQ_ERR_ARG, done,
                  "%s: the config must be a JSON object {\"<algorithm>\": {...}}", origin);
    const cJSON *algo_obj = NULL, *calib = NULL, *it;
    int algo = -1;
    cJSON_ArrayForEach(it, root)
    {
        int a = -1;
        for (int i = 0; i < WQ_ALGO_COUNT; i++)
            if (strcmp(it->string, k_algo_names[i]) == 0) a = i;
        if (a >= 0) {
            WQ_CHECK_GOTO(algo < 0, st, WQ_ERR_ARG, done,
                          "%s: more than one algorithm section ('%s' and '%s')", origin,
                          k_algo_names[algo], it->string);
            algo = a;
            algo_obj = it;
        } else if (strcmp(it->string, "calibration") == 0) {
            calib = it;
        } else {
            WQ_CHECK_GOTO(0, st, WQ_ERR_ARG, done,
                          "%s: unknown top-level key '%s'; allowed: rtn, gptq, awq, teq, hqq, "
                          "autoround, calibration",
                          origin, it->string);
        }
    }
    WQ_CHECK_GOTO(algo >= 0, st, WQ_ERR_ARG, done,
                  "%s: no algorithm section; expected one of rtn, gptq, awq, teq, hqq, autoround",
                  origin);
    wq_config_defaults(cfg, (wq_algo)algo);
    WQ_CHECK_GOTO(cJSON_IsObject(algo_obj), st, WQ_ERR_ARG, done, "%s: \"%s\" must be an object",
                  origin, k_algo_names[algo]);
    cJSON_ArrayForEach(it, algo_obj)
    {
        if (strcmp(it->string, "global") == 0) {
            snprintf(where, sizeof where, "%s: \"global\"", origin);
            WQ_TRY_GOTO(parse_section(cfg, it, where, true, &cfg->global, NULL), st, done);
        } else if (strcmp(it->string, "local") != 0) {
            WQ_CHECK_GOTO(0, st, WQ_ERR_ARG, done,
                          "%s: unknown key '%s' in \"%s\"; allowed: global, local", origin,
                          it->string, k_algo_names[algo]);
        }
    }
    /* local rules start from the (final) global values, so parse them after global */
    const cJSON *local = cJSON_GetObjectItemCaseSensitive(algo_obj, "local");
    if (local) WQ_TRY_GOTO(parse_local(cfg, local, origin), st, done);
    if (calib) WQ_TRY_GOTO(parse_calibration(cfg, calib, origin), st, done);
    WQ_TRY_GOTO(validate_from(cfg, origin), st, done);
done:
    cJSON_Delete(root);
    if (st != WQ_OK) wq_config_free(cfg);
    return st;
}

wq_status wq_config_set(wq_config *cfg, const char *key, const char *value)
{
    wq_status st = WQ_OK;
    cJSON *v = cJSON_Parse(value);
    if (!v) v = cJSON_CreateString(value); /* bare word: nf4, fp32, ... */
    if (!v) return WQ_ERR_NOMEM;
    char where[300];
    snprintf(where, sizeof where, "command-line override %s", key);
    const key_desc *k = find_key(k_qspec_keys, N_QKEYS, key);
    if (k) {
        uint32_t mask = 0;
        wq_qspec old = cfg->global;
        st = set_key(k, v, &cfg->global, where, &mask);
        /* rules inherit global values for the fields they do not set */
        for (int i = 0; st == WQ_OK && i < cfg->n_rules; i++) {
            wq_rule *r = &cfg->rules[i];
            wq_qspec s = r->spec;
            st = set_key(k, v, &s, where, &mask);
            if ((r->set & mask) == 0) r->spec = s;
        }
        (void)old;
    } else if (strcmp(key, "quant_lm_head") == 0) {
        static const key_desc kq = {"quant_lm_head", K_BOOL, 0, 0, 1, 0, 0, NULL};
        st = set_key(&kq, v, &cfg->quant_lm_head, where, NULL);
    } else if ((k = find_key(k_algo_keys, N_AKEYS, key)) && (k->algos & (1u << cfg->algo))) {
        st = set_key(k, v, &cfg->ap, where, NULL);
    } else if (strcmp(key, "n_samples") == 0 || strcmp(key, "nsamples") == 0 ||
               strcmp(key, "seqlen") == 0 || strcmp(key, "seed") == 0) {
        /* calibration keys (AutoRound's seed arguments): as in the "calibration" section */
        cJSON *obj = cJSON_CreateObject();
        if (!obj) {
            cJSON_Delete(v);
            return WQ_ERR_NOMEM;
        }
        cJSON_AddItemToObject(obj, key, v);
        v = NULL;
        st = parse_calibration(cfg, obj, where);
        cJSON_Delete(obj);
    } else {
        WQ_LOG_ERROR("%s: unknown key '%s' for algorithm '%s'", where, key, wq_algo_name(cfg->algo));
        st = WQ_ERR_ARG;
    }
    cJSON_Delete(v);
    return st;
}

void wq_config_free(wq_config *cfg)
{
    for (int i = 0; i < cfg->n_rules; i++)
        if (cfg->rules[i].kind == WQ_RULE_REGEX) regfree(&cfg->rules[i].re);
    wq_free(cfg->rules);
    cfg->rules = NULL;
    cfg->n_rules = 0;
}

static bool is_lm_head_name(const char *name)
{
    static const char *const suffixes[] = {"lm_head", "output_layer", "embed_out"};
    size_t n = strlen(name);
    for (int i = 0; i < 3; i++) {
        const char *s = suffixes[i];
        size_t m = strlen(s);
        /* INC's regexes are ".*lm_head" etc. applied to the module name */
        if (n >= m && strcmp(name + n - m, s) == 0) return true;
    }
    return false;
}

static void apply_rule(const wq_rule *r, wq_qspec *out)
{
    const wq_qspec *s = &r->spec;
#define APPLY(flag, field) \
    if (r->set & (flag)) out->field = s->field
    APPLY(WQ_QF_DTYPE, dtype);
    APPLY(WQ_QF_BITS, bits);
    APPLY(WQ_QF_GROUP_SIZE, group_size);
    APPLY(WQ_QF_SYM, sym);
    APPLY(WQ_QF_FULL_RANGE, full_range);
    APPLY(WQ_QF_MSE, mse_search);
    APPLY(WQ_QF_GROUP_DIM, group_dim);
    APPLY(WQ_QF_DQ, double_quant);
    APPLY(WQ_QF_DQ_DTYPE, dq_dtype);
    APPLY(WQ_QF_DQ_BITS, dq_bits);
    APPLY(WQ_QF_DQ_SYM, dq_sym);
    APPLY(WQ_QF_DQ_GROUP, dq_group_size);
    APPLY(WQ_QF_SCALE_DTYPE, scale_dtype);
#undef APPLY
}

void wq_config_resolve(const wq_config *cfg, const char *layer_name, const char *op_type,
                       wq_qspec *out)
{
    *out = cfg->global;
    if (!cfg->quant_lm_head && is_lm_head_name(layer_name)) out->dtype = WQ_QDTYPE_FP32;
    for (int i = 0; i < cfg->n_rules; i++) {
        const wq_rule *r = &cfg->rules[i];
        bool match = false;
        if (r->kind == WQ_RULE_EXACT)
            match = strcmp(r->pattern, layer_name) == 0;
        else if (r->kind == WQ_RULE_OPTYPE)
            match = op_type && strcmp(r->pattern, op_type) == 0;
        else
            match = regexec(&r->re, layer_name, 0, NULL, 0) == 0;
        if (match) apply_rule(r, out);
    }
}

/* ---- serialisation --------------------------------------------------------------------------- */

static void add_spec(cJSON *o, const wq_qspec *s, uint32_t only /* 0 = all */)
{
    for (size_t i = 0; i < N_QKEYS; i++) {
        const key_desc *k = &k_qspec_keys[i];
        if (only && !(only & k->flag)) continue;
        const char *p = (const char *)s + k->offset;
        switch (k->kind) {
        case K_BOOL:
            cJSON_AddBoolToObject(o, k->name, *(const bool *)p);
            break;
        case K_INT:
            if (k->offset == QS(bits) || k->offset == QS(dq_bits) || k->offset == QS(group_dim))
                cJSON_AddNumberToObject(o, k->name, *(const int *)p);
            else
                cJSON_AddNumberToObject(o, k->name, (double)*(const int64_t *)p);
            break;
        case K_DTYPE:
            cJSON_AddStringToObject(o, k->name, wq_qdtype_name(*(const wq_qdtype *)p));
            break;
        case K_SCALE_DTYPE:
            cJSON_AddStringToObject(o, k->name,
                                    *(const wq_scale_dtype *)p == WQ_SCALE_F16 ? "fp16" : "fp32");
            break;
        default:
            break;
        }
    }
}

static void add_algo_params(cJSON *o, const wq_config *cfg)
{
    for (size_t i = 0; i < N_AKEYS; i++) {
        const key_desc *k = &k_algo_keys[i];
        if (!(k->algos & (1u << cfg->algo))) continue;
        const char *p = (const char *)&cfg->ap + k->offset;
        switch (k->kind) {
        case K_BOOL:
            cJSON_AddBoolToObject(o, k->name, *(const bool *)p);
            break;
        case K_INT:
            cJSON_AddNumberToObject(o, k->name, (double)*(const int64_t *)p);
            break;
        case K_DOUBLE:
            cJSON_AddNumberToObject(o, k->name, *(const double *)p);
            break;
        case K_STRING:
            cJSON_AddStringToObject(o, k->name, p);
            break;
        default:
            break;
        }
    }
}

static char *print_and_free(cJSON *root)
{
    char *s = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!s) return NULL;
    char *out = wq_strdup(s);
    cJSON_free(s);
    return out;
}

char *wq_config_to_json(const wq_config *cfg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *algo = cJSON_AddObjectToObject(root, wq_algo_name(cfg->algo));
    cJSON *g = cJSON_AddObjectToObject(algo, "global");
    add_spec(g, &cfg->global, 0);
    cJSON_AddBoolToObject(g, "quant_lm_head", cfg->quant_lm_head);
    cJSON_AddBoolToObject(g, "use_layer_wise", cfg->use_layer_wise);
    add_algo_params(g, cfg);
    cJSON *l = cJSON_AddObjectToObject(algo, "local");
    for (int i = 0; i < cfg->n_rules; i++) {
        const wq_rule *r = &cfg->rules[i];
        char key[300];
        snprintf(key, sizeof key, "%s%s", r->kind == WQ_RULE_REGEX ? "re:" : "", r->pattern);
        cJSON *o = cJSON_AddObjectToObject(l, key);
        add_spec(o, &r->spec, r->set ? r->set : ~0u);
    }
    const wq_calib_cfg *c = &cfg->calib;
    if (c->text[0]) {
        static const char *fm[] = {"text", "stories", "jsonl", "ids16", "ids32"};
        cJSON *co = cJSON_AddObjectToObject(root, "calibration");
        cJSON_AddStringToObject(co, "text", c->text);
        cJSON_AddStringToObject(co, "format", fm[c->format]);
        cJSON *rg = cJSON_AddArrayToObject(co, "range");
        cJSON_AddItemToArray(rg, cJSON_CreateNumber((double)c->range_begin));
        cJSON_AddItemToArray(rg, cJSON_CreateNumber((double)c->range_end));
        cJSON_AddNumberToObject(co, "n_samples", (double)c->n_samples);
        cJSON_AddNumberToObject(co, "seqlen", (double)c->seqlen);
        cJSON_AddNumberToObject(co, "seed", (double)c->seed);
    }
    return print_and_free(root);
}

char *wq_config_layer_json(const wq_config *cfg, const wq_qspec *spec)
{
    cJSON *o = cJSON_CreateObject();
    if (spec->dtype == WQ_QDTYPE_FP32) {
        cJSON_AddStringToObject(o, "dtype", "fp32");
        return print_and_free(o);
    }
    add_spec(o, spec, 0);
    cJSON_AddBoolToObject(o, "quant_lm_head", cfg->quant_lm_head);
    cJSON_AddBoolToObject(o, "use_layer_wise", cfg->use_layer_wise);
    add_algo_params(o, cfg);
    return print_and_free(o);
}
