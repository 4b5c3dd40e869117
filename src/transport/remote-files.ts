// File operations on a node, each one remote command: the content travels on
// stdin or stdout, never on a command line, so `ps` on the node shows no secret.
import { randomBytes } from 'node:crypto';
import { NodeError, RemoteCommandError } from '../errors.js';
import { shellQuote } from '../util/shell-quote.js';
import { sha256 } from '../util/sha256.js';
import type { Transport } from './transport.js';
import { LOCK_TAKE_SCRIPT, parseLockTake, type LockAttempt } from '../rollout/lock.js';

/** Owner and mode of a directory above a file read (see RemoteFile.dirs). */
export type DirStat = { path: string; uid: number; gid: number; mode: number };

/**
 * A regular file as read from a node: bytes plus the owner and mode to keep
 * when it is rewritten. `path` is the path asked for; `target`, where it
 * really leads when a symlink is along it (readlink -f): the file read, and
 * the one to write. `dirs`: owner and mode of every directory above the file
 * up to `/`, nearest first, then of those above the symlink itself. Readers
 * that do not collect them (test fixtures) leave `target` and `dirs` out.
 */
export type RemoteFile = { path: string; target?: string; content: Buffer; sha256: string; uid: number; gid: number; mode: number; dirs?: DirStat[] };

/** The largest file rollout reads (a config or env file is a few KiB); a larger one is refused, never read. */
export const MAX_FILE_BYTES = 1024 * 1024;

/** A path that exists on a node but is not read: not a regular file, too large, or a symlink that does not resolve. */
export class UnreadableFileError extends NodeError {
  override name = 'UnreadableFileError';
  readonly path: string;
  /** What is wrong, to follow the path in a sentence ("is a FIFO, not a regular file; ..."). */
  readonly reason: string;
  constructor(node: string, path: string, reason: string) {
    super(node, `${path} ${reason}`);
    this.path = path;
    this.reason = reason;
  }
}

/**
 * Reads a whole file with its owner and mode in one command; null when it
 * does not exist. Throws UnreadableFileError for anything but a regular file
 * of at most MAX_FILE_BYTES.
 */
export async function readRemoteFile(t: Transport, path: string): Promise<RemoteFile | null> {
  return (await readRemoteFiles(t, [path])).get(path) ?? null;
}

/**
 * Reads several whole files in one command: for each path the file with its
 * owner and mode, or null when it does not exist. Throws UnreadableFileError
 * for the first path that is not a regular file of at most MAX_FILE_BYTES.
 * Two processes on the node besides the shell whatever the number of files
 * (stat, head), one more per path with a symlink along it (readlink).
 */
