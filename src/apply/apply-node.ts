// One node, one phase: composes the file-change executor (stage, move, restore)
// and the restart executor (restart, gate), records every step before the next
// starts, and turns a failure into what the operator must know. Knows nothing of listr2.
import { ConnectionLostError, NodeError, RolloutFailedError, StalePlanError } from '../errors.js';
import type { FileChange, RestartChange } from '../plan/types.js';
import { renderGateEvidence, type AheadPings, type GateRun } from '../rollout/restart-gate.js';
import type { CompiledGate } from '../rollout/gate.js';
import type { ServiceState } from '../rollout/journal.js';
import type { NodeWork } from '../state/resume.js';
import type { RunRecorder, StepFile } from '../state/run-state.js';
import { stageFiles, type StageItem, type StageResult } from '../agent/files.js';
import type { LineStream, Transport } from '../transport/transport.js';
import { mapLimit } from '../util/map-limit.js';
import type { Redactor } from '../util/redact.js';
import { moveIntoPlace, restoreAll, stageChanges, stepFile } from './file-change.js';
import { applyRestart, dismissRestartChannel, gateOnApiReady, openRestartChannel, type ApiReadyCheck, type MovesFirst } from './restart.js';
import type { askApi } from '../rollout/service-probe.js';

export { restoreAll, stepFile };
export type { NodeWork };

/** What an applier needs besides the node: run id, gate, redactor, the run record, where progress goes. */
export type ApplyContext = {
  runId: string;
  /** Names this run's staged copies (see stagedPath); never on a command line. */
  stageKey: string;
  gate: CompiledGate;
  redact: Redactor;
  recorder: RunRecorder;
  /** Short human text of the current step (shown by the progress view, already redacted). */
  progress: (text: string) => void;
  /** Must resolve before anything on the node changes (the cluster health check, run while the channel opens). */
  beforeRestart?: () => Promise<void>;
  /** This turn's restart channel, opened ahead by openTurn; else it is opened when the turn starts. */
  channel?: LineStream;
  /** Pings already sent down `channel`. */
  pings?: AheadPings;
  /** Called when the restart command returned and the unit starts (the next turn's channel may open). */
  onRestarted?: () => void;
  /** The node's own API must answer /v1/health/ready after the ready line (part of the gate after a change); absent: the journal alone decides. */
  api?: ApiReadyCheck;
  /** How that API is asked (askApi's contract); default askApi, a command of its own. */
  askApi?: typeof askApi;
  /**
   * With `api`: called when the journal gate passed, with the state that passed it, in
   * the same tick as the API question that follows (a question sent from here travels with it).
   */
  onGated?: (state: ServiceState | undefined) => void;
};

/** What happened to one node in one phase. */
export type PhaseOutcome = {
  node: string;
  phase: string;
  status: 'applied' | 'unchanged' | 'failed';
  files: StepFile[];
  gate: GateRun | null;
};

/** A failure with the gate run that decided it, so the run report keeps its evidence. */
export function withOutcome(err: RolloutFailedError, outcome: PhaseOutcome): RolloutFailedError {
  return Object.assign(err, { outcome: { ...outcome, status: 'failed' as const } });
}

/** The outcome a RolloutFailedError carries (see withOutcome), if any. */
export function outcomeOf(err: RolloutFailedError): PhaseOutcome | null {
  return (err as RolloutFailedError & { outcome?: PhaseOutcome }).outcome ?? null;
}

/**
 * Before the first restart, on every node at once: stages each `full` item's
 * changes (backups and staged copies, the files untouched), so a node's turn
 * only moves files and restarts. `stage` runs a node's stage step (stageFiles,
 * or the state probes). Returns why a node could not be staged, one line each.
 */
export async function stageWork(
  transports: ReadonlyMap<string, Transport>,
  work: readonly NodeWork[],
  runId: string,
  stageKey: string,
  parallel: number,
  stage: (node: string, items: StageItem[]) => Promise<StageResult[]> = (node, items) => stageFiles(transports.get(node)!, items),
): Promise<string[]> {
  const byNode = new Map<string, FileChange[]>();
  for (const w of work) if (w.mode === 'full') byNode.set(w.node, [...(byNode.get(w.node) ?? []), ...w.changes]);
  const problems = await mapLimit([...byNode], parallel, async ([node, changes]) => {
    try {
      const stale = await stageChanges(transports.get(node)!, changes, runId, stageKey, (items) => stage(node, items));
      return stale.map((c) => `${node}: ${c.path} changed after the plan was made; run \`rollout plan\` again and review the new diff`);
    } catch (err) {
      return [`${node}: staging failed: ${(err as Error).message.replace(`${node}: `, '')}`];
    }
  });
  return problems.flat();
}

// The work's restart change, and the staged files its turn moves first (none for restart-only work).
function restartOf(work: NodeWork): RestartChange | null {
  return work.restartUnit ? { kind: 'restart', unit: work.restartUnit } : null;
}
function movesOf(work: NodeWork, stageKey: string): MovesFirst {
  return { changes: work.mode === 'full' ? work.changes : [], stageKey };
}

/**
 * Opens the restart channel of a node's turn ahead of time, while the turn
 * before it runs; null for work without a restart. Give it to applyNodePhase
 * as `channel`, or dismiss it (nothing on the node changes).
 */
export function openTurn(t: Transport, work: NodeWork, stageKey: string, gate: CompiledGate): LineStream | null {
  const restart = restartOf(work);
  return restart ? openRestartChannel(t, restart, gate, movesOf(work, stageKey)) : null;
}

/** Ends a channel openTurn opened whose turn will not come: `stop`, so nothing on the node changes. */
export const dismissTurn = dismissRestartChannel;

