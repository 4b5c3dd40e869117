#!/usr/bin/env bash
# rollout's local test lab: N Debian bookworm nodes, each a systemd-nspawn
# container booting real systemd 252 + sshd + minkms.service (running the
# simulated MinKMS in lab/minkms-sim.mjs), reachable over ssh on 127.0.0.1.
# Each node also runs greeter.service (lab/greeter-sim.mjs), a small service
# unrelated to MinKMS for a second playbook (playbooks/greeter-settings.yaml).
#
#   lab.sh build              build (or reuse) the cached base rootfs
#   lab.sh up [N]             boot kms-1..kms-N (default 3); tears down a running lab first
#   lab.sh down               stop every node, unmount, remove node state
#   lab.sh reset kms-I|all    put node(s) back to the seed state (no reboot)
#   lab.sh ssh kms-I [CMD..]  ssh in as root (LAB_USER=ops for the ops user)
#   lab.sh status             what is up
#   lab.sh vault-up [CONFIG]  run the Vault double (lab/vault-double.mjs) on
#                             https://127.0.0.1:8200, admin http://127.0.0.1:8201;
#                             without CONFIG: the lab default (needs MINKMS_VAULT_SECRET_ID)
#   lab.sh vault-down         stop the Vault double (down does it too)
#
# Fault injection (reset undoes all of them):
#   lab.sh sshd-kill kms-I    SIGKILL every sshd of the node (connections drop,
#                             ssh.service stopped: new ones are refused)
#   lab.sh sshd-start kms-I   start sshd again; waits until it answers
#   lab.sh sshd-freeze kms-I  SIGSTOP every sshd (connections hang)
#   lab.sh sshd-thaw kms-I    SIGCONT them; waits until sshd answers
#   lab.sh slow-sync kms-I MARKER SECONDS [GLOB]
#                             /usr/local/bin/sync shim: writes MARKER (in the
#                             node), sleeps SECONDS, then runs /usr/bin/sync;
#                             with GLOB only when its arguments match it
#   lab.sh slow-sync-off kms-I [--kill]
#                             remove the shim; --kill: also SIGKILL syncs
#                             sleeping in it and remove the marker
#   lab.sh minkms-kill kms-I  SIGKILL minkms's main process (Restart=always)
#
# Environment: ROLLOUT_LAB_DIR (state, default /var/lib/rollout-lab),
# ROLLOUT_LAB_CACHE (rootfs cache, default /var/cache/rollout-lab),
# ROLLOUT_LAB_BASE_PORT (default 2200; node i listens on BASE+i),
# ROLLOUT_LAB_MIRROR (default: the Debian mirror from the apt sources),
# ROLLOUT_LAB_BOOT_TIMEOUT (seconds, default 60),
# ROLLOUT_LAB_VAULT_PORT / ROLLOUT_LAB_VAULT_ADMIN_PORT (default 8200 / 8201),
# ROLLOUT_LAB_KMS_BASE_PORT (default 7300; node i's minkms serves HTTPS on
# kms-i:KMS_BASE+i, every node name being 127.0.0.1 in each node's /etc/hosts).
# A second lab: another ROLLOUT_LAB_DIR plus other ports (cgroup and nspawn
# machine names follow the state dir).
# See lab/README.md.
set -euo pipefail

LAB_SRC_DIR="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
REPO_DIR="$(dirname "$LAB_SRC_DIR")"
STATE="${ROLLOUT_LAB_DIR:-/var/lib/rollout-lab}"
CACHE="${ROLLOUT_LAB_CACHE:-/var/cache/rollout-lab}"
BASE_PORT="${ROLLOUT_LAB_BASE_PORT:-2200}"
KMS_BASE_PORT="${ROLLOUT_LAB_KMS_BASE_PORT:-7300}"
BOOT_TIMEOUT="${ROLLOUT_LAB_BOOT_TIMEOUT:-60}"
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,openssh-server,iproute2,sudo,curl,ca-certificates,libstdc++6
# Instance identity. Several labs can run at once, each with its own
# ROLLOUT_LAB_DIR (and ports). Everything global is named after the state dir:
# the default lab keeps the plain names (cgroup rollout-lab/kms-i, nspawn
# machine kms-i); another state dir gets "<basename>-<hash of its path>" as
# cgroup name and as a prefix of its machine names (nspawn keys
# /run/systemd/nspawn/propagate/ by machine name). The node's hostname is
# kms-i either way.
if [[ $STATE == /var/lib/rollout-lab || $(realpath -m -- "$STATE") == /var/lib/rollout-lab ]]; then
  LAB_ID=rollout-lab
  MACHINE_PREFIX=
else
  STATE_REAL=$(realpath -m -- "$STATE")
  _b=$(basename -- "$STATE_REAL"); _b=${_b//[^a-zA-Z0-9-]/-}; _b=${_b##-}; _b=${_b:0:24}
  LAB_ID="${_b:-lab}-$(printf '%s' "$STATE_REAL" | sha256sum | cut -c1-6)"
  MACHINE_PREFIX="$LAB_ID-"
  unset _b
fi
CGROUP_NAME=$LAB_ID
READY_TEXT='Server is up and running'
GREETER_READY_TEXT='greeter ready'
VAULT_PORT="${ROLLOUT_LAB_VAULT_PORT:-8200}"
VAULT_ADMIN_PORT="${ROLLOUT_LAB_VAULT_ADMIN_PORT:-8201}"
VAULT_TLS="$STATE/vault-tls"
# The sim keeps its Vault-sealed root encryption key here, in the node's volume.
SEALED_REK=var/lib/minkms/.vault-sealed-rek
# The cluster's members (HOST:PORT a line) as the sim reads them from its volume.
CLUSTER_FILE=var/lib/minkms/.lab-cluster
# lab.sh slow-sync's shim, in the node.
SYNC_SHIM=usr/local/bin/sync

log() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- checks

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (systemd-nspawn, overlay mounts and cgroups need it); try: sudo $0 ${*:-}"
}

require_tools() {
  local missing=() pkgs=() t
  local -A pkg_of=([systemd-nspawn]=systemd-container [debootstrap]=debootstrap [ssh]=openssh-client
    [ssh-keygen]=openssh-client [setsid]=util-linux [flock]=util-linux [nsenter]=util-linux [mount]=mount [chroot]=coreutils [openssl]=openssl)
  for t in "$@"; do
    if ! command -v "$t" >/dev/null 2>&1; then
      missing+=("$t")
      [[ " ${pkgs[*]:-} " == *" ${pkg_of[$t]:-$t} "* ]] || pkgs+=("${pkg_of[$t]:-$t}")
    fi
  done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}; install with: apt-get install -y ${pkgs[*]}"
}

require_node() {
  command -v node >/dev/null 2>&1 || die "node (Node.js 20+) not found on PATH; the nodes run the host's node binary"
  [[ -f "$REPO_DIR/node_modules/yaml/package.json" ]] ||
    die "$REPO_DIR/node_modules/yaml is missing; run 'npm ci' in $REPO_DIR first"
}

# ---------------------------------------------------------------- base rootfs

apt_mirror() {
  if [[ -n "${ROLLOUT_LAB_MIRROR:-}" ]]; then echo "$ROLLOUT_LAB_MIRROR"; return; fi
  local m=""
  # deb822 .sources files: a stanza whose Suites include the suite itself.
  m=$(awk -v suite="$SUITE" '
      BEGIN { RS=""; FS="\n" }
      { uris=""; suites=""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)   { uris = $i;   sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/) { suites = $i; sub(/^Suites:[ \t]*/, "", suites) }
        }
        n = split(suites, s, /[ \t]+/)
        for (j = 1; j <= n; j++) if (s[j] == suite && uris != "") { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1) || true
  if [[ -z "$m" ]]; then
    m=$(awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i+1) == suite) { print $i; exit } }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1) || true
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

