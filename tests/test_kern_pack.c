/* test_kern_pack.c: bit packing of codes into int32 words (src/kernels/kern_pack.c) against the
 * numerics §9.1 examples and an independent bit-by-bit reference written here. The optimum packing
 * is checked for every instruction set this machine runs (wq_kern_isa: ref, generic, sse2, avx2,
 * avx512), not only the one the dispatcher picked. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "kernels/kern_pack.h"
#include "kernels/kern_vec.h" /* wq__kern_ops_for, wq__kern_pack_qweight_optimum_ld_ops */
#include "wq_testutil.h"

/* Independent reference: bit b of word w is bit (b - bits*e) of element npw*w + e, LSB first. */
static uint32_t ref_word(const uint8_t *elems, int64_t stride, int64_t n, int64_t w, int bits)
{
    const int npw = 32 / bits;
    uint64_t word = 0;
    for (int e = 0; e < npw; e++) {
        const int64_t k = w * npw + e;
        if (k >= n) break;
        for (int b = 0; b < bits; b++)
            if ((elems[k * stride] >> b) & 1u) word |= (uint64_t)1 << (bits * e + b);
    }
    return (uint32_t)word;
}

static uint32_t u32(int32_t v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static void fill_codes(uint8_t *c, int64_t n, int bits, uint64_t seed, int dirty)
{
    wq_test_rng r = {seed};
    for (int64_t i = 0; i < n; i++) {
        uint64_t v = wq_test_next(&r);
        /* dirty: random high bits above `bits`, which packing must ignore */
        c[i] = dirty ? (uint8_t)v : (uint8_t)(v & ((1u << bits) - 1u));
    }
}

static void pack_per_word_should_be_floor_32_over_bits(void **state)
{
    (void)state;
    static const int expect[9] = {0, 32, 16, 10, 8, 6, 5, 4, 4};
    for (int b = 1; b <= 8; b++)
        assert_int_equal(wq_kern_pack_per_word(b), expect[b]);
    assert_int_equal(wq_kern_pack_words(172, 4), 22);
    assert_int_equal(wq_kern_pack_words(10, 3), 1);
    assert_int_equal(wq_kern_pack_words(11, 3), 2);
}

static void pack_should_match_numerics_9_1_examples(void **state)
{
    (void)state;
    const uint8_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const int8_t sgn[8] = {-8, -1, 0, 1, 2, 3, 4, 7}; /* two's complement bit fields */
    uint8_t b[8], back[8];
    memcpy(b, sgn, sizeof b);
    int32_t w[1];
    wq_kern_pack_qweight_native(a, 1, 8, 4, w);
    assert_int_equal(u32(w[0]), 0x87654321u);
    wq_kern_pack_qweight_optimum(a, 1, 8, 4, w);
    assert_int_equal(u32(w[0]), 0x87654321u);
    wq_kern_pack_qweight_native(b, 1, 8, 4, w);
    assert_int_equal(u32(w[0]), 0x743210F8u);
    wq_kern_unpack_qweight_native(w, 1, 8, 4, back);
    static const uint8_t masked[8] = {8, 15, 0, 1, 2, 3, 4, 7};
    assert_memory_equal(back, masked, 8);
}

static void pack_optimum_should_transpose_words_and_pad_short_word(void **state)
{
    (void)state;
    /* rows 2, cols 10, 4 bit: qweight[2][2], word [j][o] = codes[o][8j..]; word 1 holds 2 codes */
    const uint8_t c[20] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4};
    int32_t q[4];
    wq_kern_pack_qweight_optimum(c, 2, 10, 4, q);
    assert_int_equal(u32(q[0]), 0x87654321u); /* [0][0] */
    assert_int_equal(u32(q[1]), 0x210FEDCBu); /* [0][1] = row 1 codes 0..7 */
    assert_int_equal(u32(q[2]), 0x000000A9u); /* [1][0] = row 0 codes 8, 9 */
    assert_int_equal(u32(q[3]), 0x00000043u); /* [1][1] */
    /* native: qweight[o][j] */
    wq_kern_pack_qweight_native(c, 2, 10, 4, q);
    assert_int_equal(u32(q[0]), 0x87654321u);
    assert_int_equal(u32(q[1]), 0x000000A9u);
    assert_int_equal(u32(q[2]), 0x210FEDCBu);
    assert_int_equal(u32(q[3]), 0x00000043u);
}

