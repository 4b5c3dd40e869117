# shellcheck shell=sh
# A long-lived probe of the unit's state, answering one question a line on
# stdin. `full`: systemctl's output and `@end`. `fast`: `@same` while the main
# process of the last full answer is alive (the same pid and start time, read
# with builtins), else as `full`. `adopt PID`: remember a state read elsewhere,
# `@adopted`. `stage` and a staging request (stage.sh): `@stage-end CODE`; a
# failed staging may have left contents unread, so the probe then ends.
# `release` and its request (release.sh): `@released`. `ready K HOST:PORT CA`:
# one request to the node's own /v1/health/ready (ready.sh; K: 1 = no TLS
# check; CA: the rest of the line, '' = the system trust store), `@api ...`.

# Remembers pid $1 and its start time (field 22 of /proc/PID/stat, after the command name).
probe_remember() {
  pid=$1; start=
  # The fields after the command name, which may hold spaces: split on purpose.
  # shellcheck disable=SC2086
  if [ "${pid:-0}" != 0 ] && [ -r "/proc/$pid/stat" ] && IFS= read -r l < "/proc/$pid/stat"; then set -- ${l##*) }; start=${20}; else pid=0; fi
}

probe_alive() {
  [ "$pid" != 0 ] && [ -r "/proc/$pid/stat" ] && IFS= read -r l < "/proc/$pid/stat" || return 1
  # shellcheck disable=SC2086
  set -- ${l##*) }
  [ "$1" != Z ] && [ "$1" != X ] && [ "${20}" = "$start" ]
}

# Argument: the unit.
probe_state() {
  u=$1; pid=0; start=
  while IFS= read -r q; do
    if [ "$q" = fast ] && probe_alive; then echo @same; continue; fi
    case $q in "adopt "*) probe_remember "${q#adopt }"; echo @adopted; continue;; esac
    if [ "$q" = stage ]; then
      (stage_files) || { echo "@stage-end $?"; exit 1; }
      echo "@stage-end 0"; continue
    fi
    case $q in "ready "*)
      r=${q#ready }; k=${r%% *}; r=${r#* }; h=${r%% *}; c=${r#"$h"}
      (api_ask ready "$h" "${c# }" "$k" 0); continue;;
    esac
    if [ "$q" = release ]; then
      (release_lock); echo @released; continue
    fi
    s=$(systemctl show -p "$SHOW_PROPERTIES" -- "$u"); printf '%s\n@end\n' "$s"
    p=${s##*MainPID=}; probe_remember "${p%%[!0-9]*}"
  done
}
