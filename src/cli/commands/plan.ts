import path from 'node:path';
import { PreflightError } from '../../errors.js';
import { checkPlanOut, toPlanFile, writePlanFile } from '../../plan/plan-file.js';
import { renderPlan } from '../../plan/render.js';
import { planHasChanges } from '../../plan/types.js';
import { EXIT } from '../../exit-codes.js';
import type { Output } from '../output.js';
import { showPlan } from '../show-plan.js';
import { openSession } from '../../session/session.js';
import { fileSha256 } from '../../util/sha256.js';

export type PlanFlags = { parallel?: number; out?: string; detailedExitcode?: boolean; limit?: string; acceptNewHostKeys?: boolean };

/** `rollout plan INVENTORY [--out FILE]`: connects, reads, prints the diffs and restart order. Changes nothing on any node. */
export async function planCommand(inventoryFile: string, flags: PlanFlags, io: Output): Promise<number> {
  // Before connecting: a plan must never overwrite the inventory or any other file.
  if (flags.out) await checkPlanOut(path.resolve(flags.out));
  const session = await openSession(inventoryFile, flags);
  try {
    io.useRedactor(session.redact);
    for (const note of session.notes) io.err(`note: ${note}`);
    // Node-derived paths and notes too: the saved file is read by other tools than rollout.
    const rendered = session.redact(renderPlan(session.plan, session.redact));
    showPlan(io, session.plan, session.redact);
    const failed = session.plan.nodes.filter((n) => n.status === 'error');
    if (failed.length > 0) throw new PreflightError(failed.map((n) => `${n.node.name}: ${n.status === 'error' ? n.error : ''}`), 'some nodes could not be planned (nothing was changed)');
    if (flags.out) {
      const saved = toPlanFile(session.plan, session.inventory.file, await fileSha256(session.inventory.file), await fileSha256(session.inventory.playbookFile), rendered);
      await writePlanFile(path.resolve(flags.out), saved);
      io.out(`Saved the plan to ${flags.out} (checksums and redacted diffs only; no secret). Apply exactly this plan with: rollout apply ${flags.out}`);
    }
    const pending = planHasChanges(session.plan);
    io.result(pending ? 'Plan complete: nothing was changed. Run `rollout apply` to make these changes.' : 'Every node is up to date: nothing to do.');
    return pending && flags.detailedExitcode ? EXIT.changesPending : EXIT.ok;
  } finally {
    session.close();
  }
}
