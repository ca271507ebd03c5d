#!/bin/bash
# valgrind memcheck of the end-to-end path on the bundled model, one rank (mpiexec -n 1): RTN and
# GPTQ (small calibration) quantization of stories260K, then the RTN container's evaluation
# (container reader, dequantization, forward pass, tokenizer) on two stories. Fails on any memcheck
# error or definite leak. Suppressions (tests/valgrind/wquant.supp) cover Open MPI's
# MPI_Init/MPI_Finalize internals only, each justified.
# Usage: memcheck_e2e.sh BUILD_DIR SOURCE_DIR     (ctest passes both; label valgrind)
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
command -v valgrind >/dev/null || { echo "valgrind not installed: skipped"; exit 77; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OPENBLAS_NUM_THREADS=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wq-memcheck.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
MODEL=$SRC/assets/stories260K-hf
# --num-callers=50: Open MPI's plugin stacks are deep; the suppressions match ompi_mpi_init/finalize.
VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --num-callers=50 --suppressions="$SRC/tests/valgrind/wquant.supp")
run() {
    local name=$1
    shift
    local rc=0
    mpiexec -n 1 "${VG[@]}" "$BUILD/wquant" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
    grep -E "ERROR SUMMARY|definitely lost:" "$WORK/$name.log" | sed "s/^/$name: /"
    if ((rc != 0)); then
        cat "$WORK/$name.log"
        echo "memcheck: $name failed (exit $rc; 99 = memcheck errors or definite leaks)" >&2
        exit 1
    fi
}
run quantize quantize --model "$MODEL" --out "$WORK/rtn.h5" --quiet
# GPTQ with a small calibration (4 sequences of 32 tokens): calibration loader, engine forward,
# Hessian, Cholesky, the block pass and its checkpoint files
cat >"$WORK/gptq.json" <<EOF
{"gptq": {"global": {"dtype": "int", "bits": 4, "group_size": 32, "act_order": true}},
 "calibration": {"text": "$SRC/assets/text/tinystories-val-500.txt", "format": "stories",
                 "range": [0, 400], "n_samples": 4, "seqlen": 32, "seed": 0}}
EOF
run gptq quantize --model "$MODEL" --config "$WORK/gptq.json" --out "$WORK/gptq.h5" --quiet
run eval eval --model "$MODEL" --quantized "$WORK/rtn.h5" \
    --text "$SRC/assets/text/tinystories-val-500.txt" --protocol stories --range 400:402 --json
echo "memcheck: clean"
