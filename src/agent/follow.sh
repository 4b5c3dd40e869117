# shellcheck shell=sh
# Prints the unit's journal entries after a cursor as they come. Globals: u (the
# unit), C (the cursor), R and B (the ready text as text and as decimal bytes,
# see readyHint; both empty: every batch).

# Whether the process that logged the batch's first line holding the ready text
# is the unit's main process (alive, not a zombie, a child of PID 1, in the
# unit's own cgroup), its pid in $p; read with shell builtins, no process.
ready_main() {
  p=; rest=$out
  while [ -n "$rest" ]; do
    l=${rest%%"$nl"*}; case $rest in *"$nl"*) rest=${rest#*"$nl"};; *) rest=;; esac
    case $l in *"$R"*|*"$B"*) ;; *) continue;; esac
    case $l in *'"_PID":"'*) p=${l#*'"_PID":"'}; p=${p%%'"'*};; esac
    break
  done
  case $p in ''|*[!0-9]*) return 1;; esac
  [ -r "/proc/$p/stat" ] && IFS= read -r st < "/proc/$p/stat" || return 1
  # The fields after the command name, which may hold spaces: split on purpose.
  # shellcheck disable=SC2086
  set -- ${st##*) }
  [ "$1" != Z ] && [ "$1" != X ] && [ "$2" = 1 ] || return 1
  while IFS= read -r c; do case $c in *"/$un") return 0;; esac; done < "/proc/$p/cgroup"
  return 1
}

# Polls every 50 ms on the node (journalctl -f wakes only when journald posts a
# change, up to 250 ms late). After a batch holding the ready text, the unit's
# state, so a ready line can be judged without another command: `@alive PID`
# (ready_main), else systemctl's answer between @now-begin and @now-end. A
# heartbeat `.` per poll ends the loop once rollout closes the channel (the
# write fails); the traps remove the cursor file on every end.
poll_journal() {
  nl='
'
  case $u in *.*) un=$u;; *) un=$u.service;; esac
  # Its parent is /run: the mode is meant for the one directory made.
  # shellcheck disable=SC2174
  [ -d "$RUN_DIR" ] || mkdir -p -m 0700 "$RUN_DIR"
  f=$RUN_DIR/cursor.$$
  trap 'rm -f -- "$f"' EXIT
  trap 'exit 1' TERM HUP INT PIPE
  printf '%s' "$C" > "$f"
  while :; do
    out=$(journalctl -u "$u" --cursor-file="$f" -o json --no-pager -q) || exit 1
    if [ -n "$out" ]; then
      printf '%s\n' "$out"
      case $out in *"$R"*|*"$B"*)
        if [ -n "$R" ] && ready_main; then echo "@alive $p"
        else echo @now-begin; systemctl show -p "$SHOW_PROPERTIES" -- "$u"; echo @now-end; fi;;
      esac
    fi
    echo .
    sleep 0.05
  done
}

# A follow reopened after a lost link. Arguments: unit, cursor, R, B.
follow_from() {
  u=$1; C=$2; R=$3; B=$4
  poll_journal
}
