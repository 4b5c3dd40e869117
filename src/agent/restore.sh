# shellcheck shell=sh
# Puts a backup back in place. The request comes on stdin, a line each: the
# backup, the target, the backup's sha256, and the sha256 the caller last saw
# at the target (`-`: any). Prints `@already` when the target holds the
# backup's content, `@changed` when it changed since the caller looked (never
# overwritten), else the restored file's `sha256sum` line.
restore_file() {
  IFS= read -r b; IFS= read -r p; IFS= read -r old; IFS= read -r expect
  # A copy beside the target (mktemp: created exclusively), renamed over it.
  tmp=$(mktemp -- "${p%/*}/.rollout-tmp.XXXXXXXXXX") || exit 1
  trap 'rm -f -- "$tmp"' EXIT
  { cp -p -- "$b" "$tmp" && sync -- "$tmp"; } || exit 1
  now=$(sha256sum -- "$p" 2>/dev/null) || now=missing
  now=${now%% *}
  [ "$now" != "$old" ] || { echo @already; exit 0; }
  # Compared right before the rename, so an edit made since is never overwritten.
  [ "$expect" = - ] || [ "$now" = "$expect" ] || { echo @changed; exit 0; }
  mv -f -T -- "$tmp" "$p" || exit 1
  trap - EXIT
  sync -- "${p%/*}" || exit 1
  sha256sum -- "$p"
}
