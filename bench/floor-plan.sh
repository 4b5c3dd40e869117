#!/usr/bin/env bash
# The floor for `rollout plan`: raw OpenSSH opening N connections at once
# (xargs -P N), each `cat`ting the two files rollout reads. Nothing else: no
# host-side parsing, no diff.
#
#   floor-plan.sh STATE_DIR BASE_PORT N [KNOWN_HOSTS]    (output: the files, on stdout)
set -euo pipefail
state=$1 base=$2 n=$3 known_hosts=${4:-$1/known_hosts}
# shellcheck source=lib/ssh-opts.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/ssh-opts.sh"
mapfile -t opts < <(bench_ssh_opts "$state" "$known_hosts")
seq $((base + 1)) $((base + n)) |
  xargs -P "$n" -I{} ssh "${opts[@]}" -p {} root@127.0.0.1 'cat /etc/default/minkms /etc/minkms/config.yaml'
