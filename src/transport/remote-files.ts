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

// Writes stdin to a temp file beside the target (0600 while it holds the new
// bytes), checks the bytes arrived whole, gives it the owner and mode, fsyncs,
// renames over the target and fsyncs the directory. A dropped connection makes
// `cat` end early: the checksum then fails and the target is never replaced.
const WRITE_SCRIPT = `set -eu
dst=$1; sum=$2; owner=$3; mode=$4
dir=$(dirname -- "$dst")
tmp=$(mktemp -- "$dir/.rollout-tmp.XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
printf '%s  %s\\n' "$sum" "$tmp" | sha256sum -c --status - || { echo "content arrived incomplete" >&2; exit 3; }
chown -- "$owner" "$tmp"
chmod -- "$mode" "$tmp"
sync -- "$tmp"
mv -f -- "$tmp" "$dst"
trap - EXIT
sync -- "$dir"`;

/** Replaces `path` atomically with `content`, owned and moded as given; then reads it back. */
export async function writeFileAtomic(
  t: Transport,
  path: string,
  content: Buffer,
  like: { uid: number; gid: number; mode: number },
): Promise<void> {
  const sum = sha256(content);
  const args = [path, sum, `${like.uid}:${like.gid}`, like.mode.toString(8)].map(shellQuote).join(' ');
  const r = await t.exec(`sh -c ${shellQuote(WRITE_SCRIPT)} rollout-write ${args}`, { stdin: content, timeoutMs: 60_000 });
  if (r.code !== 0) throw new RemoteCommandError(t.name, `writing ${path}`, r.code, r.stderr);
  const back = await readRemoteFile(t, path);
  if (back?.sha256 !== sum || back.uid !== like.uid || back.gid !== like.gid || back.mode !== like.mode) {
    throw new RemoteCommandError(t.name, `verifying ${path} after writing it (content, owner or mode differ)`, null, '');
  }
}

/** Where the backup of `path` from run `runId` lives on the node (root-only directory). */
export function backupPath(runId: string, path: string): string {
  return `/var/backups/rollout/${runId}${path}`;
}

/**
 * Copies `path` to its backup (owner, mode and times kept, in a 0700 directory)
 * and checks the copy's checksum against what the plan read.
 */
export async function backupFile(t: Transport, runId: string, path: string, expectedSha256: string): Promise<string> {
  const dst = backupPath(runId, path);
  const d = shellQuote(dst);
  const r = await t.exec(
    `set -eu; umask 077; mkdir -p -- /var/backups/rollout && chmod 0700 /var/backups/rollout; mkdir -p -- "$(dirname -- ${d})"; cp -p -- ${shellQuote(path)} ${d}; sync -- ${d}; sha256sum -- ${d}`,
  );
  if (r.code !== 0) throw new RemoteCommandError(t.name, `backing up ${path}`, r.code, r.stderr);
  const sum = r.stdout.toString('utf8').split(' ')[0];
  if (sum !== expectedSha256) {
    throw new RemoteCommandError(t.name, `backing up ${path}: the file changed since the plan read it`, null, '');
  }
  return dst;
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
