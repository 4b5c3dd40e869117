import type { Redactor } from '../util/redact.js';
import { evaluateGate, type CompiledGate, type GateVerdict } from './gate.js';
import type { JournalEntry, ServiceState } from './journal.js';
import type { RestartEvent } from './restart-stream.js';

/** How long to keep reading the rest of an error after a failure line. */
export const FAILURE_GRACE_MS = 2000;

/**
 * What the I/O loop must do next: open a restart channel (again) or follow the
 * journal from the cursor, keep reading the channel, ask the node which staged
 * files landed or whether the unit restarted, read the unit's state after a
 * ready line, or stop: the verdict is final (or `abort` says what to throw).
 */
export type GateNext = 'restart' | 'follow' | 'read' | 'check-files' | 'check-restart' | 'read-state' | 'done';

/** The fixed inputs of one gate. `commits`: how many staged files must be moved first. */
export type GateConfig = { unit: string; gate: CompiledGate; startedAt: number; commits: number; redact?: Redactor };

/** Everything the gate knows. Only gateStep makes a new one. */
export type GateState = {
  readonly config: GateConfig;
  readonly deadline: number;
  /** The time of the last tick. */
  readonly now: number;
  /** The unit's state before anything was touched; its invocation's lines never count. */
  readonly before: ServiceState | null;
  readonly cursor: string | null;
  readonly committed: boolean;
  /** The current channel: whether it got `go`, its restart code, its entries, its failure grace. */
  readonly went: boolean;
  readonly restarted: number | null;
  readonly entries: readonly JournalEntry[];
  readonly graceUntil: number | null;
  /** What was known when the channel opened: a channel that ended before `go` touched nothing and counts for nothing. */
  readonly opened: { before: ServiceState | null; cursor: string | null };
  readonly verdict: GateVerdict;
  /** true when the verdict is that the node stopped answering: what it runs now is unknown. */
  readonly unreachable: boolean;
  /** The unit's state that decided a passed gate. */
  readonly state: ServiceState | null;
  /** What the loop must throw: a stale target or failed moves (nothing restarted). */
  readonly abort: { kind: 'stale'; path: string } | { kind: 'move-failed'; text: string } | null;
  readonly next: GateNext;
  /** A journal line to show as progress, set by the step that read it. */
  readonly show: string | null;
};

const WAITING: GateVerdict = { status: 'pending', reason: 'waiting for the ready line', evidence: [] };

/** Pure. The state before the first channel. */
export function startGate(config: GateConfig): GateState {
  const snapshot = { before: null, cursor: null };
  return {
    config,
    deadline: config.startedAt + config.gate.timeoutMs + config.gate.restartTimeoutMs,
    now: config.startedAt,
    before: null,
    cursor: null,
    committed: config.commits === 0,
    went: false,
    restarted: null,
    entries: [],
    graceUntil: null,
    opened: snapshot,
    verdict: WAITING,
    unreachable: false,
    state: null,
    abort: null,
    next: 'restart',
    show: null,
  };
}

/** Pure. When the loop must send a tick while it reads a channel (the deadline or the end of a failure grace), or null. */
export function gateWakeAt(s: GateState): number | null {
  if (s.next !== 'read') return null;
  if (s.graceUntil !== null) return s.graceUntil;
  return s.verdict.status === 'pending' && s.went ? s.deadline : null;
}

