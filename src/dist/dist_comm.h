/* dist_comm.h: the raw communicator of a wq_dist, for io_hdf5/ (parallel HDF5 needs it) only.
 * Layer: dist (private). */
#ifndef WQ_DIST_COMM_H
#define WQ_DIST_COMM_H

#include <mpi.h>

#include "dist/dist.h"

MPI_Comm wq__dist_comm(const wq_dist *d);

#endif