/* Every bits 1..8 x ragged shapes (including the 16-row SIMD tiles and partial word groups):
 * packed words equal the bit-level reference, and unpack(pack(codes)) == codes & mask. */
static void pack_unpack_should_roundtrip_every_bits_and_ragged_sizes(void **state)
{
    (void)state;
    static const int64_t rows_list[] = {1, 3, 16, 17, 33, 48};
    static const int64_t cols_list[] = {1, 7, 8, 9, 31, 32, 33, 63, 64, 100, 128, 172, 200};
    for (int bits = 1; bits <= 8; bits++) {
        const uint8_t mask = (uint8_t)((1u << bits) - 1u);
        for (size_t ri = 0; ri < sizeof rows_list / sizeof *rows_list; ri++) {
            for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++) {
                const int64_t rows = rows_list[ri], cols = cols_list[ci];
                const int64_t nwc = wq_kern_pack_words(cols, bits);
                for (int dirty = 0; dirty <= 1; dirty++) {
                    uint64_t seed = WQ_TEST_SEED + (uint64_t)(bits * 1000 + ri * 10 + ci) + dirty;
                    uint8_t *c = malloc((size_t)(rows * cols)),
                            *back = malloc((size_t)(rows * cols));
                    int32_t *qo = malloc((size_t)(nwc * rows) * 4),
                            *qn = malloc((size_t)(nwc * rows) * 4);
                    fill_codes(c, rows * cols, bits, seed, dirty);
                    wq_kern_pack_qweight_native(c, rows, cols, bits, qn);
                    for (int isa = WQ_KERN_ISA_COUNT - 1; isa >= 0; isa--) {
                        const wq__kern_ops *ops = wq__kern_ops_for((wq_kern_isa)isa);
                        if (!ops) continue;
                        wq__kern_pack_qweight_optimum_ld_ops(ops, c, rows, cols, bits, rows, qo);
                        for (int64_t o = 0; o < rows; o++)
                            for (int64_t j = 0; j < nwc; j++) {
                                uint32_t want = ref_word(c + o * cols, 1, cols, j, bits);
                                if (u32(qo[j * rows + o]) != want || u32(qn[o * nwc + j]) != want)
                                    fail_msg("%s: bits %d rows %lld cols %lld o %lld j %lld seed "
                                             "%llx",
                                             wq_kern_isa_name((wq_kern_isa)isa), bits,
                                             (long long)rows, (long long)cols, (long long)o,
                                             (long long)j, (unsigned long long)seed);
                            }
                    }
                    /* the public entry point (active ISA) as well; qo is also unpacked below */
                    wq_kern_pack_qweight_optimum(c, rows, cols, bits, qo);
                    for (int64_t o = 0; o < rows; o++)
                        for (int64_t j = 0; j < nwc; j++)
                            assert_int_equal(u32(qo[j * rows + o]),
                                             ref_word(c + o * cols, 1, cols, j, bits));
                    wq_kern_unpack_qweight_optimum(qo, rows, cols, bits, back);
                    for (int64_t i = 0; i < rows * cols; i++)
                        assert_int_equal(back[i], c[i] & mask);
                    memset(back, 0xAB, (size_t)rows * (size_t)cols);
                    wq_kern_unpack_qweight_native(qn, rows, cols, bits, back);
                    for (int64_t i = 0; i < rows * cols; i++)
                        assert_int_equal(back[i], c[i] & mask);
                    free(c);
                    free(back);
                    free(qo);
                    free(qn);
                }
            }
        }
    }
}

/* A block of rows packed into a wider qweight (aligned and unaligned destinations, which take the
 * streaming and the ordinary store paths) equals the corresponding columns of a whole-matrix pack.
 */
