# shellcheck shell=sh
# Prints the unit's journal entries after a cursor as they come. Globals: u (the
# unit), C (the cursor), R and B (the ready text as text and as decimal bytes,
# see readyHint; both empty: every batch).

# Polls every 50 ms on the node (journalctl -f wakes only when journald posts a
# change, up to 250 ms late). After a batch holding the ready text, the unit's
# state (systemctl's answer between @now-begin and @now-end), so a ready line
# can be judged without another command. A heartbeat `.` per poll ends the loop
# once rollout closes the channel (the write fails); the traps remove the cursor
# file on every end.
poll_journal() {
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
        echo @now-begin; systemctl show -p "$SHOW_PROPERTIES" -- "$u"; echo @now-end;;
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
