// File operations on a node, each one remote command: the content travels on
// stdin or stdout, never on a command line, so `ps` on the node shows no secret.
import { RemoteCommandError } from '../errors.js';
import { shellQuote } from '../util/shell-quote.js';
import { sha256 } from '../util/sha256.js';
import type { Transport } from './transport.js';

/** A file as read from a node: bytes plus the owner and mode to keep when it is rewritten. */
export type RemoteFile = { path: string; content: Buffer; sha256: string; uid: number; gid: number; mode: number };

/** Reads a whole file with its owner and mode in one command; null when it does not exist. */
export async function readRemoteFile(t: Transport, path: string): Promise<RemoteFile | null> {
  return (await readRemoteFiles(t, [path])).get(path) ?? null;
}

/**
 * Reads several whole files in one command: for each path the file with its
 * owner and mode, or null when it does not exist. Two processes on the node
 * whatever the number of files (stat, cat).
 */
export async function readRemoteFiles(t: Transport, paths: readonly string[]): Promise<Map<string, RemoteFile | null>> {
  const script = `n=$#; for p do [ ! -e "$p" ] || set -- "$@" "$p"; done; shift $n
[ $# = 0 ] || { stat -L -c '%u %g %a %s %n' -- "$@" && echo @data && cat -- "$@"; }`;
  const r = await t.exec(`sh -c ${shellQuote(script)} rollout-read ${paths.map(shellQuote).join(' ')}`);
  if (r.code !== 0) throw new RemoteCommandError(t.name, `reading ${paths.join(', ')}`, r.code, r.stderr);
  const out = new Map<string, RemoteFile | null>(paths.map((p) => [p, null]));
  if (r.stdout.length === 0) return out;
  const marker = r.stdout.indexOf('\n@data\n');
  if (marker < 0) throw new RemoteCommandError(t.name, `reading ${paths.join(', ')}: unexpected answer`, r.code, r.stderr);
  let offset = marker + 7;
  for (const line of r.stdout.subarray(0, marker).toString('utf8').split('\n')) {
    const [uid, gid, mode, size] = line.split(' ', 4);
    const path = line.split(' ').slice(4).join(' ');
    const content = r.stdout.subarray(offset, offset + Number(size));
    offset += Number(size);
    out.set(path, { path, content, sha256: sha256(content), uid: Number(uid), gid: Number(gid), mode: parseInt(mode ?? '', 8) });
  }
  // A file that changed size between stat and cat would shift every boundary: refuse rather than guess.
  if (offset !== r.stdout.length) throw new RemoteCommandError(t.name, `reading ${paths.join(', ')}: a file changed while it was read; try again`, null, '');
  return out;
}

/**
 * A reader that gathers the paths asked for in the same tick and reads them in
 * one command (planning asks for every known path at once).
 */
export function batchedReader(t: Transport): (path: string) => Promise<RemoteFile | null> {
  let batch: Map<string, Array<{ resolve: (f: RemoteFile | null) => void; reject: (e: unknown) => void }>> | null = null;
  return (path) =>
    new Promise((resolve, reject) => {
      if (!batch) {
        const mine = new Map<string, Array<{ resolve: (f: RemoteFile | null) => void; reject: (e: unknown) => void }>>();
        batch = mine;
        queueMicrotask(() => {
          batch = null;
          readRemoteFiles(t, [...mine.keys()]).then(
            (files) => mine.forEach((ws, p) => ws.forEach((w) => w.resolve(files.get(p) ?? null))),
            (err) => mine.forEach((ws) => ws.forEach((w) => w.reject(err))),
          );
        });
      }
      batch.set(path, [...(batch.get(path) ?? []), { resolve, reject }]);
    });
}

/** Where every run's backups live on a node (root-only). */
export const BACKUP_ROOT = '/var/backups/rollout';

/** Where the backup of `path` from run `runId` lives on the node (root-only directory). */
export function backupPath(runId: string, path: string): string {
  return `${BACKUP_ROOT}/${runId}${path}`;
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

/** Where a planned file's new content waits, beside it (same file system, so the move is atomic). */
export function stagedPath(runId: string, path: string): string {
  const slash = path.lastIndexOf('/');
  return `${path.slice(0, slash + 1)}.rollout-staged.${runId}.${path.slice(slash + 1)}`;
}

// Everything about one planned change that can be done without touching the
// file, in one command (one round trip), for all nodes at once before the first
// restart: check the file is what the plan read, back it up (owner, mode, times
// kept; 0700 directory), and write the new bytes from stdin into the staged
// copy beside it with the planned owner and mode; both checksums checked, both
// fsynced. Staged copies of earlier runs of this file are removed first (the
// fleet lock means no other run is using them). The target is not touched:
// moving the staged copy into place is the one step left for the node's turn.
// Each process costs a node 20-30 ms, so the script forks as few as it can.
const STAGE_SCRIPT = `set -eu
dst=$1; before=$2; after=$3; owner=$4; mode=$5; bak=$6; staged=$7; root=$8
dir=\${dst%/*}; base=\${dst##*/}
for old in "$dir"/.rollout-staged.*."$base"; do [ ! -e "$old" ] || [ "$old" = "$staged" ] || rm -f -- "$old"; done
cur=missing; [ ! -e "$dst" ] || { cur=$(sha256sum -- "$dst"); cur=\${cur%% *}; }
if [ "$cur" = "$after" ]; then echo "ROLLOUT already"; exit 0; fi
if [ "$cur" != "$before" ]; then echo "ROLLOUT stale"; exit 0; fi
umask 077
[ -d "$root" ] || mkdir -p -m 0700 -- "$root"
mkdir -p -- "\${bak%/*}"
part="$staged.part"
trap 'rm -f -- "$part"' EXIT
cp -p -- "$dst" "$bak"
cat > "$part"
sums=$(sha256sum -- "$bak" "$part")
[ "\${sums%% *}" = "$before" ] || { echo "backup does not match the file" >&2; exit 3; }
sums=\${sums#*
}
[ "\${sums%% *}" = "$after" ] || { echo "content arrived incomplete" >&2; exit 3; }
chown -- "$owner" "$part"
chmod -- "$mode" "$part"
sync -- "$bak" "$part"
mv -f -- "$part" "$staged"
trap - EXIT
echo "ROLLOUT staged"`;

/** What stageFileChange found or did. */
export type StageResult = 'staged' | 'already' | 'stale';

/**
 * Backs up a planned file and stages its new content beside it, in one command,
 * leaving the file itself untouched: `already` when it holds the new content,
 * `stale` when it holds neither (nothing done).
 */
export async function stageFileChange(
  t: Transport,
  c: { path: string; after: string; beforeSha256: string; afterSha256: string; uid: number; gid: number; mode: number },
  backup: string,
  staged: string,
  backupRoot = BACKUP_ROOT,
): Promise<StageResult> {
  const args = [c.path, c.beforeSha256, c.afterSha256, `${c.uid}:${c.gid}`, c.mode.toString(8), backup, staged, backupRoot].map(shellQuote).join(' ');
  const r = await t.exec(`sh -c ${shellQuote(STAGE_SCRIPT)} rollout-stage ${args}`, { stdin: Buffer.from(c.after, 'utf8'), timeoutMs: 60_000 });
  const line = r.stdout.toString('utf8').trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !line.startsWith('ROLLOUT ')) throw new RemoteCommandError(t.name, `staging ${c.path}`, r.code, r.stderr);
  return line.slice('ROLLOUT '.length) as StageResult;
}

