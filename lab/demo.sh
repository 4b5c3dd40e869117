#!/usr/bin/env bash
# npm run demo: boot a 3-node lab fleet and the Vault double, show the plan,
# apply it (every node really logs in to the double and unseals through it),
# tear the lab and the double down.
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
# lab.sh down also stops the Vault double.
trap 'bash lab/lab.sh down' EXIT
bash lab/lab.sh up 3
bash lab/lab.sh vault-up

# Run state and reports go to a temp dir, not beside the repo's inventory.
export ROLLOUT_STATE_DIR=${ROLLOUT_STATE_DIR:-$(mktemp -d /tmp/rollout-demo-state.XXXXXX)}
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
step rollout check inventories/lab.yaml
node dist/cli/main.js check inventories/lab.yaml
step rollout status inventories/lab.yaml
node dist/cli/main.js status inventories/lab.yaml
step rollout plan inventories/lab.yaml
node dist/cli/main.js plan inventories/lab.yaml
step rollout apply inventories/lab.yaml --yes
node dist/cli/main.js apply inventories/lab.yaml --yes
step rollout status inventories/lab.yaml
node dist/cli/main.js status inventories/lab.yaml
step cat "\$ROLLOUT_STATE_DIR/lab/reports/*/report.md"
cat "$ROLLOUT_STATE_DIR"/lab/reports/*/report.md
step rollout apply inventories/lab.yaml --yes "   # again: nothing to do"
node dist/cli/main.js apply inventories/lab.yaml --yes
# What the nodes asked the Vault double (its admin API keeps no bodies or tokens).
ROLLOUT_LAB_VAULT_ADMIN_PORT=${ROLLOUT_LAB_VAULT_ADMIN_PORT:-8201} node --input-type=module -e '
  const res = await fetch(`http://127.0.0.1:${process.env.ROLLOUT_LAB_VAULT_ADMIN_PORT}/requests`);
  const counts = {};
  for (const r of await res.json()) { const k = `${r.method} ${r.path} -> ${r.status}`; counts[k] = (counts[k] ?? 0) + 1; }
  console.log("\ndemo: requests the Vault double served:");
  for (const [k, n] of Object.entries(counts)) console.log(`  ${String(n).padStart(3)}  ${k}`);
' || true
echo
echo "demo: done; the secret was never printed (it was $(( ${#MINKMS_VAULT_SECRET_ID} )) characters long)."
