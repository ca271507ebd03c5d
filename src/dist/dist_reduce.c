/* dist_reduce.c: integer (order-independent) allreduce of wq_exact cells. Layer: dist. */
#include "dist/dist_reduce.h"

#include <mpi.h>

#include "core/core_log.h"
#include "dist/dist_comm.h"

static void exact_sum_op(void *in, void *inout, int *len, MPI_Datatype *dt)
{
    (void)dt;
    wq_kern_exact_merge((wq_exact *)inout, (const wq_exact *)in, *len);
}

wq_status wq_dist_allreduce_exact(wq_dist *d, wq_exact *acc, int64_t n)
{
    MPI_Datatype t;
    MPI_Op op;
    MPI_Type_contiguous(2, MPI_UINT64_T, &t);
    MPI_Type_commit(&t);
    MPI_Op_create(exact_sum_op, 1, &op);
    int rc = MPI_SUCCESS;
    const int64_t piece = 1 << 24; /* MPI counts are int */
    for (int64_t off = 0; off < n && rc == MPI_SUCCESS; off += piece) {
        int c = (int)(n - off < piece ? n - off : piece);
        rc = MPI_Allreduce(MPI_IN_PLACE, acc + off, c, t, op, wq__dist_comm(d));
    }
    MPI_Op_free(&op);
    MPI_Type_free(&t);
    if (rc != MPI_SUCCESS) {
        WQ_LOG_ERROR("exact allreduce of %lld values failed", (long long)n);
        return WQ_ERR_MPI;
    }
    return WQ_OK;
}
