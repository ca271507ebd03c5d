/* core_io.c: see core_io.h. */
#define _GNU_SOURCE
#include "core/core_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core_log.h"

size_t wq_io_write_behind_bytes(void)
{
    const char *e = getenv("WQ_WRITE_BEHIND_MB");
    if (!e || !*e) return WQ_WRITE_BEHIND_DEFAULT_BYTES;
    char *end = NULL;
    const double mb = strtod(e, &end);
    if (end == e || *end || !(mb >= 0) || mb > 1e9) {
        static int warned; /* once per process: the planner asks many times */
        if (!warned++)
            WQ_LOG_WARN("WQ_WRITE_BEHIND_MB='%s' is not a size in MiB: using %zu MiB", e,
                        WQ_WRITE_BEHIND_DEFAULT_BYTES >> 20);
        return WQ_WRITE_BEHIND_DEFAULT_BYTES;
    }
    return (size_t)(mb * 1048576.0);
}

wq_status wq_io_behind_wrote(wq_io_behind *b, size_t bytes)
{
    if (b->fd < 0 || b->window == 0) return WQ_OK;
    b->pending += bytes;
    if (b->pending < b->window) return WQ_OK;
    b->pending = 0;
    return wq_io_write_behind(b->fd, b->path);
}

wq_status wq_io_write_behind(int fd, const char *path)
{
    if (fdatasync(fd) != 0) {
        if (errno == EINVAL || errno == EROFS) return WQ_OK; /* cannot be synced: nothing to do */
        WQ_LOG_ERROR("'%s': data did not reach storage (fdatasync): %s", path, strerror(errno));
        return WQ_ERR_IO;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* advice: ignored where unsupported */
    return WQ_OK;
}
