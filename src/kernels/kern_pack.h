/* kern_pack.h: bit packing of quantized codes into int32 words (numerics.md §9.1, §9.3, §9.4).
 * Layer: kernels: pure, no allocation; preconditions asserted in debug builds.
 *
 * Primitive (§9.1): npw = floor(32 / bits) codes per word; word j of a packed run holds elements
 * j*npw + e, e = 0..npw-1, at bit offset bits*e (LSB first); high leftover bits are 0 and the last
 * word of a run may be short. Codes are masked to `bits` bits before packing, so two's-complement
 * signed codes pack to the same fields (e.g. 4 bit: -8 -> 0x8). Examples: codes 1..8 -> 0x87654321,
 * signed [-8,-1,0,1,2,3,4,7] -> 0x743210F8.
 * Words are produced as uint32 bit patterns and stored in int32 (the checkpoint dtype). */
#ifndef WQ_KERN_PACK_H
#define WQ_KERN_PACK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Codes per int32 word: floor(32 / bits) (8 for 4-bit, 10 for 3-bit, ...). bits in 1..8. */
int wq_kern_pack_per_word(int bits);
/* Words needed for n codes: ceil(n / npw). */
int64_t wq_kern_pack_words(int64_t n, int bits);

/* Optimum/GPTQ layout: qweight[ceil(cols/npw)][rows]; word [j][o] packs codes[o][j*npw + e] at bit
 * bits*e, LSB first. codes is [rows][cols] (unsigned codes 0..2^bits-1). */
void wq_kern_pack_qweight_optimum(const uint8_t *codes, int64_t rows, int64_t cols, int bits,
                                  int32_t *qweight);
/* Same for a block of rows written into a wider qweight: word [j][o] goes to qweight[j*ld + o],
 * o < rows <= ld. Pass qweight + row0 to place the block at output columns row0.. of a
 * [ceil(cols/npw)][ld] array. wq_kern_pack_qweight_optimum is the case ld == rows. */
void wq_kern_pack_qweight_optimum_ld(const uint8_t *codes, int64_t rows, int64_t cols, int bits,
                                     int64_t ld, int32_t *qweight);
void wq_kern_unpack_qweight_optimum(const int32_t *qweight, int64_t rows, int64_t cols, int bits,
                                    uint8_t *codes);

/* qzeros[ngroups][ceil(rows/npw)], packed along rows, stored value (zp - 1) & (2^bits - 1); unpack
 * maps (stored+1)&mask back (so zp=0 round-trips). zeros is [rows][ngroups] floats holding integers
 * in 0..2^bits-1. (Standard GPTQ v1 loaders read stored+1 without the mask: zp 0 becomes 2^bits,
 * numerics §13.4.) */
void wq_kern_pack_qzeros_optimum(const float *zeros, int64_t rows, int64_t ngroups, int bits,
                                 int32_t *qzeros);
void wq_kern_unpack_qzeros_optimum(const int32_t *qzeros, int64_t rows, int64_t ngroups, int bits,
                                   float *zeros);

/* INC native layout (compression_dim 1), used for nf4/fp4: qweight[rows][ceil(cols/npw)] packed
 * along cols. */
void wq_kern_pack_qweight_native(const uint8_t *codes, int64_t rows, int64_t cols, int bits,
                                 int32_t *qweight);
void wq_kern_unpack_qweight_native(const int32_t *qweight, int64_t rows, int64_t cols, int bits,
                                   uint8_t *codes);

#ifdef __cplusplus
}
#endif
#endif /* WQ_KERN_PACK_H */
