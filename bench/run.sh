#!/usr/bin/env bash
# npm run bench: rollout against Ansible and against the raw OpenSSH floor, on
# real lab fleets (systemd-nspawn nodes with real sshd and systemd, see
# lab/README.md) of N = 10, 50 and 100 nodes. See bench/README.md.
#
# Measures, several runs each (median and spread), in one invocation:
#   plan   rollout plan            | ansible-playbook --check --diff (forks N)  | ssh x N in parallel, cat both files
#   apply  rollout apply --yes     | ansible-playbook serial: 1                 | ssh node after node: cursor, restart, wait
#   peak RSS of rollout at each N (GNU time %M)
# and writes bench/results.json and bench/results.md.
#
# Environment:
#   BENCH_SIZES="10 50 100"   fleet sizes (plan at each)
#   BENCH_APPLY_SIZES="10"    sizes that also run the apply comparison (must be in BENCH_SIZES)
#   BENCH_RUNS=3              timed runs per tool and size (at least 1; 3+ for a median and spread)
#   BENCH_START_DELAY_MS=200  the lab sim's start-delay-ms knob on every node
#   BENCH_REF=REF             bench this git commit (built into the temp dir) instead of a snapshot
#                             of the current dist/ (e.g. BENCH_REF=HEAD)
#   BENCH_VARIANTS="l=REF .." other commits built like BENCH_REF and run as extra tools "rollout [l]"
#                             beside rollout (same inventories, flags, checks, rotation); labels [a-z0-9-]+
#   BENCH_TOOLS="rollout floor ansible"  which groups to run (rollout always; "rollout" alone runs
#                             rollout and its variants only, "rollout floor" skips Ansible)
#   BENCH_VITEST_WAIT=900     seconds to wait before a sample while the test suite (vitest, tsc) runs
#   BENCH_RETRIES=2           a sample the test suite disturbed anyway is taken again (after waiting)
#                             up to this many times; the last try is kept and marked
#   BENCH_RTT=0               round-trip time (ms) to add between every tool and every node's sshd:
#                             when > 0, bench/relay.mjs listens on 127.0.0.1:BENCH_RELAY_BASE_PORT+i
#                             (default 3400+i) and forwards to node i with RTT/2 ms each way
#   BENCH_RTTS="0 50"         several RTTs in one invocation (overrides BENCH_RTT); so does
#                             `npm run bench -- --rtt 0 --rtt 50` (or --rtt "0 50")
#   BENCH_STARTUP_RUNS=5      runs of the start-up measurement (rollout --version, and plan of one
#                             node over loopback), for rollout and each variant; 0 skips it
#   BENCH_STARTUP_NODES="20"  Node.js majors to measure start-up under (test/node-bin.sh finds or
#                             fetches each; default: this machine's node only)
#   BENCH_OUT_DIR=bench       where results.json / results.md go
#   BENCH_KEEP_TMP=1          keep the temp dir (inventories, logs of every run)
#   BENCH_PROFILE_DIR=DIR     after the timed runs of each size, one more (untimed) rollout plan, and
#                             apply where measured, with --cpu-prof, bench/profile/trace-ssh.cjs and
#                             process accounting (profile/process-cpu.sh, Debian's acct), into
#                             DIR/n<N>/ (see bench/README.md, "Profiling rollout")
#   BENCH_LAB_DIR, BENCH_LAB_CACHE, BENCH_BASE_PORT, BENCH_VAULT_PORT, BENCH_VAULT_ADMIN_PORT, BENCH_KMS_BASE_PORT
#                             the bench's own lab instance (default /var/lib/rollout-lab-bench,
#                             /var/cache/rollout-lab-bench, 2400, 8400, 8401); never the default lab.
set -euo pipefail

