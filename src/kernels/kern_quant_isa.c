/* kern_quant_isa.c: runtime choice of the implementation set of the hot int loops (min/max, codes,
 * 4-bit optimum packing): ref (scalar `_ref` loops), generic (portable C), sse2 (x86-64 baseline),
 * avx2, avx512 (F+BW). See kern_quant.h (wq_kern_isa) for the selection rule. Layer: kernels.
 *
 * Design: one const table of function pointers per set (wq__kern_ops, kern_vec.h). The public fast
 * kernels fetch the active table once per row/group call, so the cost is one relaxed atomic load
 * and an indirect call per group. The choice is made on first use and cached in a function-local
 * static pointer: the only mutable state of the kernels layer (style.md allows no mutable globals
 * except the logger). It is written once with the same value by any racing first callers and
 * never changed afterwards; C11 relaxed atomics keep the race well-defined (the tables it points
 * to are const and exist before main). Tests and benchmarks compare sets through wq__kern_ops_for
 * and the *_ops drivers instead of changing the cached choice. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern_quant.h"
#include "kernels/kern_vec.h"

// ---- ref: the scalar loops of the `_ref` kernels ------------------------------------------------

static void minmax_f32_ref(const float *x, int64_t n, float *mn, float *mx)
{
    float lo = x[0], hi = x[0];
    for (int64_t i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    *mn = lo;
    *mx = hi;
}

static void minmax_bf16_ref(const uint16_t *x, int64_t n, float *mn, float *mx)
{
    float lo = kv_u2f((uint32_t)x[0] << 16), hi = lo;
    for (int64_t i = 1; i < n; i++) {
        const float v = kv_u2f((uint32_t)x[i] << 16);
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    *mn = lo;
    *mx = hi;
}

static void quant_bf16_ref(const uint16_t *x, int64_t n, int bits, float scale, float zero,
                           uint8_t *codes)
{
    enum { CHUNK = 64 };
    float buf[CHUNK];
    for (int64_t off = 0; off < n; off += CHUNK) {
        const int64_t m = n - off < CHUNK ? n - off : CHUNK;
        wq_kern_bf16_to_f32(x + off, buf, m);
        wq_kern_quant_int_ref(buf, m, bits, scale, zero, codes + off);
    }
}

// ---- tables -------------------------------------------------------------------------------------

static const wq__kern_ops k_ops_ref = {WQ_KERN_ISA_REF,
                                       minmax_f32_ref,
                                       minmax_bf16_ref,
                                       wq_kern_quant_int_ref,
                                       quant_bf16_ref,
                                       NULL,
                                       0};
static const wq__kern_ops k_ops_generic = {WQ_KERN_ISA_GENERIC,
                                           wq__kern_minmax_f32_generic,
                                           wq__kern_minmax_bf16_generic,
                                           wq__kern_quant_f32_generic,
                                           wq__kern_quant_bf16_generic,
                                           NULL,
                                           0};
#if WQ_KERN_HAVE_SSE2
static const wq__kern_ops k_ops_sse2 = {WQ_KERN_ISA_SSE2,
                                        wq__kern_minmax_f32_sse2,
                                        wq__kern_minmax_bf16_sse2,
                                        wq__kern_quant_f32_sse2,
                                        wq__kern_quant_bf16_sse2,
                                        wq__kern_pack4_optimum_rows16_sse2,
                                        32};
#endif
#if WQ_KERN_HAVE_X86_DISPATCH
static const wq__kern_ops k_ops_avx2 = {WQ_KERN_ISA_AVX2,
                                        wq__kern_minmax_f32_avx2,
                                        wq__kern_minmax_bf16_avx2,
                                        wq__kern_quant_f32_avx2,
                                        wq__kern_quant_bf16_avx2,
                                        wq__kern_pack4_optimum_rows16_avx2,
                                        64};
static const wq__kern_ops k_ops_avx512 = {WQ_KERN_ISA_AVX512,
                                          wq__kern_minmax_f32_avx512,
                                          wq__kern_minmax_bf16_avx512,
                                          wq__kern_quant_f32_avx512,
                                          wq__kern_quant_bf16_avx512,
                                          wq__kern_pack4_optimum_rows16_avx512,
                                          64};
#endif

const char *wq_kern_isa_name(wq_kern_isa isa)
{
    static const char *const k_names[WQ_KERN_ISA_COUNT] = {"ref", "generic", "sse2", "avx2",
                                                           "avx512"};
    return (unsigned)isa < WQ_KERN_ISA_COUNT ? k_names[isa] : "?";
}

const wq__kern_ops *wq__kern_ops_for(wq_kern_isa isa)
{
    switch (isa) {
    case WQ_KERN_ISA_REF:
        return &k_ops_ref;
    case WQ_KERN_ISA_GENERIC:
        return &k_ops_generic;
#if WQ_KERN_HAVE_SSE2
    case WQ_KERN_ISA_SSE2:
        return &k_ops_sse2;
#endif
#if WQ_KERN_HAVE_X86_DISPATCH
    case WQ_KERN_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") ? &k_ops_avx2 : NULL;
    case WQ_KERN_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                   ? &k_ops_avx512
                   : NULL;
#endif
    default:
        return NULL;
    }
}

bool wq_kern_isa_available(wq_kern_isa isa)
{
    return wq__kern_ops_for(isa) != NULL;
}

/* WQ_KERNEL_ISA (if it names a set) or the best one; unavailable requests step down. */
static const wq__kern_ops *select_ops(void)
{
    int want = WQ_KERN_ISA_COUNT - 1;
    const char *env = getenv("WQ_KERNEL_ISA");
    if (env && *env) {
        for (int i = 0; i < WQ_KERN_ISA_COUNT; i++)
            if (strcmp(env, wq_kern_isa_name((wq_kern_isa)i)) == 0) want = i;
    }
    for (int i = want; i > WQ_KERN_ISA_GENERIC; i--) {
        const wq__kern_ops *ops = wq__kern_ops_for((wq_kern_isa)i);
        if (ops) return ops;
    }
    return wq__kern_ops_for(
        (wq_kern_isa)(want == WQ_KERN_ISA_REF ? WQ_KERN_ISA_REF : WQ_KERN_ISA_GENERIC));
}

const wq__kern_ops *wq__kern_ops_active(void)
{
    static const wq__kern_ops *_Atomic chosen; /* see the file comment */
    const wq__kern_ops *ops = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (!ops) {
        ops = select_ops();
        atomic_store_explicit(&chosen, ops, memory_order_relaxed);
    }
    return ops;
}

wq_kern_isa wq_kern_isa_active(void)
{
    return wq__kern_ops_active()->isa;
}
