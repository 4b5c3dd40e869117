# shellcheck shell=bash
# Sourced by bench/run.sh. The bench lab's base rootfs: the lab's own rootfs
# (same recipe, same hash name) plus Debian's python3, because Ansible's
# blockinfile/lineinfile modules run Python on the target. It lives in its own
# cache dir (ROLLOUT_LAB_CACHE=$BENCH_CACHE), so the default lab's cache
# (/var/cache/rollout-lab) is only ever read, never changed.
#
# Needs: REPO, BENCH_CACHE, BENCH_STATE (= ROLLOUT_LAB_DIR), LAB (path of lab/lab.sh), log().

bench_rootfs_dir() {
  # lab.sh prints the rootfs path it would use for a cache; its name is the recipe hash.
  # (Asked of the bench's own state dir, so that status never talks to another lab.)
  [[ ${ROLLOUT_LAB_DIR:-} == "$BENCH_STATE" ]] || { log "error: ROLLOUT_LAB_DIR is not the bench's"; return 1; }
  ROLLOUT_LAB_CACHE=$BENCH_CACHE bash "$LAB" status 2>/dev/null | sed -n 's/^rootfs cache: \([^ ]*\).*/\1/p'
}

ensure_bench_rootfs() {
  local dir name tmp shared
  dir=$(bench_rootfs_dir)
  [[ -n $dir ]] || { log "error: cannot tell the lab's rootfs path (lab.sh status)"; return 1; }
  [[ -f $dir/.bench-python3 ]] && return 0
  name=$(basename "$dir")
  mkdir -p "$BENCH_CACHE"
  tmp="$BENCH_CACHE/.tmp-$name"
  rm -rf --one-file-system "$tmp" "$dir"
  shared="/var/cache/rollout-lab/$name"
  if [[ -d $shared ]]; then
    log "bench rootfs: copying the lab's cached rootfs $shared (read only)"
    cp -a "$shared" "$tmp"
  else
    log "bench rootfs: building the lab's rootfs into $BENCH_CACHE/.build (about 90 s)"
    local built
    built=$(ROLLOUT_LAB_CACHE="$BENCH_CACHE/.build" bash "$LAB" build) || return 1
    mv -T "$built" "$tmp"
    rm -rf --one-file-system "$BENCH_CACHE/.build"
  fi
  log "bench rootfs: installing python3 (apt, in a chroot) for Ansible's modules"
  local rc=0
  cp "$tmp/etc/resolv.conf" "$tmp/.resolv.conf.lab" 2>/dev/null || true
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  mount -t proc proc "$tmp/proc"
  mount --bind /dev "$tmp/dev"
  {
    chroot "$tmp" apt-get update -q &&
      chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 &&
      chroot "$tmp" apt-get clean
  } >"$BENCH_CACHE/python3-install.log" 2>&1 || rc=$?
  umount "$tmp/dev" || umount -l "$tmp/dev"
  umount "$tmp/proc" || umount -l "$tmp/proc"
  if [[ -f $tmp/.resolv.conf.lab ]]; then mv -f "$tmp/.resolv.conf.lab" "$tmp/etc/resolv.conf"; fi
  rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin
  if ((rc != 0)); then
    tail -n 20 "$BENCH_CACHE/python3-install.log" >&2
    rm -rf --one-file-system "$tmp"
    log "error: installing python3 into the bench rootfs failed (log: $BENCH_CACHE/python3-install.log)"
    return 1
  fi
  "$tmp/usr/bin/python3" --version >/dev/null 2>&1 || chroot "$tmp" /usr/bin/python3 --version >/dev/null
  touch "$tmp/.bench-python3"
  mv -T "$tmp" "$dir"
  log "bench rootfs ready: $dir"
}
