// One node, one phase: check, back up, write, restart, gate; on a failed gate
// restore the backups, restart and gate again. Knows nothing of listr2.
import { NodeError, RolloutFailedError, StalePlanError } from '../errors.js';
import type { FileChange, PhasePlan } from '../plan/types.js';
import { renderGateEvidence, restartAndGate, type GateRun } from '../rollout/restart-gate.js';
import type { CompiledGate } from '../rollout/gate.js';
import { backupFile, readRemoteFile, restoreFile, writeFileAtomic } from '../transport/remote-files.js';
import type { Transport } from '../transport/transport.js';
import type { Redactor } from '../util/redact.js';

/** What an applier needs besides the node: run id, gate, redactor, and where progress goes. */
export type ApplyContext = {
  runId: string;
  gate: CompiledGate;
  redact: Redactor;
  /** Short human text of the current step (shown by the progress view, already redacted). */
  progress: (text: string) => void;
};

/** What happened to one node in one phase. */
export type PhaseOutcome = {
  node: string;
  phase: string;
  status: 'applied' | 'unchanged';
  files: Array<{ path: string; backup: string; beforeSha256: string; afterSha256: string }>;
  gate: GateRun | null;
};

/** Re-reads each file the phase changes: refuses when it is not what the plan read. */
export async function checkNotStale(t: Transport, changes: readonly FileChange[]): Promise<void> {
  for (const c of changes) {
    const now = await readRemoteFile(t, c.path);
    if (now?.sha256 !== c.beforeSha256) throw new StalePlanError(t.name, c.path);
  }
}

/**
 * Applies one phase to one node. On success the node runs the new files and
 * passed its gate. On a failed gate or write, the node's files are restored from
 * the backups just taken and (if it was restarted) restarted and gated again;
 * then RolloutFailedError says whether the restore came back healthy.
 */
export async function applyNodePhase(t: Transport, phase: PhasePlan, ctx: ApplyContext): Promise<PhaseOutcome> {
  const outcome: PhaseOutcome = { node: t.name, phase: phase.name, status: 'unchanged', files: [], gate: null };
  if (phase.changes.length === 0) return outcome;
  ctx.progress('checking the files are as planned');
  await checkNotStale(t, phase.changes);

  const written: Array<{ change: FileChange; backup: string }> = [];
  try {
    for (const c of phase.changes) {
      ctx.progress(`backing up ${c.path}`);
      const backup = await backupFile(t, ctx.runId, c.path, c.beforeSha256);
      outcome.files.push({ path: c.path, backup, beforeSha256: c.beforeSha256, afterSha256: c.afterSha256 });
      ctx.progress(`writing ${c.path}`);
      written.push({ change: c, backup });
      await writeFileAtomic(t, c.path, Buffer.from(c.after, 'utf8'), c);
    }
  } catch (err) {
    // Nothing was restarted yet: putting the files back is the whole rollback.
    const restored = await restoreAll(t, written, ctx);
    throw new RolloutFailedError(t.name, restored, `${t.name}: ${ctx.redact((err as Error).message)}; ${restored ? 'its files were restored from the backups and it was not restarted' : 'RESTORING ITS FILES FAILED: check the node by hand (backups under /var/backups/rollout/' + ctx.runId + ')'}`);
  }

  outcome.status = 'applied';
  if (!phase.restartUnit) return outcome;
  const unit = phase.restartUnit;
  const run = await restartAndGate(t, unit, ctx.gate, ctx.progress, ctx.redact);
  outcome.gate = run;
  if (run.verdict.status === 'passed') return outcome;

  const why = `${run.verdict.reason}\n${renderGateEvidence(run, ctx.redact)}`;
  ctx.progress(`gate failed, restoring ${written.map((w) => w.change.path).join(', ')}`);
  if (!(await restoreAll(t, written, ctx))) {
    throw new RolloutFailedError(t.name, false, `${t.name} failed its gate after the change: ${why}\nRESTORING ITS FILES FAILED: check the node by hand (backups under /var/backups/rollout/${ctx.runId})`);
  }
  ctx.progress(`restarting ${unit} on the restored files`);
  let again: GateRun | null = null;
  try {
    again = await restartAndGate(t, unit, ctx.gate, ctx.progress, ctx.redact);
  } catch (err) {
    if (!(err instanceof NodeError)) throw err;
  }
  const healthy = again?.verdict.status === 'passed';
  throw new RolloutFailedError(
    t.name,
    healthy,
    `${t.name} failed its gate after the change: ${why}\n` +
      (healthy
        ? `Its files were restored from the backups and it came back healthy on them. The rollout stopped; nodes after it were not touched.`
        : `Its files were restored, but it did NOT come back healthy after a restart (${again ? again.verdict.reason : 'restart failed'}): check ${unit} on ${t.name} now.`),
  );
}

// Restores in reverse order of writing; true when every file is back as it was.
async function restoreAll(t: Transport, written: ReadonlyArray<{ change: FileChange; backup: string }>, ctx: ApplyContext): Promise<boolean> {
  let ok = true;
  for (const { change, backup } of [...written].reverse()) {
    try {
      ctx.progress(`restoring ${change.path}`);
      await restoreFile(t, backup, change.path, change.beforeSha256);
    } catch {
      ok = false;
    }
  }
  return ok;
}
