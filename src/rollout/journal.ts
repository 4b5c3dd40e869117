// The only journalctl and systemctl calls: a cursor before a restart, a follow
// from it, and the unit's state. Parsing is pure and tested from fixtures.
import { RemoteCommandError } from '../errors.js';
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

// Prints the unit's journal entries after cursor $C as they come, polling every
// 50 ms on the node (journalctl -f wakes up only when journald posts a change,
// which it batches: up to 250 ms late). A heartbeat line per poll ends the loop
// as soon as rollout closes the channel (the write fails); `timeout` bounds it.
const POLL_LOOP = `f=$(mktemp); trap 'rm -f -- "$f"' EXIT; printf '%s' "$C" > "$f"
while :; do
  journalctl -u "$u" --cursor-file="$f" -o json --no-pager -q || exit 1
  echo .
  sleep 0.05
done`;

/**
 * The remote half of a restart, one command on one channel: the unit's state
 * and a journal cursor (`@svc`, `@cursor` lines), the restart bounded by a
 * timeout (`@restarted CODE`), then every journal entry of the unit after the
 * cursor, as JSON lines, until rollout closes the channel.
 */
export function restartAndFollow(t: Transport, unit: string, restartTimeoutSeconds: number, maxSeconds: number): LineStream {
  const script = `u=$1
systemctl show -p ActiveState,SubState,NRestarts,InvocationID,MainPID -- "$u" | sed 's/^/@svc /'
C=$(journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p')
[ -n "$C" ] || { echo "@error no journal cursor"; exit 1; }
echo "@cursor $C"
systemctl reset-failed -- "$u" 2>/dev/null
timeout ${Math.ceil(restartTimeoutSeconds)} systemctl restart -- "$u"; echo "@restarted $?"
${POLL_LOOP}`;
  return t.stream(`exec timeout ${Math.ceil(maxSeconds)} sh -c ${shellQuote(script)} rollout-restart ${shellQuote(unit)}`);
}

/** Journal entries of the unit after `cursor`, as restartAndFollow prints them (a follow reopened after a lost link). */
export function followFrom(t: Transport, unit: string, cursor: string, maxSeconds: number): LineStream {
  const script = `u=$1; C=$2\n${POLL_LOOP}`;
  return t.stream(`exec timeout ${Math.ceil(maxSeconds)} sh -c ${shellQuote(script)} rollout-follow ${shellQuote(unit)} ${shellQuote(cursor)}`);
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
