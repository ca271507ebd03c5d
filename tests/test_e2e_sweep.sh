#!/bin/bash
# End-to-end test of `wquant sweep` on stories260K: {RTN, GPTQ} x {int4, int3} x {g32, g64} on 2
# ranks (small calibration, 20 test stories), then: CSV/Markdown/PNG exist, the PNG passes an
# independent checker (pngcheck, when installed) and its size fields are right, every table ppl
# equals a separate `wquant eval` of the same container (1 rank), a rerun skips every point and
# rewrites no result, the table is reproduced except the timing columns, a changed point
# definition is recomputed, and a bad axis value fails on all ranks before any work.
# Usage: tests/test_e2e_sweep.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/wq-sweep-test.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() {
    echo "test_e2e_sweep: FAIL: $*" >&2
    exit 1
}
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
MPI=(mpiexec -n 2 --oversubscribe)
WQ=$BUILD/wquant
cd "$SRC" # the sweep file's relative paths are relative to the working directory
# the committed sweep, with 20 evaluation stories to keep the test fast
sed -e 's/"range": "400:500"/"range": "400:420"/' configs/sweeps/stories260K_rtn_gptq.json >"$W/sweep.json"
grep -q '"400:420"' "$W/sweep.json" || fail "could not shorten the evaluation range"
OUT=$W/out

"${MPI[@]}" "$WQ" sweep "$W/sweep.json" --out "$OUT" >"$W/run1.out" 2>"$W/run1.err" ||
    fail "sweep failed: $(tail -n 20 "$W/run1.err")"
for f in results.csv results.md ppl_vs_bpw.png; do [[ -s $OUT/$f ]] || fail "no $f"; done
[[ $(wc -l <"$OUT/results.csv") -eq 9 ]] || fail "results.csv should have a header and 8 rows"
[[ $(grep -c '^| [0-9]' "$OUT/results.md") -eq 8 ]] || fail "results.md should have 8 rows"
head -n 1 "$OUT/results.csv" | grep -q '^point,name,algorithm,dtype,bits,group_size,sym,bits_per_weight,ppl_tinystories,quantize_seconds,eval_seconds,container$' ||
    fail "unexpected CSV header: $(head -n 1 "$OUT/results.csv")"

