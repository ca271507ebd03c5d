#!/bin/bash
# End-to-end test of jobs/*.sbatch on a real SLURM: a private single-node cluster on this machine
# (munged, slurmctld and slurmd of Debian's slurm-wlm 22.05, installed when missing, on free
# localhost ports, all state in one temporary directory), then quantize, eval (srun and the mpiexec
# fallback), a failing job, and an array sweep that is resubmitted to check that it resumes.
# Usage: tests/jobs/test_slurm.sh BUILD_DIR SOURCE_DIR. Needs root (packages, SlurmUser=root).
# Everything it starts is stopped on exit; every wait is bounded (WQ_SLURM_BUDGET seconds in all).
set -euo pipefail
BUILD=$(cd "${1:?usage: test_slurm.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_slurm.sh BUILD_DIR SOURCE_DIR}" && pwd)
DEADLINE=$((SECONDS + ${WQ_SLURM_BUDGET:-290}))
PART=wqtest

log() { printf '[test_slurm %3ds] %s\n' "$SECONDS" "$*" >&2; }
fail() {
    log "FAIL: $*"
    exit 1
}
# bounded MAX CMD...: CMD with a timeout of MAX seconds, or less if the test budget runs out first.
bounded() {
    local max=$1 left=$((DEADLINE - SECONDS))
    shift
    ((left > 0)) || fail "time budget exhausted before: $*"
    ((max <= left)) || max=$left
    timeout --kill-after=5 "$max" "$@"
}

if [[ $(id -u) -ne 0 ]]; then
    echo "test_slurm: skipped: needs root (installs packages, runs slurmd with SlurmUser=root)"
    exit 77
fi
[[ -x $BUILD/wquant ]] || fail "no $BUILD/wquant"
# A run inside a real job must not leak that job's settings into our sbatch/srun calls.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(SLURM|SBATCH|SRUN|SALLOC)_' || true)

# ---- packages -----------------------------------------------------------------------------------
need=()
for b in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge mungekey:munge; do
    command -v "${b%%:*}" >/dev/null || need+=("${b#*:}")
