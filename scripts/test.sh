#!/bin/bash
# Runs the test suite (unit, mpi, io, e2e labels; 'slow' excluded) of an already built tree.
# Usage: scripts/test.sh [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/../build"
# mpiexec as root and with more ranks than cores: allowed through the environment, never in CMake.
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
ctest --output-on-failure -LE slow "$@"
