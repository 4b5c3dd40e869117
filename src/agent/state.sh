# shellcheck shell=sh
# A long-lived probe of the unit's state, answering one question a line on
# stdin. `full`: systemctl's output and `@end`. `stage` and a staging request
# (stage.sh): `@stage-end CODE`; a failed staging may have left contents unread,
# so the probe then ends. `release` and its request (release.sh): `@released`.
# `ready K HOST:PORT CA`: one request to the node's own /v1/health/ready
# (ready.sh; K: 1 = no TLS check; CA: the rest of the line, '' = the system
# trust store), `@api ...`.

# Argument: the unit.
probe_state() {
  u=$1
  while IFS= read -r q; do
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
  done
}
