# shellcheck shell=sh
# Releases the lock, with what must not outlive it. The request comes on stdin
# (nothing of it in `ps`): the run id, the backup runs to keep (`-`: no
# pruning), a count, then that many paths to remove (staged copies never moved
# into place). At most one process: every node releases at once.

# Prints `@pruned DIR` for each backup run removed: all but the newest $keep (run ids sort by time).
release_prune() {
  [ -e "$1" ] || return 0
  n=$(($# - keep))
  for d do
    [ "$n" -gt 0 ] || break
    old=$old$d$nl
    echo "@pruned $d"
    n=$((n - 1))
  done
}

# Removes the lock only if run $rid holds it.
release_lock() {
  IFS= read -r rid; IFS= read -r keep; IFS= read -r n
  set --
  while [ "$n" -gt 0 ]; do IFS= read -r p; set -- "$@" "$p"; n=$((n - 1)); done
  nl='
'
  old=
  [ "$keep" = - ] || release_prune "$BACKUP_ROOT"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z-*
  l=
  [ ! -r "$LOCK_FILE" ] || IFS= read -r l < "$LOCK_FILE" || true
  case $l in *"\"runId\":\"$rid\""*) set -- "$@" "$LOCK_FILE";; esac
  # $old is split on newlines only, with globbing off: one path a line.
  # shellcheck disable=SC2086
  if [ $# != 0 ] || [ -n "$old" ]; then (set -f; IFS=$nl; exec rm -rf -- $old "$@"); fi
}
