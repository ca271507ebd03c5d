#!/bin/bash
# Scaling bench: wall time of `wquant quantize` (RTN and GPTQ) at 1 and 2 ranks on a synthetic
# Llama-shaped model (`wquant synth`), speed-up and parallel efficiency, and peak RSS per rank when
# the number of blocks doubles. Rerun on a quiet machine; see bench/README.md ("Scaling").
#   bench/scaling.sh [BUILD_DIR]
# Environment (defaults in brackets): WQ_BENCH_WIDTH [2048] hidden size, WQ_BENCH_FFN [5632],
# WQ_BENCH_HEADS [16], WQ_BENCH_KV_HEADS [4], WQ_BENCH_BLOCKS [8] (the RSS check also runs 2x),
# WQ_BENCH_NP [2] ranks compared with 1, WQ_BENCH_SAMPLES [16] x WQ_BENCH_SEQLEN [256] GPTQ
# calibration tokens, WQ_BENCH_ALGOS ["rtn gptq"], WQ_BENCH_DIR [a temporary directory, removed],
# WQ_BENCH_REPEAT [5 for rtn, 1 for gptq] runs per rank count, 1 and N ranks alternating; the median
# time is reported (an RTN run takes ~1 s and one alone varies by +-25%). Every run starts after a
# `sync`, so the previous run's write-back does not land in its time.
# Each rank runs one OpenBLAS thread. Times are wquant's own "wrote ... in N s" (after MPI start-up);
# peak RSS is /usr/bin/time's maximum resident set size of each rank.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
BIN=$BUILD/wquant
W=${WQ_BENCH_WIDTH:-2048}
F=${WQ_BENCH_FFN:-5632}
H=${WQ_BENCH_HEADS:-16}
KV=${WQ_BENCH_KV_HEADS:-4}
B=${WQ_BENCH_BLOCKS:-8}
NP=${WQ_BENCH_NP:-2}
NS=${WQ_BENCH_SAMPLES:-16}
SL=${WQ_BENCH_SEQLEN:-256}
ALGOS=${WQ_BENCH_ALGOS:-rtn gptq}
[[ -x $BIN ]] || { echo "no $BIN: build first" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (Debian: apt-get install time)" >&2; exit 2; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
WORK=${WQ_BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/wq-scaling.XXXXXX")}
if [[ -z ${WQ_BENCH_DIR:-} ]]; then trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK/like"

# A Llama config of the requested widths with the bundled tokenizer (vocab 512), so GPTQ can
# calibrate on the bundled TinyStories text.
cp "$ROOT/assets/stories260K-hf/tokenizer.model" "$WORK/like/"
cat >"$WORK/like/config.json" <<EOF
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": $W,
 "intermediate_size": $F, "num_hidden_layers": $B, "num_attention_heads": $H,
 "num_key_value_heads": $KV, "vocab_size": 512, "max_position_embeddings": 4096,
 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": false,
 "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}
EOF
cat >"$WORK/rtn.json" <<EOF
{"rtn": {"global": {"dtype": "int", "bits": 4, "group_size": 128, "use_sym": false}}}
EOF
cat >"$WORK/gptq.json" <<EOF
{"gptq": {"global": {"dtype": "int", "bits": 4, "group_size": 128, "use_sym": false}},
 "calibration": {"text": "$ROOT/assets/text/tinystories-val-500.txt", "format": "stories",
                 "n_samples": $NS, "seqlen": $SL, "seed": 0}}
EOF
for nb in "$B" $((2 * B)); do
    [[ -d $WORK/model$nb ]] || "$BIN" synth --like "$WORK/like" --layers "$nb" --out "$WORK/model$nb" >/dev/null
done
sync

# run_once ALGO NP BLOCKS -> prints "seconds max_rss_mb"
run_once() {
    local algo=$1 np=$2 nb=$3 log=$WORK/$1.np$2.b$3.log
    rm -rf "$WORK/out.h5" "$WORK/out.h5.ckpt"
    sync
    mpiexec -n "$np" /usr/bin/time -f "WQ_RSS_KB %M" "$BIN" quantize --model "$WORK/model$nb" \
        --config "$WORK/$algo.json" --out "$WORK/out.h5" --quiet >"$log" 2>&1 ||
        { cat "$log" >&2; echo "quantize failed: $log" >&2; exit 1; }
    local secs rss
    secs=$(sed -n 's/.*wrote .* in \([0-9.]*\) s.*/\1/p' "$log" | tail -1)
    rss=$(awk '/WQ_RSS_KB/ {if ($2 > m) m = $2} END {printf "%.1f", m / 1024}' "$log")
    echo "$secs $rss"
}

# median FILE -> "median_seconds max_rss_mb" of the "seconds rss" lines in FILE
median() {
    sort -n "$1" | awk '{t[NR] = $1; if ($2 > m) m = $2} END {printf "%s %s\n", t[int((NR + 1) / 2)], m}'
}

# run_pair ALGO BLOCKS -> "t1 rss1 tN rssN": 1 and $NP ranks alternately, medians over the repeats
run_pair() {
    local reps=${WQ_BENCH_REPEAT:-} k
    [[ -n $reps ]] || { [[ $1 == rtn ]] && reps=5 || reps=1; }
    : >"$WORK/t1" && : >"$WORK/tn"
    for ((k = 0; k < reps; k++)); do
        run_once "$1" 1 "$2" >>"$WORK/t1"
        run_once "$1" "$NP" "$2" >>"$WORK/tn"
    done
    echo "$(median "$WORK/t1") $(median "$WORK/tn")"
    echo "$1: every run, 1 rank: $(cut -d' ' -f1 "$WORK/t1" | tr '\n' ' ')| $NP ranks: $(cut -d' ' -f1 "$WORK/tn" | tr '\n' ' ')" >>"$WORK/runs"
}

params=$(awk -v w="$W" -v f="$F" -v h="$H" -v kv="$KV" -v b="$B" \
    'BEGIN {hd = w / h; printf "%.0f", b * (2 * w * w + 2 * w * kv * hd + 3 * w * f) / 1e6}')
echo "model: $B blocks, width $W, ffn $F, heads $H/$KV (${params}M linear weights, bf16);" \
    "GPTQ calibration $NS x $SL tokens; OPENBLAS_NUM_THREADS=1 per rank; $(nproc) cores"
printf '%-5s %6s %10s %9s %11s %14s\n' algo ranks seconds speedup efficiency "peak RSS/rank"
declare -A RSS2
: >"$WORK/runs"
for algo in $ALGOS; do
    read -r t1 r1 tn rn < <(run_pair "$algo" "$B")
    printf '%-5s %6d %10.2f %9s %11s %11.1f MB\n' "$algo" 1 "$t1" 1.00 100% "$r1"
    awk -v a="$algo" -v np="$NP" -v t1="$t1" -v tn="$tn" -v rn="$rn" 'BEGIN {
        s = t1 / tn; printf "%-5s %6d %10.2f %9.2f %10.0f%% %11.1f MB\n", a, np, tn, s, 100 * s / np, rn }'
    read -r _ r2 < <(run_once "$algo" "$NP" $((2 * B)))
    RSS2[$algo]="$rn $r2"
done
cat "$WORK/runs"
echo "peak RSS per rank at $NP ranks when the blocks double ($B -> $((2 * B))):"
for algo in $ALGOS; do
    read -r a b <<<"${RSS2[$algo]}"
    awk -v al="$algo" -v a="$a" -v b="$b" 'BEGIN { printf "  %-5s %8.1f MB -> %8.1f MB  (x%.2f)\n", al, a, b, b / a }'
done
