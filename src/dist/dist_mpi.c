/* dist_mpi.c: communicator lifetime, error agreement and thin collectives over MPI.
 * Layer: dist (the only layer, with io_hdf5's HDF5 driver, that sees MPI). */
#include <mpi.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core_alloc.h"
#include "core/core_log.h"
#include "dist/dist.h"
#include "dist/dist_comm.h"

struct wq_dist {
    MPI_Comm comm;
    int rank, size;
    int we_initialized;
};

#define WQ_MPI_TRY(call)                                                     \
    do {                                                                     \
        int rc_ = (call);                                                    \
        if (rc_ != MPI_SUCCESS) {                                            \
            char es_[MPI_MAX_ERROR_STRING];                                  \
            int el_ = 0;                                                     \
            MPI_Error_string(rc_, es_, &el_);                                \
            WQ_LOG_ERROR("MPI call failed at %s:%d: %s", __FILE__, __LINE__, es_); \
            return WQ_ERR_MPI;                                               \
        }                                                                    \
    } while (0)

static void abort_hook(int code)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code);
}

MPI_Comm wq__dist_comm(const wq_dist *d) { return d->comm; }
int wq_dist_rank(const wq_dist *d) { return d->rank; }
int wq_dist_size(const wq_dist *d) { return d->size; }

int wq_dist_node_size(wq_dist *d)
{
    MPI_Comm node;
    int n = 1;
    if (MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return 1;
    MPI_Comm_size(node, &n);
    MPI_Comm_free(&node);
    MPI_Allreduce(MPI_IN_PLACE, &n, 1, MPI_INT, MPI_MAX, d->comm);
    return n;
}

wq_status wq_dist_create(int *argc, char ***argv, wq_dist **out)
{
    *out = NULL;
    int init = 0;
    MPI_Initialized(&init);
    wq_dist *d = wq_calloc(1, sizeof *d);
    if (!d) return WQ_ERR_NOMEM;
    if (!init) {
        if (MPI_Init(argc, argv) != MPI_SUCCESS) {
            wq_free(d);
            return WQ_ERR_MPI;
        }
        d->we_initialized = 1;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &d->comm);
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    wq_log_set_rank(d->rank, d->size);
    wq_abort_set_hook(abort_hook);
    *out = d;
    return WQ_OK;
}

wq_status wq_dist_split(wq_dist *d, int color, int key, wq_dist **out)
{
    *out = NULL;
    wq_dist *s = wq_calloc(1, sizeof *s);
    if (!s) return WQ_ERR_NOMEM;
    int rc = MPI_Comm_split(d->comm, color, key, &s->comm);
    if (rc != MPI_SUCCESS) {
        wq_free(s);
        WQ_LOG_ERROR("MPI_Comm_split failed");
        return WQ_ERR_MPI;
    }
    MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(s->comm, &s->rank);
    MPI_Comm_size(s->comm, &s->size);
    *out = s;
    return WQ_OK;
}

void wq_dist_destroy(wq_dist *d)
{
    if (!d) return;
    MPI_Comm_free(&d->comm);
    if (d->we_initialized) MPI_Finalize();
    wq_free(d);
}

wq_status wq_dist_agree(wq_dist *d, wq_status local)
{
    /* MINLOC over (failed ? rank : size) finds the lowest failing rank. */
    int key = local != WQ_OK ? d->rank : d->size, first = d->size;
    WQ_MPI_TRY(MPI_Allreduce(&key, &first, 1, MPI_INT, MPI_MIN, d->comm));
    if (first == d->size) return WQ_OK;
    char msg[1024];
    int code = (int)local;
    if (d->rank == first) snprintf(msg, sizeof msg, "%s", wq_log_last_error());
    WQ_MPI_TRY(MPI_Bcast(msg, sizeof msg, MPI_CHAR, first, d->comm));
    WQ_MPI_TRY(MPI_Bcast(&code, 1, MPI_INT, first, d->comm));
    msg[sizeof msg - 1] = '\0';
    if (d->rank == first) return local;
    /* rank 0 repeats the root cause once, so the user sees it whichever rank failed */
    wq_log(d->rank == 0 ? WQ_LOG_LVL_ERROR : WQ_LOG_LVL_DEBUG, "rank %d failed (%s): %s", first,
           wq_status_str((wq_status)code), msg);
    return WQ_ERR_PEER;
}

wq_status wq_dist_bcast_bytes(wq_dist *d, int root, void **buf, size_t *n)
{
    uint64_t len = d->rank == root ? (uint64_t)*n : 0;
    WQ_MPI_TRY(MPI_Bcast(&len, 1, MPI_UINT64_T, root, d->comm));
    if (d->rank != root) {
        *buf = wq_malloc(len + 1);
        if (!*buf) return WQ_ERR_NOMEM; /* peers learn through the next agree */
        ((char *)*buf)[len] = '\0';
        *n = (size_t)len;
    }
    return wq_dist_bcast(d, root, *buf, (size_t)len);
}

wq_status wq_dist_bcast(wq_dist *d, int root, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) { /* MPI counts are int: send in <= 1 GiB pieces */
        int c = n > (1u << 30) ? (1 << 30) : (int)n;
        WQ_MPI_TRY(MPI_Bcast(p, c, MPI_BYTE, root, d->comm));
        p += c;
        n -= (size_t)c;
    }
    return WQ_OK;
}

