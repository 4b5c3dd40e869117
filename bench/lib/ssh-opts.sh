# shellcheck shell=bash
# Sourced. The OpenSSH client options every raw-ssh step of the bench uses (and
# Ansible, through ansible_ssh_args): a fresh connection each time (no
# ControlMaster, no ControlPersist), curve25519 (OpenSSH 9.2's default
# sntrup761 costs 70-80 ms of client CPU per connection on these machines),
# no compression, strict host keys from the lab's known_hosts.
#
# bench_ssh_opts STATE_DIR [KNOWN_HOSTS]  -> prints the options, one per line
# (KNOWN_HOSTS: default the lab's; the latency mode passes one that also names
# the relay's ports)
bench_ssh_opts() {
  local state=$1 known_hosts=${2:-$1/known_hosts}
  printf '%s\n' -F /dev/null -i "$state/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o UserKnownHostsFile="$known_hosts" -o GlobalKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=yes -o KexAlgorithms=curve25519-sha256 \
    -o ControlMaster=no -o ControlPath=none -o Compression=no \
    -o ConnectTimeout=15 -o LogLevel=ERROR
}
