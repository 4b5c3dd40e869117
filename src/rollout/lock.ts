// A lock on every node of the fleet, so two rollouts never run at once. The lock
// is a file in /run (tmpfs: a reboot clears it) holding who took it and when.
import { hostname, userInfo } from 'node:os';
import { LockHeldError, RemoteCommandError } from '../errors.js';
import type { Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import { AGENT, LOCK_FILE } from '../agent/scripts.js';

/** Who holds a node's lock. */
export type LockInfo = { runId: string; user: string; host: string; pid: number; startedAt: string; inventory: string };

/** Where a node's lock lives. */
export { LOCK_FILE };

/** This process as a lock holder. */
export function lockHolder(runId: string, inventory: string): LockInfo {
  return { runId, user: userInfo().username, host: hostname(), pid: process.pid, startedAt: new Date().toISOString(), inventory };
}

/** Pure. A lock file's text as its holder; null when empty. */
export function parseLock(text: string): LockInfo | null {
  if (!text.trim()) return null;
  try {
    return JSON.parse(text) as LockInfo;
  } catch {
    return { runId: 'unreadable', user: '?', host: '?', pid: 0, startedAt: new Date(0).toISOString(), inventory: '?' };
  }
}

/** What taking a node's lock found: taken, or held (the lock file's first line). */
export type LockAttempt = { taken: true } | { taken: false; holder: string };

/** Pure. The lock verb's line (src/agent/lock.sh); null when it is not one. */
export function parseLockTake(line: string): LockAttempt | null {
  if (line === '@lock taken') return { taken: true };
  return line.startsWith('@lock held') ? { taken: false, holder: line.replace(/^@lock held ?/, '') } : null;
}

/** Tries to take a node's lock in one command; a command that did not answer (sudo refused, say) holds nothing and shows no holder. */
export async function takeLock(t: Transport, info: LockInfo): Promise<LockAttempt> {
  const r = await t.exec(`sh -c ${shellQuote(AGENT.lock)} rollout-lock`, { stdin: Buffer.from(`${JSON.stringify(info)}\n`), timeoutMs: 30_000 });
  return parseLockTake(r.stdout.toString('utf8').split('\n')[0] ?? '') ?? { taken: false, holder: '' };
}

// Takes over a lock judged gone or stale (--break-lock) or this run's own (--resume).
async function replaceLock(t: Transport, info: LockInfo): Promise<void> {
  await t.exec(`sh -c ${shellQuote(AGENT.relock)} rollout-lock`, { stdin: Buffer.from(JSON.stringify(info)), timeoutMs: 30_000 });
}

/** The options of a release (src/agent/release.sh). `pruneKeep`: the newest backup runs kept (0: none); none pruned when absent. */
export type ReleaseOptions = { remove?: readonly string[]; pruneKeep?: number };

/** Pure. The release verb's `keep` line: `-` (no pruning) or how many backup runs stay. */
export function keepOf(opts: ReleaseOptions): string {
  return opts.pruneKeep === undefined ? '-' : String(Math.max(0, Math.floor(opts.pruneKeep)));
}

/** Pure. The release verb's stdin: the run id, the backups to keep, the count and the paths to remove, a line each. */
export function releaseRequest(runId: string, opts: ReleaseOptions): string {
  const lines = [runId, keepOf(opts), String(opts.remove?.length ?? 0), ...(opts.remove ?? [])];
  const odd = lines.find((l) => l.includes('\n'));
  if (odd !== undefined) throw new Error(`cannot remove ${JSON.stringify(odd)}: a path with a newline`);
  return `${lines.join('\n')}\n`;
}

/** Removes a node's lock if `runId` holds it, with what must not outlive it (src/agent/release.sh), in one command; returns the backup runs pruned. */
export async function releaseLock(t: Transport, runId: string, opts: ReleaseOptions = {}): Promise<string[]> {
  const r = await t.exec(`sh -c ${shellQuote(AGENT.release)} rollout-release`, { stdin: Buffer.from(releaseRequest(runId, opts)), timeoutMs: 60_000 });
  if (r.code !== 0) throw new RemoteCommandError(t.name, 'releasing the lock', r.code, r.stderr);
  return r.stdout.toString('utf8').split('\n').filter((l) => l.startsWith('@pruned ')).map((l) => l.slice(8));
}

/**
 * Pure. How a held lock should be treated: `mine` (this run's own, its process
 * gone: a resume takes it over), `gone` (holder's process provably dead on this
 * host), `stale` (older than the setting, holder elsewhere), or `live`.
 */
export function judgeLock(holder: LockInfo, me: LockInfo, staleMs: number, now: number, pidAlive: (pid: number) => boolean): 'mine' | 'gone' | 'stale' | 'live' {
  const sameHost = holder.host === me.host;
  const gone = sameHost && (holder.pid === me.pid || !pidAlive(holder.pid));
  if (holder.runId === me.runId && gone) return 'mine';
  if (gone) return 'gone';
  return !sameHost && now - Date.parse(holder.startedAt) > staleMs ? 'stale' : 'live';
}

function describe(node: string, h: LockInfo): string {
  return `${node} is locked by run ${h.runId} of ${h.user}@${h.host} (pid ${h.pid}, since ${h.startedAt}, inventory ${h.inventory})`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the lock on every node or on none: a node held by a live run refuses the
 * whole fleet; a stale lock (older than `staleMs`, holder gone) needs `breakLock`.
 * `tried`: what takeLock already found on some nodes (each node's chain in the
 * session takes it before reading); those are not asked again.
 */
export async function lockFleet(transports: readonly Transport[], me: LockInfo, opts: { staleMs: number; breakLock: boolean }, tried?: ReadonlyMap<string, LockAttempt>): Promise<void> {
  const taken: Transport[] = [];
  const refused: string[] = [];
  await Promise.all(
    transports.map(async (t) => {
      const first = tried?.get(t.name) ?? (await takeLock(t, me));
      if (first.taken) return void taken.push(t);
      const holder = parseLock(first.holder);
      if (!holder) {
        if ((await takeLock(t, me)).taken) return void taken.push(t);
        return void refused.push(`${t.name}: the lock changed hands while rollout looked at it; try again`);
      }
      const verdict = judgeLock(holder, me, opts.staleMs, Date.now(), pidAlive);
      if (verdict === 'mine' || ((verdict === 'stale' || verdict === 'gone') && opts.breakLock)) {
        await replaceLock(t, me);
        return void taken.push(t);
      }
      refused.push(
        verdict === 'gone'
          ? `${describe(t.name, holder)}; that process is gone: continue its run with \`rollout apply ${holder.inventory} --resume\`, or take the lock with --break-lock`
          : verdict === 'stale'
            ? `${describe(t.name, holder)}; it is older than ${Math.round(opts.staleMs / 60000)} min and its host cannot be asked: if that run is really gone, run again with --break-lock`
            : `${describe(t.name, holder)}; wait for it to finish`,
      );
    }),
  );
  if (refused.length > 0) {
    await Promise.all(taken.map((t) => releaseLock(t, me.runId)));
    throw new LockHeldError(`another rollout holds this fleet, nothing was changed:\n${refused.sort().map((r) => `  - ${r}`).join('\n')}`);
  }
}
