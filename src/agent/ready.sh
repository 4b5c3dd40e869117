# shellcheck shell=sh
# The node's own KMS API, asked from the node (curl to its own listener), one
# `@api RC CODE TEXT` line an answer (read by parseApiAnswer): curl's exit code,
# the HTTP status (000: none), and the body or curl's error, on one line.
# `@api no-curl` when the node has no curl.

# One GET of path $1 from https://$ah; sets $rc, $code and $text. $ah: host:port,
# $aca: a CA file ('' : the system trust store), $ak: 1 = no TLS check,
# $amax: curl's time bound in seconds.
api_get() {
  set -- "$1"
  if [ "$ak" = 1 ]; then set -- "$1" --insecure
  elif [ -n "$aca" ]; then set -- "$1" --cacert "$aca"
  fi
  p=$1; shift
  # The status between markers, found from the end (a body may hold anything); curl's complaint may come before or after it.
  out=$(curl -sS --max-time "$amax" -w '\n@@%{http_code}@@\n' "$@" "https://$ah$p" 2>&1) && rc=0 || rc=$?
  case $out in
    *@@[0-9][0-9][0-9]@@*) l=${out%@@[0-9][0-9][0-9]@@*}; code=${out#"$l@@"}; code=${code%%@@*}; out=$l${out##*@@[0-9][0-9][0-9]@@};;
    *) code=000;;
  esac
  # The body (or curl's complaint) on one line: newlines, tabs and CRs as spaces, trailing ones dropped.
  # A ready 200's body is never read.
  case $code$p in
    200/v1/health/ready) text= ;;
    *) text=$(printf '%s' "$out" | tr '\n\t\r' '   ' | cut -c1-200) ;;
  esac
  text=${text%"${text##*[! ]}"}
}

# Arguments: ready|version, host:port, CA path (''), insecure (1/0), seconds to
# keep asking (ready only; 0: once). Polls every 0.25 s until 200 or the time is up.
api_ask() {
  ah=$2; aca=$3; ak=$4; secs=${5:-0}
  command -v curl >/dev/null 2>&1 || { echo "@api no-curl"; return 0; }
  # A CA directory is trusted the way MinKMS reads it: every file in it, here
  # joined into one temporary file (public certificates) for curl. So it needs
  # no OpenSSL hash links, as curl --capath would, and curl loads no system
  # bundle besides (about 25 ms a request). The file goes before the answer is
  # written: a reader that has gone away ends the script at that write.
  if [ "$ak" != 1 ] && [ -d "$aca" ]; then
    if ! bundle=$(mktemp); then rc=77 code=000 text="cannot make a temporary file for the CAs in $aca"
    else
      cat -- "$aca"/* >"$bundle" 2>/dev/null
      if grep -q -- '-----BEGIN CERTIFICATE-----' "$bundle"; then aca=$bundle; api_poll "$1"
      else rc=77 code=000 text="no CA certificate in $aca"
      fi
      rm -f -- "$bundle"
    fi
  else
    api_poll "$1"
  fi
  echo "@api $rc $code $text"
}

# api_ask's requests ($aca a file by now): sets $rc, $code and $text of the last.
api_poll() {
  amax=5
  if [ "$1" = version ]; then api_get /version; return 0; fi
  if [ "$secs" = 0 ]; then api_get /v1/health/ready; return 0; fi
  end=$(( $(date +%s) + secs ))
  while :; do
    left=$(( end - $(date +%s) ))
    # Polling never outlasts its time by more than 1 s.
    amax=$(( left > 5 ? 5 : left < 1 ? 1 : left ))
    api_get /v1/health/ready
    if [ "$code" = 200 ] || [ "$(date +%s)" -ge "$end" ]; then break; fi
    sleep 0.25
  done
}
