#!/bin/bash
# Shared body of the jobs/*.sbatch scripts and of their local twin jobs/local_smoke.sh: the MPI
# launcher, the requeue-safe skip, provenance files and the three job bodies (quantize, eval, one
# sweep point). Sourced, never run. Layer: job scripts, above the CLI; nothing here builds wquant or
# names a host. A caller first runs wq_setup_slurm (inside a job) or wq_setup_local (mpiexec).

# ---- messages -----------------------------------------------------------------------------------

wq_log() { printf '[wq-job %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# wq_die MESSAGE [EXIT_CODE]: 2 = usage or setup error, 1 = the run failed.
wq_die() {
    wq_log "error: $1"
    exit "${2:-1}"
}

# wq_json_str S: S as a JSON string literal (quotes, backslashes and control characters escaped).
wq_json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/\\r}
    printf '"%s"' "$s"
}

# wq_abspath P: P made absolute against the working directory (P need not exist yet).
wq_abspath() { if [[ $1 == /* ]]; then printf '%s' "$1"; else printf '%s/%s' "$PWD" "$1"; fi; }

# ---- setup --------------------------------------------------------------------------------------
# Both set: WQ_BIN, WQ_ROOT, WQ_STAGES, WQ_NP (ranks), WQ_THREADS, WQ_HOSTS (array), WQ_JOB_ID,
# WQ_LAUNCH (array: the launcher prefix put before "$WQ_BIN <command>").

_wq_check_bin() {
    [[ -x $WQ_BIN ]] || wq_die "no executable '$WQ_BIN': build it on the login node first \
(scripts/setup.sh) or point WQ_BIN at it; jobs never build" 2
    [[ $WQ_STAGES =~ ^[1-9][0-9]*$ ]] || wq_die "WQ_STAGES='$WQ_STAGES' is not a positive integer" 2
}

# Inside a SLURM job. WQ_LAUNCHER=srun (default) launches the ranks with srun; OpenMPI must then
# find the step through PMIx (WQ_SRUN_MPI, default pmix: the only plugin Debian 12's OpenMPI 4.1
# starts under; pmi2 and none abort in MPI_Init; Debian's plugin also needs libpmix-dev's
# unversioned libpmix.so on the compute nodes). WQ_LAUNCHER=mpiexec is the fallback for sites
# whose srun cannot start MPI: OpenMPI reads the allocation and starts its daemons itself.
wq_setup_slurm() {
    : "${SLURM_JOB_ID:?submit with sbatch; use jobs/local_smoke.sh for a local run}"
    WQ_ROOT=${WQ_ROOT:-$SLURM_SUBMIT_DIR}
    WQ_BIN=${WQ_BIN:-$WQ_ROOT/build/wquant}
    WQ_STAGES=${WQ_STAGES:-1}
    WQ_NP=${SLURM_NTASKS:-${SLURM_NNODES:-1}}
    WQ_THREADS=${SLURM_CPUS_PER_TASK:-1}
    WQ_JOB_ID=${SLURM_JOB_ID}
    if [[ -n ${SLURM_ARRAY_JOB_ID:-} ]]; then WQ_JOB_ID=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}; fi
    mapfile -t WQ_HOSTS < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
    export OPENBLAS_NUM_THREADS=$WQ_THREADS OMP_NUM_THREADS=$WQ_THREADS
    case ${WQ_LAUNCHER:-srun} in
    srun)
        # srun of Slurm 22.05 no longer inherits --cpus-per-task from the job: pass it explicitly.
        WQ_LAUNCH=(srun --kill-on-bad-exit=1 --mpi="${WQ_SRUN_MPI:-pmix}" --cpus-per-task="$WQ_THREADS")
        # Each rank on its own cores; a cluster without task/affinity or task/cgroup only warns.
        if [[ -n ${WQ_CPU_BIND-cores} ]]; then WQ_LAUNCH+=(--cpu-bind="${WQ_CPU_BIND-cores}"); fi
        ;;
    mpiexec)
        # No binding: OpenMPI would pin every rank to one core and its OpenBLAS threads with it.
        WQ_LAUNCH=(mpiexec -n "$WQ_NP" --bind-to none)
        ;;
    *) wq_die "WQ_LAUNCHER='${WQ_LAUNCHER}': use srun or mpiexec" 2 ;;
    esac
    _wq_check_bin
}

# wq_setup_local BIN NP: the local twin of a job, NP ranks through mpiexec on this machine.
wq_setup_local() {
    WQ_BIN=$1
    WQ_NP=$2
    WQ_ROOT=${WQ_ROOT:-$PWD}
    WQ_STAGES=${WQ_STAGES:-1}
    WQ_THREADS=1
    WQ_JOB_ID=local-$$
    WQ_HOSTS=("$(hostname -s)")
    export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
    WQ_LAUNCH=(mpiexec -n "$WQ_NP" --oversubscribe)
    _wq_check_bin
}

# wq_run COMMAND ARGS...: wquant COMMAND on all ranks; the exit code is the highest rank's.
wq_run() { "${WQ_LAUNCH[@]}" "$WQ_BIN" "$@"; }

# wq_complete FILE.h5: true when FILE.h5 is a complete container (wquant inspect reads it: the
# writer renames FILE.h5.tmp to FILE.h5 only after setting the `complete` flag).
wq_complete() { [[ -f $1 ]] && "$WQ_BIN" inspect "$1" >/dev/null 2>&1; }

# wq_has_ppl FILE.json: true when FILE holds a finished eval result.
wq_has_ppl() { [[ -s $1 ]] && grep -q '"ppl"' "$1"; }

# ---- provenance ---------------------------------------------------------------------------------

# wq_provenance FILE STATUS [KEY JSON_VALUE]...: writes FILE atomically: who ran what where
# (job, date, wquant version, source revision, hosts, rank grid, launcher) plus the given members.
wq_provenance() {
    local file=$1 status=$2 hosts="" h rev="" version
    shift 2
    for h in "${WQ_HOSTS[@]}"; do hosts+=${hosts:+, }$(wq_json_str "$h"); done
    version=$("$WQ_BIN" --version 2>&1) || version="unknown"
    if command -v git >/dev/null && [[ -e $WQ_ROOT/.git ]]; then
        rev=$(git -C "$WQ_ROOT" describe --always --dirty 2>/dev/null) || rev=""
    fi
    {
        printf '{\n'
        printf '  "status": %s,\n' "$(wq_json_str "$status")"
        printf '  "date": %s,\n' "$(wq_json_str "$(date -Is)")"
        printf '  "job_id": %s,\n' "$(wq_json_str "$WQ_JOB_ID")"
        printf '  "job_name": %s,\n' "$(wq_json_str "${SLURM_JOB_NAME:-local}")"
        printf '  "cluster": %s,\n' "$(wq_json_str "${SLURM_CLUSTER_NAME:-local}")"
        printf '  "restart_count": %s,\n' "${SLURM_RESTART_COUNT:-0}"
        printf '  "wquant_version": %s,\n' "$(wq_json_str "$version")"
        printf '  "wquant_bin": %s,\n' "$(wq_json_str "$WQ_BIN")"
        printf '  "source_revision": %s,\n' "$(wq_json_str "$rev")"
        printf '  "hosts": [%s],\n' "$hosts"
        printf '  "ranks": %s,\n' "$WQ_NP"
        printf '  "stages": %s,\n' "$WQ_STAGES"
        printf '  "rank_grid": %s,\n' "$(wq_json_str "$WQ_STAGES stages x $((WQ_NP / WQ_STAGES)) data-parallel")"
        printf '  "threads_per_rank": %s,\n' "$WQ_THREADS"
        printf '  "launcher": %s' "$(wq_json_str "${WQ_LAUNCH[*]}")"
        while (($# >= 2)); do
            printf ',\n  %s: %s' "$(wq_json_str "$1")" "$2"
            shift 2
        done
        printf '\n}\n'
    } >"$file.tmp.$$"
    mv -f "$file.tmp.$$" "$file"
}

# ---- job bodies ---------------------------------------------------------------------------------

# wq_quantize CONFIG MODEL_DIR OUT.h5: quantizes unless OUT.h5 is already complete; resumes from
# OUT.h5.ckpt/ when an earlier attempt was killed. Writes, next to
# OUT.h5: <stem>.config.json (the config as run), <stem>.provenance.json; wquant adds qconfig.json.
wq_quantize() {
    local config=$1 model=$2 out=$3
    [[ $out == *.h5 ]] || wq_die "the output '$out' must end in .h5" 2
    out=$(wq_abspath "$out")
    local stem=${out%.h5}
    if wq_complete "$out"; then
        wq_log "$out is complete (wquant inspect reads it): skipping the quantization"
        return 0
    fi
    [[ -f $config ]] || wq_die "no config file '$config'" 2
    [[ -d $model ]] || wq_die "no model directory '$model'" 2
    mkdir -p "$(dirname "$out")"
    # Run the copy, so the recorded config is the one that ran even if the original is edited.
    # Relative paths inside it (calibration text) resolve against the working directory.
    [[ $config -ef $stem.config.json ]] || cp -f "$config" "$stem.config.json"
    local cmd=(quantize --model "$model" --config "$stem.config.json" --out "$out" --stages "$WQ_STAGES")
    # A killed or timed-out attempt left its finished work in OUT.h5.ckpt/: continue it (wquant refuses
    # the checkpoint if the config, model or calibration text changed). Without a checkpoint a plain
    # run starts one (AWQ, which has none, restarts from scratch).
    if [[ -d $out.ckpt ]]; then
        wq_log "resuming from the checkpoint $out.ckpt"
        cmd+=(--resume)
    fi
    local members=(config_source "$(wq_json_str "$(wq_abspath "$config")")"
        config "$(wq_json_str "$stem.config.json")" model "$(wq_json_str "$(wq_abspath "$model")")"
        output "$(wq_json_str "$out")" command "$(wq_json_str "wquant ${cmd[*]}")")
    wq_provenance "$stem.provenance.json" running "${members[@]}"
    wq_log "quantize on $WQ_NP rank(s) (${WQ_HOSTS[*]}): $config -> $out"
    if ! wq_run "${cmd[@]}"; then
        wq_provenance "$stem.provenance.json" failed "${members[@]}"
        wq_die "wquant quantize failed: no container at $out"
    fi
    wq_complete "$out" || wq_die "wquant quantize returned 0 but '$out' does not inspect"
    wq_provenance "$stem.provenance.json" complete "${members[@]}"
    wq_log "wrote $out"
}

# wq_eval OUT.json MODEL_DIR TEXT [EVAL_ARGS...]: perplexity as wquant's JSON object in OUT.json
# (written atomically, skipped when OUT.json already holds one); <stem>.provenance.json beside it.
wq_eval() {
    local out=$1 model=$2 text=$3
    shift 3
    out=$(wq_abspath "$out")
    local stem=${out%.json}
    if wq_has_ppl "$out"; then
        wq_log "$out already holds a result: skipping the evaluation"
        return 0
    fi
    [[ -d $model ]] || wq_die "no model directory '$model'" 2
    [[ -f $text ]] || wq_die "no text file '$text'" 2
    mkdir -p "$(dirname "$out")"
    local cmd=(eval --model "$model" --text "$text" "$@" --json)
    local members=(model "$(wq_json_str "$(wq_abspath "$model")")"
        text "$(wq_json_str "$(wq_abspath "$text")")" output "$(wq_json_str "$out")"
        command "$(wq_json_str "wquant ${cmd[*]}")")
    wq_provenance "$stem.provenance.json" running "${members[@]}"
    wq_log "eval on $WQ_NP rank(s) (${WQ_HOSTS[*]}) -> $out"
    # Only rank 0 prints to stdout (the JSON line); progress and errors go to stderr (the job log).
    if ! wq_run "${cmd[@]}" >"$out.tmp.$$" || ! wq_has_ppl "$out.tmp.$$"; then
        rm -f "$out.tmp.$$"
        wq_provenance "$stem.provenance.json" failed "${members[@]}"
        wq_die "wquant eval failed: no result at $out"
    fi
    mv -f "$out.tmp.$$" "$out"
    wq_provenance "$stem.provenance.json" complete "${members[@]}"
    wq_log "result: $(cat "$out")"
}

# wq_sweep_point SWEEP.json INDEX [OUT_DIR]: point INDEX (0-based) of `wquant sweep SWEEP.json`
# on all ranks: quantize into OUT_DIR/points/<name>/model.h5, evaluate, write its result.json.
# wquant skips a point whose result holds the same definition, so a requeued or resubmitted task
# returns at once. OUT_DIR defaults to the sweep file's "out".
wq_sweep_point() {
    local sweep=$1 index=$2 out=${3:-}
    [[ -f $sweep ]] || wq_die "no sweep file '$sweep'" 2
    [[ $index =~ ^[0-9]+$ ]] || wq_die "task index '$index' is not a non-negative integer" 2
    local cmd=(sweep "$sweep" --point "$index")
    [[ -z $out ]] || cmd+=(--out "$out")
    wq_log "sweep point $index of $sweep on $WQ_NP rank(s) (${WQ_HOSTS[*]})"
    wq_run "${cmd[@]}" || wq_die "wquant sweep --point $index failed"
}

# wq_sweep_collect SWEEP.json [OUT_DIR]: results.csv, results.md and ppl_vs_bpw.png from the
# finished points (fails, naming them, when a point has no result).
wq_sweep_collect() {
    local sweep=$1 out=${2:-}
    [[ -f $sweep ]] || wq_die "no sweep file '$sweep'" 2
    local cmd=(sweep "$sweep" --collect)
    [[ -z $out ]] || cmd+=(--out "$out")
    wq_log "collecting the results of $sweep"
    wq_run "${cmd[@]}" >/dev/null || wq_die "wquant sweep --collect failed"
}
