import { PreflightError } from '../../errors.js';
import { renderPlan } from '../../plan/render.js';
import { planHasChanges } from '../../plan/types.js';
import { EXIT } from '../exit-codes.js';
import type { Output } from '../output.js';
import { prepareSession } from '../prepare.js';

export type PlanFlags = { parallel?: number };

/** `rollout plan INVENTORY`: connects, reads, prints the diffs and restart order. Changes nothing. */
export async function planCommand(inventoryFile: string, flags: PlanFlags, io: Output): Promise<number> {
  const session = await prepareSession(inventoryFile, flags.parallel);
  try {
    io.useRedactor(session.redact);
    io.out(renderPlan(session.plan, session.redact));
    const failed = session.plan.nodes.filter((n) => n.status === 'error');
    if (failed.length > 0) throw new PreflightError(failed.map((n) => `${n.node.name}: ${n.status === 'error' ? n.error : ''}`), 'some nodes could not be planned (nothing was changed)');
    io.out(planHasChanges(session.plan) ? 'Plan complete: nothing was changed. Run `rollout apply` to make these changes.' : 'Every node is up to date: nothing to do.');
    return EXIT.ok;
  } finally {
    session.close();
  }
}
