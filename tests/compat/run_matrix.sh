#!/usr/bin/env bash
# The compatibility matrix (README, Development): run before a release.
#
# Each cell is a Python of pyenv, a venv, the package installed (editable, with the test extra)
# under one constraints file of constraints/, then
#   demo   `yolo-rdna1 demo`: YOLOv8n trained 2 epochs on synthetic data under the gfx1010 profile;
#   train  a supervised training whose fault profile (tests/compat/abort_mid_epoch.yaml) aborts
#          the process mid-epoch: the supervisor must attribute the conv, restart, resume from the
#          mid-epoch checkpoint and finish (the Ultralytics internals the plugin relies on);
#   suite  with --suite, the whole test suite (python -m pytest -q) in that venv.
# The last lines are a table cell x result with wall times; the exit status is 1 if a cell failed.
#
# Usage: tests/compat/run_matrix.sh [--suite] [--fresh] [CELL ...]
#   CELL    torch113-py310 | ul83-py39 | ci-py311 | newest-py313 (default: all four)
#   --fresh rebuild the venvs (otherwise an existing venv is reused and only updated)
# Venvs, logs and run dirs: $MATRIX_VENVS (default ~/.cache/yolo_rdna1-matrix); pip's cache:
# $PIP_CACHE_DIR (default $MATRIX_VENVS/pip-cache). Interpreters: $PYENV_ROOT/versions/3.X.*.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
VENVS=${MATRIX_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/yolo_rdna1-matrix}
PYENV_VERSIONS=${PYENV_ROOT:-$HOME/.pyenv}/versions
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$VENVS/pip-cache} PIP_DISABLE_PIP_VERSION_CHECK=1
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
unset PYTHONPATH YOLO_RDNA1_FAULTS YOLO_RDNA1_CACHE YOLO_CONFIG_DIR

# cell -> "python constraints-file" (the cells fit in 45 minutes on 2 cores)
declare -A CELL=(
    [torch113-py310]="3.10 torch113.txt"    # ROCm 5.2's torch 1.13.1 stack, numpy < 2, newest Ultralytics it takes
    [ul83-py39]="3.9 ultralytics83.txt"     # the oldest: Python 3.9, torch 2.1, Ultralytics 8.3.213
    [ci-py311]="3.11 ci.txt"                # the CI pins
    [newest-py313]="3.13 newest.txt"        # the newest torch and Ultralytics on PyPI
)
ORDER=(torch113-py310 ul83-py39 ci-py311 newest-py313)

SUITE=0 FRESH=0 CELLS=()
for arg in "$@"; do
    case $arg in
        --suite) SUITE=1 ;;
        --fresh) FRESH=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) [[ -n ${CELL[$arg]:-} ]] || { echo "unknown cell '$arg'; cells: ${ORDER[*]}" >&2; exit 2; }; CELLS+=("$arg") ;;
    esac
