#!/bin/bash
# AutoRound vs RTN vs GPTQ on stories260K (int4/int3/int2, g32, asym): calibration 128 windows x 256
# tokens from TinyStories stories 0..399, seed 42 (AutoRound 200 iters; GPTQ percdamp 0.01,
# block_size 128), evaluated on stories 400..499 (assets' protocol). One line per run.
# Usage: scripts/autoround_table.sh [bits...]   (default 4 3 2)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${WQ_BIN:-build/wquant}
M=assets/stories260K-hf
OUT=${WQ_TABLE_DIR:-runs/autoround_table}
mkdir -p "$OUT"
bits_list=("${@:-4 3 2}")
read -r -a bits_list <<< "${bits_list[*]}"
CAL='"calibration": {"text": "assets/text/tinystories-val-500.txt", "format": "stories", "range": [0, 400], "n_samples": 128, "seqlen": 256, "seed": 42}'
for bits in "${bits_list[@]}"; do
  for algo in rtn gptq autoround; do
    extra=""
    [ "$algo" = gptq ] && extra=', "percdamp": 0.01, "block_size": 128'
    [ "$algo" = autoround ] && extra=', "iters": 200'
    cal=", $CAL"
    [ "$algo" = rtn ] && cal=""
    cfg="$OUT/$algo-w${bits}g32.json"
    echo "{\"$algo\": {\"global\": {\"dtype\": \"int\", \"bits\": $bits, \"group_size\": 32, \"use_sym\": false$extra}}$cal}" > "$cfg"
    "$W" quantize --model "$M" --config "$cfg" --out "$OUT/$algo-w${bits}g32.h5" --quiet 2>/dev/null
    p=$("$W" eval --model "$M" --quantized "$OUT/$algo-w${bits}g32.h5" --text assets/text/tinystories-val-500.txt \
        --protocol stories --range 400:500 --json | sed -n 's/.*"ppl": \([0-9.e+-]*\).*/\1/p')
    echo "int$bits g32 asym $algo ppl $p"
  done
done
