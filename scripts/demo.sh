#!/bin/bash
# The main job on the bundled stories260K model: quantize with RTN and GPTQ (2 MPI ranks), evaluate
# fp32 and both quantized models on TinyStories (stories 400..499) and WikiText-2 (40 x 512), and
# print a results table. Run from anywhere after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
W=build/wquant
M=assets/stories260K-hf
OUT=${WQ_DEMO_DIR:-runs/demo}
NP=${WQ_DEMO_NP:-2}
mkdir -p "$OUT"
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
run() { mpiexec -n "$NP" "$W" "$@"; }
ppl() { sed -n 's/.*"ppl": \([0-9.e+-]*\).*/\1/p'; }
bpw() { "$W" inspect --json "$1" | sed -n 's/.*"quantized_layers_bits_per_weight":[[:space:]]*\([0-9.]*\).*/\1/p'; }
evaluate() { # name container-or-empty
  local q=()
  [[ -n $2 ]] && q=(--quantized "$2")
  local ts wk
  ts=$(run eval --model "$M" "${q[@]}" --text assets/text/tinystories-val-500.txt --protocol stories --range 400:500 --json | ppl)
  wk=$(run eval --model "$M" "${q[@]}" --text assets/text/wikitext2-test.raw --protocol windows --windows 40 --seqlen 512 --json | ppl)
  printf '| %-28s | %8.3f | %12.4f | %12.3f |\n' "$1" "${3:-32}" "$ts" "$wk"
}
echo "quantizing on $NP ranks into $OUT ..."
run quantize --model "$M" --config configs/rtn_w4g32_asym.json --out "$OUT/rtn_w4g32_asym.h5" --quiet
run quantize --model "$M" --config configs/stories260K/gptq_w4g32_asym_act.json --out "$OUT/gptq_w4g32_asym_act.h5" --quiet
echo
echo "| model                        | bits/w   | TinyStories  | WikiText-2   |"
echo "|------------------------------|----------|--------------|--------------|"
evaluate "fp32" "" 32
evaluate "RTN int4 g32 asym" "$OUT/rtn_w4g32_asym.h5" "$(bpw "$OUT/rtn_w4g32_asym.h5")"
evaluate "GPTQ int4 g32 asym act_order" "$OUT/gptq_w4g32_asym_act.h5" "$(bpw "$OUT/gptq_w4g32_asym_act.h5")"
echo
echo "reference (assets/reference-ppl.json): fp32 4.9612 / 124.02; RTN int4 g32 asym 5.3780 / 139.95"