wq_status wq_dist_barrier(wq_dist *d)
{
    WQ_MPI_TRY(MPI_Barrier(d->comm));
    return WQ_OK;
}

wq_status wq_dist_barrier_idle(wq_dist *d)
{
    MPI_Request rq;
    WQ_MPI_TRY(MPI_Ibarrier(d->comm, &rq));
    for (int done = 0;;) {
        WQ_MPI_TRY(MPI_Test(&rq, &done, MPI_STATUS_IGNORE));
        if (done) return WQ_OK;
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
}

wq_status wq_dist_allreduce_max_f64(wq_dist *d, double *x, int64_t n)
{
    WQ_MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_MAX, d->comm));
    return WQ_OK;
}

wq_status wq_dist_allreduce_sum_i64(wq_dist *d, int64_t *x, int64_t n)
{
    WQ_MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_INT64_T, MPI_SUM, d->comm));
    return WQ_OK;
}

wq_status wq_dist_allreduce_bor(wq_dist *d, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        int c = n > (1u << 30) ? (1 << 30) : (int)n;
        WQ_MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, p, c, MPI_BYTE, MPI_BOR, d->comm));
        p += c;
        n -= (size_t)c;
    }
    return WQ_OK;
}

wq_status wq_dist_allgather_bytes(wq_dist *d, const void *in, size_t n, void *out)
{
    WQ_MPI_TRY(MPI_Allgather(in, (int)n, MPI_BYTE, out, (int)n, MPI_BYTE, d->comm));
    return WQ_OK;
}

wq_status wq_dist_send(wq_dist *d, int dest, int tag, const void *buf, size_t n)
{
    const char *p = buf;
    do {
        int c = n > (1u << 30) ? (1 << 30) : (int)n;
        WQ_MPI_TRY(MPI_Send(p, c, MPI_BYTE, dest, tag, d->comm));
        p += c;
        n -= (size_t)c;
    } while (n > 0);
    return WQ_OK;
}

wq_status wq_dist_recv(wq_dist *d, int src, int tag, void *buf, size_t n)
{
    char *p = buf;
    do {
        int c = n > (1u << 30) ? (1 << 30) : (int)n;
        WQ_MPI_TRY(MPI_Recv(p, c, MPI_BYTE, src, tag, d->comm, MPI_STATUS_IGNORE));
        p += c;
        n -= (size_t)c;
    } while (n > 0);
    return WQ_OK;
}

void wq_dist_fault_point(const wq_dist *d, const char *point, int64_t index)
{
    const char *p = getenv("WQ_FAULT_POINT"), *r = getenv("WQ_FAULT_RANK");
    const char *i = getenv("WQ_FAULT_INDEX"), *sig = getenv("WQ_FAULT_SIGNAL");
    if (!p || !r || strcmp(p, point) != 0 || atoi(r) != d->rank) return;
    if (i && atoll(i) != index) return;
    fprintf(stderr, "[wq r%d/%d] fault injection: dying at %s %lld\n", d->rank, d->size, point,
            (long long)index);
    fflush(stderr);
    int signo = sig ? atoi(sig) : 0;
    if (signo == 1)
        raise(SIGKILL); /* historical spelling of "kill" */
    else if (signo > 1 && signo < 65)
        raise(signo);
    _exit(3);
}

_Noreturn void wq_die(wq_dist *d, wq_status st)
{
    fprintf(stderr, "[wq r%d/%d] fatal: %s\n", d ? d->rank : 0, d ? d->size : 1, wq_status_str(st));
    fflush(stderr);
    MPI_Abort(d ? d->comm : MPI_COMM_WORLD, 1);
    abort();
}
