/* fuzz_util.h: helpers shared by the libFuzzer harnesses (fuzz_*.c) and the gcc replay driver
 * (fuzz_replay.c): a per-process scratch file for parsers that take a path, and quiet logging.
 * Not part of the library; header-only so each harness stays one translation unit. */
#ifndef WQ_FUZZ_UTIL_H
#define WQ_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core_log.h"

/* The harness entry point (libFuzzer's name, so the same source links with -fsanitize=fuzzer or
 * with fuzz_replay.c). Returns 0; crashes (abort, sanitizer report) are the findings. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Errors only (the lowest level the logger has): parser errors on garbage are expected, so
 * scripts/fuzz runs libFuzzer with -close_fd_mask=2 (sanitizer reports still get through).
 * WQ_FUZZ_VERBOSE=1 logs at debug level, for minimising a finding. */
static inline void wq_fuzz_quiet(void)
{
    static int done;
    if (done) return;
    done = 1;
    const char *v = getenv("WQ_FUZZ_VERBOSE");
    wq_log_set_level(v && v[0] == '1' ? WQ_LOG_LVL_DEBUG : WQ_LOG_LVL_ERROR);
}

/* Writes data to this process's scratch file (created once under $TMPDIR, removed at exit) and
 * returns its path, or NULL on an I/O failure (the harness then skips the input). `suffix` keeps
 * the extension a parser may look at. */
static char wq_fuzz_path_[4096];
static void wq_fuzz_cleanup_(void)
{
    if (wq_fuzz_path_[0]) unlink(wq_fuzz_path_);
}
static inline const char *wq_fuzz_write_temp(const uint8_t *data, size_t size, const char *suffix)
{
    if (!wq_fuzz_path_[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(wq_fuzz_path_, sizeof wq_fuzz_path_, "%s/wq_fuzz_%ld_XXXXXX%s",
                 tmp && tmp[0] ? tmp : "/tmp", (long)getpid(), suffix);
        int fd = mkstemps(wq_fuzz_path_, (int)strlen(suffix));
        if (fd < 0) {
            wq_fuzz_path_[0] = '\0';
            return NULL;
        }
        close(fd);
        atexit(wq_fuzz_cleanup_);
    }
    FILE *f = fopen(wq_fuzz_path_, "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    int rc = fclose(f);
    return w == size && rc == 0 ? wq_fuzz_path_ : NULL;
}

/* Aborts with a message: used for invariants the harness checks beyond memory safety (a config
 * that does not survive to_json -> parse, a tensor table that contradicts itself). */
#define WQ_FUZZ_CHECK(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: harness invariant failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif /* WQ_FUZZ_UTIL_H */
