
import type { Transport } from '../transport/transport.js';
import type { Redactor } from '../util/redact.js';
import { evaluateGate, type CompiledGate, type GateVerdict } from './gate.js';
import { ConnectionLostError } from '../transport/ssh.js';
import type { LineStream } from '../transport/transport.js';
import { followJournal, parseJournalLine, readServiceState, readStateAndCursor, restartService, type JournalEntry } from './journal.js';

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

/**
 * Restarts `unit` and waits for its gate: the journal is followed from a cursor
 * taken before the restart, so only lines logged after it count, and the ready
 * line must come from the new invocation, which must still be the running one.
 */
export async function restartAndGate(t: Transport, unit: string, gate: CompiledGate, progress: (text: string) => void, redact: Redactor): Promise<GateRun> {
  const { state: before, cursor } = await readStateAndCursor(t, unit);
  const entries: JournalEntry[] = [];
  const startedAt = Date.now();
  let verdict: GateVerdict = { status: 'pending', reason: 'waiting for the ready line', evidence: [] };
  let timer: NodeJS.Timeout | undefined;
  const elapsed = () => ((Date.now() - startedAt) / 1000).toFixed(1);

  let followEnded = false;
  let unreachable = false;
  // After a failure line the process usually logs the rest of its error and exits:
  // keep reading until systemd reports the exit (or a short grace), so the
  // operator sees the whole error, not only its first line.
  let afterFailure: JournalEntry[] | null = null;
  let processEnded: () => void = () => {};
  const ended = new Promise<void>((resolve) => (processEnded = resolve));
  let decided: () => void = () => {};
  const decision = new Promise<void>((resolve) => (decided = resolve));
  // The follow is reopened from the same cursor if the connection drops (the
  // transport reconnects); a cursor makes re-reading exact, never a guess.
  let follow: LineStream | null = null;
  let stopped = false;
  const watch = (async () => {
    for (let attempt = 0; attempt < 3 && !stopped; attempt++) {
      entries.length = 0;
      follow = followJournal(t, unit, cursor, (gate.timeoutMs + gate.restartTimeoutMs) / 1000 + 30);
      for await (const line of follow.lines) {
        const entry = parseJournalLine(line);
        if (!entry) continue;
        entries.push(entry);
        if (afterFailure) {
          if (entry.invocationId !== before.invocationId) afterFailure.push(entry);
          if (entry.fromManager) return processEnded();
          continue;
        }
        verdict = evaluateGate(entries, gate, before.invocationId || null);
        if (verdict.status === 'passed') return decided();
        if (verdict.status === 'failed') {
          afterFailure = [];
          decided();
          if (verdict.evidence.at(-1)?.fromManager) return processEnded();
          continue;
        }
        progress(`waiting for the ready line (${elapsed()} s): ${redact(entry.message)}`);
      }
      if (afterFailure) break;
    }
    followEnded = !stopped;
    decided();
    processEnded();
  })();
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, gate.timeoutMs + gate.restartTimeoutMs);
  });
  try {
    progress(`restarting ${unit}`);
    try {
      await restartService(t, unit, gate.restartTimeoutMs / 1000);
    } catch (err) {
      if (!(err instanceof ConnectionLostError)) throw err;
      // The restart is in doubt: look before doing anything again.
      const now = await readServiceState(t, unit);
      if (now.invocationId === before.invocationId) await restartService(t, unit, gate.restartTimeoutMs / 1000);
    }
    progress(`waiting for the ready line (${elapsed()} s)`);
    await Promise.race([decision, deadline]);
    if (afterFailure) {
      await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, FAILURE_GRACE_MS).unref())]);
      const failed = verdict;
      verdict = { ...failed, evidence: [...failed.evidence, ...(afterFailure as JournalEntry[]).slice(0, 10)] };
    }
  } catch (err) {
    if (err instanceof ConnectionLostError) unreachable = true;
    verdict = { status: 'failed', reason: redact((err as Error).message), evidence: entries.slice(-5) };
  } finally {
    clearTimeout(timer);
    stopped = true;
    (follow as LineStream | null)?.close();
    decided();
    await watch;
  }
  if (verdict.status === 'pending') {
    unreachable ||= followEnded;
    const reason = followEnded
      ? `the node stopped answering during its gate (SSH connection lost, reconnecting failed) after ${elapsed()} s`
      : `no ready line ("${gate.ready}") within ${gate.timeoutMs / 1000} s`;
    verdict = { status: 'failed', reason, evidence: entries.slice(-5) };
  }
  if (verdict.status === 'passed') {
    // The ready line must belong to the process that is running now, not one that died since.
    let now: Awaited<ReturnType<typeof readServiceState>>;
    try {
      now = await readServiceState(t, unit);
    } catch (err) {
      if (!(err instanceof ConnectionLostError)) throw err;
      return { verdict: { status: 'failed', reason: redact(err.message), evidence: verdict.evidence }, unreachable: true, startedAt, decidedAt: Date.now() };
    }
    const ready = verdict.evidence[0];
    if (now.activeState !== 'active' || (ready?.invocationId && now.invocationId !== ready.invocationId)) {
      verdict = { status: 'failed', reason: `the ready line was logged but ${unit} is now ${now.activeState}/${now.subState} (invocation ${now.invocationId || 'none'})`, evidence: verdict.evidence };
    }
  }
  return { verdict, unreachable, startedAt, decidedAt: Date.now() };
}

/** The deciding journal lines, redacted and indented, for messages and reports. */
export function renderGateEvidence(run: GateRun, redact: Redactor): string {
  if (run.verdict.evidence.length === 0) return '    (no journal line of the new process)';
  return run.verdict.evidence
    .map((e) => `    ${new Date(e.realtimeUs / 1000).toISOString()} ${redact(e.message)}`)
    .join('\n');
}