# Everything that shapes the base rootfs lives in this function (its text is
# part of the cache hash, with SUITE and PACKAGES). Runs with $1 = target dir.
build_rootfs_recipe() {
  local root=$1
  chroot "$root" groupadd --system minkms-user
  chroot "$root" useradd --system --gid minkms-user --home-dir /var/lib/minkms --no-create-home \
    --shell /usr/sbin/nologin minkms-user
  chroot "$root" useradd --create-home --shell /bin/bash ops
  # '*': no password, but not locked (key login works with or without PAM).
  chroot "$root" usermod -p '*' ops
  chroot "$root" usermod -p '*' root

  install -d -m 0750 "$root/etc/sudoers.d"
  printf 'ops ALL=(ALL) NOPASSWD: ALL\n' >"$root/etc/sudoers.d/ops"
  chmod 0440 "$root/etc/sudoers.d/ops"

  # sshd: the shared host keys from the postinst go; every node gets its own
  # ed25519 key. listen.conf is the loopback-only default; each node's
  # overlay replaces it with its own ListenAddress 127.0.0.1:PORT
  # (ListenAddress accumulates across files, so it must be replaced, not added).
  rm -f "$root"/etc/ssh/ssh_host_*
  install -d -m 0755 "$root/etc/ssh/sshd_config.d"
  cat >"$root/etc/ssh/sshd_config.d/lab.conf" <<'EOF'
# rollout lab defaults
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
EOF
  printf 'ListenAddress 127.0.0.1\n' >"$root/etc/ssh/sshd_config.d/listen.conf"
  : >"$root/etc/motd"
  # pam_env logs an error at every login without it.
  : >"$root/etc/default/locale"

  # minkms: unit as in the install guide, the binary runs the lab simulator.
  cat >"$root/etc/systemd/system/minkms.service" <<'EOF'
[Unit]
Description=MinIO KMS
Documentation=https://min.io/docs/kms
Wants=network-online.target
After=network-online.target
[Service]
Type=simple
User=minkms-user
Group=minkms-user
EnvironmentFile=-/etc/default/minkms
ExecStart=/usr/local/bin/minkms server $MINIO_KMS_VOLUME $MINIO_KMS_OPTS
Restart=always
LimitNOFILE=65536
TimeoutStopSec=infinity
SendSIGKILL=no
[Install]
WantedBy=multi-user.target
EOF
  install -d -m 0755 "$root/etc/systemd/system/multi-user.target.wants"
  ln -sf /etc/systemd/system/minkms.service "$root/etc/systemd/system/multi-user.target.wants/minkms.service"
  install -d -m 0755 "$root/usr/local/bin"
  printf '#!/bin/sh\nexec /opt/lab-node/node /opt/lab/minkms-sim.mjs "$@"\n' >"$root/usr/local/bin/minkms"
  chmod 0755 "$root/usr/local/bin/minkms"
  install -d -m 0755 "$root/opt/lab-node" "$root/opt/lab" "$root/opt/lab-yaml" "$root/var/lib/lab-knobs"
  : >"$root/opt/lab-node/node"
  install -d -m 0750 -o root -g "$(lab_gid "$root" minkms-user)" "$root/etc/minkms"
  install -d -m 0750 -o "$(lab_uid "$root" minkms-user)" -g "$(lab_gid "$root" minkms-user)" "$root/var/lib/minkms"

  # A quick, quiet boot: mask what is slow or fails in a container.
  local u
  for u in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer getty@tty1.service \
    console-getty.service systemd-networkd-wait-online.service e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer dpkg-db-backup.timer man-db.timer systemd-journald-audit.socket \
    systemd-logind.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
  done
  install -d -m 0755 "$root/etc/systemd/journald.conf.d"
  printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' >"$root/etc/systemd/journald.conf.d/lab.conf"

  # Per-node identity comes from the overlay.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  echo localhost >"$root/etc/hostname"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
}

lab_uid() { awk -F: -v n="$2" '$1 == n { print $3 }' "$1/etc/passwd"; }
lab_gid() { awk -F: -v n="$2" '$1 == n { print $3 }' "$1/etc/group"; }

rootfs_hash() {
  { printf 'suite=%s\npackages=%s\n' "$SUITE" "$PACKAGES"; declare -f build_rootfs_recipe lab_uid lab_gid; } |
    sha256sum | cut -c1-16
}

rootfs_dir() { echo "$CACHE/rootfs-$(rootfs_hash)"; }

cmd_build() {
  require_root build
  require_tools debootstrap chroot flock
  local dir tmp mirror
  dir=$(rootfs_dir)
  [[ -d "$dir" ]] && { echo "$dir"; return 0; }
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.build.lock"
  flock 8
  if [[ -d "$dir" ]]; then exec 8>&-; echo "$dir"; return 0; fi
  # Leftovers of an interrupted build are never reused.
  rm -rf --one-file-system "$CACHE"/.tmp-rootfs-*
  tmp=$(mktemp -d "$CACHE/.tmp-rootfs-$(rootfs_hash).XXXXXX")
  mirror=$(apt_mirror)
  log "building base rootfs ($SUITE from $mirror) into $dir; takes about a minute"
  local t0=$SECONDS
  if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
    tail -n 20 "$tmp.log" >&2
    rm -rf --one-file-system "$tmp"
    die "debootstrap failed (full log: $tmp.log)"
  fi
  build_rootfs_recipe "$tmp"
  chmod 0755 "$tmp"
  mv "$tmp.log" "$tmp/.lab-debootstrap.log"
  mv -T "$tmp" "$dir"
  exec 8>&-
  log "rootfs ready in $((SECONDS - t0)) s: $dir ($(du -sh "$dir" | cut -f1))"
  echo "$dir"
}

# ---------------------------------------------------------------- cgroups

# Prints "MOUNTPOINT CURRENT_PATH" for every cgroup hierarchy (v1 and v2).
cgroup_hierarchies() {
  local mp so fs path ctrls first
  while read -r mp fs so; do
    if [[ $fs == cgroup2 ]]; then
      path=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
      [[ -n $path ]] && echo "$mp $path"
      continue
    fi
    while IFS=: read -r _ ctrls path; do
      [[ -z $ctrls ]] && continue
      first=${ctrls%%,*}
      if [[ ",$so," == *",$first,"* ]]; then echo "$mp $path"; break; fi
    done </proc/self/cgroup
  done < <(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i+1) ~ /^cgroup2?$/) print $5, $(i+1), $(i+3); break } }' /proc/self/mountinfo)
}

# mkdir -p for cgroups; in cpuset, every new level needs cpus/mems first.
cg_mkdir() {
  local dir=$1 parent
  [[ -d $dir ]] && return 0
  parent=$(dirname "$dir")
  cg_mkdir "$parent"
  mkdir "$dir"
  if [[ -f $dir/cpuset.cpus ]]; then
    cat "$parent/cpuset.cpus" >"$dir/cpuset.cpus"
    cat "$parent/cpuset.mems" >"$dir/cpuset.mems"
  fi
}

# Creates the node's cgroup in every hierarchy (under the caller's own
# cgroup there), records them in $ndir/cgroups.
make_node_cgroups() {
  local name=$1 ndir=$2 mp path cg
  : >"$ndir/cgroups"
  while read -r mp path; do
    cg="$mp${path%/}/$CGROUP_NAME/$name"
    cg_mkdir "$cg"
    echo "$cg" >>"$ndir/cgroups"
  done < <(cgroup_hierarchies)
}

cg_all_pids() { find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null || true; }

# Removes node cgroups (deepest first); returns 1 if some are left.
remove_node_cgroups() {
  local ndir=$1 warn=${2:-} cg left=0
  [[ -f $ndir/cgroups ]] || return 0
  while read -r cg; do
    [[ -d $cg ]] || continue
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    if [[ -d $cg ]]; then
      left=1
      [[ -n $warn ]] && log "warning: could not remove cgroup $cg"
    else
      rmdir "$(dirname "$cg")" 2>/dev/null || true
    fi
  done <"$ndir/cgroups"
  return $left
}

