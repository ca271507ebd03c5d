/* export_hf.h: HuggingFace checkpoints of quantized models in the layouts that transformers, vLLM,
 * AutoGPTQ/GPTQModel and AutoAWQ load: GPTQ (numerics.md 9.5: qweight/qzeros/scales/g_idx, v1 or
 * v2 zero points, AutoGPTQ 3-bit layout) and AutoAWQ GEMM (9.6). The exporter sees plain data only:
 * the caller (cli) lists the entries and hands over unpacked quantized matrices and raw tensor
 * bytes through callbacks, so this layer needs no HDF5. Layer: model. Not collective; no MPI. */
#ifndef WQ_EXPORT_HF_H
#define WQ_EXPORT_HF_H

#include <stdint.h>

#include "core/core_half.h"
#include "core/core_qtypes.h"
#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { WQ_HF_GPTQ = 0, WQ_HF_AWQ = 1 } wq_hf_format;

#define WQ_HF_MAX_EXTRA 4

/* One model entry, as the container lists it (names borrowed; must outlive the export call). */
typedef struct {
    const char *name;       /* quantized: layer name ("model.layers.0.mlp.down_proj");
                               raw: tensor name ("model.norm.weight") */
    int quantized;          /* 1: a quantized linear; 0: a tensor kept in original precision */
    int linear;             /* raw: the weight of a linear kept unquantized (e.g. lm_head) */
    int ndim;               /* raw: 0..4 */
    int64_t shape[4];       /* raw: original shape */
    wq_dtype dtype;         /* raw: stored dtype */
    int64_t rows, cols;     /* quantized: out, in features */
    wq_qspec spec;          /* quantized: resolved spec; spec.group_size is the configured value
                               (-1 allowed) */
    int64_t group_size_eff; /* quantized: effective group size */
    int has_gidx;           /* quantized: an act-order g_idx is stored */
    int n_extra;            /* quantized: algorithm extras (AWQ input_scale, DPQ scale, ...) */
    const char *extra[WQ_HF_MAX_EXTRA];
} wq_hf_entry;

/* Data access for entry i of the list given to wq_hf_export. */
typedef struct {
    void *ctx;
    /* Fills *out (unpacked codes/scales/zeros/g_idx, as wq_qmatrix documents); the exporter frees
     * it with wq_qmatrix_free. */
    wq_status (*read_qmatrix)(void *ctx, int64_t i, wq_qmatrix *out);
    /* Writes the raw tensor's original bytes (numel * wq_dtype_size(dtype)) into dst. */
    wq_status (*read_raw)(void *ctx, int64_t i, void *dst);
} wq_hf_io;

typedef struct {
    wq_hf_format format;
    double max_shard_bytes; /* <= 0: 4000 MB. A quantized layer's tensors never straddle shards */
    int gptq_v1;            /* GPTQ: force checkpoint_format "gptq" (v1); refused when lossy */
    const char *tokenizer_dir; /* optional: tokenizer files are copied from here */
} wq_hf_export_opts;

/* Writes the HF directory `outdir` (created if missing): config.json (the source config with
 * torch_dtype float16 and quantization_config), quantize_config.json (GPTQ), model.safetensors or
 * model-0000k-of-0000n.safetensors + model.safetensors.index.json, and the tokenizer files.
 * Every entry is validated before anything is written (two passes over the quantized layers: the
 * first decides v1/v2 zero points). Non-quantized float tensors are written as F16.
 * Not collective. Errors (each logged once, naming the layer and what is allowed):
 * WQ_ERR_UNSUPPORTED (a layer the format cannot express: dtype, bits, extras, group size not
 * dividing in_features, widths not multiples of the packing, mixed settings, lossy --gptq-v1),
 * WQ_ERR_FORMAT (bad source config JSON), WQ_ERR_IO (names the path), WQ_ERR_NOMEM, and whatever
 * the callbacks return. */
wq_status wq_hf_export(const char *outdir, const wq_hf_entry *entries, int64_t n,
                       const wq_hf_io *io, const char *source_config_json,
                       const char *wquant_config_json, const wq_hf_export_opts *opts);

/* Copies tokenizer.model, tokenizer.json, tokenizer_config.json and special_tokens_map.json from
 * src_dir to dst_dir when present (a warning if none is). Not collective. WQ_ERR_IO (names the
 * path). */
wq_status wq_hf_copy_tokenizer(const char *src_dir, const char *dst_dir);

#ifdef __cplusplus
}
#endif
#endif /* WQ_EXPORT_HF_H */
