# shellcheck shell=sh
# The remote half of a restart, on one channel. At once, changing nothing: the
# staged files checked (commit.sh), the unit's state and a journal cursor
# (`@svc-begin`..`@svc-end`, `@cursor`). Then a line on stdin: `ping` is
# answered `@pong`, `go` moves the files into place, restarts the unit within
# $RESTART_TIMEOUT seconds (`@restarted CODE`) and follows its journal
# (follow.sh); anything else ends it with nothing touched.

# Called with the commit list (with_commits); u, R and B are set.
restart_checked() {
  check_step "$@"
  svc=$(systemctl show -p "$SHOW_PROPERTIES" -- "$u")
  printf '@svc-begin\n%s\n@svc-end\n' "$svc"
  C=$(journalctl -n 0 --show-cursor -q); C=${C#*-- cursor: }
  [ -n "$C" ] || { echo "@error no journal cursor"; exit 1; }
  echo "@cursor $C"
  while IFS= read -r word && [ "$word" = ping ]; do echo @pong; done
  [ "$word" = go ] || exit 0
  move_step "$@"
  # A failed unit (a restart after a failed gate) may have hit its start limit.
  case $svc in *ActiveState=active*) ;; *) systemctl reset-failed -- "$u" 2>/dev/null;; esac
  timeout "$RESTART_TIMEOUT" systemctl restart -- "$u"; echo "@restarted $?"
  poll_journal
}

# Arguments: unit, R, B (see follow.sh); the commit list on stdin.
restart_and_follow() {
  # R and B are read by poll_journal (follow.sh).
  # shellcheck disable=SC2034
  u=$1 R=$2 B=$3
  with_commits restart_checked
}