rtt_args=""
while (($# > 0)); do
  case $1 in
    --rtt) [[ $# -ge 2 ]] || { echo "bench: --rtt needs a value (ms)" >&2; exit 2; }; rtt_args+=" $2"; shift 2 ;;
    --rtt=*) rtt_args+=" ${1#--rtt=}"; shift ;;
    *) echo "bench: unknown argument '$1' (only --rtt MS; the rest is environment, see the header of bench/run.sh)" >&2; exit 2 ;;
  esac
done

BENCH_DIR="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
REPO="$(dirname "$BENCH_DIR")"
LAB="$REPO/lab/lab.sh"
CLI="$REPO/dist/cli/main.js"

SIZES=${BENCH_SIZES:-10 50 100}
APPLY_SIZES=${BENCH_APPLY_SIZES:-10}
RUNS=${BENCH_RUNS:-3}
STARTUP_RUNS=${BENCH_STARTUP_RUNS:-5}
STARTUP_NODES=${BENCH_STARTUP_NODES:-}
START_DELAY_MS=${BENCH_START_DELAY_MS:-200}
VITEST_WAIT=${BENCH_VITEST_WAIT:-900}
RETRIES=${BENCH_RETRIES:-2}
OUT_DIR=${BENCH_OUT_DIR:-$BENCH_DIR}
BENCH_STATE=${BENCH_LAB_DIR:-/var/lib/rollout-lab-bench}
BENCH_CACHE=${BENCH_LAB_CACHE:-/var/cache/rollout-lab-bench}
BASE_PORT=${BENCH_BASE_PORT:-2400}
VAULT_PORT=${BENCH_VAULT_PORT:-8400}
VAULT_ADMIN_PORT=${BENCH_VAULT_ADMIN_PORT:-8401}
# Node i's minkms serves HTTPS on KMS_BASE_PORT+i: clear of the default lab's 7301.. for 100 nodes.
KMS_BASE_PORT=${BENCH_KMS_BASE_PORT:-9000}
# Round-trip times to bench at (ms); > 0 puts bench/relay.mjs between every tool and the nodes.
RTTS=${rtt_args:-${BENCH_RTTS:-${BENCH_RTT:-0}}}
RELAY_BASE_PORT=${BENCH_RELAY_BASE_PORT:-3400}
# The tool groups to run (rollout, the peer of every ratio, always) and the
# rollout variants to run beside it (label=REF); read, not split, so that a
# REF is never taken for a glob.
read -ra TOOL_GROUPS <<<"${BENCH_TOOLS:-rollout floor ansible}"
read -ra VARIANT_SPECS <<<"${BENCH_VARIANTS:-}"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- checks

[[ $(id -u) -eq 0 ]] || die "must run as root (the lab needs it): sudo npm run bench"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a whole number >= 1"
[[ $RETRIES =~ ^[0-9]+$ && $VITEST_WAIT =~ ^[0-9]+$ ]] || die "BENCH_RETRIES and BENCH_VITEST_WAIT must be whole numbers"
[[ $START_DELAY_MS =~ ^[0-9]+$ ]] || die "BENCH_START_DELAY_MS must be a whole number"
for n in $SIZES $APPLY_SIZES; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "fleet sizes must be whole numbers >= 1 (got '$n')"; done
for n in $APPLY_SIZES; do [[ " $SIZES " == *" $n "* ]] || die "BENCH_APPLY_SIZES: $n is not in BENCH_SIZES ($SIZES)"; done
for r in $RTTS; do [[ $r =~ ^[0-9]+$ ]] || die "round-trip times must be whole numbers of ms (got '$r')"; done
# Never the default lab (the tests' and the demo's): its state dir, its ports.
[[ $(realpath -m -- "$BENCH_STATE") != /var/lib/rollout-lab ]] || die "BENCH_LAB_DIR must not be the default lab's /var/lib/rollout-lab"
[[ $(realpath -m -- "$BENCH_CACHE") != /var/cache/rollout-lab ]] || die "BENCH_LAB_CACHE must not be the default lab's cache (the bench adds python3 to its rootfs)"
max_n=0
for n in $SIZES; do ((n > max_n)) && max_n=$n; done
[[ $BASE_PORT =~ ^[0-9]+$ && $BASE_PORT != 2200 ]] || die "BENCH_BASE_PORT must be a port number other than the default lab's 2200"
for ((p = BASE_PORT + 1; p <= BASE_PORT + max_n; p++)); do
  if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
    [[ -f $BENCH_STATE/base-port ]] || die "127.0.0.1:$p is already in use (another lab?); set BENCH_BASE_PORT"
  fi
done
if [[ " $RTTS " =~ \ [1-9] ]]; then
  if ! [[ $RELAY_BASE_PORT =~ ^[0-9]+$ ]] || ((RELAY_BASE_PORT + max_n > BASE_PORT && RELAY_BASE_PORT < BASE_PORT + max_n)); then
    die "BENCH_RELAY_BASE_PORT must be a port number whose range clears the nodes' ($BASE_PORT+1..)"
  fi
  for ((p = RELAY_BASE_PORT + 1; p <= RELAY_BASE_PORT + max_n; p++)); do
    ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || die "127.0.0.1:$p (the latency relay's) is already in use; set BENCH_RELAY_BASE_PORT"
  done
fi
for p in "$VAULT_PORT" "$VAULT_ADMIN_PORT"; do
  [[ $p != 8200 && $p != 8201 ]] || die "the bench's Vault double must not use the default lab's ports 8200/8201"
done
WITH_ROLLOUT=0 WITH_FLOOR=0 WITH_ANSIBLE=0
for t in "${TOOL_GROUPS[@]}"; do
  case $t in
    rollout) WITH_ROLLOUT=1 ;;
    floor) WITH_FLOOR=1 ;;
    ansible) WITH_ANSIBLE=1 ;;
    *) die "BENCH_TOOLS: unknown tool group '$t' (rollout, floor, ansible)" ;;
  esac
