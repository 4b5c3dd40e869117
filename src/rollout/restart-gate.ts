import { NodeError, RemoteCommandError, StalePlanError } from '../errors.js';
import { readRemoteFiles } from '../transport/remote-files.js';
import { ConnectionLostError } from '../transport/ssh.js';
import type { LineStream, Transport } from '../transport/transport.js';
import type { Redactor } from '../util/redact.js';
import { evaluateGate, type CompiledGate, type GateVerdict } from './gate.js';
import { followFrom, parseJournalLine, parseServiceState, readServiceState, restartAndFollow, type JournalEntry, type ServiceState, type StagedCommit } from './journal.js';

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
  /** The unit's state that decided a passed gate (read right after the ready line). */
  state?: ServiceState;
};

/** What one channel of restartAndFollow/followFrom told before it ended or was closed. */
type Attempt = {
  before: ServiceState | null;
  cursor: string | null;
  restarted: number | null;
  error: string | null;
  ended: boolean;
  /** A file that no longer holds what the plan read: nothing was touched. */
  stale: string | null;
  /** The unit's state read on the node right after the batch holding the ready line. */
  stateAfterReady: ServiceState | null;
  /** Instead: the ready line's own process, found alive right after that batch as the unit's main process (`@alive`). */
  aliveAfterReady: number | null;
};

/** Besides the restart: staged files to move into place first, and what must hold before anything is touched. */
export type RestartOptions = {
  commits?: readonly StagedCommit[];
  /** Resolves before the node is touched (the cluster health check); a rejection is rethrown, nothing touched. */
  beforeGo?: () => Promise<void>;
  /** Called once every commit is in place, before the restart is judged (to record the write). */
  onCommitted?: () => Promise<void>;
  /** Called when the restart command returned success: the unit is starting, the node mostly waits. */
  onRestarted?: () => void;
  /** The channel openRestart opened ahead of this turn, with these commits; else one is opened now. */
  channel?: LineStream;
};

/**
 * Opens a node's restart channel ahead of its turn, while the node before it
 * restarts: its checks, state and cursor are then ready when the turn comes,
 * and only the moves and the restart wait on `go`. It waits for `go` up to
 * `waitMs` (the turn before it) on top of its own bound.
 */
export function openRestart(t: Transport, unit: string, gate: CompiledGate, commits: readonly StagedCommit[], waitMs: number): LineStream {
  return restartAndFollow(t, unit, gate.restartTimeoutMs / 1000, channelSeconds(gate) + waitMs / 1000, commits, gate.ready);
}

// A restart channel's bound: the restart and the gate, plus a margin for the moves.
function channelSeconds(gate: CompiledGate): number {
  return (gate.timeoutMs + gate.restartTimeoutMs) / 1000 + 30;
}

/**
 * Moves the staged files into place, restarts `unit` and waits for its gate.
 * One channel (opened now, or ahead by openRestart) carries the checks, the
 * unit's state and a journal cursor taken before the restart, then, after
 * `beforeGo` resolved, the moves, the restart, and the journal after the
 * cursor, so only lines logged after it count; the ready line must come from
 * the new invocation, which must still be the running one. If the link drops,
 * the node is asked what already happened (files, restart) before anything is
 * repeated, and the journal is read again from the same cursor. Throws StalePlanError (nothing touched),
 * `beforeGo`'s error (nothing touched) or a NodeError when the moves failed.
 */
