/* core_log.c: stderr logger with rank prefix; keeps the last error text for rank agreement.
 * Layer: core. */
#include "core/core_log.h"
#include "wq_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    int rank, size;
    wq_log_level level;
    char last_error[1024];
    void (*abort_hook)(int);
} g_log = {0, 1, WQ_LOG_LVL_INFO, "", NULL};

const char *wq_status_str(wq_status st)
{
    switch (st) {
#define X(name, code, msg) \
    case WQ_##name:        \
        return msg;
        WQ_STATUS_MAP(X)
#undef X
    }
    return "unknown status";
}

void wq_log_set_rank(int rank, int size)
{
    g_log.rank = rank;
    g_log.size = size;
}
void wq_log_set_level(wq_log_level lvl) { g_log.level = lvl; }
wq_log_level wq_log_get_level(void) { return g_log.level; }
int wq_log_rank(void) { return g_log.rank; }
const char *wq_log_last_error(void) { return g_log.last_error; }
void wq_log_clear_error(void) { g_log.last_error[0] = '\0'; }

void wq_vlog(wq_log_level lvl, const char *fmt, va_list ap)
{
    static const char *tags[] = {"error", "warning", "info", "debug"};
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (lvl == WQ_LOG_LVL_ERROR) snprintf(g_log.last_error, sizeof g_log.last_error, "%s", msg);
    if (lvl > g_log.level) return;
    if (g_log.size > 1)
        fprintf(stderr, "[wq r%d/%d] %s: %s\n", g_log.rank, g_log.size, tags[lvl], msg);
    else
        fprintf(stderr, "[wq] %s: %s\n", tags[lvl], msg);
}

void wq_log(wq_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    wq_vlog(lvl, fmt, ap);
    va_end(ap);
}

void wq_abort_set_hook(void (*hook)(int code)) { g_log.abort_hook = hook; }

void wq_abort(const char *file, int line, const char *expr)
{
    fprintf(stderr, "[wq r%d/%d] internal error: assertion '%s' failed at %s:%d\n", g_log.rank,
            g_log.size, expr, file, line);
    fflush(stderr);
    if (g_log.abort_hook) g_log.abort_hook(70);
    abort();
}
