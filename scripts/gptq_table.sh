#!/bin/bash
# Reproduces the README's GPTQ table on stories260K: five settings x three calibration seeds
# (calibration: stories 0..399 of TinyStories-val, 128 windows of 256 tokens; percdamp 0.01,
# block_size 128), evaluated on TinyStories stories 400..499. Prints one line per run and the
# medians. Usage: scripts/gptq_table.sh [seeds...]   (default 0 1 2)
set -euo pipefail
cd "$(dirname "$0")/.."
W=build/wquant
M=assets/stories260K-hf
OUT=${WQ_TABLE_DIR:-runs/gptq_table}
mkdir -p "$OUT"
seeds=("${@:-0 1 2}")
read -r -a seeds <<< "${seeds[*]}"
settings=("w4g32:4:32:false" "w4g32act:4:32:true" "w4pcact:4:-1:true" "w3g32act:3:32:true" "w2g32act:2:32:true")
for s in "${settings[@]}"; do
  IFS=: read -r name bits gs act <<< "$s"
  vals=()
  for seed in "${seeds[@]}"; do
    cfg="$OUT/$name-$seed.json"
    cat > "$cfg" <<J
{"gptq": {"global": {"dtype": "int", "bits": $bits, "group_size": $gs, "use_sym": false,
                     "act_order": $act, "percdamp": 0.01, "block_size": 128}},
 "calibration": {"text": "assets/text/tinystories-val-500.txt", "format": "stories",
                 "range": [0, 400], "n_samples": 128, "seqlen": 256, "seed": $seed}}
J
    "$W" quantize --model "$M" --config "$cfg" --out "$OUT/$name-$seed.h5" --quiet 2>/dev/null
    p=$("$W" eval --model "$M" --quantized "$OUT/$name-$seed.h5" --text assets/text/tinystories-val-500.txt \
        --protocol stories --range 400:500 --json | sed -n 's/.*"ppl": \([0-9.e+-]*\).*/\1/p')
    echo "$name seed $seed ppl $p"
    vals+=("$p")
  done
  printf '%s\n' "${vals[@]}" | sort -g | awk -v n="$name" '{a[NR]=$1} END {printf "%s median %.4f [%.4f-%.4f]\n", n, a[int((NR+1)/2)], a[1], a[NR]}'
done
