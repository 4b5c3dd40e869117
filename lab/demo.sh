#!/usr/bin/env bash
# npm run demo: boot a 3-node lab fleet, show the plan, apply it, tear the lab down.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: the lab needs root (systemd-nspawn containers, overlay mounts, cgroups); run: sudo npm run demo" >&2
  exit 1
fi
missing=()
for tool in systemd-nspawn debootstrap ssh ssh-keygen; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]} > 0)); then
  echo "demo: missing ${missing[*]}; install with: apt-get install -y systemd-container debootstrap openssh-client" >&2
  exit 1
fi

npm run --silent build
export MINKMS_VAULT_SECRET_ID="demo-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
trap 'bash lab/lab.sh down' EXIT
bash lab/lab.sh up 3

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
step rollout plan inventories/lab.yaml
node dist/cli/main.js plan inventories/lab.yaml
step rollout apply inventories/lab.yaml --yes
node dist/cli/main.js apply inventories/lab.yaml --yes
step rollout apply inventories/lab.yaml --yes "   # again: nothing to do"
node dist/cli/main.js apply inventories/lab.yaml --yes
echo
echo "demo: done; the secret was never printed (it was $(( ${#MINKMS_VAULT_SECRET_ID} )) characters long)."
