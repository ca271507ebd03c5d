/* dist.h: the process group wquant runs on (an MPI communicator dup) and its collectives.
 * Layer: dist. This header does not expose MPI; dist_comm.h does, for io_hdf5/ only. */
#ifndef WQ_DIST_H
#define WQ_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "wq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wq_dist wq_dist;

/* Initialises MPI if needed, dups MPI_COMM_WORLD with MPI_ERRORS_RETURN, sets the log prefix and the
 * abort hook. Collective over MPI_COMM_WORLD. *out is heap-owned; free it with wq_dist_destroy.
 * WQ_ERR_MPI, WQ_ERR_NOMEM. */
wq_status wq_dist_create(int *argc, char ***argv, wq_dist **out);
/* Frees the communicator and finalises MPI if wq_dist_create initialised it. Collective. Accepts NULL. */
void wq_dist_destroy(wq_dist *d);

int wq_dist_rank(const wq_dist *d);
int wq_dist_size(const wq_dist *d);
/* Largest number of ranks sharing one node (MPI shared-memory split). Collective. */
int wq_dist_node_size(wq_dist *d);

/* Every collective phase ends here: all ranks learn whether any rank failed. Returns WQ_OK if every
 * rank passed WQ_OK. Otherwise the lowest failing rank keeps its own status, every other rank gets
 * WQ_ERR_PEER and logs the failing rank's last error message. Collective. */
wq_status wq_dist_agree(wq_dist *d, wq_status local);

/* Broadcast a byte buffer from root. On root buf and n are inputs (borrowed); elsewhere *buf is
 * allocated with wq_malloc (caller frees with wq_free) and *n is set. Collective. WQ_ERR_MPI/NOMEM. */
wq_status wq_dist_bcast_bytes(wq_dist *d, int root, void **buf, size_t *n);
/* In-place broadcast of a fixed-size buffer. Collective. */
wq_status wq_dist_bcast(wq_dist *d, int root, void *buf, size_t n);
wq_status wq_dist_barrier(wq_dist *d);
/* A barrier that sleeps while it waits (1 ms polls) instead of spinning on a core: for ranks that
 * idle while another rank measures the machine. Collective. WQ_ERR_MPI. */
wq_status wq_dist_barrier_idle(wq_dist *d);
/* Element-wise reductions in place over all ranks (result on every rank). Not order-deterministic
 * across rank counts for floats: use the chunked reductions of dist_reduce.h for statistics. */
wq_status wq_dist_allreduce_max_f64(wq_dist *d, double *x, int64_t n);
wq_status wq_dist_allreduce_sum_i64(wq_dist *d, int64_t *x, int64_t n);
/* Bitwise OR of byte buffers over all ranks, in place: assembles a buffer whose disjoint parts were
 * filled by different ranks (the rest zero) exactly, whatever the data type. Collective. */
wq_status wq_dist_allreduce_bor(wq_dist *d, void *buf, size_t n);
/* Gathers `n` bytes from every rank into `out` (size * n bytes) on every rank. Collective. */
wq_status wq_dist_allgather_bytes(wq_dist *d, const void *in, size_t n, void *out);
/* Point to point (pipeline activations). Blocking. */
wq_status wq_dist_send(wq_dist *d, int dest, int tag, const void *buf, size_t n);
wq_status wq_dist_recv(wq_dist *d, int src, int tag, void *buf, size_t n);

/* Splits into sub-groups (MPI_Comm_split semantics: same color -> same group, ordered by key).
 * Collective. *out is heap-owned (wq_dist_destroy; it does not finalise MPI). */
wq_status wq_dist_split(wq_dist *d, int color, int key, wq_dist **out);

/* Fault injection for tests (no effect unless the environment asks for it): when WQ_FAULT_POINT
 * equals `point`, WQ_FAULT_RANK equals this rank and WQ_FAULT_INDEX is unset or equals `index`, the
 * process dies at once: _exit(3), or by signal WQ_FAULT_SIGNAL=N (N > 1: that signal, e.g. 9 =
 * SIGKILL as an OOM kill would; N = 1 also means SIGKILL). */
void wq_dist_fault_point(const wq_dist *d, const char *point, int64_t index);

/* A rank-local failure that peers cannot reach an agreement point for: log and MPI_Abort.
 * Only drivers (cli/) call this. Does not return. */
_Noreturn void wq_die(wq_dist *d, wq_status st);

#ifdef __cplusplus
}
#endif
#endif
