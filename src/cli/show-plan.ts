// Apart from output.ts: the diff library it needs loads only when a plan is shown
// (apply loads it while the nodes are read, not before the first connection).
import { renderFileChange, renderOrder, renderPlan } from '../plan/render.js';
import { planHasChanges, type Plan } from '../plan/types.js';
import type { Redactor } from '../util/redact.js';
import type { Output } from './output.js';

/**
 * The plan as it is shown: in JSON mode one `plan-node` event per node (its
 * changes with checksums and redacted diffs, or why it cannot be planned) and
 * a `plan` event with the restart order; otherwise the diffs as text.
 */
export function showPlan(io: Output, plan: Plan, redact: Redactor): void {
  if (io.mode !== 'json') {
    // Coloured by Output after it made the text inert: node text cannot fake or undo the colour.
    io.diff(renderPlan(plan, redact));
    return;
  }
  for (const n of plan.nodes) {
    if (n.status === 'error') {
      io.event('plan-node', { node: n.node.name, status: 'error', error: n.error });
      continue;
    }
    io.event('plan-node', {
      node: n.node.name,
      status: 'ready',
      changes: n.phases.flatMap((p) => p.changes.map((c) => ({ phase: p.name, path: c.path, beforeSha256: c.beforeSha256, afterSha256: c.afterSha256, diff: renderFileChange(n.node.name, c, redact) }))),
      restarts: n.phases.flatMap((p) => (p.restart ? [{ phase: p.name, unit: p.restart.unit }] : [])),
    });
  }
  io.event('plan', { changesPending: planHasChanges(plan), order: renderOrder(plan).slice(1).map((l) => l.trim()) });
}
