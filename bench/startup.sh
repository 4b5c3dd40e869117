#!/usr/bin/env bash
# rollout's start-up, as a user feels it on a small job: `rollout --version`
# and `rollout plan` of a one-node inventory (the lab's first node, over
# loopback), each RUNS times (default 5), for every CLI given, under every
# Node.js binary given. Appends one sample a run to SAMPLES (bench/run.sh's
# format: op `start-version` or `start-plan`, n 1, tool "LABEL on node MAJOR").
#
#   startup.sh SAMPLES INVENTORY RUNS "NODE_BIN..." LABEL=CLI...
set -euo pipefail
samples=$1 inventory=$2 runs=$3 nodes=$4
shift 4

# timed OP RUN CMD...: runs CMD (output dropped) and appends its wall time as a sample of OP.
timed() {
  local op=$1 run=$2 t0 t1
  shift 2
  t0=$EPOCHREALTIME
  "$@" >/dev/null
  t1=$EPOCHREALTIME
  printf '0\t1\t%s\t%s\t%s\t%s\t0\t0\n' "$op" "$tool" "$run" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" >>"$samples"
}
for spec in "$@"; do
  label=${spec%%=*} cli=${spec#*=}
  for node in $nodes; do
    major=$("$node" -p 'process.versions.node.split(".")[0]')
    tool="$label on node $major"
    # One untimed run of each first: the page cache, and Node 22+'s compile cache, as on a second use.
    "$node" "$cli" --version >/dev/null
    env CI=true "$node" "$cli" plan "$inventory" >/dev/null
    for ((r = 1; r <= runs; r++)); do
      timed start-version "$r" "$node" "$cli" --version
      timed start-plan "$r" env CI=true "$node" "$cli" plan "$inventory"
    done
  done
done