export async function readRemoteFiles(t: Transport, paths: readonly string[]): Promise<Map<string, RemoteFile | null>> {
  const files = new Map<string, RemoteFile | null>();
  for (const [p, f] of (await readFilesCommand(t, paths)).files) {
    if (f instanceof Error) throw f;
    files.set(p, f);
  }
  return files;
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

// Reads files in one command, opening nothing but regular files. Arguments:
// the size cap in bytes, then the paths (absolute, no newline). Prints, in order:
//   @real I PATH   the I-th path (from 1) has a symlink along it and leads to PATH (readlink -f)
//   @bad I         the I-th path is not absolute, or has a symlink along it that does not resolve
//   TYPEMODE SIZE UID GID NAME   (stat; TYPEMODE is st_mode in hex) for each file
//                  that exists, by its real path, then for every directory above
//                  it up to /, and above the symlink itself
//   @read NAME     each regular file within the cap, in the order its bytes follow
//   @data          then those bytes, at most cap + 1 of each: a file that grew
//                  since stat is noticed by its length, never followed further
// A path without a symlink along it costs no process of its own (shell
// builtins); a FIFO, a device or a directory is stat'ed, never opened.
const READ_SCRIPT = `max=$1; shift
nl='
'
files= dirs= i=0
# Adds $1 and every directory above it to $dirs, once (one already there has its own above it).
above() {
  d=$1
  while :; do
    case "$nl$dirs$nl" in *"$nl\${d:-/}$nl"*) return;; esac
    dirs=$dirs$nl\${d:-/}
    [ -n "$d" ] || return
    d=\${d%/*}
  done
}
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
    d=\${d%/*}
  done
  [ -e "$r" ] || continue
  case "$nl$files$nl" in *"$nl$r$nl"*) ;; *) files=$files$nl$r;; esac
  above "\${r%/*}"
  [ "$r" = "$p" ] || above "\${p%/*}"
done
[ -n "$files" ] || { echo @data; exit 0; }
st=$(set -f; IFS=$nl; exec stat -L -c '%f %s %u %g %n' -- $files $dirs) || exit 1
printf '%s\\n' "$st"
reads=
while IFS=' ' read -r t s u g n; do
  case "$nl$files$nl" in *"$nl$n$nl"*) ;; *) continue;; esac
  case "$nl$reads$nl" in *"$nl$n$nl"*) continue;; esac
  # 0xF000 masks the file type; 0x8000 (32768) is a regular file.
  [ $((0x$t & 0xF000)) = 32768 ] && [ "$s" -le "$max" ] || continue
  reads=$reads$nl$n
  echo "@read $n"
done <<EOF
$st
EOF
echo @data
[ -z "$reads" ] || (set -f; IFS=$nl; exec head -q -c $((max + 1)) -- $reads)`;

/** How long one read may take on a node (apply's lock and node checks run in the same command). */
const READ_TIMEOUT_MS = 60_000;

const FILE_TYPES: Record<number, string> = { 0o010000: 'FIFO', 0o020000: 'character device', 0o040000: 'directory', 0o060000: 'block device', 0o140000: 'socket' };

/** Pure. The directory of an absolute `path` and every one above it up to `/`, nearest first. */
export function dirsAbove(path: string): string[] {
  const out: string[] = [];
  let d = path.slice(0, path.lastIndexOf('/'));
  for (;;) {
    out.push(d || '/');
    if (!d) return out;
    d = d.slice(0, d.lastIndexOf('/'));
  }
}

type ReadAnswer = { files: Map<string, RemoteFile | null | UnreadableFileError>; lock: LockAttempt | null; checks: string | null };

async function readFilesCommand(t: Transport, paths: readonly string[], first?: FirstRead): Promise<ReadAnswer> {
  const odd = paths.find((p) => p.includes('\n'));
  if (odd !== undefined) throw new NodeError(t.name, `cannot read ${JSON.stringify(odd)}: a path with a newline`);
  const lock = first?.lock ?? null;
  const script = `${lock === null ? '' : `${LOCK_TAKE_SCRIPT}\n`}${first?.checks ? `${first.checks}\n` : ''}${READ_SCRIPT}`;
  // The lock record names the run: it travels on stdin, never in `ps`.
  const stdin = lock === null ? undefined : Buffer.from(`${lock}\n`);
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
  const args = [String(MAX_FILE_BYTES), ...paths].map(shellQuote).join(' ');
  const r = await t.exec(`sh -c ${shellQuote(script)} rollout-read ${args}`, { onStdout, timeoutMs: READ_TIMEOUT_MS, ...(stdin ? { stdin } : {}) });
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
  return { files: parseRead(t.name, paths, stdout, r), lock: attempt, checks };
}

// READ_SCRIPT's answer (after the lock line and the checks) as one entry per path asked.
function parseRead(node: string, paths: readonly string[], stdout: Buffer, r: { code: number | null; stderr: string }): ReadAnswer['files'] {
  const unexpected = () => new RemoteCommandError(node, `reading ${paths.join(', ')}: unexpected answer`, r.code, r.stderr);
  // An answer with no header at all (a node that prints nothing here) has no file either.
  if (stdout.length === 0) return new Map(paths.map((p) => [p, null]));
  const atStart = stdout.subarray(0, 6).toString('latin1') === '@data\n';
  const marker = atStart ? 0 : stdout.indexOf('\n@data\n') + 1;
  if (marker === 0 && !atStart) throw unexpected();
  const real = new Map<number, string>();
  const bad = new Set<number>();
  const stats = new Map<string, { type: number; mode: number; size: number; uid: number; gid: number }>();
  const reads: string[] = [];
  const header = stdout.subarray(0, marker).toString('utf8');
  for (const line of header === '' ? [] : header.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^@real (\d+) (\/.*)$/.exec(line))) real.set(Number(m[1]) - 1, m[2]!);
    else if ((m = /^@bad (\d+)$/.exec(line))) bad.add(Number(m[1]) - 1);
    else if (line.startsWith('@read ')) reads.push(line.slice(6));
    else if ((m = /^([0-9a-f]+) (\d+) (\d+) (\d+) (.*)$/.exec(line))) {
      const raw = parseInt(m[1]!, 16);
      stats.set(m[5]!, { type: raw & 0o170000, mode: raw & 0o7777, size: Number(m[2]), uid: Number(m[3]), gid: Number(m[4]) });
    } else throw unexpected();
  }
  // The bytes follow in @read order; a file whose size changed since stat would shift every boundary: refuse rather than guess.
  const contents = new Map<string, Buffer>();
  let offset = marker + 6;
  for (const name of reads) {
    const size = stats.get(name)?.size;
    if (size === undefined || size > MAX_FILE_BYTES) throw unexpected();
    contents.set(name, stdout.subarray(offset, offset + size));
    offset += size;
  }
  if (offset !== stdout.length) throw new RemoteCommandError(node, `reading ${paths.join(', ')}: a file changed while it was read; try again`, null, '');

  const out: ReadAnswer['files'] = new Map();
  for (const [i, path] of paths.entries()) {
    const fail = (reason: string) => out.set(path, new UnreadableFileError(node, path, reason));
    if (bad.has(i)) {
      fail(path.startsWith('/') ? 'has a symlink along it that does not resolve (a loop, or a missing directory)' : 'is not an absolute path');
      continue;
    }
    const target = real.get(i) ?? path;
    const st = stats.get(target);
    if (!st) {
      out.set(path, null);
      continue;
    }
    const via = target === path ? '' : `(a symlink to ${target}) `;
    if (st.type !== 0o100000) {
      fail(`${via}is a ${FILE_TYPES[st.type] ?? 'special file'}, not a regular file; rollout reads and writes regular files only`);
      continue;
    }
    if (st.size > MAX_FILE_BYTES) {
      fail(`${via}is ${st.size} bytes; rollout reads files of up to ${MAX_FILE_BYTES / 1024 / 1024} MiB (a config or env file is a few KiB)`);
      continue;
    }
    const content = contents.get(target);
    if (!content) throw unexpected();
    const dirs: DirStat[] = [];
    for (const d of [...dirsAbove(target), ...(target === path ? [] : dirsAbove(path))]) {
      if (dirs.some((x) => x.path === d)) continue;
      const ds = stats.get(d);
      if (!ds) throw new RemoteCommandError(node, `reading ${paths.join(', ')}: ${d} vanished while it was read; try again`, null, '');
      dirs.push({ path: d, uid: ds.uid, gid: ds.gid, mode: ds.mode });
    }
    out.set(path, { path, ...(target === path ? {} : { target }), content, sha256: sha256(content), uid: st.uid, gid: st.gid, mode: st.mode, dirs });
  }
  return out;
}

