#!/usr/bin/env bash
# npm test: build dist/, then the unit tests on every Node.js major rollout
# supports (20, 22, 24; see package.json "engines"), then the end-to-end suite
# (the lab: real sshd, systemd, journald) on the newest. Binaries other than
# this machine's node come from the npm registry, cached (test/node-bin.sh).
#
# Extra arguments go to every vitest run (e.g. a file filter).
set -euo pipefail
cd "$(dirname "$0")/.."

UNIT_MAJORS=${ROLLOUT_TEST_NODE_MAJORS:-20 22 24}
E2E_MAJOR=${ROLLOUT_TEST_E2E_MAJOR:-24}

npm run build
declare -A bins
for m in $UNIT_MAJORS $E2E_MAJOR; do
  [[ -n ${bins[$m]:-} ]] || bins[$m]=$(bash test/node-bin.sh "$m")
done

vitest=node_modules/vitest/vitest.mjs
for m in $UNIT_MAJORS; do
  echo "== unit tests on Node.js $("${bins[$m]}" --version) (${bins[$m]})"
  "${bins[$m]}" "$vitest" run --project unit "$@"
done
echo "== end-to-end tests on Node.js $("${bins[$E2E_MAJOR]}" --version) (${bins[$E2E_MAJOR]})"
# The e2e tests run the CLI with the Node.js that runs them (process.execPath).
"${bins[$E2E_MAJOR]}" "$vitest" run --project e2e "$@"
