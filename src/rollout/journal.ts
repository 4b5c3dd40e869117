// The only journalctl and systemctl calls: a cursor before a restart, a follow
// from it, and the unit's state. Parsing is pure and tested from fixtures.
import { RemoteCommandError } from '../errors.js';
import type { LineStream, Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';
import { AGENT, SHOW_PROPERTIES, shellVars } from '../agent/scripts.js';

/** One journal entry of the unit, as the gate sees it. */
export type JournalEntry = {
  cursor: string;
  /** Microseconds since the epoch, from the journal (not the node's clock at read time). */
  realtimeUs: number;
  /** The text, ANSI colour codes stripped. */
  message: string;
  /** true for lines systemd itself (PID 1) logs about the unit: started, exited, restart scheduled. */
  fromManager: boolean;
  /** The unit invocation the line belongs to (`_SYSTEMD_INVOCATION_ID`, or `INVOCATION_ID` on manager lines). */
  invocationId: string | null;
  /** The process that logged it (`_PID`), where the entry says. */
  pid?: number;
};

/** The unit's state from `systemctl show`. */
export type ServiceState = { activeState: string; subState: string; nRestarts: number; invocationId: string; mainPid: number };

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/** Pure. Removes ANSI escape sequences (the ready line is coloured). */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/** Pure. One line of `journalctl -o json`; null for anything that is not an entry. */
export function parseJournalLine(line: string): JournalEntry | null {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (typeof o.__CURSOR !== 'string') return null;
  const raw = o.MESSAGE;
  // journald stores non-UTF-8 messages as an array of bytes.
  const message = Array.isArray(raw) ? Buffer.from(raw as number[]).toString('utf8') : typeof raw === 'string' ? raw : '';
  const fromManager = o._PID === '1';
  const inv = (fromManager ? o.INVOCATION_ID : o._SYSTEMD_INVOCATION_ID) ?? o._SYSTEMD_INVOCATION_ID ?? o.INVOCATION_ID;
  return {
    cursor: o.__CURSOR,
    realtimeUs: Number(o.__REALTIME_TIMESTAMP ?? 0),
    message: stripAnsi(message),
    fromManager,
    invocationId: typeof inv === 'string' ? inv : null,
    ...(typeof o._PID === 'string' && /^\d+$/.test(o._PID) ? { pid: Number(o._PID) } : {}),
  };
}

/** The `systemctl show` properties every state read asks for. */
export { SHOW_PROPERTIES };

/**
 * Pure. The ready text as it appears inside journalctl's JSON, for the poll's
 * test (src/agent/follow.sh): as text (a printable message) and as decimal bytes
 * joined by commas (a message with colour codes is printed as an array of
 * bytes). Both '' when the text is not printable ASCII without a quote or
 * backslash (JSON would escape those): every batch is then followed by the
 * unit's state. A ready line the test misses (its text split by colour codes,
 * say) still passes the gate; its state is then read apart.
 */
export function readyHint(ready: string): { text: string; bytes: string } {
  if (!/^[\x20-\x7e]+$/.test(ready) || /["\\]/.test(ready)) return { text: '', bytes: '' };
  return { text: ready, bytes: [...Buffer.from(ready, 'latin1')].join(',') };
}

// The hint as the scripts' arguments $R and $B.
function hintArgs(ready: string): string {
  const h = readyHint(ready);
  return `${shellQuote(h.text)} ${shellQuote(h.bytes)}`;
}

/** A staged file to move into place right before a restart (see stageFiles). */
export type StagedCommit = { path: string; staged: string; beforeSha256: string; afterSha256: string; uid: number; gid: number; mode: number };

/** Pure. The commit request on stdin (src/agent/commit.sh): a count, then 7 lines a file. */
export function commitRequest(commits: readonly StagedCommit[]): string {
  const lines = commits.flatMap((c) => [c.path, c.staged, c.beforeSha256, c.afterSha256, String(c.uid), String(c.gid), c.mode.toString(8)]);
  const odd = lines.find((l) => l.includes('\n'));
  if (odd !== undefined) throw new Error(`cannot move ${JSON.stringify(odd)} into place: a path with a newline`);
  return `${[String(commits.length), ...lines].join('\n')}\n`;
}

/**
 * The remote half of a restart, one command on one channel. At once, changing
 * nothing: every staged file and its target checked (`@stale`, `@error`), the
 * unit's state and a journal cursor (`@svc`, `@cursor`), so that none of it
 * waits on the critical path. Then it waits for a line on stdin: `ping` is
 * answered `@pong` (the link is alive), anything else but `go` ends it with
 * nothing touched (the cluster health check runs meanwhile).
 * On `go`: the staged files moved into place (`@file`, `@committed`,
 * `@error`), the restart bounded by a timeout (`@restarted CODE`), then every
 * journal entry of the unit after the cursor, as JSON lines, until rollout
 * closes the channel. `maxSeconds` bounds the whole channel, the wait included.
 */
export function restartAndFollow(t: Transport, unit: string, restartTimeoutSeconds: number, maxSeconds: number, commits: readonly StagedCommit[] = [], ready = ''): LineStream {
  // Under the fleet lock only a human can change a file between the check and
  // the move, as before. A unit that restarts by itself after @svc cannot pass
  // for the new one: the gate wants the ready line from the invocation still running after it.
  const script = `${shellVars({ RESTART_TIMEOUT: String(Math.ceil(restartTimeoutSeconds)) })}${AGENT.restart}`;
  const stream = t.stream(`exec timeout ${Math.ceil(maxSeconds)} sh -c ${shellQuote(script)} rollout-restart ${shellQuote(unit)} ${hintArgs(ready)}`, { input: true });
  stream.send(commitRequest(commits));
  return stream;
}

/**
 * Moves staged files into place without a restart (a phase whose files need
 * none): the same checks as before a restart. Returns `stale` (nothing touched)
 * or `committed`; throws when a move or its verification failed.
 */
export async function commitStaged(t: Transport, commits: readonly StagedCommit[]): Promise<'committed' | 'stale'> {
  const r = await t.exec(`sh -c ${shellQuote(AGENT.commit)} rollout-commit`, { stdin: Buffer.from(commitRequest(commits)), timeoutMs: 60_000 });
  const out = r.stdout.toString('utf8');
  if (out.includes('@stale ')) return 'stale';
  if (r.code !== 0 || !out.includes('@committed')) {
    const why = /^@error (.*)$/m.exec(out)?.[1] ?? r.stderr.trim();
    throw new RemoteCommandError(t.name, 'moving the staged files into place', r.code, why);
  }
  return 'committed';
}

/** Journal entries of the unit after `cursor`, as restartAndFollow prints them (a follow reopened after a lost link). */
export function followFrom(t: Transport, unit: string, cursor: string, maxSeconds: number, ready = ''): LineStream {
  return t.stream(`exec timeout ${Math.ceil(maxSeconds)} sh -c ${shellQuote(AGENT.follow)} rollout-follow ${shellQuote(unit)} ${shellQuote(cursor)} ${hintArgs(ready)}`);
}

/** Pure. Parses `systemctl show -p ...` output. */
export function parseServiceState(text: string): ServiceState {
  const kv = Object.fromEntries(text.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  return {
    activeState: kv.ActiveState ?? 'unknown',
    subState: kv.SubState ?? 'unknown',
    nRestarts: Number(kv.NRestarts ?? 0),
    invocationId: kv.InvocationID ?? '',
    mainPid: Number(kv.MainPID ?? 0),
  };
}

/** The unit's current state; `systemctl is-active` alone cannot tell a crash loop. */
export async function readServiceState(t: Transport, unit: string): Promise<ServiceState> {
  const r = await t.exec(`systemctl show -p ${SHOW_PROPERTIES} -- ${shellQuote(unit)}`, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new RemoteCommandError(t.name, `systemctl show ${unit}`, r.code, r.stderr);
  return parseServiceState(r.stdout.toString('utf8'));
}
