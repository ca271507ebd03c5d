#!/bin/bash
# Acceptance of `wquant export --format gguf` by llama.cpp itself: the prebuilt CPU binaries of the
# npm package node-llama-cpp (pinned; installed with scripts disabled into BUILD_DIR/gguf-npm, no
# compilation, no model download) load the GGUF exports of stories260K quantized by RTN and
#   * Q8_0 (int8 sym g32): greedy decoding from BOS reproduces the first 20 generated ids of
#     assets/stories260K-llama2c/greedy_t0_ids.txt;
#   * Q4_0 (int4 sym g32) and Q4_1 (int4 asym g32): llama.cpp's perplexity over the token sequences
#     of `wquant eval --protocol stories` (TinyStories 400..499, dumped with --dump-ids, so the
#     tokenizer is not a variable) is within 1% of `wquant eval` on the same container.
# Usage: tests/gguf/test_gguf_llama_cpp.sh BUILD_DIR SOURCE_DIR. Needs node (>= 18) and npm with
# access to the npm registry (scripts/setup.sh installs nodejs/npm when missing).
set -euo pipefail
BUILD=$(cd "${1:?usage: test_gguf_llama_cpp.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_gguf_llama_cpp.sh BUILD_DIR SOURCE_DIR}" && pwd)
NLC_VERSION=3.6.0 # the newest node-llama-cpp that still runs on Debian 12's nodejs 18 (llama.cpp b4753)
NPM_DIR=$BUILD/gguf-npm
MODEL=$SRC/assets/stories260K-hf
TEXT=$SRC/assets/text/tinystories-val-500.txt
WQ=$BUILD/wquant
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wq_gguf.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

log() { printf '[test_gguf_llama_cpp %3ds] %s\n' "$SECONDS" "$*" >&2; }
fail() {
    log "FAIL: $*"
    exit 1
}
[[ -x $WQ ]] || fail "no $WQ"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    fail "node and npm are required (scripts/setup.sh installs Debian's nodejs and npm)"
fi
# never compile llama.cpp, never fetch binaries or models at run time
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true NODE_LLAMA_CPP_GPU=false
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

# ---- node-llama-cpp (cached in the build tree across runs) --------------------------------------
have=$(node -p "try { require('$NPM_DIR/node_modules/node-llama-cpp/package.json').version } \
catch (e) { '' }" 2>/dev/null || true)
if [[ $have != "$NLC_VERSION" || ! -d $NPM_DIR/node_modules/@node-llama-cpp/linux-x64 ]]; then
    log "installing node-llama-cpp@$NLC_VERSION (CPU prebuilt binaries only) into $NPM_DIR"
    rm -rf "$NPM_DIR"
    mkdir -p "$NPM_DIR"
    echo '{"name": "wq-gguf-check", "private": true}' >"$NPM_DIR/package.json"
    # --omit=optional skips the CUDA/Vulkan/other-OS binary packages (~500 MB); the linux-x64 CPU
    # package is named explicitly. --ignore-scripts: its postinstall would try to build/download.
    timeout 600 npm install --prefix "$NPM_DIR" --no-audit --no-fund --ignore-scripts \
        --omit=optional "node-llama-cpp@$NLC_VERSION" "@node-llama-cpp/linux-x64@$NLC_VERSION" \
        >"$TMP/npm.log" 2>&1 || {
        cat "$TMP/npm.log" >&2
        fail "npm install node-llama-cpp@$NLC_VERSION failed"
    }
fi

run_llama() { # MODEL.gguf STEPS [IDS_FILE] -> JSON on stdout
    timeout 300 node "$SRC/tests/gguf/llama_cpp_eval.mjs" "$NPM_DIR" "$@" 2>"$TMP/node.err" || {
        cat "$TMP/node.err" >&2
        fail "llama.cpp (node-llama-cpp) failed on $1"
    }
}
json() { # JSON KEY -> value
    node -e 'const o = JSON.parse(process.argv[1]); const v = o[process.argv[2]];
             console.log(Array.isArray(v) ? v.join(" ") : v)' "$1" "$2"
}

quantize_export() { # NAME BITS SYM|ASYM -> $TMP/NAME/c.h5 and $TMP/NAME.gguf
    mkdir -p "$TMP/$1"
    "$WQ" quantize --model "$MODEL" --algo rtn --dtype int --bits "$2" --group-size 32 "--$3" \
        --out "$TMP/$1/c.h5" >"$TMP/q.log" 2>&1 || {
        cat "$TMP/q.log" >&2
        fail "quantize $1"
    }
    "$WQ" export --format gguf "$TMP/$1/c.h5" "$TMP/$1.gguf" --model "$MODEL" >"$TMP/e.log" 2>&1 || {
        cat "$TMP/e.log" >&2
        fail "export gguf $1"
    }
    grep -F "export gguf:" "$TMP/e.log" | tail -1 >&2
}

# ---- Q8_0: greedy decoding ----------------------------------------------------------------------
quantize_export q8_0 8 sym
out=$(run_llama "$TMP/q8_0.gguf" 20)
got=$(json "$out" greedy)
want=$(tr -d '[],' <"$SRC/assets/stories260K-llama2c/greedy_t0_ids.txt" | tr -s ' \n' '\n' |
    grep -v '^$' | sed -n '2,21p' | paste -sd' ')
log "Q8_0 greedy (llama.cpp): $got"
log "reference (llama2c)    : $want"
[[ $got == "$want" ]] || fail "Q8_0 greedy ids differ from greedy_t0_ids.txt"

# ---- Q4_0 / Q4_1: perplexity --------------------------------------------------------------------
for q in "q4_0 4 sym" "q4_1 4 asym"; do
    read -r name bits sym <<<"$q"
    quantize_export "$name" "$bits" "$sym"
    wq=$("$WQ" eval --model "$MODEL" --quantized "$TMP/$name/c.h5" --text "$TEXT" \
        --protocol stories --range 400:500 --json --dump-ids "$TMP/ids.txt" 2>"$TMP/eval.err") || {
        cat "$TMP/eval.err" >&2
        fail "wquant eval $name"
    }
    ll=$(run_llama "$TMP/$name.gguf" 0 "$TMP/ids.txt")
    ppl_wq=$(json "$wq" ppl)
    ppl_ll=$(json "$ll" ppl)
    [[ $(json "$wq" tokens) == "$(json "$ll" tokens)" ]] ||
        fail "$name: token counts differ ($(json "$wq" tokens) vs $(json "$ll" tokens))"
    rel=$(node -e 'console.log((Math.abs(process.argv[1] / process.argv[2] - 1) * 100).toFixed(4))' \
        "$ppl_ll" "$ppl_wq")
    log "$name: perplexity llama.cpp $ppl_ll, wquant eval $ppl_wq ($(json "$wq" tokens) tokens): ${rel}% apart"
    node -e 'process.exit(Math.abs(process.argv[1] / process.argv[2] - 1) < 0.01 ? 0 : 1)' \
        "$ppl_ll" "$ppl_wq" || fail "$name: perplexities differ by ${rel}% (limit 1%)"
done
log "PASS (node-llama-cpp $NLC_VERSION)"
