/* wquant.h: the public, stable C API of libwquant (installed as <wquant.h>).
 *
 * A small surface over the library's round-to-nearest (RTN) weight quantizer (numerics.md 1.2):
 * quantize one fp32 weight matrix W[rows][cols] with `bits` per weight in groups of `group_size`
 * consecutive input columns, symmetric or asymmetric, into packed integer codes, per-group scales
 * and zero points; dequantize them back. Nothing here uses MPI or HDF5; the functions are
 * reentrant (no global state) and never print.
 *
 * Packed layout (INC's native layout, compression_dim 1): each row of codes is packed into
 * wquant_packed_words(cols, bits) int32 words, per_word = floor(32 / bits) codes per word, code e
 * of a word at bits [bits*e, bits*e + bits), LSB first. Codes are unsigned 0 .. 2^bits - 1.
 * Dequantization: W[r][c] ~= (code[r][c] - zeros[r][g]) * scales[r][g], g = c / group_size.
 * Symmetric schemes store zeros = 2^(bits-1).
 *
 * Status codes: 0 success, -1 invalid argument, -2 out of memory, -6 non-finite weights (the
 * library's wq_status values; wquant_status_string describes them). */
#ifndef WQUANT_H
#define WQUANT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WQUANT_API_VERSION 1 /* bumped on any incompatible change of this header */

/* The library version, "MAJOR.MINOR.PATCH" (static string). */
const char *wquant_version(void);
/* A static description of a status code; never NULL. */
const char *wquant_status_string(int status);

/* Effective group size: cols when group_size is -1 or larger than cols; 0 for invalid arguments. */
int64_t wquant_group_size(int64_t cols, int64_t group_size);
/* Groups per row: ceil(cols / effective group size). */
int64_t wquant_groups_per_row(int64_t cols, int64_t group_size);
/* int32 words per packed row: ceil(cols / floor(32 / bits)). bits in 1..8. */
int64_t wquant_packed_words(int64_t cols, int bits);

/* RTN-quantizes W[rows][cols]. Caller storage: qweight[rows * wquant_packed_words(cols, bits)],
 * scales and zeros [rows * wquant_groups_per_row(cols, group_size)]. bits 1..8; group_size -1
 * (per row) or >= 1; sym != 0 for symmetric. Returns 0, -1 (bad argument), -2 or -6 (NaN/Inf). */
int wquant_rtn_quantize(const float *W, int64_t rows, int64_t cols, int bits, int64_t group_size,
                        int sym, int32_t *qweight, float *scales, float *zeros);

/* Inverse of wquant_rtn_quantize: W[rows][cols] (caller storage) from the packed codes, scales and
 * zeros. Returns 0 or -1. */
int wquant_dequantize(const int32_t *qweight, const float *scales, const float *zeros, int64_t rows,
                      int64_t cols, int bits, int64_t group_size, float *W);

#ifdef __cplusplus
}
#endif
#endif /* WQUANT_H */