/**
 * A reader that gathers the paths asked for in the same tick and reads them in
 * one command (planning asks for every known path at once). Its first command
 * also does what `first` asks (the lock, the node checks) and tells `onFirst`.
 * A path that cannot be read (UnreadableFileError) rejects its own promise only.
 */
export function batchedReader(t: Transport, first?: FirstRead): (path: string) => Promise<RemoteFile | null> {
  type Waiter = { resolve: (f: RemoteFile | null) => void; reject: (e: unknown) => void };
  let batch: Map<string, Waiter[]> | null = null;
  let pending = first;
  return (path) =>
    new Promise((resolve, reject) => {
      // A path the command cannot carry is refused alone, not with the whole batch.
      if (path.includes('\n') || !path.startsWith('/')) {
        reject(new UnreadableFileError(t.name, JSON.stringify(path), path.includes('\n') ? 'holds a newline' : 'is not an absolute path'));
        return;
      }
      if (!batch) {
        const mine = new Map<string, Waiter[]>();
        batch = mine;
        const now = pending;
        pending = undefined;
        queueMicrotask(() => {
          batch = null;
          readFilesCommand(t, [...mine.keys()], now).then(
            (r) => {
              now?.onFirst({ lock: r.lock, checks: r.checks });
              mine.forEach((ws, p) => {
                const f = r.files.get(p) ?? null;
                ws.forEach((w) => (f instanceof Error ? w.reject(f) : w.resolve(f)));
              });
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

// Puts a backup back in place: a copy beside the target (mktemp: created
// exclusively), then, right before the rename, the target's checksum compared
// with what the caller last saw there (`-`: any), so an edit made since is
// never overwritten (`@changed`). A target that already holds the backup's
// content is left alone (`@already`). The request comes on stdin: backup,
// target, the backup's sha256, the expected sha256 of the target, a line each.
const RESTORE_SCRIPT = `IFS= read -r b; IFS= read -r p; IFS= read -r old; IFS= read -r expect
tmp=$(mktemp -- "\${p%/*}/.rollout-tmp.XXXXXXXXXX") || exit 1
trap 'rm -f -- "$tmp"' EXIT
cp -p -- "$b" "$tmp" && sync -- "$tmp" || exit 1
now=$(sha256sum -- "$p" 2>/dev/null) || now=missing; now=\${now%% *}
[ "$now" != "$old" ] || { echo @already; exit 0; }
[ "$expect" = - ] || [ "$now" = "$expect" ] || { echo @changed; exit 0; }
mv -f -T -- "$tmp" "$p" || exit 1
trap - EXIT
sync -- "\${p%/*}" || exit 1
sha256sum -- "$p"`;

/**
 * Puts a backup back in place atomically, unless the file changed since the
 * caller saw `expectSha256` there (null: restore whatever it holds now).
 * `already` when it holds the backup's content; throws when the file changed
 * (nothing overwritten) or the restore failed.
 */
export async function restoreFile(t: Transport, file: { backup: string; path: string; beforeSha256: string }, expectSha256: string | null): Promise<'restored' | 'already'> {
  const request = [file.backup, file.path, file.beforeSha256, expectSha256 ?? '-'];
  if (request.some((l) => l.includes('\n'))) throw new Error(`cannot restore ${JSON.stringify(file.path)}: a path with a newline`);
  const r = await t.exec(`sh -c ${shellQuote(RESTORE_SCRIPT)} rollout-restore`, { stdin: Buffer.from(`${request.join('\n')}\n`), timeoutMs: 60_000 });
  const out = r.stdout.toString('utf8');
  if (r.code === 0 && out === '@already\n') return 'already';
  if (r.code === 0 && out === '@changed\n') {
    throw new RemoteCommandError(t.name, `restoring ${file.path}: it changed since rollout last read it, so the backup was not put back (that edit would be lost)`, null, '');
  }
  if (r.code !== 0) throw new RemoteCommandError(t.name, `restoring ${file.path} from ${file.backup}`, r.code, r.stderr);
  if (out.split(' ')[0] !== file.beforeSha256) {
    throw new RemoteCommandError(t.name, `restoring ${file.path}: restored content does not match the backup taken`, null, '');
  }
  return 'restored';
}

/**
 * Where a planned file's new content waits, beside it (same file system, so the
 * move is atomic). `stageKey` is random per run and never on a command line, so
 * nobody on the node can know the name before staging creates it.
 */
export function stagedPath(stageKey: string, path: string): string {
  const slash = path.lastIndexOf('/');
  return `${path.slice(0, slash + 1)}.rollout-staged.${stageKey}.${path.slice(slash + 1)}`;
}

/** Pure. A fresh, unguessable stage key (see stagedPath). */
export function newStageKey(): string {
  return randomBytes(12).toString('hex');
}

// Everything about a node's planned changes that can be done without touching
// the files, in one command (one round trip), for all nodes at once before the
// first restart. The request comes on stdin (nothing of it in `ps`): a count,
// then 9 lines per file (target, sha256 before and after, size, owner, umask,
// mode, backup, staged copy), then the new contents one after another. Per
// file: staged copies of earlier runs removed as names (rm never follows a
// link); the staged copy created exclusively by dd (O_EXCL: whatever already
// stands at its name, a planted link included, makes staging fail) with the
// new bytes, `dd iflag=fullblock` reading exactly their size so the next
// file's bytes stay on stdin; the file backed up (owner, mode, times kept;
// 0700 directory). Then every backup and staged copy checksummed at once: a
// file that held neither the old nor the new content is `@stale`, one already
// new `@already` (nothing kept of either); a staged copy is given its owner
// where it does not have it already (a set-group-id directory gives a new file
// its group). Then one fsync of every backup and staged copy. The targets are
// not touched: moving a staged copy into place is the one step left for the
// node's turn.
export const STAGE_SCRIPT = `set -u
IFS= read -r n || { echo "@error no staging request"; exit 1; }
set --; i=0
while [ $i -lt $((n * 9)) ]; do
  IFS= read -r a || { echo "@error the staging request ended early"; exit 1; }
  set -- "$@" "$a"; i=$((i + 1))
done
umask 077
nl='
'
# The effective uid and gid, from the shell's own status (no process).
while read -r k r e _; do case $k in Uid:) euid=$e;; Gid:) egid=$e; break;; esac; done < /proc/self/status
# Backups hold secrets: their root must be root's own directory, never a link another user planted.
r=${BACKUP_ROOT}
if [ -e "$r" ] || [ -L "$r" ]; then
  [ -d "$r" ] && [ ! -L "$r" ] && [ -O "$r" ] || { echo "@error $r is not a directory of this user's own (a link, or another user's): refusing to keep backups there"; exit 1; }
fi
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
  if [ -L "$staged" ] || [ ! -f "$staged" ]; then echo "@error the staged copy of $dst is not a regular file"; exit 1; fi
  if [ "$owner" != "$euid:$egid" ] || [ ! -O "$staged" ] || [ ! -G "$staged" ]; then
    chown -h -- "$owner" "$staged" || { echo "@error cannot give the staged copy of $dst its owner"; exit 1; }
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
  const r = await t.exec(`sh -c ${shellQuote(STAGE_SCRIPT)} rollout-stage`, { stdin: stageRequest(items), timeoutMs: 60_000 });
  return stageResults(t.name, items, r.stdout.toString('utf8').split('\n'), r.code, r.stderr);
}

/** Pure. STAGE_SCRIPT's stdin for these items: the count, 9 lines per file, then the new contents one after another. */
export function stageRequest(items: readonly StageItem[]): Buffer {
  const odd = items.flatMap((i) => [i.change.path, i.backup, i.staged]).find((p) => p.includes('\n'));
  if (odd !== undefined) throw new Error(`cannot stage ${JSON.stringify(odd)}: a path with a newline`);
  const contents = items.map((i) => Buffer.from(i.change.after, 'utf8'));
  const lines = [String(items.length)];
  items.forEach(({ change: c, backup, staged }, k) => {
    const mode = c.mode & 0o7777;
    // A file created under a umask gets at most 0666: other modes need a chmod.
    const byUmask = (mode & ~0o666) === 0;
    lines.push(c.path, c.beforeSha256, c.afterSha256, String(contents[k]!.length), `${c.uid}:${c.gid}`, byUmask ? (~mode & 0o777).toString(8).padStart(3, '0') : '077', byUmask ? '-' : mode.toString(8), backup, staged);
  });
  return Buffer.concat([Buffer.from(`${lines.join('\n')}\n`), ...contents]);
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
