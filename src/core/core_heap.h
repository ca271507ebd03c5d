/* core_heap.h: a growable binary heap instantiated per element type, for the tokenizers' BPE
 * merge queues. Layer: core. WQ_HEAP_DEFINE(name, T, before) defines
 *   typedef struct { T *a; size_t n, cap; } name;
 *   static bool name##_push(name *h, T x);   false when out of memory (the heap is unchanged)
 *   static T    name##_pop(name *h);         the first element in `before` order; needs n > 0
 * where before(const T *x, const T *y) is true when x must come out before y. The caller owns
 * h->a (wq_free) and may empty the heap with h->n = 0. Instantiated (not generic over void *)
 * so the comparisons inline in the encoders' inner loop. */
#ifndef WQ_CORE_HEAP_H
#define WQ_CORE_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "core/core_alloc.h"

#define WQ_HEAP_DEFINE(name, T, before)                                                           \
    typedef struct {                                                                              \
        T *a;                                                                                     \
        size_t n, cap;                                                                            \
    } name;                                                                                       \
                                                                                                  \
    static bool name##_push(name *h, T x)                                                         \
    {                                                                                             \
        if (h->n == h->cap) {                                                                     \
            size_t cap = h->cap ? 2 * h->cap : 256;                                               \
            T *a = wq_malloc(cap * sizeof *a);                                                    \
            if (!a) return false;                                                                 \
            if (h->n) memcpy(a, h->a, h->n * sizeof *a);                                          \
            wq_free(h->a);                                                                        \
            h->a = a;                                                                             \
            h->cap = cap;                                                                         \
        }                                                                                         \
        size_t i = h->n++;                                                                        \
        while (i > 0) {                                                                           \
            size_t p = (i - 1) / 2;                                                               \
            if (!before(&x, &h->a[p])) break;                                                     \
            h->a[i] = h->a[p];                                                                    \
            i = p;                                                                                \
        }                                                                                         \
        h->a[i] = x;                                                                              \
        return true;                                                                              \
    }                                                                                             \
                                                                                                  \
    static T name##_pop(name *h)                                                                  \
    {                                                                                             \
        T top = h->a[0], last = h->a[--h->n];                                                     \
        size_t i = 0;                                                                             \
        for (;;) {                                                                                \
            size_t l = 2 * i + 1, best = i;                                                       \
            const T *bc = &last;                                                                  \
            if (l < h->n && before(&h->a[l], bc)) {                                               \
                best = l;                                                                         \
                bc = &h->a[l];                                                                    \
            }                                                                                     \
            if (l + 1 < h->n && before(&h->a[l + 1], bc)) best = l + 1;                           \
            if (best == i) break;                                                                 \
            h->a[i] = h->a[best];                                                                 \
            i = best;                                                                             \
        }                                                                                         \
        if (h->n) h->a[i] = last;                                                                 \
        return top;                                                                               \
    }

#endif