# ---------------------------------------------------------------- helpers

node_names() {
  local d
  for d in "$STATE"/nodes/kms-*; do [[ -d $d ]] && basename "$d"; done | sort -t- -k2 -n
  return 0
}
node_index() { echo "${1#kms-}"; }
machine_name() { echo "$MACHINE_PREFIX$1"; }
node_port() { echo $((BASE_PORT + $(node_index "$1"))); }
# The node's --host: its name and its own HTTPS port (nodes share one network namespace).
kms_host() { echo "$1:$((KMS_BASE_PORT + $(node_index "$1")))"; }

ssh_opts() {
  echo -F /dev/null -i "$STATE/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o UserKnownHostsFile="$STATE/known_hosts" -o GlobalKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=yes -o ConnectTimeout=5 -o LogLevel=ERROR \
    -o KexAlgorithms=curve25519-sha256
}

# node_ssh NAME [ssh args...] -- as root
node_ssh() {
  local name=$1; shift
  # shellcheck disable=SC2046
  ssh $(ssh_opts) -p "$(node_port "$name")" "${LAB_USER:-root}@127.0.0.1" "$@"
}

nspawn_pid() {
  local f="$STATE/nodes/$1/nspawn.pid" pid
  [[ -f $f ]] || return 1
  pid=$(cat "$f")
  [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == systemd-nspawn ]] || return 1
  echo "$pid"
}

# Runs a shell script inside node $1 as root via nsenter (no ssh: cheap,
# used by reset). The container's init is nspawn's child.
node_exec() {
  local name=$1 pid leader
  shift
  pid=$(nspawn_pid "$name") || { echo "$name is not running" >&2; return 1; }
  leader=$(ps --ppid "$pid" -o pid= | head -n1 | tr -d ' ')
  [[ -n $leader ]] || { echo "$name: no container init under nspawn pid $pid" >&2; return 1; }
  nsenter -t "$leader" -m -u -i -n -p -r -w \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root sh -c "$1"
}

