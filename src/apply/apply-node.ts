// One node, one phase: move the staged files into place, restart, gate (all on
// one channel, after the cluster health check); on a failed gate restore the
// backups, restart and gate again. Every step is recorded before the
// next starts, and a step cut by a lost connection is re-checked, never repeated
// blindly. Knows nothing of listr2.
import { NodeError, RolloutFailedError, StalePlanError } from '../errors.js';
import type { FileChange } from '../plan/types.js';
import { commitStaged, type StagedCommit } from '../rollout/journal.js';
import { openRestart, renderGateEvidence, restartAndGate, type GateRun } from '../rollout/restart-gate.js';
import type { CompiledGate } from '../rollout/gate.js';
import type { RunRecorder, StepFile } from '../state/run-state.js';
import { backupPath, restoreFile, stagedPath, stageFiles, type StageItem, type StageResult } from '../transport/remote-files.js';
import { ConnectionLostError } from '../transport/ssh.js';
import type { LineStream, Transport } from '../transport/transport.js';
import { mapLimit } from '../util/map-limit.js';
import type { Redactor } from '../util/redact.js';

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
  /** Called when the restart command returned and the unit starts (the next turn's channel may open). */
  onRestarted?: () => void;
};

/**
 * The work on one node in one phase. `full`: back up, write, restart, gate.
 * `restart-only`: the files already hold the new content (an interrupted run);
 * restart and gate, with the backups taken then for a rollback.
 */
export type NodeWork = {
  node: string;
  phase: string;
  mode: 'full' | 'restart-only';
  changes: FileChange[];
  /** For restart-only: the files as the interrupted run recorded them. */
  files: StepFile[];
  restartUnit: string | null;
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

/** The record of a change's file, before its backup exists. */
export function stepFile(runId: string, c: FileChange): StepFile {
  return { path: c.path, beforeSha256: c.beforeSha256, afterSha256: c.afterSha256, backup: backupPath(runId, c.path), uid: c.uid, gid: c.gid, mode: c.mode };
}

/** What a node's turn moves into place: its changes as stageWork staged them (none for restart-only work). */
function commitsOf(work: NodeWork, stageKey: string): StagedCommit[] {
  if (work.mode !== 'full') return [];
  return work.changes.map((c) => ({ path: c.path, staged: stagedPath(stageKey, c.path), beforeSha256: c.beforeSha256, afterSha256: c.afterSha256, uid: c.uid, gid: c.gid, mode: c.mode }));
}

/**
 * Before the first restart, on every node at once: backs up each file a `full`
 * item changes and stages its new content beside it (the files themselves are
 * untouched), so a node's turn only moves files and restarts, in one command
 * a node (`stage`: stageFiles, or through the state probes). Returns why a
 * node could not be staged, one line each; empty when all were.
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
      const results = await stage(node, changes.map((c) => ({ change: c, backup: backupPath(runId, c.path), staged: stagedPath(stageKey, c.path) })));
      return changes.filter((_, i) => results[i] === 'stale').map((c) => `${node}: ${c.path} changed after the plan was made; run \`rollout plan\` again and review the new diff`);
    } catch (err) {
      return [`${node}: staging failed: ${(err as Error).message.replace(`${node}: `, '')}`];
    }
  });
  return problems.flat();
}

/**
 * Opens the restart channel of a node's turn ahead of time (see openRestart),
 * while the turn before it runs; null for work without a restart. Give it to
 * applyNodePhase as `channel`, or close it (nothing on the node changes).
 */
export function openTurn(t: Transport, work: NodeWork, stageKey: string, gate: CompiledGate): LineStream | null {
  if (!work.restartUnit) return null;
  return openRestart(t, work.restartUnit, gate, commitsOf(work, stageKey), gate.timeoutMs + gate.restartTimeoutMs);
}

/** Ends a channel openTurn opened whose turn will not come: `stop`, so nothing on the node changes. */
export function dismissTurn(stream: LineStream | undefined): void {
  stream?.send('stop\n');
  stream?.close();
}

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
  const commits = commitsOf(work, ctx.stageKey);
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

  if (!work.restartUnit) {
    ctx.progress(`writing ${commits.map((c) => c.path).join(', ')}`);
    let r: 'committed' | 'stale';
    try {
      r = await commitStaged(t, commits);
    } catch (err) {
      if (err instanceof ConnectionLostError && !err.started) return untouched(err);
      return writeFailed(err);
    }
    if (r === 'stale') return untouched(new StalePlanError(t.name, commits.map((c) => c.path).join(', ')));
    await record({ status: 'done', files });
    return outcome;
  }
  const unit = work.restartUnit;
  let run: GateRun;
  try {
    run = await restartAndGate(t, unit, ctx.gate, ctx.progress, ctx.redact, {
      commits,
      beforeGo: async () => {
        await ctx.beforeRestart?.();
        went = true;
      },
      onCommitted: () => record({ status: 'written', files }),
      ...(ctx.onRestarted ? { onRestarted: ctx.onRestarted } : {}),
      ...(ctx.channel ? { channel: ctx.channel } : {}),
    });
  } catch (err) {
    if (!went || err instanceof StalePlanError || (err instanceof ConnectionLostError && !err.started)) return untouched(err);
    return writeFailed(err);
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
    again = await restartAndGate(t, unit, ctx.gate, ctx.progress, ctx.redact);
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

/**
 * Restores in reverse order; true when every file is back as it was
 * (already-old files count as restored). A file is restored only while it
 * holds what the run wrote, or what `seen` says the caller found there (a
 * forced rollback), checked right before the move: an edit made by someone
 * else since is never overwritten.
 */
export async function restoreAll(t: Transport, files: readonly StepFile[], ctx: Pick<ApplyContext, 'progress'>, seen?: ReadonlyMap<string, string>): Promise<boolean> {
  let ok = true;
  for (const f of [...files].reverse()) {
    try {
      ctx.progress(`restoring ${f.path}`);
      await restoreFile(t, f, seen?.get(f.path) ?? f.afterSha256);
    } catch {
      ok = false;
    }
  }
  return ok;
}
