// File operations on a node, each one remote command: the content travels on
// stdin or stdout, never on a command line, so `ps` on the node shows no secret.
import { randomBytes } from 'node:crypto';
import { NodeError, RemoteCommandError, UnreadableFileError } from '../errors.js';
import { shellQuote } from '../util/shell-quote.js';
import { sha256 } from '../util/sha256.js';
import type { DirStat, FileReader, NodeReader, RemoteFile } from '../plan/types.js';
import type { Transport } from '../transport/transport.js';
import { AGENT, BACKUP_ROOT } from './scripts.js';

/** The largest file rollout reads (a config or env file is a few KiB); a larger one is refused, never read. */
export const MAX_FILE_BYTES = 1024 * 1024;

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
  for (const [p, f] of await readFilesCommand(t, paths)) {
    if (f instanceof Error) throw f;
    files.set(p, f);
  }
  return files;
}

/** How long one read may take on a node. */
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

type ReadAnswer = Map<string, RemoteFile | null | UnreadableFileError>;

async function readFilesCommand(t: Transport, paths: readonly string[]): Promise<ReadAnswer> {
  const odd = paths.find((p) => p.includes('\n'));
  if (odd !== undefined) throw new NodeError(t.name, `cannot read ${JSON.stringify(odd)}: a path with a newline`);
  const args = [String(MAX_FILE_BYTES), ...paths].map(shellQuote).join(' ');
  const r = await t.exec(`sh -c ${shellQuote(AGENT.read)} rollout-read ${args}`, { timeoutMs: READ_TIMEOUT_MS });
  if (r.code !== 0) throw new RemoteCommandError(t.name, `reading ${paths.join(', ')}`, r.code, r.stderr);
  return parseRead(t.name, paths, r.stdout, r);
}

// The read verb's answer (src/agent/read.sh) as one entry per path asked.
function parseRead(node: string, paths: readonly string[], stdout: Buffer, r: { code: number | null; stderr: string }): ReadAnswer {
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

  const out: ReadAnswer = new Map();
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
 * one command (planning asks for every known path at once).
 * A path that cannot be read (UnreadableFileError) rejects its own promise only.
 */
export function batchedReader(t: Transport): FileReader {
  type Waiter = { resolve: (f: RemoteFile | null) => void; reject: (e: unknown) => void };
  let batch: Map<string, Waiter[]> | null = null;
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
        queueMicrotask(() => {
          batch = null;
          readFilesCommand(t, [...mine.keys()]).then(
            (r) => {
              mine.forEach((ws, p) => {
                const f = r.get(p) ?? null;
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
export { BACKUP_ROOT };

/** Where the backup of `path` from run `runId` lives on the node (root-only directory). */
export function backupPath(runId: string, path: string): string {
  return `${BACKUP_ROOT}/${runId}${path}`;
}

/**
 * Puts a backup back in place atomically, unless the file changed since the
 * caller saw `expectSha256` there (null: restore whatever it holds now).
 * `already` when it holds the backup's content; throws when the file changed
 * (nothing overwritten) or the restore failed.
 */
export async function restoreFile(t: Transport, file: { backup: string; path: string; beforeSha256: string }, expectSha256: string | null): Promise<'restored' | 'already'> {
  const request = [file.backup, file.path, file.beforeSha256, expectSha256 ?? '-'];
  if (request.some((l) => l.includes('\n'))) throw new Error(`cannot restore ${JSON.stringify(file.path)}: a path with a newline`);
  const r = await t.exec(`sh -c ${shellQuote(AGENT.restore)} rollout-restore`, { stdin: Buffer.from(`${request.join('\n')}\n`), timeoutMs: 60_000 });
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
  const r = await t.exec(`sh -c ${shellQuote(AGENT.stage)} rollout-stage`, { stdin: stageRequest(items), timeoutMs: 60_000 });
  return stageResults(t.name, items, r.stdout.toString('utf8').split('\n'), r.code, r.stderr);
}

/** Pure. The stage verb's stdin (src/agent/stage.sh) for these items: the count, 9 lines per file, then the new contents one after another. */
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

/** Pure. The stage verb's answer as one result per item, in order; throws when it did not complete. */
export function stageResults(node: string, items: readonly StageItem[], lines: readonly string[], code: number | null, stderr: string): StageResult[] {
  const error = lines.find((l) => l.startsWith('@error '));
  const results = lines.filter((l) => l === '@staged' || l === '@already' || l === '@stale').map((l) => l.slice(1) as StageResult);
  if (code !== 0 || error || !lines.includes('@done') || results.length !== items.length) {
    throw new RemoteCommandError(node, `staging ${items.map((i) => i.change.path).join(', ')}`, code, error ? error.slice(7) : stderr);
  }
  return results;
}

/**
 * The unit's WorkingDirectory as `systemctl show` prints it (empty when
 * unset), one command; asked only when planning meets a relative path.
 */
export async function readWorkingDirectory(t: Transport, unit: string): Promise<string> {
  const r = await t.exec(`systemctl show -p WorkingDirectory --value -- ${shellQuote(unit)}`, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new NodeError(t.name, `cannot ask systemd for ${unit}'s WorkingDirectory (exit ${r.code}: ${r.stderr.trim().split('\n').pop() ?? ''})`);
  return r.stdout.toString('utf8');
}

/** What planning reads of a node over its connection: its files (batched) and, when needed, the unit's WorkingDirectory. */
export function nodeReader(t: Transport): NodeReader {
  return { read: batchedReader(t), workingDirectory: (unit) => readWorkingDirectory(t, unit) };
}