mounts_under() { # mount points under $1, deepest first
  awk -v p="$1/" '{ m = $5; gsub(/\\040/, " ", m); if (index(m "/", p) == 1) print m }' /proc/self/mountinfo |
    awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

ensure_client_key() {
  mkdir -p "$STATE"
  chmod 0755 "$STATE"
  if [[ ! -f $STATE/id_ed25519 ]]; then
    ssh-keygen -q -t ed25519 -N '' -C rollout-lab -f "$STATE/id_ed25519"
  fi
  if [[ ! -f $STATE/hsm-key ]]; then
    (umask 077; printf 'hsm:aes256:%s\n' "$(head -c 32 /dev/urandom | base64 -w0)" >"$STATE/hsm-key.tmp")
    mv "$STATE/hsm-key.tmp" "$STATE/hsm-key"
  fi
  # The MinKMS admin (SysAdmin) API key: k1: + base64url of 32 random bytes.
  if [[ ! -f $STATE/kms-admin-key ]]; then
    (umask 077; printf 'k1:%s\n' "$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')" >"$STATE/kms-admin-key.tmp")
    mv "$STATE/kms-admin-key.tmp" "$STATE/kms-admin-key"
  fi
  chmod 0600 "$STATE/hsm-key" "$STATE/kms-admin-key" "$STATE/id_ed25519"
}

# The admin API key's identity for the seed's admin.identity, as the sim
# computes it: h1: + base64url (no padding) of sha256 of the key string. The
# key goes through a pipe only, never onto a command line.
kms_admin_identity() {
  local h
  h=$(tr -d '\n' <"$STATE/kms-admin-key" | openssl dgst -sha256 -binary | base64 -w0 | tr '+/' '-_' | tr -d '=')
  [[ ${#h} -eq 43 ]] || die "could not hash $STATE/kms-admin-key with openssl"
  printf 'h1:%s\n' "$h"
}

# Seed file contents for node $1 into dir $2 (config.yaml, minkms.env).
write_seed() {
  local name=$1 dir=$2 identity
  identity=$(kms_admin_identity)
  mkdir -p "$dir"
  cat >"$dir/config.yaml" <<EOF
version: v1
# MinIO KMS configuration for $name (managed by hand, keep comments!)
admin:
  identity: $identity   # admin identity
tls:
  certs:
    - key: /etc/minkms/tls/private.key
      cert: /etc/minkms/tls/public.crt
  ca: /etc/minkms/tls/CAs

# logging settings
log:
  error: on
  audit: off
EOF
  cat >"$dir/minkms.env" <<EOF
# MinIO KMS environment
MINIO_KMS_HSM_KEY=$(cat "$STATE/hsm-key")
MINIO_KMS_VOLUME=/var/lib/minkms
MINIO_KMS_OPTS="--host $(kms_host "$name") --config /etc/minkms/config.yaml"
EOF
  chmod 0600 "$dir/minkms.env"
}

# Node $1's TLS key and certificate for its KMS API into dir $2, signed by
# the lab CA: SAN DNS:kms-i (the --host name) and IP:127.0.0.1.
write_node_tls() {
  local name=$1 dir=$2
  mkdir -p "$dir"
  (
    set -e
    umask 077
    cd "$dir"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
      -subj "/CN=$name" -keyout private.key -out node.csr
    printf '%s\n' "subjectAltName=DNS:$name,IP:127.0.0.1" 'basicConstraints=critical,CA:FALSE' \
      'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth,clientAuth' >node.ext
    openssl x509 -req -in node.csr -CA "$VAULT_TLS/ca.pem" -CAkey "$VAULT_TLS/ca-key.pem" \
      -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" -days 825 -sha256 -extfile node.ext -out public.crt
    rm -f node.csr node.ext
  ) >"$dir.log" 2>&1 || { cat "$dir.log" >&2; rm -f "$dir.log"; die "$name: could not make its TLS certificate with openssl"; }
  rm -f "$dir.log"
}

# Installs node $1's seed files into the mounted root $2 (also used by reset,
# on the live overlay): config, env file, and the TLS files the config's tls
# section names (key 0600 minkms-user; CAs/ a plain dir holding the lab CA, no
# OpenSSL hash links: MinKMS reads every file in it, and rollout must too).
install_seed() {
  local name=$1 root=$2 seed="$STATE/nodes/$1/seed" gid uid
  gid=$(lab_gid "$root" minkms-user)
  uid=$(lab_uid "$root" minkms-user)
  rm -rf --one-file-system "$root/etc/minkms"
  install -d -m 0750 -o 0 -g "$gid" "$root/etc/minkms"
  install -m 0640 -o 0 -g "$gid" "$seed/config.yaml" "$root/etc/minkms/config.yaml"
  install -d -m 0750 -o 0 -g "$gid" "$root/etc/minkms/tls"
  install -m 0600 -o "$uid" -g "$gid" "$STATE/nodes/$1/tls/private.key" "$root/etc/minkms/tls/private.key"
  install -m 0644 -o 0 -g 0 "$STATE/nodes/$1/tls/public.crt" "$root/etc/minkms/tls/public.crt"
  install -d -m 0755 -o 0 -g 0 "$root/etc/minkms/tls/CAs"
  install -m 0644 -o 0 -g 0 "$VAULT_TLS/ca.pem" "$root/etc/minkms/tls/CAs/rollout-lab-ca.pem"
  rm -rf --one-file-system "$root"/etc/default/minkms?* "$root"/etc/default/.minkms*
  install -m 0600 -o 0 -g 0 "$seed/minkms.env" "$root/etc/default/minkms"
}

# ---------------------------------------------------------------- greeter

# greeter's unit and binary, installed into node root $1 (the overlay, not the
# base rootfs: the rootfs cache key stays the same). The unit is the MinKMS
# one's sibling: EnvironmentFile, the binary a wrapper running the host's node.
install_greeter() {
  local root=$1
  cat >"$root/etc/systemd/system/greeter.service" <<'EOF'
[Unit]
Description=greeter (rollout lab service)
After=network.target
[Service]
Type=simple
User=nobody
Group=nogroup
EnvironmentFile=-/etc/default/greeter
ExecStart=/usr/local/bin/greeter --config /etc/greeter/config.yaml
RuntimeDirectory=greeter
Restart=on-failure
RestartSec=1
[Install]
WantedBy=multi-user.target
EOF
  ln -sf /etc/systemd/system/greeter.service "$root/etc/systemd/system/multi-user.target.wants/greeter.service"
  printf '#!/bin/sh\nexec /opt/lab-node/node /opt/lab/greeter-sim.mjs "$@"\n' >"$root/usr/local/bin/greeter"
  chmod 0755 "$root/usr/local/bin/greeter"
}

# greeter's seed files for node $1 into dir $2 (greeter.yaml, greeter.env):
# no `greeting` yet, two workers.
write_greeter_seed() {
  local name=$1 dir=$2
  mkdir -p "$dir"
  cat >"$dir/greeter.yaml" <<EOF
version: v1
# greeter configuration for $name (lab seed; comments are kept)
log:
  level: info
EOF
  cat >"$dir/greeter.env" <<EOF
# greeter environment ($name)
GREETER_WORKERS=2
GREETER_LOG=info
EOF
}

# Installs node $1's greeter seed into root $2: /etc/greeter/config.yaml and
# /etc/default/greeter, root:root 0644 (nothing secret in them).
install_greeter_seed() {
  local root=$2 seed="$STATE/nodes/$1/seed"
  install -d -m 0755 -o 0 -g 0 "$root/etc/greeter"
  install -m 0644 -o 0 -g 0 "$seed/greeter.yaml" "$root/etc/greeter/config.yaml"
  install -m 0644 -o 0 -g 0 "$seed/greeter.env" "$root/etc/default/greeter"
}

# True when greeter's unit cgroup in node $1 holds a greeter process, read
# from the host (no command in the node: a reset all pays nothing for it).
greeter_running() {
  local cg procs pid pids args
  [[ -f $STATE/nodes/$1/cgroups ]] || return 1
  while read -r cg; do
    procs="$cg/payload/system.slice/greeter.service/cgroup.procs"
    [[ -f $procs ]] || continue
    mapfile -t pids <"$procs"
    for pid in "${pids[@]}"; do
      mapfile -d '' args <"/proc/$pid/cmdline" 2>/dev/null || continue
      [[ ${args[1]:-} == */greeter-sim.mjs ]] && return 0
    done
  done <"$STATE/nodes/$1/cgroups"
  return 1
}

# greeter back to its seed on node $1: its files rewritten, and restarted
# (waiting for its ready line) only when they differed or it was not running,
# so a reset with nothing of greeter's to undo costs no command in the node.
reset_greeter() {
  local name=$1 root="$STATE/nodes/$1/root" seed="$STATE/nodes/$1/seed" same=1 out
  { cmp -s "$seed/greeter.yaml" "$root/etc/greeter/config.yaml" && cmp -s "$seed/greeter.env" "$root/etc/default/greeter"; } || same=0
  install_greeter_seed "$name" "$root"
  ((same)) && greeter_running "$name" && return 0
  out=$(node_exec "$name" "
    C=\$(journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p')
    systemctl reset-failed greeter 2>/dev/null
    systemctl restart --no-block greeter || exit 1
    for i in \$(seq 1 200); do
      journalctl -u greeter --after-cursor=\"\$C\" -o cat --no-pager | grep -q '$GREETER_READY_TEXT' && exit 0
      sleep 0.05
    done
    echo 'greeter failed:'; journalctl -u greeter --after-cursor=\"\$C\" -o cat --no-pager | tail -n 5; exit 1" 2>&1) || {
    echo "$out" >&2
    die "$name: greeter did not come back after reset"
  }
}

# ---------------------------------------------------------------- Vault TLS

# The lab CA and the Vault double's server certificate (SAN localhost and
# 127.0.0.1), made once and reused: nodes that booted with the CA keep
# trusting the double. A set with any file missing is made again as a whole.
ensure_vault_tls() {
  local f ok=1 tmp
  for f in ca.pem ca-key.pem server.pem server-key.pem; do [[ -s $VAULT_TLS/$f ]] || ok=0; done
  ((ok)) && return 0
  require_tools openssl
  mkdir -p "$STATE"
  tmp=$(mktemp -d "$STATE/.vault-tls.XXXXXX")
  (
    set -e
    umask 077
    cd "$tmp"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 3650 \
      -subj '/CN=rollout lab CA' -keyout ca-key.pem -out ca.pem \
      -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
      -subj '/CN=localhost' -keyout server-key.pem -out server.csr
    printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=critical,CA:FALSE' \
      'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" \
      -days 825 -sha256 -extfile server.ext -out server.pem
    rm -f server.csr server.ext
    chmod 0644 ca.pem server.pem
    chmod 0600 ca-key.pem server-key.pem
  ) >"$tmp.log" 2>&1 || {
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "could not create the lab's Vault TLS material with openssl"
  }
  rm -f "$tmp.log"
  chmod 0755 "$tmp"
  rm -rf "$VAULT_TLS"
  mv -T "$tmp" "$VAULT_TLS"
  log "made the lab CA and the Vault double's certificate in $VAULT_TLS"
}

# Node root $1 trusts the lab CA the Debian way, as update-ca-certificates
# leaves it: a local CA, in the bundle (rootfs bundle + lab CA), and in the
# hashed directory (NAME.pem and the subject hash link OpenSSL looks up).
install_lab_ca() {
  local root=$1 rootfs=$2 hash
  install -d -m 0755 "$root/usr/local/share/ca-certificates"
  install -m 0644 "$VAULT_TLS/ca.pem" "$root/usr/local/share/ca-certificates/rollout-lab-ca.crt"
  hash=$(openssl x509 -noout -subject_hash -in "$VAULT_TLS/ca.pem")
  ln -sfn /usr/local/share/ca-certificates/rollout-lab-ca.crt "$root/etc/ssl/certs/rollout-lab-ca.pem"
  ln -sfn rollout-lab-ca.pem "$root/etc/ssl/certs/$hash.0"
  cat "$rootfs/etc/ssl/certs/ca-certificates.crt" "$VAULT_TLS/ca.pem" >"$root/etc/ssl/certs/ca-certificates.crt.tmp"
  chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt.tmp"
  mv "$root/etc/ssl/certs/ca-certificates.crt.tmp" "$root/etc/ssl/certs/ca-certificates.crt"
}

# ---------------------------------------------------------------- Vault double

vault_pid() {
  local f="$STATE/vault-double.pid" pid
  [[ -f $f ]] || return 1
  pid=$(cat "$f")
  [[ -n $pid && -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'vault-double\.mjs' || return 1
  echo "$pid"
}

# Writes the lab default state (inventories/lab.yaml's role and key) to $1,
# 0600, with the secret from MINKMS_VAULT_SECRET_ID; it never appears on a
# command line.
write_vault_default_config() {
  local file=$1
  [[ -n ${MINKMS_VAULT_SECRET_ID:-} ]] ||
    die "MINKMS_VAULT_SECRET_ID is not set: the lab's Vault double needs the AppRole secret that inventories/lab.yaml sends (or give a CONFIG file)"
  (umask 077; VD_OUT="$file.tmp" VD_MODULE="$LAB_SRC_DIR/vault-double.mjs" node --input-type=module -e '
    import { writeFileSync } from "node:fs";
    const { labDefaultState } = await import(process.env.VD_MODULE);
    writeFileSync(process.env.VD_OUT, JSON.stringify(labDefaultState(process.env.MINKMS_VAULT_SECRET_ID), null, 2) + "\n", { mode: 0o600 });
  ') || die "could not write $file"
  chmod 0600 "$file.tmp"
  mv "$file.tmp" "$file"
}

cmd_vault_up() {
  local config=${1:-} pid deadline
  command -v node >/dev/null 2>&1 || die "node (Node.js 20+) not found on PATH"
  mkdir -p "$STATE"
  ensure_vault_tls
  if [[ -n $config ]]; then
    [[ -r $config ]] || die "cannot read $config"
    config=$(readlink -f "$config")
  else
    config="$STATE/vault-double.json"
    write_vault_default_config "$config"
  fi
  if vault_pid >/dev/null; then
    log "a Vault double is running; restarting it"
    cmd_vault_down
  fi
  port_in_use "$VAULT_PORT" && die "port 127.0.0.1:$VAULT_PORT is already in use (set ROLLOUT_LAB_VAULT_PORT)"
  port_in_use "$VAULT_ADMIN_PORT" && die "port 127.0.0.1:$VAULT_ADMIN_PORT is already in use (set ROLLOUT_LAB_VAULT_ADMIN_PORT)"
  rm -f "$STATE/vault-double.pid"
  (
    exec setsid sh -c 'echo $$ >"$0"; exec "$@"' "$STATE/vault-double.pid" \
      node "$LAB_SRC_DIR/vault-double.mjs" --config "$config" --tls-dir "$VAULT_TLS" \
      --port "$VAULT_PORT" --admin-port "$VAULT_ADMIN_PORT"
  ) </dev/null >"$STATE/vault-double.log" 2>&1 &
  deadline=$((EPOCHSECONDS + 10))
  while ! grep -q '^vault-double: listening on ' "$STATE/vault-double.log" 2>/dev/null; do
    # Dead, not "not yet exec'd": between writing its pid and exec'ing node
    # the process is still sh, which vault_pid would not recognise.
    if ((EPOCHSECONDS >= deadline)) || { [[ -s $STATE/vault-double.pid ]] && [[ ! -e /proc/$(<"$STATE/vault-double.pid") ]]; }; then
      tail -n 5 "$STATE/vault-double.log" >&2 || true
      pid=$(vault_pid) && kill -TERM "$pid" 2>/dev/null
      rm -f "$STATE/vault-double.pid"
      die "the Vault double did not start (log: $STATE/vault-double.log)"
    fi
    sleep 0.05
  done
  grep '^vault-double: listening on ' "$STATE/vault-double.log"
  echo "vault double: config $config, log $STATE/vault-double.log, CA $VAULT_TLS/ca.pem"
}

cmd_vault_down() {
  local pid i
  if pid=$(vault_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do [[ -e /proc/$pid ]] || break; sleep 0.1; done
    [[ -e /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null
    log "stopped the Vault double"
  fi
  rm -f "$STATE/vault-double.pid"
}

# ---------------------------------------------------------------- up

prepare_node() {
  local name=$1 rootfs=$2 n=$3 port ndir root uid gid names i
  port=$(node_port "$name")
  ndir="$STATE/nodes/$name"
  root="$ndir/root"
  mkdir -p "$ndir"/{upper,work,root,knobs,seed}
  mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$ndir/upper,workdir=$ndir/work" "$root"
  echo "$rootfs" >"$ndir/rootfs"

  echo "$name" >"$root/etc/hostname"
  # Every node name is 127.0.0.1: each minkms listens there on its own port.
  names=$(for ((i = 1; i <= n; i++)); do printf ' kms-%s' "$i"; done)
  printf '127.0.0.1\tlocalhost\n127.0.0.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' "${names# }" >"$root/etc/hosts"
  for ((i = 1; i <= n; i++)); do kms_host "kms-$i"; done >"$root/$CLUSTER_FILE"
  chmod 0644 "$root/$CLUSTER_FILE"
  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$root/etc/machine-id"
  echo >>"$root/etc/machine-id"

  # Own ed25519 host key, generated on the host.
  ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$ndir/ssh_host_ed25519_key"
  install -m 0600 "$ndir/ssh_host_ed25519_key" "$root/etc/ssh/ssh_host_ed25519_key"
  install -m 0644 "$ndir/ssh_host_ed25519_key.pub" "$root/etc/ssh/ssh_host_ed25519_key.pub"
  printf 'ListenAddress 127.0.0.1:%s\n' "$port" >"$root/etc/ssh/sshd_config.d/listen.conf"

  install -d -m 0700 "$root/root/.ssh"
  install -m 0600 "$STATE/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
  uid=$(lab_uid "$root" ops); gid=$(lab_gid "$root" ops)
  install -d -m 0700 -o "$uid" -g "$gid" "$root/home/ops/.ssh"
  install -m 0600 -o "$uid" -g "$gid" "$STATE/id_ed25519.pub" "$root/home/ops/.ssh/authorized_keys"

  write_seed "$name" "$ndir/seed"
  write_node_tls "$name" "$ndir/tls"
  install_seed "$name" "$root"
  install_greeter "$root"
  write_greeter_seed "$name" "$ndir/seed"
  install_greeter_seed "$name" "$root"
  install_lab_ca "$root" "$rootfs"
  chmod 0755 "$ndir/knobs"
}

boot_node() {
  local name=$1 ndir="$STATE/nodes/$1" nodebin
  nodebin=$(readlink -f "$(command -v node)")
  make_node_cgroups "$name" "$ndir"
  rm -f "$ndir/nspawn.pid"
  (
    # --keep-unit keeps nspawn (and the node) in our cgroup: move into the
    # node's own cgroups first, in every hierarchy.
    while read -r cg; do echo "$BASHPID" >"$cg/cgroup.procs"; done <"$ndir/cgroups"
    exec setsid sh -c 'echo $$ >"$0"; exec "$@"' "$ndir/nspawn.pid" \
      systemd-nspawn --register=no --keep-unit -M "$(machine_name "$name")" --hostname="$name" -D "$ndir/root" --boot \
      --link-journal=no --console=read-only --resolv-conf=off --timezone=off \
      --bind-ro="$ndir/knobs:/var/lib/lab-knobs" \
      --bind-ro="$nodebin:/opt/lab-node/node" \
      --bind-ro="$LAB_SRC_DIR:/opt/lab" \
      --bind-ro="$REPO_DIR/node_modules/yaml:/opt/lab-yaml"
  ) </dev/null >"$ndir/console.log" 2>&1 &
  # Wait until the pid file names a process that has become systemd-nspawn:
  # until then nspawn_pid fails, and wait_ready would take a node that is
  # still starting for a dead one (seen in CI on the last node booted).
  local i
  for ((i = 0; i < 500; i++)); do
    nspawn_pid "$name" >/dev/null && return 0
    sleep 0.02
  done
  log "$name: systemd-nspawn did not start within 10s; console: $ndir/console.log"
  return 1
}

# Waits until node $1 answers ssh, minkms is active and logged the ready
# line in this boot, and so did greeter. Bounded by deadline $2 (epoch s).
wait_ready() {
  local name=$1 deadline=$2 out remote
  remote="for i in \$(seq 1 100); do
      if [ \"\$(systemctl is-active minkms)\" = active ] &&
         journalctl -b -u minkms -o cat --no-pager | grep -q '$READY_TEXT' &&
         [ \"\$(systemctl is-active greeter)\" = active ] &&
         journalctl -b -u greeter -o cat --no-pager | grep -q '$GREETER_READY_TEXT'; then echo READY; exit 0; fi
      sleep 0.05
    done; echo NOTREADY"
  while :; do
    if out=$(node_ssh "$name" "$remote" 2>/dev/null) && [[ $out == READY ]]; then
      return 0
    fi
    if ((EPOCHSECONDS >= deadline)); then return 1; fi
    nspawn_pid "$name" >/dev/null || return 2
    sleep 0.2
  done
}

raise_inotify_limits() {
  local key want cur
  for key in max_user_instances:2048 max_user_watches:524288; do
    want=${key#*:}; key=${key%%:*}
    cur=$(cat "/proc/sys/fs/inotify/$key")
    ((cur >= want)) || echo "$want" >"/proc/sys/fs/inotify/$key"
  done
}

port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

cmd_up() {
  local n=${1:-3}
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "usage: lab.sh up [N]  (N >= 1)"
  require_root up
  require_tools systemd-nspawn ssh ssh-keygen setsid flock chroot nsenter mount openssl
  require_node
  local t0=$EPOCHREALTIME rootfs i name failed=() port
  if [[ -n $(node_names) ]]; then
    log "a lab is up; tearing it down first"
    cmd_down
  fi
  rootfs=$(cmd_build)
  raise_inotify_limits
  ensure_client_key
  ensure_vault_tls
  for ((i = 1; i <= n; i++)); do
    port=$((BASE_PORT + i))
    port_in_use "$port" && die "port 127.0.0.1:$port is already in use (set ROLLOUT_LAB_BASE_PORT)"
    port=$((KMS_BASE_PORT + i))
    port_in_use "$port" && die "port 127.0.0.1:$port (kms-$i's minkms) is already in use (set ROLLOUT_LAB_KMS_BASE_PORT)"
  done
  mkdir -p "$STATE/nodes"
  : >"$STATE/known_hosts.tmp"
  for ((i = 1; i <= n; i++)); do
    name="kms-$i"
    prepare_node "$name" "$rootfs" "$n"
    printf '[127.0.0.1]:%s %s\n' "$(node_port "$name")" \
      "$(cut -d' ' -f1-2 "$STATE/nodes/$name/ssh_host_ed25519_key.pub")" >>"$STATE/known_hosts.tmp"
  done
  mv "$STATE/known_hosts.tmp" "$STATE/known_hosts"
  echo "$BASE_PORT" >"$STATE/base-port"
  write_ssh_config "$n"
  for ((i = 1; i <= n; i++)); do
    boot_node "kms-$i" || die "lab is partly up; inspect it, then run: $0 down"
  done

  local deadline=$((EPOCHSECONDS + BOOT_TIMEOUT)) pids=() rc
  for ((i = 1; i <= n; i++)); do
    wait_ready "kms-$i" "$deadline" &
    pids+=($!)
  done
  for ((i = 1; i <= n; i++)); do
    rc=0; wait "${pids[i - 1]}" || rc=$?
    case $rc in
      0) ;;
      2) failed+=("kms-$i"); log "kms-$i: systemd-nspawn exited while booting" ;;
      *) failed+=("kms-$i"); log "kms-$i did not become ready within ${BOOT_TIMEOUT}s" ;;
    esac
  done
  if ((${#failed[@]} > 0)); then
    for name in "${failed[@]}"; do
      log "$name: console: $STATE/nodes/$name/console.log"
      tail -n 5 "$STATE/nodes/$name/console.log" >&2 || true
    done
    die "lab is partly up; inspect it, then run: $0 down"
  fi
  local secs
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  echo "rollout lab: $n node(s) up in ${secs}s (state: $STATE)"
  for ((i = 1; i <= n; i++)); do
    printf '  kms-%-3s ssh 127.0.0.1:%s  minkms https://%s\n' "$i" "$((BASE_PORT + i))" "$(kms_host "kms-$i")"
  done
  echo "ssh in:  ssh -i $STATE/id_ed25519 -o UserKnownHostsFile=$STATE/known_hosts -p $((BASE_PORT + 1)) root@127.0.0.1"
  echo "     or: ssh -F $STATE/ssh_config kms-1   (user ops: ops@kms-1, passwordless sudo)"
  echo "     or: $0 ssh kms-1 [CMD]"
}

write_ssh_config() {
  local n=$1 i
  {
    for ((i = 1; i <= n; i++)); do
      printf 'Host kms-%s\n  HostName 127.0.0.1\n  Port %s\n  User root\n  HostKeyAlias [127.0.0.1]:%s\n' "$i" "$((BASE_PORT + i))" "$((BASE_PORT + i))"
    done
    printf 'Host *\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  KexAlgorithms curve25519-sha256\n  LogLevel ERROR\n' \
      "$STATE/id_ed25519" "$STATE/known_hosts"
  } >"$STATE/ssh_config"
}

# ---------------------------------------------------------------- down

cmd_down() {
  require_root down
  local name pid ndir pids=() names=() deadline cg m
  cmd_vault_down
  [[ -d $STATE/nodes ]] || { log "nothing is up"; return 0; }
  for name in $(node_names); do
    if pid=$(nspawn_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$name")
    fi
  done
  deadline=$((EPOCHSECONDS + 15))
  for pid in "${pids[@]}"; do
    while [[ -e /proc/$pid ]] && ((EPOCHSECONDS < deadline)); do sleep 0.1; done
  done
  for name in $(node_names); do
    ndir="$STATE/nodes/$name"
    if pid=$(nspawn_pid "$name"); then
      log "$name: nspawn did not exit after SIGTERM; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    # Whatever is left in the node's cgroups (e.g. an orphaned container init).
    if [[ -f $ndir/cgroups ]]; then
      while read -r cg; do
        [[ -d $cg ]] || continue
        for pid in $(cg_all_pids "$cg"); do kill -KILL "$pid" 2>/dev/null || true; done
      done <"$ndir/cgroups"
    fi
  done
  sleep 0.1
  local busy=0
  for name in $(node_names); do
    ndir="$STATE/nodes/$name"
    for m in $(mounts_under "$ndir"); do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
    done
    for ((i = 0; i < 30; i++)); do
      remove_node_cgroups "$ndir" && break
      sleep 0.1
    done
    remove_node_cgroups "$ndir" warn || true
    rm -rf "/run/systemd/nspawn/propagate/$(machine_name "$name")" 2>/dev/null || true
    if [[ -n $(mounts_under "$ndir") ]]; then
      log "warning: $ndir still has mounts; not removing it"; busy=1; continue
    fi
    rm -rf --one-file-system "$ndir"
  done
  # Stray mounts anywhere else under the state dir.
  for m in $(mounts_under "$STATE"); do umount -l "$m" 2>/dev/null || true; done
  rm -f "$STATE/known_hosts" "$STATE/ssh_config"
  rmdir "$STATE/nodes" 2>/dev/null || true
  [[ -d $STATE/nodes ]] || rm -f "$STATE/base-port"
  ((busy == 0)) || die "some node dirs could not be removed (mounts left)"
  ((${#names[@]} == 0)) || log "stopped ${names[*]}"
}

# ---------------------------------------------------------------- reset

reset_node() {
  local name=$1 ndir="$STATE/nodes/$1" root kill=0 out
  root="$ndir/root"
  [[ -d $ndir ]] || die "$name is not part of the lab"
  nspawn_pid "$name" >/dev/null || die "$name is not running"
  [[ -e $ndir/knobs/ignore-sigterm ]] && kill=1
  # Undo fault injection: the sync shim goes (a sync still sleeping in it is
  # killed, before the seed goes in); a frozen sshd is thawed and a stopped
  # one started below, inside the node.
  remove_slow_sync "$name" kill
  install_seed "$name" "$root"
  find "$ndir/knobs" -mindepth 1 -delete
  rm -rf --one-file-system "$root/var/backups/rollout" "$root/var/lib/rollout"
  # A node that never used Vault: no sealed root encryption key.
  rm -f "$root/$SEALED_REK" "$root/$SEALED_REK".tmp-*
  # Housekeeping restart without the simulated start delay: the knob exists
  # only until the ready line, so the next start uses the default again.
  echo 0 >"$ndir/knobs/start-delay-ms"
  # A process started with ignore-sigterm blocks a plain restart
  # (TimeoutStopSec=infinity, SendSIGKILL=no): SIGKILL it when the knob is
  # there, or when the stop hangs for 0.5 s. The ready line must come after
  # a cursor taken before the restart; poll for it (journalctl -f only wakes
  # up when journald posts a change, which it coalesces: up to ~250 ms late).
  out=$(node_exec "$name" "
    for p in /proc/[0-9]*; do
      c=; read -r c 2>/dev/null <\$p/comm; [ \"\$c\" = sshd ] && kill -CONT \${p#/proc/} 2>/dev/null
    done
    systemctl is-active -q ssh.service || { systemctl reset-failed ssh.service 2>/dev/null; systemctl start ssh.service || echo 'warning: could not start ssh.service' >&2; }
    rm -rf /run/rollout
    C=\$(journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p')
    [ $kill = 1 ] && systemctl kill -s SIGKILL minkms 2>/dev/null
    systemctl reset-failed minkms 2>/dev/null
    systemctl restart --no-block minkms || exit 1
    stuck=0
    for i in \$(seq 1 400); do
      if journalctl -u minkms --after-cursor=\"\$C\" -o cat --no-pager | grep -q '$READY_TEXT'; then echo READY; exit 0; fi
      case \$(systemctl show -p SubState --value minkms) in
        stop-sigterm) stuck=\$((stuck + 1)); [ \$stuck = 10 ] && systemctl kill -s SIGKILL minkms ;;
        failed) echo 'minkms failed:'; journalctl -u minkms --after-cursor=\"\$C\" -o cat --no-pager | tail -n 5; exit 1 ;;
      esac
      sleep 0.05
    done
    echo NOTREADY; exit 1" 2>&1) || {
    rm -f "$ndir/knobs/start-delay-ms"
    echo "$out" >&2
    die "$name: minkms did not come back after reset"
  }
  rm -f "$ndir/knobs/start-delay-ms"
  reset_greeter "$name"
}

cmd_reset() {
  require_root reset
  local target=${1:-} names=() pids=() i rc failed=0
  [[ -n $target ]] || die "usage: lab.sh reset kms-I|all"
  if [[ $target == all ]]; then
    mapfile -t names < <(node_names)
    ((${#names[@]} > 0)) || die "no lab is up"
  else
    names=("$target")
  fi
  for i in "${!names[@]}"; do
    reset_node "${names[i]}" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    rc=0; wait "${pids[i]}" || rc=$?
    ((rc == 0)) || failed=1
  done
  ((failed == 0)) || exit 1
}

# ---------------------------------------------------------------- fault injection

# Node $1 must be part of the lab and running.
require_running_node() {
  local name=${1:-}
  [[ $name =~ ^kms-[0-9]+$ ]] || die "usage: lab.sh $CMD kms-I ..."
  [[ -d $STATE/nodes/$name ]] || die "$name is not part of the lab ($STATE)"
  nspawn_pid "$name" >/dev/null || die "$name is not running"
}

# Host pids of every process of node $1: its cgroup tree in one hierarchy
# (each holds all of them), the cgroup2 one when there is one.
node_pids() {
  local cg pick=
  [[ -f $STATE/nodes/$1/cgroups ]] || return 0
  while read -r cg; do
    [[ -d $cg ]] || continue
    [[ -z $pick ]] && pick=$cg
    [[ -f $cg/cgroup.controllers ]] && { pick=$cg; break; }
  done <"$STATE/nodes/$1/cgroups"
  [[ -n $pick ]] && cg_all_pids "$pick"
  return 0
}

# Host pids of node $1's sshd processes: the listener, the pre-auth and
# session processes ("sshd: root@notty" etc. all have comm sshd).
node_sshd_pids() {
  local pid comm
  for pid in $(node_pids "$1"); do
    { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || continue
    [[ $comm == sshd ]] && echo "$pid"
  done
  return 0
}

proc_state() { local s; { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1; s=${s##*) }; echo "${s%% *}"; }
proc_ppid() { local s; { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1; s=${s##*) }; s=${s#* }; echo "${s%% *}"; }

# True when something answers with an SSH banner on 127.0.0.1:$1 within 1 s.
ssh_banner() {
  local got
  got=$(timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && head -c 4 <&3' "$1" 2>/dev/null) || return 1
  [[ $got == SSH- ]]
}

# Waits (at most $2 s) until node $1's sshd answers.
wait_sshd() {
  local name=$1 secs=$2 port deadline
  port=$(node_port "$name")
  deadline=$((EPOCHSECONDS + secs))
  until ssh_banner "$port"; do
    ((EPOCHSECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# SIGCONT every sshd of node $1; prints how many there are.
thaw_sshd() {
  local pid n=0
  for pid in $(node_sshd_pids "$1"); do kill -CONT "$pid" 2>/dev/null || true; n=$((n + 1)); done
  echo "$n"
}

cmd_sshd_kill() {
  require_running_node "$@"
  local name=$1 port pid pids i left
  port=$(node_port "$name")
  # All at once, so every connection drops now. ssh.service has
  # Restart=on-failure: stop it (inside the node) so nothing listens again,
  # then kill whatever a restart may have started in between.
  pids=$(node_sshd_pids "$name")
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  node_exec "$name" 'systemctl stop ssh.service ssh.socket 2>&1' >/dev/null ||
    log "warning: $name: systemctl stop ssh failed"
  for ((i = 0; i < 40; i++)); do
    left=$(node_sshd_pids "$name")
    for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
    [[ -z $left ]] && ! port_in_use "$port" && break
    sleep 0.05
  done
  [[ -z $left ]] && ! port_in_use "$port" || die "$name: sshd still runs or 127.0.0.1:$port still listens"
  log "$name: killed $(wc -w <<<"$pids" | tr -d ' ') sshd process(es); ssh.service stopped, 127.0.0.1:$port refuses connections"
}

cmd_sshd_start() {
  require_running_node "$@"
  local name=$1 out
  thaw_sshd "$name" >/dev/null
  out=$(node_exec "$name" 'systemctl reset-failed ssh.service 2>/dev/null; systemctl start ssh.service 2>&1') ||
    { echo "$out" >&2; die "$name: systemctl start ssh failed"; }
  wait_sshd "$name" 10 || die "$name: sshd does not answer on 127.0.0.1:$(node_port "$name") after 10 s"
  log "$name: sshd answers on 127.0.0.1:$(node_port "$name")"
}

cmd_sshd_freeze() {
  require_running_node "$@"
  local name=$1 pids pid i todo=1 n
  pids=$(node_sshd_pids "$name")
  [[ -n $pids ]] || die "$name: no sshd is running (lab.sh sshd-start $name)"
  # Until a pass finds every sshd stopped: a process may fork (a new
  # connection, privsep) while we go, or not have stopped yet.
  for ((i = 0; i < 100; i++)); do
    todo=0
    for pid in $(node_sshd_pids "$name"); do
      case $(proc_state "$pid") in
        T | t | '') ;;
        *) todo=1; kill -STOP "$pid" 2>/dev/null || true ;;
      esac
    done
    ((todo)) || break
    sleep 0.02
  done
  ((todo == 0)) || die "$name: some sshd processes did not stop"
  n=$(node_sshd_pids "$name" | wc -l)
  log "$name: SIGSTOPped $n sshd process(es); connections to 127.0.0.1:$(node_port "$name") hang"
}

cmd_sshd_thaw() {
  require_running_node "$@"
  local name=$1 n
  n=$(thaw_sshd "$name")
  ((n > 0)) || die "$name: no sshd is running (lab.sh sshd-start $name)"
  wait_sshd "$name" 10 || die "$name: sshd does not answer on 127.0.0.1:$(node_port "$name") after 10 s"
  log "$name: SIGCONTed $n sshd process(es); sshd answers"
}

cmd_slow_sync() {
  require_running_node "$@"
  local name=$1 marker=${2:-} secs=${3:-} pattern=${4:-*} root shim
  [[ $marker =~ ^/[A-Za-z0-9._/-]+$ && $marker != */../* && $marker != */.. ]] ||
    die "usage: lab.sh slow-sync kms-I MARKER_PATH SECONDS [GLOB]  (MARKER_PATH absolute, [A-Za-z0-9._/-] only)"
  [[ $secs =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SECONDS must be a number (e.g. 30 or 0.5)"
  [[ $pattern != *"'"* && $pattern != *$'\n'* ]] || die "GLOB must not contain a single quote or a newline"
  root="$STATE/nodes/$name/root"
  shim="$root/$SYNC_SHIM"
  # /usr/local/bin precedes /usr/bin in sshd's PATH for root and in sudo's
  # secure_path, so "sync" over ssh finds the shim.
  cat >"$shim.tmp" <<EOF
#!/bin/sh
# rollout lab: slow sync shim (lab.sh slow-sync; lab.sh slow-sync-off or reset removes it)
p='$pattern'
case "\$*" in
  \$p)
    printf '%s %s\\n' "\$\$" "\$*" >'$marker' 2>/dev/null || :
    sleep $secs ;;
esac
exec /usr/bin/sync "\$@"
EOF
  chmod 0755 "$shim.tmp"
  mv -f "$shim.tmp" "$shim"
  echo "$marker" >"$STATE/nodes/$name/slow-sync-marker"
  # A marker left from before would fool a test waiting for it. The node's
  # /run is its own tmpfs (and /var/run a symlink), so do it inside the node.
  node_exec "$name" "rm -f -- '$marker'" || die "$name: could not remove an old $marker"
  log "$name: sync now writes $marker and sleeps ${secs}s first$([[ $pattern == '*' ]] || echo " when its arguments match $pattern")"
}

# Removes node $1's sync shim. With "kill", also SIGKILLs shims still
# sleeping (then their sleep), so that a caller's rename after sync cannot
# land later, and removes the marker.
remove_slow_sync() {
  local name=$1 kill=${2:-} ndir="$STATE/nodes/$1" pid args shims=() kids=() marker
  # Nothing to do (the common case for reset): no shim, none ever installed
  # since the last --kill or reset.
  [[ -e $ndir/root/$SYNC_SHIM || -e $ndir/slow-sync-marker ]] || return 0
  rm -f "$ndir/root/$SYNC_SHIM" "$ndir/root/$SYNC_SHIM.tmp"
  [[ $kill == kill ]] || return 0
  for pid in $(node_pids "$name"); do
    { mapfile -d '' -t args <"/proc/$pid/cmdline"; } 2>/dev/null || continue
    [[ ${args[1]:-} == "/$SYNC_SHIM" ]] && shims+=("$pid")
  done
  if ((${#shims[@]} > 0)); then
    for pid in $(node_pids "$name"); do
      [[ " ${shims[*]} " == *" $(proc_ppid "$pid") "* ]] && kids+=("$pid")
    done
    kill -KILL "${shims[@]}" 2>/dev/null || true
    ((${#kids[@]} == 0)) || kill -KILL "${kids[@]}" 2>/dev/null || true
  fi
  if [[ -f $ndir/slow-sync-marker ]]; then
    marker=$(cat "$ndir/slow-sync-marker")
    if [[ $marker =~ ^/[A-Za-z0-9._/-]+$ ]]; then node_exec "$name" "rm -f -- '$marker'" || true; fi
    rm -f "$ndir/slow-sync-marker"
  fi
}

cmd_slow_sync_off() {
  require_running_node "$@"
  case ${2:-} in
    '') remove_slow_sync "$1"
      log "$1: sync shim removed (a sync already sleeping in it goes on; --kill or reset kills it)" ;;
    --kill) remove_slow_sync "$1" kill
      log "$1: sync shim removed, syncs sleeping in it killed, marker removed" ;;
    *) die "usage: lab.sh slow-sync-off kms-I [--kill]" ;;
  esac
}

cmd_minkms_kill() {
  require_running_node "$@"
  local name=$1 out
  out=$(node_exec "$name" '
    pid=$(systemctl show -p MainPID --value minkms)
    [ "${pid:-0}" -gt 0 ] || { echo "minkms is not running ($(systemctl show -p ActiveState,SubState --value minkms | paste -sd/))"; exit 3; }
    kill -KILL "$pid" || exit 1
    for i in $(seq 1 100); do [ -e /proc/$pid ] || break; sleep 0.02; done
    echo "$pid"' 2>&1) || die "$name: $out"
  log "$name: SIGKILLed minkms (pid $out in the node); systemd restarts it (Restart=always)"
}

# ---------------------------------------------------------------- status / ssh

cmd_status() {
  local name pid any=0 state
  echo "rootfs cache: $(rootfs_dir) $([[ -d $(rootfs_dir) ]] && echo '(built)' || echo '(not built)')"
  echo "state dir:    $STATE"
  echo "instance:     $LAB_ID (cgroups .../$CGROUP_NAME/kms-i, nspawn machines ${MACHINE_PREFIX}kms-i)"
  for name in $(node_names); do
    any=1
    if pid=$(nspawn_pid "$name"); then
      state=$(node_ssh "$name" 'systemctl show -p ActiveState,SubState,NRestarts --value minkms | paste -sd" "' 2>/dev/null) || state="(no ssh)"
      printf '  %-8s up    nspawn pid %-7s 127.0.0.1:%s  minkms: %s\n' "$name" "$pid" "$(node_port "$name")" "$state"
    else
      printf '  %-8s DOWN  (state dir left over; run lab.sh down)\n' "$name"
    fi
  done
  ((any)) || echo "no lab is up"
  if pid=$(vault_pid); then
    echo "vault double: up, pid $pid, $(sed -n 's/^vault-double: listening on //p' "$STATE/vault-double.log" 2>/dev/null | tail -n1)"
  else
    echo "vault double: not started (lab.sh vault-up)"
  fi
}

cmd_ssh() {
  local name=${1:-}
  [[ $name =~ ^kms-[0-9]+$ ]] || die "usage: lab.sh ssh kms-I [CMD...]"
  [[ -d $STATE/nodes/$name ]] || die "$name is not part of the lab"
  shift
  # shellcheck disable=SC2046
  exec ssh $(ssh_opts) -p "$(node_port "$name")" "${LAB_USER:-root}@127.0.0.1" "$@"
}

usage() { sed -n '2,/^set -euo/p' "$LAB_SRC_DIR/lab.sh" | grep '^#' | sed 's/^# \{0,1\}//'; }

# The base port a lab was brought up with is recorded in $STATE/base-port;
# commands on that lab use it, so that a forgotten ROLLOUT_LAB_BASE_PORT
# cannot point them at another lab's nodes.
use_recorded_base_port() {
  local rec
  [[ -d $STATE/nodes && -f $STATE/base-port ]] || return 0
  rec=$(cat "$STATE/base-port")
  [[ $rec =~ ^[0-9]+$ ]] || return 0
  if [[ -n ${ROLLOUT_LAB_BASE_PORT:-} && $ROLLOUT_LAB_BASE_PORT != "$rec" ]]; then
    die "the lab in $STATE is up with ROLLOUT_LAB_BASE_PORT=$rec, not $ROLLOUT_LAB_BASE_PORT"
  fi
  BASE_PORT=$rec
}

main() {
  local cmd=${1:-}
  CMD=$cmd
  case $cmd in up | build | down | vault-up | vault-down | help | -h | --help | '') ;; *) use_recorded_base_port ;; esac
  [[ $# -gt 0 ]] && shift
  case $cmd in
    build) cmd_build ;;
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    reset) cmd_reset "$@" ;;
    ssh) cmd_ssh "$@" ;;
    status) require_root status; cmd_status ;;
    vault-up) cmd_vault_up "$@" ;;
    vault-down) cmd_vault_down ;;
    sshd-kill) require_root "$cmd"; cmd_sshd_kill "$@" ;;
    sshd-start) require_root "$cmd"; cmd_sshd_start "$@" ;;
    sshd-freeze) require_root "$cmd"; cmd_sshd_freeze "$@" ;;
    sshd-thaw) require_root "$cmd"; cmd_sshd_thaw "$@" ;;
    slow-sync) require_root "$cmd"; cmd_slow_sync "$@" ;;
    slow-sync-off) require_root "$cmd"; cmd_slow_sync_off "$@" ;;
    minkms-kill) require_root "$cmd"; cmd_minkms_kill "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
