// File operations on a node, each one remote command: the content travels on
// stdin or stdout, never on a command line, so `ps` on the node shows no secret.
import { RemoteCommandError } from '../errors.js';
import { shellQuote } from '../util/shell-quote.js';
import { sha256 } from '../util/sha256.js';
import type { Transport } from './transport.js';
import { LOCK_TAKE_SCRIPT, parseLockTake, type LockAttempt } from '../rollout/lock.js';

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
  return (await readFilesCommand(t, paths)).files;
}

/**
 * What a node's first read may also do, in the same command (apply: no session
 * of their own): take the fleet lock (`lock`, the record to write), then run
 * `checks` (a snippet printing an `@checks-begin`..`@checks-end` block, see
 * nodeCheckScript), before the files are read.
 */
export type FirstRead = {
  lock?: string;
  checks?: string;
  /** As soon as the lock line arrives (the checks and the reads go on). */
  onLock?: (attempt: LockAttempt) => void;
  onFirst: (r: { lock: LockAttempt | null; checks: string | null }) => void;
};

async function readFilesCommand(t: Transport, paths: readonly string[], first?: FirstRead): Promise<{ files: Map<string, RemoteFile | null>; lock: LockAttempt | null; checks: string | null }> {
  const lock = first?.lock ?? null;
  const script = `${lock === null ? '' : `${LOCK_TAKE_SCRIPT}\n`}${first?.checks ? `${first.checks}\n` : ''}n=$#; for p do [ ! -e "$p" ] || set -- "$@" "$p"; done; shift $n
[ $# = 0 ] || { stat -L -c '%u %g %a %s %n' -- "$@" && echo @data && cat -- "$@"; }`;
  const args = lock === null ? paths : [lock, ...paths];
  // The lock line is told as soon as it arrives, whatever the rest takes.
  let head: Buffer | null = lock === null || !first?.onLock ? null : Buffer.alloc(0);
  const onStdout = (chunk: Buffer) => {
    if (head === null) return;
    head = Buffer.concat([head, chunk]);
    const eol = head.indexOf(0x0a);
    if (eol < 0) return;
    const attempt = parseLockTake(head.subarray(0, eol).toString('utf8'));
    head = null;
    if (attempt) first?.onLock?.(attempt);
  };
  const r = await t.exec(`sh -c ${shellQuote(script)} rollout-read ${args.map(shellQuote).join(' ')}`, { onStdout });
  if (r.code !== 0) throw new RemoteCommandError(t.name, `reading ${paths.join(', ')}`, r.code, r.stderr);
  let stdout = r.stdout;
  let attempt: LockAttempt | null = null;
  if (lock !== null) {
    const eol = stdout.indexOf('\n');
    attempt = eol < 0 ? null : parseLockTake(stdout.subarray(0, eol).toString('utf8'));
    if (!attempt) throw new RemoteCommandError(t.name, 'taking the lock: unexpected answer', r.code, r.stderr);
    stdout = stdout.subarray(eol + 1);
  }
  let checks: string | null = null;
  if (first?.checks) {
    const end = stdout.indexOf('@checks-end\n');
    if (end < 0) throw new RemoteCommandError(t.name, 'checking the node: unexpected answer', r.code, r.stderr);
    checks = stdout.subarray(0, end + 12).toString('utf8');
    stdout = stdout.subarray(end + 12);
  }
  const out = new Map<string, RemoteFile | null>(paths.map((p) => [p, null]));
  if (stdout.length === 0) return { files: out, lock: attempt, checks };
  const marker = stdout.indexOf('\n@data\n');
  if (marker < 0) throw new RemoteCommandError(t.name, `reading ${paths.join(', ')}: unexpected answer`, r.code, r.stderr);
  let offset = marker + 7;
  for (const line of stdout.subarray(0, marker).toString('utf8').split('\n')) {
    const [uid, gid, mode, size] = line.split(' ', 4);
    const path = line.split(' ').slice(4).join(' ');
    const content = stdout.subarray(offset, offset + Number(size));
    offset += Number(size);
    out.set(path, { path, content, sha256: sha256(content), uid: Number(uid), gid: Number(gid), mode: parseInt(mode ?? '', 8) });
  }
  // A file that changed size between stat and cat would shift every boundary: refuse rather than guess.
  if (offset !== stdout.length) throw new RemoteCommandError(t.name, `reading ${paths.join(', ')}: a file changed while it was read; try again`, null, '');
  return { files: out, lock: attempt, checks };
}

