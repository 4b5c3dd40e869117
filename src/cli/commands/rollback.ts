import path from 'node:path';
import { restoreAll } from '../../apply/apply-node.js';
import { NodeError, PreflightError, RolloutFailedError, UsageError } from '../../errors.js';
import { compileGate } from '../../rollout/gate.js';
import { readServiceState } from '../../rollout/journal.js';
import { lockFleet, lockHolder, releaseLock } from '../../rollout/lock.js';
import { renderGateEvidence, restartAndGate } from '../../rollout/restart-gate.js';
import { checkOthersHealthy } from '../../apply/execute.js';
import { loadLastRun, RunRecorder, type StepFile } from '../../state/run-state.js';
import { readRemoteFile } from '../../agent/files.js';
import { EXIT } from '../../exit-codes.js';
import type { Output } from '../output.js';
import { openSession } from '../../session/session.js';
import { confirm } from '../confirm.js';

export type RollbackFlags = { node?: string; force?: boolean; yes?: boolean; parallel?: number; breakLock?: boolean; limit?: string; acceptNewHostKeys?: boolean };

/**
 * `rollout rollback INVENTORY [--node N]`: puts back the backups the last run took,
 * node by node, each restarted and gated like a rollout. A file that changed
 * since the run wrote it is refused unless --force.
 */
export async function rollbackCommand(inventoryArg: string, flags: RollbackFlags, io: Output): Promise<number> {
  const inventoryFile = path.resolve(inventoryArg);
  const last = await loadLastRun(inventoryFile);
  if (!last) throw new UsageError(`no run of ${inventoryFile} is recorded; nothing to roll back`);
  const { state } = last;
  const touched = state.steps.filter((s) => s.status !== 'planned' && s.status !== 'rolled-back' && (!flags.node || s.node === flags.node));
  if (flags.node && !state.steps.some((s) => s.node === flags.node)) throw new UsageError(`run ${state.runId} did not touch a node named ${flags.node}`);
  if (touched.length === 0) {
    io.out(`Run ${state.runId} left nothing to roll back${flags.node ? ` on ${flags.node}` : ''}.`);
    return EXIT.ok;
  }
  const session = await openSession(inventoryFile, flags);
  try {
    io.useRedactor(session.redact);
    for (const note of session.notes) io.err(`note: ${note}`);
    // Per node, the files of every phase it touched, newest phase first.
    const nodes = [...new Set(touched.map((s) => s.node))].reverse();
    const filesOf = (node: string): StepFile[] => touched.filter((s) => s.node === node).reverse().flatMap((s) => s.files);
    // The lock first: the files are checked under it, so no other run changes them
    // between the check and the restore (which checks each file again right before its move).
    const me = lockHolder(`rollback-${state.runId}`, inventoryFile);
    const transports = [...session.transports.values()];
    await lockFleet(transports, me, { staleMs: session.inventory.lockStaleMs, breakLock: flags.breakLock === true });
    try {
      const problems: string[] = [];
      const lines: string[] = [];
      // What each file held when checked: the restore refuses to overwrite anything newer.
      const seen = new Map<string, Map<string, string>>();
      for (const node of nodes) {
        const t = session.transports.get(node);
        if (!t) {
          problems.push(`${node}: not reachable`);
          continue;
        }
        for (const f of filesOf(node)) {
          const now = await readRemoteFile(t, f.path);
          seen.set(node, (seen.get(node) ?? new Map<string, string>()).set(f.path, now?.sha256 ?? 'missing'));
          if (now?.sha256 === f.beforeSha256) lines.push(`  ${node}: ${f.path} already holds its old content`);
          else if (now?.sha256 === f.afterSha256) lines.push(`  ${node}: ${f.path} <- ${f.backup}`);
          else if (flags.force) lines.push(`  ${node}: ${f.path} <- ${f.backup} (FORCED: the file changed since run ${state.runId} wrote it)`);
          else problems.push(`${node}: ${f.path} changed since run ${state.runId} wrote it; rollback would lose that edit (--force to restore anyway)`);
        }
      }
      if (problems.length > 0) throw new PreflightError(problems, 'rollback refused, nothing was changed');
      io.out(`Rollback of run ${state.runId}, node by node:\n${lines.join('\n')}`);
      await confirm(flags.yes === true, io);
      const recorder = new RunRecorder(state, last.dir);
      const unit = session.playbook.service.unit;
      const gate = compileGate(session.playbook.gate);
      const baseline = new Map(await Promise.all([...session.transports].map(async ([name, t]) => [name, await readServiceState(t, unit)] as const)));
      for (const node of nodes) {
        const t = session.transports.get(node)!;
        const progress = (text: string) => io.out(`  ${node}: ${session.redact(text)}`);
        // Same rule as a rollout: never restart a node while another is down.
        await checkOthersHealthy(node, { baseline, readState: (n) => readServiceState(session.transports.get(n)!, unit), unit });
        if (!(await restoreAll(t, filesOf(node), { progress }, seen.get(node)))) {
          throw new RolloutFailedError(node, false, `${node}: restoring its backups failed; check it by hand (backups under /var/backups/rollout/${state.runId})`);
        }
        const run = await restartAndGate(t, unit, gate, progress, session.redact).catch((err: unknown) => {
          if (err instanceof NodeError) return null;
          throw err;
        });
        if (run?.verdict.status !== 'passed') {
          throw new RolloutFailedError(node, false, `${node}: its old files are back, but it did not pass its gate: ${run ? `${run.verdict.reason}\n${renderGateEvidence(run, session.redact)}` : 'restart failed'}`);
        }
        for (const s of touched.filter((x) => x.node === node)) await recorder.update(s.node, s.phase, { status: 'rolled-back' });
        const st = await readServiceState(t, unit);
        baseline.set(node, st);
        io.out(`  ${node}: restored and healthy (${unit} ${st.activeState}/${st.subState})`);
      }
      if (state.steps.every((s) => s.status === 'rolled-back' || s.status === 'planned')) await recorder.finish('rolled-back');
      io.result(`Rollback complete: ${nodes.join(', ')} run their old files and passed their gates.`);
      return EXIT.ok;
    } finally {
      await Promise.all(transports.map((t) => releaseLock(t, me.runId).catch(() => undefined)));
    }
  } finally {
    session.close();
  }
}