done
# Debian 12's mpi/pmix plugin dlopens pmix2/lib/libpmix.so, the unversioned name only libpmix-dev
# ships (libopenmpi-dev pulls it in on build machines); without it srun --mpi=pmix cannot start.
dpkg-query -W -f='${Status}' libpmix-dev 2>/dev/null | grep -q "install ok installed" || need+=(libpmix-dev)
if ((${#need[@]})); then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    log "installing ${need[*]} (apt-get)"
    bounded 120 apt-get update -qq >/dev/null || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive bounded 180 apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=60 \
        "${need[@]}" >/dev/null || fail "apt-get install ${need[*]} failed"
fi
log "$(slurmctld -V), $(munged -V 2>&1 | head -n 1)"

# ---- cleanup: stop everything this test started ---------------------------------------------------
T=$(mktemp -d /tmp/wq-slurm-test.XXXXXX)
chmod 755 "$T" # munged wants its socket directory searchable by all
# The cleanup finds what this test started, whatever happened, and nothing else: every process
# started from here on inherits this tag, and slurmstepd (which clears its environment) and the
# job processes have their working directory in $T.
export WQ_SLURM_TEST_TAG=$T
ours() {
    local p cwd
    for p in /proc/[0-9]*; do
        [[ ${p#/proc/} != "$$" ]] || continue
        cwd=$(readlink "$p/cwd" 2>/dev/null) || cwd=""
        if [[ $cwd == "$T" || $cwd == "$T"/* ]] ||
            { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "WQ_SLURM_TEST_TAG=$T"; then
            echo "${p#/proc/}"
        fi
    done
    return 0
}
cleanup() {
    local rc=$? pids=() i
    set +e
    trap - EXIT INT TERM
    cd / # this shell's own children must not look like ours() by their working directory
    if ((rc != 0)); then
        log "failed (rc=$rc): daemon and job logs follow"
        tail -n 25 "$T"/log/*.log "$T"/work/logs/* 2>/dev/null | sed 's/^/    /' >&2
    fi
    if [[ -n ${SLURM_CONF:-} ]] && [[ -s $T/slurmctld.pid ]]; then
        # Cancel, and let the jobs end (their slurmstepd needs slurmd) before stopping the daemons.
        timeout 10 scancel --partition="$PART" >/dev/null 2>&1
        for i in $(seq 20); do
            [[ -z $(timeout 5 squeue -h -p "$PART" -o %A 2>/dev/null) ]] && break
            sleep 0.5
        done
        timeout 10 scontrol shutdown >/dev/null 2>&1 # slurmctld and slurmd
    fi
    [[ -S $T/munge/munge.sock ]] && timeout 10 munged --stop --socket="$T/munge/munge.sock" >/dev/null 2>&1
    unset WQ_SLURM_TEST_TAG
    # Give the daemons 5 s to exit after shutdown, then TERM what is left for 5 s, then KILL.
    for i in $(seq 20); do
        mapfile -t pids < <(ours)
        ((${#pids[@]})) || break
        ((i == 10)) && log "stopping leftovers: ${pids[*]}"
        ((i < 10)) || kill -TERM "${pids[@]}" 2>/dev/null
        sleep 0.5
    done
    mapfile -t pids < <(ours)
    ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null
    if [[ -n ${WQ_KEEP:-} ]]; then log "kept $T"; else rm -rf "$T"; fi
    log "cleaned up; $( ((rc == 0)) && echo PASSED || echo FAILED)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- munge: a private key and daemon --------------------------------------------------------------
mkdir -p "$T/munge" "$T/state" "$T/spool" "$T/log" "$T/work/logs"
chmod 755 "$T/munge"
if command -v mungekey >/dev/null; then
    mungekey --create --keyfile="$T/munge/munge.key" >/dev/null
else
    dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 600 "$T/munge/munge.key"
bounded 20 munged --key-file="$T/munge/munge.key" --socket="$T/munge/munge.sock" \
    --pid-file="$T/munge/munged.pid" --log-file="$T/log/munged.log" --seed-file="$T/munge/seed" ||
    fail "munged did not start"
bounded 10 munge --socket="$T/munge/munge.sock" --no-input |
    bounded 10 unmunge --socket="$T/munge/munge.sock" >/dev/null || fail "munge credential round trip failed"

# ---- slurm.conf and the daemons ----------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 50); do
    PORT=$((20000 + RANDOM % 30000))
    port_free "$PORT" && port_free $((PORT + 1)) && break
done
HOST=$(hostname -s)
MEM=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
cat >"$T/slurm.conf" <<EOF
# Generated by tests/jobs/test_slurm.sh: a private single-node cluster on localhost.
ClusterName=wqtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool/%n
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: process tracking through /proc, no task confinement or binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=5
# sbatch --wait lengthens its poll interval (2, 8, 32 s) only while it stays under MinJobAge/2:
# with the default 300 s a 3 s job was seen ending after 10-40 s; with 4 s it polls every 2 s.
MinJobAge=4
# Trust the node line below over what slurmd detects (a container may report other CPUs/memory).
SlurmdParameters=config_overrides
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=2 RealMemory=$MEM State=UNKNOWN
PartitionName=$PART Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$T/slurm.conf
log "slurm.conf: node $HOST, CPUs=2, RealMemory=$MEM MB, ports $PORT-$((PORT + 1))"
bounded 30 slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
bounded 30 slurmd -f "$SLURM_CONF" -N "$HOST" || fail "slurmd did not start"
state=""
for _ in $(seq 60); do
    state=$(bounded 5 sinfo -h -N -n "$HOST" -o %T 2>/dev/null) || state=""
    [[ $state == idle ]] && break
    sleep 0.5
done
[[ $state == idle ]] || fail "node $HOST not idle after 30 s (state '${state:-no answer}'): $(sinfo -R 2>&1)"
log "cluster up: $(sinfo -h -o '%P %a %D %T %N')"

# ---- jobs ---------------------------------------------------------------------------------------------
# Submitted from a scratch directory (logs/ there), with the checkout and the binary given through
# the environment, as a user with the checkout elsewhere would do.
W=$T/work
cd "$W"
export WQ_ROOT=$SRC WQ_BIN=$BUILD/wquant
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # the mpiexec fallback, as root
MODEL=$SRC/assets/stories260K-hf
TEXT=$SRC/assets/text/tinystories-val-500.txt
RES=(--nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --time=5)
JOBID=""
# submit NAME EXPECTED_RC SBATCH_ARGS...: sbatch --wait, bounded; sets JOBID.
submit() {
    local name=$1 want=$2 rc=0 out
    shift 2
    local t0=$SECONDS
    out=$(bounded 120 sbatch --wait --parsable "${RES[@]}" "$@") || rc=$?
    JOBID=${out%%;*}
    JOBID=${JOBID%%$'\n'*}
    ((rc != 124 && rc != 137)) || fail "$name: sbatch --wait timed out (job $JOBID)"
    log "$name: job ${JOBID:-?} exit $rc in $((SECONDS - t0)) s"
    if [[ $want == 0 ]]; then
        ((rc == 0)) || fail "$name: job failed (exit $rc); log: $(cat "$W"/logs/*"$JOBID"* 2>/dev/null)"
    else
        ((rc != 0)) || fail "$name: the job should have failed"
    fi
}
ppl_of() { sed -n 's/.*"ppl": *\([0-9.eE+-]*\).*/\1/p' "$1" | head -n 1; }
ref_ppl() { # the TinyStories ppl of a reference-ppl.json entry
    sed -n "/\"$1\": {/,/}/s/.*\"tinystories_ppl\": *\([0-9.eE+-]*\).*/\1/p" "$SRC/assets/reference-ppl.json"
}
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d < 1e-4) }'; }
mtimes() { stat -c '%n %Y.%s' "$@"; }

# Outside a job the scripts refuse to run.
for s in quantize eval sweep_array sweep_collect; do
    if msg=$(env -u SLURM_JOB_ID bash "$SRC/jobs/$s.sbatch" a b c 2>&1); then
        fail "$s.sbatch ran outside SLURM"
    fi
    [[ $msg == *"submit with sbatch"* ]] || fail "$s.sbatch outside SLURM: unexpected message '$msg'"
done

# quantize (RTN int4 g32 asym)
Q=$W/out/rtn/model.h5
submit quantize 0 "$SRC/jobs/quantize.sbatch" "$SRC/configs/rtn_w4g32_asym.json" "$MODEL" "$Q"
QJOB=$JOBID
"$BUILD/wquant" inspect "$Q" >/dev/null || fail "wquant inspect $Q"
[[ -s $W/out/rtn/qconfig.json ]] || fail "no qconfig.json"
cmp -s "$SRC/configs/rtn_w4g32_asym.json" "$W/out/rtn/model.config.json" || fail "config copy differs"
P=$W/out/rtn/model.provenance.json
for k in '"status": "complete"' "\"job_id\": \"$QJOB\"" '"ranks": 2' "\"hosts\": \[\"$HOST\"\]" \
    '"rank_grid": "1 stages x 2 data-parallel"' '"wquant_version": "wquant ' '"date": "' \
    '"launcher": "srun --kill-on-bad-exit=1 --mpi=pmix'; do
    grep -q "$k" "$P" || fail "provenance lacks $k: $(cat "$P")"
done
[[ -s $W/logs/wq-quantize-$QJOB.out ]] || fail "no log logs/wq-quantize-$QJOB.out"

# requeue safety: the same output again is skipped
before=$(mtimes "$Q" "$P")
submit quantize-again 0 "$SRC/jobs/quantize.sbatch" "$SRC/configs/rtn_w4g32_asym.json" "$MODEL" "$Q"
grep -q "skipping the quantization" "$W/logs/wq-quantize-$JOBID.out" || fail "second quantize not skipped"
[[ $(mtimes "$Q" "$P") == "$before" ]] || fail "second quantize rewrote the container"

# a failing job: srun passes the ranks' exit code on, no container, provenance says failed
printf '{"rtn": {"global": {"dtype": "int", "bits": 99}}}\n' >"$W/bad.json"
submit quantize-bad-config 1 "$SRC/jobs/quantize.sbatch" "$W/bad.json" "$MODEL" "$W/out/bad/model.h5"
[[ ! -e $W/out/bad/model.h5 ]] || fail "a failed quantize left a container"
grep -q '"status": "failed"' "$W/out/bad/model.provenance.json" || fail "no failed provenance"
grep -q "srun: error: .*Exited with exit code" "$W/logs/wq-quantize-$JOBID.out" ||
    fail "no srun task failure in the log of job $JOBID"

# eval of the container (srun), TinyStories test stories: the reference perplexity
E=$W/out/rtn/eval.json
submit eval 0 --export="ALL,WQ_EVAL_OUT=$E" "$SRC/jobs/eval.sbatch" "$MODEL" "$TEXT" \
    --quantized "$Q" --protocol stories --range 400:500
grep -q '"ranks": 2' "$E" || fail "eval did not run on 2 ranks: $(cat "$E")"
near "$(ppl_of "$E")" "$(ref_ppl rtn_int4_g32_asym)" || fail "eval ppl $(ppl_of "$E") != reference"
grep -q '"status": "complete"' "$W/out/rtn/eval.provenance.json" || fail "no eval provenance"

# eval through the mpiexec fallback (fp32, default output under runs/)
submit eval-mpiexec 0 --export=ALL,WQ_LAUNCHER=mpiexec "$SRC/jobs/eval.sbatch" "$MODEL" "$TEXT" \
    --protocol stories --range 400:420
E2=$W/runs/wq-eval-$JOBID/eval.json
grep -q '"ranks": 2' "$E2" || fail "mpiexec eval: no 2-rank result in $E2"
grep -q '"launcher": "mpiexec' "$W/runs/wq-eval-$JOBID/eval.provenance.json" || fail "launcher not recorded"

# array sweep: `wquant sweep --point $SLURM_ARRAY_TASK_ID` over 2 points, the collect job, then the
# array resubmitted: every point is skipped
SW=$W/sweep
cat >"$W/sweep.json" <<JSON
{"base": "$SRC/configs/rtn_w4g32_asym.json", "model": "$MODEL", "out": "$SW",
 "eval": {"name": "tinystories", "text": "$TEXT", "range": "400:500"},
 "axes": {"use_sym": [false, true]}}
JSON
[[ $("$BUILD/wquant" sweep "$W/sweep.json" --list | tail -n 1) == "2 points; output in $SW" ]] ||
    fail "sweep --list: $("$BUILD/wquant" sweep "$W/sweep.json" --list 2>&1)"
submit sweep 0 --array=0-1 "$SRC/jobs/sweep_array.sbatch" "$W/sweep.json"
SJOB=$JOBID
[[ -s $W/logs/wq-sweep-${SJOB}_0.out && -s $W/logs/wq-sweep-${SJOB}_1.out ]] || fail "no array logs"
submit sweep-collect 0 "$SRC/jobs/sweep_collect.sbatch" "$W/sweep.json"
for f in results.csv results.md ppl_vs_bpw.png; do [[ -s $SW/$f ]] || fail "collect wrote no $SW/$f"; done
for n in 00_asym:rtn_int4_g32_asym 01_sym:rtn_int4_g32_sym; do
    r=$SW/points/${n%%:*}/result.json
    [[ -s $r ]] || fail "no sweep result $r"
    p=$(sed -n "/^[0-9]*,${n%%:*},/p" "$SW/results.csv" | cut -d, -f9)
    near "$p" "$(ref_ppl "${n#*:}")" || fail "${n%%:*}: table ppl '$p' != reference $(ref_ppl "${n#*:}")"
    "$BUILD/wquant" inspect "$SW/points/${n%%:*}/model.h5" >/dev/null || fail "sweep container"
done
before=$(mtimes "$SW"/points/*/result.json)
submit sweep-resume 0 --array=0-1 "$SRC/jobs/sweep_array.sbatch" "$W/sweep.json"
[[ $(mtimes "$SW"/points/*/result.json) == "$before" ]] || fail "the resubmitted sweep rewrote finished results"
for i in 0 1; do
    grep -q "finished, skipping" "$W/logs/wq-sweep-${JOBID}_$i.out" || fail "task $i not skipped"
done

log "all checks passed"
