#!/bin/bash
# Local twin of jobs/*.sbatch for CI and laptops: the same job bodies (jobs/wq_job_lib.sh) with
# `mpiexec -n 2 --oversubscribe` instead of srun, on the bundled stories260K model: quantize (RTN),
# eval, a 2-point sweep, then the same again to check that finished work is skipped, then a killed
# quantization that the rerun resumes from its checkpoint.
# Usage: jobs/local_smoke.sh [BUILD_DIR [SOURCE_DIR]]   (defaults: build, the checkout of this file)
# Work goes to $WQ_SMOKE_DIR (default: a temporary directory, removed unless WQ_KEEP=1).
set -euo pipefail
SRC=$(cd "${2:-$(dirname "$0")/..}" && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
# shellcheck source=jobs/wq_job_lib.sh
source "$SRC/jobs/wq_job_lib.sh"
cd "$SRC" # relative paths in configs (calibration text) are relative to the checkout, as in a job
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
WQ_ROOT=$SRC
wq_setup_local "$BUILD/wquant" "${WQ_LOCAL_NP:-2}"

WORK=${WQ_SMOKE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/wq-smoke.XXXXXX")}
if [[ -z ${WQ_SMOKE_DIR:-} && -z ${WQ_KEEP:-} ]]; then trap 'rm -rf "$WORK"' EXIT; fi
MODEL=$SRC/assets/stories260K-hf
TEXT=$SRC/assets/text/tinystories-val-500.txt
fail() {
    echo "local_smoke: FAIL: $*" >&2
    exit 1
}
mtime() { stat -c %Y.%s "$1"; }

# The bodies of jobs/quantize.sbatch, jobs/eval.sbatch and jobs/sweep_array.sbatch (2 tasks).
wq_quantize configs/rtn_w4g32_asym.json "$MODEL" "$WORK/rtn/model.h5"
wq_eval "$WORK/rtn/eval.json" "$MODEL" "$TEXT" --quantized "$WORK/rtn/model.h5" \
    --protocol stories --range 400:420
# a 2-point sweep (RTN int4 g32 asym / sym): one point per "task", then the collect step
cat >"$WORK/sweep.json" <<JSON
{"base": "configs/rtn_w4g32_asym.json", "model": "$MODEL",
 "eval": {"name": "tinystories", "text": "$TEXT", "range": "400:420"},
 "axes": {"use_sym": [false, true]}}
JSON
for i in 0 1; do WQ_JOB_ID=local-$$_$i wq_sweep_point "$WORK/sweep.json" "$i" "$WORK/sweep"; done
wq_sweep_collect "$WORK/sweep.json" "$WORK/sweep"

# Outputs.
wq_complete "$WORK/rtn/model.h5" || fail "no complete container"
for f in rtn/qconfig.json rtn/model.config.json rtn/model.provenance.json rtn/eval.provenance.json \
    sweep/points/00_asym/model.h5 sweep/points/01_sym/result.json sweep/results.csv \
    sweep/ppl_vs_bpw.png; do
    [[ -s $WORK/$f ]] || fail "missing $f"
done
grep -q '"status": "complete"' "$WORK/rtn/model.provenance.json" || fail "provenance not complete"
cmp -s configs/rtn_w4g32_asym.json "$WORK/rtn/model.config.json" || fail "config copy differs"
wq_has_ppl "$WORK/rtn/eval.json" || fail "no ppl in eval.json"
[[ $(wc -l <"$WORK/sweep/results.csv") -eq 3 ]] || fail "results.csv should have 2 rows"

# Second run: everything finished is skipped (nothing rewritten).
before="$(mtime "$WORK/rtn/model.h5") $(mtime "$WORK/rtn/eval.json") $(mtime "$WORK/sweep/points/01_sym/result.json")"
wq_quantize configs/rtn_w4g32_asym.json "$MODEL" "$WORK/rtn/model.h5"
wq_eval "$WORK/rtn/eval.json" "$MODEL" "$TEXT" --quantized "$WORK/rtn/model.h5"
for i in 0 1; do wq_sweep_point "$WORK/sweep.json" "$i" "$WORK/sweep"; done
after="$(mtime "$WORK/rtn/model.h5") $(mtime "$WORK/rtn/eval.json") $(mtime "$WORK/sweep/points/01_sym/result.json")"
[[ $before == "$after" ]] || fail "a second run rewrote finished outputs"
# A killed attempt (rank 1 SIGKILLed at tensor 21, as an OOM kill would) leaves a checkpoint; the
# rerun (a requeue) resumes from it and writes the same bytes as the uninterrupted run above.
(
    export WQ_FAULT_POINT=tensor WQ_FAULT_RANK=1 WQ_FAULT_INDEX=21 WQ_FAULT_SIGNAL=1
    wq_quantize configs/rtn_w4g32_asym.json "$MODEL" "$WORK/killed/model.h5"
) 2>"$WORK/killed.log" && fail "the fault-injected run succeeded"
[[ -d $WORK/killed/model.h5.ckpt ]] || fail "a killed run left no checkpoint"
wq_quantize configs/rtn_w4g32_asym.json "$MODEL" "$WORK/killed/model.h5"
cmp -s "$WORK/rtn/model.h5" "$WORK/killed/model.h5" || fail "the resumed container differs"
[[ ! -e $WORK/killed/model.h5.ckpt ]] || fail "the checkpoint outlived the complete container"
echo "local_smoke: ok ($WORK)"