/** Pure. The gate after one event: every decision about a restart is made here. */
export function gateStep(state: GateState, ev: RestartEvent): GateState {
  const s: GateState = state.show === null ? state : { ...state, show: null };
  const reading = s.next === 'read';
  switch (ev.type) {
    case 'tick': {
      const t = { ...s, now: ev.now };
      if (reading && t.graceUntil !== null && t.now >= t.graceUntil) return { ...t, next: 'done' };
      // The deadline counts once go was sent (the wait before it is the health check's).
      if (t.verdict.status === 'pending' && t.now >= t.deadline && ((reading && t.went) || t.next === 'restart' || t.next === 'follow')) return timedOut(t);
      return t;
    }
    case 'open':
      return { ...s, went: ev.channel === 'follow', restarted: null, entries: [], graceUntil: null, verdict: WAITING, opened: { before: s.before, cursor: s.cursor }, next: 'read' };
    case 'go':
      return { ...s, went: true };
    case 'svc':
      return s.before ? s : { ...s, before: ev.state };
    case 'cursor':
      return s.cursor !== null ? s : { ...s, cursor: ev.cursor };
    case 'committed':
      return { ...s, committed: true };
    case 'pong':
    case 'file':
      return s;
    case 'stale':
      return reading ? { ...s, abort: { kind: 'stale', path: ev.path }, next: 'done' } : s;
    case 'error':
      if (!reading) return s;
      // Before the moves were confirmed an error is theirs; after, the restart's.
      if (!s.committed) return { ...s, abort: { kind: 'move-failed', text: ev.text }, next: 'done' };
      return failed(s, redact(s, ev.text));
    case 'restarted':
      if (!reading) return s;
      if (ev.code === 0) return { ...s, restarted: 0 };
      return failed({ ...s, restarted: ev.code }, redact(s, ev.code === 124
        ? `systemctl restart ${s.config.unit} did not return within ${s.config.gate.restartTimeoutMs / 1000} s (the old process may ignore SIGTERM)`
        : `systemctl restart ${s.config.unit} failed (exit ${ev.code})`));
    case 'entry':
      return reading ? onEntry(s, ev.entry) : s;
    case 'now':
      return reading && s.verdict.status === 'passed' ? decide(s, ev.state) : s;
    case 'heartbeat':
      // A poll ended after the ready line without the unit's state (the node's test missed the line).
      return reading && s.verdict.status === 'passed' ? { ...s, next: 'read-state' } : s;
    case 'end':
      if (!reading) return s;
      if (!s.went) return { ...s, before: s.opened.before, cursor: s.opened.cursor, next: 'restart' };
      if (s.verdict.status === 'passed') return { ...s, next: 'read-state' };
      if (s.verdict.status === 'failed') return { ...s, next: 'done' };
      if (s.now >= s.deadline) return timedOut(s);
      // The link dropped: ask the node what already happened before repeating anything.
      return { ...s, next: s.committed ? afterDrop(s) : 'check-files' };
    case 'files-checked':
      if (s.next !== 'check-files') return s;
      return { ...s, committed: ev.left === 0, next: afterDrop(s) };
    case 'state':
      if (s.next === 'read-state') return decide(s, ev.state);
      if (s.next !== 'check-restart') return s;
      // Still the invocation from before: the restart did not happen, so do it (once more).
      return s.before && ev.state.invocationId === s.before.invocationId ? { ...s, cursor: null, next: 'restart' } : { ...s, next: 'follow' };
    case 'lost':
      return onLost(s, ev.detail ?? '');
  }
}

function onEntry(s: GateState, entry: JournalEntry): GateState {
  const prior = s.before?.invocationId ?? null;
  if (s.graceUntil !== null) {
    // Reading out the rest of an error: until systemd reports the exit, or the grace ends.
    const evidence = entry.invocationId !== prior ? [...s.verdict.evidence, entry].slice(0, 15) : s.verdict.evidence;
    return { ...s, verdict: { ...s.verdict, evidence }, next: entry.fromManager || s.now > s.graceUntil ? 'done' : 'read' };
  }
  if (s.verdict.status === 'passed') return s; // the rest of the batch; its state follows
  const entries = [...s.entries, entry];
  const verdict = evaluateGate(entries, s.config.gate, prior);
  if (verdict.status === 'pending') return { ...s, entries, verdict, show: entry.message };
  if (verdict.status === 'passed') return { ...s, entries, verdict };
  if (verdict.evidence.at(-1)?.fromManager) return { ...s, entries, verdict, next: 'done' };
  return { ...s, entries, verdict, graceUntil: s.now + FAILURE_GRACE_MS };
}

// After a dropped link, once the moves are settled: was the restart asked for?
function afterDrop(s: GateState): GateNext {
  if (s.restarted !== null) return 'follow';
  return s.cursor !== null ? 'check-restart' : 'restart';
}

// The ready line must belong to the process running now, not one that died since.
function decide(s: GateState, now: ServiceState): GateState {
  const ready = s.verdict.evidence[0];
  if (now.activeState !== 'active' || (ready?.invocationId && now.invocationId !== ready.invocationId)) {
    return failed(s, `the ready line was logged but ${s.config.unit} is now ${now.activeState}/${now.subState} (invocation ${now.invocationId || 'none'})`);
  }
  const after = `right after it, systemd reported the unit ${now.activeState}/${now.subState} in that invocation`;
  return { ...s, verdict: { ...s.verdict, reason: `${s.verdict.reason}; ${after}` }, state: now, next: 'done' };
}

function onLost(s: GateState, detail: string): GateState {
  const elapsed = ((s.now - s.config.startedAt) / 1000).toFixed(1);
  switch (s.next) {
    case 'check-files':
      return failed(s, `the node stopped answering while its files were moved into place (${redact(s, detail)})`, true, []);
    case 'check-restart':
      return failed(s, `the node stopped answering during its restart (${redact(s, detail)}) after ${elapsed} s`, true);
    case 'read-state':
      return failed(s, redact(s, detail), true);
    case 'restart':
    case 'follow':
      // No channel could be had again (or the loop gave up reconnecting).
      if (s.now >= s.deadline) return timedOut(s);
      return failed(s, `the node stopped answering during its gate (SSH connection lost, reconnecting failed) after ${elapsed} s`, true);
    default:
      return s;
  }
}

function failed(s: GateState, reason: string, unreachable = false, evidence = s.verdict.evidence): GateState {
  return { ...s, verdict: { status: 'failed', reason, evidence }, unreachable, next: 'done' };
}

function timedOut(s: GateState): GateState {
  return failed(s, `no ready line ("${s.config.gate.ready}") within ${s.config.gate.timeoutMs / 1000} s`);
}

function redact(s: GateState, text: string): string {
  return s.config.redact ? s.config.redact(text) : text;
}
