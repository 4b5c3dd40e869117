// The only journalctl and systemctl calls: a cursor before a restart, a follow
// from it, and the unit's state. Parsing is pure and tested from fixtures.
import { NodeError, RemoteCommandError } from '../errors.js';
import type { LineStream, Transport } from '../transport/transport.js';
import { shellQuote } from '../util/shell-quote.js';

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
  };
}

/**
 * Follows the unit's journal from just after `cursor` on one long-lived channel.
 * `timeout` on the node ends the follower even if this side vanishes.
 */
export function followJournal(t: Transport, unit: string, cursor: string, maxSeconds: number): LineStream {
  return t.stream(
    `exec timeout ${Math.ceil(maxSeconds)} journalctl --no-pager -o json -f -u ${shellQuote(unit)} --after-cursor=${shellQuote(cursor)}`,
  );
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
  const r = await t.exec(`systemctl show -p ActiveState,SubState,NRestarts,InvocationID,MainPID -- ${shellQuote(unit)}`, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new RemoteCommandError(t.name, `systemctl show ${unit}`, r.code, r.stderr);
  return parseServiceState(r.stdout.toString('utf8'));
}

/**
 * The unit's state and a journal cursor "now", in one command: what a restart
 * needs to know beforehand (the old invocation, where the new lines begin).
 */
export async function readStateAndCursor(t: Transport, unit: string): Promise<{ state: ServiceState; cursor: string }> {
  const r = await t.exec(`systemctl show -p ActiveState,SubState,NRestarts,InvocationID,MainPID -- ${shellQuote(unit)} && echo ROLLOUT-CURSOR && journalctl --no-pager -n 1 -o json`, { timeoutMs: 30_000 });
  const [show, journal] = r.stdout.toString('utf8').split('ROLLOUT-CURSOR\n');
  const entry = parseJournalLine((journal ?? '').trim().split('\n').pop() ?? '');
  if (r.code !== 0 || !entry) throw new RemoteCommandError(t.name, `reading ${unit}'s state and a journal cursor`, r.code, r.stderr);
  return { state: parseServiceState(show ?? ''), cursor: entry.cursor };
}

/**
 * `systemctl restart` bounded by a timeout: with TimeoutStopSec=infinity and
 * SendSIGKILL=no it can otherwise block for ever. A failed start-limit is reset first.
 */
export async function restartService(t: Transport, unit: string, timeoutSeconds: number): Promise<void> {
  const u = shellQuote(unit);
  const r = await t.exec(`systemctl reset-failed -- ${u} 2>/dev/null; timeout ${Math.ceil(timeoutSeconds)} systemctl restart -- ${u}`, {
    timeoutMs: (timeoutSeconds + 15) * 1000,
  });
  if (r.code === 124) throw new NodeError(t.name, `systemctl restart ${unit} did not return within ${timeoutSeconds} s (the old process may ignore SIGTERM)`);
  if (r.code !== 0) throw new RemoteCommandError(t.name, `systemctl restart ${unit}`, r.code, r.stderr);
}
