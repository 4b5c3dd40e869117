// The work apply executes, node by node and phase by phase: from the plan's file and
// restart changes for a fresh run, or from the run record checked against the nodes to resume.
import type { FileChange, PhasePlan, Plan } from '../plan/types.js';
import { readServiceState } from '../rollout/journal.js';
import { readRemoteFile } from '../agent/files.js';
import type { Transport } from '../transport/transport.js';
import type { RunState, StepFile } from './run-state.js';

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
  /** The unit of the plan's restart change (of the interrupted run's, for restart-only); null: files only. */
  restartUnit: string | null;
};

/** What resuming an interrupted run will do, decided from the nodes as they are now. */
export type ResumePlan = {
  work: NodeWork[];
  /** Steps recorded done and re-verified on the node (files as planned, service healthy). */
  verified: string[];
  /** Reasons resuming would not be safe; non-empty means refuse and change nothing. */
  problems: string[];
};

/**
 * Decides per recorded step, from each file's checksum on the node now, never
 * from the record alone: done steps are re-verified; files still old are
 * applied afresh (the content must be what the run planned); files already new
 * but not gated are restarted and gated; anything else is refused.
 */
export async function planResume(state: RunState, plan: Plan, transports: ReadonlyMap<string, Transport>, unit: string): Promise<ResumePlan> {
  const out: ResumePlan = { work: [], verified: [], problems: [] };
  for (const step of state.steps) {
    const t = transports.get(step.node);
    const where = `${step.node} (phase ${step.phase})`;
    if (!t) {
      out.problems.push(`${where}: not reachable or not in the inventory any more`);
      continue;
    }
    const shas = await Promise.all(step.files.map(async (f) => (await readRemoteFile(t, f.path))?.sha256 ?? null));
    const allAfter = step.files.every((f, i) => shas[i] === f.afterSha256);
    const allBefore = step.files.every((f, i) => shas[i] === f.beforeSha256);
    if (step.status === 'done') {
      const s = await readServiceState(t, unit);
      if (!allAfter) out.problems.push(`${where}: recorded done, but its files no longer hold what the run wrote; check it by hand`);
      else if (s.activeState !== 'active' || s.subState !== 'running') out.problems.push(`${where}: recorded done, but ${unit} is ${s.activeState}/${s.subState}; fix it before resuming`);
      else out.verified.push(where);
      continue;
    }
    if (allAfter && step.files.length > 0) {
      out.work.push({ node: step.node, phase: step.phase, mode: 'restart-only', changes: [], files: step.files, restartUnit: step.restartUnit });
      continue;
    }
    if (allBefore) {
      // Files still old: the fresh plan's changes are the work, as long as they are what the run planned.
      const fresh = plan.nodes.find((n) => n.node.name === step.node);
      const phase = fresh?.status === 'ready' ? fresh.phases.find((p) => p.name === step.phase) : undefined;
      const changes = phase?.changes ?? [];
      const same = changes.length === step.files.length && changes.every((c) => step.files.some((f) => f.path === c.path && f.afterSha256 === c.afterSha256));
      if (!phase || !same) {
        out.problems.push(`${where}: the inventory (or a secret) now gives different content than the interrupted run planned; start a new run instead of resuming`);
        continue;
      }
      const work = workOf(step.node, phase);
      if (work.restartUnit !== step.restartUnit) {
        out.problems.push(`${where}: the playbook now restarts ${work.restartUnit ?? 'nothing'} where the interrupted run planned ${step.restartUnit ?? 'no restart'}; start a new run instead of resuming`);
        continue;
      }
      out.work.push(work);
      continue;
    }
    const detail = step.files.map((f, i) => `${f.path}: ${shas[i] === null ? 'missing' : shas[i] === f.afterSha256 ? 'new' : shas[i] === f.beforeSha256 ? 'old' : 'neither old nor new'}`).join(', ');
    out.problems.push(`${where}: files are not all old or all new (${detail}); check it by hand`);
  }
  return out;
}

/** Pure. The work of a fresh run: one item per node and phase that changes something. */
export function workFromPlan(plan: Plan): NodeWork[] {
  const phaseOrder = plan.phases.filter((p) => p.enabled).map((p) => p.name);
  return phaseOrder.flatMap((phase) =>
    plan.nodes.flatMap((n) => {
      if (n.status !== 'ready') return [];
      const p = n.phases.find((x) => x.name === phase);
      return p && p.changes.length > 0 ? [workOf(n.node.name, p)] : [];
    }),
  );
}

// A phase's file changes and its restart change as one node's work.
function workOf(node: string, p: PhasePlan): NodeWork {
  return { node, phase: p.name, mode: 'full', changes: p.changes, files: [], restartUnit: p.restart?.unit ?? null };
}
