# shellcheck shell=sh
# Moves staged files into place, all checked first. The list comes on stdin
# (nothing of it in `ps`): a count, then 7 lines a file: path, staged copy,
# sha256 before and after, uid, gid, octal mode.

# Reads that list and runs the function $1 with it as its arguments.
with_commits() {
  fn=$1
  IFS= read -r n || exit 1
  set --; i=0
  while [ "$i" -lt $((n * 7)) ]; do IFS= read -r a || exit 1; set -- "$@" "$a"; i=$((i + 1)); done
  "$fn" "$@"
}

# Every target must still hold its planned old content (or already the new
# one), else `@stale PATH` and 1; every staged copy must be a regular file with
# the new content and the planned owner and mode, else `@error WHY` and 2.
check_all() {
  nl='
'
  while [ $# -gt 0 ]; do
    sums=$(sha256sum -- "$1" "$2" 2>/dev/null)
    cur=${sums%% *}; [ -e "$1" ] || cur=missing
    if [ "$cur" != "$3" ] && [ "$cur" != "$4" ]; then echo "@stale $1"; return 1; fi
    if [ "$cur" != "$4" ]; then
      if [ -L "$2" ] || [ ! -f "$2" ]; then echo "@error the staged copy of $1 is missing or not a regular file"; return 2; fi
      staged=${sums#*"$nl"}; staged=${staged%% *}
      [ "$staged" = "$4" ] || { echo "@error the staged copy of $1 is not the planned content"; return 2; }
      [ "$(stat -c '%u %g %a' -- "$2")" = "$5 $6 $7" ] || { echo "@error the staged copy of $1 does not have the planned owner and mode"; return 2; }
    fi
    shift 7
  done
}

commit_flush() {
  # shellcheck disable=SC2086 # split on newlines only, globbing off: one directory a line
  [ -z "$dirs" ] || (set -f; IFS=$nl; exec sync -- $dirs)
}

# Renames each staged copy over its target (atomic), then fsyncs their
# directories with one sync; `@file PATH` for each, after it.
commit_all() {
  nl='
'
  dirs=; moved=
  while [ $# -gt 0 ]; do
    if [ -e "$2" ]; then
      mv -f -T -- "$2" "$1" || { echo "@error cannot move the staged copy of $1 into place"; commit_flush; return 1; }
      dirs=$dirs${1%/*}/$nl
    fi
    moved=$moved$1$nl
    shift 7
  done
  commit_flush || { echo "@error cannot fsync the directories of the moved files"; return 1; }
  while [ -n "$moved" ]; do printf '@file %s\n' "${moved%%"$nl"*}"; moved=${moved#*"$nl"}; done
}

# The check half as a step: a stale target ends the script with nothing touched
# (exit 0 after `@stale`), a bad staged copy with exit 1.
check_step() {
  check_all "$@"
  case $? in 0) ;; 1) exit 0;; *) exit 1;; esac
}

# The move half as a step: a failed move ends the script with exit 1.
move_step() {
  commit_all "$@" || exit 1
  echo @committed
}

# The moves without a restart.
commit_staged() {
  check_step "$@"
  move_step "$@"
}
