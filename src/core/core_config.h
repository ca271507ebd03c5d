/* core_config.h: the wquant configuration (INC dict form: {"<algo>": {"global": {...}, "local": {...}},
 * "calibration": {...}}), parsed into a typed struct and validated; per-layer resolution of the rules.
 * Layer: core. cJSON never leaves core_config.c. */
#ifndef WQ_CORE_CONFIG_H
#define WQ_CORE_CONFIG_H

#include <regex.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core_qtypes.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Persisted (container attribute): append only. */
typedef enum wq_algo {
    WQ_ALGO_RTN = 0,
    WQ_ALGO_GPTQ = 1,
    WQ_ALGO_AWQ = 2,
    WQ_ALGO_TEQ = 3,
    WQ_ALGO_HQQ = 4,
    WQ_ALGO_AUTOROUND = 5,
    WQ_ALGO_COUNT
} wq_algo;

const char *wq_algo_name(wq_algo a);

/* Which wq_qspec fields a local rule sets (bit per field). */
enum {
    WQ_QF_DTYPE = 1u << 0,
    WQ_QF_BITS = 1u << 1,
    WQ_QF_GROUP_SIZE = 1u << 2,
    WQ_QF_SYM = 1u << 3,
    WQ_QF_FULL_RANGE = 1u << 4,
    WQ_QF_MSE = 1u << 5,
    WQ_QF_GROUP_DIM = 1u << 6,
    WQ_QF_DQ = 1u << 7,
    WQ_QF_DQ_DTYPE = 1u << 8,
    WQ_QF_DQ_BITS = 1u << 9,
    WQ_QF_DQ_SYM = 1u << 10,
    WQ_QF_DQ_GROUP = 1u << 11,
    WQ_QF_SCALE_DTYPE = 1u << 12,
};

typedef enum { WQ_RULE_EXACT = 0, WQ_RULE_REGEX = 1, WQ_RULE_OPTYPE = 2 } wq_rule_kind;

typedef struct {
    wq_rule_kind kind;
    char pattern[256]; /* exact name, regex (without the "re:" prefix) or op type ("Linear") */
    regex_t re;        /* compiled POSIX ERE, anchored to the full name (kind == REGEX) */
    uint32_t set;      /* WQ_QF_* bits */
    wq_qspec spec;     /* values of the set fields */
} wq_rule;

/* Algorithm parameters (all algorithms' keys; only the selected algorithm's are accepted in a file). */
typedef struct {
    /* GPTQ (numerics.md 4.1) */
    double percdamp;
    int64_t block_size;
    bool act_order, hybrid_order, static_groups, true_sequential, fp8_aware, use_block_wise;
    bool fresh_group_params; /* group params from fully updated W (default: W at the last block
                                boundary, as the reference GPTQ and INC) */
    /* AWQ (5.1) / TEQ (6) */
    bool use_auto_scale, use_auto_clip, folding;
    bool inc_parity; /* reproduce INC's numerics quirks where they differ from the correct behaviour */
    /* TEQ trainer */
    double teq_lr;
    int64_t teq_steps;
    double teq_warmup;
    int64_t teq_batch_size; /* calibration sequences per training batch */
    int64_t teq_grad_accum; /* batches per optimizer step */
    int64_t teq_snapshot_every; /* full-calibration-loss check every N optimizer steps, keeping the
                                   best alpha (alpha = 1 included); 0: off, the last alpha (INC) */
    bool teq_restore_best; /* a check worse than the best resets alpha to the best snapshot */
    bool teq_exact_grad;   /* exact piecewise alpha gradient instead of the straight-through one */
    /* HQQ (7.1) */
    bool quant_zero, quant_scale;
    int64_t scale_quant_group_size;
    int64_t hqq_iters;
    double hqq_lp_norm, hqq_beta, hqq_kappa;
    /* AutoRound (8.1) */
    int64_t iters, batch_size, gradient_accumulate_steps, n_blocks, dynamic_max_gap;
    double lr, minmax_lr;
    bool enable_minmax_tuning, enable_quanted_input, not_use_best_mse, enable_full_range;
    char lr_scheduler[16];
    char sampler[16];       /* "rand" (the only sampler) */
    bool low_gpu_mem_usage; /* accepted: the pass always streams one sequence per forward/backward */
} wq_algo_params;

typedef enum {
    WQ_TEXT_PLAIN = 0,   /* whole file is one text */
    WQ_TEXT_STORIES = 1, /* <|endoftext|>-separated stories, with a [begin,end) range */
    WQ_TEXT_JSONL = 2,   /* one JSON object per line with a "text" field */
    WQ_TEXT_IDS16 = 3,   /* raw little-endian uint16 token ids */
    WQ_TEXT_IDS32 = 4,   /* raw little-endian uint32 token ids */
} wq_text_format;

typedef struct {
    char text[1024];     /* path; "" = no calibration data */
    wq_text_format format;
    int64_t range_begin, range_end; /* stories/records [begin, end); end = -1 means all */
    int64_t n_samples;
    int64_t seqlen;
    uint64_t seed;
} wq_calib_cfg;

typedef struct {
    wq_algo algo;
    wq_qspec global;
    bool quant_lm_head;
    bool use_layer_wise; /* accepted for INC compatibility; wquant always loads layer by layer */
    wq_rule *rules;      /* in file order; later rules override earlier ones */
    int n_rules;
    wq_algo_params ap;
    wq_calib_cfg calib;
} wq_config;

/* Defaults for an algorithm (INC 3.x defaults, numerics.md 12; scale_dtype f32). Not allocating. */
void wq_config_defaults(wq_config *cfg, wq_algo algo);

/* Parses and validates a config JSON text. `origin` names the source in messages (a file path).
 * Unknown keys, wrong types and out-of-range values give WQ_ERR_ARG with a message naming the key
 * and the allowed values. On success cfg owns heap memory: free with wq_config_free. */
wq_status wq_config_parse(const char *json_text, const char *origin, wq_config *cfg);

/* Applies a command-line override "key=value" (value in JSON syntax or a bare word) to the global
 * section, e.g. "bits=3", "use_sym=false", "dtype=nf4", "group_size=-1", or an algorithm key. */
wq_status wq_config_set(wq_config *cfg, const char *key, const char *value);

/* Re-validates the cross-field constraints (after overrides). */
wq_status wq_config_validate(const wq_config *cfg);

void wq_config_free(wq_config *cfg);

/* Resolves the spec of one layer: global, then the built-in lm_head rule (dtype fp32 unless
 * quant_lm_head), then every matching local rule in order. op_type is "Linear" for linears. */
void wq_config_resolve(const wq_config *cfg, const char *layer_name, const char *op_type,
                       wq_qspec *out);

/* Serialises the effective config (every key, resolved defaults) as JSON; wq_malloc'd text. */
char *wq_config_to_json(const wq_config *cfg);
/* The JSON object of one layer's parameters for qconfig.json ({"dtype":..,"bits":..,...} plus the
 * algorithm's keys); wq_malloc'd text. */
char *wq_config_layer_json(const wq_config *cfg, const wq_qspec *spec);

#ifdef __cplusplus
}
#endif
#endif
