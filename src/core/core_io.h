/* core_io.h: write-behind for files wquant writes and then needs durable (the container, the
 * checkpoint entries). Once a writer has put `wq_io_write_behind_bytes()` bytes into a file, they
 * are made durable and dropped from the page cache. The container is fsync'ed before it is marked
 * complete anyway; doing it as the data arrives keeps the page cache bounded (a 70B container is
 * not left dirty on a shared node), moves the final flush into the run, and lets the next writes
 * reuse the pages just freed instead of fresh ones (measured 4x faster on a virtual machine whose
 * host takes freed memory back: docs/planning.md). Layer: core (plain POSIX). */
#ifndef WQ_CORE_IO_H
#define WQ_CORE_IO_H

#include <stddef.h>

#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default write-behind window. */
#define WQ_WRITE_BEHIND_DEFAULT_BYTES ((size_t)64 << 20)

/* The window: WQ_WRITE_BEHIND_MB from the environment (0 turns write-behind off: returns 0), else
 * the default. */
size_t wq_io_write_behind_bytes(void);

/* fdatasync(fd), then drops the file's clean pages from the page cache. `path` names the file in
 * the error. WQ_ERR_IO when the data cannot be made durable (logged); a file system that cannot
 * sync or drop this kind of file (EINVAL, e.g. a pipe) is not an error. */
wq_status wq_io_write_behind(int fd, const char *path);

/* A writer's write-behind state: fd < 0 or window 0 means none. */
typedef struct {
    int fd;
    size_t window, pending; /* the window; bytes written since the last write-behind */
    const char *path;       /* named in errors */
} wq_io_behind;

/* Counts `bytes` just written to b->fd; once a window's worth is pending, wq_io_write_behind.
 * Errors as wq_io_write_behind. */
wq_status wq_io_behind_wrote(wq_io_behind *b, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