done
[[ ${#CELLS[@]} -gt 0 ]] || CELLS=("${ORDER[@]}")
mkdir -p "$VENVS/logs"

python_for() {  # newest installed 3.X.Y of pyenv for "3.X"
    ls -d "$PYENV_VERSIONS/$1".[0-9]* 2>/dev/null | sort -V | tail -n 1 | sed 's|$|/bin/python|'
}

# Checks the supervised run's journal: an abort, attributed, resumed mid-epoch, completed.
JOURNAL_CHECK='
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
kinds = [e["event"] for e in ev]
assert any(e["event"] == "restart" and e["cause"] == "abort" for e in ev), "no abort restart: %s" % kinds
assert "attributed" in kinds, "the crash was not attributed: %s" % kinds
assert any(e["event"] == "resume" and e.get("batch", 0) > 0 for e in ev), "no mid-epoch resume: %s" % kinds
assert ev[-1]["event"] == "end" and ev[-1]["status"] == "completed", "did not complete: %s" % ev[-1]
print("journal: abort -> attributed -> resumed mid-epoch -> completed")
'

keeps_torch() {  # a plain `pip install -e .` (no constraints at all) leaves the installed torch alone
    local before after
    before=$("$1/bin/python" -c 'import torch; print(torch.__version__)') &&
    PIP_CONSTRAINT=/dev/null "$1/bin/python" -m pip install -q -e "$REPO" &&
    after=$("$1/bin/python" -c 'import torch; print(torch.__version__)') &&
    echo "torch before: $before, after a plain install: $after" && [[ $before == "$after" ]]
}

declare -A RESULT TIMES VERSIONS
run_cell() {
    local cell=$1 ver pins py venv log work status=pass t0 s rc
    read -r ver pins <<<"${CELL[$cell]}"
    venv=$VENVS/$cell log=$VENVS/logs/$cell.log work=$VENVS/work/$cell
    : >"$log"
    t0=$SECONDS
    TIMES[$cell]=""
    step() {  # step NAME CMD...: run, log, time; a failed step ends the cell
        local name=$1; shift
        s=$SECONDS
        echo "== $name: $*" >>"$log"
        "$@" >>"$log" 2>&1; rc=$?
        TIMES[$cell]+="$name $((SECONDS - s))s, "
        [[ $rc -eq 0 ]] || { status="FAIL ($name)"; echo "== $name failed (exit $rc)" >>"$log"; }
        return $rc
    }
    py=$(python_for "$ver")
    if [[ ! -x $py ]]; then
        RESULT[$cell]="FAIL (no Python $ver in $PYENV_VERSIONS)"; return
    fi
    [[ $FRESH -eq 0 ]] || rm -rf "$venv"
    rm -rf "$work" && mkdir -p "$work"
    # every command of the cell, imports included, keeps Ultralytics' settings and the verdicts in the cell
    export YOLO_CONFIG_DIR=$work/cfg YOLO_RDNA1_CACHE=$work/cache
    local upgrade=()
    [[ $pins != newest.txt ]] || upgrade=(--upgrade --upgrade-strategy eager)
    # PIP_CONSTRAINT replaces a machine-wide constraint file (pip.conf) for these installs
    { [[ -x $venv/bin/python ]] || step venv "$py" -m venv "$venv"; } &&
    step install env PIP_CONSTRAINT="$REPO/constraints/$pins" "$venv/bin/python" -m pip install -q "${upgrade[@]}" -e "$REPO[test]" &&
    VERSIONS[$cell]=$("$venv/bin/python" -c 'import platform, numpy, torch, ultralytics; print(f"py{platform.python_version()} torch {torch.__version__} ultralytics {ultralytics.__version__} numpy {numpy.__version__}")' 2>>"$log" | tail -n 1) &&
    step keeps-torch keeps_torch "$venv" &&
    step demo env -C "$work" "$venv/bin/yolo-rdna1" demo project="$work/runs" &&
    step demo-bypassed grep -q "yolo_rdna1 demo: [1-9][0-9]* of" "$log" &&
    step train env -C "$work" "$venv/bin/yolo-rdna1" train \
        data="$work/runs/synthetic-thermal/data.yaml" model=yolov8n.yaml faults="$REPO/tests/compat/abort_mid_epoch.yaml" \
        supervise=True probe=False unknown=vendor epochs=1 imgsz=128 batch=8 nbs=8 device=cpu workers=0 plots=False \
        telemetry=0 thermal=False stall_timeout=120 backoff_s=0 checkpoint_minutes=0.0001 project="$work/runs" name=supervised &&
    step journal "$venv/bin/python" -c "$JOURNAL_CHECK" "$work/runs/supervised/journal.jsonl" &&
    { [[ $SUITE -eq 0 ]] || step suite env -C "$REPO" "$venv/bin/python" -m pytest -q -p no:cacheprovider; }
    [[ -n ${VERSIONS[$cell]:-} || $status != pass ]] || status="FAIL (versions)"
    RESULT[$cell]=$status
    TIMES[$cell]+="total $((SECONDS - t0))s"
}

START=$SECONDS
for cell in "${CELLS[@]}"; do
    echo "[$(date +%H:%M:%S)] $cell ..."
    run_cell "$cell"
    echo "[$(date +%H:%M:%S)] $cell: ${RESULT[$cell]} (${TIMES[$cell]}); log: $VENVS/logs/$cell.log"
done

failed=0
echo
echo "| cell | stack | result | wall times |"
echo "| --- | --- | --- | --- |"
for cell in "${CELLS[@]}"; do
    echo "| $cell | ${VERSIONS[$cell]:-?} | ${RESULT[$cell]} | ${TIMES[$cell]} |"
    [[ ${RESULT[$cell]} == pass ]] || failed=1
done
echo
echo "matrix wall time: $(( (SECONDS - START) / 60 ))m $(( (SECONDS - START) % 60 ))s$([[ $SUITE -eq 1 ]] && echo ', with the test suite')"
exit $failed
