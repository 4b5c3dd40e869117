// File operations on a node, each one remote command: the content travels on
// stdin or stdout, never on a command line, so `ps` on the node shows no secret.
import { RemoteCommandError } from '../errors.js';
import { shellQuote } from '../util/shell-quote.js';
import { sha256 } from '../util/sha256.js';
import type { Transport } from './transport.js';

/** A file as read from a node: bytes plus the owner and mode to keep when it is rewritten. */
export type RemoteFile = { path: string; content: Buffer; sha256: string; uid: number; gid: number; mode: number };

const MISSING = 'ROLLOUT-MISSING';

/** Reads a whole file with its owner and mode in one command; null when it does not exist. */
export async function readRemoteFile(t: Transport, path: string): Promise<RemoteFile | null> {
  const p = shellQuote(path);
  const r = await t.exec(`if [ ! -e ${p} ]; then echo ${MISSING}; exit 0; fi; stat -L -c '%u %g %a' -- ${p} && cat -- ${p}`);
  if (r.code !== 0) throw new RemoteCommandError(t.name, `reading ${path}`, r.code, r.stderr);
  const newline = r.stdout.indexOf(0x0a);
  const head = r.stdout.subarray(0, newline).toString('utf8');
  if (head === MISSING) return null;
  const [uid, gid, mode] = head.split(' ').map((n, i) => (i === 2 ? parseInt(n, 8) : Number(n)));
  const content = r.stdout.subarray(newline + 1);
  return { path, content, sha256: sha256(content), uid: uid!, gid: gid!, mode: mode! };
}

/** Where the backup of `path` from run `runId` lives on the node (root-only directory). */
export function backupPath(runId: string, path: string): string {
  return `/var/backups/rollout/${runId}${path}`;
}

/** Puts a backup back in place atomically (copy beside the target, then rename). */
export async function restoreFile(t: Transport, backup: string, path: string, expectedSha256: string): Promise<void> {
  const b = shellQuote(backup);
  const p = shellQuote(path);
  const r = await t.exec(
    `set -eu; tmp=$(mktemp -- "$(dirname -- ${p})/.rollout-tmp.XXXXXXXX"); trap 'rm -f -- "$tmp"' EXIT; cp -p -- ${b} "$tmp"; sync -- "$tmp"; mv -f -- "$tmp" ${p}; trap - EXIT; sync -- "$(dirname -- ${p})"; sha256sum -- ${p}`,
  );
  if (r.code !== 0) throw new RemoteCommandError(t.name, `restoring ${path} from ${backup}`, r.code, r.stderr);
  if (r.stdout.toString('utf8').split(' ')[0] !== expectedSha256) {
    throw new RemoteCommandError(t.name, `restoring ${path}: restored content does not match the backup taken`, null, '');
  }
}

/** Deletes all but the newest `keep` run directories of backups on a node (run ids sort by time). */
export async function pruneBackups(t: Transport, keep: number): Promise<void> {
  const r = await t.exec(
    `cd /var/backups/rollout 2>/dev/null || exit 0; ls -1 | grep -E '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]+$' | sort | head -n -${Math.max(1, Math.floor(keep))} | while read -r d; do rm -rf -- "$d"; done`,
    { timeoutMs: 60_000 },
  );
  if (r.code !== 0) throw new RemoteCommandError(t.name, 'pruning old backups', r.code, r.stderr);
}

// The whole write of one planned change in one command (one round trip): check
// the file is what the plan read, back it up (owner, mode, times kept; 0700
// directory; checksum checked), write the new bytes from stdin into a 0600 temp
// file, check their checksum, give owner and mode, fsync, rename, fsync the
// directory, and report what the file now is. A cut connection can leave the
// temp file unrenamed, never a partial target.
const CHANGE_SCRIPT = `set -eu
dst=$1; before=$2; after=$3; owner=$4; mode=$5; bak=$6
cur=$(sha256sum < "$dst" 2>/dev/null | cut -d' ' -f1) || cur=missing
if [ "$cur" = "$after" ]; then echo "ROLLOUT already"; exit 0; fi
if [ "$cur" != "$before" ]; then echo "ROLLOUT stale"; exit 0; fi
umask 077
mkdir -p -- /var/backups/rollout "$(dirname -- "$bak")"; chmod 0700 /var/backups/rollout
cp -p -- "$dst" "$bak"; sync -- "$bak"
[ "$(sha256sum < "$bak" | cut -d' ' -f1)" = "$before" ] || { echo "backup does not match the file" >&2; exit 3; }
dir=$(dirname -- "$dst")
tmp=$(mktemp -- "$dir/.rollout-tmp.XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
printf '%s  %s\\n' "$after" "$tmp" | sha256sum -c --status - || { echo "content arrived incomplete" >&2; exit 3; }
chown -- "$owner" "$tmp"
chmod -- "$mode" "$tmp"
sync -- "$tmp"
mv -f -- "$tmp" "$dst"
trap - EXIT
sync -- "$dir"
echo "ROLLOUT written $(stat -L -c '%u %g %a' -- "$dst") $(sha256sum < "$dst" | cut -d' ' -f1)"`;

/** What applyFileChange found or did. */
export type ChangeResult = 'written' | 'already' | 'stale';

/**
 * Applies one planned file change atomically in one command (stale check,
 * backup, write, verify); `already` when the file holds the new content,
 * `stale` when it is neither (nothing touched).
 */
export async function applyFileChange(
  t: Transport,
  c: { path: string; after: string; beforeSha256: string; afterSha256: string; uid: number; gid: number; mode: number },
  backup: string,
): Promise<ChangeResult> {
  const args = [c.path, c.beforeSha256, c.afterSha256, `${c.uid}:${c.gid}`, c.mode.toString(8), backup].map(shellQuote).join(' ');
  const r = await t.exec(`sh -c ${shellQuote(CHANGE_SCRIPT)} rollout-write ${args}`, { stdin: Buffer.from(c.after, 'utf8'), timeoutMs: 60_000 });
  const line = r.stdout.toString('utf8').trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !line.startsWith('ROLLOUT ')) throw new RemoteCommandError(t.name, `writing ${c.path}`, r.code, r.stderr);
  const [, what, uid, gid, mode, sum] = line.split(' ');
  if (what === 'already' || what === 'stale') return what;
  if (sum !== c.afterSha256 || Number(uid) !== c.uid || Number(gid) !== c.gid || parseInt(mode ?? '', 8) !== c.mode) {
    throw new RemoteCommandError(t.name, `verifying ${c.path} after writing it (content, owner or mode differ)`, null, '');
  }
  return 'written';
}
