#!/bin/bash
# tok_json_e2e.sh BUILD_DIR SOURCE_DIR: the CLI picks tokenizer.json when a model directory has no
# tokenizer.model. stories260K with its tokenizer.json conversion (tests/data/tok_json/sp-legacy.json)
# must give the same perplexity (TinyStories 400..429: no double spaces, which only the
# SentencePiece model collapses) and the same greedy generation from a text prompt as with
# tokenizer.model; a tokenizer larger than the embedding table is refused with exit code 2.
set -euo pipefail
BUILD=$1 SRC=$2
WQ=$BUILD/wquant
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
HF=$SRC/assets/stories260K-hf
mkdir "$TMP/json" "$TMP/big"
for d in json big; do ln -s "$HF/config.json" "$HF/model.safetensors" "$TMP/$d/"; done
cp "$SRC/tests/data/tok_json/sp-legacy.json" "$TMP/json/tokenizer.json"
cp "$SRC/tests/data/tok_json/llama3.json" "$TMP/big/tokenizer.json"
TEXT=$SRC/assets/text/tinystories-val-500.txt

ppl() { "$WQ" eval --model "$1" --text "$TEXT" --protocol stories --range 400:430 --json |
    sed -e 's/"seconds".*//'; }
a=$(ppl "$HF") b=$(ppl "$TMP/json")
echo "tokenizer.model: $a"
echo "tokenizer.json:  $b"
[[ -n $a && $a == "$b" ]] || { echo "FAIL: perplexities differ" >&2; exit 1; }

gen() { "$WQ" generate --model "$1" --prompt "Once upon a time, Lily" --steps 16 --decode; }
a=$(gen "$HF") b=$(gen "$TMP/json")
echo "$b"
[[ $a == "$b" ]] || { echo "FAIL: generations differ: $a / $b" >&2; exit 1; }
grep -q "^Once upon a time, Lily" <<<"$b" || { echo "FAIL: decoded text does not start with the prompt" >&2; exit 1; }

rc=0
"$WQ" eval --model "$TMP/big" --text "$TEXT" --protocol stories --range 400:401 2>"$TMP/err" || rc=$?
if [[ $rc != 2 ]] || ! grep -q "665 pieces" "$TMP/err"; then
    echo "FAIL: rc $rc: $(cat "$TMP/err")" >&2
    exit 1
fi
echo "ok"
