# shellcheck shell=sh
# The MinKMS cluster, asked through its own CLI on the node (as root):
# `cluster_ask stat|backup HOST:PORT CA INSECURE CLI`. Stdin: the SysAdmin API
# key, then (backup) the backup file's path. The key reaches the CLI only
# through its environment (MINIO_KMS_API_KEY); the path only as a name inside
# its directory, checked root-only first (no other user can have planted a
# link there). Answers: the CLI's output lines, each as `@out LINE`, then
# `@cluster RC`; a backup that worked adds `@sha SHA256 BYTES` before that.
cluster_ask() {
  what=$1; MINIO_KMS_SERVER="https://$2"; cca=$3; ck=$4; cli=$5
  IFS= read -r MINIO_KMS_API_KEY || { echo "@out no API key on stdin"; echo "@cluster 2"; return 0; }
  export MINIO_KMS_API_KEY MINIO_KMS_SERVER
  # Go's TLS reads its trust from these: the node's CA from the config's tls
  # section, not a value the login's environment happened to carry.
  if [ -d "$cca" ]; then SSL_CERT_DIR=$cca; export SSL_CERT_DIR; unset SSL_CERT_FILE
  elif [ -n "$cca" ]; then SSL_CERT_FILE=$cca; export SSL_CERT_FILE; unset SSL_CERT_DIR
  fi
  [ -x "$cli" ] || { echo "@out $cli: not found or not executable on this node"; echo "@cluster 127"; return 0; }
  set --
  [ "$ck" = 1 ] && set -- --insecure
  case $what in
    stat) out=$("$cli" stat --json "$@" 2>&1) && rc=0 || rc=$? ;;
    backup)
      IFS= read -r file || file=
      out=$(cluster_backup "$file" "$@" 2>&1) && rc=0 || rc=$?
      if [ "$rc" = 0 ]; then
        sha=$(sha256sum "$file") && sha=${sha%% *} && bytes=$(wc -c <"$file") && echo "@sha $sha $bytes"
      fi ;;
    *) out="unknown question $what"; rc=2 ;;
  esac
  unset MINIO_KMS_API_KEY
  printf '%s\n' "$out" | sed -n '1,40s/^/@out /p'
  echo "@cluster $rc"
}

# `minkms backup NAME` inside FILE's directory (made 0700 when missing), which
# must be a real directory owned by root that nobody else can write.
cluster_backup() {
  f=$1; shift
  case $f in /*/*) ;; *) echo "backup path $f is not an absolute file path"; return 2;; esac
  d=${f%/*}
  umask 077
  mkdir -p "$d" || return 3
  if [ -L "$d" ] || [ "$(stat -c %u "$d")" != 0 ] || [ $(( 0$(stat -c %a "$d") & 022 )) != 0 ]; then
    echo "backup directory $d is not a root-only directory ($(stat -c 'owner %U, mode %a' "$d")): chown root: $d; chmod go-w $d"
    return 3
  fi
  cd "$d" && "$cli" backup "${f##*/}" "$@" && [ -f "${f##*/}" ] && [ ! -L "${f##*/}" ]
}
