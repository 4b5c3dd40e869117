// The plan is data: apply is driven only by it and re-checks every precondition
// (a file's sha256) before it writes. Content of files is kept for apply but
// only ever shown through the redactor.
import type { NodeTarget } from '../inventory/load.js';

/** One intended edit of one file on one node. */
export type FileChange = {
  /** The playbook's name for the file (`config`, `env`). */
  file: string;
  path: string;
  /** Content as read at plan time. */
  before: string;
  /** Content to write. Equal to `before` never happens: unchanged files are not changes. */
  after: string;
  /** sha256 of `before`; apply refuses to write if the node's file now differs. */
  beforeSha256: string;
  afterSha256: string;
  /** Owner and mode the file had; the new file and the backup keep them. */
  uid: number;
  gid: number;
  mode: number;
};

/** What one phase does on one node. */
export type PhasePlan = {
  name: string;
  description: string;
  changes: FileChange[];
  /** Why files of this phase are left alone (shown in the plan). */
  unchanged: string[];
  /** The unit restarted after the changes; null when nothing changed, so nothing restarts. */
  restartUnit: string | null;
};

/** The plan of one node: ready to apply, or the reason it cannot be planned. */
export type NodePlan =
  | { node: NodeTarget; status: 'ready'; phases: PhasePlan[] }
  | { node: NodeTarget; status: 'error'; error: string };

/** The whole plan, nodes in inventory order (restarts follow that order). */
export type Plan = {
  playbookName: string;
  nodes: NodePlan[];
  /** Phase names in order, including phases skipped by `when`. */
  phases: Array<{ name: string; description: string; enabled: boolean; when?: string }>;
};

/** true when this node has a change to make (a node plan holds only the phases its `when` enables). */
export function nodeHasChanges(n: NodePlan): boolean {
  return n.status === 'ready' && n.phases.some((p) => p.changes.length > 0);
}

/** true when at least one node has a change to make. */
export function planHasChanges(plan: Plan): boolean {
  return plan.nodes.some(nodeHasChanges);
}
