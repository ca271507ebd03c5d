/* core_alloc.h: every heap allocation in wquant goes through these hooks, so tests can install a
 * counting or failing allocator. Layer: core. */
#ifndef WQ_CORE_ALLOC_H
#define WQ_CORE_ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    void *(*malloc_fn)(size_t);
    void (*free_fn)(void *);
} wq_alloc_hooks;

/* NULL restores the libc allocator. Not thread-safe; call before any allocation. */
void wq_alloc_set_hooks(const wq_alloc_hooks *hooks);

/* 64-byte aligned allocation (SIMD-friendly); returns NULL on failure or when bytes == 0 overflowed.
 * Free with wq_free. */
void *wq_malloc(size_t bytes);
/* Zero-filled; checks n*size for overflow. */
void *wq_calloc(size_t n, size_t size);
/* Accepts NULL. */
void wq_free(void *p);
/* Returns the allocator's free memory to the system (glibc: malloc_trim; elsewhere a no-op). For
 * loops over large, differently sized buffers whose freed pieces would otherwise stay resident. */
void wq_alloc_release_free(void);
/* Duplicates a NUL-terminated string (NULL on failure). */
char *wq_strdup(const char *s);

#ifdef __cplusplus
}
#endif
#endif
