/* export_gguf.h: llama.cpp GGUF (version 3) files from quantized models. Quantized linears whose
 * groups map onto ggml blocks exactly become Q4_0 (int4 sym), Q4_1 (int4 asym, also HQQ's real
 * zero points) or Q8_0 (int8 sym); other quantized linears are written dequantized (F16, or F32 on
 * request); unquantized tensors keep their precision (norms F32). q/k rows are permuted from HF's
 * rotate-half order back to llama.cpp's interleaved RoPE order. The tokenizer comes from a
 * SentencePiece tokenizer.model. Mapping rules and their cost: docs/export.md (GGUF).
 * Like export_hf.h, the exporter sees plain data through callbacks (no HDF5 here).
 * Layer: model. Not collective; no MPI. */
#ifndef WQ_EXPORT_GGUF_H
#define WQ_EXPORT_GGUF_H

#include <stdint.h>

#include "core/core_half.h"
#include "core/core_qtypes.h"
#include "model/export_hf.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ggml tensor types written by the exporter (values are ggml's, persisted in GGUF files). */
typedef enum {
    WQ_GGML_F32 = 0,
    WQ_GGML_F16 = 1,
    WQ_GGML_Q4_0 = 2,
    WQ_GGML_Q4_1 = 3,
    WQ_GGML_Q8_0 = 8,
    WQ_GGML_BF16 = 30,
} wq_ggml_type;

#define WQ_GGUF_ALIGNMENT 32 /* general.alignment: tensor data offsets are multiples of this */
#define WQ_GGML_QK 32        /* elements per Q4_0 / Q4_1 / Q8_0 block */

/* Data access for entry i of the list given to wq_gguf_export (entries as wq_hf_entry describes;
 * for a quantized entry `n_extra/extra` list the algorithm extras read_qmatrix could NOT fold in,
 * e.g. AWQ input_scale or GPTQ fp8 scales: such layers are written dequantized). */
typedef struct {
    void *ctx;
    /* Unpacked codes/scales/zeros/g_idx whose generic dequantization (code - zero) * scale equals
     * the model's weights; HQQ's real-valued zero points replace the packed zeros. The exporter
     * frees *out with wq_qmatrix_free. */
    wq_status (*read_qmatrix)(void *ctx, int64_t i, wq_qmatrix *out);
    /* The raw tensor's original bytes (numel * wq_dtype_size(dtype)). */
    wq_status (*read_raw)(void *ctx, int64_t i, void *dst);
    /* The weights as f32 exactly as `wquant eval` uses them (all extras applied): rows * cols
     * floats for a quantized entry. */
    wq_status (*read_f32)(void *ctx, int64_t i, float *dst);
} wq_gguf_io;

typedef struct {
    const char *tokenizer; /* tokenizer.model, or a directory holding one (required) */
    const char *name;      /* general.name (NULL: "wquant") */
    int strict;            /* refuse (WQ_ERR_UNSUPPORTED) a quantized layer that does not map
                              onto a ggml block type, instead of writing it dequantized */
    int fallback_f32;      /* dequantized fallback in F32 instead of F16 */
} wq_gguf_opts;

/* What happened to one tensor (for reports and tests); filled by wq_gguf_export when asked. */
typedef struct {
    int64_t n_q4_0, n_q4_1, n_q8_0; /* quantized linears written as ggml blocks */
    int64_t n_fallback;             /* quantized linears written dequantized */
    int64_t n_tensors;              /* tensors in the file */
} wq_gguf_report;

/* Writes the GGUF file `path` (through path.tmp, renamed on success; nothing is left on failure).
 * The source config must be a Llama-family config.json with model_type llama or mistral (GGUF
 * architecture "llama"), without q/k/v/o or MLP biases. Entries are the container's, in any order;
 * names are HF names (model.embed_tokens.weight, model.layers.N.self_attn.q_proj, ...; quantized
 * linears without ".weight"); rotary inv_freq buffers are skipped. The tokenizer's pieces become
 * tokenizer.ggml.tokens/scores/token_type; when the model's vocab_size is larger the vocabulary is
 * padded with "[PAD<i>]" pieces of type unused (as llama.cpp's converter does).
 * Quantized linear -> ggml type (exact up to fp16 rounding of d and m, docs/export.md):
 *   int4 sym  (zero 8 in every group)     -> Q4_0  d = fp16(scale)
 *   int4 asym (integer or real zeros)     -> Q4_1  d = fp16(scale), m = fp16(-zero * d)
 *   int8 sym  (zero 128 in every group)   -> Q8_0  d = fp16(scale)
 * when in_features % 32 == 0, the effective group size is a multiple of 32, groups are contiguous
 * (no act-order g_idx), no unfoldable extras, and every fp16(scale) is zero or a normal number
 * (|scale| >= 2^-14, <= 65504) and every fp16(m) finite. Anything else is written dequantized
 * (F16, or F32 with fallback_f32) with a warning naming the layer and the reason, or refused with
 * strict. `report` may be NULL.
 * Errors (each logged once, naming the tensor/key/file): WQ_ERR_UNSUPPORTED (architecture,
 * biases, a tensor with no GGUF name, an unmappable layer under strict, integer raw tensors),
 * WQ_ERR_FORMAT (bad source config, tokenizer, vocab larger than the model's, data not matching
 * its declaration), WQ_ERR_IO (names the path), WQ_ERR_NOMEM, and the callbacks' errors. */
wq_status wq_gguf_export(const char *path, const wq_hf_entry *entries, int64_t n,
                         const wq_gguf_io *io, const char *source_config_json,
                         const wq_gguf_opts *opts, wq_gguf_report *report);

/* Bytes of one row of `ne0` elements of type t (ne0 a multiple of 32 for the block types);
 * 0 for an unknown type. */
uint64_t wq_ggml_row_bytes(wq_ggml_type t, int64_t ne0);
/* "F32", "F16", "Q4_0", "Q4_1", "Q8_0", "BF16", or "?" */
const char *wq_ggml_type_name(wq_ggml_type t);

#ifdef __cplusplus
}
#endif
#endif /* WQ_EXPORT_GGUF_H */
