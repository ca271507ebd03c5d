/* core_half.h: IEEE binary16 and bfloat16 conversions (round-to-nearest-even), and element dtypes of
 * stored tensors. Layer: core. */
#ifndef WQ_CORE_HALF_H
#define WQ_CORE_HALF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of tensors in files. Persisted in containers: append only, never renumber. */
typedef enum wq_dtype {
    WQ_DTYPE_F32 = 0,
    WQ_DTYPE_F16 = 1,
    WQ_DTYPE_BF16 = 2,
    WQ_DTYPE_I32 = 3,
    WQ_DTYPE_U8 = 4,
    WQ_DTYPE_I8 = 5,
    WQ_DTYPE_I64 = 6,
    WQ_DTYPE_F64 = 7,
    WQ_DTYPE_COUNT
} wq_dtype;

/* Bytes per element; 0 for an invalid dtype. */
size_t wq_dtype_size(wq_dtype t);
/* "F32", "F16", "BF16", ... (safetensors spelling). */
const char *wq_dtype_name(wq_dtype t);
/* Parses the safetensors spelling; returns WQ_DTYPE_COUNT if unknown. */
wq_dtype wq_dtype_from_name(const char *s);

float wq_f16_to_f32(uint16_t h);
uint16_t wq_f32_to_f16(float f); /* RNE; overflow -> inf; NaN kept quiet */
float wq_bf16_to_f32(uint16_t h);
uint16_t wq_f32_to_bf16(float f); /* RNE; NaN kept quiet */

/* Convert n elements of a stored float type (F32/F16/BF16/F64) to f32. Little-endian host assumed. */
void wq_convert_to_f32(wq_dtype src_type, const void *src, float *dst, size_t n);
/* Convert n f32 values to F32/F16/BF16. */
void wq_convert_from_f32(wq_dtype dst_type, const float *src, void *dst, size_t n);

#ifdef __cplusplus
}
#endif
#endif