/**
 * Applies one node's work. On success the node runs the new files and passed
 * its gate. On a failed gate or write, the files are restored from the backups
 * and (if it was restarted) restarted and gated again; then RolloutFailedError
 * says whether the node is healthy on its old files (`safe`) or needs a human.
 */
export async function applyNodePhase(t: Transport, work: NodeWork, ctx: ApplyContext): Promise<PhaseOutcome> {
  const record = (patch: Parameters<RunRecorder['update']>[2]) => ctx.recorder.update(work.node, work.phase, patch);
  const files = work.mode === 'full' ? work.changes.map((c) => stepFile(ctx.runId, c)) : work.files;
  const outcome: PhaseOutcome = { node: t.name, phase: work.phase, status: 'applied', files, gate: null };
  const moves = movesOf(work, ctx.stageKey);
  const paths = moves.changes.map((c) => c.path).join(', ');
  // Until `go` is sent, nothing on the node has changed.
  let went = work.mode === 'restart-only';
  const untouched = async (err: unknown): Promise<never> => {
    if (err instanceof RolloutFailedError) throw err; // the cluster health check says why, and that nothing changed
    const message = ctx.redact((err as Error).message).replace(`${t.name}: `, '');
    await record({ status: 'planned', detail: message });
    throw new RolloutFailedError(t.name, true, `${t.name}: ${message}; nothing on it was changed`, 'untouched: old files, as before');
  };
  const writeFailed = async (err: unknown): Promise<never> => {
    const restored = await restoreAll(t, files, ctx);
    const message = ctx.redact((err as Error).message).replace(`${t.name}: `, '');
    await record({ status: restored ? 'rolled-back' : 'unknown', detail: message });
    throw new RolloutFailedError(t.name, restored, `${t.name}: ${message}; ${restored ? 'its files were restored from the backups and it was not restarted' : `RESTORING ITS FILES FAILED: check the node by hand (backups under /var/backups/rollout/${ctx.runId})`}`);
  };

  const restart = restartOf(work);
  if (!restart) {
    ctx.progress(`writing ${paths}`);
    let r: 'committed' | 'stale';
    try {
      r = await moveIntoPlace(t, moves.changes, moves.stageKey);
    } catch (err) {
      if (err instanceof ConnectionLostError && !err.started) return untouched(err);
      return writeFailed(err);
    }
    if (r === 'stale') return untouched(new StalePlanError(t.name, paths));
    await record({ status: 'done', files });
    return outcome;
  }
  const unit = restart.unit;
  let run: GateRun;
  try {
    run = await applyRestart(t, restart, ctx, {
      moves,
      beforeGo: async () => {
        await ctx.beforeRestart?.();
        went = true;
      },
      onMoved: () => record({ status: 'written', files }),
      ...(ctx.onRestarted ? { onRestarted: ctx.onRestarted } : {}),
      ...(ctx.channel ? { channel: ctx.channel } : {}),
      ...(ctx.pings ? { pings: ctx.pings } : {}),
    });
  } catch (err) {
    if (!went || err instanceof StalePlanError || (err instanceof ConnectionLostError && !err.started)) return untouched(err);
    return writeFailed(err);
  }
  // The ready line is not enough: the API must answer too (a failure restores the node like any failed gate).
  if (ctx.api) {
    if (run.verdict.status === 'passed') ctx.onGated?.(run.state);
    run = await gateOnApiReady(t, run, ctx.gate, ctx.api, ctx.progress, ctx.askApi);
  }
  outcome.gate = run;
  if (run.verdict.status === 'passed') {
    await record({ status: 'done', gatedInvocation: run.verdict.evidence[0]?.invocationId ?? '' });
    return outcome;
  }
  if (run.unreachable) {
    await record({ status: 'unknown', detail: ctx.redact(run.verdict.reason) });
    throw withOutcome(new RolloutFailedError(t.name, false, `${t.name} stopped answering during its gate: ${ctx.redact(run.verdict.reason)}\nIts files hold the new content; whether ${unit} is healthy is unknown. When the node answers again: \`rollout apply INVENTORY --resume\` re-checks and completes it, or \`rollout rollback INVENTORY --node ${t.name}\` restores it.`), outcome);
  }
  await record({ status: 'restarted', detail: ctx.redact(run.verdict.reason) });

  const why = `${run.verdict.reason}\n${renderGateEvidence(run, ctx.redact)}`;
  ctx.progress(`gate failed, restoring ${files.map((f) => f.path).join(', ')}`);
  if (!(await restoreAll(t, files, ctx))) {
    await record({ status: 'failed' });
    throw withOutcome(new RolloutFailedError(t.name, false, `${t.name} failed its gate after the change: ${why}\nRESTORING ITS FILES FAILED: check the node by hand (backups under /var/backups/rollout/${ctx.runId})`), outcome);
  }
  ctx.progress(`restarting ${unit} on the restored files`);
  let again: GateRun | null = null;
  try {
    again = await applyRestart(t, restart, ctx);
  } catch (err) {
    if (!(err instanceof NodeError)) throw err;
  }
  const healthy = again?.verdict.status === 'passed';
  await record({ status: healthy ? 'rolled-back' : 'failed' });
  throw withOutcome(new RolloutFailedError(
    t.name,
    healthy,
    `${t.name} failed its gate after the change: ${why}\n` +
      (healthy
        ? `Its files were restored from the backups and it came back healthy on them. The rollout stopped; nodes after it were not touched.`
        : `Its files were restored, but it did NOT come back healthy after a restart (${again ? again.verdict.reason : 'restart failed'}): check ${unit} on ${t.name} now.`),
  ), outcome);
}
