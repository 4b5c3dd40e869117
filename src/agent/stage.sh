# shellcheck shell=sh
# Stages a node's planned changes without touching the files. The request
# comes on stdin (nothing of it in `ps`): a count, then 9 lines per file
# (target, sha256 before and after, size, owner, umask, mode, backup, staged
# copy), then the new contents one after another. Per file: staged copies of
# earlier runs removed as names (rm never follows a link); the staged copy
# created exclusively by dd (O_EXCL: a planted link makes staging fail), reading
# exactly its size so the next file's bytes stay on stdin; the file backed up.
# Then every copy checksummed at once: `@stale` (neither old nor new content,
# nothing kept), `@already` (already new), else `@staged`, the copy given its
# owner and mode. Then one fsync of them all and `@done`; `@error WHY` on failure.

# The next checksum of $sums into $l.
stage_next() {
  l=${sums%%"$nl"*}; sums=${sums#*"$nl"}
  # sha256sum starts the line with a backslash when it escaped the path.
  l=${l#\\}; l=${l%% *}
}

# Exits on failure: run it in a subshell where the shell must live on.
stage_files() {
  set -u
  IFS= read -r n || { echo "@error no staging request"; exit 1; }
  set --; i=0
  while [ "$i" -lt $((n * 9)) ]; do
    IFS= read -r a || { echo "@error the staging request ended early"; exit 1; }
    set -- "$@" "$a"; i=$((i + 1))
  done
  umask 077
  nl='
'
  euid=$(id -u) egid=$(id -g)
  # Backups hold secrets: their root must be root's own directory, never a link another user planted.
  r=$BACKUP_ROOT
  if [ -e "$r" ] || [ -L "$r" ]; then
    { [ -d "$r" ] && [ ! -L "$r" ] && [ -O "$r" ]; } || { echo "@error $r is not a directory of this user's own (a link, or another user's): refusing to keep backups there"; exit 1; }
  fi
  # Every missing backup directory in one mkdir (0700 by the umask, the backup root too).
  dirs=; k=0
  for a do
    k=$((k + 1)); d=${a%/*}
    if [ $((k % 9)) = 8 ] && [ ! -d "$d" ]; then case "$nl$dirs$nl" in *"$nl$d$nl"*) ;; *) dirs=$dirs${dirs:+$nl}$d;; esac; fi
  done
  # The lists here and below are split on newlines only, with globbing off: one path a line.
  # shellcheck disable=SC2086
  [ -z "$dirs" ] || (set -f; IFS=$nl; exec mkdir -p -- $dirs) || { echo "@error cannot make the backup directory"; exit 1; }
  # Each staged copy written and each file backed up; the arguments come round again for the next pass.
  sums=; i=0
  while [ "$i" -lt "$n" ]; do
    dst=$1 before=$2 after=$3 size=$4 owner=$5 mask=$6 mode=$7 bak=$8 staged=$9; shift 9; i=$((i + 1))
    set -- "$@" "$dst" "$before" "$after" "$size" "$owner" "$mask" "$mode" "$bak" "$staged"
    dir=${dst%/*}; base=${dst##*/}
    for old in "$dir"/.rollout-staged.*."$base"; do
      if [ -e "$old" ] || [ -L "$old" ]; then rm -f -- "$old" || { echo "@error cannot remove $old"; exit 1; }; fi
    done
    if [ "$size" = 0 ]; then (umask "$mask"; exec dd of="$staged" conv=excl count=0 status=none)
    else (umask "$mask"; exec dd of="$staged" conv=excl bs="$size" count=1 iflag=fullblock status=none); fi ||
      { echo "@error cannot create the staged copy of $dst (something already stands at its name)"; exit 1; }
    if [ -e "$dst" ]; then
      cp -p -- "$dst" "$bak" || { echo "@error cannot back up $dst"; exit 1; }
      sums=$sums$bak$nl
    elif [ -e "$bak" ]; then rm -f -- "$bak"; fi
    sums=$sums$staged$nl
  done
  # One sha256sum for all, its lines in argument order.
  # shellcheck disable=SC2086
  sums=$(set -f; IFS=$nl; exec sha256sum -- $sums) || { echo "@error cannot checksum the staged copies"; exit 1; }
  sums=$sums$nl; files=
  i=0
  while [ "$i" -lt "$n" ]; do
    dst=$1 before=$2 after=$3 owner=$5 mode=$7 bak=$8 staged=$9; shift 9; i=$((i + 1))
    cur=missing; [ ! -e "$bak" ] || { stage_next; cur=$l; }
    stage_next; new=$l
    if [ "$cur" = "$after" ]; then rm -f -- "$bak" "$staged"; echo @already; continue; fi
    if [ "$cur" != "$before" ]; then rm -f -- "$bak" "$staged"; echo @stale; continue; fi
    [ "$new" = "$after" ] || { echo "@error the new content of $dst arrived incomplete"; exit 1; }
    if [ -L "$staged" ] || [ ! -f "$staged" ]; then echo "@error the staged copy of $dst is not a regular file"; exit 1; fi
    # A set-group-id directory gives a new file its group: chown where the owner is not already right.
    if [ "$owner" != "$euid:$egid" ] || [ ! -O "$staged" ] || [ ! -G "$staged" ]; then
      chown -h -- "$owner" "$staged" || { echo "@error cannot give the staged copy of $dst its owner"; exit 1; }
    fi
    [ "$mode" = - ] || chmod -- "$mode" "$staged" || { echo "@error cannot give the staged copy of $dst its mode"; exit 1; }
    files=$files${files:+$nl}$bak$nl$staged
    echo @staged
  done
  # shellcheck disable=SC2086
  [ -z "$files" ] || (set -f; IFS=$nl; exec sync -- $files) || { echo "@error fsync failed"; exit 1; }
  echo @done
}
