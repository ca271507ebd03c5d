#!/bin/bash
# TEQ against RTN on stories260K at the same settings (int4 / int3, group 32, sym and asym):
# calibration = stories 0..399 of TinyStories-val, 128 windows of 256 tokens, seed 42; evaluation =
# TinyStories stories 400..499 (assets/README.md protocol). Prints one line per setting.
# Usage: scripts/teq_table.sh [train_steps] [train_lr] [np]   (defaults 50 0.0001 1, wquant's;
# INC's trainer: 1000 0.001 with TEQ_EXTRA='"exact_gradient": false, "snapshot_every": 0')
# TEQ_EXTRA adds keys to the teq section, e.g. TEQ_EXTRA='"snapshot_every": 0' (the last alpha) or
# '"train_batch_size": 32'; SETTINGS picks settings (default "4:true 3:true 4:false
# 3:false", bits:use_sym). Each TEQ run's log (per-step losses, full calibration losses, the kept
# step) goes to $OUT/teq-<setting>.log.
# Measured tables: docs/algorithms.md, TEQ.
set -euo pipefail
cd "$(dirname "$0")/.."
W=build/wquant
M=assets/stories260K-hf
OUT=${WQ_TABLE_DIR:-runs/teq_table}
STEPS=${1:-50}
LR=${2:-0.0001}
NP=${3:-1}
mkdir -p "$OUT"
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
ppl() {
  "$W" eval --model "$M" --quantized "$1" --text assets/text/tinystories-val-500.txt \
    --protocol stories --range 400:500 --json | sed -n 's/.*"ppl": \([0-9.e+-]*\).*/\1/p'
}
for setting in ${SETTINGS:-4:true 3:true 4:false 3:false}; do
  IFS=: read -r bits sym <<< "$setting"
  name="w${bits}g32-$([[ $sym == true ]] && echo sym || echo asym)"
  for algo in rtn teq; do
    cfg="$OUT/$algo-$name.json"
    extra=""
    [[ $algo == teq ]] && extra=", \"train_steps\": $STEPS, \"train_lr\": $LR${TEQ_EXTRA:+, $TEQ_EXTRA}"
    cat > "$cfg" <<J
{"$algo": {"global": {"dtype": "int", "bits": $bits, "group_size": 32, "use_sym": $sym$extra}},
 "calibration": {"text": "assets/text/tinystories-val-500.txt", "format": "stories",
                 "range": [0, 400], "n_samples": 128, "seqlen": 256, "seed": 42}}
J
    start=$(date +%s)
    mpiexec -n "$NP" "$W" quantize --model "$M" --config "$cfg" --out "$OUT/$algo-$name.h5" \
      > "$OUT/$algo-$name.log" 2>&1
    echo "$name $algo ppl $(ppl "$OUT/$algo-$name.h5") ($(( $(date +%s) - start )) s)"
  done
done
