# shellcheck shell=sh
# The node checks, changing nothing, between `@checks-begin` and `@checks-end`
# (read by parseNodeChecks).

# Arguments: the unit, Vault's host, port and scheme (host '': no reach check),
# the number of directories, the directories that must be writable, then the
# files to checksum (none: no @sums block). A subshell: the caller's arguments
# and variables are left alone (the checks also run inside the first read).
node_checks() (
  echo @checks-begin
  u=$1; vh=$2; vp=$3; vs=$4; ndirs=$5; shift 5
  echo "@uid $(id -u)"
  l=; [ ! -r "$LOCK_FILE" ] || IFS= read -r l < "$LOCK_FILE" || true; echo "@lock $l"
  nl='
'
  i=0; dirs=
  while [ "$i" -lt "$ndirs" ]; do
    if test -w "$1"; then dirs="$dirs@dir $i ok$nl"; else dirs="$dirs@dir $i no$nl"; fi
    i=$((i + 1)); shift
  done
  [ $# = 0 ] || { echo @sums-begin; sha256sum -- "$@" 2>/dev/null; echo @sums-end; }
  printf '%s' "$dirs"
  # A journal file journald writes (root reads any): what journalctl would read, without running it.
  # $JOURNAL_DIRS is split on spaces on purpose.
  # shellcheck disable=SC2086
  j=no; for d in $JOURNAL_DIRS; do for f in "$d"/*/*.journal; do [ ! -r "$f" ] || { j=ok; break 2; }; done; done; echo "@journal $j"
  echo @svc-begin; systemctl show -p "$SHOW_PROPERTIES" -- "$u"; echo @svc-end
  [ -z "$vh" ] || reach_vault "$vh" "$vp" "$vs"
  echo @checks-end
)

# One curl to Vault's health endpoint, pinned to the resolver's addresses; sets $out and $rc.
reach_curl() {
  out=$(curl -sS -o /dev/null --max-time 10 --resolve "$h:$p:$addrs" -w '%{http_code}' "$@" "$scheme://$h:$p/v1/sys/health" 2>&1) && rc=0 || rc=$?
}

# How far the node gets towards Vault, one `@reach` line: curl proves TLS with
# the node's own trust store (as the KMS will use it); without curl, bash's
# /dev/tcp proves TCP only. Addresses come from the system resolver (getent),
# as the KMS resolves them: curl alone treats some names (localhost) specially.
reach_vault() {
  h=$1; p=$2; scheme=$3
  addrs=; prev=
  for w in $(getent ahosts "$h" 2>/dev/null); do
    case $w in
      STREAM) a=$prev; case $a in *:*) a="[$a]";; esac
        case ",$addrs," in *",$a,"*) ;; *) addrs=${addrs:+$addrs,}$a;; esac;;
    esac
    prev=$w
  done
  if [ -z "$addrs" ]; then echo "@reach resolve-failed"
  elif command -v curl >/dev/null 2>&1; then
    # The trust store's hashed directory first (OpenSSL then loads only the
    # issuer it needs); any failure the CA choice could cause is asked again
    # the default way, so a CA found only in the bundle still passes.
    one=; for c in /etc/ssl/certs/*.0; do [ ! -r "$c" ] || { one=$c; break; }; done
    rc=1; [ "$scheme" != https ] || [ -z "$one" ] || reach_curl --capath /etc/ssl/certs --cacert "$one"
    case $rc in 0|6|7|28) ;; *) reach_curl;; esac
    code=${out#"${out%???}"}
    echo "@reach curl $rc $code ${out%???}"
  elif command -v bash >/dev/null 2>&1; then
    # $0 and $1 belong to the bash started here, not to this shell.
    # shellcheck disable=SC2016
    if timeout 10 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$h" "$p" 2>/dev/null; then echo "@reach tcp-ok"; else echo "@reach tcp-failed"; fi
  else
    echo "@reach no-tool"
  fi
}