export async function restartAndGate(t: Transport, unit: string, gate: CompiledGate, progress: (text: string) => void, redact: Redactor, opts: RestartOptions = {}): Promise<GateRun> {
  const startedAt = Date.now();
  const deadline = startedAt + gate.timeoutMs + gate.restartTimeoutMs;
  const maxSeconds = channelSeconds(gate);
  const elapsed = () => ((Date.now() - startedAt) / 1000).toFixed(1);
  let before: ServiceState | null = null;
  let cursor: string | null = null;
  let verdict: GateVerdict = { status: 'pending', reason: 'waiting for the ready line', evidence: [] };
  let unreachable = false;
  let restartFailure: string | null = null;

  const done = (v: GateVerdict, lost = false): GateRun => ({ verdict: v, unreachable: lost, startedAt, decidedAt: Date.now() });
  let commits = [...(opts.commits ?? [])];
  let committed = commits.length === 0;
  const markCommitted = async () => {
    if (committed) return;
    committed = true;
    await opts.onCommitted?.();
  };
  let stateAfterReady: ServiceState | null = null;
  let aliveAfterReady: number | null = null;
  let anyStarted = false;

  for (let attempt = 0; attempt < 3 && verdict.status === 'pending' && Date.now() < deadline; attempt++) {
    let stream: LineStream;
    if (cursor === null) {
      const open = () => restartAndFollow(t, unit, gate.restartTimeoutMs / 1000, maxSeconds, committed ? [] : commits, gate.ready);
      const ahead = attempt === 0 ? opts.channel : undefined;
      stream = ahead ?? open();
      // A channel opened ahead has waited through another node's turn: its link
      // must answer now, or go could be lost with it (and the node's state unknown).
      const alive = ahead ? pong(ahead) : null;
      if (opts.beforeGo) progress('checking the other nodes');
      try {
        await opts.beforeGo?.();
      } catch (err) {
        stream.send('stop\n');
        stream.close();
        throw err;
      }
      progress(!committed ? `writing ${commits.map((c) => c.path).join(', ')} and restarting ${unit}` : `restarting ${unit}`);
      const answered = await alive;
      if (answered) stream = answered;
      if (answered === undefined || !stream.send('go\n')) {
        // It ended before go (its link was lost while it waited): nothing on the
        // node was touched; a fresh channel, which reconnects.
        stream.close();
        stream = open();
        stream.send('go\n');
      }
    } else {
      progress(`reading the journal again from the cursor (${elapsed()} s)`);
      stream = followFrom(t, unit, cursor, maxSeconds, gate.ready);
    }
    const seen = await watch(stream, before?.invocationId ?? null, gate, deadline, (line) => progress(`waiting for the ready line (${elapsed()} s): ${redact(line)}`), markCommitted, opts.onRestarted);
    // A first channel that never opened ran nothing: the node is as it was.
    if (stream.started()) anyStarted = true;
    else if (!anyStarted && !committed && cursor === null) throw stream.failure() ?? new ConnectionLostError(t.name, 'unreachable: no SSH channel could be opened', false);
    if (seen.attempt.stale) throw new StalePlanError(t.name, seen.attempt.stale);
    if (seen.attempt.error && !committed && !seen.attempt.ended) throw new RemoteCommandError(t.name, 'moving the staged files into place', 1, seen.attempt.error);
    before ??= seen.attempt.before;
    cursor ??= seen.attempt.cursor;
    verdict = seen.verdict;
    stateAfterReady = seen.attempt.stateAfterReady;
    aliveAfterReady = seen.attempt.aliveAfterReady;
    if (seen.attempt.ended && !committed) {
      // The link dropped before the moves were confirmed: ask the node which landed.
      try {
        commits = await remainingCommits(t, commits);
      } catch (err) {
        if (!(err instanceof ConnectionLostError)) throw err;
        return done({ status: 'failed', reason: `the node stopped answering while its files were moved into place (${redact(err.message)})`, evidence: [] }, true);
      }
      if (commits.length === 0) await markCommitted();
    }
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
    // The ready line must belong to the process that is running now, not one that died since:
    // the node read the state right after the ready line, or found the line's own process
    // alive as the unit's main process (then the unit is active in the line's invocation; its
    // restart count is the one before: a restart systemd made by itself would have failed the
    // gate first); only a channel cut before that asks again.
    const ready = verdict.evidence[0];
    const alive = stateAfterReady === null && aliveAfterReady !== null && ready?.invocationId ? { pid: aliveAfterReady, invocationId: ready.invocationId } : null;
    let now: ServiceState;
    try {
      now = stateAfterReady
        ?? (alive
          ? { activeState: 'active', subState: 'running', nRestarts: before?.nRestarts ?? 0, invocationId: alive.invocationId, mainPid: alive.pid }
          : await readServiceState(t, unit));
    } catch (err) {
      if (!(err instanceof ConnectionLostError)) throw err;
      return done({ status: 'failed', reason: redact(err.message), evidence: verdict.evidence }, true);
    }
    if (now.activeState !== 'active' || (ready?.invocationId && now.invocationId !== ready.invocationId)) {
      verdict = { status: 'failed', reason: `the ready line was logged but ${unit} is now ${now.activeState}/${now.subState} (invocation ${now.invocationId || 'none'})`, evidence: verdict.evidence };
    } else {
      // How the unit was found running after the line: the report says which.
      const after = alive
        ? `right after it, that process (pid ${alive.pid}) was alive as the unit's main process`
        : `right after it, systemd reported the unit ${now.activeState}/${now.subState} in that invocation`;
      return { ...done({ ...verdict, reason: `${verdict.reason}; ${after}` }, unreachable), state: now };
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
  onCommitted: () => Promise<void>,
  onRestarted?: () => void,
): Promise<{ attempt: Attempt; verdict: GateVerdict }> {
  const attempt: Attempt = { before: null, cursor: null, restarted: null, error: null, ended: false, stale: null, stateAfterReady: null, aliveAfterReady: null };
  const svc: string[] = [];
  const now: string[] = [];
  let block: 'svc' | 'now' | null = null;
  const entries: JournalEntry[] = [];
  let verdict: GateVerdict = { status: 'pending', reason: 'waiting for the ready line', evidence: [] };
  let graceUntil = 0;
  const timer = setTimeout(() => stream.close(), Math.max(0, deadline - Date.now()));
  let graceTimer: NodeJS.Timeout | undefined;
  try {
    for await (const line of stream.lines) {
      // A poll ended (its heartbeat) after the ready line without the unit's state
      // (the node's test missed the line, see readyHint): the caller reads the state.
      if (line === '.' && verdict.status === 'passed') return { attempt, verdict };
      if (line.startsWith('@alive ')) {
        if (verdict.status !== 'passed') continue;
        // Only the passing line's own process counts; any other answer leaves the state to be read apart.
        const pid = Number(line.slice(7));
        if (pid > 0 && pid === verdict.evidence[0]?.pid) attempt.aliveAfterReady = pid;
        return { attempt, verdict };
      }
      if (line === '.' || line === '' || line.startsWith('@file ')) continue;
      if (line.startsWith('@stale ')) {
        attempt.stale = line.slice(7);
        return { attempt, verdict };
      }
      if (line === '@committed') {
        await onCommitted();
        continue;
      }
      if (block) {
        const lines = block === 'svc' ? svc : now;
        if (line !== `@${block}-end`) {
          lines.push(line);
          continue;
        }
        const state = parseServiceState(lines.splice(0).join('\n'));
        if (block === 'svc') attempt.before = state;
        block = null;
        // The state read right after the batch that held the ready line decides.
        if (line === '@now-end' && verdict.status === 'passed') {
          attempt.stateAfterReady = state;
          return { attempt, verdict };
        }
        continue;
      }
      if (line === '@svc-begin' || line === '@now-begin') {
        block = line === '@svc-begin' ? 'svc' : 'now';
        continue;
      }
      if (line.startsWith('@cursor ')) {
        attempt.cursor = line.slice(8);
        continue;
      }
      if (line.startsWith('@restarted ')) {
        attempt.restarted = Number(line.slice(11));
        if (attempt.restarted !== 0) return { attempt, verdict };
        onRestarted?.();
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
      if (verdict.status === 'passed') continue; // the rest of the batch; its state follows
      entries.push(entry);
      verdict = evaluateGate(entries, gate, prior);
      if (verdict.status === 'passed') continue;
      if (verdict.status === 'failed') {
        if (verdict.evidence.at(-1)?.fromManager) return { attempt, verdict };
        graceUntil = Date.now() + FAILURE_GRACE_MS;
        graceTimer = setTimeout(() => stream.close(), FAILURE_GRACE_MS);
        continue;
      }
      onLine(entry.message);
    }
    // The channel ended by itself (not by a decision): unless a failure is being read out
    // or the ready line already came, the link dropped.
    attempt.ended = verdict.status === 'pending' && Date.now() < deadline;
    return { attempt, verdict };
  } finally {
    clearTimeout(timer);
    clearTimeout(graceTimer);
    stream.close();
  }
}

/**
 * Pings a waiting restart channel and reads it up to `@pong`: the same stream,
 * with the lines before the answer kept for the watch; undefined when the
 * channel ended first (nothing there was touched: it never got `go`).
 */
async function pong(stream: LineStream): Promise<LineStream | undefined> {
  const before: string[] = [];
  const it = stream.lines[Symbol.asyncIterator]();
  if (!stream.send('ping\n')) return undefined;
  for (;;) {
    const r = await it.next();
    if (r.done) return undefined;
    if (r.value === '@pong') break;
    before.push(r.value);
  }
  return {
    ...stream,
    lines: {
      async *[Symbol.asyncIterator]() {
        yield* before;
        for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
      },
    },
  };
}

/** The deciding journal lines, redacted and indented, for messages and reports. */
export function renderGateEvidence(run: GateRun, redact: Redactor): string {
  if (run.verdict.evidence.length === 0) return '    (no journal line of the new process)';
  return run.verdict.evidence
    .map((e) => `    ${new Date(e.realtimeUs / 1000).toISOString()} ${redact(e.message)}`)
    .join('\n');
}

// After a cut channel: which staged files still have to be moved (their target
// still old); a target holding neither old nor new content is a state rollout
// cannot vouch for.
async function remainingCommits(t: Transport, commits: readonly StagedCommit[]): Promise<StagedCommit[]> {
  const left: StagedCommit[] = [];
  const files = await readRemoteFiles(t, commits.map((c) => c.path));
  for (const c of commits) {
    const f = files.get(c.path);
    if (f?.sha256 === c.afterSha256) continue;
    if (f?.sha256 !== c.beforeSha256) throw new NodeError(t.name, `${c.path} holds neither the old nor the new content after a lost connection`);
    left.push(c);
  }
  return left;
}
