// A lock on every node of the fleet, so two rollouts never run at once. The lock
// is a file in /run (tmpfs: a reboot clears it) holding who took it and when.
import { hostname, userInfo } from 'node:os';
import { RemoteCommandError, RolloutError } from '../errors.js';
import type { Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';

/** Who holds a node's lock. */
export type LockInfo = { runId: string; user: string; host: string; pid: number; startedAt: string; inventory: string };

export const LOCK_FILE = '/run/rollout/lock.json';

/** Another run holds (or held) the lock of one or more nodes; nothing was changed. */
export class LockHeldError extends RolloutError {
  override name = 'LockHeldError';
}

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

/**
 * Takes a node's lock, as a shell snippet with the record on the first line
 * of its stdin (the record names the run, which stays out of `ps`): created with noclobber (O_EXCL, so of two runs exactly one wins)
 * by shell builtins. Its first line is `@lock taken` or `@lock held LINE`
 * (parseLockTake). Run alone (takeLock) or before a node's first read (see
 * batchedReader), where it costs no session of its own.
 */
export const LOCK_TAKE_SCRIPT = `umask 077; [ -d /run/rollout ] || mkdir -p /run/rollout; rec=; IFS= read -r rec
if { set -C; printf '%s\n' "$rec" > ${LOCK_FILE}; } 2>/dev/null; then echo "@lock taken"
else l=; IFS= read -r l < ${LOCK_FILE}; echo "@lock held $l"; fi
set +C`;

/** Pure. LOCK_TAKE_SCRIPT's line; null when it is not one. */
export function parseLockTake(line: string): LockAttempt | null {
  if (line === '@lock taken') return { taken: true };
  return line.startsWith('@lock held') ? { taken: false, holder: line.replace(/^@lock held ?/, '') } : null;
}

// A command that did not answer (sudo refused, say) holds nothing and shows no holder.
async function takeLock(t: Transport, info: LockInfo): Promise<LockAttempt> {
  const r = await t.exec(`sh -c ${shellQuote(LOCK_TAKE_SCRIPT)} rollout-lock`, { stdin: Buffer.from(`${JSON.stringify(info)}\n`), timeoutMs: 30_000 });
  return parseLockTake(r.stdout.toString('utf8').split('\n')[0] ?? '') ?? { taken: false, holder: '' };
}

// Takes over a lock judged gone or stale (--break-lock) or this run's own (--resume).
async function replaceLock(t: Transport, info: LockInfo): Promise<void> {
  await t.exec(`umask 077; mkdir -p /run/rollout && cat > ${LOCK_FILE}.new && mv -f ${LOCK_FILE}.new ${LOCK_FILE}`, { stdin: Buffer.from(JSON.stringify(info)), timeoutMs: 30_000 });
}

/**
 * The release as a shell snippet reading its request from stdin (see
 * releaseRequest: nothing of it in `ps`): removes the lock if run `$rid` holds
 * it, together with what must not outlive it: the paths given (this run's
 * staged copies never moved into place) and, unless `$keep` is `-`, all but
 * the newest `$keep` run directories of backups (run ids sort by time), each
 * named on a `@pruned` line. At most
 * one process: a node pays about 7 ms of CPU for each, and every node
 * releases at once. Shared by releaseLock and the state probes (see
 * service-probe.ts), which release without a session of their own.
 */
export const RELEASE_SCRIPT = `IFS= read -r rid; IFS= read -r keep; IFS= read -r n; set --
while [ "$n" -gt 0 ]; do IFS= read -r p; set -- "$@" "$p"; n=$((n - 1)); done
nl='
'; old=
prune() {
  [ -e "$1" ] || return 0; n=$(($# - keep))
  for d do [ $n -gt 0 ] || break; old=$old$d$nl; echo "@pruned $d"; n=$((n - 1)); done
}
[ "$keep" = - ] || prune /var/backups/rollout/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z-*
l=; [ ! -r ${LOCK_FILE} ] || IFS= read -r l < ${LOCK_FILE} || true
case $l in *"\\"runId\\":\\"$rid\\""*) set -- "$@" ${LOCK_FILE};; esac
[ $# = 0 ] && [ -z "$old" ] || (set -f; IFS=$nl; exec rm -rf -- $old "$@")`;

/** The options of a release: see RELEASE_SCRIPT. `pruneKeep`: the newest backup runs kept (0: none); none pruned when absent. */
export type ReleaseOptions = { remove?: readonly string[]; pruneKeep?: number };

/** Pure. RELEASE_SCRIPT's `keep` line: `-` (no pruning) or how many backup runs stay. */
export function keepOf(opts: ReleaseOptions): string {
  return opts.pruneKeep === undefined ? '-' : String(Math.max(0, Math.floor(opts.pruneKeep)));
}

/** Pure. RELEASE_SCRIPT's stdin: the run id, the backups to keep, the count and the paths to remove, a line each. */
export function releaseRequest(runId: string, opts: ReleaseOptions): string {
  const lines = [runId, keepOf(opts), String(opts.remove?.length ?? 0), ...(opts.remove ?? [])];
  const odd = lines.find((l) => l.includes('\n'));
  if (odd !== undefined) throw new Error(`cannot remove ${JSON.stringify(odd)}: a path with a newline`);
  return `${lines.join('\n')}\n`;
}

/** Removes a node's lock if `runId` holds it, with what must not outlive it (RELEASE_SCRIPT), in one command; returns the backup runs pruned. */
export async function releaseLock(t: Transport, runId: string, opts: ReleaseOptions = {}): Promise<string[]> {
  const r = await t.exec(`sh -c ${shellQuote(RELEASE_SCRIPT)} rollout-release`, { stdin: Buffer.from(releaseRequest(runId, opts)), timeoutMs: 60_000 });
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
 * `tried`: what taking it already found on some nodes (in the read that planned
 * them, see batchedReader); those are not asked again.
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
