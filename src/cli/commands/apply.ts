import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline/promises';
import { NotConfirmedError, PreflightError } from '../../errors.js';
import { renderPlan } from '../../plan/render.js';
import { planHasChanges } from '../../plan/types.js';
import { compileGate } from '../../rollout/gate.js';
import { renderSummary, runRollout, type ProgressStyle } from '../../rollout/run.js';
import { EXIT } from '../exit-codes.js';
import type { Output } from '../output.js';
import { prepareSession } from '../prepare.js';
import type { PreflightFlags } from '../../preflight/run-preflight.js';
import { checkSession } from './preflight.js';

export type ApplyFlags = PreflightFlags & { parallel?: number; yes?: boolean; dryRun?: boolean };

/** A run id that sorts by time and names the backups on the nodes. */
export function newRunId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

/**
 * `rollout apply INVENTORY`: the plan, preflight (Vault and every node), a
 * confirmation, then the phases node by node with backups, atomic writes and the journal gate.
 */
export async function applyCommand(inventoryFile: string, flags: ApplyFlags, io: Output): Promise<number> {
  const session = await prepareSession(inventoryFile, flags.parallel);
  try {
    io.useRedactor(session.redact);
    const { plan } = session;
    io.out(renderPlan(plan, session.redact));
    const failed = plan.nodes.filter((n) => n.status === 'error');
    if (failed.length > 0) throw new PreflightError(failed.map((n) => `${n.node.name}: ${n.status === 'error' ? n.error : ''}`));
    if (!planHasChanges(plan)) {
      io.out('Every node is up to date: nothing to do, nothing restarted.');
      return EXIT.ok;
    }
    if (flags.dryRun) {
      io.out('Dry run: nothing was changed.');
      return EXIT.ok;
    }
    // Every check before the question, so nobody confirms a rollout that cannot work.
    await checkSession(session, flags, io);
    await confirm(flags.yes === true, io);
    const runId = newRunId();
    io.out(`Run ${runId}: backups go to /var/backups/rollout/${runId}/ on each node.`);
    const progress: ProgressStyle = process.stdout.isTTY && process.env.CI !== 'true' ? 'tty' : 'plain';
    const result = await runRollout(plan, {
      runId,
      gate: compileGate(session.playbook.gate),
      redact: session.redact,
      transports: session.transports,
      progress,
    });
    io.out(`\n${renderSummary(plan, result)}`);
    if (result.failure) throw result.failure;
    io.out(`Rollout complete: every node runs the new files and passed its gate. Backups: /var/backups/rollout/${runId}/ on each node.`);
    return EXIT.ok;
  } finally {
    session.close();
  }
}

async function confirm(yes: boolean, io: Output): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY || !process.stdout.isTTY) {
    throw new NotConfirmedError('no terminal to confirm on: review the plan above, then run again with --yes. Nothing was changed.');
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = await rl.question('Apply these changes, restarting the nodes one at a time? Type "yes" to go on: ');
    if (answer.trim() !== 'yes') throw new NotConfirmedError('not confirmed: nothing was changed.');
  } finally {
    rl.close();
  }
  io.out('Confirmed.');
}
