# shellcheck shell=sh
# The fleet lock: a file in tmpfs ($LOCK_FILE, a reboot clears it) holding the
# holder's record, which comes on stdin so the run id stays out of `ps`.

# Creates the lock with noclobber (O_EXCL: of two runs exactly one wins), by
# shell builtins. Prints `@lock taken` or `@lock held FIRST-LINE-OF-THE-LOCK`.
take_lock() {
  umask 077
  [ -d "$RUN_DIR" ] || mkdir -p "$RUN_DIR"
  rec=
  IFS= read -r rec
  if { set -C; printf '%s\n' "$rec" > "$LOCK_FILE"; } 2>/dev/null; then echo "@lock taken"
  else l=; IFS= read -r l < "$LOCK_FILE"; echo "@lock held $l"; fi
  set +C
}

# Replaces the lock with the record on stdin (a lock judged gone or stale, or this run's own).
replace_lock() {
  umask 077
  mkdir -p "$RUN_DIR" && cat > "$LOCK_FILE.new" && mv -f "$LOCK_FILE.new" "$LOCK_FILE"
}
