import { ConnectionLostError } from '../transport/ssh.js';
import type { LineStream, Transport } from '../transport/transport.js';
import type { Redactor } from '../util/redact.js';
import { evaluateGate, type CompiledGate, type GateVerdict } from './gate.js';
import { followFrom, parseJournalLine, parseServiceState, readServiceState, restartAndFollow, type JournalEntry, type ServiceState } from './journal.js';

/** How long to keep reading the rest of an error after a failure line. */
const FAILURE_GRACE_MS = 2000;

/** One restart and what its gate decided, with the journal lines that decided it. */
export type GateRun = {
  verdict: GateVerdict;
  /** true when the node stopped answering during the gate: what it runs now is unknown. */
  unreachable: boolean;
  /** When the restart was asked for and when the gate decided (ms since epoch, this machine's clock). */
  startedAt: number;
  decidedAt: number;
};

/** What one channel of restartAndFollow/followFrom told before it ended or was closed. */
type Attempt = { before: ServiceState | null; cursor: string | null; restarted: number | null; error: string | null; ended: boolean };

/**
 * Restarts `unit` and waits for its gate. One channel carries the unit's state
 * and a journal cursor taken before the restart, the restart, and then the
 * journal after the cursor, so only lines logged after it count; the ready line
 * must come from the new invocation, which must still be the running one.
 * If the link drops, the node is asked whether the restart happened before
 * anything is repeated, and the journal is read again from the same cursor.
 */
export async function restartAndGate(t: Transport, unit: string, gate: CompiledGate, progress: (text: string) => void, redact: Redactor): Promise<GateRun> {
  const startedAt = Date.now();
  const deadline = startedAt + gate.timeoutMs + gate.restartTimeoutMs;
  const maxSeconds = (gate.timeoutMs + gate.restartTimeoutMs) / 1000 + 30;
  const elapsed = () => ((Date.now() - startedAt) / 1000).toFixed(1);
  let before: ServiceState | null = null;
  let cursor: string | null = null;
  let verdict: GateVerdict = { status: 'pending', reason: 'waiting for the ready line', evidence: [] };
  let unreachable = false;
  let restartFailure: string | null = null;

  const done = (v: GateVerdict, lost = false): GateRun => ({ verdict: v, unreachable: lost, startedAt, decidedAt: Date.now() });

  for (let attempt = 0; attempt < 3 && verdict.status === 'pending' && Date.now() < deadline; attempt++) {
    let stream: LineStream;
    if (cursor === null) {
      progress(`restarting ${unit}`);
      stream = restartAndFollow(t, unit, gate.restartTimeoutMs / 1000, maxSeconds);
    } else {
      progress(`reading the journal again from the cursor (${elapsed()} s)`);
      stream = followFrom(t, unit, cursor, maxSeconds);
    }
    const seen = await watch(stream, before?.invocationId ?? null, gate, deadline, (line) => progress(`waiting for the ready line (${elapsed()} s): ${redact(line)}`));
    before ??= seen.attempt.before;
    cursor ??= seen.attempt.cursor;
    verdict = seen.verdict;
    if (seen.attempt.error) restartFailure = seen.attempt.error;
    if (seen.attempt.restarted !== null && seen.attempt.restarted !== 0) {
      restartFailure = seen.attempt.restarted === 124
        ? `systemctl restart ${unit} did not return within ${gate.restartTimeoutMs / 1000} s (the old process may ignore SIGTERM)`
        : `systemctl restart ${unit} failed (exit ${seen.attempt.restarted})`;
    }
    if (restartFailure || verdict.status !== 'pending' || !seen.attempt.ended) break;
    // The channel ended early: the link dropped. Ask the node before doing anything again.
    try {
      if (seen.attempt.restarted === null && cursor !== null) {
        const now = await readServiceState(t, unit);
        if (before && now.invocationId === before.invocationId) cursor = null; // not restarted: do it (once more)
      }
    } catch (err) {
      if (!(err instanceof ConnectionLostError)) throw err;
      unreachable = true;
      verdict = { status: 'failed', reason: `the node stopped answering during its restart (${redact(err.message)}) after ${elapsed()} s`, evidence: verdict.evidence };
      return done(verdict, true);
    }
  }

  if (restartFailure) return done({ status: 'failed', reason: redact(restartFailure), evidence: verdict.evidence });
  if (verdict.status === 'pending') {
    const lost = Date.now() < deadline;
    unreachable = lost;
    return done({
      status: 'failed',
      reason: lost ? `the node stopped answering during its gate (SSH connection lost, reconnecting failed) after ${elapsed()} s` : `no ready line ("${gate.ready}") within ${gate.timeoutMs / 1000} s`,
      evidence: verdict.evidence,
    }, lost);
  }
  if (verdict.status === 'passed') {
    // The ready line must belong to the process that is running now, not one that died since.
    let now: ServiceState;
    try {
      now = await readServiceState(t, unit);
    } catch (err) {
      if (!(err instanceof ConnectionLostError)) throw err;
      return done({ status: 'failed', reason: redact(err.message), evidence: verdict.evidence }, true);
    }
    const ready = verdict.evidence[0];
    if (now.activeState !== 'active' || (ready?.invocationId && now.invocationId !== ready.invocationId)) {
      verdict = { status: 'failed', reason: `the ready line was logged but ${unit} is now ${now.activeState}/${now.subState} (invocation ${now.invocationId || 'none'})`, evidence: verdict.evidence };
    }
  }
  return done(verdict, unreachable);
}

