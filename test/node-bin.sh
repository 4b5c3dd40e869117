#!/usr/bin/env bash
# Prints the path of a Node.js binary of major version MAJOR: this machine's
# `node` when it is that major, else one from the npm registry's
# node-linux-<arch> package (a plain tarball: no install script runs), cached
# in $ROLLOUT_NODE_CACHE (default /var/cache/rollout-node as root, else
# ~/.cache/rollout-node) so the registry is asked once per major.
#
#   test/node-bin.sh MAJOR
set -euo pipefail
major=${1:?usage: test/node-bin.sh MAJOR}
[[ $major =~ ^[0-9]+$ ]] || { echo "node-bin: MAJOR must be a number (got '$major')" >&2; exit 2; }

if command -v node >/dev/null 2>&1 && [[ $(node -p 'process.versions.node.split(".")[0]') == "$major" ]]; then
  command -v node
  exit 0
fi

case $(uname -m) in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "node-bin: no node-linux package for $(uname -m)" >&2; exit 1 ;;
esac
if [[ -n ${ROLLOUT_NODE_CACHE:-} ]]; then cache=$ROLLOUT_NODE_CACHE
elif [[ $(id -u) == 0 ]]; then cache=/var/cache/rollout-node
else cache=${XDG_CACHE_HOME:-$HOME/.cache}/rollout-node
fi
bin=$cache/$major/bin/node
if [[ ! -x $bin ]]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.fetch-$major.XXXXXX")
  trap 'rm -rf -- "$tmp"' EXIT
  echo "node-bin: fetching Node.js $major (node-linux-$arch@$major) from the npm registry into $cache/$major" >&2
  (cd "$tmp" && npm pack --silent "node-linux-$arch@$major" >/dev/null)
  tar -xzf "$tmp"/node-linux-"$arch"-*.tgz -C "$tmp"
  [[ -x $tmp/package/bin/node ]] || { echo "node-bin: node-linux-$arch@$major holds no bin/node" >&2; exit 1; }
  rm -rf -- "${cache:?}/$major"
  # Whole or not at all: a fetch cut short leaves no half-written binary behind.
  mv "$tmp/package" "$cache/$major"
fi
"$bin" --version >/dev/null
echo "$bin"
