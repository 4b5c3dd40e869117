// The restart executor: the one place a node's service restarts. One channel
// reads the unit's state and a journal cursor, then moves the staged files
// right before the restart (which ones is the file-change executor's say), and
// follows the journal from the cursor until the gate decides.
import type { FileChange, RestartChange } from '../plan/types.js';
import type { CompiledGate } from '../rollout/gate.js';
import { openRestart, restartAndGate, type AheadPings, type GateRun } from '../rollout/restart-gate.js';
import { askApi, type ApiAnswer, type ApiTarget } from '../rollout/service-probe.js';
import type { LineStream, Transport } from '../transport/transport.js';
import type { Redactor } from '../util/redact.js';
import { stagedMoves } from './file-change.js';

/** The staged changes (staged under `stageKey`) moved into place right before the restart. */
export type MovesFirst = { changes: readonly FileChange[]; stageKey: string };

/** What a restart needs besides the node: the gate, where progress goes, the redactor. */
export type RestartContext = { gate: CompiledGate; progress: (text: string) => void; redact: Redactor };

/** Around one restart: the moves before it, what must hold before the node is touched, and who to tell what happened. */
export type RestartHooks = {
  moves?: MovesFirst;
  /** Resolves before anything on the node changes; a rejection is rethrown with nothing touched. */
  beforeGo?: () => Promise<void>;
  /** Once every move is in place, before the restart is judged. */
  onMoved?: () => Promise<void>;
  /** When the restart command returned and the unit starts. */
  onRestarted?: () => void;
  /** A channel openRestartChannel opened ahead with the same moves; else one is opened now. */
  channel?: LineStream;
  /** Pings already sent down `channel`. */
  pings?: AheadPings;
};

/**
 * Opens a restart channel ahead of the node's turn: its checks, state and
 * cursor are ready when the turn comes, and only the moves and the restart
 * wait for `go`. Give it to applyRestart, or close it with dismissRestartChannel.
 */
export function openRestartChannel(t: Transport, restart: RestartChange, gate: CompiledGate, moves?: MovesFirst): LineStream {
  return openRestart(t, restart.unit, gate, movesOf(moves), gate.timeoutMs + gate.restartTimeoutMs);
}

/** Ends a channel whose turn will not come: `stop`, so nothing on the node changes. */
export function dismissRestartChannel(stream: LineStream | undefined): void {
  stream?.send('stop\n');
  stream?.close();
}

/**
 * Moves `hooks.moves` into place, restarts the unit and waits for its gate
 * (see restartAndGate). Throws StalePlanError or beforeGo's error with nothing
 * touched, a NodeError when a move failed; otherwise the gate run decides.
 */
export function applyRestart(t: Transport, restart: RestartChange, ctx: RestartContext, hooks: RestartHooks = {}): Promise<GateRun> {
  return restartAndGate(t, restart.unit, ctx.gate, ctx.progress, ctx.redact, {
    commits: movesOf(hooks.moves),
    ...(hooks.beforeGo ? { beforeGo: hooks.beforeGo } : {}),
    ...(hooks.onMoved ? { onCommitted: hooks.onMoved } : {}),
    ...(hooks.onRestarted ? { onRestarted: hooks.onRestarted } : {}),
    ...(hooks.channel ? { channel: hooks.channel } : {}),
    ...(hooks.pings ? { pings: hooks.pings } : {}),
  });
}

function movesOf(moves: MovesFirst | undefined) {
  return moves ? stagedMoves(moves.changes, moves.stageKey) : [];
}

/** The readiness part of a node's gate: its own API, asked from the node, must answer /v1/health/ready with 200. */
export type ApiReadyCheck = {
  target: ApiTarget;
  /** How long to keep asking (vars.cluster.readyTimeoutSeconds); absent: what is left of the gate's timeout. */
  timeoutSeconds?: number;
};

/**
 * After a passed journal gate: asks the node's /v1/health/ready from the node
 * (src/agent/ready.sh, every 0.25 s) until it answers 200 or the time is up.
 * Returns `run` when it did; else `run` failed, its reason naming the HTTP
 * status or curl's error (the evidence kept: the ready line was logged).
 */
export async function gateOnApiReady(t: Transport, run: GateRun, gate: CompiledGate, check: ApiReadyCheck, progress: (text: string) => void, ask: typeof askApi = askApi): Promise<GateRun> {
  if (run.verdict.status !== 'passed') return run;
  const url = `https://${check.target.host}/v1/health/ready`;
  const seconds = check.timeoutSeconds ?? Math.max(1, (gate.timeoutMs - (run.decidedAt - run.startedAt)) / 1000);
  progress(`waiting for ${url} to answer 200 (up to ${seconds.toFixed(0)} s)`);
  const answer: ApiAnswer = await ask(t, 'ready', check.target, seconds);
  if (answer.ok) return { ...run, decidedAt: Date.now() };
  return {
    ...run,
    decidedAt: Date.now(),
    verdict: { status: 'failed', reason: `the ready line was logged, but ${url} (asked on the node) did not answer 200 within ${seconds.toFixed(0)} s: ${answer.problem}`, evidence: run.verdict.evidence },
  };
}
