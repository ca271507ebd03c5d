/* core_alloc.c: allocator hooks (default: posix_memalign with 64-byte alignment). Layer: core. */
#include "core/core_alloc.h"

#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *default_malloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) return NULL;
    return p;
}

static wq_alloc_hooks g_hooks = {default_malloc, free};

void wq_alloc_set_hooks(const wq_alloc_hooks *hooks)
{
    if (hooks) {
        g_hooks = *hooks;
    } else {
        g_hooks.malloc_fn = default_malloc;
        g_hooks.free_fn = free;
    }
}

void *wq_malloc(size_t bytes) { return g_hooks.malloc_fn(bytes); }

void *wq_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = wq_malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void wq_free(void *p)
{
    if (p) g_hooks.free_fn(p);
}

char *wq_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = wq_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void wq_alloc_release_free(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}
