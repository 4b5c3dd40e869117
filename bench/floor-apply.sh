#!/usr/bin/env bash
# The floor for `rollout apply`: raw OpenSSH, node after node, one `ssh` per
# node that takes a journal cursor, restarts the unit and waits for the ready
# line logged after that cursor. No file edits, no backups, no checks. The wait
# polls every 50 ms (lower latency than `journalctl -f`, which journald's
# batched change notifications delay by up to ~250 ms).
#
#   floor-apply.sh STATE_DIR BASE_PORT N [KNOWN_HOSTS]   (prints "kms-I READY" per node; exit 1 at the first failure)
set -euo pipefail
state=$1 base=$2 n=$3 known_hosts=${4:-$1/known_hosts}
# shellcheck source=lib/ssh-opts.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/ssh-opts.sh"
mapfile -t opts < <(bench_ssh_opts "$state" "$known_hosts")
# shellcheck disable=SC2016
remote='C=$(journalctl -n 0 --show-cursor -q | sed -n "s/^-- cursor: //p")
[ -n "$C" ] || { echo "no journal cursor" >&2; exit 1; }
systemctl restart minkms || exit 1
i=0
while [ $i -lt 1200 ]; do
  if journalctl -u minkms --after-cursor="$C" -o cat --no-pager | grep -q "Server is up and running"; then echo READY; exit 0; fi
  sleep 0.05; i=$((i + 1))
done
echo "no ready line within 60 s" >&2; exit 1'
for ((i = 1; i <= n; i++)); do
  out=$(ssh "${opts[@]}" -p $((base + i)) root@127.0.0.1 "$remote")
  echo "kms-$i $out"
  [[ $out == READY ]] || exit 1
done