done
((WITH_ROLLOUT)) || die "BENCH_TOOLS must include rollout (every ratio is taken against it), e.g. BENCH_TOOLS=\"rollout floor\""
# Each variant: its label (the tool "rollout [label]"), the commit it is built from.
declare -A VARIANT_REF=()
VARIANT_LABELS=()
for spec in "${VARIANT_SPECS[@]}"; do
  [[ $spec == *=* ]] || die "BENCH_VARIANTS: '$spec' is not label=REF (e.g. BENCH_VARIANTS=\"no-ping=bench/no-ping\")"
  label=${spec%%=*} ref=${spec#*=}
  [[ $label =~ ^[a-z0-9-]+$ ]] || die "BENCH_VARIANTS: label '$label' (in '$spec') must be lower-case letters, digits and dashes ([a-z0-9-]+)"
  [[ -z ${VARIANT_REF[$label]:-} ]] || die "BENCH_VARIANTS: label '$label' is given twice"
  if [[ -z $ref ]] || ! git -C "$REPO" rev-parse --verify -q "${ref}^{commit}" >/dev/null; then
    die "BENCH_VARIANTS: $label=$ref: '$ref' is not a commit"
  fi
  VARIANT_REF[$label]=$ref
  VARIANT_LABELS+=("$label")
done

export ROLLOUT_LAB_DIR=$BENCH_STATE ROLLOUT_LAB_CACHE=$BENCH_CACHE ROLLOUT_LAB_BASE_PORT=$BASE_PORT \
  ROLLOUT_LAB_VAULT_PORT=$VAULT_PORT ROLLOUT_LAB_VAULT_ADMIN_PORT=$VAULT_ADMIN_PORT ROLLOUT_LAB_KMS_BASE_PORT=$KMS_BASE_PORT
# lab.sh waits for all nodes at once; on 2 cores 100 nodes need more than its default 60 s.
export ROLLOUT_LAB_BOOT_TIMEOUT=${ROLLOUT_LAB_BOOT_TIMEOUT:-$((60 + 3 * max_n))}
PROFILE_DIR=${BENCH_PROFILE_DIR:-}
[[ -z $PROFILE_DIR ]] || PROFILE_DIR=$(realpath -m -- "$PROFILE_DIR")
# Every tool authenticates with the lab key only.
unset SSH_AUTH_SOCK

# Tools: the lab's, Ansible (Debian's ansible-core), GNU time.
for t in systemd-nspawn debootstrap ssh openssl node; do
  command -v "$t" >/dev/null 2>&1 || die "$t is missing (see lab/README.md: apt-get install -y systemd-container debootstrap openssh-client openssl; Node 20)"
done
pkgs=()
if ((WITH_ANSIBLE)); then command -v ansible-playbook >/dev/null 2>&1 || pkgs+=(ansible-core); fi
[[ -x /usr/bin/time ]] || pkgs+=(time)
[[ -z $PROFILE_DIR ]] || command -v accton >/dev/null 2>&1 || pkgs+=(acct)
if ((${#pkgs[@]} > 0)); then
  log "installing ${pkgs[*]} (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; } ||
    die "could not install ${pkgs[*]}"
fi
[[ -d $REPO/node_modules/ssh2 ]] || die "node_modules is missing: run npm ci first"

# Big fleets need more inotify instances than the default 128 (about 7 per node; lab-notes).
for kv in max_user_instances:2048 max_user_watches:524288; do
  k=${kv%%:*} v=${kv#*:}
  (($(cat /proc/sys/fs/inotify/$k) >= v)) || echo "$v" >/proc/sys/fs/inotify/$k
done

# shellcheck source=lib/rootfs.sh
source "$BENCH_DIR/lib/rootfs.sh"

# ---------------------------------------------------------------- temp dir, teardown

TMP=$(mktemp -d /tmp/rollout-bench.XXXXXX)
mkdir -p "$TMP/logs" "$TMP/state" "$TMP/ansible-tmp"

# build_ref REF DIR: the git commit REF built into DIR as package.json's
# "build" does, against the repo's node_modules (nothing in the repo is written).
build_ref() {
  local ref=$1 dir=$2 logf="$TMP/logs/build-${2##*/}.log"
  mkdir -p "$dir"
  git -C "$REPO" archive "$ref" | tar -x -C "$dir"
  ln -s "$REPO/node_modules" "$dir/node_modules"
  node "$REPO/node_modules/typescript/bin/tsc" -p "$dir/tsconfig.build.json" >"$logf" 2>&1 ||
    { cat "$logf" >&2; die "building $ref failed"; }
  # The node-side agent scripts ship beside the compiled code (package.json "build").
  if [[ -d $dir/src/agent ]]; then mkdir -p "$dir/dist/agent" && cp "$dir"/src/agent/*.sh "$dir/dist/agent/"; fi
}

# The rollout under test, frozen for the whole bench: npm test rebuilds dist/
# (tsc) whenever someone runs the suite, which must not change the CLI between
# two samples. Either a snapshot of dist/ as it is now, or BENCH_REF built from
# git (nothing in the repo is written either way).
ROLLOUT_DIR="$TMP/rollout"
mkdir -p "$ROLLOUT_DIR"
if [[ -n ${BENCH_REF:-} ]]; then
  git -C "$REPO" rev-parse --verify -q "${BENCH_REF}^{commit}" >/dev/null || die "BENCH_REF=$BENCH_REF is not a commit"
  build_ref "$BENCH_REF" "$ROLLOUT_DIR"
  ROLLOUT_VERSION="commit $(git -C "$REPO" rev-parse --short "$BENCH_REF") (BENCH_REF=$BENCH_REF, built for the bench)"
else
  [[ -f $CLI ]] || die "dist/ is missing: npm run build (or set BENCH_REF=HEAD)"
  cp -a "$REPO/dist" "$REPO/package.json" "$ROLLOUT_DIR/"
  cp -a "$REPO/playbooks" "$ROLLOUT_DIR/"
  ln -s "$REPO/node_modules" "$ROLLOUT_DIR/node_modules"
  ROLLOUT_VERSION="dist/ built $(date -u -r "$CLI" +%FT%TZ) from the working tree at commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') ($(git -C "$REPO" status --porcelain -- src 2>/dev/null | wc -l | tr -d ' ') file(s) in src/ differ from it)"
fi
CLI="$ROLLOUT_DIR/dist/cli/main.js"
[[ -f $CLI ]] || die "no $CLI"
# The variants (BENCH_VARIANTS), each built the same way into its own dir.
declare -A VARIANT_CLI=()
for label in "${VARIANT_LABELS[@]}"; do
  log "building variant $label (${VARIANT_REF[$label]}) into $TMP/variant-$label"
  build_ref "${VARIANT_REF[$label]}" "$TMP/variant-$label"
  VARIANT_CLI[$label]="$TMP/variant-$label/dist/cli/main.js"
  [[ -f ${VARIANT_CLI[$label]} ]] || die "variant $label: no ${VARIANT_CLI[$label]} after the build"
done
SAMPLES="$TMP/samples.tsv"
META="$TMP/meta.tsv"
printf 'rtt_ms\tn\top\ttool\trun\tseconds\trss_kb\tvitest\tcpu_tool_s\tcpu_machine_s\n' >"$SAMPLES"
: >"$META"
LAB_UP=0
RELAY_PID=
# Where the tools reach node i's sshd (NODE_BASE+i) and the known_hosts that
# names those ports: the lab's own, or the relay's (start_relay).
NODE_BASE=$BASE_PORT
KNOWN_HOSTS=$BENCH_STATE/known_hosts
RTT=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_relay
  if ((LAB_UP)); then
    log "taking the bench lab down"
    bash "$LAB" down >"$TMP/logs/lab-down.log" 2>&1 || { log "warning: lab.sh down failed:"; tail -n 5 "$TMP/logs/lab-down.log" >&2; }
  fi
  if [[ ${BENCH_KEEP_TMP:-} == 1 || $rc -ne 0 ]]; then
    log "logs and inventories kept in $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

# ---------------------------------------------------------------- latency relay

# start_relay RTT N: bench/relay.mjs in front of nodes 1..N (RTT/2 ms each
# way), a known_hosts with the nodes' keys under the relay's ports too, and
# every later tool pointed at it (NODE_BASE, KNOWN_HOSTS).
start_relay() {
  local rtt=$1 n=$2 line='' delay=$(($1 / 2))
  ((rtt % 2 == 0)) || delay+=.5
  awk -v base="$BASE_PORT" -v relay="$RELAY_BASE_PORT" -v n="$n" '
    { print }
    match($1, /^\[127\.0\.0\.1\]:[0-9]+$/) {
      port = substr($1, 13, length($1) - 12) + 0
      if (port > base && port <= base + n) { $1 = "[127.0.0.1]:" (port - base + relay); print }
    }' "$BENCH_STATE/known_hosts" >"$TMP/known_hosts-relay"
  [[ $(grep -c "^\[127.0.0.1\]:" "$TMP/known_hosts-relay") -ge $((2 * n)) ]] || die "could not write the relay's known_hosts"
  # Its first line says it listens on every port (read, not slept on).
  exec {relay_fd}< <(exec node "$BENCH_DIR/relay.mjs" --delay-ms "$delay" --base "$RELAY_BASE_PORT:$BASE_PORT" --count "$n" 2>>"$TMP/logs/relay.log")
  RELAY_PID=$!
  read -r -t 10 -u "$relay_fd" line || true
  [[ $line == "relay: listening"* ]] || { cat "$TMP/logs/relay.log" >&2; die "the latency relay did not start"; }
  NODE_BASE=$RELAY_BASE_PORT KNOWN_HOSTS=$TMP/known_hosts-relay
  log "latency relay: 127.0.0.1:$((RELAY_BASE_PORT + 1)).. -> the nodes, RTT $rtt ms ($delay ms each way)"
}

stop_relay() {
  if [[ -n $RELAY_PID ]]; then
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=
    exec {relay_fd}<&-
  fi
  NODE_BASE=$BASE_PORT KNOWN_HOSTS=$BENCH_STATE/known_hosts
}

# ---------------------------------------------------------------- measuring

# The test suite (npm test: tsc, then vitest with its e2e runs against the default lab).
vitest_running() { pgrep -f 'vitest|tsc -p tsconfig' >/dev/null 2>&1; }
VITEST_SEEN=0
FAILURES=0

# Waits (bounded) while another engineer's test run loads the machine.
wait_quiet() {
  local waited=0
  while vitest_running && ((waited < VITEST_WAIT)); do
    ((waited == 0)) && log "a vitest run is going on; waiting up to ${VITEST_WAIT}s before measuring"
    sleep 2
    waited=$((waited + 2))
  done
}

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# The machine's busy CPU time so far, in clock ticks (/proc/stat: user, nice,
# system, irq, softirq): every process of every lab node, the Vault double, the
# relay and the tool itself, which is where the lab's nodes differ from a fleet.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
CLK_TCK=$(getconf CLK_TCK)

# measure N OP TOOL RUN VALIDATOR -- CMD...
# Times CMD (wall clock) under GNU time (peak RSS; the CPU time of CMD and the
# children it waited for), with the whole machine's CPU time over the same
# span, checks the run did its job (VALIDATOR LOG N; a failed run stops the
# bench), and leaves the sample in LAST_SAMPLE and whether the test suite ran
# meanwhile in LAST_BUSY.
measure() {
  local n=$1 op=$2 tool=$3 run=$4 validate=$5
  shift 6
  local logf="$TMP/logs/$op-${tool// /_}-n$n-rtt$RTT-r$run.log" t0 t1 rc=0 rss busy=0 secs b0 b1 utime stime cpu_tool cpu_machine
  wait_quiet
  # Watch for the test suite during the sample, twice a second.
  rm -f "$TMP/busy"
  (while :; do vitest_running && : >"$TMP/busy"; sleep 0.5; done) &
  local watcher=$!
  b0=$(busy_ticks)
  t0=$(now)
  /usr/bin/time -o "$TMP/time.out" -f '%M %U %S' "$@" >"$logf" 2>&1 || rc=$?
  t1=$(now)
  b1=$(busy_ticks)
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
  [[ -e $TMP/busy ]] && busy=1
  ((busy)) && VITEST_SEEN=1
  secs=$(elapsed "$t0" "$t1")
  read -r rss utime stime < <(tail -n 1 "$TMP/time.out")
  cpu_tool=$(awk -v u="$utime" -v s="$stime" 'BEGIN { printf "%.2f", u + s }')
  cpu_machine=$(awk -v a="$b0" -v b="$b1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')
  if ((rc != 0)) || ! "$validate" "$logf" "$n"; then
    log "$op/$tool at N=$n (run $run) failed (exit $rc); last lines of $logf:"
    tail -n 15 "$logf" >&2
    local failed="$TMP/logs/failed-$((++FAILURES))-$(basename "$logf")"
    cp "$logf" "$failed"
    meta "failed_attempt_$FAILURES" "$op/$tool N=$n RTT=$RTT run $run: exit $rc ($(grep -m1 -iE 'error|fatal|failed' "$logf" | cut -c1-160))"
    return 1
  fi
  LAST_SAMPLE=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$RTT" "$n" "$op" "$tool" "$run" "$secs" "$rss" "$busy" "$cpu_tool" "$cpu_machine")
  LAST_BUSY=$busy
  printf 'bench:   RTT=%-3s N=%-4s %-5s %-26s run %-6s %7.2f s  peak RSS %6.1f MB  CPU %6.2f s (machine %6.2f s)%s\n' "$RTT" "$n" "$op" "$tool" "$run" "$secs" \
    "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')" "$cpu_tool" "$cpu_machine" "$( ((busy)) && echo '  (the test suite was running)')" >&2
}

count() { grep -cE "$1" "$2" || true; }

# What each tool must have printed for a run to count.
ok_plan_rollout() { # a diff of both files for every node
  [[ $(count '^=== kms-' "$1") == "$2" && $(count '^\+hsm:' "$1") == "$2" && $(count '^-MINIO_KMS_HSM_KEY=' "$1") == "$2" ]]
}
ok_plan_ansible() { # both tasks "changed" (in check mode) on every node, none failed
  [[ $(count '^kms-[0-9]+ +: ok=2 +changed=2 +unreachable=0 +failed=0' "$1") == "$2" && $(count '^\+hsm:' "$1") == "$2" ]]
}
ok_plan_floor() { # both files of every node
  [[ $(count '^MINIO_KMS_OPTS=' "$1") == "$2" && $(count '^version: v1' "$1") == "$2" ]]
}
ok_apply_rollout() { # every node written, restarted and gated; the new section really is in each file
  local i
  grep -q '^Rollout complete' "$1" || return 1
  [[ $(count '^  kms-[0-9]+ +vault-hsm +changed, restarted, ready' "$1") == "$2" ]] || return 1
  for ((i = 1; i <= $2; i++)); do grep -q '^hsm:' "$BENCH_STATE/nodes/kms-$i/root/etc/minkms/config.yaml" || return 1; done
}
ok_apply_ansible() {
  [[ $(count '^kms-[0-9]+ +: ok=3 +changed=1 +unreachable=0 +failed=0' "$1") == "$2" ]]
}
ok_apply_floor() {
  [[ $(count '^kms-[0-9]+ READY$' "$1") == "$2" ]]
}

set_start_delay() { # the knob on every node (reset removes knobs)
  local n=$1 i
  for ((i = 1; i <= n; i++)); do echo "$START_DELAY_MS" >"$BENCH_STATE/nodes/kms-$i/knobs/start-delay-ms"; done
}

reset_fleet() { # N [TOOL]
  local n=$1 tool=${2:-}
  bash "$LAB" reset all >>"$TMP/logs/lab-reset.log" 2>&1 || { tail -n 20 "$TMP/logs/lab-reset.log" >&2; die "lab.sh reset all failed"; }
  set_start_delay "$n"
  if [[ $tool == "openssh floor (new config)" ]]; then
    # The nodes' own restart-and-ready time once they hold the new config (the
    # KMS then logs in to Vault and unseals through it at every start): the
    # fleet gets the config from an untimed rollout apply first.
    env CI=true ROLLOUT_STATE_DIR="$TMP/state" node "$CLI" apply "$INV/rollout-apply.yaml" --yes --parallel "$n" >"$TMP/logs/new-config-prep.log" 2>&1 &&
      ok_apply_rollout "$TMP/logs/new-config-prep.log" "$n" || { tail -n 20 "$TMP/logs/new-config-prep.log" >&2; die "preparing the new-config floor failed"; }
  fi
}

# The tools, as run for a fleet of N (inventories in $INV).
run_tool() { # OP TOOL N RUN
  local op=$1 tool=$2 n=$3 run=$4 cli=$CLI kind=$2
  # A variant runs exactly as rollout does, only from its own build.
  if [[ $tool =~ ^rollout\ \[([a-z0-9-]+)\]$ ]]; then
    cli=${VARIANT_CLI[${BASH_REMATCH[1]}]:-}
    [[ -n $cli ]] || die "no such variant: $tool"
    kind=rollout
  fi
  local ro=(env CI=true ROLLOUT_STATE_DIR="$TMP/state" node "$cli")
  local an=(env ANSIBLE_CONFIG="$BENCH_DIR/ansible/ansible.cfg" ANSIBLE_LOCAL_TEMP="$TMP/ansible-tmp" ANSIBLE_FORCE_COLOR=0
    ansible-playbook -i "$INV/ansible-hosts.ini" -f "$n")
  case $op/$kind in
    plan/rollout) measure "$n" plan "$tool" "$run" ok_plan_rollout -- "${ro[@]}" plan "$INV/rollout-plan.yaml" --parallel "$n" ;;
    "plan/rollout (parallel 16)") measure "$n" plan "$tool" "$run" ok_plan_rollout -- "${ro[@]}" plan "$INV/rollout-plan.yaml" ;;
    plan/ansible) measure "$n" plan "$tool" "$run" ok_plan_ansible -- "${an[@]}" --check --diff "$BENCH_DIR/ansible/plan.yml" ;;
    "plan/openssh floor") measure "$n" plan "$tool" "$run" ok_plan_floor -- bash "$BENCH_DIR/floor-plan.sh" "$BENCH_STATE" "$NODE_BASE" "$n" "$KNOWN_HOSTS" ;;
    apply/rollout) measure "$n" apply "$tool" "$run" ok_apply_rollout -- "${ro[@]}" apply "$INV/rollout-apply.yaml" --yes --parallel "$n" ;;
    apply/ansible) measure "$n" apply "$tool" "$run" ok_apply_ansible -- "${an[@]}" "$BENCH_DIR/ansible/apply.yml" ;;
    "apply/openssh floor" | "apply/openssh floor (new config)") measure "$n" apply "$tool" "$run" ok_apply_floor -- bash "$BENCH_DIR/floor-apply.sh" "$BENCH_STATE" "$NODE_BASE" "$n" "$KNOWN_HOSTS" ;;
    *) die "no such tool: $op/$tool" ;;
  esac
}

# One more rollout run, untimed, with a CPU profile and a trace of every SSH
# step (BENCH_PROFILE_DIR).
profile_run() { # OP N
  local op=$1 n=$2 dir="$PROFILE_DIR/n$2" inv rc=0
  ((RTT == 0)) || dir+="-rtt$RTT"
  mkdir -p "$dir"
  wait_quiet
  local yes=
  if [[ $op == plan ]]; then inv="$INV/rollout-plan.yaml"; else inv="$INV/rollout-apply.yaml" yes=--yes; fi
  # Which commands the run costs the nodes: process accounting around it (profile/process-cpu.sh).
  bash "$BENCH_DIR/profile/process-cpu.sh" "$dir/$op-processes.txt" -- \
    env CI=true ROLLOUT_STATE_DIR="$TMP/state" TRACE_SSH_FILE="$dir/$op-trace.jsonl" \
    node --cpu-prof --cpu-prof-dir="$dir" --cpu-prof-name="$op.cpuprofile" -r "$BENCH_DIR/profile/trace-ssh.cjs" \
    "$CLI" "$op" "$inv" --parallel "$n" ${yes:+"$yes"} >"$dir/$op.log" 2>&1 || rc=$?
  ((rc == 0)) || log "warning: the profiled $op at N=$n exited $rc (see $dir/$op.log)"
  node "$BENCH_DIR/profile/summarize-cpuprofile.mjs" "$dir/$op.cpuprofile" >"$dir/$op-cpu.txt" 2>&1 || true
  node "$BENCH_DIR/profile/summarize-trace.mjs" "$dir/$op-trace.jsonl" >"$dir/$op-trace.txt" 2>&1 || true
  if [[ $op == apply ]] && ((RTT > 0)); then
    # The round trips on each node's turn; the RTT 0 trace (when measured first) gives the node-side time.
    local base=()
    [[ -f $PROFILE_DIR/n$n/apply-trace.jsonl ]] && base=(--base "$PROFILE_DIR/n$n/apply-trace.jsonl")
    node "$BENCH_DIR/profile/round-trips.mjs" --rtt "$RTT" "${base[@]}" "$dir/apply-trace.jsonl" >"$dir/apply-round-trips.txt" 2>&1 || true
  fi
  log "N=$n RTT=$RTT: profiled $op: $dir/$op-cpu.txt, $dir/$op-trace.txt, $dir/$op-processes.txt"
}

# Runs every tool RUNS times, the order rotated from one run to the next so
# that no tool always comes first (or right after the heaviest one).
rotate_runs() { # OP N BEFORE_EACH TOOL...
  local op=$1 n=$2 before=$3 r k i tools
  shift 3
  tools=("$@")
  k=${#tools[@]}
  for ((r = 1; r <= RUNS; r++)); do
    for ((i = 0; i < k; i++)); do
      local try fails=0
      for ((try = 0; try <= RETRIES; try++)); do
        [[ -n $before ]] && $before "$n" "${tools[$(((i + r - 1) % k))]}"
        if ! run_tool "$op" "${tools[$(((i + r - 1) % k))]}" "$n" "$r"; then
          # A failed run is taken again once (the lab is reset first where the op needs it); twice stops the bench.
          ((fails++ == 0)) || die "$op/${tools[$(((i + r - 1) % k))]} at N=$n failed twice; logs in $TMP/logs"
          log "taking it again"
          try=$((try - 1))
          continue
        fi
        ((LAST_BUSY && try < RETRIES)) || break
        log "the test suite disturbed that sample; taking it again"
      done
      printf '%s\n' "$LAST_SAMPLE" >>"$SAMPLES"
    done
  done
}

# Start-up (bench/startup.sh): --version and a one-node plan, over loopback,
# for rollout and each variant (each started through its package's bin), under
# each Node.js of BENCH_STARTUP_NODES.
started_up=0
measure_startup() {
  local inv="$TMP/inventories/startup" bins=() specs=() m label dir
  bash "$BENCH_DIR/gen-inventories.sh" "$inv" 1 "$BENCH_STATE" "$BASE_PORT" "$VAULT_PORT"
  if [[ -z $STARTUP_NODES ]]; then bins=("$(command -v node)")
  else for m in $STARTUP_NODES; do bins+=("$(bash "$REPO/test/node-bin.sh" "$m")") || die "no Node.js $m for the start-up runs"; done
  fi
  specs=("rollout=$ROLLOUT_DIR/$(node -p "require('$ROLLOUT_DIR/package.json').bin.rollout")")
  for label in "${VARIANT_LABELS[@]}"; do
    dir="$TMP/variant-$label"
    specs+=("rollout [$label]=$dir/$(node -p "require('$dir/package.json').bin.rollout")")
  done
  wait_quiet
  log "start-up: $STARTUP_RUNS run(s) of --version and a one-node plan, for ${#specs[@]} build(s) under ${#bins[@]} Node.js"
  bash "$BENCH_DIR/startup.sh" "$SAMPLES" "$inv/rollout-plan.yaml" "$STARTUP_RUNS" "${bins[*]}" "${specs[@]}" ||
    die "the start-up runs failed"
}

# ---------------------------------------------------------------- the bench

log "bench lab: $BENCH_STATE, nodes on 127.0.0.1:$((BASE_PORT + 1)).., Vault double on $VAULT_PORT/$VAULT_ADMIN_PORT"
log "sizes: $SIZES (apply at: $APPLY_SIZES), $RUNS run(s) each, start-delay-ms=$START_DELAY_MS, RTT(s): $RTTS ms; logs in $TMP"
log "tools: ${TOOL_GROUPS[*]}${VARIANT_LABELS[*]:+; variants: ${VARIANT_LABELS[*]}}"
# Also without Ansible: the bench lab boots from this rootfs (its own cache);
# skipping it would leave lab.sh to build a python-less one under the same
# name, which a later run with Ansible would have to replace. Once built it
# costs nothing.
ensure_bench_rootfs

MINKMS_VAULT_SECRET_ID="bench-$(openssl rand -hex 16)"
export MINKMS_VAULT_SECRET_ID
meta started "$(date -u +%FT%TZ)"
meta sizes "$SIZES"
meta apply_sizes "$APPLY_SIZES"
meta runs "$RUNS"
meta start_delay_ms "$START_DELAY_MS"
meta rtts_ms "$RTTS"
meta cpus "$(nproc)"
meta cpu_model "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
meta mem_mib "$(awk '/^MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)"
meta kernel "$(uname -r)"
meta node "$(node --version)"
if ((WITH_ANSIBLE)); then meta ansible "$(ansible-playbook --version | head -n1)"; fi
meta openssh "$(ssh -V 2>&1)"
meta rollout "$ROLLOUT_VERSION"
meta tools "${TOOL_GROUPS[*]}"
if ((${#VARIANT_LABELS[@]} > 0)); then
  meta variants "${VARIANT_LABELS[*]}"
  for label in "${VARIANT_LABELS[@]}"; do
    meta "variant_$label" "$(git -C "$REPO" rev-parse --short "${VARIANT_REF[$label]}") $(git -C "$REPO" log -1 --format=%s "${VARIANT_REF[$label]}") (${VARIANT_REF[$label]})"
  done
fi
# The tools beside rollout, in the order rotate_runs starts from.
variant_tools=()
for label in "${VARIANT_LABELS[@]}"; do variant_tools+=("rollout [$label]"); done
other_plan_tools=()
apply_tools=(rollout "${variant_tools[@]}")
if ((WITH_ANSIBLE)); then
  other_plan_tools+=(ansible)
  apply_tools+=(ansible)
fi
if ((WITH_FLOOR)); then
  other_plan_tools+=("openssh floor")
  apply_tools+=("openssh floor" "openssh floor (new config)")
fi

warmed_ansible=0
for n in $SIZES; do
  log "N=$n: booting the bench lab (lab.sh up $n)"
  t0=$(now)
  LAB_UP=1
  bash "$LAB" up "$n" >"$TMP/logs/lab-up-$n.log" 2>&1 || { tail -n 20 "$TMP/logs/lab-up-$n.log" >&2; die "lab.sh up $n failed"; }
  meta "boot_s_$n" "$(elapsed "$t0" "$(now)")"
  log "N=$n: up in $(elapsed "$t0" "$(now)") s"
  bash "$LAB" vault-up >"$TMP/logs/vault-up-$n.log" 2>&1 || { cat "$TMP/logs/vault-up-$n.log" >&2; die "lab.sh vault-up failed"; }
  set_start_delay "$n"
  if ((STARTUP_RUNS > 0 && !started_up)); then
    measure_startup
    started_up=1
  fi

  for RTT in $RTTS; do
    ((RTT == 0)) || start_relay "$RTT" "$n"
    INV="$TMP/inventories/n$n-rtt$RTT"
    bash "$BENCH_DIR/gen-inventories.sh" "$INV" "$n" "$BENCH_STATE" "$NODE_BASE" "$VAULT_PORT" "$KNOWN_HOSTS"

    plan_tools=(rollout "${variant_tools[@]}")
    ((n > 16)) && plan_tools+=("rollout (parallel 16)")
    plan_tools+=("${other_plan_tools[@]}")

    # Untimed warm-up: page cache (each variant's own build too), sshd's first
    # logins on fresh nodes; Ansible's (slow) warm-up only once.
    log "N=$n RTT=$RTT: plan warm-up (untimed)"
    if ((WITH_FLOOR)); then
      run_tool plan "openssh floor" "$n" warmup || run_tool plan "openssh floor" "$n" warmup || die "the floor failed twice at N=$n"
    fi
    for tool in rollout "${variant_tools[@]}"; do
      run_tool plan "$tool" "$n" warmup || run_tool plan "$tool" "$n" warmup || die "$tool plan failed twice at N=$n"
    done
    if ((WITH_ANSIBLE && !warmed_ansible)); then
      run_tool plan ansible "$n" warmup || run_tool plan ansible "$n" warmup || die "ansible failed twice at N=$n"
      warmed_ansible=1
    fi

    log "N=$n RTT=$RTT: plan, $RUNS run(s) of ${#plan_tools[@]} tools"
    rotate_runs plan "$n" "" "${plan_tools[@]}"
    [[ -z $PROFILE_DIR ]] || profile_run plan "$n"

    if [[ " $APPLY_SIZES " == *" $n "* ]]; then
      log "N=$n RTT=$RTT: apply, $RUNS run(s) of ${#apply_tools[@]} tools (lab.sh reset all before each, untimed)"
      rotate_runs apply "$n" reset_fleet "${apply_tools[@]}"
      reset_fleet "$n"
      if [[ -n $PROFILE_DIR ]]; then profile_run apply "$n"; reset_fleet "$n"; fi
    fi
    stop_relay
  done
done
meta finished "$(date -u +%FT%TZ)"
meta vitest_seen "$VITEST_SEEN"
meta failed_attempts "$FAILURES"

mkdir -p "$OUT_DIR"
node "$BENCH_DIR/report.mjs" "$SAMPLES" "$META" "$OUT_DIR"
