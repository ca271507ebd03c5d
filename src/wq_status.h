/* wq_status.h: status codes returned by every fallible wquant function (public API).
 * One X-macro table generates the enum and wq_status_str(); codes are pinned and append-only. */
#ifndef WQ_STATUS_H
#define WQ_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#define WQ_STATUS_MAP(X)                                      \
    X(OK, 0, "success")                                       \
    X(ERR_ARG, -1, "invalid argument")                        \
    X(ERR_NOMEM, -2, "out of memory")                         \
    X(ERR_IO, -3, "file or HDF5 I/O failure")                 \
    X(ERR_MPI, -4, "MPI call failed")                         \
    X(ERR_FORMAT, -5, "unsupported or corrupt file or config") \
    X(ERR_NUMERIC, -6, "non-finite or ill-conditioned data")  \
    X(ERR_PEER, -7, "another rank failed")                    \
    X(ERR_UNSUPPORTED, -8, "not supported")

typedef enum wq_status {
#define X(name, code, msg) WQ_##name = code,
    WQ_STATUS_MAP(X)
#undef X
} wq_status;

/* Static description of a status code; never NULL. */
const char *wq_status_str(wq_status st);

/* Propagation helpers: forward a non-OK status, or jump to a cleanup label. */
#define WQ_TRY(expr)                      \
    do {                                  \
        wq_status s_ = (expr);            \
        if (s_ != WQ_OK) return s_;       \
    } while (0)
#define WQ_TRY_GOTO(expr, st, lbl)        \
    do {                                  \
        (st) = (expr);                    \
        if ((st) != WQ_OK) goto lbl;      \
    } while (0)
/* Check a condition; on failure log the message at error level, set st = code and jump. */
#define WQ_CHECK_GOTO(cond, st, code, lbl, ...) \
    do {                                        \
        if (!(cond)) {                          \
            WQ_LOG_ERROR(__VA_ARGS__);          \
            (st) = (code);                      \
            goto lbl;                           \
        }                                       \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif /* WQ_STATUS_H */