/**
 * Reads one channel until the gate decides, the deadline passes or the channel
 * ends. After a failure line it keeps reading until systemd reports the
 * process's exit (or a short grace), so the operator sees the whole error.
 */
async function watch(
  stream: LineStream,
  previousInvocation: string | null,
  gate: CompiledGate,
  deadline: number,
  onLine: (message: string) => void,
): Promise<{ attempt: Attempt; verdict: GateVerdict }> {
  const attempt: Attempt = { before: null, cursor: null, restarted: null, error: null, ended: false };
  const svc: string[] = [];
  const entries: JournalEntry[] = [];
  let verdict: GateVerdict = { status: 'pending', reason: 'waiting for the ready line', evidence: [] };
  let graceUntil = 0;
  const timer = setTimeout(() => stream.close(), Math.max(0, deadline - Date.now()));
  let graceTimer: NodeJS.Timeout | undefined;
  try {
    for await (const line of stream.lines) {
      if (line === '.' || line === '') continue;
      if (line.startsWith('@svc ')) {
        svc.push(line.slice(5));
        continue;
      }
      if (line.startsWith('@cursor ')) {
        attempt.before = parseServiceState(svc.join('\n'));
        attempt.cursor = line.slice(8);
        continue;
      }
      if (line.startsWith('@restarted ')) {
        attempt.restarted = Number(line.slice(11));
        if (attempt.restarted !== 0) return { attempt, verdict };
        continue;
      }
      if (line.startsWith('@error ')) {
        attempt.error = line.slice(7);
        return { attempt, verdict };
      }
      const entry = parseJournalLine(line);
      if (!entry) continue;
      const prior = previousInvocation ?? attempt.before?.invocationId ?? null;
      if (graceUntil) {
        if (entry.invocationId !== prior) verdict = { ...verdict, evidence: [...verdict.evidence, entry].slice(0, 15) };
        if (entry.fromManager || Date.now() > graceUntil) return { attempt, verdict };
        continue;
      }
      entries.push(entry);
      verdict = evaluateGate(entries, gate, prior);
      if (verdict.status === 'passed') return { attempt, verdict };
      if (verdict.status === 'failed') {
        if (verdict.evidence.at(-1)?.fromManager) return { attempt, verdict };
        graceUntil = Date.now() + FAILURE_GRACE_MS;
        graceTimer = setTimeout(() => stream.close(), FAILURE_GRACE_MS);
        continue;
      }
      onLine(entry.message);
    }
    // The channel ended by itself (not by a decision): unless a failure is being read out, the link dropped.
    attempt.ended = verdict.status === 'pending' && Date.now() < deadline;
    return { attempt, verdict };
  } finally {
    clearTimeout(timer);
    clearTimeout(graceTimer);
    stream.close();
  }
}

/** The deciding journal lines, redacted and indented, for messages and reports. */
export function renderGateEvidence(run: GateRun, redact: Redactor): string {
  if (run.verdict.evidence.length === 0) return '    (no journal line of the new process)';
  return run.verdict.evidence
    .map((e) => `    ${new Date(e.realtimeUs / 1000).toISOString()} ${redact(e.message)}`)
    .join('\n');
}
