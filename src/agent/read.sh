# shellcheck shell=sh
# Reads files, opening nothing but regular files. Arguments: the size cap in
# bytes, then the paths (absolute, no newline). Prints, in order:
#   @real I PATH   the I-th path (from 1) has a symlink along it and leads to PATH
#   @bad I         the I-th path is not absolute, or its symlink does not resolve
#   TYPEMODE SIZE UID GID NAME   (stat, TYPEMODE in hex) for each file that
#                  exists, then every directory above it (and above its symlink)
#   @read NAME     each regular file within the cap, in the order its bytes follow
#   @data          then those bytes, at most cap + 1 of each (a file that grew
#                  since stat shows by its length)
# A path without a symlink along it costs no process (shell builtins); a FIFO,
# a device or a directory is stat'ed, never opened.

# Adds $1 and every directory above it to $dirs, once.
read_above() {
  d=$1
  while :; do
    case "$nl$dirs$nl" in *"$nl${d:-/}$nl"*) return;; esac
    dirs=$dirs$nl${d:-/}
    [ -n "$d" ] || return
    d=${d%/*}
  done
}

read_files() {
  max=$1; shift
  nl='
'
  files='' dirs='' i=0
  for p do
    i=$((i + 1)); r=$p; d=$p
    case $p in /*) ;; *) echo "@bad $i"; continue;; esac
    while [ -n "$d" ]; do
      if [ -L "$d" ]; then
        r=$(readlink -f -- "$p") || r=
        case $r in /*) ;; *) echo "@bad $i"; continue 2;; esac
        case $r in *"$nl"*) echo "@bad $i"; continue 2;; esac
        echo "@real $i $r"
        break
      fi
      d=${d%/*}
    done
    [ -e "$r" ] || continue
    case "$nl$files$nl" in *"$nl$r$nl"*) ;; *) files=$files$nl$r;; esac
    read_above "${r%/*}"
    [ "$r" = "$p" ] || read_above "${p%/*}"
  done
  [ -n "$files" ] || { echo @data; exit 0; }
  # The lists are split on newlines only, with globbing off: one path a line.
  # shellcheck disable=SC2086
  st=$(set -f; IFS=$nl; exec stat -L -c '%f %s %u %g %n' -- $files $dirs) || exit 1
  printf '%s\n' "$st"
  reads=
  while IFS=' ' read -r t s _ _ n; do
    case "$nl$files$nl" in *"$nl$n$nl"*) ;; *) continue;; esac
    case "$nl$reads$nl" in *"$nl$n$nl"*) continue;; esac
    # 0xF000 masks the file type; 0x8000 (32768) is a regular file.
    { [ $((0x$t & 0xF000)) = 32768 ] && [ "$s" -le "$max" ]; } || continue
    reads=$reads$nl$n
    echo "@read $n"
  done <<EOT
$st
EOT
  echo @data
  # shellcheck disable=SC2086
  [ -z "$reads" ] || (set -f; IFS=$nl; exec head -q -c $((max + 1)) -- $reads)
}