/**
 * A reader that gathers the paths asked for in the same tick and reads them in
 * one command (planning asks for every known path at once). Its first command
 * also does what `first` asks (the lock, the node checks) and tells `onFirst`.
 */
export function batchedReader(t: Transport, first?: FirstRead): (path: string) => Promise<RemoteFile | null> {
  let batch: Map<string, Array<{ resolve: (f: RemoteFile | null) => void; reject: (e: unknown) => void }>> | null = null;
  let pending = first;
  return (path) =>
    new Promise((resolve, reject) => {
      if (!batch) {
        const mine = new Map<string, Array<{ resolve: (f: RemoteFile | null) => void; reject: (e: unknown) => void }>>();
        batch = mine;
        const now = pending;
        pending = undefined;
        queueMicrotask(() => {
          batch = null;
          readFilesCommand(t, [...mine.keys()], now).then(
            (r) => {
              now?.onFirst({ lock: r.lock, checks: r.checks });
              mine.forEach((ws, p) => ws.forEach((w) => w.resolve(r.files.get(p) ?? null)));
            },
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

// Everything about a node's planned changes that can be done without touching
// the files, in one command (one round trip), for all nodes at once before the
// first restart. Per file: staged copies of earlier runs of it removed (the
// fleet lock means no other run is using them); the new bytes read from stdin
// (`dd iflag=fullblock` reads exactly their size, so the next file's bytes
// stay on stdin) into the staged copy beside it, created with the planned mode
// where a umask can give it; the file backed up (owner, mode, times kept; 0700
// directory). Then every backup and staged copy checksummed at once: a file
// that held neither the old nor the new content is `@stale`, one already new
// `@already` (nothing kept of either); a staged copy is given its owner where
// it does not have it already (a set-group-id directory gives a new file its
// group). Then one fsync of every backup and staged copy. The targets are not
// touched: moving a staged copy into place is the one step left for the
// node's turn. Each process costs a node 5-30 ms: two a file (dd, cp), then a
// mkdir, a sha256sum and a sync a node. Arguments: the count, then 9 per file
// (paths without a newline: lists of them are split on newlines).
export const STAGE_SCRIPT = `set -u
n=$1; shift
umask 077
nl='
'
# The effective uid and gid, from the shell's own status (no process).
while read -r k r e _; do case $k in Uid:) euid=$e;; Gid:) egid=$e; break;; esac; done < /proc/self/status
# Every missing backup directory in one mkdir (0700 by the umask, the backup root too).
dirs=; k=0
for a do
  k=$((k + 1)); d=\${a%/*}
  if [ $((k % 9)) = 8 ] && [ ! -d "$d" ]; then case "$nl$dirs$nl" in *"$nl$d$nl"*) ;; *) dirs=$dirs\${dirs:+$nl}$d;; esac; fi
done
[ -z "$dirs" ] || (set -f; IFS=$nl; exec mkdir -p -- $dirs) || { echo "@error cannot make the backup directory"; exit 1; }
# Each staged copy written and each file backed up; the arguments come round again for the next pass.
sums=; i=0
while [ $i -lt $n ]; do
  dst=$1 before=$2 after=$3 size=$4 owner=$5 mask=$6 mode=$7 bak=$8 staged=$9; shift 9; i=$((i + 1))
  set -- "$@" "$dst" "$before" "$after" "$size" "$owner" "$mask" "$mode" "$bak" "$staged"
  dir=\${dst%/*}; base=\${dst##*/}
  for old in "$dir"/.rollout-staged.*."$base"; do [ ! -e "$old" ] || rm -f -- "$old"; done
  if [ "$size" = 0 ]; then (umask "$mask"; : > "$staged"); else (umask "$mask"; exec dd of="$staged" bs="$size" count=1 iflag=fullblock status=none); fi ||
    { echo "@error cannot write the staged copy of $dst"; exit 1; }
  if [ -e "$dst" ]; then
    cp -p -- "$dst" "$bak" || { echo "@error cannot back up $dst"; exit 1; }
    sums=$sums$bak$nl
  elif [ -e "$bak" ]; then rm -f -- "$bak"; fi
  sums=$sums$staged$nl
done
# One sha256sum for all, its lines in argument order ("SUM  PATH"; a leading backslash when the path was escaped).
sums=$(set -f; IFS=$nl; exec sha256sum -- $sums) || { echo "@error cannot checksum the staged copies"; exit 1; }
sums=$sums$nl; files=
next() { l=\${sums%%"$nl"*}; sums=\${sums#*"$nl"}; l=\${l#\\\\}; l=\${l%% *}; }
i=0
while [ $i -lt $n ]; do
  dst=$1 before=$2 after=$3 size=$4 owner=$5 mask=$6 mode=$7 bak=$8 staged=$9; shift 9; i=$((i + 1))
  cur=missing; [ ! -e "$bak" ] || { next; cur=$l; }
  next; new=$l
  if [ "$cur" = "$after" ]; then rm -f -- "$bak" "$staged"; echo @already; continue; fi
  if [ "$cur" != "$before" ]; then rm -f -- "$bak" "$staged"; echo @stale; continue; fi
  [ "$new" = "$after" ] || { echo "@error the new content of $dst arrived incomplete"; exit 1; }
  if [ "$owner" != "$euid:$egid" ] || [ ! -O "$staged" ] || [ ! -G "$staged" ]; then
    chown -- "$owner" "$staged" || { echo "@error cannot give the staged copy of $dst its owner"; exit 1; }
  fi
  [ "$mode" = - ] || chmod -- "$mode" "$staged" || { echo "@error cannot give the staged copy of $dst its mode"; exit 1; }
  files=$files\${files:+$nl}$bak$nl$staged
  echo @staged
done
[ -z "$files" ] || (set -f; IFS=$nl; exec sync -- $files) || { echo "@error fsync failed"; exit 1; }
echo @done`;

/** What staging found or did for one file. */
export type StageResult = 'staged' | 'already' | 'stale';

/** A planned change to stage: the file, its new content, and where its backup and staged copy go. */
export type StageItem = {
  change: { path: string; after: string; beforeSha256: string; afterSha256: string; uid: number; gid: number; mode: number };
  backup: string;
  staged: string;
};

/**
 * Backs up a node's planned files and stages their new content beside them, in
 * one command, leaving the files themselves untouched. Per file, in order:
 * `staged`; `already` when it holds the new content; `stale` when it holds
 * neither (nothing kept). Throws when a copy could not be written or checked.
 */
export async function stageFiles(t: Transport, items: readonly StageItem[]): Promise<StageResult[]> {
  const { args, stdin } = stageRequest(items);
  const r = await t.exec(`sh -c ${shellQuote(STAGE_SCRIPT)} rollout-stage ${args.map(shellQuote).join(' ')}`, { stdin, timeoutMs: 60_000 });
  return stageResults(t.name, items, r.stdout.toString('utf8').split('\n'), r.code, r.stderr);
}

/** Pure. STAGE_SCRIPT's arguments and stdin (the new contents, one after another) for these items. */
export function stageRequest(items: readonly StageItem[]): { args: string[]; stdin: Buffer } {
  const odd = items.flatMap((i) => [i.change.path, i.backup, i.staged]).find((p) => p.includes('\n'));
  if (odd !== undefined) throw new Error(`cannot stage ${JSON.stringify(odd)}: a path with a newline`);
  const contents = items.map((i) => Buffer.from(i.change.after, 'utf8'));
  const args = [String(items.length)];
  items.forEach(({ change: c, backup, staged }, k) => {
    const mode = c.mode & 0o7777;
    // A file created under a umask gets at most 0666: other modes need a chmod.
    const byUmask = (mode & ~0o666) === 0;
    args.push(c.path, c.beforeSha256, c.afterSha256, String(contents[k]!.length), `${c.uid}:${c.gid}`, byUmask ? (~mode & 0o777).toString(8).padStart(3, '0') : '077', byUmask ? '-' : mode.toString(8), backup, staged);
  });
  return { args, stdin: Buffer.concat(contents) };
}

/** Pure. STAGE_SCRIPT's answer as one result per item, in order; throws when it did not complete. */
export function stageResults(node: string, items: readonly StageItem[], lines: readonly string[], code: number | null, stderr: string): StageResult[] {
  const error = lines.find((l) => l.startsWith('@error '));
  const results = lines.filter((l) => l === '@staged' || l === '@already' || l === '@stale').map((l) => l.slice(1) as StageResult);
  if (code !== 0 || error || !lines.includes('@done') || results.length !== items.length) {
    throw new RemoteCommandError(node, `staging ${items.map((i) => i.change.path).join(', ')}`, code, error ? error.slice(7) : stderr);
  }
  return results;
}
