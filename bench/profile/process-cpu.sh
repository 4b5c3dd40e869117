#!/usr/bin/env bash
# CPU time by command name of every process that ended while CMD ran, on the
# whole machine (the lab's nodes included: BSD process accounting records
# processes of every PID namespace in the host's file too). It says which
# node-side commands a run costs (how many `systemctl`s, `curl`s, shells) where
# the machine's total only says how much. Processes still running at the end
# (systemd, journald, sshd's listeners, a KMS started during the run) are not
# in it. Needs root and Debian's `acct` (accton, dump-acct); it switches the
# machine's process accounting on for the run and off after it.
#
#   process-cpu.sh OUT.txt -- CMD...   (CMD's exit code; the table in OUT.txt)
set -euo pipefail
out=${1:-}
[[ -n $out && ${2:-} == -- && $# -gt 2 ]] || { echo "usage: process-cpu.sh OUT.txt -- CMD..." >&2; exit 2; }
shift 2
for t in accton dump-acct; do
  command -v "$t" >/dev/null 2>&1 || { echo "process-cpu.sh: $t is missing (apt-get install acct)" >&2; exit 2; }
done
file=$(mktemp /tmp/rollout-acct.XXXXXX)
trap 'accton off >/dev/null 2>&1 || true; rm -f "$file"' EXIT
accton "$file" >/dev/null
rc=0
"$@" || rc=$?
accton off >/dev/null
# dump-acct: command|version|user|system|elapsed|... (times in clock ticks of 1/100 s).
dump-acct "$file" | awk -F'|' -v cmd="$*" '
  { gsub(/ /, "", $1); n[$1]++; u[$1] += $3; s[$1] += $4; tu += $3; ts += $4; total++ }
  END {
    printf "processes that ended during: %s\n", substr(cmd, 1, 160)
    printf "%d processes, %.2f s user + %.2f s system\n\n", total, tu / 100, ts / 100
    printf "%-16s %6s %8s %8s %8s %10s\n", "command", "count", "user s", "sys s", "total s", "ms each"
    fflush()
    by_total = "sort -k5,5 -n -r"
    for (k in n) printf "%-16s %6d %8.2f %8.2f %8.2f %10.1f\n", k, n[k], u[k] / 100, s[k] / 100, (u[k] + s[k]) / 100, 10 * (u[k] + s[k]) / n[k] | by_total
    close(by_total)
  }' >"$out"
exit "$rc"