# PNG: signature and IHDR size (800x560) read here byte by byte, plus pngcheck's full check
[[ $(od -An -tx1 -N8 "$OUT/ppl_vs_bpw.png" | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "PNG signature"
[[ $(od -An -tu1 -j16 -N8 "$OUT/ppl_vs_bpw.png" | tr -s ' ') == " 0 0 3 32 0 0 2 48" ]] || fail "PNG size"
if command -v pngcheck >/dev/null; then
    pngcheck "$OUT/ppl_vs_bpw.png" >"$W/pngcheck.out" || fail "pngcheck: $(cat "$W/pngcheck.out")"
else
    echo "test_e2e_sweep: pngcheck not installed (scripts/setup.sh installs it): skipping that check"
fi

# every row: the ppl equals `wquant eval` run separately (1 rank) on the container; the bits per
# weight equal inspect's; the settings match the point's name
while IFS=, read -r idx name algo dtype bits gs sym bpw ppl _ _ h5; do
    [[ $idx == point ]] && continue
    [[ $name == *"_${algo}_w${bits}_g${gs}" && $dtype == int && $sym == asym ]] || fail "row $idx: $name $algo $bits $gs $sym"
    ev=$("$WQ" eval --model assets/stories260K-hf --quantized "$h5" --text assets/text/tinystories-val-500.txt \
        --protocol stories --range 400:420 --json) || fail "eval of $h5"
    want=$(sed -n 's/.*"ppl": \([0-9.eE+-]*\),.*/\1/p' <<<"$ev")
    [[ $ppl == "$want" ]] || fail "row $idx ($name): table ppl $ppl != wquant eval $want"
    ib=$("$WQ" inspect --json "$h5" | sed -n 's/.*"quantized_layers_bits_per_weight":[[:space:]]*\([0-9.eE+-]*\).*/\1/p')
    awk -v a="$bpw" -v b="$ib" 'BEGIN { d = a - b; exit !(d < 5e-7 && d > -5e-7) }' || fail "row $idx: bpw $bpw != inspect $ib"
    echo "  $name: bpw $bpw ppl $ppl (wquant eval: $want)"
done <"$OUT/results.csv"
# int3 g64 stores fewer bits than int4 g32 (container sizes, not the code under test's arithmetic)
s_small=$(stat -c %s "$OUT/points/03_rtn_w3_g64/model.h5")
s_big=$(stat -c %s "$OUT/points/00_rtn_w4_g32/model.h5")
((s_small < s_big)) || fail "the int3 g64 container is not smaller than the int4 g32 one"

# rerun: every point skipped, nothing rewritten, same table except the timing columns
before=$(stat -c '%n %Y.%s' "$OUT"/points/*/result.json "$OUT"/points/*/model.h5)
cut -d, -f1-9,12 "$OUT/results.csv" >"$W/table1"
cp "$OUT/ppl_vs_bpw.png" "$W/plot1.png"
"${MPI[@]}" "$WQ" sweep "$W/sweep.json" --out "$OUT" >"$W/run2.out" 2>"$W/run2.err" || fail "rerun failed"
[[ $(grep -c 'finished, skipping' "$W/run2.err") -eq 8 ]] || fail "rerun did not skip all 8 points: $(cat "$W/run2.err")"
grep -q ': quantizing' "$W/run2.err" && fail "rerun quantized again"
[[ $(stat -c '%n %Y.%s' "$OUT"/points/*/result.json "$OUT"/points/*/model.h5) == "$before" ]] || fail "rerun rewrote results"
cut -d, -f1-9,12 "$OUT/results.csv" | cmp -s - "$W/table1" || fail "the table changed on rerun"
cmp -s "$OUT/ppl_vs_bpw.png" "$W/plot1.png" || fail "the plot changed on rerun"

# a changed point definition (GPTQ calibration seed) is recomputed; RTN points are unaffected
# except through the calibration section they carry, so all 8 rerun: check one point only with --point
sed -e 's/"seed": 0/"seed": 1/' "$W/sweep.json" >"$W/sweep2.json"
"${MPI[@]}" "$WQ" sweep "$W/sweep2.json" --out "$OUT" --point 4 >"$W/run3.out" 2>"$W/run3.err" || fail "--point 4 failed"
grep -q 'stale result' "$W/run3.err" || fail "changed definition not detected: $(cat "$W/run3.err")"
grep -q '04_gptq_w4_g32: quantizing' "$W/run3.err" || fail "point 4 not recomputed"
# --collect with the new definition: the other points are stale, so it must refuse (exit 1)
if "${MPI[@]}" "$WQ" sweep "$W/sweep2.json" --out "$OUT" --collect >/dev/null 2>"$W/run4.err"; then
    fail "--collect accepted stale points"
fi
grep -q '7 of 8 sweep points have no result' "$W/run4.err" || fail "collect message: $(cat "$W/run4.err")"

# bad input: an invalid axis value fails before any work, on every rank, naming the point and key
sed -e 's/"bits": \[4, 3\]/"bits": [4, 9]/' "$W/sweep.json" >"$W/bad.json"
rc=0
"${MPI[@]}" "$WQ" sweep "$W/bad.json" --out "$W/bad" >/dev/null 2>"$W/bad.err" || rc=$?
((rc == 2)) || fail "bad axis value: exit $rc, want 2"
[[ $(grep -c "point 2 (algorithm=rtn, bits=9, group_size=32).*'bits'" "$W/bad.err") -eq 2 ]] ||
    fail "both ranks should name point 2 and key 'bits': $(cat "$W/bad.err")"
[[ ! -e $W/bad/points ]] || fail "a rejected sweep created point directories"
echo "test_e2e_sweep: ok"
