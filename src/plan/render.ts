import { createTwoFilesPatch } from 'diff';
import type { Redactor } from '../util/redact.js';
import type { FileChange, Plan } from './types.js';
import { octalMode, unsafeDirProblems } from './unsafe-dirs.js';

/** Pure. One unified diff of a file change (from its `---` line), secrets replaced before diffing. */
export function renderFileChange(node: string, c: FileChange, redact: Redactor): string {
  // createTwoFilesPatch starts with a line of `=`, which says nothing here.
  return createTwoFilesPatch(`a${c.path}`, `b${c.path}`, redact(c.before), redact(c.after), `${node} now`, `${node} planned`, { context: 3 }).replace(/^=+\n/, '');
}

/**
 * Pure. What the plan says about a change besides its diff: where a relative
 * path came from, a mode secretFiles changes or keeps, and every directory
 * above it a non-root user can write in (which preflight refuses). `!` marks
 * a warning.
 */
export function changeNotes(c: FileChange): string[] {
  const notes: string[] = [];
  if (c.pathFrom) notes.push(`path: ${c.pathFrom}`);
  if (c.othersReadable?.policy === 'tighten') notes.push(`mode ${octalMode(c.othersReadable.modeBefore)} -> ${octalMode(c.mode)} (secretFiles.othersReadable: tighten)`);
  if (c.othersReadable?.policy === 'allow') notes.push(`! mode ${octalMode(c.mode)} kept: every local user can read the secret this file will hold (secretFiles.othersReadable: allow)`);
  for (const p of unsafeDirProblems([c])) notes.push(`! ${p} (preflight refuses this node until then)`);
  return notes;
}

/** Pure. The whole plan as the operator reviews it: per node and phase the diffs, then the restart order. */
export function renderPlan(plan: Plan, redact: Redactor): string {
  const out: string[] = [];
  for (const n of plan.nodes) {
    out.push(`=== ${n.node.name} (${n.node.user}@${n.node.host}:${n.node.port})`);
    if (n.status === 'error') {
      out.push(`  ! cannot plan this node: ${redact(n.error)}`, '');
      continue;
    }
    const changed = n.phases.some((p) => p.changes.length > 0);
    for (const p of n.phases) {
      for (const c of p.changes) {
        out.push(`--- phase ${p.name}: ${c.linkPath ? `${c.linkPath} -> ${c.path}` : c.path}`);
        out.push(...changeNotes(c).map((note) => `  ${redact(note)}`));
        out.push(renderFileChange(n.node.name, c, redact).trimEnd());
      }
      for (const u of p.unchanged) out.push(`  = phase ${p.name}: ${redact(u)}`);
    }
    if (!changed) out.push('  up to date: no change, no restart');
    out.push('');
  }
  out.push(...renderOrder(plan));
  return `${out.join('\n')}\n`;
}

/** Pure. Which nodes restart in which phase, in order; skipped phases say why. */
export function renderOrder(plan: Plan): string[] {
  const lines = ['Restart order (one node at a time, each gated on its journal):'];
  plan.phases.forEach((phase, i) => {
    const label = `  phase ${i + 1} ${phase.name}`;
    if (!phase.enabled) {
      lines.push(`${label}: skipped (${phase.when} is not true in the inventory's vars)`);
      return;
    }
    const nodes = plan.nodes.flatMap((n) => (n.status === 'ready' && n.phases.find((p) => p.name === phase.name)?.restart ? [n.node.name] : []));
    lines.push(`${label}: ${nodes.length ? nodes.join(' -> ') : 'no node to restart'}`);
  });
  if (plan.nodes.some((n) => n.node.cluster?.apiKey !== undefined)) {
    lines.push('  (inventory order; apply moves the cluster\'s leader at that time to the end of each phase: vars.cluster.apiKey, unless --order inventory)');
  }
  const failed = plan.nodes.filter((n) => n.status === 'error').map((n) => n.node.name);
  if (failed.length) lines.push(`  ${failed.length} node(s) could not be planned: ${failed.join(', ')}; apply refuses until every node can be`);
  return lines;
}