static void pack_optimum_ld_should_fill_block_columns(void **state)
{
    (void)state;
    const int64_t rows = 64, cols = 200;
    for (int bits = 1; bits <= 8; bits++) {
        const int64_t nw = wq_kern_pack_words(cols, bits);
        uint8_t *c = malloc((size_t)(rows * cols));
        int32_t *full = wq_malloc((size_t)(nw * rows) * 4);
        int32_t *blk = wq_malloc((size_t)(nw * (rows + 1)) * 4);
        fill_codes(c, rows * cols, bits, WQ_TEST_SEED + (uint64_t)bits, 0);
        wq_kern_pack_qweight_optimum(c, rows, cols, bits, full);
        for (int isa = 0; isa < WQ_KERN_ISA_COUNT; isa++) {
            const wq__kern_ops *ops = wq__kern_ops_for((wq_kern_isa)isa);
            if (!ops) continue;
            for (int shift = 0; shift <= 1; shift++) { /* ld = rows (64B-aligned) or rows + 1 */
                const int64_t ld = rows + shift;
                memset(blk, 0, (size_t)(nw * ld) * 4);
                for (int64_t r0 = 0; r0 < rows; r0 += 32)
                    wq__kern_pack_qweight_optimum_ld_ops(ops, c + r0 * cols, 32, cols, bits, ld,
                                                         blk + r0);
                for (int64_t j = 0; j < nw; j++)
                    for (int64_t o = 0; o < rows; o++)
                        if (u32(blk[j * ld + o]) != u32(full[j * rows + o]))
                            fail_msg("%s: bits %d ld %lld j %lld o %lld",
                                     wq_kern_isa_name((wq_kern_isa)isa), bits, (long long)ld,
                                     (long long)j, (long long)o);
            }
        }
        free(c);
        wq_free(full);
        wq_free(blk);
    }
}

static void qzeros_should_store_zp_minus_one_and_roundtrip_zero(void **state)
{
    (void)state;
    /* 4-bit sym: zp 8 everywhere -> every nibble 7 */
    float z8[16 * 2];
    for (int i = 0; i < 32; i++)
        z8[i] = 8.0f;
    int32_t qz[2 * 2];
    wq_kern_pack_qzeros_optimum(z8, 16, 2, 4, qz); /* qzeros[2 groups][2 words] */
    for (int i = 0; i < 4; i++)
        assert_int_equal(u32(qz[i]), 0x77777777u);
    /* asym zp 0 is stored as 0xF and unpacks back to 0; zp 15 stored as 0xE */
    float z[3] = {0.0f, 15.0f, 1.0f}, back[3];
    int32_t w[3];
    wq_kern_pack_qzeros_optimum(z, 3, 1, 4, w); /* rows 3, 1 group: one word */
    assert_int_equal(u32(w[0]), 0x0000EFu | (0u << 8));
    wq_kern_unpack_qzeros_optimum(w, 3, 1, 4, back);
    for (int i = 0; i < 3; i++)
        assert_true(back[i] == z[i]);

    /* all bits, ragged rows, several groups: reference words and round trip */
    for (int bits = 1; bits <= 8; bits++) {
        const int64_t rows = 37, ng = 3, nw = wq_kern_pack_words(rows, bits);
        const uint32_t mask = (1u << bits) - 1u;
        float zeros[37 * 3], zb[37 * 3];
        uint8_t stored[37];
        int32_t q[3 * 37];
        wq_test_rng r = {WQ_TEST_SEED + (uint64_t)bits};
        for (int64_t i = 0; i < rows * ng; i++)
            zeros[i] = (float)(wq_test_next(&r) & mask);
        wq_kern_pack_qzeros_optimum(zeros, rows, ng, bits, q);
        for (int64_t g = 0; g < ng; g++) {
            for (int64_t o = 0; o < rows; o++)
                stored[o] = (uint8_t)(((uint32_t)zeros[o * ng + g] - 1u) & mask);
            for (int64_t k = 0; k < nw; k++)
                assert_int_equal(u32(q[g * nw + k]), ref_word(stored, 1, rows, k, bits));
        }
        wq_kern_unpack_qzeros_optimum(q, rows, ng, bits, zb);
        for (int64_t i = 0; i < rows * ng; i++)
            assert_true(zb[i] == zeros[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pack_per_word_should_be_floor_32_over_bits),
        cmocka_unit_test(pack_should_match_numerics_9_1_examples),
        cmocka_unit_test(pack_optimum_should_transpose_words_and_pad_short_word),
        cmocka_unit_test(pack_unpack_should_roundtrip_every_bits_and_ragged_sizes),
        cmocka_unit_test(pack_optimum_ld_should_fill_block_columns),
        cmocka_unit_test(qzeros_should_store_zp_minus_one_and_roundtrip_zero),
    };
    return cmocka_run_group_tests_name("kern_pack", tests, NULL, NULL);
}
