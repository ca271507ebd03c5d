/* core_log.h: leveled logging to stderr with a rank prefix, and the error-message slot.
 * Layer: core. The logger configuration is the only mutable global in wquant. */
#ifndef WQ_CORE_LOG_H
#define WQ_CORE_LOG_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { WQ_LOG_LVL_ERROR = 0, WQ_LOG_LVL_WARN = 1, WQ_LOG_LVL_INFO = 2, WQ_LOG_LVL_DEBUG = 3 } wq_log_level;

/* Set by the driver once MPI is up: messages are prefixed "[wq rR/S]". */
void wq_log_set_rank(int rank, int size);
void wq_log_set_level(wq_log_level lvl);
wq_log_level wq_log_get_level(void);
int wq_log_rank(void);

/* printf-style; thread-safe enough for one line per call. The most recent ERROR message is also kept
 * so a driver can forward the root cause to the other ranks (wq_log_last_error). */
void wq_log(wq_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void wq_vlog(wq_log_level lvl, const char *fmt, va_list ap);
/* The text of the last WQ_LOG_ERROR on this process ("" if none). */
const char *wq_log_last_error(void);
void wq_log_clear_error(void);

#define WQ_LOG_ERROR(...) wq_log(WQ_LOG_LVL_ERROR, __VA_ARGS__)
#define WQ_LOG_WARN(...) wq_log(WQ_LOG_LVL_WARN, __VA_ARGS__)
#define WQ_LOG_INFO(...) wq_log(WQ_LOG_LVL_INFO, __VA_ARGS__)
#define WQ_LOG_DEBUG(...) wq_log(WQ_LOG_LVL_DEBUG, __VA_ARGS__)
/* Info only on rank 0 (banners, progress). */
#define WQ_LOG_ROOT(...)                                    \
    do {                                                    \
        if (wq_log_rank() == 0) wq_log(WQ_LOG_LVL_INFO, __VA_ARGS__); \
    } while (0)

/* Invariant violated (a bug): log file:line, then abort the process (MPI_Abort through the hook
 * installed by dist/, plain abort() otherwise). */
void wq_abort(const char *file, int line, const char *expr);
void wq_abort_set_hook(void (*hook)(int code));
#define WQ_ASSERT(x) ((x) ? (void)0 : wq_abort(__FILE__, __LINE__, #x))

#ifdef __cplusplus
}
#endif
#endif
