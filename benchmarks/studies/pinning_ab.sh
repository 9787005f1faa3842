#!/usr/bin/env bash
# Study (issue 5): do the lent host's slow spells follow the process around, or do they stay with a
# CPU? Runs benchmarks.studies.host_spells (cuDNN channels_last vs the bypass, rounds classed by the
# host canary, per-round steal time / context switches / CPU moves) in fresh processes, alternating
# unpinned and pinned to a CPU set (taskset; default CPUs 4 and 5), ABAB..., while a sampler logs the
# host's load and clock once a second and a bystander canary (bystander_canary.py, pinned to CPU
# $BYSTANDER_CPU, default 12) logs the host's pure-Python speed. Run from the repository root:
#   benchmarks/studies/pinning_ab.sh OUT_DIR [PAIRS] [ROUNDS] [CPUS]
# STEP_ARGS adds arguments to every step call (CPU smoke test: STEP_ARGS="--device cpu --quick").
# It writes two files per process plus three: write under /tmp and tar OUT_DIR into $OUT, since a
# device call brings back at most 8 files.
set -u
out=${1:?OUT_DIR}; pairs=${2:-3}; rounds=${3:-60}; cpus=${4:-4,5}
mkdir -p "$out"
{ lscpu; echo; lscpu -e; } > "$out/host.txt" 2>&1
( while :; do
    printf '%s %s %s %s\n' "$(date +%s.%N)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
      "$(awk '/^cpu MHz/{s+=$4;n++}END{if(n)printf "%.0f",s/n}' /proc/cpuinfo)" "$(head -1 /proc/stat)"
    sleep 1
  done ) > "$out/sampler.txt" &
sampler=$!
# a bystander on CPUs the pinned runs do not use: do its slow periods line up with theirs?
taskset -c "${BYSTANDER_CPU:-12}" python3 -m benchmarks.studies.bystander_canary --seconds 3600 > "$out/bystander.txt" 2>&1 &
bystander=$!
step() {  # $1: name, rest: the command prefix (empty or taskset)
  local name=$1; shift
  "$@" python3 -m benchmarks.studies.host_spells --configs 640x16:fp32,640x16:bf16 --paths cudnn_cl,bypass --extra-fp32-paths '' \
    --extra-amp-paths '' --sig-configs '' --no-profile --rounds "$rounds" --per-round 2 ${STEP_ARGS:-} --out "$out/$name" > "$out/$name.log" 2>&1
  echo "$name rc=$? $(date +%s)"
}
for i in $(seq 1 "$pairs"); do
  step "free$i"
  step "pinned$i" taskset -c "$cpus"
done
kill "$sampler" "$bystander"
