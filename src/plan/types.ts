// The plan is data: apply does what it says and nothing else, and re-checks a
// file's sha256 before it writes. File content is only ever shown redacted.
import type { NodeTarget } from '../inventory/load.js';

/** Owner and mode of a directory above a file read (see RemoteFile.dirs). */
export type DirStat = { path: string; uid: number; gid: number; mode: number };

/**
 * A regular file as read from a node: bytes plus the owner and mode to keep
 * when it is rewritten. `path` is the path asked for; `target`, where it
 * really leads when a symlink is along it (readlink -f): the file read, and
 * the one to write. `dirs`: owner and mode of every directory above the file
 * up to `/`, nearest first, then of those above the symlink itself. Readers
 * that do not collect them (test fixtures) leave `target` and `dirs` out.
 */
export type RemoteFile = { path: string; target?: string; content: Buffer; sha256: string; uid: number; gid: number; mode: number; dirs?: DirStat[] };

/** Reads one file of a node (null: it does not exist). Planning can read, never write. */
export type FileReader = (path: string) => Promise<RemoteFile | null>;

/** What planning reads of one node: its files, and the unit's WorkingDirectory when a relative path needs it. */
export type NodeReader = { read: FileReader; workingDirectory: (unit: string) => Promise<string> };


/** One intended edit of one file on one node (src/apply/file-change.ts executes it). */
export type FileChange = {
  kind: 'file';
  /** The playbook's name for the file (`config`, `env`). */
  file: string;
  /** The file written: where the path named leads (a symlink's target), normalised. */
  path: string;
  /** The path as named, when a symlink along it leads to `path`: the link stays, its target is written. */
  linkPath?: string;
  /** Where a relative path came from and what it was resolved against (shown in the plan). */
  pathFrom?: string;
  /** Content as read at plan time. */
  before: string;
  /** Content to write. Equal to `before` never happens: unchanged files are not changes. */
  after: string;
  /** sha256 of `before`; apply refuses to write if the node's file now differs. */
  beforeSha256: string;
  afterSha256: string;
  /** Owner and mode of the new file: the file's own (the backup keeps them), the mode tightened when `othersReadable` says so. */
  uid: number;
  gid: number;
  mode: number;
  /**
   * Set when the new content holds a secret of the inventory and others could
   * read the file as it was (mode o+r): what secretFiles.othersReadable decided
   * (`tighten`: `mode` is `modeBefore` without the others' bits; `allow`: kept).
   */
  othersReadable?: { policy: 'tighten' | 'allow'; modeBefore: number };
  /** Owner and mode of every directory above `path` (and above `linkPath`) up to `/`, as read; preflight refuses one a non-root user can write in. */
  dirs?: DirStat[];
};

/** A restart of the node's unit once the phase's files are in place, gated on its journal (src/apply/restart.ts executes it). */
export type RestartChange = {
  kind: 'restart';
  unit: string;
};

/** Every kind of change apply makes. */
export type Change = FileChange | RestartChange;

/** What one phase does on one node: its file changes, then the restart they need. */
export type PhasePlan = {
  name: string;
  description: string;
  changes: FileChange[];
  /** Why files of this phase are left alone (shown in the plan). */
  unchanged: string[];
  /** The only say on whether the node restarts in this phase: null when none of its files changed, or the phase restarts nothing. */
  restart: RestartChange | null;
};

/**
 * Where the node's own KMS API listens, as its files said when planned: `host`
 * is `--host` of the env file's options as HOST:PORT (port 7373 when none;
 * `localhost:7373` without --host); `tlsCa` the config's `tls.ca` (a file or a
 * directory, absolute), null: the node's system trust store. The readiness
 * checks ask it from the node itself.
 */
export type NodeApi = { host: string; tlsCa: string | null };

/** The plan of one node: ready to apply, or the reason it cannot be planned. */
export type NodePlan =
  /** `api`: absent when the playbook names no options file (no --config from the env), so no readiness check. */
  /** `paths`: where each playbook file the plan read lives on the node, by its name (`config`), for readers after the plan (status). */
  | { node: NodeTarget; status: 'ready'; phases: PhasePlan[]; api?: NodeApi; paths?: Record<string, string> }
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
