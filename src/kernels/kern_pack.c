/* kern_pack.c: LSB-first bit packing of codes into int32 words (numerics §9.1, §9.3, §9.4); shapes
 * and formulas are in kern_pack.h. Layer: kernels.
 *
 * Fast paths: 4-bit, 2-bit and 8-bit full words are built from 64-bit loads with shift/mask folds
 * (no per-code loop); every other width, and the short last word of a run, uses the generic loop.
 * The optimum layout is a transpose (word [j][o] reads row o), so rows are processed in tiles of
 * TILE rows: the tile's codes stay in cache and each word column j is written as one contiguous run
 * of TILE int32 (a full cache line for TILE = 16). */
#include "kernels/kern_pack.h"

#include "kernels/kern_vec.h"

enum { TILE = 16 };

int wq_kern_pack_per_word(int bits)
{
    WQ_KERN_ASSERT(bits >= 1 && bits <= 8);
    return 32 / bits;
}

int64_t wq_kern_pack_words(int64_t n, int bits)
{
    const int npw = wq_kern_pack_per_word(bits);
    return (n + npw - 1) / npw;
}

static inline int32_t as_i32(uint32_t w)
{
    int32_t v;
    memcpy(&v, &w, sizeof v);
    return v;
}

static inline uint32_t as_u32(int32_t w)
{
    uint32_t v;
    memcpy(&v, &w, sizeof v);
    return v;
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Generic: word = OR_e (c[e] & mask) << bits*e, e < cnt. */
static inline uint32_t pack_generic(const uint8_t *c, int cnt, int bits)
{
    const uint32_t mask = (1u << bits) - 1u;
    uint32_t w = 0;
    for (int e = 0; e < cnt; e++)
        w |= ((uint32_t)c[e] & mask) << (bits * e);
    return w;
}

/* 8 codes of 4 bits: byte k of the load holds code k; fold pairs, quads, octets. */
static inline uint32_t pack8x4(const uint8_t *c)
{
    uint64_t x = load64(c) & 0x0F0F0F0F0F0F0F0FULL;
    x = (x | (x >> 4)) & 0x00FF00FF00FF00FFULL;
    x = (x | (x >> 8)) & 0x0000FFFF0000FFFFULL;
    x = (x | (x >> 16)) & 0x00000000FFFFFFFFULL;
    return (uint32_t)x;
}

/* 8 codes of 2 bits -> 16 bits. */
static inline uint32_t pack8x2(const uint8_t *c)
{
    uint64_t x = load64(c) & 0x0303030303030303ULL;
    x = (x | (x >> 6)) & 0x000F000F000F000FULL;
    x = (x | (x >> 12)) & 0x000000FF000000FFULL;
    x = (x | (x >> 24)) & 0x000000000000FFFFULL;
    return (uint32_t)x;
}

/* One word of element run c[0..cnt), cnt <= npw. */
static inline uint32_t pack_word(const uint8_t *c, int cnt, int bits, int npw)
{
    if (cnt == npw) {
        if (bits == 4) return pack8x4(c);
        if (bits == 2) return pack8x2(c) | (pack8x2(c + 8) << 16);
        if (bits == 8) {
            uint32_t w;
            memcpy(&w, c, sizeof w);
            return w;
        }
    }
    return pack_generic(c, cnt, bits);
}

static inline void unpack_word(uint32_t w, int cnt, int bits, uint8_t *c)
{
    const uint32_t mask = (1u << bits) - 1u;
    if (bits == 4 && cnt == 8) { /* spread nibbles to bytes: inverse of pack8x4 */
        uint64_t x = w;
        x = (x | (x << 16)) & 0x0000FFFF0000FFFFULL;
        x = (x | (x << 8)) & 0x00FF00FF00FF00FFULL;
        x = (x | (x << 4)) & 0x0F0F0F0F0F0F0F0FULL;
        memcpy(c, &x, sizeof x);
        return;
    }
    for (int e = 0; e < cnt; e++)
        c[e] = (uint8_t)((w >> (bits * e)) & mask);
}

// ---- optimum (GPTQ) layout: qweight[ceil(cols/npw)][ld], word [j][o] from row o -----------------

void wq__kern_pack_qweight_optimum_ld_ops(const wq__kern_ops *ops, const uint8_t *codes,
                                          int64_t rows, int64_t cols, int bits, int64_t ld,
                                          int32_t *qweight)
{
    WQ_KERN_ASSERT(bits >= 1 && bits <= 8 && rows >= 0 && cols >= 0 && ld >= rows);
    const int npw = 32 / bits;
    const int64_t nw = (cols + npw - 1) / npw;
    for (int64_t o0 = 0; o0 < rows; o0 += TILE) {
        const int64_t o1 = o0 + TILE < rows ? o0 + TILE : rows;
        int64_t j0 = 0; /* words [0, j0) of rows [o0, o1) already written by the SIMD path */
        if (bits == 4 && o1 - o0 == TILE && ops->pack4_rows16) {
            ops->pack4_rows16(codes + o0 * cols, cols, ld, qweight + o0);
            j0 = cols / ops->pack4_block * (ops->pack4_block / 8);
        }
        for (int64_t j = j0; j < nw; j++) {
            const int cnt = (int)(cols - j * npw < npw ? cols - j * npw : npw);
            int32_t *dst = qweight + j * ld;
            const uint8_t *src = codes + j * npw;
            for (int64_t o = o0; o < o1; o++)
                dst[o] = as_i32(pack_word(src + o * cols, cnt, bits, npw));
        }
    }
}

void wq_kern_pack_qweight_optimum_ld(const uint8_t *codes, int64_t rows, int64_t cols, int bits,
                                     int64_t ld, int32_t *qweight)
{
    wq__kern_pack_qweight_optimum_ld_ops(wq__kern_ops_active(), codes, rows, cols, bits, ld,
                                         qweight);
}

void wq_kern_pack_qweight_optimum(const uint8_t *codes, int64_t rows, int64_t cols, int bits,
                                  int32_t *qweight)
{
    wq_kern_pack_qweight_optimum_ld(codes, rows, cols, bits, rows, qweight);
}

void wq_kern_unpack_qweight_optimum(const int32_t *qweight, int64_t rows, int64_t cols, int bits,
                                    uint8_t *codes)
{
    WQ_KERN_ASSERT(bits >= 1 && bits <= 8 && rows >= 0 && cols >= 0);
    const int npw = 32 / bits;
    const int64_t nw = (cols + npw - 1) / npw;
    for (int64_t o0 = 0; o0 < rows; o0 += TILE) {
        const int64_t o1 = o0 + TILE < rows ? o0 + TILE : rows;
        for (int64_t j = 0; j < nw; j++) {
            const int cnt = (int)(cols - j * npw < npw ? cols - j * npw : npw);
            for (int64_t o = o0; o < o1; o++)
                unpack_word(as_u32(qweight[j * rows + o]), cnt, bits, codes + o * cols + j * npw);
        }
    }
}

// ---- optimum qzeros: qzeros[ngroups][ceil(rows/npw)], packed along rows, stored zp - 1 ----------

void wq_kern_pack_qzeros_optimum(const float *zeros, int64_t rows, int64_t ngroups, int bits,
                                 int32_t *qzeros)
{
    WQ_KERN_ASSERT(bits >= 1 && bits <= 8 && rows >= 0 && ngroups >= 0);
    const int npw = 32 / bits;
    const uint32_t mask = (1u << bits) - 1u;
    const int64_t nw = (rows + npw - 1) / npw;
    for (int64_t g = 0; g < ngroups; g++) {
        for (int64_t k = 0; k < nw; k++) {
            const int64_t o0 = k * npw;
            const int cnt = (int)(rows - o0 < npw ? rows - o0 : npw);
            uint32_t w = 0;
            for (int e = 0; e < cnt; e++) {
                const float z = zeros[(o0 + e) * ngroups + g];
                WQ_KERN_ASSERT(z >= 0.0f && z <= (float)mask && z == (float)(int32_t)z);
                w |= (((uint32_t)(int32_t)z - 1u) & mask) << (bits * e);
            }
            qzeros[g * nw + k] = as_i32(w);
        }
    }
}

void wq_kern_unpack_qzeros_optimum(const int32_t *qzeros, int64_t rows, int64_t ngroups, int bits,
                                   float *zeros)
{
    WQ_KERN_ASSERT(bits >= 1 && bits <= 8 && rows >= 0 && ngroups >= 0);
    const int npw = 32 / bits;
    const uint32_t mask = (1u << bits) - 1u;
    const int64_t nw = (rows + npw - 1) / npw;
    for (int64_t g = 0; g < ngroups; g++) {
        for (int64_t k = 0; k < nw; k++) {
            const int64_t o0 = k * npw;
            const int cnt = (int)(rows - o0 < npw ? rows - o0 : npw);
            const uint32_t w = as_u32(qzeros[g * nw + k]);
            for (int e = 0; e < cnt; e++)
                zeros[(o0 + e) * ngroups + g] = (float)(((w >> (bits * e)) + 1u) & mask);
        }
    }
}

// ---- INC native layout (compression_dim 1): qweight[rows][ceil(cols/npw)] -----------------------

void wq_kern_pack_qweight_native(const uint8_t *codes, int64_t rows, int64_t cols, int bits,
                                 int32_t *qweight)
{
    WQ_KERN_ASSERT(bits >= 1 && bits <= 8 && rows >= 0 && cols >= 0);
    const int npw = 32 / bits;
    const int64_t nw = (cols + npw - 1) / npw;
    for (int64_t o = 0; o < rows; o++) {
        const uint8_t *src = codes + o * cols;
        int32_t *dst = qweight + o * nw;
        for (int64_t j = 0; j < nw; j++) {
            const int cnt = (int)(cols - j * npw < npw ? cols - j * npw : npw);
            dst[j] = as_i32(pack_word(src + j * npw, cnt, bits, npw));
        }
    }
}

void wq_kern_unpack_qweight_native(const int32_t *qweight, int64_t rows, int64_t cols, int bits,
                                   uint8_t *codes)
{
    WQ_KERN_ASSERT(bits >= 1 && bits <= 8 && rows >= 0 && cols >= 0);
    const int npw = 32 / bits;
    const int64_t nw = (cols + npw - 1) / npw;
    for (int64_t o = 0; o < rows; o++)
        for (int64_t j = 0; j < nw; j++) {
            const int cnt = (int)(cols - j * npw < npw ? cols - j * npw : npw);
            unpack_word(as_u32(qweight[o * nw + j]), cnt, bits, codes + o * cols + j * npw);
        }
}
